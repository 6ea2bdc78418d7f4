/* SPDX-License-Identifier: MIT */
/*
 * aip/conn.h — the AIP client: one WebSocket to an orchestrator, shared by many threads.
 *
 * THE THREAD CONTRACT
 * - Each aip_conn has one service thread. It is the only thread that touches libwebsockets,
 *   reads or writes the socket, runs timers, and runs the MessageProcessor — the ONLY receive
 *   path. No API call ever reads the socket, so two readers on one socket cannot happen.
 * - Any thread may call any function here, concurrently (except aip_conn_destroy, which must
 *   not race with calls on the same conn that start after it: see below). A request encodes
 *   its frame on the caller's thread, registers its future in the pending table *before* the
 *   frame is queued, queues it (bounded), and wakes the service thread.
 * - Nothing is sent before the server acknowledged the registration. A request made while not
 *   registered fails at once with AIP_E_NOT_CONNECTED, unless opts.wait_for_link is set: then
 *   it waits for the link, bounded by its own timeout.
 * - Every request is correlated by id (tasks by session_id, device info by request_id), has its
 *   own deadline, and completes exactly once: answer, remote error, timeout, cancel, connection
 *   lost (AIP_E_CONN_LOST, the moment the link is known lost — requests are never resent),
 *   an answer larger than max_frame_in (AIP_E_TOO_LARGE, the moment its first bytes name the
 *   request; else at its deadline), or shutdown (AIP_E_SHUTDOWN).
 * - An inbound message larger than max_frame_in is skipped unread (only its first 8 KiB are
 *   looked at, for its type and id); the link stays up. It is counted (stats.oversized) and
 *   logged at most once a minute. The one exception: a `command` whose response_id cannot be
 *   read there, which no device could answer, closes the link with 1009 so that the server
 *   fails its task at once (a readable one is answered as a failed batch).
 * - Callbacks (future callbacks, the state callback, the device hooks) run on the service
 *   thread and MUST NOT block; they may call any aip_conn function except aip_conn_destroy. If
 *   a call fails synchronously (returns < 0), its future callback is never called.
 * - aip_conn_destroy() closes a gate first: calls that start afterwards get AIP_E_SHUTDOWN; it
 *   waits for calls already inside, fails everything pending with AIP_E_SHUTDOWN, closes the
 *   link with a close frame, joins the service thread, and frees. Do not call it from a
 *   callback, and do not use the pointer once it has returned.
 *
 * Ownership: config strings are copied at create. Futures returned to the caller carry one
 * reference the caller must release (aip_future_release).
 *
 * NULL and out-of-range arguments: a NULL conn, config, options or out pointer is AIP_E_INVAL
 * (never a crash): aip_conn_create(&cfg, NULL) and aip_conn_wait_registered(NULL, t) included;
 * destroy(NULL) and config_init(NULL) do nothing; get_state(NULL) is AIP_CONN_STOPPED,
 * client_id(NULL) NULL, encoding(NULL) JSON, get_stats(NULL, s) zeroes s. Timeouts may be any
 * int64_t: deadlines saturate, so INT64_MAX ms (AIP_TIMEOUT_INFINITE) means "no deadline", never
 * one in the past. The named values (aip/common.h, "timeouts"): in a request's options
 * AIP_TIMEOUT_DEFAULT (0) takes the config's default; in aip_conn_wait_registered
 * AIP_TIMEOUT_POLL (0) only looks.
 *
 * Config and stats: a zero numeric field of aip_conn_config takes its default (the values
 * aip_conn_config_init writes), so a zeroed config with url and client_id set is a valid one.
 * aip_conn_config, aip_conn_stats, aip_request_opts and aip_task_opts may grow (fields
 * appended) before 1.0: fill them with aip_conn_config_init or zero them ({0}), and rebuild
 * against the new header when the library's minor version changes.
 */
#ifndef AIP_CONN_H
#define AIP_CONN_H

#include "aip/export.h"

#include "aip/codec.h"
#include "aip/common.h"
#include "aip/future.h"
#include "aip/message.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_conn aip_conn;

