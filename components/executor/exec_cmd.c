/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
/*
 * execute_command and get_system_info: UFO's LinuxAgent tools (namespace BashExecutor; UFO's
 * ufo/client/mcp/http_servers/linux_mcp_server.py), on our safety model.
 *
 * The contract is UFO's: a call that is well-formed is a *successful* tool call whatever
 * happens to the command, and its result says what happened — {success, exit_code, stdout,
 * stderr} (plus our `truncated`) when it ran, {success: false, error} when it was refused (key,
 * policy, cwd), could not start, or timed out ("Timeout after Ns."). Only a malformed call (no
 * string command, a timeout that is not an integer, ...) fails, so the rest of the batch is
 * skipped exactly when UFO's device would skip it. Checks run in UFO's order: parameters, key,
 * policy, timeout clamp, cwd.
 *
 * Design note
 * - The command line is split into argv here (no shell unless exec_shell), the program is
 *   resolved on the child's PATH before the allowlist check, and the resolved path is what
 *   runs: the check and the exec see the same file name.
 * - Running it is proc.c's: a per-command shepherd process that ends the command's whole
 *   process tree with it, a scrubbed environment (PATH and LANG only), stdin /dev/null, no
 *   inherited fds, output tails of max_output bytes, SIGTERM then SIGKILL 2 s later at the
 *   timeout (min of UFO's timeout, exec_timeout_ms and the command's deadline) or on cancel.
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "executor_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHILD_PATH "/usr/local/bin:/usr/bin:/bin"
#define MS         1000000ull

static const char *const child_path_dirs[] = {"/usr/local/bin", "/usr/bin", "/bin"};

/* ---- splitting a command line into argv (no shell) ---------------------------------------- */

typedef struct argv_list {
    char **v;
    size_t n, cap;
} argv_list;

static void argv_free(argv_list *a)
{
    for (size_t i = 0; i < a->n; i++)
        aip_free(a->v[i]);
    aip_free(a->v);
    memset(a, 0, sizeof *a);
}

static int argv_push(argv_list *a, aip_buf *w)
{
    if (a->n + 2 > a->cap) { /* +1 for the terminating NULL */
        size_t ncap = a->cap ? 2 * a->cap : 8;
        char **nv = aip_realloc(a->v, a->cap * sizeof *nv, ncap * sizeof *nv);
        if (!nv)
            return AIP_E_NOMEM;
        a->v = nv;
        a->cap = ncap;
    }
    char *s = exec_buf_take(w); /* NUL-terminates even an empty word ('') */
    if (!s)
        return AIP_E_NOMEM;
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
    return 0;
}

/* Shell syntax we refuse rather than pass on literally: a command written for a shell would
 * silently do something else here. */
static bool is_meta(char c, bool word_start)
{
    return strchr("|&;<>()$`*?[\n", c) || (word_start && (c == '~' || c == '#'));
}

/* Appends to w the next part of a word at *pp: a '...' or "..." quote, a backslash-escaped
 * character, or a plain one; leaves *pp after it. Returns 0, or -1 with the reason in why, or
 * AIP_E_NOMEM. */
static int put_word_part(const char **pp, aip_buf *w, char *why, size_t why_len)
{
    const char *p = *pp;
    char c = *p;
    int rc = 0;
    if (c == '\'') {
        const char *end = strchr(p + 1, '\'');
        if (!end) {
            snprintf(why, why_len, "unterminated ' quote");
            return -1;
        }
        rc = aip_buf_append(w, p + 1, (size_t)(end - p - 1));
        p = end + 1;
    } else if (c == '"') {
        for (p++; *p && *p != '"' && !rc; p++) {
            if (*p == '$' || *p == '`') {
                snprintf(why, why_len,
                         "'%c' inside \"...\" is shell expansion, which needs exec_shell "
                         "(off); use '...' to pass it literally",
                         *p);
                rc = -1;
            } else if (*p == '\\' && p[1] && strchr("\"\\$`", p[1])) {
                rc = aip_buf_putc(w, *++p);
            } else {
                rc = aip_buf_putc(w, *p);
            }
        }
        if (!rc && *p != '"') {
            snprintf(why, why_len, "unterminated \" quote");
            rc = -1;
        }
        if (!rc)
            p++;
    } else if (c == '\\') {
        if (!p[1]) {
            snprintf(why, why_len, "trailing backslash");
            return -1;
        }
        rc = aip_buf_putc(w, p[1]);
        p += 2;
    } else {
        rc = aip_buf_putc(w, c);
        p++;
    }
    *pp = p;
    return rc;
}

