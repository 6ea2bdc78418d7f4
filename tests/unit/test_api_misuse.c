/* SPDX-License-Identifier: MIT */
/* Unit tests: library misuse. Every public entry point of the installed headers is called with
 * NULL where a pointer is expected (and out-of-range values where a number is): nothing
 * crashes, ints are AIP_E_INVAL, pointers NULL, as each header says. And deadlines saturate:
 * a timeout of INT64_MAX ms is "no deadline", not one that passed already (it used to wrap
 * and fail at once), in the future, the connection's wait for registration and a request
 * waiting for its link. */
#include <aip/aip.h>
#include <aip/port.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- NULL everywhere ---------------------------------------------------------------------- */

static void test_null_common_and_buf(void **state)
{
    (void)state;
    assert_aip(aip_log_level_parse("info", NULL), AIP_E_INVAL);
    aip_log_level lv;
    assert_aip(aip_log_level_parse(NULL, &lv), AIP_E_INVAL);
    aip_log(AIP_LOG_ERROR, NULL, NULL); /* no format: nothing */
    aip_log_level old = aip_log_get_level();
    aip_log_set_level((aip_log_level)99); /* clamped */
    assert_int_equal(aip_log_get_level(), AIP_LOG_DEBUG);
    aip_log_set_level((aip_log_level)-5);
    assert_int_equal(aip_log_get_level(), AIP_LOG_ERROR);
    aip_log((aip_log_level)-1, "test", "an out-of-range level is clamped, not an index");
    aip_log_set_level(old);
    assert_null(aip_strdup(NULL));
    assert_null(aip_strndup(NULL, 4));
    aip_free(NULL);
    aip_format_timestamp(0, NULL, 40);
    aip_uuid4(NULL, NULL, 37);
    aip_clock half = {NULL, NULL, NULL}; /* NULL members: the system clock */
    assert_true(aip_now_ns(&half) > 0);
    assert_true(aip_wall_us(&half) > 0);
    aip_random none = {NULL, NULL};
    (void)aip_random_u64(&none);

    aip_buf_init(NULL, 0);
    aip_buf_free(NULL);
    aip_buf_reset(NULL);
    assert_aip(aip_buf_reserve(NULL, 1), AIP_E_INVAL);
    assert_aip(aip_buf_append(NULL, "x", 1), AIP_E_INVAL);
    assert_aip(aip_buf_putc(NULL, 'x'), AIP_E_INVAL);
    assert_aip(aip_buf_puts(NULL, "x"), AIP_E_INVAL);
    assert_aip(aip_buf_nul(NULL), AIP_E_INVAL);
    assert_null(aip_buf_steal(NULL));
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_aip(aip_buf_append(&b, NULL, 3), AIP_E_INVAL);
    assert_int_equal(aip_buf_append(&b, NULL, 0), 0);
    assert_aip(aip_buf_puts(&b, NULL), AIP_E_INVAL);
    aip_buf_free(&b);
}

