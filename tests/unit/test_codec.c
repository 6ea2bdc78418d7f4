/* SPDX-License-Identifier: MIT */
/* Unit tests: the JSON and protobuf codecs (components/codec) — UFO's full-null form, lean
 * form, key order, free-form fidelity, correlation on errors, invalid actions, limits,
 * encoder refusals, pretty-printing. The vector corpus is exercised by test_vectors. */
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

#include "codec_util.h"

static int dec(aip_envelope env, const char *json, aip_msg *m, aip_decode_error *e)
{
    memset(m, 0, sizeof *m);
    return aip_json_decode(env, json, strlen(json), NULL, m, e);
}

static char *enc(aip_encoding enc, const aip_msg *m, size_t *len)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_encode(enc, m, &b);
    if (rc)
        fail_msg("encode failed: %s", aip_strerror(rc));
    aip_buf_nul(&b);
    if (len)
        *len = b.len;
    return (char *)aip_buf_steal(&b);
}

static const char ufo_register[] =
    "{\"type\": \"register\", \"status\": \"ok\", \"client_type\": \"device\", "
    "\"session_id\": null, \"task_name\": null, \"client_id\": \"dev-1\", \"target_id\": null, "
    "\"request\": null, \"action_results\": null, "
    "\"timestamp\": \"2026-11-22T06:30:12.512337+00:00\", \"request_id\": null, "
    "\"prev_response_id\": null, \"error\": null, \"metadata\": {\"system_info\": "
    "{\"cpu_count\": 4, \"memory_total_gb\": 32.0, \"custom_metadata\": {\"x\": null}}, "
    "\"platform\": \"linux\"}}";

static void test_ufo_full_null_form(void **state)
{
    (void)state;
    aip_msg m;
    aip_decode_error e;
    assert_int_equal(dec(AIP_ENVELOPE_CLIENT, ufo_register, &m, &e), 0);
    assert_int_equal(m.type, AIP_MSG_REGISTER);
    assert_int_equal(m.status, AIP_STATUS_OK);
    assert_string_equal(m.client_id, "dev-1");
    assert_null(m.session_id);
    assert_false(m.has_action_results);
    /* free-form text kept exactly: 32.0 and the null survive */
    assert_string_equal(m.metadata, "{\"system_info\": {\"cpu_count\": 4, \"memory_total_gb\": "
                                    "32.0, \"custom_metadata\": {\"x\": null}}, \"platform\": "
                                    "\"linux\"}");
    char *out = enc(AIP_ENCODING_JSON, &m, NULL);
    /* lean, UFO key order, unset keys omitted */
    assert_string_equal(out, "{\"type\":\"register\",\"status\":\"ok\",\"client_type\":\"device\","
                             "\"client_id\":\"dev-1\",\"timestamp\":\"2026-11-22T06:30:12.512337+"
                             "00:00\",\"metadata\":{\"system_info\": {\"cpu_count\": 4, "
                             "\"memory_total_gb\": 32.0, \"custom_metadata\": {\"x\": null}}, "
                             "\"platform\": \"linux\"}}");
    free(out);
    aip_msg_clear(&m);
}

static void test_lean_form_and_defaults(void **state)
{
    (void)state;
    aip_msg m;
    assert_int_equal(
        dec(AIP_ENVELOPE_CLIENT, "{\"status\":\"ok\",\"type\":\"heartbeat\"}", &m, NULL), 0);
    assert_int_equal(m.client_type, AIP_CLIENT_DEVICE); /* UFO's default */
    aip_msg_clear(&m);
    /* unknown keys are ignored, keys are case-sensitive */
    assert_int_equal(dec(AIP_ENVELOPE_CLIENT,
                         "{\"type\":\"heartbeat\",\"status\":\"ok\",\"Client_ID\":\"x\","
                         "\"future_key\":[1,{\"a\":2}]}",
                         &m, NULL),
                     0);
    assert_null(m.client_id);
    aip_msg_clear(&m);
}

