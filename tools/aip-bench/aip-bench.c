/* SPDX-License-Identifier: MIT */
/*
 * aip-bench — measure libaip end to end.
 *
 *   aip-bench rr --server URL --target DEVICE [--token T] [--encoding json|proto]
 *                (--requests N | --seconds S) [--threads T] [--inflight C] [--rate R]
 *   aip-bench raw --server ws://HOST:PORT/echo (--requests N | --seconds S) [--inflight C]
 *   aip-bench fleet --server URL --devices N [--ramp PER_S] [--seconds S] [--server-pid PID]
 *   aip-bench codec [FRAMES]
 *
 * rr: T threads share ONE connection (a constellation targeting DEVICE) and keep C
 * device-info requests in flight in total (N is a total too). Each thread owns C/T request
 * slots; a completion callback flags its slot and wakes the thread, which checks the answer
 * against its own request (the response_id must be the id that request chose, and the answer
 * must carry a system_info), records the latency, and sends the next request.
 * rr --rate R is open loop instead: one sender issues request i at t0 + i/R whatever the
 * answers do, and latency is measured from that intended send time (a stall is not hidden).
 * raw and fleet: see lws_modes.c.
 *
 * The last line of output is one JSON object: requests, ok, errors, mismatched, seconds,
 * req_per_s, p50_us, p99_us, p999_us, max_us, max_rss_kb (and the mode's parameters).
 * Exit 0 only if errors and mismatched are both 0; 1 otherwise; 2 on a usage error.
 */
#include <aip/aip.h>

#include "bench.h"
#include "usage.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(
        f, "usage: aip-bench rr --server URL --target DEVICE [--token T] [--encoding json|proto]\n"
           "                    (--requests N | --seconds S) [--threads T] [--inflight C]\n"
           "                    [--wait future|callback] [--rate R] [--timeout SECONDS]\n"
           "       aip-bench raw --server ws://HOST:PORT/echo (--requests N | --seconds S)\n"
           "                    [--inflight C]\n"
           "       aip-bench fleet --server URL --devices N [--ramp PER_SECOND] [--seconds S]\n"
           "                    [--server-pid PID] [--heartbeat SECONDS] [--task-rate R]\n"
           "                    [--encoding json|proto] [--token T]\n"
           "       aip-bench codec [FRAMES]\n"
           "\n"
           "rr     request/response: T threads share one connection and keep C device-info\n"
           "       requests in flight in total; every answer is checked against its own request.\n"
           "       With --rate R: open loop, R requests per second on a fixed schedule from one\n"
           "       sender, latency measured from each request's intended send time.\n"
           "raw    the transport ceiling: 200-byte binary frames echoed by aip-test-server's\n"
           "       /echo, C in flight over one connection; no codec, no futures.\n"
           "fleet  N device connections on one lws context in this process (register, heartbeat\n"
           "       every --heartbeat seconds, answer command batches), ramped at --ramp per\n"
           "       second; then for --seconds a constellation connection sends --task-rate tasks\n"
           "       per second to random devices. Reports connect time, task round trip, and\n"
           "       with --server-pid the server's RSS growth per connection and CPU (from /proc).\n"
           "       Raises RLIMIT_NOFILE to its hard limit.\n"
           "codec  encode+decode of a typical 3-action command frame, JSON and protobuf, per\n"
           "       second on one core (no network; default 200000 frames)\n"
           "\n"
           "  --server URL      AIP server (ws:// or wss://; raw and fleet: ws:// only)\n"
           "  --target DEVICE   the device whose info is requested\n"
           "  --token T         server key (default: env AIP_TOKEN)\n"
           "  --encoding E      json (default) or proto\n"
           "  --requests N      total requests (default 10000), or\n"
           "  --seconds S       run for S seconds instead (fleet: steady state, default 30)\n"
           "  --threads T       caller threads sharing the connection (default 4); 0: no\n"
           "                    caller threads, each completion callback sends the next\n"
           "                    request (on the service thread)\n"
           "  --wait W          how caller threads wait: future (default: each waits on its\n"
           "                    futures in order) or callback (a completion callback signals\n"
           "                    the thread's condition variable)\n"
           "  --inflight C      requests in flight in total (default 64, at least T)\n"
           "  --rate R          rr open loop: R requests per second (needs --seconds or\n"
           "                    --requests; --threads and --inflight are ignored)\n"
           "  --timeout SECONDS per-request timeout (default 30)\n"
           "  --devices N       fleet size (default 100)\n"
           "  --ramp PER_SECOND new fleet connections per second (default 1000; 0: all at once)\n"
           "  --heartbeat S     fleet heartbeat interval (default 5)\n"
           "  --task-rate R     fleet tasks per second (default 20)\n"
           "  --server-pid PID  the server's process, read from /proc (fleet)\n"
           "  --help, --version\n"
           "\n"
           "Output: progress on stderr, then one JSON line on stdout (rr and raw: requests, ok,\n"
           "errors, mismatched, seconds, req_per_s, p50_us, p99_us, p999_us, max_us, late,\n"
           "cpu_s (user+system CPU of this process), max_rss_kb; fleet: its own fields).\n"
           "Exit 0 only when errors and mismatched are both 0 (fleet: every device registered,\n"
           "none dropped, every task completed).\n");
}

