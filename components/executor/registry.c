/* SPDX-License-Identifier: MIT */
/*
 * The executor's tool registry (see aip/executor.h): registering tools (permanent ones, the
 * built-ins, and the sets of providers such as MCP servers), resolving an action's tool, and
 * the lists a device shows (features_json; list_tools reads the same entries in builtins.c).
 * The queue, the workers and the batch semantics are in executor.c; its design note says which
 * thread does what and under which lock.
 *
 * The registry
 * - `tools` is an array of pointers to entries, in registration order. Each entry is
 *   immutable once inserted and carries `refs`, counted under `lock`: one reference for being
 *   in the array, one for every call running it (exec_tool_lookup takes it,
 *   exec_tool_release drops it).
 *   An entry leaves the array only under `lock` (aip_executor_set_tools replacing its
 *   provider's set, or executor.c's executor_free); whoever drops the last reference frees it,
 * outside the lock. So a call never sees its strings or user data freed while it runs, and a
 * refresh frees the old set as soon as the last call using it returns: memory stays bounded by the
 *   live sets plus the entries of calls in flight, however many refreshes happen.
 * - Entries of providers (aip_executor_set_tools: MCP servers) and permanent ones
 *   (aip_executor_register: built-ins, embedders' tools; provider 0) may share a key. The key
 *   resolves to the entry of the lowest-numbered provider, else the permanent one, else a
 *   hidden one (aip_executor_hide_tools: a provider that is down keeps its set, unlisted, so
 *   a call still reaches its tool and fails with the provider's reason); the others stay in
 *   the array, shadowed, and come back when the winner's set is replaced without it. Lookups
 *   see only the winners; list_tools and features_json never show a hidden entry.
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/executor.h"
#include "aip/internal/jscan.h"
#include "executor_internal.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

/* ---- entries and lookup ------------------------------------------------------------------ */

/* A key's winner ranks first: providers by number, then the permanent entries (provider 0),
 * then hidden ones. */
static unsigned tool_rank(const exec_tool *t)
{
    return t->hidden ? UINT_MAX : t->provider ? t->provider : UINT_MAX - 1;
}

bool exec_tool_visible(const aip_executor *e, size_t i)
{
    const exec_tool *t = e->tools[i];
    if (t->hidden)
        return false;
    for (size_t j = 0; j < e->n_tools; j++) {
        const exec_tool *o = e->tools[j];
        if (j != i && o->type == t->type && tool_rank(o) < tool_rank(t) &&
            strcmp(o->name, t->name) == 0)
            return false;
    }
    return true;
}

/* Drops one reference; the last one frees the entry (outside the lock). */
void exec_tool_release(aip_executor *e, exec_tool *t)
{
    aip_mutex_lock(&e->lock);
    bool last = --t->refs == 0;
    aip_mutex_unlock(&e->lock);
    if (last)
        exec_tool_free(t);
}

/* UFO's command2tool: the exact key, else (no type given) data_collection then action; unlike
 * UFO, a typed action whose key is missing falls back to the name under the other type. Only
 * a key's winner is found. Returns the entry with a reference taken (exec_tool_release it), or
 * NULL. */
exec_tool *exec_tool_lookup(aip_executor *e, const char *name, aip_tool_type type)
{
    exec_tool *exact = NULL, *other = NULL;
    aip_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_tools; i++) {
        exec_tool *t = e->tools[i];
        if (strcmp(t->name, name) != 0)
            continue;
        if (t->type == type) {
            if (!exact || tool_rank(t) < tool_rank(exact))
                exact = t;
        } else if (!other ||
                   (type == AIP_TOOL_NONE && t->type == AIP_TOOL_DATA_COLLECTION &&
                    other->type != AIP_TOOL_DATA_COLLECTION) ||
                   (t->type == other->type && tool_rank(t) < tool_rank(other))) {
            other = t;
        }
    }
    exec_tool *t = exact ? exact : other;
    if (t)
        t->refs++;
    aip_mutex_unlock(&e->lock);
    return t;
}