static void test_escapes_and_unicode_out(void **state)
{
    (void)state;
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_ERROR, AIP_STATUS_ERROR);
    assert_int_equal(aip_msg_set_str(&m.error, "a\"b\\c\nd\te\x01 \xc3\xa9 \xf0\x9f\x98\x80"), 0);
    char *out = enc(AIP_ENCODING_JSON, &m, NULL);
    assert_string_equal(out,
                        "{\"type\":\"error\",\"status\":\"error\",\"error\":\"a\\\"b\\\\c\\nd\\te"
                        "\\u0001 \xc3\xa9 \xf0\x9f\x98\x80\"}");
    aip_msg back;
    assert_int_equal(dec(AIP_ENVELOPE_SERVER, out, &back, NULL), 0);
    assert_true(aip_msg_equal(&m, &back));
    free(out);
    aip_msg_clear(&m);
    aip_msg_clear(&back);
}

static void test_correlation_survives_errors(void **state)
{
    (void)state;
    aip_msg m;
    aip_decode_error e;
    /* a command with a broken status: still tells who to answer */
    int rc = dec(AIP_ENVELOPE_SERVER,
                 "{\"type\":\"command\",\"status\":\"Continue\",\"response_id\":\"r-9\","
                 "\"session_id\":\"s-1\",\"actions\":[]}",
                 &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_int_equal(e.code, rc);
    assert_string_equal(e.reason, "unknown status \"Continue\"");
    assert_int_equal(e.type, AIP_MSG_COMMAND);
    assert_string_equal(e.response_id, "r-9");
    assert_string_equal(e.session_id, "s-1");
    assert_null(m.response_id); /* the model is left cleared */

    rc = dec(AIP_ENVELOPE_CLIENT,
             "{\"type\":\"device_info_request\",\"status\":\"ok\","
             "\"request_id\":\"q-1\",\"client_id\":7}",
             &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "field \"client_id\" must be a string");
    assert_string_equal(e.request_id, "q-1");
    assert_int_equal(e.type, AIP_MSG_DEVICE_INFO_REQUEST);

    rc = dec(AIP_ENVELOPE_SERVER, "{\"type\":\"reboot\",\"status\":\"ok\"}", &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "unknown message type \"reboot\"");
    assert_int_equal(e.type, AIP_MSG_NONE);
    rc = dec(AIP_ENVELOPE_SERVER, "{\"status\":\"ok\"}", &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "missing required field \"type\"");
    rc = dec(AIP_ENVELOPE_SERVER, "{\"type\":\"register\",\"status\":\"ok\"}", &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "message type \"register\" is not valid in a server message");
    rc = dec(AIP_ENVELOPE_SERVER, "[1]", &m, &e);
    assert_aip(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "frame is not a JSON object");
}

static void test_invalid_action_keeps_batch(void **state)
{
    (void)state;
    aip_msg m;
    aip_decode_error e;
    const char *f =
        "{\"type\":\"command\",\"status\":\"continue\",\"response_id\":\"r\","
        "\"actions\":[{\"tool_name\":\"echo\",\"tool_type\":\"action\",\"call_id\":\"a\"},"
        "{\"tool_name\":\"x\",\"call_id\":\"b\"},"
        "{\"tool_name\":\"x\",\"tool_type\":\"Action\",\"call_id\":\"c\"},"
        "{\"tool_name\":\"x\",\"tool_type\":\"action\",\"parameters\":[1],\"call_id\":\"d\"},"
        "7]}";
    assert_int_equal(dec(AIP_ENVELOPE_SERVER, f, &m, &e), 0);
    assert_int_equal(m.n_actions, 5);
    assert_null(m.actions[0].invalid);
    assert_string_equal(m.actions[1].invalid, "missing required field \"tool_type\"");
    assert_string_equal(m.actions[1].call_id, "b");
    assert_string_equal(m.actions[2].invalid, "unknown tool_type \"Action\"");
    assert_string_equal(m.actions[2].call_id, "c");
    assert_string_equal(m.actions[3].invalid, "field \"parameters\" must be an object");
    assert_string_equal(m.actions[3].call_id, "d");
    assert_string_equal(m.actions[4].invalid, "action is not an object");
    /* an invalid action cannot be re-encoded */
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_aip(aip_encode(AIP_ENCODING_JSON, &m, &b), AIP_E_PROTOCOL);
    assert_int_equal(b.len, 0);
    aip_buf_free(&b);
    aip_msg_clear(&m);
}

/* What Python's json.dumps writes (\u0000, a lone surrogate) and nesting past 64, inside one
 * action: that action fails alone, with its call_id; the rest of the batch decodes. */
static void test_defect_in_one_action_keeps_batch(void **state)
{
    (void)state;
    aip_msg m;
    aip_decode_error e;
    char deep[141];
    memset(deep, '[', 70);
    memset(deep + 70, ']', 70);
    deep[140] = 0;
    char f[1200];
    snprintf(f, sizeof f,
             "{\"type\":\"command\",\"status\":\"continue\",\"session_id\":\"s\","
             "\"actions\":[{\"tool_name\":\"echo\",\"tool_type\":\"action\",\"call_id\":\"a\","
             "\"parameters\":{\"text\":\"x\\u0000y\"}},"
             "{\"call_id\":\"b\",\"tool_name\":\"echo\",\"tool_type\":\"action\","
             "\"parameters\":{\"text\":\"\\ud800\"}},"
             "{\"tool_name\":\"echo\",\"tool_type\":\"action\",\"parameters\":{\"d\":%s},"
             "\"call_id\":\"c\"},"
             "{\"tool_name\":\"echo\",\"tool_type\":\"action\",\"parameters\":{\"text\":\"ok "
             "\\ud83d\\ude00\"},\"call_id\":\"d\"}],\"response_id\":\"r-d\"}",
             deep);
    assert_int_equal(dec(AIP_ENVELOPE_SERVER, f, &m, &e), 0);
    assert_string_equal(m.response_id, "r-d"); /* after the actions: the frame was read whole */
    aip_frame_ids ids; /* the peek reads what the decoder reads, past the defects */
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, f, strlen(f), &ids);
    assert_string_equal(ids.response_id, "r-d");
    assert_int_equal(ids.type, AIP_MSG_COMMAND);
    assert_string_equal(m.session_id, "s");
    assert_int_equal(m.n_actions, 4);
    assert_string_equal(m.actions[0].call_id, "a");
    assert_non_null(strstr(m.actions[0].invalid, "field \"parameters\": \\u0000 in string"));
    assert_null(m.actions[0].parameters);
    assert_string_equal(m.actions[1].call_id, "b");
    assert_non_null(strstr(m.actions[1].invalid, "field \"parameters\": unpaired UTF-16"));
    assert_string_equal(m.actions[2].call_id, "c");
    assert_string_equal(m.actions[2].invalid,
                        "field \"parameters\": nesting deeper than 64 levels");
    assert_null(m.actions[3].invalid);
    assert_string_equal(m.actions[3].call_id, "d");
    assert_string_equal(m.actions[3].parameters, "{\"text\":\"ok \\ud83d\\ude00\"}");
    assert_string_equal(m.actions[3].tool_name, "echo");
    aip_msg_clear(&m);

    /* a big frame (the skeleton path) with a defect: the same */
    size_t big = 64 * 1024;
    char *bf = malloc(big + 1024);
    int n = snprintf(bf, big + 1024,
                     "{\"type\":\"command\",\"status\":\"continue\",\"response_id\":\"r-big\","
                     "\"actions\":[{\"tool_name\":\"echo\",\"tool_type\":\"action\","
                     "\"call_id\":\"p\",\"parameters\":{\"text\":\"");
    memset(bf + n, 'x', big);
    snprintf(bf + n + big, 1024 - (size_t)n,
             "\"}},{\"tool_name\":\"echo\",\"tool_type\":\"action\",\"call_id\":\"q\","
             "\"parameters\":{\"t\":\"\\udfff\",\"pad\":\"%0300d\"}}]}",
             0);
    assert_int_equal(dec(AIP_ENVELOPE_SERVER, bf, &m, &e), 0);
    assert_null(m.actions[0].invalid);
    assert_int_equal(strlen(m.actions[0].parameters), big + 11);
    assert_string_equal(m.actions[1].call_id, "q");
    assert_non_null(strstr(m.actions[1].invalid, "unpaired UTF-16 surrogate"));
    aip_msg_clear(&m);
    free(bf);
}

