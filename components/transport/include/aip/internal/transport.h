/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/transport.h — one WebSocket client link over libwebsockets (not installed).
 *
 * Design note
 * - One lws context, one explicit client vhost (a TLS reload replaces the vhost, never the
 *   context: re-creating contexts grows RSS in lws 4.1), one service thread. That thread is the
 * only one that touches libwebsockets, reads or writes the socket, and runs timers; every event
 *   callback below runs on it. From other threads, only aip_transport_send(),
 *   aip_transport_wake() and aip_transport_stop() may be called (they use
 *   lws_cancel_service(), the one lws call that is safe off the service thread).
 * - Links: each connection attempt gets a new link number. A frame is queued for a given link
 *   and is dropped (counted) if that link is gone by the time it would be written — so a
 *   request is never silently sent on a later connection.
 * - Outbound: a bounded queue (bytes and frames; AIP_E_FULL when full) fed from any thread.
 *   The service thread writes one frame, or one 64 KiB fragment of a larger one, per
 *   WRITEABLE and re-arms while there is more.
 * - Inbound: fragments are reassembled up to max_frame_in. A message over it costs neither
 *   memory nor the link: it is found as early as a frame header says so (else when a chunk
 *   crosses the cap), only its first bytes are kept (at most AIP_REASM_PREFIX = 8 KiB, and
 *   never more than the cap) and handed to on_oversized for the layer above to read its type
 *   and ids, the rest is dropped unread as it arrives, and the link stays up (no close, no
 *   reconnect; counted in oversized_in). So nothing larger than max_frame_in is ever
 *   buffered, per link. Invalid UTF-8 in a text message still closes with 1007.
 * - Reconnect: exponential backoff with full jitter, forever; the attempt count resets after a
 *   link that was not marked failed by the layer above (refused registration) stayed open
 *   stable_ms, or was marked registered and stayed open at least the base delay (a link cut
 *   by an idle timeout is progress, not a failure: see aip/internal/backoff.h). Both lws
 *   connect-failure paths lead to the same retry.
 *   A refusal that will not fix itself soon (credentials refused by the server or a proxy; a
 *   registration refused as final: aip_transport_mark_refused) waits the slow schedule
 *   instead: near the cap.
 * - Refusals are named by their HTTP status (link_error.h): the upgrade's from
 *   lws_http_client_http_response() in CLIENT_CONNECTION_ERROR; an HTTP CONNECT proxy's from a
 *   probe CONNECT on a helper thread, since lws 4.1.6 keeps no proxy status ("proxy not h1").
 * - DNS: a host name is resolved on a short-lived helper thread (Debian's libwebsockets would
 *   block the service thread in getaddrinfo); lws then connects to the address with the name
 *   as Host/SNI/certificate name.
 */
#ifndef AIP_INTERNAL_TRANSPORT_H
#define AIP_INTERNAL_TRANSPORT_H

#include "aip/buf.h"
#include "aip/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct aip_transport aip_transport;

typedef enum aip_token_mode {
    AIP_TOKEN_QUERY = 0,  /* ?token=<key> in the URL: what UFO's server reads */
    AIP_TOKEN_BEARER = 1, /* Authorization: Bearer <key> [ext] */
} aip_token_mode;

typedef struct aip_transport_config {
    const char *url; /* ws://host[:port]/path or wss://... (no user:password@: AIP_E_CONFIG) */
    const char *token;
    aip_token_mode token_mode;
    bool offer_proto; /* offer subprotocol aip.v1.proto */
    const char *ca_file, *cert_file, *key_file;
    bool tls_insecure; /* tests only: accept any certificate and name */
    size_t max_frame_in;
    size_t max_queue_bytes;
    size_t max_queue_frames;
    unsigned ping_s, hangup_s; /* lws validity ping / hang-up */
    uint32_t backoff_base_ms, backoff_cap_ms, stable_ms;
    const aip_random *random;
    const char *thread_name;
} aip_transport_config;

/* All run on the service thread. */
typedef struct aip_transport_events {
    /* A link opened (WebSocket established). proto: the server selected aip.v1.proto. */
    void (*on_open)(void *user, uint64_t link, bool proto);
    /* One complete inbound message. data is valid during the call only. */
    void (*on_frame)(void *user, uint64_t link, const uint8_t *data, size_t len, bool binary);
    /* A link ended: a connect attempt that failed (was_open false) or a closed link.
     * code: the WebSocket close code (1006 when none was received). reason names the cause
     * (a refused upgrade or proxy CONNECT by its HTTP status: see link_error.h). err: AIP_E_AUTH
     * (the server or the proxy refused the credentials: HTTP 401/403/407, proxy 403; the next
     * attempt waits the slow schedule), AIP_E_NOT_FOUND (HTTP 404), AIP_E_REMOTE (another
     * HTTP status), AIP_E_TLS, AIP_E_IO (could not connect), AIP_E_NOMEM, AIP_E_CONN_LOST (an
     * open link ended). */
    void (*on_close)(void *user, uint64_t link, int code, const char *reason, bool was_open,
                     int err);
    /* The next attempt starts in delay_ms. */
    void (*on_backoff)(void *user, uint32_t delay_ms, uint32_t attempt);
    /* Another thread called aip_transport_wake() (or send()). */
    void (*on_wake)(void *user);
    /* An inbound message over max_frame_in is being skipped (see the design note): prefix is
     * its first bytes (at most AIP_REASM_PREFIX, at most the cap; valid during the call only),
     * given once per such message as soon as they arrived (or the message ended). The rest of
     * the message is dropped unread; the link stays up. */
    void (*on_oversized)(void *user, uint64_t link, const uint8_t *prefix, size_t len, bool binary);
    /* After each service round (one poll and whatever it made ready: a socket read may carry
     * many messages), and once more when the service thread ends. Optional. */
    void (*on_round_end)(void *user);
} aip_transport_events;