static void test_null_message_and_codec(void **state)
{
    (void)state;
    aip_msg_init(NULL, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
    aip_msg_clear(NULL);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
    assert_aip(aip_msg_copy(NULL, &m), AIP_E_INVAL);
    assert_aip(aip_msg_copy(&m, NULL), AIP_E_INVAL);
    assert_aip(aip_msg_set_str(NULL, "x"), AIP_E_INVAL);
    assert_aip(aip_msg_set_json(NULL, "{}", AIP_JSON_OBJECT), AIP_E_INVAL);
    assert_null(aip_msg_add_command(NULL));
    assert_null(aip_msg_add_result(NULL));
    assert_aip(aip_msg_add_message(NULL, "x"), AIP_E_INVAL);
    char why[64] = "";
    assert_aip(aip_msg_validate(NULL, why, sizeof why), AIP_E_INVAL);
    assert_string_equal(why, "no message");
    assert_aip(aip_msg_validate(NULL, NULL, 10), AIP_E_INVAL);
    aip_msg bad;
    aip_msg_init(&bad, AIP_ENVELOPE_CLIENT, AIP_MSG_NONE, AIP_STATUS_OK);
    assert_aip(aip_msg_validate(&bad, NULL, 10), AIP_E_PROTOCOL); /* why NULL, len > 0 */
    assert_true(aip_msg_equal(NULL, NULL));
    assert_false(aip_msg_equal(&m, NULL));
    assert_false(aip_msg_equal(NULL, &m));
    aip_msg_type t;
    assert_aip(aip_msg_type_parse(NULL, 4, &t), AIP_E_INVAL);
    assert_aip(aip_msg_type_parse("task", 4, NULL), AIP_E_INVAL);
    aip_status st;
    assert_aip(aip_status_parse(NULL, 0, &st), AIP_E_PROTOCOL); /* "" is no status */
    aip_client_type ct;
    assert_aip(aip_client_type_parse(NULL, 6, &ct), AIP_E_INVAL);
    assert_aip(aip_tool_type_parse("action", 6, NULL), AIP_E_INVAL);
    assert_aip(aip_result_status_parse(NULL, 1, NULL), AIP_E_INVAL);
    assert_null(aip_msg_type_str((aip_msg_type)1000));

    aip_encoding enc;
    assert_aip(aip_encoding_parse("json", NULL), AIP_E_INVAL);
    assert_aip(aip_encoding_parse(NULL, &enc), AIP_E_INVAL);
    aip_codec_limits_default(NULL);
    aip_decode_error err;
    aip_msg out;
    memset(&out, 0, sizeof out);
    assert_aip(aip_json_decode(AIP_ENVELOPE_SERVER, NULL, 10, NULL, &out, &err), AIP_E_INVAL);
    assert_aip(err.code, AIP_E_INVAL);
    assert_aip(aip_json_decode(AIP_ENVELOPE_SERVER, "{}", 2, NULL, NULL, &err), AIP_E_INVAL);
    assert_aip(aip_proto_decode(AIP_ENVELOPE_SERVER, NULL, 10, NULL, &out, NULL), AIP_E_INVAL);
    assert_aip(aip_decode(AIP_ENCODING_PROTO, AIP_ENVELOPE_SERVER, "x", 1, NULL, NULL, NULL),
               AIP_E_INVAL);
    /* NULL frame of length 0: an empty frame, refused as such */
    assert_aip(aip_json_decode(AIP_ENVELOPE_SERVER, NULL, 0, NULL, &out, &err), AIP_E_MALFORMED);
    aip_msg_clear(&out);
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_aip(aip_encode(AIP_ENCODING_JSON, NULL, &b), AIP_E_INVAL);
    assert_aip(aip_json_encode(&m, NULL), AIP_E_INVAL);
    assert_aip(aip_proto_encode(NULL, NULL), AIP_E_INVAL);
    assert_aip(aip_encode_why(AIP_ENCODING_JSON, NULL, &b, why, sizeof why), AIP_E_INVAL);
    assert_string_equal(why, "no message");
    assert_aip(aip_encode_why(AIP_ENCODING_JSON, &bad, &b, NULL, 50), AIP_E_PROTOCOL);
    assert_aip(aip_json_validate(NULL, 5, AIP_JSON_ANY, NULL, why, sizeof why), AIP_E_INVAL);
    assert_int_equal(aip_json_validate("{}", 2, AIP_JSON_ANY, NULL, NULL, 99), 0);
    assert_aip(aip_json_validate("{", 1, AIP_JSON_ANY, NULL, NULL, 99), AIP_E_MALFORMED);
    assert_aip(aip_json_pretty(NULL, 2, 2, &b), AIP_E_INVAL);
    assert_aip(aip_json_pretty("{}", 2, 2, NULL), AIP_E_INVAL);
    assert_aip(aip_json_put_string(NULL, "x", 1), AIP_E_INVAL);
    assert_aip(aip_json_put_string(&b, NULL, 1), AIP_E_INVAL);
    assert_int_equal(b.len, 0);
    aip_buf_free(&b);
}

static void test_null_future(void **state)
{
    (void)state;
    aip_future_retain(NULL);
    aip_future_release(NULL);
    assert_aip(aip_future_wait(NULL, 0), AIP_E_INVAL);
    assert_aip(aip_future_wait(NULL, -1), AIP_E_INVAL);
    assert_false(aip_future_done(NULL));
    assert_aip(aip_future_status(NULL), AIP_E_INVAL);
    assert_null(aip_future_msg(NULL));
    assert_null(aip_future_error(NULL));
    assert_aip(aip_future_cancel(NULL), AIP_E_INVAL);
    assert_aip(aip_future_set_callback(NULL, NULL, NULL), AIP_E_INVAL);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END, AIP_STATUS_COMPLETED);
    assert_int_equal(aip_msg_set_str(&m.session_id, "s@1"), 0);
    assert_aip(aip_future_complete(NULL, 0, &m, "x"), AIP_E_INVAL);
    assert_null(m.session_id); /* ownership moved (freed), as documented: no leak */
}

