/* Unit tests: the JSON and protobuf codecs (components/codec) — UFO's full-null form, lean
 * form, key order, free-form fidelity, correlation on errors, invalid actions, limits,
 * encoder refusals, pretty-printing. The vector corpus is exercised by test_vectors. */
#include <aip/aip.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

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
    assert_int_equal(rc, AIP_E_PROTOCOL);
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
    assert_int_equal(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "field \"client_id\" must be a string");
    assert_string_equal(e.request_id, "q-1");
    assert_int_equal(e.type, AIP_MSG_DEVICE_INFO_REQUEST);

    rc = dec(AIP_ENVELOPE_SERVER, "{\"type\":\"reboot\",\"status\":\"ok\"}", &m, &e);
    assert_int_equal(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "unknown message type \"reboot\"");
    assert_int_equal(e.type, AIP_MSG_NONE);
    rc = dec(AIP_ENVELOPE_SERVER, "{\"status\":\"ok\"}", &m, &e);
    assert_int_equal(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "missing required field \"type\"");
    rc = dec(AIP_ENVELOPE_SERVER, "{\"type\":\"register\",\"status\":\"ok\"}", &m, &e);
    assert_int_equal(rc, AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "message type \"register\" is not valid in a server message");
    rc = dec(AIP_ENVELOPE_SERVER, "[1]", &m, &e);
    assert_int_equal(rc, AIP_E_PROTOCOL);
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
    assert_int_equal(aip_encode(AIP_ENCODING_JSON, &m, &b), AIP_E_PROTOCOL);
    assert_int_equal(b.len, 0);
    aip_buf_free(&b);
    aip_msg_clear(&m);
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
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, (const uint8_t *)"", 0, NULL, &m, &e),
                     AIP_E_MALFORMED);
    assert_string_equal(e.reason, "empty frame");
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, garbage, 4, NULL, &m, &e),
                     AIP_E_MALFORMED);
    assert_string_equal(e.reason, "not a valid protobuf ClientMessage");
    /* type = 42 (field 1 varint), status ok */
    const uint8_t bad_type[] = {0x08, 42, 0x10, 4};
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, bad_type, 4, NULL, &m, &e),
                     AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "field \"type\" has unknown value 42");
    /* heartbeat/ok with client_id (field 6) = "a\0b" */
    const uint8_t nul_id[] = {0x08, 2, 0x10, 4, 0x32, 3, 'a', 0, 'b'};
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, nul_id, sizeof nul_id, NULL, &m, &e),
                     AIP_E_MALFORMED);
    assert_string_equal(e.reason, "field \"client_id\" contains a NUL byte");
    /* command (4) in a client message */
    const uint8_t cmd[] = {0x08, 4, 0x10, 1};
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, cmd, 4, NULL, &m, &e), AIP_E_PROTOCOL);
    assert_string_equal(e.reason, "message type \"command\" is not valid in a client message");
    /* metadata_json (field 14) that is an array */
    const uint8_t md[] = {0x08, 1, 0x10, 4, 0x72, 2, '[', ']'};
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, md, sizeof md, NULL, &m, &e),
                     AIP_E_PROTOCOL);
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
    assert_int_equal(aip_json_decode(AIP_ENVELOPE_CLIENT, f, strlen(f), &l, &m, &e),
                     AIP_E_TOO_LARGE);
    assert_non_null(strstr(e.reason, "exceeds the limit of 16"));
    assert_int_equal(
        aip_proto_decode(AIP_ENVELOPE_CLIENT, (const uint8_t *)f, strlen(f), &l, &m, &e),
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
    assert_int_equal(aip_proto_decode(AIP_ENVELOPE_CLIENT, buf, o, &l, &m, &e), AIP_E_TOO_COMPLEX);
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
    assert_int_equal(aip_encode_why(AIP_ENCODING_PROTO, &m, &b, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "message type \"command\" is not valid in a client message");
    m.type = AIP_MSG_HEARTBEAT;
    m.metadata = aip_strdup("{\"a\":1,\"a\":1}");
    assert_int_equal(aip_encode_why(AIP_ENCODING_JSON, &m, &b, why, sizeof why), AIP_E_PROTOCOL);
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
    assert_int_equal(aip_encoding_parse("JSON", &e), AIP_E_INVAL); /* case-sensitive */
    assert_int_equal(aip_encoding_parse(NULL, &e), AIP_E_INVAL);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ufo_full_null_form),
        cmocka_unit_test(test_lean_form_and_defaults),
        cmocka_unit_test(test_escapes_and_unicode_out),
        cmocka_unit_test(test_correlation_survives_errors),
        cmocka_unit_test(test_invalid_action_keeps_batch),
        cmocka_unit_test(test_proto_round_trip_and_presence),
        cmocka_unit_test(test_proto_rejections),
        cmocka_unit_test(test_frame_limit),
        cmocka_unit_test(test_proto_memory_budget),
        cmocka_unit_test(test_encoder_refuses_invalid_models),
        cmocka_unit_test(test_encoding_names),
        cmocka_unit_test(test_pretty_keeps_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
