/* SPDX-License-Identifier: MIT */
/* Unit tests: cutting a command_results answer to an outbound limit (components/agent/
 * answer_fit.c) — long strings keep shorter tails first, then whole Results become failures
 * naming the limit, at worst the batch is answered failed; the answer always fits, is always
 * valid, and keeps its correlation. Measured with the real encoders, JSON and protobuf. */
#include <aip/aip.h>
#include <aip/internal/answer_fit.h>
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

static int measure(const aip_msg *m, void *user, size_t *size)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_encode(*(const aip_encoding *)user, m, &b);
    *size = b.len;
    aip_buf_free(&b);
    return rc;
}

static size_t enc_size(const aip_msg *m, aip_encoding e)
{
    size_t n = 0;
    assert_int_equal(measure(m, &e, &n), 0);
    return n;
}

static void answer_init(aip_msg *m)
{
    aip_msg_init(m, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, AIP_STATUS_CONTINUE);
    aip_msg_set_str(&m->prev_response_id, "r-fit");
    aip_msg_set_str(&m->session_id, "s-fit");
    aip_msg_set_str(&m->client_id, "dev");
    m->has_action_results = true;
}

static aip_result *add(aip_msg *m, aip_result_status st, const char *result, const char *cid)
{
    aip_result *r = aip_msg_add_result(m);
    assert_non_null(r);
    r->status = st;
    if (result)
        assert_int_equal(aip_msg_set_json(&r->result, result, AIP_JSON_ANY), 0);
    aip_msg_set_str(&r->call_id, cid);
    aip_msg_set_str(&r->ns, "AgentTools");
    return r;
}

/* read_file's shape: {"path","size","content","truncated"} with n bytes of content */
static char *file_result(size_t n, char fill)
{
    char *t = malloc(n + 128);
    int k = sprintf(t, "{\"path\":\"/r/f\",\"size\":%zu,\"content\":\"", n);
    for (size_t i = 0; i < n; i++) {
        t[k + i] = fill;
        if (i % 64 == 63)
            t[k + i] = '|';
    }
    sprintf(t + k + n, "\",\"truncated\":false}");
    return t;
}

/* The decoded `content` member (or the whole string) of a result text. */
static char *content_of(const char *result)
{
    aip_msg m;
    aip_decode_error e;
    aip_buf b;
    aip_buf_init(&b, 0);
    /* decode through a Result: the codec is the reference for what the text means */
    char *frame = malloc(strlen(result) + 128);
    sprintf(frame,
            "{\"type\":\"command_results\",\"status\":\"ok\",\"action_results\":"
            "[{\"status\":\"success\",\"result\":%s}]}",
            result);
    memset(&m, 0, sizeof m);
    assert_int_equal(aip_json_decode(AIP_ENVELOPE_CLIENT, frame, strlen(frame), NULL, &m, &e), 0);
    free(frame);
    aip_msg_clear(&m);
    aip_buf_free(&b);
    /* extract with a small hand parser: the content string's decoded bytes */
    const char *p = strstr(result, "\"content\":\"");
    p = p ? p + 11 : result + 1;
    char *out = malloc(strlen(p) + 1), *o = out;
    while (*p && *p != '"') {
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                unsigned v = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
                if (v < 0x80) {
                    *o++ = (char)v;
                } else if (v < 0x800) {
                    *o++ = (char)(0xC0 | (v >> 6));
                    *o++ = (char)(0x80 | (v & 63));
                } else if (v >= 0xD800 && v < 0xDC00) {
                    unsigned lo =
                        (unsigned)strtoul((char[5]){p[7], p[8], p[9], p[10], 0}, NULL, 16);
                    unsigned cp = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                    *o++ = (char)(0xF0 | (cp >> 18));
                    *o++ = (char)(0x80 | ((cp >> 12) & 63));
                    *o++ = (char)(0x80 | ((cp >> 6) & 63));
                    *o++ = (char)(0x80 | (cp & 63));
                    p += 6;
                } else {
                    *o++ = (char)(0xE0 | (v >> 12));
                    *o++ = (char)(0x80 | ((v >> 6) & 63));
                    *o++ = (char)(0x80 | (v & 63));
                }
                p += 5;
                continue;
            }
            char ch = *p;
            if (ch == 'n')
                ch = '\n';
            else if (ch == 't')
                ch = '\t';
            *o++ = ch;
            p++;
            continue;
        }
        *o++ = *p++;
    }
    *o = 0;
    return out;
}