/* Splits cmd on blanks with '...', "..." and backslash quoting. first_only stops after the
 * first word and accepts any shell syntax after it (the shell will parse it). Returns 0, or
 * -1 with the reason in why, or AIP_E_NOMEM. */
static int split_command(const char *cmd, bool first_only, argv_list *out, char *why,
                         size_t why_len)
{
    aip_buf w;
    aip_buf_init(&w, 0);
    bool in_word = false;
    int rc = 0;
    const char *p = cmd;
    while (*p && !rc) {
        char c = *p;
        if (c == ' ' || c == '\t') {
            if (in_word) {
                rc = argv_push(out, &w);
                in_word = false;
                if (first_only)
                    break;
            }
            p++;
            continue;
        }
        if (is_meta(c, !in_word)) {
            if (first_only && in_word)
                break; /* "ls;x": the shell ends the word here */
            if (first_only)
                snprintf(why, why_len, "the command does not start with a program name");
            else
                snprintf(why, why_len,
                         "'%s' is shell syntax, which needs exec_shell (off); quote it to pass "
                         "it literally",
                         c == '\n' ? "\\n" : (char[]){c, 0});
            rc = -1;
            break;
        }
        in_word = true;
        rc = put_word_part(&p, &w, why, why_len);
    }
    if (!rc && in_word && !(first_only && out->n))
        rc = argv_push(out, &w);
    aip_buf_free(&w);
    if (!rc && out->n == 0) {
        snprintf(why, why_len, "empty command");
        rc = -1;
    }
    return rc;
}

/* ---- allowlist ----------------------------------------------------------------------------- */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Is the directory part of path one of the child's PATH directories? */
static bool in_child_path(const char *path)
{
    const char *b = base_name(path);
    size_t dl = (size_t)(b - path);
    if (dl < 2)
        return false;
    dl--; /* without the slash */
    for (size_t i = 0; i < sizeof child_path_dirs / sizeof child_path_dirs[0]; i++)
        if (strlen(child_path_dirs[i]) == dl && strncmp(child_path_dirs[i], path, dl) == 0)
            return true;
    return false;
}

/* Resolves a bare program name on the child's PATH; a name with a '/' is taken as it is.
 * Returns an aip_malloc'd path, or NULL (not found / out of memory). */
static char *resolve_program(const char *prog)
{
    if (strchr(prog, '/'))
        return aip_strdup(prog);
    for (size_t i = 0; i < sizeof child_path_dirs / sizeof child_path_dirs[0]; i++) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/%s", child_path_dirs[i], prog);
        if (n > 0 && (size_t)n < sizeof path && access(path, X_OK) == 0)
            return aip_strdup(path);
    }
    return NULL;
}

/* resolved is NULL for a word that is no file on PATH (in a shell: a builtin such as exit);
 * only a bare entry of that very name allows it. */
static bool allowed(const aip_executor *e, const char *prog, const char *resolved)
{
    for (size_t i = 0; i < e->n_exec_allow; i++) {
        const char *a = e->exec_allow[i];
        if (strcmp(a, "*") == 0)
            return true;
        if (!resolved) {
            if (strcmp(a, prog) == 0)
                return true;
        } else if (strchr(a, '/')) {
            if (strcmp(a, prog) == 0 || strcmp(a, resolved) == 0)
                return true;
        } else if (strcmp(base_name(resolved), a) == 0 && in_child_path(resolved)) {
            return true;
        }
    }
    return false;
}

