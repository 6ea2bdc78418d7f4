/* SPDX-License-Identifier: MIT */
/*
 * The protobuf codec (protobuf-c 1.4.1, schema proto/aip.proto).
 *
 * Decode (aip_decode() has refused empty and oversized frames and checks the whole message
 * after: type present and allowed, status present): unpack through an allocator with a byte budget
 * (protobuf-c has no size limit of its own), then validate every field while copying it into
 * the model: enums in range, text is UTF-8 without NUL, ids within AIP_ID_MAX, free-form
 * values strict JSON within the depth/value limits. protobuf-c reports no reasons, so every
 * reason here is ours.
 *
 * Encode: driven by the field tables (aip/internal/fields.h), as the JSON encoder is: the schema
 * numbers each message's fields in its table's order (1, 2, ...) with the same names, but for
 * free-form values (name_json), so table entry i is the descriptor's fields[i]
 * (aip_proto_tables_check() proves it, test_codec runs it). The protobuf-c structs point into
 * the model (no copies) and are packed straight into the output buffer.
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/fields.h"
#include "aip/internal/jscan.h"
#include "codec_util.h"

#include "aip.pb-c.h"

#include <stdio.h>
#include <string.h>

_Static_assert(AIP__V1__MESSAGE_TYPE__ERROR == (int)AIP_MSG_ERROR, "type enums line up");
_Static_assert(AIP__V1__STATUS__STATUS_ERROR == (int)AIP_STATUS_ERROR, "status enums line up");
_Static_assert(AIP__V1__CLIENT_TYPE__CONSTELLATION == (int)AIP_CLIENT_CONSTELLATION, "client");
_Static_assert(AIP__V1__TOOL_TYPE__ACTION == (int)AIP_TOOL_ACTION, "tool type enums line up");
_Static_assert(AIP__V1__RESULT_STATUS__NONE == (int)AIP_RESULT_NONE, "result enums line up");

/* ---- the budgeted allocator --------------------------------------------------------------- */

typedef struct budget {
    size_t used, limit;
    bool exceeded;
} budget;

#define HDR 16 /* keeps the user pointer 16-byte aligned and remembers the size */

static void *b_alloc(void *ud, size_t size)
{
    budget *b = ud;
    if (size > b->limit || b->used > b->limit - size) {
        b->exceeded = true;
        return NULL;
    }
    uint8_t *p = aip_malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    b->used += size;
    return p + HDR;
}

static void b_free(void *ud, void *ptr)
{
    budget *b = ud;
    if (!ptr)
        return;
    uint8_t *p = (uint8_t *)ptr - HDR;
    size_t size;
    memcpy(&size, p, sizeof size);
    b->used -= size;
    aip_free(p);
}

/* ---- wire -> model ------------------------------------------------------------------------- */

typedef struct pctx {
    const aip_codec_limits *l;
    aip_decode_error *err;
    char why[160];
} pctx;

/* Validates and copies one text field (AIP_F_TEXT or AIP_F_ID). */
static int take_bytes(pctx *c, const char *name, protobuf_c_boolean has,
                      const ProtobufCBinaryData *d, aip_field_kind kind, char **dst)
{
    if (!has)
        return 0;
    /* protobuf-c leaves data NULL for an empty bytes field; NULL + 0 is undefined in C. */
    const char *s = d->data ? (const char *)d->data : "";
    size_t n = d->len;
    if (n && memchr(s, 0, n)) {
        snprintf(c->why, sizeof c->why, "field \"%s\" contains a NUL byte", name);
        return AIP_E_MALFORMED;
    }
    size_t bad;
    if (!aip_utf8_valid(s, n, &bad)) {
        snprintf(c->why, sizeof c->why, "field \"%s\" is not valid UTF-8 (byte %zu)", name, bad);
        return AIP_E_MALFORMED;
    }
    if (kind == AIP_F_ID && n > AIP_ID_MAX) {
        snprintf(c->why, sizeof c->why, "field \"%s\" is longer than %d bytes", name, AIP_ID_MAX);
        return AIP_E_PROTOCOL;
    }
    if (!(*dst = aip_strndup(s, n))) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return AIP_E_NOMEM;
    }
    return 0;
}

/* Validates and copies one free-form value (JSON text) found at nesting level `at` of the
 * equivalent JSON frame, so both encodings bound it alike (see aip_field.at). */
