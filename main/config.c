/* constellation-agent configuration (see config.h). */
#include "config.h"
#include "usage.h"

#include <aip/agent.h>
#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(...)                            \
    do {                                     \
        snprintf(why, why_len, __VA_ARGS__); \
        return EXIT_CONFIG;                  \
    } while (0)

static void set_str(char **dst, const char *v)
{
    if (!v)
        return;
    aip_free(*dst);
    *dst = aip_strdup(v);
}

/* Reads a whole small file (config, token). Refuses files that others can read when secret. */
static int read_file(const char *path, bool secret, char **out, char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        FAIL("%s is not a regular file", path);
    }
    if (secret && (st.st_mode & 0007)) {
        close(fd);
        FAIL("%s holds a token but is readable by others (mode %04o): chmod o-rwx it", path,
             (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > 1 << 20) {
        close(fd);
        FAIL("%s is larger than 1 MiB", path);
    }
    char *buf = aip_malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n < 0) {
        aip_free(buf);
        FAIL("cannot read %s", path);
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}

/* ---- the JSON file ------------------------------------------------------------------------ */

static int check_keys(const cJSON *obj, const char *where, const char *const *allowed, char *why,
                      size_t why_len)
{
    if (!obj)
        return 0;
    for (const cJSON *k = obj->child; k; k = k->next) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], k->string) == 0;
        if (!ok)
            FAIL("unknown key \"%s%s%s\"", where, where[0] ? "." : "", k->string);
    }
    return 0;
}

static int get_str(const cJSON *o, const char *key, const char *where, char **dst, char *why,
                   size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        FAIL("\"%s%s%s\" must be a non-empty string", where, where[0] ? "." : "", key);
    set_str(dst, v->valuestring);
    return 0;
}

static int get_uint(const cJSON *o, const char *key, const char *where, double lo, double hi,
                    size_t *dst, char *why, size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble ||
        v->valuedouble < lo || v->valuedouble > hi)
        FAIL("\"%s%s%s\" must be a whole number from %.0f to %.0f", where, where[0] ? "." : "", key,
             lo, hi);
    *dst = (size_t)v->valuedouble;
    return 0;
}

static int get_unsigned(const cJSON *o, const char *key, const char *where, double lo, double hi,
                        unsigned *dst, char *why, size_t why_len)
{
    size_t v = *dst;
    int rc = get_uint(o, key, where, lo, hi, &v, why, why_len);
    *dst = (unsigned)v;
    return rc;
}

static int get_bool(const cJSON *o, const char *key, const char *where, bool *dst, char *why,
                    size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        FAIL("\"%s%s%s\" must be true or false", where, where[0] ? "." : "", key);
    *dst = cJSON_IsTrue(v);
    return 0;
}

static int get_list(const cJSON *o, const char *key, const char *where, char **dst, size_t *n,
                    char *why, size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > MAX_LIST)
        FAIL("\"%s.%s\" must be a list of at most %d strings", where, key, MAX_LIST);
    for (size_t i = 0; i < *n; i++)
        aip_free(dst[i]);
    *n = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            FAIL("\"%s.%s\" must hold non-empty strings", where, key);
        dst[(*n)++] = aip_strdup(e->valuestring);
    }
    return 0;
}

static const cJSON *get_obj(const cJSON *o, const char *key, const char *where, char *why,
                            size_t why_len, int *rc)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *rc = 0;
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (!cJSON_IsObject(v)) {
        snprintf(why, why_len, "\"%s%s%s\" must be an object", where, where[0] ? "." : "", key);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    return v;
}

static int parse_encoding(const char *s, aip_encoding *e, char *why, size_t why_len)
{
    if (aip_encoding_parse(s, e))
        FAIL("encoding must be \"json\" or \"proto\", not \"%s\"", s);
    return 0;
}

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

