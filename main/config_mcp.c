/* SPDX-License-Identifier: MIT */
/* constellation-agent configuration: tools.mcp.servers (see config_internal.h). */
#include "config_internal.h"

#include <aip/agent.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- tools.mcp ---------------------------------------------------------------------------- */

/* Keeps an allocation for settings_free; NULL (out of memory) is passed through. */
static void *keep(agent_settings *s, void *p)
{
    if (!p)
        return NULL;
    if (s->n_mcp_blocks == s->cap_mcp_blocks) {
        size_t ncap = s->cap_mcp_blocks ? 2 * s->cap_mcp_blocks : 32;
        void **nb = aip_realloc(s->mcp_blocks, s->cap_mcp_blocks * sizeof *nb, ncap * sizeof *nb);
        if (!nb) {
            aip_free(p);
            return NULL;
        }
        s->mcp_blocks = nb;
        s->cap_mcp_blocks = ncap;
    }
    s->mcp_blocks[s->n_mcp_blocks++] = p;
    return p;
}

static char *keep_str(agent_settings *s, const char *v)
{
    return keep(s, aip_strdup(v));
}

#define MCP_MAX_ARGS 64
#define MCP_MAX_KV   64

/* A {"NAME": "value", ...} object of tools.mcp.servers[i] as kv pairs. */
static int get_kv(agent_settings *s, const cJSON *srv, const char *key, const char *where,
                  bool header, const aip_mcp_kv **out, size_t *n, char *why, size_t why_len)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(srv, key);
    *out = NULL;
    *n = 0;
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) > MCP_MAX_KV)
        FAIL("\"%s.%s\" must be an object of at most %d strings", where, key, MCP_MAX_KV);
    size_t cnt = (size_t)cJSON_GetArraySize(o);
    aip_mcp_kv *kv = keep(s, aip_calloc(cnt ? cnt : 1, sizeof *kv));
    if (!kv)
        FAIL("out of memory");
    for (const cJSON *e = o->child; e; e = e->next) {
        const char *k = e->string;
        bool name_ok = k[0] != 0;
        for (const char *p = k; *p && name_ok; p++)
            name_ok = header ? (*p > ' ' && *p < 127 && !strchr("()<>@,;:\\\"/[]?={}", *p))
                             : ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
                                (p != k && *p >= '0' && *p <= '9'));
        if (!name_ok)
            FAIL("\"%s.%s\": \"%.100s\" is not a valid %s name", where, key, k,
                 header ? "header" : "environment variable");
        if (!cJSON_IsString(e) || strpbrk(e->valuestring, "\r\n") ||
            (!header && strchr(e->valuestring, '\0') != e->valuestring + strlen(e->valuestring)))
            FAIL("\"%s.%s.%.100s\" must be a string without line breaks", where, key, k);
        kv[*n].name = keep_str(s, k);
        kv[*n].value = keep_str(s, e->valuestring);
        if (!kv[*n].name || !kv[*n].value)
            FAIL("out of memory");
        (*n)++;
    }
    *out = kv;
    return 0;
}

/* tools.mcp.servers[i] into s->mcp[i] (the key check and the secrets' file mode are the caller's)
 */
static int load_mcp_server(agent_settings *s, const cJSON *srv, size_t i, char *why, size_t why_len)
{
    static const char *const srv_keys[] = {"namespace", "tool_type", "command",   "url",
                                           "env",       "headers",   "timeout_s", NULL};
    int rc;
    char where[48];
    snprintf(where, sizeof where, "tools.mcp.servers[%zu]", i);
    if (!cJSON_IsObject(srv))
        FAIL("\"%s\" must be an object", where);
    if ((rc = check_names(srv, where, srv_keys, why, why_len)))
        return rc;
    aip_mcp_server_config *c = &s->mcp[i];
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(srv, "namespace");
    if (!cJSON_IsString(ns) || !ns->valuestring[0] || strlen(ns->valuestring) > 128)
        FAIL("\"%s.namespace\" must be a string of 1 to 128 bytes", where);
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(srv, "tool_type");
    if (cJSON_IsString(tt) && strcmp(tt->valuestring, "action") == 0)
        c->tool_type = AIP_TOOL_ACTION;
    else if (cJSON_IsString(tt) && strcmp(tt->valuestring, "data_collection") == 0)
        c->tool_type = AIP_TOOL_DATA_COLLECTION;
    else
        FAIL("\"%s.tool_type\" must be \"action\" or \"data_collection\"", where);
    if (!(c->tool_namespace = keep_str(s, ns->valuestring)))
        FAIL("out of memory");
    for (size_t j = 0; j < i; j++)
        if (s->mcp[j].tool_type == c->tool_type &&
            strcmp(s->mcp[j].tool_namespace, c->tool_namespace) == 0)
            FAIL("\"%s\": namespace \"%s\" with tool_type \"%s\" is configured twice", where,
                 c->tool_namespace, tt->valuestring);
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(srv, "command");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(srv, "url");
    bool has_cmd = cmd && !cJSON_IsNull(cmd), has_url = url && !cJSON_IsNull(url);
    if (has_cmd == has_url)
        FAIL("\"%s\" needs either \"command\" (stdio) or \"url\" (streamable HTTP)%s", where,
             has_cmd ? ", not both" : "");
    if (has_cmd) {
        int argc = cJSON_GetArraySize(cmd);
        if (!cJSON_IsArray(cmd) || argc < 1 || argc > MCP_MAX_ARGS)
            FAIL("\"%s.command\" must be a list of 1 to %d strings (the program and its "
                 "arguments)",
                 where, MCP_MAX_ARGS);
        char **argv = keep(s, aip_calloc((size_t)argc + 1, sizeof *argv));
        if (!argv)
            FAIL("out of memory");
        size_t k = 0;
        for (const cJSON *a = cmd->child; a; a = a->next, k++) {
            if (!cJSON_IsString(a) || (k == 0 && !a->valuestring[0]))
                FAIL("\"%s.command\" must hold strings, the first one not empty", where);
            if (!(argv[k] = keep_str(s, a->valuestring)))
                FAIL("out of memory");
        }
        c->argv = (const char *const *)argv;
        c->argc = (size_t)argc;
    } else {
        if (!cJSON_IsString(url) || (strncmp(url->valuestring, "http://", 7) != 0 &&
                                     strncmp(url->valuestring, "https://", 8) != 0))
            FAIL("\"%s.url\" must be an http:// or https:// URL", where);
        if (!(c->url = keep_str(s, url->valuestring)))
            FAIL("out of memory");
    }
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(srv, "env");
    const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(srv, "headers");
    if (has_url && env && !cJSON_IsNull(env))
        FAIL("\"%s.env\" is for a stdio server (\"command\")", where);
    if (has_cmd && hdr && !cJSON_IsNull(hdr))
        FAIL("\"%s.headers\" is for a streamable HTTP server (\"url\")", where);
    if ((rc = get_kv(s, srv, "env", where, false, &c->env, &c->n_env, why, why_len)) ||
        (rc = get_kv(s, srv, "headers", where, true, &c->headers, &c->n_headers, why, why_len)))
        return rc;
    unsigned timeout_s = 0;
    if ((rc = get_unsigned(srv, "timeout_s", where, 1, 3600, &timeout_s, why, why_len)))
        return rc;
    c->timeout_ms = timeout_s * 1000;
    return 0;
}

