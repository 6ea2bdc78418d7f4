/*
 * The ConnectionManager (see aip/conn.h for the thread contract).
 *
 * Locking: one mutex, `lock`, guards the pending table, the link snapshot (registered, link,
 * enc), the state and the shutdown gate. It is never held while a future completes, a user
 * callback runs, a frame is encoded, or libwebsockets is called: futures are taken out of the
 * table under the lock and completed after it is dropped.
 *
 * Why a request cannot be lost or sent on the wrong link: a caller snapshots (link, enc),
 * encodes, then under the lock checks the link is still the registered one and inserts its
 * pending entry; the service thread's disconnect handling clears `registered` and takes every
 * entry under the same lock. So an entry either exists before the sweep (and is failed by it)
 * or is refused (the caller sees the link gone). The frame is queued for that link only; the
 * transport drops it if the link has ended, and by then the sweep has failed its future.
 */
#include "aip/conn.h"
#include "aip/common.h"
#include "aip/internal/backoff.h"
#include "aip/internal/conn_out.h"
#include "aip/internal/jscan.h"
#include "aip/internal/link_error.h"
#include "aip/internal/pending.h"
#include "aip/internal/processor.h"
#include "aip/internal/transport.h"
#include "aip/port.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define LOG_COMP   "conn"
#define EXTENSIONS "[\"correlated_errors\",\"live_device_info\"]"

enum {
    S_FRAMES_SENT,
    S_REQUESTS,
    S_COMPLETED,
    S_REMOTE_ERRORS,
    S_TIMEOUTS,
    S_CONN_LOST,
    S_LATE,
    S_UNMATCHED,
    S_ERRORS_UNCORRELATED,
    S_REGISTRATIONS,
    S_REGISTRATION_FAILURES,
    S_RECONNECTS,
    S_LIVENESS_DROPS,
    S_QUEUE_FULL,
    S_TOO_LARGE,
    S_COUNT
};

struct aip_conn {
    aip_conn_config cfg; /* strings point at the owned copies below */
    char *url, *client_id, *target_id, *token, *ca_file, *cert_file, *key_file, *thread_name;
    char *reg_metadata; /* the registration metadata, with our extensions */
    aip_transport *tr;
    aip_processor proc;
    aip_timer *t_heartbeat, *t_register, *t_deadline;

    aip_mutex lock;
    aip_cond cond;
    bool gate_closed;
    int inflight;
    aip_pending pending;
    bool registered;
    uint64_t link;    /* the registered link, 0 when none */
    aip_encoding enc; /* its encoding */
    aip_conn_state state;
    int refused;           /* the standing refusal: AIP_E_AUTH, AIP_E_REFUSED or 0 */
    char refused_why[300]; /* its text */

    /* service thread only */
    uint64_t cur_link;
    aip_encoding link_enc;
    bool registering;
    uint64_t last_rx_ns;
    uint64_t next_hb_ns; /* when the next heartbeat is due */
    uint64_t deadline_scheduled;
    bool warned_fallback;
    char refusal[200];
    int refusal_err;          /* the code of `refusal` */
    char last_refusal[300];   /* the last refusal logged at warn (until registered) */
    uint64_t refusal_repeats; /* the same one again since, logged at debug */
    uint64_t malformed_logged;
    uint64_t oversized_unlogged; /* skipped messages not yet reported in the log */
    uint64_t reg_since_ns;       /* when the current link registered, 0 when it has not */
    aip_link_streak streak;      /* registered links in a row that lasted about the same */
    uint64_t oversized_logged_ns;
    bool oversized_logged;

    _Atomic uint64_t st[S_COUNT];
};

static void stat_inc(aip_conn *c, int s)
{
    atomic_fetch_add_explicit(&c->st[s], 1, memory_order_relaxed);
}

const char *aip_conn_state_str(aip_conn_state s)
{
    switch (s) {
    case AIP_CONN_CONNECTING: return "connecting";
    case AIP_CONN_REGISTERING: return "registering";
    case AIP_CONN_REGISTERED: return "registered";
    case AIP_CONN_DISCONNECTED: return "disconnected";
    case AIP_CONN_BACKOFF: return "backoff";
    case AIP_CONN_STOPPED: return "stopped";
    default: return "unknown";
    }
}

void aip_conn_config_init(aip_conn_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->client_type = AIP_CLIENT_DEVICE;
    c->encoding = AIP_ENCODING_JSON;
    c->heartbeat_ms = 30000;
    c->register_timeout_ms = 10000;
    c->device_info_timeout_ms = 10000;
    c->task_timeout_ms = 1000000;
    c->ping_s = 20;
    c->hangup_s = 30;
    c->max_frame_in = 1u << 20;
    c->max_pending = 65536;
    c->max_queued_bytes = 8u << 20;
    c->backoff_base_ms = 1000;
    c->backoff_cap_ms = 60000;
    c->stable_ms = 30000;
}

