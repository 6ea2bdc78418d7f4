/* SPDX-License-Identifier: MIT */
/* Naming refused links (see aip/internal/link_error.h). */
#include "aip/internal/link_error.h"

#include <stdio.h>
#include <string.h>

/* What a status usually means in front of a WebSocket endpoint (NULL: nothing to add). */
static const char *upgrade_hint(int status)
{
    if (status == 200)
        return "not a WebSocket endpoint (a web page?)";
    if (status >= 300 && status < 400)
        return "a redirect: another URL, or wss:// instead of ws://?";
    switch (status) {
    case 400: return "the server did not take it as a WebSocket upgrade";
    case 404: return "wrong path?";
    case 405: return "not a WebSocket endpoint";
    case 426: return "the server wants another protocol version";
    case 429: return "too many requests: rate-limited";
    case 500: return "server error";
    case 502: return "bad gateway: a reverse proxy cannot reach the server";
    case 503: return "server busy";
    case 504: return "gateway timeout: a reverse proxy got no answer from the server";
    default: return NULL;
    }
}

int aip_link_upgrade_refusal(int status, bool have_token, char *why, size_t n)
{
    if (n)
        why[0] = 0;
    if (status <= 0)
        return 0;
    if (status == 401 || status == 403) {
        snprintf(why, n, "%s (HTTP %d)",
                 have_token ? "the server refused the token" : "the server requires a token",
                 status);
        return AIP_E_AUTH;
    }
    const char *hint = upgrade_hint(status);
    snprintf(why, n, "the server answered HTTP %d to the WebSocket upgrade%s%s", status,
             hint ? ": " : "", hint ? hint : "");
    return status == 404 ? AIP_E_NOT_FOUND : AIP_E_REMOTE;
}

int aip_link_proxy_refusal(int status, bool have_credentials, char *why, size_t n)
{
    if (n)
        why[0] = 0;
    if (status <= 0)
        return 0;
    if (status == 407) {
        snprintf(why, n, "%s",
                 have_credentials
                     ? "the proxy refused the user:password of the proxy URL (HTTP 407)"
                     : "the proxy requires authentication (HTTP 407): put user:password in "
                       "the proxy URL");
        return AIP_E_AUTH;
    }
    if (status == 403) {
        snprintf(why, n, "the proxy refused the CONNECT (HTTP 403)");
        return AIP_E_AUTH;
    }
    if (status == 502 || status == 503 || status == 504)
        snprintf(why, n, "the proxy could not reach the server (HTTP %d)", status);
    else
        snprintf(why, n, "the proxy answered HTTP %d to the CONNECT", status);
    return AIP_E_REMOTE;
}

int aip_http_status_line(const char *buf, size_t len)
{
    /* "HTTP/1.0 " or "HTTP/1.1 ", three digits, then a space or the end of the line */
    if (!buf || len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ')
        return 0;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return 0;
        status = status * 10 + (buf[i] - '0');
    }
    if (len > 12 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
        return 0;
    return status >= 100 ? status : 0;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool has_suffix(const char *s, const char *p)
{
    size_t ls = strlen(s), lp = strlen(p);
    return ls >= lp && strcmp(s + ls - lp, p) == 0;
}

bool aip_refusal_is_final(const char *text)
{
    if (!text)
        return false;
    /* UFO (and aip-test-server): "client_id 'X' is already registered; duplicate registrations
     * are not allowed", "Target device 'X' is not connected" */
    if (has_prefix(text, "client_id '") && strstr(text, "' is already registered"))
        return true;
    if (has_prefix(text, "Target device '") && has_suffix(text, "' is not connected"))
        return true;
    /* UFO's registration checks, and aip-test-server's */
    return strcmp(text, "Client ID is required for WebSocket registration") == 0 ||
           strcmp(text, "First message must be a registration message") == 0 ||
           strcmp(text, "registration requires client_id") == 0;
}
