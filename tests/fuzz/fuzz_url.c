/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the link's URL and proxy strings (aip/internal/url.h), as a user or an
 * environment variable could write them.
 * Input: [mode byte] then text; mode bit 0: the text is "url\ntoken" (a query token given),
 * else the whole text is the URL; the same text is also parsed as a proxy value and encoded.
 * Properties checked beyond "no crash, no leak, no UB" (ASan+UBSan):
 * - a parsed URL has a non-empty host, a port in 1..65535, a path starting with '/', and a
 *   redacted form; a refused one leaves nothing allocated;
 * - a query token ends the path exactly as encoded, and the redacted form ends with
 *   =<redacted> (the token's value is never shown);
 * - a parsed proxy value gives a host that fits and is a prefix of the authority, and a port
 *   in 1..65535;
 * - percent-encoding gives only unreserved characters and %XX, and decodes back to the input.
 */
#include <aip/aip.h>
#include <aip/internal/url.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void check_encode(const char *s)
{
    char out[4096];
    if (aip_url_encode(s, out, sizeof out))
        return;
    size_t k = 0;
    for (const char *p = out; *p; k++) {
        char c = *p;
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (hi < 0 || lo < 0 || (unsigned char)s[k] != (unsigned)(hi << 4 | lo))
                abort();
            p += 3;
        } else {
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '~') ||
                s[k] != c)
                abort();
            p++;
        }
    }
    if (s[k])
        abort();
}

static void check_url(const char *url, const char *token)
{
    aip_url u;
    if (aip_url_parse(url, token, &u)) {
        if (u.host || u.path || u.redacted)
            abort();
        return;
    }
    if (!u.host[0] || u.port < 1 || u.port > 65535 || u.path[0] != '/' || !u.redacted)
        abort();
    if (token && token[0]) {
        char enc[1024], mark[1100];
        if (aip_url_encode(token, enc, sizeof enc))
            abort(); /* parsed, so it was encoded */
        snprintf(mark, sizeof mark, "token=%s", enc);
        size_t ml = strlen(mark), pl = strlen(u.path);
        if (pl < ml || strcmp(u.path + pl - ml, mark) != 0)
            abort();
        /* redacted: the token is the last item of the query (or of a fragment: a host may
         * hold '#'), its value gone. The URL's own text may hold "token=..." anywhere, so the
         * check is on the end. */
        static const char gone[] = "=<redacted>";
        size_t rl = strlen(u.redacted);
        if (rl < sizeof gone - 1 || strcmp(u.redacted + rl - (sizeof gone - 1), gone) != 0)
            abort();
    }
    aip_url_free(&u);
}

static void check_proxy(const char *v)
{
    char host[64];
    unsigned port = 0;
    if (aip_url_parse_proxy(v, host, sizeof host, &port))
        return;
    const char *p = strstr(v, "://");
    p = p ? p + 3 : v;
    size_t hl = strlen(host);
    if (hl >= sizeof host || strncmp(p, host, hl) != 0 || p[hl] != ':' || port < 1 || port > 65535)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    uint8_t mode = data[0];
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0; /* a NUL inside ends the string early, as in C */
    check_encode(text);
    check_proxy(text);
    char *token = NULL;
    if (mode & 1) {
        char *nl = strchr(text, '\n');
        if (nl) {
            *nl = 0;
            token = nl + 1;
        }
    }
    check_url(text, token);
    free(text);
    return 0;
}
