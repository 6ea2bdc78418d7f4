/* SPDX-License-Identifier: MIT */
/*
 * The ConnectionManager's request side (the struct and locking: aip/internal/conn_int.h):
 * encoding and sending, the requests this client makes (device_info_request, task), the
 * pending table and its completion by answers, errors, deadlines, the disconnect sweep and
 * answers too large to read.
 *
 * Why a request cannot be lost or sent on the wrong link: a caller (submit) snapshots (link,
 * enc), encodes, then under the lock checks the link is still the registered one and inserts
 * its pending entry; the service thread's disconnect handling (ev_close, conn_link.c) clears
 * `registered` under the same lock, then takes every entry (aip_conn_fail_all, below). So an
 * entry either exists before the sweep (and is failed by it) or is refused (the caller sees
 * the link gone). The frame is queued for that link only; the transport drops it if the link
 * has ended, and by then the sweep has failed its future. A frame the transport refuses takes
 * its entry back out; if the sweep took it first, the sweep has answered it.
 */
#include "aip/common.h"
#include "aip/conn.h"
#include "aip/internal/conn_int.h"
#include "aip/internal/conn_out.h"
#include "aip/internal/future_settle.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* ---- sending ------------------------------------------------------------------------------ */

/* Fills the identity fields a client message must carry on every frame (docs/protocol.md §3.1),
 * in a shallow copy that borrows m's pointers. ts must outlive the copy. */
static void stamp(aip_conn *c, const aip_msg *m, aip_msg *tmp, char *ts, size_t tslen)
{
    *tmp = *m;
    tmp->envelope = AIP_ENVELOPE_CLIENT;
    tmp->client_type = c->cfg.client_type;
    if (!tmp->client_id)
        tmp->client_id = c->client_id;
    if (!tmp->timestamp) {
        aip_format_timestamp(aip_wall_us(NULL), ts, tslen);
        tmp->timestamp = ts;
    }
}

static int encode_for(aip_conn *c, const aip_msg *m, aip_encoding enc, aip_buf *b)
{
    aip_buf_init(b, aip_transport_headroom());
    char why[200];
    aip_msg tmp;
    char ts[40];
    stamp(c, m, &tmp, ts, sizeof ts);
    int rc = aip_encode_why(enc, &tmp, b, why, sizeof why);
    if (rc) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "cannot encode a %s message: %s",
                aip_msg_type_str(m->type) ? aip_msg_type_str(m->type) : "?", why);
        aip_buf_free(b);
    }
    return rc;
}

/* Service thread (or any thread that already knows the link): encode and queue. */
int aip_conn_send_raw(aip_conn *c, uint64_t link, aip_encoding enc, const aip_msg *m)
{
    aip_buf b;
    int rc = encode_for(c, m, enc, &b);
    if (rc)
        return rc;
    rc = aip_transport_send(c->tr, link, &b, enc == AIP_ENCODING_PROTO);
    if (rc == AIP_E_FULL)
        stat_inc(c, S_QUEUE_FULL);
    if (!rc)
        stat_inc(c, S_FRAMES_SENT);
    aip_buf_free(&b);
    return rc;
}

/* The registered link and its encoding, if it is `link` (0: whichever is registered): 0, or
 * AIP_E_CONN_LOST (that link is gone) or AIP_E_NOT_CONNECTED (none is registered). */
static int current_link(aip_conn *c, uint64_t link, uint64_t *cur, aip_encoding *enc)
{
    aip_mutex_lock(&c->lock);
    bool ok = c->registered && (link == 0 || link == c->link);
    *cur = c->link;
    *enc = c->enc;
    aip_mutex_unlock(&c->lock);
    return ok ? 0 : link ? AIP_E_CONN_LOST : AIP_E_NOT_CONNECTED;
}

int aip_conn_send_on(aip_conn *c, uint64_t link, const aip_msg *m)
{
    if (!c || !m)
        return AIP_E_INVAL;
    int rc = aip_conn_gate_enter(c);
    if (rc)
        return rc;
    uint64_t l;
    aip_encoding enc;
    if (!(rc = current_link(c, link, &l, &enc)))
        rc = aip_conn_send_raw(c, l, enc, m);
    aip_conn_gate_leave(c);
    return rc;
}

