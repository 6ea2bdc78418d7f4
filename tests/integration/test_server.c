/* SPDX-License-Identifier: MIT */
/*
 * Integration: aip-test-server on 127.0.0.1 with libaip on both sides — a device (its command
 * and device-info hooks answer like a real agent would) and constellations in JSON and
 * protobuf. Covers tasks as command batches, failures, correlated errors, live device info,
 * a device leaving mid-task, tokens, the HTTP API, peers vanishing mid-frame (no error in the
 * server's log), and aip-bench through the server with jittered, out-of-order answers.
 */
#include <aip/aip.h>

#include "http_get.h"
#include "peer_proc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AIP_TOOLS_DIR
#error "AIP_TOOLS_DIR must be defined"
#endif

static peer_proc g_srv;
static char g_errlog[256];

static void start_server(const char *a1, const char *a2, const char *a3, const char *a4)
{
    memset(&g_srv, 0, sizeof g_srv);
    snprintf(g_errlog, sizeof g_errlog, "/tmp/aip-srv-%d.log", (int)getpid());
    snprintf(g_srv.errlog, sizeof g_srv.errlog, "%s", g_errlog);
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)AIP_TOOLS_DIR "/aip-test-server";
    argv[n++] = (char *)"--port";
    argv[n++] = (char *)"0";
    const char *extra[] = {a1, a2, a3, a4};
    bool keyed = false;
    for (int i = 0; i < 4 && extra[i]; i++) {
        argv[n++] = (char *)extra[i];
        keyed = keyed || strcmp(extra[i], "--token") == 0;
    }
    if (!keyed)
        argv[n++] = (char *)"--no-token"; /* the clients here connect without a key */
    argv[n] = NULL;
    assert_int_equal(proc_start_listener(&g_srv, argv), 0);
}

/* Lines of the server's stderr at warn or error level (a vanished peer must add none), but for
 * the start-up warning that --no-token asks for. */
static int server_warnings(void)
{
    FILE *f = fopen(g_errlog, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if ((strstr(line, " warn ") || strstr(line, " error ")) && !strstr(line, "--no-token:"))
            n++;
    fclose(f);
    return n;
}

static void stop_server(void)
{
    peer_stop(&g_srv);
    unlink(g_errlog);
}

/* ---- a device built on libaip ----------------------------------------------------------- */

static _Atomic int g_device_silent; /* 1: commands are not answered */
static _Atomic int g_commands_seen;

/* Tools: "echo" returns its parameters, "fail" fails, anything else succeeds with null. */
static void device_on_command(aip_conn *c, aip_msg *m, uint64_t link, void *user)
{
    (void)user;
    atomic_fetch_add(&g_commands_seen, 1);
    if (atomic_load(&g_device_silent))
        return;
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, m->status);
    aip_msg_set_str(&r.prev_response_id, m->response_id);
    aip_msg_set_str(&r.session_id, m->session_id);
    r.has_action_results = true;
    for (size_t i = 0; i < m->n_actions; i++) {
        aip_result *res = aip_msg_add_result(&r);
        const aip_command *a = &m->actions[i];
        aip_msg_set_str(&res->call_id, a->call_id);
        if (a->tool_name && strcmp(a->tool_name, "fail") == 0) {
            res->status = AIP_RESULT_FAILURE;
            aip_msg_set_str(&res->error, "failed on purpose");
        } else {
            res->status = AIP_RESULT_SUCCESS;
            if (a->tool_name && strcmp(a->tool_name, "echo") == 0 && a->parameters)
                aip_msg_set_json(&res->result, a->parameters, AIP_JSON_ANY);
        }
    }
    aip_conn_send_on(c, link, &r);
    aip_msg_clear(&r);
}

static void device_on_info(aip_conn *c, aip_msg *m, uint64_t link, void *user)
{
    (void)user;
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_DEVICE_INFO_RESPONSE, AIP_STATUS_OK);
    aip_msg_set_str(&r.prev_response_id, m->response_id);
    aip_msg_set_json(&r.metadata, "{\"device_id\":\"dev-1\",\"fresh\":true}", AIP_JSON_OBJECT);
    aip_conn_send_on(c, link, &r);
    aip_msg_clear(&r);
}

