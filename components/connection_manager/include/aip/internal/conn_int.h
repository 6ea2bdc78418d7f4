/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/conn_int.h — the ConnectionManager's private state, shared by its three files
 * (not installed):
 *
 *   conn.c          creation, destruction, stats, the shutdown gate, the state getters;
 *   conn_link.c     the link: registration, heartbeat and liveness, the transport's events,
 *                   and what the server sends of its own accord (command, task,
 *                   device_info_request, malformed frames);
 *   conn_request.c  the requests: encoding and sending, submit, the pending table, completion
 *                   (answers, errors, deadlines, the disconnect sweep, oversized answers), and
 *                   why a request cannot be lost or sent on the wrong link.
 *
 * Locking: one mutex, `lock`, guards the pending table, the link snapshot (registered, link,
 * enc), the state and the shutdown gate. It is never held while a future completes, a user
 * callback runs, a frame is encoded, or libwebsockets is called: futures are taken out of the
 * table under the lock and completed after it is dropped. The fields under "service thread
 * only" are touched by the transport's service thread alone (its events, timers and the
 * MessageProcessor's handlers), so they need no lock.
 */
#ifndef AIP_INTERNAL_CONN_INT_H
#define AIP_INTERNAL_CONN_INT_H

#include "aip/conn.h"
#include "aip/internal/backoff.h"
#include "aip/internal/pending.h"
#include "aip/internal/processor.h"
#include "aip/internal/transport.h"
#include "aip/port.h"

#include <stdatomic.h>

#define LOG_COMP "conn"

enum {
    S_FRAMES_SENT,
    S_REQUESTS,
    S_COMPLETED,
    S_REMOTE_ERRORS,
    S_TIMEOUTS,
    S_CONN_LOST,
    S_LATE,
    S_UNMATCHED,
    S_ERRORS_UNCORRELATED,
    S_REGISTRATIONS,
    S_REGISTRATION_FAILURES,
    S_RECONNECTS,
    S_LIVENESS_DROPS,
    S_QUEUE_FULL,
    S_TOO_LARGE,
    S_COUNT
};

struct aip_conn {
    aip_conn_config cfg; /* strings point at the owned copies below */
    char *url, *client_id, *target_id, *token, *ca_file, *cert_file, *key_file, *thread_name;
    char *reg_metadata; /* the registration metadata, with our extensions */
    aip_transport *tr;
    aip_processor proc;
    aip_timer *t_heartbeat, *t_register, *t_deadline;

    aip_mutex lock;
    aip_cond cond;
    bool gate_closed;
    int inflight;
    aip_pending pending;
    bool registered;
    uint64_t link;    /* the registered link, 0 when none */
    aip_encoding enc; /* its encoding */
    aip_conn_state state;
    int refused;           /* the standing refusal: AIP_E_AUTH, AIP_E_REFUSED or 0 */
    char refused_why[300]; /* its text */

    /* service thread only */
    uint64_t cur_link;
    aip_encoding link_enc;
    bool registering;
    uint64_t last_rx_ns;
    uint64_t next_hb_ns; /* when the next heartbeat is due */
    uint64_t deadline_scheduled;
    bool warned_fallback;
    char refusal[200];
    int refusal_err;          /* the code of `refusal` */
    char last_refusal[300];   /* the last refusal logged at warn (until registered) */
    uint64_t refusal_repeats; /* the same one again since, logged at debug */
    uint64_t malformed_logged;
    uint64_t oversized_unlogged; /* skipped messages not yet reported in the log */
    uint64_t reg_since_ns;       /* when the current link registered, 0 when it has not */
    aip_link_streak streak;      /* registered links in a row that lasted about the same */
    uint64_t oversized_logged_ns;
    bool oversized_logged;
    /* answers settled during this service round, notified at its end (future_settle.h) */
    aip_pending_entry *settled_head, **settled_tail;

    _Atomic uint64_t st[S_COUNT];
};

static inline void stat_inc(aip_conn *c, int s)
{
    atomic_fetch_add_explicit(&c->st[s], 1, memory_order_relaxed);
}

/* ---- conn.c --------------------------------------------------------------------------------- */

/* The shutdown gate: every public call that uses the transport enters it (AIP_E_SHUTDOWN once
 * destroy has begun) and leaves it; destroy waits for the calls inside. */
int aip_conn_gate_enter(aip_conn *c);
void aip_conn_gate_leave(aip_conn *c);

/* ---- conn_link.c (service thread, but aip_conn_build_metadata: creation) ------------------ */

/* Registers the link side's message handlers on c->proc and sets its transport events in ev
 * (on_open, on_frame, on_close, on_backoff, on_wake). */
void aip_conn_link_wire(aip_conn *c, aip_transport_events *ev);
/* The heartbeat/liveness timer and the registration timeout (timer callbacks, user = c). */
void aip_conn_on_heartbeat_timer(void *user);
void aip_conn_on_register_timeout(void *user);
/* The server refused the registration (an error frame while registering) with text. */
void aip_conn_refuse_registration(aip_conn *c, const char *text);
/* Builds c->reg_metadata from the caller's metadata object. 0 or AIP_E_CONFIG/AIP_E_NOMEM. */
int aip_conn_build_metadata(aip_conn *c, const char *user_md);

/* ---- conn_request.c ------------------------------------------------------------------------- */

/* Registers the request side's message handlers on c->proc and sets ev->on_oversized and
 * ev->on_round_end. */
void aip_conn_request_wire(aip_conn *c, aip_transport_events *ev);
/* Stamps, encodes and queues m for link (any thread that knows the link). */
int aip_conn_send_raw(aip_conn *c, uint64_t link, aip_encoding enc, const aip_msg *m);
/* Takes every pending entry and fails it with status and why (the disconnect sweep). */
void aip_conn_fail_all(aip_conn *c, int status, const char *why);
/* Service thread: schedules the deadline timer for the earliest pending deadline. */
void aip_conn_reschedule_deadline(aip_conn *c);
/* The deadline timer (user = c): fails the requests whose deadline has passed. */
void aip_conn_on_deadline(void *user);

#endif /* AIP_INTERNAL_CONN_INT_H */