static void test_null_conn(void **state)
{
    (void)state;
    aip_conn_config cfg;
    aip_conn_config_init(NULL);
    aip_conn_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:1/ws";
    cfg.client_id = "misuse";
    assert_aip(aip_conn_create(&cfg, NULL), AIP_E_INVAL);
    aip_conn *c = (aip_conn *)&cfg; /* must be overwritten */
    assert_aip(aip_conn_create(NULL, &c), AIP_E_INVAL);
    assert_null(c);
    assert_aip(aip_conn_wait_registered(NULL, 0), AIP_E_INVAL);
    assert_aip(aip_conn_wait_registered(NULL, -1), AIP_E_INVAL);
    char why[16] = "x";
    assert_aip(aip_conn_get_refusal(NULL, why, sizeof why), AIP_E_INVAL);
    assert_string_equal(why, "");
    assert_aip(aip_conn_get_refusal(NULL, NULL, 0), AIP_E_INVAL);
    aip_future *f = NULL;
    assert_aip(aip_conn_request_device_info(NULL, "d", NULL, &f), AIP_E_INVAL);
    aip_task_opts to = {.request = "x"};
    assert_aip(aip_conn_send_task(NULL, &to, &f), AIP_E_INVAL);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
    assert_aip(aip_conn_send(NULL, &m), AIP_E_INVAL);
    assert_aip(aip_conn_send_on(NULL, 1, &m), AIP_E_INVAL);
    assert_aip(aip_conn_reload_tls(NULL, NULL, NULL, NULL), AIP_E_INVAL);
    assert_int_equal(aip_conn_get_state(NULL), AIP_CONN_STOPPED);
    assert_null(aip_conn_client_id(NULL));
    assert_int_equal(aip_conn_encoding(NULL), AIP_ENCODING_JSON);
    aip_conn_stats s;
    memset(&s, 0xff, sizeof s);
    aip_conn_get_stats(NULL, &s);
    assert_int_equal(s.requests, 0);
    aip_conn_destroy(NULL);
    aip_conn_destroy_ex(NULL, 1000, NULL, 0);
    assert_string_equal(aip_conn_state_str((aip_conn_state)77), "unknown");

    /* a live connection (nothing listens on port 1): its calls with NULL arguments */
    assert_int_equal(aip_conn_create(&cfg, &c), 0);
    assert_aip(aip_conn_request_device_info(c, "d", NULL, NULL), AIP_E_INVAL);
    assert_aip(aip_conn_send_task(c, NULL, &f), AIP_E_INVAL);
    assert_aip(aip_conn_send_task(c, &to, NULL), AIP_E_INVAL);
    aip_task_opts no_request = {0};
    assert_aip(aip_conn_send_task(c, &no_request, &f), AIP_E_INVAL);
    assert_aip(aip_conn_send(c, NULL), AIP_E_INVAL);
    aip_conn_get_stats(c, NULL);
    aip_conn_destroy(c);
}