/* A frame refused whole still names the command it was, from the members read before the
 * failure; an id that is not UTF-8 (protobuf) is not read (it could not be answered with). */
static void test_refused_frame_keeps_correlation(void **state)
{
    (void)state;
    aip_msg m;
    aip_decode_error e;
    /* a grammar error after response_id */
    int rc = dec(AIP_ENVELOPE_SERVER,
                 "{\"type\":\"command\",\"status\":\"continue\",\"session_id\":\"s-7\","
                 "\"response_id\":\"r-7\",\"actions\":[{\"tool_name\":\"a\\x\"}]}",
                 &m, &e);
    assert_aip(rc, AIP_E_MALFORMED);
    assert_non_null(strstr(e.reason, "invalid escape"));
    assert_int_equal(e.type, AIP_MSG_COMMAND);
    assert_string_equal(e.response_id, "r-7");
    assert_string_equal(e.session_id, "s-7");
    /* the defect is in the envelope itself, before response_id: nothing to answer to */
    rc = dec(AIP_ENVELOPE_SERVER,
             "{\"type\":\"command\",\"status\":\"continue\",\"error\":\"\\u0000\","
             "\"response_id\":\"r-8\",\"actions\":[]}",
             &m, &e);
    assert_aip(rc, AIP_E_MALFORMED);
    assert_int_equal(e.type, AIP_MSG_COMMAND);
    assert_string_equal(e.response_id, "");
    /* protobuf: a command whose response_id is not UTF-8 */
    const uint8_t bad_rid[] = {0x08, 4, 0x10, 1, 0x6a, 2, 'r', 0xff};
    rc = aip_proto_decode(AIP_ENVELOPE_SERVER, bad_rid, sizeof bad_rid, NULL, &m, &e);
    assert_aip(rc, AIP_E_MALFORMED);
    assert_int_equal(e.type, AIP_MSG_COMMAND);
    assert_string_equal(e.response_id, "");
    /* ... and one whose messages are not UTF-8 but whose response_id is fine */
    const uint8_t bad_msg[] = {0x08, 4, 0x10, 1, 0x42, 3, 0x0a, 1, 0xff, 0x6a, 2, 'r', '1'};
    rc = aip_proto_decode(AIP_ENVELOPE_SERVER, bad_msg, sizeof bad_msg, NULL, &m, &e);
    assert_aip(rc, AIP_E_MALFORMED);
    assert_int_equal(e.type, AIP_MSG_COMMAND);
    assert_string_equal(e.response_id, "r1");
    /* a reason quoting the frame, cut at a byte count, stays UTF-8: it goes back to the peer */
    char st[200];
    int sl =
        snprintf(st, sizeof st, "{\"type\":\"command\",\"response_id\":\"r-u\",\"status\":\"a");
    for (int i = 0; i < 40; i++)
        sl += snprintf(st + sl, sizeof st - (size_t)sl, "\xc3\xa9");
    snprintf(st + sl, sizeof st - (size_t)sl, "\"}");
    assert_aip(dec(AIP_ENVELOPE_SERVER, st, &m, &e), AIP_E_PROTOCOL);
    assert_non_null(strstr(e.reason, "unknown status \"a\xc3\xa9"));
    assert_true(aip_utf8_valid(e.reason, strlen(e.reason), NULL));
    assert_string_equal(e.response_id, "r-u");
}

