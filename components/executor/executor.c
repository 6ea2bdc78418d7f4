#define _GNU_SOURCE /* pipe2 */
/*
 * The executor (see aip/executor.h): a bounded queue of command batches, a fixed pool of
 * worker threads, a tool registry, and the batch semantics of PROTOCOL.md §3.4.
 *
 * Which thread does what
 * - Any thread: submit (queue push), register (registry append), features_json (registry
 *   read). All under `lock`, held only for pointer work — never across a tool or done().
 * - Worker threads: pop a batch, run its actions in order, call done() exactly once, repeat.
 *   Tools and done() run with no executor lock held.
 * - destroy (one caller, not a worker): sets `stopping` and `cancelled` under `lock`,
 *   broadcasts both condition variables, writes the cancel pipe (execute_command polls it),
 *   then joins the workers. The sleep tool checks `cancelled` and waits on `wake` under
 *   `lock`, so that broadcast cannot slip between its check and its wait.
 *
 * Deadlines: each action gets its own, default_timeout_ms from its start. A worker cannot
 * preempt a tool, so the deadline is advisory to the tool and enforced on what it returns:
 * a success that comes back late is discarded. A tool that ignores both its deadline and the
 * cancel flag holds its worker (and destroy) for as long as it runs.
 *
 * Invariants
 * - Every batch accepted by submit is in the queue or owned by exactly one worker until that
 *   worker has called its done(); workers exit only once `stopping` is set AND the queue is
 *   empty, so every accepted batch is answered, also across destroy (with `cancelled` set, a
 *   queued batch's first action fails at once and the rest are skipped).
 * - Rejected submissions (AIP_E_FULL/_SHUTDOWN/_INVAL) free the command and never call done().
 * - The registry (see below) is read and changed under `lock` only; a running call holds a
 *   reference to its entry, so replacing or removing tools never frees one in use.
 * - The error text we put in a Result is always valid UTF-8 and its `result` always validated
 *   JSON, so the encoder never refuses a command_results frame we built (ids are the
 *   decoder's, copied as they came).
 *
 * The registry
 * - `tools` is an array of pointers to entries, in registration order. Each entry is
 *   immutable once inserted and carries `refs`, counted under `lock`: one reference for being
 *   in the array, one for every call running it (tool_lookup takes it, tool_release drops it).
 *   An entry leaves the array only under `lock` (aip_executor_set_tools replacing its
 *   provider's set, or executor_free); whoever drops the last reference frees it, outside the
 *   lock. So a call never sees its strings or user data freed while it runs, and a refresh
 *   frees the old set as soon as the last call using it returns: memory stays bounded by the
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

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SKIPPED_TEXT     "Skipped due to previous failure (early_exit=True)."
#define ERROR_MAX        4096 /* bytes of a tool's error text kept (the head: the reason) */
#define MAX_WORKERS      256
#define DEFAULT_WORKERS  2
#define DEFAULT_QUEUED   64
#define DEFAULT_TIMEOUT  60000
#define DEFAULT_OUTPUT   65536
#define DEFAULT_READ_MAX 65536
/* A Result sits at depth 3 of a command_results frame (object, action_results, Result). */
#define RESULT_MAX_DEPTH (AIP_JSON_MAX_DEPTH - 3)

/* ---- small helpers shared with the tools ------------------------------------------------- */

int exec_utf8_sanitize(aip_buf *out, const char *s, size_t n)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    size_t run = 0, i = 0;
    int rc = 0;
    while (i < n && !rc) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (c != 0 && l && l <= n - i && (l == 1 || aip_utf8_valid(s + i, l, NULL))) {
            i += l;
            continue;
        }
        rc = aip_buf_append(out, s + run, i - run);
        if (!rc)
            rc = aip_buf_append(out, fffd, 3);
        run = ++i;
    }
    return rc ? rc : aip_buf_append(out, s + run, n - run);
}

int exec_json_put_text(aip_buf *out, const char *s, size_t n)
{
    aip_buf t;
    aip_buf_init(&t, 0);
    int rc = exec_utf8_sanitize(&t, s, n);
    if (!rc)
        rc = aip_json_put_string(out, t.data ? (const char *)t.data : "", t.len);
    aip_buf_free(&t);
    return rc;
}

char *exec_buf_take(aip_buf *b)
{
    if (aip_buf_nul(b)) {
        aip_buf_free(b);
        return NULL;
    }
    return (char *)aip_buf_steal(b);
}