/* ---- state ----------------------------------------------------------------------------- */

static void emit_err(aip_conn *c, aip_conn_state s, const char *detail, int code, uint32_t delay,
                     uint32_t attempt, bool proto, int err)
{
    aip_mutex_lock(&c->lock);
    c->state = s;
    aip_cond_broadcast(&c->cond);
    aip_mutex_unlock(&c->lock);
    if (c->cfg.on_state) {
        aip_conn_event ev = {s, detail ? detail : "", code, delay, attempt, proto, err};
        c->cfg.on_state(c, &ev, c->cfg.user);
    }
}

static void emit(aip_conn *c, aip_conn_state s, const char *detail, int code, uint32_t delay,
                 uint32_t attempt, bool proto)
{
    emit_err(c, s, detail, code, delay, attempt, proto, 0);
}

/* The standing refusal (service thread sets it, any thread reads it): set when an attempt ends
 * refused for a lasting reason, cleared when a WebSocket opens or the link registers. */
static void set_refused(aip_conn *c, int err, const char *why)
{
    aip_mutex_lock(&c->lock);
    c->refused = err;
    snprintf(c->refused_why, sizeof c->refused_why, "%s", err && why ? why : "");
    aip_cond_broadcast(&c->cond);
    aip_mutex_unlock(&c->lock);
}

int aip_conn_get_refusal(aip_conn *c, char *why, size_t n)
{
    if (why && n)
        why[0] = 0;
    if (!c)
        return AIP_E_INVAL;
    aip_mutex_lock(&c->lock);
    int err = c->refused;
    if (why && n)
        snprintf(why, n, "%s", c->refused_why);
    aip_mutex_unlock(&c->lock);
    return err;
}

aip_conn_state aip_conn_get_state(aip_conn *c)
{
    if (!c)
        return AIP_CONN_STOPPED;
    aip_mutex_lock(&c->lock);
    aip_conn_state s = c->state;
    aip_mutex_unlock(&c->lock);
    return s;
}

aip_encoding aip_conn_encoding(aip_conn *c)
{
    if (!c)
        return AIP_ENCODING_JSON;
    aip_mutex_lock(&c->lock);
    aip_encoding e = c->registered ? c->enc : AIP_ENCODING_JSON;
    aip_mutex_unlock(&c->lock);
    return e;
}