static int take_json(pctx *c, const char *name, protobuf_c_boolean has,
                     const ProtobufCBinaryData *d, aip_field_kind kind, unsigned at, char **dst)
{
    if (!has)
        return 0;
    const char *s = d->data ? (const char *)d->data : "";
    size_t n = d->len;
    aip_jscan js = {0};
    js.max_depth = c->l->max_depth > at ? c->l->max_depth - at : 1;
    js.max_values = c->l->max_values;
    int rc = aip_jscan_run(&js, s, n);
    if (rc) {
        snprintf(c->why, sizeof c->why, "field \"%s\": %.120s", name, js.why);
        return rc;
    }
    if (js.root == 'n') /* JSON null travels as an absent field; an explicit "null" is the same */
        return 0;
    if (kind == AIP_F_JSON_OBJECT && js.root != '{') {
        snprintf(c->why, sizeof c->why, "field \"%s\" must be an object", name);
        return AIP_E_PROTOCOL;
    }
    aip_json_trim(&s, &n); /* canonical: what the JSON decoder keeps */
    if (!(*dst = aip_strndup(s, n))) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return AIP_E_NOMEM;
    }
    return 0;
}

static int take_enum(pctx *c, const char *name, protobuf_c_boolean has, int v, int count, int *dst,
                     bool zero_ok)
{
    if (!has)
        return 0;
    if (v < (zero_ok ? 0 : 1) || v >= count) {
        snprintf(c->why, sizeof c->why, "field \"%s\" has unknown value %d", name, v);
        return AIP_E_PROTOCOL;
    }
    *dst = v;
    return 0;
}

#define TAKE(name, kind, dstp) take_bytes(c, #name, w->has_##name, &w->name, kind, dstp)

static int take_command(pctx *c, const Aip__V1__Command *w, aip_command *cmd)
{
    int rc = TAKE(call_id, AIP_F_ID, &cmd->call_id);
    if (rc == AIP_E_NOMEM)
        return rc;
    if (rc)
        goto invalid;
    if ((rc = TAKE(tool_name, AIP_F_ID, &cmd->tool_name)) ||
        (rc = take_json(c, "parameters", w->has_parameters_json, &w->parameters_json,
                        AIP_F_JSON_OBJECT, 3, &cmd->parameters)) ||
        (rc = take_enum(c, "tool_type", w->has_tool_type, (int)w->tool_type, AIP_TOOL_TYPE_COUNT_,
                        (int *)&cmd->tool_type, false))) {
        if (rc == AIP_E_NOMEM)
            return rc;
        goto invalid;
    }
    if (!cmd->tool_name) {
        snprintf(c->why, sizeof c->why, "missing required field \"tool_name\"");
        goto invalid;
    }
    if (cmd->tool_type == AIP_TOOL_NONE) {
        snprintf(c->why, sizeof c->why, "missing required field \"tool_type\"");
        goto invalid;
    }
    return 0;
invalid:
    return (cmd->invalid = aip_strdup(c->why)) ? 0 : AIP_E_NOMEM;
}

static int take_result(pctx *c, const Aip__V1__Result *w, aip_result *r)
{
    int rc;
    if ((rc = take_enum(c, "status", w->has_status, (int)w->status, AIP_RESULT_STATUS_COUNT_,
                        (int *)&r->status, false)) ||
        (rc = TAKE(error, AIP_F_TEXT, &r->error)) ||
        (rc = take_json(c, "result", w->has_result_json, &w->result_json, AIP_F_JSON_ANY, 3,
                        &r->result)) ||
        (rc = take_bytes(c, "namespace", w->has_namespace_, &w->namespace_, AIP_F_ID, &r->ns)) ||
        (rc = TAKE(call_id, AIP_F_ID, &r->call_id)))
        return rc;
    if (r->status == AIP_RESULT_UNSET) {
        snprintf(c->why, sizeof c->why, "missing required field \"status\"");
        return AIP_E_PROTOCOL;
    }
    return 0;
}

