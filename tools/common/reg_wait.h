/* SPDX-License-Identifier: MIT */
/* Waiting for an aip_conn's registration in the command-line tools: a refused registration or
 * an unreachable server is reported at once (from the state callback), not at the timeout. */
#ifndef AIP_TOOLS_REG_WAIT_H
#define AIP_TOOLS_REG_WAIT_H

#include <aip/aip.h>

#include <pthread.h>

typedef struct tool_reg_waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int registered;
    char failure[300];
} tool_reg_waiter;

#define TOOL_REG_WAITER_INIT                                       \
    {                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, "" \
    }

/* Use as aip_conn_config.on_state with user = the waiter. */
void tool_reg_on_state(aip_conn *c, const aip_conn_event *ev, void *user);
/* 0 when registered; else prints "<prog>: <reason>" on stderr and returns 1. */
int tool_reg_wait(tool_reg_waiter *w, double timeout_s, const char *prog);

#endif