static void test_fits_already_untouched(void **state)
{
    (void)state;
    aip_msg m;
    answer_init(&m);
    add(&m, AIP_RESULT_SUCCESS, "\"hello\"", "c0");
    aip_encoding e = AIP_ENCODING_JSON;
    size_t before = enc_size(&m, e);
    aip_fit_report rep;
    assert_int_equal(aip_answer_fit(&m, before, measure, &e, &rep), 0);
    assert_int_equal(rep.before, before);
    assert_int_equal(rep.after, before);
    assert_int_equal(rep.strings_cut + rep.results_dropped, 0);
    assert_false(rep.minimal);
    assert_string_equal(m.action_results[0].result, "\"hello\"");
    aip_msg_clear(&m);
}

/* 20 read_file results of 64 KiB into 600 KiB: every content keeps a tail, nothing dropped */
static void test_long_strings_keep_tails(void **state)
{
    (void)state;
    aip_encoding encs[] = {AIP_ENCODING_JSON, AIP_ENCODING_PROTO};
    for (int k = 0; k < 2; k++) {
        aip_msg m;
        answer_init(&m);
        char *orig[20];
        for (int i = 0; i < 20; i++) {
            char cid[24];
            snprintf(cid, sizeof cid, "c%d", i);
            orig[i] = file_result(65536, (char)('a' + i));
            add(&m, AIP_RESULT_SUCCESS, orig[i], cid);
        }
        add(&m, AIP_RESULT_SUCCESS, "\"short\"", "c20");
        size_t limit = 600 * 1024;
        aip_fit_report rep;
        assert_int_equal(aip_answer_fit(&m, limit, measure, &encs[k], &rep), 0);
        assert_true(rep.before > 20 * 65536);
        assert_true(rep.after <= limit);
        assert_int_equal(enc_size(&m, encs[k]), rep.after);
        assert_true(rep.after > limit - 16 * 1024); /* the largest cap that fits, near enough */
        assert_int_equal(rep.strings_cut, 20);
        assert_int_equal(rep.results_dropped, 0);
        assert_true(rep.tail >= AIP_FIT_MIN_TAIL && rep.tail < 65536);
        assert_int_equal(m.n_action_results, 21);
        for (int i = 0; i < 20; i++) {
            const aip_result *r = &m.action_results[i];
            assert_int_equal(r->status, AIP_RESULT_SUCCESS);
            assert_non_null(strstr(r->result, "\"truncated\":true}"));
            assert_non_null(strstr(r->result, "{\"path\":\"/r/f\",\"size\":65536,\"content\":\""));
            char *c = content_of(r->result), *o = content_of(orig[i]);
            size_t cl = strlen(c), ol = strlen(o);
            assert_true(cl <= rep.tail && cl >= rep.tail - 12);
            assert_memory_equal(c, o + ol - cl, cl); /* the tail, exactly */
            free(c);
            free(o);
            free(orig[i]);
        }
        assert_string_equal(m.action_results[20].result, "\"short\"");
        assert_string_equal(m.prev_response_id, "r-fit");
        assert_int_equal(m.status, AIP_STATUS_CONTINUE);
        aip_msg_clear(&m);
    }
}

/* Escapes, multi-byte characters and surrogate pairs: a cut never splits one */
static void test_cut_at_character_boundaries(void **state)
{
    (void)state;
    const char *units[] = {"\\u00e9",     "\xc3\xa9", "\\ud83d\\ude00", "\xf0\x9f\x98\x80",
                           "\\n",         "\\\\",     "\\\"",           "x",
                           "\xe4\xb8\xad"};
    aip_encoding e = AIP_ENCODING_JSON;
    for (size_t shift = 0; shift < 9; shift++) {
        aip_msg m;
        answer_init(&m);
        size_t cap = 300000;
        char *t = malloc(cap), *p = t;
        *p++ = '"';
        for (size_t i = 0; (size_t)(p - t) < cap - 32; i++) {
            const char *u = units[(i + shift) % 9];
            memcpy(p, u, strlen(u));
            p += strlen(u);
        }
        *p++ = '"';
        *p = 0;
        add(&m, AIP_RESULT_SUCCESS, t, "c0");
        aip_fit_report rep;
        size_t limit = 20000 + shift * 977;
        assert_int_equal(aip_answer_fit(&m, limit, measure, &e, &rep), 0);
        assert_true(rep.after <= limit);
        assert_int_equal(rep.strings_cut, 1);
        const char *r = m.action_results[0].result;
        char why[160];
        assert_int_equal(aip_json_validate(r, strlen(r), AIP_JSON_ANY, NULL, why, sizeof why), 0);
        char *c = content_of(r), *o = content_of(t);
        size_t cl = strlen(c), ol = strlen(o);
        assert_true(cl > 0 && cl < ol);
        assert_memory_equal(c, o + ol - cl, cl);
        free(c);
        free(o);
        free(t);
        aip_msg_clear(&m);
    }
}

/* Tails at their floor are still too much: the largest Results go, as failures naming the
 * limit, with their call_id and namespace; the rest stay. */
