/* SPDX-License-Identifier: MIT */
/*
 * The MCP host (see aip/mcp.h): configuration, and the parts of MCP both transports share (the
 * handshake's checks, tool lists, JSON-RPC messages: mcp_dispatch for every incoming one). The
 * tool function the executor runs for every MCP tool is in mcp_call.c.
 *
 * Design
 * - One mcp_server per configured server, one thread each (mcp_stdio_main / mcp_http_main):
 *   it starts the server, runs the handshake (initialize, notifications/initialized,
 *   tools/list with every page), installs the tools in the executor as provider 1 + index
 *   (aip_executor_set_tools, all or nothing), and then serves: stdio reads the child's output,
 *   HTTP waits for a refresh or a recheck. A bad handshake, a bad tool list, a crash, garbage
 *   on stdout or a message over AIP_MCP_MAX_MESSAGE take the server DOWN: its tools are
 *   removed, calls in flight fail at once with the reason, and it is started again after a
 *   backoff (mcp_backoff_ns). So a server never blocks another one or the agent: each has its
 *   own thread, and every wait is bounded by the server's timeout.
 * - A tool call runs on the executor worker of its action (mcp_tool_call, mcp_call.c: see its
 *   note) and waits for its answer there, never on a server thread.
 * - Lifetimes: the servers live from create to destroy; tools in the executor point at their
 *   server (user data), and the host is stopped (tools removed, calls failed) before the
 *   executor and destroyed after it, so a running call never outlives its server.
 * - Locks: s->lock guards a server's state, pending requests and outbound queue; it is never
 *   held across I/O, a wait on another lock, or a call into the executor.
 */
#include "aip/codec.h"
#include "aip/mcp.h"
#include "mcp_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 60000u
#define BACKOFF_BASE_NS    250000000ull
#define BACKOFF_CAP_NS     30000000000ull
#define STABLE_NS          30000000000ull
#define MAX_PAGES          64

static const char *const accepted_versions[] = {AIP_MCP_PROTOCOL_VERSION, "2025-03-26",
                                                "2024-11-05", NULL};

/* ---- small helpers ------------------------------------------------------------------------- */

void mcp_set_why(mcp_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

cJSON *mcp_parse(const char *text, size_t len, char *why, size_t why_len)
{
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = AIP_MCP_MAX_MESSAGE;
    char vwhy[160] = "";
    if (aip_json_validate(text, len, AIP_JSON_OBJECT, &lim, vwhy, sizeof vwhy)) {
        snprintf(why, why_len, "not a JSON-RPC message: %s", vwhy);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j)
        snprintf(why, why_len, "out of memory parsing a message");
    return j;
}

char *mcp_print_compact(cJSON *j)
{
    char *t = cJSON_PrintUnformatted(j);
    char *copy = t ? aip_strdup(t) : NULL;
    cJSON_free(t);
    return copy;
}

char *mcp_request_text(int64_t id, const char *method, const cJSON *params)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    if (id >= 0)
        cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "method", method);
    if (params)
        cJSON_AddItemToObject(o, "params", cJSON_Duplicate(params, 1));
    char *t = mcp_print_compact(o);
    cJSON_Delete(o);
    return t;
}

int mcp_classify(const cJSON *msg)
{
    if (!cJSON_IsObject(msg))
        return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "2.0") != 0)
        return 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    bool id_ok = cJSON_IsNumber(id) || cJSON_IsString(id);
    if (method)
        return !cJSON_IsString(method) ? 0 : id ? (id_ok ? 'q' : 0) : 'n';
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(msg, "result");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(msg, "error");
    if ((res != NULL) == (err != NULL))
        return 0;
    if (err && !cJSON_IsObject(err))
        return 0;
    /* an error answering a request that could not be read has a null id */
    return (id_ok || (err && cJSON_IsNull(id))) ? 'r' : 0;
}

int64_t mcp_response_id(const cJSON *msg)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > 9007199254740991.0 ||
        id->valuedouble != (double)(int64_t)id->valuedouble)
        return -1;
    return (int64_t)id->valuedouble;
}