int aip_conn_send(aip_conn *c, const aip_msg *m)
{
    return aip_conn_send_on(c, 0, m);
}

/* ---- outbound limits (aip/internal/conn_out.h) ------------------------------------------- */

size_t aip_conn_max_frame_out(const aip_conn *c)
{
    return c->cfg.max_queued_bytes;
}

size_t aip_conn_queue_room(aip_conn *c)
{
    return aip_transport_queue_room(c->tr);
}

int aip_conn_encoded_size(aip_conn *c, uint64_t link, const aip_msg *m, size_t *size)
{
    int rc = aip_conn_gate_enter(c);
    if (rc)
        return rc;
    uint64_t l;
    aip_encoding enc;
    aip_buf b;
    if (!(rc = current_link(c, link, &l, &enc)) && !(rc = encode_for(c, m, enc, &b))) {
        *size = b.len;
        aip_buf_free(&b);
    }
    aip_conn_gate_leave(c);
    return rc;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* The registered link and its encoding, waiting for one until deadline when wait is set.
 * 0, AIP_E_NOT_CONNECTED (none and no wait), AIP_E_TIMEOUT or AIP_E_SHUTDOWN. */
static int snapshot_link(aip_conn *c, bool wait, uint64_t deadline, uint64_t *link,
                         aip_encoding *enc)
{
    int rc = 0;
    aip_mutex_lock(&c->lock);
    while (!c->registered && !c->gate_closed) {
        if (!wait) {
            rc = AIP_E_NOT_CONNECTED;
            break;
        }
        if (aip_cond_wait_until(&c->cond, &c->lock, deadline) == AIP_E_TIMEOUT && !c->registered) {
            rc = AIP_E_TIMEOUT;
            break;
        }
    }
    if (!rc && c->gate_closed)
        rc = AIP_E_SHUTDOWN;
    *link = c->link;
    *enc = c->enc;
    aip_mutex_unlock(&c->lock);
    return rc;
}

static int submit(aip_conn *c, aip_pending_kind kind, const char *id, const aip_msg *m,
                  const aip_request_opts *o, uint32_t default_timeout_ms, aip_future **out)
{
    *out = NULL;
    int rc = aip_conn_gate_enter(c);
    if (rc)
        return rc;
    int64_t timeout = o && o->timeout_ms > 0 ? o->timeout_ms : (int64_t)default_timeout_ms;
    uint64_t deadline = aip_deadline_ms(aip_now_ns(NULL), timeout);
    bool wait = o && o->wait_for_link;
    aip_future *f = aip_future_create();
    if (!f) {
        aip_conn_gate_leave(c);
        return AIP_E_NOMEM;
    }
    if (o && o->callback)
        aip_future_set_callback(f, o->callback, o->user);

    for (;;) {
        uint64_t link;
        aip_encoding enc;
        if ((rc = snapshot_link(c, wait, deadline, &link, &enc)))
            goto fail;

        aip_buf b;
        if ((rc = encode_for(c, m, enc, &b)))
            goto fail;

        aip_mutex_lock(&c->lock);
        if (!c->registered || c->link != link) {
            aip_mutex_unlock(&c->lock);
            aip_buf_free(&b);
            if (wait)
                continue; /* the link changed while we encoded: try the new one */
            rc = AIP_E_NOT_CONNECTED;
            goto fail;
        }
        rc = aip_pending_insert(&c->pending, kind, id, deadline, link, f);
        aip_mutex_unlock(&c->lock);
        if (rc) {
            aip_buf_free(&b);
            goto fail;
        }
        rc = aip_transport_send(c->tr, link, &b, enc == AIP_ENCODING_PROTO);
        aip_buf_free(&b);
        if (rc) {
            if (rc == AIP_E_FULL)
                stat_inc(c, S_QUEUE_FULL);
            aip_mutex_lock(&c->lock);
            aip_pending_entry *e = aip_pending_take(&c->pending, kind, id);
            aip_mutex_unlock(&c->lock);
            if (!e)
                break; /* the disconnect sweep already failed it: report through the future */
            aip_pending_entry_free(e);
            goto fail;
        }
        stat_inc(c, S_FRAMES_SENT);
        break;
    }
    stat_inc(c, S_REQUESTS);
    *out = f;
    aip_conn_gate_leave(c);
    return 0;
fail:
    aip_future_release(f);
    aip_conn_gate_leave(c);
    return rc;
}

int aip_conn_request_device_info(aip_conn *c, const char *target_id, const aip_request_opts *o,
                                 aip_future **out)
{
    if (!c || !out)
        return AIP_E_INVAL;
    const char *target = target_id ? target_id : c->target_id;
    if (!target)
        return AIP_E_INVAL;
    char gen[40];
    const char *id = o ? o->id : NULL;
    if (id && (!id[0] || strlen(id) > AIP_ID_MAX))
        return AIP_E_INVAL;
    if (!id) {
        aip_uuid4(c->cfg.random, gen, sizeof gen);
        id = gen;
    }
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_DEVICE_INFO_REQUEST, AIP_STATUS_OK);
    m.target_id = (char *)(uintptr_t)target; /* borrowed: m is never cleared */
    m.request_id = (char *)(uintptr_t)id;
    return submit(c, AIP_PENDING_DEVICE_INFO, id, &m, o, c->cfg.device_info_timeout_ms, out);
}

