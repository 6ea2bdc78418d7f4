/* SPDX-License-Identifier: MIT */
/*
 * The strict JSON scanner (see aip/internal/jscan.h).
 *
 * Recursive descent, bounded: recursion depth is max_depth (64 by default, never above
 * JSCAN_HARD_DEPTH), so the stack cost is fixed. The only allocation is the key stack used to
 * find duplicate keys, and it holds at most one entry per key on the current nesting path.
 *
 * The parse-memory estimate mirrors what cJSON 1.7.15 allocates: one 64-byte node per value
 * plus a copy of every string and key; malloc rounds to 16 bytes with an 8-byte header and a
 * 32-byte minimum chunk.
 *
 * Isolation (see the header): `isolated` is true while an element of the isolate_key array is
 * scanned. Every defect goes through defect(), which fails the scan outside an isolated element
 * and inside one only counts it (the first reason kept in fault_why) so the scan goes on: each
 * defect site knows where the token it is in ends. A container nested past max_depth inside an
 * isolated element is handed to skim(), which checks its grammar with an explicit stack (a bit
 * per level, on the heap) instead of recursion, so the stack cost stays fixed.
 */
#include "aip/common.h"
#include "aip/internal/jscan.h"
#include "aip/internal/hex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <string.h>

#define JSCAN_HARD_DEPTH 1000
#define NODE_COST        80u

struct keyspan {
    const char *p;
    size_t n;
    bool escaped;
};

typedef struct scanner {
    aip_jscan *s;
    const char *base;
    const char *p;
    const char *end;
    unsigned max_depth;
    aip_jscan_path path;
    struct keyspan *keys;
    size_t nkeys, capkeys;
    bool isolated;       /* inside an element of the isolate_key array */
    char fault_why[160]; /* the first defect of the current isolated element */
    uint8_t *skim;       /* skim(): one bit per open level, 1 = object */
    size_t skim_cap;     /* bytes */
} scanner;

static size_t str_cost(size_t n)
{
    size_t c = (n + 1 + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

__attribute__((format(printf, 4, 0))) static int vfail(scanner *sc, int code, const char *at,
                                                       const char *fmt, va_list ap)
{
    aip_jscan *s = sc->s;
    if (s->code)
        return s->code;
    s->code = code;
    s->err_offset = (size_t)(at - sc->base);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    return code;
}

__attribute__((format(printf, 4, 5))) static int fail(scanner *sc, int code, const char *at,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(sc, code, at, fmt, ap);
    va_end(ap);
    return rc;
}

/* A defect that leaves the structure readable: fails the scan (returns the code), or inside an
 * isolated element is counted and remembered (returns 0: the caller steps over it). */
__attribute__((format(printf, 4, 5))) static int defect(scanner *sc, int code, const char *at,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = 0;
    if (!sc->isolated) {
        rc = vfail(sc, code, at, fmt, ap);
    } else {
        sc->s->faults++;
        if (!sc->fault_why[0])
            vsnprintf(sc->fault_why, sizeof sc->fault_why, fmt, ap);
    }
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at p, or 0 when it is invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0)
        return (e - p >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (e - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (e - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

bool aip_utf8_valid(const char *s, size_t n, size_t *bad_off)
{
    if (n == 0) /* s may be NULL then, and NULL + 0 is undefined */
        return true;
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        /* ASCII runs 16 bytes (SSE2) or eight bytes at a time: no byte has its top bit set */
#ifdef __SSE2__
        while (e - p >= 16 && !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)p)))
            p += 16;
#endif
        while (e - p >= 8) {
            uint64_t w;
            memcpy(&w, p, sizeof w);
            if (w & 0x8080808080808080ull)
                break;
            p += 8;
        }
        if (p >= e)
            break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t l = utf8_seq(p, e);
        if (!l) {
            if (bad_off)
                *bad_off = (size_t)(p - (const unsigned char *)s);
            return false;
        }
        p += l;
    }
    return true;
}

/* Bytes a string body may hold with no further look: printable ASCII but '"' and '\\'. */
/* clang-format off */
static const uint8_t plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

/* The leading bytes of p[0..n) that plain_byte[] takes (printable ASCII but '"' and '\\'). With
 * SSE2 (every x86-64) 16 bytes a look: a signed compare below 0x20 catches the control
 * characters and, being negative, the bytes from 0x80; the loads stay inside p[0..n).
 * Elsewhere, and for the last bytes, the table. */
size_t aip_json_plain_len(const char *p, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(0x20);
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i stop =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                         _mm_cmplt_epi8(v, space));
        unsigned m = (unsigned)_mm_movemask_epi8(stop);
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < n && plain_byte[(unsigned char)p[i]])
        i++;
    return i;
}

