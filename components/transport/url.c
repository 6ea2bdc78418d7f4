/* SPDX-License-Identifier: MIT */
/*
 * The link's URL and proxy strings (see aip/internal/url.h). Pure string work: no lws, no I/O.
 */
#include "aip/internal/url.h"
#include "aip/common.h"
#include "aip/redact.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int aip_url_encode(const char *s, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~';
        if (o + 4 >= n)
            return AIP_E_INVAL;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
    return 0;
}

/* Scheme, host and port; *rest is what follows them (path, query or ""). */
static int parse_authority(const char *url, aip_url *u, const char **rest)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        u->tls = false;
        p = url + 5;
        u->port = 80;
    } else if (strncmp(url, "wss://", 6) == 0) {
        u->tls = true;
        p = url + 6;
        u->port = 443;
    } else {
        return AIP_E_CONFIG;
    }
    const char *host_end;
    const char *h = p;
    if (*p == '[') { /* [v6]:port */
        host_end = strchr(p, ']');
        if (!host_end)
            return AIP_E_CONFIG;
        h = p + 1;
        p = host_end + 1;
    } else {
        p += strcspn(p, ":/?");
        host_end = p;
    }
    /* credentials in the URL (user:password@host) are not supported, and must not end up in a
     * host name that is logged */
    if (host_end == h || memchr(h, '@', strcspn(h, "/?#")))
        return AIP_E_CONFIG;
    if (!(u->host = aip_strndup(h, (size_t)(host_end - h))))
        return AIP_E_NOMEM;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return AIP_E_CONFIG;
        u->port = (int)port;
        p = end;
    }
    if (*p && *p != '/' && *p != '?')
        return AIP_E_CONFIG;
    *rest = p;
    return 0;
}

/* What the logs show: the effective URL, every query value (the token too) redacted. */
static int make_redacted(aip_url *u)
{
    size_t fn = strlen(u->host) + strlen(u->path) + 32;
    char *full = aip_malloc(fn);
    if (!full)
        return AIP_E_NOMEM;
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(full, fn, "%s://%s%s%s:%d%s", u->tls ? "wss" : "ws", v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port, u->path);
    size_t rn = aip_redact_url(full, NULL, 0) + 1;
    if ((u->redacted = aip_malloc(rn)))
        aip_redact_url(full, u->redacted, rn);
    aip_free(full);
    return u->redacted ? 0 : AIP_E_NOMEM;
}

static int parse_url(const char *url, const char *query_token, aip_url *u)
{
    const char *p;
    int rc = parse_authority(url, u, &p);
    if (rc)
        return rc;
    const char *path = *p == '/' ? p : "/";
    char enc[1024] = "";
    if (query_token && aip_url_encode(query_token, enc, sizeof enc))
        return AIP_E_CONFIG;
    /* room for "/" before a query without a path, "&token=" and the NUL */
    size_t n = strlen(*p == '?' ? p : path) + strlen(enc) + 16;
    if (!(u->path = aip_malloc(n)))
        return AIP_E_NOMEM;
    if (*p == '?') /* a query without a path */
        snprintf(u->path, n, "/%s", p);
    else
        snprintf(u->path, n, "%s", path);
    if (enc[0])
        snprintf(u->path + strlen(u->path), n - strlen(u->path), "%stoken=%s",
                 strchr(u->path, '?') ? "&" : "?", enc);
    return make_redacted(u);
}

int aip_url_parse(const char *url, const char *query_token, aip_url *u)
{
    memset(u, 0, sizeof *u);
    /* a WebSocket URI has no fragment (RFC 6455 §3); a '#' would end up in the host or path */
    if (!url || strchr(url, '#'))
        return AIP_E_CONFIG;
    int rc = parse_url(url, query_token, u);
    if (rc)
        aip_url_free(u);
    return rc;
}

void aip_url_free(aip_url *u)
{
    aip_free(u->host);
    aip_free(u->path);
    aip_free(u->redacted);
    u->host = u->path = u->redacted = NULL;
}

int aip_url_parse_proxy(const char *v, char *host, size_t len, unsigned int *port)
{
    const char *p = strstr(v, "://");
    p = p ? p + 3 : v;
    size_t an = strcspn(p, "/?#"); /* the authority; its userinfo ends at the last '@' */
    const char *h = p;
    for (size_t i = 0; i < an; i++)
        if (p[i] == '@')
            h = p + i + 1;
    size_t hl = (size_t)(h - p) + strcspn(h, ":/");
    if (h[0] == ':' || hl >= len || p[hl] != ':')
        return -1;
    memcpy(host, p, hl);
    host[hl] = 0;
    long n = strtol(p + hl + 1, NULL, 10);
    if (n <= 0 || n > 65535)
        return -1;
    *port = (unsigned int)n;
    return 0;
}

bool aip_url_is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0;
}

bool aip_url_is_numeric_host(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

bool aip_url_has_token(const char *path)
{
    return strstr(path, "?token=") || strstr(path, "&token=");
}
