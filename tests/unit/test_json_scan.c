/* Unit tests: the strict JSON pre-scanner (components/common/jscan.c) — grammar, UTF-8,
 * escapes, duplicate keys, limits, memory estimate, and span reporting. */
#include <aip/aip.h>
#include <aip/internal/jscan.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int scan(const char *t, size_t n, aip_jscan *s)
{
    memset(s, 0, sizeof *s);
    return aip_jscan_run(s, t, n);
}

static int scan_s(const char *t)
{
    aip_jscan s;
    return scan(t, strlen(t), &s);
}

static void test_accepts_valid_json(void **state)
{
    (void)state;
    static const char *ok[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "1.5e-7",
        "6.02E+23",
        "-12.0",
        "\"\"",
        "true",
        "false",
        "null",
        " \t\r\n{ \"a\" : [ 1 , 2 ] }\n",
        "{\"a\":{\"b\":{\"c\":null}}}",
        "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"",
        "\"h\xc3\xa9llo \xe4\xb8\xad \xf0\x9f\x98\x80\"",
        "[1,[2,[3,[]]]]",
        "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        aip_jscan s;
        int rc = scan(ok[i], strlen(ok[i]), &s);
        if (rc)
            fail_msg("rejected valid JSON %s: %s", ok[i], s.why);
    }
}

struct bad {
    const char *text;
    size_t len; /* 0 = strlen */
    int code;
    const char *why;
};

static void test_rejects_with_reason(void **state)
{
    (void)state;
    static const struct bad bad[] = {
        {"", 0, AIP_E_MALFORMED, "empty input"},
        {"   ", 0, AIP_E_MALFORMED, "empty input"},
        {"{\"a\":1} x", 0, AIP_E_MALFORMED, "trailing bytes"},
        {"{\"a\":1,}", 0, AIP_E_MALFORMED, "expected a string key"},
        {"[1,]", 0, AIP_E_MALFORMED, "unexpected character"},
        {"{'a':1}", 0, AIP_E_MALFORMED, "expected a string key"},
        {"NaN", 0, AIP_E_MALFORMED, "unexpected character"},
        {"01", 0, AIP_E_MALFORMED, "trailing bytes"},
        {"1.", 0, AIP_E_MALFORMED, "invalid number"},
        {"-", 0, AIP_E_MALFORMED, "invalid number"},
        {"1e", 0, AIP_E_MALFORMED, "invalid number"},
        {"+1", 0, AIP_E_MALFORMED, "unexpected character"},
        {"tru", 0, AIP_E_MALFORMED, "invalid literal"},
        {"\"abc", 0, AIP_E_MALFORMED, "unterminated string"},
        {"\"a\x01\"", 0, AIP_E_MALFORMED, "control character"},
        {"\"\\x\"", 0, AIP_E_MALFORMED, "invalid escape"},
        {"\"\\u12\"", 0, AIP_E_MALFORMED, "invalid \\u escape"},
        {"\"a\\u0000b\"", 0, AIP_E_MALFORMED, "\\u0000"},
        {"\"\\ud800\"", 0, AIP_E_MALFORMED, "unpaired UTF-16 surrogate"},
        {"\"\\udc00\\ud800\"", 0, AIP_E_MALFORMED, "unpaired UTF-16 surrogate"},
        {"\"\\ud800\\u0041\"", 0, AIP_E_MALFORMED, "unpaired UTF-16 surrogate"},
        {"\"\xc0\xaf\"", 0, AIP_E_MALFORMED, "invalid UTF-8"},         /* overlong */
        {"\"\x80\"", 0, AIP_E_MALFORMED, "invalid UTF-8"},             /* lone continuation */
        {"\"\xed\xa0\x80\"", 0, AIP_E_MALFORMED, "invalid UTF-8"},     /* encoded surrogate */
        {"\"\xf4\x90\x80\x80\"", 0, AIP_E_MALFORMED, "invalid UTF-8"}, /* > U+10FFFF */
        {"\"\xe4\xb8\"", 0, AIP_E_MALFORMED, "invalid UTF-8"},         /* truncated */
        {"{\"a\":1,\"a\":2}", 0, AIP_E_MALFORMED, "duplicate key \"a\""},
        {"{\"type\":1,\"\\u0074ype\":2}", 0, AIP_E_MALFORMED, "duplicate key"},
        {"{\"o\":{\"k\":1,\"b\":2,\"k\":3}}", 0, AIP_E_MALFORMED, "duplicate key \"k\""},
        {"{\"a\":0}\0", 8, AIP_E_MALFORMED, "trailing bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aip_jscan s;
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].text);
        int rc = scan(bad[i].text, n, &s);
        if (rc != bad[i].code || !strstr(s.why, bad[i].why))
            fail_msg("case %zu (%s): rc %d why '%s', want %d '%s'", i, bad[i].text, rc, s.why,
                     bad[i].code, bad[i].why);
    }
}

