/* SPDX-License-Identifier: MIT */
/* Test helper: run tests/integration/peers/aip_peer.py (or any server that prints
 * "listening on 127.0.0.1:<port>") as a child process on loopback. */
#ifndef AIP_TEST_PEER_PROC_H
#define AIP_TEST_PEER_PROC_H

#include <sys/types.h>

typedef struct peer_proc {
    pid_t pid;
    int out_fd; /* the child's stdout, kept open so late prints never hit EPIPE */
    int port;
    char url[128];    /* ws://127.0.0.1:<port>/ws */
    char log[256];    /* the peer's --log file (if requested) */
    char errlog[256]; /* if set before starting: the child's stderr goes to this file */
    char ctl[256];    /* fault proxy: its control file */
} peer_proc;

/* Starts /usr/bin/python3 <source>/tests/integration/peers/aip_peer.py --port 0 [--log F] args...
 * (NULL-terminated). with_log: pass a fresh --log file. Returns 0 or -1. */
int peer_start(peer_proc *p, int with_log, ...);
/* Starts any program (argv NULL-terminated) that prints the listening line. Set p->errlog
 * first (or zero p) to capture its stderr. */
int proc_start_listener(peer_proc *p, char *const argv[]);
void peer_stop(peer_proc *p);
/* Counts lines of the peer log containing every given substring (NULL-terminated). */
int peer_log_count(const peer_proc *p, ...);
/* Like peer_log_count, polling until the count is >= want or timeout_ms passes. */
int peer_log_wait(const peer_proc *p, int want, int timeout_ms, ...);
/* Starts tests/integration/peers/fault_proxy.py in front of 127.0.0.1:<target_port> with a fresh
 * control file (p->ctl) and log (p->log). p->url is the proxy's ws://127.0.0.1:<port>/ws.
 * Returns 0 or -1. Stop it with peer_stop (which also removes the control file). */
int proxy_start(peer_proc *p, int target_port);
/* Appends one command line to the proxy's control file (see fault_proxy.py). 0 or -1. */
int proxy_cmd(const peer_proc *p, const char *cmd);
/* Monotonic milliseconds. */
double now_ms(void);

#endif