static uint64_t now_ns(void)
{
    return bench_now_ns();
}

/* ---- rr ------------------------------------------------------------------------------------ */

struct rr_slot {
    struct rr_thread *th;
    aip_future *f;
    uint64_t start_ns;
    _Atomic uint64_t end_ns; /* set by the completion callback */
    char id[48];
};

struct rr_thread {
    int index;
    aip_conn *c;
    const char *target;
    int64_t timeout_ms;
    int window;
    struct rr_slot *slots;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int signalled;
    /* results */
    uint64_t ok, errors, mismatched;
    bench_lat lat;
    char first_error[200];
};

static _Atomic uint64_t g_budget; /* requests left to send (for --requests) */
static _Atomic bool g_stop;       /* for --seconds */
static _Atomic uint64_t g_seq;
static bool g_wait_callback; /* --wait callback: caller threads are woken by a callback */

static void rr_done(aip_future *f, void *user)
{
    (void)f;
    struct rr_slot *s = user;
    atomic_store_explicit(&s->end_ns, now_ns(), memory_order_release);
    struct rr_thread *t = s->th;
    if (!t)
        return; /* open loop: nobody waits on a condvar */
    pthread_mutex_lock(&t->m);
    t->signalled = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->m);
}

static bool take_budget(void)
{
    if (atomic_load_explicit(&g_stop, memory_order_relaxed))
        return false;
    uint64_t b = atomic_load_explicit(&g_budget, memory_order_relaxed);
    while (b > 0) {
        if (atomic_compare_exchange_weak(&g_budget, &b, b - 1))
            return true;
    }
    return false;
}

static int rr_send(struct rr_thread *t, struct rr_slot *s)
{
    snprintf(s->id, sizeof s->id, "bench-%d-%llu", t->index,
             (unsigned long long)atomic_fetch_add(&g_seq, 1));
    atomic_store(&s->end_ns, 0);
    if (!s->start_ns || s->th)
        s->start_ns = now_ns(); /* open loop sets the intended time itself */
    /* --wait future: the caller thread waits on the future itself, no callback */
    aip_future_cb cb = s->th && !g_wait_callback ? NULL : rr_done;
    aip_request_opts o = {.id = s->id, .timeout_ms = t->timeout_ms, .callback = cb, .user = s};
    int rc = aip_conn_request_device_info(t->c, t->target, &o, &s->f);
    if (rc) {
        s->f = NULL;
        if (!t->errors)
            snprintf(t->first_error, sizeof t->first_error, "send: %s", aip_strerror(rc));
        t->errors++;
    }
    return rc;
}

static void rr_check(struct rr_thread *t, struct rr_slot *s)
{
    uint64_t end = atomic_load_explicit(&s->end_ns, memory_order_acquire);
    int rc = aip_future_status(s->f);
    const aip_msg *m = aip_future_msg(s->f);
    if (rc) {
        if (!t->errors)
            snprintf(t->first_error, sizeof t->first_error, "%s: %s", aip_strerror(rc),
                     aip_future_error(s->f) ? aip_future_error(s->f) : "");
        t->errors++;
    } else if (!m || !m->response_id || strcmp(m->response_id, s->id) != 0 || !m->result ||
               m->result[0] != '{') {
        t->mismatched++;
    } else {
        t->ok++;
        bench_lat_add(&t->lat, end - s->start_ns);
    }
    aip_future_release(s->f);
    s->f = NULL;
}

