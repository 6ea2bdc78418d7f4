/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* pipe2, prctl, close_range, waitid, pidfd_open */
/*
 * Running one command to its end, with its whole process tree (execute_command,
 * get_system_info).
 *
 * Design note
 * - A command is started through a *shepherd*: a child of the agent, forked for this one
 *   command, that makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), forks the command
 *   and then only waits and kills. Every process the command leaves behind — backgrounded with
 *   `&`, double-forked, moved to another process group or session with setsid — is re-parented
 *   to the shepherd when its own parent dies, so the shepherd can find it (its children in
 *   /proc) and kill it. When the command ends, the shepherd sends SIGTERM to what is left (the
 *   command's process group and every child of its own), SIGKILL 500 ms later, and repeats the
 *   scan until it has no child left; only then does it report the command's wait status and
 *   exit. Asked to stop (SIGTERM from the agent at the timeout or on cancel, or from the kernel
 *   when the agent dies: PR_SET_PDEATHSIG), it does the same with a 2 s grace.
 *   Why not PR_SET_CHILD_SUBREAPER on the agent itself: it is process-wide (it would change an
 *   embedder's process), and with concurrent workers an orphan could not be traced to its
 *   command.
 * - With a delegated cgroup v2 directory (exec_cgroup; `Delegate=yes` in a systemd unit), each
 *   command also gets its own child cgroup: the shepherd moves itself into it before forking,
 *   so nothing the command starts can be outside it, and the agent writes `cgroup.kill` and
 *   removes it once the shepherd has exited. That also catches a process that escaped the
 *   subreaper (e.g. one that re-parented itself with PR_SET_CHILD_SUBREAPER of its own).
 * - The shepherd is a fork() of a multi-threaded process, so between fork and exec it calls
 *   only async-signal-safe functions (raw system calls: no malloc, no stdio, no locks). What
 *   it needs (argv, envp, paths, fds) is prepared before the fork.
 * - The agent side reads stdout/stderr (one tail buffer each), watches the shepherd's pidfd (or
 *   a 50 ms tick) and the executor's cancel pipe, and reads the shepherd's report from a status
 *   pipe: "P <command pid>" first, then "S <wait status>" or "E <errno>" (exec failed). At the
 *   deadline or on cancel it sends SIGTERM to the shepherd; if the shepherd is still there
 *   5 s later it gets SIGKILL, and the command's process group too (last resort).
 */
#include "aip/common.h"
#include "executor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_PATH         "/usr/local/bin:/usr/bin:/bin"
#define TICK_MS            50
#define MS                 1000000ull
#define SHEPHERD_GRACE_MS  2000 /* asked to stop: SIGTERM to the tree, SIGKILL this much later */
#define LEFTOVER_GRACE_MS  500  /* the command ended: what it left gets SIGTERM, then SIGKILL */
#define SHEPHERD_EXTRA_NS  5000000000ull /* the agent's last resort after asking it to stop */
#define LEFTOVER_GIVEUP_NS 1000000000ull /* shepherd gone, pipes still open: stop reading */
#define STATUS_MAX         64

/* ---- output capture ------------------------------------------------------------------------ */

int exec_tail_add(exec_tail *t, const char *s, size_t n)
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

