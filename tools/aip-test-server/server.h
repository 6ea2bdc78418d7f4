/*
 * aip-test-server internals. Single-threaded: everything runs on the lws service thread (the
 * process's main thread); signal handlers only set a flag and call lws_cancel_service().
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

typedef struct server_config {
    const char *host;
    int port;
    const char *token;
    const char *tls_cert, *tls_key, *tls_ca;
    device_info_mode di_mode;
    unsigned reply_jitter_ms;
    size_t max_frame;
    size_t max_queue; /* per-connection outbound bytes before a slow reader is dropped */
    unsigned register_timeout_ms;
} server_config;

/* One queued outbound message: [LWS_PRE | payload]. */
typedef struct out_frame {
    struct out_frame *next;
    size_t len, off;
    bool binary;
    uint8_t *buf; /* allocation; payload at buf + LWS_PRE */
} out_frame;

typedef enum sess_kind { SK_NONE, SK_AIP, SK_ECHO } sess_kind;

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
    bool ext_correlated, ext_live;
    bool galaxy_noted;
    char addr[64];
    int64_t connected_us, last_heartbeat_us;
    out_frame *qh, *qt;
    size_t qbytes;
    aip_buf rx;
    bool rx_binary, rx_skip;
    lws_sorted_usec_list_t sul_register;
    uint64_t frames_in, frames_out;
    unsigned commands_in_flight;
} session;

/* Per-session data as lws allocates it: a pointer, so a CLOSED without ESTABLISHED (lws can do
 * that, LIBWEBSOCKETS-NOTES §4.1) finds NULL and does nothing. */
typedef struct pss {
    session *s;
    uint8_t *http_body; /* an HTTP answer waiting for HTTP_WRITEABLE: [LWS_PRE | body] */
    size_t http_len;
} pss;

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
    session *sessions; /* every open session, newest first */
    lws_sorted_usec_list_t sul_liveness;
} server;

extern server g_srv;

/* aip.c */
void server_liveness_start(void);
int aip_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);
void server_close_all(int code, const char *reason);
/* http.c */
int http_handle(struct lws *wsi, const char *uri);
int http_writeable(struct lws *wsi, void *user);
bool auth_ok(struct lws *wsi, bool http_api);

#endif