/* tools.mcp (M: its object): the servers; a file holding their env or headers (often keys)
 * must not be readable by others */
int load_mcp(agent_settings *s, const cJSON *m, const char *file, char *why, size_t why_len)
{
    char *text = cJSON_PrintUnformatted(m);
    set_str(&s->mcp_json, text);
    cJSON_free(text);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(m, "servers");
    if (!list || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > AIP_MCP_MAX_SERVERS)
        FAIL("\"tools.mcp.servers\" must be a list of at most %d servers", AIP_MCP_MAX_SERVERS);
    size_t n = (size_t)cJSON_GetArraySize(list);
    s->n_mcp = 0;
    s->mcp = keep(s, aip_calloc(n + 1, sizeof *s->mcp));
    if (!s->mcp)
        FAIL("out of memory");
    bool secrets = false;
    size_t i = 0;
    for (const cJSON *srv = list->child; srv; srv = srv->next, i++) {
        int rc = load_mcp_server(s, srv, i, why, why_len);
        if (rc)
            return rc;
        secrets |= s->mcp[i].n_env || s->mcp[i].n_headers;
        s->n_mcp = i + 1;
    }
    struct stat st;
    if (secrets && stat(file, &st) == 0 && (st.st_mode & 0007))
        FAIL("%s holds MCP env or headers (often keys) but is readable by others (mode %04o): "
             "chmod o-rwx it",
             file, (unsigned)(st.st_mode & 07777));
    return 0;
}
/* tools.mcp.servers for --check-config: env and header values hidden. */
void show_mcp(aip_buf *b, const agent_settings *s)
{
    aip_buf_puts(b, "[");
    for (size_t i = 0; i < s->n_mcp; i++) {
        const aip_mcp_server_config *c = &s->mcp[i];
        bool first = true;
        aip_buf_puts(b, i ? "," : "");
        put_kv_str(b, "namespace", c->tool_namespace, &first);
        put_kv_str(b, "tool_type", aip_tool_type_str(c->tool_type), &first);
        if (c->url) {
            put_kv_str(b, "url", c->url, &first);
        } else {
            aip_buf_puts(b, ",\"command\":[");
            for (size_t k = 0; k < c->argc; k++) {
                aip_buf_puts(b, k ? "," : "");
                aip_json_put_string(b, c->argv[k], strlen(c->argv[k]));
            }
            aip_buf_puts(b, "]");
        }
        const char *what[2] = {"env", "headers"};
        const aip_mcp_kv *kv[2] = {c->env, c->headers};
        size_t nkv[2] = {c->n_env, c->n_headers};
        for (int w = 0; w < 2; w++) {
            if (!nkv[w])
                continue;
            bool f2 = true;
            aip_buf_puts(b, ",");
            aip_json_put_string(b, what[w], strlen(what[w]));
            aip_buf_puts(b, ":");
            for (size_t k = 0; k < nkv[w]; k++)
                put_kv_str(b, kv[w][k].name, "(set, not shown)", &f2);
            aip_buf_puts(b, "}");
        }
        char num[48];
        snprintf(num, sizeof num, ",\"timeout_s\":%u}", c->timeout_ms ? c->timeout_ms / 1000 : 60);
        aip_buf_puts(b, num);
    }
    aip_buf_puts(b, "]");
}
