/* SPDX-License-Identifier: MIT */
/*
 * aip/future.h — a one-shot result slot for one request.
 *
 * Design note (after nng's aio): a future completes exactly once — with a value, a remote
 * error, a timeout, a cancel, a lost connection or shutdown, whichever comes first; every later
 * completion attempt is a no-op that reports AIP_E_STATE. Waiters sleep on the future's own
 * condition variable with their own deadline, so a caller never depends on another thread
 * (the service thread, say) to wake it up.
 *
 * Ownership: reference-counted. Whoever receives a future from an aip_* call owns one
 * reference and must aip_future_release() it, whether or not it completed; the library keeps
 * its own reference while the request is pending. Either side may release first.
 *
 * Threads: every function may be called from any thread. A completion callback runs on the
 * thread that completes the future — usually the connection's service thread — so it MUST NOT
 * block (no waiting on other futures, no sleeping, no blocking I/O) and must return quickly.
 * If the future is already complete when the callback is set, it runs at once on the setting
 * thread. A callback never runs twice and never runs for a request that failed synchronously.
 *
 * Answers: the service thread completes every answer one socket read carried before it wakes
 * their waiters and runs their callbacks (in the order the answers came). So a thread that
 * waits on its requests' futures one after another is woken once per read, not once per
 * answer, and finds the rest already done; aip_future_done() may turn true a little before the
 * waiters wake (by the rest of that read's decoding).
 *
 * NULL: every function accepts a NULL future: the int ones return AIP_E_INVAL (complete()
 * still clears msg), done() is false, msg()/error() are NULL, retain()/release() do nothing.
 */
#ifndef AIP_FUTURE_H
#define AIP_FUTURE_H

#include "aip/export.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_future aip_future;
/* The answer a future may carry (aip_msg, aip/message.h). The future holds it without looking
 * inside: this header needs only the name (a struct tag, not a second typedef, which C99
 * would not take). */
struct aip_msg;

typedef void (*aip_future_cb)(aip_future *f, void *user);

/* A pending future with one reference (the caller's). NULL on out of memory. */
AIP_API aip_future *aip_future_create(void);
AIP_API void aip_future_retain(aip_future *f);
AIP_API void aip_future_release(aip_future *f); /* NULL is fine */

/* Waits until the future completes or timeout_ms passes: AIP_TIMEOUT_POLL (0) only looks,
 * AIP_TIMEOUT_INFINITE (INT64_MAX, or any negative value) waits without limit (aip/common.h,
 * "timeouts"; the deadline saturates, so a huge value is no limit, not an immediate timeout).
 * Returns the future's status once complete (0 or an AIP_E* code), or AIP_E_TIMEOUT when the
 * wait timed out and the future is still pending (this wait's timeout only: the request keeps
 * its own deadline and may still complete). */
AIP_API int aip_future_wait(aip_future *f, int64_t timeout_ms);

AIP_API bool aip_future_done(const aip_future *f);

/* 0 for success, else the AIP_E* code; AIP_E_STATE while pending. */
AIP_API int aip_future_status(const aip_future *f);

/* The response message (task_end, device_info_response, ...) when there is one, else NULL.
 * Valid while the caller holds its reference; do not free. Also set for AIP_E_REMOTE when the
 * peer's answer was a message (a failed task_end, an error frame). */
AIP_API const struct aip_msg *aip_future_msg(const aip_future *f);

/* Human-readable detail for a failure (the remote error text, or what timed out), else NULL.
 * Valid while the caller holds its reference. */
AIP_API const char *aip_future_error(const aip_future *f);

/* Completes a pending future with AIP_E_CANCELLED. Returns 0, or AIP_E_STATE if it had
 * already completed. The library notices lazily: the request's pending slot is reclaimed at
 * its deadline, when its answer arrives (dropped, counted as late), or when its id or slot is
 * needed again — so a cancel never races with the service thread. */
AIP_API int aip_future_cancel(aip_future *f);

/* Sets the completion callback (one per future; setting again replaces a not-yet-run one).
 * See the thread rules above. Returns 0. */
AIP_API int aip_future_set_callback(aip_future *f, aip_future_cb cb, void *user);

/* Completes a pending future. msg (may be NULL) is moved into the future (left cleared);
 * error (may be NULL) is copied. Returns 0 if this call completed it, AIP_E_STATE if it was
 * already complete (then msg is still cleared: ownership always moves). For libraries and
 * embedders building their own request types; the connection manager uses it. */
AIP_API int aip_future_complete(aip_future *f, int status, struct aip_msg *msg, const char *error);

#ifdef __cplusplus
}
#endif
#endif /* AIP_FUTURE_H */