typedef enum aip_conn_state {
    AIP_CONN_CONNECTING = 0, /* a connection attempt is under way */
    AIP_CONN_REGISTERING,    /* WebSocket open, registration sent */
    AIP_CONN_REGISTERED,     /* the server acknowledged: requests flow */
    AIP_CONN_DISCONNECTED,   /* a link ended (see close_code/detail) */
    AIP_CONN_BACKOFF,        /* waiting delay_ms before the next attempt */
    AIP_CONN_STOPPED,        /* destroyed */
} aip_conn_state;

typedef struct aip_conn_event {
    aip_conn_state state;
    const char *detail; /* why (close reason, refusal text, error), never NULL */
    int close_code;     /* DISCONNECTED: the WebSocket close code, 1006 when none */
    uint32_t delay_ms;  /* BACKOFF */
    uint32_t attempt;   /* BACKOFF: consecutive failed attempts so far */
    bool proto;         /* REGISTERED: protobuf frames in use */
    /* DISCONNECTED: why, as an AIP_E_* code. AIP_E_AUTH: the server or an HTTP CONNECT proxy
     * refused the credentials (HTTP 401/403/407, or the proxy's 403); AIP_E_REFUSED: the
     * registration was refused for a lasting reason (a duplicate client_id, a target device
     * that is not connected). Both are retried on the slow schedule (near backoff_cap_ms, not
     * the fast backoff) and logged at warn once per distinct text. Also AIP_E_REMOTE (another
     * refusal or HTTP status), AIP_E_NOT_FOUND (HTTP 404), AIP_E_TIMEOUT (no registration
     * answer), AIP_E_TLS, AIP_E_IO (could not connect), AIP_E_CONN_LOST (an open link ended).
     * detail names it, e.g. "the server refused the token (HTTP 403)". */
    int error;
} aip_conn_event;

typedef void (*aip_conn_state_cb)(aip_conn *c, const aip_conn_event *ev, void *user);

/* Device-role hooks: a server `command`, `device_info_request` [ext] or `task` arrived on
 * link `link`. Runs on the service thread: hand heavy work to another thread and reply later
 * with aip_conn_send_on(c, link, reply) from any thread. The hook may take ownership of the
 * message's contents (move them out, leaving *m zeroed). Without a hook the connection answers
 * itself: every action of a command fails ("no executor"), the others get an `error`. */
typedef void (*aip_conn_msg_cb)(aip_conn *c, aip_msg *m, uint64_t link, void *user);

typedef enum aip_token_placement {
    AIP_AUTH_QUERY = 0,  /* ?token=<key>, what UFO's server reads */
    AIP_AUTH_BEARER = 1, /* Authorization: Bearer <key> [ext] */
} aip_token_placement;

typedef struct aip_conn_config {
    const char *url;       /* ws://host:port/ws or wss://... (required; ?token=KEY works and
                              is logged as ?token=<redacted>; user:password@ is AIP_E_CONFIG) */
    const char *client_id; /* required */
    aip_client_type client_type;
    const char *target_id; /* constellation: the device it drives */
    const char *token;     /* never logged */
    aip_token_placement token_placement;
    aip_encoding encoding; /* PROTO: offer aip.v1.proto, fall back to JSON if not selected */
    const char *ca_file;   /* wss: CA bundle; NULL = the system store. Verification is on. */
    const char *cert_file, *key_file; /* wss client certificate (mTLS) */
    bool tls_insecure; /* tests only: skip certificate and host-name checks (logged as a
                          warning on every connection attempt, at most one per 10 s) */
    /* Registration metadata, a JSON object. The library adds "aip_extensions" (and, for a
     * constellation without one, "type": "constellation_client"). */
    const char *metadata_json;
    uint32_t heartbeat_ms;           /* 30000; the link is dead after 3 silent intervals */
    uint32_t register_timeout_ms;    /* 10000 */
    uint32_t device_info_timeout_ms; /* default for device-info requests: 10000 */
    uint32_t task_timeout_ms;        /* default for tasks: 1000000 (UFO's 1000 s) */
    /* WebSocket ping after ping_s of silence, hang-up after hangup_s. 0 (the default): the ping
     * follows the heartbeat, heartbeat + 5 s within [20, 50] (35 s for 30 s), so an answered
     * heartbeat leaves nothing to ping for while a heartbeat over 45 s still gets a ping before
     * a proxy's 60 s idle timeout; hang-up ping_s + 10 (45 s). */
    uint32_t ping_s, hangup_s;
    size_t max_frame_in;                      /* 1 MiB; larger inbound messages are skipped */
    size_t max_pending;                       /* 65536 requests */
    size_t max_queued_bytes;                  /* 8 MiB */
    uint32_t backoff_base_ms, backoff_cap_ms; /* 1000, 60000 */
    uint32_t stable_ms; /* a link up this long resets the backoff: 30000; so does a link that
                         * registered and was up backoff_base_ms (aip/internal/backoff.h) */
    aip_conn_state_cb on_state;
    aip_conn_msg_cb on_command, on_device_info_request, on_task;
    void *user;
    const aip_random *random; /* NULL: the default source (ids, jitter) */
    const char *thread_name;  /* "aip-service" */
} aip_conn_config;