const char *aip_conn_client_id(const aip_conn *c)
{
    return c ? c->client_id : NULL;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* Fills the identity fields a client message must carry on every frame (PROTOCOL.md §3.1),
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
static int send_raw(aip_conn *c, uint64_t link, aip_encoding enc, const aip_msg *m)
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

/* ---- the shutdown gate ------------------------------------------------------------------ */

static int gate_enter(aip_conn *c)
{
    aip_mutex_lock(&c->lock);
    if (c->gate_closed) {
        aip_mutex_unlock(&c->lock);
        return AIP_E_SHUTDOWN;
    }
    c->inflight++;
    aip_mutex_unlock(&c->lock);
    return 0;
}

static void gate_leave(aip_conn *c)
{
    aip_mutex_lock(&c->lock);
    if (--c->inflight == 0 && c->gate_closed)
        aip_cond_broadcast(&c->cond);
    aip_mutex_unlock(&c->lock);
}

int aip_conn_send_on(aip_conn *c, uint64_t link, const aip_msg *m)
{
    if (!c || !m)
        return AIP_E_INVAL;
    int rc = gate_enter(c);
    if (rc)
        return rc;
    aip_mutex_lock(&c->lock);
    bool ok = c->registered && (link == 0 || link == c->link);
    uint64_t l = c->link;
    aip_encoding enc = c->enc;
    aip_mutex_unlock(&c->lock);
    if (!ok)
        rc = link ? AIP_E_CONN_LOST : AIP_E_NOT_CONNECTED;
    else
        rc = send_raw(c, l, enc, m);
    gate_leave(c);
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
    int rc = gate_enter(c);
    if (rc)
        return rc;
    aip_mutex_lock(&c->lock);
    bool ok = c->registered && (link == 0 || link == c->link);
    aip_encoding enc = c->enc;
    aip_mutex_unlock(&c->lock);
    aip_buf b;
    if (!ok)
        rc = link ? AIP_E_CONN_LOST : AIP_E_NOT_CONNECTED;
    else if (!(rc = encode_for(c, m, enc, &b))) {
        *size = b.len;
        aip_buf_free(&b);
    }
    gate_leave(c);
    return rc;
}

/* ---- requests ----------------------------------------------------------------------------- */

static int submit(aip_conn *c, aip_pending_kind kind, const char *id, const aip_msg *m,
                  const aip_request_opts *o, uint32_t default_timeout_ms, aip_future **out)
{
    *out = NULL;
    int rc = gate_enter(c);
    if (rc)
        return rc;
    int64_t timeout = o && o->timeout_ms > 0 ? o->timeout_ms : (int64_t)default_timeout_ms;
    uint64_t deadline = aip_deadline_ms(aip_now_ns(NULL), timeout);
    bool wait = o && o->wait_for_link;
    aip_future *f = aip_future_create();
    if (!f) {
        gate_leave(c);
        return AIP_E_NOMEM;
    }
    if (o && o->callback)
        aip_future_set_callback(f, o->callback, o->user);

    for (;;) {
        aip_mutex_lock(&c->lock);
        while (!c->registered && !c->gate_closed) {
            if (!wait) {
                rc = AIP_E_NOT_CONNECTED;
                break;
            }
            if (aip_cond_wait_until(&c->cond, &c->lock, deadline) == AIP_E_TIMEOUT &&
                !c->registered) {
                rc = AIP_E_TIMEOUT;
                break;
            }
        }
        if (!rc && c->gate_closed)
            rc = AIP_E_SHUTDOWN;
        uint64_t link = c->link;
        aip_encoding enc = c->enc;
        aip_mutex_unlock(&c->lock);
        if (rc)
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
    gate_leave(c);
    return 0;
fail:
    aip_future_release(f);
    gate_leave(c);
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

int aip_conn_wait_registered(aip_conn *c, int64_t timeout_ms)
{
    if (!c)
        return AIP_E_INVAL;
    /* inside the gate: a destroy that starts while we wait wakes us and waits for us to leave */
    int rc = gate_enter(c);
    if (rc)
        return rc;
    uint64_t deadline = aip_deadline_ms(aip_now_ns(NULL), timeout_ms);
    aip_mutex_lock(&c->lock);
    while (!c->registered) {
        if (c->gate_closed) {
            rc = AIP_E_SHUTDOWN;
            break;
        }
        if (c->refused) {
            rc = c->refused;
            break;
        }
        if (timeout_ms < 0)
            aip_cond_wait(&c->cond, &c->lock);
        else if (aip_cond_wait_until(&c->cond, &c->lock, deadline) == AIP_E_TIMEOUT &&
                 !c->registered) {
            rc = AIP_E_TIMEOUT;
            break;
        }
    }
    aip_mutex_unlock(&c->lock);
    gate_leave(c);
    return rc;
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

static void reschedule_deadline(aip_conn *c)
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
    if (aip_future_complete(e->f, status, m, error) == 0)
        stat_inc(c, status ? S_REMOTE_ERRORS : S_COMPLETED);
    else
        stat_inc(c, S_LATE); /* cancelled by its caller meanwhile */
    aip_pending_entry_free(e);
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
static void fail_all(aip_conn *c, int status, const char *why)
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

static void on_deadline(void *user)
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
    reschedule_deadline(c);
}

/* ---- inbound handlers (service thread, via the MessageProcessor) -------------------------- */

static void on_heartbeat_timer(void *user);

/* ---- link lifetimes (service thread): backoff progress, repeated short links ------------ */

/* A registered link is progress: its end does not grow the backoff (aip/internal/backoff.h). */
static void link_registered(aip_conn *c)
{
    c->reg_since_ns = aip_now_ns(NULL);
    aip_transport_mark_registered(c->tr);
}

/* A link that registered has ended: links that keep ending after about the same short time
 * are named once, at warn, with the likely cause (an idle timeout shorter than the heartbeat
 * on the way: each such link otherwise shows only "1006: connection lost"). */
static void link_lifetime_ended(aip_conn *c)
{
    if (!c->reg_since_ns)
        return;
    uint64_t lived_ms = (aip_now_ns(NULL) - c->reg_since_ns) / 1000000u;
    c->reg_since_ns = 0;
    if (!aip_link_streak_add(&c->streak, lived_ms))
        return;
    double s = (double)c->streak.ref_ms / 1000.0, hb = (double)c->cfg.heartbeat_ms / 1000.0;
    if (c->streak.ref_ms < c->cfg.heartbeat_ms)
        aip_log(AIP_LOG_WARN, LOG_COMP,
                "link lasted %.1f s, %u times in a row: an idle timeout between you and the "
                "server shorter than the heartbeat (%.0f s)? raise it (nginx: "
                "proxy_read_timeout) or lower the heartbeat (--heartbeat)",
                s, c->streak.count, hb);
    else
        aip_log(AIP_LOG_WARN, LOG_COMP,
                "link lasted %.1f s, %u times in a row: does something between you and the "
                "server (a proxy, a load balancer) end links after that long?",
                s, c->streak.count);
}

static void registered(aip_conn *c)
{
    c->registering = false;
    aip_timer_cancel(c->t_register);
    aip_mutex_lock(&c->lock);
    c->registered = true;
    c->link = c->cur_link;
    c->enc = c->link_enc;
    aip_mutex_unlock(&c->lock);
    stat_inc(c, S_REGISTRATIONS);
    c->last_refusal[0] = 0;
    c->refusal_repeats = 0;
    set_refused(c, 0, NULL);
    aip_log(AIP_LOG_INFO, LOG_COMP, "registered as %s (%s) with %s, %s frames", c->client_id,
            aip_client_type_str(c->cfg.client_type), aip_transport_url_redacted(c->tr),
            c->link_enc == AIP_ENCODING_PROTO ? "protobuf" : "JSON");
    emit(c, AIP_CONN_REGISTERED, "registered", 0, 0, 0, c->link_enc == AIP_ENCODING_PROTO);
    c->next_hb_ns = aip_deadline_ms(aip_now_ns(NULL), c->cfg.heartbeat_ms);
    aip_timer_schedule(c->t_heartbeat, (uint64_t)c->cfg.heartbeat_ms * 1000);
    link_registered(c);
}

/* Logged once, with the link's end (ev_close). A refusal for a lasting reason (a duplicate
 * client_id, a target that is not connected: aip_refusal_is_final) is retried on the slow
 * schedule and reported as AIP_E_REFUSED; any other keeps the fast backoff. */
static void refuse_registration(aip_conn *c, const char *text)
{
    stat_inc(c, S_REGISTRATION_FAILURES);
    snprintf(c->refusal, sizeof c->refusal, "registration refused: %s", text ? text : "");
    c->registering = false;
    aip_timer_cancel(c->t_register);
    if (aip_refusal_is_final(text)) {
        c->refusal_err = AIP_E_REFUSED;
        aip_transport_mark_refused(c->tr);
    } else {
        c->refusal_err = AIP_E_REMOTE;
        aip_transport_mark_failed(c->tr);
    }
    aip_transport_close(c->tr, 1000, "registration refused");
}

static void h_heartbeat(void *user, aip_msg *m)
{
    aip_conn *c = user;
    (void)m;
    aip_transport_alive(c->tr);
    if (c->registering)
        registered(c);
}

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
        refuse_registration(c, text);
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

static void reply_error(aip_conn *c, const char *text)
{
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_ERROR, AIP_STATUS_ERROR);
    r.error = (char *)(uintptr_t)text;
    if (c->cur_link && !c->registering)
        send_raw(c, c->cur_link, c->link_enc, &r);
}

/* Answers a command nobody can run: one failure Result per action (PROTOCOL.md §3.4: a device
 * must always answer). */
static void answer_command_unrunnable(aip_conn *c, const aip_msg *m, const char *why)
{
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, m->status);
    r.prev_response_id = m->response_id;
    r.session_id = m->session_id;
    r.has_action_results = true;
    aip_result *res = m->n_actions ? aip_calloc(m->n_actions, sizeof *res) : NULL;
    if (m->n_actions && !res)
        return;
    for (size_t i = 0; i < m->n_actions; i++) {
        res[i].status = AIP_RESULT_FAILURE;
        res[i].error = (char *)(uintptr_t)(m->actions[i].invalid ? m->actions[i].invalid : why);
        res[i].call_id = m->actions[i].call_id;
    }
    r.action_results = res;
    r.n_action_results = m->n_actions;
    send_raw(c, c->cur_link, c->link_enc, &r);
    aip_free(res);
}

static void h_command(void *user, aip_msg *m)
{
    aip_conn *c = user;
    if (!m->response_id) {
        /* a batch nobody can answer (PROTOCOL.md §3.4): count it, log it, say so */
        atomic_fetch_add_explicit(&c->proc.malformed, 1, memory_order_relaxed);
        aip_log(AIP_LOG_WARN, LOG_COMP,
                "a command without response_id (session %s) cannot be "
                "answered",
                m->session_id ? m->session_id : "none");
        reply_error(c, "malformed frame: command without response_id cannot be answered");
        return;
    }
    if (c->cfg.on_command)
        c->cfg.on_command(c, m, c->cur_link, c->cfg.user);
    else
        answer_command_unrunnable(c, m, "no executor on this client");
}

static void h_device_info_request(void *user, aip_msg *m)
{
    aip_conn *c = user;
    if (c->cfg.on_device_info_request)
        c->cfg.on_device_info_request(c, m, c->cur_link, c->cfg.user);
    else
        reply_error(c, "device_info_request is not supported by this client");
}

static void h_task(void *user, aip_msg *m)
{
    aip_conn *c = user;
    if (c->cfg.on_task)
        c->cfg.on_task(c, m, c->cur_link, c->cfg.user);
    else
        reply_error(c, "server tasks are not supported by this client");
}

static void h_malformed(void *user, const aip_decode_error *e, bool binary)
{
    aip_conn *c = user;
    uint64_t n = ++c->malformed_logged;
    if (n <= 10 || n % 1000 == 0)
        aip_log(AIP_LOG_WARN, LOG_COMP, "malformed %s frame #%llu from the server: %s",
                binary ? "binary" : "text", (unsigned long long)n, e->reason);
    if (c->registering)
        return;
    if (e->type == AIP_MSG_COMMAND && e->response_id[0]) {
        /* still answer the batch: the server would otherwise wait for ever */
        aip_msg r;
        aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, AIP_STATUS_FAILED);
        char why[260];
        snprintf(why, sizeof why, "malformed command: %s", e->reason);
        r.prev_response_id = (char *)(uintptr_t)e->response_id;
        r.session_id = e->session_id[0] ? (char *)(uintptr_t)e->session_id : NULL;
        r.error = why;
        r.has_action_results = true;
        int rc = send_raw(c, c->cur_link, c->link_enc, &r);
        if (rc)
            aip_log(AIP_LOG_WARN, LOG_COMP, "the answer to malformed command %s was not sent: %s",
                    e->response_id, aip_strerror(rc));
        return;
    }
    char why[260];
    snprintf(why, sizeof why, "malformed frame: %s", e->reason);
    reply_error(c, why);
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
        if (id[0]) { /* a device must answer every batch (PROTOCOL.md 3.4) */
            aip_msg r;
            aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, AIP_STATUS_FAILED);
            r.prev_response_id = ids.response_id;
            r.session_id = ids.session_id[0] ? ids.session_id : NULL;
            r.error = why;
            r.has_action_results = true;
            send_raw(c, c->cur_link, c->link_enc, &r);
            outcome = "skipped; answered as a failed batch";
        } else {
            /* The one case where size still costs the link: a batch the server waits for that
             * cannot be answered (its response_id comes after its actions). Closing makes the
             * server fail its task now (PROTOCOL.md: device gone) instead of at its timeout. */
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

/* ---- transport events (service thread) --------------------------------------------------- */

static void ev_open(void *user, uint64_t link, bool proto)
{
    aip_conn *c = user;
    c->cur_link = link;
    c->refusal[0] = 0;
    c->refusal_err = 0;
    set_refused(c, 0, NULL); /* the upgrade passed: a refused token is no longer standing */
    c->link_enc =
        (c->cfg.encoding == AIP_ENCODING_PROTO && proto) ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
    if (c->cfg.encoding == AIP_ENCODING_PROTO && !proto && !c->warned_fallback) {
        c->warned_fallback = true;
        aip_log(AIP_LOG_INFO, LOG_COMP,
                "the server selected no subprotocol: falling back to JSON frames");
    }
    aip_log(AIP_LOG_INFO, LOG_COMP, "connected to %s", aip_transport_url_redacted(c->tr));
    c->registering = true;
    c->last_rx_ns = aip_now_ns(NULL);
    emit(c, AIP_CONN_REGISTERING, "connected", 0, 0, 0, false);

    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_REGISTER, AIP_STATUS_OK);
    m.target_id = c->target_id;
    m.metadata = c->reg_metadata;
    int rc = send_raw(c, link, c->link_enc, &m);
    if (rc) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "cannot send the registration: %s", aip_strerror(rc));
        aip_transport_mark_failed(c->tr);
        aip_transport_drop(c->tr, 1006, "registration not sent");
        return;
    }
    aip_timer_schedule(c->t_register, (uint64_t)c->cfg.register_timeout_ms * 1000);
}

