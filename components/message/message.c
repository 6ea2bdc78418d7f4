/* SPDX-License-Identifier: MIT */
/*
 * The AIP message model (see aip/message.h): wire strings, field tables, lifecycle,
 * validation and equality.
 */
#include "aip/common.h"
#include "aip/internal/fields.h"
#include "aip/internal/jscan.h"
#include "aip/message.h"

#include <stdio.h>
#include <string.h>

/* ---- wire strings ------------------------------------------------------------------------- */

static const char *const type_names[AIP_MSG_TYPE_COUNT_] = {
    [AIP_MSG_REGISTER] = "register",
    [AIP_MSG_HEARTBEAT] = "heartbeat",
    [AIP_MSG_TASK] = "task",
    [AIP_MSG_COMMAND] = "command",
    [AIP_MSG_COMMAND_RESULTS] = "command_results",
    [AIP_MSG_TASK_END] = "task_end",
    [AIP_MSG_DEVICE_INFO_REQUEST] = "device_info_request",
    [AIP_MSG_DEVICE_INFO_RESPONSE] = "device_info_response",
    [AIP_MSG_ERROR] = "error",
};
static const char *const status_names[AIP_STATUS_COUNT_] = {
    [AIP_STATUS_CONTINUE] = "continue", [AIP_STATUS_COMPLETED] = "completed",
    [AIP_STATUS_FAILED] = "failed",     [AIP_STATUS_OK] = "ok",
    [AIP_STATUS_ERROR] = "error",
};
static const char *const client_type_names[AIP_CLIENT_TYPE_COUNT_] = {
    [AIP_CLIENT_DEVICE] = "device",
    [AIP_CLIENT_CONSTELLATION] = "constellation",
};
static const char *const tool_type_names[AIP_TOOL_TYPE_COUNT_] = {
    [AIP_TOOL_DATA_COLLECTION] = "data_collection",
    [AIP_TOOL_ACTION] = "action",
};
static const char *const result_status_names[AIP_RESULT_STATUS_COUNT_] = {
    [AIP_RESULT_SUCCESS] = "success",
    [AIP_RESULT_FAILURE] = "failure",
    [AIP_RESULT_SKIPPED] = "skipped",
    [AIP_RESULT_NONE] = "none",
};

static const char *name_of(const char *const *names, int count, int v)
{
    return (v >= 0 && v < count) ? names[v] : NULL;
}

static int parse_name(const char *const *names, int count, const char *s, size_t n, int *out)
{
    if ((!s && n) || !out)
        return AIP_E_INVAL;
    for (int i = 0; i < count; i++) {
        if (names[i] && strlen(names[i]) == n && (n == 0 || memcmp(names[i], s, n) == 0)) {
            *out = i;
            return 0;
        }
    }
    return AIP_E_PROTOCOL;
}

#define ENUM_FUNCS(fn_str, fn_parse, type, names, count)                 \
    const char *fn_str(type v)                                           \
    {                                                                    \
        return name_of(names, count, (int)v);                            \
    }                                                                    \
    int fn_parse(const char *s, size_t n, type *out)                     \
    {                                                                    \
        int v;                                                           \
        int rc = out ? parse_name(names, count, s, n, &v) : AIP_E_INVAL; \
        if (!rc)                                                         \
            *out = (type)v;                                              \
        return rc;                                                       \
    }

ENUM_FUNCS(aip_msg_type_str, aip_msg_type_parse, aip_msg_type, type_names, AIP_MSG_TYPE_COUNT_)
ENUM_FUNCS(aip_status_str, aip_status_parse, aip_status, status_names, AIP_STATUS_COUNT_)
ENUM_FUNCS(aip_client_type_str, aip_client_type_parse, aip_client_type, client_type_names,
           AIP_CLIENT_TYPE_COUNT_)
ENUM_FUNCS(aip_tool_type_str, aip_tool_type_parse, aip_tool_type, tool_type_names,
           AIP_TOOL_TYPE_COUNT_)
ENUM_FUNCS(aip_result_status_str, aip_result_status_parse, aip_result_status, result_status_names,
           AIP_RESULT_STATUS_COUNT_)

const char *aip_envelope_str(aip_envelope e)
{
    return e == AIP_ENVELOPE_SERVER ? "server" : "client";
}