/* Fills c with the defaults above (all pointers NULL). */
AIP_API void aip_conn_config_init(aip_conn_config *c);

/* Creates the connection and starts connecting on its service thread. */
AIP_API int aip_conn_create(const aip_conn_config *cfg, aip_conn **out);
/* Closes with 1000 "client shutdown" (see the contract above). NULL is fine. */
AIP_API void aip_conn_destroy(aip_conn *c);
/* As destroy, with a chosen close code (1000 or 1001) and reason, waiting at most grace_ms for
 * the close handshake. */
AIP_API void aip_conn_destroy_ex(aip_conn *c, int code, const char *reason, uint32_t grace_ms);

typedef struct aip_request_opts {
    /* Device info: the request_id to use (NULL: generated); a live duplicate is refused with
     * AIP_E_DUPLICATE. Tasks take aip_task_opts.session_id instead. */
    const char *id;
    int64_t timeout_ms;     /* AIP_TIMEOUT_DEFAULT (0, or < 0): the config's default for this
                               request type; AIP_TIMEOUT_INFINITE (INT64_MAX): no deadline;
                               huge values saturate */
    bool wait_for_link;     /* wait for registration instead of AIP_E_NOT_CONNECTED */
    aip_future_cb callback; /* optional, runs on the service thread (must not block) */
    void *user;
} aip_request_opts;

/* Asks the server for a device's system info (target_id NULL: the config's target).
 * The future completes with the device_info_response (aip_future_msg()->result holds the
 * system_info JSON), or AIP_E_REMOTE when the server answered with an error or with a result
 * carrying "error" (UFO's answer for an unknown device), or a timeout/lost/shutdown code.
 * Synchronous errors: AIP_E_NOT_CONNECTED, AIP_E_FULL, AIP_E_SHUTDOWN, AIP_E_INVAL, NOMEM. */
AIP_API int aip_conn_request_device_info(aip_conn *c, const char *target_id,
                                         const aip_request_opts *o, aip_future **out);

typedef struct aip_task_opts {
    const char *request;    /* the task text (required) */
    const char *task_name;  /* NULL: generated */
    const char *session_id; /* NULL: generated "<task_name>@<uuid>"; a live duplicate is
                               refused with AIP_E_DUPLICATE */
    const char *target_id;  /* NULL: the config's target */
    aip_request_opts req;
} aip_task_opts;

/* Sends a task and completes with its task_end: status 0 when "completed", AIP_E_REMOTE when
 * "failed" or when the server refused it (aip_future_msg() holds the task_end or error). */
AIP_API int aip_conn_send_task(aip_conn *c, const aip_task_opts *o, aip_future **out);

