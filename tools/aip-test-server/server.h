/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server internals. Single-threaded: everything runs on the lws service thread (the
 * process's main thread); signal handlers only set a flag and call lws_cancel_service().
 *
 * Who may call whom. Each file calls functions only of the files listed below it (data in
 * g_srv is shared by all), so no two files call each other, directly or round a circle:
 *
 *   main.c           options, start-up, the lws context, shutdown
 *   callback.c       the lws protocol callback: routes each reason to the files below
 *   http.c           the HTTP endpoints; answers that come later through a live_done it registers
 *   admin.c          the HTTP API's actions: dispatch, faults (and their timers), device info
 *   relay.c          AIP semantics: registration, roles, heartbeats, device info, delayed answers
 *   tasks.c          tasks relayed to devices as command batches, their results
 *   metrics.c        GET /metrics (tasks.c feeds the round-trip histogram)
 *   session.c        sessions: life, sending AIP messages and rejections, receiving, liveness
 *   events.c         the /events feed for viewers, system_info summaries, task records
 *   session_queue.c  the outbound queues, their bounds, writing
 *   guard.c          who may talk to the server: Host, Origin, method, Content-Type, the key
 *   json_out.c       JSON output helpers (strings, times, clients, results)
 *   strmap.c         the string map
 *
 * relay.h is shared by relay.c, tasks.c and admin.c only. The ctest server_layers checks this
 * order (tests/integration/server_layers.py): keep the list true when adding a file.
 */
#ifndef AIP_TEST_SERVER_H
#define AIP_TEST_SERVER_H

#include "strmap.h"

#include <aip/aip.h>
#include <libwebsockets.h>
#include <signal.h>

#include <stdbool.h>
#include <stdint.h>

typedef enum device_info_mode { DI_AUTO, DI_CACHE, DI_LIVE } device_info_mode;

#define MAX_ALLOWED 16 /* --allow-host / --allow-origin, each */

typedef struct server_config {
    const char *host;
    int port;
    const char *token;    /* the key; NULL only with --no-token */
    bool token_generated; /* made at start-up (no key given): printed in the dashboard URL */
    const char *allow_host[MAX_ALLOWED], *allow_origin[MAX_ALLOWED];
    size_t n_allow_host, n_allow_origin;
    const char *tls_cert, *tls_key, *tls_ca;
    device_info_mode di_mode;
    unsigned reply_jitter_ms;
    size_t max_frame;
    size_t max_queue;         /* per-connection outbound bytes before a slow reader is dropped */
    size_t max_viewer_queue;  /* the same for /events viewers (closed with 1013) */
    size_t max_total_queue;   /* outbound bytes queued over all connections (the budget) */
    size_t max_connections;   /* open WebSocket connections (/ws, /echo, /events) */
    size_t max_clients;       /* registered AIP clients */
    size_t max_actions;       /* actions in one task, all batches together */
    size_t max_batch_actions; /* actions in one batch */
    unsigned register_timeout_ms;
    int64_t ping_after_us; /* --ping-after: a peer silent this long gets a WebSocket ping */
    int64_t drop_after_us; /* --drop-after: a peer silent this long (no frame, no pong) goes */
} server_config;

/* One queued outbound message: [LWS_PRE | payload]. */
typedef struct out_frame {
    struct out_frame *next;
    size_t len, off;
    bool binary;
    bool exempt;  /* a viewer's opening burst: not held against --max-viewer-queue */
    uint8_t *buf; /* allocation; payload at buf + LWS_PRE */
} out_frame;

typedef enum sess_kind { SK_NONE, SK_AIP, SK_ECHO, SK_EVENTS } sess_kind;

/* Faults injected through POST /api/faults (each lasts until its deadline, 0 = off). */
typedef enum fault_kind {
    FAULT_DROP,
    FAULT_STALL,
    FAULT_DELAY,
    FAULT_GARBAGE,
    FAULT_REFUSE_NEXT_REGISTRATION,
    FAULT_MUTE_HEARTBEATS,
    FAULT_COUNT_
} fault_kind;

typedef struct session {
    uint64_t serial;
    struct lws *wsi;
    struct session *prev, *next; /* every open session (the liveness sweep) */
    int64_t last_rx_us;          /* last frame or pong from the peer */
    bool ping_due, ping_sent;
    sess_kind kind;
    bool proto; /* aip.v1.proto selected: binary protobuf frames */
    bool registered;
    bool closing;
    bool close_now; /* close without flushing the queue */
    int close_code;
    char close_reason[64];
    char *client_id;
    aip_client_type type;
    char *target_id;
    char *system_info; /* JSON text, the device's cached system_info */
    size_t si_bytes;   /* strlen(system_info) */
    char *si_summary;  /* NULL: system_info is small and shown whole; else the summary that
                        * events, snapshots and /api/clients/details show instead */
    bool ext_correlated, ext_live;
    bool galaxy_noted;
    char addr[64];
    int64_t connected_us, last_heartbeat_us;
    out_frame *qh, *qt;
    size_t qbytes;  /* queued outbound bytes (also counted in g_srv.queued_total) */
    size_t qexempt; /* of which a viewer's opening burst */
    aip_buf rx;
    bool rx_binary, rx_skip;
    lws_sorted_usec_list_t sul_register;
    uint64_t frames_in, frames_out;
    unsigned commands_in_flight;
    /* faults: stall = neither read nor write; delay = hold outbound frames; mute = no heartbeat
     * acks. Each ends at its deadline (sul_fault fires at the earliest one). */
    int64_t stall_until_us, delay_until_us, mute_until_us;
    lws_sorted_usec_list_t sul_fault;
    struct session *next_viewer; /* SK_EVENTS: the viewer list */
} session;

/* Per-session data as lws allocates it: a pointer, so a CLOSED without ESTABLISHED (lws can do
 * that: a handshake that fails after the callback allocated it) finds NULL and does nothing. */
typedef struct pss {
    session *s;
    uint8_t *http_body; /* an HTTP answer waiting for HTTP_WRITEABLE: [LWS_PRE | body] */
    size_t http_len;
    char post_uri[128];   /* a POST whose body is being read */
    uint8_t post_refused; /* 0, or 1 + the refuse_reason answered once the body is read */
    bool close_after;     /* close once the answer is out (a body we did not read) */
    aip_buf post_body;
    struct live_req *live; /* GET /api/device_info/{id} waiting for the device */
} pss;

/* Why a request was refused before it reached an endpoint (guard.c; aip_requests_refused_total). */
typedef enum refuse_reason {
    REFUSE_HOST,         /* 403: Host is not a name of this server (DNS rebinding) */
    REFUSE_ORIGIN,       /* 403: Origin is another site's, or null */
    REFUSE_FETCH_SITE,   /* 403: Sec-Fetch-Site is same-site or cross-site */
    REFUSE_METHOD,       /* 405: neither GET nor POST */
    REFUSE_CONTENT_TYPE, /* 415: a POST that is not application/json */
    REFUSE_KEY,          /* 401 (HTTP) or 403 (WebSocket): no key or a wrong one */
    REFUSE_COUNT_
} refuse_reason;

/* Counters for GET /metrics. Everything runs on the service thread: plain integers. */
#define RTT_BUCKETS 14
typedef struct metrics {
    uint64_t frames_in[AIP_MSG_TYPE_COUNT_][2],
        frames_out[AIP_MSG_TYPE_COUNT_][2]; /* [type][proto] */
    uint64_t malformed, errors_sent, errors_received, too_big, slow_readers;
    uint64_t budget_drops;        /* dropped to keep --max-total-queue */
    uint64_t unauthorized;        /* frames refused by the role checks (relay.c "Roles") */
    uint64_t bad_tasks;           /* tasks refused before they started (not JSON actions, caps) */
    uint64_t refused_connections; /* upgrades refused with 503: --max-connections */
    uint64_t registrations, refused_duplicate, refused_invalid, refused_target, refused_fault;
    uint64_t refused_full; /* --max-clients */
    uint64_t faults[FAULT_COUNT_];
    uint64_t tasks_completed, tasks_failed, echo_frames;
    uint64_t viewer_drops, events;
    uint64_t refused[REFUSE_COUNT_];
    uint64_t rtt_bucket[RTT_BUCKETS + 1]; /* non-cumulative; last = +Inf */
    uint64_t rtt_count;
    double rtt_sum_s;
} metrics;

typedef struct server {
    server_config cfg;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    strmap clients;  /* client_id -> session (registered only) */
    strmap tasks;    /* session_id -> task */
    strmap commands; /* command response_id -> task */
    strmap live;     /* live device-info response_id -> live_req */
    uint64_t next_serial;
    volatile sig_atomic_t stop; /* set by the signal handler */
    aip_codec_limits limits;
    strmap results; /* task_name -> task_record (bounded, oldest finished evicted) */
    struct task_record *rec_head, *rec_tail; /* records in creation order */
    session *viewers;                        /* /events WebSocket viewers */
    size_t nviewers;
    strmap refuse; /* client_id -> refusal deadline (refuse_next_registration) */
    metrics m;
    int64_t started_us;
    session *sessions; /* every open session, newest first */
    size_t nsessions;
    size_t queued_total; /* outbound bytes queued over every session */
    lws_sorted_usec_list_t sul_liveness;
} server;

/* A task's outcome for GET /api/task_result/{task_name}. */
typedef struct task_record {
    struct task_record *next;
    char *task_name, *session_id, *client_id;
    int state;    /* 0 pending, 1 completed, 2 failed */
    char *result; /* JSON text or NULL */
    char *error;
} task_record;
#define MAX_TASK_RECORDS 1024

extern server g_srv;

static inline int64_t now_us(void)
{
    return aip_wall_us(NULL);
}

static inline const char *fault_name(fault_kind f)
{
    static const char *const names[FAULT_COUNT_] = {
        "drop", "stall", "delay", "garbage", "refuse_next_registration", "mute_heartbeats"};
    return (unsigned)f < FAULT_COUNT_ ? names[f] : "?";
}

/* A deferred answer to GET /api/device_info/{id}: registered by the HTTP side (http.c), called
 * once by the relay (relay.c) with the device's info when the device answers, when the query
 * times out, or when the device leaves (source "live" or "cache"). */
typedef struct live_done {
    void (*fn)(void *user, const char *client_id, const char *source, const char *device_info);
    void *user;
} live_done;

/* callback.c */
int aip_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);

