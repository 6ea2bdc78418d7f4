/* SPDX-License-Identifier: MIT */
/* Unit tests: components/common — errors, buffers, random source, ids, timestamps, logging,
 * monotonic condition-variable deadlines. */
#include <aip/aip.h>
#include <aip/port.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

static void test_strerror_names_every_code(void **state)
{
    (void)state;
    for (int e = AIP_OK; e >= AIP_E_CONFIG; e--) {
        const char *s = aip_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(aip_strerror(-9999), "unknown error");
    assert_string_equal(aip_strerror(AIP_E_CONN_LOST), "connection lost");
}

static void test_version(void **state)
{
    (void)state;
    unsigned a, b, c;
    assert_int_equal(sscanf(aip_version(), "%u.%u.%u", &a, &b, &c), 3);
}

static void test_buf_headroom_limit_steal(void **state)
{
    (void)state;
    aip_buf b;
    aip_buf_init(&b, 16);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(aip_buf_puts(&b, "abc"), 0);
    assert_int_equal(b.len, 3000);
    assert_int_equal(aip_buf_nul(&b), 0);
    assert_int_equal(b.data[3000], 0);
    assert_memory_equal(b.data + 2997, "abc", 3);
    uint8_t *base = aip_buf_steal(&b);
    assert_null(b.data);
    assert_memory_equal(base + 16, "abc", 3); /* payload sits after the headroom */
    aip_free(base);

    aip_buf l;
    aip_buf_init(&l, 0);
    l.limit = 10;
    assert_int_equal(aip_buf_append(&l, "0123456789", 10), 0);
    assert_aip(aip_buf_putc(&l, 'x'), AIP_E_TOO_LARGE);
    assert_aip(aip_buf_append(&l, "x", 1), AIP_E_TOO_LARGE);
    assert_int_equal(l.len, 10);
    aip_buf_free(&l);
}

struct seq {
    const uint64_t *v;
    size_t n, i;
};

static uint64_t seq_next(void *u)
{
    struct seq *s = u;
    return s->v[s->i++ % s->n];
}

static void test_random_below_unbiased_and_injectable(void **state)
{
    (void)state;
    /* An injected source: UINT64_MAX is in the rejected top range for bound 3, so the
     * sampler must skip it and use the next value. */
    const uint64_t vals[] = {UINT64_MAX, 7};
    struct seq s = {vals, 2, 0};
    aip_random r = {seq_next, &s};
    assert_int_equal(aip_random_below(&r, 3), 7 % 3);
    assert_int_equal(s.i, 2);
    assert_int_equal(aip_random_below(NULL, 1), 0);
    for (int i = 0; i < 10000; i++)
        assert_true(aip_random_below(NULL, 10) < 10);
}

static void test_uuid4_format_and_distinct(void **state)
{
    (void)state;
    char a[37], b[37];
    aip_uuid4(NULL, a, sizeof a);
    aip_uuid4(NULL, b, sizeof b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);
}

static void test_random_secret_fills_and_differs(void **state)
{
    (void)state;
    uint8_t a[64], b[64], zero[64] = {0};
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    assert_int_equal(aip_random_secret(a, sizeof a), 0);
    assert_int_equal(aip_random_secret(b, sizeof b), 0);
    /* 512 random bits: all zero, or twice the same, would mean nothing was drawn */
    assert_memory_not_equal(a, zero, sizeof a);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(aip_random_secret(NULL, 0), 0);
    assert_aip(aip_random_secret(NULL, 1), AIP_E_INVAL);
}

static void test_timestamp_format(void **state)
{
    (void)state;
    char ts[40];
    aip_format_timestamp(1795329012512337LL, ts, sizeof ts); /* 2026-11-22T06:30:12.512337Z */
    assert_string_equal(ts, "2026-11-22T06:30:12.512337+00:00");
    aip_format_timestamp(0, ts, sizeof ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000000+00:00");
    aip_format_timestamp(-1, ts, sizeof ts);
    assert_string_equal(ts, "1969-12-31T23:59:59.999999+00:00");
    aip_format_timestamp(951782400000000LL, ts, sizeof ts); /* a leap day of a century year */
    assert_string_equal(ts, "2000-02-29T00:00:00.000000+00:00");
    aip_format_timestamp(253402300799999999LL, ts, sizeof ts); /* the last four-digit second */
    assert_string_equal(ts, "9999-12-31T23:59:59.999999+00:00");
    aip_format_timestamp(253402300800000000LL, ts, sizeof ts); /* past it: printf's width */
    assert_string_equal(ts, "10000-01-01T00:00:00.000000+00:00");
    /* truncated like snprintf, always terminated */
    char small[11];
    aip_format_timestamp(0, small, sizeof small);
    assert_string_equal(small, "1970-01-01");
    /* the formatter agrees with gmtime_r + snprintf over a spread of instants, both sides of
     * 1970, every month, leap and century years (a fixed-seed walk: no clock involved) */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t us = (int64_t)(x % 8000000000000000ull) - 2000000000000000LL; /* ~1906..2223 */
        int64_t secs = us / 1000000, frac = us % 1000000;
        if (frac < 0) {
            frac += 1000000;
            secs -= 1;
        }
        time_t t = (time_t)secs;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[80];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)frac);
        aip_format_timestamp(us, ts, sizeof ts);
        assert_string_equal(ts, want);
    }
}