char *mcp_answer_server_request(const cJSON *msg)
{
    if (mcp_classify(msg) != 'q')
        return NULL;
    const char *method = cJSON_GetObjectItemCaseSensitive(msg, "method")->valuestring;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    cJSON_AddItemToObject(o, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(msg, "id"), 1));
    if (strcmp(method, "ping") == 0) {
        cJSON_AddItemToObject(o, "result", cJSON_CreateObject());
    } else {
        /* sampling/createMessage, elicitation/create, roots/list, ...: we declared none of
         * those capabilities */
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        if (e) {
            cJSON_AddNumberToObject(e, "code", -32601);
            cJSON_AddStringToObject(e, "message", "Method not found");
        }
    }
    char *t = mcp_print_compact(o);
    cJSON_Delete(o);
    return t;
}

void mcp_on_notification(mcp_server *s, const cJSON *msg)
{
    const char *method = cJSON_GetObjectItemCaseSensitive(msg, "method")->valuestring;
    if (strcmp(method, "notifications/tools/list_changed") == 0) {
        aip_mutex_lock(&s->lock);
        s->refresh_wanted = true;
        aip_cond_broadcast(&s->cond);
        aip_mutex_unlock(&s->lock);
        if (s->http)
            mcp_http_wake(s);
        aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] tools/list_changed: refreshing", s->ns);
    }
    /* progress, logging, resources/..., cancelled: nothing to do */
}

int mcp_dispatch(mcp_server *s, const char *text, size_t *n, cJSON **msg, char *why, size_t why_len)
{
    *msg = NULL;
    size_t len = *n;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                   text[len - 1] == '\t'))
        len--;
    *n = len;
    if (!len)
        return 0;
    cJSON *m = mcp_parse(text, len, why, why_len);
    if (!m)
        return -1;
    int kind = mcp_classify(m);
    if (!kind) {
        snprintf(why, why_len, "not a request, response or notification");
        cJSON_Delete(m);
        return -1;
    }
    if (kind == 'n') {
        mcp_on_notification(s, m);
        cJSON_Delete(m);
        return 'n';
    }
    *msg = m;
    return kind;
}

cJSON *mcp_initialize_params(void)
{
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "protocolVersion", AIP_MCP_PROTOCOL_VERSION);
    cJSON_AddObjectToObject(p, "capabilities"); /* no roots, sampling or elicitation */
    cJSON *ci = cJSON_AddObjectToObject(p, "clientInfo");
    if (ci) {
        cJSON_AddStringToObject(ci, "name", "constellation-agent");
        cJSON_AddStringToObject(ci, "version", aip_version());
    }
    return p;
}

/* The "result" of a response, or NULL with why (an error response, or no object). */
static const cJSON *reply_result(mcp_server *s, const cJSON *reply, const char *what)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    if (err) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
        mcp_set_why(s, "%s failed: MCP error %d: %.200s", what, cJSON_IsNumber(c) ? c->valueint : 0,
                    cJSON_IsString(m) ? m->valuestring : "(no message)");
        return NULL;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (!cJSON_IsObject(r)) {
        mcp_set_why(s, "%s: the answer's result is not an object", what);
        return NULL;
    }
    return r;
}

int mcp_check_initialize(mcp_server *s, const cJSON *reply)
{
    const cJSON *r = reply_result(s, reply, "initialize");
    if (!r)
        return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "protocolVersion");
    if (!cJSON_IsString(v)) {
        mcp_set_why(s, "initialize: no protocolVersion in the answer");
        return -1;
    }
    for (size_t i = 0; accepted_versions[i]; i++)
        if (strcmp(v->valuestring, accepted_versions[i]) == 0) {
            snprintf(s->version, sizeof s->version, "%s", accepted_versions[i]);
            return 0;
        }
    mcp_set_why(s, "initialize: protocol version \"%.40s\" is not one we speak (%s, %s, %s)",
                v->valuestring, accepted_versions[0], accepted_versions[1], accepted_versions[2]);
    return -1;
}