/* One escape sequence at p (p[0] == '\\', p + 1 < e): sets *next past it (an isolated
 * defect is stepped over: the six bytes of its \uXXXX, what follows is scanned on its own).
 * 0, or the scan's error code. Kept out of scan_string's loop so that loop stays small. */
static int scan_escape(scanner *sc, const char *p, const char *e, const char **next)
{
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't': *next = p + 2; return 0;
    case 'u': break;
    default:
        return fail(sc, AIP_E_MALFORMED, p, "invalid escape at offset %zu", (size_t)(p - sc->base));
    }
    long cp = aip_hex4(p + 2, e);
    if (cp < 0)
        return fail(sc, AIP_E_MALFORMED, p, "invalid \\u escape at offset %zu",
                    (size_t)(p - sc->base));
    *next = p + 6;
    if (cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
        if (defect(sc, AIP_E_MALFORMED, p,
                   cp ? "unpaired UTF-16 surrogate at offset %zu"
                      : "\\u0000 in string at offset %zu",
                   (size_t)(p - sc->base)))
            return sc->s->code;
        return 0;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = (e - p >= 12 && p[6] == '\\' && p[7] == 'u') ? aip_hex4(p + 8, e) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
            if (defect(sc, AIP_E_MALFORMED, p, "unpaired UTF-16 surrogate at offset %zu",
                       (size_t)(p - sc->base)))
                return sc->s->code;
            return 0;
        }
        *next = p + 12;
    }
    return 0;
}

/* Scans a string starting at the opening quote; leaves sc->p after the closing quote.
 * *escaped tells whether it held any backslash (so keys can be compared fast). */
static int scan_string(scanner *sc, bool *escaped)
{
    const char *p = sc->p + 1, *e = sc->end;
    bool esc = false;
    for (;;) {
        p += aip_json_plain_len(p, (size_t)(e - p)); /* fast path: plain ASCII */
        if (p >= e)
            return fail(sc, AIP_E_MALFORMED, p, "unterminated string at offset %zu",
                        (size_t)(sc->p - sc->base));
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20) {
            if (defect(sc, AIP_E_MALFORMED, p, "control character in string at offset %zu",
                       (size_t)(p - sc->base)))
                return sc->s->code;
            p++;
            continue;
        }
        if (c == '\\') {
            esc = true;
            if (p + 1 >= e)
                return fail(sc, AIP_E_MALFORMED, p, "unterminated string at offset %zu",
                            (size_t)(sc->p - sc->base));
            int rc = scan_escape(sc, p, e, &p);
            if (rc)
                return rc;
            continue;
        }
        size_t l = utf8_seq((const unsigned char *)p, (const unsigned char *)e);
        if (!l) {
            if (defect(sc, AIP_E_MALFORMED, p, "invalid UTF-8 at offset %zu",
                       (size_t)(p - sc->base)))
                return sc->s->code;
            l = 1; /* '"' and '\\' are ASCII: the string's end is still found */
        }
        p += l;
    }
    sc->p = p + 1;
    if (escaped)
        *escaped = esc;
    return 0;
}

