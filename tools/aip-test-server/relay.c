/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: the relay — UFO's server semantics on the AIP WebSocket (docs/protocol.md §3):
 * registration, identity pinning and the other role checks ("Roles" below), heartbeats, device
 * info (cache / live, answers delayed by --reply-jitter-ms), disconnect handling, [ext]
 * correlated errors. Tasks are in tasks.c.
 *
 * relay_frame() takes a whole message from a session (callback.c hands it over), decodes it
 * and dispatches it to a handle_*() function. Everything the relay holds about a session (its
 * tasks, live device-info queries, delayed answers) is dropped in relay_forget() when the
 * session closes. A live query asked through the HTTP API is answered through the live_done
 * completion the HTTP side registered: the relay never calls http.c.
 *
 * Calls tasks.c, session.c, session_queue.c, events.c and json_out.c (server.h shows the
 * order).
 */
#include "relay.h"

#include <aip/internal/jscan.h>
#include <cjson/cJSON.h>

#include <stdio.h>
#include <string.h>

#define LOG             "server"
#define LIVE_TIMEOUT_US (2 * 1000 * 1000)

/* A device-info answer held back by --reply-jitter-ms. */
typedef struct delayed {
    lws_sorted_usec_list_t sul;
    session *s;
    aip_msg m;
    struct delayed *next;
} delayed;

/* A live device-info query: asked by a constellation (requester) or through the HTTP API
 * (requester NULL: answered through done). */
struct live_req {
    lws_sorted_usec_list_t sul;
    char q2[40];
    char *request_id;
    session *requester, *device;
    live_done done;
};

static delayed *g_delayed; /* all pending delayed answers */

/* ---- helpers ------------------------------------------------------------------------------ */

/* The raw text of a top-level member of a JSON object (NULL when absent or null). */
struct member_find {
    const char *key;
    const char *p;
    size_t n;
};

static void member_visit(void *user, const aip_jscan_path *path, const char *v, size_t n)
{
    struct member_find *f = user;
    if (path->depth == 1 && path->key[0] &&
        aip_jscan_key_eq(path->key[0], path->key_len[0], f->key)) {
        f->p = v;
        f->n = n;
    }
}

static char *json_member_text(const char *obj, const char *key)
{
    if (!obj)
        return NULL;
    struct member_find f = {key, NULL, 0};
    aip_jscan s = {0};
    s.visit = member_visit;
    s.user = &f;
    s.visit_depth = 1;
    if (aip_jscan_run(&s, obj, strlen(obj)) || !f.p || (f.n == 4 && memcmp(f.p, "null", 4) == 0))
        return NULL;
    return aip_strndup(f.p, f.n);
}

/* ---- delayed answers (--reply-jitter-ms) ------------------------------------------------- */

static void delayed_fire(lws_sorted_usec_list_t *sul)
{
    delayed *d = lws_container_of(sul, delayed, sul);
    for (delayed **pp = &g_delayed; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    send_msg_as(d->s, &d->m, true); /* only device-info answers are delayed */
    aip_msg_clear(&d->m);
    aip_free(d);
}

/* Sends a device-info answer now, or after a random delay when --reply-jitter-ms is set (takes
 * m's contents). Its fields are all checked already (answer_info), so it is not validated
 * again: a cached system_info is a text the decoder validated at registration. */
static void send_jittered(session *s, aip_msg *m)
{
    if (!g_srv.cfg.reply_jitter_ms) {
        send_msg_as(s, m, true);
        aip_msg_clear(m);
        return;
    }
    delayed *d = aip_calloc(1, sizeof *d);
    if (!d) {
        aip_msg_clear(m);
        return;
    }
    d->s = s;
    d->m = *m;
    memset(m, 0, sizeof *m);
    d->next = g_delayed;
    g_delayed = d;
    uint64_t us = aip_random_below(NULL, (uint64_t)g_srv.cfg.reply_jitter_ms * 1000 + 1);
    lws_sul_schedule(g_srv.ctx, 0, &d->sul, delayed_fire, (lws_usec_t)us);
}

/* ---- device info ---------------------------------------------------------------------------- */

/* Takes si (or NULL) as the device's system_info, with its size and bounded summary. */
static void set_system_info(session *s, char *si)
{
    aip_free(s->system_info);
    aip_free(s->si_summary);
    s->system_info = si;
    s->si_bytes = si ? strlen(si) : 0;
    s->si_summary = si_summary_make(si, s->si_bytes);
}

static void answer_info(session *to, const char *request_id, const char *system_info,
                        const char *device_id)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_DEVICE_INFO_RESPONSE, AIP_STATUS_OK);
    aip_msg_set_str(&m.response_id, request_id);
    if (system_info) {
        /* a copy without re-validating: the text was cut from a registration (or answer)
         * the decoder validated, or is "{}"; send_jittered() encodes it unchecked too */
        m.result = aip_strdup(system_info);
    } else {
        /* UFO's answer for an unknown device: ok, with the error inside the result */
        aip_buf b;
        aip_buf_init(&b, 0);
        char text[300];
        snprintf(text, sizeof text, "Device '%s' is not connected", device_id);
        aip_buf_puts(&b, "{\"error\":");
        aip_json_put_string(&b, text, strlen(text));
        aip_buf_putc(&b, '}');
        aip_buf_nul(&b);
        aip_msg_set_json(&m.result, (const char *)b.data, AIP_JSON_ANY);
        aip_buf_free(&b);
    }
    send_jittered(to, &m);
}

