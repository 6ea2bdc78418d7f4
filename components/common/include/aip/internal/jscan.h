/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/jscan.h — a strict, allocation-light JSON text scanner (not installed).
 *
 * One pass over the bytes that proves the text is exactly one RFC 8259 value (optionally
 * surrounded by whitespace), with valid UTF-8, no \u0000, no lone surrogates, no duplicate
 * keys (compared after unescaping), nesting within max_depth and at most max_values values.
 * It also estimates what cJSON would allocate to parse it, so the codec can refuse a frame
 * whose tree would cost too much *before* building it.
 *
 * It can report the byte span of values near the root (depth <= visit_depth) to a visitor:
 * the codec uses that to keep free-form values as their original text.
 *
 * Isolation (isolate_key): the elements of the array that is the value of the root object's
 * member named isolate_key (a server command's "actions") may hold *defects* that make that
 * element unusable but leave the frame's structure readable: in a string, \u0000, an unpaired
 * UTF-16 surrogate, a raw control character or invalid UTF-8; a duplicate key; nesting deeper
 * than max_depth (skimmed without recursion, its grammar still checked). Inside such an element
 * a defect is counted (faults) and reported to the visitor (path->fault) instead of failing the
 * scan; the rest of the frame is held to every rule. Grammar errors (a bad escape, number or
 * literal, a missing ',' ':' or quote), the value count and the memory budget still fail the
 * whole scan: after a grammar error nothing says where the element ends.
 *
 * Threads: a scanner object is used by one thread; no global state.
 */
#ifndef AIP_INTERNAL_JSCAN_H
#define AIP_INTERNAL_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIP_JSCAN_MAX_PATH 4

typedef struct aip_jscan_path {
    unsigned depth;                      /* 0 = the root value */
    const char *key[AIP_JSCAN_MAX_PATH]; /* raw (escaped) key text at each level, or NULL */
    size_t key_len[AIP_JSCAN_MAX_PATH];  /* when the parent is an object */
    size_t index[AIP_JSCAN_MAX_PATH];    /* when the parent is an array */
    /* With isolate_key: NULL, or the first defect found in the isolated element this value is
     * (or is inside of), when this value holds one. A key that held a defect is NULL in key[]
     * (and is left out of the duplicate check: it is never decoded). */
    const char *fault;
} aip_jscan_path;

/* Called after each complete value at depth <= visit_depth, with its exact text. */
typedef void (*aip_jscan_visit)(void *user, const aip_jscan_path *path, const char *value,
                                size_t len);

typedef struct aip_jscan {
    /* configuration (zero = unlimited, except max_depth: zero means 64) */
    unsigned max_depth;
    size_t max_values;
    size_t mem_budget; /* refuse when the estimated cJSON parse memory passes it */
    aip_jscan_visit visit;
    void *user;
    unsigned visit_depth;
    const char *isolate_key; /* NULL: no isolation, every defect fails the scan */

    /* results */
    size_t values;
    unsigned depth_seen;
    size_t mem_estimate;
    size_t faults; /* defects tolerated inside isolated elements */
    char root;     /* first byte of the root value: '{', '[', '"', 't', 'f', 'n' or a digit/'-' */
    int code;      /* 0, AIP_E_MALFORMED, AIP_E_TOO_COMPLEX, AIP_E_NOMEM */
    size_t err_offset;
    char why[160];
} aip_jscan;

/* Scans text[0..len). Returns s->code. Configuration fields are read, results written. */
int aip_jscan_run(aip_jscan *s, const char *text, size_t len);

/* Does the raw (escaped) key text equal the plain string lit after unescaping? */
bool aip_jscan_key_eq(const char *raw, size_t raw_len, const char *lit);

/* UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Returns true when valid; else *bad_off is the offset of the first bad byte (if non-NULL). */
bool aip_utf8_valid(const char *s, size_t n, size_t *bad_off);
/* How many of the leading bytes of p[0..n) a JSON string may hold as they are and a scan may
 * pass over: printable ASCII other than '"' and '\\' (SSE2 where the CPU has it). */
size_t aip_json_plain_len(const char *p, size_t n);

/* Drops JSON whitespace from both ends of s[0..*n). */
static inline void aip_json_trim(const char **s, size_t *n)
{
    const char *p = *s;
    size_t l = *n;
    while (l && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
        l--;
    }
    while (l && (p[l - 1] == ' ' || p[l - 1] == '\t' || p[l - 1] == '\n' || p[l - 1] == '\r'))
        l--;
    *s = p;
    *n = l;
}

#endif /* AIP_INTERNAL_JSCAN_H */