/* ---- UFO's read-only policy (exec_policy "ufo-readonly") ----------------------------------- */

const char *const exec_ufo_readonly[] = {
    "ls",         "pwd",      "cat",    "head", "tail", "grep",     "find",    "which",
    "whereis",    "wc",       "sort",   "uniq", "cut",  "tr",       "uname",   "hostname",
    "whoami",     "id",       "uptime", "free", "df",   "du",       "ps",      "ping",
    "traceroute", "nslookup", "dig",    "host", "file", "stat",     "md5sum",  "sha256sum",
    "python3",    "python",   "echo",   "date", "cal",  "basename", "dirname", "realpath",
    "diff",       "test",     NULL};

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* UFO's _DANGEROUS_PATTERNS, on the raw command text (a regex's \b after -exec/-execdir). */
static const char *ufo_dangerous(const char *cmd, size_t len)
{
    static const char *const subs[] = {"$(", "${", "/dev/tcp/", "/dev/udp/"};
    static const char *const flags[] = {"-exec", "-execdir"};
    for (size_t i = 0; i < len; i++) {
        char c = cmd[i];
        if (strchr(";|&`", c) && c)
            return "shell metacharacters (; | & `)";
        if (c == '<' || c == '>')
            return "I/O redirection (< >)";
        if (c == '\n' || c == '\r' || c == 0)
            return "a newline or NUL";
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strstr(cmd, subs[i]))
            return subs[i][0] == '$' ? "command substitution ($( ${)" : "/dev/tcp or /dev/udp";
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        size_t fl = strlen(flags[i]);
        for (const char *p = strstr(cmd, flags[i]); p; p = strstr(p + 1, flags[i]))
            if (!word_char(p[fl]))
                return "find -exec/-execdir";
    }
    return NULL;
}

/* UFO's _ARGUMENT_POLICIES: python only reports its version; find writes and runs nothing. */
static const char *ufo_args_refused(char *const *argv, size_t argc)
{
    const char *prog = base_name(argv[0]);
    if (strcmp(prog, "python") == 0 || strcmp(prog, "python3") == 0) {
        if (argc < 2)
            return "python without arguments (only --version or -V are allowed)";
        for (size_t i = 1; i < argc; i++)
            if (strcmp(argv[i], "--version") != 0 && strcmp(argv[i], "-V") != 0)
                return "python runs only with --version or -V";
    } else if (strcmp(prog, "find") == 0) {
        static const char *const blocked[] = {"-exec",   "-execdir", "-delete",  "-ok",  "-okdir",
                                              "-fprint", "-fprint0", "-fprintf", "-fls", NULL};
        for (size_t i = 1; i < argc; i++)
            for (size_t k = 0; blocked[k]; k++)
                if (strcmp(argv[i], blocked[k]) == 0)
                    return "find with an action that runs or writes (-exec, -delete, -fprint...)";
    }
    return NULL;
}

/* ---- results ------------------------------------------------------------------------------- */

/* UFO's {"success": false, "error": ...} (a successful tool call). Returns 0, or -1 with
 * *error set on out of memory. */