bool aip_msg_type_allowed(aip_envelope env, aip_msg_type t)
{
    switch (t) {
    case AIP_MSG_HEARTBEAT:
    case AIP_MSG_TASK:
    case AIP_MSG_TASK_END:
    case AIP_MSG_DEVICE_INFO_REQUEST:
    case AIP_MSG_DEVICE_INFO_RESPONSE:
    case AIP_MSG_ERROR: return true;
    case AIP_MSG_REGISTER:
    case AIP_MSG_COMMAND_RESULTS: return env == AIP_ENVELOPE_CLIENT;
    case AIP_MSG_COMMAND: return env == AIP_ENVELOPE_SERVER;
    default: return false;
    }
}

/* ---- field tables (UFO declaration order) --------------------------------------------------- */

#define MF(name, kind)                          \
    {                                           \
#name, kind, offsetof(aip_msg, name), 1 \
    }
const aip_field aip_client_fields[] = {
    MF(type, AIP_F_TYPE),     MF(status, AIP_F_STATUS),        MF(client_type, AIP_F_CLIENT_TYPE),
    MF(session_id, AIP_F_ID), MF(task_name, AIP_F_ID),         MF(client_id, AIP_F_ID),
    MF(target_id, AIP_F_ID),  MF(request, AIP_F_TEXT),         MF(action_results, AIP_F_RESULTS),
    MF(timestamp, AIP_F_ID),  MF(request_id, AIP_F_ID),        MF(prev_response_id, AIP_F_ID),
    MF(error, AIP_F_TEXT),    MF(metadata, AIP_F_JSON_OBJECT),
};
const size_t aip_n_client_fields = sizeof aip_client_fields / sizeof aip_client_fields[0];

const aip_field aip_server_fields[] = {
    MF(type, AIP_F_TYPE),        MF(status, AIP_F_STATUS),     MF(user_request, AIP_F_TEXT),
    MF(agent_name, AIP_F_TEXT),  MF(process_name, AIP_F_TEXT), MF(root_name, AIP_F_TEXT),
    MF(actions, AIP_F_COMMANDS), MF(messages, AIP_F_STRINGS),  MF(error, AIP_F_TEXT),
    MF(session_id, AIP_F_ID),    MF(task_name, AIP_F_ID),      MF(timestamp, AIP_F_ID),
    MF(response_id, AIP_F_ID),   MF(result, AIP_F_JSON_ANY),
};
const size_t aip_n_server_fields = sizeof aip_server_fields / sizeof aip_server_fields[0];
#undef MF

const aip_field aip_command_fields[] = {
    {"tool_name", AIP_F_ID, offsetof(aip_command, tool_name), 3},
    {"parameters", AIP_F_JSON_OBJECT, offsetof(aip_command, parameters), 3},
    {"tool_type", AIP_F_TOOL_TYPE, offsetof(aip_command, tool_type), 3},
    {"call_id", AIP_F_ID, offsetof(aip_command, call_id), 3},
};
const size_t aip_n_command_fields = sizeof aip_command_fields / sizeof aip_command_fields[0];

const aip_field aip_result_fields[] = {
    {"status", AIP_F_RESULT_STATUS, offsetof(aip_result, status), 3},
    {"error", AIP_F_TEXT, offsetof(aip_result, error), 3},
    {"result", AIP_F_JSON_ANY, offsetof(aip_result, result), 3},
    {"namespace", AIP_F_ID, offsetof(aip_result, ns), 3},
    {"call_id", AIP_F_ID, offsetof(aip_result, call_id), 3},
};
const size_t aip_n_result_fields = sizeof aip_result_fields / sizeof aip_result_fields[0];

/* ---- lifecycle --------------------------------------------------------------------------------
 */

void aip_msg_init(aip_msg *m, aip_envelope env, aip_msg_type type, aip_status status)
{
    if (!m)
        return;
    memset(m, 0, sizeof *m);
    m->envelope = env;
    m->type = type;
    m->status = status;
}

static void free_strs(void *obj, const aip_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (aip_field_is_str(f[i].kind)) {
            char **p = AIP_FIELD_PTR(obj, &f[i]);
            aip_free(*p);
            *p = NULL;
        }
    }
}

static void command_clear(aip_command *c)
{
    free_strs(c, aip_command_fields, aip_n_command_fields);
    aip_free(c->invalid);
    c->invalid = NULL;
}

static void result_clear(aip_result *r)
{
    free_strs(r, aip_result_fields, aip_n_result_fields);
}

void aip_msg_clear(aip_msg *m)
{
    if (!m)
        return;
    /* Both tables: a misuse that set the other envelope's fields must not leak. */
    free_strs(m, aip_client_fields, aip_n_client_fields);
    free_strs(m, aip_server_fields, aip_n_server_fields);
    for (size_t i = 0; i < m->n_actions; i++)
        command_clear(&m->actions[i]);
    aip_free(m->actions);
    for (size_t i = 0; i < m->n_action_results; i++)
        result_clear(&m->action_results[i]);
    aip_free(m->action_results);
    for (size_t i = 0; i < m->n_messages; i++)
        aip_free(m->messages[i]);
    aip_free(m->messages);
    memset(m, 0, sizeof *m);
}