typedef struct aip_transport_stats {
    uint64_t frames_out, bytes_out, frames_in, bytes_in;
    uint64_t dropped_stale; /* queued for a link that was gone */
    uint64_t refused_full;  /* send() failed with AIP_E_FULL */
    uint64_t connects;      /* links opened */
    uint64_t connect_failures;
    uint64_t oversized_in; /* inbound messages over max_frame_in, skipped (the link stays up) */
} aip_transport_stats;

/* Routes libwebsockets' error and warning lines into aip_log (component "lws"). Process-wide;
 * aip_transport_create() does it once; programs using lws directly may call it too. */
void aip_lws_log_to_aip(void);

/* Parses and copies cfg. Does not connect yet. */
int aip_transport_create(const aip_transport_config *cfg, const aip_transport_events *ev,
                         void *user, aip_transport **out);
/* Starts the service thread, which starts connecting. */
int aip_transport_start(aip_transport *t);
/* From any thread except the service thread: closes an open link gracefully with code and
 * reason (waiting at most grace_ms for the close handshake), stops and joins the service
 * thread. Idempotent. Frames still queued are dropped. */
void aip_transport_stop(aip_transport *t, int code, const char *reason, uint32_t grace_ms);
/* After stop (or if never started). */
void aip_transport_destroy(aip_transport *t);

/* Bytes to reserve in front of a frame's payload: aip_buf_init(&b, aip_transport_headroom()). */
size_t aip_transport_headroom(void);

/* Any thread. Takes the buffer's memory on success (b is left empty). Errors: AIP_E_CONN_LOST
 * (link is not the open link), AIP_E_FULL, AIP_E_SHUTDOWN, AIP_E_INVAL (no headroom). */
int aip_transport_send(aip_transport *t, uint64_t link, aip_buf *b, bool binary);
void aip_transport_wake(aip_transport *t);
/* Any thread: the bytes one more frame may have right now to be queued (max_queue_bytes less
 * what is queued; SIZE_MAX without a byte cap). A frame of that size may still be refused if
 * another thread queues first. */
size_t aip_transport_queue_room(aip_transport *t);
/* Any thread (wss:// only): load these TLS files into a new client vhost, on the service
 * thread. The next connection uses it; an open link keeps the old vhost, destroyed once that
 * link ends. If the files do not load, the old ones stay (logged). NULL ca_file: the system
 * store. Errors: AIP_E_UNSUPPORTED (ws://), AIP_E_INVAL (cert without key), AIP_E_SHUTDOWN. */
int aip_transport_reload_tls(aip_transport *t, const char *ca_file, const char *cert_file,
                             const char *key_file);

/* ---- service thread only ---------------------------------------------------------------- */

/* Drops the open link at once, without a close handshake, and reconnects with backoff.
 * code/reason are what on_close reports. */
void aip_transport_drop(aip_transport *t, int code, const char *reason);
/* Closes the open link with a close frame, then reconnects with backoff. */
void aip_transport_close(aip_transport *t, int code, const char *reason);
/* The layer above says this link failed (e.g. registration refused): do not let it reset the
 * backoff however long it stays open. */
void aip_transport_mark_failed(aip_transport *t);
/* The layer above registered on the current link: its end resets the backoff if it lived at
 * least the base delay (aip_backoff_progress). Service thread. */
void aip_transport_mark_registered(aip_transport *t);
/* The layer above says this link was refused for a lasting reason (a registration refused
 * as final): as mark_failed, and the next attempt waits aip_refusal_delay() (near the backoff
 * cap) instead of the fast backoff. */
void aip_transport_mark_refused(aip_transport *t);
/* The peer proved alive (an application-level answer): spares a WebSocket ping. */
void aip_transport_alive(aip_transport *t);

typedef struct aip_timer aip_timer;
/* Timers run on the service thread. create/destroy before start or after stop, or on it. */
aip_timer *aip_timer_create(aip_transport *t, void (*cb)(void *user), void *user);
void aip_timer_schedule(aip_timer *tm, uint64_t delay_us);
void aip_timer_cancel(aip_timer *tm);
void aip_timer_destroy(aip_timer *tm);

void aip_transport_get_stats(aip_transport *t, aip_transport_stats *out); /* any thread */
/* The effective URL (the token appended too) through aip_redact_url: query values shown as
 * <redacted>, for logs. */
const char *aip_transport_url_redacted(const aip_transport *t);

#endif /* AIP_INTERNAL_TRANSPORT_H */
