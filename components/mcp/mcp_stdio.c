/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* pipe2, close_range */
/*
 * MCP over stdio (see aip/mcp.h): a child process speaking newline-delimited JSON-RPC 2.0.
 *
 * The server's thread owns the child and its pipes: it starts it, runs the handshake, and then
 * loops in pump(): poll() over the child's stdout, stderr, its pidfd, the child's stdin (when
 * bytes wait in the outbound queue) and an eventfd that wakes it. Workers never touch a pipe:
 * a tools/call is a pending entry (waited for on its own condition variable) plus a line
 * appended to the outbound queue under s->lock; the thread writes it and, when the response
 * comes, completes the entry. So a child that stops reading or writing blocks nobody: its
 * queue is bounded (a call fails at once when it is full) and every wait has a deadline.
 *
 * The child: fork + execve of argv[0] (a path, or found on the child's own PATH), its own
 * process group, the signal mask cleared, PR_SET_PDEATHSIG(SIGKILL) (the kernel ends it when
 * this thread — alive until the host stops — or the agent dies), stdin/stdout/stderr on pipes
 * and every other fd closed (close_range), the configured environment only. It ends with EOF
 * on its stdin and SIGTERM to its group, then SIGKILL to the group 1 s later, and is reaped
 * (the group is killed before the leader is reaped, so its id cannot have been reused).
 *
 * Fatal for a child (it is killed, its tools removed, its calls failed, and it is started
 * again after a backoff): it exits, closes its stdout, writes a line that is not a JSON-RPC
 * message or is longer than AIP_MCP_MAX_MESSAGE, fails or does not answer its handshake or
 * tool list in time, or stops reading its stdin while the queue is full.
 */
#include "aip/mcp.h"
#include "mcp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUTQ_MAX       (2 * AIP_MCP_MAX_MESSAGE)
#define ERR_LINE_MAX   512
#define ERR_WINDOW_NS  10000000000ull
#define ERR_WINDOW_MAX 20
#define STOP_GRACE_MS  1000
#define CALL_POLL_NS   200000000ull

typedef enum pump_rc { P_OK, P_DOWN, P_STOP } pump_rc;

/* ---- the outbound queue (under s->lock) -------------------------------------------------- */

static int enqueue_locked(mcp_server *s, const char *text)
{
    size_t n = strlen(text);
    if (s->outq_off == s->outq.len) {
        aip_buf_reset(&s->outq);
        s->outq_off = 0;
    }
    if (s->outq.len - s->outq_off + n + 1 > OUTQ_MAX)
        return AIP_E_FULL;
    if (aip_buf_append(&s->outq, text, n) || aip_buf_putc(&s->outq, '\n'))
        return AIP_E_NOMEM;
    return 0;
}

void mcp_stdio_wake(mcp_server *s)
{
    if (s->wake_fd < 0)
        return;
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the thread wakes anyway */
}

/* ---- the child ------------------------------------------------------------------------------ */

/* argv[0] as a path: as given when it has a '/', else the first executable regular file of
 * that name on the PATH of the child's environment. */
