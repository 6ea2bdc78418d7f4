/* SPDX-License-Identifier: MIT */
/* Test helper: child processes that listen on loopback (see peer_proc.h). */
#include "peer_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AIP_SOURCE_DIR
#error "AIP_SOURCE_DIR must be defined"
#endif

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int proc_start_listener(peer_proc *p, char *const argv[])
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        if (p->errlog[0]) {
            int fd = open(p->errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) {
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
        }
        close(fds[0]);
        close(fds[1]);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that crashed or failed */
        if (getppid() == 1)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p->pid = pid;
    p->port = 0;
    char buf[512];
    size_t len = 0;
    double deadline = now_ms() + 15000;
    while (now_ms() < deadline && len < sizeof buf - 1) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        char *l = strstr(buf, "listening on ");
        if (l && strchr(l, '\n')) {
            char *colon = strrchr(l, ':');
            p->port = atoi(colon + 1);
            break;
        }
    }
    p->out_fd = fds[0];
    fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
    if (!p->port) {
        peer_stop(p);
        return -1;
    }
    snprintf(p->url, sizeof p->url, "ws://127.0.0.1:%d/ws", p->port);
    return 0;
}

int peer_start(peer_proc *p, int with_log, ...)
{
    memset(p, 0, sizeof *p);
    char *argv[64];
    int n = 0;
    static char py[] = "/usr/bin/python3";
    static char script[] = AIP_SOURCE_DIR "/tests/integration/peers/aip_peer.py";
    static char port[] = "--port", zero[] = "0", logf[] = "--log";
    argv[n++] = py;
    argv[n++] = script;
    argv[n++] = port;
    argv[n++] = zero;
    if (with_log) {
        snprintf(p->log, sizeof p->log, "/tmp/aip-peer-%d-%d.log", (int)getpid(), rand());
        unlink(p->log);
        argv[n++] = logf;
        argv[n++] = p->log;
    }
    va_list ap;
    va_start(ap, with_log);
    char *a;
    while ((a = va_arg(ap, char *)) && n < 62)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return proc_start_listener(p, argv);
}

void peer_stop(peer_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        int st;
        for (int i = 0; i < 50; i++) {
            if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
                p->pid = 0;
                break;
            }
            usleep(100000);
        }
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
        }
        p->pid = 0;
    }
    if (p->out_fd > 0)
        close(p->out_fd);
    p->out_fd = 0;
    if (p->log[0])
        unlink(p->log);
    if (p->ctl[0])
        unlink(p->ctl);
}

int proxy_start(peer_proc *p, int target_port)
{
    memset(p, 0, sizeof *p);
    static char py[] = "/usr/bin/python3";
    static char script[] = AIP_SOURCE_DIR "/tests/integration/peers/fault_proxy.py";
    static char target[] = "--target", ctl[] = "--control", logf[] = "--log";
    char port[16];
    snprintf(port, sizeof port, "%d", target_port);
    int r = rand();
    snprintf(p->log, sizeof p->log, "/tmp/aip-proxy-%d-%d.log", (int)getpid(), r);
    snprintf(p->ctl, sizeof p->ctl, "/tmp/aip-proxy-%d-%d.ctl", (int)getpid(), r);
    unlink(p->log);
    unlink(p->ctl);
    char *argv[] = {py, script, target, port, ctl, p->ctl, logf, p->log, NULL};
    return proc_start_listener(p, argv);
}

int proxy_cmd(const peer_proc *p, const char *cmd)
{
    FILE *f = fopen(p->ctl, "a");
    if (!f)
        return -1;
    int rc = fprintf(f, "%s\n", cmd) < 0 ? -1 : 0;
    if (fclose(f))
        rc = -1;
    return rc;
}

static int log_count_v(const peer_proc *p, va_list ap)
{
    FILE *f = fopen(p->log, "r");
    if (!f)
        return 0;
    const char *subs[16];
    int ns = 0;
    const char *s;
    while ((s = va_arg(ap, const char *)) && ns < 16)
        subs[ns++] = s;
    char *line = NULL;
    size_t cap = 0;
    int count = 0;
    while (getline(&line, &cap, f) > 0) {
        int ok = 1;
        for (int i = 0; i < ns && ok; i++)
            ok = strstr(line, subs[i]) != NULL;
        count += ok;
    }
    free(line);
    fclose(f);
    return count;
}

int peer_log_count(const peer_proc *p, ...)
{
    va_list ap;
    va_start(ap, p);
    int n = log_count_v(p, ap);
    va_end(ap);
    return n;
}

int peer_log_wait(const peer_proc *p, int want, int timeout_ms, ...)
{
    double deadline = now_ms() + timeout_ms;
    int n;
    for (;;) {
        va_list ap;
        va_start(ap, timeout_ms);
        n = log_count_v(p, ap);
        va_end(ap);
        if (n >= want || now_ms() >= deadline)
            return n;
        usleep(20000);
    }
}