/* http.c */
int http_handle(struct lws *wsi, const char *uri);
int http_body(struct lws *wsi, const void *in, size_t len);
int http_body_done(struct lws *wsi);
int http_writeable(struct lws *wsi, void *user);
void http_closed(struct lws *wsi);

/* admin.c: actions of the HTTP API; each answers an HTTP status and writes a JSON body to out */
unsigned admin_dispatch(const char *client_id, const char *request, const char *task_name,
                        aip_buf *out);
unsigned admin_fault(const char *client_id, const char *fault, double seconds, aip_buf *out);
/* GET /api/device_info/{id}: answers now (returns the status), or returns 0 after starting a
 * live query, stored in *pending, that answers later through done; 409 when *pending is
 * already set (or pending is NULL). admin_live_cancel() when the HTTP client goes away. */
unsigned admin_device_info(const char *client_id, struct live_req **pending, live_done done,
                           aip_buf *out);
void admin_live_cancel(struct live_req *l);

/* relay.c: a whole message received on an SK_AIP/SK_ECHO/SK_EVENTS session; and the relay's
 * state about s (tasks, live queries, delayed answers), cleaned when s closes */
void relay_frame(session *s, const uint8_t *data, size_t len, bool binary);
void relay_forget(session *s);

/* metrics.c */
void metrics_rtt(int64_t us);
void metrics_render(aip_buf *b);