const char *exec_tail_view(const exec_tail *t, size_t *n, bool *truncated)
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
static void drain(int *fd, exec_tail *t)
{
    char buf[8192];
    /* Bounded, so a child that writes without pause cannot keep us from the timers. */
    for (int i = 0; i < 16; i++) {
        ssize_t r = read(*fd, buf, sizeof buf);
        if (r > 0) {
            if (t && exec_tail_add(t, buf, (size_t)r)) {
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

/* ---- the shepherd (async-signal-safe code only) ---------------------------------------------- */

/* What the shepherd needs, prepared before the fork. */
typedef struct shepherd_args {
    const char *path;
    char *const *argv;
    const char *cwd; /* or NULL */
    int out_w, err_w, status_w;
    int cgroup_procs; /* cgroup.procs of the command's cgroup, open for writing; or -1 */
    pid_t agent;
} shepherd_args;

static char *const child_envp[] = {"PATH=" CHILD_PATH, "LANG=C.UTF-8", NULL};

static size_t sh_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void sh_write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* "<tag> <n>\n" to fd. */
static void sh_report(int fd, char tag, long long n)
{
    char buf[32], *p = buf + sizeof buf;
    bool neg = n < 0;
    unsigned long long u = neg ? 0ull - (unsigned long long)n : (unsigned long long)n;
    *--p = '\n';
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10));
    if (neg)
        *--p = '-';
    *--p = ' ';
    *--p = tag;
    sh_write_all(fd, p, (size_t)(buf + sizeof buf - p));
}

static long long sh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends sig to every process whose parent is `self` (the orphans re-parented to us and the
 * command itself), by scanning /proc with getdents64: no malloc. Returns how many. */
static int sh_signal_children(pid_t self, int sig)
{
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return 0;
    int n = 0;
    char buf[4096];
    for (;;) {
        long got = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            const char *rec = buf + off;
            unsigned short reclen;
            memcpy(&reclen, rec + 16, sizeof reclen); /* d_reclen after d_ino, d_off */
            const char *name = rec + 19;              /* after d_type */
            off += reclen;
            long pid = 0;
            for (const char *q = name; *q; q++) {
                if (*q < '0' || *q > '9') {
                    pid = 0;
                    break;
                }
                pid = pid * 10 + (*q - '0');
            }
            if (pid <= 0 || pid == self)
                continue;
            char path[40] = "/proc/";
            size_t pl = 6, nl = sh_strlen(name);
            if (nl > 20)
                continue;
            memcpy(path + pl, name, nl);
            memcpy(path + pl + nl, "/stat", 6);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            char st[512];
            ssize_t r = read(fd, st, sizeof st - 1);
            close(fd);
            if (r <= 0)
                continue;
            st[r] = 0;
            /* "pid (comm) S ppid ...": comm may hold spaces and ')', so from the last ')' */
            const char *rp = NULL;
            for (ssize_t i = 0; i < r; i++)
                if (st[i] == ')')
                    rp = st + i;
            if (!rp || rp[1] != ' ' || !rp[2] || rp[3] != ' ')
                continue;
            long ppid = 0;
            for (const char *q = rp + 4; *q >= '0' && *q <= '9'; q++)
                ppid = ppid * 10 + (*q - '0');
            if (ppid == self && kill((pid_t)pid, sig) == 0)
                n++;
        }
    }
    close(dir);
    return n;
}

/* Reaps every child that has ended; records the command's status. */
static void sh_reap(pid_t cmd, int *cmd_status, bool *cmd_done)
{
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        if (w == cmd) {
            *cmd_status = st;
            *cmd_done = true;
        }
    }
}