static aip_conn *start_device(aip_encoding enc)
{
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = g_srv.url;
    cfg.client_id = "dev-1";
    cfg.encoding = enc;
    cfg.metadata_json = "{\"system_info\":{\"device_id\":\"dev-1\",\"platform\":\"linux\","
                        "\"memory_total_gb\":32.0},\"platform\":\"linux\"}";
    cfg.on_command = device_on_command;
    cfg.on_device_info_request = device_on_info;
    aip_conn *c;
    assert_int_equal(aip_conn_create(&cfg, &c), 0);
    assert_int_equal(aip_conn_wait_registered(c, 5000), 0);
    return c;
}

static aip_conn *start_constellation(const char *id, aip_encoding enc, const char *token)
{
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = g_srv.url;
    cfg.client_id = id;
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = "dev-1";
    cfg.encoding = enc;
    cfg.token = token;
    cfg.backoff_base_ms = 50;
    aip_conn *c;
    assert_int_equal(aip_conn_create(&cfg, &c), 0);
    return c;
}

static int run_task(aip_conn *c, const char *request, const char *target, char *out, size_t n)
{
    aip_task_opts o = {.request = request, .target_id = target, .req = {.timeout_ms = 10000}};
    aip_future *f;
    int rc = aip_conn_send_task(c, &o, &f);
    if (rc)
        return rc;
    rc = aip_future_wait(f, 15000);
    const aip_msg *m = aip_future_msg(f);
    snprintf(out, n, "%s|%s", m && m->result ? m->result : "",
             aip_future_error(f) ? aip_future_error(f) : "");
    aip_future_release(f);
    return rc;
}

/* ---- scenarios ------------------------------------------------------------------------------ */

static void tasks_and_info(aip_encoding dev_enc, aip_encoding enc)
{
    start_server(NULL, NULL, NULL, NULL);
    aip_conn *dev = start_device(dev_enc);
    aip_conn *c = start_constellation("ctl-1", enc, NULL);
    assert_int_equal(aip_conn_wait_registered(c, 5000), 0);
    assert_int_equal(aip_conn_encoding(c), enc);
    assert_int_equal(aip_conn_encoding(dev), dev_enc);

    /* auto mode: the device listed live_device_info, so the server asks it */
    aip_future *f;
    assert_int_equal(aip_conn_request_device_info(c, NULL, NULL, &f), 0);
    assert_int_equal(aip_future_wait(f, 5000), 0);
    assert_non_null(strstr(aip_future_msg(f)->result, "\"fresh\":true"));
    aip_future_release(f);

    char out[4096];
    assert_int_equal(run_task(c,
                              "{\"batches\":[[{\"tool_name\":\"echo\",\"parameters\":"
                              "{\"n\":32.0}}],[{\"tool_name\":\"x\",\"tool_type\":"
                              "\"data_collection\"},{\"tool_name\":\"echo\"}]]}",
                              NULL, out, sizeof out),
                     0);
    assert_non_null(strstr(out, "\"result\":{\"n\":32.0}")); /* free-form text survives */
    assert_non_null(strstr(out, "},{\"request\":"));         /* two batches, two entries */

    assert_aip(run_task(c, "{\"actions\":[{\"tool_name\":\"fail\"},{\"tool_name\":\"echo\"}]}",
                        NULL, out, sizeof out),
               AIP_E_REMOTE);
    assert_non_null(strstr(out, "failed on purpose"));

    assert_aip(run_task(c, "free text", NULL, out, sizeof out), AIP_E_REMOTE);
    assert_non_null(strstr(out, "no planner"));

    double t0 = now_ms();
    assert_aip(run_task(c, "{\"actions\":[{\"tool_name\":\"echo\"}]}", "ghost", out, sizeof out),
               AIP_E_REMOTE);
    assert_true(now_ms() - t0 < 1000); /* a correlated error, not a timeout */
    assert_non_null(strstr(out, "Target device 'ghost' is not connected"));

    aip_conn_destroy(c);
    aip_conn_destroy(dev);
    assert_int_equal(server_warnings(), 0);
    stop_server();
}

static void test_json_device_json_constellation(void **state)
{
    (void)state;
    tasks_and_info(AIP_ENCODING_JSON, AIP_ENCODING_JSON);
}

static void test_proto_device_proto_constellation(void **state)
{
    (void)state;
    tasks_and_info(AIP_ENCODING_PROTO, AIP_ENCODING_PROTO);
}