/* session.c */
void new_id(char *buf); /* a UUID4, buf of 40 bytes at least */
void send_msg(session *s, aip_msg *m);
/* prevalidated: every field of m was taken from checked values (aip_encode_prevalidated) */
void send_msg_as(session *s, aip_msg *m, bool prevalidated);
void send_simple(session *s, aip_msg_type type, aip_status st, const char *session_id,
                 const char *response_id, const char *error);
/* Rejects the request req with an `error` naming it [ext] (request_id in response_id, and its
 * session_id; UFO peers ignore the extra keys, so every client gets them). REJECT_UNAUTHORIZED:
 * a frame the role checks refuse ("Roles" in relay.c), also counted, logged and shown on the
 * feed; the frame has no other effect. */
typedef enum reject_kind { REJECT_ERROR, REJECT_UNAUTHORIZED } reject_kind;
void reject_request(session *s, const aip_msg *req, reject_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
session *session_new(struct lws *wsi);
/* CLOSED: session_detach() (off the lists, the event), relay_forget(), then session_free() */
void session_detach(session *s, int code, const char *reason);
void session_free(session *s);
/* 1 when s->rx holds a whole message (hand it on, then session_rx_done()), 0 when it does not
 * (yet, or it is skipped), -1 on out of memory */
int session_receive(session *s, struct lws *wsi, const void *in, size_t len);
void session_rx_done(session *s);
void session_alive(session *s); /* a frame or a pong arrived */
void server_liveness_start(void);
void server_close_all(int code, const char *reason);

/* events.c: the live event feed for /events viewers, and task records */
void events_viewer_open(session *s);
void events_viewer_close(session *s);
/* Emits one event: kind, the session it concerns (or NULL), a human line, and extra members
 * as raw JSON ("\"k\":v,..." without braces, or NULL). */
void ev_emit(const char *kind, const session *s, const char *extra_json, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void events_free(void);
/* The bounded summary of a system_info of len bytes (NULL when it is small enough to show
 * whole, or absent). aip_free() it. */
char *si_summary_make(const char *si, size_t len);
task_record *record_open(const char *task_name, const char *session_id, const char *client_id);
void record_finish(const char *task_name, const char *session_id, bool completed,
                   const char *result, const char *error);
const task_record *record_get(const char *task_name);

/* session_queue.c */
/* Closes after what is queued has gone out, unless flush_first is false (the queue itself is
 * the problem): then at once. */
void close_session_ex(session *s, int code, const char *reason, bool flush_first);
void close_session(session *s, int code, const char *reason); /* flush first */
/* Queues one frame, [LWS_PRE | payload], for s (takes buf). exempt: part of a viewer's opening
 * burst (snapshot, replay), not held against --max-viewer-queue; every frame counts against
 * --max-queue and --max-total-queue. */
void session_enqueue(session *s, uint8_t *buf, size_t len, bool binary, bool exempt);
void session_enqueue_text(session *s, const char *text, size_t len, bool exempt);
void queue_drop(session *s);                        /* frees what s has queued, at once */
int session_writeable(struct lws *wsi, session *s); /* SERVER_WRITEABLE; -1: close */

/* guard.c: who may talk to the server (Host, Origin, Sec-Fetch-Site, method, Content-Type)
 * and the key. Each check returns true when the request is refused, after counting it and
 * logging it (at most one line a second). */
typedef enum req_kind {
    REQ_PAGE,    /* GET of a dashboard file (public: no key) */
    REQ_API,     /* any other HTTP request */
    REQ_UPGRADE, /* a WebSocket handshake */
} req_kind;
/* Normalises and checks --allow-host / --allow-origin values; 0, or -1 with a reason in why. */
int guard_config(char *why, size_t n);
bool guard_refuse(struct lws *wsi, req_kind kind, refuse_reason *why);
bool guard_refuse_key(struct lws *wsi, req_kind kind);
void guard_count(struct lws *wsi, refuse_reason r, const char *detail);
unsigned refuse_status(refuse_reason r, req_kind kind);
const char *refuse_text(refuse_reason r);
const char *refuse_name(refuse_reason r);
/* The headers every answer carries (also the hand-written ones): CSP, nosniff, referrer. */
extern const char guard_security_headers[];
bool key_equal(const char *want, const char *given);

/* json_out.c */
void bputf(aip_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void put_str(aip_buf *b, const char *s); /* a JSON string, or null */
void put_time(aip_buf *b, int64_t us);   /* a timestamp string, or null for 0 */
/* full: the whole system_info (GET /api/clients/{id}); else its bounded summary */
void put_client(aip_buf *b, const session *s, bool full);
void put_clients(aip_buf *b, bool details);
void put_result(aip_buf *b, const aip_result *r); /* an action result, UFO's shape */
/* {"client_id":..,"source":..,"device_info":<info, or {}>} */
void put_device_info(aip_buf *b, const char *client_id, const char *source, const char *info);

#endif
