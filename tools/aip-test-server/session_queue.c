/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: the outbound queues of sessions, their bounds, and writing them out.
 *
 * Every frame for a peer (an AIP message, an echo, a viewer's event) is queued here and
 * written from SERVER_WRITEABLE, in fragments of TX_FRAGMENT, several frames per WRITEABLE
 * while the socket takes them. Three bounds keep the memory finite: --max-queue per
 * connection (a slower reader is dropped with 1008 "too slow"), --max-total-queue over all
 * connections (the readers holding the most are dropped first), and, for /events viewers,
 * --max-viewer-queue (events.c). A dropped reader's queue is freed at once; its close frame
 * goes out when the socket takes it, and the link is killed when it never does.
 *
 * This file calls no other file of the server (server.h shows the order): it is the bottom
 * of the sending side, below the event feed (events.c) and the sessions (session.c).
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

#define LOG         "server"
#define TX_FRAGMENT (64u * 1024u)

/* Closes after what is queued has gone out (so a refusal's `error` frame arrives before the
 * close), unless the queue itself is the problem (a slow reader): then at once. */
void close_session_ex(session *s, int code, const char *reason, bool flush_first)
{
    if (s->closing || !s->wsi)
        return;
    s->closing = true;
    s->close_now = !flush_first;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    lws_callback_on_writable(s->wsi);
}

void close_session(session *s, int code, const char *reason)
{
    close_session_ex(s, code, reason, true);
}

/* Frees what s has queued, at once: that memory is what the outbound bounds protect. */
void queue_drop(session *s)
{
    for (out_frame *f = s->qh, *n; f; f = n) {
        n = f->next;
        aip_free(f->buf);
        aip_free(f);
    }
    g_srv.queued_total -= s->qbytes;
    s->qh = s->qt = NULL;
    s->qbytes = s->qexempt = 0;
}

/* Drops s for what it holds queued (a slow reader, or the server-wide budget): its queue is
 * freed now, the close frame (code, reason) goes out when the socket takes it, and the link is
 * killed after DROP_GRACE_S when it never does (a peer that reads nothing never makes its
 * socket writable again). */
#define DROP_GRACE_S 2
static void drop_reader(session *s, int code, const char *reason)
{
    queue_drop(s);
    if (!s->wsi || (s->closing && s->close_now))
        return;
    s->closing = true;
    s->close_now = true;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    lws_callback_on_writable(s->wsi);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, DROP_GRACE_S);
}

/* Makes room for len more bytes queued for s under --max-total-queue, by dropping the sessions
 * that hold the most queued bytes (the readers furthest behind) first, s included, each with
 * 1008 and a reason. Returns false when s itself was dropped (its frame is not queued). */
static bool budget_make_room(session *s, size_t len)
{
    while (g_srv.queued_total + len > g_srv.cfg.max_total_queue) {
        session *v = NULL;
        for (session *x = g_srv.sessions; x; x = x->next)
            if (x->qbytes && (!v || x->qbytes > v->qbytes))
                v = x;
        if (!v)
            v = s; /* nothing else to free: this frame can never fit */
        aip_log(AIP_LOG_WARN, LOG,
                "outbound budget (%zu bytes) full: dropping %s, which holds %zu queued bytes",
                g_srv.cfg.max_total_queue, v->client_id ? v->client_id : v->addr,
                v == s ? v->qbytes + len : v->qbytes);
        g_srv.m.budget_drops++;
        drop_reader(v, 1008, "server outbound budget full: slowest reader dropped");
        if (v == s)
            return false;
    }
    return true;
}

/* Queues one frame for s (takes buf). exempt: a viewer's opening burst, which
 * --max-viewer-queue does not count (events.c); every frame counts against --max-queue and
 * --max-total-queue. */