void exec_tool_free(exec_tool *t)
{
    if (!t)
        return;
    aip_free(t->name);
    aip_free(t->description);
    aip_free(t->ns);
    aip_free(t->title);
    aip_free(t->input_schema);
    aip_free(t->output_schema);
    aip_free(t->annotations);
    aip_free(t->meta);
    aip_free(t);
}

/* ---- registering ------------------------------------------------------------------------ */

/* ---- registry ---------------------------------------------------------------------------- */

/* *out = a copy of an optional JSON object text. Returns 0, AIP_E_INVAL (not a JSON object),
 * AIP_E_NOMEM. */
static int json_object_dup(const char *text, char **out)
{
    *out = NULL;
    if (!text)
        return 0;
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_depth = EXEC_RESULT_MAX_DEPTH - 2; /* it sits inside a list_tools entry */
    char why[64];
    if (aip_json_validate(text, strlen(text), AIP_JSON_OBJECT, &lim, why, sizeof why))
        return AIP_E_INVAL;
    return (*out = aip_strdup(text)) ? 0 : AIP_E_NOMEM;
}

/* The field f of info, or NULL when info is NULL or too short to hold it. */
#define INFO_FIELD(info, f) \
    ((info) && (info)->size >= offsetof(aip_tool_info, f) + sizeof((info)->f) ? (info)->f : NULL)

static bool utf8_ok(const char *s)
{
    return !s || aip_utf8_valid(s, strlen(s), NULL);
}

/* A new entry (refs 1) from a definition, everything validated and copied. */
static int tool_build(const aip_tool_def *def, const aip_tool_info *info, bool is_meta,
                      bool own_deadline, unsigned provider, exec_tool **out)
{
    *out = NULL;
    if (!def || !def->name || !def->name[0] || !def->fn || def->type == AIP_TOOL_NONE ||
        (unsigned)def->type >= AIP_TOOL_TYPE_COUNT_ || (info && info->size < sizeof info->size))
        return AIP_E_INVAL;
    const char *ns = INFO_FIELD(info, tool_namespace);
    const char *title = INFO_FIELD(info, title);
    if (!utf8_ok(def->name) || !utf8_ok(def->description) || !utf8_ok(ns) || !utf8_ok(title) ||
        (ns && !ns[0]))
        return AIP_E_INVAL;
    exec_tool *t = aip_calloc(1, sizeof *t);
    if (!t)
        return AIP_E_NOMEM;
    t->type = def->type;
    t->fn = def->fn;
    t->user = def->user;
    t->is_meta = is_meta;
    t->own_deadline = own_deadline;
    t->provider = provider;
    t->refs = 1;
    const char *schema = INFO_FIELD(info, input_schema);
    int rc = json_object_dup(schema ? schema : "{\"type\":\"object\"}", &t->input_schema);
    if (!rc)
        rc = json_object_dup(INFO_FIELD(info, output_schema), &t->output_schema);
    if (!rc)
        rc = json_object_dup(INFO_FIELD(info, annotations), &t->annotations);
    if (!rc)
        rc = json_object_dup(INFO_FIELD(info, meta), &t->meta);
    if (!rc) {
        t->name = aip_strdup(def->name);
        t->description = def->description ? aip_strdup(def->description) : NULL;
        t->ns = aip_strdup(ns ? ns : AIP_TOOL_NAMESPACE_DEFAULT);
        t->title = title ? aip_strdup(title) : NULL;
        if (!t->name || !t->ns || (def->description && !t->description) || (title && !t->title))
            rc = AIP_E_NOMEM;
    }
    if (rc) {
        exec_tool_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Room for `more` entries in e->tools. Under lock. */
static int tools_reserve(aip_executor *e, size_t more)
{
    if (e->n_tools + more <= e->cap_tools)
        return 0;
    size_t ncap = e->cap_tools ? e->cap_tools : 8;
    while (ncap < e->n_tools + more)
        ncap *= 2;
    exec_tool **nt = aip_realloc(e->tools, e->cap_tools * sizeof *nt, ncap * sizeof *nt);
    if (!nt)
        return AIP_E_NOMEM;
    e->tools = nt;
    e->cap_tools = ncap;
    return 0;
}

int exec_register(aip_executor *e, const aip_tool_def *def, const aip_tool_info *info, bool is_meta,
                  bool own_deadline)
{
    if (!e)
        return AIP_E_INVAL;
    exec_tool *t;
    int rc = tool_build(def, info, is_meta, own_deadline, 0, &t);
    if (rc)
        return rc;
    aip_mutex_lock(&e->lock);
    if (e->stopping)
        rc = AIP_E_SHUTDOWN;
    for (size_t i = 0; !rc && i < e->n_tools; i++)
        if (!e->tools[i]->provider && e->tools[i]->type == t->type &&
            strcmp(e->tools[i]->name, t->name) == 0)
            rc = AIP_E_DUPLICATE;
    if (!rc)
        rc = tools_reserve(e, 1);
    if (!rc)
        e->tools[e->n_tools++] = t;
    aip_mutex_unlock(&e->lock);
    if (rc)
        exec_tool_free(t);
    return rc;
}

/* Logs, once per new key of a provider's set, who wins a key shared with another entry. */
static void log_collisions(aip_executor *e, unsigned provider, exec_tool **old, size_t n_old)
{
    for (size_t i = 0; i < e->n_tools; i++) {
        const exec_tool *t = e->tools[i];
        if (t->provider != provider)
            continue;
        bool known = false; /* the key was in the provider's previous set: logged then */
        for (size_t k = 0; k < n_old && !known; k++)
            known = old[k]->type == t->type && strcmp(old[k]->name, t->name) == 0;
        for (size_t j = 0; j < e->n_tools && !known; j++) {
            const exec_tool *o = e->tools[j];
            if (o == t || o->hidden || o->type != t->type || strcmp(o->name, t->name) != 0)
                continue;
            bool wins = tool_rank(t) < tool_rank(o);
            aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT,
                    "tool %s::%.200s of namespace '%.200s' %s the one of namespace '%.200s'",
                    aip_tool_type_str(t->type), t->name, t->ns,
                    wins ? "replaces" : "is shadowed by", o->ns);
        }
    }
}

int aip_executor_hide_tools(aip_executor *e, unsigned provider, bool hidden)
{
    if (!e || provider == 0 || provider > AIP_EXECUTOR_MAX_PROVIDERS)
        return AIP_E_INVAL;
    aip_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_tools; i++)
        if (e->tools[i]->provider == provider)
            e->tools[i]->hidden = hidden;
    aip_mutex_unlock(&e->lock);
    return 0;
}