static void ev_frame(void *user, uint64_t link, const uint8_t *data, size_t len, bool binary)
{
    aip_conn *c = user;
    (void)link;
    c->last_rx_ns = aip_now_ns(NULL);
    aip_processor_feed(&c->proc, data, len, binary);
}

/* A refusal for a lasting reason: one warn line per distinct one, repeats at debug. */
static void log_refusal(aip_conn *c, const char *why)
{
    if (strcmp(c->last_refusal, why) == 0) {
        c->refusal_repeats++;
        aip_log(AIP_LOG_DEBUG, LOG_COMP, "%s (again: %llu times since the first)", why,
                (unsigned long long)c->refusal_repeats);
        return;
    }
    snprintf(c->last_refusal, sizeof c->last_refusal, "%s", why);
    c->refusal_repeats = 0;
    uint32_t cap = c->cfg.backoff_cap_ms;
    aip_log(AIP_LOG_WARN, LOG_COMP,
            "%s; retrying about every %u %s while refused (repeats logged at debug)", why,
            cap >= 10000 ? cap / 1000 : cap, cap >= 10000 ? "s" : "ms");
}

static void ev_close(void *user, uint64_t link, int code, const char *reason, bool was_open,
                     int err)
{
    aip_conn *c = user;
    (void)link;
    aip_timer_cancel(c->t_register);
    aip_timer_cancel(c->t_heartbeat);
    bool was_registering = c->registering;
    c->registering = false;
    c->cur_link = 0;
    link_lifetime_ended(c);
    aip_mutex_lock(&c->lock);
    c->registered = false;
    c->link = 0;
    aip_mutex_unlock(&c->lock);
    char why[300];
    if (c->refusal[0]) {
        snprintf(why, sizeof why, "%s", c->refusal);
        err = c->refusal_err;
    } else if (was_open)
        snprintf(why, sizeof why, "link closed (%d%s%s)", code, reason[0] ? ": " : "", reason);
    else
        snprintf(why, sizeof why, "cannot connect to %s: %s", aip_transport_url_redacted(c->tr),
                 reason);
    if (was_registering && !c->refusal[0] && was_open) {
        stat_inc(c, S_REGISTRATION_FAILURES);
        aip_transport_mark_failed(c->tr);
    }
    fail_all(c, AIP_E_CONN_LOST, why);
    reschedule_deadline(c);
    bool lasting = aip_link_error_is_final(err);
    set_refused(c, lasting ? err : 0, why);
    if (lasting)
        log_refusal(c, why);
    else /* the fast backoff bounds how often; a transient refusal is still worth a warning */
        aip_log(c->refusal_err == AIP_E_REMOTE ? AIP_LOG_WARN : AIP_LOG_INFO, LOG_COMP, "%s", why);
    emit_err(c, AIP_CONN_DISCONNECTED, why, was_open ? code : 1006, 0, 0, false, err);
}