static int load_mcp(agent_settings *s, const cJSON *t, bool *secrets, char *why, size_t why_len)
{
    static const char *const mcp_keys[] = {"servers", NULL};
    static const char *const srv_keys[] = {"namespace", "tool_type", "command",   "url",
                                           "env",       "headers",   "timeout_s", NULL};
    int rc;
    const cJSON *m = get_obj(t, "mcp", "tools", why, why_len, &rc);
    if (rc || !m)
        return rc;
    if ((rc = check_keys(m, "tools.mcp", mcp_keys, why, why_len)))
        return rc;
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
    size_t i = 0;
    for (const cJSON *srv = list->child; srv; srv = srv->next, i++) {
        char where[48];
        snprintf(where, sizeof where, "tools.mcp.servers[%zu]", i);
        if (!cJSON_IsObject(srv))
            FAIL("\"%s\" must be an object", where);
        if ((rc = check_keys(srv, where, srv_keys, why, why_len)))
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
        *secrets |= c->n_env || c->n_headers;
        unsigned timeout_s = 0;
        if ((rc = get_unsigned(srv, "timeout_s", where, 1, 3600, &timeout_s, why, why_len)))
            return rc;
        c->timeout_ms = timeout_s * 1000;
        s->n_mcp = i + 1;
    }
    return 0;
}

