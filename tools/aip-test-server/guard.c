/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: who may talk to the server.
 *
 * A server on 127.0.0.1 is reachable from every web page the developer's browser opens, and
 * from every user of the machine. Three layers, all on the one port, HTTP and WebSocket alike:
 *
 *  - Host (DNS rebinding): a page on evil.example whose name re-resolves to 127.0.0.1 talks to
 *    us as a same-origin page, but its requests say "Host: evil.example:PORT". Only our own
 *    names are answered: the bound address, localhost, 127.0.0.1, [::1] and --allow-host NAMEs
 *    (a reverse proxy that forwards another name); the port is not compared (a proxy may change
 *    it). A request without Host is refused too (HTTP/1.1 requires it).
 *  - Origin and Sec-Fetch-Site (cross-site requests): a browser says where a request comes
 *    from. Origin, when present, must be the server's own (scheme://Host, the Host the request
 *    names; the scheme is not compared, for TLS-terminating proxies) or an --allow-origin one;
 *    "null" (sandboxed frames, file: pages) is refused. Sec-Fetch-Site, when present, must be
 *    same-origin or none (typed, bookmarked); a request from an --allow-origin origin is exempt,
 *    and so is a top-level navigation to a dashboard file (a link to the dashboard from a wiki:
 *    the files are public and the page then talks to us same-origin). Programs (the agent,
 *    aipctl, UFO's Python clients) send neither header and pass. A POST must also say
 *    Content-Type: application/json: a form or text/plain body is what a page can send without
 *    a CORS preflight. Methods other than GET and POST get 405.
 *  - The key (other users of the machine): see auth_ok() below and main.c.
 *
 * Every refusal is counted (aip_requests_refused_total{reason}) and logged, at most one line a
 * second (an attacking page can send thousands): the line says how many were not logged. A
 * foreign Host, Origin or Sec-Fetch-Site is a warning, the rest (a wrong key, method or
 * Content-Type) information.
 */
#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX   256
#define ORIGIN_MAX 300

/* The headers lws adds to its own answers (LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_
 * PRACTICES_ENFORCE), for the answers written by hand (WebSocket refusals). */
const char guard_security_headers[] =
    "content-security-policy: default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'\r\n"
    "x-content-type-options: nosniff\r\n"
    "x-frame-options: deny\r\n"
    "referrer-policy: no-referrer\r\n";

/* Allowed Host names, lowercased, IPv6 literals in brackets. */
static char g_hosts[MAX_ALLOWED + 4][HOST_MAX];
static size_t g_nhosts;

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* The name part of a Host value ("name", "name:port", "[v6]", "[v6]:port"), lowercased, into
 * out; false when it is malformed (a bare IPv6 address, a port that is not digits). */
static bool host_name(const char *h, char *out, size_t n)
{
    size_t len;
    const char *rest;
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        if (!e)
            return false;
        len = (size_t)(e - h) + 1;
        rest = e + 1;
    } else {
        len = strcspn(h, ":");
        rest = h + len;
    }
    if (*rest) {
        if (*rest != ':' || !rest[1] || strlen(rest + 1) > 5)
            return false;
        for (const char *p = rest + 1; *p; p++)
            if (!isdigit((unsigned char)*p))
                return false;
    }
    if (!len || len >= n)
        return false;
    memcpy(out, h, len);
    out[len] = 0;
    lower(out);
    return true;
}

/* A name as --allow-host or --host gives it: "name" or an IP literal, no port. */
static int add_host(const char *name, char *why, size_t n)
{
    char v[HOST_MAX];
    if (!name[0] || strlen(name) >= sizeof v - 2) {
        snprintf(why, n, "--allow-host needs a host name (at most %d characters)", HOST_MAX - 3);
        return -1;
    }
    struct in6_addr a6;
    if (name[0] != '[' && inet_pton(AF_INET6, name, &a6) == 1)
        snprintf(v, sizeof v, "[%s]", name); /* as it appears in a Host header */
    else
        snprintf(v, sizeof v, "%s", name);
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-_[]:", *p)) {
            snprintf(why, n, "--allow-host %s: not a host name (no scheme, port or path)", name);
            return -1;
        }
    char norm[HOST_MAX];
    if (!host_name(v, norm, sizeof norm) || strlen(norm) != strlen(v)) {
        snprintf(why, n, "--allow-host %s: give the name without a port", name);
        return -1;
    }
    for (size_t i = 0; i < g_nhosts; i++)
        if (strcmp(g_hosts[i], norm) == 0)
            return 0;
    snprintf(g_hosts[g_nhosts++], HOST_MAX, "%s", norm);
    return 0;
}

