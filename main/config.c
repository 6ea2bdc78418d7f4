/* SPDX-License-Identifier: MIT */
/* constellation-agent configuration (see config.h). */
#include "config.h"
#include "config_internal.h"
#include "usage.h"

#include <aip/agent.h>
#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void set_str(char **dst, const char *v)
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

/* Keys of an object checked against a list (an MCP server's keys). */
int check_names(const cJSON *obj, const char *where, const char *const *allowed, char *why,
                size_t why_len)
{
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

int get_unsigned(const cJSON *o, const char *key, const char *where, double lo, double hi,
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

/* ---- the schema: every key of the JSON file, once ------------------------------------------ */

typedef enum {
    K_STRING, /* a non-empty string */
    K_PATH,   /* a non-empty string naming a file or directory */
    K_BOOL,   /* true or false */
    K_UINT,   /* a whole number in [min, max] into an unsigned */
    K_SIZE,   /* a whole number in [min, max] into a size_t */
    K_ENUM,   /* one of a few names (parse and name below) */
    K_LIST,   /* a list of at most MAX_LIST non-empty strings */
    K_OBJECT, /* an object, parsed and shown by hooks */
} key_kind;

static const char *const kind_names[] = {"string", "path", "bool",        "integer",
                                         "size",   "enum", "string list", "object"};

enum {
    F_SECRET = 1, /* shown as "(set, not shown)" */
    F_URL = 2,    /* shown with its query values redacted */
    F_LIB = 4,    /* 0 (not set) leaves it to the library, whose default is dflt */
};

typedef struct cfg_key cfg_key;
struct cfg_key {
    const char *path; /* "tools.read_file.roots"; its sections are the dotted prefixes */
    key_kind kind;
    size_t off;        /* offsetof(agent_settings, field) */
    size_t n_off;      /* K_LIST: its count */
    double min, max;   /* K_UINT, K_SIZE */
    double dflt;       /* K_BOOL, K_UINT, K_SIZE (the library's when F_LIB) */
    const char *sdflt; /* K_STRING: the effective value when not set */
    const char *doc;   /* the default as the README shows it */
    const char *unit;  /* "s", "ms", "bytes" or NULL */
    const char *help;
    int flags;
    /* K_ENUM: the choices (for the message) and the parser/namer of the field */
    const char *choices;
    bool echo; /* the message repeats the value */
    int (*parse)(const char *v, void *field);
    const char *(*name)(const void *field);
    /* K_OBJECT: parent is the key's section (NULL when absent); file is the config file */
    int (*load)(agent_settings *s, const cJSON *parent, const char *file, char *why,
                size_t why_len);
    void (*show)(aip_buf *b, const agent_settings *s);
};

static int parse_enc(const char *v, void *f)
{
    return aip_encoding_parse(v, f);
}
static const char *name_enc(const void *f)
{
    return *(const aip_encoding *)f == AIP_ENCODING_PROTO ? "proto" : "json";
}
static int parse_placement(const char *v, void *f)
{
    aip_token_placement *p = f;
    if (strcmp(v, "query") == 0)
        *p = AIP_AUTH_QUERY;
    else if (strcmp(v, "bearer") == 0)
        *p = AIP_AUTH_BEARER;
    else
        return -1;
    return 0;
}
static const char *name_placement(const void *f)
{
    return *(const aip_token_placement *)f == AIP_AUTH_BEARER ? "bearer" : "query";
}

static int load_tags(agent_settings *s, const cJSON *root, const char *file, char *why,
                     size_t why_len);
static void show_tags(aip_buf *b, const agent_settings *s);

#define AT(f) offsetof(agent_settings, f)
/* clang-format off */
#define STR(p, f, fl, sd, d, h) {.path = p, .kind = K_STRING, .off = AT(f), .flags = fl, .sdflt = sd, .doc = d, .help = h}
#define PATHK(p, f, d, h) {.path = p, .kind = K_PATH, .off = AT(f), .doc = d, .help = h}
#define BOOLK(p, f, v, d, h) {.path = p, .kind = K_BOOL, .off = AT(f), .dflt = v, .doc = d, .help = h}
#define NUM(p, k, f, lo, hi, v, fl, d, u, h) {.path = p, .kind = k, .off = AT(f), .min = lo, .max = hi, .dflt = v, .flags = fl, .doc = d, .unit = u, .help = h}
#define LIST(p, f, n, h) {.path = p, .kind = K_LIST, .off = AT(f), .n_off = AT(n), .doc = "none", .help = h}
#define ENUM(p, f, d, ch, e, ps, nm, h) {.path = p, .kind = K_ENUM, .off = AT(f), .doc = d, .choices = ch, .echo = e, .parse = ps, .name = nm, .help = h}
#define OBJ(p, d, ld, sh, h) {.path = p, .kind = K_OBJECT, .doc = d, .load = ld, .show = sh, .help = h}

/* The keys, in the order they are read and shown (one a line). Numbers with F_LIB mirror the
 * library's defaults (aip_conn_config_init, the executor's DEFAULT_*): 0 leaves it to them. */
static const cfg_key keys[] = {
    STR("server", server, F_URL, NULL, "— (required)", "ws:// or wss:// URL of the orchestrator"),
    STR("client_id", client_id, 0, NULL, "`<hostname>-<first 8 of /etc/machine-id>`", "the device id"),
    STR("token", token, F_SECRET, NULL, "none", "the server key"),
    PATHK("token_file", token_file, "none", "a file holding the server key"),
    ENUM("token_placement", token_placement, "`query`", "\"query\" or \"bearer\"", false, parse_placement, name_placement, "query (?token=) or bearer (Authorization)"),
    PATHK("ca_file", ca_file, "system CAs", "wss: CA bundle"),
    PATHK("cert", cert, "none", "client certificate for mutual TLS"),
    PATHK("key", key, "none", "its private key"),
    BOOLK("tls_insecure", tls_insecure, 0, "false", "tests only: no certificate or host-name check"),
    NUM("heartbeat", K_UINT, heartbeat_s, 1, 3600, 30, 0, "30", "s", "heartbeat interval; silent 3x that = a dead link"),
    ENUM("encoding", encoding, "`json`", "\"json\" or \"proto\"", true, parse_enc, name_enc, "json, or proto (falls back to JSON)"),
    STR("log_level", log_level, 0, "info", "`info`", "error, warn, info, debug"),
    OBJ("tags", "`{}`", load_tags, show_tags, "system_info.custom_metadata (16 KiB as JSON at most)"),
    BOOLK("server_tasks", server_tasks, 1, "true", "false: a server task is answered with an error"),
    NUM("limits.max_frame", K_SIZE, max_frame, 1024, 1 << 30, 1 << 20, F_LIB, "1 MiB", "bytes", "inbound message cap"),
    NUM("limits.max_pending", K_SIZE, max_pending, 1, 1 << 24, 65536, F_LIB, "65536", NULL, "pending requests"),
    NUM("limits.max_queued_bytes", K_SIZE, max_queued_bytes, 4096, 1u << 31, 8 << 20, F_LIB, "8 MiB", "bytes", "queued outbound bytes"),
    NUM("backoff.base_ms", K_UINT, backoff_base_ms, 10, 600000, 1000, F_LIB, "1000", "ms", "reconnect delay base"),
    NUM("backoff.cap_ms", K_UINT, backoff_cap_ms, 10, 3600000, 60000, F_LIB, "60000", "ms", "reconnect delay cap"),
    NUM("backoff.stable_s", K_UINT, stable_s, 1, 86400, 30, F_LIB, "30", "s", "a link up this long resets the backoff"),
    NUM("tools.workers", K_UINT, workers, 1, 64, 2, F_LIB, "2", NULL, "batches run concurrently"),
    NUM("tools.command_timeout_s", K_UINT, command_timeout_s, 1, 86400, 60, F_LIB, "60", "s", "per command"),
    NUM("tools.max_output", K_SIZE, max_output, 256, 64u << 20, 65536, F_LIB, "65536", "bytes", "tool output kept (the tail)"),
    LIST("tools.read_file.roots", read_roots, n_read_roots, "absolute paths read_file may read under"),
    NUM("tools.read_file.max_bytes", K_SIZE, read_max_bytes, 1, 64u << 20, 65536, F_LIB, "65536", "bytes", "read_file's largest answer"),
    BOOLK("tools.read_file.allow_hardlinks", read_allow_hardlinks, 0, "false", "read files with more than one hard link"),
    BOOLK("tools.execute_command.enabled", exec_enabled, 0, "**false**", "execute_command and get_system_info exist"),
    LIST("tools.execute_command.allow", exec_allow, n_exec_allow, "programs it may run"),
    STR("tools.execute_command.policy", exec_policy, 0, NULL, "none", "\"ufo-readonly\": UFO's read-only list"),
    BOOLK("tools.execute_command.shell", exec_shell, 0, "false", "allow /bin/sh -c"),
    NUM("tools.execute_command.timeout_s", K_UINT, exec_timeout_s, 1, 86400, 60, F_LIB, "60", "s", "the most a command may run"),
    STR("tools.execute_command.cgroup", exec_cgroup, 0, "auto", "`auto`", "auto, off or a cgroup v2 directory"),
    PATHK("tools.execute_command.api_key_file", exec_api_key_file, "none", "a file holding the api_key UFO's tools require"),
    OBJ("tools.mcp.servers", "none", load_mcp, show_mcp, "MCP servers whose tools the agent hosts"),
};
/* clang-format on */
#define N_KEYS (sizeof keys / sizeof keys[0])

#define FIELD(s, k, T)  ((T *)(void *)((char *)(s) + (k)->off))
#define CFIELD(s, k, T) ((const T *)(const void *)((const char *)(s) + (k)->off))

/* Is NAME a key (or a section) directly under section SEC ("" for the top)? */
static bool known_child(const char *sec, const char *name)
{
    size_t ls = strlen(sec), ln = strlen(name);
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *rest = keys[i].path;
        if (ls) {
            if (strncmp(rest, sec, ls) != 0 || rest[ls] != '.')
                continue;
            rest += ls + 1;
        }
        if (strncmp(rest, name, ln) == 0 && (rest[ln] == 0 || rest[ln] == '.'))
            return true;
    }
    return false;
}

static int check_keys(const cJSON *obj, const char *where, char *why, size_t why_len)
{
    if (!obj)
        return 0;
    for (const cJSON *k = obj->child; k; k = k->next)
        if (!known_child(where, k->string))
            FAIL("unknown key \"%s%s%s\"", where, where[0] ? "." : "", k->string);
    return 0;
}

/* The sections checked so far (each is checked once: is an object, has no unknown key). */
typedef struct walk {
    const cJSON *root;
    char done[8][48];
    size_t n_done;
} walk;

/* The object of section SEC ("tools.read_file"), or NULL when absent; *rc on a problem. */
static const cJSON *section(walk *w, const char *sec, char *why, size_t why_len, int *rc)
{
    const cJSON *cur = w->root;
    *rc = 0;
    for (const char *p = sec; *p && cur;) {
        size_t n = strcspn(p, "."), at = (size_t)(p - sec);
        char name[48], parent[48], prefix[48];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        snprintf(parent, sizeof parent, "%.*s", (int)(at ? at - 1 : 0), sec);
        snprintf(prefix, sizeof prefix, "%.*s", (int)(at + n), sec);
        if (!(cur = get_obj(cur, name, parent, why, why_len, rc)))
            return NULL;
        bool seen = false;
        for (size_t i = 0; i < w->n_done && !seen; i++)
            seen = strcmp(w->done[i], prefix) == 0;
        if (!seen && w->n_done < 8) {
            snprintf(w->done[w->n_done++], sizeof w->done[0], "%s", prefix);
            if ((*rc = check_keys(cur, prefix, why, why_len)))
                return NULL;
        }
        p += n + (p[n] == '.');
    }
    return cur;
}

static int load_key(agent_settings *s, const cfg_key *k, const cJSON *o, const char *sec,
                    const char *leaf, const char *file, char *why, size_t why_len)
{
    switch (k->kind) {
    case K_STRING:
    case K_PATH: return get_str(o, leaf, sec, FIELD(s, k, char *), why, why_len);
    case K_BOOL: return get_bool(o, leaf, sec, FIELD(s, k, bool), why, why_len);
    case K_UINT:
        return get_unsigned(o, leaf, sec, k->min, k->max, FIELD(s, k, unsigned), why, why_len);
    case K_SIZE: return get_uint(o, leaf, sec, k->min, k->max, FIELD(s, k, size_t), why, why_len);
    case K_LIST:
        return get_list(o, leaf, sec, FIELD(s, k, char *), (size_t *)(void *)((char *)s + k->n_off),
                        why, why_len);
    case K_ENUM: {
        char *v = NULL;
        int rc = get_str(o, leaf, sec, &v, why, why_len);
        if (!rc && v && k->parse(v, FIELD(s, k, char))) {
            snprintf(why, why_len, "%s must be %s%s%s%s", k->path, k->choices,
                     k->echo ? ", not \"" : "", k->echo ? v : "", k->echo ? "\"" : "");
            rc = EXIT_CONFIG;
        }
        aip_free(v);
        return rc;
    }
    case K_OBJECT: return k->load(s, o, file, why, why_len);
    }
    return 0;
}

/* Every key of the table, in its order, from the parsed file. */
static int load_keys(agent_settings *s, const cJSON *root, const char *file, char *why,
                     size_t why_len)
{
    walk w = {.root = root};
    int rc = check_keys(root, "", why, why_len);
    for (size_t i = 0; i < N_KEYS && !rc; i++) {
        const cfg_key *k = &keys[i];
        const char *dot = strrchr(k->path, '.');
        char sec[48] = "";
        if (dot)
            snprintf(sec, sizeof sec, "%.*s", (int)(dot - k->path), k->path);
        const cJSON *o = dot ? section(&w, sec, why, why_len, &rc) : root;
        if (o)
            rc = load_key(s, k, o, sec, dot ? dot + 1 : k->path, file, why, why_len);
    }
    return rc;
}

static int load_tags(agent_settings *s, const cJSON *root, const char *file, char *why,
                     size_t why_len)
{
    (void)file;
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(root, "tags");
    if (!tags || cJSON_IsNull(tags))
        return 0;
    if (!cJSON_IsObject(tags))
        FAIL("\"tags\" must be an object");
    char *t = cJSON_PrintUnformatted(tags);
    set_str(&s->tags_json, t);
    cJSON_free(t);
    if (s->tags_json && strlen(s->tags_json) > AIP_AGENT_MAX_TAGS)
        FAIL("\"tags\" is %zu bytes as JSON, over the limit of %d", strlen(s->tags_json),
             AIP_AGENT_MAX_TAGS);
    return 0;
}

static void show_tags(aip_buf *b, const agent_settings *s)
{
    aip_buf_puts(b, s->tags_json ? s->tags_json : "{}");
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
    rc = load_keys(s, root, path, why, why_len);
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

/* The table's defaults; a key the library defaults (F_LIB) stays 0. */
static void set_defaults(agent_settings *s)
{
    memset(s, 0, sizeof *s);
    s->encoding = AIP_ENCODING_JSON;
    s->token_placement = AIP_AUTH_QUERY;
    for (size_t i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &keys[i];
        if (k->kind == K_BOOL)
            *FIELD(s, k, bool) = k->dflt != 0;
        else if (k->kind == K_UINT && !(k->flags & F_LIB))
            *FIELD(s, k, unsigned) = (unsigned)k->dflt;
    }
}

/* Flags over the environment over the file. */
static int apply_overrides(const agent_flags *f, agent_settings *s, char *why, size_t why_len)
{
    set_str(&s->server, getenv("AIP_SERVER"));
    if (getenv("AIP_TOKEN")) {
        set_str(&s->token, getenv("AIP_TOKEN"));
        aip_free(s->token_file);
        s->token_file = NULL;
    }
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
    int rc;
    if (f->encoding && (rc = parse_encoding(f->encoding, &s->encoding, why, why_len)))
        return rc;
    if (f->heartbeat_s >= 0) {
        if (f->heartbeat_s < 1 || f->heartbeat_s > 3600)
            FAIL("--heartbeat must be 1..3600 seconds");
        s->heartbeat_s = (unsigned)f->heartbeat_s;
    }
    return 0;
}

/* Reads a secret file's first line into *out; "" stays "" (the caller decides). */
static int read_secret(const char *path, char **out, char *why, size_t why_len)
{
    int rc = read_file(path, true, out, why, why_len);
    if (!rc)
        (*out)[strcspn(*out, "\r\n")] = 0;
    return rc;
}

static int check_server(agent_settings *s, char *why, size_t why_len)
{
    if (!s->server)
        FAIL("no server: give --server URL, AIP_SERVER or \"server\" in %s",
             s->config_file ? s->config_file : "the config file (--config)");
    if (strncmp(s->server, "ws://", 5) != 0 && strncmp(s->server, "wss://", 6) != 0)
        FAIL("server must be a ws:// or wss:// URL");
    const char *auth = strstr(s->server, "://") + 3;
    if (memchr(auth, '@', strcspn(auth, "/?#"))) /* never echoed: it may hold a password */
        FAIL("server: credentials in the URL (user:password@host) are not supported; give the "
             "key with token, token_file or ?token=");
    if (strchr(s->server, '#')) /* not echoed either: what follows it is unknown */
        FAIL("server has a fragment (#): WebSocket URLs take none");
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
    return 0;
}

static int check_tools(agent_settings *s, char *why, size_t why_len)
{
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
        int rc = read_secret(s->exec_api_key_file, &key, why, why_len);
        if (rc)
            return rc;
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

int settings_load(const agent_flags *f, agent_settings *s, char *why, size_t why_len)
{
    set_defaults(s);
    int rc;
    if (f->config_file) {
        s->config_file = aip_strdup(f->config_file);
        if ((rc = load_file(s, f->config_file, why, why_len)))
            return rc;
    }
    if ((rc = apply_overrides(f, s, why, why_len)))
        return rc;
    if (s->token_file) {
        char *tok;
        if ((rc = read_secret(s->token_file, &tok, why, why_len)))
            return rc;
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
    if ((rc = check_server(s, why, why_len)))
        return rc;
    return check_tools(s, why, why_len);
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

void put_kv_str(aip_buf *b, const char *k, const char *v, bool *first)
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

static void put_value(aip_buf *b, const agent_settings *s, const cfg_key *k)
{
    char num[64];
    switch (k->kind) {
    case K_STRING:
    case K_PATH: {
        const char *v = *CFIELD(s, k, char *);
        char url[1024];
        if (v && (k->flags & F_SECRET))
            v = "(set, not shown)";
        else if (v && (k->flags & F_URL))
            v = (aip_redact_url(v, url, sizeof url), url);
        v = v ? v : k->sdflt;
        if (v)
            aip_json_put_string(b, v, strlen(v));
        else
            aip_buf_puts(b, "null");
        return;
    }
    case K_BOOL: aip_buf_puts(b, *CFIELD(s, k, bool) ? "true" : "false"); return;
    case K_UINT:
    case K_SIZE: {
        double v =
            k->kind == K_UINT ? (double)*CFIELD(s, k, unsigned) : (double)*CFIELD(s, k, size_t);
        snprintf(num, sizeof num, "%.0f", v || !(k->flags & F_LIB) ? v : k->dflt);
        aip_buf_puts(b, num);
        return;
    }
    case K_ENUM: {
        const char *v = k->name(CFIELD(s, k, char));
        aip_json_put_string(b, v, strlen(v));
        return;
    }
    case K_LIST: {
        char *const *list = (char *const *)(const void *)((const char *)s + k->off);
        size_t n = *(const size_t *)(const void *)((const char *)s + k->n_off);
        aip_buf_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            aip_buf_puts(b, i ? "," : "");
            aip_json_put_string(b, list[i], strlen(list[i]));
        }
        aip_buf_puts(b, "]");
        return;
    }
    case K_OBJECT: k->show(b, s); return;
    }
}

/* Every key of the table by its dotted path, then the summary keys --check-config always had
 * (scripts and tests read them): execute_command_* , read_roots (a count), workers, max_frame,
 * mcp_servers. */
char *settings_describe(const agent_settings *s)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    for (size_t i = 0; i < N_KEYS; i++) {
        aip_buf_puts(&b, i ? "," : "{");
        aip_json_put_string(&b, keys[i].path, strlen(keys[i].path));
        aip_buf_putc(&b, ':');
        put_value(&b, s, &keys[i]);
    }
    bool first = false;
    put_kv_str(&b, "execute_command_policy", s->exec_policy, &first);
    put_kv_str(&b, "execute_command_api_key", s->exec_api_key ? "(set, not shown)" : NULL, &first);
    put_kv_str(&b, "execute_command_cgroup", s->exec_cgroup_dir, &first);
    aip_conn_config defaults;
    aip_conn_config_init(&defaults);
    char n[300];
    snprintf(n, sizeof n,
             ",\"execute_command\":%s,\"read_roots\":%zu,\"read_allow_hardlinks\":%s,"
             "\"workers\":%u,\"max_frame\":%zu,\"mcp_servers\":",
             s->exec_enabled ? "true" : "false", s->n_read_roots,
             s->read_allow_hardlinks ? "true" : "false", s->workers ? s->workers : 2,
             s->max_frame ? s->max_frame : defaults.max_frame_in);
    aip_buf_puts(&b, n);
    show_mcp(&b, s);
    aip_buf_puts(&b, "}");
    aip_buf_nul(&b);
    return (char *)aip_buf_steal(&b);
}

char *settings_schema(void)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    aip_buf_puts(&b, "[");
    for (size_t i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &keys[i];
        bool first = true;
        aip_buf_puts(&b, i ? ",\n" : "");
        put_kv_str(&b, "path", k->path, &first);
        put_kv_str(&b, "kind", kind_names[k->kind], &first);
        if (k->kind == K_UINT || k->kind == K_SIZE) {
            char num[128];
            snprintf(num, sizeof num, ",\"min\":%.0f,\"max\":%.0f", k->min, k->max);
            aip_buf_puts(&b, num);
        }
        if (k->unit)
            put_kv_str(&b, "unit", k->unit, &first);
        if (k->choices)
            put_kv_str(&b, "choices", k->choices, &first);
        put_kv_str(&b, "default", k->doc, &first);
        put_kv_str(&b, "help", k->help, &first);
        aip_buf_puts(&b, "}");
    }
    aip_buf_puts(&b, "]");
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
           "WebSocket pings (after 50 s of silence) keep the link busy where they pass end to "
           "end; where something on the path answers or ignores them, only the heartbeats do, "
           "and the link may be cut unless those timeouts are raised";
}