static int ufo_error(char **result, char **error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ufo_error(char **result, char **error, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = 0;
    va_end(ap);
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_buf_puts(&b, "{\"success\":false,\"error\":");
    if (!rc)
        rc = exec_json_put_text(&b, msg, strlen(msg));
    if (!rc)
        rc = aip_buf_putc(&b, '}');
    return exec_finish_result(rc, &b, result, error);
}

static int build_result(const exec_run *rs, int exit_code, char **result)
{
    bool truncated = false;
    size_t on = 0, en = 0;
    const char *o = exec_tail_view(&rs->so, &on, &truncated);
    const char *er = exec_tail_view(&rs->se, &en, &truncated);
    aip_buf b;
    aip_buf_init(&b, 0);
    char num[64];
    snprintf(num, sizeof num,
             "{\"success\":%s,\"exit_code\":%d,\"stdout\":", exit_code == 0 ? "true" : "false",
             exit_code);
    int rc = aip_buf_puts(&b, num);
    if (!rc)
        rc = exec_json_put_text(&b, o, on);
    if (!rc)
        rc = aip_buf_puts(&b, ",\"stderr\":");
    if (!rc)
        rc = exec_json_put_text(&b, er, en);
    if (!rc)
        rc = aip_buf_puts(&b, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    if (rc || !(*result = exec_buf_take(&b))) {
        aip_buf_free(&b);
        return AIP_E_NOMEM;
    }
    return 0;
}

/* Builds argv (or the shell's) and checks the policy. Returns 0 (*path set), -1 with the
 * refusal in why, or AIP_E_NOMEM. */
static int prepare(const aip_executor *e, const char *command, argv_list *av, char **path,
                   char *why, size_t why_len)
{
    if (e->exec_ufo_policy) {
        const char *bad = ufo_dangerous(command, strlen(command));
        if (bad) {
            snprintf(why, why_len, "%s (UFO's dangerous patterns)", bad);
            return -1;
        }
    }
    int rc = split_command(command, e->exec_shell, av, why, why_len);
    if (rc == AIP_E_NOMEM)
        return rc;
    if (rc)
        return -1;
    const char *prog = av->v[0];
    char *resolved = resolve_program(prog);
    if (!resolved && !e->exec_shell) {
        snprintf(why, why_len, "'%.200s' was not found on PATH (%s)", prog, CHILD_PATH);
        return -1;
    }
    if (!allowed(e, prog, resolved)) {
        snprintf(why, why_len, "'%.200s' is not on the allowlist", prog);
        aip_free(resolved);
        return -1;
    }
    const char *arg_why = e->exec_ufo_policy ? ufo_args_refused(av->v, av->n) : NULL;
    if (arg_why) {
        snprintf(why, why_len, "%s (UFO's argument policy)", arg_why);
        aip_free(resolved);
        return -1;
    }
    if (!e->exec_shell) {
        *path = resolved;
        return 0;
    }
    aip_free(resolved);
    argv_free(av);
    aip_buf w;
    aip_buf_init(&w, 0);
    const char *sh[] = {"/bin/sh", "-c", command};
    for (size_t i = 0; i < 3; i++) {
        if (aip_buf_puts(&w, sh[i]) || argv_push(av, &w)) {
            aip_buf_free(&w);
            return AIP_E_NOMEM;
        }
    }
    return (*path = aip_strdup("/bin/sh")) ? 0 : AIP_E_NOMEM;
}

/* ---- parameters ---------------------------------------------------------------------------- */

#define UFO_DEFAULT_TIMEOUT_S 30
#define UFO_MIN_TIMEOUT_S     1
#define UFO_MAX_TIMEOUT_S     120

typedef struct exec_params {
    const char *command, *cwd, *api_key; /* borrowed from the parsed object */
    long long timeout_s;                 /* clamped to 1..120 */
} exec_params;

/* An optional string parameter: absent or null -> NULL. */
static int opt_string(const cJSON *o, const char *key, const char **out, char **error)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return exec_fail(error, "parameters.%s must be a string", key);
    *out = v->valuestring;
    return 0;
}

/* UFO's `timeout: int = 30` (validated as pydantic does in lax mode: an integer, a float with
 * no fraction, or a string of digits), then min(max(timeout, 1), 120). */
static int timeout_param(const cJSON *o, long long *out, char **error)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "timeout");
    double d = UFO_DEFAULT_TIMEOUT_S;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
        if (!isfinite(d) || d != floor(d))
            return exec_fail(error, "parameters.timeout must be an integer (seconds), got %g", d);
    } else if (cJSON_IsString(v)) {
        const char *p = v->valuestring;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(p, &end, 10);
        while (end && (*end == ' ' || *end == '\t' || *end == '\n'))
            end++;
        if (!*p || end == p || !end || *end || (errno && errno != ERANGE))
            return exec_fail(error,
                             "parameters.timeout must be an integer (seconds), got \"%.40s\"", p);
        d = (double)n;
    } else if (v) {
        return exec_fail(error, "parameters.timeout must be an integer (seconds)");
    }
    *out = d < UFO_MIN_TIMEOUT_S   ? UFO_MIN_TIMEOUT_S
           : d > UFO_MAX_TIMEOUT_S ? UFO_MAX_TIMEOUT_S
                                   : (long long)d;
    return 0;
}

