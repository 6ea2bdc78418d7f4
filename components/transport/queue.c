/* SPDX-License-Identifier: MIT */
/*
 * The transport's outbound queue and its write path.
 *
 * A frame is queued for one link from any thread (aip_transport_send(), under qlock) and is
 * dropped, counted, if that link is gone when its turn comes: a request is never sent on a
 * later connection. The service thread writes on WRITEABLE: a burst of frames (corked) while
 * lws takes them without buffering, one frame or one 64 KiB fragment per lws_write().
 */
#include "aip/internal/transport_impl.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>

#define WRITE_BURST 16

/* ---- frames ---------------------------------------------------------------------------------- */

/* A queued frame lives in the headroom of its own buffer: [node | LWS_PRE | payload]. */
struct frame {
    struct frame *next;
    uint64_t link;
    size_t len, off;
    bool binary;
};

#define NODE_SPACE ((sizeof(frame) + 15) & ~(size_t)15)

size_t aip_transport_headroom(void)
{
    return NODE_SPACE + LWS_PRE;
}

static uint8_t *frame_payload(frame *f)
{
    return (uint8_t *)f + NODE_SPACE + LWS_PRE;
}

/* ---- the queue (any thread, under qlock) ----------------------------------------------------- */

static void free_frame(frame *f)
{
    aip_free(f);
}

/* Drops every queued frame; returns how many. Caller holds qlock. */
size_t aip_tp_queue_flush_locked(aip_transport *t)
{
    size_t n = 0;
    for (frame *f = t->qhead, *next; f; f = next) {
        next = f->next;
        free_frame(f);
        n++;
    }
    t->qhead = t->qtail = NULL;
    t->qbytes = t->qframes = 0;
    return n;
}

size_t aip_tp_queue_free_current(aip_transport *t)
{
    if (!t->cur)
        return 0;
    free_frame(t->cur);
    t->cur = NULL;
    return 1;
}

int aip_transport_send(aip_transport *t, uint64_t link, aip_buf *b, bool binary)
{
    /* The node lives in the buffer's headroom, so the headroom must be exactly ours. */
    if (b->headroom != aip_transport_headroom() || !b->data)
        return AIP_E_INVAL;
    size_t len = b->len;
    aip_mutex_lock(&t->qlock);
    if (atomic_load_explicit(&t->stopping, memory_order_relaxed)) {
        aip_mutex_unlock(&t->qlock);
        return AIP_E_SHUTDOWN;
    }
    if (!link || link != t->qlink) {
        aip_mutex_unlock(&t->qlock);
        return AIP_E_CONN_LOST;
    }
    if ((t->cfg.max_queue_frames && t->qframes >= t->cfg.max_queue_frames) ||
        (t->cfg.max_queue_bytes && t->qbytes + len > t->cfg.max_queue_bytes)) {
        aip_mutex_unlock(&t->qlock);
        stat_add(&t->st_full, 1);
        return AIP_E_FULL;
    }
    frame *f = (frame *)aip_buf_steal(b);
    f->next = NULL;
    f->link = link;
    f->len = len;
    f->off = 0;
    f->binary = binary;
    if (t->qtail)
        t->qtail->next = f;
    else
        t->qhead = f;
    t->qtail = f;
    t->qframes++;
    t->qbytes += len;
    aip_mutex_unlock(&t->qlock);
    /* one wake per service round, not one per frame: the service thread clears the flag
     * before it looks at the queue, so a frame queued after that look wakes it again */
    if (!atomic_exchange(&t->wake_pending, true))
        lws_cancel_service(t->ctx);
    return 0;
}

size_t aip_transport_queue_room(aip_transport *t)
{
    if (!t->cfg.max_queue_bytes)
        return SIZE_MAX;
    aip_mutex_lock(&t->qlock);
    size_t used = t->qbytes;
    aip_mutex_unlock(&t->qlock);
    return used < t->cfg.max_queue_bytes ? t->cfg.max_queue_bytes - used : 0;
}

/* ---- writing (service thread) ---------------------------------------------------------------- */

/* One lws_write per WRITEABLE: a whole frame, or one fragment of a large one. Returns -1 to
 * close the link. */
static int write_one(aip_transport *t, struct lws *wsi)
{
    if (!t->cur) {
        aip_mutex_lock(&t->qlock);
        while (t->qhead) {
            frame *f = t->qhead;
            t->qhead = f->next;
            if (!t->qhead)
                t->qtail = NULL;
            t->qframes--;
            t->qbytes -= f->len;
            if (f->link == t->link) {
                t->cur = f;
                break;
            }
            free_frame(f);
            stat_add(&t->st_dropped, 1);
        }
        aip_mutex_unlock(&t->qlock);
    }
    frame *f = t->cur;
    if (!f)
        return 0;
    size_t chunk = f->len - f->off;
    if (chunk > TX_FRAGMENT)
        chunk = TX_FRAGMENT;
    bool start = f->off == 0, end = f->off + chunk == f->len;
    int flags = lws_write_ws_flags(f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, start, end);
    /* LWS_PRE bytes before the fragment are free: the node area, or already-sent payload. */
    int n = lws_write(wsi, frame_payload(f) + f->off, chunk, (enum lws_write_protocol)flags);
    if (n < (int)chunk) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "write failed on %s", t->u.redacted);
        return -1;
    }
    f->off += chunk;
    stat_add(&t->st_bytes_out, chunk);
    if (end) {
        stat_add(&t->st_frames_out, 1);
        free_frame(f);
        t->cur = NULL;
    }
    aip_mutex_lock(&t->qlock);
    bool more = t->cur || t->qhead;
    aip_mutex_unlock(&t->qlock);
    if (more)
        lws_callback_on_writable(wsi);
    return 0;
}

/* Up to WRITE_BURST frames per WRITEABLE while lws takes them without buffering a partial
 * write (lws_partial_buffered(), the check lws documents for several writes in one WRITEABLE),
 * instead of one poll() round per frame (docs/performance.md). Not lws_send_pipe_choked(): it
 * is a poll() of its own per frame. A burst of several frames is corked (TCP_CORK), so the
 * kernel sends full segments rather than one per frame; the uncork at its end sends the rest at
 * once. A single frame is not corked: two more system calls would be all it gained. */
int aip_tp_write_burst(aip_transport *t, struct lws *wsi)
{
    aip_mutex_lock(&t->qlock);
    bool several = t->qframes + (t->cur != NULL) > 1;
    aip_mutex_unlock(&t->qlock);
    int fd = several ? (int)lws_get_socket_fd(wsi) : -1;
    int on = 1, off = 0;
    if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0)
        fd = -1; /* not TCP (or refused): write uncorked */
    int rc = 0;
    for (int i = 0; i < WRITE_BURST; i++) {
        if (write_one(t, wsi)) {
            rc = -1;
            break;
        }
        if (t->closing || t->kill_requested || lws_partial_buffered(wsi))
            break;
        aip_mutex_lock(&t->qlock);
        bool more = t->cur || t->qhead;
        aip_mutex_unlock(&t->qlock);
        if (!more)
            break;
    }
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
    return rc;
}