static int load_file(agent_settings *s, const char *path, char *why, size_t why_len)
{
    char *text;
    int rc = read_file(path, false, &text, why, why_len);
    if (rc)
        return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    bool has_token = root && cJSON_GetObjectItemCaseSensitive(root, "token");
    aip_free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        FAIL("%s is not a JSON object", path);
    }
    if (has_token) { /* a file with a secret in it must not be readable by others */
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 0007)) {
            cJSON_Delete(root);
            FAIL("%s holds a token but is readable by others (mode %04o)", path,
                 (unsigned)(st.st_mode & 07777));
        }
    }
    static const char *const top[] = {
        "server",       "client_id", "token",     "token_file", "token_placement", "ca_file",
        "cert",         "key",       "heartbeat", "encoding",   "log_level",       "tags",
        "server_tasks", "limits",    "backoff",   "tools",      "tls_insecure",    NULL};
    static const char *const limits[] = {"max_frame", "max_pending", "max_queued_bytes", NULL};
    static const char *const backoff[] = {"base_ms", "cap_ms", "stable_s", NULL};
    static const char *const tools[] = {
        "workers", "command_timeout_s", "max_output", "read_file", "execute_command", "mcp", NULL};
    static const char *const rf[] = {"roots", "max_bytes", "allow_hardlinks", NULL};
    static const char *const ec[] = {"enabled", "allow",        "shell",  "timeout_s",
                                     "policy",  "api_key_file", "cgroup", NULL};
    char *enc = NULL, *placement = NULL;
    const cJSON *o;
    if ((rc = check_keys(root, "", top, why, why_len)) ||
        (rc = get_str(root, "server", "", &s->server, why, why_len)) ||
        (rc = get_str(root, "client_id", "", &s->client_id, why, why_len)) ||
        (rc = get_str(root, "token", "", &s->token, why, why_len)) ||
        (rc = get_str(root, "token_file", "", &s->token_file, why, why_len)) ||
        (rc = get_str(root, "token_placement", "", &placement, why, why_len)) ||
        (rc = get_str(root, "ca_file", "", &s->ca_file, why, why_len)) ||
        (rc = get_str(root, "cert", "", &s->cert, why, why_len)) ||
        (rc = get_str(root, "key", "", &s->key, why, why_len)) ||
        (rc = get_str(root, "encoding", "", &enc, why, why_len)) ||
        (rc = get_str(root, "log_level", "", &s->log_level, why, why_len)) ||
        (rc = get_unsigned(root, "heartbeat", "", 1, 3600, &s->heartbeat_s, why, why_len)) ||
        (rc = get_bool(root, "server_tasks", "", &s->server_tasks, why, why_len)) ||
        (rc = get_bool(root, "tls_insecure", "", &s->tls_insecure, why, why_len)))
        goto out;
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(root, "tags");
    if (tags && !cJSON_IsNull(tags)) {
        if (!cJSON_IsObject(tags)) {
            snprintf(why, why_len, "\"tags\" must be an object");
            rc = EXIT_CONFIG;
            goto out;
        }
        char *t = cJSON_PrintUnformatted(tags);
        set_str(&s->tags_json, t);
        cJSON_free(t);
        if (s->tags_json && strlen(s->tags_json) > AIP_AGENT_MAX_TAGS) {
            snprintf(why, why_len, "\"tags\" is %zu bytes as JSON, over the limit of %d",
                     strlen(s->tags_json), AIP_AGENT_MAX_TAGS);
            rc = EXIT_CONFIG;
            goto out;
        }
    }
    if ((o = get_obj(root, "limits", "", why, why_len, &rc)) &&
        ((rc = check_keys(o, "limits", limits, why, why_len)) ||
         (rc = get_uint(o, "max_frame", "limits", 1024, 1 << 30, &s->max_frame, why, why_len)) ||
         (rc = get_uint(o, "max_pending", "limits", 1, 1 << 24, &s->max_pending, why, why_len)) ||
         (rc = get_uint(o, "max_queued_bytes", "limits", 4096, 1u << 31, &s->max_queued_bytes, why,
                        why_len))))
        goto out;
    if (rc)
        goto out;
    if ((o = get_obj(root, "backoff", "", why, why_len, &rc)) &&
        ((rc = check_keys(o, "backoff", backoff, why, why_len)) ||
         (rc = get_unsigned(o, "base_ms", "backoff", 10, 600000, &s->backoff_base_ms, why,
                            why_len)) ||
         (rc = get_unsigned(o, "cap_ms", "backoff", 10, 3600000, &s->backoff_cap_ms, why,
                            why_len)) ||
         (rc = get_unsigned(o, "stable_s", "backoff", 1, 86400, &s->stable_s, why, why_len))))
        goto out;
    if (rc)
        goto out;
    const cJSON *t = get_obj(root, "tools", "", why, why_len, &rc);
    if (rc)
        goto out;
    if (t) {
        if ((rc = check_keys(t, "tools", tools, why, why_len)) ||
            (rc = get_unsigned(t, "workers", "tools", 1, 64, &s->workers, why, why_len)) ||
            (rc = get_unsigned(t, "command_timeout_s", "tools", 1, 86400, &s->command_timeout_s,
                               why, why_len)) ||
            (rc = get_uint(t, "max_output", "tools", 256, 64u << 20, &s->max_output, why, why_len)))
            goto out;
        if ((o = get_obj(t, "read_file", "tools", why, why_len, &rc)) &&
            ((rc = check_keys(o, "tools.read_file", rf, why, why_len)) ||
             (rc = get_list(o, "roots", "tools.read_file", s->read_roots, &s->n_read_roots, why,
                            why_len)) ||
             (rc = get_uint(o, "max_bytes", "tools.read_file", 1, 64u << 20, &s->read_max_bytes,
                            why, why_len)) ||
             (rc = get_bool(o, "allow_hardlinks", "tools.read_file", &s->read_allow_hardlinks, why,
                            why_len))))
            goto out;
        if (rc)
            goto out;
        if ((o = get_obj(t, "execute_command", "tools", why, why_len, &rc)) &&
            ((rc = check_keys(o, "tools.execute_command", ec, why, why_len)) ||
             (rc = get_bool(o, "enabled", "tools.execute_command", &s->exec_enabled, why,
                            why_len)) ||
             (rc = get_list(o, "allow", "tools.execute_command", s->exec_allow, &s->n_exec_allow,
                            why, why_len)) ||
             (rc = get_bool(o, "shell", "tools.execute_command", &s->exec_shell, why, why_len)) ||
             (rc = get_unsigned(o, "timeout_s", "tools.execute_command", 1, 86400,
                                &s->exec_timeout_s, why, why_len)) ||
             (rc = get_str(o, "policy", "tools.execute_command", &s->exec_policy, why, why_len)) ||
             (rc = get_str(o, "api_key_file", "tools.execute_command", &s->exec_api_key_file, why,
                           why_len)) ||
             (rc = get_str(o, "cgroup", "tools.execute_command", &s->exec_cgroup, why, why_len))))
            goto out;
        if (rc)
            goto out;
        bool secrets = false;
        if ((rc = load_mcp(s, t, &secrets, why, why_len)))
            goto out;
        struct stat st;
        if (secrets && stat(path, &st) == 0 && (st.st_mode & 0007)) {
            snprintf(why, why_len,
                     "%s holds MCP env or headers (often keys) but is readable by others (mode "
                     "%04o): chmod o-rwx it",
                     path, (unsigned)(st.st_mode & 07777));
            rc = EXIT_CONFIG;
            goto out;
        }
    }
    if (enc && (rc = parse_encoding(enc, &s->encoding, why, why_len)))
        goto out;
    if (placement) {
        if (strcmp(placement, "query") == 0)
            s->token_placement = AIP_AUTH_QUERY;
        else if (strcmp(placement, "bearer") == 0)
            s->token_placement = AIP_AUTH_BEARER;
        else {
            snprintf(why, why_len, "token_placement must be \"query\" or \"bearer\"");
            rc = EXIT_CONFIG;
        }
    }