/* Does the shepherd still have a child (ended ones included, until reaped)? */
static bool sh_has_children(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* Kills what is left of the tree: SIGTERM to the command's group and to every child of ours
 * (orphans re-parented to us), SIGKILL from grace_ms on, scanning again as killed processes'
 * children are re-parented to us, until we have no child and the group is empty. */
static void sh_kill_tree(pid_t self, pid_t cmd, long long grace_ms, int *cmd_status, bool *cmd_done)
{
    long long hard_at = sh_now_ms() + grace_ms;
    for (;;) {
        bool hard = sh_now_ms() >= hard_at;
        int sig = hard ? SIGKILL : SIGTERM;
        kill(-cmd, sig);
        sh_signal_children(self, sig);
        sh_reap(cmd, cmd_status, cmd_done);
        if (!sh_has_children() && kill(-cmd, 0) != 0)
            return;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Closes every fd but keep[0..n) (which may be moved: updated in place) and makes 0, 1 and 2
 * /dev/null, so the shepherd holds none of the agent's sockets or files. */
static void sh_close_other_fds(int *keep, int n)
{
    for (int i = 0; i < n; i++)
        if (keep[i] >= 0 && keep[i] < 3)
            keep[i] = fcntl(keep[i], F_DUPFD, 3);
    int nul = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++)
        if (nul != fd)
            dup2(nul, fd);
    int sorted[8] = {0}, m = 0;
    for (int i = 0; i < n && m < 8; i++) {
        if (keep[i] < 3)
            continue;
        int j = m++;
        while (j > 0 && sorted[j - 1] > keep[i]) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = keep[i];
    }
    unsigned lo = 3;
    for (int i = 0; i <= m; i++) {
        unsigned hi = i < m ? (unsigned)sorted[i] : ~0u; /* close [lo, hi) */
        if (hi > lo && syscall(SYS_close_range, lo, hi == ~0u ? ~0u : hi - 1, 0u) != 0) {
            for (unsigned fd = lo; fd < hi && fd < 65536; fd++)
                close((int)fd);
        }
        if (i < m)
            lo = (unsigned)sorted[i] + 1;
    }
}

static void sh_default_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL); /* fails harmlessly for the realtime signals glibc keeps */
}

/* The command's child, after its fork from the shepherd. Never returns. */
static void sh_exec_command(const shepherd_args *a, int err_pipe_w)
{
    setpgid(0, 0); /* its own process group: one kill reaches what it starts there */
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(a->out_w, 1) < 0 || dup2(a->err_w, 2) < 0)
        goto fail;
    /* everything from 3 up closes at exec, the error pipe (already close-on-exec) too */
    if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) != 0) {
        for (int fd = 3; fd < 1024; fd++)
            if (fd != err_pipe_w)
                close(fd);
    }
    if (a->cwd && chdir(a->cwd) != 0)
        goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(a->path, a->argv, child_envp);
fail:;
    int e = errno;
    sh_write_all(err_pipe_w, (const char *)&e, sizeof e);
    _exit(127);
}

/* The shepherd's life, after its fork from the agent. Never returns. */
static void shepherd_main(const shepherd_args *a)
{
    pid_t self = getpid();
    /* Ask to be stopped (SIGTERM) when the agent goes, and check it is not gone already. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t wait_set, none;
    sigemptyset(&wait_set);
    sigaddset(&wait_set, SIGTERM);
    sigaddset(&wait_set, SIGCHLD);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &wait_set, NULL); /* taken with sigtimedwait, never delivered */
    sh_default_signals();
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    setpgid(0, 0); /* out of the agent's group: a terminal's ^C is the agent's to handle */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    bool stop = getppid() != a->agent;
    shepherd_args m = *a; /* the fds it keeps, perhaps moved */
    int keep[4] = {m.out_w, m.err_w, m.status_w, m.cgroup_procs};
    sh_close_other_fds(keep, 4);
    m.out_w = keep[0];
    m.err_w = keep[1];
    m.status_w = keep[2];
    m.cgroup_procs = keep[3];
    a = &m;
    if (a->cgroup_procs >= 0) {
        sh_write_all(a->cgroup_procs, "0", 1); /* this process; its children follow */
        close(a->cgroup_procs);
    }
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        sh_report(a->status_w, 'E', errno);
        _exit(0);
    }
    pid_t cmd = fork();
    if (cmd < 0) {
        sh_report(a->status_w, 'E', errno);
        _exit(0);
    }
    if (cmd == 0) {
        close(ep[0]);
        sigprocmask(SIG_SETMASK, &none, NULL);
        sh_exec_command(a, ep[1]);
    }
    setpgid(cmd, cmd); /* also here: no race with our first kill(-cmd) */
    close(ep[1]);
    close(a->out_w); /* only the command holds the output pipes now */
    close(a->err_w);
    sh_report(a->status_w, 'P', cmd);
    int exec_err = 0;
    ssize_t r;
    do
        r = read(ep[0], &exec_err, sizeof exec_err);
    while (r < 0 && errno == EINTR);
    close(ep[0]);
    int status = 0;
    bool done = false;
    if (r == (ssize_t)sizeof exec_err) { /* exec failed: the child wrote errno and exited */
        while (waitpid(cmd, &status, 0) < 0 && errno == EINTR)
            ;
        sh_report(a->status_w, 'E', exec_err);
        _exit(0);
    }
    while (!stop && !done) {
        siginfo_t si;
        int s = sigwaitinfo(&wait_set, &si);
        if (s == SIGTERM)
            stop = true;
        sh_reap(cmd, &status, &done); /* SIGCHLD, or an orphan of ours that ended */
    }
    sh_kill_tree(self, cmd, stop ? SHEPHERD_GRACE_MS : LEFTOVER_GRACE_MS, &status, &done);
    if (done)
        sh_report(a->status_w, 'S', status);
    _exit(0);
}