/* Next code point of an already-validated raw string body; advances *pp. */
static uint32_t next_cp(const char **pp)
{
    const unsigned char *p = (const unsigned char *)*pp;
    uint32_t cp;
    if (p[0] == '\\') {
        switch (p[1]) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            cp = (uint32_t)aip_hex4((const char *)p + 2, (const char *)p + 6);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)aip_hex4((const char *)p + 8, (const char *)p + 12);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                *pp = (const char *)p + 12;
                return cp;
            }
            *pp = (const char *)p + 6;
            return cp;
        }
        default: cp = p[1]; break; /* " \ / */
        }
        *pp = (const char *)p + 2;
        return cp;
    }
    if (p[0] < 0x80) {
        cp = p[0];
        *pp = (const char *)p + 1;
    } else if (p[0] < 0xE0) {
        cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
        *pp = (const char *)p + 2;
    } else if (p[0] < 0xF0) {
        cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        *pp = (const char *)p + 3;
    } else {
        cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
             ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        *pp = (const char *)p + 4;
    }
    return cp;
}

/* Total order on decoded strings. Byte order of UTF-8 equals code-point order, so the memcmp
 * fast path and the decoding path agree. */
static int key_cmp(const struct keyspan *a, const struct keyspan *b)
{
    if (!a->escaped && !b->escaped) {
        size_t n = a->n < b->n ? a->n : b->n;
        int c = memcmp(a->p, b->p, n);
        if (c)
            return c;
        return a->n < b->n ? -1 : a->n > b->n;
    }
    const char *pa = a->p, *ea = a->p + a->n, *pb = b->p, *eb = b->p + b->n;
    while (pa < ea && pb < eb) {
        uint32_t ca = next_cp(&pa), cb = next_cp(&pb);
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return (pa < ea) - (pb < eb);
}

static int key_qsort_cmp(const void *a, const void *b)
{
    return key_cmp(a, b);
}

bool aip_jscan_key_eq(const char *raw, size_t raw_len, const char *lit)
{
    if (!memchr(raw, '\\', raw_len))
        return strlen(lit) == raw_len && memcmp(raw, lit, raw_len) == 0;
    struct keyspan a = {raw, raw_len, true}, b = {lit, strlen(lit), false};
    return key_cmp(&a, &b) == 0;
}

static int push_key(scanner *sc, const char *p, size_t n, bool escaped)
{
    if (sc->nkeys == sc->capkeys) {
        size_t ncap = sc->capkeys ? sc->capkeys * 2 : 32;
        struct keyspan *nk = aip_realloc(sc->keys, sc->capkeys * sizeof *nk, ncap * sizeof *nk);
        if (!nk)
            return fail(sc, AIP_E_NOMEM, p, "out of memory");
        sc->keys = nk;
        sc->capkeys = ncap;
    }
    sc->keys[sc->nkeys++] = (struct keyspan){p, n, escaped};
    return 0;
}

static bool any_escaped(const struct keyspan *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (k[i].escaped)
            return true;
    return false;
}

/* Duplicate keys of an object of 9..256 unescaped keys: an open-addressing table on the stack
 * (FNV-1a of the raw bytes; equal raw bytes = equal strings when nothing is escaped). Cheaper
 * than sorting, which costs a malloc and O(n log n) comparisons for every such object. */
static const struct keyspan *dup_by_hash(const struct keyspan *k, size_t n)
{
    uint16_t slot[512]; /* index + 1; 0 = empty; at most half full */
    size_t mask = 15;
    while (mask + 1 < 2 * n)
        mask = mask * 2 + 1;
    memset(slot, 0, (mask + 1) * sizeof *slot);
    for (size_t i = 0; i < n; i++) {
        uint32_t h = 2166136261u;
        for (size_t b = 0; b < k[i].n; b++)
            h = (h ^ (unsigned char)k[i].p[b]) * 16777619u;
        for (size_t j = h & mask;; j = (j + 1) & mask) {
            if (!slot[j]) {
                slot[j] = (uint16_t)(i + 1);
                break;
            }
            const struct keyspan *o = &k[slot[j] - 1];
            if (o->n == k[i].n && memcmp(o->p, k[i].p, o->n) == 0)
                return &k[i];
        }
    }
    return NULL;
}

static int check_dups(scanner *sc, size_t base, const char *obj_start)
{
    struct keyspan *k = sc->keys + base;
    size_t n = sc->nkeys - base;
    if (n < 2)
        return 0;
    const struct keyspan *dup = NULL;
    if (n <= 8) {
        for (size_t i = 0; i < n && !dup; i++)
            for (size_t j = i + 1; j < n; j++)
                if (key_cmp(&k[i], &k[j]) == 0) {
                    dup = &k[j];
                    break;
                }
    } else if (n <= 256 && !any_escaped(k, n)) {
        dup = dup_by_hash(k, n);
    } else {
        qsort(k, n, sizeof *k, key_qsort_cmp);
        for (size_t i = 1; i < n; i++)
            if (key_cmp(&k[i - 1], &k[i]) == 0) {
                dup = &k[i];
                break;
            }
    }
    if (dup)
        return defect(sc, AIP_E_MALFORMED, obj_start, "duplicate key \"%.*s\"",
                      (int)(dup->n > 64 ? 64 : dup->n), dup->p);
    return 0;
}

static void skip_ws(scanner *sc)
{
    const char *p = sc->p, *e = sc->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    sc->p = p;
}

static int scan_number(scanner *sc)
{
    const char *p = sc->p, *e = sc->end, *start = p;
    if (*p == '-')
        p++;
    if (p >= e)
        goto bad;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        goto bad;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            goto bad;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            goto bad;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    sc->p = p;
    return 0;
bad:
    return fail(sc, AIP_E_MALFORMED, start, "invalid number at offset %zu",
                (size_t)(start - sc->base));
}

static int scan_literal(scanner *sc, const char *lit, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, lit, n) != 0)
        return fail(sc, AIP_E_MALFORMED, sc->p, "invalid literal at offset %zu",
                    (size_t)(sc->p - sc->base));
    sc->p += n;
    return 0;
}