static void keep_corr(aip_decode_error *err, int type_has, int type, aip_envelope env,
                      protobuf_c_boolean hs, const ProtobufCBinaryData *sid, protobuf_c_boolean hq,
                      const ProtobufCBinaryData *rid, protobuf_c_boolean hr,
                      const ProtobufCBinaryData *resp)
{
    if (!err)
        return;
    if (type_has && type > 0 && type < AIP_MSG_TYPE_COUNT_ &&
        aip_msg_type_allowed(env, (aip_msg_type)type))
        err->type = (aip_msg_type)type;
    if (hs)
        aip_codec_keep_id(err->session_id, (const char *)sid->data, sid->len);
    if (hq)
        aip_codec_keep_id(err->request_id, (const char *)rid->data, rid->len);
    if (hr)
        aip_codec_keep_id(err->response_id, (const char *)resp->data, resp->len);
}

static int client_from_wire(pctx *c, const Aip__V1__ClientMessage *w, aip_msg *m)
{
    static const ProtobufCBinaryData none = {0, NULL};
    keep_corr(c->err, w->has_type, (int)w->type, AIP_ENVELOPE_CLIENT, w->has_session_id,
              &w->session_id, w->has_request_id, &w->request_id, 0, &none);
    int rc;
    if ((rc = take_enum(c, "type", w->has_type, (int)w->type, AIP_MSG_TYPE_COUNT_, (int *)&m->type,
                        false)) ||
        (rc = take_enum(c, "status", w->has_status, (int)w->status, AIP_STATUS_COUNT_,
                        (int *)&m->status, false)) ||
        (rc = take_enum(c, "client_type", w->has_client_type, (int)w->client_type,
                        AIP_CLIENT_TYPE_COUNT_, (int *)&m->client_type, true)) ||
        (rc = TAKE(session_id, AIP_F_ID, &m->session_id)) ||
        (rc = TAKE(task_name, AIP_F_ID, &m->task_name)) ||
        (rc = TAKE(client_id, AIP_F_ID, &m->client_id)) ||
        (rc = TAKE(target_id, AIP_F_ID, &m->target_id)) ||
        (rc = TAKE(request, AIP_F_TEXT, &m->request)) ||
        (rc = TAKE(timestamp, AIP_F_ID, &m->timestamp)) ||
        (rc = TAKE(request_id, AIP_F_ID, &m->request_id)) ||
        (rc = TAKE(prev_response_id, AIP_F_ID, &m->prev_response_id)) ||
        (rc = TAKE(error, AIP_F_TEXT, &m->error)) ||
        (rc = take_json(c, "metadata", w->has_metadata_json, &w->metadata_json, AIP_F_JSON_OBJECT,
                        1, &m->metadata)))
        return rc;
    if (w->action_results) {
        const Aip__V1__ResultList *rl = w->action_results;
        m->has_action_results = true;
        if (rl->n_items && !(m->action_results = aip_calloc(rl->n_items, sizeof(aip_result))))
            return AIP_E_NOMEM;
        for (size_t i = 0; i < rl->n_items; i++) {
            m->n_action_results++;
            if ((rc = take_result(c, rl->items[i], &m->action_results[i]))) {
                char tmp[160];
                snprintf(tmp, sizeof tmp, "action_results[%zu]: %.120s", i, c->why);
                memcpy(c->why, tmp, sizeof c->why);
                return rc;
            }
        }
    }
    return 0;
}

