/* SPDX-License-Identifier: MIT */
/*
 * executor_internal.h — what executor.c, registry.c, builtins.c, exec_cmd.c and proc.c share
 * (not installed).
 */
#ifndef AIP_EXECUTOR_INTERNAL_H
#define AIP_EXECUTOR_INTERNAL_H

#include "aip/buf.h"
#include "aip/executor.h"
#include "aip/port.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AIP_EXEC_COMPONENT "executor"

/* How deep a tool's result may nest: a Result sits at depth 3 of a command_results frame
 * (object, action_results, Result). AIP_JSON_MAX_DEPTH is aip/message.h's. */
#define EXEC_RESULT_MAX_DEPTH (AIP_JSON_MAX_DEPTH - 3)

typedef struct exec_tool {
    char *name;
    char *description;
    aip_tool_type type;
    aip_tool_fn fn;
    void *user;
    /* UFO's MCPToolInfo fields (aip_tool_info); the JSON ones are validated object text. */
    char *ns, *title, *input_schema, *output_schema, *annotations, *meta;
    bool is_meta;      /* list_tools: hidden by its remove_meta */
    bool own_deadline; /* enforces its deadline itself: a late result is still its answer */
    unsigned provider; /* 0: registered for good; else the aip_executor_set_tools provider */
    unsigned refs;     /* under the executor's lock: 1 for the registry + 1 per running call */
    bool hidden;       /* aip_executor_hide_tools: found last, never listed */
} exec_tool;

typedef struct exec_batch {
    struct exec_batch *next;
    aip_msg cmd;
    aip_batch_done done;
    void *user;
} exec_batch;

struct aip_executor {
    /* Read-only after create. */
    unsigned max_queued;
    uint32_t default_timeout_ms;
    size_t max_output;
    size_t hard_cap;   /* largest non-string result accepted from any tool */
    char **read_roots; /* real paths */
    size_t n_read_roots;
    size_t read_max_bytes;
    bool read_allow_hardlinks;
    bool exec_enabled;
    char **exec_allow;
    size_t n_exec_allow;
    bool exec_shell;
    uint32_t exec_timeout_ms;
    bool exec_ufo_policy; /* exec_policy "ufo-readonly" */
    char *api_key;        /* NULL: api_key parameters are ignored */
    char *exec_cgroup;    /* a delegated cgroup v2 directory for per-command cgroups, or NULL */
    aip_thread *threads;
    unsigned n_threads;
    int cancel_pipe[2]; /* written once by destroy; never read, so it stays readable */

    /* Raised (under lock, so a sleeper that checked it under lock cannot miss the wake-up) by
     * destroy; read lock-free by tools. */
    _Atomic int cancelled;

    aip_mutex lock; /* guards everything below */
    aip_cond work;  /* workers wait here for batches */
    aip_cond wake;  /* the sleep tool waits here; broadcast by destroy */
    bool stopping;
    exec_batch *head, *tail;
    size_t queued;
    exec_tool **tools; /* registration order; see "The registry" in registry.c */
    size_t n_tools, cap_tools;
};

/* ---- helpers shared by the tools (executor.c) ---------------------------------------------- */

/* Sets *error to a formatted aip_malloc'd message (valid UTF-8). exec_fail() does that and
 * evaluates to -1, so a tool can `return exec_fail(error, ...)` (a macro, so the -1 is visible
 * to the static analyzer across files). */