static void ev_backoff(void *user, uint32_t delay_ms, uint32_t attempt)
{
    aip_conn *c = user;
    stat_inc(c, S_RECONNECTS);
    aip_log(AIP_LOG_INFO, LOG_COMP, "reconnecting in %u ms (attempt %u)", delay_ms, attempt);
    emit(c, AIP_CONN_BACKOFF, "backing off", 0, delay_ms, attempt, false);
}

static void ev_wake(void *user)
{
    reschedule_deadline(user);
}

/* ---- timers (service thread) ------------------------------------------------------------- */

static void on_register_timeout(void *user)
{
    aip_conn *c = user;
    if (!c->registering)
        return;
    snprintf(c->refusal, sizeof c->refusal, "no registration answer within %u ms",
             c->cfg.register_timeout_ms);
    c->refusal_err = AIP_E_TIMEOUT;
    stat_inc(c, S_REGISTRATION_FAILURES);
    aip_log(AIP_LOG_WARN, LOG_COMP, "%s", c->refusal);
    c->registering = false;
    aip_transport_mark_failed(c->tr);
    aip_transport_drop(c->tr, 1006, "registration timeout");
}

/* Runs at each heartbeat and, when sooner, at the moment the link will have been silent for
 * 3 intervals: a dead link is found 3 intervals after the last frame heard, not at the first
 * heartbeat tick after that (up to one interval later). */