static void test_proto_round_trip_and_presence(void **state)
{
    (void)state;
    aip_msg m;
    assert_int_equal(dec(AIP_ENVELOPE_SERVER,
                         "{\"type\":\"task_end\",\"status\":\"completed\",\"session_id\":\"t@1\","
                         "\"actions\":[],\"messages\":[\"a\",\"\"],\"result\":[{\"request\":\"x\","
                         "\"result\":[1.50,null]}]}",
                         &m, NULL),
                     0);
    size_t n;
    char *bin = enc(AIP_ENCODING_PROTO, &m, &n);
    aip_msg back = {0};
    aip_decode_error e;
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_SERVER, (uint8_t *)bin, n, NULL, &back, &e), 0);
    assert_true(aip_msg_equal(&m, &back));
    assert_true(back.has_actions);
    assert_int_equal(back.n_actions, 0);
    assert_string_equal(back.result, "[{\"request\":\"x\",\"result\":[1.50,null]}]");
    free(bin);
    aip_msg_clear(&m);
    aip_msg_clear(&back);
}

static void test_proto_rejections(void **state)
{
    (void)state;
    aip_msg m = {0};
    aip_decode_error e;
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, (const uint8_t *)"", 0, NULL, &m, &e),
               AIP_E_MALFORMED);
    assert_string_equal(e.reason, "empty frame");
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, garbage, 4, NULL, &m, &e), AIP_E_MALFORMED);
    assert_string_equal(e.reason, "not a valid protobuf ClientMessage");
    /* type = 42 (field 1 varint), status ok */
    const uint8_t bad_type[] = {0x08, 42, 0x10, 4};
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, bad_type, 4, NULL, &m, &e), AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "field \"type\" has unknown value 42");
    /* heartbeat/ok with client_id (field 6) = "a\0b" */
    const uint8_t nul_id[] = {0x08, 2, 0x10, 4, 0x32, 3, 'a', 0, 'b'};
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, nul_id, sizeof nul_id, NULL, &m, &e),
               AIP_E_MALFORMED);
    assert_string_equal(e.reason, "field \"client_id\" contains a NUL byte");
    /* command (4) in a client message */
    const uint8_t cmd[] = {0x08, 4, 0x10, 1};
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, cmd, 4, NULL, &m, &e), AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "message type \"command\" is not valid in a client message");
    /* metadata_json (field 14) that is an array */
    const uint8_t md[] = {0x08, 1, 0x10, 4, 0x72, 2, '[', ']'};
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, md, sizeof md, NULL, &m, &e), AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "field \"metadata\" must be an object");
}

