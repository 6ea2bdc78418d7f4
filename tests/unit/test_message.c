/* SPDX-License-Identifier: MIT */
/* Unit tests: the message model (components/message) — wire strings, envelope rules,
 * setters, validation, deep copy and equality. */
#include <aip/aip.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <string.h>

static void test_enum_wire_strings_round_trip(void **state)
{
    (void)state;
    static const char *types[] = {"register",
                                  "heartbeat",
                                  "task",
                                  "command",
                                  "command_results",
                                  "task_end",
                                  "device_info_request",
                                  "device_info_response",
                                  "error"};
    for (int t = AIP_MSG_REGISTER; t < AIP_MSG_TYPE_COUNT_; t++) {
        const char *s = aip_msg_type_str((aip_msg_type)t);
        assert_string_equal(s, types[t - 1]);
        aip_msg_type back;
        assert_int_equal(aip_msg_type_parse(s, strlen(s), &back), 0);
        assert_int_equal(back, t);
    }
    static const char *st[] = {"continue", "completed", "failed", "ok", "error"};
    for (int s = AIP_STATUS_CONTINUE; s < AIP_STATUS_COUNT_; s++)
        assert_string_equal(aip_status_str((aip_status)s), st[s - 1]);
    assert_string_equal(aip_client_type_str(AIP_CLIENT_DEVICE), "device");
    assert_string_equal(aip_client_type_str(AIP_CLIENT_CONSTELLATION), "constellation");
    assert_string_equal(aip_tool_type_str(AIP_TOOL_DATA_COLLECTION), "data_collection");
    assert_string_equal(aip_tool_type_str(AIP_TOOL_ACTION), "action");
    assert_string_equal(aip_result_status_str(AIP_RESULT_NONE), "none");
    assert_null(aip_msg_type_str(AIP_MSG_NONE));
    assert_null(aip_status_str((aip_status)99));

    aip_status s;
    assert_aip(aip_status_parse("OK", 2, &s), AIP_E_PROTOCOL); /* case-sensitive */
    assert_aip(aip_status_parse("ok ", 3, &s), AIP_E_PROTOCOL);
    assert_int_equal(aip_status_parse("okay", 2, &s), 0); /* length-bounded: "ok" */
    aip_msg_type t;
    assert_aip(aip_msg_type_parse("reboot", 6, &t), AIP_E_PROTOCOL);
}

static void test_type_allowed_per_envelope(void **state)
{
    (void)state;
    assert_true(aip_msg_type_allowed(AIP_ENVELOPE_CLIENT, AIP_MSG_REGISTER));
    assert_false(aip_msg_type_allowed(AIP_ENVELOPE_SERVER, AIP_MSG_REGISTER));
    assert_true(aip_msg_type_allowed(AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS));
    assert_false(aip_msg_type_allowed(AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND_RESULTS));
    assert_true(aip_msg_type_allowed(AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND));
    assert_false(aip_msg_type_allowed(AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND));
    for (int t = AIP_MSG_HEARTBEAT; t < AIP_MSG_TYPE_COUNT_; t++)
        if (t != AIP_MSG_COMMAND && t != AIP_MSG_COMMAND_RESULTS)
            assert_true(aip_msg_type_allowed(AIP_ENVELOPE_CLIENT, (aip_msg_type)t) &&
                        aip_msg_type_allowed(AIP_ENVELOPE_SERVER, (aip_msg_type)t));
    assert_false(aip_msg_type_allowed(AIP_ENVELOPE_CLIENT, AIP_MSG_NONE));
}

static void test_setters_validate_and_canonicalise(void **state)
{
    (void)state;
    char *f = NULL;
    assert_int_equal(aip_msg_set_str(&f, "dev-1"), 0);
    assert_string_equal(f, "dev-1");
    assert_aip(aip_msg_set_str(&f, "bad \xff"), AIP_E_INVAL);
    assert_string_equal(f, "dev-1"); /* unchanged on failure */
    assert_int_equal(aip_msg_set_str(&f, NULL), 0);
    assert_null(f);

    assert_int_equal(aip_msg_set_json(&f, " {\"a\": 32.0} ", AIP_JSON_OBJECT), 0);
    assert_string_equal(f, "{\"a\": 32.0}");
    assert_aip(aip_msg_set_json(&f, "[1]", AIP_JSON_OBJECT), AIP_E_MALFORMED);
    assert_aip(aip_msg_set_json(&f, "{\"a\":1,\"a\":2}", AIP_JSON_ANY), AIP_E_MALFORMED);
    assert_string_equal(f, "{\"a\": 32.0}");
    assert_int_equal(aip_msg_set_json(&f, "null", AIP_JSON_OBJECT), 0);
    assert_null(f);
    assert_int_equal(aip_msg_set_json(&f, "\"text\"", AIP_JSON_ANY), 0);
    assert_string_equal(f, "\"text\"");
    aip_free(f);
}

