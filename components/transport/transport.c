/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket client link (see aip/internal/transport.h for the design note of the whole
 * transport; aip/internal/transport_impl.h for its files: resolve.c, vhost.c, url.c).
 *
 * Thread map of this file
 * - service thread: service_main() and everything it calls: lws_cb() and its on_*() handlers,
 *   timers, aip_tp_start_connect(), aip_tp_link_ended(), write_one(), and the
 *   aip_transport_{drop,close,...} calls.
 * - any thread: aip_transport_send(), _wake(), _get_stats() — they touch only the queue under
 *   `qlock`, atomics, and lws_cancel_service().
 * - the caller of aip_transport_stop(): sets `stopping`, wakes the service thread, joins it.
 * - resolver threads: touch only their own job (resolve.c).
 *
 * The link's state machine (t->state; service thread). Every attempt gets a new link number.
 *
 *   idle --start--> resolving --address--> connecting --ESTABLISHED--> open
 *                      |                       |   \--"proxy not h1"--> probing --answer--+
 *                      | DNS failed            | CONNECTION_ERROR, WSI_DESTROY,           |
 *                      v                       v sync connect failure                     v
 *                    ended <-------------------+------- CLIENT_CLOSED (from open) ----- ended
 *                      |
 *                      +--> backoff --timer (or a TLS reload)--> resolving / connecting
 *                      +--> (stopping) the loop exits
 *
 * - idle (L_IDLE): created, service thread not started; aip_transport_start() schedules the
 *   first attempt at once (sul_connect -> aip_tp_start_connect: link++).
 * - resolving (L_RESOLVING, resolve.c): a host name is looked up on a helper thread (t->job);
 *   a numeric host skips it. Polled on each wake (aip_tp_job_check).
 * - connecting (L_CONNECTING, aip_tp_connect_to): resets, for the attempt, have_close,
 *   marked_failed, marked_registered, slow_next, proto_selected and tls_error; sets address,
 *   wsi_vh and attempt (the wsi, kept until its end is reported: see on_wsi_destroy).
 * - probing (L_PROBING, resolve.c): after lws' "proxy not h1", wsi and attempt are cleared
 *   and the proxy is asked once more for its status; the answer ends the attempt.
 * - open (L_OPEN, on_established): open_since_ns set, qlink = link (aip_transport_send()
 *   accepts frames for it). While open: closing (a graceful close, sent on WRITEABLE),
 *   kill_requested (a drop asked for inside a callback: the callback returns -1), rx_skip (a
 *   refused message: inbound data is discarded), have_close/close_code/close_reason (ours or
 *   the peer's), marked_failed/marked_registered/slow_next (from the layer above).
 * - ended (aip_tp_link_ended, exactly once per attempt): clears wsi, attempt, closing,
 *   kill_requested and rx_skip; qlink = 0, the queue and the frame being written are dropped
 *   (counted), the reassembler is freed; a retired vhost is destroyed from a timer; the backoff
 *   resets if the link made progress (marked_failed, marked_registered, time open); on_close.
 * - backoff (L_BACKOFF, schedule_retry): the delay is aip_refusal_delay() when slow_next
 *   (a lasting refusal), else the next backoff step; clears slow_next; on_backoff. When
 *   stopping, exit_loop is set instead and service_main() returns.
 */
#include "aip/internal/link_error.h"
#include "aip/internal/transport_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RX_BUFFER 16384u

struct aip_timer {
    lws_sorted_usec_list_t sul;
    aip_transport *t;
    void (*cb)(void *user);
    void *user;
};

/* ---- lws logging into ours ------------------------------------------------------------------- */

/* The transport whose service thread this is (NULL on other threads): lws logs a failed
 * certificate check only as a log line, so the line is kept for the link's close reason. */
static _Thread_local aip_transport *tl_service;

static void lws_log_emit(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    const char *ssl = strstr(buf, "SSL error: ");
    if (tl_service && ssl && !tl_service->tls_error[0])
        snprintf(tl_service->tls_error, sizeof tl_service->tls_error, "%s", ssl + 11);
    /* refusals the link's end names itself (see link_error.h): lws' own line is detail */
    bool named = strstr(buf, "proxy did not reply with h1") || strstr(buf, "got bad HTTP response");
    aip_log(named              ? AIP_LOG_DEBUG
            : level == LLL_ERR ? AIP_LOG_ERROR
                               : AIP_LOG_WARN,
            "lws", "%s", buf);
}

void aip_lws_log_to_aip(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

const char *aip_transport_url_redacted(const aip_transport *t)
{
    return t->u.redacted;
}

void aip_transport_wake(aip_transport *t)
{
    lws_cancel_service(t->ctx);
}

void aip_transport_get_stats(aip_transport *t, aip_transport_stats *o)
{
    o->frames_out = atomic_load(&t->st_frames_out);
    o->bytes_out = atomic_load(&t->st_bytes_out);
    o->frames_in = atomic_load(&t->st_frames_in);
    o->bytes_in = atomic_load(&t->st_bytes_in);
    o->dropped_stale = atomic_load(&t->st_dropped);
    o->refused_full = atomic_load(&t->st_full);
    o->connects = atomic_load(&t->st_connects);
    o->connect_failures = atomic_load(&t->st_connect_failures);
    o->oversized_in = atomic_load(&t->st_oversized);
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void timer_fire(lws_sorted_usec_list_t *sul)
{
    aip_timer *tm = lws_container_of(sul, aip_timer, sul);
    tm->cb(tm->user);
}

aip_timer *aip_timer_create(aip_transport *t, void (*cb)(void *user), void *user)
{
    aip_timer *tm = aip_calloc(1, sizeof *tm);
    if (tm) {
        tm->t = t;
        tm->cb = cb;
        tm->user = user;
    }
    return tm;
}

void aip_timer_schedule(aip_timer *tm, uint64_t delay_us)
{
    lws_sul_schedule(tm->t->ctx, 0, &tm->sul, timer_fire, (lws_usec_t)delay_us);
}

void aip_timer_cancel(aip_timer *tm)
{
    lws_sul_cancel(&tm->sul);
}

void aip_timer_destroy(aip_timer *tm)
{
    if (!tm)
        return;
    if (tm->t->ctx)
        lws_sul_cancel(&tm->sul);
    aip_free(tm);
}

/* ---- link lifecycle (service thread) --------------------------------------------------------- */

static void schedule_retry(aip_transport *t)
{
    if (atomic_load(&t->stopping)) {
        t->exit_loop = true;
        return;
    }
    uint32_t attempt = t->backoff.attempt;
    uint32_t delay = t->slow_next ? aip_refusal_delay(&t->backoff) : aip_backoff_next(&t->backoff);
    t->slow_next = false;
    t->state = L_BACKOFF;
    if (t->ev.on_backoff)
        t->ev.on_backoff(t->user, delay, attempt + 1);
    lws_sul_schedule(t->ctx, 0, &t->sul_connect, aip_tp_start_connect, (lws_usec_t)delay * 1000);
}

/* Every end of a link comes through here exactly once: a failed attempt, a closed link. */
void aip_tp_link_ended(aip_transport *t, int code, const char *reason, bool was_open, int err)
{
    uint64_t link = t->link;
    t->wsi = NULL;
    t->attempt = NULL;
    t->closing = false;
    t->kill_requested = false;
    aip_mutex_lock(&t->qlock);
    t->qlink = 0;
    size_t dropped = aip_tp_queue_flush_locked(t);
    aip_mutex_unlock(&t->qlock);
    dropped += aip_tp_queue_free_current(t);
    stat_add(&t->st_dropped, dropped);
    aip_reasm_free(&t->rx);
    t->rx_skip = false;
    if (t->retire_vh) /* its connection is gone: destroy it from a timer, outside lws' close */
        lws_sul_schedule(t->ctx, 0, &t->sul_reload, aip_tp_apply_reload, 1);
    if (!was_open)
        stat_add(&t->st_connect_failures, 1);
    if (aip_backoff_progress(&t->backoff, was_open, t->marked_failed, t->marked_registered,
                             was_open ? (aip_now_ns(NULL) - t->open_since_ns) / 1000000u : 0,
                             t->cfg.stable_ms))
        aip_backoff_reset(&t->backoff);
    if (t->ev.on_close)
        t->ev.on_close(t->user, link, code, reason ? reason : "", was_open, err);
    schedule_retry(t);
}

#define INSECURE_WARN_EVERY_NS (10ull * 1000000000ull)

/* tls_insecure must never be silent: every connection attempt says so (rate-limited when
 * reconnects are fast, with a count of the attempts not reported). */
static void warn_insecure(aip_transport *t)
{
    uint64_t now = aip_now_ns(NULL);
    if (t->insecure_warned_ns && now - t->insecure_warned_ns < INSECURE_WARN_EVERY_NS) {
        t->insecure_quiet++;
        return;
    }
    char more[64] = "";
    if (t->insecure_quiet)
        snprintf(more, sizeof more, " (and %u earlier attempts)", t->insecure_quiet);
    aip_log(AIP_LOG_WARN, LOG_COMP,
            "tls_insecure is on: the certificate and host name of %s are NOT verified; anyone "
            "on the path can pose as the server and read the key%s",
            t->u.redacted, more);
    t->insecure_warned_ns = now;
    t->insecure_quiet = 0;
}

void aip_tp_connect_to(aip_transport *t, const char *address)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = t->ctx;
    i.vhost = t->vh;
    t->wsi_vh = t->vh;
    t->tls_error[0] = 0;
    i.address = address;
    i.port = t->u.port;
    i.path = t->u.path;
    i.host = t->u.host;
    /* no origin: Origin is a browser's header (lws would send "http://<host>", without the
     * port); servers that guard against cross-site pages (aip-test-server) refuse foreign ones */
    i.ietf_version_or_minus_one = -1;
    i.protocol = t->cfg.offer_proto ? PROTO_NAME : NULL;
    i.local_protocol_name = "aip";
    i.userdata = t;
    i.pwsi = &t->wsi;
    i.retry_and_idle_policy = &t->policy;
    if (t->u.tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (t->cfg.tls_insecure) {
            warn_insecure(t);
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
        }
    }
    t->state = L_CONNECTING;
    t->have_close = false;
    t->marked_failed = false;
    t->marked_registered = false;
    t->slow_next = false;
    snprintf(t->address, sizeof t->address, "%s%s%s", strchr(address, ':') ? "[" : "", address,
             strchr(address, ':') ? "]" : "");
    t->proto_selected = false;
    if (!(t->attempt = lws_client_connect_via_info(&i))) {
        /* the synchronous failure path: no CONNECTION_ERROR callback will follow */
        aip_tp_link_ended(t, 1006, "connect failed", false, AIP_E_IO);
    }
}

void aip_tp_start_connect(lws_sorted_usec_list_t *sul)
{
    aip_transport *t = lws_container_of(sul, aip_transport, sul_connect);
    if (atomic_load(&t->stopping)) {
        t->exit_loop = true;
        return;
    }
    t->link++;
    if (aip_url_is_numeric_host(t->u.host)) {
        aip_tp_connect_to(t, t->u.host);
        return;
    }
    aip_tp_resolve(t);
}

/* ---- service-thread API ---------------------------------------------------------------------- */

void aip_transport_drop(aip_transport *t, int code, const char *reason)
{
    if (!t->wsi)
        return;
    t->close_code = code;
    snprintf(t->close_reason, sizeof t->close_reason, "%s", reason ? reason : "");
    t->have_close = true;
    if (t->in_cb) {
        t->kill_requested = true; /* the callback returns -1 */
        return;
    }
    lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

void aip_transport_close(aip_transport *t, int code, const char *reason)
{
    if (!t->wsi || t->state != L_OPEN)
        return;
    t->closing = true;
    t->close_code = code;
    snprintf(t->close_reason, sizeof t->close_reason, "%s", reason ? reason : "");
    t->have_close = true;
    lws_callback_on_writable(t->wsi);
}

void aip_transport_mark_failed(aip_transport *t)
{
    t->marked_failed = true;
}

void aip_transport_mark_registered(aip_transport *t)
{
    t->marked_registered = true;
}

void aip_transport_mark_refused(aip_transport *t)
{
    t->marked_failed = true;
    t->slow_next = true;
}

void aip_transport_alive(aip_transport *t)
{
    if (t->wsi && t->state == L_OPEN)
        lws_validity_confirmed(t->wsi);
}

/* ---- reading --------------------------------------------------------------------------------- */

static int on_receive(aip_transport *t, struct lws *wsi, const void *in, size_t len)
{
    if (t->rx_skip) /* after a refusal, until the link ends: dropped as it arrives */
        return 0;
    int rc = aip_reasm_feed(&t->rx, in, len, lws_is_first_fragment(wsi) != 0,
                            lws_is_final_fragment(wsi) != 0, lws_frame_is_binary(wsi) != 0,
                            lws_remaining_packet_payload(wsi));
    if (rc == AIP_REASM_MORE)
        return 0;
    if (rc == AIP_E_NOMEM) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "out of memory reassembling a message");
        return -1;
    }
    if (rc == AIP_REASM_OVERSIZED) { /* skipped, never buffered: the link stays up */
        stat_add(&t->st_oversized, 1);
        size_t n;
        const uint8_t *p = aip_reasm_prefix(&t->rx, &n);
        t->in_cb++;
        if (t->ev.on_oversized)
            t->ev.on_oversized(t->user, t->link, p, n, aip_reasm_binary(&t->rx));
        t->in_cb--;
        return t->kill_requested ? -1 : 0;
    }
    if (rc == AIP_E_MALFORMED) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "refusing a text message that is not UTF-8 (close 1007)");
        aip_reasm_reset(&t->rx);
        /* Close from WRITEABLE, not from here: lws 4.1.6 corrupts its rx buffer when
         * lws_close_reason() is called in CLIENT_RECEIVE while it is spilling a frame larger
         * than that buffer (lws issue #3412; seen here under valgrind). Until the close goes
         * out, inbound data is discarded chunk by chunk. */
        t->rx_skip = true;
        aip_transport_close(t, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        return 0;
    }
    stat_add(&t->st_frames_in, 1);
    stat_add(&t->st_bytes_in, aip_reasm_len(&t->rx));
    t->in_cb++;
    if (t->ev.on_frame)
        t->ev.on_frame(t->user, t->link, aip_reasm_data(&t->rx), aip_reasm_len(&t->rx),
                       aip_reasm_binary(&t->rx));
    t->in_cb--;
    aip_reasm_reset(&t->rx); /* keeps a small buffer, frees a large one */
    return t->kill_requested ? -1 : 0;
}