static void test_frame_limit(void **state)
{
    (void)state;
    aip_codec_limits l;
    aip_codec_limits_default(&l);
    l.max_frame = 16;
    aip_msg m = {0};
    aip_decode_error e;
    const char *f = "{\"type\":\"heartbeat\",\"status\":\"ok\"}";
    assert_aip(aip_json_decode(AIP_ENVELOPE_CLIENT, f, strlen(f), &l, &m, &e), AIP_E_TOO_LARGE);
    assert_non_null(strstr(e.reason, "exceeds the limit of 16"));
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, (const uint8_t *)f, strlen(f), &l, &m, &e),
               AIP_E_TOO_LARGE);
}

static void test_proto_memory_budget(void **state)
{
    (void)state;
    /* 2,000 empty Result items in action_results: tiny on the wire, ~50 bytes each unpacked */
    size_t n = 2000;
    uint8_t *buf = malloc(8 + 2 * n + 8);
    size_t o = 0;
    buf[o++] = 0x08;
    buf[o++] = 5; /* command_results */
    buf[o++] = 0x10;
    buf[o++] = 4;
    buf[o++] = 0x4a;      /* field 9, length-delimited: ResultList */
    size_t inner = 2 * n; /* each item: tag 0x0a + length 0 */
    buf[o++] = (uint8_t)(0x80 | (inner & 0x7f));
    buf[o++] = (uint8_t)(inner >> 7);
    for (size_t i = 0; i < n; i++) {
        buf[o++] = 0x0a;
        buf[o++] = 0;
    }
    aip_codec_limits l;
    aip_codec_limits_default(&l);
    l.mem_floor = 0;
    l.mem_factor = 8;
    aip_msg m = {0};
    aip_decode_error e;
    assert_aip(aip_proto_decode(AIP_ENVELOPE_CLIENT, buf, o, &l, &m, &e), AIP_E_TOO_COMPLEX);
    assert_non_null(strstr(e.reason, "decoding needs more than"));
    free(buf);
}

