/* SPDX-License-Identifier: MIT */
/* Unit tests: the strict JSON pre-scanner (components/common/jscan.c) — grammar, UTF-8,
 * escapes, duplicate keys, limits, memory estimate, and span reporting. */
#include <aip/aip.h>
#include <aip/internal/jscan.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
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
    assert_aip(scan(buf, strlen(buf), &s), AIP_E_MALFORMED);
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
    assert_aip(scan(bad, strlen(bad), &s), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(s.why, "nesting deeper than 64"));
    memset(&s, 0, sizeof s);
    s.max_depth = 3;
    assert_int_equal(aip_jscan_run(&s, "[[[]]]", 6), 0);
    assert_aip(aip_jscan_run(&s, "[[[[]]]]", 8), AIP_E_TOO_COMPLEX);
    free(ok);
    free(bad);
    /* a huge depth is refused without recursing (stack safety) */
    char *deep = nested(200000);
    assert_aip(scan(deep, strlen(deep), &s), AIP_E_TOO_COMPLEX);
    free(deep);
}

static void test_value_limit_and_memory_budget(void **state)
{
    (void)state;
    aip_jscan s = {0};
    s.max_values = 4;
    assert_int_equal(aip_jscan_run(&s, "[1,2,3]", 7), 0);
    assert_int_equal(s.values, 4);
    assert_aip(aip_jscan_run(&s, "[1,2,3,4]", 9), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(s.why, "more than 4 values"));

    memset(&s, 0, sizeof s);
    s.mem_budget = 1000;
    assert_aip(aip_jscan_run(&s, "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", 31), AIP_E_TOO_COMPLEX);
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

/* ---- isolation (isolate_key): defects inside one element of the root's "actions" ---------- */

struct faults_seen {
    int n;
    size_t index[8];
    char why[8][160];
};

static void rec_faults(void *u, const aip_jscan_path *p, const char *v, size_t n)
{
    (void)v;
    (void)n;
    struct faults_seen *f = u;
    if (p->depth == 2 && p->fault && f->n < 8) {
        f->index[f->n] = p->index[1];
        snprintf(f->why[f->n++], 160, "%s", p->fault);
    }
}

static int scan_isolated(const char *t, size_t n, aip_jscan *s, struct faults_seen *f)
{
    memset(s, 0, sizeof *s);
    memset(f, 0, sizeof *f);
    s->isolate_key = "actions";
    s->visit = rec_faults;
    s->user = f;
    s->visit_depth = 2;
    return aip_jscan_run(s, t, n);
}

static void test_isolated_defects_are_reported_not_fatal(void **state)
{
    (void)state;
    aip_jscan s;
    struct faults_seen f;
    const char *t = "{\"type\":\"command\",\"actions\":[{\"a\":\"ok\"},{\"a\":\"x\\u0000\"},"
                    "{\"a\":\"\\ud800\"},{\"a\":\"\\udc00\"},{\"\\u0000\":1,\"\\u0000\":2},"
                    "{\"a\":1,\"a\":2},\"tab\there\",{\"a\":\"\xff\"},{\"b\":\"ok\"}]}";
    assert_int_equal(scan_isolated(t, strlen(t), &s, &f), 0);
    assert_int_equal(s.faults, 8); /* the two bad keys are two defects; their duplicate is not */
    assert_int_equal(f.n, 7);
    static const size_t idx[] = {1, 2, 3, 4, 5, 6, 7};
    static const char *why[] = {
        "\\u0000 in string", "unpaired UTF-16 surrogate", "unpaired UTF-16 surrogate",
        "\\u0000 in string", "duplicate key \"a\"",       "control character in string",
        "invalid UTF-8"};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(f.index[i], idx[i]);
        assert_non_null(strstr(f.why[i], why[i]));
    }
    /* the same text without isolation fails at the first defect */
    assert_aip(scan(t, strlen(t), &s), AIP_E_MALFORMED);
    assert_non_null(strstr(s.why, "\\u0000 in string"));
}