static int resolve(mcp_server *s, char *out, size_t len)
{
    const char *a0 = s->argv[0];
    struct stat st;
    if (strchr(a0, '/')) {
        snprintf(out, len, "%s", a0);
        return 0;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (char **e = s->envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n && (size_t)snprintf(out, len, "%.*s/%s", (int)n, path, a0) < len &&
            stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        path += n;
        if (*path == ':')
            path++;
    }
    mcp_set_why(s, "cannot start: '%.200s' was not found on the server's PATH", a0);
    return -1;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int spawn(mcp_server *s)
{
    char path[PATH_MAX];
    if (resolve(s, path, sizeof path))
        return -1;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
        pipe2(ep, O_CLOEXEC)) {
        mcp_set_why(s, "cannot start: pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            close_fd(&in[i]);
            close_fd(&out[i]);
            close_fd(&err[i]);
            close_fd(&ep[i]);
        }
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: async-signal-safe calls only */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* the agent blocks its signals in every thread */
        (void)signal(SIGPIPE, SIG_DFL);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the agent died before the line above */
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            _exit(127);
        if (ep[1] > 3 && dup2(ep[1], 3) == 3) { /* keep the exec-error pipe as fd 3 */
            fcntl(3, F_SETFD, FD_CLOEXEC);
            ep[1] = 3;
        }
        if (ep[1] == 3)
            close_range(4, ~0U, 0);
        else
            close_range(3, ~0U, 0); /* (no error report then: an exec failure exits 127) */
        execve(path, s->argv, s->envp);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&ep[1]);
    if (pid < 0) {
        mcp_set_why(s, "cannot start: fork: %s", strerror(fork_errno));
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&err[0]);
        close_fd(&ep[0]);
        return -1;
    }
    setpgid(pid, pid); /* also here: whichever runs first */
    int child_errno = 0;
    ssize_t r;
    do
        r = read(ep[0], &child_errno, sizeof child_errno);
    while (r < 0 && errno == EINTR);
    close_fd(&ep[0]);
    s->pid = pid;
    s->in_fd = in[1];
    s->out_fd = out[0];
    s->err_fd = err[0];
    fcntl(s->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* -1 before Linux 5.3: EOF tells */
    if (r == (ssize_t)sizeof child_errno) {
        mcp_set_why(s, "cannot start '%.200s': %s", path, strerror(child_errno));
        return -1; /* the caller reaps it */
    }
    return 0;
}

/* Logs a stderr line of the child, rate limited. */
static void err_line(mcp_server *s, const char *p, size_t n)
{
    uint64_t now = aip_now_ns(NULL);
    if (now - s->err_window_ns >= ERR_WINDOW_NS) {
        if (s->err_dropped)
            aip_log(AIP_LOG_WARN, MCP_LOG, "[%s] stderr: %u lines not logged (at most %d per 10 s)",
                    s->ns, s->err_dropped, ERR_WINDOW_MAX);
        s->err_window_ns = now;
        s->err_lines = s->err_dropped = 0;
    }
    if (s->err_lines >= ERR_WINDOW_MAX) {
        s->err_dropped++;
        return;
    }
    s->err_lines++;
    char buf[ERR_LINE_MAX + 1];
    size_t k = 0;
    for (size_t i = 0; i < n && k < ERR_LINE_MAX; i++) {
        unsigned char c = (unsigned char)p[i];
        char ch = p[i];
        if (c < 0x20 || c == 0x7f || c >= 0x80)
            ch = '?';
        buf[k++] = ch;
    }
    buf[k] = 0;
    if (k)
        aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] stderr: %s", s->ns, buf);
}

static void read_stderr(mcp_server *s)
{
    char buf[4096];
    for (int round = 0; round < 16; round++) {
        ssize_t n = read(s->err_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            close_fd(&s->err_fd);
            return;
        }
        if (n < 0)
            return;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                err_line(s, (const char *)s->errline.data, s->errline.len);
                aip_buf_reset(&s->errline);
            } else if (s->errline.len < ERR_LINE_MAX) {
                aip_buf_putc(&s->errline, buf[i]);
            }
        }
    }
}

/* Waits (at most ms) for the child to exit; true when it has. */
static bool wait_exit(mcp_server *s, int ms)
{
    if (s->pidfd >= 0) {
        struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, ms);
        while (r < 0 && errno == EINTR);
        return r > 0;
    }
    for (int waited = 0;; waited += 20) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid)
            return true;
        if (waited >= ms)
            return false;
        usleep(20000);
    }
}

/* Ends the child (EOF, SIGTERM, SIGKILL after the grace) and reaps it; closes the pipes. */
static void end_child(mcp_server *s, int grace_ms)
{
    if (s->pid <= 0)
        return;
    close_fd(&s->in_fd);
    if (grace_ms > 0 && !wait_exit(s, 0)) {
        kill(-s->pid, SIGTERM);
        wait_exit(s, grace_ms);
    }
    kill(-s->pid, SIGKILL); /* the group: the leader is not reaped yet, so its id is still ours */
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (s->errline.len)
        err_line(s, (const char *)s->errline.data, s->errline.len);
    close_fd(&s->out_fd);
    close_fd(&s->err_fd);
    close_fd(&s->pidfd);
    s->pid = -1;
    aip_buf_free(&s->line);
    aip_buf_free(&s->errline);
    s->line_skip = false;
    aip_mutex_lock(&s->lock);
    aip_buf_free(&s->outq);
    s->outq_off = 0;
    aip_mutex_unlock(&s->lock);
}