out:
    aip_free(enc);
    aip_free(placement);
    cJSON_Delete(root);
    return rc;
}

/* ---- defaults, precedence, checks ------------------------------------------------------- */

static char *default_client_id(void)
{
    char host[128] = "device";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    char mid[64] = "";
    FILE *f = fopen("/etc/machine-id", "r");
    if (f) {
        if (!fgets(mid, sizeof mid, f))
            mid[0] = 0;
        (void)fclose(f); /* read-only: nothing to flush */
    }
    mid[strcspn(mid, "\r\n")] = 0;
    char id[200];
    if (strlen(mid) >= 8)
        snprintf(id, sizeof id, "%s-%.8s", host, mid);
    else
        snprintf(id, sizeof id, "%s", host);
    return aip_strdup(id);
}

int settings_load(const agent_flags *f, agent_settings *s, char *why, size_t why_len)
{
    memset(s, 0, sizeof *s);
    s->encoding = AIP_ENCODING_JSON;
    s->heartbeat_s = 30;
    s->server_tasks = true;
    s->token_placement = AIP_AUTH_QUERY;
    int rc;
    if (f->config_file) {
        s->config_file = aip_strdup(f->config_file);
        if ((rc = load_file(s, f->config_file, why, why_len)))
            return rc;
    }
    /* environment over the file */
    set_str(&s->server, getenv("AIP_SERVER"));
    if (getenv("AIP_TOKEN")) {
        set_str(&s->token, getenv("AIP_TOKEN"));
        aip_free(s->token_file);
        s->token_file = NULL;
    }
    /* flags over both */
    set_str(&s->server, f->server);
    set_str(&s->client_id, f->client_id);
    set_str(&s->ca_file, f->ca_file);
    set_str(&s->cert, f->cert);
    set_str(&s->key, f->key);
    set_str(&s->log_level, f->log_level);
    if (f->token && f->token_file)
        FAIL("give --token or --token-file, not both");
    if (f->token) {
        set_str(&s->token, f->token);
        aip_free(s->token_file);
        s->token_file = NULL;
    }
    if (f->token_file) {
        set_str(&s->token_file, f->token_file);
        aip_free(s->token);
        s->token = NULL;
    }
    if (f->encoding && (rc = parse_encoding(f->encoding, &s->encoding, why, why_len)))
        return rc;
    if (f->heartbeat_s >= 0) {
        if (f->heartbeat_s < 1 || f->heartbeat_s > 3600)
            FAIL("--heartbeat must be 1..3600 seconds");
        s->heartbeat_s = (unsigned)f->heartbeat_s;
    }
    if (s->token_file) {
        char *tok;
        if ((rc = read_file(s->token_file, true, &tok, why, why_len)))
            return rc;
        tok[strcspn(tok, "\r\n")] = 0;
        aip_free(s->token);
        s->token = NULL;
        if (tok[0]) {
            s->token = tok;
        } else { /* an empty file (the unit's fallback credential): a server without a key */
            aip_free(tok);
            aip_log(AIP_LOG_INFO, "agent", "token file %s is empty: connecting without a token",
                    s->token_file);
        }
    }
    if (!s->server)
        FAIL("no server: give --server URL, AIP_SERVER or \"server\" in %s",
             s->config_file ? s->config_file : "the config file (--config)");
    if (strncmp(s->server, "ws://", 5) != 0 && strncmp(s->server, "wss://", 6) != 0)
        FAIL("server must be a ws:// or wss:// URL");
    const char *auth = strstr(s->server, "://") + 3;
    if (memchr(auth, '@', strcspn(auth, "/?#"))) /* never echoed: it may hold a password */
        FAIL("server: credentials in the URL (user:password@host) are not supported; give the "
             "key with token, token_file or ?token=");
    if (!s->client_id)
        s->client_id = default_client_id();
    if (!s->client_id || strlen(s->client_id) > AIP_ID_MAX)
        FAIL("client_id must be 1..%d bytes", AIP_ID_MAX);
    if (!s->cert != !s->key)
        FAIL("a client certificate needs both cert and key");
    /* named by setting, and refused when they cannot be TLS files at all: lws would only log
     * "client ssl isn't going to work" and the agent would retry for ever */
    const char *files[] = {s->ca_file, s->cert, s->key};
    const char *names[] = {"ca_file", "cert", "key"};
    for (int i = 0; i < 3; i++) {
        const char *problem =
            files[i] ? tool_file_problem(files[i], i == 2 ? TOOL_PEM_KEY : TOOL_PEM_CERT) : NULL;
        if (problem)
            FAIL("%s %s: %s", names[i], files[i], problem);
    }
    aip_log_level lvl;
    if (s->log_level && aip_log_level_parse(s->log_level, &lvl))
        FAIL("log_level must be error, warn, info or debug");
    if (s->exec_policy && strcmp(s->exec_policy, "ufo-readonly") != 0)
        FAIL("tools.execute_command.policy must be \"ufo-readonly\" (UFO's read-only list)");
    if (s->exec_policy && s->exec_shell)
        FAIL("tools.execute_command.policy \"%s\" runs without a shell: set shell to false",
             s->exec_policy);
    if (s->exec_enabled && !s->n_exec_allow && !s->exec_shell && !s->exec_policy)
        FAIL("tools.execute_command is enabled but its allow list is empty");
    const char *cg = s->exec_cgroup ? s->exec_cgroup : "auto";
    aip_free(s->exec_cgroup_dir);
    s->exec_cgroup_dir = NULL;
    if (strcmp(cg, "auto") == 0) {
        char dir[4096];
        if (s->exec_enabled && aip_executor_cgroup_detect(dir, sizeof dir) == 0)
            s->exec_cgroup_dir = aip_strdup(dir);
    } else if (strcmp(cg, "off") != 0) {
        struct stat st;
        char procs[4200];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg);
        if (cg[0] != '/' || stat(cg, &st) || !S_ISDIR(st.st_mode) || access(procs, W_OK))
            FAIL("tools.execute_command.cgroup \"%.3000s\" must be \"auto\", \"off\" or a "
                 "cgroup v2 directory the agent can write",
                 cg);
        s->exec_cgroup_dir = aip_strdup(cg);
    }
    if (s->exec_api_key_file) {
        char *key;
        if ((rc = read_file(s->exec_api_key_file, true, &key, why, why_len)))
            return rc;
        key[strcspn(key, "\r\n")] = 0;
        if (!key[0]) {
            aip_free(key);
            FAIL("tools.execute_command.api_key_file %s is empty", s->exec_api_key_file);
        }
        aip_free(s->exec_api_key);
        s->exec_api_key = key;
    }
    for (size_t i = 0; i < s->n_read_roots; i++)
        if (s->read_roots[i][0] != '/')
            FAIL("tools.read_file.roots must be absolute paths (\"%s\")", s->read_roots[i]);
    if (s->backoff_base_ms && s->backoff_cap_ms && s->backoff_cap_ms < s->backoff_base_ms)
        FAIL("backoff.cap_ms must be at least backoff.base_ms");
    return 0;
}