/* ---- the agent's side -------------------------------------------------------------------- */

/* A child cgroup of exec_cgroup for one command; its cgroup.procs opened for the shepherd.
 * Returns 0 (dir set) or -1 (no cgroup: the shepherd alone will do). */
static int cgroup_make(const aip_executor *e, char *dir, size_t dir_len, int *procs)
{
    static _Atomic unsigned long seq;
    *procs = -1;
    if (!e->exec_cgroup)
        return -1;
    snprintf(dir, dir_len, "%s/aip-cmd-%ld-%lu", e->exec_cgroup, (long)getpid(),
             (unsigned long)atomic_fetch_add(&seq, 1));
    if (mkdir(dir, 0700) != 0) {
        aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT, "cannot create cgroup %s: %s", dir,
                strerror(errno));
        return -1;
    }
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    if ((*procs = open(p, O_WRONLY | O_CLOEXEC)) < 0) {
        aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT, "cannot open %s: %s", p, strerror(errno));
        rmdir(dir);
        return -1;
    }
    return 0;
}

/* Kills whatever is still in the command's cgroup and removes it. */
static void cgroup_end(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/cgroup.kill", dir);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "1", 1) != 1)
            aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT, "cannot write %s: %s", p, strerror(errno));
        close(fd);
    }
    /* emptied by the kill, the directory can go once the kernel has noticed */
    for (int i = 0; i < 100 && rmdir(dir) != 0 && errno == EBUSY; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int spawn_shepherd(aip_executor *e, const char *path, char *const argv[], const char *cwd,
                          exec_run *rs, int *err_no)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, ps[2] = {-1, -1}, procs = -1;
    int rc = -1;
    *err_no = 0;
    rs->cgroup[0] = 0;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || pipe2(ps, O_CLOEXEC)) {
        *err_no = errno;
        goto out;
    }
    if (cgroup_make(e, rs->cgroup, sizeof rs->cgroup, &procs) != 0)
        rs->cgroup[0] = 0;
    shepherd_args a = {.path = path,
                       .argv = argv,
                       .cwd = cwd,
                       .out_w = po[1],
                       .err_w = pe[1],
                       .status_w = ps[1],
                       .cgroup_procs = procs,
                       .agent = getpid()};
    pid_t pid = fork();
    if (pid < 0) {
        *err_no = errno;
        goto out;
    }
    if (pid == 0)
        shepherd_main(&a); /* never returns */
    rs->pid = pid;
    rs->out = po[0];
    rs->err = pe[0];
    rs->status_fd = ps[0];
    po[0] = pe[0] = ps[0] = -1;
    fcntl(rs->out, F_SETFL, O_NONBLOCK);
    fcntl(rs->err, F_SETFL, O_NONBLOCK);
    fcntl(rs->status_fd, F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
    rs->pidfd = (int)syscall(SYS_pidfd_open, rs->pid, 0); /* always O_CLOEXEC */
#endif
    rc = 0;
out:
    if (procs >= 0)
        close(procs);
    if (rc && rs->cgroup[0]) {
        rmdir(rs->cgroup);
        rs->cgroup[0] = 0;
    }
    int *fds[] = {po, pe, ps};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 2; i++)
            if (fds[k][i] >= 0)
                close(fds[k][i]);
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