int guard_config(char *why, size_t n)
{
    server_config *c = &g_srv.cfg;
    g_nhosts = 0;
    static const char *const local[] = {"localhost", "127.0.0.1", "::1"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        add_host(local[i], why, n);
    /* the bound address, unless it is a wildcard: then only --allow-host names are added */
    const char *h = c->host;
    if (h && h[0] && strcmp(h, "0.0.0.0") != 0 && strcmp(h, "::") != 0 && strcmp(h, "[::]") != 0 &&
        add_host(h, why, n)) {
        snprintf(why, n, "--host %s: not an address or a host name", h);
        return -1;
    }
    for (size_t i = 0; i < c->n_allow_host; i++)
        if (add_host(c->allow_host[i], why, n))
            return -1;
    for (size_t i = 0; i < c->n_allow_origin; i++) {
        const char *o = c->allow_origin[i];
        const char *rest = strncasecmp(o, "http://", 7) == 0    ? o + 7
                           : strncasecmp(o, "https://", 8) == 0 ? o + 8
                                                                : NULL;
        char name[HOST_MAX];
        if (!rest || strlen(o) >= ORIGIN_MAX || strchr(rest, '/') ||
            !host_name(rest, name, sizeof name)) {
            snprintf(why, n,
                     "--allow-origin %s: an origin is scheme://host[:port] (http or https, "
                     "no path, not \"null\")",
                     o);
            return -1;
        }
    }
    return 0;
}

const char *refuse_name(refuse_reason r)
{
    static const char *const names[REFUSE_COUNT_] = {"host",   "origin",       "fetch_site",
                                                     "method", "content_type", "key"};
    return (unsigned)r < REFUSE_COUNT_ ? names[r] : "?";
}

const char *refuse_text(refuse_reason r)
{
    switch (r) {
    case REFUSE_HOST:
        return "forbidden: this server does not answer to that Host name (DNS rebinding?); "
               "start it with --allow-host NAME to allow one";
    case REFUSE_ORIGIN:
        return "forbidden: a request from another origin (Origin is not this server's); start "
               "it with --allow-origin ORIGIN to allow one";
    case REFUSE_FETCH_SITE: return "forbidden: a request from another site (Sec-Fetch-Site)";
    case REFUSE_METHOD: return "method not allowed: GET or POST";
    case REFUSE_CONTENT_TYPE: return "unsupported media type: send Content-Type: application/json";
    case REFUSE_KEY:
    default: return "unauthorized: send the server key as X-API-Key";
    }
}

unsigned refuse_status(refuse_reason r, req_kind kind)
{
    switch (r) {
    case REFUSE_METHOD: return HTTP_STATUS_METHOD_NOT_ALLOWED;
    case REFUSE_CONTENT_TYPE: return HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE;
    case REFUSE_KEY: return kind == REQ_UPGRADE ? HTTP_STATUS_FORBIDDEN : HTTP_STATUS_UNAUTHORIZED;
    default: return HTTP_STATUS_FORBIDDEN;
    }
}

void guard_count(struct lws *wsi, refuse_reason r, const char *detail)
{
    static int64_t last_us;
    static uint64_t quiet;
    g_srv.m.refused[r]++;
    int64_t now = now_us();
    if (last_us && now - last_us < 1000000) {
        quiet++;
        return;
    }
    char peer[64] = "?", uri[96] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 &&
        lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_POST_URI) <= 0)
        snprintf(uri, sizeof uri, "?");
    char more[64] = "";
    if (quiet)
        snprintf(more, sizeof more, " (%llu more refused in the last %.0f s)",
                 (unsigned long long)quiet, (double)(now - last_us) / 1e6);
    /* another site's page is a warning; a wrong key, method or content type is a client's
     * mistake (or a guess: counted) */
    aip_log(r <= REFUSE_FETCH_SITE ? AIP_LOG_WARN : AIP_LOG_INFO, "guard",
            "refused %s from %s (%s): %s%s", uri, peer, refuse_name(r), detail, more);
    last_us = now;
    quiet = 0;
}

/* "http://" or "https://" (either: a TLS-terminating proxy) + exactly the request's Host. */
static bool origin_is_own(const char *origin, const char *host)
{
    const char *rest = strncasecmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncasecmp(origin, "https://", 8) == 0 ? origin + 8
                                                                 : NULL;
    return rest && host[0] && strcasecmp(rest, host) == 0;
}

static bool origin_is_allowed(const char *origin)
{
    for (size_t i = 0; i < g_srv.cfg.n_allow_origin; i++)
        if (strcasecmp(origin, g_srv.cfg.allow_origin[i]) == 0)
            return true;
    return false;
}