void live_free(live_req *l)
{
    lws_sul_cancel(&l->sul);
    strmap_del(&g_srv.live, l->q2);
    aip_free(l->request_id);
    aip_free(l);
}

/* Answers a live query (to its constellation or its HTTP client) and frees it. */
static void live_answer(live_req *l, const char *info, const char *source)
{
    if (!info)
        info = "{}";
    if (!l->requester) {
        if (l->done.fn)
            l->done.fn(l->done.user, l->device->client_id, source, info);
    } else {
        answer_info(l->requester, l->request_id, info, l->device->client_id);
    }
    live_free(l);
}

static void live_timeout(lws_sorted_usec_list_t *sul)
{
    live_req *l = lws_container_of(sul, live_req, sul);
    aip_log(AIP_LOG_INFO, LOG, "%s did not answer a live device-info query in time: cached info",
            l->device->client_id);
    live_answer(l, l->device->system_info, "cache");
}

live_req *live_start(session *dev, session *requester, const char *request_id, live_done done)
{
    live_req *l = aip_calloc(1, sizeof *l);
    if (!l || (request_id && !(l->request_id = aip_strdup(request_id)))) {
        aip_free(l);
        return NULL;
    }
    new_id(l->q2);
    l->requester = requester;
    l->device = dev;
    l->done = done;
    if (strmap_put(&g_srv.live, l->q2, l)) {
        aip_free(l->request_id);
        aip_free(l);
        return NULL;
    }
    lws_sul_schedule(g_srv.ctx, 0, &l->sul, live_timeout, LIVE_TIMEOUT_US);
    send_simple(dev, AIP_MSG_DEVICE_INFO_REQUEST, AIP_STATUS_OK, NULL, l->q2, NULL);
    ev_emit("device_info", dev, NULL, "live device-info query sent (asked by %s)",
            requester ? requester->client_id : "the HTTP API");
    return l;
}

static void handle_info_request(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_CONSTELLATION) { /* Roles, rule 4 */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "device_info_request is only for constellation clients");
        return;
    }
    const char *target = m->target_id ? m->target_id : s->target_id;
    if (!m->request_id) {
        reject_request(s, m, REJECT_ERROR, "device_info_request requires request_id");
        return;
    }
    session *dev = target ? strmap_get(&g_srv.clients, target) : NULL;
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        answer_info(s, m->request_id, NULL, target ? target : "(none)");
        return;
    }
    bool live = g_srv.cfg.di_mode == DI_LIVE || (g_srv.cfg.di_mode == DI_AUTO && dev->ext_live);
    if (!live) {
        answer_info(s, m->request_id, dev->system_info ? dev->system_info : "{}", target);
        return;
    }
    live_start(dev, s, m->request_id, (live_done){NULL, NULL});
}

static void handle_info_response(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_DEVICE) { /* Roles, rule 4 */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "device_info_response is only for device clients");
        return;
    }
    live_req *asked = m->prev_response_id ? strmap_get(&g_srv.live, m->prev_response_id) : NULL;
    if (asked && asked->device != s) { /* Roles, rule 4: another device was asked */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "device_info_response for a query sent to another device");
        return;
    }
    if (m->metadata) /* the fresh system_info: keep it */
        set_system_info(s, aip_strdup(m->metadata));
    if (!asked)
        return; /* an unsolicited update, or late: the cache already answered */
    ev_emit("device_info", s, NULL, "answered a live device-info query");
    live_answer(asked, s->system_info, "live");
}

