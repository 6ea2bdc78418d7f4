/* SPDX-License-Identifier: MIT */
/*
 * Integration: the connection manager under network and server faults, on loopback.
 * A fault proxy (fault_proxy.py) sits between the client and the server where the fault is in
 * the network: a half-open link, a link reset while the outbound queue is full. The server is
 * killed (-9) and restarted for the reconnect storm. Timing figures are printed, and the
 * asserts have wide margins (2 busy cores, sanitizers).
 */
#include <aip/aip.h>

#include "peer_proc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AIP_TOOLS_DIR
#error "AIP_TOOLS_DIR must be defined"
#endif

/* ---- per-connection event times ---------------------------------------------------------- */

#define MAX_MARKS 64

struct track {
    pthread_mutex_t m;
    int registered, disconnected, backoffs;
    int last_close_code;
    uint32_t max_attempt;
    double t_registered[MAX_MARKS];   /* times of REGISTERED events */
    double t_disconnected[MAX_MARKS]; /* times of DISCONNECTED events */
    uint32_t delay_ms[MAX_MARKS];     /* BACKOFF delays, by event order */
    double t_backoff[MAX_MARKS];      /* and their times */
    uint32_t attempt[MAX_MARKS];
    int ndelays;
};

static void on_state(aip_conn *c, const aip_conn_event *ev, void *user)
{
    (void)c;
    struct track *t = user;
    double now = now_ms();
    pthread_mutex_lock(&t->m);
    switch (ev->state) {
    case AIP_CONN_REGISTERED:
        if (t->registered < MAX_MARKS)
            t->t_registered[t->registered] = now;
        t->registered++;
        break;
    case AIP_CONN_DISCONNECTED:
        if (t->disconnected < MAX_MARKS)
            t->t_disconnected[t->disconnected] = now;
        t->disconnected++;
        t->last_close_code = ev->close_code;
        break;
    case AIP_CONN_BACKOFF:
        if (t->ndelays < MAX_MARKS) {
            t->delay_ms[t->ndelays] = ev->delay_ms;
            t->t_backoff[t->ndelays] = now;
            t->attempt[t->ndelays] = ev->attempt;
        }
        t->ndelays++;
        if (ev->attempt > t->max_attempt)
            t->max_attempt = ev->attempt;
        t->backoffs++;
        break;
    default: break;
    }
    pthread_mutex_unlock(&t->m);
}

static int tracked(struct track *t, const int *field)
{
    pthread_mutex_lock(&t->m);
    int n = *field;
    pthread_mutex_unlock(&t->m);
    return n;
}

static void track_init(struct track *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->m, NULL);
}

static aip_conn *make_conn(const char *url, const char *id, aip_client_type type, struct track *t,
                           void (*tweak)(aip_conn_config *))
{
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = url;
    cfg.client_id = id;
    cfg.client_type = type;
    cfg.target_id = type == AIP_CLIENT_CONSTELLATION ? "dev-1" : NULL;
    cfg.on_state = on_state;
    cfg.user = t;
    if (tweak)
        tweak(&cfg);
    aip_conn *c = NULL;
    assert_int_equal(aip_conn_create(&cfg, &c), 0);
    return c;
}

static int wait_count(struct track *t, const int *field, int want, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    int n;
    while ((n = tracked(t, field)) < want && now_ms() < end)
        usleep(10000);
    return n;
}

/* ---- 1. half-open link ---------------------------------------------------------------------- */

static void one_second_heartbeat(aip_conn_config *cfg)
{
    cfg->heartbeat_ms = 1000; /* the defaults otherwise: backoff base 1 s, full jitter */
}

/* The proxy freezes the link both ways (nothing closes, nothing arrives). Liveness must find
 * it after 3 silent heartbeat intervals and a new connection must replace it: within 8 s. */