static int server_from_wire(pctx *c, const Aip__V1__ServerMessage *w, aip_msg *m)
{
    static const ProtobufCBinaryData none = {0, NULL};
    keep_corr(c->err, w->has_type, (int)w->type, AIP_ENVELOPE_SERVER, w->has_session_id,
              &w->session_id, 0, &none, w->has_response_id, &w->response_id);
    int rc;
    if ((rc = take_enum(c, "type", w->has_type, (int)w->type, AIP_MSG_TYPE_COUNT_, (int *)&m->type,
                        false)) ||
        (rc = take_enum(c, "status", w->has_status, (int)w->status, AIP_STATUS_COUNT_,
                        (int *)&m->status, false)) ||
        (rc = TAKE(user_request, AIP_F_TEXT, &m->user_request)) ||
        (rc = TAKE(agent_name, AIP_F_TEXT, &m->agent_name)) ||
        (rc = TAKE(process_name, AIP_F_TEXT, &m->process_name)) ||
        (rc = TAKE(root_name, AIP_F_TEXT, &m->root_name)) ||
        (rc = TAKE(error, AIP_F_TEXT, &m->error)) ||
        (rc = TAKE(session_id, AIP_F_ID, &m->session_id)) ||
        (rc = TAKE(task_name, AIP_F_ID, &m->task_name)) ||
        (rc = TAKE(timestamp, AIP_F_ID, &m->timestamp)) ||
        (rc = TAKE(response_id, AIP_F_ID, &m->response_id)) ||
        (rc = take_json(c, "result", w->has_result_json, &w->result_json, AIP_F_JSON_ANY, 1,
                        &m->result)))
        return rc;
    if (w->actions) {
        const Aip__V1__CommandList *cl = w->actions;
        m->has_actions = true;
        if (cl->n_items && !(m->actions = aip_calloc(cl->n_items, sizeof(aip_command))))
            return AIP_E_NOMEM;
        for (size_t i = 0; i < cl->n_items; i++) {
            m->n_actions++;
            if ((rc = take_command(c, cl->items[i], &m->actions[i])))
                return rc;
        }
    }
    if (w->messages) {
        const Aip__V1__TextList *tl = w->messages;
        m->has_messages = true;
        if (tl->n_items && !(m->messages = aip_calloc(tl->n_items, sizeof(char *))))
            return AIP_E_NOMEM;
        for (size_t i = 0; i < tl->n_items; i++) {
            if ((rc = take_bytes(c, "messages", 1, &tl->items[i], AIP_F_TEXT, &m->messages[i])))
                return rc;
            m->n_messages++;
        }
    }
    return 0;
}

int aip_proto_decode_frame(aip_envelope env, const uint8_t *frame, size_t len,
                           const aip_codec_limits *l, aip_msg *out, aip_decode_error *err)
{
    budget bud = {0, aip_codec_mem_budget(l, len), false};
    ProtobufCAllocator alloc = {b_alloc, b_free, &bud};
    pctx c = {.l = l, .err = err};
    int rc;
    if (env == AIP_ENVELOPE_SERVER) {
        Aip__V1__ServerMessage *w = aip__v1__server_message__unpack(&alloc, len, frame);
        if (!w)
            goto unpack_failed;
        rc = server_from_wire(&c, w, out);
        aip__v1__server_message__free_unpacked(w, &alloc);
    } else {
        Aip__V1__ClientMessage *w = aip__v1__client_message__unpack(&alloc, len, frame);
        if (!w)
            goto unpack_failed;
        rc = client_from_wire(&c, w, out);
        aip__v1__client_message__free_unpacked(w, &alloc);
    }
    if (rc)
        aip_codec_fail(err, rc, "%s", c.why);
    return rc;

unpack_failed:
    if (bud.exceeded)
        return aip_codec_fail(err, AIP_E_TOO_COMPLEX,
                              "decoding needs more than %zu bytes of memory", bud.limit);
    return aip_codec_fail(err, AIP_E_MALFORMED, "not a valid protobuf %s",
                          env == AIP_ENVELOPE_SERVER ? "ServerMessage" : "ClientMessage");
}

/* ---- model -> wire ------------------------------------------------------------------------- */

static ProtobufCBinaryData bd(const char *s)
{
    ProtobufCBinaryData d = {s ? strlen(s) : 0, (uint8_t *)(uintptr_t)s};
    return d;
}

static size_t pack_into(const ProtobufCMessage *msg, aip_buf *out, int *rc)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if ((*rc = aip_buf_reserve(out, n)))
        return 0;
    size_t w = protobuf_c_message_pack(msg, out->data + out->len);
    out->len += w;
    return w;
}

/* Points the scalar and free-form fields of w at those of obj (table t); lists are the caller's.
 * Enums are always present, as UFO always sends them; an unset text is absent. */
