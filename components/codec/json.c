/* SPDX-License-Identifier: MIT */
/*
 * The JSON codec.
 *
 * Decode (aip_decode() checks the size before, type and status after): (1) the strict pre-scan
 * (aip/internal/jscan.h) proves the frame is valid, bounded JSON and records the exact text of
 * the free-form values; (2) cJSON builds a tree (cheap now that depth, value count and memory
 * are known to be bounded); (3) the tree is mapped onto the model through the field tables,
 * free-form values taken from the recorded text, so `32.0` stays `32.0`.
 *
 * One action, not the frame (server frames): a string defect (\u0000, an unpaired surrogate,
 * a raw control character, invalid UTF-8), a duplicate key or nesting past max_depth inside one
 * element of `actions` — what Python's json.dumps happily writes — makes only that action
 * invalid (the scanner's isolate_key). Its element is replaced by {} in the text cJSON parses
 * (the skeleton below), so cJSON never sees the defect, and the action keeps its call_id when
 * that member itself was sound. The envelope, and the grammar everywhere, stay strict: a frame
 * whose structure cannot be read is refused whole, with whatever correlation the members read
 * before the failure give (aip_json_peek), so a command whose response_id came first is still
 * answered.
 *
 * Encode: written straight into the output buffer, keys in UFO's order (the field tables),
 * no cJSON tree (which would re-print numbers and cost a malloc per value).
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/fields.h"
#include "aip/internal/jscan.h"
#include "codec_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- free-form spans, recorded by the pre-scan ---------------------------------------------- */

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct span_list {
    span *v;
    size_t n;
} span_list;

/* An element of `actions` with a defect (the scanner's isolation): refused alone. */
typedef struct bad_action {
    size_t index;
    span text; /* the element's text: replaced by {} for cJSON */
    char *why; /* the action's `invalid` reason */
} bad_action;

typedef struct spans {
    span result, metadata;     /* top level */
    span_list params, results; /* actions[i].parameters, action_results[i].result */
    span_list call_ids;        /* actions[i].call_id (p NULL, n 1: given twice) */
    bad_action *bad;           /* in index order */
    size_t n_bad, cap_bad;
    char member[80]; /* the member of the element being scanned where its first defect is */
    bool nomem;
} spans;

static span span_at(const span_list *l, size_t i)
{
    return i < l->n ? l->v[i] : (span){NULL, 0};
}

static void span_list_set(spans *sp, span_list *l, size_t i, const char *p, size_t n)
{
    if (i >= l->n) {
        size_t nn = i + 1;
        span *v = aip_realloc(l->v, l->n * sizeof *v, nn * sizeof *v);
        if (!v) {
            sp->nomem = true;
            return;
        }
        memset(v + l->n, 0, (nn - l->n) * sizeof *v);
        l->v = v;
        l->n = nn;
    }
    l->v[i] = (span){p, n};
}

/* The raw text of a key (valid UTF-8: a key with a defect is never reported), at most 64
 * bytes, cut at a character boundary. */
static void member_name(char *dst, size_t cap, const char *k, size_t n)
{
    size_t m = n > 64 ? 64 : n;
    while (m < n && m > 0 && ((unsigned char)k[m] & 0xC0) == 0x80)
        m--;
    snprintf(dst, cap, "%.*s", (int)m, k);
}

static void add_bad_action(spans *sp, const aip_jscan_path *path, const char *v, size_t n)
{
    if (sp->n_bad == sp->cap_bad) {
        size_t nc = sp->cap_bad ? 2 * sp->cap_bad : 4;
        bad_action *b = aip_realloc(sp->bad, sp->cap_bad * sizeof *b, nc * sizeof *b);
        if (!b) {
            sp->nomem = true;
            return;
        }
        sp->bad = b;
        sp->cap_bad = nc;
    }
    char why[300];
    if (sp->member[0])
        snprintf(why, sizeof why, "field \"%s\": %s", sp->member, path->fault);
    else
        snprintf(why, sizeof why, "%s", path->fault);
    bad_action *b = &sp->bad[sp->n_bad];
    if (!(b->why = aip_strdup(why))) {
        sp->nomem = true;
        return;
    }
    b->index = path->index[1];
    b->text = (span){v, n};
    sp->n_bad++;
}

