/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* pthread_setname_np */
/* POSIX implementation of aip/port.h. Condition variables use CLOCK_MONOTONIC so a wall-clock
 * step (NTP, a user setting the date) never shortens or stretches a deadline. */
#include "aip/common.h"
#include "aip/port.h"

#include <errno.h>
#include <string.h>
#include <time.h>

int aip_mutex_init(aip_mutex *m)
{
    return pthread_mutex_init(&m->m, NULL) ? AIP_E_NOMEM : 0;
}

void aip_mutex_destroy(aip_mutex *m)
{
    pthread_mutex_destroy(&m->m);
}

void aip_mutex_lock(aip_mutex *m)
{
    pthread_mutex_lock(&m->m);
}

void aip_mutex_unlock(aip_mutex *m)
{
    pthread_mutex_unlock(&m->m);
}

int aip_cond_init(aip_cond *c)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a))
        return AIP_E_NOMEM;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&c->c, &a);
    pthread_condattr_destroy(&a);
    return rc ? AIP_E_NOMEM : 0;
}

void aip_cond_destroy(aip_cond *c)
{
    pthread_cond_destroy(&c->c);
}

void aip_cond_signal(aip_cond *c)
{
    pthread_cond_signal(&c->c);
}

void aip_cond_broadcast(aip_cond *c)
{
    pthread_cond_broadcast(&c->c);
}

void aip_cond_wait(aip_cond *c, aip_mutex *m)
{
    pthread_cond_wait(&c->c, &m->m);
}

int aip_cond_wait_until(aip_cond *c, aip_mutex *m, uint64_t deadline_ns)
{
    if (deadline_ns == AIP_NEVER) { /* a saturated deadline: no timespec needed */
        pthread_cond_wait(&c->c, &m->m);
        return 0;
    }
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    int rc = pthread_cond_timedwait(&c->c, &m->m, &ts);
    return rc == ETIMEDOUT ? AIP_E_TIMEOUT : 0;
}

int aip_thread_start(aip_thread *t, const char *name, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(&t->t, NULL, fn, arg);
    if (rc)
        return rc == EAGAIN ? AIP_E_FULL : AIP_E_NOMEM;
    if (name) {
        char n[16];
        strncpy(n, name, sizeof n - 1);
        n[sizeof n - 1] = 0;
        pthread_setname_np(t->t, n);
    }
    return 0;
}

void aip_thread_join(aip_thread *t)
{
    pthread_join(t->t, NULL);
}

int aip_thread_start_detached(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr))
        return AIP_E_NOMEM;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (rc)
        return rc == EAGAIN ? AIP_E_FULL : AIP_E_NOMEM;
    return 0;
}

void aip_call_once(aip_once *once, void (*fn)(void))
{
    pthread_once(&once->o, fn);
}