static void test_half_open_link_replaced(void **state)
{
    (void)state;
    peer_proc peer, px;
    assert_int_equal(peer_start(&peer, 1, NULL), 0);
    assert_int_equal(proxy_start(&px, peer.port), 0);
    static struct track t; /* static: a failed assert must not leave a live conn pointing into
                              a dead stack frame */
    track_init(&t);
    aip_conn *c = make_conn(px.url, "half-open-dev", AIP_CLIENT_DEVICE, &t, one_second_heartbeat);
    assert_int_equal(aip_conn_wait_registered(c, 10000), 0);
    sleep(2); /* a couple of heartbeats answered */

    double t0 = now_ms();
    assert_int_equal(proxy_cmd(&px, "stall"), 0);
    assert_int_equal(wait_count(&t, &t.disconnected, 1, 15000), 1);
    double t_detect = t.t_disconnected[0] - t0;
    assert_true(wait_count(&t, &t.registered, 2, 15000) >= 2);
    double t_new = t.t_registered[1] - t0;
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    printf("half-open: heartbeat 1000 ms; stalled link dropped by liveness after %.0f ms, "
           "new connection registered after %.0f ms (limit 8000)\n",
           t_detect, t_new);
    assert_int_equal(s.liveness_drops, 1);
    /* Not before 3 silent intervals. Measured from the stall, that is 2-3 s when the last
     * answer came through before it, and a little under 2 s when the stall swallowed the
     * answer in flight (the last frame heard is then the one before): 1.5 s as the floor. */
    assert_true(t_detect >= 1500 && t_detect <= 3000 + 1500);
    assert_true(t_new < 8000);
    /* the new link is a new TCP connection through the proxy, and the peer saw a second
     * registration */
    assert_true(peer_log_count(&px, "\"event\": \"connect\"", NULL) >= 2);
    assert_true(peer_log_wait(&peer, 2, 3000, "\"event\": \"registered\"", NULL) >= 2);
    aip_conn_destroy(c);
    peer_stop(&px);
    peer_stop(&peer);
}

/* Regression: liveness used to be checked only at heartbeat ticks, so a link whose last
 * frame (a heartbeat answer) came just after a tick was dropped at the 4th tick after it: 4
 * intervals. The peer answers 2 heartbeats, then nothing: the drop must come 3 intervals after
 * the 2nd answer, i.e. ~5 s after the registration (the old code: ~6 s). */
static void test_liveness_three_intervals_after_last_frame(void **state)
{
    (void)state;
    peer_proc peer;
    assert_int_equal(peer_start(&peer, 0, "--heartbeat-answers", "2", NULL), 0);
    static struct track t;
    track_init(&t);
    aip_conn *c = make_conn(peer.url, "liveness-dev", AIP_CLIENT_DEVICE, &t, one_second_heartbeat);
    assert_int_equal(wait_count(&t, &t.disconnected, 1, 15000), 1);
    double dt = t.t_disconnected[0] - t.t_registered[0];
    printf("liveness: 2 heartbeats answered, then silence: dropped %.0f ms after the "
           "registration (2 intervals + 3 silent ones = 5000)\n",
           dt);
    assert_true(dt >= 4900 && dt < 5800);
    aip_conn_destroy(c);
    peer_stop(&peer);
}

/* ---- 2. reconnect storm ------------------------------------------------------------------- */

#define STORM 200

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static int start_server(peer_proc *s, int port)
{
    memset(s, 0, sizeof *s);
    snprintf(s->errlog, sizeof s->errlog, "/tmp/aip-storm-server-%d.err", (int)getpid());
    static char bin[] = AIP_TOOLS_DIR "/aip-test-server";
    static char portf[] = "--port", nokey[] = "--no-token";
    char num[16];
    snprintf(num, sizeof num, "%d", port);
    char *argv[] = {bin, portf, num, nokey, NULL};
    return proc_start_listener(s, argv);
}

static void storm_tweak(aip_conn_config *cfg)
{
    cfg->heartbeat_ms = 5000;
    cfg->backoff_base_ms = 1000; /* the default base: full jitter over [0, 1 s] */
    cfg->backoff_cap_ms = 8000;
    cfg->thread_name = "aip-storm";
}

/* 200 device connections to aip-test-server; the server is killed (-9) and restarted on the
 * same port. Full jitter must spread their reconnect attempts (printed: percentiles of the
 * first attempt and of the re-registration after the kill), and all must come back. */