static int charge(scanner *sc, size_t bytes, const char *at)
{
    aip_jscan *s = sc->s;
    s->mem_estimate += bytes;
    if (s->mem_budget && s->mem_estimate > s->mem_budget)
        return fail(sc, AIP_E_TOO_COMPLEX, at,
                    "parsing would need more than %zu bytes of memory (%zu values so far)",
                    s->mem_budget, s->values);
    return 0;
}

/* A string, number or literal at sc->p (start); charges a string's copy. */
static int scan_scalar(scanner *sc, const char *start)
{
    switch (*sc->p) {
    case '"': {
        int rc = scan_string(sc, NULL);
        return rc ? rc : charge(sc, str_cost((size_t)(sc->p - start) - 2), start);
    }
    case 't': return scan_literal(sc, "true", 4);
    case 'f': return scan_literal(sc, "false", 5);
    case 'n': return scan_literal(sc, "null", 4);
    default:
        if (*sc->p == '-' || (*sc->p >= '0' && *sc->p <= '9'))
            return scan_number(sc);
        return fail(sc, AIP_E_MALFORMED, sc->p, "unexpected character at offset %zu",
                    (size_t)(sc->p - sc->base));
    }
}

/* One more value: the value count and its node's memory. */
static int count_value(scanner *sc)
{
    aip_jscan *s = sc->s;
    if (s->max_values && s->values >= s->max_values)
        return fail(sc, AIP_E_TOO_COMPLEX, sc->p, "more than %zu values", s->max_values);
    s->values++;
    return charge(sc, NODE_COST, sc->p);
}

static int skim_push(scanner *sc, size_t level, bool is_object)
{
    if (level / 8 >= sc->skim_cap) {
        size_t ncap = sc->skim_cap ? sc->skim_cap * 2 : 64;
        uint8_t *n = aip_realloc(sc->skim, sc->skim_cap, ncap);
        if (!n)
            return fail(sc, AIP_E_NOMEM, sc->p, "out of memory");
        sc->skim = n;
        sc->skim_cap = ncap;
    }
    uint8_t bit = (uint8_t)(1u << (level % 8));
    if (is_object)
        sc->skim[level / 8] |= bit;
    else
        sc->skim[level / 8] &= (uint8_t)~bit;
    return 0;
}

