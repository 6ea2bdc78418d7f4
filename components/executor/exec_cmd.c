#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_addclosefrom_np, waitid */
/*
 * execute_command: runs one allowlisted program and reports {exit_code, stdout, stderr,
 * truncated}.
 *
 * Design note
 * - The child is started with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)), so nothing
 *   that is unsafe after fork() in a threaded process ever runs in the child. It gets its own
 *   process group (so a timeout kills what it started too), stdin /dev/null, stdout/stderr on
 *   pipes, every other fd closed (closefrom: fds other libraries opened without O_CLOEXEC do
 *   not leak), the default disposition for the signals a daemon often ignores (SIG_IGN would
 *   survive exec), and an environment of exactly PATH and LANG.
 * - The program is resolved on that PATH here, before the allowlist check, and the resolved
 *   path is what runs: the check and the exec see the same file name.
 * - One loop on the worker thread polls both pipes, a pidfd (when the kernel has one; else a
 *   50 ms tick) and the executor's cancel pipe; output keeps only its last max_output bytes.
 * - Kill sequence: at the timeout (min of exec_timeout_ms and the command's deadline) or on
 *   cancel, SIGTERM to the group; 2 s later SIGKILL. If the child has exited but something it
 *   left in its group still holds the pipes, that group gets SIGKILL after 500 ms and we stop
 *   reading 1 s later. The child is waited for with WNOWAIT until the end, so its pid (and
 *   the process group id) cannot be reused while we may still signal it; it is then reaped.
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "executor_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_PATH         "/usr/local/bin:/usr/bin:/bin"
#define KILL_GRACE_NS      2000000000ull /* SIGTERM -> SIGKILL */
#define LEFTOVER_GRACE_NS  500000000ull  /* child gone, pipes still open -> SIGKILL group */
#define LEFTOVER_GIVEUP_NS 1000000000ull /* ... then stop reading */
#define TICK_MS            50            /* exit polling when there is no pidfd */
#define MS                 1000000ull

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
        if (c == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (!end) {
                snprintf(why, why_len, "unterminated ' quote");
                rc = -1;
                break;
            }
            rc = aip_buf_append(&w, p + 1, (size_t)(end - p - 1));
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
                    rc = aip_buf_putc(&w, *++p);
                } else {
                    rc = aip_buf_putc(&w, *p);
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
                rc = -1;
            } else {
                rc = aip_buf_putc(&w, p[1]);
                p += 2;
            }
        } else {
            rc = aip_buf_putc(&w, c);
            p++;
        }
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

/* ---- output capture ------------------------------------------------------------------------ */

/* Keeps the last `max` bytes written to it, in a 2*max buffer compacted when full. */
typedef struct tail_buf {
    char *p;
    size_t len, max;
    bool dropped;
} tail_buf;