static int exec_params_parse(const aip_tool_call *call, cJSON **obj, exec_params *p, char **error)
{
    const char *text = call->parameters ? call->parameters : "{}";
    cJSON *o = cJSON_ParseWithLength(text, strlen(text));
    *obj = o;
    if (!cJSON_IsObject(o))
        return exec_fail(error, "parameters must be a JSON object");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "command");
    if (!c || cJSON_IsNull(c))
        return exec_fail(error, "parameters.command is required");
    if (!cJSON_IsString(c))
        return exec_fail(error, "parameters.command must be a string");
    p->command = c->valuestring;
    if (timeout_param(o, &p->timeout_s, error) || opt_string(o, "cwd", &p->cwd, error) ||
        opt_string(o, "api_key", &p->api_key, error))
        return -1;
    return 0;
}

#define AUTH_FAILED "Authentication failed. Invalid or missing API key."

/* UFO's _validate_cwd: the path resolved (relative to the agent's directory), a directory. */
static int resolve_cwd(const char *cwd, char **out)
{
    *out = NULL;
    if (!cwd)
        return 0;
    char *real = cwd[0] ? realpath(cwd, NULL) : NULL;
    struct stat st;
    if (!real || stat(real, &st) || !S_ISDIR(st.st_mode)) {
        free(real); /* realpath: malloc */
        return -1;
    }
    *out = aip_strdup(real);
    free(real);
    return *out ? 0 : AIP_E_NOMEM;
}

/* ---- execute_command ------------------------------------------------------------------------ */

int exec_tool_execute_command(const aip_tool_call *call, void *user, char **result, char **error)
{
    aip_executor *e = user;
    cJSON *o = NULL;
    exec_params p = {0};
    argv_list av = {0};
    char *path = NULL, *cwd = NULL;
    exec_run rs = {0};
    char why[512] = "";
    int rc = exec_params_parse(call, &o, &p, error);
    if (rc)
        goto out;
    if (!exec_api_key_ok(e, p.api_key)) {
        rc = ufo_error(result, error, AUTH_FAILED);
        goto out;
    }
    if ((rc = prepare(e, p.command, &av, &path, why, sizeof why))) {
        rc = rc == AIP_E_NOMEM
                 ? exec_fail(error, "out of memory")
                 : ufo_error(result, error, "Command blocked by security policy: %s", why);
        goto out;
    }
    if ((rc = resolve_cwd(p.cwd, &cwd))) {
        rc = rc == AIP_E_NOMEM ? exec_fail(error, "out of memory")
                               : ufo_error(result, error,
                                           "Invalid working directory: Working directory does "
                                           "not exist: %.300s",
                                           p.cwd);
        goto out;
    }

    /* UFO's clamped timeout, never above the operator's limit nor past the call's deadline */
    uint64_t start = aip_now_ns(NULL);
    uint64_t limit_ms = (uint64_t)p.timeout_s * 1000u;
    if (e->exec_timeout_ms < limit_ms)
        limit_ms = e->exec_timeout_ms;
    uint64_t kill_at = start + limit_ms * MS;
    if (call->deadline_ns < kill_at)
        kill_at = call->deadline_ns;
    int err_no = exec_run_to_end(e, call, path, av.v, cwd, kill_at, &rs);
    if (err_no) {
        rc = ufo_error(result, error, "cannot run '%.200s': %s", av.v[0], strerror(err_no));
        goto out;
    }
    int code = exec_run_exit_code(&rs);
    uint64_t limit_ran_ms = (kill_at - start + MS / 2) / MS; /* whole ms, as UFO's whole s */
    if (rs.cancelled)
        rc = exec_fail(error, "cancelled: the executor is stopping (exit_code %d)", code);
    else if (rs.timed_out)
        rc = ufo_error(result, error, "Timeout after %gs.", (double)limit_ran_ms / 1000.0);
    else if (!rs.reaped)
        rc = ufo_error(result, error, "exit status unknown (the process ignores SIGCHLD)");
    else if (build_result(&rs, code, result))
        rc = exec_fail(error, "out of memory");
out:
    exec_run_free(&rs);
    aip_free(cwd);
    aip_free(path);
    argv_free(&av);
    cJSON_Delete(o);
    return rc;
}

