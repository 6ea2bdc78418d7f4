/* SPDX-License-Identifier: MIT */
/*
 * Making a command_results answer fit an outbound limit (see aip/internal/answer_fit.h).
 *
 * Sizes: a Result's `result` is free-form JSON text, copied verbatim by both encoders, so
 * cutting n bytes out of it makes the frame n bytes smaller (give or take a protobuf length
 * prefix). The plan is made from that arithmetic and checked with measure(), the real encoder:
 * when the frame is still over (escapes in other fields, rounding to character boundaries),
 * the shortfall is added to what must go and the plan made again, a bounded number of times.
 *
 * Step 1 works on the raw JSON text of each long string (between its quotes), never decoding
 * it: the kept tail starts at the first token (a character, an escape, a surrogate pair's two
 * escapes) at or after the cut point, so the text stays valid JSON of the same shape.
 */
#include "aip/internal/answer_fit.h"
#include "aip/buf.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_ROUNDS 6 /* measure-and-replan rounds per step */

/* An edit of a result's original text: a long string's body, or a `"truncated": false`. */
typedef struct edit {
    size_t off, len; /* the string's body (between the quotes), or the `false` literal */
    bool flag;
} edit;

typedef struct res_plan {
    char *orig; /* the result text as it came: the Result's own until a cut copy replaces it */
    edit *ed;
    size_t n_ed, cap_ed;
    bool nomem;
} res_plan;

typedef struct collect_ctx {
    res_plan *p;
    const char *base;
} collect_ctx;

static void add_edit(res_plan *p, edit e)
{
    if (p->n_ed == p->cap_ed) {
        size_t nc = p->cap_ed ? 2 * p->cap_ed : 4;
        edit *n = aip_realloc(p->ed, p->cap_ed * sizeof *n, nc * sizeof *n);
        if (!n) {
            p->nomem = true;
            return;
        }
        p->ed = n;
        p->cap_ed = nc;
    }
    p->ed[p->n_ed++] = e;
}

/* Leaves are visited in document order, so the edits come sorted by offset. */
static void collect(void *user, const aip_jscan_path *path, const char *v, size_t n)
{
    collect_ctx *cc = user;
    if (v[0] == '"' && n - 2 > AIP_FIT_MIN_TAIL)
        add_edit(cc->p, (edit){(size_t)(v + 1 - cc->base), n - 2, false});
    else if (path->depth == 1 && path->key[0] &&
             aip_jscan_key_eq(path->key[0], path->key_len[0], "truncated") && n == 5 &&
             memcmp(v, "false", 5) == 0)
        add_edit(cc->p, (edit){(size_t)(v - cc->base), 5, true});
}

/* Finds the long strings of a result text. The text was validated by the executor. */
static int plan_result(res_plan *p, char *text)
{
    memset(p, 0, sizeof *p);
    p->orig = text;
    collect_ctx cc = {p, text};
    aip_jscan s = {0};
    s.max_depth = 1000; /* already within the executor's limits; this only reads */
    s.visit = collect;
    s.user = &cc;
    s.visit_depth = UINT_MAX;
    int rc = aip_jscan_run(&s, text, strlen(text));
    if (p->nomem)
        return AIP_E_NOMEM;
    if (rc) { /* cannot happen for a validated result: leave it uncut */
        p->n_ed = 0;
        return 0;
    }
    bool any = false;
    for (size_t i = 0; i < p->n_ed && !any; i++)
        any = !p->ed[i].flag;
    if (!any)
        p->n_ed = 0; /* a flag alone is never edited */
    return 0;
}

/* Where the kept tail of a raw string body s[0..n) starts so that it is at most `keep` bytes
 * (give or take one token): the first token boundary at or after n - keep. */
static size_t tail_start(const char *s, size_t n, size_t keep)
{
    size_t want = n - keep, i = 0;
    while (i < want) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            if (s[i + 1] != 'u')
                i += 2;
            else if (i + 12 <= n && (s[i + 2] == 'd' || s[i + 2] == 'D') &&
                     strchr("89abAB", s[i + 3]) && s[i + 6] == '\\')
                i += 12; /* a surrogate pair stays whole */
            else
                i += 6;
        } else {
            i += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        }
    }
    return i;
}