static void test_mixed_encodings(void **state)
{
    (void)state;
    tasks_and_info(AIP_ENCODING_PROTO, AIP_ENCODING_JSON);
}

static void test_cached_device_info_and_refusals(void **state)
{
    (void)state;
    start_server("--device-info", "cache", NULL, NULL);
    aip_conn *dev = start_device(AIP_ENCODING_JSON);
    aip_conn *c = start_constellation("ctl-live", AIP_ENCODING_JSON, NULL);
    assert_int_equal(aip_conn_wait_registered(c, 5000), 0);
    /* UFO's behaviour: the system_info the device sent at registration, byte for byte */
    aip_future *f;
    assert_int_equal(aip_conn_request_device_info(c, NULL, NULL, &f), 0);
    assert_int_equal(aip_future_wait(f, 5000), 0);
    assert_string_equal(
        aip_future_msg(f)->result,
        "{\"device_id\":\"dev-1\",\"platform\":\"linux\",\"memory_total_gb\":32.0}");
    aip_future_release(f);
    /* unknown device: UFO's ok-with-error answer is a failure */
    assert_int_equal(aip_conn_request_device_info(c, "ghost", NULL, &f), 0);
    assert_aip(aip_future_wait(f, 5000), AIP_E_REMOTE);
    assert_non_null(strstr(aip_future_error(f), "ghost"));
    aip_future_release(f);
    /* a duplicate client_id is refused (first registration wins) */
    aip_conn *dup = start_constellation("ctl-live", AIP_ENCODING_JSON, NULL);
    assert_aip(aip_conn_wait_registered(dup, 5000), AIP_E_REFUSED); /* at once */
    char why[300];
    assert_aip(aip_conn_get_refusal(dup, why, sizeof why), AIP_E_REFUSED);
    assert_non_null(strstr(why, "is already registered"));
    aip_conn_stats s;
    aip_conn_get_stats(dup, &s);
    assert_true(s.registration_failures >= 1);
    aip_conn_destroy(dup);
    aip_conn_destroy(c);
    aip_conn_destroy(dev);
    stop_server();
}

static void test_device_leaves_mid_task(void **state)
{
    (void)state;
    start_server(NULL, NULL, NULL, NULL);
    aip_conn *dev = start_device(AIP_ENCODING_JSON);
    aip_conn *c = start_constellation("ctl-2", AIP_ENCODING_JSON, NULL);
    assert_int_equal(aip_conn_wait_registered(c, 5000), 0);
    atomic_store(&g_device_silent, 1);
    atomic_store(&g_commands_seen, 0);
    aip_task_opts o = {.request = "{\"actions\":[{\"tool_name\":\"echo\"}]}"};
    aip_future *f;
    assert_int_equal(aip_conn_send_task(c, &o, &f), 0);
    for (int i = 0; i < 200 && !atomic_load(&g_commands_seen); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&g_commands_seen), 1);
    aip_conn_destroy(dev); /* the device goes away with the command unanswered */
    assert_aip(aip_future_wait(f, 5000), AIP_E_REMOTE);
    assert_string_equal(aip_future_msg(f)->error,
                        "Task was cancelled because target device disconnected");
    aip_future_release(f);
    atomic_store(&g_device_silent, 0);
    aip_conn_destroy(c);
    assert_int_equal(server_warnings(), 0);
    stop_server();
}

