/* SPDX-License-Identifier: MIT */
/*
 * Secret redaction for everything that is printed (see aip/redact.h).
 *
 * The writers below never copy a byte of a secret part to the output: they skip it and write
 * AIP_REDACTED instead, so even an output cut short by a small buffer cannot show a prefix of a
 * key. URL parsing is deliberately lenient (any text is accepted and something sensible is
 * printed): it runs on what an operator typed, before anything else has validated it.
 */
#include "aip/redact.h"
#include "aip/common.h"
#include "aip/internal/hex.h"
#include "aip/internal/jscan.h"

#include <string.h>

/* ---- an snprintf-style writer -----------------------------------------------------------------
 */

typedef struct writer {
    char *out;
    size_t len, pos; /* pos counts every byte, written or not */
} writer;

static void w_put(writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, w->pos++)
        if (w->out && w->pos + 1 < w->len)
            w->out[w->pos] = s[i];
}

static void w_puts(writer *w, const char *s)
{
    w_put(w, s, strlen(s));
}

static size_t w_end(writer *w)
{
    if (w->out && w->len)
        w->out[w->pos < w->len ? w->pos : w->len - 1] = 0;
    return w->pos;
}

/* ---- names --------------------------------------------------------------------------------------
 */

static char norm(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    if (c == '-')
        return '_';
    return c;
}

static bool name_eq(const char *a, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n != l)
        return false;
    for (size_t i = 0; i < n; i++)
        if (norm(a[i]) != lit[i])
            return false;
    return true;
}

static bool name_ends(const char *a, size_t n, const char *suffix)
{
    size_t l = strlen(suffix);
    return n > l && name_eq(a + n - l, l, suffix);
}

bool aip_secret_name(const char *name, size_t n)
{
    static const char *const exact[] = {"authorization",
                                        "proxy_authorization",
                                        "x_api_key",
                                        "api_key",
                                        "apikey",
                                        "key",
                                        "token",
                                        "password",
                                        "passwd",
                                        "passphrase",
                                        "pass",
                                        "pwd",
                                        "secret",
                                        "client_secret",
                                        "credential",
                                        "credentials",
                                        "cookie",
                                        "set_cookie",
                                        "signature",
                                        "auth",
                                        NULL};
    static const char *const suffix[] = {"_token", "_secret", "_password", "_passwd", "_key", NULL};
    if (!name)
        return false;
    for (size_t i = 0; exact[i]; i++)
        if (name_eq(name, n, exact[i]))
            return true;
    for (size_t i = 0; suffix[i]; i++)
        if (name_ends(name, n, suffix[i]))
            return true;
    return false;
}

/* ---- URLs ----------------------------------------------------------------------------------- */

/* "k=v&k2&k3=" -> "k=<redacted>&<redacted>&k3=" (a query or a fragment, without its '?'/'#') */
static void put_params(writer *w, const char *s, size_t n)
{
    size_t i = 0;
    bool first = true;
    while (i <= n) {
        size_t e = i;
        while (e < n && s[e] != '&')
            e++;
        if (!first)
            w_put(w, "&", 1);
        first = false;
        const char *eq = memchr(s + i, '=', e - i);
        if (eq) {
            w_put(w, s + i, (size_t)(eq - (s + i)) + 1);
            if (eq + 1 < s + e) /* a non-empty value */
                w_puts(w, AIP_REDACTED);
        } else if (e > i) {
            w_puts(w, AIP_REDACTED);
        }
        i = e + 1;
    }
}

static bool is_scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '-' || c == '.';
}

/* strcspn over s[0..n) */
static size_t span_to(const char *s, size_t n, const char *stop)
{
    size_t i = 0;
    while (i < n && !strchr(stop, s[i]))
        i++;
    return i;
}

/* Writes the URL s[0..n) redacted. */
static void put_url(writer *w, const char *p, size_t n)
{
    /* scheme "xyz://", when there is one */
    size_t sl = 0;
    while (sl < n && is_scheme_char(p[sl]))
        sl++;
    if (sl > 0 && sl + 3 <= n && memcmp(p + sl, "://", 3) == 0) {
        w_put(w, p, sl + 3);
        p += sl + 3;
        n -= sl + 3;
    }
    /* authority: up to the first '/', '?' or '#'; the userinfo ends at its last '@' */
    size_t an = span_to(p, n, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < an; i++)
        if (p[i] == '@')
            at = p + i;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            w_put(w, p, (size_t)(colon - p) + 1); /* the user name */
            w_puts(w, AIP_REDACTED);
        } else {
            w_puts(w, AIP_REDACTED); /* a bare token as user name */
        }
        w_put(w, "@", 1);
        w_put(w, at + 1, (size_t)(p + an - (at + 1)));
    } else {
        w_put(w, p, an);
    }
    p += an;
    n -= an;
    /* path */
    size_t pn = span_to(p, n, "?#");
    w_put(w, p, pn);
    p += pn;
    n -= pn;
    if (n && *p == '?') {
        size_t qn = span_to(p + 1, n - 1, "#");
        w_put(w, "?", 1);
        put_params(w, p + 1, qn);
        p += 1 + qn;
        n -= 1 + qn;
    }
    if (n && *p == '#') {
        w_put(w, "#", 1);
        put_params(w, p + 1, n - 1);
    }
}