int aip_executor_set_tools(aip_executor *e, unsigned provider, const aip_tool_def *defs,
                           const aip_tool_info *infos, size_t n)
{
    if (!e || provider == 0 || provider > AIP_EXECUTOR_MAX_PROVIDERS || (n && !defs) ||
        n > AIP_EXECUTOR_MAX_SET)
        return AIP_E_INVAL;
    exec_tool **fresh = n ? aip_calloc(n, sizeof *fresh) : NULL;
    if (n && !fresh)
        return AIP_E_NOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = tool_build(&defs[i], infos ? &infos[i] : NULL, false, false, provider, &fresh[i]);
        for (size_t j = 0; !rc && j < i; j++)
            if (fresh[j]->type == fresh[i]->type && strcmp(fresh[j]->name, fresh[i]->name) == 0)
                rc = AIP_E_DUPLICATE;
    }
    exec_tool **old = NULL;
    size_t n_old = 0;
    if (!rc) {
        aip_mutex_lock(&e->lock);
        size_t have = 0;
        for (size_t i = 0; i < e->n_tools; i++)
            have += e->tools[i]->provider == provider;
        if (e->stopping)
            rc = AIP_E_SHUTDOWN;
        else if (!(old = aip_calloc(have + 1, sizeof *old)))
            rc = AIP_E_NOMEM;
        else
            rc = tools_reserve(e, n);
        if (!rc) {
            size_t w = 0;
            for (size_t i = 0; i < e->n_tools; i++) {
                if (e->tools[i]->provider == provider)
                    old[n_old++] = e->tools[i];
                else
                    e->tools[w++] = e->tools[i];
            }
            e->n_tools = w;
            for (size_t i = 0; i < n; i++)
                e->tools[e->n_tools++] = fresh[i];
            log_collisions(e, provider, old, n_old);
            for (size_t i = 0; i < n_old; i++)
                if (--old[i]->refs) /* a call still runs it: its exec_tool_release frees it */
                    old[i] = NULL;
        }
        aip_mutex_unlock(&e->lock);
    }
    if (rc) {
        for (size_t i = 0; i < n; i++)
            exec_tool_free(fresh[i]);
    }
    for (size_t i = 0; i < n_old; i++)
        exec_tool_free(old[i]);
    aip_free(old);
    aip_free(fresh);
    return rc;
}