static void test_token_and_http_api(void **state)
{
    (void)state;
    start_server("--token", "k3y", NULL, NULL);
    aip_conn *bad = start_constellation("ctl-bad", AIP_ENCODING_JSON, "wrong");
    assert_aip(aip_conn_wait_registered(bad, 5000), AIP_E_AUTH); /* at once */
    char why[300];
    assert_aip(aip_conn_get_refusal(bad, why, sizeof why), AIP_E_AUTH);
    assert_non_null(strstr(why, "the server refused the token (HTTP 403)"));
    aip_conn_destroy(bad);

    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = g_srv.url;
    cfg.client_id = "dev-1";
    cfg.token = "k3y";
    cfg.token_placement = AIP_AUTH_BEARER;
    aip_conn *dev;
    assert_int_equal(aip_conn_create(&cfg, &dev), 0);
    assert_int_equal(aip_conn_wait_registered(dev, 5000), 0);

    int status = 0;
    char *body = NULL, err[256];
    assert_int_equal(
        aip_http_get(g_srv.url, "/api/clients", NULL, NULL, 3000, &status, &body, err, sizeof err),
        0);
    assert_int_equal(status, 401);
    free(body);
    assert_int_equal(
        aip_http_get(g_srv.url, "/api/clients", "k3y", NULL, 3000, &status, &body, err, sizeof err),
        0);
    assert_int_equal(status, 200);
    assert_string_equal(body, "{\"online_clients\":[\"dev-1\"]}");
    free(body);
    assert_int_equal(aip_http_get(g_srv.url, "/api/clients/details", "k3y", NULL, 3000, &status,
                                  &body, err, sizeof err),
                     0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"encoding\":\"json\""));
    assert_non_null(strstr(body, "\"extensions\":[\"correlated_errors\",\"live_device_info\"]"));
    free(body);
    assert_int_equal(
        aip_http_get(g_srv.url, "/nothing", "k3y", NULL, 3000, &status, &body, err, sizeof err), 0);
    assert_int_equal(status, 404);
    free(body);
    aip_conn_destroy(dev);
    stop_server();
}

/* A peer that upgrades, starts a frame and vanishes; one that sends half an HTTP request. */
static void test_vanishing_peers_are_quiet(void **state)
{
    (void)state;
    start_server(NULL, NULL, NULL, NULL);
    for (int round = 0; round < 20; round++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_srv.port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        const char *req = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";
        if (round % 2) { /* half the handshake only */
            ssize_t w = write(fd, req, 20);
            (void)w;
        } else {
            ssize_t w = write(fd, req, strlen(req));
            (void)w;
            char buf[512];
            ssize_t r = read(fd, buf, sizeof buf);
            (void)r;
            /* a masked text frame header announcing 100 bytes, then 3 of them */
            const unsigned char part[] = {0x81, 0x80 | 100, 1, 2, 3, 4, 'a', 'b', 'c'};
            w = write(fd, part, sizeof part);
            (void)w;
        }
        close(fd);
    }
    usleep(200000);
    /* still serving, and nothing logged as a warning or error */
    aip_conn *dev = start_device(AIP_ENCODING_JSON);
    aip_conn_destroy(dev);
    assert_int_equal(server_warnings(), 0);
    stop_server();
}

/* aip-bench rr through the server: 20,000 requests, 128 in flight, both encodings, answers
 * jittered so they arrive out of order. */
static void test_bench_through_server(void **state)
{
    (void)state;
    start_server("--reply-jitter-ms", "2", NULL, NULL);
    aip_conn *dev = start_device(AIP_ENCODING_JSON);
    static const char *const encs[] = {"json", "proto"};
    for (int i = 0; i < 2; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 AIP_TOOLS_DIR "/aip-bench rr --server %s --target dev-1 --encoding %s "
                               "--requests 20000 --threads 4 --inflight 128",
                 g_srv.url, encs[i]);
        /* a fixed command line of test constants and the server's own URL */
        FILE *p = popen(cmd, "r"); /* NOLINT(cert-env33-c) */
        assert_non_null(p);
        char line[1024] = "";
        while (fgets(line, sizeof line, p))
            ;
        int st = pclose(p);
        printf("  %s", line);
        assert_int_equal(st, 0);
        assert_non_null(
            strstr(line, "\"requests\":20000,\"ok\":20000,\"errors\":0,\"mismatched\":0"));
        char want[32];
        snprintf(want, sizeof want, "\"encoding\":\"%s\"", encs[i]);
        assert_non_null(strstr(line, want));
    }
    aip_conn_destroy(dev);
    stop_server();
}

int main(void)
{
    aip_log_set_level(getenv("AIP_TEST_DEBUG") ? AIP_LOG_DEBUG : AIP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_device_json_constellation),
        cmocka_unit_test(test_proto_device_proto_constellation),
        cmocka_unit_test(test_mixed_encodings),
        cmocka_unit_test(test_cached_device_info_and_refusals),
        cmocka_unit_test(test_device_leaves_mid_task),
        cmocka_unit_test(test_token_and_http_api),
        cmocka_unit_test(test_vanishing_peers_are_quiet),
        cmocka_unit_test(test_bench_through_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