/* Sends the first request of every slot of t's window; returns how many went out. */
static int rr_fill(struct rr_thread *t)
{
    int live = 0;
    for (int i = 0; i < t->window; i++)
        if (take_budget() && rr_send(t, &t->slots[i]) == 0)
            live++;
    return live;
}

/* Checks the answer of slot s and sends its next request: -1, or 0 when one went out. */
static int rr_next(struct rr_thread *t, struct rr_slot *s)
{
    rr_check(t, s);
    return take_budget() && rr_send(t, s) == 0 ? 0 : -1;
}

/* --wait future (the default): each caller thread waits on its requests' futures in the order
 * it sent them (aip_future_wait), checks each answer and sends the next request in its place.
 * The library settles every answer of a socket read before it wakes anyone, so one wake-up
 * gives a thread all of its answers that the read carried. */
static void *rr_main_wait(void *arg)
{
    struct rr_thread *t = arg;
    int live = rr_fill(t);
    for (int i = 0; live > 0; i = i + 1 < t->window ? i + 1 : 0) {
        struct rr_slot *s = &t->slots[i];
        if (!s->f)
            continue;
        aip_future_wait(s->f, t->timeout_ms + 5000); /* the request times out on its own */
        atomic_store_explicit(&s->end_ns, now_ns(), memory_order_release);
        live += rr_next(t, s);
    }
    return NULL;
}

/* --wait callback: each completion callback (service thread) flags its slot and signals the
 * caller thread's condition variable; the thread checks every flagged slot. */
static void *rr_main(void *arg)
{
    struct rr_thread *t = arg;
    int live = rr_fill(t);
    while (live > 0) {
        pthread_mutex_lock(&t->m);
        while (!t->signalled)
            pthread_cond_wait(&t->cv, &t->m);
        t->signalled = 0;
        pthread_mutex_unlock(&t->m);
        for (int i = 0; i < t->window; i++) {
            struct rr_slot *s = &t->slots[i];
            if (!s->f || !atomic_load_explicit(&s->end_ns, memory_order_acquire))
                continue;
            live += rr_next(t, s);
        }
    }
    return NULL;
}

/* --threads 0: no caller threads. The main thread issues the first C requests; after that each
 * completion callback (on the service thread) checks its answer and issues the next request
 * itself — the single-event-loop shape of the Python baseline, without waking a caller thread
 * per answer. */
struct cb_state {
    aip_conn *c;
    const char *target;
    int64_t timeout_ms;
    _Atomic int live;
    pthread_mutex_t m;
    pthread_cond_t cv;
    uint64_t ok, errors, mismatched; /* service thread only */
    bench_lat lat;                   /* service thread only */
    char first_error[200];
};

struct cb_slot {
    struct cb_state *st;
    uint64_t start_ns;
    char id[48];
};

static void cb_done(aip_future *f, void *user);

static int cb_send(struct cb_slot *s)
{
    struct cb_state *st = s->st;
    snprintf(s->id, sizeof s->id, "bench-cb-%llu", (unsigned long long)atomic_fetch_add(&g_seq, 1));
    s->start_ns = now_ns();
    aip_future *f;
    aip_request_opts o = {
        .id = s->id, .timeout_ms = st->timeout_ms, .callback = cb_done, .user = s};
    return aip_conn_request_device_info(st->c, st->target, &o, &f);
    /* the reference in f is released by cb_done, which may already have run */
}

static void cb_finish_one(struct cb_state *st)
{
    if (atomic_fetch_sub(&st->live, 1) == 1) {
        pthread_mutex_lock(&st->m);
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->m);
    }
}

static void cb_done(aip_future *f, void *user)
{
    uint64_t end = now_ns();
    struct cb_slot *s = user;
    struct cb_state *st = s->st;
    int rc = aip_future_status(f);
    const aip_msg *m = aip_future_msg(f);
    if (rc) {
        if (!st->errors)
            snprintf(st->first_error, sizeof st->first_error, "%s: %s", aip_strerror(rc),
                     aip_future_error(f) ? aip_future_error(f) : "");
        st->errors++;
    } else if (!m || !m->response_id || strcmp(m->response_id, s->id) != 0 || !m->result ||
               m->result[0] != '{') {
        st->mismatched++;
    } else {
        st->ok++;
        bench_lat_add(&st->lat, end - s->start_ns);
    }
    aip_future_release(f); /* the caller's reference */
    if (take_budget()) {
        int src = cb_send(s);
        if (!src)
            return;
        if (!st->errors)
            snprintf(st->first_error, sizeof st->first_error, "send: %s", aip_strerror(src));
        st->errors++;
    }
    cb_finish_one(st);
}