static void test_encoder_refuses_invalid_models(void **state)
{
    (void)state;
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND, AIP_STATUS_OK);
    aip_buf b;
    aip_buf_init(&b, 0);
    char why[200];
    assert_aip(aip_encode_why(AIP_ENCODING_PROTO, &m, &b, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "message type \"command\" is not valid in a client message");
    m.type = AIP_MSG_HEARTBEAT;
    m.metadata = aip_strdup("{\"a\":1,\"a\":1}");
    assert_aip(aip_encode_why(AIP_ENCODING_JSON, &m, &b, why, sizeof why), AIP_E_PROTOCOL);
    assert_non_null(strstr(why, "duplicate key"));
    assert_int_equal(b.len, 0);
    aip_msg_clear(&m);
    aip_buf_free(&b);
}

static void test_encoding_names(void **state)
{
    (void)state;
    aip_encoding e = AIP_ENCODING_PROTO;
    assert_int_equal(aip_encoding_parse("json", &e), 0);
    assert_int_equal(e, AIP_ENCODING_JSON);
    assert_int_equal(aip_encoding_parse("protobuf", &e), 0);
    assert_int_equal(e, AIP_ENCODING_PROTO);
    assert_aip(aip_encoding_parse("JSON", &e), AIP_E_INVAL); /* case-sensitive */
    assert_aip(aip_encoding_parse(NULL, &e), AIP_E_INVAL);
}

static void test_pretty_keeps_tokens(void **state)
{
    (void)state;
    const char *in = "{\"a\":[1.50,{},[],\"x, y: {z}\"],\"b\":{\"c\":null}}";
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_int_equal(aip_json_pretty(in, strlen(in), 2, &b), 0);
    aip_buf_nul(&b);
    assert_string_equal((char *)b.data, "{\n  \"a\": [\n    1.50,\n    {},\n    [],\n    \"x, y: "
                                        "{z}\"\n  ],\n  \"b\": {\n    \"c\": null\n  }\n}");
    aip_buf_free(&b);
}

/* ---- aip_frame_peek: type and ids from a frame's first bytes ------------------------------ */

static char *big_string_json(size_t n)
{
    char *v = malloc(n + 3);
    v[0] = '"';
    memset(v + 1, 'r', n);
    v[n + 1] = '"';
    v[n + 2] = 0;
    return v;
}

/* Every prefix of frame yields each of the wanted fields whole or not at all. */
static void peek_every_prefix(aip_encoding e, aip_envelope env, const char *frame, size_t len,
                              size_t upto, aip_msg_type type, const char *sid, const char *rid)
{
    for (size_t k = 0; k <= upto && k <= len; k++) {
        aip_frame_ids ids;
        aip_frame_peek(e, env, frame, k, &ids);
        assert_true(ids.type == AIP_MSG_NONE || ids.type == type);
        assert_true(!ids.session_id[0] || strcmp(ids.session_id, sid) == 0);
        assert_true(!ids.response_id[0] || strcmp(ids.response_id, rid) == 0);
    }
}

