/* Unit tests: reconnect backoff — full jitter within [0, min(cap, base*2^n)], growth to the
 * cap, reset, and an injected random source. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceilings_double_to_the_cap),
        cmocka_unit_test(test_full_jitter_reaches_zero),
        cmocka_unit_test(test_default_source_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