int exec_finish_result(int rc, aip_buf *b, char **result, char **error)
{
    if (rc || !(*result = exec_buf_take(b))) {
        aip_buf_free(b);
        return exec_fail(error, "out of memory");
    }
    return 0;
}

/* A copy of s[0..n) as valid UTF-8, at most max bytes (cut at a character boundary). */
static char *utf8_copy(const char *s, size_t n, size_t max)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    if (exec_utf8_sanitize(&b, s, n)) {
        aip_buf_free(&b);
        return NULL;
    }
    if (b.len > max) {
        size_t cut = max;
        while (cut > 0 && (b.data[cut] & 0xC0) == 0x80)
            cut--;
        b.len = cut;
    }
    return exec_buf_take(&b);
}

/* Formats a reason and returns it as valid UTF-8 (aip_malloc'd). */
static char *vformat_reason(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vformat_reason(const char *fmt, va_list ap)
{
    char buf[1024];
    if (vsnprintf(buf, sizeof buf, fmt, ap) < 0)
        buf[0] = 0;
    return utf8_copy(buf, strlen(buf), sizeof buf);
}

void exec_set_error(char **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    *error = vformat_reason(fmt, ap);
    va_end(ap);
}

int exec_sleep_until(aip_executor *e, uint64_t deadline_ns)
{
    int rc = 0;
    aip_mutex_lock(&e->lock);
    for (;;) {
        if (atomic_load(&e->cancelled)) {
            rc = AIP_E_CANCELLED;
            break;
        }
        if (aip_now_ns(NULL) >= deadline_ns)
            break;
        aip_cond_wait_until(&e->wake, &e->lock, deadline_ns);
    }
    aip_mutex_unlock(&e->lock);
    return rc;
}

/* ---- results ----------------------------------------------------------------------------- */

static void result_set(aip_result *r, aip_result_status st, char *error)
{
    r->status = st;
    aip_free(r->error);
    r->error = error;
}

/* Fails r with a formatted reason. */
static void result_fail(aip_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result_fail(aip_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *reason = vformat_reason(fmt, ap);
    va_end(ap);
    result_set(r, AIP_RESULT_FAILURE, reason);
}

/* Checks a tool's result text and caps it. On success *text is the (possibly replaced)
 * text to keep; otherwise it is freed, set to NULL, and why says what was wrong. */
static int result_check(const aip_executor *e, char **text, char *why, size_t why_len)
{
    size_t len = strlen(*text);
    int rc = 0;
    if (len > e->hard_cap) {
        snprintf(why, why_len, "tool output too large (%zu bytes, limit %zu)", len, e->hard_cap);
        rc = AIP_E_TOO_LARGE;
        goto out;
    }
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = e->hard_cap + 1;
    lim.max_depth = RESULT_MAX_DEPTH;
    char vwhy[160] = "";
    if ((rc = aip_json_validate(*text, len, AIP_JSON_ANY, &lim, vwhy, sizeof vwhy))) {
        snprintf(why, why_len, "tool returned invalid JSON: %s", vwhy);
        goto out;
    }
    const char *p = *text;
    size_t n = len;
    aip_json_trim(&p, &n);
    if (*p != '"' || n <= e->max_output)
        return 0; /* only text can lose its head; other values fit the hard cap */
    cJSON *s = cJSON_ParseWithLength(p, n);
    if (!cJSON_IsString(s)) {
        cJSON_Delete(s);
        snprintf(why, why_len, "out of memory");
        rc = AIP_E_NOMEM;
        goto out;
    }
    const char *v = s->valuestring;
    size_t vl = strlen(v);
    if (vl > e->max_output) {
        /* keep the tail — the end of a log is where the error is — from a character start */
        const char *t = v + (vl - e->max_output);
        while (((unsigned char)*t & 0xC0) == 0x80)
            t++;
        aip_buf b;
        aip_buf_init(&b, 0);
        rc = aip_json_put_string(&b, t, strlen(t));
        char *capped = rc ? NULL : exec_buf_take(&b);
        aip_buf_free(&b);
        if (!capped) {
            cJSON_Delete(s);
            snprintf(why, why_len, "out of memory");
            rc = AIP_E_NOMEM;
            goto out;
        }
        aip_free(*text);
        *text = capped;
    }
    cJSON_Delete(s);
    return 0;
out:
    aip_free(*text);
    *text = NULL;
    return rc;
}

/* ---- running one action ------------------------------------------------------------------ */

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

static void tool_free(exec_tool *t);

/* Drops one reference; the last one frees the entry (outside the lock). */
static void tool_release(aip_executor *e, exec_tool *t)
{
    aip_mutex_lock(&e->lock);
    bool last = --t->refs == 0;
    aip_mutex_unlock(&e->lock);
    if (last)
        tool_free(t);
}

/* UFO's command2tool: the exact key, else (no type given) data_collection then action; unlike
 * UFO, a typed action whose key is missing falls back to the name under the other type. Only
 * a key's winner is found. Returns the entry with a reference taken (tool_release it), or NULL. */
static exec_tool *tool_lookup(aip_executor *e, const char *name, aip_tool_type type)
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

static void run_tool(aip_executor *e, const exec_tool *t, aip_command *c, aip_result *r);

static void run_action(aip_executor *e, aip_command *c, aip_result *r)
{
    if (atomic_load(&e->cancelled)) {
        result_fail(r, "not run: the executor is shutting down");
        return;
    }
    if (c->invalid) {
        result_set(r, AIP_RESULT_FAILURE, utf8_copy(c->invalid, strlen(c->invalid), ERROR_MAX));
        return;
    }
    if (!c->tool_name) {
        result_fail(r, "invalid action: missing tool_name");
        return;
    }
    exec_tool *t = tool_lookup(e, c->tool_name, c->tool_type);
    if (!t) {
        result_fail(r, "unknown tool '%.200s'", c->tool_name);
        return;
    }
    run_tool(e, t, c, r);
    tool_release(e, t);
}

/* Runs one action with its tool (a reference held by the caller). */
static void run_tool(aip_executor *e, const exec_tool *t, aip_command *c, aip_result *r)
{
    aip_free(r->ns);
    r->ns = aip_strdup(t->ns); /* NULL on out of memory: the Result is still valid */
    uint64_t start = aip_now_ns(NULL);
    aip_tool_call call = {
        .tool_name = c->tool_name,
        .parameters = c->parameters,
        .call_id = c->call_id,
        .deadline_ns = aip_deadline_ms(start, e->default_timeout_ms),
        .cancelled = &e->cancelled,
    };
    char *out = NULL, *err = NULL;
    int rc = t->fn(&call, t->user, &out, &err);
    bool late = !t->own_deadline && aip_now_ns(NULL) > call.deadline_ns;
    char why[256];

    if (rc == 0) {
        aip_free(err);
        if (late) {
            aip_free(out);
            result_fail(r, "timed out after %u ms", e->default_timeout_ms);
            return;
        }
        if (out && result_check(e, &out, why, sizeof why)) {
            result_fail(r, "%s", why);
            return;
        }
        r->result = out;
        result_set(r, AIP_RESULT_SUCCESS, NULL);
        return;
    }

    /* Failure: the tool's own reason (it knows best, also when late), else a generic one. */
    if (err) {
        result_set(r, AIP_RESULT_FAILURE, utf8_copy(err, strlen(err), ERROR_MAX));
        aip_free(err);
    } else if (late) {
        result_fail(r, "timed out after %u ms", e->default_timeout_ms);
    } else {
        result_fail(r, "tool '%.200s' failed without giving a reason", c->tool_name);
    }
    if (out && result_check(e, &out, why, sizeof why))
        aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT, "tool '%.200s': failure result dropped: %s",
                c->tool_name, why);
    r->result = out;
}

/* Runs one batch and hands its answer to done(). Consumes b. */
static void run_batch(aip_executor *e, exec_batch *b)
{
    aip_msg *cmd = &b->cmd;
    aip_msg res;
    aip_msg_init(&res, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, cmd->status);
    res.session_id = cmd->session_id;
    cmd->session_id = NULL;
    res.prev_response_id = cmd->response_id;
    cmd->response_id = NULL;
    res.has_action_results = true; /* an empty batch is answered with an empty list */

    bool failed = false;
    for (size_t i = 0; i < cmd->n_actions; i++) {
        aip_command *c = &cmd->actions[i];
        aip_result *r = aip_msg_add_result(&res);
        if (!r) {
            /* Out of memory: answer with what we have rather than stay silent (§3.4). */
            aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT,
                    "out of memory: batch answered with %zu of %zu results", i, cmd->n_actions);
            break;
        }
        r->call_id = c->call_id;
        c->call_id = NULL;
        if (failed) {
            result_set(r, AIP_RESULT_SKIPPED, aip_strdup(SKIPPED_TEXT));
            continue;
        }
        run_action(e, c, r);
        if (r->status != AIP_RESULT_SUCCESS)
            failed = true;
    }
    aip_msg_clear(cmd);
    b->done(&res, b->user);
    aip_free(b);
}