/* Returns ok/errors/mismatched/latencies through *t. */
static void rr_callbacks(aip_conn *c, const char *target, int64_t timeout_ms, int inflight,
                         double seconds, struct rr_thread *t)
{
    struct cb_state st = {.c = c, .target = target, .timeout_ms = timeout_ms};
    pthread_mutex_init(&st.m, NULL);
    pthread_cond_init(&st.cv, NULL);
    struct cb_slot *slots = calloc((size_t)inflight, sizeof *slots);
    uint64_t send_errors = 0;
    atomic_store(&st.live, 1); /* held by this thread while it issues the first window */
    for (int i = 0; slots && i < inflight; i++) {
        slots[i].st = &st;
        if (!take_budget())
            break;
        atomic_fetch_add(&st.live, 1);
        if (cb_send(&slots[i])) {
            send_errors++;
            atomic_fetch_sub(&st.live, 1);
        }
    }
    if (seconds > 0) {
        usleep((useconds_t)(seconds * 1e6));
        atomic_store(&g_stop, true);
    }
    pthread_mutex_lock(&st.m);
    if (atomic_fetch_sub(&st.live, 1) != 1)
        while (atomic_load(&st.live) > 0)
            pthread_cond_wait(&st.cv, &st.m);
    pthread_mutex_unlock(&st.m);
    t->ok = st.ok;
    t->errors = st.errors + send_errors;
    t->mismatched = st.mismatched;
    t->lat = st.lat;
    snprintf(t->first_error, sizeof t->first_error, "%s", st.first_error);
    free(slots);
    pthread_mutex_destroy(&st.m);
    pthread_cond_destroy(&st.cv);
}

/* Open loop: request i goes out at t0 + i / rate (or as soon after as this thread can), and its
 * latency counts from t0 + i / rate. Returns the number of requests issued. */
