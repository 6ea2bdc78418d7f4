/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: the lws protocol callback, for every protocol of the one vhost (main.c).
 * It only routes: a WebSocket upgrade is checked here (endpoint, guard.c's checks and the key,
 * --max-connections); a WebSocket's life goes to session.c (ESTABLISHED, CLOSED), what it
 * receives to session.c then, whole, to relay.c, its writing to session_queue.c; HTTP goes to
 * http.c. At CLOSED a session ends in three steps: session_detach(), relay_forget(),
 * session_free() (see session.c).
 *
 * Calls http.c, relay.c, session.c, session_queue.c and guard.c (server.h shows the order).
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

#define LOG "server"

/* Refuses a WebSocket upgrade with an HTTP status. Written by hand: at this point lws has not
 * recorded the request's HTTP version, and lws_return_http_status() would answer "HTTP/1.0",
 * which WebSocket clients (Python's websockets among them) refuse to parse. It carries the
 * security headers lws puts on its own answers. */
static int reject_upgrade(struct lws *wsi, unsigned code, const char *text)
{
    char buf[LWS_PRE + 1024];
    int n = snprintf(buf + LWS_PRE, sizeof buf - LWS_PRE,
                     "HTTP/1.1 %u %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n%s"
                     "connection: close\r\n\r\n%s",
                     code,
                     code == 404   ? "Not Found"
                     : code == 503 ? "Service Unavailable"
                                   : "Forbidden",
                     strlen(text), guard_security_headers, text);
    if (n > 0 && (size_t)n < sizeof buf - LWS_PRE)
        lws_write(wsi, (unsigned char *)buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS);
    return 1; /* rejected: lws finishes the transaction */
}

/* HTTP_CONFIRM_UPGRADE: 0 lets the handshake go on, 1 refused it. */
static int confirm_upgrade(struct lws *wsi)
{
    char uri[128] = "";
    lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (strcmp(uri, "/ws") != 0 && strcmp(uri, "/echo") != 0 && strcmp(uri, "/events") != 0)
        return reject_upgrade(wsi, 404, "no WebSocket endpoint here");
    refuse_reason why;
    if (guard_refuse(wsi, REQ_UPGRADE, &why))
        return reject_upgrade(wsi, refuse_status(why, REQ_UPGRADE), refuse_text(why));
    if (guard_refuse_key(wsi, REQ_UPGRADE))
        return reject_upgrade(wsi, 403, "bad or missing token");
    if (g_srv.nsessions >= g_srv.cfg.max_connections) { /* --max-connections */
        g_srv.m.refused_connections++;
        aip_log(AIP_LOG_INFO, LOG, "%zu WebSocket connections open: refusing one more (503)",
                g_srv.nsessions);
        return reject_upgrade(wsi, 503, "too many connections (aip-test-server --max-connections)");
    }
    return 0;
}

static int on_receive(session *s, struct lws *wsi, const void *in, size_t len)
{
    session_alive(s);
    int rc = session_receive(s, wsi, in, len);
    if (rc <= 0)
        return rc;
    relay_frame(s, s->rx.data ? s->rx.data : (const uint8_t *)"", s->rx.len, s->rx_binary);
    session_rx_done(s);
    return 0;
}

/* WS_PEER_INITIATED_CLOSE: keeps the peer's close code and reason for the CLOSED event. */
static void on_peer_close(session *s, const unsigned char *b, size_t len)
{
    if (len < 2 || s->closing)
        return;
    s->close_code = (b[0] << 8) | b[1];
    size_t rl = len - 2 < sizeof s->close_reason - 1 ? len - 2 : sizeof s->close_reason - 1;
    memcpy(s->close_reason, b + 2, rl);
    s->close_reason[rl] = 0;
}

static void on_closed(pss *ps)
{
    session *s = ps->s;
    ps->s = NULL;
    int code = s->close_code ? s->close_code : 1006;
    const char *reason = s->close_code ? s->close_reason : "connection lost";
    session_detach(s, code, reason);
    relay_forget(s);
    session_free(s);
}

int aip_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    pss *ps = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return confirm_upgrade(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        if (ps)
            ps->s = session_new(wsi);
        return ps && ps->s ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (!ps || !ps->s)
            return -1;
        return on_receive(ps->s, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (ps && ps->s)
            session_alive(ps->s);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: return ps && ps->s ? session_writeable(wsi, ps->s) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (ps && ps->s)
            on_peer_close(ps->s, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (ps && ps->s)
            on_closed(ps);
        return 0;
    case LWS_CALLBACK_HTTP: return http_handle(wsi, in);
    case LWS_CALLBACK_HTTP_BODY: return http_body(wsi, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: return http_body_done(wsi);
    case LWS_CALLBACK_HTTP_WRITEABLE: return http_writeable(wsi, user);
    case LWS_CALLBACK_CLOSED_HTTP: http_closed(wsi); break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* mTLS: lws accepts whatever this returns 0 for, so OpenSSL's verdict (len holds
         * preverify_ok) must be passed on: a certificate from another CA is refused. */
        if (!len)
            aip_log(AIP_LOG_WARN, "server",
                    "refusing a client certificate that does not verify "
                    "against --tls-ca");
        return len ? 0 : 1;
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