int mcp_collect_tools(mcp_server *s, const cJSON *reply, cJSON **acc, char **cursor)
{
    *cursor = NULL;
    const cJSON *r = reply_result(s, reply, "tools/list");
    if (!r)
        return -1;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r, "tools");
    if (!cJSON_IsArray(tools)) {
        mcp_set_why(s, "tools/list: no \"tools\" list in the answer");
        return -1;
    }
    if (!*acc && !(*acc = cJSON_CreateArray())) {
        mcp_set_why(s, "out of memory");
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        if (cJSON_GetArraySize(*acc) >= AIP_MCP_MAX_TOOLS) {
            mcp_set_why(s, "tools/list: more than %d tools", AIP_MCP_MAX_TOOLS);
            return -1;
        }
        cJSON_AddItemToArray(*acc, cJSON_Duplicate(t, 1));
    }
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(r, "nextCursor");
    if (cJSON_IsString(next) && next->valuestring[0] &&
        !(*cursor = aip_strdup(next->valuestring))) {
        mcp_set_why(s, "out of memory");
        return -1;
    }
    return 0;
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len < 1 || len > AIP_MCP_MAX_NAME)
        return false;
    for (const char *p = n; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* A member that must be absent/null or of the given kind: its printed text (aip_malloc'd) or
 * NULL. *bad set when it is of another kind. */
static char *opt_object_text(const cJSON *t, const char *key, bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, key);
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (!cJSON_IsObject(v)) {
        *bad = true;
        return NULL;
    }
    return mcp_print_compact((cJSON *)v);
}

static const char *opt_string(const cJSON *t, const char *key, bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, key);
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (!cJSON_IsString(v)) {
        *bad = true;
        return NULL;
    }
    return v->valuestring;
}

int mcp_install_tools(mcp_server *s, const cJSON *tools)
{
    size_t n = (size_t)cJSON_GetArraySize(tools);
    aip_tool_def *defs = aip_calloc(n + 1, sizeof *defs);
    aip_tool_info *infos = aip_calloc(n + 1, sizeof *infos);
    int rc = 0;
    if (!defs || !infos) {
        mcp_set_why(s, "out of memory");
        rc = -1;
    }
    size_t i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        if (rc || i >= n)
            break;
        bool bad = false;
        const char *name = cJSON_IsObject(t) ? opt_string(t, "name", &bad) : NULL;
        if (!name || bad || !name_ok(name)) {
            mcp_set_why(s,
                        "tools/list: tool %zu has no valid name (1-%d of A-Z a-z 0-9 _ - .)%s%.60s",
                        i, AIP_MCP_MAX_NAME, name ? ": " : "", name ? name : "");
            rc = -1;
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(defs[j].name, name) == 0) {
                mcp_set_why(s, "tools/list: tool \"%s\" is listed twice", name);
                rc = -1;
            }
        if (rc)
            break;
        const char *desc = opt_string(t, "description", &bad);
        const char *title = opt_string(t, "title", &bad);
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(t, "inputSchema");
        if (bad || !cJSON_IsObject(in)) {
            mcp_set_why(s, "tools/list: tool \"%s\": %s", name,
                        bad ? "title or description is not a string"
                            : "inputSchema is not an object");
            rc = -1;
            break;
        }
        defs[i] = (aip_tool_def){name, s->tool_type, mcp_tool_call, s, desc};
        infos[i].size = sizeof infos[i];
        infos[i].tool_namespace = s->ns;
        infos[i].title = title;
        infos[i].input_schema = mcp_print_compact((cJSON *)in);
        infos[i].output_schema = opt_object_text(t, "outputSchema", &bad);
        infos[i].annotations = opt_object_text(t, "annotations", &bad);
        infos[i].meta = opt_object_text(t, "_meta", &bad);
        i++;
        if (bad) {
            mcp_set_why(
                s, "tools/list: tool \"%s\": outputSchema, annotations or _meta is not an object",
                name);
            rc = -1;
        }
    }
    if (!rc) {
        int erc = aip_executor_set_tools(s->host->exec, s->provider, defs, infos, n);
        if (erc) {
            mcp_set_why(s, "tools/list: the executor refused the list: %s%s", aip_strerror(erc),
                        erc == AIP_E_INVAL ? " (a schema over the nesting limit, or text not UTF-8)"
                                           : "");
            rc = -1;
        } else {
            aip_mutex_lock(&s->lock);
            s->n_tools = (unsigned)n;
            aip_mutex_unlock(&s->lock);
        }
    }
    for (size_t k = 0; infos && k < i; k++) {
        aip_free((char *)infos[k].input_schema);
        aip_free((char *)infos[k].output_schema);
        aip_free((char *)infos[k].annotations);
        aip_free((char *)infos[k].meta);
    }
    aip_free(defs);
    aip_free(infos);
    return rc;
}

void mcp_remove_tools(mcp_server *s)
{
    int rc = aip_executor_set_tools(s->host->exec, s->provider, NULL, NULL, 0);
    if (rc && rc != AIP_E_SHUTDOWN)
        aip_log(AIP_LOG_ERROR, MCP_LOG, "[%s] cannot remove its tools: %s", s->ns,
                aip_strerror(rc));
    aip_mutex_lock(&s->lock);
    s->n_tools = 0;
    aip_mutex_unlock(&s->lock);
}