static void test_isolation_is_only_the_root_actions_elements(void **state)
{
    (void)state;
    aip_jscan s;
    struct faults_seen f;
    static const char *strict[] = {
        "{\"response_id\":\"\\u0000\",\"actions\":[]}", /* the envelope */
        "{\"result\":{\"actions\":[\"\\u0000\"]}}",     /* not the root's member */
        "[{\"actions\":[\"\\u0000\"]}]",                /* the root is not an object */
        "{\"actions\":{\"a\":\"\\u0000\"}}",            /* not a list */
        "{\"other\":[\"\\u0000\"]}",
        "{\"actions\":[\"\\u0000\"],\"actions\":[]}", /* duplicate at the root: fatal */
    };
    for (size_t i = 0; i < sizeof strict / sizeof *strict; i++) {
        assert_int_not_equal(scan_isolated(strict[i], strlen(strict[i]), &s, &f), 0);
        assert_int_equal(s.faults, i == 5 ? 1 : 0);
    }
    /* grammar errors inside an element stay fatal: nothing says where it would end */
    static const char *grammar[] = {
        "{\"actions\":[{\"a\":\"\\x\"}]}", "{\"actions\":[{\"a\":\"\\u12\"}]}",
        "{\"actions\":[{\"a\" 1}]}",       "{\"actions\":[{\"a\":01}]}",
        "{\"actions\":[{\"a\":tru}]}",     "{\"actions\":[{\"a\":\"x}]}",
        "{\"actions\":[{\"a\":[1,]}]}",    "{\"actions\":[{\"a\":1,}]}",
    };
    for (size_t i = 0; i < sizeof grammar / sizeof *grammar; i++)
        assert_aip(scan_isolated(grammar[i], strlen(grammar[i]), &s, &f), AIP_E_MALFORMED);
}

/* "{"actions":[{"p":<depth levels of [ ]>}, {"q":1}]}" with `inner` in the middle */
static char *deep_action(unsigned depth, const char *inner)
{
    size_t n = 2 * depth + strlen(inner) + 64;
    char *b = malloc(n);
    char *p = b + sprintf(b, "{\"actions\":[{\"p\":");
    memset(p, '[', depth);
    p += depth;
    p += sprintf(p, "%s", inner);
    memset(p, ']', depth);
    p += depth;
    sprintf(p, "},{\"q\":1}]}");
    return b;
}

static void test_isolated_depth_is_skimmed_without_recursion(void **state)
{
    (void)state;
    aip_jscan s;
    struct faults_seen f;
    /* 64 levels in all is the limit: the element's object is level 3 */
    char *ok = deep_action(61, "");
    assert_int_equal(scan_isolated(ok, strlen(ok), &s, &f), 0);
    assert_int_equal(s.faults, 0);
    free(ok);
    char *over = deep_action(62, "");
    assert_int_equal(scan_isolated(over, strlen(over), &s, &f), 0);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.index[0], 0);
    assert_non_null(strstr(f.why[0], "nesting deeper than 64 levels"));
    free(over);
    /* far past the hard recursion limit, with objects, strings and defects inside: skimmed */
    char *deep = deep_action(300000, "{\"k\":\"\\ud800\",\"l\":[true,null,-1.5e3,{}]}");
    assert_int_equal(scan_isolated(deep, strlen(deep), &s, &f), 0);
    assert_int_equal(f.n, 1);
    assert_non_null(strstr(f.why[0], "nesting deeper than 64 levels")); /* the first defect */
    assert_true(s.faults >= 2);
    free(deep);
    /* the skimmed part is still held to the grammar */
    static const char *bad[] = {"1 2", "{\"k\" 1}", "{\"k\":1,}", "[1,]", "{1:2}", "\"x", "]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *t = deep_action(100, bad[i]);
        assert_aip(scan_isolated(t, strlen(t), &s, &f), AIP_E_MALFORMED);
        free(t);
    }
    char *cut = deep_action(100, "");
    cut[strlen(cut) / 2 + 10] = 0; /* ends inside the skimmed part */
    assert_aip(scan_isolated(cut, strlen(cut), &s, &f), AIP_E_MALFORMED);
    assert_non_null(strstr(s.why, "unexpected end of input"));
    free(cut);
    /* the value count still holds inside a skimmed part */
    char *many = deep_action(70, "1,1,1,1,1,1,1,1,1,1");
    memset(&s, 0, sizeof s);
    s.isolate_key = "actions";
    s.max_values = 60;
    assert_aip(aip_jscan_run(&s, many, strlen(many)), AIP_E_TOO_COMPLEX);
    free(many);
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
        cmocka_unit_test(test_isolated_defects_are_reported_not_fatal),
        cmocka_unit_test(test_isolation_is_only_the_root_actions_elements),
        cmocka_unit_test(test_isolated_depth_is_skimmed_without_recursion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