int aip_conn_send_task(aip_conn *c, const aip_task_opts *o, aip_future **out)
{
    if (!c || !o || !o->request || !out)
        return AIP_E_INVAL;
    char name[64], sid[AIP_ID_MAX + 1], uuid[40];
    aip_uuid4(c->cfg.random, uuid, sizeof uuid);
    const char *task_name = o->task_name;
    if (!task_name) {
        snprintf(name, sizeof name, "task-%.8s", uuid);
        task_name = name;
    }
    const char *session_id = o->session_id;
    if (!session_id) {
        int n = snprintf(sid, sizeof sid, "%s@%s", task_name, uuid);
        if (n < 0 || (size_t)n >= sizeof sid)
            return AIP_E_INVAL;
        session_id = sid;
    }
    if (strlen(session_id) > AIP_ID_MAX || strlen(task_name) > AIP_ID_MAX)
        return AIP_E_INVAL;
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_TASK, AIP_STATUS_CONTINUE);
    m.request = (char *)(uintptr_t)o->request;
    m.task_name = (char *)(uintptr_t)task_name;
    m.session_id = (char *)(uintptr_t)session_id;
    m.target_id = (char *)(uintptr_t)(o->target_id ? o->target_id : c->target_id);
    return submit(c, AIP_PENDING_TASK, session_id, &m, &o->req, c->cfg.task_timeout_ms, out);
}

/* ---- completing pending requests (service thread) ----------------------------------------- */

/* Does a device-info result carry UFO's {"error": ...}? Copies the text into why. */
static bool result_is_error(const char *result, char *why, size_t n)
{
    if (!result || result[0] != '{' || !strstr(result, "\"error\""))
        return false;
    cJSON *r = cJSON_Parse(result);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    bool is = e && !cJSON_IsNull(e);
    if (is)
        snprintf(why, n, "%s", cJSON_IsString(e) ? e->valuestring : "device info error");
    cJSON_Delete(r);
    return is;
}

void aip_conn_reschedule_deadline(aip_conn *c)
{
    aip_mutex_lock(&c->lock);
    uint64_t next = aip_pending_next_deadline(&c->pending);
    aip_mutex_unlock(&c->lock);
    if (next == UINT64_MAX) {
        if (c->deadline_scheduled) {
            aip_timer_cancel(c->t_deadline);
            c->deadline_scheduled = 0;
        }
        return;
    }
    if (next == c->deadline_scheduled)
        return;
    uint64_t now = aip_now_ns(NULL);
    aip_timer_schedule(c->t_deadline, next > now ? (next - now) / 1000 + 1 : 1);
    c->deadline_scheduled = next;
}

