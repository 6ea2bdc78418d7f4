/* SPDX-License-Identifier: MIT */
/* Unit tests: futures — exactly-once completion under racing completers, waits with deadlines
 * on the caller's own clock, callbacks, cancel, reference counting from either side. */
#include <aip/aip.h>
#include <aip/port.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip/internal/future_settle.h"
#include "aip_test_assert.h"
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static void test_complete_once_with_message(void **state)
{
    (void)state;
    aip_future *f = aip_future_create();
    assert_false(aip_future_done(f));
    assert_aip(aip_future_status(f), AIP_E_STATE);
    assert_null(aip_future_msg(f));
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END, AIP_STATUS_COMPLETED);
    aip_msg_set_str(&m.session_id, "s1");
    assert_int_equal(aip_future_complete(f, 0, &m, NULL), 0);
    assert_null(m.session_id); /* moved */
    aip_msg m2;
    aip_msg_init(&m2, AIP_ENVELOPE_SERVER, AIP_MSG_ERROR, AIP_STATUS_ERROR);
    aip_msg_set_str(&m2.error, "late");
    assert_aip(aip_future_complete(f, AIP_E_REMOTE, &m2, "x"), AIP_E_STATE);
    assert_null(m2.error); /* ownership moves even when the completion loses */
    assert_int_equal(aip_future_wait(f, 0), 0);
    assert_string_equal(aip_future_msg(f)->session_id, "s1");
    assert_null(aip_future_error(f));
    assert_aip(aip_future_cancel(f), AIP_E_STATE);
    aip_future_release(f);
}

static void test_wait_timeout_is_the_callers(void **state)
{
    (void)state;
    aip_future *f = aip_future_create();
    uint64_t t0 = aip_now_ns(NULL);
    assert_aip(aip_future_wait(f, 30), AIP_E_TIMEOUT);
    assert_true(aip_now_ns(NULL) - t0 >= 30000000u);
    assert_false(aip_future_done(f)); /* a wait timeout does not complete the request */
    assert_int_equal(aip_future_complete(f, AIP_E_TIMEOUT, NULL, "deadline"), 0);
    assert_aip(aip_future_wait(f, -1), AIP_E_TIMEOUT);
    assert_string_equal(aip_future_error(f), "deadline");
    aip_future_release(f);
}

static int g_calls;
static void cb(aip_future *f, void *user)
{
    (void)f;
    *(int *)user += 1;
    g_calls++;
}

static void test_callback_before_and_after(void **state)
{
    (void)state;
    int n = 0;
    aip_future *f = aip_future_create();
    aip_future_set_callback(f, cb, &n);
    assert_int_equal(n, 0);
    aip_future_cancel(f);
    assert_int_equal(n, 1);
    assert_aip(aip_future_status(f), AIP_E_CANCELLED);
    aip_future_set_callback(f, cb, &n); /* already consumed: not run again */
    assert_int_equal(n, 1);
    aip_future_release(f);

    int k = 0;
    aip_future *g = aip_future_create();
    aip_future_complete(g, 0, NULL, NULL);
    aip_future_set_callback(g, cb, &k); /* set after completion: runs at once */
    assert_int_equal(k, 1);
    aip_future_release(g);
}

struct race {
    aip_future *f;
    _Atomic int wins;
    _Atomic int go;
    int status;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->go))
        ;
    int rc = r->status == AIP_E_CANCELLED ? aip_future_cancel(r->f)
                                          : aip_future_complete(r->f, r->status, NULL, "r");
    if (rc == 0)
        atomic_fetch_add(&r->wins, 1);
    return NULL;
}

static void test_racing_completion_exactly_once(void **state)
{
    (void)state;
    for (int round = 0; round < 300; round++) {
        struct race shared = {0};
        shared.f = aip_future_create();
        int n = 0;
        aip_future_set_callback(shared.f, cb, &n);
        static const int statuses[] = {0, AIP_E_TIMEOUT, AIP_E_CANCELLED, AIP_E_CONN_LOST};
        struct race rs[4];
        aip_thread th[4];
        for (int i = 0; i < 4; i++) {
            rs[i].f = shared.f;
            rs[i].status = statuses[i];
        }
        /* all racers share one counter and start flag through rs[0] */
        for (int i = 0; i < 4; i++) {
            rs[i].go = 0;
            rs[i].wins = 0;
        }
        for (int i = 0; i < 4; i++)
            aip_thread_start(&th[i], "racer", racer, &rs[i]);
        for (int i = 0; i < 4; i++)
            atomic_store(&rs[i].go, 1);
        for (int i = 0; i < 4; i++)
            aip_thread_join(&th[i]);
        int wins = 0;
        for (int i = 0; i < 4; i++)
            wins += atomic_load(&rs[i].wins);
        assert_int_equal(wins, 1);
        assert_int_equal(n, 1);
        int st = aip_future_status(shared.f);
        assert_true(st == 0 || st == AIP_E_TIMEOUT || st == AIP_E_CANCELLED ||
                    st == AIP_E_CONN_LOST);
        aip_future_release(shared.f);
    }
}