static void test_null_executor_agent_device_info(void **state)
{
    (void)state;
    assert_aip(aip_executor_create(NULL, NULL), AIP_E_INVAL);
    assert_aip(aip_executor_register(NULL, NULL), AIP_E_INVAL);
    assert_aip(aip_executor_register_builtins(NULL), AIP_E_INVAL);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    assert_int_equal(aip_msg_set_str(&m.response_id, "r"), 0);
    assert_aip(aip_executor_submit(NULL, &m, NULL, NULL), AIP_E_INVAL);
    assert_null(m.response_id); /* freed: the caller owns nothing after a failed submit */
    assert_aip(aip_executor_submit(NULL, NULL, NULL, NULL), AIP_E_INVAL);
    assert_null(aip_executor_features_json(NULL));
    aip_executor_stop(NULL);
    aip_executor_destroy(NULL);
    aip_executor *e;
    assert_int_equal(aip_executor_create(NULL, &e), 0);
    assert_aip(aip_executor_register(e, NULL), AIP_E_INVAL);
    aip_executor_destroy(e);

    aip_agent_config ac;
    memset(&ac, 0, sizeof ac);
    aip_conn_config_init(&ac.conn);
    ac.conn.url = "ws://127.0.0.1:1/ws";
    ac.conn.client_id = "misuse-agent";
    assert_aip(aip_agent_create(&ac, NULL), AIP_E_INVAL);
    aip_agent *a = NULL;
    assert_aip(aip_agent_create(NULL, &a), AIP_E_INVAL);
    assert_aip(aip_agent_register_tool(NULL, NULL), AIP_E_INVAL);
    assert_aip(aip_agent_start(NULL), AIP_E_INVAL);
    assert_null(aip_agent_conn(NULL));
    assert_null(aip_agent_system_info(NULL));
    aip_agent_stats as;
    memset(&as, 0xff, sizeof as);
    aip_agent_get_stats(NULL, &as);
    assert_int_equal(as.batches, 0);
    aip_agent_destroy(NULL, 1000, NULL);

    /* the agent copies its config strings: freeing them after create is fine (ASan checks) */
    char *url = aip_strdup("ws://127.0.0.1:1/ws"), *id = aip_strdup("misuse-agent");
    ac.conn.url = url;
    ac.conn.client_id = id;
    assert_int_equal(aip_agent_create(&ac, &a), 0);
    memset(url, 'x', strlen(url));
    memset(id, 'y', strlen(id));
    aip_free(url);
    aip_free(id);
    aip_agent_get_stats(a, NULL);
    assert_aip(aip_agent_register_tool(a, NULL), AIP_E_INVAL);
    char *si = aip_agent_system_info(a);
    assert_non_null(si);
    assert_non_null(strstr(si, "\"device_id\":\"misuse-agent\""));
    aip_free(si);
    assert_int_equal(aip_agent_start(a), 0);
    assert_string_equal(aip_conn_client_id(aip_agent_conn(a)), "misuse-agent");
    aip_agent_destroy(a, 1000, NULL);

    char *json = (char *)&ac;
    assert_aip(aip_device_info_collect(NULL, &json), AIP_E_INVAL);
    assert_null(json);
    aip_device_info_opts o = {0};
    assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL); /* no device_id */
    o.device_id = "d";
    assert_aip(aip_device_info_collect(&o, NULL), AIP_E_INVAL);
    assert_aip(aip_device_info_format_gb(1, NULL, 10), AIP_E_INVAL);
    char ip[AIP_DEVICE_INFO_IP_MAX];
    assert_aip(aip_device_info_pick_ip(NULL, NULL, 1, ip, sizeof ip), AIP_E_INVAL);
    assert_aip(aip_device_info_pick_ip(NULL, NULL, 0, NULL, 16), AIP_E_INVAL);
    assert_int_equal(aip_device_info_pick_ip(NULL, NULL, 0, ip, sizeof ip), 0);
}

/* ---- deadlines saturate ------------------------------------------------------------------- */

static void test_saturating_helpers(void **state)
{
    (void)state;
    assert_int_equal(aip_add_sat(1, 2), 3);
    assert_true(aip_add_sat(UINT64_MAX - 1, 2) == AIP_NEVER);
    assert_true(aip_add_sat(UINT64_MAX, 0) == AIP_NEVER);
    assert_true(aip_deadline_ms(1000, 0) == 1000);
    assert_true(aip_deadline_ms(1000, 5) == 5001000);
    assert_true(aip_deadline_ms(1000, -1) == AIP_NEVER);
    assert_true(aip_deadline_ms(1000, INT64_MIN) == AIP_NEVER);
    assert_true(aip_deadline_ms(1000, INT64_MAX) == AIP_NEVER);
    assert_true(aip_deadline_ms(UINT64_MAX - 10, 1) == AIP_NEVER);
    /* the largest timeout that still fits is a real deadline, not a wrapped one */
    int64_t big = (int64_t)(UINT64_MAX / 1000000u) - 1;
    assert_true(aip_deadline_ms(0, big) == (uint64_t)big * 1000000u);
    assert_true(aip_deadline_ms(5, big) > 5);
}