static int dup_field(char **dst, const char *src)
{
    *dst = NULL;
    if (src && !(*dst = aip_strdup(src)))
        return AIP_E_NOMEM;
    return 0;
}

/* Copies the string fields of one table into dst, whose string fields start NULL. A field in
 * both envelope tables (session_id, error, ...) is copied once: the second pass finds it set. */
static int copy_strs(void *dst, const void *src, const aip_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!aip_field_is_str(f[i].kind) || *AIP_FIELD_PTR(dst, &f[i]))
            continue;
        if (dup_field(AIP_FIELD_PTR(dst, &f[i]), *AIP_FIELD_CPTR(src, &f[i])))
            return AIP_E_NOMEM;
    }
    return 0;
}

int aip_msg_copy(aip_msg *dst, const aip_msg *src)
{
    if (!dst || !src)
        return AIP_E_INVAL;
    memcpy(dst, src, sizeof *dst);
    /* Null every owned pointer first so a failure half-way can be cleared safely. */
    for (size_t i = 0; i < aip_n_client_fields; i++)
        if (aip_field_is_str(aip_client_fields[i].kind))
            *AIP_FIELD_PTR(dst, &aip_client_fields[i]) = NULL;
    for (size_t i = 0; i < aip_n_server_fields; i++)
        if (aip_field_is_str(aip_server_fields[i].kind))
            *AIP_FIELD_PTR(dst, &aip_server_fields[i]) = NULL;
    dst->actions = NULL;
    dst->action_results = NULL;
    dst->messages = NULL;
    dst->n_actions = dst->n_action_results = dst->n_messages = 0;

    if (copy_strs(dst, src, aip_client_fields, aip_n_client_fields) ||
        copy_strs(dst, src, aip_server_fields, aip_n_server_fields))
        goto nomem;
    if (src->n_actions) {
        if (!(dst->actions = aip_calloc(src->n_actions, sizeof *dst->actions)))
            goto nomem;
        for (size_t i = 0; i < src->n_actions; i++) {
            dst->n_actions++;
            dst->actions[i].tool_type = src->actions[i].tool_type;
            if (copy_strs(&dst->actions[i], &src->actions[i], aip_command_fields,
                          aip_n_command_fields) ||
                dup_field(&dst->actions[i].invalid, src->actions[i].invalid))
                goto nomem;
        }
    }
    if (src->n_action_results) {
        if (!(dst->action_results = aip_calloc(src->n_action_results, sizeof(aip_result))))
            goto nomem;
        for (size_t i = 0; i < src->n_action_results; i++) {
            dst->n_action_results++;
            dst->action_results[i].status = src->action_results[i].status;
            if (copy_strs(&dst->action_results[i], &src->action_results[i], aip_result_fields,
                          aip_n_result_fields))
                goto nomem;
        }
    }
    if (src->n_messages) {
        if (!(dst->messages = aip_calloc(src->n_messages, sizeof(char *))))
            goto nomem;
        for (size_t i = 0; i < src->n_messages; i++) {
            dst->n_messages++;
            if (dup_field(&dst->messages[i], src->messages[i]))
                goto nomem;
        }
    }
    return 0;
nomem:
    aip_msg_clear(dst);
    return AIP_E_NOMEM;
}

int aip_msg_set_str(char **field, const char *value)
{
    if (!field)
        return AIP_E_INVAL;
    char *c = NULL;
    if (value) {
        size_t n = strlen(value);
        if (!aip_utf8_valid(value, n, NULL))
            return AIP_E_INVAL;
        if (!(c = aip_strndup(value, n)))
            return AIP_E_NOMEM;
    }
    aip_free(*field);
    *field = c;
    return 0;
}

int aip_json_text_check(const char *text, size_t len, aip_json_kind kind, unsigned max_depth,
                        size_t max_values, char *why, size_t why_len)
{
    aip_jscan s = {0};
    s.max_depth = max_depth;
    s.max_values = max_values;
    int rc = aip_jscan_run(&s, text, len);
    if (rc) {
        if (why_len)
            snprintf(why, why_len, "%s", s.why);
        return rc;
    }
    if (kind == AIP_JSON_OBJECT && s.root != '{') {
        if (why_len)
            snprintf(why, why_len, "not a JSON object");
        return AIP_E_MALFORMED;
    }
    return 0;
}