static int tail_add(tail_buf *t, const char *s, size_t n)
{
    if (!t->p && !(t->p = aip_malloc(2 * t->max + 1)))
        return AIP_E_NOMEM;
    if (n >= t->max) {
        t->dropped = t->dropped || t->len > 0 || n > t->max;
        memcpy(t->p, s + (n - t->max), t->max);
        t->len = t->max;
        return 0;
    }
    if (t->len + n > 2 * t->max) {
        size_t keep = t->max - n; /* with n appended, exactly the last max bytes remain */
        memmove(t->p, t->p + (t->len - keep), keep);
        t->len = keep;
        t->dropped = true;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    return 0;
}

/* The kept tail, starting at a character boundary when bytes were dropped before it. */
static const char *tail_view(tail_buf *t, size_t *n, bool *truncated)
{
    if (!t->p) {
        *n = 0;
        return "";
    }
    size_t off = t->len > t->max ? t->len - t->max : 0;
    *truncated = *truncated || t->dropped || off > 0;
    if (t->dropped || off) {
        for (int k = 0; k < 3 && off < t->len && ((unsigned char)t->p[off] & 0xC0) == 0x80; k++)
            off++;
    }
    *n = t->len - off;
    return t->p + off;
}

/* Reads what is available; closes *fd at EOF or error. */
static void drain(int *fd, tail_buf *t)
{
    char buf[8192];
    /* Bounded, so a child that writes without pause cannot keep us from the timers. */
    for (int i = 0; i < 16; i++) {
        ssize_t r = read(*fd, buf, sizeof buf);
        if (r > 0) {
            if (tail_add(t, buf, (size_t)r)) {
                aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT, "out of memory capturing output");
                goto eof;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        goto eof; /* EOF or a real error */
    }
    return; /* more may be waiting: poll again */
eof:
    close(*fd);
    *fd = -1;
}

/* ---- running the child --------------------------------------------------------------------- */

typedef struct run_state {
    pid_t pid;
    int out, err, pidfd;
    tail_buf so, se;
    int status;
    bool timed_out, cancelled;
    bool reaped; /* status is valid */
} run_state;

static int spawn_child(const char *path, char *const argv[], run_state *rs, int *err_no)
{
    static char *const envp[] = {"PATH=" CHILD_PATH, "LANG=C.UTF-8", NULL};
    static const int reset[] = {SIGPIPE, SIGINT,  SIGQUIT, SIGHUP,  SIGTERM, SIGCHLD, SIGUSR1,
                                SIGUSR2, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ};
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    bool fa_ok = false, at_ok = false;
    int rc = -1;
    *err_no = 0;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        *err_no = errno;
        goto out;
    }
    if ((*err_no = posix_spawn_file_actions_init(&fa)))
        goto out;
    fa_ok = true;
    if ((*err_no = posix_spawnattr_init(&at)))
        goto out;
    at_ok = true;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        sigaddset(&dfl, reset[i]);
    if ((*err_no = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
        (*err_no = posix_spawn_file_actions_adddup2(&fa, po[1], 1)) ||
        (*err_no = posix_spawn_file_actions_adddup2(&fa, pe[1], 2)) ||
        (*err_no = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) ||
        (*err_no = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF)) ||
        (*err_no = posix_spawnattr_setpgroup(&at, 0)) ||
        (*err_no = posix_spawnattr_setsigmask(&at, &none)) ||
        (*err_no = posix_spawnattr_setsigdefault(&at, &dfl)))
        goto out;
    if ((*err_no = posix_spawn(&rs->pid, path, &fa, &at, argv, envp)))
        goto out;
    rs->out = po[0];
    rs->err = pe[0];
    po[0] = pe[0] = -1;
    fcntl(rs->out, F_SETFL, O_NONBLOCK);
    fcntl(rs->err, F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
    rs->pidfd = (int)syscall(SYS_pidfd_open, rs->pid, 0); /* always O_CLOEXEC */
#endif
    rc = 0;
out:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (at_ok)
        posix_spawnattr_destroy(&at);
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    return rc;
}

static bool child_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD; /* SIGCHLD ignored by the process: the kernel reaped it */
    return si.si_pid == pid;
}

static int ms_until(uint64_t now, uint64_t t)
{
    if (t <= now)
        return 0;
    uint64_t ms = (t - now + MS - 1) / MS;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Reads output until the child has exited and the pipes are closed, enforcing the kill
 * sequence; then reaps the child. */
static void supervise(aip_executor *e, const aip_tool_call *call, run_state *rs, uint64_t kill_at)
{
    uint64_t term_at = 0, killed_at = 0, exit_seen = 0, leftover_killed = 0;
    bool exited = false, cancel_seen = false;
    for (;;) {
        uint64_t now = aip_now_ns(NULL);
        if (!exited && child_exited(rs->pid))
            exited = true;
        bool pipes = rs->out >= 0 || rs->err >= 0;
        if (exited && !pipes)
            break;
        bool cancel = cancel_seen || atomic_load(call->cancelled);
        if (!exited && !term_at && (now >= kill_at || cancel)) {
            rs->cancelled = cancel && now < kill_at;
            rs->timed_out = !rs->cancelled;
            kill(-rs->pid, SIGTERM);
            term_at = now;
        }
        if (!exited && term_at && !killed_at && now >= term_at + KILL_GRACE_NS) {
            kill(-rs->pid, SIGKILL);
            killed_at = now;
        }
        if (exited && pipes) { /* something the child left behind holds its pipes */
            if (!exit_seen)
                exit_seen = now;
            if (!leftover_killed && now >= exit_seen + LEFTOVER_GRACE_NS) {
                kill(-rs->pid, SIGKILL);
                leftover_killed = now;
            }
            if (leftover_killed && now >= leftover_killed + LEFTOVER_GIVEUP_NS)
                break;
        }

        int timeout = -1;
        if (!exited && !term_at)
            timeout = ms_until(now, kill_at);
        else if (!exited && !killed_at)
            timeout = ms_until(now, term_at + KILL_GRACE_NS);
        else if (exited && !leftover_killed)
            timeout = ms_until(now, exit_seen + LEFTOVER_GRACE_NS);
        else if (exited)
            timeout = ms_until(now, leftover_killed + LEFTOVER_GIVEUP_NS);
        if (!exited && (rs->pidfd < 0 || killed_at) && (timeout < 0 || timeout > TICK_MS))
            timeout = TICK_MS;

        struct pollfd pf[4];
        nfds_t n = 0;
        int io = -1, ie = -1, ic = -1;
        if (rs->out >= 0)
            pf[io = (int)n++] = (struct pollfd){.fd = rs->out, .events = POLLIN};
        if (rs->err >= 0)
            pf[ie = (int)n++] = (struct pollfd){.fd = rs->err, .events = POLLIN};
        if (!exited && rs->pidfd >= 0)
            pf[n++] = (struct pollfd){.fd = rs->pidfd, .events = POLLIN};
        if (!cancel_seen)
            pf[ic = (int)n++] = (struct pollfd){.fd = e->cancel_pipe[0], .events = POLLIN};
        int pr = poll(pf, n, timeout);
        if (pr < 0 && errno != EINTR) {
            aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT, "poll: %s", strerror(errno));
            poll(NULL, 0, TICK_MS); /* keep the timers running, but never spin */
        }
        if (pr <= 0)
            continue;
        if (io >= 0 && pf[io].revents)
            drain(&rs->out, &rs->so);
        if (ie >= 0 && pf[ie].revents)
            drain(&rs->err, &rs->se);
        if (ic >= 0 && pf[ic].revents)
            cancel_seen = true; /* never read: the pipe stays readable for every poller */
    }
    if (term_at && !killed_at)
        kill(-rs->pid, SIGKILL); /* what ignored SIGTERM in the group goes now */
    pid_t w;
    do
        w = waitpid(rs->pid, &rs->status, 0);
    while (w < 0 && errno == EINTR);
    rs->reaped = w == rs->pid;
}

static int build_result(run_state *rs, int exit_code, char **result)
{
    bool truncated = false;
    size_t on = 0, en = 0;
    const char *o = tail_view(&rs->so, &on, &truncated);
    const char *er = tail_view(&rs->se, &en, &truncated);
    aip_buf b;
    aip_buf_init(&b, 0);
    char num[48];
    snprintf(num, sizeof num, "{\"exit_code\":%d,\"stdout\":", exit_code);
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

/* Builds argv (or the shell's) and checks the allowlist. On refusal sets *error. */
static int prepare(const aip_executor *e, const char *command, argv_list *av, char **path,
                   char **error)
{
    char why[256] = "";
    int rc = split_command(command, e->exec_shell, av, why, sizeof why);
    if (rc == AIP_E_NOMEM)
        return exec_fail(error, "out of memory");
    if (rc)
        return exec_fail(error, "refused: %s", why);
    const char *prog = av->v[0];
    char *resolved = resolve_program(prog);
    if (!resolved && !e->exec_shell)
        return exec_fail(error, "'%.200s' was not found on PATH (%s)", prog, CHILD_PATH);
    if (!allowed(e, prog, resolved)) {
        exec_set_error(error, "refused: '%.200s' is not on the allowlist", prog);
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
            return exec_fail(error, "out of memory");
        }
    }
    if (!(*path = aip_strdup("/bin/sh")))
        return exec_fail(error, "out of memory");
    return 0;
}

int exec_tool_execute_command(const aip_tool_call *call, void *user, char **result, char **error)
{
    aip_executor *e = user;
    const char *p = call->parameters ? call->parameters : "{}";
    cJSON *o = cJSON_ParseWithLength(p, strlen(p));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "command");
    if (!cJSON_IsString(c) || !c->valuestring[0]) {
        cJSON_Delete(o);
        return exec_fail(error, "parameters.command must be a non-empty string");
    }
    char *command = aip_strdup(c->valuestring);
    cJSON_Delete(o);
    if (!command)
        return exec_fail(error, "out of memory");

    argv_list av = {0};
    char *path = NULL;
    int rc = prepare(e, command, &av, &path, error);
    if (rc)
        goto out;

    uint64_t start = aip_now_ns(NULL);
    uint64_t kill_at = aip_deadline_ms(start, e->exec_timeout_ms);
    if (call->deadline_ns < kill_at)
        kill_at = call->deadline_ns;
    run_state rs = {.out = -1, .err = -1, .pidfd = -1};
    rs.so.max = rs.se.max = e->max_output;
    int err_no = 0;
    if (spawn_child(path, av.v, &rs, &err_no)) {
        rc = exec_fail(error, "cannot run '%.200s': %s", av.v[0], strerror(err_no));
        goto out;
    }
    supervise(e, call, &rs, kill_at);
    if (rs.pidfd >= 0)
        close(rs.pidfd);

    int code = !rs.reaped               ? -1
               : WIFEXITED(rs.status)   ? WEXITSTATUS(rs.status)
               : WIFSIGNALED(rs.status) ? -WTERMSIG(rs.status)
                                        : -1;
    if (build_result(&rs, code, result))
        rc = exec_fail(error, "out of memory");
    else if (rs.cancelled)
        rc = exec_fail(error, "cancelled: the executor is stopping (exit_code %d)", code);
    else if (rs.timed_out)
        rc = exec_fail(error, "timed out after %llu ms (exit_code %d)",
                       (unsigned long long)((kill_at - start) / MS), code);
    else if (!rs.reaped)
        rc = exec_fail(error, "exit status unknown (the process ignores SIGCHLD)");
    else if (code < 0)
        rc = exec_fail(error, "killed by signal %d", -code);
    else if (code > 0)
        rc = exec_fail(error, "exit code %d", code);
    aip_free(rs.so.p);
    aip_free(rs.se.p);
out:
    aip_free(path);
    argv_free(&av);
    aip_free(command);
    return rc;
}