static void test_reconnect_storm_spread(void **state)
{
    (void)state;
    peer_proc srv;
    assert_int_equal(start_server(&srv, 0), 0);
    int port = srv.port;
    static struct track t[STORM];
    static aip_conn *c[STORM];
    char id[32];
    for (int i = 0; i < STORM; i++) {
        track_init(&t[i]);
        snprintf(id, sizeof id, "storm-%03d", i);
        c[i] = make_conn(srv.url, id, AIP_CLIENT_DEVICE, &t[i], storm_tweak);
    }
    for (int i = 0; i < STORM; i++) {
        assert_int_equal(aip_conn_wait_registered(c[i], 60000), 0);
        /* the state callback runs just after the waiters wake */
        assert_true(wait_count(&t[i], &t[i].registered, 1, 5000) >= 1);
    }

    static int ci[STORM], ri[STORM];
    for (int i = 0; i < STORM; i++) {
        ci[i] = tracked(&t[i], &t[i].ndelays);
        ri[i] = tracked(&t[i], &t[i].registered);
        assert_true(ci[i] < MAX_MARKS && ri[i] < MAX_MARKS);
    }
    double t_kill = now_ms();
    kill(srv.pid, SIGKILL);
    int st;
    waitpid(srv.pid, &st, 0);
    srv.pid = 0;
    peer_stop(&srv);
    usleep(300000); /* the server is away for 0.3 s */
    assert_int_equal(start_server(&srv, port), 0);
    double t_up = now_ms() - t_kill;

    double first[STORM], back[STORM];
    int missing = 0;
    for (int i = 0; i < STORM; i++) {
        if (wait_count(&t[i], &t[i].registered, ri[i] + 1, 60000) < ri[i] + 1) {
            missing++;
            continue;
        }
        pthread_mutex_lock(&t[i].m);
        /* the first attempt after the kill: its backoff event plus the delay drawn */
        first[i] = t[i].t_backoff[ci[i]] + t[i].delay_ms[ci[i]] - t_kill;
        back[i] = t[i].t_registered[ri[i]] - t_kill;
        pthread_mutex_unlock(&t[i].m);
    }
    assert_int_equal(missing, 0);
    qsort(first, STORM, sizeof first[0], cmp_double);
    qsort(back, STORM, sizeof back[0], cmp_double);
    printf("storm: %d connections, server killed -9 and listening again after %.0f ms\n", STORM,
           t_up);
    printf("storm: first reconnect attempt after the kill (ms): min %.0f p10 %.0f p50 %.0f "
           "p90 %.0f max %.0f\n",
           first[0], pct(first, STORM, 0.1), pct(first, STORM, 0.5), pct(first, STORM, 0.9),
           first[STORM - 1]);
    printf("storm: registered again after the kill (ms): min %.0f p10 %.0f p50 %.0f p90 %.0f "
           "max %.0f\n",
           back[0], pct(back, STORM, 0.1), pct(back, STORM, 0.5), pct(back, STORM, 0.9),
           back[STORM - 1]);
    /* full jitter over [0, 1 s]: p10..p90 of the first attempts spans ~800 ms; a thundering
     * herd (no jitter) would put them all within a few ms */
    assert_true(pct(first, STORM, 0.9) - pct(first, STORM, 0.1) >= 300);
    assert_true(pct(back, STORM, 0.9) - pct(back, STORM, 0.1) >= 300);
    for (int i = 0; i < STORM; i++)
        aip_conn_destroy(c[i]);
    peer_stop(&srv);
    unlink(srv.errlog);
}

/* ---- 3. registration refused forever ------------------------------------------------------- */

static void refuse_tweak(aip_conn_config *cfg)
{
    cfg->backoff_base_ms = 20;
    cfg->backoff_cap_ms = 300;
    cfg->heartbeat_ms = 1000;
}

/* A refusal for a lasting reason (the peer sends UFO's duplicate-client_id text) is retried on
 * the slow schedule: every delay in [3/4 cap, cap] from the first (not the fast backoff's ramp
 * from the base), never past the cap, and the client never gives up. */