static void visit(void *user, const aip_jscan_path *path, const char *v, size_t n)
{
    spans *sp = user;
    if (path->depth == 1 && path->key[0]) {
        if (aip_jscan_key_eq(path->key[0], path->key_len[0], "result"))
            sp->result = (span){v, n};
        else if (aip_jscan_key_eq(path->key[0], path->key_len[0], "metadata"))
            sp->metadata = (span){v, n};
    } else if (path->depth == 2 && path->key[0] && !path->key[1] && path->fault) {
        /* only the actions' elements are isolated, so only they can carry a fault */
        add_bad_action(sp, path, v, n);
        sp->member[0] = 0;
    } else if (path->depth == 3 && path->key[0] && !path->key[1] && path->key[2]) {
        if (aip_jscan_key_eq(path->key[0], path->key_len[0], "actions")) {
            if (aip_jscan_key_eq(path->key[2], path->key_len[2], "parameters")) {
                span_list_set(sp, &sp->params, path->index[1], v, n);
            } else if (aip_jscan_key_eq(path->key[2], path->key_len[2], "call_id")) {
                /* unusable (p NULL, n 1) when it holds a defect or comes twice (then the
                 * action is invalid for the duplicate key: keep neither) */
                span prev = span_at(&sp->call_ids, path->index[1]);
                bool bad = path->fault || prev.p || prev.n;
                span_list_set(sp, &sp->call_ids, path->index[1], bad ? NULL : v, bad ? 1 : n);
            }
            if (path->fault && !sp->member[0])
                member_name(sp->member, sizeof sp->member, path->key[2], path->key_len[2]);
        } else if (aip_jscan_key_eq(path->key[0], path->key_len[0], "action_results") &&
                   aip_jscan_key_eq(path->key[2], path->key_len[2], "result")) {
            span_list_set(sp, &sp->results, path->index[1], v, n);
        }
    }
}

/* ---- the skeleton: free-form containers emptied before cJSON sees the frame ----------------
 *
 * The model keeps free-form values (result, metadata, parameters, action results) as their
 * recorded text, so cJSON only needs to see their kind. Building their subtrees (a malloc per
 * value, then a free per value) was most of a large frame's decode cost: when they hold enough
 * bytes, a copy of the frame with each such object/array replaced by {} / [] is parsed
 * instead. The spans are disjoint (none is inside another) and the frame is already proven
 * valid, so the copy is valid JSON with the same keys.
 *
 * An action with a defect is always replaced, by {} (whatever it was), and its parameters are
 * not listed apart (they are inside it): cJSON must never see the defect. */

#define SKELETON_MIN 128 /* bytes saved below which the copy is not worth it */

typedef struct skel_span {
    span s;
    bool bad; /* an action with a defect: always "{}" */
} skel_span;

static int skel_ptr_cmp(const void *a, const void *b)
{
    const skel_span *x = a, *y = b;
    return x->s.p < y->s.p ? -1 : x->s.p > y->s.p;
}

static void skel_add(skel_span *v, size_t *n, size_t cap, span s, size_t *saved)
{
    if (s.p && s.n > 2 && (s.p[0] == '{' || s.p[0] == '[') && *n < cap) {
        v[(*n)++] = (skel_span){s, false};
        *saved += s.n - 2;
    }
}

