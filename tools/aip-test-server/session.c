/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: sessions — one per WebSocket connection (/ws, /echo, /events) — from
 * ESTABLISHED to CLOSED: their life, sending AIP messages and rejections on them, assembling
 * what they receive, and liveness.
 *
 * A session is made in session_new() and ends in three steps (callback.c, at CLOSED):
 * session_detach() takes it off every list and reports it, relay_forget() drops what the relay
 * holds about it (tasks, live queries, delayed answers), session_free() frees it; so nothing
 * outlives its session. What a session receives is assembled here (bounded by --max-frame) and
 * handed to the relay whole by the callback. Messages are encoded in the session's encoding
 * and queued by session_queue.c.
 *
 * Calls events.c, session_queue.c and json_out.c only (server.h shows the order).
 */
#include "server.h"

#include <aip/internal/encode.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG "server"

void new_id(char *buf)
{
    aip_uuid4(NULL, buf, 40);
}

/* ---- sending ---------------------------------------------------------------------------- */

/* Encodes a ServerMessage in the session's encoding and queues it. */
void send_msg_as(session *s, aip_msg *m, bool prevalidated)
{
    char ts[40];
    bool own_ts = !m->timestamp;
    if (own_ts) {
        aip_format_timestamp(now_us(), ts, sizeof ts);
        m->timestamp = ts;
    }
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    char why[200];
    aip_encoding enc = s->proto ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
    int rc = prevalidated ? aip_encode_prevalidated(enc, m, &b)
                          : aip_encode_why(enc, m, &b, why, sizeof why);
    if (rc && prevalidated)
        snprintf(why, sizeof why, "%s", aip_strerror(rc));
    if (own_ts)
        m->timestamp = NULL;
    if (rc) {
        aip_log(AIP_LOG_ERROR, LOG, "cannot encode a %s for %s: %s", aip_msg_type_str(m->type),
                s->client_id ? s->client_id : s->addr, why);
        aip_buf_free(&b);
        return;
    }
    size_t len = b.len;
    s->frames_out++;
    g_srv.m.frames_out[m->type][s->proto]++;
    if (m->type == AIP_MSG_ERROR)
        g_srv.m.errors_sent++;
    session_enqueue(s, aip_buf_steal(&b), len, s->proto, false);
}

void send_msg(session *s, aip_msg *m)
{
    send_msg_as(s, m, false);
}

void send_simple(session *s, aip_msg_type type, aip_status st, const char *session_id,
                 const char *response_id, const char *error)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, type, st);
    char rid[40];
    if (!response_id && type == AIP_MSG_HEARTBEAT) {
        new_id(rid);
        response_id = rid;
    }
    m.session_id = (char *)(uintptr_t)session_id;
    m.response_id = (char *)(uintptr_t)response_id;
    m.error = (char *)(uintptr_t)error;
    send_msg(s, &m);
}

/* The one path that rejects a request, for a plain error and for a role check's refusal alike
 * (server.h). The text fits: ids are at most AIP_ID_MAX (256) bytes. */
void reject_request(session *s, const aip_msg *req, reject_kind kind, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (kind == REJECT_UNAUTHORIZED) {
        g_srv.m.unauthorized++;
        aip_log(AIP_LOG_INFO, LOG, "refused a %s from %s: %s", aip_msg_type_str(req->type),
                s->client_id, text);
        ev_emit("error", s, NULL, "refused %s: %.300s", aip_msg_type_str(req->type), text);
    }
    send_simple(s, AIP_MSG_ERROR, AIP_STATUS_ERROR, req ? req->session_id : NULL,
                req ? req->request_id : NULL, text);
}

/* ---- session lifecycle ----------------------------------------------------------------------- */

static void register_timeout(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, sul_register);
    if (s->registered)
        return;
    aip_log(AIP_LOG_INFO, LOG, "%s sent no registration within %u ms: closing", s->addr,
            g_srv.cfg.register_timeout_ms);
    close_session(s, 1008, "registration timeout");
}

session *session_new(struct lws *wsi)
{
    session *s = aip_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->serial = ++g_srv.next_serial;
    s->wsi = wsi;
    s->connected_us = now_us();
    s->last_rx_us = s->connected_us;
    s->next = g_srv.sessions;
    if (s->next)
        s->next->prev = s;
    g_srv.sessions = s;
    g_srv.nsessions++;
    aip_buf_init(&s->rx, 0);
    lws_get_peer_simple(wsi, s->addr, sizeof s->addr);
    const struct lws_protocols *p = lws_get_protocol(wsi);
    s->proto = p && strcmp(p->name, AIP_PROTO_SUBPROTOCOL) == 0;
    char uri[128] = "";
    lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    s->kind = strncmp(uri, "/echo", 5) == 0     ? SK_ECHO
              : strncmp(uri, "/events", 7) == 0 ? SK_EVENTS
                                                : SK_AIP;
    if (s->kind == SK_AIP) {
        lws_sul_schedule(g_srv.ctx, 0, &s->sul_register, register_timeout,
                         (lws_usec_t)g_srv.cfg.register_timeout_ms * 1000);
        char x[100];
        snprintf(x, sizeof x, "\"address\":\"%s\"", s->addr); /* an IP address: no escaping */
        ev_emit("connected", NULL, x, "connection from %s (%s)", s->addr,
                s->proto ? "aip.v1.proto" : "JSON");
    } else if (s->kind == SK_EVENTS) {
        events_viewer_open(s);
    }
    return s;
}

