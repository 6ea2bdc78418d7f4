/* SPDX-License-Identifier: MIT */
/*
 * Futures (see aip/future.h).
 *
 * Invariants
 * - `done` goes false -> true once, under `lock`; the winner of that transition is the only
 *   one that stores the result, and it runs the callback after dropping the lock (callbacks may
 *   take other locks; we never hold ours across foreign code).
 * - The result fields are written before `done` is set and never again, so once a reader has
 *   seen done == true (under the lock, or through the acquire load) it may read them without
 *   the lock.
 * - The reference count is atomic; the last release frees. A completing thread holds its own
 *   reference for the duration of complete(), so a caller releasing concurrently is safe.
 * - complete() = settle() (the result, `done`, and the callback slot consumed, under `lock`)
 *   then notify() (the broadcast and the owed callback, once). The connection's service thread
 *   settles each answer as it decodes it and notifies after the whole socket read (see
 *   aip/internal/future_settle.h): between the two, done is already true; only the wake-up and
 *   the callback come later.
 */
#include "aip/future.h"
#include "aip/common.h"
#include "aip/internal/future_settle.h"
#include "aip/message.h"
#include "aip/port.h"

#include <stdatomic.h>
#include <string.h>

struct aip_future {
    _Atomic int refs;
    aip_mutex lock;
    aip_cond cond;
    _Atomic bool done;
    bool cb_running; /* the callback slot was consumed by the completer */
    bool cb_owed;    /* settled with a callback that aip_future_notify() has yet to run */
    int status;
    aip_msg msg;
    bool has_msg;
    char *error;
    aip_future_cb cb;
    void *cb_user;
};

aip_future *aip_future_create(void)
{
    aip_future *f = aip_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (aip_mutex_init(&f->lock)) {
        aip_free(f);
        return NULL;
    }
    if (aip_cond_init(&f->cond)) {
        aip_mutex_destroy(&f->lock);
        aip_free(f);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    atomic_init(&f->done, false);
    f->status = AIP_E_STATE;
    return f;
}

void aip_future_retain(aip_future *f)
{
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void aip_future_release(aip_future *f)
{
    if (!f)
        return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    aip_msg_clear(&f->msg);
    aip_free(f->error);
    aip_cond_destroy(&f->cond);
    aip_mutex_destroy(&f->lock);
    aip_free(f);
}

bool aip_future_done(const aip_future *f)
{
    return f && atomic_load_explicit(&f->done, memory_order_acquire);
}

int aip_future_status(const aip_future *f)
{
    if (!f)
        return AIP_E_INVAL;
    return aip_future_done(f) ? f->status : AIP_E_STATE;
}

const aip_msg *aip_future_msg(const aip_future *f)
{
    return aip_future_done(f) && f->has_msg ? &f->msg : NULL;
}

const char *aip_future_error(const aip_future *f)
{
    return aip_future_done(f) ? f->error : NULL;
}

int aip_future_wait(aip_future *f, int64_t timeout_ms)
{
    if (!f)
        return AIP_E_INVAL;
    if (aip_future_done(f))
        return f->status;
    uint64_t deadline = aip_deadline_ms(aip_now_ns(NULL), timeout_ms);
    aip_mutex_lock(&f->lock);
    while (!atomic_load_explicit(&f->done, memory_order_relaxed)) {
        if (timeout_ms < 0) {
            aip_cond_wait(&f->cond, &f->lock);
        } else if (aip_cond_wait_until(&f->cond, &f->lock, deadline) == AIP_E_TIMEOUT &&
                   !atomic_load_explicit(&f->done, memory_order_relaxed)) {
            aip_mutex_unlock(&f->lock);
            return AIP_E_TIMEOUT;
        }
    }
    int st = f->status;
    aip_mutex_unlock(&f->lock);
    return st;
}

int aip_future_set_callback(aip_future *f, aip_future_cb cb, void *user)
{
    if (!f)
        return AIP_E_INVAL;
    aip_mutex_lock(&f->lock);
    if (!atomic_load_explicit(&f->done, memory_order_relaxed)) {
        f->cb = cb;
        f->cb_user = user;
        aip_mutex_unlock(&f->lock);
        return 0;
    }
    bool run = !f->cb_running && cb;
    f->cb_running = true;
    aip_mutex_unlock(&f->lock);
    if (run)
        cb(f, user);
    return 0;
}

int aip_future_settle(aip_future *f, int status, aip_msg *msg, const char *error)
{
    if (!f) {
        if (msg) /* ownership moves whatever happens */
            aip_msg_clear(msg);
        return AIP_E_INVAL;
    }
    char *err_copy = error ? aip_strdup(error) : NULL;
    aip_mutex_lock(&f->lock);
    if (atomic_load_explicit(&f->done, memory_order_relaxed)) {
        aip_mutex_unlock(&f->lock);
        aip_free(err_copy);
        if (msg)
            aip_msg_clear(msg);
        return AIP_E_STATE;
    }
    f->status = status;
    f->error = err_copy;
    if (msg) {
        f->msg = *msg; /* move */
        f->has_msg = true;
        memset(msg, 0, sizeof *msg);
    }
    atomic_store_explicit(&f->done, true, memory_order_release);
    if (f->cb && !f->cb_running) {
        f->cb_running = true; /* consumed only when one actually runs */
        f->cb_owed = true;
    }
    aip_mutex_unlock(&f->lock);
    return 0;
}

void aip_future_notify(aip_future *f)
{
    aip_mutex_lock(&f->lock);
    bool run = f->cb_owed;
    f->cb_owed = false;
    aip_future_cb cb = f->cb;
    void *cb_user = f->cb_user;
    aip_mutex_unlock(&f->lock);
    /* After the unlock: `done` was set under the lock, so every waiter either saw it or is
     * already asleep on the condition; woken, it need not wait for our lock. */
    aip_cond_broadcast(&f->cond);
    if (run)
        cb(f, cb_user);
}

int aip_future_complete(aip_future *f, int status, aip_msg *msg, const char *error)
{
    aip_future_retain(f); /* the callback may release the caller's reference */
    int rc = aip_future_settle(f, status, msg, error);
    if (rc == 0)
        aip_future_notify(f);
    aip_future_release(f);
    return rc;
}

int aip_future_cancel(aip_future *f)
{
    if (!f)
        return AIP_E_INVAL;
    return aip_future_complete(f, AIP_E_CANCELLED, NULL, "cancelled by the caller");
}