static void describe_exit(mcp_server *s)
{
    /* stdout closes a moment before the exit status is there: wait for it a little */
    wait_exit(s, 500);
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) || !si.si_pid)
        mcp_set_why(s, "the server closed its stdout");
    else if (si.si_code == CLD_EXITED)
        mcp_set_why(s, "the server exited with status %d", si.si_status);
    else
        mcp_set_why(s, "the server was killed by signal %d", si.si_status);
}

/* ---- messages from the child ------------------------------------------------------------ */

static pump_rc on_line(mcp_server *s, const char *p, size_t n)
{
    char why[200];
    cJSON *msg;
    int kind = mcp_dispatch(s, p, &n, &msg, why, sizeof why);
    if (kind < 0) {
        char head[81];
        size_t k = 0;
        for (size_t i = 0; i < n && k < 80; i++) {
            char ch = p[i];
            if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
                ch = '?';
            head[k++] = ch;
        }
        head[k] = 0;
        mcp_set_why(s, "the server wrote something that is not a JSON-RPC message (%s): %s%s", why,
                    head, n > 80 ? "..." : "");
        return P_DOWN;
    }
    if (kind == 'r') {
        int64_t id = mcp_response_id(msg);
        aip_mutex_lock(&s->lock);
        mcp_pending *pd = id > 0 ? mcp_pending_find_locked(s, id) : NULL;
        if (pd && !pd->done) {
            pd->done = true;
            pd->reply = msg;
            msg = NULL;
            aip_cond_broadcast(&pd->cond);
        }
        aip_mutex_unlock(&s->lock);
        if (msg)
            aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] a response to no request of ours (late?)", s->ns);
    } else if (kind == 'q') {
        char *answer = mcp_answer_server_request(msg);
        aip_mutex_lock(&s->lock);
        int rc = answer ? enqueue_locked(s, answer) : AIP_E_NOMEM;
        aip_mutex_unlock(&s->lock);
        aip_free(answer);
        if (rc) {
            mcp_set_why(s, "cannot answer the server's request: %s", aip_strerror(rc));
            cJSON_Delete(msg);
            return P_DOWN;
        }
    }
    cJSON_Delete(msg); /* NULL: empty, or a notification mcp_dispatch handled */
    return P_OK;
}

static pump_rc read_stdout(mcp_server *s)
{
    char buf[65536];
    for (int round = 0; round < 64; round++) {
        ssize_t n = read(s->out_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return P_OK;
        if (n <= 0) {
            describe_exit(s);
            return P_DOWN;
        }
        const char *p = buf, *end = buf + n;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t take = (size_t)((nl ? nl : end) - p);
            if (s->line.len + take > AIP_MCP_MAX_MESSAGE) {
                mcp_set_why(s, "the server sent a message over the %u-byte limit",
                            AIP_MCP_MAX_MESSAGE);
                return P_DOWN;
            }
            if (aip_buf_append(&s->line, p, take)) {
                mcp_set_why(s, "out of memory reading the server's output");
                return P_DOWN;
            }
            if (!nl)
                break;
            pump_rc rc = on_line(s, (const char *)s->line.data, s->line.len);
            aip_buf_reset(&s->line);
            if (s->line.cap > 65536)
                aip_buf_free(&s->line); /* one big message must not pin its buffer */
            if (rc != P_OK)
                return rc;
            p = nl + 1;
        }
    }
    return P_OK;
}