static bool is_bad_action(const spans *sp, size_t i)
{
    size_t lo = 0, hi = sp->n_bad;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sp->bad[mid].index == i)
            return true;
        if (sp->bad[mid].index < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Sets *out to the skeleton (its length in *out_len), or to NULL to parse the frame itself.
 * Returns 0 or AIP_E_NOMEM (only when the frame must not be parsed as it is). */
static int skeleton(const spans *sp, const char *frame, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    skel_span local[16];
    size_t cap = 2 + sp->params.n + sp->results.n + sp->n_bad, n = 0, saved = 0;
    skel_span *v = cap <= 16 ? local : aip_malloc(cap * sizeof *v);
    if (!v)
        return sp->n_bad ? AIP_E_NOMEM : 0;
    skel_add(v, &n, cap, sp->result, &saved);
    skel_add(v, &n, cap, sp->metadata, &saved);
    for (size_t i = 0; i < sp->params.n; i++)
        if (!is_bad_action(sp, i))
            skel_add(v, &n, cap, sp->params.v[i], &saved);
    for (size_t i = 0; i < sp->results.n; i++)
        skel_add(v, &n, cap, sp->results.v[i], &saved);
    size_t out_len_max = len - saved;
    for (size_t i = 0; i < sp->n_bad; i++) { /* "{}" for whatever it was (even 2 bytes) */
        v[n++] = (skel_span){sp->bad[i].text, true};
        out_len_max += 2;
    }
    int rc = 0;
    char *o = NULL;
    if ((sp->n_bad || saved >= SKELETON_MIN) && !(o = aip_malloc(out_len_max + 1)))
        rc = sp->n_bad ? AIP_E_NOMEM : 0;
    if (o) {
        qsort(v, n, sizeof *v, skel_ptr_cmp);
        const char *from = frame;
        char *to = o;
        for (size_t i = 0; i < n; i++) {
            const span *x = &v[i].s;
            memcpy(to, from, (size_t)(x->p - from));
            to += x->p - from;
            bool list = !v[i].bad && x->p[0] == '[';
            *to++ = list ? '[' : '{';
            *to++ = list ? ']' : '}';
            from = x->p + x->n;
        }
        memcpy(to, from, (size_t)(frame + len - from));
        to += frame + len - from;
        *to = 0;
        *out_len = (size_t)(to - o);
        *out = o;
    }
    if (v != local)
        aip_free(v);
    return rc;
}

/* ---- tree -> model --------------------------------------------------------------------------- */

typedef struct dctx {
    aip_envelope env;
    aip_decode_error *err;
    spans sp;
} dctx;

/* Reads one scalar/free-form field of a table into obj. prefix names the enclosing element in
 * error texts ("" at the top level). Writes the reason into why and returns an AIP_E code. */
static int take_field(const aip_field *f, const cJSON *v, void *obj, span free_form, char *why,
                      size_t why_len)
{
    int *iv = AIP_FIELD_INT(obj, f);
    char **sv = AIP_FIELD_PTR(obj, f);
    if (cJSON_IsNull(v))
        return 0; /* null == unset; enums keep their zero/default */
    switch (f->kind) {
    case AIP_F_TYPE:
    case AIP_F_STATUS:
    case AIP_F_CLIENT_TYPE:
    case AIP_F_TOOL_TYPE:
    case AIP_F_RESULT_STATUS: {
        if (!cJSON_IsString(v)) {
            snprintf(why, why_len, "field \"%s\" must be a string", f->name);
            return AIP_E_PROTOCOL;
        }
        const char *s = v->valuestring;
        size_t n = strlen(s);
        int rc;
        const char *what;
        switch (f->kind) {
        case AIP_F_TYPE:
            rc = aip_msg_type_parse(s, n, (aip_msg_type *)iv);
            what = "message type";
            break;
        case AIP_F_STATUS:
            rc = aip_status_parse(s, n, (aip_status *)iv);
            what = "status";
            break;
        case AIP_F_CLIENT_TYPE:
            rc = aip_client_type_parse(s, n, (aip_client_type *)iv);
            what = "client_type";
            break;
        case AIP_F_TOOL_TYPE:
            rc = aip_tool_type_parse(s, n, (aip_tool_type *)iv);
            what = "tool_type";
            break;
        default:
            rc = aip_result_status_parse(s, n, (aip_result_status *)iv);
            what = "result status";
            break;
        }
        if (rc) {
            snprintf(why, why_len, "unknown %s \"%.64s\"", what, s);
            return AIP_E_PROTOCOL;
        }
        return 0;
    }
    case AIP_F_TEXT:
    case AIP_F_ID: {
        if (!cJSON_IsString(v)) {
            snprintf(why, why_len, "field \"%s\" must be a string", f->name);
            return AIP_E_PROTOCOL;
        }
        size_t n = strlen(v->valuestring);
        if (f->kind == AIP_F_ID && n > AIP_ID_MAX) {
            snprintf(why, why_len, "field \"%s\" is longer than %d bytes", f->name, AIP_ID_MAX);
            return AIP_E_PROTOCOL;
        }
        if (!(*sv = aip_strndup(v->valuestring, n)))
            return AIP_E_NOMEM;
        return 0;
    }
    case AIP_F_JSON_OBJECT:
    case AIP_F_JSON_ANY:
        if (f->kind == AIP_F_JSON_OBJECT && !cJSON_IsObject(v)) {
            snprintf(why, why_len, "field \"%s\" must be an object", f->name);
            return AIP_E_PROTOCOL;
        }
        if (!free_form.p) { /* cannot happen: the scanner saw every key cJSON sees */
            snprintf(why, why_len, "field \"%s\": value text not found", f->name);
            return AIP_E_MALFORMED;
        }
        if (!(*sv = aip_strndup(free_form.p, free_form.n)))
            return AIP_E_NOMEM;
        return 0;
    default: return 0;
    }
}

/* The table entry named key. *hint: where the search starts (the entry after the last match):
 * frames list their keys in the table's order (ours, and pydantic's model order), so each
 * lookup is usually one comparison. */
static const aip_field *find_field(const aip_field *t, size_t n, const char *key, size_t *hint)
{
    for (size_t k = 0, i = *hint < n ? *hint : 0; k < n; k++, i = i + 1 < n ? i + 1 : 0)
        if (t[i].name[0] == key[0] && strcmp(t[i].name, key) == 0) {
            *hint = i + 1;
            return &t[i];
        }
    return NULL;
}

/* The string value text v[0..n) (with its quotes) as plain text into slot, if it is a short
 * string and the slot is still empty. */
static void peek_keep(char *slot, const char *v, size_t n)
{
    if (slot[0] || n < 2 || v[0] != '"')
        return;
    if (!memchr(v, '\\', n)) {
        aip_codec_keep_id(slot, v + 1, n - 2);
        return;
    }
    if (n > 6 * AIP_ID_MAX + 2) /* even all \uXXXX escapes would make it too long */
        return;
    cJSON *s = cJSON_ParseWithLength(v, n); /* a short, already validated string */
    if (cJSON_IsString(s))
        aip_codec_keep_id(slot, s->valuestring, strlen(s->valuestring));
    cJSON_Delete(s);
}

/* An action with a defect (its element was {} for cJSON): the scanner's reason, and the
 * call_id when that member was a sound string given once. */
static int take_bad_command(dctx *c, size_t i, aip_command *cmd)
{
    const bad_action *b = NULL;
    for (size_t lo = 0, hi = c->sp.n_bad; lo < hi && !b;) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->sp.bad[mid].index == i)
            b = &c->sp.bad[mid];
        else if (c->sp.bad[mid].index < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    span cid = span_at(&c->sp.call_ids, i);
    if (cid.p && cid.n >= 2 && cid.p[0] == '"') {
        char id[AIP_ID_MAX + 1] = "";
        peek_keep(id, cid.p, cid.n);
        if ((id[0] || cid.n == 2) && !(cmd->call_id = aip_strdup(id)))
            return AIP_E_NOMEM;
    }
    return (cmd->invalid = aip_strdup(b ? b->why : "invalid action")) ? 0 : AIP_E_NOMEM;
}

/* A Command. A malformed action never fails the frame: it is marked invalid, keeping what
 * could be read (call_id above all, so its failure Result can be matched). */
static int take_command(dctx *c, const cJSON *o, size_t i, aip_command *cmd)
{
    char why[160] = "";
    int rc = 0;
    if (c->sp.n_bad && is_bad_action(&c->sp, i))
        return take_bad_command(c, i, cmd);
    if (!cJSON_IsObject(o)) {
        snprintf(why, sizeof why, "action is not an object");
    } else {
        size_t hint = 0;
        for (const cJSON *v = o->child; v; v = v->next) {
            const aip_field *f =
                find_field(aip_command_fields, aip_n_command_fields, v->string, &hint);
            if (!f)
                continue;
            span ff = f->kind == AIP_F_JSON_OBJECT ? span_at(&c->sp.params, i) : (span){0};
            rc = take_field(f, v, cmd, ff, why, sizeof why);
            if (rc == AIP_E_NOMEM)
                return rc;
            if (rc)
                break;
        }
        if (!rc && !cmd->tool_name)
            snprintf(why, sizeof why, "missing required field \"tool_name\"");
        else if (!rc && cmd->tool_type == AIP_TOOL_NONE)
            snprintf(why, sizeof why, "missing required field \"tool_type\"");
        if (why[0] && !cmd->call_id) { /* keep the call_id even when the failure came first */
            const cJSON *cid = cJSON_GetObjectItemCaseSensitive(o, "call_id");
            if (cJSON_IsString(cid) && strlen(cid->valuestring) <= AIP_ID_MAX &&
                !(cmd->call_id = aip_strdup(cid->valuestring)))
                return AIP_E_NOMEM;
        }
    }
    if (why[0] && !(cmd->invalid = aip_strdup(why)))
        return AIP_E_NOMEM;
    return 0;
}

static int take_result(dctx *c, const cJSON *o, size_t i, aip_result *r)
{
    char why[160] = "";
    if (!cJSON_IsObject(o))
        return aip_codec_fail(c->err, AIP_E_PROTOCOL, "action_results[%zu] is not an object", i);
    size_t hint = 0;
    for (const cJSON *v = o->child; v; v = v->next) {
        const aip_field *f = find_field(aip_result_fields, aip_n_result_fields, v->string, &hint);
        if (!f)
            continue;
        span ff = f->kind == AIP_F_JSON_ANY ? span_at(&c->sp.results, i) : (span){0};
        int rc = take_field(f, v, r, ff, why, sizeof why);
        if (rc)
            return aip_codec_fail(c->err, rc, "action_results[%zu]: %s", i,
                                  rc == AIP_E_NOMEM ? "out of memory" : why);
    }
    if (r->status == AIP_RESULT_UNSET)
        return aip_codec_fail(c->err, AIP_E_PROTOCOL,
                              "action_results[%zu]: missing required field \"status\"", i);
    return 0;
}

static int take_list(dctx *c, const aip_field *f, const cJSON *v, aip_msg *m)
{
    if (cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v))
        return aip_codec_fail(c->err, AIP_E_PROTOCOL, "field \"%s\" must be a list", f->name);
    size_t n = (size_t)cJSON_GetArraySize(v);
    size_t i = 0;
    switch (f->kind) {
    case AIP_F_COMMANDS:
        m->has_actions = true;
        if (n && !(m->actions = aip_calloc(n, sizeof *m->actions)))
            return aip_codec_fail(c->err, AIP_E_NOMEM, "out of memory");
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            m->n_actions++;
            if (take_command(c, e, i, &m->actions[i]))
                return aip_codec_fail(c->err, AIP_E_NOMEM, "out of memory");
        }
        return 0;
    case AIP_F_RESULTS:
        m->has_action_results = true;
        if (n && !(m->action_results = aip_calloc(n, sizeof *m->action_results)))
            return aip_codec_fail(c->err, AIP_E_NOMEM, "out of memory");
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            m->n_action_results++;
            int rc = take_result(c, e, i, &m->action_results[i]);
            if (rc)
                return rc;
        }
        return 0;
    default: /* AIP_F_STRINGS */
        m->has_messages = true;
        if (n && !(m->messages = aip_calloc(n, sizeof *m->messages)))
            return aip_codec_fail(c->err, AIP_E_NOMEM, "out of memory");
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e))
                return aip_codec_fail(c->err, AIP_E_PROTOCOL, "%s[%zu] must be a string", f->name,
                                      i);
            if (!(m->messages[i] = aip_strdup(e->valuestring)))
                return aip_codec_fail(c->err, AIP_E_NOMEM, "out of memory");
            m->n_messages++;
        }
        return 0;
    }
}

