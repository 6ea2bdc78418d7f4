/* SPDX-License-Identifier: MIT */
/*
 * The field reports' scenario, done right (docs/design.md: the "cannot call recv while another
 * coroutine is already waiting" bug): many threads share ONE connection, with answers delayed and
 * reordered by the peer, while tasks and heartbeats are in flight.
 *
 * STRESS_THREADS threads x STRESS_REQUESTS device-info requests each, every thread keeping
 * STRESS_WINDOW requests in flight through completion callbacks. Each answer is checked
 * against its own request twice: the response_id must be the id this request chose, and the
 * system info must be for the target this request named (a per-request target the peer echoes
 * as device_id). Zero errors and zero mismatches are required. Runs under TSan (label
 * concurrency). Sizes can be lowered with env STRESS_SCALE=<divisor> for quick local runs.
 */
#include <aip/aip.h>

#include "peer_proc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STRESS_THREADS  32
#define STRESS_REQUESTS 2000
#define STRESS_WINDOW   4
#define TASKS           200

static int g_requests = STRESS_REQUESTS;

struct slot {
    aip_future *f;
    char id[64];
    char target[64];
    _Atomic int done;
};

struct worker {
    int index;
    aip_conn *c;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int completed_pending; /* callbacks not yet consumed */
    int ok, errors, mismatched;
    char first_error[200];
    struct slot slots[STRESS_WINDOW];
};

/* A completion callback runs on the service thread and must not block: it only flags the
 * slot and signals the worker (a short, uncontended critical section). */
struct cb_arg {
    struct worker *w;
    struct slot *s;
};

static void on_done_signal(aip_future *f, void *user)
{
    (void)f;
    struct cb_arg *a = user;
    atomic_store(&a->s->done, 1);
    pthread_mutex_lock(&a->w->m);
    a->w->completed_pending++;
    pthread_cond_signal(&a->w->cv);
    pthread_mutex_unlock(&a->w->m);
}

static void check(struct worker *w, struct slot *s)
{
    int rc = aip_future_status(s->f);
    const aip_msg *m = aip_future_msg(s->f);
    char want[128];
    snprintf(want, sizeof want, "\"device_id\": \"%s\"", s->target);
    if (rc != 0 || !m) {
        if (!w->errors)
            snprintf(w->first_error, sizeof w->first_error, "%s: %s", aip_strerror(rc),
                     aip_future_error(s->f) ? aip_future_error(s->f) : "");
        w->errors++;
    } else if (!m->response_id || strcmp(m->response_id, s->id) != 0 || !m->result ||
               !strstr(m->result, want)) {
        w->mismatched++;
    } else {
        w->ok++;
    }
    aip_future_release(s->f);
    s->f = NULL;
}

static int submit(struct worker *w, struct slot *s, int n, struct cb_arg *arg)
{
    snprintf(s->id, sizeof s->id, "w%d-r%d", w->index, n);
    snprintf(s->target, sizeof s->target, "dev-%d-%d", w->index, n);
    atomic_store(&s->done, 0);
    arg->w = w;
    arg->s = s;
    aip_request_opts o = {
        .id = s->id, .timeout_ms = 60000, .callback = on_done_signal, .user = arg};
    return aip_conn_request_device_info(w->c, s->target, &o, &s->f);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    struct cb_arg args[STRESS_WINDOW];
    int sent = 0, finished = 0;
    for (int i = 0; i < STRESS_WINDOW && sent < g_requests; i++, sent++)
        if (submit(w, &w->slots[i], sent, &args[i]))
            w->errors++;
    while (finished < sent) {
        pthread_mutex_lock(&w->m);
        while (w->completed_pending == 0)
            pthread_cond_wait(&w->cv, &w->m);
        w->completed_pending = 0;
        pthread_mutex_unlock(&w->m);
        for (int i = 0; i < STRESS_WINDOW; i++) {
            struct slot *s = &w->slots[i];
            if (!s->f || !atomic_load(&s->done))
                continue;
            check(w, s);
            finished++;
            if (sent < g_requests) {
                if (submit(w, s, sent, &args[i])) {
                    w->errors++;
                    finished++;
                }
                sent++;
            }
        }
    }
    return NULL;
}