typedef struct completer {
    aip_future *f;
    aip_thread t;
} completer;

static void *complete_later(void *arg)
{
    completer *c = arg;
    usleep(100 * 1000);
    aip_future_complete(c->f, 0, NULL, NULL);
    return NULL;
}

static void test_future_wait_int64_max(void **state)
{
    (void)state;
    aip_future *f = aip_future_create();
    /* INT64_MAX ms used to wrap into a deadline in the past (AIP_E_TIMEOUT at once): now only
     * the completion ends the wait */
    completer c = {f, {0}};
    assert_int_equal(aip_thread_start(&c.t, "completer", complete_later, &c), 0);
    assert_int_equal(aip_future_wait(f, INT64_MAX), 0); /* was AIP_E_TIMEOUT at once */
    assert_true(aip_future_done(f));
    aip_thread_join(&c.t);
    aip_future_release(f);

    f = aip_future_create();
    c.f = f;
    assert_int_equal(aip_thread_start(&c.t, "completer", complete_later, &c), 0);
    assert_int_equal(aip_future_wait(f, INT64_MAX / 1000), 0);
    aip_thread_join(&c.t);
    aip_future_release(f);
}

typedef struct waiter {
    aip_conn *c;
    aip_thread t;
    int mode; /* 0: wait_registered, 1: a request that waits for the link */
    _Atomic int rc;
    _Atomic bool done;
} waiter;

static void *wait_main(void *arg)
{
    waiter *w = arg;
    int rc;
    if (w->mode == 0) {
        rc = aip_conn_wait_registered(w->c, INT64_MAX);
    } else {
        aip_request_opts o = {.timeout_ms = INT64_MAX, .wait_for_link = true};
        aip_future *f = NULL;
        rc = aip_conn_request_device_info(w->c, "d", &o, &f);
        aip_future_release(f);
    }
    atomic_store(&w->rc, rc);
    atomic_store(&w->done, true);
    return NULL;
}

/* Nothing listens on 127.0.0.1:1, so the connection never registers: a wait without a
 * deadline ends only when the connection is destroyed (AIP_E_SHUTDOWN). */
static void test_conn_waits_int64_max(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        aip_conn_config cfg;
        aip_conn_config_init(&cfg);
        cfg.url = "ws://127.0.0.1:1/ws";
        cfg.client_id = "misuse";
        cfg.backoff_base_ms = 50;
        cfg.backoff_cap_ms = 100;
        aip_conn *c;
        assert_int_equal(aip_conn_create(&cfg, &c), 0);
        waiter w = {.c = c, .mode = mode};
        atomic_init(&w.rc, 1);
        atomic_init(&w.done, false);
        assert_int_equal(aip_thread_start(&w.t, "waiter", wait_main, &w), 0);
        usleep(300 * 1000);
        assert_false(atomic_load(&w.done)); /* was AIP_E_TIMEOUT at once */
        aip_conn_destroy(c);                /* wakes the waiter, then waits for it to leave */
        aip_thread_join(&w.t);
        assert_true(atomic_load(&w.done));
        assert_aip(atomic_load(&w.rc), AIP_E_SHUTDOWN);
    }
}

int main(void)
{
    aip_log_set_level(AIP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_common_and_buf),
        cmocka_unit_test(test_null_message_and_codec),
        cmocka_unit_test(test_null_future),
        cmocka_unit_test(test_null_conn),
        cmocka_unit_test(test_null_executor_agent_device_info),
        cmocka_unit_test(test_saturating_helpers),
        cmocka_unit_test(test_future_wait_int64_max),
        cmocka_unit_test(test_conn_waits_int64_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