/* A frame the scanner refused: the type and ids of the members read before the failure
 * (a command whose response_id came before the broken part can still be answered). */
static void peek_correlation(aip_envelope env, const char *frame, size_t len, aip_decode_error *err)
{
    if (!err)
        return;
    aip_frame_ids ids;
    aip_json_peek(env, frame, len, &ids);
    err->type = ids.type;
    memcpy(err->session_id, ids.session_id, sizeof err->session_id);
    memcpy(err->request_id, ids.request_id, sizeof err->request_id);
    memcpy(err->response_id, ids.response_id, sizeof err->response_id);
}

/* Best-effort correlation, read before anything can fail. */
static void read_correlation(const cJSON *root, aip_envelope env, aip_decode_error *err)
{
    if (!err)
        return;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "type");
    aip_msg_type mt;
    if (cJSON_IsString(t) && !aip_msg_type_parse(t->valuestring, strlen(t->valuestring), &mt) &&
        aip_msg_type_allowed(env, mt))
        err->type = mt;
    static const char *const keys[] = {"session_id", "request_id", "response_id"};
    char *slots[] = {err->session_id, err->request_id, err->response_id};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (cJSON_IsString(v))
            aip_codec_keep_id(slots[i], v->valuestring, strlen(v->valuestring));
    }
}

