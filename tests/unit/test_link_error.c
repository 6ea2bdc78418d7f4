/* SPDX-License-Identifier: MIT */
/* Unit tests: naming refused links (aip/internal/link_error.h) — the WebSocket upgrade's HTTP
 * status and a CONNECT proxy's, the status-line reader, which registration refusals are final,
 * and the slow retry delay after a refusal. */
#include <aip/aip.h>
#include <aip/internal/link_error.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "aip_test_assert.h"

static void test_upgrade_auth(void **state)
{
    (void)state;
    char why[200];
    assert_aip(aip_link_upgrade_refusal(403, true, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the server refused the token (HTTP 403)");
    assert_aip(aip_link_upgrade_refusal(401, true, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the server refused the token (HTTP 401)");
    assert_aip(aip_link_upgrade_refusal(401, false, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the server requires a token (HTTP 401)");
    assert_aip(aip_link_upgrade_refusal(403, false, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the server requires a token (HTTP 403)");
}

static void test_upgrade_other_statuses(void **state)
{
    (void)state;
    char why[200];
    assert_aip(aip_link_upgrade_refusal(404, true, why, sizeof why), AIP_E_NOT_FOUND);
    assert_string_equal(why, "the server answered HTTP 404 to the WebSocket upgrade: wrong path?");
    assert_aip(aip_link_upgrade_refusal(503, false, why, sizeof why), AIP_E_REMOTE);
    assert_string_equal(why, "the server answered HTTP 503 to the WebSocket upgrade: server busy");
    assert_aip(aip_link_upgrade_refusal(502, false, why, sizeof why), AIP_E_REMOTE);
    assert_string_equal(why, "the server answered HTTP 502 to the WebSocket upgrade: bad gateway: "
                             "a reverse proxy cannot reach the server");
    assert_aip(aip_link_upgrade_refusal(200, false, why, sizeof why), AIP_E_REMOTE);
    assert_non_null(strstr(why, "not a WebSocket endpoint"));
    assert_aip(aip_link_upgrade_refusal(301, false, why, sizeof why), AIP_E_REMOTE);
    assert_non_null(strstr(why, "redirect"));
    assert_aip(aip_link_upgrade_refusal(418, false, why, sizeof why), AIP_E_REMOTE);
    assert_string_equal(why, "the server answered HTTP 418 to the WebSocket upgrade");
    /* no status known: not named, nothing written */
    strcpy(why, "x");
    assert_int_equal(aip_link_upgrade_refusal(0, true, why, sizeof why), 0);
    assert_string_equal(why, "");
    assert_int_equal(aip_link_upgrade_refusal(-1, true, why, sizeof why), 0);
    /* a short buffer is cut, never overrun */
    char small[8];
    assert_aip(aip_link_upgrade_refusal(403, true, small, sizeof small), AIP_E_AUTH);
    assert_int_equal(strlen(small), 7);
}

static void test_proxy(void **state)
{
    (void)state;
    char why[200];
    assert_aip(aip_link_proxy_refusal(407, false, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(
        why, "the proxy requires authentication (HTTP 407): put user:password in the proxy URL");
    assert_aip(aip_link_proxy_refusal(407, true, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the proxy refused the user:password of the proxy URL (HTTP 407)");
    assert_aip(aip_link_proxy_refusal(403, false, why, sizeof why), AIP_E_AUTH);
    assert_string_equal(why, "the proxy refused the CONNECT (HTTP 403)");
    assert_aip(aip_link_proxy_refusal(502, false, why, sizeof why), AIP_E_REMOTE);
    assert_string_equal(why, "the proxy could not reach the server (HTTP 502)");
    assert_aip(aip_link_proxy_refusal(400, false, why, sizeof why), AIP_E_REMOTE);
    assert_string_equal(why, "the proxy answered HTTP 400 to the CONNECT");
    assert_int_equal(aip_link_proxy_refusal(0, false, why, sizeof why), 0);
    assert_string_equal(why, "");
}

static void test_status_line(void **state)
{
    (void)state;
    const char *ok = "HTTP/1.1 407 Proxy Authentication Required\r\n";
    assert_int_equal(aip_http_status_line(ok, strlen(ok)), 407);
    assert_int_equal(aip_http_status_line("HTTP/1.0 403 Forbidden", 22), 403);
    assert_int_equal(aip_http_status_line("HTTP/1.1 200\r\n", 14), 200);
    assert_int_equal(aip_http_status_line("HTTP/1.1 200", 12), 200); /* the line cut short */
    assert_int_equal(aip_http_status_line("HTTP/1.1 20", 11), 0);
    assert_int_equal(aip_http_status_line("HTTP/2 407 x", 12), 0);
    assert_int_equal(aip_http_status_line("HTTP/1.1 4x7 x", 14), 0);
    assert_int_equal(aip_http_status_line("HTTP/1.1 4077 x", 15), 0);
    assert_int_equal(aip_http_status_line("HTTP/1.1 099 x", 14), 0);
    assert_int_equal(aip_http_status_line("SSH-2.0-OpenSSH_9.2\r\n", 21), 0);
    assert_int_equal(aip_http_status_line(NULL, 20), 0);
    /* len is honoured: the bytes past it are not read */
    assert_int_equal(aip_http_status_line("HTTP/1.1 407 x", 10), 0);
}

static void test_final_refusals(void **state)
{
    (void)state;
    /* UFO's texts (and aip-test-server's) */
    assert_true(aip_refusal_is_final("Target device 'nosuch' is not connected"));
    assert_true(aip_refusal_is_final(
        "client_id 'dev-1' is already registered; duplicate registrations are not allowed"));
    assert_true(aip_refusal_is_final("Client ID is required for WebSocket registration"));
    assert_true(aip_refusal_is_final("First message must be a registration message"));
    assert_true(aip_refusal_is_final("registration requires client_id"));
    /* transient or unknown: the fast backoff */
    assert_false(
        aip_refusal_is_final("server full: 2 clients are registered, the most this server takes "
                             "(aip-test-server --max-clients)"));
    assert_false(
        aip_refusal_is_final("registration refused (fault injected: refuse_next_registration)"));
    assert_false(aip_refusal_is_final("Target device 'x' is busy"));
    assert_false(aip_refusal_is_final("something went wrong"));
    assert_false(aip_refusal_is_final(""));
    assert_false(aip_refusal_is_final(NULL));
    assert_true(aip_link_error_is_final(AIP_E_AUTH));
    assert_true(aip_link_error_is_final(AIP_E_REFUSED));
    assert_false(aip_link_error_is_final(AIP_E_IO));
    assert_false(aip_link_error_is_final(0));
}

static uint64_t g_next;
static uint64_t fixed_rand(void *u)
{
    (void)u;
    return g_next;
}

static void test_refusal_delay_near_the_cap(void **state)
{
    (void)state;
    aip_random fixed = {fixed_rand, NULL};
    aip_backoff b;
    aip_backoff_init(&b, 1000, 60000, &fixed);
    g_next = 0;
    assert_int_equal(aip_refusal_delay(&b), 60000); /* from the first attempt on: no ramp */
    assert_int_equal(b.attempt, 1);
    g_next = 15000; /* the largest draw below 15001 */
    assert_int_equal(aip_refusal_delay(&b), 45000);
    assert_int_equal(b.attempt, 2);
    /* the default source: always within [3/4 cap, cap] */
    aip_backoff_init(&b, 20, 200, NULL);
    for (int i = 0; i < 1000; i++) {
        uint32_t d = aip_refusal_delay(&b);
        assert_true(d >= 150 && d <= 200);
    }
    assert_int_equal(b.attempt, 64); /* counted, saturating as aip_backoff_next does */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_auth),   cmocka_unit_test(test_upgrade_other_statuses),
        cmocka_unit_test(test_proxy),          cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_final_refusals), cmocka_unit_test(test_refusal_delay_near_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