static void test_refused_forever_backoff_caps_never_gives_up(void **state)
{
    (void)state;
    peer_proc peer;
    assert_int_equal(peer_start(&peer, 1, "--refuse-registration", "-1", NULL), 0);
    static struct track t; /* static: a failed assert must not leave a live conn pointing into
                              a dead stack frame */
    track_init(&t);
    aip_conn *c = make_conn(peer.url, "refused-dev", AIP_CLIENT_DEVICE, &t, refuse_tweak);
    sleep(6);
    aip_conn_stats s1;
    aip_conn_get_stats(c, &s1);
    sleep(3);
    aip_conn_stats s2;
    aip_conn_get_stats(c, &s2);
    pthread_mutex_lock(&t.m);
    int n = t.ndelays < MAX_MARKS ? t.ndelays : MAX_MARKS;
    uint32_t max_late = 0, max_early = 0, over_cap = 0, under = 0;
    for (int i = 0; i < n; i++) {
        if (t.attempt[i] <= 2 && t.delay_ms[i] > max_early)
            max_early = t.delay_ms[i];
        if (t.attempt[i] >= 6 && t.delay_ms[i] > max_late)
            max_late = t.delay_ms[i];
        over_cap += t.delay_ms[i] > 300;
        under += t.delay_ms[i] < 225;
    }
    uint32_t attempts = t.max_attempt;
    pthread_mutex_unlock(&t.m);
    printf("refused forever: %llu refusals in 9 s, %llu in the last 3 s; attempt %u; "
           "delay max %u ms for attempts <= 2, %u ms for attempts >= 6 (cap 300; slow schedule)\n",
           (unsigned long long)s2.registration_failures,
           (unsigned long long)(s2.registration_failures - s1.registration_failures), attempts,
           max_early, max_late);
    assert_int_equal(s2.registrations, 0);
    assert_true(s2.registration_failures > s1.registration_failures); /* still trying */
    assert_true(attempts >= 10);
    assert_int_equal(over_cap, 0);
    assert_int_equal(under, 0);    /* the slow schedule from the first refusal on */
    assert_true(max_early >= 225); /* the fast backoff would be at most 20, 40 here */
    assert_int_equal(s2.pending, 0);
    aip_conn_destroy(c);
    assert_true(peer_log_count(&peer, "register_refused", NULL) >= 10);
    peer_stop(&peer);
}

/* ---- 4. link lost while the outbound queue is full -------------------------------------- */

static void small_queue(aip_conn_config *cfg)
{
    cfg->max_queued_bytes = 256 * 1024;
    cfg->task_timeout_ms = 120000; /* only the lost link may end these requests */
    cfg->heartbeat_ms = 60000;     /* and not liveness either */
}

#define MAX_TASKS 4000

/* The proxy stalls the link: the kernel buffers fill, then the bounded queue. Sends past the
 * bound are refused at once (AIP_E_FULL, counted); then the link is reset: every accepted
 * request fails with AIP_E_CONN_LOST, the counters add up, nothing is left pending. */