static void on_heartbeat_timer(void *user)
{
    aip_conn *c = user;
    if (!c->cur_link || c->registering)
        return;
    uint64_t now = aip_now_ns(NULL);
    uint64_t hb = (uint64_t)c->cfg.heartbeat_ms * 1000000u;
    uint64_t dead_at = aip_add_sat(c->last_rx_ns, 3 * hb);
    if (now >= dead_at) {
        stat_inc(c, S_LIVENESS_DROPS);
        aip_log(AIP_LOG_WARN, LOG_COMP, "nothing heard for %llu ms: dropping the link",
                (unsigned long long)((now - c->last_rx_ns) / 1000000u));
        aip_transport_drop(c->tr, 1006, "liveness timeout");
        return;
    }
    if (now >= c->next_hb_ns) {
        aip_msg m;
        aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
        send_raw(c, c->cur_link, c->link_enc, &m);
        c->next_hb_ns = aip_add_sat(now, hb);
    }
    uint64_t next = c->next_hb_ns < dead_at ? c->next_hb_ns : dead_at;
    aip_timer_schedule(c->t_heartbeat, (next - now) / 1000 + 1);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

/* The registration metadata: the caller's object plus "aip_extensions" (and the constellation
 * marker), validated. */
static int build_metadata(aip_conn *c, const char *user_md)
{
    const char *md = user_md ? user_md : "{}";
    size_t n = strlen(md);
    char why[160];
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    if (aip_json_validate(md, n, AIP_JSON_OBJECT, &lim, why, sizeof why)) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "registration metadata is not a JSON object: %s", why);
        return AIP_E_CONFIG;
    }
    aip_json_trim(&md, &n);
    bool empty = true;
    for (size_t i = 1; i + 1 < n; i++)
        if (md[i] != ' ' && md[i] != '\t' && md[i] != '\n' && md[i] != '\r')
            empty = false;
    bool add_type = c->cfg.client_type == AIP_CLIENT_CONSTELLATION && !strstr(md, "\"type\"");
    const char *type_kv = add_type ? "\"type\":\"constellation_client\"," : "";
    size_t cap = n + strlen(type_kv) + sizeof EXTENSIONS + 32;
    char *out = aip_malloc(cap);
    if (!out)
        return AIP_E_NOMEM;
    /* {<type>"aip_extensions":[...]<, rest of the caller's members>} */
    snprintf(out, cap, "{%s\"aip_extensions\":%s%s%.*s", type_kv, EXTENSIONS, empty ? "}" : ",",
             empty ? 0 : (int)(n - 1), md + 1);
    if (aip_json_validate(out, strlen(out), AIP_JSON_OBJECT, &lim, why, sizeof why)) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "registration metadata: %s", why);
        aip_free(out);
        return AIP_E_CONFIG;
    }
    c->reg_metadata = out;
    return 0;
}