/* Sends one client message, fire-and-forget, on link `link` (0: the current one). Sets
 * client_id, client_type and timestamp when unset (m is not modified). Returns 0 once
 * queued; AIP_E_NOT_CONNECTED, AIP_E_CONN_LOST (that link is gone), AIP_E_FULL, AIP_E_PROTOCOL
 * (invalid message), AIP_E_SHUTDOWN. */
AIP_API int aip_conn_send_on(aip_conn *c, uint64_t link, const aip_msg *m);
AIP_API int aip_conn_send(aip_conn *c, const aip_msg *m);

/* Waits until registered (0), the timeout (AIP_E_TIMEOUT), shutdown (AIP_E_SHUTDOWN), or a
 * standing refusal (see aip_conn_get_refusal): AIP_E_AUTH or AIP_E_REFUSED, at once — also
 * when the refusal came before the call (the connection keeps retrying on the slow schedule;
 * a caller that waits again should sleep first). AIP_TIMEOUT_POLL (0): only looks;
 * AIP_TIMEOUT_INFINITE (INT64_MAX, or any negative value): no limit.
 * AIP_E_INVAL for a NULL c. */
AIP_API int aip_conn_wait_registered(aip_conn *c, int64_t timeout_ms);

/* Any thread: the standing refusal — the latest attempt was refused for a lasting reason, and
 * no WebSocket has opened since: AIP_E_AUTH (credentials refused by the server or a proxy) or
 * AIP_E_REFUSED (registration refused as final), with its text in why (e.g. "registration
 * refused: Target device 'x' is not connected"; may be NULL/0); 0 and "" when none. NULL c:
 * AIP_E_INVAL. */
AIP_API int aip_conn_get_refusal(aip_conn *c, char *why, size_t n);

/* Any thread, wss:// only: use these TLS files (CA bundle, NULL = the system store; client
 * certificate and key, both or neither) from the next connection on. They are loaded on the
 * service thread into a new client vhost; an open link is not dropped and keeps the files it
 * was made with. A file that does not load is logged and the previous files stay in use.
 * Errors: AIP_E_UNSUPPORTED (ws://), AIP_E_INVAL, AIP_E_SHUTDOWN. */
AIP_API int aip_conn_reload_tls(aip_conn *c, const char *ca_file, const char *cert_file,
                                const char *key_file);

AIP_API aip_conn_state aip_conn_get_state(aip_conn *c);
AIP_API const char *aip_conn_state_str(aip_conn_state s);
AIP_API const char *aip_conn_client_id(const aip_conn *c);
/* The encoding of the current link (JSON when not connected). */
AIP_API aip_encoding aip_conn_encoding(aip_conn *c);

typedef struct aip_conn_stats {
    uint64_t frames_sent, frames_received, bytes_sent, bytes_received;
    uint64_t requests;      /* requests accepted (tasks + device info) */
    uint64_t completed;     /* answered with success */
    uint64_t remote_errors; /* answered with an error */
    uint64_t timeouts;
    uint64_t conn_lost;           /* failed because the link dropped */
    uint64_t late;                /* answers for requests that had timed out or been cancelled */
    uint64_t unmatched;           /* answers for ids never seen */
    uint64_t malformed;           /* inbound frames that did not decode */
    uint64_t errors_uncorrelated; /* server errors naming no pending request */
    uint64_t registrations, registration_failures;
    uint64_t reconnects;     /* connection attempts after the first */
    uint64_t dropped_frames; /* queued frames dropped because their link ended */
    uint64_t queue_full;     /* sends refused with AIP_E_FULL */
    uint64_t liveness_drops; /* links dropped for silence */
    uint64_t pending;        /* requests pending now */
    uint64_t oversized;      /* inbound messages over max_frame_in, skipped unread (link kept) */
    uint64_t too_large;      /* requests failed with AIP_E_TOO_LARGE: their answer was skipped */
} aip_conn_stats;

/* A snapshot of the counters. They are updated on the service thread just after the event
 * they count (a waiter woken by a completion may see its counter a moment later). */
AIP_API void aip_conn_get_stats(aip_conn *c, aip_conn_stats *s);

#ifdef __cplusplus
}
#endif
#endif /* AIP_CONN_H */