void exec_set_error(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define exec_fail(...) (exec_set_error(__VA_ARGS__), -1)

/* Appends s[0..n) to out as valid UTF-8: every byte that does not start a valid sequence, and
 * every NUL (JSON text may not carry \u0000 here), becomes U+FFFD. */
int exec_utf8_sanitize(aip_buf *out, const char *s, size_t n);
/* Appends s[0..n) as a JSON string after exec_utf8_sanitize. */
int exec_json_put_text(aip_buf *out, const char *s, size_t n);
/* Takes the NUL-terminated text out of b (b is left empty); NULL on out of memory. */
char *exec_buf_take(aip_buf *b);
/* Ends a tool that built its result in b: with rc 0, *result = the text and returns 0; else
 * (or out of memory) frees b, sets *error to "out of memory" and returns -1. */
int exec_finish_result(int rc, aip_buf *b, char **result, char **error);

/* Sleeps until deadline_ns (aip_now_ns clock) or until the executor is stopping.
 * Returns 0 at the deadline, AIP_E_CANCELLED when woken by destroy. */
int exec_sleep_until(aip_executor *e, uint64_t deadline_ns);

/* ---- tools ------------------------------------------------------------------------------------
 */
int exec_tool_echo(const aip_tool_call *call, void *user, char **result, char **error);
int exec_tool_sleep(const aip_tool_call *call, void *user, char **result, char **error);
int exec_tool_list_tools(const aip_tool_call *call, void *user, char **result, char **error);
int exec_tool_read_file(const aip_tool_call *call, void *user, char **result, char **error);

/* read_file's open (builtins.c): opens rel — relative to the directory dirfd, by names only
 * (no "..", not absolute) — with flags plus O_NOFOLLOW|O_CLOEXEC, following no symlink on the
 * way: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), or on ENOSYS
 * (or EPERM: a seccomp filter that predates openat2) one openat(O_NOFOLLOW) per component. Returns
 * 0 with *out set, or -errno (ELOOP or ENOTDIR: a symlink on the way; EXDEV: not beneath). */
int exec_open_beneath(int dirfd, const char *rel, int flags, int *out);
/* Tests: nonzero makes exec_open_beneath skip openat2, as on a kernel without it. */
extern _Atomic int exec_test_no_openat2;
int exec_tool_execute_command(const aip_tool_call *call, void *user, char **result, char **error);
int exec_tool_get_system_info(const aip_tool_call *call, void *user, char **result, char **error);

/* ---- running a command (proc.c) -------------------------------------------------------------- */

/* Keeps the last `max` bytes written to it, in a 2*max buffer compacted when full. */
typedef struct exec_tail {
    char *p;
    size_t len, max;
    bool dropped;
} exec_tail;

int exec_tail_add(exec_tail *t, const char *s, size_t n);
/* The kept tail, starting at a character boundary when bytes were dropped before it. */
const char *exec_tail_view(const exec_tail *t, size_t *n, bool *truncated);

/* One command run through its shepherd (see proc.c's design note). */
typedef struct exec_run {
    pid_t pid;     /* the shepherd */
    pid_t cmd_pid; /* the command (its process group), as the shepherd reported it */
    int out, err, status_fd, pidfd;
    exec_tail so, se;
    int status;      /* the command's wait status, valid when reaped */
    int spawn_errno; /* the command could not start */
    bool timed_out, cancelled;
    bool reaped;
    char cgroup[512]; /* its cgroup directory, or "" */
} exec_run;

/* Runs argv[0] = path (no PATH search) with argv, in cwd (NULL: the agent's), stdin
 * /dev/null, the scrubbed environment, until it ends or kill_at (aip_now_ns clock) or the
 * executor's cancel; every process it started ends with it. Returns 0 (rs filled: output,
 * status or timed_out/cancelled) or the errno that kept it from starting. Free with
 * exec_run_free. */
int exec_run_to_end(aip_executor *e, const aip_tool_call *call, const char *path, char *const *argv,
                    const char *cwd, uint64_t kill_at, exec_run *rs);
/* The exit code, -signal when killed, -1 when unknown. */
int exec_run_exit_code(const exec_run *rs);
void exec_run_free(exec_run *rs);

/* UFO's read-only program list (exec_policy "ufo-readonly"), NULL-terminated. */
extern const char *const exec_ufo_readonly[];

/* ---- the registry (registry.c) --------------------------------------------------------------- */

/* Is tools[i] the one its key resolves to (no entry of the same key ranks above it)? Under
 * the executor's lock. */
bool exec_tool_visible(const aip_executor *e, size_t i);

/* UFO's command2tool (see registry.c): the entry an action's tool_name and tool_type resolve
 * to, with a reference taken (exec_tool_release it), or NULL. Takes the executor's lock. */
exec_tool *exec_tool_lookup(aip_executor *e, const char *name, aip_tool_type type);
/* Drops one reference; the last one frees the entry. Takes the executor's lock. */
void exec_tool_release(aip_executor *e, exec_tool *t);
/* Frees an entry no one references (NULL: nothing). */
void exec_tool_free(exec_tool *t);

/* Registers a tool with internal flags (builtins). */
int exec_register(aip_executor *e, const aip_tool_def *def, const aip_tool_info *info, bool is_meta,
                  bool own_deadline);

/* Is `given` (may be NULL) the configured api_key? Constant time in the key's length. True
 * when no key is configured. */
bool exec_api_key_ok(const aip_executor *e, const char *given);

#endif /* AIP_EXECUTOR_INTERNAL_H */
