/* SPDX-License-Identifier: MIT */
/* Unit tests: aip/internal/url.h — the link's URL (schemes, default and explicit ports, IPv6
 * literals, refused userinfo, paths and queries, bad inputs), the query token (encoded,
 * appended, redacted in what the logs show), percent-encoding, proxy strings, and the host
 * checks. Every refusal is checked to leave nothing allocated (ASan/valgrind builds). */
#include <aip/aip.h>
#include <aip/internal/url.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

/* Parses url (token: the query token or NULL) and checks every field. */
static void expect_url(const char *url, const char *token, bool tls, const char *host, int port,
                       const char *path, const char *redacted)
{
    aip_url u;
    int rc = aip_url_parse(url, token, &u);
    if (rc)
        fail_msg("parse(%s) = %d, want 0", url, rc);
    assert_int_equal(u.tls, tls);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_string_equal(u.path, path);
    assert_string_equal(u.redacted, redacted);
    aip_url_free(&u);
    assert_null(u.host);
    aip_url_free(&u); /* twice: harmless */
}

static void expect_refused(const char *url, const char *token)
{
    aip_url u;
    int rc = aip_url_parse(url, token, &u);
    if (rc != AIP_E_CONFIG)
        fail_msg("parse(%s) = %d, want AIP_E_CONFIG", url ? url : "(null)", rc);
    assert_null(u.host);
    assert_null(u.path);
    assert_null(u.redacted);
}

static void test_schemes_and_default_ports(void **state)
{
    (void)state;
    expect_url("ws://example.org/aip", NULL, false, "example.org", 80, "/aip",
               "ws://example.org:80/aip");
    expect_url("wss://example.org/aip", NULL, true, "example.org", 443, "/aip",
               "wss://example.org:443/aip");
    expect_refused("http://example.org/", NULL);
    expect_refused("https://example.org/", NULL);
    expect_refused("WS://example.org/", NULL); /* the scheme is matched as written */
    expect_refused("ws:/example.org/", NULL);
    expect_refused("example.org:80", NULL);
    expect_refused("", NULL);
    expect_refused(NULL, NULL);
}

static void test_ports(void **state)
{
    (void)state;
    expect_url("ws://127.0.0.1:5000/ws", NULL, false, "127.0.0.1", 5000, "/ws",
               "ws://127.0.0.1:5000/ws");
    expect_url("wss://h:1", NULL, true, "h", 1, "/", "wss://h:1/");
    expect_url("ws://h:65535/", NULL, false, "h", 65535, "/", "ws://h:65535/");
    expect_refused("ws://h:0/", NULL);
    expect_refused("ws://h:65536/", NULL);
    expect_refused("ws://h:-1/", NULL);
    expect_refused("ws://h:/", NULL);
    expect_refused("ws://h:http/", NULL);
    expect_refused("ws://h:80x/", NULL); /* junk after the port */
    expect_refused("ws://h:99999999999999999999/", NULL);
}

static void test_ipv6_literals(void **state)
{
    (void)state;
    expect_url("ws://[::1]:8080/ws", NULL, false, "::1", 8080, "/ws", "ws://[::1]:8080/ws");
    expect_url("wss://[2001:db8::5]/x", NULL, true, "2001:db8::5", 443, "/x",
               "wss://[2001:db8::5]:443/x");
    expect_url("ws://[::1]?a=1", NULL, false, "::1", 80, "/?a=1", "ws://[::1]:80/?a=<redacted>");
    expect_refused("ws://[::1:8080/ws", NULL); /* no closing bracket */
    expect_refused("ws://[]:80/", NULL);       /* empty host */
    expect_refused("ws://[::1]x/", NULL);      /* junk after the bracket */
    expect_refused("ws://[::1]:0/", NULL);
}

static void test_userinfo_refused(void **state)
{
    (void)state;
    /* credentials would end up in a host name that is logged */
    expect_refused("ws://user:password@h/ws", NULL);
    expect_refused("wss://user@h:443/ws", NULL);
    expect_refused("ws://@h/", NULL);
    expect_refused("ws://[user@::1]/", NULL);
    /* an '@' after the authority is not userinfo */
    expect_url("ws://h/a@b", NULL, false, "h", 80, "/a@b", "ws://h:80/a@b");
    expect_url("ws://h/?mail=a@b", NULL, false, "h", 80, "/?mail=a@b",
               "ws://h:80/?mail=<redacted>");
}

static void test_paths_and_bad_inputs(void **state)
{
    (void)state;
    expect_url("ws://h", NULL, false, "h", 80, "/", "ws://h:80/");
    expect_url("ws://h/", NULL, false, "h", 80, "/", "ws://h:80/");
    expect_url("ws://h?x=1", NULL, false, "h", 80, "/?x=1", "ws://h:80/?x=<redacted>");
    expect_url("ws://h:81?x", NULL, false, "h", 81, "/?x", "ws://h:81/?<redacted>");
    expect_refused("ws://", NULL);
    expect_refused("ws:///path", NULL); /* no host */
    expect_refused("ws://:80/", NULL);
    expect_refused("ws://?x=1", NULL);
    /* no fragment in a WebSocket URI (RFC 6455 §3): it would have become part of the host */
    expect_refused("ws://h#frag/ws", NULL);
    expect_refused("ws://h:81/ws#frag", NULL);
    expect_refused("wss://h/ws?token=x#", NULL);
}