int aip_json_decode_frame(aip_envelope env, const char *frame, size_t len,
                          const aip_codec_limits *l, aip_msg *out, aip_decode_error *err)
{
    dctx c = {.env = env, .err = err};
    aip_jscan s = {0};
    s.max_depth = l->max_depth;
    s.max_values = l->max_values;
    s.mem_budget = aip_codec_mem_budget(l, len);
    s.visit = visit;
    s.user = &c.sp;
    s.visit_depth = 3;
    /* a server command's actions fail one by one (see the top of this file) */
    s.isolate_key = env == AIP_ENVELOPE_SERVER ? "actions" : NULL;
    int rc = aip_jscan_run(&s, frame, len);
    if (!rc && c.sp.nomem) {
        rc = aip_codec_fail(err, AIP_E_NOMEM, "out of memory");
    } else if (rc) {
        aip_codec_fail(err, rc, "%s", s.why);
        peek_correlation(env, frame, len, err);
    } else if (s.root != '{') {
        rc = aip_codec_fail(err, AIP_E_PROTOCOL, "frame is not a JSON object");
    }
    cJSON *root = NULL;
    if (!rc) {
        const char *end = NULL;
        size_t plen = len;
        char *skel = NULL;
        if (skeleton(&c.sp, frame, len, &skel, &plen))
            rc = aip_codec_fail(err, AIP_E_NOMEM, "out of memory");
        else if (!(root = cJSON_ParseWithLengthOpts(skel ? skel : frame, plen, &end, 0)))
            /* the scan proved it valid: only memory can fail here */
            rc = aip_codec_fail(err, AIP_E_NOMEM, "out of memory while parsing");
        aip_free(skel);
    }
    if (!rc && root) {
        read_correlation(root, env, err);
        size_t nf;
        const aip_field *tab = aip_envelope_fields(env, &nf);
        size_t hint = 0;
        char why[160];
        for (const cJSON *v = root->child; v && !rc; v = v->next) {
            const aip_field *f = find_field(tab, nf, v->string, &hint);
            if (!f)
                continue; /* unknown keys are ignored (docs/protocol.md §2) */
            if (f->kind == AIP_F_COMMANDS || f->kind == AIP_F_RESULTS || f->kind == AIP_F_STRINGS) {
                rc = take_list(&c, f, v, out);
                continue;
            }
            span ff = f->kind == AIP_F_JSON_ANY ? c.sp.result : c.sp.metadata;
            rc = take_field(f, v, out, ff, why, sizeof why);
            if (rc)
                aip_codec_fail(err, rc, "%s", rc == AIP_E_NOMEM ? "out of memory" : why);
        }
    }
    cJSON_Delete(root);
    aip_free(c.sp.params.v);
    aip_free(c.sp.results.v);
    aip_free(c.sp.call_ids.v);
    for (size_t i = 0; i < c.sp.n_bad; i++)
        aip_free(c.sp.bad[i].why);
    aip_free(c.sp.bad);
    return rc;
}