static void test_link_lost_with_full_queue(void **state)
{
    (void)state;
    peer_proc peer, px;
    assert_int_equal(peer_start(&peer, 0, NULL), 0);
    assert_int_equal(proxy_start(&px, peer.port), 0);
    static struct track t; /* static: a failed assert must not leave a live conn pointing into
                              a dead stack frame */
    track_init(&t);
    aip_conn *c = make_conn(px.url, "queue-const", AIP_CLIENT_CONSTELLATION, &t, small_queue);
    assert_int_equal(aip_conn_wait_registered(c, 10000), 0);
    assert_int_equal(proxy_cmd(&px, "stall"), 0);
    usleep(300000);

    size_t n = 32 * 1024;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'q', n);
    text[n] = 0;
    static aip_future *fut[MAX_TASKS];
    int accepted = 0, full = 0, other = 0;
    double full_since = 0, end = now_ms() + 30000;
    /* fill until the queue has stayed full for 1 s: the socket buffers are full too */
    while (accepted < MAX_TASKS && now_ms() < end) {
        aip_task_opts to = {.request = text};
        int rc = aip_conn_send_task(c, &to, &fut[accepted]);
        if (rc == 0) {
            accepted++;
            full_since = 0;
            if (accepted % 50 == 0)
                usleep(20000); /* let the service thread push into the socket buffers */
            continue;
        }
        if (rc != AIP_E_FULL) {
            other++;
            break;
        }
        full++;
        if (!full_since)
            full_since = now_ms();
        else if (now_ms() - full_since >= 1000)
            break;
        usleep(10000);
    }
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    printf("full queue: %d tasks of 32 KiB accepted (%.1f MiB), %d refused with AIP_E_FULL, "
           "%d other; stats: requests %llu queue_full %llu pending %llu\n",
           accepted, accepted * 32.0 / 1024, full, other, (unsigned long long)s.requests,
           (unsigned long long)s.queue_full, (unsigned long long)s.pending);
    assert_int_equal(other, 0);
    assert_true(full >= 1);
    assert_true(accepted >= 1);
    assert_int_equal(s.queue_full, (uint64_t)full);
    assert_int_equal(s.requests, (uint64_t)accepted);
    assert_int_equal(s.pending, (uint64_t)accepted);

    double t0 = now_ms();
    assert_int_equal(proxy_cmd(&px, "reset"), 0);
    int lost = 0, ok = 0, bad = 0;
    for (int i = 0; i < accepted; i++) {
        int rc = aip_future_wait(fut[i], 20000);
        if (rc == AIP_E_CONN_LOST)
            lost++;
        else if (rc == 0)
            ok++;
        else
            bad++;
        aip_future_release(fut[i]);
    }
    double dt = now_ms() - t0;
    aip_conn_get_stats(c, &s);
    for (int i = 0; i < 200 && (s.conn_lost + s.completed < (uint64_t)accepted); i++) {
        usleep(10000);
        aip_conn_get_stats(c, &s);
    }
    printf("full queue: link reset; %d failed with AIP_E_CONN_LOST within %.0f ms, %d answered, "
           "%d other; stats: conn_lost %llu dropped_frames %llu pending %llu\n",
           lost, dt, ok, bad, (unsigned long long)s.conn_lost, (unsigned long long)s.dropped_frames,
           (unsigned long long)s.pending);
    assert_int_equal(bad, 0);
    assert_int_equal(lost + ok, accepted);
    assert_true(lost >= 1);
    assert_int_equal(s.conn_lost, (uint64_t)lost);
    assert_true(s.dropped_frames >= 1); /* the queued frames were dropped, and counted */
    assert_int_equal(s.pending, 0);
    assert_true(dt < 10000);
    assert_true(wait_count(&t, &t.registered, 2, 15000) >= 2); /* and the link comes back */
    free(text);
    aip_conn_destroy(c);
    peer_stop(&px);
    peer_stop(&peer);
}

/* ---- 5. hostile input at the transport --------------------------------------------------- */

static void hostile_case(const char *flag, const char *arg, int want_code, int *got_code,
                         aip_conn_stats *st)
{
    peer_proc peer;
    if (arg)
        assert_int_equal(peer_start(&peer, 1, flag, arg, NULL), 0);
    else
        assert_int_equal(peer_start(&peer, 1, flag, NULL), 0);
    static struct track t; /* static: a failed assert must not leave a live conn pointing into
                              a dead stack frame */
    track_init(&t);
    aip_conn *c = make_conn(peer.url, "hostile-dev", AIP_CLIENT_DEVICE, &t, refuse_tweak);
    assert_true(wait_count(&t, &t.registered, 2, 20000) >= 2); /* dropped, then back */
    *got_code = tracked(&t, &t.last_close_code);
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    printf("hostile %s: link closed with %d, reconnected; malformed %llu liveness drops %llu "
           "oversized %llu\n",
           flag, *got_code, (unsigned long long)s.malformed, (unsigned long long)s.liveness_drops,
           (unsigned long long)s.oversized);
    if (st)
        *st = s;
    aip_conn_destroy(c);
    if (want_code) {
        char code[16];
        snprintf(code, sizeof code, "%d", want_code);
        assert_true(peer_log_wait(&peer, 1, 3000, "\"event\": \"disconnect\"", code, NULL) >= 1);
        printf("hostile %s: the peer received close %d\n", flag, want_code);
    }
    peer_stop(&peer);
}