int aip_msg_set_json(char **field, const char *json_text, aip_json_kind kind)
{
    if (!field)
        return AIP_E_INVAL;
    char *c = NULL;
    if (json_text) {
        size_t n = strlen(json_text);
        aip_jscan s = {0};
        if (aip_jscan_run(&s, json_text, n))
            return AIP_E_MALFORMED;
        if (s.root == 'n') {
            /* "null" is the same as unset */
        } else if (kind == AIP_JSON_OBJECT && s.root != '{') {
            return AIP_E_MALFORMED;
        } else {
            aip_json_trim(&json_text, &n); /* canonical: what the decoders keep */
            if (!(c = aip_strndup(json_text, n)))
                return AIP_E_NOMEM;
        }
    }
    aip_free(*field);
    *field = c;
    return 0;
}

/* Lists grow one element at a time: batches are short, and an exact-size array is what the
 * decoders build too, so no hidden capacity invariant can be broken by mixing the two. */
static void *grow(void *arr, size_t n, size_t elem)
{
    return aip_realloc(arr, n * elem, (n + 1) * elem);
}

aip_command *aip_msg_add_command(aip_msg *m)
{
    if (!m)
        return NULL;
    aip_command *a = grow(m->actions, m->n_actions, sizeof *a);
    if (!a)
        return NULL;
    m->actions = a;
    m->has_actions = true;
    memset(&a[m->n_actions], 0, sizeof *a);
    return &a[m->n_actions++];
}

aip_result *aip_msg_add_result(aip_msg *m)
{
    if (!m)
        return NULL;
    aip_result *r = grow(m->action_results, m->n_action_results, sizeof *r);
    if (!r)
        return NULL;
    m->action_results = r;
    m->has_action_results = true;
    memset(&r[m->n_action_results], 0, sizeof *r);
    return &r[m->n_action_results++];
}

int aip_msg_add_message(aip_msg *m, const char *s)
{
    if (!m)
        return AIP_E_INVAL;
    char **a = grow(m->messages, m->n_messages, sizeof *a);
    if (!a)
        return AIP_E_NOMEM;
    m->messages = a;
    m->has_messages = true;
    a[m->n_messages] = NULL;
    int rc = aip_msg_set_str(&a[m->n_messages], s ? s : "");
    if (rc)
        return rc;
    m->n_messages++;
    return 0;
}

/* ---- validation ---------------------------------------------------------------------------- */

#define WHY(...) \
    (why && why_len ? (void)snprintf(why, why_len, __VA_ARGS__) : (void)0, AIP_E_PROTOCOL)

static int check_str(const char *what, const char *s, aip_field_kind kind, unsigned at, char *why,
                     size_t why_len)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (kind == AIP_F_JSON_OBJECT || kind == AIP_F_JSON_ANY) {
        char r[160];
        if (aip_json_text_check(s, n, kind == AIP_F_JSON_OBJECT ? AIP_JSON_OBJECT : AIP_JSON_ANY,
                                AIP_JSON_MAX_DEPTH - at, 0, r, sizeof r))
            return WHY("field \"%s\" is not valid JSON: %s", what, r);
        return 0;
    }
    if (!aip_utf8_valid(s, n, NULL))
        return WHY("field \"%s\" is not valid UTF-8", what);
    if (kind == AIP_F_ID && n > AIP_ID_MAX)
        return WHY("field \"%s\" is longer than %d bytes", what, AIP_ID_MAX);
    return 0;
}

static int check_strs(const void *obj, const aip_field *f, size_t n, char *why, size_t why_len)
{
    for (size_t i = 0; i < n; i++) {
        if (!aip_field_is_str(f[i].kind))
            continue;
        int rc =
            check_str(f[i].name, *AIP_FIELD_CPTR(obj, &f[i]), f[i].kind, f[i].at, why, why_len);
        if (rc)
            return rc;
    }
    return 0;
}

static bool in_table(const aip_field *f, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].off == off)
            return true;
    return false;
}