/* Inside an isolated element: the container at sc->p, nested past max_depth (a defect already
 * counted). Its grammar is checked as scan_value would, without recursion; nothing in it is
 * visited or checked for duplicate keys (the element is unusable anyway). */
static int skim(scanner *sc)
{
    enum { OPENED, ELEMENT, AFTER } st = OPENED;
    size_t n = 0; /* open levels */
    if (skim_push(sc, n++, *sc->p == '{'))
        return sc->s->code;
    sc->p++;
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end)
            return fail(sc, AIP_E_MALFORMED, sc->p, "unexpected end of input at offset %zu",
                        (size_t)(sc->p - sc->base));
        bool obj = (sc->skim[(n - 1) / 8] >> ((n - 1) % 8)) & 1;
        char close = obj ? '}' : ']';
        if (st == AFTER && *sc->p == ',') {
            sc->p++;
            st = ELEMENT;
            continue;
        }
        if (st == AFTER || (st == OPENED && *sc->p == close)) {
            if (*sc->p != close)
                return fail(sc, AIP_E_MALFORMED, sc->p, "expected ',' or '%c' at offset %zu", close,
                            (size_t)(sc->p - sc->base));
            sc->p++;
            if (--n == 0)
                return 0;
            st = AFTER;
            continue;
        }
        if (obj) {
            const char *k = sc->p;
            if (*sc->p != '"')
                return fail(sc, AIP_E_MALFORMED, sc->p, "expected a string key at offset %zu",
                            (size_t)(sc->p - sc->base));
            if (scan_string(sc, NULL) || charge(sc, str_cost((size_t)(sc->p - k) - 2), k))
                return sc->s->code;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':')
                return fail(sc, AIP_E_MALFORMED, sc->p, "expected ':' at offset %zu",
                            (size_t)(sc->p - sc->base));
            sc->p++;
            skip_ws(sc);
            if (sc->p >= sc->end)
                return fail(sc, AIP_E_MALFORMED, sc->p, "unexpected end of input at offset %zu",
                            (size_t)(sc->p - sc->base));
        }
        if (count_value(sc))
            return sc->s->code;
        if (*sc->p == '{' || *sc->p == '[') {
            if (skim_push(sc, n++, *sc->p == '{'))
                return sc->s->code;
            sc->p++;
            st = OPENED;
            continue;
        }
        if (scan_scalar(sc, sc->p))
            return sc->s->code;
        st = AFTER;
    }
}

static int scan_value(scanner *sc, unsigned depth);

/* Is the container at depth `depth` the isolate_key array (the root object's member)? */
static bool is_isolate_array(const scanner *sc, unsigned depth, bool is_object)
{
    const aip_jscan *s = sc->s;
    return s->isolate_key && !is_object && depth == 1 && s->root == '{' && sc->path.key[0] &&
           aip_jscan_key_eq(sc->path.key[0], sc->path.key_len[0], s->isolate_key);
}

