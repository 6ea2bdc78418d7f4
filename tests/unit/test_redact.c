/* SPDX-License-Identifier: MIT */
/* Unit tests: aip/redact.h — URLs (userinfo, query, fragment, percent-encoding, IPv6, no
 * scheme, cut-short buffers), secret names, headers, and JSON parameters at any depth. The
 * property checked everywhere: the secret's bytes never appear in the output. */
#include <aip/aip.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdio.h>
#include <string.h>

static void expect_url(const char *in, const char *want)
{
    char out[512];
    size_t n = aip_redact_url(in, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("redact(%s) = %s, want %s", in, out, want);
    assert_int_equal(n, strlen(want));
}

static void test_url_query_and_fragment(void **state)
{
    (void)state;
    expect_url("ws://127.0.0.1:5000/ws?token=SECRET", "ws://127.0.0.1:5000/ws?token=<redacted>");
    expect_url("ws://h/ws?a=1&token=x#frag", "ws://h/ws?a=<redacted>&token=<redacted>#<redacted>");
    expect_url("ws://h/ws#access_token=abc&x=",
               "ws://h/ws#access_token=<redacted>&x="); /* an empty value stays empty */
    expect_url("ws://h/ws?token=", "ws://h/ws?token=");
    expect_url("ws://h/ws?SECRETONLY", "ws://h/ws?<redacted>"); /* an item without '=' */
    expect_url("ws://h/ws?&&a=b&", "ws://h/ws?&&a=<redacted>&");
    expect_url("ws://h?token=x", "ws://h?token=<redacted>"); /* a query without a path */
    expect_url("ws://h/ws?", "ws://h/ws?");
    expect_url("ws://h/ws?a=b=c", "ws://h/ws?a=<redacted>"); /* '=' inside a value */
    /* percent-encoding: key names are kept as written, values go whole */
    expect_url("ws://h/p%3Fq?to%6Ben=s%26cret%3Dx&b=%41",
               "ws://h/p%3Fq?to%6Ben=<redacted>&b=<redacted>");
}

static void test_url_plain_parts_kept(void **state)
{
    (void)state;
    expect_url("ws://host/ws", "ws://host/ws");
    expect_url("wss://example.org:8443/a/b", "wss://example.org:8443/a/b");
    expect_url("ws://[::1]:5000/ws", "ws://[::1]:5000/ws");
    expect_url("ws://[::1]/ws?token=k", "ws://[::1]/ws?token=<redacted>");
    expect_url("", "");
    expect_url("not a url", "not a url");
    expect_url(NULL, "");
}

static void test_url_userinfo(void **state)
{
    (void)state;
    expect_url("ws://user:pass@host/ws", "ws://user:<redacted>@host/ws");
    expect_url("http://user:pa@ss@host:3128/", "http://user:<redacted>@host:3128/");
    expect_url("user:pa@ss@host", "user:<redacted>@host"); /* no scheme, as http_proxy */
    expect_url("u:p@proxy:3128", "u:<redacted>@proxy:3128");
    expect_url("ws://TOKENONLY@host/ws", "ws://<redacted>@host/ws"); /* a bare token */
    expect_url("ws://user:p%40ss@[::1]:5000/ws?token=t#f",
               "ws://user:<redacted>@[::1]:5000/ws?token=<redacted>#<redacted>");
    expect_url("ws://user:@host", "ws://user:<redacted>@host");
    /* an '@' after the authority is not userinfo */
    expect_url("ws://host/a@b?x=y", "ws://host/a@b?x=<redacted>");
    expect_url("ws://host?x=a@b", "ws://host?x=<redacted>");
}

/* A buffer of every size: always terminated, never a byte of the secret, the full length
 * returned. */
static void test_url_cut_short(void **state)
{
    (void)state;
    const char *in = "ws://alice:SECRET@h:1/ws?token=SECRET#SECRET";
    char full[256];
    size_t n = aip_redact_url(in, full, sizeof full);
    assert_null(strstr(full, "SECRET"));
    assert_int_equal(aip_redact_url(in, NULL, 0), n);
    for (size_t len = 1; len <= n + 1; len++) {
        char out[256];
        memset(out, 'X', sizeof out);
        assert_int_equal(aip_redact_url(in, out, len), n);
        assert_int_equal(strlen(out), len - 1 < n ? len - 1 : n);
        assert_int_equal(memcmp(out, full, strlen(out)), 0);
        assert_null(strstr(out, "SECR"));
        assert_int_equal(out[len], 'X'); /* nothing written past len */
    }
}

static void test_secret_names(void **state)
{
    (void)state;
    const char *yes[] = {"api_key",
                         "API-KEY",
                         "X-API-Key",
                         "Authorization",
                         "token",
                         "apikey",
                         "access_token",
                         "Refresh-Token",
                         "password",
                         "db_passwd",
                         "client_secret",
                         "aws_secret_access_key",
                         "private_key",
                         "Cookie",
                         "set-cookie",
                         "Proxy-Authorization",
                         "key",
                         "secret",
                         "pwd"};
    const char *no[] = {"path",      "text",   "seconds", "command",    "keys",
                        "tokenizer", "monkey", "",        "session_id", "tool_name"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!aip_secret_name(yes[i], strlen(yes[i])))
            fail_msg("%s should be a secret name", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (aip_secret_name(no[i], strlen(no[i])))
            fail_msg("%s should not be a secret name", no[i]);
    assert_false(aip_secret_name(NULL, 0));
}

static void test_headers(void **state)
{
    (void)state;
    char out[200];
    aip_redact_header("Authorization", "Bearer SECRET", out, sizeof out);
    assert_string_equal(out, "Bearer <redacted>");
    aip_redact_header("proxy-authorization", "Basic dXNlcjpwYXNz", out, sizeof out);
    assert_string_equal(out, "Basic <redacted>");
    aip_redact_header("Authorization", "SECRET", out, sizeof out);
    assert_string_equal(out, "<redacted>");
    aip_redact_header("X-API-Key", "SECRET", out, sizeof out);
    assert_string_equal(out, "<redacted>");
    aip_redact_header("Referer", "http://u:SECRET@h/?token=SECRET", out, sizeof out);
    assert_string_equal(out, "http://u:<redacted>@h/?token=<redacted>");
    aip_redact_header("Host", "127.0.0.1:5000", out, sizeof out);
    assert_string_equal(out, "127.0.0.1:5000");
    aip_redact_header(NULL, NULL, out, sizeof out);
    assert_string_equal(out, "");
}

static void expect_json(const char *in, const char *want)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    assert_int_equal(aip_buf_puts(&b, "pre:"), 0);
    assert_int_equal(aip_redact_json(in, strlen(in), &b), 0);
    assert_int_equal(aip_buf_nul(&b), 0);
    if (strcmp((const char *)b.data + 4, want) != 0)
        fail_msg("redact_json(%s) = %s, want %s", in, (const char *)b.data + 4, want);
    /* the output is valid JSON */
    assert_int_equal(
        aip_json_validate((const char *)b.data + 4, b.len - 4, AIP_JSON_ANY, NULL, NULL, 0), 0);
    aip_buf_free(&b);
}

static void test_json_parameters(void **state)
{
    (void)state;
    expect_json("{\"api_key\": \"SECRET\", \"path\": \"/etc/x\"}",
                "{\"api_key\": \"<redacted>\", \"path\": \"/etc/x\"}");
    /* any depth, any value type, escaped key names, keys inside arrays */
    expect_json("{\"a\":{\"b\":[{\"token\":123},{\"password\":{\"x\":[1,\"}\"]}}]},\"z\":null}",
                "{\"a\":{\"b\":[{\"token\":\"<redacted>\"},{\"password\":\"<redacted>\"}]},"
                "\"z\":null}");
    expect_json("{\"api\\u005fkey\":\"SECRET\",\"API-KEY\":true}",
                "{\"api\\u005fkey\":\"<redacted>\",\"API-KEY\":\"<redacted>\"}");
    /* a secret-looking *value* under a harmless key is kept; a key-looking string in an array
     * is a value, not a key */
    expect_json("{\"text\":\"api_key\",\"list\":[\"token\",\"x\"]}",
                "{\"text\":\"api_key\",\"list\":[\"token\",\"x\"]}");
    expect_json("{\"s\":\"a \\\"api_key\\\": b\",\"key\" : \"SECRET\" }",
                "{\"s\":\"a \\\"api_key\\\": b\",\"key\" : \"<redacted>\" }");
    expect_json("[1,2]", "[1,2]");
    expect_json("\"api_key\"", "\"api_key\"");

    aip_buf b;
    aip_buf_init(&b, 0);
    assert_aip(aip_redact_json("{\"api_key\": \"SECRET\"", 20, &b), AIP_E_MALFORMED);
    assert_int_equal(b.len, 0); /* nothing of an unparsable text */
    assert_aip(aip_redact_json("", 0, &b), AIP_E_MALFORMED);
    assert_aip(aip_redact_json(NULL, 3, &b), AIP_E_INVAL);
    assert_aip(aip_redact_json("{}", 2, NULL), AIP_E_INVAL);
    aip_buf_free(&b);
}

static void expect_text(const char *in, const char *want)
{
    char out[600];
    size_t n = aip_redact_text(in, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("redact_text(%s) = %s, want %s", in, out, want);
    assert_int_equal(n, strlen(want));
    char again[600]; /* idempotent */
    aip_redact_text(out, again, sizeof again);
    assert_string_equal(again, out);
}

static void test_free_text(void **state)
{
    (void)state;
    expect_text("cannot connect to ws://h:1/ws?token=SECRET: 403 Forbidden",
                "cannot connect to ws://h:1/ws?token=<redacted>: 403 Forbidden");
    expect_text("proxy http://u:SECRET@p:3128/, then (wss://x/?a=SECRET)",
                "proxy http://u:<redacted>@p:3128/, then (wss://x/?a=<redacted>)");
    expect_text("token=SECRET api_key=SECRET&x=1 path=/etc/x key=",
                "token=<redacted> api_key=<redacted>&x=1 path=/etc/x key=");
    expect_text("Authorization: Bearer SECRET, X: Basic dXNlcjpw", /* the scheme is kept */
                "Authorization: Bearer <redacted>, X: Basic <redacted>");
    expect_text("params {\"text\": \"hi\", \"api_key\": \"SEC\\\"RET\", \"n\": {\"token\":42}}",
                "params {\"text\": \"hi\", \"api_key\": \"<redacted>\", \"n\": "
                "{\"token\":\"<redacted>\"}}");
    expect_text("req \"{\\\"api_key\\\": \\\"SECRET\\\"}\"", /* JSON inside a JSON string */
                "req \"{\\\"api_key\\\": \\\"<redacted>\\\"}\"");
    expect_text("{\"password\": null}", "{\"password\": null}");
    /* ordinary lines are left alone */
    expect_text("registered as dev-1 (device) with ws://127.0.0.1:5000/ws, JSON frames",
                "registered as dev-1 (device) with ws://127.0.0.1:5000/ws, JSON frames");
    expect_text("Basically fine; a=b; tokenizer=x; the key: value", /* no false positives */
                "Basically fine; a=b; tokenizer=x; the key: value");
    expect_text("", "");
    expect_text("://", "://");
    expect_text("x=", "x=");
    char out[8];
    aip_redact_text("token=SECRETSECRET", out, sizeof out); /* cut short: no prefix of it */
    assert_string_equal(out, "token=<");
    assert_int_equal(aip_redact_text(NULL, NULL, 0), 0);
}

/* Every log line passes the last gate, whatever the caller formatted into it. */
static char g_line[1200];
static void hook(aip_log_level level, const char *component, const char *line, void *user)
{
    (void)level;
    (void)component;
    (void)user;
    snprintf(g_line, sizeof g_line, "%s", line);
}

static void test_log_lines_redacted(void **state)
{
    (void)state;
    aip_log_set_hook(hook, NULL);
    aip_log(AIP_LOG_ERROR, "test", "raw url %s and %s", "ws://u:SECRET@h/ws?token=SECRET",
            "Bearer SECRET");
    aip_log_set_hook(NULL, NULL);
    assert_null(strstr(g_line, "SECRET"));
    assert_string_equal(g_line,
                        "raw url ws://u:<redacted>@h/ws?token=<redacted> and Bearer <redacted>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_query_and_fragment), cmocka_unit_test(test_url_plain_parts_kept),
        cmocka_unit_test(test_url_userinfo),           cmocka_unit_test(test_url_cut_short),
        cmocka_unit_test(test_secret_names),           cmocka_unit_test(test_headers),
        cmocka_unit_test(test_json_parameters),        cmocka_unit_test(test_free_text),
        cmocka_unit_test(test_log_lines_redacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