/* An answer for (kind, id): complete its future with status and the message. */
static void complete_pending(aip_conn *c, aip_pending_kind kind, const char *id, int status,
                             aip_msg *m, const char *error)
{
    if (!id) {
        stat_inc(c, S_UNMATCHED);
        return;
    }
    aip_mutex_lock(&c->lock);
    aip_pending_entry *e = aip_pending_take(&c->pending, kind, id);
    bool recent = !e && aip_pending_was_recent(&c->pending, kind, id);
    aip_mutex_unlock(&c->lock);
    if (!e) {
        stat_inc(c, recent ? S_LATE : S_UNMATCHED);
        aip_log(AIP_LOG_DEBUG, LOG_COMP, "%s answer for %s %s dropped",
                recent ? "late" : "unmatched", kind == AIP_PENDING_TASK ? "task" : "request", id);
        return;
    }
    /* Settled now, notified at the end of the service round (notify_settled; answers arrive
     * only inside a round, through on_frame): the callers of all the answers one socket read
     * carried wake once each, after the read. */
    if (aip_future_settle(e->f, status, m, error) != 0) {
        stat_inc(c, S_LATE); /* cancelled by its caller meanwhile */
        aip_pending_entry_free(e);
        return;
    }
    stat_inc(c, status ? S_REMOTE_ERRORS : S_COMPLETED);
    e->settled_next = NULL;
    *c->settled_tail = e;
    c->settled_tail = &e->settled_next;
}

/* on_round_end: notifies the answers settled during the service round that just ended. */
static void notify_settled(void *user)
{
    aip_conn *c = user;
    aip_pending_entry *e = c->settled_head;
    c->settled_head = NULL;
    c->settled_tail = &c->settled_head;
    while (e) {
        aip_pending_entry *next = e->settled_next;
        aip_future_notify(e->f); /* callbacks may send: they queue, nothing here is reentered */
        aip_pending_entry_free(e);
        e = next;
    }
}

static void fail_entries(aip_conn *c, aip_pending_entry **v, size_t n, int status, const char *why)
{
    for (size_t i = 0; i < n; i++) {
        if (aip_future_complete(v[i]->f, status, NULL, why) == 0) {
            if (status == AIP_E_CONN_LOST)
                stat_inc(c, S_CONN_LOST);
            else if (status == AIP_E_TIMEOUT)
                stat_inc(c, S_TIMEOUTS);
        }
        aip_pending_entry_free(v[i]);
    }
}

/* Takes every pending entry (in batches, the lock dropped while completing) and fails it. */
void aip_conn_fail_all(aip_conn *c, int status, const char *why)
{
    for (;;) {
        aip_pending_entry *v[64];
        aip_mutex_lock(&c->lock);
        size_t n = aip_pending_pop_all(&c->pending, v, 64);
        aip_mutex_unlock(&c->lock);
        if (!n)
            return;
        fail_entries(c, v, n, status, why);
    }
}

void aip_conn_on_deadline(void *user)
{
    aip_conn *c = user;
    c->deadline_scheduled = 0;
    uint64_t now = aip_now_ns(NULL);
    for (;;) {
        aip_pending_entry *v[64];
        aip_mutex_lock(&c->lock);
        size_t n = aip_pending_pop_expired(&c->pending, now, v, 64);
        aip_mutex_unlock(&c->lock);
        if (!n)
            break;
        for (size_t i = 0; i < n; i++) {
            char why[AIP_ID_MAX + 64];
            snprintf(why, sizeof why, "no answer to %s %s in time",
                     v[i]->kind == AIP_PENDING_TASK ? "task" : "device_info_request", v[i]->id);
            fail_entries(c, &v[i], 1, AIP_E_TIMEOUT, why);
        }
    }
    aip_conn_reschedule_deadline(c);
}

/* ---- answers (service thread, via the MessageProcessor) ---------------------------------- */