static bool one_oversized(aip_conn *c)
{
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    return s.oversized >= 1;
}

/* A 4 MiB text frame (the limit is 1 MiB) is skipped unread: counted, and the link stays up
 * (no close, no reconnect) through more than the liveness window. */
static void test_hostile_oversized_frame_skipped(void **state)
{
    (void)state;
    peer_proc peer;
    assert_int_equal(peer_start(&peer, 1, "--big-frame", "4194304", NULL), 0);
    static struct track t; /* static: see hostile_case */
    track_init(&t);
    aip_conn *c = make_conn(peer.url, "hostile-dev", AIP_CLIENT_DEVICE, &t, refuse_tweak);
    assert_true(wait_count(&t, &t.registered, 1, 10000) >= 1);
    double end = now_ms() + 20000;
    while (!one_oversized(c) && now_ms() < end)
        usleep(20000);
    sleep(4); /* heartbeats every 1 s: a dropped link would show within 3 s */
    aip_conn_stats s;
    aip_conn_get_stats(c, &s);
    printf("hostile --big-frame: skipped (oversized %llu), registrations %llu, disconnects %d, "
           "liveness drops %llu\n",
           (unsigned long long)s.oversized, (unsigned long long)s.registrations,
           tracked(&t, &t.disconnected), (unsigned long long)s.liveness_drops);
    assert_int_equal(s.oversized, 1);
    assert_int_equal(s.registrations, 1);
    assert_int_equal(s.liveness_drops, 0);
    assert_int_equal(tracked(&t, &t.disconnected), 0);
    assert_int_equal(aip_conn_get_state(c), AIP_CONN_REGISTERED);
    assert_int_equal(peer_log_count(&peer, "\"event\": \"disconnect\"", NULL), 0);
    aip_conn_destroy(c);
    peer_stop(&peer);
}

static void test_hostile_invalid_utf8_1007(void **state)
{
    (void)state;
    int code;
    /* the library closes with 1007 itself (the peer's log must show it) and reports the
     * link locally as lost (1006) */
    hostile_case("--bad-utf8", NULL, 1007, &code, NULL);
}

/* A message that never ends but keeps coming: skipped once past the limit (nothing more is
 * buffered), and, since nothing complete is heard, dropped by liveness. */
static void test_hostile_unfinished_trickle_skipped_then_liveness(void **state)
{
    (void)state;
    int code;
    aip_conn_stats s;
    hostile_case("--unfinished-message", "trickle", 0, &code, &s);
    assert_int_equal(code, 1006);
    assert_int_equal(s.oversized, 1);
    assert_true(s.liveness_drops >= 1);
}

static void test_hostile_unfinished_silent_liveness(void **state)
{
    (void)state;
    int code;
    hostile_case("--unfinished-message", "stop", 0, &code, NULL); /* found by liveness */
    assert_int_equal(code, 1006);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]); /* e.g. "*storm*" */
    aip_log_set_level(getenv("AIP_TEST_DEBUG") ? AIP_LOG_DEBUG : AIP_LOG_ERROR);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_open_link_replaced),
        cmocka_unit_test(test_liveness_three_intervals_after_last_frame),
        cmocka_unit_test(test_reconnect_storm_spread),
        cmocka_unit_test(test_refused_forever_backoff_caps_never_gives_up),
        cmocka_unit_test(test_link_lost_with_full_queue),
        cmocka_unit_test(test_hostile_oversized_frame_skipped),
        cmocka_unit_test(test_hostile_invalid_utf8_1007),
        cmocka_unit_test(test_hostile_unfinished_trickle_skipped_then_liveness),
        cmocka_unit_test(test_hostile_unfinished_silent_liveness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
