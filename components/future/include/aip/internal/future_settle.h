/* SPDX-License-Identifier: MIT */
/*
 * Completing a future in two steps (internal).
 *
 * aip_future_complete() = aip_future_settle() + aip_future_notify(). The connection's service
 * thread settles each answer as it decodes it and notifies them all after the socket read that
 * carried them (docs/performance.md, "Four caller threads"): a caller thread woken per answer
 * would preempt the service thread mid-read, once per answer; woken after the read, it takes
 * all of its answers in one wake-up.
 *
 * After settle() returned 0 the future is done (status, message and error readable, wait()
 * returns at once) but threads already blocked in wait() sleep on and the callback has not
 * run: the settler MUST call notify() exactly once, soon, holding a reference until then.
 */
#ifndef AIP_INTERNAL_FUTURE_SETTLE_H
#define AIP_INTERNAL_FUTURE_SETTLE_H

#include "aip/future.h"

/* Stores the result as aip_future_complete() does (msg is moved; error is copied) without
 * waking anyone. 0 if this call completed f; AIP_E_STATE if it was already complete (then
 * notify() is not owed); AIP_E_INVAL for NULL. */
int aip_future_settle(aip_future *f, int status, struct aip_msg *msg, const char *error);
/* Wakes the waiters of a settled future and runs its callback if one was set by then. */
void aip_future_notify(aip_future *f);

#endif