static pump_rc write_stdin(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    pump_rc rc = P_OK;
    while (s->outq_off < s->outq.len) {
        ssize_t w = write(s->in_fd, s->outq.data + s->outq_off, s->outq.len - s->outq_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0) {
            mcp_set_why(s, "cannot write to the server: %s", strerror(errno));
            rc = P_DOWN;
            break;
        }
        s->outq_off += (size_t)w;
    }
    aip_mutex_unlock(&s->lock);
    return rc;
}

/* The I/O loop: until until_ns, or p is done, or (watch_refresh) a refresh is wanted. */
static pump_rc pump(mcp_server *s, uint64_t until_ns, mcp_pending *p, bool watch_refresh)
{
    for (;;) {
        if (atomic_load(&s->stopping))
            return P_STOP;
        aip_mutex_lock(&s->lock);
        bool done = (p && p->done) || (watch_refresh && s->refresh_wanted);
        bool want_out = s->outq_off < s->outq.len;
        aip_mutex_unlock(&s->lock);
        if (done)
            return P_OK;
        uint64_t now = aip_now_ns(NULL);
        if (now >= until_ns)
            return P_OK;
        uint64_t left_ms = (until_ns - now + 999999u) / 1000000u;
        struct pollfd f[5];
        int nf = 0, i_out = -1, i_err = -1, i_pid = -1, i_in = -1, i_wake;
        f[i_wake = nf++] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
        if (s->out_fd >= 0)
            f[i_out = nf++] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
        if (s->err_fd >= 0)
            f[i_err = nf++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
        if (s->pidfd >= 0)
            f[i_pid = nf++] = (struct pollfd){.fd = s->pidfd, .events = POLLIN};
        if (want_out && s->in_fd >= 0)
            f[i_in = nf++] = (struct pollfd){.fd = s->in_fd, .events = POLLOUT};
        int r = poll(f, (nfds_t)nf, left_ms > 1000 ? 1000 : (int)left_ms);
        if (r < 0 && errno != EINTR) {
            mcp_set_why(s, "poll: %s", strerror(errno));
            return P_DOWN;
        }
        if (r <= 0)
            continue;
        if (f[i_wake].revents) {
            uint64_t v;
            ssize_t rd = read(s->wake_fd, &v, sizeof v);
            (void)rd;
        }
        pump_rc rc = P_OK;
        if (i_out >= 0 && f[i_out].revents)
            rc = read_stdout(s);
        if (rc == P_OK && i_err >= 0 && f[i_err].revents)
            read_stderr(s);
        if (rc == P_OK && i_in >= 0 && f[i_in].revents)
            rc = write_stdin(s);
        if (rc == P_OK && i_pid >= 0 && f[i_pid].revents) {
            /* read what it wrote last, then report how it ended */
            if (s->out_fd >= 0)
                rc = read_stdout(s);
            if (rc == P_OK) {
                describe_exit(s);
                rc = P_DOWN;
            }
        }
        if (rc != P_OK)
            return rc;
    }
}

/* ---- requests of the server thread (handshake, tools/list) ---------------------------------- */

static pump_rc thread_request(mcp_server *s, const char *method, const cJSON *params, cJSON **reply)
{
    *reply = NULL;
    aip_mutex_lock(&s->lock);
    mcp_pending *p = mcp_pending_add_locked(s);
    char *text = p ? mcp_request_text(p->id, method, params) : NULL;
    int rc = text ? enqueue_locked(s, text) : AIP_E_NOMEM;
    if (rc && p)
        mcp_pending_remove_locked(s, p);
    aip_mutex_unlock(&s->lock);
    aip_free(text);
    if (rc) {
        mcp_pending_free(p);
        mcp_set_why(s, "%s: %s", method, aip_strerror(rc));
        return P_DOWN;
    }
    pump_rc pr = pump(s, aip_now_ns(NULL) + (uint64_t)s->timeout_ms * 1000000u, p, false);
    aip_mutex_lock(&s->lock);
    mcp_pending_remove_locked(s, p);
    aip_mutex_unlock(&s->lock);
    if (pr == P_OK && !p->done) {
        mcp_set_why(s, "no answer to %s within %u ms", method, s->timeout_ms);
        pr = P_DOWN;
    } else if (pr == P_OK && !p->reply) {
        mcp_set_why(s, "%s: %s", method, p->error);
        pr = P_DOWN;
    }
    if (pr == P_OK) {
        *reply = p->reply;
        p->reply = NULL;
    }
    mcp_pending_free(p);
    return pr;
}

static pump_rc notify(mcp_server *s, const char *method)
{
    char *text = mcp_request_text(-1, method, NULL);
    aip_mutex_lock(&s->lock);
    int rc = text ? enqueue_locked(s, text) : AIP_E_NOMEM;
    aip_mutex_unlock(&s->lock);
    aip_free(text);
    if (rc) {
        mcp_set_why(s, "%s: %s", method, aip_strerror(rc));
        return P_DOWN;
    }
    return P_OK;
}

/* tools/list, every page, then installs the list. */
static pump_rc list_tools(mcp_server *s)
{
    cJSON *acc = NULL;
    char *cursor = NULL;
    pump_rc rc = P_OK;
    for (int page = 0; rc == P_OK; page++) {
        if (page >= 64) {
            mcp_set_why(s, "tools/list: more than 64 pages");
            rc = P_DOWN;
            break;
        }
        cJSON *params = cJSON_CreateObject();
        if (params && cursor)
            cJSON_AddStringToObject(params, "cursor", cursor);
        cJSON *reply = NULL;
        rc = params ? thread_request(s, "tools/list", params, &reply) : P_DOWN;
        cJSON_Delete(params);
        if (rc != P_OK)
            break;
        char *next = NULL;
        if (mcp_collect_tools(s, reply, &acc, &next))
            rc = P_DOWN;
        cJSON_Delete(reply);
        bool same = next && cursor && strcmp(next, cursor) == 0;
        aip_free(cursor);
        cursor = next;
        if (same) {
            mcp_set_why(s, "tools/list: the server gave the same cursor twice");
            rc = P_DOWN;
        }
        if (!cursor)
            break;
    }
    aip_free(cursor);
    if (rc == P_OK && mcp_install_tools(s, acc))
        rc = P_DOWN;
    cJSON_Delete(acc);
    return rc;
}

static pump_rc handshake(mcp_server *s)
{
    cJSON *params = mcp_initialize_params();
    cJSON *reply = NULL;
    pump_rc rc = params ? thread_request(s, "initialize", params, &reply) : P_DOWN;
    cJSON_Delete(params);
    if (rc != P_OK)
        return rc;
    int bad = mcp_check_initialize(s, reply);
    cJSON_Delete(reply);
    if (bad)
        return P_DOWN;
    if ((rc = notify(s, "notifications/initialized")) != P_OK)
        return rc;
    aip_mutex_lock(&s->lock);
    s->refresh_wanted = false; /* the list below is fresh */
    aip_mutex_unlock(&s->lock);
    return list_tools(s);
}

/* ---- the server thread ---------------------------------------------------------------------- */

static void set_state(mcp_server *s, mcp_state st)
{
    aip_mutex_lock(&s->lock);
    s->state = st;
    if (st == MCP_READY)
        s->ready_since_ns = aip_now_ns(NULL);
    if (st == MCP_DOWN) {
        char why[sizeof s->why + 40];
        snprintf(why, sizeof why, "unavailable: %s", s->why);
        mcp_fail_pending_locked(s, why);
    }
    aip_mutex_unlock(&s->lock);
}

void *mcp_stdio_main(void *arg)
{
    mcp_server *s = arg;
    uint64_t next_start = 0;
    while (!atomic_load(&s->stopping)) {
        if (next_start && mcp_wait_until(s, next_start))
            break;
        pump_rc rc = P_DOWN;
        set_state(s, MCP_STARTING);
        if (spawn(s) == 0)
            rc = handshake(s);
        if (rc == P_OK) {
            set_state(s, MCP_READY);
            aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] ready: %u tools (pid %d, protocol %s)", s->ns,
                    s->n_tools, (int)s->pid, s->version);
            mcp_first_attempt_done(s);
            while ((rc = pump(s, UINT64_MAX, NULL, true)) == P_OK) {
                aip_mutex_lock(&s->lock);
                s->refresh_wanted = false;
                aip_mutex_unlock(&s->lock);
                if ((rc = list_tools(s)) != P_OK)
                    break;
                aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] tool list refreshed: %u tools", s->ns,
                        s->n_tools);
            }
        }
        if (rc == P_STOP || atomic_load(&s->stopping))
            break;
        set_state(s, MCP_DOWN);
        mcp_hide_tools(s);
        end_child(s, 0);
        uint64_t delay = mcp_backoff_ns(s);
        aip_log(AIP_LOG_WARN, MCP_LOG, "[%s] unavailable: %s; starting it again in %llu ms", s->ns,
                s->why, (unsigned long long)(delay / 1000000u));
        mcp_first_attempt_done(s);
        next_start = aip_now_ns(NULL) + delay;
    }
    mcp_set_why(s, "the agent is stopping");
    set_state(s, MCP_DOWN);
    end_child(s, STOP_GRACE_MS);
    mcp_first_attempt_done(s);
    return NULL;
}