static void build_command(aip_msg *m)
{
    aip_msg_init(m, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    assert_int_equal(aip_msg_set_str(&m->response_id, "r-1"), 0);
    assert_int_equal(aip_msg_set_str(&m->session_id, "s@1"), 0);
    for (int i = 0; i < 3; i++) {
        aip_command *c = aip_msg_add_command(m);
        assert_non_null(c);
        c->tool_type = AIP_TOOL_ACTION;
        assert_int_equal(aip_msg_set_str(&c->tool_name, "echo"), 0);
        assert_int_equal(aip_msg_set_json(&c->parameters, "{\"text\":\"hi\"}", AIP_JSON_OBJECT), 0);
        assert_int_equal(aip_msg_set_str(&c->call_id, i == 0 ? "c0" : i == 1 ? "c1" : "c2"), 0);
    }
    assert_int_equal(aip_msg_add_message(m, "log line"), 0);
}

static void test_validate_rules(void **state)
{
    (void)state;
    char why[200];
    aip_msg m;
    build_command(&m);
    assert_int_equal(aip_msg_validate(&m, why, sizeof why), 0);

    m.type = AIP_MSG_REGISTER;
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "message type \"register\" is not valid in a server message");
    m.type = AIP_MSG_COMMAND;

    m.status = AIP_STATUS_NONE;
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "missing required field \"status\"");
    m.status = AIP_STATUS_CONTINUE;

    assert_int_equal(aip_msg_set_str(&m.client_id, "x"), 0); /* a client-only field */
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "field \"client_id\" does not belong in a server message");
    assert_int_equal(aip_msg_set_str(&m.client_id, NULL), 0);

    m.actions[1].tool_type = AIP_TOOL_NONE;
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_string_equal(why, "action 1: missing required field \"tool_type\"");
    m.actions[1].tool_type = AIP_TOOL_DATA_COLLECTION;

    char long_id[AIP_ID_MAX + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    assert_int_equal(aip_msg_set_str(&m.session_id, long_id), 0);
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_non_null(strstr(why, "longer than 256 bytes"));
    long_id[AIP_ID_MAX] = 0; /* exactly the limit is fine */
    assert_int_equal(aip_msg_set_str(&m.session_id, long_id), 0);
    assert_int_equal(aip_msg_validate(&m, why, sizeof why), 0);

    /* free-form text assigned directly (bypassing the setter) is still checked */
    aip_free(m.result);
    m.result = aip_strdup("{broken");
    assert_aip(aip_msg_validate(&m, why, sizeof why), AIP_E_PROTOCOL);
    assert_non_null(strstr(why, "field \"result\" is not valid JSON"));
    aip_msg_clear(&m);
}

static void test_copy_and_equal(void **state)
{
    (void)state;
    aip_msg a, b;
    build_command(&a);
    assert_int_equal(aip_msg_copy(&b, &a), 0);
    assert_true(aip_msg_equal(&a, &b));
    assert_ptr_not_equal(a.actions, b.actions);
    assert_ptr_not_equal(a.actions[0].tool_name, b.actions[0].tool_name);

    assert_int_equal(
        aip_msg_set_json(&b.actions[2].parameters, "{\"text\":\"hi\" }", AIP_JSON_OBJECT), 0);
    assert_false(aip_msg_equal(&a, &b)); /* free-form text compares byte for byte */
    aip_msg_clear(&b);

    assert_int_equal(aip_msg_copy(&b, &a), 0);
    b.has_messages = false;
    b.n_messages = 0; /* leaks nothing: the copy's list stays owned and is freed below */
    assert_false(aip_msg_equal(&a, &b));
    b.n_messages = 1;
    b.has_messages = true;
    aip_msg_clear(&b);

    aip_msg e1, e2;
    aip_msg_init(&e1, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    aip_msg_init(&e2, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    e2.has_actions = true; /* [] is not null */
    assert_false(aip_msg_equal(&e1, &e2));
    aip_msg_clear(&a);
    aip_msg_clear(&e1);
    aip_msg_clear(&e2);
}

static void test_clear_is_idempotent(void **state)
{
    (void)state;
    aip_msg m = {0};
    aip_msg_clear(&m);
    aip_msg_clear(&m);
    aip_msg_clear(NULL);
    build_command(&m);
    aip_msg_clear(&m);
    assert_null(m.actions);
    assert_int_equal(m.n_actions, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enum_wire_strings_round_trip),
        cmocka_unit_test(test_type_allowed_per_envelope),
        cmocka_unit_test(test_setters_validate_and_canonicalise),
        cmocka_unit_test(test_validate_rules),
        cmocka_unit_test(test_copy_and_equal),
        cmocka_unit_test(test_clear_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
