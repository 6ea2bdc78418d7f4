/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* pipe2 */
/*
 * The executor (see aip/executor.h): a bounded queue of command batches, a fixed pool of
 * worker threads, a tool registry, and the batch semantics of docs/protocol.md §3.4.
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
 * - The registry (registry.c, whose note describes it) is read and changed under `lock` only; a
 * running call holds a reference to its entry, so replacing or removing tools never frees one in
 * use.
 * - The error text we put in a Result is always valid UTF-8 and its `result` always validated
 *   JSON, so the encoder never refuses a command_results frame we built (ids are the
 *   decoder's, copied as they came).
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
    lim.max_depth = EXEC_RESULT_MAX_DEPTH;
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
    exec_tool *t = exec_tool_lookup(e, c->tool_name, c->tool_type);
    if (!t) {
        result_fail(r, "unknown tool '%.200s'", c->tool_name);
        return;
    }
    run_tool(e, t, c, r);
    exec_tool_release(e, t);
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

static void executor_free(aip_executor *e)
{
    for (size_t i = 0; i < e->n_tools; i++)
        exec_tool_free(e->tools[i]); /* the workers are joined: no call holds a reference */
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

/* The read roots, as real paths. */
static int copy_read_roots(aip_executor *e, const aip_executor_config *c)
{
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
    return 0;
}

/* exec_policy and the allow list: the operator's programs, then the policy's preset. */
static int copy_exec_allow(aip_executor *e, const aip_executor_config *c)
{
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
    return 0;
}

/* exec_cgroup: a cgroup v2 directory this process can write, checked now. */
static int copy_exec_cgroup(aip_executor *e, const aip_executor_config *c)
{
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
    return 0;
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

    int rc = copy_read_roots(e, c);
    if (!rc)
        rc = copy_exec_allow(e, c);
    if (!rc)
        rc = copy_exec_cgroup(e, c);
    if (rc)
        return rc;
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