static void test_whole_results_dropped_largest_first(void **state)
{
    (void)state;
    aip_encoding e = AIP_ENCODING_JSON;
    aip_msg m;
    answer_init(&m);
    for (int i = 0; i < 100; i++) {
        char cid[24];
        snprintf(cid, sizeof cid, "c%d", i);
        char *t = file_result(i == 7 ? 9000 : 4000, 'q');
        add(&m, AIP_RESULT_SUCCESS, t, cid);
        free(t);
    }
    /* a big result with no string to cut: 30 KB of numbers */
    char *nums = malloc(40000), *p = nums;
    *p++ = '[';
    for (int i = 0; i < 6000; i++)
        p += sprintf(p, "%s%d", i ? "," : "", 10000 + i);
    p[0] = ']';
    p[1] = 0;
    add(&m, AIP_RESULT_SUCCESS, nums, "c-nums");
    free(nums);
    add(&m, AIP_RESULT_SKIPPED, NULL, "c-skip");
    aip_msg_set_str(&m.action_results[101].error,
                    "Skipped due to previous failure (early_exit=True).");
    size_t limit = 64 * 1024;
    aip_fit_report rep;
    assert_int_equal(aip_answer_fit(&m, limit, measure, &e, &rep), 0);
    assert_true(rep.after <= limit);
    assert_int_equal(enc_size(&m, e), rep.after);
    assert_true(rep.results_dropped > 0 && rep.results_dropped < 100);
    assert_false(rep.minimal);
    char want[160];
    snprintf(want, sizeof want,
             "result dropped: the answer would exceed the outbound limit of %zu bytes", limit);
    const aip_result *big = &m.action_results[100];
    assert_int_equal(big->status, AIP_RESULT_FAILURE); /* the largest went first */
    assert_string_equal(big->error, want);
    assert_null(big->result);
    assert_string_equal(big->call_id, "c-nums");
    assert_string_equal(big->ns, "AgentTools");
    assert_int_equal(m.action_results[7].status, AIP_RESULT_FAILURE); /* the next largest */
    size_t dropped = 0;
    for (int i = 0; i < 100; i++) {
        const aip_result *r = &m.action_results[i];
        char cid[24];
        snprintf(cid, sizeof cid, "c%d", i);
        assert_string_equal(r->call_id, cid);
        if (r->status == AIP_RESULT_FAILURE) {
            assert_string_equal(r->error, want);
            dropped++;
        } else {
            assert_int_equal(r->status, AIP_RESULT_SUCCESS);
            assert_non_null(r->result);
        }
    }
    assert_int_equal(dropped + 1, rep.results_dropped);
    assert_int_equal(m.action_results[101].status, AIP_RESULT_SKIPPED); /* small: kept */
    aip_msg_clear(&m);
}

/* Not even failure Results fit: the batch is answered failed, correlated, with no Result;
 * below even that, AIP_E_TOO_LARGE (and the answer is that minimal one). */
static void test_minimal_answer(void **state)
{
    (void)state;
    aip_encoding encs[] = {AIP_ENCODING_JSON, AIP_ENCODING_PROTO};
    for (int k = 0; k < 2; k++) {
        aip_msg m;
        answer_init(&m);
        for (int i = 0; i < 2000; i++) {
            char cid[64];
            snprintf(cid, sizeof cid, "call-%d-with-a-long-id-0123456789", i);
            add(&m, AIP_RESULT_SUCCESS, "\"ok\"", cid);
        }
        aip_fit_report rep;
        assert_int_equal(aip_answer_fit(&m, 4096, measure, &encs[k], &rep), 0);
        assert_true(rep.minimal);
        assert_true(rep.after <= 4096);
        assert_int_equal(rep.results_dropped, 2000);
        assert_int_equal(m.n_action_results, 0);
        assert_true(m.has_action_results);
        assert_int_equal(m.status, AIP_STATUS_FAILED);
        assert_string_equal(m.error, "results dropped: the answer to 2000 actions would exceed "
                                     "the outbound limit of 4096 bytes");
        assert_string_equal(m.prev_response_id, "r-fit");
        assert_string_equal(m.session_id, "s-fit");
        aip_msg_clear(&m);

        answer_init(&m);
        add(&m, AIP_RESULT_SUCCESS, "\"a result longer than the limit\"", "c0");
        assert_aip(aip_answer_fit(&m, 40, measure, &encs[k], &rep), AIP_E_TOO_LARGE);
        assert_true(rep.minimal);
        assert_int_equal(m.n_action_results, 0);
        aip_msg_clear(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fits_already_untouched),
        cmocka_unit_test(test_long_strings_keep_tails),
        cmocka_unit_test(test_cut_at_character_boundaries),
        cmocka_unit_test(test_whole_results_dropped_largest_first),
        cmocka_unit_test(test_minimal_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