/* Parses the shepherd's report lines ("P pid", "S status", "E errno"). */
static void parse_report(exec_run *rs, const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && buf[j] != '\n')
            j++;
        if (j == n)
            break;
        if (j - i >= 3 && buf[i + 1] == ' ') {
            long long v = strtoll(buf + i + 2, NULL, 10);
            if (buf[i] == 'P')
                rs->cmd_pid = (pid_t)v;
            else if (buf[i] == 'S') {
                rs->status = (int)v;
                rs->reaped = true;
            } else if (buf[i] == 'E')
                rs->spawn_errno = (int)v;
        }
        i = j + 1;
    }
}

/* What supervise knows of its run between two polls. */
typedef struct sup_state {
    uint64_t term_at, killed_at, exit_seen; /* aip_now_ns times; 0: not yet */
    bool exited, cancel_seen;
    char report[STATUS_MAX]; /* the shepherd's status lines read so far */
    size_t report_len;
} sup_state;

/* Reads what the shepherd reported on its status pipe; closes the pipe at its end. */
static void read_report(exec_run *rs, sup_state *st)
{
    ssize_t r =
        read(rs->status_fd, st->report + st->report_len, sizeof st->report - st->report_len);
    if (r > 0) {
        st->report_len += (size_t)r;
        parse_report(rs, st->report, st->report_len);
    }
    if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN) ||
        st->report_len == sizeof st->report) {
        close(rs->status_fd);
        rs->status_fd = -1;
    }
}

/* The poll timeout (ms, -1: none) up to supervise's next deadline. */
static int sup_timeout(const exec_run *rs, const sup_state *st, uint64_t now, uint64_t kill_at)
{
    int timeout = -1;
    if (!st->exited && !st->term_at)
        timeout = ms_until(now, kill_at);
    else if (!st->exited && !st->killed_at)
        timeout = ms_until(now, st->term_at + SHEPHERD_EXTRA_NS);
    else if (st->exited)
        timeout = ms_until(now, st->exit_seen + LEFTOVER_GIVEUP_NS);
    if (!st->exited && (rs->pidfd < 0 || st->killed_at) && (timeout < 0 || timeout > TICK_MS))
        timeout = TICK_MS;
    return timeout;
}

/* One poll of the run's pipes, its pidfd and the executor's cancel pipe, and what it read. */
static void sup_poll(aip_executor *e, exec_run *rs, sup_state *st, int timeout)
{
    struct pollfd pf[5];
    nfds_t n = 0;
    int io = -1, ie = -1, is = -1, ic = -1;
    if (rs->out >= 0)
        pf[io = (int)n++] = (struct pollfd){.fd = rs->out, .events = POLLIN};
    if (rs->err >= 0)
        pf[ie = (int)n++] = (struct pollfd){.fd = rs->err, .events = POLLIN};
    if (rs->status_fd >= 0)
        pf[is = (int)n++] = (struct pollfd){.fd = rs->status_fd, .events = POLLIN};
    if (!st->exited && rs->pidfd >= 0)
        pf[n++] = (struct pollfd){.fd = rs->pidfd, .events = POLLIN};
    if (!st->cancel_seen)
        pf[ic = (int)n++] = (struct pollfd){.fd = e->cancel_pipe[0], .events = POLLIN};
    int pr = poll(pf, n, timeout);
    if (pr < 0 && errno != EINTR) {
        aip_log(AIP_LOG_ERROR, AIP_EXEC_COMPONENT, "poll: %s", strerror(errno));
        poll(NULL, 0, TICK_MS); /* keep the timers running, but never spin */
    }
    if (pr <= 0)
        return;
    if (io >= 0 && pf[io].revents)
        drain(&rs->out, &rs->so);
    if (ie >= 0 && pf[ie].revents)
        drain(&rs->err, &rs->se);
    if (is >= 0 && pf[is].revents)
        read_report(rs, st);
    if (ic >= 0 && pf[ic].revents)
        st->cancel_seen = true; /* never read: the pipe stays readable for every poller */
}