/* ---- model -> text --------------------------------------------------------------------------- */

int aip_json_put_string(aip_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!b || (!s && n))
        return AIP_E_INVAL;
    int rc = aip_buf_reserve(b, n + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        i += aip_json_plain_len(s + i, n - i); /* printable ASCII runs, 16 bytes a look */
        if (i >= n)
            break;
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue; /* non-ASCII: written as it is */
        if ((rc = aip_buf_append(b, s + run, i - run)))
            return rc;
        run = i + 1;
        char e[6] = {'\\', 0};
        size_t el = 2;
        switch (ch) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 15];
            el = 6;
        }
        if ((rc = aip_buf_append(b, e, el)))
            return rc;
    }
    if ((rc = aip_buf_append(b, s + run, n - run)))
        return rc;
    return aip_buf_putc(b, '"');
}

static int put_key(aip_buf *b, const char *key, bool *first)
{
    int rc = 0;
    if (!*first)
        rc = aip_buf_putc(b, ',');
    *first = false;
    if (!rc)
        rc = aip_buf_putc(b, '"');
    if (!rc)
        rc = aip_buf_puts(b, key);
    if (!rc)
        rc = aip_buf_append(b, "\":", 2);
    return rc;
}

static int put_cstr(aip_buf *b, const char *s)
{
    return aip_json_put_string(b, s, strlen(s));
}

/* Writes the scalar and free-form fields of one table entry; lists are the caller's. */
static int put_field(aip_buf *b, const aip_field *f, const void *obj, bool *first)
{
    const char *name = NULL;
    switch (f->kind) {
    case AIP_F_TYPE: name = aip_msg_type_str((aip_msg_type)*AIP_FIELD_CINT(obj, f)); break;
    case AIP_F_STATUS: name = aip_status_str((aip_status)*AIP_FIELD_CINT(obj, f)); break;
    case AIP_F_CLIENT_TYPE:
        name = aip_client_type_str((aip_client_type)*AIP_FIELD_CINT(obj, f));
        break;
    case AIP_F_TOOL_TYPE: name = aip_tool_type_str((aip_tool_type)*AIP_FIELD_CINT(obj, f)); break;
    case AIP_F_RESULT_STATUS:
        name = aip_result_status_str((aip_result_status)*AIP_FIELD_CINT(obj, f));
        break;
    case AIP_F_TEXT:
    case AIP_F_ID:
    case AIP_F_JSON_OBJECT:
    case AIP_F_JSON_ANY: {
        const char *s = *AIP_FIELD_CPTR(obj, f);
        if (!s)
            return 0;
        int rc = put_key(b, f->name, first);
        if (rc)
            return rc;
        if (f->kind == AIP_F_JSON_OBJECT || f->kind == AIP_F_JSON_ANY)
            return aip_buf_puts(b, s); /* validated JSON text, verbatim */
        return put_cstr(b, s);
    }
    default: return 0;
    }
    if (!name)
        return 0;
    int rc = put_key(b, f->name, first);
    return rc ? rc : put_cstr(b, name);
}

