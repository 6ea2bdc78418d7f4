/* SPDX-License-Identifier: MIT */
/* Unit tests: the MessageProcessor — decode by opcode, dispatch of every server type to its
 * handler, malformed frames reported with correlation, unhandled types counted. */
#include <aip/aip.h>
#include <aip/internal/processor.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdio.h>
#include <string.h>

static int g_seen[AIP_MSG_TYPE_COUNT_];
static char g_last_id[64];
static aip_decode_error g_err;
static int g_malformed;

static void handler(void *user, aip_msg *m)
{
    (void)user;
    g_seen[m->type]++;
    snprintf(g_last_id, sizeof g_last_id, "%s", m->response_id ? m->response_id : "");
    if (m->type == AIP_MSG_COMMAND) { /* a handler may take the contents */
        aip_msg mine = *m;
        memset(m, 0, sizeof *m);
        aip_msg_clear(&mine);
    }
}

static void malformed(void *user, const aip_decode_error *e, bool binary)
{
    (void)user;
    (void)binary;
    g_err = *e;
    g_malformed++;
}

static int feed_json(aip_processor *p, const char *s)
{
    return aip_processor_feed(p, (const uint8_t *)s, strlen(s), false);
}

static void test_dispatch_every_server_type(void **state)
{
    (void)state;
    aip_processor p;
    aip_processor_init(&p, AIP_ENVELOPE_SERVER, NULL);
    static const aip_msg_type types[] = {AIP_MSG_HEARTBEAT,
                                         AIP_MSG_TASK,
                                         AIP_MSG_COMMAND,
                                         AIP_MSG_TASK_END,
                                         AIP_MSG_DEVICE_INFO_REQUEST,
                                         AIP_MSG_DEVICE_INFO_RESPONSE,
                                         AIP_MSG_ERROR};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        aip_processor_on(&p, types[i], handler, NULL);
    aip_processor_on_malformed(&p, malformed, NULL);
    memset(g_seen, 0, sizeof g_seen);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char f[200];
        snprintf(f, sizeof f, "{\"type\":\"%s\",\"status\":\"ok\",\"response_id\":\"r%zu\"}",
                 aip_msg_type_str(types[i]), i);
        assert_int_equal(feed_json(&p, f), 0);
        assert_int_equal(g_seen[types[i]], 1);
        char want[8];
        snprintf(want, sizeof want, "r%zu", i);
        assert_string_equal(g_last_id, want);
    }
    /* the same message as a binary (protobuf) frame */
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END, AIP_STATUS_COMPLETED);
    aip_msg_set_str(&m.response_id, "bin");
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_int_equal(aip_encode(AIP_ENCODING_PROTO, &m, &b), 0);
    assert_int_equal(aip_processor_feed(&p, b.data, b.len, true), 0);
    assert_int_equal(g_seen[AIP_MSG_TASK_END], 2);
    assert_string_equal(g_last_id, "bin");
    aip_buf_free(&b);
    aip_msg_clear(&m);
    assert_int_equal(atomic_load(&p.received[AIP_MSG_TASK_END]), 2);
    assert_int_equal(atomic_load(&p.malformed), 0);
}

static void test_malformed_and_unhandled(void **state)
{
    (void)state;
    aip_processor p;
    aip_processor_init(&p, AIP_ENVELOPE_SERVER, NULL);
    aip_processor_on(&p, AIP_MSG_HEARTBEAT, handler, NULL);
    aip_processor_on_malformed(&p, malformed, NULL);
    g_malformed = 0;
    assert_aip(feed_json(&p, "{\"type\":\"command\",\"status\":\"continue\",\"response_id\":"
                             "\"r-9\",\"actions\":\"nope\"}"),
               AIP_E_PROTOCOL);
    assert_int_equal(g_malformed, 1);
    assert_int_equal(g_err.type, AIP_MSG_COMMAND);
    assert_string_equal(g_err.response_id, "r-9");
    assert_aip(feed_json(&p, "garbage"), AIP_E_MALFORMED);
    /* text in a binary frame is not a protobuf ServerMessage */
    assert_aip(aip_processor_feed(&p, (const uint8_t *)"\xff\xfe", 2, true), AIP_E_MALFORMED);
    assert_int_equal(atomic_load(&p.malformed), 3);
    /* a client-only type from a server is malformed, not dispatched */
    assert_aip(feed_json(&p, "{\"type\":\"register\",\"status\":\"ok\"}"), AIP_E_PROTOCOL);
    /* decodes, but nobody handles task_end here */
    assert_int_equal(feed_json(&p, "{\"type\":\"task_end\",\"status\":\"failed\"}"), 0);
    assert_int_equal(atomic_load(&p.unhandled), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_every_server_type),
        cmocka_unit_test(test_malformed_and_unhandled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