static void test_peek_json_prefix(void **state)
{
    (void)state;
    /* UFO's full form of a server task_end: session_id before a large result */
    char *res = big_string_json(100000);
    size_t n = strlen(res) + 512;
    char *frame = malloc(n);
    snprintf(frame, n,
             "{\"type\": \"task_end\", \"status\": \"completed\", \"user_request\": null, "
             "\"agent_name\": null, \"process_name\": null, \"root_name\": null, \"actions\": "
             "null, \"messages\": null, \"error\": null, \"session_id\": \"t-1@s\\u00e9\", "
             "\"task_name\": \"t-1\", \"timestamp\": null, \"response_id\": \"r-9\", "
             "\"result\": %s}",
             res);
    aip_frame_ids ids;
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, 8192, &ids);
    assert_int_equal(ids.type, AIP_MSG_TASK_END);
    assert_string_equal(ids.session_id, "t-1@s\xc3\xa9"); /* unescaped */
    assert_string_equal(ids.response_id, "r-9");
    assert_string_equal(ids.request_id, ""); /* not a server key */
    peek_every_prefix(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, strlen(frame), 600,
                      AIP_MSG_TASK_END, "t-1@s\xc3\xa9", "r-9");
    /* the same frame peeked whole reads what the decoder reads */
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, strlen(frame), &ids);
    assert_string_equal(ids.session_id, "t-1@s\xc3\xa9");
    free(frame);

    /* the id after the large value: unreadable from the prefix, the type still is */
    n = strlen(res) + 128;
    frame = malloc(n);
    snprintf(frame, n,
             "{\"type\":\"device_info_response\",\"status\":\"ok\",\"result\":%s,"
             "\"response_id\":\"q-1\"}",
             res);
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, 8192, &ids);
    assert_int_equal(ids.type, AIP_MSG_DEVICE_INFO_RESPONSE);
    assert_string_equal(ids.response_id, "");
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, strlen(frame), &ids);
    assert_string_equal(ids.response_id, "q-1");
    free(frame);
    free(res);

    /* what cannot be read stays empty, and nothing fails */
    static const char *const odd[] = {
        "",
        "not json",
        "[\"task_end\"]",
        "\"aaaaaaaa",
        "{\"type\":\"register\",\"session_id\":7}",           /* not a server type; not a string */
        "{\"type\":\"task_end\",\"session_id\":null,\"x\":[", /* null id, truncated */
        "{\"type\" : \"heartbeat\" , \"response_id\":\"\\ud800\"}", /* lone surrogate */
        "{\"a\":{\"session_id\":\"nested\"},\"type\":\"error\"",    /* not top level */
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, odd[i], strlen(odd[i]), &ids);
        assert_string_equal(ids.session_id, "");
        assert_string_equal(ids.response_id, "");
    }
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, odd[7], strlen(odd[7]), &ids);
    assert_int_equal(ids.type, AIP_MSG_ERROR);
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, odd[4], strlen(odd[4]), &ids);
    assert_int_equal(ids.type, AIP_MSG_NONE);
    /* an id over AIP_ID_MAX is not an id */
    char longid[AIP_ID_MAX + 64];
    memset(longid, 'i', sizeof longid);
    char f2[sizeof longid + 64];
    snprintf(f2, sizeof f2, "{\"type\":\"task_end\",\"session_id\":\"%.*s\"}",
             (int)(AIP_ID_MAX + 1), longid);
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, f2, strlen(f2), &ids);
    assert_int_equal(ids.type, AIP_MSG_TASK_END);
    assert_string_equal(ids.session_id, "");
    /* client envelope: session_id before action_results; the other ids after them */
    static const char cr[] = "{\"type\":\"command_results\",\"status\":\"completed\","
                             "\"session_id\":\"s-2\",\"action_results\":[{\"status\":\"success\","
                             "\"result\":\"xxxxxxxxxxxxxxxx\"}],\"request_id\":\"q\","
                             "\"prev_response_id\":\"p-3\"}";
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_CLIENT, cr, 100, &ids);
    assert_int_equal(ids.type, AIP_MSG_COMMAND_RESULTS);
    assert_string_equal(ids.session_id, "s-2");
    assert_string_equal(ids.prev_response_id, "");
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_CLIENT, cr, strlen(cr), &ids);
    assert_string_equal(ids.prev_response_id, "p-3");
    assert_string_equal(ids.request_id, "q");
}