static char *dup_opt(const char *s)
{
    return s ? aip_strdup(s) : NULL;
}

int aip_conn_create(const aip_conn_config *cfg, aip_conn **out)
{
    if (!out)
        return AIP_E_INVAL;
    *out = NULL;
    if (!cfg || !cfg->url || !cfg->client_id || !cfg->client_id[0] ||
        strlen(cfg->client_id) > AIP_ID_MAX)
        return AIP_E_INVAL;
    aip_conn *c = aip_calloc(1, sizeof *c);
    if (!c)
        return AIP_E_NOMEM;
    c->cfg = *cfg;
    aip_conn_config defaults;
    aip_conn_config_init(&defaults);
#define DEF(f)     \
    if (!c->cfg.f) \
    c->cfg.f = defaults.f
    DEF(heartbeat_ms);
    DEF(register_timeout_ms);
    DEF(device_info_timeout_ms);
    DEF(task_timeout_ms);
    DEF(ping_s);
    DEF(hangup_s);
    DEF(max_frame_in);
    DEF(max_pending);
    DEF(max_queued_bytes);
    DEF(backoff_base_ms);
    DEF(backoff_cap_ms);
    DEF(stable_ms);
#undef DEF
    int rc = AIP_E_NOMEM;
    c->client_id = aip_strdup(cfg->client_id);
    c->target_id = dup_opt(cfg->target_id);
    c->thread_name = aip_strdup(cfg->thread_name ? cfg->thread_name : "aip-service");
    if (!c->client_id || !c->thread_name || (cfg->target_id && !c->target_id))
        goto fail;
    c->cfg.client_id = c->client_id;
    c->cfg.target_id = c->target_id;
    c->cfg.url = NULL; /* never kept: it may carry a token */
    c->cfg.token = NULL;
    if ((rc = build_metadata(c, cfg->metadata_json)))
        goto fail;
    c->cfg.metadata_json = c->reg_metadata;
    rc = AIP_E_NOMEM;
    if (aip_mutex_init(&c->lock) || aip_cond_init(&c->cond) ||
        aip_pending_init(&c->pending, c->cfg.max_pending))
        goto fail_nolock;

    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = c->cfg.max_frame_in;
    aip_processor_init(&c->proc, AIP_ENVELOPE_SERVER, &lim);
    aip_processor_on(&c->proc, AIP_MSG_HEARTBEAT, h_heartbeat, c);
    aip_processor_on(&c->proc, AIP_MSG_TASK_END, h_task_end, c);
    aip_processor_on(&c->proc, AIP_MSG_DEVICE_INFO_RESPONSE, h_device_info_response, c);
    aip_processor_on(&c->proc, AIP_MSG_ERROR, h_error, c);
    aip_processor_on(&c->proc, AIP_MSG_COMMAND, h_command, c);
    aip_processor_on(&c->proc, AIP_MSG_DEVICE_INFO_REQUEST, h_device_info_request, c);
    aip_processor_on(&c->proc, AIP_MSG_TASK, h_task, c);
    aip_processor_on_malformed(&c->proc, h_malformed, c);

    aip_transport_config tc = {0};
    tc.url = cfg->url;
    tc.token = cfg->token;
    tc.token_mode = cfg->token_placement == AIP_AUTH_BEARER ? AIP_TOKEN_BEARER : AIP_TOKEN_QUERY;
    tc.offer_proto = cfg->encoding == AIP_ENCODING_PROTO;
    tc.ca_file = cfg->ca_file;
    tc.cert_file = cfg->cert_file;
    tc.key_file = cfg->key_file;
    tc.tls_insecure = cfg->tls_insecure;
    tc.max_frame_in = c->cfg.max_frame_in;
    tc.max_queue_bytes = c->cfg.max_queued_bytes;
    tc.ping_s = c->cfg.ping_s;
    tc.hangup_s = c->cfg.hangup_s;
    tc.backoff_base_ms = c->cfg.backoff_base_ms;
    tc.backoff_cap_ms = c->cfg.backoff_cap_ms;
    tc.stable_ms = c->cfg.stable_ms;
    tc.random = cfg->random;
    tc.thread_name = c->thread_name;
    aip_transport_events ev = {ev_open, ev_frame, ev_close, ev_backoff, ev_wake, ev_oversized};
    if ((rc = aip_transport_create(&tc, &ev, c, &c->tr)))
        goto fail_pending;
    rc = AIP_E_NOMEM;
    c->t_heartbeat = aip_timer_create(c->tr, on_heartbeat_timer, c);
    c->t_register = aip_timer_create(c->tr, on_register_timeout, c);
    c->t_deadline = aip_timer_create(c->tr, on_deadline, c);
    if (!c->t_heartbeat || !c->t_register || !c->t_deadline)
        goto fail_transport;
    c->state = AIP_CONN_CONNECTING;
    if ((rc = aip_transport_start(c->tr)))
        goto fail_transport;
    *out = c;
    return 0;

fail_transport:
    aip_timer_destroy(c->t_heartbeat);
    aip_timer_destroy(c->t_register);
    aip_timer_destroy(c->t_deadline);
    aip_transport_destroy(c->tr);
fail_pending:
    aip_pending_destroy(&c->pending);
    aip_cond_destroy(&c->cond);
    aip_mutex_destroy(&c->lock);
fail_nolock:
fail:
    aip_free(c->client_id);
    aip_free(c->target_id);
    aip_free(c->thread_name);
    aip_free(c->reg_metadata);
    aip_free(c);
    return rc;
}