static void *worker_main(void *arg)
{
    aip_executor *e = arg;
    for (;;) {
        aip_mutex_lock(&e->lock);
        while (!e->head && !e->stopping)
            aip_cond_wait(&e->work, &e->lock);
        exec_batch *b = e->head;
        if (b) {
            e->head = b->next;
            if (!e->head)
                e->tail = NULL;
            e->queued--;
        }
        aip_mutex_unlock(&e->lock);
        if (!b)
            return NULL; /* stopping and drained */
        run_batch(e, b);
    }
}

/* ---- create / destroy -------------------------------------------------------------------- */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        aip_free(v[i]);
    aip_free(v);
}

static void stop_workers(aip_executor *e)
{
    aip_mutex_lock(&e->lock);
    e->stopping = true;
    atomic_store(&e->cancelled, 1);
    aip_cond_broadcast(&e->work);
    aip_cond_broadcast(&e->wake);
    aip_mutex_unlock(&e->lock);
    if (e->cancel_pipe[1] >= 0) {
        ssize_t w;
        do
            w = write(e->cancel_pipe[1], "x", 1);
        while (w < 0 && errno == EINTR);
    }
    for (unsigned i = 0; i < e->n_threads; i++)
        aip_thread_join(&e->threads[i]);
    e->n_threads = 0;
}

