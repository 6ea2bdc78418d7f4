/* SPDX-License-Identifier: MIT */
/*
 * The MCP host's API (aip/mcp.h) on its own, without an agent: configuration checks, a stdio
 * server (tests/integration/peers/mcp_hostile_server.py) whose tools reach an executor, a call, a
 * server that never answers, and stop ending the child. Real processes, no timing goals.
 */
#include <aip/aip.h>
#include <aip/port.h>

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "aip_test_assert.h"

#define HOSTILE AIP_SOURCE_DIR "/tests/integration/peers/mcp_hostile_server.py"

static aip_executor *make_exec(void)
{
    aip_executor *e = NULL;
    assert_int_equal(aip_executor_create(NULL, &e), 0);
    assert_int_equal(aip_executor_register_builtins(e), 0);
    return e;
}

static void test_config_checks(void **state)
{
    (void)state;
    aip_executor *e = make_exec();
    aip_mcp_host *h = NULL;
    const char *argv[] = {"/bin/true"};
    aip_mcp_kv bad_header = {"X Bad", "v"};
    aip_mcp_kv crlf = {"X-Key", "a\r\nInjected: 1"};
    aip_mcp_kv env = {"FOO", "bar"};
    const aip_mcp_server_config bad[] = {
        {.tool_namespace = NULL, .tool_type = AIP_TOOL_ACTION, .argv = argv, .argc = 1},
        {.tool_namespace = "N", .tool_type = AIP_TOOL_NONE, .argv = argv, .argc = 1},
        {.tool_namespace = "N", .tool_type = AIP_TOOL_ACTION},
        {.tool_namespace = "N",
         .tool_type = AIP_TOOL_ACTION,
         .argv = argv,
         .argc = 1,
         .url = "http://127.0.0.1:1/mcp"},
        {.tool_namespace = "N", .tool_type = AIP_TOOL_ACTION, .url = "ftp://127.0.0.1/"},
        {.tool_namespace = "N",
         .tool_type = AIP_TOOL_ACTION,
         .url = "http://127.0.0.1:1/",
         .headers = &bad_header,
         .n_headers = 1},
        {.tool_namespace = "N",
         .tool_type = AIP_TOOL_ACTION,
         .url = "http://127.0.0.1:1/",
         .headers = &crlf,
         .n_headers = 1},
        {.tool_namespace = "N",
         .tool_type = AIP_TOOL_ACTION,
         .url = "http://127.0.0.1:1/",
         .env = &env,
         .n_env = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (aip_mcp_host_create(e, &bad[i], 1, &h) != AIP_E_INVAL)
            fail_msg("bad config %zu accepted", i);
        assert_null(h);
    }
    /* one namespace twice under one tool type */
    const aip_mcp_server_config twice[] = {
        {.tool_namespace = "N", .tool_type = AIP_TOOL_ACTION, .argv = argv, .argc = 1},
        {.tool_namespace = "N", .tool_type = AIP_TOOL_ACTION, .argv = argv, .argc = 1}};
    assert_aip(aip_mcp_host_create(e, twice, 2, &h), AIP_E_INVAL);
    /* no server: a host that does nothing */
    assert_int_equal(aip_mcp_host_create(e, NULL, 0, &h), 0);
    assert_int_equal(aip_mcp_host_wait_started(h, 10), 0);
    aip_mcp_host_destroy(h);
    aip_executor_destroy(e);
}

typedef struct sink {
    aip_mutex m;
    aip_cond c;
    bool done;
    aip_msg msg;
} sink;

static void on_done(aip_msg *res, void *user)
{
    sink *s = user;
    aip_mutex_lock(&s->m);
    s->msg = *res;
    memset(res, 0, sizeof *res);
    s->done = true;
    aip_cond_broadcast(&s->c);
    aip_mutex_unlock(&s->m);
}

/* Runs one action; returns its Result (status) and copies error/result text. */
static aip_result_status run_one(aip_executor *e, const char *tool, const char *params, char *text,
                                 size_t len)
{
    sink s = {0};
    aip_mutex_init(&s.m);
    aip_cond_init(&s.c);
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    aip_msg_set_str(&m.response_id, "r1");
    m.has_actions = true;
    aip_command *c = aip_msg_add_command(&m);
    aip_msg_set_str(&c->tool_name, tool);
    c->tool_type = AIP_TOOL_ACTION;
    assert_int_equal(aip_msg_set_json(&c->parameters, params, AIP_JSON_OBJECT), 0);
    assert_int_equal(aip_executor_submit(e, &m, on_done, &s), 0);
    aip_mutex_lock(&s.m);
    while (!s.done)
        aip_cond_wait(&s.c, &s.m);
    aip_mutex_unlock(&s.m);
    aip_result *r = &s.msg.action_results[0];
    aip_result_status st = r->status;
    snprintf(text, len, "%s",
             st == AIP_RESULT_SUCCESS ? (r->result ? r->result : "null")
                                      : (r->error ? r->error : ""));
    aip_msg_clear(&s.msg);
    aip_cond_destroy(&s.c);
    aip_mutex_destroy(&s.m);
    return st;
}

static bool pid_alive(pid_t p)
{
    char path[64], buf[256] = "";
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)p);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    (void)fclose(f);
    return n > 0; /* a zombie has an empty command line */
}