static void put_fields(ProtobufCMessage *w, const aip_field *t, size_t n, const void *obj)
{
    const ProtobufCFieldDescriptor *fd = w->descriptor->fields;
    char *base = (char *)w;
    for (size_t i = 0; i < n; i++) {
        const aip_field *f = &t[i];
        protobuf_c_boolean yes = 1;
        switch (f->kind) {
        case AIP_F_TYPE:
        case AIP_F_STATUS:
        case AIP_F_CLIENT_TYPE:
        case AIP_F_TOOL_TYPE:
        case AIP_F_RESULT_STATUS:
            memcpy(base + fd[i].offset, AIP_FIELD_CINT(obj, f), sizeof(int));
            memcpy(base + fd[i].quantifier_offset, &yes, sizeof yes);
            break;
        case AIP_F_TEXT:
        case AIP_F_ID:
        case AIP_F_JSON_OBJECT:
        case AIP_F_JSON_ANY: {
            const char *s = *AIP_FIELD_CPTR(obj, f);
            if (!s)
                break;
            ProtobufCBinaryData d = bd(s);
            memcpy(base + fd[i].offset, &d, sizeof d);
            memcpy(base + fd[i].quantifier_offset, &yes, sizeof yes);
            break;
        }
        default: break;
        }
    }
}

/* One list of Commands or Results: n wire messages (descriptor d, table t) pointing into the
 * n model objects at objs (each size bytes). *items and *ptrs are the caller's to free. */
static int put_list(const ProtobufCMessageDescriptor *d, const aip_field *t, size_t nt,
                    const void *objs, size_t size, size_t n, uint8_t **items, void ***ptrs)
{
    if (!n)
        return 0;
    if (!(*items = aip_calloc(n, d->sizeof_message)) || !(*ptrs = aip_calloc(n, sizeof **ptrs)))
        return AIP_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        ProtobufCMessage *x = (ProtobufCMessage *)(void *)(*items + i * d->sizeof_message);
        protobuf_c_message_init(d, x);
        put_fields(x, t, nt, (const char *)objs + i * size);
        (*ptrs)[i] = x;
    }
    return 0;
}

int aip_proto_encode_valid(const aip_msg *m, aip_buf *out)
{
    Aip__V1__ClientMessage cw = AIP__V1__CLIENT_MESSAGE__INIT;
    Aip__V1__ServerMessage sw = AIP__V1__SERVER_MESSAGE__INIT;
    Aip__V1__ResultList rl = AIP__V1__RESULT_LIST__INIT;
    Aip__V1__CommandList cl = AIP__V1__COMMAND_LIST__INIT;
    Aip__V1__TextList tl = AIP__V1__TEXT_LIST__INIT;
    bool server = m->envelope == AIP_ENVELOPE_SERVER;
    ProtobufCMessage *w = server ? &sw.base : &cw.base;
    uint8_t *items = NULL;
    void **ptrs = NULL;
    ProtobufCBinaryData *texts = NULL;
    size_t nt;
    const aip_field *t = aip_envelope_fields(m->envelope, &nt);
    put_fields(w, t, nt, m);
    int rc = 0;
    if (!server && (m->has_action_results || m->n_action_results)) {
        rc = put_list(&aip__v1__result__descriptor, aip_result_fields, aip_n_result_fields,
                      m->action_results, sizeof(aip_result), m->n_action_results, &items, &ptrs);
        rl.n_items = m->n_action_results;
        rl.items = (Aip__V1__Result **)ptrs;
        cw.action_results = &rl;
    }
    if (server && (m->has_actions || m->n_actions)) {
        rc = put_list(&aip__v1__command__descriptor, aip_command_fields, aip_n_command_fields,
                      m->actions, sizeof(aip_command), m->n_actions, &items, &ptrs);
        cl.n_items = m->n_actions;
        cl.items = (Aip__V1__Command **)ptrs;
        sw.actions = &cl;
    }
    if (!rc && server && (m->has_messages || m->n_messages)) {
        size_t n = m->n_messages;
        if (n && !(texts = aip_calloc(n, sizeof *texts)))
            rc = AIP_E_NOMEM;
        for (size_t i = 0; i < n && !rc; i++)
            texts[i] = bd(m->messages[i]);
        tl.n_items = n;
        tl.items = texts;
        sw.messages = &tl;
    }
    if (!rc)
        pack_into(w, out, &rc);
    aip_free(items);
    aip_free(ptrs);
    aip_free(texts);
    return rc;
}