/* ---- registration ------------------------------------------------------------------------ */

static bool has_extension(const char *metadata, const char *name)
{
    char *ext = json_member_text(metadata, "aip_extensions");
    bool yes = false;
    if (ext) {
        cJSON *a = cJSON_Parse(ext);
        for (cJSON *e = a ? a->child : NULL; e && !yes; e = e->next)
            yes = cJSON_IsString(e) && strcmp(e->valuestring, name) == 0;
        cJSON_Delete(a);
        aip_free(ext);
    }
    return yes;
}

/* Refuses a registration: the error, an event, then a close once the error is out (code 1000;
 * 1013 "try again later" when the server is full). */
static void refuse_registration(session *s, const aip_msg *m, uint64_t *counter, const char *why,
                                int code)
{
    (*counter)++;
    reject_request(s, m, REJECT_ERROR, "%s", why);
    aip_buf e;
    aip_buf_init(&e, 0);
    aip_buf_puts(&e, "\"reason\":");
    put_str(&e, why);
    aip_buf_puts(&e, ",\"address\":");
    put_str(&e, s->addr);
    aip_buf_nul(&e);
    ev_emit("refused", NULL, e.data ? (const char *)e.data : NULL,
            "registration of %.100s refused: %s", m->client_id ? m->client_id : "(no client_id)",
            why);
    aip_buf_free(&e);
    close_session(s, code, "registration refused");
}

/* Is a refuse_next_registration fault armed for this id? Consumes a one-shot one. */
static bool refusal_armed(const char *client_id)
{
    int64_t *until = strmap_get(&g_srv.refuse, client_id);
    if (!until)
        return false;
    if (*until == 0) { /* once */
        aip_free(strmap_del(&g_srv.refuse, client_id));
        return true;
    }
    if (*until > now_us())
        return true;
    aip_free(strmap_del(&g_srv.refuse, client_id));
    return false;
}

/* The checks a registration passes, in order; true when it was refused (and answered). */
static bool register_refused(session *s, aip_msg *m)
{
    char why[300];
    if (!m->client_id) {
        refuse_registration(s, m, &g_srv.m.refused_invalid, "registration requires client_id",
                            1000);
        return true;
    }
    if (refusal_armed(m->client_id)) {
        refuse_registration(s, m, &g_srv.m.refused_fault,
                            "registration refused (fault injected: refuse_next_registration)",
                            1000);
        return true;
    }
    session *old = strmap_get(&g_srv.clients, m->client_id);
    if (old && old->stall_until_us > now_us()) {
        /* the device gave up on a link we stalled on purpose: the new one replaces it */
        aip_log(AIP_LOG_INFO, LOG,
                "%s registers again while its old link is stalled: "
                "closing the old one",
                m->client_id);
        strmap_del(&g_srv.clients, old->client_id);
        old->registered = false;
        old->stall_until_us = 0;
        lws_rx_flow_control(old->wsi, 1);
        close_session_ex(old, 1001, "replaced by a new connection", false);
        old = NULL;
    }
    if (old) {
        snprintf(why, sizeof why,
                 "client_id '%s' is already registered; duplicate registrations are not allowed",
                 m->client_id);
        refuse_registration(s, m, &g_srv.m.refused_duplicate, why, 1000);
        return true;
    }
    if (g_srv.clients.count >= g_srv.cfg.max_clients) {
        snprintf(why, sizeof why,
                 "server full: %zu clients are registered, the most this server takes "
                 "(aip-test-server --max-clients)",
                 g_srv.clients.count);
        refuse_registration(s, m, &g_srv.m.refused_full, why, 1013);
        return true;
    }
    if (m->client_type == AIP_CLIENT_CONSTELLATION && m->target_id) {
        session *dev = strmap_get(&g_srv.clients, m->target_id);
        if (!dev || dev->type != AIP_CLIENT_DEVICE) {
            snprintf(why, sizeof why, NOT_CONNECTED, m->target_id);
            refuse_registration(s, m, &g_srv.m.refused_target, why, 1000);
            return true;
        }
    }
    return false;
}