void session_enqueue(session *s, uint8_t *buf, size_t len, bool binary, bool exempt)
{
    if (s->closing) {
        aip_free(buf);
        return;
    }
    if (s->qbytes + len > g_srv.cfg.max_queue) {
        aip_free(buf);
        aip_log(AIP_LOG_WARN, LOG, "%s reads too slowly (%zu bytes queued): dropping it",
                s->client_id ? s->client_id : s->addr, s->qbytes);
        g_srv.m.slow_readers++;
        drop_reader(s, 1008, "too slow");
        return;
    }
    if (!budget_make_room(s, len)) {
        aip_free(buf);
        return;
    }
    out_frame *f = aip_calloc(1, sizeof *f);
    if (!f) {
        aip_free(buf);
        return;
    }
    f->buf = buf;
    f->len = len;
    f->binary = binary;
    f->exempt = exempt;
    if (s->qt)
        s->qt->next = f;
    else
        s->qh = f;
    s->qt = f;
    s->qbytes += len;
    if (exempt)
        s->qexempt += len;
    g_srv.queued_total += len;
    lws_callback_on_writable(s->wsi);
}

void session_enqueue_text(session *s, const char *text, size_t len, bool exempt)
{
    uint8_t *buf = aip_malloc(LWS_PRE + (len ? len : 1));
    if (!buf)
        return;
    memcpy(buf + LWS_PRE, text, len);
    session_enqueue(s, buf, len, false, exempt);
}

static int write_one(session *s)
{
    out_frame *f = s->qh;
    if (!f)
        return 0;
    int64_t now = now_us();
    if (s->stall_until_us > now || s->delay_until_us > now)
        return 0; /* held by a fault: fault_timer asks for WRITEABLE again when it ends */
    if (s->closing && !f->next && f->off + TX_FRAGMENT >= f->len)
        lws_callback_on_writable(s->wsi); /* after this last frame: the close */
    size_t chunk = f->len - f->off;
    if (chunk > TX_FRAGMENT)
        chunk = TX_FRAGMENT;
    bool start = f->off == 0, end = f->off + chunk == f->len;
    int flags = lws_write_ws_flags(f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, start, end);
    if (lws_write(s->wsi, f->buf + LWS_PRE + f->off, chunk, (enum lws_write_protocol)flags) <
        (int)chunk)
        return -1;
    f->off += chunk;
    if (end) {
        s->qh = f->next;
        if (!s->qh)
            s->qt = NULL;
        s->qbytes -= f->len;
        g_srv.queued_total -= f->len;
        if (f->exempt)
            s->qexempt -= f->len;
        aip_free(f->buf);
        aip_free(f);
    }
    if (s->qh)
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* SERVER_WRITEABLE: the close once the queue is out (or at once), a due liveness ping, or
 * the next queued frames. */
int session_writeable(struct lws *wsi, session *s)
{
    if (s->closing && (s->close_now || !s->qh)) {
        lws_close_reason(wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)s->close_reason, strlen(s->close_reason));
        return -1;
    }
    if (s->ping_due && s->stall_until_us <= now_us()) { /* a stall sends nothing */
        /* Never an empty ping: lws 4.1's server parser drops a zero-length PONG before the
         * protocol callback (ops-ws.c: "opcode == LWSWSOPC_PONG && !ebuf.len"), so the
         * answer to an empty ping never reached LWS_CALLBACK_RECEIVE_PONG and every peer
         * that heartbeats less often than --drop-after was dropped although it answered. */
        uint8_t ping[LWS_PRE + 4] = {[LWS_PRE] = 'a', 'i', 'p', '!'};
        s->ping_due = false;
        if (lws_write(wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0)
            return -1;
        if (s->qh)
            lws_callback_on_writable(wsi);
        return 0;
    }
    /* several queued frames per WRITEABLE while the socket takes them (one poll() round
     * per frame was most of the server's cost under load) */
    for (int i = 0; i < 16; i++) {
        if (write_one(s))
            return -1;
        if (!s->qh || s->closing || lws_send_pipe_choked(wsi))
            break;
    }
    return 0;
}