static int scan_container(scanner *sc, unsigned depth, bool is_object)
{
    const char *start = sc->p;
    char close = is_object ? '}' : ']';
    if (depth + 1 > sc->max_depth) {
        if (defect(sc, AIP_E_TOO_COMPLEX, start, "nesting deeper than %u levels", sc->max_depth))
            return sc->s->code;
        return skim(sc);
    }
    if (depth + 1 > sc->s->depth_seen)
        sc->s->depth_seen = depth + 1;
    bool isolate = is_isolate_array(sc, depth, is_object);
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == close) {
        sc->p++;
        return 0;
    }
    size_t kbase = sc->nkeys;
    for (size_t idx = 0;; idx++) {
        skip_ws(sc);
        if (is_object) {
            if (sc->p >= sc->end || *sc->p != '"')
                return fail(sc, AIP_E_MALFORMED, sc->p, "expected a string key at offset %zu",
                            (size_t)(sc->p - sc->base));
            const char *k = sc->p;
            bool esc = false;
            size_t f0 = sc->s->faults;
            if (scan_string(sc, &esc))
                return sc->s->code;
            size_t klen = (size_t)(sc->p - k) - 2;
            /* a key with a defect is never compared or decoded: only its object's element
             * is refused for it */
            bool bad_key = sc->s->faults != f0;
            if ((!bad_key && push_key(sc, k + 1, klen, esc)) || charge(sc, str_cost(klen), k))
                return sc->s->code;
            if (depth < AIP_JSCAN_MAX_PATH) {
                sc->path.key[depth] = bad_key ? NULL : k + 1;
                sc->path.key_len[depth] = bad_key ? 0 : klen;
            }
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':')
                return fail(sc, AIP_E_MALFORMED, sc->p, "expected ':' at offset %zu",
                            (size_t)(sc->p - sc->base));
            sc->p++;
        } else if (depth < AIP_JSCAN_MAX_PATH) {
            sc->path.key[depth] = NULL;
            sc->path.key_len[depth] = 0;
            sc->path.index[depth] = idx;
        }
        if (isolate) {
            sc->isolated = true;
            sc->fault_why[0] = 0;
        }
        int rc = scan_value(sc, depth + 1);
        if (isolate)
            sc->isolated = false;
        if (rc)
            return sc->s->code;
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == close) {
            sc->p++;
            break;
        }
        return fail(sc, AIP_E_MALFORMED, sc->p, "expected ',' or '%c' at offset %zu", close,
                    (size_t)(sc->p - sc->base));
    }
    if (is_object) {
        if (check_dups(sc, kbase, start))
            return sc->s->code;
        sc->nkeys = kbase;
    }
    return 0;
}

static int scan_value(scanner *sc, unsigned depth)
{
    aip_jscan *s = sc->s;
    skip_ws(sc);
    if (sc->p >= sc->end)
        return fail(sc, AIP_E_MALFORMED, sc->p, "unexpected end of input at offset %zu",
                    (size_t)(sc->p - sc->base));
    if (count_value(sc))
        return s->code;
    const char *start = sc->p;
    size_t f0 = s->faults;
    int rc;
    if (*sc->p == '{' || *sc->p == '[')
        rc = scan_container(sc, depth, *sc->p == '{');
    else
        rc = scan_scalar(sc, start);
    if (rc)
        return rc;
    if (s->visit && depth <= s->visit_depth) {
        sc->path.depth = depth;
        sc->path.fault = s->faults != f0 ? sc->fault_why : NULL;
        s->visit(s->user, &sc->path, start, (size_t)(sc->p - start));
    }
    return 0;
}

int aip_jscan_run(aip_jscan *s, const char *text, size_t len)
{
    scanner sc = {0};
    sc.s = s;
    sc.base = sc.p = text;
    sc.end = text + len;
    sc.max_depth = s->max_depth ? s->max_depth : 64;
    if (sc.max_depth > JSCAN_HARD_DEPTH)
        sc.max_depth = JSCAN_HARD_DEPTH;
    s->values = 0;
    s->depth_seen = 0;
    s->mem_estimate = 0;
    s->faults = 0;
    s->code = 0;
    s->err_offset = 0;
    s->why[0] = 0;
    s->root = 0;

    skip_ws(&sc);
    if (sc.p >= sc.end) {
        fail(&sc, AIP_E_MALFORMED, sc.p, "empty input");
    } else {
        s->root = *sc.p;
        if (scan_value(&sc, 0) == 0) {
            skip_ws(&sc);
            if (sc.p != sc.end)
                fail(&sc, AIP_E_MALFORMED, sc.p,
                     "trailing bytes after the JSON value at offset %zu", (size_t)(sc.p - sc.base));
        }
    }
    aip_free(sc.keys);
    aip_free(sc.skim);
    return s->code;
}
