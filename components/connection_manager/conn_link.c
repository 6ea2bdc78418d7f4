/* SPDX-License-Identifier: MIT */
/*
 * The ConnectionManager's link side (the struct and locking: aip/internal/conn_int.h):
 * registration, heartbeat and liveness, driven by the transport's events on its service
 * thread, and the messages the server sends of its own accord.
 *
 * Registration: when a WebSocket opens (ev_open) the register message goes out and the
 * registration timer starts; the server's heartbeat answer registers the link (registered():
 * (link, enc) published under the lock, so requests may use it), an error frame refuses it,
 * and no answer in register_timeout_ms drops it. A refusal is logged once with the link's
 * end; one for a lasting reason stands (aip_conn_get_refusal) until a link opens again.
 *
 * Heartbeat and liveness: a heartbeat every heartbeat_ms while registered; any frame heard
 * counts as life, and a link silent for 3 intervals is dropped (on_heartbeat_timer). Links
 * that keep ending after about the same short time are named once (link_lifetime_ended).
 *
 * The end of a link (ev_close) withdraws the snapshot under the lock and then fails every
 * pending request: the sweep of the argument in conn_request.c.
 */
#include "aip/common.h"
#include "aip/conn.h"
#include "aip/internal/conn_int.h"
#include "aip/internal/jscan.h"
#include "aip/internal/link_error.h"

#include <stdio.h>
#include <string.h>

#define EXTENSIONS "[\"correlated_errors\",\"live_device_info\"]"

/* ---- state events (service thread) ----------------------------------------------------------- */

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

/* ---- registration ------------------------------------------------------------------------- */

int aip_conn_wait_registered(aip_conn *c, int64_t timeout_ms)
{
    if (!c)
        return AIP_E_INVAL;
    /* inside the gate: a destroy that starts while we wait wakes us and waits for us to leave */
    int rc = aip_conn_gate_enter(c);
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
    aip_conn_gate_leave(c);
    return rc;
}

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
void aip_conn_refuse_registration(aip_conn *c, const char *text)
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

/* ---- what the server sends of its own accord (service thread) --------------------------- */

static void reply_error(aip_conn *c, const char *text)
{
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_ERROR, AIP_STATUS_ERROR);
    r.error = (char *)(uintptr_t)text;
    if (c->cur_link && !c->registering)
        aip_conn_send_raw(c, c->cur_link, c->link_enc, &r);
}

/* Answers a command nobody can run: one failure Result per action (docs/protocol.md §3.4: a device
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
    aip_conn_send_raw(c, c->cur_link, c->link_enc, &r);
    aip_free(res);
}

static void h_command(void *user, aip_msg *m)
{
    aip_conn *c = user;
    if (!m->response_id) {
        /* a batch nobody can answer (docs/protocol.md §3.4): count it, log it, say so */
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
        int rc = aip_conn_send_raw(c, c->cur_link, c->link_enc, &r);
        if (rc)
            aip_log(AIP_LOG_WARN, LOG_COMP, "the answer to malformed command %s was not sent: %s",
                    e->response_id, aip_strerror(rc));
        return;
    }
    char why[260];
    snprintf(why, sizeof why, "malformed frame: %s", e->reason);
    reply_error(c, why);
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
    int rc = aip_conn_send_raw(c, link, c->link_enc, &m);
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
    /* the sweep (conn_request.c's argument): once `registered` is cleared under the lock no
     * request can enter the table for this link, and aip_conn_fail_all below fails every one
     * that did */
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
    aip_conn_fail_all(c, AIP_E_CONN_LOST, why);
    aip_conn_reschedule_deadline(c);
    bool lasting = aip_link_error_is_final(err);
    set_refused(c, lasting ? err : 0, why);
    if (lasting)
        log_refusal(c, why);
    else /* the fast backoff bounds how often; a transient refusal is still worth a warning */
        aip_log(c->refusal_err == AIP_E_REMOTE || c->refusal_err == AIP_E_TIMEOUT ? AIP_LOG_WARN
                                                                                  : AIP_LOG_INFO,
                LOG_COMP, "%s", why);
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
    aip_conn_reschedule_deadline(user);
}

/* ---- timers (service thread) ------------------------------------------------------------- */

void aip_conn_on_register_timeout(void *user)
{
    aip_conn *c = user;
    if (!c->registering)
        return;
    snprintf(c->refusal, sizeof c->refusal, "no registration answer within %u ms",
             c->cfg.register_timeout_ms);
    c->refusal_err = AIP_E_TIMEOUT;
    stat_inc(c, S_REGISTRATION_FAILURES);
    c->registering = false; /* logged once, at warn, by ev_close as the link's end */
    aip_transport_mark_failed(c->tr);
    aip_transport_drop(c->tr, 1006, "registration timeout");
}

/* Runs at each heartbeat and, when sooner, at the moment the link will have been silent for
 * 3 intervals: a dead link is found 3 intervals after the last frame heard, not at the first
 * heartbeat tick after that (up to one interval later). */
void aip_conn_on_heartbeat_timer(void *user)
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
        aip_conn_send_raw(c, c->cur_link, c->link_enc, &m);
        c->next_hb_ns = aip_add_sat(now, hb);
    }
    uint64_t next = c->next_hb_ns < dead_at ? c->next_hb_ns : dead_at;
    aip_timer_schedule(c->t_heartbeat, (next - now) / 1000 + 1);
}

/* ---- registration metadata (creation) ---------------------------------------------------- */

/* The registration metadata: the caller's object plus "aip_extensions" (and the constellation
 * marker), validated. */
int aip_conn_build_metadata(aip_conn *c, const char *user_md)
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

/* ---- wiring --------------------------------------------------------------------------------- */

void aip_conn_link_wire(aip_conn *c, aip_transport_events *ev)
{
    aip_processor_on(&c->proc, AIP_MSG_HEARTBEAT, h_heartbeat, c);
    aip_processor_on(&c->proc, AIP_MSG_COMMAND, h_command, c);
    aip_processor_on(&c->proc, AIP_MSG_DEVICE_INFO_REQUEST, h_device_info_request, c);
    aip_processor_on(&c->proc, AIP_MSG_TASK, h_task, c);
    aip_processor_on_malformed(&c->proc, h_malformed, c);
    ev->on_open = ev_open;
    ev->on_frame = ev_frame;
    ev->on_close = ev_close;
    ev->on_backoff = ev_backoff;
    ev->on_wake = ev_wake;
}