static int put_object(aip_buf *b, const void *obj, const aip_field *t, size_t n)
{
    bool first = true;
    int rc = aip_buf_putc(b, '{');
    for (size_t i = 0; i < n && !rc; i++)
        rc = put_field(b, &t[i], obj, &first);
    return rc ? rc : aip_buf_putc(b, '}');
}

/* About the encoded size of m: its top-level texts, room for the rest. Reserved at once, it
 * spares the doublings from 256 bytes (three reallocations for a 1 KiB answer). */
static size_t size_hint(const aip_msg *m, const aip_field *t, size_t n)
{
    size_t est = 64 + 128 * (m->n_actions + m->n_action_results + m->n_messages);
    for (size_t i = 0; i < n; i++) {
        const aip_field *f = &t[i];
        const char *s = aip_field_is_str(f->kind) ? *AIP_FIELD_CPTR(m, f) : NULL;
        est += s ? strlen(s) + strlen(f->name) + 8 : 32;
    }
    return est;
}

int aip_json_encode_valid(const aip_msg *m, aip_buf *b)
{
    size_t n;
    const aip_field *t = aip_envelope_fields(m->envelope, &n);
    bool first = true;
    size_t hint = size_hint(m, t, n);
    if (!b->limit || b->len + hint <= b->limit) /* else grow as needed, up to the limit */
        (void)aip_buf_reserve(b, hint);
    int rc = aip_buf_putc(b, '{');
    for (size_t i = 0; i < n && !rc; i++) {
        const aip_field *f = &t[i];
        switch (f->kind) {
        case AIP_F_COMMANDS:
            if (!m->has_actions && !m->n_actions)
                break;
            if ((rc = put_key(b, f->name, &first)) || (rc = aip_buf_putc(b, '[')))
                break;
            for (size_t k = 0; k < m->n_actions && !rc; k++) {
                if (k)
                    rc = aip_buf_putc(b, ',');
                if (!rc)
                    rc = put_object(b, &m->actions[k], aip_command_fields, aip_n_command_fields);
            }
            if (!rc)
                rc = aip_buf_putc(b, ']');
            break;
        case AIP_F_RESULTS:
            if (!m->has_action_results && !m->n_action_results)
                break;
            if ((rc = put_key(b, f->name, &first)) || (rc = aip_buf_putc(b, '[')))
                break;
            for (size_t k = 0; k < m->n_action_results && !rc; k++) {
                if (k)
                    rc = aip_buf_putc(b, ',');
                if (!rc)
                    rc = put_object(b, &m->action_results[k], aip_result_fields,
                                    aip_n_result_fields);
            }
            if (!rc)
                rc = aip_buf_putc(b, ']');
            break;
        case AIP_F_STRINGS:
            if (!m->has_messages && !m->n_messages)
                break;
            if ((rc = put_key(b, f->name, &first)) || (rc = aip_buf_putc(b, '[')))
                break;
            for (size_t k = 0; k < m->n_messages && !rc; k++) {
                if (k)
                    rc = aip_buf_putc(b, ',');
                if (!rc)
                    rc = put_cstr(b, m->messages[k]);
            }
            if (!rc)
                rc = aip_buf_putc(b, ']');
            break;
        default: rc = put_field(b, f, m, &first);
        }
    }
    return rc ? rc : aip_buf_putc(b, '}');
}

/* ---- utilities ------------------------------------------------------------------------------- */

int aip_json_validate(const char *text, size_t len, aip_json_kind kind,
                      const aip_codec_limits *limits, char *why, size_t why_len)
{
    const aip_codec_limits *l = aip_codec_limits_or_default(limits);
    if (!why)
        why_len = 0;
    if (!text && len) {
        if (why_len)
            snprintf(why, why_len, "no text");
        return AIP_E_INVAL;
    }
    if (!text)
        text = "";
    if (len > l->max_frame) {
        if (why_len)
            snprintf(why, why_len, "%zu bytes exceed the limit of %zu", len, l->max_frame);
        return AIP_E_TOO_LARGE;
    }
    return aip_json_text_check(text, len, kind, l->max_depth, l->max_values, why, why_len);
}

