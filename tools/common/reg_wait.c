/* SPDX-License-Identifier: MIT */
/* Registration waits for the command-line tools (see reg_wait.h). */
#include "reg_wait.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

void tool_reg_on_state(aip_conn *c, const aip_conn_event *ev, void *user)
{
    (void)c;
    tool_reg_waiter *w = user;
    pthread_mutex_lock(&w->m);
    if (ev->state == AIP_CONN_REGISTERED)
        w->registered = 1;
    else if (ev->state == AIP_CONN_DISCONNECTED && !w->registered && !w->failure[0])
        snprintf(w->failure, sizeof w->failure, "%s", ev->detail);
    pthread_cond_broadcast(&w->c);
    pthread_mutex_unlock(&w->m);
}

int tool_reg_wait(tool_reg_waiter *w, double timeout_s, const char *prog)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)timeout_s;
    dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->m);
    int rc = 0;
    while (!w->registered && !w->failure[0] && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->c, &w->m, &dl);
    int ok = w->registered;
    pthread_mutex_unlock(&w->m);
    if (ok)
        return 0;
    if (w->failure[0])
        fprintf(stderr, "%s: %s\n", prog, w->failure);
    else
        fprintf(stderr, "%s: not registered within %.0f s\n", prog, timeout_s);
    return 1;
}