/* ---- stopping (service thread) --------------------------------------------------------------- */

static void stop_deadline(lws_sorted_usec_list_t *sul)
{
    aip_transport *t = lws_container_of(sul, aip_transport, sul_stop);
    t->exit_loop = true;
}

/* Ends the loop: with a close handshake when a link is open (bounded by the grace period),
 * at once otherwise. Runs on every wake while stopping; acts once. */
static void begin_stop(aip_transport *t)
{
    if (t->exit_loop)
        return;
    if (t->closing) { /* a close is already under way: still bound the wait by the grace */
        if (!lws_dll2_is_detached(&t->sul_stop.list))
            return;
        lws_sul_schedule(t->ctx, 0, &t->sul_stop, stop_deadline,
                         (lws_usec_t)t->stop_grace_ms * 1000);
        return;
    }
    lws_sul_cancel(&t->sul_connect);
    aip_tp_job_abandon(t);
    if (t->state == L_OPEN && t->wsi) {
        aip_transport_close(t, t->stop_code, t->stop_reason);
        lws_sul_schedule(t->ctx, 0, &t->sul_stop, stop_deadline,
                         (lws_usec_t)t->stop_grace_ms * 1000);
        return;
    }
    if (t->wsi) /* still connecting */
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    t->exit_loop = true;
}