static int newline(aip_buf *b, unsigned indent, unsigned level)
{
    int rc = aip_buf_putc(b, '\n');
    for (unsigned i = 0; i < indent * level && !rc; i++)
        rc = aip_buf_putc(b, ' ');
    return rc;
}

int aip_json_pretty(const char *t, size_t len, unsigned indent, aip_buf *b)
{
    if (!b || (!t && len))
        return AIP_E_INVAL;
    unsigned level = 0;
    int rc = 0;
    for (size_t i = 0; i < len && !rc; i++) {
        char ch = t[i];
        switch (ch) {
        case ' ':
        case '\t':
        case '\n':
        case '\r': break;
        case '"': {
            size_t j = i + 1;
            while (j < len && t[j] != '"')
                j += t[j] == '\\' ? 2 : 1;
            rc = aip_buf_append(b, t + i, j + 1 - i);
            i = j;
            break;
        }
        case '{':
        case '[': {
            size_t j = i + 1;
            while (j < len && (t[j] == ' ' || t[j] == '\t' || t[j] == '\n' || t[j] == '\r'))
                j++;
            if (j < len && (t[j] == '}' || t[j] == ']')) { /* empty container stays "{}" */
                rc = aip_buf_putc(b, ch);
                if (!rc)
                    rc = aip_buf_putc(b, t[j]);
                i = j;
                break;
            }
            rc = aip_buf_putc(b, ch);
            if (!rc)
                rc = newline(b, indent, ++level);
            break;
        }
        case '}':
        case ']':
            rc = newline(b, indent, level ? --level : 0);
            if (!rc)
                rc = aip_buf_putc(b, ch);
            break;
        case ',':
            rc = aip_buf_putc(b, ',');
            if (!rc)
                rc = newline(b, indent, level);
            break;
        case ':': rc = aip_buf_append(b, ": ", 2); break;
        default: rc = aip_buf_putc(b, ch);
        }
    }
    return rc;
}

/* ---- peek: type and ids from the first bytes of a frame ----------------------------------- */

struct peek_ctx {
    aip_envelope env;
    aip_frame_ids *out;
};

static void peek_visit(void *user, const aip_jscan_path *path, const char *v, size_t n)
{
    struct peek_ctx *pc = user;
    if (path->depth != 1 || !path->key[0])
        return;
    const char *k = path->key[0];
    size_t kl = path->key_len[0];
    aip_frame_ids *o = pc->out;
    if (aip_jscan_key_eq(k, kl, "type")) {
        char t[AIP_ID_MAX + 1] = "";
        peek_keep(t, v, n);
        aip_msg_type mt;
        if (o->type == AIP_MSG_NONE && t[0] && !aip_msg_type_parse(t, strlen(t), &mt) &&
            aip_msg_type_allowed(pc->env, mt))
            o->type = mt;
    } else if (aip_jscan_key_eq(k, kl, "session_id")) {
        peek_keep(o->session_id, v, n);
    } else if (pc->env == AIP_ENVELOPE_SERVER) {
        if (aip_jscan_key_eq(k, kl, "response_id"))
            peek_keep(o->response_id, v, n);
    } else if (aip_jscan_key_eq(k, kl, "request_id")) {
        peek_keep(o->request_id, v, n);
    } else if (aip_jscan_key_eq(k, kl, "prev_response_id")) {
        peek_keep(o->prev_response_id, v, n);
    }
}

void aip_json_peek(aip_envelope env, const char *prefix, size_t len, aip_frame_ids *out)
{
    memset(out, 0, sizeof *out);
    out->type = AIP_MSG_NONE;
    if (!prefix || !len)
        return;
    struct peek_ctx pc = {env, out};
    aip_jscan s = {0};
    s.visit = peek_visit;
    s.user = &pc;
    s.visit_depth = 1;
    /* as the decoder: a defect inside one action does not stop the scan */
    s.isolate_key = env == AIP_ENVELOPE_SERVER ? "actions" : NULL;
    /* The scan stops with an error where the prefix ends (or at the first byte that is not
     * JSON); every member completed before that point has been visited. */
    (void)aip_jscan_run(&s, prefix, len);
}