static void tool_free(exec_tool *t)
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

static void executor_free(aip_executor *e)
{
    for (size_t i = 0; i < e->n_tools; i++)
        tool_free(e->tools[i]); /* the workers are joined: no call holds a reference */
    aip_free(e->tools);
    if (e->api_key) {
        explicit_bzero(e->api_key, strlen(e->api_key));
        aip_free(e->api_key);
    }
    aip_free(e->exec_cgroup);
    free_strv(e->read_roots, e->n_read_roots);
    free_strv(e->exec_allow, e->n_exec_allow);
    aip_free(e->threads);
    for (int i = 0; i < 2; i++)
        if (e->cancel_pipe[i] >= 0)
            close(e->cancel_pipe[i]);
    aip_cond_destroy(&e->wake);
    aip_cond_destroy(&e->work);
    aip_mutex_destroy(&e->lock);
    aip_free(e);
}

static int copy_config(aip_executor *e, const aip_executor_config *c)
{
    e->max_queued = c->max_queued ? c->max_queued : DEFAULT_QUEUED;
    e->default_timeout_ms = c->default_timeout_ms ? c->default_timeout_ms : DEFAULT_TIMEOUT;
    e->max_output = c->max_output ? c->max_output : DEFAULT_OUTPUT;
    e->read_max_bytes = c->read_max_bytes ? c->read_max_bytes : DEFAULT_READ_MAX;
    e->read_allow_hardlinks = c->read_allow_hardlinks;
    e->exec_enabled = c->exec_enabled;
    e->exec_shell = c->exec_shell;
    e->exec_timeout_ms = c->exec_timeout_ms ? c->exec_timeout_ms : DEFAULT_TIMEOUT;
    /* Room for the largest legitimate built-in result: execute_command's two capped streams
     * or read_file's content, each escaped up to 6x in JSON, plus the keys around them. */
    size_t unit = e->max_output > e->read_max_bytes ? e->max_output : e->read_max_bytes;
    if (unit > SIZE_MAX / 16)
        return AIP_E_INVAL;
    e->hard_cap = 16 * unit;

    if (c->n_read_roots && !c->read_roots)
        return AIP_E_INVAL;
    if (c->n_read_roots) {
        if (!(e->read_roots = aip_calloc(c->n_read_roots, sizeof *e->read_roots)))
            return AIP_E_NOMEM;
        for (size_t i = 0; i < c->n_read_roots; i++) {
            if (!c->read_roots[i])
                return AIP_E_INVAL;
            char *real = realpath(c->read_roots[i], NULL);
            if (!real) {
                aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT, "read root '%s': %s", c->read_roots[i],
                        strerror(errno));
                return errno == ENOMEM ? AIP_E_NOMEM : AIP_E_CONFIG;
            }
            e->read_roots[i] = aip_strdup(real);
            free(real); /* realpath allocates with malloc, not aip_malloc */
            e->n_read_roots = i + 1;
            if (!e->read_roots[i])
                return AIP_E_NOMEM;
        }
    }
    if (c->n_exec_allow && !c->exec_allow)
        return AIP_E_INVAL;
    if (c->exec_policy) {
        if (strcmp(c->exec_policy, "ufo-readonly") != 0 || c->exec_shell) {
            aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT, "exec_policy '%.64s': %s", c->exec_policy,
                    c->exec_shell ? "needs the shell off" : "unknown (known: ufo-readonly)");
            return AIP_E_CONFIG;
        }
        e->exec_ufo_policy = true;
    }
    size_t n_preset = 0;
    while (e->exec_ufo_policy && exec_ufo_readonly[n_preset])
        n_preset++;
    size_t n_allow = c->n_exec_allow + n_preset;
    if (n_allow) {
        if (!(e->exec_allow = aip_calloc(n_allow, sizeof *e->exec_allow)))
            return AIP_E_NOMEM;
        for (size_t i = 0; i < n_allow; i++) {
            const char *a =
                i < c->n_exec_allow ? c->exec_allow[i] : exec_ufo_readonly[i - c->n_exec_allow];
            if (!a || !a[0])
                return AIP_E_INVAL;
            e->exec_allow[i] = aip_strdup(a);
            e->n_exec_allow = i + 1;
            if (!e->exec_allow[i])
                return AIP_E_NOMEM;
        }
    }
    if (c->exec_cgroup) {
        struct stat st;
        char kill_file[PATH_MAX];
        snprintf(kill_file, sizeof kill_file, "%s/cgroup.procs", c->exec_cgroup);
        if (stat(c->exec_cgroup, &st) || !S_ISDIR(st.st_mode) || access(kill_file, W_OK)) {
            aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT,
                    "exec_cgroup '%.200s' is not a cgroup v2 directory this process can write",
                    c->exec_cgroup);
            return AIP_E_CONFIG;
        }
        if (!(e->exec_cgroup = aip_strdup(c->exec_cgroup)))
            return AIP_E_NOMEM;
    }
    if (c->api_key) {
        if (!c->api_key[0])
            return AIP_E_INVAL; /* an empty key would look protected and match nothing useful */
        if (!(e->api_key = aip_strdup(c->api_key)))
            return AIP_E_NOMEM;
    }
    return 0;
}