/* ---- the lws callback: one handler per event ------------------------------------------------- */

/* Did the attempt carry a token (Bearer, ?token= added from the config, or in the URL)? */
static bool link_has_token(const aip_transport *t)
{
    return t->bearer || aip_url_has_token(t->u.path);
}

/* Why a connection attempt failed, for the log: a certificate check lws logged names the
 * verification failure instead of OpenSSL's generic code; a TLS server that hangs up during
 * the handshake while we sent no client certificate is probably asking for one. */
static void attempt_failure(aip_transport *t, const char *lws_reason, char *why, size_t n)
{
    if (t->tls_error[0])
        snprintf(why, n, "TLS handshake failed: %.*s", (int)strcspn(t->tls_error, "("),
                 t->tls_error);
    else if (t->u.tls && !t->cert_file &&
             (strcmp(lws_reason, "read failed") == 0 ||
              strcmp(lws_reason, "Closed before conn") == 0))
        snprintf(why, n, "%s (no client certificate given: does the server require one?)",
                 lws_reason);
    else
        snprintf(why, n, "%s", lws_reason);
    size_t len = strlen(why);
    while (len && why[len - 1] == ' ')
        why[--len] = 0;
}

/* lws_cancel_service() from a producer, a resolver job, stop or a TLS reload. Broadcast to
 * every protocol: acts once (protocol "aip" of our vhost only). Always returns 0. */