static uint64_t rr_open_loop(struct rr_thread *t, double rate, uint64_t total)
{
    uint64_t period = (uint64_t)(1e9 / rate);
    uint64_t t0 = now_ns() + 1000000;
    for (uint64_t i = 0; i < total; i++) {
        uint64_t when = t0 + i * period;
        struct timespec ts = {(time_t)(when / 1000000000u), (long)(when % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
            ;
        struct rr_slot *s = &t->slots[i];
        s->start_ns = when;
        rr_send(t, s);
    }
    for (uint64_t i = 0; i < total; i++) {
        struct rr_slot *s = &t->slots[i];
        if (!s->f)
            continue;
        aip_future_wait(s->f, t->timeout_ms + 5000);
        rr_check(t, s);
    }
    return total;
}

static int run_rr(const char *server, const char *target, const char *token, aip_encoding enc,
                  uint64_t requests, double seconds, int threads, int inflight, double timeout_s,
                  double rate)
{
    tool_reg_waiter w = TOOL_REG_WAITER_INIT;
    char client_id[128];
    snprintf(client_id, sizeof client_id, "aip-bench-%ld@%s", (long)getpid(), target);
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = server;
    cfg.client_id = client_id;
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = target;
    cfg.token = token;
    cfg.encoding = enc;
    cfg.on_state = tool_reg_on_state;
    cfg.user = &w;
    cfg.max_pending = rate > 0 ? (size_t)(rate * 4) + 1024 : (size_t)inflight * 2 + 16;
    aip_conn *c;
    int rc = aip_conn_create(&cfg, &c);
    if (rc) {
        fprintf(stderr, "aip-bench: cannot start: %s\n", aip_strerror(rc));
        return 1;
    }
    if (tool_reg_wait(&w, 10, "aip-bench")) {
        aip_conn_destroy(c);
        return 1;
    }
    bool proto = aip_conn_encoding(c) == AIP_ENCODING_PROTO;
    if (enc == AIP_ENCODING_PROTO && !proto)
        fprintf(stderr, "aip-bench: the server refused protobuf; measuring JSON\n");

    bool callbacks = threads == 0 && rate <= 0;
    if (rate > 0) {
        threads = 1;
        inflight = 0;
    }
    if (callbacks || threads < 1)
        threads = 1; /* one result record, filled by rr_callbacks */
    atomic_store(&g_budget, seconds > 0 ? UINT64_MAX : requests);
    atomic_store(&g_stop, false);
    struct rr_thread *ts = calloc((size_t)threads, sizeof *ts);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    if (!ts || !th) {
        free(ts);
        free(th);
        aip_conn_destroy(c);
        return 1;
    }
    uint64_t t0 = now_ns();
    double secs;
    if (callbacks) {
        rr_callbacks(c, target, (int64_t)(timeout_s * 1000), inflight, seconds, &ts[0]);
        secs = (double)(now_ns() - t0) / 1e9;
    } else if (rate > 0) {
        struct rr_thread *t = &ts[0];
        uint64_t total = seconds > 0 ? (uint64_t)(seconds * rate) : requests;
        t->c = c;
        t->target = target;
        t->timeout_ms = (int64_t)(timeout_s * 1000);
        t->slots = calloc(total ? total : 1, sizeof *t->slots);
        if (t->slots)
            rr_open_loop(t, rate, total);
        /* the schedule's length, not the drain: req_per_s is the offered rate achieved */
        secs = (double)total / rate;
    } else {
        for (int i = 0; i < threads; i++) {
            struct rr_thread *t = &ts[i];
            t->index = i;
            t->c = c;
            t->target = target;
            t->timeout_ms = (int64_t)(timeout_s * 1000);
            t->window = inflight / threads + (i < inflight % threads);
            t->slots = calloc((size_t)(t->window ? t->window : 1), sizeof *t->slots);
            for (int k = 0; t->slots && k < t->window; k++)
                t->slots[k].th = t;
            pthread_mutex_init(&t->m, NULL);
            pthread_cond_init(&t->cv, NULL);
            pthread_create(&th[i], NULL, g_wait_callback ? rr_main : rr_main_wait, t);
        }
        if (seconds > 0) {
            usleep((useconds_t)(seconds * 1e6));
            atomic_store(&g_stop, true);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        secs = (double)(now_ns() - t0) / 1e9;
    }
    uint64_t ok = 0, errors = 0, mismatched = 0;
    bench_lat all = {0};
    for (int i = 0; i < threads; i++) {
        ok += ts[i].ok;
        errors += ts[i].errors;
        mismatched += ts[i].mismatched;
        bench_lat_merge(&all, &ts[i].lat);
        if (ts[i].errors)
            fprintf(stderr, "aip-bench: thread %d: %llu errors, first: %s\n", i,
                    (unsigned long long)ts[i].errors, ts[i].first_error);
    }
    aip_conn_stats st;
    aip_conn_get_stats(c, &st);
    aip_conn_destroy(c);
    bench_result r = {
        .mode = "rr",
        .encoding = proto ? "proto" : "json",
        .threads = callbacks ? 0 : threads,
        .inflight = inflight,
        .rate = rate,
        .requests = ok + errors + mismatched,
        .ok = ok,
        .errors = errors,
        .mismatched = mismatched,
        .late = st.late,
        .seconds = secs,
    };
    bench_print(&r, &all);
    for (int i = 0; i < threads; i++) {
        free(ts[i].slots);
        if (rate <= 0 && !callbacks) {
            pthread_mutex_destroy(&ts[i].m);
            pthread_cond_destroy(&ts[i].cv);
        }
    }
    bench_lat_free(&all);
    free(ts);
    free(th);
    return errors == 0 && mismatched == 0 && r.requests > 0 ? 0 : 1;
}

/* ---- codec: encode+decode of a typical command frame, no network ------------------------ */

static const char typical_command[] =
    "{\"type\":\"command\",\"status\":\"continue\",\"session_id\":\"task-1@0f8fad5b-d9cb-469f-a165-"
    "70867728950e\",\"response_id\":\"7c9e6679-7425-40de-944b-e07fc1f90ae7\",\"actions\":[{\"tool_"
    "name\":\"get_device_info\",\"parameters\":{},\"tool_type\":\"data_collection\",\"call_id\":"
    "\"c1\"},{\"tool_name\":\"execute_command\",\"parameters\":{\"command\":\"/usr/bin/uptime\","
    "\"timeout\":30.0},\"tool_type\":\"action\",\"call_id\":\"c2\"},{\"tool_name\":\"read_file\","
    "\"parameters\":{\"path\":\"/var/log/app/current.log\",\"max_bytes\":65536},\"tool_type\":"
    "\"data_collection\",\"call_id\":\"c3\"}],\"timestamp\":\"2026-11-22T06:30:12.512337+00:00\"}";

static int run_codec(uint64_t n)
{
    aip_msg m;
    aip_decode_error err;
    if (aip_json_decode(AIP_ENVELOPE_SERVER, typical_command, strlen(typical_command), NULL, &m,
                        &err)) {
        fprintf(stderr, "aip-bench: %s\n", err.reason);
        return 1;
    }
    aip_buf b;
    aip_buf_init(&b, 0);
    static const char *const names[] = {"json", "proto"};
    printf("{\"mode\":\"codec\",\"frames\":%llu", (unsigned long long)n);
    for (int e = 0; e < 2; e++) {
        aip_encoding enc = e ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
        uint64_t t0 = now_ns();
        size_t bytes = 0;
        for (uint64_t i = 0; i < n; i++) {
            b.len = 0;
            aip_msg back;
            if (aip_encode(enc, &m, &b) ||
                aip_decode(enc, AIP_ENVELOPE_SERVER, b.data, b.len, NULL, &back, &err)) {
                fprintf(stderr, "aip-bench: round trip failed\n");
                return 1;
            }
            bytes = b.len;
            aip_msg_clear(&back);
        }
        double secs = (double)(now_ns() - t0) / 1e9;
        printf(",\"%s_bytes\":%zu,\"%s_roundtrips_per_s\":%.0f", names[e], bytes, names[e],
               (double)n / secs);
    }
    printf("}\n");
    aip_buf_free(&b);
    aip_msg_clear(&m);
    return 0;
}

/* Parses one numeric option value into a long or a double (the tool_arg_* messages). */
static int num_opt(const char *prog, const char *opt, const char *s, double min, bool above,
                   double max, const char *unit, double *out)
{
    return tool_arg_num(prog, opt, s, min, above, max, unit, out);
}

static int int_opt(const char *prog, const char *opt, const char *s, long long min, long long max,
                   long *out)
{
    long long v;
    if (tool_arg_int(prog, opt, s, min, max, &v))
        return 2;
    *out = (long)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "codec") == 0) {
        long long frames = 200000;
        if (argc > 3)
            return tool_usage_error("aip-bench codec", "%s: unexpected argument (only FRAMES)",
                                    argv[3]);
        if (argc == 3 &&
            tool_arg_int("aip-bench codec", "FRAMES", argv[2], 1, 1000000000000LL, &frames))
            return 2;
        return run_codec((uint64_t)frames);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("aip-bench %s\n", aip_version());
        return 0;
    }
    if (argc < 2)
        return tool_usage_error("aip-bench", "no mode: give rr, raw, fleet or codec");
    const char *mode = argv[1];
    if (strcmp(mode, "rr") != 0 && strcmp(mode, "raw") != 0 && strcmp(mode, "fleet") != 0)
        return tool_usage_error("aip-bench", "%s: not a mode (rr, raw, fleet, codec)", mode);
    char prog[32];
    snprintf(prog, sizeof prog, "aip-bench %s", mode);
    static const struct option opts[] = {
        {"server", required_argument, 0, 's'},
        {"target", required_argument, 0, 'g'},
        {"token", required_argument, 0, 't'},
        {"encoding", required_argument, 0, 'e'},
        {"requests", required_argument, 0, 'n'},
        {"seconds", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 'T'},
        {"wait", required_argument, 0, 'w'},
        {"inflight", required_argument, 0, 'c'},
        {"timeout", required_argument, 0, 'o'},
        {"rate", required_argument, 0, 'r'},
        {"devices", required_argument, 0, 'd'},
        {"ramp", required_argument, 0, 'R'},
        {"heartbeat", required_argument, 0, 'H'},
        {"task-rate", required_argument, 0, 'k'},
        {"server-pid", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static const char *const encodings[] = {"json", "proto", "protobuf", NULL};
    static const char *const waits[] = {"future", "callback", NULL};
    const char *server = NULL, *target = NULL, *token = getenv("AIP_TOKEN");
    aip_encoding enc = AIP_ENCODING_JSON;
    long requests = -1;
    double seconds = 0, timeout_s = 30, rate = 0, ramp = 1000, heartbeat = 5, task_rate = 20;
    long threads = 4, inflight = 64, devices = 100, server_pid = 0;
    bool have_seconds = false;
    int c, ix, bad = 0;
    optind = 2;
    opterr = 0;
    while (!bad && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (tool_arg_ws_url(prog, "--server", optarg))
                return 2;
            server = optarg;
            break;
        case 'g': target = optarg; break;
        case 't': token = optarg; break;
        case 'e':
            bad = tool_arg_choice(prog, "--encoding", optarg, encodings, &ix);
            enc = ix ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
            break;
        case 'n': bad = int_opt(prog, "--requests", optarg, 1, 1000000000000LL, &requests); break;
        case 'S':
            bad = num_opt(prog, "--seconds", optarg, 0, true, 86400, "seconds", &seconds);
            have_seconds = true;
            break;
        case 'T': bad = int_opt(prog, "--threads", optarg, 0, 1024, &threads); break;
        case 'w':
            bad = tool_arg_choice(prog, "--wait", optarg, waits, &ix);
            g_wait_callback = ix == 1;
            break;
        case 'c': bad = int_opt(prog, "--inflight", optarg, 1, 1000000, &inflight); break;
        case 'o':
            bad = num_opt(prog, "--timeout", optarg, 0, true, 86400, "seconds", &timeout_s);
            break;
        case 'r':
            bad = num_opt(prog, "--rate", optarg, 0, true, 1e7, "requests per second", &rate);
            break;
        case 'd': bad = int_opt(prog, "--devices", optarg, 1, 1000000, &devices); break;
        case 'R':
            bad = num_opt(prog, "--ramp", optarg, 0, false, 1e7, "connections per second", &ramp);
            break;
        case 'H':
            bad = num_opt(prog, "--heartbeat", optarg, 0, true, 3600, "seconds", &heartbeat);
            break;
        case 'k':
            bad =
                num_opt(prog, "--task-rate", optarg, 0, false, 1e6, "tasks per second", &task_rate);
            break;
        case 'p': bad = int_opt(prog, "--server-pid", optarg, 1, 0x7fffffff, &server_pid); break;
        case 'h': usage(stdout); return 0;
        default: return tool_option_error(prog, c, argv, opts);
        }
    }
    if (bad)
        return 2;
    if (optind != argc)
        return tool_usage_error(prog, "%s: unexpected argument", argv[optind]);
    if (!server)
        return tool_usage_error(prog, "--server is required");
    if (requests >= 0 && have_seconds)
        return tool_usage_error(prog, "give --requests or --seconds, not both");
    bool is_fleet = strcmp(mode, "fleet") == 0, is_raw = strcmp(mode, "raw") == 0;
    if ((is_fleet || is_raw) && strncmp(server, "ws://", 5) != 0)
        return tool_usage_error(prog, "--server: %s takes a ws:// URL (no TLS)", mode);
    /* options another mode reads: refused rather than silently ignored */
    struct {
        bool given;
        const char *name;
        bool rr, raw, fleet;
    } const other[] = {
        {target != NULL, "--target", true, false, false},
        {requests >= 0, "--requests", true, true, false},
        {threads != 4, "--threads", true, false, false},
        {g_wait_callback, "--wait", true, false, false},
        {inflight != 64, "--inflight", true, true, false},
        {rate > 0, "--rate", true, false, false},
        {devices != 100, "--devices", false, false, true},
        {server_pid != 0, "--server-pid", false, false, true},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (other[i].given && !(is_fleet ? other[i].fleet : is_raw ? other[i].raw : other[i].rr))
            return tool_usage_error(prog, "%s is not an option of %s", other[i].name, mode);
    aip_log_set_level(AIP_LOG_ERROR);
    if (is_fleet) {
        bench_fleet_opts fo = {
            .server = server,
            .token = token,
            .proto = enc == AIP_ENCODING_PROTO,
            .devices = (int)devices,
            .ramp = ramp,
            .seconds = seconds > 0 ? seconds : 30,
            .task_rate = task_rate,
            .heartbeat_ms = (uint32_t)(heartbeat * 1000),
            .server_pid = (int)server_pid,
        };
        return bench_run_fleet(&fo);
    }
    if (requests < 0 && seconds <= 0)
        requests = 10000;
    if (is_raw)
        return bench_run_raw(server, (uint64_t)(requests < 0 ? 0 : requests), seconds,
                             (int)inflight);
    if (!target)
        return tool_usage_error(prog, "--target is required");
    if (inflight < threads)
        inflight = threads;
    return run_rr(server, target, token, enc, (uint64_t)(requests < 0 ? 0 : requests), seconds,
                  (int)threads, (int)inflight, timeout_s, rate);
}