/* Reads output until the shepherd has exited and the pipes are closed, asking the shepherd to
 * stop at kill_at or on cancel; then reaps it. */
static void supervise(aip_executor *e, const aip_tool_call *call, exec_run *rs, uint64_t kill_at)
{
    sup_state st = {0};
    for (;;) {
        uint64_t now = aip_now_ns(NULL);
        if (!st.exited && child_exited(rs->pid))
            st.exited = true;
        bool pipes = rs->out >= 0 || rs->err >= 0 || rs->status_fd >= 0;
        if (st.exited && !pipes)
            break;
        bool cancel = st.cancel_seen || aip_tool_call_cancelled(call);
        if (!st.exited && !st.term_at && (now >= kill_at || cancel)) {
            rs->cancelled = cancel && now < kill_at;
            rs->timed_out = !rs->cancelled;
            kill(rs->pid, SIGTERM); /* the shepherd ends the whole tree */
            st.term_at = now;
        }
        if (!st.exited && st.term_at && !st.killed_at && now >= st.term_at + SHEPHERD_EXTRA_NS) {
            aip_log(AIP_LOG_WARN, AIP_EXEC_COMPONENT,
                    "command shepherd %ld did not stop: killing it and the command's group",
                    (long)rs->pid);
            kill(rs->pid, SIGKILL);
            if (rs->cmd_pid > 0)
                kill(-rs->cmd_pid, SIGKILL);
            st.killed_at = now;
        }
        if (st.exited && pipes) { /* gone, but something outside its tree holds a pipe */
            if (!st.exit_seen)
                st.exit_seen = now;
            if (now >= st.exit_seen + LEFTOVER_GIVEUP_NS)
                break;
        }
        sup_poll(e, rs, &st, sup_timeout(rs, &st, now, kill_at));
    }
    pid_t w;
    do
        w = waitpid(rs->pid, NULL, 0);
    while (w < 0 && errno == EINTR);
    if (rs->cgroup[0])
        cgroup_end(rs->cgroup);
}

int exec_run_to_end(aip_executor *e, const aip_tool_call *call, const char *path, char *const *argv,
                    const char *cwd, uint64_t kill_at, exec_run *rs)
{
    int err_no = 0;
    rs->out = rs->err = rs->pidfd = rs->status_fd = -1;
    rs->so.max = rs->se.max = e->max_output;
    if (spawn_shepherd(e, path, argv, cwd, rs, &err_no))
        return err_no ? err_no : EIO;
    supervise(e, call, rs, kill_at);
    if (rs->pidfd >= 0)
        close(rs->pidfd);
    int *fds[] = {&rs->out, &rs->err, &rs->status_fd}; /* all closed already, normally */
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    return rs->spawn_errno;
}

int exec_run_exit_code(const exec_run *rs)
{
    return !rs->reaped               ? -1
           : WIFEXITED(rs->status)   ? WEXITSTATUS(rs->status)
           : WIFSIGNALED(rs->status) ? -WTERMSIG(rs->status)
                                     : -1;
}

void exec_run_free(exec_run *rs)
{
    aip_free(rs->so.p);
    aip_free(rs->se.p);
    rs->so.p = rs->se.p = NULL;
}