void settings_free(agent_settings *s)
{
    if (s->exec_api_key)
        explicit_bzero(s->exec_api_key, strlen(s->exec_api_key));
    char **strs[] = {&s->server,       &s->client_id,   &s->token,
                     &s->token_file,   &s->ca_file,     &s->cert,
                     &s->key,          &s->log_level,   &s->config_file,
                     &s->tags_json,    &s->exec_policy, &s->exec_api_key_file,
                     &s->exec_api_key, &s->exec_cgroup, &s->exec_cgroup_dir};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        aip_free(*strs[i]);
        *strs[i] = NULL;
    }
    for (size_t i = 0; i < s->n_read_roots; i++)
        aip_free(s->read_roots[i]);
    for (size_t i = 0; i < s->n_exec_allow; i++)
        aip_free(s->exec_allow[i]);
    s->n_read_roots = s->n_exec_allow = 0;
    for (size_t i = 0; i < s->n_mcp; i++) { /* env and header values may be keys */
        for (size_t k = 0; k < s->mcp[i].n_env; k++)
            explicit_bzero((char *)s->mcp[i].env[k].value, strlen(s->mcp[i].env[k].value));
        for (size_t k = 0; k < s->mcp[i].n_headers; k++)
            explicit_bzero((char *)s->mcp[i].headers[k].value, strlen(s->mcp[i].headers[k].value));
    }
    for (size_t i = 0; i < s->n_mcp_blocks; i++)
        aip_free(s->mcp_blocks[i]);
    aip_free(s->mcp_blocks);
    s->mcp_blocks = NULL;
    s->mcp = NULL;
    s->n_mcp = s->n_mcp_blocks = s->cap_mcp_blocks = 0;
    if (s->mcp_json)
        explicit_bzero(s->mcp_json, strlen(s->mcp_json));
    aip_free(s->mcp_json);
    s->mcp_json = NULL;
}