static void handle_register(session *s, aip_msg *m)
{
    if (register_refused(s, m))
        return;
    s->client_id = aip_strdup(m->client_id);
    s->type = m->client_type;
    s->target_id = m->target_id ? aip_strdup(m->target_id) : NULL;
    s->ext_correlated = has_extension(m->metadata, "correlated_errors");
    s->ext_live = has_extension(m->metadata, "live_device_info");
    if (s->type == AIP_CLIENT_DEVICE)
        set_system_info(s, json_member_text(m->metadata, "system_info"));
    if (!s->client_id || strmap_put(&g_srv.clients, s->client_id, s)) {
        close_session(s, 1011, "out of memory");
        return;
    }
    s->registered = true;
    s->last_heartbeat_us = now_us();
    lws_sul_cancel(&s->sul_register);
    aip_log(AIP_LOG_INFO, LOG, "registered %s %s from %s (%s%s%s)", aip_client_type_str(s->type),
            s->client_id, s->addr, s->proto ? "protobuf" : "JSON",
            s->ext_correlated ? ", correlated_errors" : "",
            s->ext_live ? ", live_device_info" : "");
    g_srv.m.registrations++;
    send_simple(s, AIP_MSG_HEARTBEAT, AIP_STATUS_OK, NULL, NULL, NULL);
    aip_buf e;
    aip_buf_init(&e, 0);
    aip_buf_puts(&e, "\"client\":");
    put_client(&e, s, false);
    aip_buf_nul(&e);
    ev_emit("registered", s, e.data ? (const char *)e.data : NULL, "%s registered from %s (%s)",
            aip_client_type_str(s->type), s->addr, s->proto ? "protobuf" : "JSON");
    aip_buf_free(&e);
}

/* ---- Roles ---------------------------------------------------------------------------------
 *
 * Who may send what, checked before a frame has any effect; a refused frame is answered with an
 * `error` naming the request ([ext] correlation), counted in aip_errors_total{kind=
 * "unauthorized"}, and changes nothing. Each rule against what UFO's server does (read in
 * microsoft/UFO ufo/server/ws/handler.py and services/client_connection_manager.py, the
 * version at commit 338d447); where UFO checks nothing, we are stricter on purpose and say so:
 *
 *  1. Identity pinning: every frame after the registration carries the client_id (and
 *     client_type) it registered with — "client_id mismatch: this connection is registered as
 *     'X'" / "client_type mismatch: ...". UFO takes client_id and client_type from each frame
 *     (handle_message), so there a frame could speak for another client; docs/protocol.md §3.1
 *     pins them, with Galaxy's client_type "device" heartbeats from a constellation acked.
 *  2. Tasks: a constellation's task runs on its target_id; a device's task runs on the device
 *     itself (UFO's handle_task_request uses the sender's own task protocol for a device and
 *     ignores target_id): a device naming another device is refused, "a device's task runs on
 *     the device itself: ...". Results (task_end) go only to the requester, and a copy to the
 *     device that ran it (UFO's send_result callback does the same).
 *  3. Session ownership: a session belongs to the client that started it; a task naming a
 *     running session_id of another client is refused, "session_id 'S' is owned by another
 *     client" (docs/protocol.md §3.3; UFO's get_or_create_session would join the running session).
 *     A constellation's sessions are cancelled when it leaves (UFO: disconnect()).
 *  4. Device info: only a constellation may ask (device_info_request), about any device, as in
 *     UFO, whose answer for a device that is not there is ok with result {"error": ...};
 *     a device asking gets "device_info_request is only for constellation clients"
 *     (docs/protocol.md §3.5; UFO's handler answers any client). Only a device may answer
 *     (device_info_response), for a query sent to it or unsolicited about itself; UFO logs
 *     the frame and ignores it ("not implemented").
 *  5. Command results: only the device a command was sent to may answer it, for that
 *     command's session. UFO's handle_command_result routes by the frame's session_id and
 *     prev_response_id with no check of the sender.
 *  6. task_end from a client: accepted (and ignored: the server ends its own tasks) only from
 *     the device a running session of that id runs on, else "task_end for session 'S' refused:
 *     ...". UFO's handler has no case for a client task_end and answers "Unknown message
 *     type: task_end".
 */

