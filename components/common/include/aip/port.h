/* SPDX-License-Identifier: MIT */
/*
 * aip/port.h — the portability seam: threads, mutexes, condition variables, atomics.
 *
 * The core components (message, codec, future, transport, message_processor,
 * connection_manager) use only these, never pthreads directly, so a FreeRTOS port replaces
 * port_posix.c and nothing else. Condition variables wait against the monotonic clock.
 *
 * NULL arguments: not installed, called by libaip only; like pthreads, the pointers must be
 * valid and are not checked (a NULL here is a bug inside libaip, and a lock call that quietly
 * did nothing would turn it into a data race instead of a crash).
 */
#ifndef AIP_PORT_H
#define AIP_PORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_mutex {
    pthread_mutex_t m;
} aip_mutex;

typedef struct aip_cond {
    pthread_cond_t c;
} aip_cond;

typedef struct aip_thread {
    pthread_t t;
} aip_thread;

typedef struct aip_once {
    pthread_once_t o;
} aip_once;
#define AIP_ONCE_INIT     \
    {                     \
        PTHREAD_ONCE_INIT \
    }

int aip_mutex_init(aip_mutex *m);
void aip_mutex_destroy(aip_mutex *m);
void aip_mutex_lock(aip_mutex *m);
void aip_mutex_unlock(aip_mutex *m);

int aip_cond_init(aip_cond *c);
void aip_cond_destroy(aip_cond *c);
void aip_cond_signal(aip_cond *c);
void aip_cond_broadcast(aip_cond *c);
void aip_cond_wait(aip_cond *c, aip_mutex *m);
/* Waits until woken or the monotonic clock (system clock, ns) reaches deadline_ns
 * (AIP_NEVER: no deadline). Returns 0 when woken (possibly spuriously), AIP_E_TIMEOUT at the
 * deadline. */
int aip_cond_wait_until(aip_cond *c, aip_mutex *m, uint64_t deadline_ns);

/* name is shown in ps/top (at most 15 characters used). */
int aip_thread_start(aip_thread *t, const char *name, void *(*fn)(void *), void *arg);
void aip_thread_join(aip_thread *t);
/* A thread nobody joins: its resources go when fn returns (the transport's DNS and proxy
 * probe helpers, whose answer may no longer be wanted). Unnamed: it may be gone before a name
 * could be set. Returns 0, AIP_E_FULL (no more threads) or AIP_E_NOMEM; when it fails, fn
 * never runs. */
int aip_thread_start_detached(void *(*fn)(void *), void *arg);

/* Runs fn exactly once per `once`, however many threads call; every caller returns after it
 * ran. */
void aip_call_once(aip_once *once, void (*fn)(void));

#ifdef __cplusplus
}
#endif
#endif /* AIP_PORT_H */