static int on_wake(aip_transport *t, struct lws *wsi)
{
    if (!lws_get_protocol(wsi) || strcmp(lws_get_protocol(wsi)->name, "aip") != 0 ||
        (lws_get_vhost(wsi) && lws_get_vhost(wsi) != t->vh))
        return 0;
    atomic_store(&t->wake_pending, false);
    if (atomic_load(&t->stopping)) {
        begin_stop(t);
        return 0;
    }
    aip_mutex_lock(&t->qlock);
    bool reload = t->reload_pending;
    aip_mutex_unlock(&t->qlock);
    if (reload) /* vhosts are made and destroyed from a timer, not inside this broadcast */
        lws_sul_schedule(t->ctx, 0, &t->sul_reload, aip_tp_apply_reload, 1);
    aip_tp_job_check(t);
    if (t->wsi && t->state == L_OPEN) {
        aip_mutex_lock(&t->qlock);
        bool more = t->qhead != NULL;
        aip_mutex_unlock(&t->qlock);
        if (more)
            lws_callback_on_writable(t->wsi);
    }
    if (t->ev.on_wake)
        t->ev.on_wake(t->user);
    return 0;
}

static int on_append_header(aip_transport *t, struct lws *wsi, void *in, size_t len)
{
    if (wsi != t->wsi || !t->bearer)
        return 0;
    unsigned char **p = (unsigned char **)in, *end = (*p) + len;
    if (lws_add_http_header_by_name(
            wsi, (const unsigned char *)"authorization:", (const unsigned char *)t->bearer,
            (int)strlen(t->bearer), p, end))
        return -1;
    return 0;
}