/* ---- a worker's request --------------------------------------------------------------------- */

int mcp_stdio_request(mcp_server *s, const char *method, const cJSON *params, uint64_t deadline_ns,
                      const _Atomic int *cancelled, cJSON **reply, char *why, size_t why_len)
{
    *reply = NULL;
    aip_mutex_lock(&s->lock);
    if (atomic_load(&s->stopping) || s->state != MCP_READY) {
        snprintf(why, why_len, "%s%s", atomic_load(&s->stopping) ? "" : "unavailable: ",
                 atomic_load(&s->stopping) ? "the agent is stopping" : s->why);
        aip_mutex_unlock(&s->lock);
        return -1;
    }
    mcp_pending *p = mcp_pending_add_locked(s);
    char *text = p ? mcp_request_text(p->id, method, params) : NULL;
    int rc = text ? enqueue_locked(s, text) : AIP_E_NOMEM;
    aip_free(text);
    if (rc) {
        if (p)
            mcp_pending_remove_locked(s, p);
        aip_mutex_unlock(&s->lock);
        mcp_pending_free(p);
        snprintf(why, why_len, "%s",
                 rc == AIP_E_FULL ? "the server is not reading its input (queue full)"
                                  : "out of memory");
        return -1;
    }
    aip_mutex_unlock(&s->lock);
    mcp_stdio_wake(s);

    aip_mutex_lock(&s->lock);
    bool timed_out = false, gave_up = false;
    while (!p->done) {
        if (cancelled && atomic_load(cancelled)) {
            gave_up = true;
            break;
        }
        uint64_t now = aip_now_ns(NULL);
        if (now >= deadline_ns) {
            timed_out = true;
            break;
        }
        uint64_t until = deadline_ns - now > CALL_POLL_NS ? now + CALL_POLL_NS : deadline_ns;
        aip_cond_wait_until(&p->cond, &s->lock, until);
    }
    mcp_pending_remove_locked(s, p);
    int out = 0;
    if (p->done && p->reply) {
        *reply = p->reply;
        p->reply = NULL;
    } else if (p->done) {
        snprintf(why, why_len, "%s", p->error);
        out = -1;
    } else {
        /* MCP: tell the server we gave up on it (a late response is then dropped) */
        cJSON *cp = cJSON_CreateObject();
        if (cp) {
            cJSON_AddNumberToObject(cp, "requestId", (double)p->id);
            cJSON_AddStringToObject(cp, "reason", timed_out ? "timeout" : "the agent is stopping");
        }
        char *note = cp ? mcp_request_text(-1, "notifications/cancelled", cp) : NULL;
        if (note && s->state == MCP_READY)
            enqueue_locked(s, note);
        aip_free(note);
        cJSON_Delete(cp);
        snprintf(why, why_len, "%s", timed_out ? "timeout" : "cancelled: the agent is stopping");
        out = -1;
    }
    aip_mutex_unlock(&s->lock);
    if (gave_up || timed_out)
        mcp_stdio_wake(s);
    mcp_pending_free(p);
    return out;
}
