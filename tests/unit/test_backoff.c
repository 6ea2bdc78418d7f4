/* SPDX-License-Identifier: MIT */
/* Unit tests: reconnect backoff — full jitter within [0, min(cap, base*2^n)], growth to the
 * cap, reset, and an injected random source; which ended links count as progress (a registered
 * link, not an accept-and-close); streaks of links with about the same short lifetime; the
 * WebSocket ping and hang-up that follow the heartbeat. */
#include <aip/aip.h>
#include <aip/internal/backoff.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Returns exactly the value the test asks for next (below every rejection limit). */
static uint64_t g_next;
static uint64_t fixed_rand(void *u)
{
    (void)u;
    return g_next;
}

static uint64_t zero_rand(void *u)
{
    (void)u;
    return 0;
}

static void test_ceilings_double_to_the_cap(void **state)
{
    (void)state;
    aip_random fixed = {fixed_rand, NULL};
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, &fixed);
    /* asking for the ceiling itself yields the ceiling: the range is [0, ceiling], inclusive */
    static const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t ceil = aip_backoff_ceiling(&b);
        assert_int_equal(ceil, want[i]);
        g_next = ceil;
        assert_int_equal(aip_backoff_next(&b), ceil);
    }
    g_next = 123456789;
    for (int i = 0; i < 100; i++) /* never overflows, never gives up */
        assert_true(aip_backoff_next(&b) <= 60000);
    aip_backoff_reset(&b);
    assert_int_equal(aip_backoff_ceiling(&b), 1000);
}

static void test_full_jitter_reaches_zero(void **state)
{
    (void)state;
    aip_random z = {zero_rand, NULL};
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, &z);
    for (int i = 0; i < 10; i++)
        assert_int_equal(aip_backoff_next(&b), 0);
}

static void test_default_source_spreads(void **state)
{
    (void)state;
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, NULL);
    b.attempt = 10; /* at the cap */
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 2000; i++) {
        b.attempt = 10;
        uint32_t d = aip_backoff_next(&b);
        assert_true(d <= 60000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 6000); /* spread over the whole range, not clustered */
    assert_true(hi > 54000);
}

static void test_progress_rules(void **state)
{
    (void)state;
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, NULL);
    /* args: was_open, failed, registered, lived_ms, stable_ms */
    assert_false(aip_backoff_progress(&b, false, false, false, 0, 30000));    /* connect failed */
    assert_false(aip_backoff_progress(&b, true, false, false, 29999, 30000)); /* open only */
    assert_true(aip_backoff_progress(&b, true, false, false, 30000, 30000));  /* stable */
    /* a registered link cut by an idle timeout after 5 s is progress */
    assert_true(aip_backoff_progress(&b, true, false, true, 5000, 30000));
    assert_true(aip_backoff_progress(&b, true, false, true, 1000, 30000));
    /* the guard: a server that accepts the registration and closes at once is no progress */
    assert_false(aip_backoff_progress(&b, true, false, true, 999, 30000));
    assert_false(aip_backoff_progress(&b, true, false, true, 0, 30000));
    /* marked failed (refused registration) never resets, however long */
    assert_false(aip_backoff_progress(&b, true, true, true, 5000, 30000));
    assert_false(aip_backoff_progress(&b, true, true, false, 3600000, 30000));
}

/* Short registered links in a row (an idle timeout of 5 s) keep the delay's ceiling at the
 * base; instant closes after registration grow it to the cap as before. */
static void test_idle_timeout_links_stay_at_base(void **state)
{
    (void)state;
    aip_random fixed = {fixed_rand, NULL};
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, &fixed);
    g_next = 0;
    for (int i = 0; i < 20; i++) {
        if (aip_backoff_progress(&b, true, false, true, 5000, 30000))
            aip_backoff_reset(&b);
        assert_int_equal(aip_backoff_ceiling(&b), 1000);
        aip_backoff_next(&b);
    }
    aip_backoff_reset(&b);
    for (int i = 0; i < 20; i++) {
        if (aip_backoff_progress(&b, true, false, true, 20, 30000))
            aip_backoff_reset(&b);
        aip_backoff_next(&b);
    }
    assert_int_equal(aip_backoff_ceiling(&b), 60000);
}

