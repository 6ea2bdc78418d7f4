/*
 * executor_internal.h — what executor.c, builtins.c and exec_cmd.c share (not installed).
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

#define AIP_EXEC_COMPONENT "executor"

typedef struct exec_tool {
    char *name;
    char *description;
    aip_tool_type type;
    aip_tool_fn fn;
    void *user;
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
    exec_tool *tools;
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

#endif /* AIP_EXECUTOR_INTERNAL_H */