static int g_lines;
static char g_last[256];
static void hook(aip_log_level lvl, const char *comp, const char *line, void *user)
{
    (void)lvl;
    (void)user;
    g_lines++;
    snprintf(g_last, sizeof g_last, "%s|%s", comp, line);
}

static void test_log_level_and_hook(void **state)
{
    (void)state;
    aip_log_level old = aip_log_get_level();
    aip_log_set_hook(hook, NULL);
    aip_log_set_level(AIP_LOG_WARN);
    aip_log(AIP_LOG_INFO, "x", "dropped %d", 1);
    assert_int_equal(g_lines, 0);
    aip_log(AIP_LOG_ERROR, "comp", "kept %d", 2);
    assert_int_equal(g_lines, 1);
    assert_string_equal(g_last, "comp|kept 2");
    /* a peer's text cannot forge a second line or send terminal escapes */
    aip_log(AIP_LOG_ERROR, "comp", "id %s",
            "dev\n2026-11-22T00:00:00Z error  server: fake\x1b[2J\t");
    assert_string_equal(g_last,
                        "comp|id dev\\n2026-11-22T00:00:00Z error  server: fake\\x1b[2J\\t");
    aip_log_set_hook(NULL, NULL);
    aip_log_set_level(old);
    aip_log_level l;
    assert_int_equal(aip_log_level_parse("debug", &l), 0);
    assert_int_equal(l, AIP_LOG_DEBUG);
    assert_aip(aip_log_level_parse("loud", &l), AIP_E_INVAL);
}

static void test_cond_deadline_is_monotonic(void **state)
{
    (void)state;
    aip_mutex m;
    aip_cond c;
    assert_int_equal(aip_mutex_init(&m), 0);
    assert_int_equal(aip_cond_init(&c), 0);
    uint64_t t0 = aip_now_ns(NULL);
    aip_mutex_lock(&m);
    int rc = 0;
    while (rc == 0)
        rc = aip_cond_wait_until(&c, &m, t0 + 50000000u); /* 50 ms */
    aip_mutex_unlock(&m);
    uint64_t el = aip_now_ns(NULL) - t0;
    assert_aip(rc, AIP_E_TIMEOUT);
    assert_true(el >= 50000000u);
    aip_cond_destroy(&c);
    aip_mutex_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_buf_headroom_limit_steal),
        cmocka_unit_test(test_random_below_unbiased_and_injectable),
        cmocka_unit_test(test_uuid4_format_and_distinct),
        cmocka_unit_test(test_random_secret_fills_and_differs),
        cmocka_unit_test(test_timestamp_format),
        cmocka_unit_test(test_log_level_and_hook),
        cmocka_unit_test(test_cond_deadline_is_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