static void test_peek_proto_prefix(void **state)
{
    (void)state;
    char *res = big_string_json(100000);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END, AIP_STATUS_COMPLETED);
    m.session_id = "t-2";
    m.task_name = "t";
    m.response_id = "r-2";
    m.error = "an error text before the ids";
    m.result = res;
    size_t len;
    char *frame = enc(AIP_ENCODING_PROTO, &m, &len);
    aip_frame_ids ids;
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, frame, 8192, &ids);
    assert_int_equal(ids.type, AIP_MSG_TASK_END);
    assert_string_equal(ids.session_id, "t-2"); /* field 10, before result_json (14) */
    assert_string_equal(ids.response_id, "r-2");
    peek_every_prefix(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, frame, len, 200, AIP_MSG_TASK_END,
                      "t-2", "r-2");
    /* the same frame as JSON: the ids come before the result there too */
    free(frame);
    frame = enc(AIP_ENCODING_JSON, &m, &len);
    aip_frame_peek(AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, frame, 8192, &ids);
    assert_string_equal(ids.session_id, "t-2");
    assert_string_equal(ids.response_id, "r-2");
    free(frame);

    /* a command with large actions: its response_id (13) comes after actions (7) */
    aip_msg c;
    aip_msg_init(&c, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    aip_command cmd = {0};
    cmd.tool_name = "echo";
    char *param = malloc(20100);
    char *bigp = malloc(20100);
    memset(bigp, 'p', 20000);
    bigp[20000] = 0;
    snprintf(param, 20100, "{\"text\":\"%s\"}", bigp);
    cmd.parameters = param;
    cmd.tool_type = AIP_TOOL_ACTION;
    c.actions = &cmd;
    c.n_actions = 1;
    c.has_actions = true;
    c.response_id = "r-cmd";
    c.session_id = "s-cmd";
    frame = enc(AIP_ENCODING_PROTO, &c, &len);
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, frame, 8192, &ids);
    assert_int_equal(ids.type, AIP_MSG_COMMAND);
    assert_string_equal(ids.response_id, "");
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, frame, len, &ids);
    assert_string_equal(ids.response_id, "r-cmd");
    assert_string_equal(ids.session_id, "s-cmd");
    free(frame);
    free(param);
    free(bigp);
    free(res);

    /* garbage, wrong wire types, a field running past the input: never more than what fits */
    static const uint8_t junk[] = {0x08, 0x06, 0x52, 0x05, 'a', 'b'}; /* type 6; id 10 cut */
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, junk, sizeof junk, &ids);
    assert_int_equal(ids.type, AIP_MSG_TASK_END);
    assert_string_equal(ids.session_id, "");
    static const uint8_t bad[] = {0x00, 0x52, 0x01, 'z'};
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, bad, sizeof bad, &ids);
    assert_string_equal(ids.session_id, "");
    static const uint8_t twice[] = {0x52, 0x01, 'a', 0x08, 0x01, 0x52, 0x01, 'b'};
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, twice, sizeof twice, &ids);
    assert_string_equal(ids.session_id, "b"); /* as protobuf: the last one counts */
    assert_int_equal(ids.type, AIP_MSG_NONE); /* register is not a server message */
    /* a key saying field 0 in two bytes: protobuf-c skips it as unknown, so does the peek */
    static const uint8_t zero2[] = {0x08, 0x02, 0x80, 0x00, 0x00, 0x52, 0x01, 'z'};
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, zero2, sizeof zero2, &ids);
    assert_string_equal(ids.session_id, "z");
    aip_frame_peek(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, NULL, 0, &ids);
    assert_int_equal(ids.type, AIP_MSG_NONE);
}

/* The protobuf encoder takes table entry i as the schema's field i + 1 (same name; name_json
 * for a free-form value): a field added to one and not the other must fail here. */
static void test_proto_schema_matches_tables(void **state)
{
    (void)state;
    char why[200] = "";
    int rc = aip_proto_tables_check(why, sizeof why);
    if (rc)
        fail_msg("%s", why);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ufo_full_null_form),
        cmocka_unit_test(test_proto_schema_matches_tables),
        cmocka_unit_test(test_lean_form_and_defaults),
        cmocka_unit_test(test_escapes_and_unicode_out),
        cmocka_unit_test(test_correlation_survives_errors),
        cmocka_unit_test(test_invalid_action_keeps_batch),
        cmocka_unit_test(test_defect_in_one_action_keeps_batch),
        cmocka_unit_test(test_refused_frame_keeps_correlation),
        cmocka_unit_test(test_proto_round_trip_and_presence),
        cmocka_unit_test(test_proto_rejections),
        cmocka_unit_test(test_frame_limit),
        cmocka_unit_test(test_proto_memory_budget),
        cmocka_unit_test(test_encoder_refuses_invalid_models),
        cmocka_unit_test(test_encoding_names),
        cmocka_unit_test(test_pretty_keeps_tokens),
        cmocka_unit_test(test_peek_json_prefix),
        cmocka_unit_test(test_peek_proto_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