int aip_executor_register_ex(aip_executor *e, const aip_tool_def *def, const aip_tool_info *info)
{
    return exec_register(e, def, info, false, false);
}

int aip_executor_register(aip_executor *e, const aip_tool_def *def)
{
    return exec_register(e, def, NULL, false, false);
}

#define SCHEMA_OBJ(props, req) \
    "{\"type\":\"object\",\"properties\":{" props "}" req ",\"additionalProperties\":true}"

static const char schema_echo[] =
    SCHEMA_OBJ("\"text\":{\"type\":\"string\",\"description\":\"The text to return.\"}", "");
static const char schema_sleep[] = SCHEMA_OBJ(
    "\"seconds\":{\"type\":\"number\",\"minimum\":0,\"description\":\"How long to sleep.\"}",
    ",\"required\":[\"seconds\"]");
static const char schema_list_tools[] = SCHEMA_OBJ(
    "\"tool_type\":{\"type\":[\"string\",\"null\"],\"enum\":[\"action\",\"data_collection\","
    "null],\"description\":\"Only tools of this type.\"},"
    "\"namespace\":{\"type\":[\"string\",\"null\"],\"description\":\"Only tools of this "
    "namespace.\"},"
    "\"remove_meta\":{\"type\":\"boolean\",\"default\":true,\"description\":\"Leave meta "
    "tools (list_tools) out.\"}",
    "");
static const char schema_read_file[] = SCHEMA_OBJ(
    "\"path\":{\"type\":\"string\",\"description\":\"A UTF-8 text file inside the read roots "
    "(relative: to the first root).\"}",
    ",\"required\":[\"path\"]");
#define API_KEY_PROP                                                                        \
    "\"api_key\":{\"type\":[\"string\",\"null\"],\"description\":\"API key, required when " \
    "the agent is configured with one (tools.execute_command.api_key_file).\"}"
static const char schema_execute_command[] = SCHEMA_OBJ(
    "\"command\":{\"type\":\"string\",\"description\":\"The command line: an allow-listed "
    "program and its arguments (no shell unless the operator allowed one).\"},"
    "\"timeout\":{\"type\":\"integer\",\"default\":30,\"description\":\"Maximum execution "
    "time in seconds (1-120, and at most the operator's limit).\"},"
    "\"cwd\":{\"type\":[\"string\",\"null\"],\"default\":null,\"description\":\"Working "
    "directory (default: the agent's).\"}," API_KEY_PROP,
    ",\"required\":[\"command\"]");
static const char schema_get_system_info[] = SCHEMA_OBJ(API_KEY_PROP, "");
static const char out_execute_command[] =
    "{\"type\":\"object\",\"properties\":{\"success\":{\"type\":\"boolean\"},"
    "\"exit_code\":{\"type\":\"integer\"},\"stdout\":{\"type\":\"string\"},"
    "\"stderr\":{\"type\":\"string\"},\"truncated\":{\"type\":\"boolean\"},"
    "\"error\":{\"type\":\"string\"}},\"required\":[\"success\"]}";