static void handle_msg(session *s, aip_msg *m)
{
    if (!s->registered) {
        if (m->type == AIP_MSG_REGISTER)
            handle_register(s, m);
        else
            close_session(s, 1008, "register first"); /* UFO closes without a word */
        return;
    }
    /* Roles, rule 1: identity is pinned to the connection (docs/protocol.md §3.1) */
    if (!m->client_id || strcmp(m->client_id, s->client_id) != 0) {
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "client_id mismatch: this connection is registered as '%s'", s->client_id);
        return;
    }
    if (m->client_type != s->type) {
        if (m->type == AIP_MSG_HEARTBEAT && s->type == AIP_CLIENT_CONSTELLATION) {
            if (!s->galaxy_noted) { /* Galaxy's heartbeats say "device": ack, note once */
                s->galaxy_noted = true;
                aip_log(AIP_LOG_INFO, LOG,
                        "%s sends heartbeats with client_type \"device\" "
                        "(Galaxy); acknowledged",
                        s->client_id);
            }
        } else {
            reject_request(s, m, REJECT_UNAUTHORIZED,
                           "client_type mismatch: this connection is registered as %s",
                           aip_client_type_str(s->type));
            return;
        }
    }
    switch (m->type) {
    case AIP_MSG_HEARTBEAT:
        s->last_heartbeat_us = now_us();
        if (s->mute_until_us > s->last_heartbeat_us) {
            ev_emit("heartbeat", s, "\"muted\":true", "heartbeat (not acknowledged: muted)");
            break;
        }
        send_simple(s, AIP_MSG_HEARTBEAT, AIP_STATUS_OK, NULL, NULL, NULL);
        ev_emit("heartbeat", s, NULL, "heartbeat");
        break;
    case AIP_MSG_REGISTER: reject_request(s, m, REJECT_ERROR, "already registered"); break;
    case AIP_MSG_TASK: handle_task(s, m); break;
    case AIP_MSG_COMMAND_RESULTS: handle_results(s, m); break;
    case AIP_MSG_DEVICE_INFO_REQUEST: handle_info_request(s, m); break;
    case AIP_MSG_DEVICE_INFO_RESPONSE: handle_info_response(s, m); break;
    case AIP_MSG_TASK_END: handle_client_task_end(s, m); break;
    case AIP_MSG_ERROR:
        aip_log(AIP_LOG_INFO, LOG, "error from %s: %s", s->client_id,
                m->error ? m->error : "(no text)");
        g_srv.m.errors_received++;
        ev_emit("error", s, NULL, "error from the client: %.400s",
                m->error ? m->error : "(no text)");
        send_simple(s, AIP_MSG_ERROR, AIP_STATUS_ERROR, m->session_id, m->request_id,
                    m->error ? m->error : "error"); /* UFO echoes it */
        break;
    default: break;
    }
}

void relay_frame(session *s, const uint8_t *data, size_t len, bool binary)
{
    s->frames_in++;
    if (s->kind == SK_EVENTS)
        return; /* viewers only listen */
    if (s->kind == SK_ECHO) {
        g_srv.m.echo_frames++;
        uint8_t *buf = aip_malloc(LWS_PRE + (len ? len : 1));
        if (!buf)
            return;
        memcpy(buf + LWS_PRE, data, len);
        session_enqueue(s, buf, len, binary, false);
        return;
    }
    aip_msg m;
    aip_decode_error e;
    int rc = aip_decode(binary ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON, AIP_ENVELOPE_CLIENT, data,
                        len, &g_srv.limits, &m, &e);
    if (rc) {
        if (!s->registered) {
            close_session(s, 1008, "malformed registration"); /* as UFO: no word */
            return;
        }
        aip_log(AIP_LOG_INFO, LOG, "malformed frame from %s: %s", s->client_id, e.reason);
        g_srv.m.malformed++;
        ev_emit("error", s, NULL, "malformed frame: %s", e.reason);
        aip_msg req;
        aip_msg_init(&req, AIP_ENVELOPE_CLIENT, AIP_MSG_ERROR, AIP_STATUS_ERROR);
        req.session_id = e.session_id[0] ? e.session_id : NULL;
        req.request_id = e.request_id[0] ? e.request_id : NULL;
        reject_request(s, &req, REJECT_ERROR, "malformed frame: %s", e.reason);
        return;
    }
    g_srv.m.frames_in[m.type][binary]++;
    handle_msg(s, &m);
    aip_msg_clear(&m);
}

/* ---- a session leaves ------------------------------------------------------------------- */

void relay_forget(session *s)
{
    tasks_forget(s);
    const char *k;
    void *v;
    for (size_t i = 0; strmap_next(&g_srv.live, &i, &k, &v);) {
        live_req *l = v;
        if (l->requester == s)
            live_free(l);
        else if (l->device == s)
            live_answer(l, s->system_info, "cache");
    }
    for (delayed **pp = &g_delayed; *pp;) {
        delayed *d = *pp;
        if (d->s == s) {
            *pp = d->next;
            lws_sul_cancel(&d->sul);
            aip_msg_clear(&d->m);
            aip_free(d);
        } else {
            pp = &d->next;
        }
    }
}