static void *waiter(void *arg)
{
    aip_future *f = arg;
    int rc = aip_future_wait(f, 5000);
    aip_future_release(f);
    return (void *)(intptr_t)rc;
}

static void test_waiters_wake_and_release_from_either_side(void **state)
{
    (void)state;
    aip_future *f = aip_future_create();
    aip_thread th[8];
    for (int i = 0; i < 8; i++) {
        aip_future_retain(f);
        aip_thread_start(&th[i], "waiter", waiter, f);
    }
    aip_future_complete(f, AIP_E_CONN_LOST, NULL, "gone");
    aip_future_release(f); /* the completer's side lets go first */
    for (int i = 0; i < 8; i++) {
        void *rv;
        pthread_join(th[i].t, &rv);
        assert_aip((int)(intptr_t)rv, AIP_E_CONN_LOST);
    }
}

/* Settle then notify (the service thread's two steps, future_settle.h): done and the result
 * are visible at once; a thread already asleep in wait() and the callback wait for notify. */
struct sleeper {
    aip_future *f;
    _Atomic int state; /* 0 started, 1 about to wait, 2 returned */
    _Atomic long tid;
    int rc;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    atomic_store(&s->tid, (long)syscall(SYS_gettid));
    atomic_store(&s->state, 1);
    s->rc = aip_future_wait(s->f, 10000);
    atomic_store(&s->state, 2);
    return NULL;
}

/* Waits (up to 10 s) until thread tid sleeps (state S in /proc). */
static bool blocked(long tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    for (int i = 0; i < 10000; i++) {
        FILE *fp = fopen(path, "r");
        char line[512] = "";
        if (fp) {
            if (!fgets(line, sizeof line, fp))
                line[0] = 0;
            fclose(fp);
        }
        const char *p = strrchr(line, ')');
        if (p && p[1] == ' ' && p[2] == 'S')
            return true;
        usleep(1000);
    }
    return false;
}

static void test_settle_then_notify(void **state)
{
    (void)state;
    /* the callback set before settle runs at notify, once */
    int n = 0;
    aip_future *f = aip_future_create();
    aip_future_set_callback(f, cb, &n);
    struct sleeper sl = {.f = f};
    aip_thread th;
    aip_thread_start(&th, "sleeper", sleeper_main, &sl);
    while (atomic_load(&sl.state) == 0)
        ;
    assert_true(blocked(atomic_load(&sl.tid))); /* asleep in wait() */
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END, AIP_STATUS_COMPLETED);
    aip_msg_set_str(&m.session_id, "s1");
    assert_int_equal(aip_future_settle(f, 0, &m, NULL), 0);
    assert_null(m.session_id); /* moved */
    assert_true(aip_future_done(f));
    assert_int_equal(aip_future_wait(f, 0), 0);
    assert_string_equal(aip_future_msg(f)->session_id, "s1");
    assert_int_equal(n, 0); /* not yet */
    /* a second completion loses, before or after notify; no second callback */
    assert_aip(aip_future_complete(f, AIP_E_TIMEOUT, NULL, "late"), AIP_E_STATE);
    assert_aip(aip_future_cancel(f), AIP_E_STATE);
    usleep(20 * 1000);
    assert_int_equal(atomic_load(&sl.state), 1); /* asleep until notified */
    aip_future_notify(f);
    assert_int_equal(n, 1);
    aip_thread_join(&th);
    assert_int_equal(sl.rc, 0);
    aip_future_notify(f); /* owed once: a spare notify runs nothing */
    assert_int_equal(n, 1);
    aip_future_release(f);

    /* a callback set between settle and notify runs at once on the setter; notify owes none */
    int k = 0;
    aip_future *g = aip_future_create();
    assert_int_equal(aip_future_settle(g, AIP_E_CONN_LOST, NULL, "gone"), 0);
    aip_future_set_callback(g, cb, &k);
    assert_int_equal(k, 1);
    aip_future_notify(g);
    assert_int_equal(k, 1);
    assert_string_equal(aip_future_error(g), "gone");
    assert_aip(aip_future_settle(g, 0, NULL, NULL), AIP_E_STATE);
    assert_aip(aip_future_settle(NULL, 0, NULL, NULL), AIP_E_INVAL);
    aip_future_release(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_once_with_message),
        cmocka_unit_test(test_wait_timeout_is_the_callers),
        cmocka_unit_test(test_callback_before_and_after),
        cmocka_unit_test(test_racing_completion_exactly_once),
        cmocka_unit_test(test_waiters_wake_and_release_from_either_side),
        cmocka_unit_test(test_settle_then_notify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