size_t aip_redact_url(const char *url, char *out, size_t len)
{
    writer w = {out, len, 0};
    const char *p = url ? url : "";
    put_url(&w, p, strlen(p));
    return w_end(&w);
}

/* ---- headers -------------------------------------------------------------------------------- */

size_t aip_redact_header(const char *name, const char *value, char *out, size_t len)
{
    writer w = {out, len, 0};
    const char *n = name ? name : "";
    const char *v = value ? value : "";
    size_t nl = strlen(n);
    if (name_eq(n, nl, "authorization") || name_eq(n, nl, "proxy_authorization")) {
        size_t sp = strcspn(v, " ");
        if (v[sp] == ' ' && sp > 0) { /* keep the scheme: "Bearer", "Basic" */
            w_put(&w, v, sp + 1);
        }
        w_puts(&w, AIP_REDACTED);
        return w_end(&w);
    }
    if (aip_secret_name(n, nl)) {
        w_puts(&w, AIP_REDACTED);
        return w_end(&w);
    }
    if (name_eq(n, nl, "location") || name_eq(n, nl, "referer") || name_eq(n, nl, "origin") ||
        name_eq(n, nl, "content_location"))
        return aip_redact_url(v, out, len);
    w_puts(&w, v);
    return w_end(&w);
}

/* ---- JSON ------------------------------------------------------------------------------------ */

/* The end of the string token that starts at s[i] == '"' (the index after its closing quote). */
static size_t string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The end of the (valid) JSON value that starts at s[i]. */
static size_t value_end(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return n;
    if (s[i] == '"')
        return string_end(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char c = s[i];
            if (c == '"') {
                i = string_end(s, n, i);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
           s[i] != '\n' && s[i] != '\r')
        i++;
    return i;
}

/* Is the raw (escaped) key text raw[0..n) a secret name once unescaped? */
static bool key_is_secret(const char *raw, size_t n)
{
    char k[256];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o == sizeof k)
            return false; /* longer than any name we know */
        char c = raw[i];
        if (c == '\\' && i + 1 < n) {
            char e = raw[++i];
            if (e == 'u' && i + 4 < n) {
                long v = aip_hex4(raw + i + 1, raw + n); /* -1: not hex */
                i += 4;
                c = '\x7f'; /* not ASCII text: never in a name */
                if (v > 0 && v < 0x7f)
                    c = (char)v;
            } else {
                c = e; /* \" \\ \/ as they are; \b \f \n \r \t are never in a name */
                if (e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't')
                    c = '\x7f';
            }
        }
        k[o++] = c;
    }
    return aip_secret_name(k, o);
}

int aip_redact_json(const char *json, size_t len, aip_buf *out)
{
    if (!out || (!json && len))
        return AIP_E_INVAL;
    aip_jscan js;
    memset(&js, 0, sizeof js);
    if (aip_jscan_run(&js, json ? json : "", len))
        return AIP_E_MALFORMED;
    size_t start_len = out->len, copied = 0, i = 0;
    int rc = 0;
    while (!rc && i < len) {
        if (json[i] != '"') {
            i++;
            continue;
        }
        size_t se = string_end(json, len, i);
        size_t colon = skip_ws(json, len, se);
        /* valid JSON: a string followed by ':' is a key */
        if (colon < len && json[colon] == ':' && key_is_secret(json + i + 1, se - i - 2)) {
            size_t vs = skip_ws(json, len, colon + 1);
            size_t ve = value_end(json, len, vs);
            rc = aip_buf_append(out, json + copied, vs - copied);
            if (!rc)
                rc = aip_buf_puts(out, "\"" AIP_REDACTED "\"");
            copied = i = ve;
        } else {
            i = se;
        }
    }
    if (!rc)
        rc = aip_buf_append(out, json + copied, len - copied);
    if (rc)
        out->len = start_len;
    return rc;
}

/* ---- free text ---------------------------------------------------------------------------------
 */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_name_char(char c)
{
    return is_scheme_char(c) || c == '_';
}

/* Drops trailing punctuation that belongs to the sentence, not to the value ("...: reason"). */
static size_t trim_punct(const char *s, size_t from, size_t e)
{
    while (e > from && strchr(":,.;)]}", s[e - 1]))
        e--;
    return e;
}