int aip_msg_validate(const aip_msg *m, char *why, size_t why_len)
{
    if (!m) {
        if (why && why_len)
            snprintf(why, why_len, "no message");
        return AIP_E_INVAL;
    }
    if (m->envelope != AIP_ENVELOPE_CLIENT && m->envelope != AIP_ENVELOPE_SERVER)
        return WHY("invalid envelope");
    const char *env = aip_envelope_str(m->envelope);
    if (!aip_msg_type_str(m->type))
        return WHY("missing required field \"type\"");
    if (!aip_msg_type_allowed(m->envelope, m->type))
        return WHY("message type \"%s\" is not valid in a %s message", aip_msg_type_str(m->type),
                   env);
    if (!aip_status_str(m->status))
        return WHY("missing required field \"status\"");
    if (!aip_client_type_str(m->client_type))
        return WHY("invalid client_type");

    size_t n_own, n_other;
    const aip_field *own = aip_envelope_fields(m->envelope, &n_own);
    const aip_field *other = aip_envelope_fields(
        m->envelope == AIP_ENVELOPE_CLIENT ? AIP_ENVELOPE_SERVER : AIP_ENVELOPE_CLIENT, &n_other);
    for (size_t i = 0; i < n_other; i++) {
        const aip_field *f = &other[i];
        bool set;
        switch (f->kind) {
        case AIP_F_RESULTS: set = m->has_action_results || m->n_action_results; break;
        case AIP_F_COMMANDS: set = m->has_actions || m->n_actions; break;
        case AIP_F_STRINGS: set = m->has_messages || m->n_messages; break;
        default: /* enums: type and status are in both, client_type has a default */
            set = aip_field_is_str(f->kind) && *AIP_FIELD_CPTR(m, f) != NULL;
        }
        /* most of the other envelope's fields are unset: the table look only for those set */
        if (set && !in_table(own, n_own, f->off))
            return WHY("field \"%s\" does not belong in a %s message", f->name, env);
    }
    int rc = check_strs(m, own, n_own, why, why_len);
    if (rc)
        return rc;

    if ((m->n_actions && !m->actions) || (m->n_action_results && !m->action_results) ||
        (m->n_messages && !m->messages))
        return WHY("list count set without a list");
    for (size_t i = 0; i < m->n_actions; i++) {
        const aip_command *c = &m->actions[i];
        if (c->invalid)
            return WHY("action %zu is invalid: %s", i, c->invalid);
        if (!c->tool_name)
            return WHY("action %zu: missing required field \"tool_name\"", i);
        if (!aip_tool_type_str(c->tool_type))
            return WHY("action %zu: missing required field \"tool_type\"", i);
        if ((rc = check_strs(c, aip_command_fields, aip_n_command_fields, why, why_len)))
            return rc;
    }
    for (size_t i = 0; i < m->n_action_results; i++) {
        const aip_result *r = &m->action_results[i];
        if (!aip_result_status_str(r->status))
            return WHY("result %zu: missing required field \"status\"", i);
        if ((rc = check_strs(r, aip_result_fields, aip_n_result_fields, why, why_len)))
            return rc;
    }
    for (size_t i = 0; i < m->n_messages; i++) {
        if (!m->messages[i])
            return WHY("messages[%zu] is null", i);
        if ((rc = check_str("messages", m->messages[i], AIP_F_TEXT, 1, why, why_len)))
            return rc;
    }
    return 0;
}

/* ---- equality ---------------------------------------------------------------------------------
 */

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool strs_eq(const void *a, const void *b, const aip_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (aip_field_is_str(f[i].kind) &&
            !str_eq(*AIP_FIELD_CPTR(a, &f[i]), *AIP_FIELD_CPTR(b, &f[i])))
            return false;
    return true;
}

bool aip_msg_equal(const aip_msg *a, const aip_msg *b)
{
    if (!a || !b)
        return a == b;
    if (a->envelope != b->envelope || a->type != b->type || a->status != b->status)
        return false;
    if (a->envelope == AIP_ENVELOPE_CLIENT && a->client_type != b->client_type)
        return false;
    size_t n;
    const aip_field *f = aip_envelope_fields(a->envelope, &n);
    if (!strs_eq(a, b, f, n))
        return false;
    if (a->has_actions != b->has_actions || a->n_actions != b->n_actions ||
        a->has_action_results != b->has_action_results ||
        a->n_action_results != b->n_action_results || a->has_messages != b->has_messages ||
        a->n_messages != b->n_messages)
        return false;
    for (size_t i = 0; i < a->n_actions; i++) {
        const aip_command *x = &a->actions[i], *y = &b->actions[i];
        if (x->tool_type != y->tool_type || !str_eq(x->invalid, y->invalid) ||
            !strs_eq(x, y, aip_command_fields, aip_n_command_fields))
            return false;
    }
    for (size_t i = 0; i < a->n_action_results; i++) {
        const aip_result *x = &a->action_results[i], *y = &b->action_results[i];
        if (x->status != y->status || !strs_eq(x, y, aip_result_fields, aip_n_result_fields))
            return false;
    }
    for (size_t i = 0; i < a->n_messages; i++)
        if (!str_eq(a->messages[i], b->messages[i]))
            return false;
    return true;
}