static void put_kv_str(aip_buf *b, const char *k, const char *v, bool *first)
{
    aip_buf_puts(b, *first ? "{" : ",");
    *first = false;
    aip_json_put_string(b, k, strlen(k));
    aip_buf_putc(b, ':');
    if (v)
        aip_json_put_string(b, v, strlen(v));
    else
        aip_buf_puts(b, "null");
}

/* tools.mcp.servers for --check-config: env and header values hidden. */
static void put_mcp(aip_buf *b, const agent_settings *s)
{
    aip_buf_puts(b, ",\"mcp_servers\":[");
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

char *settings_describe(const agent_settings *s)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    bool first = true;
    /* the server URL may carry the key (?token=, UFO's way): every query value is hidden */
    char server[1024];
    if (s->server)
        aip_redact_url(s->server, server, sizeof server);
    put_kv_str(&b, "server", s->server ? server : NULL, &first);
    put_kv_str(&b, "client_id", s->client_id, &first);
    put_kv_str(&b, "token", s->token ? "(set, not shown)" : NULL, &first);
    put_kv_str(&b, "token_placement", s->token_placement == AIP_AUTH_BEARER ? "bearer" : "query",
               &first);
    put_kv_str(&b, "ca_file", s->ca_file, &first);
    put_kv_str(&b, "cert", s->cert, &first);
    put_kv_str(&b, "encoding", s->encoding == AIP_ENCODING_PROTO ? "proto" : "json", &first);
    put_kv_str(&b, "execute_command_policy", s->exec_policy, &first);
    put_kv_str(&b, "execute_command_api_key", s->exec_api_key ? "(set, not shown)" : NULL, &first);
    put_kv_str(&b, "execute_command_cgroup", s->exec_cgroup_dir, &first);
    aip_conn_config defaults;
    aip_conn_config_init(&defaults);
    char n[400];
    snprintf(n, sizeof n,
             ",\"heartbeat\":%u,\"server_tasks\":%s,\"execute_command\":%s,\"read_roots\":%zu,"
             "\"read_allow_hardlinks\":%s,\"workers\":%u,\"tls_insecure\":%s,\"max_frame\":%zu}",
             s->heartbeat_s, s->server_tasks ? "true" : "false", s->exec_enabled ? "true" : "false",
             s->n_read_roots, s->read_allow_hardlinks ? "true" : "false",
             s->workers ? s->workers : 2, s->tls_insecure ? "true" : "false",
             s->max_frame ? s->max_frame : defaults.max_frame_in);
    n[strlen(n) - 1] = 0; /* the servers go before the closing brace */
    aip_buf_puts(&b, n);
    put_mcp(&b, s);
    aip_buf_puts(&b, "}");
    aip_buf_nul(&b);
    return (char *)aip_buf_steal(&b);
}