void aip_conn_destroy_ex(aip_conn *c, int code, const char *reason, uint32_t grace_ms)
{
    if (!c)
        return;
    /* 1. close the gate and wait for the calls already inside */
    aip_mutex_lock(&c->lock);
    c->gate_closed = true;
    aip_cond_broadcast(&c->cond);
    while (c->inflight > 0)
        aip_cond_wait(&c->cond, &c->lock);
    c->registered = false;
    aip_mutex_unlock(&c->lock);
    /* 2. fail what is pending */
    fail_all(c, AIP_E_SHUTDOWN, "the connection is shutting down");
    /* 3. close the link and stop the service thread */
    aip_transport_stop(c->tr, code ? code : 1000, reason ? reason : "client shutdown", grace_ms);
    if (c->cfg.on_state) {
        aip_conn_event ev = {AIP_CONN_STOPPED, "stopped", 0, 0, 0, false, 0};
        c->cfg.on_state(c, &ev, c->cfg.user);
    }
    /* 4. free: timers before the transport (they live in its lws context) */
    aip_timer_destroy(c->t_heartbeat);
    aip_timer_destroy(c->t_register);
    aip_timer_destroy(c->t_deadline);
    aip_transport_destroy(c->tr);
    aip_pending_destroy(&c->pending);
    aip_cond_destroy(&c->cond);
    aip_mutex_destroy(&c->lock);
    aip_free(c->client_id);
    aip_free(c->target_id);
    aip_free(c->thread_name);
    aip_free(c->reg_metadata);
    aip_free(c);
}

void aip_conn_destroy(aip_conn *c)
{
    aip_conn_destroy_ex(c, 1000, "client shutdown", 2000);
}

int aip_conn_reload_tls(aip_conn *c, const char *ca_file, const char *cert_file,
                        const char *key_file)
{
    if (!c)
        return AIP_E_INVAL;
    int rc = gate_enter(c);
    if (rc)
        return rc;
    rc = aip_transport_reload_tls(c->tr, ca_file, cert_file, key_file);
    gate_leave(c);
    return rc;
}

void aip_conn_get_stats(aip_conn *c, aip_conn_stats *s)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!c)
        return;
    aip_transport_stats ts;
    aip_transport_get_stats(c->tr, &ts);
    s->frames_sent = ts.frames_out;
    s->bytes_sent = ts.bytes_out;
    s->frames_received = ts.frames_in;
    s->bytes_received = ts.bytes_in;
    s->dropped_frames = ts.dropped_stale;
#define LD(i) atomic_load_explicit(&c->st[i], memory_order_relaxed)
    s->requests = LD(S_REQUESTS);
    s->completed = LD(S_COMPLETED);
    s->remote_errors = LD(S_REMOTE_ERRORS);
    s->timeouts = LD(S_TIMEOUTS);
    s->conn_lost = LD(S_CONN_LOST);
    s->late = LD(S_LATE);
    s->unmatched = LD(S_UNMATCHED);
    s->errors_uncorrelated = LD(S_ERRORS_UNCORRELATED);
    s->registrations = LD(S_REGISTRATIONS);
    s->registration_failures = LD(S_REGISTRATION_FAILURES);
    s->reconnects = LD(S_RECONNECTS);
    s->liveness_drops = LD(S_LIVENESS_DROPS);
    s->queue_full = LD(S_QUEUE_FULL);
    s->too_large = LD(S_TOO_LARGE);
#undef LD
    s->oversized = ts.oversized_in;
    s->malformed = atomic_load_explicit(&c->proc.malformed, memory_order_relaxed);
    aip_mutex_lock(&c->lock);
    s->pending = aip_pending_count(&c->pending);
    aip_mutex_unlock(&c->lock);
}