/* What cap `keep` saves on this result (an estimate: boundaries may keep a little more). */
static size_t plan_saving(const res_plan *p, size_t keep)
{
    size_t saved = 0;
    for (size_t i = 0; i < p->n_ed; i++)
        if (!p->ed[i].flag && p->ed[i].len > keep)
            saved += p->ed[i].len - keep;
    return saved;
}

/* The result text with every long string cut to `keep`; NULL on out of memory. */
static char *plan_apply(const res_plan *p, size_t keep, size_t *n_cut)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    const char *o = p->orig;
    size_t from = 0, cut = 0;
    int rc = 0;
    for (size_t i = 0; i < p->n_ed && !rc; i++)
        if (!p->ed[i].flag && p->ed[i].len > keep)
            cut++;
    for (size_t i = 0; i < p->n_ed && !rc; i++) {
        const edit *e = &p->ed[i];
        if (e->flag) {
            if (!cut)
                continue;
            rc = aip_buf_append(&b, o + from, e->off - from);
            if (!rc)
                rc = aip_buf_puts(&b, "true");
        } else {
            if (e->len <= keep)
                continue;
            size_t t = tail_start(o + e->off, e->len, keep);
            rc = aip_buf_append(&b, o + from, e->off - from);
            if (!rc)
                rc = aip_buf_append(&b, o + e->off + t, e->len - t);
        }
        from = e->off + e->len;
    }
    if (!rc)
        rc = aip_buf_puts(&b, o + from);
    if (!rc)
        rc = aip_buf_nul(&b);
    if (rc) {
        aip_buf_free(&b);
        return NULL;
    }
    *n_cut += cut;
    return (char *)aip_buf_steal(&b);
}

/* The largest cap (>= AIP_FIT_MIN_TAIL) whose saving over all plans reaches `need`, or
 * AIP_FIT_MIN_TAIL when none does. */
static size_t choose_tail(const res_plan *plans, size_t n, size_t need, size_t longest)
{
    size_t lo = AIP_FIT_MIN_TAIL, hi = longest; /* saving(hi) == 0 */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2, saved = 0;
        for (size_t i = 0; i < n && saved < need; i++)
            saved += plan_saving(&plans[i], mid);
        if (saved >= need)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static int measure_into(const aip_msg *m, aip_fit_measure measure, void *user, aip_fit_report *rep)
{
    return measure(m, user, &rep->after);
}

/* Step 1. Returns 0 (rep->after says whether it fits now) or an error. */
static int cut_strings(aip_msg *m, size_t limit, aip_fit_measure measure, void *user,
                       aip_fit_report *rep)
{
    size_t n = m->n_action_results, longest = 0;
    res_plan *plans = n ? aip_calloc(n, sizeof *plans) : NULL;
    if (n && !plans)
        return AIP_E_NOMEM;
    int rc = 0;
    bool any = false;
    for (size_t i = 0; i < n && !rc; i++) {
        aip_result *r = &m->action_results[i];
        if (!r->result)
            continue;
        rc = plan_result(&plans[i], r->result); /* orig: r->result until a cut replaces it */
        for (size_t k = 0; k < plans[i].n_ed; k++)
            if (!plans[i].ed[k].flag && plans[i].ed[k].len > longest)
                longest = plans[i].ed[k].len;
        any = any || plans[i].n_ed;
    }
    size_t need = rep->after - limit, keep = longest;
    for (int round = 0; !rc && any && round < PLAN_ROUNDS && rep->after > limit; round++) {
        size_t k = choose_tail(plans, n, need, longest);
        if (k >= keep && round) /* nothing more to gain from strings */
            break;
        keep = k;
        size_t n_cut = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            if (!plans[i].n_ed)
                continue;
            char *t = plan_apply(&plans[i], keep, &n_cut);
            if (!t) {
                rc = AIP_E_NOMEM;
                break;
            }
            if (m->action_results[i].result != plans[i].orig)
                aip_free(m->action_results[i].result);
            m->action_results[i].result = t;
        }
        if (!rc)
            rc = measure_into(m, measure, user, rep);
        rep->strings_cut = n_cut;
        rep->tail = keep;
        if (!rc && rep->after > limit)
            need += rep->after - limit; /* the estimate fell short by that much */
        if (keep == AIP_FIT_MIN_TAIL)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        if (m->action_results[i].result != plans[i].orig)
            aip_free(plans[i].orig); /* replaced by its cut copy */
        aip_free(plans[i].ed);
    }
    aip_free(plans);
    return rc;
}