void settings_to_agent(const agent_settings *s, aip_agent_config *a, const char **roots,
                       const char **allow)
{
    memset(a, 0, sizeof *a);
    aip_conn_config_init(&a->conn);
    a->conn.url = s->server;
    a->conn.client_id = s->client_id;
    a->conn.token = s->token;
    a->conn.token_placement = s->token_placement;
    a->conn.encoding = s->encoding;
    a->conn.ca_file = s->ca_file;
    a->conn.cert_file = s->cert;
    a->conn.key_file = s->key;
    a->conn.tls_insecure = s->tls_insecure;
    a->conn.heartbeat_ms = s->heartbeat_s * 1000;
    if (s->max_frame)
        a->conn.max_frame_in = s->max_frame;
    if (s->max_pending)
        a->conn.max_pending = s->max_pending;
    if (s->max_queued_bytes)
        a->conn.max_queued_bytes = s->max_queued_bytes;
    if (s->backoff_base_ms)
        a->conn.backoff_base_ms = s->backoff_base_ms;
    if (s->backoff_cap_ms)
        a->conn.backoff_cap_ms = s->backoff_cap_ms;
    if (s->stable_s)
        a->conn.stable_ms = s->stable_s * 1000;
    a->conn.thread_name = "agent-service";
    a->tags_json = s->tags_json;
    a->disable_server_tasks = !s->server_tasks;
    a->exec.workers = s->workers;
    a->exec.default_timeout_ms = s->command_timeout_s * 1000;
    a->exec.max_output = s->max_output;
    for (size_t i = 0; i < s->n_read_roots; i++)
        roots[i] = s->read_roots[i];
    a->exec.read_roots = roots;
    a->exec.n_read_roots = s->n_read_roots;
    a->exec.read_max_bytes = s->read_max_bytes;
    a->exec.read_allow_hardlinks = s->read_allow_hardlinks;
    a->exec.exec_enabled = s->exec_enabled;
    for (size_t i = 0; i < s->n_exec_allow; i++)
        allow[i] = s->exec_allow[i];
    a->exec.exec_allow = allow;
    a->exec.n_exec_allow = s->n_exec_allow;
    a->exec.exec_shell = s->exec_shell;
    a->exec.exec_timeout_ms = s->exec_timeout_s * 1000;
    a->exec.exec_policy = s->exec_policy;
    a->exec.api_key = s->exec_api_key;
    a->exec.exec_cgroup = s->exec_cgroup_dir;
    a->mcp_servers = s->mcp;
    a->n_mcp_servers = s->n_mcp;
    /* their tools in the registration's supported_features, unless they are slow to start */
    a->mcp_start_wait_ms = s->n_mcp ? 3000 : 0;
}

const char *settings_heartbeat_warning(const agent_settings *s)
{
    if (!s || s->heartbeat_s <= 60)
        return NULL;
    return "over 60 s, the usual idle timeout of proxies and load balancers (nginx "
           "proxy_read_timeout, squid read_timeout, cloud load balancers: often 60 s). The "
           "WebSocket pings (every 20 s) keep the link busy where they pass end to end; where "
           "something on the path answers or ignores them, only the heartbeats do, and the link "
           "may be cut unless those timeouts are raised";
}