static void test_query_token_appended_and_redacted(void **state)
{
    (void)state;
    const char *secret = "S3cr3t";
    expect_url("ws://h:5000/ws", secret, false, "h", 5000, "/ws?token=S3cr3t",
               "ws://h:5000/ws?token=<redacted>");
    expect_url("ws://h:5000/ws?device=d1", secret, false, "h", 5000, "/ws?device=d1&token=S3cr3t",
               "ws://h:5000/ws?device=<redacted>&token=<redacted>");
    expect_url("ws://h:5000", secret, false, "h", 5000, "/?token=S3cr3t",
               "ws://h:5000/?token=<redacted>");
    /* a query without a path: the token whole (it was cut short before fuzz_url found it) */
    expect_url("ws://h?device=d1", secret, false, "h", 80, "/?device=d1&token=S3cr3t",
               "ws://h:80/?device=<redacted>&token=<redacted>");
    expect_url("wss://exa?devBce=d1", "S3cr3t ke.yor", true, "exa", 443,
               "/?devBce=d1&token=S3cr3t%20ke.yor",
               "wss://exa:443/?devBce=<redacted>&token=<redacted>");
    /* encoded: reserved characters and bytes over 0x7f */
    expect_url("ws://h/ws", "a b/c&d=e\xc3\xa9", false, "h", 80,
               "/ws?token=a%20b%2Fc%26d%3De%C3%A9", "ws://h:80/ws?token=<redacted>");
    /* an empty token adds nothing */
    expect_url("ws://h/ws", "", false, "h", 80, "/ws", "ws://h:80/ws");
    /* a token written into the URL is redacted as well */
    expect_url("ws://h/ws?token=INURL", NULL, false, "h", 80, "/ws?token=INURL",
               "ws://h:80/ws?token=<redacted>");
    /* too long to encode (1024 bytes): refused, not cut */
    char big[400];
    memset(big, '/', sizeof big - 1);
    big[sizeof big - 1] = 0;
    expect_refused("ws://h/ws", big);
}

static void test_encode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(aip_url_encode("AZaz09-_.~", out, sizeof out), 0);
    assert_string_equal(out, "AZaz09-_.~");
    assert_int_equal(aip_url_encode("?=& %\x01\xff", out, sizeof out), 0);
    assert_string_equal(out, "%3F%3D%26%20%25%01%FF");
    assert_int_equal(aip_url_encode("", out, sizeof out), 0);
    assert_string_equal(out, "");
    /* does not fit: refused (room is kept for a whole %XX and the NUL) */
    assert_int_equal(aip_url_encode("abcd", out, 4), AIP_E_INVAL);
    assert_int_equal(aip_url_encode("a", out, 5), 0);
    assert_string_equal(out, "a");
}

static void expect_proxy(const char *v, const char *host, unsigned port)
{
    char h[64];
    unsigned p = 0;
    if (aip_url_parse_proxy(v, h, sizeof h, &p) != 0)
        fail_msg("parse_proxy(%s) refused", v);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void expect_proxy_refused(const char *v, size_t len)
{
    char h[64];
    unsigned p = 7;
    assert_true(len <= sizeof h);
    if (aip_url_parse_proxy(v, h, len, &p) != -1)
        fail_msg("parse_proxy(%s) accepted", v);
    assert_int_equal(p, 7);
}

static void test_proxy(void **state)
{
    (void)state;
    expect_proxy("http://proxy.lan:3128", "proxy.lan", 3128);
    expect_proxy("http://proxy.lan:3128/", "proxy.lan", 3128);
    expect_proxy("proxy.lan:8080", "proxy.lan", 8080); /* no scheme */
    expect_proxy("http://127.0.0.1:1", "127.0.0.1", 1);
    /* credentials stay, as lws takes them; the userinfo ends at the last '@' */
    expect_proxy("http://user:pa%40ss@proxy:3128/", "user:pa%40ss@proxy", 3128);
    expect_proxy("http://us@r:p@ss@proxy:3128", "us@r:p@ss@proxy", 3128);
    expect_proxy_refused("http://proxy.lan", 64);       /* no port */
    expect_proxy_refused("http://proxy.lan/", 64);      /* no port */
    expect_proxy_refused("http://proxy.lan:0", 64);     /* port out of range */
    expect_proxy_refused("http://proxy.lan:65536", 64); /* port out of range */
    expect_proxy_refused("http://:3128", 64);           /* no host */
    expect_proxy_refused("http://user:pw@:3128", 64);   /* no host */
    expect_proxy_refused("http://proxy.lan:3128", 9);   /* host does not fit */
    expect_proxy_refused("", 64);
}

static void test_host_checks(void **state)
{
    (void)state;
    assert_true(aip_url_is_loopback("localhost"));
    assert_true(aip_url_is_loopback("127.0.0.1"));
    assert_true(aip_url_is_loopback("127.1.2.3"));
    assert_true(aip_url_is_loopback("::1"));
    assert_false(aip_url_is_loopback("10.0.0.1"));
    assert_false(aip_url_is_loopback("localhost.example.org"));
    assert_false(aip_url_is_loopback("example.org"));

    assert_true(aip_url_is_numeric_host("127.0.0.1"));
    assert_true(aip_url_is_numeric_host("::1"));
    assert_true(aip_url_is_numeric_host("2001:db8::5"));
    assert_false(aip_url_is_numeric_host("localhost"));
    assert_false(aip_url_is_numeric_host("256.0.0.1"));
    assert_false(aip_url_is_numeric_host(""));

    assert_true(aip_url_has_token("/ws?token=x"));
    assert_true(aip_url_has_token("/ws?a=1&token=x"));
    assert_false(aip_url_has_token("/ws?access_token=x"));
    assert_false(aip_url_has_token("/token=x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemes_and_default_ports),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_ipv6_literals),
        cmocka_unit_test(test_userinfo_refused),
        cmocka_unit_test(test_paths_and_bad_inputs),
        cmocka_unit_test(test_query_token_appended_and_redacted),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_host_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