bool exec_api_key_ok(const aip_executor *e, const char *given)
{
    if (!e->api_key)
        return true;
    if (!given)
        return false;
    size_t kl = strlen(e->api_key), gl = strlen(given);
    /* Every byte of the key is compared whatever the given text: the time depends on the
     * key's length only, as hmac.compare_digest's does. */
    unsigned char diff = (unsigned char)(kl != gl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(e->api_key[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

int aip_executor_create(const aip_executor_config *cfg, aip_executor **out)
{
    static const aip_executor_config defaults = {0};
    if (!out)
        return AIP_E_INVAL;
    *out = NULL;
    const aip_executor_config *c = cfg ? cfg : &defaults;
    unsigned workers = c->workers ? c->workers : DEFAULT_WORKERS;
    if (workers > MAX_WORKERS)
        return AIP_E_INVAL;

    aip_executor *e = aip_calloc(1, sizeof *e);
    if (!e)
        return AIP_E_NOMEM;
    e->cancel_pipe[0] = e->cancel_pipe[1] = -1;
    atomic_init(&e->cancelled, 0);
    if (aip_mutex_init(&e->lock)) {
        aip_free(e);
        return AIP_E_NOMEM;
    }
    if (aip_cond_init(&e->work)) {
        aip_mutex_destroy(&e->lock);
        aip_free(e);
        return AIP_E_NOMEM;
    }
    if (aip_cond_init(&e->wake)) {
        aip_cond_destroy(&e->work);
        aip_mutex_destroy(&e->lock);
        aip_free(e);
        return AIP_E_NOMEM;
    }
    int rc = copy_config(e, c);
    if (!rc && pipe2(e->cancel_pipe, O_CLOEXEC | O_NONBLOCK)) {
        e->cancel_pipe[0] = e->cancel_pipe[1] = -1;
        rc = AIP_E_IO;
    }
    if (!rc && !(e->threads = aip_calloc(workers, sizeof *e->threads)))
        rc = AIP_E_NOMEM;
    for (unsigned i = 0; !rc && i < workers; i++) {
        char name[24]; /* aip_thread_start keeps the first 15 characters */
        snprintf(name, sizeof name, "aip-exec-%u", i);
        rc = aip_thread_start(&e->threads[i], name, worker_main, e);
        if (!rc)
            e->n_threads = i + 1;
    }
    if (rc) {
        stop_workers(e);
        executor_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void aip_executor_stop(aip_executor *e)
{
    if (e)
        stop_workers(e); /* idempotent: workers drain the queue (as failures) and exit */
}

void aip_executor_destroy(aip_executor *e)
{
    if (!e)
        return;
    stop_workers(e);
    executor_free(e);
}

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
    lim.max_depth = RESULT_MAX_DEPTH - 2; /* it sits inside a list_tools entry */
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
        tool_free(t);
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
        tool_free(t);
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
                if (--old[i]->refs) /* a call still runs it: its tool_release frees it */
                    old[i] = NULL;
        }
        aip_mutex_unlock(&e->lock);
    }
    if (rc) {
        for (size_t i = 0; i < n; i++)
            tool_free(fresh[i]);
    }
    for (size_t i = 0; i < n_old; i++)
        tool_free(old[i]);
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

/* ---- submit ------------------------------------------------------------------------------ */

int aip_executor_submit(aip_executor *e, aip_msg *command, aip_batch_done done, void *user)
{
    if (!command)
        return AIP_E_INVAL;
    if (!e || !done || command->envelope != AIP_ENVELOPE_SERVER ||
        command->type != AIP_MSG_COMMAND || !command->response_id) {
        aip_msg_clear(command);
        return AIP_E_INVAL;
    }
    exec_batch *b = aip_calloc(1, sizeof *b);
    if (!b) {
        aip_msg_clear(command);
        return AIP_E_NOMEM;
    }
    b->cmd = *command;
    memset(command, 0, sizeof *command);
    b->done = done;
    b->user = user;

    int rc = 0;
    aip_mutex_lock(&e->lock);
    if (e->stopping) {
        rc = AIP_E_SHUTDOWN;
    } else if (e->queued >= e->max_queued) {
        rc = AIP_E_FULL;
    } else {
        if (e->tail)
            e->tail->next = b;
        else
            e->head = b;
        e->tail = b;
        e->queued++;
        aip_cond_signal(&e->work);
    }
    aip_mutex_unlock(&e->lock);
    if (rc) {
        aip_msg_clear(&b->cmd);
        aip_free(b);
    }
    return rc;
}

/* ---- cgroup detection -------------------------------------------------------------------- */

int aip_executor_cgroup_detect(char *buf, size_t len)
{
    if (!buf || !len)
        return AIP_E_INVAL;
    char own[PATH_MAX + 256] = "", mnt[PATH_MAX + 256] = "", line[PATH_MAX + 256];
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return AIP_E_NOT_FOUND;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(own, sizeof own, "%s", line + 3);
        }
    (void)fclose(f); /* read-only: nothing to flush */
    if (!own[0] || strcmp(own, "/") == 0)
        return AIP_E_NOT_FOUND; /* no v2 membership, or the root cgroup (no cgroup.kill there) */
    if (!(f = fopen("/proc/self/mountinfo", "re")))
        return AIP_E_NOT_FOUND;
    while (fgets(line, sizeof line, f)) {
        /* "id parent maj:min root mountpoint opts ... - fstype source superopts" */
        char *dash = strstr(line, " - cgroup2 ");
        char root[PATH_MAX], point[PATH_MAX + 256];
        if (dash && sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) == 2 &&
            strcmp(root, "/") == 0) {
            snprintf(mnt, sizeof mnt, "%s", point);
            break;
        }
    }
    (void)fclose(f); /* read-only: nothing to flush */
    if (!mnt[0])
        return AIP_E_NOT_FOUND;
    int n = snprintf(buf, len, "%s%s", mnt, own);
    if (n < 0 || (size_t)n >= len)
        return AIP_E_NOT_FOUND;
    /* Only a systemd service's own cgroup delegated to this user (Delegate=yes chowns it):
     * never a login session's scope or a cgroup someone else manages. */
    size_t ol = strlen(own);
    struct stat st;
    if (ol < 8 || strcmp(own + ol - 8, ".service") != 0 || stat(buf, &st) || st.st_uid != geteuid())
        return AIP_E_NOT_FOUND;
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/cgroup.kill", buf);
    if (access(buf, W_OK) || access(probe, F_OK))
        return AIP_E_NOT_FOUND;
    return 0;
}