static void h_task_end(void *user, aip_msg *m)
{
    aip_conn *c = user;
    char *sid = m->session_id ? aip_strdup(m->session_id) : NULL;
    int status = m->status == AIP_STATUS_COMPLETED ? 0 : AIP_E_REMOTE;
    const char *err = status ? (m->error ? m->error : "task failed") : NULL;
    char *err_copy = err ? aip_strdup(err) : NULL;
    complete_pending(c, AIP_PENDING_TASK, sid, status, m, err_copy);
    aip_free(sid);
    aip_free(err_copy);
}

static void h_device_info_response(void *user, aip_msg *m)
{
    aip_conn *c = user;
    char why[200];
    char *id = m->response_id ? aip_strdup(m->response_id) : NULL;
    int status = 0;
    if (m->status == AIP_STATUS_ERROR || m->status == AIP_STATUS_FAILED) {
        status = AIP_E_REMOTE;
        snprintf(why, sizeof why, "%s", m->error ? m->error : "device info failed");
    } else if (result_is_error(m->result, why, sizeof why)) {
        status = AIP_E_REMOTE;
    }
    complete_pending(c, AIP_PENDING_DEVICE_INFO, id, status, m, status ? why : NULL);
    aip_free(id);
}

static void h_error(void *user, aip_msg *m)
{
    aip_conn *c = user;
    const char *text = m->error ? m->error : "error";
    if (c->registering && !m->response_id && !m->session_id) {
        aip_conn_refuse_registration(c, text);
        return;
    }
    aip_pending_kind kind = m->response_id ? AIP_PENDING_DEVICE_INFO : AIP_PENDING_TASK;
    const char *id = m->response_id ? m->response_id : m->session_id;
    if (id) {
        aip_mutex_lock(&c->lock);
        aip_pending_entry *e = aip_pending_take(&c->pending, kind, id);
        if (!e && m->response_id && m->session_id) /* [ext] errors may carry both */
            e = aip_pending_take(&c->pending, AIP_PENDING_TASK, m->session_id);
        aip_mutex_unlock(&c->lock);
        if (e) {
            char *copy = aip_strdup(text);
            if (aip_future_complete(e->f, AIP_E_REMOTE, m, copy) == 0)
                stat_inc(c, S_REMOTE_ERRORS);
            aip_free(copy);
            aip_pending_entry_free(e);
            return;
        }
    }
    stat_inc(c, S_ERRORS_UNCORRELATED);
    aip_log(AIP_LOG_WARN, LOG_COMP, "server error: %s", text);
}

/* ---- inbound messages over max_frame_in (service thread) ---------------------------------- */

#define OVERSIZED_LOG_NS (60ull * 1000000000ull) /* at most one warning a minute */

/* Fails the pending request (kind, id) with AIP_E_TOO_LARGE; returns whether there was one. */
static bool fail_too_large(aip_conn *c, aip_pending_kind kind, const char *id, const char *what)
{
    if (!id[0])
        return false;
    aip_mutex_lock(&c->lock);
    aip_pending_entry *e = aip_pending_take(&c->pending, kind, id);
    aip_mutex_unlock(&c->lock);
    if (!e)
        return false;
    char why[200];
    snprintf(why, sizeof why,
             "the %s answering it is larger than max_frame_in (%zu bytes): skipped unread", what,
             c->cfg.max_frame_in);
    if (aip_future_complete(e->f, AIP_E_TOO_LARGE, NULL, why) == 0)
        stat_inc(c, S_TOO_LARGE);
    else
        stat_inc(c, S_LATE); /* cancelled by its caller meanwhile */
    aip_pending_entry_free(e);
    return true;
}

/* The transport is skipping a message over max_frame_in (the link stays up); prefix is its
 * first bytes. What it answers fails at once with AIP_E_TOO_LARGE when its type and id can be
 * read there (aip_frame_peek); otherwise the request fails at its own deadline. */