static int check_table(const ProtobufCMessageDescriptor *d, const aip_field *t, size_t n, char *why,
                       size_t why_len)
{
    for (size_t i = 0; i < n; i++) {
        const ProtobufCFieldDescriptor *fd = i < d->n_fields ? &d->fields[i] : NULL;
        char want[64];
        bool free_form = t[i].kind == AIP_F_JSON_OBJECT || t[i].kind == AIP_F_JSON_ANY;
        snprintf(want, sizeof want, "%s%s", t[i].name, free_form ? "_json" : "");
        if (!fd || fd->id != i + 1 || strcmp(fd->name, want) != 0) {
            snprintf(why, why_len, "%s field %zu is \"%s\", the table says \"%s\"", d->name, i + 1,
                     fd ? fd->name : "(none)", want);
            return AIP_E_STATE;
        }
    }
    if (n != d->n_fields) {
        snprintf(why, why_len, "%s has %u fields, its table %zu", d->name, d->n_fields, n);
        return AIP_E_STATE;
    }
    return 0;
}

int aip_proto_tables_check(char *why, size_t why_len)
{
    int rc;
    if ((rc = check_table(&aip__v1__client_message__descriptor, aip_client_fields,
                          aip_n_client_fields, why, why_len)) ||
        (rc = check_table(&aip__v1__server_message__descriptor, aip_server_fields,
                          aip_n_server_fields, why, why_len)) ||
        (rc = check_table(&aip__v1__command__descriptor, aip_command_fields, aip_n_command_fields,
                          why, why_len)))
        return rc;
    return check_table(&aip__v1__result__descriptor, aip_result_fields, aip_n_result_fields, why,
                       why_len);
}

/* ---- peek: type and ids from the first bytes of a frame ----------------------------------- */

static bool peek_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static unsigned field_id(const ProtobufCMessageDescriptor *d, const char *name)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    return f ? f->id : 0;
}

void aip_proto_peek(aip_envelope env, const uint8_t *prefix, size_t len, aip_frame_ids *out)
{
    memset(out, 0, sizeof *out);
    out->type = AIP_MSG_NONE;
    const ProtobufCMessageDescriptor *d = env == AIP_ENVELOPE_SERVER
                                              ? &aip__v1__server_message__descriptor
                                              : &aip__v1__client_message__descriptor;
    /* field numbers from the generated descriptor (0 = not in this envelope) */
    const unsigned f_type = field_id(d, "type"), f_sid = field_id(d, "session_id"),
                   f_req = field_id(d, "request_id"), f_resp = field_id(d, "response_id"),
                   f_prev = field_id(d, "prev_response_id");
    size_t i = 0;
    while (prefix && i < len) {
        uint64_t key, v;
        /* protobuf-c 1.4.1 refuses a key whose first byte has no field bits (tag 0 in one
         * byte) but takes a longer key that still says field 0 (0x80 0x00) as an unknown
         * field: the peek does the same, or it would stop short of what the decoder reads */
        if ((prefix[i] & 0xF8) == 0 || !peek_varint(prefix, len, &i, &key))
            return;
        uint64_t field = key >> 3;
        switch (key & 7) {
        case 0: /* varint */
            if (!peek_varint(prefix, len, &i, &v))
                return;
            if (field == f_type) { /* a repeated field: the last one counts, as in protobuf */
                uint32_t t = (uint32_t)v; /* protobuf-c keeps an enum's low 32 bits */
                out->type =
                    t > 0 && t < AIP_MSG_TYPE_COUNT_ && aip_msg_type_allowed(env, (aip_msg_type)t)
                        ? (aip_msg_type)t
                        : AIP_MSG_NONE;
            }
            break;
        case 1: /* 64-bit */
            if (len - i < 8)
                return;
            i += 8;
            break;
        case 5: /* 32-bit */
            if (len - i < 4)
                return;
            i += 4;
            break;
        case 2: { /* length-delimited */
            if (!peek_varint(prefix, len, &i, &v) || v > len - i)
                return; /* runs past the prefix: nothing after it can be read */
            const char *s = (const char *)prefix + i;
            /* field 0 is no field: an id absent from this envelope is 0 too */
            char *slot = field == 0        ? NULL
                         : field == f_sid  ? out->session_id
                         : field == f_req  ? out->request_id
                         : field == f_resp ? out->response_id
                         : field == f_prev ? out->prev_response_id
                                           : NULL;
            if (slot) {
                slot[0] = 0; /* the last occurrence counts; an unusable one leaves it empty */
                aip_codec_keep_id(slot, s, (size_t)v);
            }
            i += (size_t)v;
            break;
        }
        default: return; /* groups and invalid wire types: stop */
        }
    }
}