struct tasker {
    aip_conn *c;
    int ok, bad;
};

static void *task_main(void *p)
{
    struct tasker *t = p;
    for (int i = 0; i < TASKS; i++) {
        char req[64], sid[64];
        snprintf(req, sizeof req, "task number %d", i);
        snprintf(sid, sizeof sid, "stress@%d", i);
        aip_task_opts o = {.request = req, .session_id = sid, .req = {.timeout_ms = 60000}};
        aip_future *f;
        if (aip_conn_send_task(t->c, &o, &f)) {
            t->bad++;
            continue;
        }
        aip_future_wait(f, -1);
        const aip_msg *m = aip_future_msg(f);
        char want[80];
        snprintf(want, sizeof want, "\"echo\": \"%s\"", req);
        if (aip_future_status(f) == 0 && m && m->result && strstr(m->result, want) &&
            strcmp(m->session_id, sid) == 0)
            t->ok++;
        else
            t->bad++;
        aip_future_release(f);
    }
    return NULL;
}

static void test_many_threads_one_connection(void **state)
{
    (void)state;
    const char *scale = getenv("STRESS_SCALE");
    if (scale && atoi(scale) > 1)
        g_requests = STRESS_REQUESTS / atoi(scale);
    peer_proc p;
    assert_int_equal(peer_start(&p, 0, "--info-jitter-ms", "3", "--task-jitter-ms", "5", NULL), 0);
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = p.url;
    cfg.client_id = "stress-constellation";
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = "dev-0";
    cfg.heartbeat_ms = 100; /* heartbeats in flight all along */
    aip_conn *c;
    assert_int_equal(aip_conn_create(&cfg, &c), 0);
    assert_int_equal(aip_conn_wait_registered(c, 10000), 0);

    static struct worker ws[STRESS_THREADS];
    pthread_t th[STRESS_THREADS], tt;
    struct tasker tk = {c, 0, 0};
    double t0 = now_ms();
    for (int i = 0; i < STRESS_THREADS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].index = i;
        ws[i].c = c;
        pthread_mutex_init(&ws[i].m, NULL);
        pthread_cond_init(&ws[i].cv, NULL);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &ws[i]), 0);
    }
    assert_int_equal(pthread_create(&tt, NULL, task_main, &tk), 0);
    int ok = 0, errors = 0, mismatched = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += ws[i].ok;
        errors += ws[i].errors;
        mismatched += ws[i].mismatched;
        if (ws[i].errors)
            fprintf(stderr, "worker %d: first error: %s\n", i, ws[i].first_error);
    }
    pthread_join(tt, NULL);
    double secs = (now_ms() - t0) / 1000;
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    printf("stress: %d threads x %d requests: ok %d, errors %d, mismatched %d; tasks ok %d bad "
           "%d; %.1f s (%.0f req/s); frames sent %llu received %llu, late %llu unmatched %llu\n",
           STRESS_THREADS, g_requests, ok, errors, mismatched, tk.ok, tk.bad, secs,
           (ok + errors + mismatched) / secs, (unsigned long long)s.frames_sent,
           (unsigned long long)s.frames_received, (unsigned long long)s.late,
           (unsigned long long)s.unmatched);
    assert_int_equal(errors, 0);
    assert_int_equal(mismatched, 0);
    assert_int_equal(ok, STRESS_THREADS * g_requests);
    assert_int_equal(tk.ok, TASKS);
    assert_int_equal(s.late + s.unmatched, 0);
    assert_int_equal(s.pending, 0);
    assert_true(s.frames_sent > (unsigned long long)(ok + TASKS)); /* + heartbeats */
    aip_conn_destroy(c);
    peer_stop(&p);
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_mutex_destroy(&ws[i].m);
        pthread_cond_destroy(&ws[i].cv);
    }
}

int main(void)
{
    aip_log_set_level(AIP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_one_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