static void ev_oversized(void *user, uint64_t link, const uint8_t *prefix, size_t len, bool binary)
{
    aip_conn *c = user;
    (void)link;
    c->last_rx_ns = aip_now_ns(NULL); /* the server is sending a real message */
    aip_frame_ids ids;
    aip_frame_peek(binary ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, prefix,
                   len, &ids);
    const char *id = "";
    const char *outcome = "skipped";
    switch (ids.type) {
    case AIP_MSG_TASK_END:
        id = ids.session_id;
        if (fail_too_large(c, AIP_PENDING_TASK, id, "task_end"))
            outcome = "skipped; its task failed with AIP_E_TOO_LARGE";
        break;
    case AIP_MSG_DEVICE_INFO_RESPONSE:
        id = ids.response_id;
        if (fail_too_large(c, AIP_PENDING_DEVICE_INFO, id, "device_info_response"))
            outcome = "skipped; its request failed with AIP_E_TOO_LARGE";
        break;
    case AIP_MSG_ERROR:
        id = ids.response_id[0] ? ids.response_id : ids.session_id;
        if (fail_too_large(c, AIP_PENDING_DEVICE_INFO, ids.response_id, "error") ||
            fail_too_large(c, AIP_PENDING_TASK, ids.session_id, "error"))
            outcome = "skipped; its request failed with AIP_E_TOO_LARGE";
        break;
    case AIP_MSG_COMMAND: {
        if (c->registering)
            break;
        id = ids.response_id;
        char why[200];
        snprintf(why, sizeof why,
                 "command larger than this device's inbound limit (%zu bytes): not run",
                 c->cfg.max_frame_in);
        if (id[0]) { /* a device must answer every batch (docs/protocol.md 3.4) */
            aip_msg r;
            aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, AIP_STATUS_FAILED);
            r.prev_response_id = ids.response_id;
            r.session_id = ids.session_id[0] ? ids.session_id : NULL;
            r.error = why;
            r.has_action_results = true;
            aip_conn_send_raw(c, c->cur_link, c->link_enc, &r);
            outcome = "skipped; answered as a failed batch";
        } else {
            /* The one case where size still costs the link: a batch the server waits for that
             * cannot be answered (its response_id comes after its actions). Closing makes the
             * server fail its task now (docs/protocol.md: device gone), not at its timeout. */
            aip_log(AIP_LOG_WARN, LOG_COMP,
                    "a command over max_frame_in (%zu bytes) without a readable response_id: "
                    "closing with 1009 so the server fails its task",
                    c->cfg.max_frame_in);
            aip_transport_close(c->tr, 1009, "command too big");
            return;
        }
        break;
    }
    default: break;
    }
    const char *tname = ids.type != AIP_MSG_NONE ? aip_msg_type_str(ids.type) : "message";
    aip_log(AIP_LOG_DEBUG, LOG_COMP, "an inbound %s%s%s over max_frame_in (%zu bytes) was %s",
            tname, id[0] ? " for " : "", id, c->cfg.max_frame_in, outcome);
    c->oversized_unlogged++;
    uint64_t now = aip_now_ns(NULL);
    if (c->oversized_logged && now - c->oversized_logged_ns < OVERSIZED_LOG_NS)
        return;
    aip_log(AIP_LOG_WARN, LOG_COMP,
            "%llu inbound message%s over max_frame_in (%zu bytes) skipped%s, the link kept; "
            "the latest: a %s%s%s, %s",
            (unsigned long long)c->oversized_unlogged, c->oversized_unlogged == 1 ? "" : "s",
            c->cfg.max_frame_in, c->oversized_logged ? " in the last minute or more" : "", tname,
            id[0] ? " for " : "", id, outcome);
    c->oversized_logged = true;
    c->oversized_logged_ns = now;
    c->oversized_unlogged = 0;
}

/* ---- wiring --------------------------------------------------------------------------------- */

void aip_conn_request_wire(aip_conn *c, aip_transport_events *ev)
{
    aip_processor_on(&c->proc, AIP_MSG_TASK_END, h_task_end, c);
    aip_processor_on(&c->proc, AIP_MSG_DEVICE_INFO_RESPONSE, h_device_info_response, c);
    aip_processor_on(&c->proc, AIP_MSG_ERROR, h_error, c);
    ev->on_oversized = ev_oversized;
    ev->on_round_end = notify_settled;
}