static void test_streak_named_once(void **state)
{
    (void)state;
    aip_link_streak s = {0};
    /* 5 s, 5.3 s, 4.9 s: the third link in a row names it, once */
    assert_false(aip_link_streak_add(&s, 5000));
    assert_false(aip_link_streak_add(&s, 5300));
    assert_true(aip_link_streak_add(&s, 4900));
    assert_int_equal(s.count, 3);
    assert_int_equal(s.ref_ms, 5000);
    for (int i = 0; i < 10; i++)
        assert_false(aip_link_streak_add(&s, 5100));
    assert_int_equal(s.count, 13);
    /* another lifetime starts a new streak, which is named in its turn */
    assert_false(aip_link_streak_add(&s, 20000));
    assert_int_equal(s.count, 1);
    assert_false(aip_link_streak_add(&s, 21000));
    assert_true(aip_link_streak_add(&s, 19000));
}

static void test_streak_breaks(void **state)
{
    (void)state;
    aip_link_streak s = {0};
    /* different lifetimes never make a streak */
    static const uint64_t mixed[] = {2000, 9000, 2000, 30000, 2000, 60000, 9000};
    for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++)
        assert_false(aip_link_streak_add(&s, mixed[i]));
    /* a long link in between ends a streak */
    s = (aip_link_streak){0};
    assert_false(aip_link_streak_add(&s, 5000));
    assert_false(aip_link_streak_add(&s, 5000));
    assert_false(aip_link_streak_add(&s, AIP_STREAK_SHORT_MS));
    assert_false(aip_link_streak_add(&s, 5000));
    assert_false(aip_link_streak_add(&s, 5000));
    assert_true(aip_link_streak_add(&s, 5000));
    /* long links never form one */
    s = (aip_link_streak){0};
    for (int i = 0; i < 5; i++)
        assert_false(aip_link_streak_add(&s, AIP_STREAK_SHORT_MS + 1000));
    /* the tolerance: 1.5 s for short links, a fifth for longer ones */
    assert_true(aip_link_streak_same(2000, 3500));
    assert_false(aip_link_streak_same(2000, 3501));
    assert_true(aip_link_streak_same(100000, 120000));
    assert_false(aip_link_streak_same(100000, 121000));
}

static void test_liveness_follows_the_heartbeat(void **state)
{
    (void)state;
    static const struct {
        uint32_t hb_ms, ping_in, hangup_in, ping, hangup;
    } cases[] = {
        {30000, 0, 0, 35, 45},  /* the default heartbeat: answered heartbeats leave no ping */
        {1000, 0, 0, 20, 30},   /* a short heartbeat: not below 20 s */
        {45000, 0, 0, 50, 60},  /* ... */
        {120000, 0, 0, 50, 60}, /* UFO's device heartbeat: a ping before 60 s idle proxies */
        {30500, 0, 0, 36, 46},  /* whole seconds, rounded up */
        {30000, 7, 0, 7, 17},   /* the caller's ping, the hang-up after it */
        {30000, 0, 90, 35, 90}, /* the caller's hang-up */
        {30000, 12, 14, 12, 14}, {UINT32_MAX, 0, 0, 50, 60},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t p = cases[i].ping_in, h = cases[i].hangup_in;
        aip_liveness_defaults(cases[i].hb_ms, &p, &h);
        assert_int_equal(p, cases[i].ping);
        assert_int_equal(h, cases[i].hangup);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_liveness_follows_the_heartbeat),
        cmocka_unit_test(test_ceilings_double_to_the_cap),
        cmocka_unit_test(test_full_jitter_reaches_zero),
        cmocka_unit_test(test_default_source_spreads),
        cmocka_unit_test(test_progress_rules),
        cmocka_unit_test(test_idle_timeout_links_stay_at_base),
        cmocka_unit_test(test_streak_named_once),
        cmocka_unit_test(test_streak_breaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