void mcp_hide_tools(mcp_server *s)
{
    aip_executor_hide_tools(s->host->exec, s->provider, true);
}

uint64_t mcp_backoff_ns(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    if (s->ready_since_ns && aip_now_ns(NULL) - s->ready_since_ns >= STABLE_NS)
        s->failures = 0; /* it ran well for a while: this is a fresh failure */
    unsigned f = s->failures < 20 ? s->failures : 20;
    s->failures++;
    s->ready_since_ns = 0;
    aip_mutex_unlock(&s->lock);
    uint64_t d = BACKOFF_BASE_NS << f;
    if (d > BACKOFF_CAP_NS)
        d = BACKOFF_CAP_NS;
    return d / 2 + aip_random_below(NULL, d / 2 + 1);
}

/* ---- pending requests ---------------------------------------------------------------------- */

mcp_pending *mcp_pending_add_locked(mcp_server *s)
{
    mcp_pending *p = aip_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (aip_cond_init(&p->cond)) {
        aip_free(p);
        return NULL;
    }
    p->id = s->next_id++;
    p->next = s->pending;
    s->pending = p;
    return p;
}

void mcp_pending_remove_locked(mcp_server *s, mcp_pending *p)
{
    for (mcp_pending **pp = &s->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            p->next = NULL;
            return;
        }
}

mcp_pending *mcp_pending_find_locked(mcp_server *s, int64_t id)
{
    for (mcp_pending *p = s->pending; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

void mcp_pending_free(mcp_pending *p)
{
    if (!p)
        return;
    cJSON_Delete(p->reply);
    aip_cond_destroy(&p->cond);
    aip_free(p);
}

void mcp_fail_pending_locked(mcp_server *s, const char *why)
{
    for (mcp_pending *p = s->pending; p; p = p->next)
        if (!p->done) {
            p->done = true;
            snprintf(p->error, sizeof p->error, "%s", why);
            aip_cond_broadcast(&p->cond);
        }
}

void mcp_first_attempt_done(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    bool first = !s->first_done;
    s->first_done = true;
    aip_mutex_unlock(&s->lock);
    if (!first)
        return;
    aip_mcp_host *h = s->host;
    aip_mutex_lock(&h->lock);
    h->started_count++;
    aip_cond_broadcast(&h->started);
    aip_mutex_unlock(&h->lock);
}

bool mcp_wait_until(mcp_server *s, uint64_t deadline_ns)
{
    aip_mutex_lock(&s->lock);
    while (!atomic_load(&s->stopping) && aip_now_ns(NULL) < deadline_ns)
        aip_cond_wait_until(&s->cond, &s->lock, deadline_ns);
    bool stop = atomic_load(&s->stopping);
    aip_mutex_unlock(&s->lock);
    return stop;
}

/* ---- the host -------------------------------------------------------------------------------- */

static bool text_ok(const char *v, bool allow_empty)
{
    return v && (allow_empty || v[0]) && !strpbrk(v, "\r\n");
}

static char **strv_copy(const char *const *v, size_t n)
{
    char **out = aip_calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = aip_strdup(v[i]))) {
            for (size_t j = 0; j < i; j++)
                aip_free(out[j]);
            aip_free(out);
            return NULL;
        }
    return out;
}

static void strv_free(char **v, bool secret)
{
    for (size_t i = 0; v && v[i]; i++) {
        if (secret)
            explicit_bzero(v[i], strlen(v[i]));
        aip_free(v[i]);
    }
    aip_free(v);
}

static char *kv_join(const char *k, const char *sep, const char *v)
{
    size_t n = strlen(k) + strlen(sep) + strlen(v) + 1;
    char *out = aip_malloc(n);
    if (out)
        snprintf(out, n, "%s%s%s", k, sep, v);
    return out;
}

/* The child's environment: PATH and LANG, then the configured entries (which may replace them). */
static char **make_envp(const aip_mcp_server_config *c)
{
    const char *base[][2] = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"LANG", "C.UTF-8"}};
    char **out = aip_calloc(c->n_env + 3, sizeof *out);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < 2; i++) {
        bool replaced = false;
        for (size_t j = 0; j < c->n_env && !replaced; j++)
            replaced = strcmp(c->env[j].name, base[i][0]) == 0;
        if (!replaced && !(out[n++] = kv_join(base[i][0], "=", base[i][1])))
            goto fail;
    }
    for (size_t j = 0; j < c->n_env; j++)
        if (!(out[n++] = kv_join(c->env[j].name, "=", c->env[j].value)))
            goto fail;
    return out;
