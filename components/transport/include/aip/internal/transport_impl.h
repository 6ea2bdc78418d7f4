/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/transport_impl.h — the transport's insides, shared by its files (not installed;
 * included by the .c files of components/transport only).
 *
 * transport.c  the link's life and the lws callback (its design note: the state machine)
 * resolve.c    helper-thread jobs: DNS and the HTTP CONNECT proxy probe
 * vhost.c      the client vhost (TLS files, proxies) and TLS reloads
 * queue.c      the outbound queue and the write path (bursts, TCP_CORK)
 * url.c        URL and proxy strings (aip/internal/url.h)
 * Everything here runs on the service thread unless a field's comment says otherwise.
 */
#ifndef AIP_INTERNAL_TRANSPORT_IMPL_H
#define AIP_INTERNAL_TRANSPORT_IMPL_H

#include "aip/internal/backoff.h"
#include "aip/internal/reassembler.h"
#include "aip/internal/transport.h"
#include "aip/internal/url.h"
#include "aip/port.h"

#include <libwebsockets.h>

#include <netinet/in.h>
#include <stdatomic.h>

#define PROTO_NAME  "aip.v1.proto"
#define LOG_COMP    "transport"
#define TX_FRAGMENT (64u * 1024u) /* the largest lws_write(): a larger frame is fragmented */

typedef struct frame frame; /* a queued frame (transport.c) */
struct resolve_job;         /* a helper thread's job (resolve.c) */

enum link_state { L_IDLE, L_BACKOFF, L_RESOLVING, L_CONNECTING, L_PROBING, L_OPEN };

struct aip_transport {
    aip_transport_config cfg;
    aip_transport_events ev;
    void *user;

    /* parsed URL (owned): path holds ?token=... when token_mode is QUERY: never logged */
    aip_url u;
    char *token, *ca_file, *cert_file, *key_file, *thread_name;
    char *bearer; /* "Bearer <token>" */

    struct lws_context *ctx;
    struct lws_vhost *vh;           /* where the next connection is made */
    struct lws_vhost *wsi_vh;       /* the vhost of t->wsi */
    struct lws_vhost *retire_vh;    /* replaced by a TLS reload: destroyed once unused */
    int vh_variant, retire_variant; /* see aip_tp_make_vhost() */
    unsigned reloads;
    lws_sorted_usec_list_t sul_reload;
    char tls_error[160]; /* the last "SSL error" lws logged for this link attempt */
    /* the HTTP CONNECT proxy of t->vh, for the probe ("" when none); proxy_auth is the Basic
     * credentials (base64 of user:password, a secret: never logged) */
    char proxy_host[256];
    unsigned proxy_port;
    char proxy_auth[400];
    struct lws_protocols protocols[3];
    lws_retry_bo_t policy;
    uint32_t retry_table[1];

    aip_thread thread;
    bool thread_started;
    _Atomic bool stopping;
    int stop_code;
    char stop_reason[64];
    uint32_t stop_grace_ms;

    /* service-thread state */
    struct lws *wsi;
    struct lws *attempt; /* the wsi of the current attempt until its end was reported */
    enum link_state state;
    uint64_t link;
    bool proto_selected;
    uint64_t open_since_ns;
    bool marked_failed;
    bool marked_registered; /* the layer above registered on this link: progress */
    bool slow_next;         /* the attempt was refused for a lasting reason: aip_refusal_delay() */
    char address[INET6_ADDRSTRLEN + 2]; /* what the attempt connects to (the CONNECT target) */
    bool closing;                       /* a graceful close was requested: send it on WRITEABLE */
    int close_code;                     /* our close code (for drop/close) or the peer's */
    char close_reason[124];
    bool have_close; /* close_code/close_reason are set */
    int in_cb;       /* inside a callback for t->wsi */
    bool kill_requested;
    bool exit_loop;
    aip_reasm rx;
    bool rx_skip; /* a message was refused: inbound data is discarded until the link ends */
    frame *cur;
    lws_sorted_usec_list_t sul_connect, sul_stop;
    aip_backoff backoff;
    struct resolve_job *job;

    /* shared with producers */
    _Atomic bool wake_pending; /* a producer's lws_cancel_service() is not yet handled */
    aip_mutex qlock;
    frame *qhead, *qtail;
    size_t qbytes, qframes;
    uint64_t qlink;      /* the open link, or 0 */
    bool reload_pending; /* aip_transport_reload_tls(): the files below, for the service thread */
    char *rl_ca, *rl_cert, *rl_key;

    /* tls_insecure warnings (service thread): one per attempt, at most one per
     * INSECURE_WARN_EVERY_NS; the next line counts the attempts in between */
    uint64_t insecure_warned_ns;
    unsigned insecure_quiet;

    /* statistics (atomics: read from any thread) */
    _Atomic uint64_t st_frames_out, st_bytes_out, st_frames_in, st_bytes_in, st_dropped, st_full,
        st_connects, st_connect_failures, st_oversized;
};

static inline void stat_add(_Atomic uint64_t *s, uint64_t n)
{
    atomic_fetch_add_explicit(s, n, memory_order_relaxed);
}

static inline char *dup_opt(const char *s)
{
    return s ? aip_strdup(s) : NULL;
}

/* transport.c */
void aip_tp_start_connect(lws_sorted_usec_list_t *sul); /* the sul_connect timer */
void aip_tp_connect_to(aip_transport *t, const char *address);
/* Every end of a link comes through here exactly once: a failed attempt, a closed link. */
void aip_tp_link_ended(aip_transport *t, int code, const char *reason, bool was_open, int err);

/* queue.c */
size_t aip_tp_queue_flush_locked(aip_transport *t); /* drops every queued frame: how many */
size_t aip_tp_queue_free_current(aip_transport *t); /* the frame being written: 1 if any */
/* On WRITEABLE: writes what lws takes now, re-arms while there is more. -1: close the link. */
int aip_tp_write_burst(aip_transport *t, struct lws *wsi);

/* resolve.c: t->job, states L_RESOLVING and L_PROBING */
void aip_tp_resolve(aip_transport *t); /* t->u.host is a name: look it up, then connect */
int aip_tp_probe_start(aip_transport *t);
void aip_tp_job_check(aip_transport *t); /* on every wake: a job that is done moves on */
void aip_tp_job_abandon(aip_transport *t);

/* vhost.c */
struct lws_vhost *aip_tp_make_vhost(aip_transport *t, int variant);
void aip_tp_apply_reload(lws_sorted_usec_list_t *sul); /* the sul_reload timer */

#endif /* AIP_INTERNAL_TRANSPORT_IMPL_H */