/* A URL ("scheme://...") whose "://" is at s[i]: its start and end, or false. */
static bool url_at(const char *s, size_t n, size_t lo, size_t i, size_t *start, size_t *end)
{
    if (i + 3 > n || memcmp(s + i, "://", 3) != 0)
        return false;
    size_t b = i;
    while (b > lo && is_scheme_char(s[b - 1]))
        b--;
    if (b == i)
        return false;
    size_t e = i + 3;
    while (e < n && !is_space(s[e]) && !strchr("\"'<>", s[e]))
        e++;
    *start = b;
    *end = trim_punct(s, i + 3, e);
    return true;
}

/* name=value with a secret name, '=' at s[i]: the value's span. */
static bool assign_at(const char *s, size_t n, size_t lo, size_t i, size_t *vs, size_t *ve)
{
    size_t b = i;
    while (b > lo && is_name_char(s[b - 1]))
        b--;
    if (b == i || !aip_secret_name(s + b, i - b))
        return false;
    size_t e = i + 1;
    while (e < n && !is_space(s[e]) && !strchr("&,;\"'", s[e]))
        e++;
    *vs = i + 1;
    *ve = trim_punct(s, i + 1, e);
    return true;
}

/* "Bearer x" / "Basic x" at s[i] (a word of its own): the credential's span. */
static bool scheme_at(const char *s, size_t n, size_t i, size_t *vs, size_t *ve)
{
    if (i > 0 && !is_space(s[i - 1]) && s[i - 1] != ':' && s[i - 1] != '"')
        return false;
    size_t k = n - i >= 7 && memcmp(s + i, "Bearer ", 7) == 0  ? 7
               : n - i >= 6 && memcmp(s + i, "Basic ", 6) == 0 ? 6
                                                               : 0;
    if (!k)
        return false;
    size_t e = i + k;
    while (e < n && !is_space(s[e]) && !strchr("\"',;", s[e]))
        e++;
    e = trim_punct(s, i + k, e);
    *vs = i + k;
    *ve = e;
    return e > i + k;
}

/* A JSON member with a secret name whose opening quote is at s[i] — "name": value, or the same
 * escaped inside a JSON string (\"name\": \"value\"): the value's span and its quoting. */
static bool member_at(const char *s, size_t n, size_t i, size_t *vs, size_t *ve, bool *esc)
{
    *esc = i > 0 && s[i - 1] == '\\';
    size_t ks = i + 1, ke = ks;
    while (ke < n && s[ke] != '"')
        ke++;
    if (ke >= n || (*esc && s[ke - 1] != '\\'))
        return false;
    size_t ne = *esc ? ke - 1 : ke;
    if (ne <= ks || !aip_secret_name(s + ks, ne - ks))
        return false;
    size_t j = ke + 1;
    while (j < n && s[j] == ' ')
        j++;
    if (j >= n || s[j] != ':')
        return false;
    j++;
    while (j < n && s[j] == ' ')
        j++;
    if (*esc) { /* \"value\" */
        if (j + 1 >= n || s[j] != '\\' || s[j + 1] != '"')
            return false;
        size_t e = j + 2;
        while (e + 1 < n && !(s[e] == '\\' && s[e + 1] == '"'))
            e++;
        *vs = j;
        *ve = e + 1 < n ? e + 2 : n;
        return true;
    }
    if (j < n && s[j] == '"') {
        *vs = j;
        *ve = string_end(s, n, j);
        return true;
    }
    size_t e = j;
    while (e < n && !is_space(s[e]) && !strchr(",}]", s[e]))
        e++;
    if (e == j || (e - j == 4 && memcmp(s + j, "null", 4) == 0))
        return false; /* nothing, or null: no secret to hide */
    *vs = j;
    *ve = e;
    return true;
}

size_t aip_redact_text(const char *text, char *out, size_t len)
{
    writer w = {out, len, 0};
    const char *s = text ? text : "";
    size_t n = strlen(s), copied = 0, i = 0;
    while (i < n) {
        size_t a, b;
        bool esc = false;
        if (s[i] == ':' && url_at(s, n, copied, i, &a, &b)) {
            w_put(&w, s + copied, a - copied);
            put_url(&w, s + a, b - a);
        } else if (s[i] == '=' && assign_at(s, n, copied, i, &a, &b)) {
            w_put(&w, s + copied, a - copied);
            if (b > a)
                w_puts(&w, AIP_REDACTED);
        } else if (s[i] == 'B' && scheme_at(s, n, i, &a, &b)) {
            w_put(&w, s + copied, a - copied);
            w_puts(&w, AIP_REDACTED);
        } else if (s[i] == '"' && member_at(s, n, i, &a, &b, &esc)) {
            w_put(&w, s + copied, a - copied);
            w_puts(&w, esc ? "\\\"" AIP_REDACTED "\\\"" : "\"" AIP_REDACTED "\"");
        } else {
            i++;
            continue;
        }
        copied = i = b;
    }
    w_put(&w, s + copied, n - copied);
    return w_end(&w);
}