void session_detach(session *s, int code, const char *reason)
{
    lws_sul_cancel(&s->sul_register);
    lws_sul_cancel(&s->sul_fault);
    if (s->kind == SK_EVENTS)
        events_viewer_close(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        g_srv.sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->registered) {
        strmap_del(&g_srv.clients, s->client_id);
        aip_log(AIP_LOG_INFO, LOG, "%s %s disconnected (%d%s%s)", aip_client_type_str(s->type),
                s->client_id, code, reason && reason[0] ? ": " : "", reason ? reason : "");
    }
    if (s->kind == SK_AIP) {
        aip_buf e;
        aip_buf_init(&e, 0);
        bputf(&e, "\"code\":%d,\"reason\":", code);
        put_str(&e, reason ? reason : "");
        aip_buf_nul(&e);
        ev_emit("disconnected", s->registered ? s : NULL, (const char *)e.data,
                "%s disconnected (%d%s%.100s)", s->client_id ? s->client_id : s->addr, code,
                reason && reason[0] ? ": " : "", reason ? reason : "");
        aip_buf_free(&e);
    }
}

void session_free(session *s)
{
    queue_drop(s);
    g_srv.nsessions--;
    aip_buf_free(&s->rx);
    aip_free(s->client_id);
    aip_free(s->target_id);
    aip_free(s->system_info);
    aip_free(s->si_summary);
    aip_free(s);
}

/* ---- receiving ---------------------------------------------------------------------------- */

int session_receive(session *s, struct lws *wsi, const void *in, size_t len)
{
    if (s->rx_skip || s->closing)
        return 0;
    if (lws_is_first_fragment(wsi)) {
        s->rx.len = 0;
        s->rx_binary = lws_frame_is_binary(wsi);
        if (len + lws_remaining_packet_payload(wsi) > g_srv.cfg.max_frame)
            goto too_big;
    }
    if (s->rx.len + len > g_srv.cfg.max_frame)
        goto too_big;
    if (aip_buf_append(&s->rx, in, len))
        return -1;
    return lws_is_final_fragment(wsi) ? 1 : 0;
too_big:
    /* closed from WRITEABLE, not here: lws 4.1.6 issue #3412 (see the client transport) */
    aip_log(AIP_LOG_INFO, LOG, "%s sent a message over %zu bytes: closing with 1009",
            s->client_id ? s->client_id : s->addr, g_srv.cfg.max_frame);
    aip_buf_free(&s->rx);
    s->rx_skip = true;
    g_srv.m.too_big++;
    close_session(s, 1009, "message too big");
    return 0;
}

void session_rx_done(session *s)
{
    if (s->rx.cap > 256 * 1024)
        aip_buf_free(&s->rx);
    else
        s->rx.len = 0;
}

/* ---- liveness ------------------------------------------------------------------------------
 *
 * Ping a peer silent for --ping-after (20 s), drop one silent for --drop-after (60 s); any
 * frame or pong counts as life, and a pong re-arms the next ping. One timer sweeping every
 * session each second, instead of lws's per-connection validity timers: lws 4.1 keeps timers
 * in one sorted list and re-inserted a connection's timer (O(n)) on every frame it received,
 * which was most of the server's CPU with 10,000 connections. */

void session_alive(session *s)
{
    s->last_rx_us = now_us();
    s->ping_sent = false;
}

static void liveness_sweep(lws_sorted_usec_list_t *sul)
{
    int64_t now = now_us();
    for (session *s = g_srv.sessions; s; s = s->next) {
        if (!s->wsi || s->closing)
            continue;
        int64_t quiet = now - s->last_rx_us;
        if (quiet > g_srv.cfg.drop_after_us) {
            aip_log(AIP_LOG_INFO, LOG, "%s silent for %lld s: dropping it",
                    s->client_id ? s->client_id : s->addr, (long long)(quiet / 1000000));
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (quiet > g_srv.cfg.ping_after_us && !s->ping_sent) {
            s->ping_due = s->ping_sent = true;
            lws_callback_on_writable(s->wsi);
        }
    }
    lws_sul_schedule(g_srv.ctx, 0, sul, liveness_sweep, 1000 * 1000);
}

void server_liveness_start(void)
{
    lws_sul_schedule(g_srv.ctx, 0, &g_srv.sul_liveness, liveness_sweep, 1000 * 1000);
}

void server_close_all(int code, const char *reason)
{
    const char *k;
    void *v;
    for (size_t i = 0; strmap_next(&g_srv.clients, &i, &k, &v);)
        close_session(v, code, reason);
}