static int on_pre_establish(aip_transport *t, struct lws *wsi)
{
    char buf[64];
    int n = lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_PROTOCOL);
    t->proto_selected = n > 0 && strcmp(buf, PROTO_NAME) == 0;
    return 0;
}

/* connecting -> open: producers may queue for this link from now on. */
static int on_established(aip_transport *t, struct lws *wsi)
{
    if (wsi != t->wsi)
        return 0;
    t->state = L_OPEN;
    t->open_since_ns = aip_now_ns(NULL);
    stat_add(&t->st_connects, 1);
    aip_mutex_lock(&t->qlock);
    t->qlink = t->link;
    aip_mutex_unlock(&t->qlock);
    t->in_cb++;
    if (t->ev.on_open)
        t->ev.on_open(t->user, t->link, t->proto_selected);
    t->in_cb--;
    if (t->kill_requested) {
        /* returning nonzero here would be reported as a connection error (lws #3098) */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    return 0;
}

static int on_writeable(aip_transport *t, struct lws *wsi)
{
    if (wsi != t->wsi)
        return 0;
    if (t->kill_requested)
        return -1;
    if (t->closing) {
        lws_close_reason(wsi, (enum lws_close_status)t->close_code,
                         (unsigned char *)t->close_reason, strlen(t->close_reason));
        return -1;
    }
    return aip_tp_write_burst(t, wsi);
}

/* The peer's close frame: its code and reason become the link's, unless ours came first. */
static int on_peer_close(aip_transport *t, struct lws *wsi, const void *in, size_t len)
{
    if (wsi != t->wsi || t->have_close)
        return 0;
    const unsigned char *b = in;
    t->close_code = len >= 2 ? (b[0] << 8) | b[1] : 1005;
    size_t rl = len > 2 ? len - 2 : 0;
    if (rl >= sizeof t->close_reason)
        rl = sizeof t->close_reason - 1;
    memcpy(t->close_reason, len > 2 ? (const char *)b + 2 : "", rl);
    t->close_reason[rl] = 0;
    t->have_close = true;
    return 0;
}

/* connecting -> ended (or -> probing, for lws' "proxy not h1"). */
static int on_connection_error(aip_transport *t, struct lws *wsi, const void *in)
{
    if (wsi != t->wsi && t->wsi)
        return 0;
    const char *r = in ? (const char *)in : "connection error";
    char why[224];
    int err = 0;
    if (strncmp(r, "HS: ws upgrade", 14) == 0) /* "... response not 101", "... unauthorized" */
        err = aip_link_upgrade_refusal((int)lws_http_client_http_response(wsi), link_has_token(t),
                                       why, sizeof why);
    else if (strcmp(r, "proxy not h1") == 0) {
        t->wsi = NULL; /* lws closes it; the attempt ends when the probe answers */
        t->attempt = NULL;
        if (aip_tp_probe_start(t) == 0)
            return 0;
    }
    if (!err) {
        attempt_failure(t, r, why, sizeof why);
        err = t->tls_error[0] ? AIP_E_TLS : AIP_E_IO;
    }
    if (aip_link_error_is_final(err))
        t->slow_next = true;
    aip_tp_link_ended(t, 1006, why, false, err);
    return 0;
}

/* lws 4.1.6 can free a client wsi that fails late in the TLS handshake (a server that refuses
 * our certificate after the client's side of TLS 1.3 finished) without either
 * CLIENT_CONNECTION_ERROR or CLIENT_CLOSED: the attempt would hang forever. */
static int on_wsi_destroy(aip_transport *t, struct lws *wsi)
{
    if (wsi != t->attempt)
        return 0;
    bool was_open = t->state == L_OPEN;
    char why[224] = "connection lost";
    if (!was_open)
        attempt_failure(t, "Closed before conn", why, sizeof why);
    aip_tp_link_ended(t, 1006, why, was_open,
                      was_open          ? AIP_E_CONN_LOST
                      : t->tls_error[0] ? AIP_E_TLS
                                        : AIP_E_IO);
    return 0;
}

/* open -> ended. */
static int on_closed(aip_transport *t, struct lws *wsi)
{
    if (wsi != t->wsi)
        return 0;
    if (!t->have_close) {
        t->close_code = 1006;
        snprintf(t->close_reason, sizeof t->close_reason, "connection lost");
    }
    if (atomic_load(&t->stopping))
        t->exit_loop = true;
    aip_tp_link_ended(t, t->close_code, t->close_reason, true, AIP_E_CONN_LOST);
    return 0;
}

static int lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    aip_transport *t = lws_context_user(lws_get_context(wsi));
    if (!t)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: return on_wake(t, wsi);
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: return on_append_header(t, wsi, in, len);
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: return on_pre_establish(t, wsi);
    case LWS_CALLBACK_CLIENT_ESTABLISHED: return on_established(t, wsi);
    case LWS_CALLBACK_CLIENT_RECEIVE: return wsi == t->wsi ? on_receive(t, wsi, in, len) : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: return on_writeable(t, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: return on_peer_close(t, wsi, in, len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: return on_connection_error(t, wsi, in);
    case LWS_CALLBACK_WSI_DESTROY: return on_wsi_destroy(t, wsi);
    case LWS_CALLBACK_CLIENT_CLOSED: return on_closed(t, wsi);
    default: return 0;
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

/* Copies what the transport keeps of cfg (strings owned; the URL parsed, not kept: it may hold
 * a token). Returns 0 or an AIP_E_* code; what was copied is freed by aip_transport_destroy. */
static int take_config(aip_transport *t, const aip_transport_config *cfg)
{
    t->cfg = *cfg;
    t->token = dup_opt(cfg->token);
    t->ca_file = dup_opt(cfg->ca_file);
    t->cert_file = dup_opt(cfg->cert_file);
    t->key_file = dup_opt(cfg->key_file);
    t->thread_name = aip_strdup(cfg->thread_name ? cfg->thread_name : "aip-service");
    t->cfg.token = t->token;
    t->cfg.ca_file = t->ca_file;
    t->cfg.cert_file = t->cert_file;
    t->cfg.key_file = t->key_file;
    t->cfg.url = NULL; /* not kept: it may hold a token */
    if (!t->cfg.max_frame_in)
        t->cfg.max_frame_in = 1u << 20;
    aip_reasm_init(&t->rx, t->cfg.max_frame_in);
    int rc = aip_url_parse(cfg->url, cfg->token_mode == AIP_TOKEN_QUERY ? t->token : NULL, &t->u);
    if (rc)
        return rc;
    if (t->token && cfg->token_mode == AIP_TOKEN_BEARER) {
        size_t n = strlen(t->token) + 8;
        if (!(t->bearer = aip_malloc(n)))
            return AIP_E_NOMEM;
        snprintf(t->bearer, n, "Bearer %s", t->token);
    }
#if !defined(LWS_WITH_TLS)
    if (t->u.tls)
        return AIP_E_UNSUPPORTED;
#endif
    if (!t->cfg.stable_ms)
        t->cfg.stable_ms = 30000;
    return 0;
}

/* Our reconnect schedule, lws' validity pings, and the protocols of the vhost. */
static void init_policies(aip_transport *t, const aip_transport_config *cfg)
{
    aip_backoff_init(&t->backoff, cfg->backoff_base_ms ? cfg->backoff_base_ms : 1000,
                     cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 60000, cfg->random);
    unsigned ping = cfg->ping_s ? cfg->ping_s : 20;
    unsigned hangup = cfg->hangup_s > ping ? cfg->hangup_s : ping + 10;
    t->retry_table[0] = 1000;
    t->policy.retry_ms_table = t->retry_table;
    t->policy.retry_ms_table_count = 1;
    t->policy.conceal_count = 0;
    t->policy.secs_since_valid_ping = (uint16_t)ping;
    t->policy.secs_since_valid_hangup = (uint16_t)hangup;
    t->policy.jitter_percent = 0;

    /* protocols[0] also gets WSI_DESTROY and unmatched events in 4.1.6; both names map to the
     * same handler so a server that selects aip.v1.proto is matched. */
    t->protocols[0] = (struct lws_protocols){"aip", lws_cb, 0, RX_BUFFER, 0, NULL, TX_FRAGMENT};
    t->protocols[1] =
        (struct lws_protocols){PROTO_NAME, lws_cb, 0, RX_BUFFER, 0, NULL, TX_FRAGMENT};
    memset(&t->protocols[2], 0, sizeof t->protocols[2]);
}

/* The lws context (no vhost yet: see aip_tp_make_vhost). */
static struct lws_context *create_context(aip_transport *t)
{
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS; /* UTF-8: see aip_tp_make_vhost() */
#if defined(LWS_WITH_TLS)
    /* TLS only for wss://: a ws:// link never loads OpenSSL's CA store (memory, start-up) */
    if (t->u.tls)
        ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
#endif
    ci.user = t;
    ci.fd_limit_per_thread = 16; /* one link, the event pipe, a few spares */
    /* lws reads into a per-thread buffer of this size and copies into the protocol's rx
     * buffer; 4.1.6 overruns the latter when rx_buffer_size is larger (seen under valgrind
     * with a 300 KB message), so the two are kept equal. */
    ci.pt_serv_buf_size = RX_BUFFER;
    ci.timeout_secs = 10;
    ci.connect_timeout_secs = 10;
    return lws_create_context(&ci);
}

int aip_transport_create(const aip_transport_config *cfg, const aip_transport_events *ev,
                         void *user, aip_transport **out)
{
    static aip_once log_once = AIP_ONCE_INIT;
    aip_call_once(&log_once, aip_lws_log_to_aip);
    *out = NULL;
    if (!cfg || !cfg->url)
        return AIP_E_INVAL;
    aip_transport *t = aip_calloc(1, sizeof *t);
    if (!t)
        return AIP_E_NOMEM;
    if (ev)
        t->ev = *ev;
    t->user = user;
    if (aip_mutex_init(&t->qlock)) {
        aip_free(t);
        return AIP_E_NOMEM;
    }
    int rc = take_config(t, cfg);
    if (rc)
        goto fail;
    init_policies(t, cfg);
    if (!(t->ctx = create_context(t))) {
        rc = AIP_E_NOMEM;
        goto fail;
    }
    if (!(t->vh = aip_tp_make_vhost(t, 0))) {
        rc = t->u.tls ? AIP_E_TLS : AIP_E_NOMEM;
        goto fail;
    }
    *out = t;
    return 0;
fail:
    aip_transport_destroy(t);
    return rc;
}

static void *service_main(void *arg)
{
    aip_transport *t = arg;
    tl_service = t;
    lws_sul_schedule(t->ctx, 0, &t->sul_connect, aip_tp_start_connect, 1);
    while (!t->exit_loop) {
        int rc = lws_service(t->ctx, 0);
        if (t->ev.on_round_end)
            t->ev.on_round_end(t->user);
        if (rc < 0)
            break;
    }
    /* A link still open here (the peer never acknowledged our close within the grace) is
     * ended now, on this thread, so its last callbacks reach the layer above while it still
     * exists — not later from lws_context_destroy(). */
    if (t->wsi)
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    lws_sul_cancel(&t->sul_connect);
    lws_sul_cancel(&t->sul_stop);
    lws_sul_cancel(&t->sul_reload);
    aip_tp_job_abandon(t);
    if (t->ev.on_round_end) /* the last callbacks above may have completed requests */
        t->ev.on_round_end(t->user);
    tl_service = NULL;
    return NULL;
}

int aip_transport_start(aip_transport *t)
{
    if (t->thread_started)
        return AIP_E_STATE;
    int rc = aip_thread_start(&t->thread, t->thread_name, service_main, t);
    if (rc)
        return rc;
    t->thread_started = true;
    return 0;
}

void aip_transport_stop(aip_transport *t, int code, const char *reason, uint32_t grace_ms)
{
    if (!t)
        return;
    aip_mutex_lock(&t->qlock);
    bool already = atomic_load(&t->stopping);
    if (!already) {
        t->stop_code = code ? code : 1000;
        snprintf(t->stop_reason, sizeof t->stop_reason, "%s", reason ? reason : "");
        t->stop_grace_ms = grace_ms;
        atomic_store(&t->stopping, true);
        aip_tp_queue_flush_locked(t);
    }
    aip_mutex_unlock(&t->qlock);
    if (t->thread_started) {
        lws_cancel_service(t->ctx);
        aip_thread_join(&t->thread);
        t->thread_started = false;
    }
}

void aip_transport_destroy(aip_transport *t)
{
    if (!t)
        return;
    if (t->thread_started)
        aip_transport_stop(t, 1001, "going away", 1000);
    if (t->ctx) {
        aip_tp_job_abandon(t);
        /* nothing may call back into the layer above from here on */
        memset(&t->ev, 0, sizeof t->ev);
        lws_context_destroy(t->ctx);
        t->ctx = NULL;
    }
    aip_mutex_lock(&t->qlock);
    aip_tp_queue_flush_locked(t);
    aip_mutex_unlock(&t->qlock);
    aip_tp_queue_free_current(t);
    aip_reasm_free(&t->rx);
    aip_mutex_destroy(&t->qlock);
    aip_url_free(&t->u);
    aip_free(t->token);
    aip_free(t->bearer);
    aip_free(t->ca_file);
    aip_free(t->cert_file);
    aip_free(t->key_file);
    aip_free(t->rl_ca);
    aip_free(t->rl_cert);
    aip_free(t->rl_key);
    aip_free(t->thread_name);
    aip_free(t);
}
