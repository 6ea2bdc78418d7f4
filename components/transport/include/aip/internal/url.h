/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/url.h — the link's URL and proxy strings (not installed).
 *
 * Pure string work, no libwebsockets and no I/O, so it is unit-tested (tests/unit/test_url.c)
 * and fuzzed (tests/fuzz/fuzz_url.c) on its own. Any thread.
 * - aip_url_parse(): ws://host[:port][/path][?query] or wss://...; host a name, an IPv4
 *   address or a bracketed IPv6 literal ([::1]:port). Credentials in the URL (user:pw@host)
 *   are refused (AIP_E_CONFIG): they would end up in a host name that is logged. A token
 *   given for the query is percent-encoded and appended as token=<key>. `redacted` is what
 *   the logs show: the effective URL with every query value (the token too) redacted.
 * - aip_url_parse_proxy(): an http_proxy/https_proxy value to the form lws takes.
 */
#ifndef AIP_INTERNAL_URL_H
#define AIP_INTERNAL_URL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct aip_url {
    bool tls;       /* wss:// */
    char *host;     /* for Host/SNI/cert check; an IPv6 literal without its brackets */
    int port;       /* 80/443 unless given */
    char *path;     /* starts with '/'; with token=... when a query token was given: a secret */
    char *redacted; /* scheme://host:port/path?key=<redacted> (aip_redact_url) */
} aip_url;

/* Parses url into *u (zeroed first). query_token: appended as ?token= or &token= (NULL:
 * none). Returns 0, AIP_E_CONFIG (not a ws/wss URL, no host, user:pw@, bad port, trailing
 * junk, a token too long to encode) or AIP_E_NOMEM; on error *u holds nothing to free. */
int aip_url_parse(const char *url, const char *query_token, aip_url *u);
void aip_url_free(aip_url *u);

/* Percent-encodes s (RFC 3986 unreserved characters stay) into out (n bytes, NUL ended).
 * Returns 0, or AIP_E_INVAL when it does not fit. */
int aip_url_encode(const char *s, char *out, size_t n);

/* "http://[user:password@]host:port/" -> "[user:password@]host" and port, the form lws takes
 * (it sends the credentials as Basic proxy authorization, as written). A port is required.
 * Returns 0, or -1 (no port, port out of 1..65535, empty host, host longer than len - 1).
 * The result holds the password: never logged as is. */
int aip_url_parse_proxy(const char *v, char *host, size_t len, unsigned int *port);

/* localhost, 127.x.y.z, ::1: servers https_proxy is not used for. */
bool aip_url_is_loopback(const char *host);

/* An IPv4 or IPv6 address literal (no DNS needed). */
bool aip_url_is_numeric_host(const char *host);

/* Does the path carry a token in its query (?token= or &token=)? */
bool aip_url_has_token(const char *path);

#endif /* AIP_INTERNAL_URL_H */