static bool refuse(struct lws *wsi, refuse_reason r, refuse_reason *out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool refuse(struct lws *wsi, refuse_reason r, refuse_reason *out, const char *fmt, ...)
{
    char detail[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    guard_count(wsi, r, detail);
    *out = r;
    return true;
}

bool guard_refuse(struct lws *wsi, req_kind kind, refuse_reason *why)
{
    char host[HOST_MAX] = "", name[HOST_MAX];
    /* over HTTP/2 the name is in :authority; the server offers only http/1.1 (main.c), this is
     * for the day it does not */
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0 &&
        lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HTTP_COLON_AUTHORITY) <= 0)
        return refuse(wsi, REFUSE_HOST, why, "no Host header");
    if (!host_name(host, name, sizeof name))
        return refuse(wsi, REFUSE_HOST, why, "Host \"%.100s\" is malformed", host);
    bool known = false;
    for (size_t i = 0; i < g_nhosts && !known; i++)
        known = strcmp(g_hosts[i], name) == 0;
    if (!known)
        return refuse(wsi, REFUSE_HOST, why,
                      "Host \"%.100s\" is not a name of this server (--allow-host)", host);

    char origin[ORIGIN_MAX] = "";
    int ol = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    bool allowed_origin = false;
    if (ol > 0) {
        if (ol >= (int)sizeof origin ||
            lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
            return refuse(wsi, REFUSE_ORIGIN, why, "an Origin too long to be ours");
        if (strcmp(origin, "null") == 0)
            return refuse(wsi, REFUSE_ORIGIN, why, "Origin: null (a sandboxed or file: page)");
        allowed_origin = origin_is_allowed(origin);
        if (!allowed_origin && !origin_is_own(origin, host))
            return refuse(wsi, REFUSE_ORIGIN, why, "Origin \"%.120s\" is another site's", origin);
    }

    char site[32] = "", mode[32] = "";
    if (lws_hdr_custom_length(wsi, "sec-fetch-site:", 15) > 0 && !allowed_origin) {
        if (lws_hdr_custom_copy(wsi, site, sizeof site, "sec-fetch-site:", 15) <= 0)
            snprintf(site, sizeof site, "?");
        bool nav = kind == REQ_PAGE &&
                   lws_hdr_custom_copy(wsi, mode, sizeof mode, "sec-fetch-mode:", 15) > 0 &&
                   strcmp(mode, "navigate") == 0;
        if (strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0 && !nav)
            return refuse(wsi, REFUSE_FETCH_SITE, why, "Sec-Fetch-Site: %.30s", site);
    }

    if (kind == REQ_UPGRADE)
        return false;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    if (!get && !post)
        return refuse(wsi, REFUSE_METHOD, why, "a method other than GET and POST");
    if (post) {
        char ct[128] = "";
        lws_hdr_copy(wsi, ct, sizeof ct, WSI_TOKEN_HTTP_CONTENT_TYPE);
        const char *p = ct + strspn(ct, " \t");
        if (strncasecmp(p, "application/json", 16) != 0 || (p[16] && !strchr("; \t", p[16])))
            return refuse(wsi, REFUSE_CONTENT_TYPE, why, "Content-Type \"%.60s\"", ct);
    }
    return false;
}

bool key_equal(const char *want, const char *given)
{
    /* Constant time in the key: every byte of want is looked at, whatever given holds, and the
     * differences are OR-ed together without a branch or an early exit. Only the length of
     * given (the caller's own) decides how long strlen() takes. */
    size_t wl = strlen(want), gl = strlen(given);
    volatile unsigned char diff = (unsigned char)(wl != gl);
    for (size_t i = 0; i < wl; i++) {
        unsigned char g = (unsigned char)given[i < gl ? i : 0];
        diff |= (unsigned char)((unsigned char)want[i] ^ g);
    }
    return diff == 0;
}

/* A refused key is exactly when an operator wants to see what was sent, and must not see it:
 * the request (its query values redacted) and the forms the key came in (values redacted). */
static void log_refused(struct lws *wsi, bool http_api)
{
    char peer[64] = "?", uri[256] = "", frag[256], full[600], shown[700];
    char authz[300] = "", az_shown[320] = "none";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
        lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_POST_URI);
    size_t o = (size_t)snprintf(full, sizeof full, "%s", uri);
    for (int i = 0; o < sizeof full &&
                    lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
         i++)
        o += (size_t)snprintf(full + o, sizeof full - o, "%c%s", i ? '&' : '?', frag);
    aip_redact_url(full, shown, sizeof shown);
    if (lws_hdr_copy(wsi, authz, sizeof authz, WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
        aip_redact_header("Authorization", authz, az_shown, sizeof az_shown);
    bool api_key = lws_hdr_custom_length(wsi, "x-api-key:", 10) > 0;
    aip_log(AIP_LOG_INFO, "http",
            "refused %s %s from %s: bad or missing key (Authorization: %s, X-API-Key: %s)",
            http_api ? "request" : "WebSocket upgrade", shown, peer, az_shown,
            api_key ? AIP_REDACTED : "none");
}

static bool auth_ok(struct lws *wsi, bool http_api)
{
    if (!g_srv.cfg.token)
        return true;
    char buf[512];
    const char *want = g_srv.cfg.token;
    if (http_api && lws_hdr_custom_copy(wsi, buf, sizeof buf, "x-api-key:", 10) > 0 &&
        key_equal(want, buf))
        return true;
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        strncmp(buf, "Bearer ", 7) == 0 && key_equal(want, buf + 7))
        return true;
    /* lws 4.1.6 copies "token=<value>" into buf and returns a pointer to the value */
    const char *v;
    if (!http_api && (v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf)) &&
        key_equal(want, v))
        return true;
    log_refused(wsi, http_api);
    return false;
}

bool guard_refuse_key(struct lws *wsi, req_kind kind)
{
    if (auth_ok(wsi, kind != REQ_UPGRADE))
        return false;
    guard_count(wsi, REFUSE_KEY, "no key or a wrong one");
    return true;
}