/* The pid the hostile server logged at its start. */
static pid_t logged_pid(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    char line[4096];
    pid_t pid = -1;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *ev = cJSON_GetObjectItem(j, "event");
        if (cJSON_IsString(ev) && strcmp(ev->valuestring, "start") == 0)
            pid = (pid_t)cJSON_GetObjectItem(j, "pid")->valueint;
        cJSON_Delete(j);
    }
    (void)fclose(f);
    return pid;
}

static void test_stdio_server(void **state)
{
    (void)state;
    char dir[] = "/tmp/aip-test-mcp.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char log_good[200], log_silent[200];
    snprintf(log_good, sizeof log_good, "%s/good.jsonl", dir);
    snprintf(log_silent, sizeof log_silent, "%s/silent.jsonl", dir);
    const char *good[] = {"/usr/bin/python3", HOSTILE, "good", log_good};
    const char *silent[] = {"python3", HOSTILE, "silent", log_silent};
    const aip_mcp_server_config cfg[] = {
        {.tool_namespace = "Good",
         .tool_type = AIP_TOOL_ACTION,
         .argv = good,
         .argc = 4,
         .timeout_ms = 2000},
        {.tool_namespace = "Silent",
         .tool_type = AIP_TOOL_ACTION,
         .argv = silent,
         .argc = 4,
         .timeout_ms = 500},
    };
    aip_executor *e = make_exec();
    aip_mcp_host *h = NULL;
    assert_int_equal(aip_mcp_host_create(e, cfg, 2, &h), 0);
    assert_int_equal(aip_mcp_host_wait_started(h, 30000), 1); /* Good ready, Silent not */
    char *f = aip_executor_features_json(e);
    assert_non_null(strstr(f, "\"add_tool\""));
    aip_free(f);
    char text[4096];
    assert_int_equal(run_one(e, "echo", "{\"text\": \"hey\"}", text, sizeof text),
                     AIP_RESULT_SUCCESS);
    assert_string_equal(text, "\"hostile:hey\"");
    assert_int_equal(run_one(e, "stall", "{}", text, sizeof text), AIP_RESULT_FAILURE);
    assert_non_null(strstr(text, "timed out after 2000 ms"));
    assert_int_equal(run_one(e, "nosuch", "{}", text, sizeof text), AIP_RESULT_FAILURE);
    assert_non_null(strstr(text, "unknown tool"));
    pid_t pid = logged_pid(log_good);
    assert_true(pid > 0 && pid_alive(pid));
    aip_mcp_host_stop(h);
    assert_false(pid_alive(pid)); /* ended and reaped by stop */
    /* stopped: the tools are gone from the registry */
    assert_int_equal(run_one(e, "add_tool", "{}", text, sizeof text), AIP_RESULT_FAILURE);
    assert_non_null(strstr(text, "unknown tool"));
    aip_mcp_host_destroy(h);
    aip_executor_destroy(e);
    unlink(log_good);
    unlink(log_silent);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_stdio_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