static void test_duplicate_keys_in_large_objects(void **state)
{
    (void)state;
    /* more than 8 keys takes the sort path */
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "\"k%d\":%d,", i, i);
    snprintf(buf + n, sizeof buf - n, "\"k42\":0}");
    aip_jscan s;
    assert_int_equal(scan(buf, strlen(buf), &s), AIP_E_MALFORMED);
    assert_non_null(strstr(s.why, "duplicate key \"k42\""));
    buf[n] = '\0';
    snprintf(buf + n, sizeof buf - n, "\"k100\":0}");
    assert_int_equal(scan(buf, strlen(buf), &s), 0);
    /* the same key in sibling objects is fine */
    assert_int_equal(scan_s("[{\"a\":1},{\"a\":2}]"), 0);
    assert_int_equal(scan_s("{\"a\":{\"a\":{\"a\":1}}}"), 0);
}

static char *nested(unsigned depth)
{
    char *b = malloc(2 * depth + 1);
    memset(b, '[', depth);
    memset(b + depth, ']', depth);
    b[2 * depth] = 0;
    return b;
}

static void test_depth_limit_exact(void **state)
{
    (void)state;
    char *ok = nested(64), *bad = nested(65);
    aip_jscan s;
    assert_int_equal(scan(ok, strlen(ok), &s), 0);
    assert_int_equal(s.depth_seen, 64);
    assert_int_equal(scan(bad, strlen(bad), &s), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(s.why, "nesting deeper than 64"));
    memset(&s, 0, sizeof s);
    s.max_depth = 3;
    assert_int_equal(aip_jscan_run(&s, "[[[]]]", 6), 0);
    assert_int_equal(aip_jscan_run(&s, "[[[[]]]]", 8), AIP_E_TOO_COMPLEX);
    free(ok);
    free(bad);
    /* a huge depth is refused without recursing (stack safety) */
    char *deep = nested(200000);
    assert_int_equal(scan(deep, strlen(deep), &s), AIP_E_TOO_COMPLEX);
    free(deep);
}

static void test_value_limit_and_memory_budget(void **state)
{
    (void)state;
    aip_jscan s = {0};
    s.max_values = 4;
    assert_int_equal(aip_jscan_run(&s, "[1,2,3]", 7), 0);
    assert_int_equal(s.values, 4);
    assert_int_equal(aip_jscan_run(&s, "[1,2,3,4]", 9), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(s.why, "more than 4 values"));

    memset(&s, 0, sizeof s);
    s.mem_budget = 1000;
    assert_int_equal(aip_jscan_run(&s, "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", 31), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(s.why, "more than 1000 bytes"));
}

struct seen {
    int n;
    char text[8][64];
    unsigned depth[8];
};

static void rec(void *u, const aip_jscan_path *p, const char *v, size_t n)
{
    struct seen *s = u;
    if (p->depth == 3 && aip_jscan_key_eq(p->key[0], p->key_len[0], "actions") &&
        aip_jscan_key_eq(p->key[2], p->key_len[2], "parameters") && s->n < 8) {
        snprintf(s->text[s->n], 64, "%zu:%.*s", p->index[1], (int)n, v);
        s->depth[s->n++] = p->depth;
    }
}

static void test_spans_are_exact_text(void **state)
{
    (void)state;
    const char *t = "{\"actions\":[{\"parameters\": {\"x\":32.0 , \"n\":null}},"
                    "{\"tool_name\":\"a\"},{\"param\\u0065ters\":[1e5]}]}";
    struct seen seen = {0};
    aip_jscan s = {0};
    s.visit = rec;
    s.user = &seen;
    s.visit_depth = 3;
    assert_int_equal(aip_jscan_run(&s, t, strlen(t)), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.text[0], "0:{\"x\":32.0 , \"n\":null}");
    assert_string_equal(seen.text[1], "2:[1e5]"); /* escaped key matched after unescaping */
}

static void test_utf8_valid(void **state)
{
    (void)state;
    size_t off = 99;
    assert_true(aip_utf8_valid("plain", 5, NULL));
    assert_true(aip_utf8_valid("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9, NULL));
    assert_false(aip_utf8_valid("ab\xff", 3, &off));
    assert_int_equal(off, 2);
    assert_false(aip_utf8_valid("\xe0\x80\x80", 3, NULL)); /* overlong */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_valid_json),
        cmocka_unit_test(test_rejects_with_reason),
        cmocka_unit_test(test_duplicate_keys_in_large_objects),
        cmocka_unit_test(test_depth_limit_exact),
        cmocka_unit_test(test_value_limit_and_memory_budget),
        cmocka_unit_test(test_spans_are_exact_text),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