typedef struct drop_cand {
    size_t index, gain;
} drop_cand;

static int gain_cmp(const void *a, const void *b)
{
    const drop_cand *x = a, *y = b;
    if (x->gain != y->gain)
        return x->gain < y->gain ? 1 : -1; /* largest first */
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Step 2. */
static int drop_results(aip_msg *m, size_t limit, aip_fit_measure measure, void *user,
                        aip_fit_report *rep)
{
    char reason[128];
    snprintf(reason, sizeof reason,
             "result dropped: the answer would exceed the outbound limit of %zu bytes", limit);
    size_t rl = strlen(reason), n = m->n_action_results, nc = 0;
    drop_cand *c = n ? aip_calloc(n, sizeof *c) : NULL;
    if (n && !c)
        return AIP_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const aip_result *r = &m->action_results[i];
        size_t sz = (r->result ? strlen(r->result) : 0) + (r->error ? strlen(r->error) : 0);
        bool dropped = r->status == AIP_RESULT_FAILURE && r->error && !r->result &&
                       strcmp(r->error, reason) == 0;
        if (sz > rl + 16 && !dropped) /* replacing it must save something */
            c[nc++] = (drop_cand){i, sz - rl};
    }
    if (nc)
        qsort(c, nc, sizeof *c, gain_cmp);
    int rc = 0;
    size_t next = 0;
    for (int round = 0; !rc && next < nc && rep->after > limit; round++) {
        size_t need = rep->after - limit, saved = 0;
        /* later rounds also take one more at least: progress is certain */
        while (next < nc && (saved < need || saved == 0)) {
            aip_result *r = &m->action_results[c[next].index];
            char *e = aip_strdup(reason);
            if (!e) {
                rc = AIP_E_NOMEM;
                break;
            }
            aip_free(r->error);
            aip_free(r->result);
            r->error = e;
            r->result = NULL;
            r->status = AIP_RESULT_FAILURE;
            saved += c[next++].gain;
            rep->results_dropped++;
        }
        if (!rc)
            rc = measure_into(m, measure, user, rep);
    }
    aip_free(c);
    return rc;
}

/* Step 3. */
static int drop_all(aip_msg *m, size_t limit, aip_fit_measure measure, void *user,
                    aip_fit_report *rep)
{
    char why[200];
    snprintf(why, sizeof why,
             "results dropped: the answer to %zu actions would exceed the outbound limit of %zu "
             "bytes",
             m->n_action_results, limit);
    char *e = aip_strdup(why);
    if (!e)
        return AIP_E_NOMEM;
    rep->results_dropped = m->n_action_results;
    for (size_t i = 0; i < m->n_action_results; i++) {
        aip_result *r = &m->action_results[i];
        aip_free(r->error);
        aip_free(r->result);
        aip_free(r->ns);
        aip_free(r->call_id);
    }
    aip_free(m->action_results);
    m->action_results = NULL;
    m->n_action_results = 0;
    m->has_action_results = true;
    m->status = AIP_STATUS_FAILED;
    aip_free(m->error);
    m->error = e;
    rep->minimal = true;
    return measure_into(m, measure, user, rep);
}

int aip_answer_fit(aip_msg *m, size_t limit, aip_fit_measure measure, void *user,
                   aip_fit_report *rep)
{
    aip_fit_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    int rc = measure(m, user, &rep->before);
    if (rc)
        return rc;
    rep->after = rep->before;
    if (rep->after <= limit)
        return 0;
    if ((rc = cut_strings(m, limit, measure, user, rep)) || rep->after <= limit)
        return rc;
    if ((rc = drop_results(m, limit, measure, user, rep)) || rep->after <= limit)
        return rc;
    if ((rc = drop_all(m, limit, measure, user, rep)))
        return rc;
    return rep->after <= limit ? 0 : AIP_E_TOO_LARGE;
}