static const char out_get_system_info[] =
    "{\"type\":\"object\",\"properties\":{\"uname\":{\"type\":\"string\"},"
    "\"uptime\":{\"type\":\"string\"},\"memory\":{\"type\":\"string\"},"
    "\"disk\":{\"type\":\"string\"},\"error\":{\"type\":\"string\"}}}";

int aip_executor_register_builtins(aip_executor *e)
{
    if (!e)
        return AIP_E_INVAL;
    static const char ro[] = "{\"readOnlyHint\":true}";
    const struct {
        aip_tool_def def;
        aip_tool_info info;
        bool exec, meta, own_deadline;
    } b[] = {
        {{"echo", AIP_TOOL_DATA_COLLECTION, exec_tool_echo, e,
          "Returns parameters.text as a JSON string (null without it)."},
         {sizeof(aip_tool_info), NULL, "Echo", schema_echo, NULL, ro, NULL},
         false,
         false,
         false},
        {{"sleep", AIP_TOOL_ACTION, exec_tool_sleep, e,
          "Sleeps parameters.seconds (a number), bounded by the command's deadline."},
         {sizeof(aip_tool_info), NULL, "Sleep", schema_sleep, NULL, ro, NULL},
         false,
         false,
         false},
        {{"list_tools", AIP_TOOL_ACTION, exec_tool_list_tools, e,
          "Lists the tools of this device as UFO's MCPToolInfo objects, optionally only those of "
          "one tool_type and/or namespace."},
         {sizeof(aip_tool_info), NULL, "list_tools", schema_list_tools, NULL, ro, NULL},
         false,
         true, /* UFO's meta tool: under both tool types, as UFO registers it for each */
         false},
        {{"read_file", AIP_TOOL_DATA_COLLECTION, exec_tool_read_file, e,
          "Reads the UTF-8 text file parameters.path inside the configured read roots."},
         {sizeof(aip_tool_info), NULL, "Read file", schema_read_file, NULL, ro, NULL},
         false,
         false,
         false},
        {{"execute_command", AIP_TOOL_ACTION, exec_tool_execute_command, e,
          "Execute an allow-listed command on Linux and return success, exit_code, stdout and "
          "stderr (no shell unless the operator allowed one)."},
         {sizeof(aip_tool_info), AIP_TOOL_NAMESPACE_BASH, "Execute command", schema_execute_command,
          out_execute_command, NULL, NULL},
         true,
         false,
         true},
        {{"get_system_info", AIP_TOOL_ACTION, exec_tool_get_system_info, e,
          "Get basic system info (uname, uptime, memory, disk)."},
         {sizeof(aip_tool_info), AIP_TOOL_NAMESPACE_BASH, "Get system info", schema_get_system_info,
          out_get_system_info, ro, NULL},
         true,
         false,
         true},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        if (b[i].exec && !e->exec_enabled)
            continue;
        int rc = exec_register(e, &b[i].def, &b[i].info, b[i].meta, b[i].own_deadline);
        if (!rc && b[i].meta) { /* and the same meta tool under data_collection */
            aip_tool_def dc = b[i].def;
            dc.type = AIP_TOOL_DATA_COLLECTION;
            rc = exec_register(e, &dc, &b[i].info, true, b[i].own_deadline);
        }
        if (rc)
            return rc;
    }
    return 0;
}

char *aip_executor_features_json(aip_executor *e)
{
    if (!e)
        return NULL;
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_buf_putc(&b, '[');
    bool first = true;
    aip_mutex_lock(&e->lock);
    for (size_t i = 0; !rc && i < e->n_tools; i++) {
        const char *name = e->tools[i]->name;
        bool seen = e->tools[i]->hidden; /* a name under both tool types (or shadowed) once */
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(e->tools[j]->name, name) == 0;
        if (seen)
            continue;
        if (!first)
            rc = aip_buf_putc(&b, ',');
        first = false;
        if (!rc)
            rc = aip_json_put_string(&b, name, strlen(name));
    }
    aip_mutex_unlock(&e->lock);
    if (!rc)
        rc = aip_buf_putc(&b, ']');
    if (rc) {
        aip_buf_free(&b);
        return NULL;
    }
    return exec_buf_take(&b);
}