fail:
    strv_free(out, true);
    return NULL;
}

static bool env_name_ok(const char *n)
{
    if (!n || !n[0] || (n[0] >= '0' && n[0] <= '9'))
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

static bool header_name_ok(const char *n)
{
    if (!n || !n[0])
        return false;
    for (const char *p = n; *p; p++)
        if (*p <= ' ' || *p >= 127 || strchr("()<>@,;:\\\"/[]?={}", *p))
            return false;
    return true;
}

static int check_config(const aip_mcp_server_config *c)
{
    if (!c->tool_namespace || !c->tool_namespace[0] || strlen(c->tool_namespace) > 128 ||
        (c->tool_type != AIP_TOOL_ACTION && c->tool_type != AIP_TOOL_DATA_COLLECTION))
        return AIP_E_INVAL;
    bool has_cmd = c->argc > 0, has_url = c->url != NULL;
    if (has_cmd == has_url || (has_cmd && !c->argv))
        return AIP_E_INVAL;
    for (size_t i = 0; i < c->argc; i++)
        if (!c->argv[i] || (i == 0 && !c->argv[0][0]))
            return AIP_E_INVAL;
    if (has_url && strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0)
        return AIP_E_INVAL;
    if ((c->n_env && (!c->env || has_url)) || (c->n_headers && (!c->headers || has_cmd)))
        return AIP_E_INVAL;
    for (size_t i = 0; i < c->n_env; i++)
        if (!env_name_ok(c->env[i].name) || !c->env[i].value)
            return AIP_E_INVAL;
    for (size_t i = 0; i < c->n_headers; i++)
        if (!header_name_ok(c->headers[i].name) || !text_ok(c->headers[i].value, true))
            return AIP_E_INVAL;
    return 0;
}

static void server_free(mcp_server *s)
{
    if (!s)
        return;
    if (s->http)
        mcp_http_server_free(s);
    mcp_fail_pending_locked(s, "the agent is stopping");
    aip_free(s->ns);
    strv_free(s->argv, false);
    strv_free(s->envp, true);
    aip_free(s->url);
    strv_free(s->headers, true);
    aip_free(s->session_id);
    aip_buf_free(&s->outq);
    aip_buf_free(&s->line);
    aip_buf_free(&s->errline);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    aip_mutex_destroy(&s->session_lock);
    aip_cond_destroy(&s->cond);
    aip_mutex_destroy(&s->lock);
    aip_free(s);
}

static int server_new(aip_mcp_host *h, const aip_mcp_server_config *c, unsigned index,
                      mcp_server **out)
{
    mcp_server *s = aip_calloc(1, sizeof *s);
    if (!s)
        return AIP_E_NOMEM;
    s->pid = -1;
    s->pidfd = s->in_fd = s->out_fd = s->err_fd = s->wake_fd = -1;
    if (aip_mutex_init(&s->lock)) {
        aip_free(s);
        return AIP_E_NOMEM;
    }
    if (aip_cond_init(&s->cond)) {
        aip_mutex_destroy(&s->lock);
        aip_free(s);
        return AIP_E_NOMEM;
    }
    if (aip_mutex_init(&s->session_lock)) {
        aip_cond_destroy(&s->cond);
        aip_mutex_destroy(&s->lock);
        aip_free(s);
        return AIP_E_NOMEM;
    }
    aip_buf_init(&s->outq, 0);
    aip_buf_init(&s->line, 0);
    aip_buf_init(&s->errline, 0);
    atomic_init(&s->stopping, 0);
    s->host = h;
    s->provider = index + 1;
    s->tool_type = c->tool_type;
    s->timeout_ms = c->timeout_ms ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->http = c->url != NULL;
    s->next_id = 1;
    snprintf(s->why, sizeof s->why, "not started yet");
    int rc = (s->ns = aip_strdup(c->tool_namespace)) ? 0 : AIP_E_NOMEM;
    if (!rc && s->http) {
        s->url = aip_strdup(c->url);
        s->headers = aip_calloc(c->n_headers + 1, sizeof *s->headers);
        if (!s->url || !s->headers)
            rc = AIP_E_NOMEM;
        for (size_t i = 0; !rc && i < c->n_headers; i++)
            if (!(s->headers[i] = kv_join(c->headers[i].name, ": ", c->headers[i].value)))
                rc = AIP_E_NOMEM;
        if (!rc)
            rc = mcp_http_server_init(s);
    } else if (!rc) {
        s->argv = strv_copy(c->argv, c->argc);
        s->envp = make_envp(c);
        if (!s->argv || !s->envp)
            rc = AIP_E_NOMEM;
        else if ((s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            rc = AIP_E_IO;
    }
    if (rc) {
        server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int aip_mcp_host_create(aip_executor *e, const aip_mcp_server_config *servers, size_t n,
                        aip_mcp_host **out)
{
    if (!out)
        return AIP_E_INVAL;
    *out = NULL;
    if (!e || (n && !servers) || n > AIP_MCP_MAX_SERVERS)
        return AIP_E_INVAL;
    bool any_http = false;
    for (size_t i = 0; i < n; i++) {
        int rc = check_config(&servers[i]);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (servers[j].tool_type == servers[i].tool_type &&
                strcmp(servers[j].tool_namespace, servers[i].tool_namespace) == 0)
                return AIP_E_INVAL;
        any_http |= servers[i].url != NULL;
    }
    if (any_http && mcp_http_global_init())
        return AIP_E_UNSUPPORTED;
    aip_mcp_host *h = aip_calloc(1, sizeof *h);
    if (!h)
        return AIP_E_NOMEM;
    h->exec = e;
    if (aip_mutex_init(&h->lock)) {
        aip_free(h);
        return AIP_E_NOMEM;
    }
    if (aip_cond_init(&h->started)) {
        aip_mutex_destroy(&h->lock);
        aip_free(h);
        return AIP_E_NOMEM;
    }
    int rc = 0;
    if (!(h->servers = aip_calloc(n + 1, sizeof *h->servers)))
        rc = AIP_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = server_new(h, &servers[i], (unsigned)i, &h->servers[i]);
        if (!rc)
            h->n = i + 1;
    }
    for (size_t i = 0; !rc && i < h->n; i++) {
        mcp_server *s = h->servers[i];
        char name[32];
        snprintf(name, sizeof name, "aip-mcp-%u", (unsigned)i % 100u);
        rc = aip_thread_start(&s->thread, name, s->http ? mcp_http_main : mcp_stdio_main, s);
        s->thread_started = rc == 0;
    }
    if (rc) {
        aip_mcp_host_destroy(h);
        return rc;
    }
    *out = h;
    return 0;
}

size_t aip_mcp_host_wait_started(aip_mcp_host *h, uint32_t timeout_ms)
{
    if (!h)
        return 0;
    uint64_t until = aip_now_ns(NULL) + (uint64_t)timeout_ms * 1000000u;
    aip_mutex_lock(&h->lock);
    while (h->started_count < h->n && aip_now_ns(NULL) < until)
        aip_cond_wait_until(&h->started, &h->lock, until);
    aip_mutex_unlock(&h->lock);
    size_t ready = 0;
    for (size_t i = 0; i < h->n; i++) {
        aip_mutex_lock(&h->servers[i]->lock);
        ready += h->servers[i]->state == MCP_READY;
        aip_mutex_unlock(&h->servers[i]->lock);
    }
    return ready;
}

void aip_mcp_host_stop(aip_mcp_host *h)
{
    if (!h || h->stopped)
        return;
    h->stopped = true;
    for (size_t i = 0; h->servers && i < h->n; i++) {
        mcp_server *s = h->servers[i];
        aip_mutex_lock(&s->lock);
        atomic_store(&s->stopping, 1);
        mcp_fail_pending_locked(s, "the agent is stopping");
        aip_cond_broadcast(&s->cond);
        aip_mutex_unlock(&s->lock);
        if (s->http)
            mcp_http_wake(s);
        else
            mcp_stdio_wake(s);
    }
    /* every thread ends its own server at once (in parallel), then it is joined */
    for (size_t i = 0; h->servers && i < h->n; i++) {
        mcp_server *s = h->servers[i];
        if (s->thread_started)
            aip_thread_join(&s->thread);
        s->thread_started = false;
        mcp_remove_tools(s);
    }
}

void aip_mcp_host_destroy(aip_mcp_host *h)
{
    if (!h)
        return;
    aip_mcp_host_stop(h);
    for (size_t i = 0; h->servers && i < h->n; i++)
        server_free(h->servers[i]);
    aip_free(h->servers);
    aip_cond_destroy(&h->started);
    aip_mutex_destroy(&h->lock);
    aip_free(h);
}