/* ---- get_system_info ------------------------------------------------------------------------ */

/* Appends s[0..n) without leading and trailing whitespace (Python's str.strip()). */
static int put_stripped(aip_buf *b, const char *s, size_t n)
{
    while (n && strchr(" \t\n\r\v\f", s[0]))
        s++, n--;
    while (n && strchr(" \t\n\r\v\f", s[n - 1]))
        n--;
    return exec_json_put_text(b, s, n);
}

int exec_tool_get_system_info(const aip_tool_call *call, void *user, char **result, char **error)
{
    aip_executor *e = user;
    const char *text = call->parameters ? call->parameters : "{}";
    cJSON *o = cJSON_ParseWithLength(text, strlen(text));
    const char *key = NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return exec_fail(error, "parameters must be a JSON object");
    }
    if (opt_string(o, "api_key", &key, error)) {
        cJSON_Delete(o);
        return -1;
    }
    bool key_ok = exec_api_key_ok(e, key);
    cJSON_Delete(o);
    if (!key_ok) /* UFO's shape for this tool: no "success" key */
        return (*result = aip_strdup("{\"error\":\"" AUTH_FAILED "\"}"))
                   ? 0
                   : exec_fail(error, "out of memory");

    /* UFO's four fixed argvs: no input reaches them, so no allowlist and no shell */
    static const struct {
        const char *key, *prog, *arg;
    } cmds[] = {{"uname", "uname", "-a"},
                {"uptime", "uptime", NULL},
                {"memory", "free", "-h"},
                {"disk", "df", "-h"}};
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_buf_putc(&b, '{');
    for (size_t i = 0; !rc && i < sizeof cmds / sizeof cmds[0]; i++) {
        if (aip_tool_call_cancelled(call)) {
            aip_buf_free(&b);
            return exec_fail(error, "cancelled: the executor is stopping");
        }
        rc = aip_buf_puts(&b, i ? ",\"" : "\"");
        if (!rc)
            rc = aip_buf_puts(&b, cmds[i].key);
        if (!rc)
            rc = aip_buf_puts(&b, "\":");
        if (rc)
            break;
        char *path = resolve_program(cmds[i].prog);
        char *argv[] = {(char *)cmds[i].prog, (char *)cmds[i].arg, NULL};
        exec_run rs = {0};
        uint64_t kill_at = aip_now_ns(NULL) + (uint64_t)e->exec_timeout_ms * MS;
        if (call->deadline_ns < kill_at)
            kill_at = call->deadline_ns;
        int err_no = path ? exec_run_to_end(e, call, path, argv, NULL, kill_at, &rs) : ENOENT;
        char msg[300] = "";
        if (err_no)
            snprintf(msg, sizeof msg, "Error: cannot run '%s': %s", cmds[i].prog, strerror(err_no));
        else if (rs.timed_out || rs.cancelled)
            snprintf(msg, sizeof msg, "Error: '%s' did not finish in time", cmds[i].prog);
        if (msg[0]) {
            rc = exec_json_put_text(&b, msg, strlen(msg));
        } else {
            size_t n = 0;
            bool trunc = false;
            const char *out = exec_tail_view(&rs.so, &n, &trunc);
            rc = put_stripped(&b, out, n);
        }
        exec_run_free(&rs);
        aip_free(path);
    }
    if (!rc)
        rc = aip_buf_putc(&b, '}');
    return exec_finish_result(rc, &b, result, error);
}
