/*
 * aip-test-server: the WebSocket side — sessions, outbound queues, and UFO's server semantics
 * (PROTOCOL.md §3): registration, identity pinning, heartbeats, device info (cache / live),
 * tasks relayed to devices as command batches, disconnect handling, [ext] correlated errors.
 *
 * Everything here runs on the one service thread. A session lives from ESTABLISHED to CLOSED;
 * every structure that points at a session (client registry, tasks, live device-info queries,
 * delayed answers) is cleaned in session_closed(), so nothing outlives its session.
 */
#include "server.h"

#include <aip/internal/encode.h>
#include <aip/internal/jscan.h>
#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LOG             "server"
#define TX_FRAGMENT     (64u * 1024u)
#define NOT_CONNECTED   "Target device '%s' is not connected"
#define LIVE_TIMEOUT_US (2 * 1000 * 1000)

/* ---- tasks, delayed answers, live queries ------------------------------------------------ */

/* One action of a task, as validated by parse_actions(). */
typedef struct action {
    char *tool_name;
    char *params; /* the parameters' JSON text as sent (numbers like 32.0 survive), or NULL */
    aip_tool_type tool_type;
} action;

typedef struct task {
    char *session_id, *task_name, *request;
    session *requester, *device;
    action *actions;  /* every batch's actions, in order (at most --max-actions) */
    size_t *batch_at; /* batch b is actions[batch_at[b] .. batch_at[b + 1]) */
    size_t nactions, nbatches, cur;
    aip_buf results; /* the UFO-shaped task_end result being built */
    bool all_success;
    char cmd_id[40];
    uint64_t cmd_sent_ns; /* for the command round-trip histogram */
} task;

typedef struct delayed {
    lws_sorted_usec_list_t sul;
    session *s;
    aip_msg m;
    struct delayed *next;
} delayed;

/* A live device-info query: asked by a constellation (requester) or by GET
 * /api/device_info/{id} (http). */
typedef struct live_req {
    lws_sorted_usec_list_t sul;
    char q2[40];
    char *request_id;
    session *requester, *device;
    struct lws *http;
} live_req;

static delayed *g_delayed; /* all pending delayed answers */

/* ---- helpers ------------------------------------------------------------------------------ */

static void new_id(char *buf)
{
    aip_uuid4(NULL, buf, 40);
}

int64_t now_us(void)
{
    return aip_wall_us(NULL);
}

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

/* ---- sending ---------------------------------------------------------------------------- */

/* Closes after what is queued has gone out (so a refusal's `error` frame arrives before the
 * close), unless the queue itself is the problem (a slow reader): then at once. */
static void close_session_ex(session *s, int code, const char *reason, bool flush_first)
{
    if (s->closing || !s->wsi)
        return;
    s->closing = true;
    s->close_now = !flush_first;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    lws_callback_on_writable(s->wsi);
}

static void close_session(session *s, int code, const char *reason)
{
    close_session_ex(s, code, reason, true);
}

/* Frees what s has queued, at once: that memory is what the outbound bounds protect. */
static void queue_drop(session *s)
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
static void enqueue_ex(session *s, uint8_t *buf, size_t len, bool binary, bool exempt)
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

static void enqueue(session *s, uint8_t *buf, size_t len, bool binary)
{
    enqueue_ex(s, buf, len, binary, false);
}

/* Encodes a ServerMessage in the session's encoding and queues it. */
/* prevalidated: every field of m was taken from checked values (aip_encode_prevalidated) */
static void send_msg_as(session *s, aip_msg *m, bool prevalidated)
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
    enqueue(s, aip_buf_steal(&b), len, s->proto);
}

static void send_msg(session *s, aip_msg *m)
{
    send_msg_as(s, m, false);
}

void session_enqueue_text(session *s, const char *text, size_t len, bool exempt)
{
    uint8_t *buf = aip_malloc(LWS_PRE + (len ? len : 1));
    if (!buf)
        return;
    memcpy(buf + LWS_PRE, text, len);
    enqueue_ex(s, buf, len, false, exempt);
}

static void send_simple(session *s, aip_msg_type type, aip_status st, const char *session_id,
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

/* An `error` naming the request it answers [ext]: request_id in response_id, session_id. UFO
 * peers ignore the extra keys, so every client gets them. */
static void send_error(session *s, const aip_msg *req, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_error(session *s, const aip_msg *req, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    send_simple(s, AIP_MSG_ERROR, AIP_STATUS_ERROR, req ? req->session_id : NULL,
                req ? req->request_id : NULL, text);
}

/* A frame the role checks refuse (see "Roles" above handle_msg): answered with an error naming
 * the request, counted, logged and shown on the feed; the frame has no other effect. */
static void unauthorized(session *s, const aip_msg *req, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void unauthorized(session *s, const aip_msg *req, const char *fmt, ...)
{
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    g_srv.m.unauthorized++;
    aip_log(AIP_LOG_INFO, LOG, "refused a %s from %s: %s", aip_msg_type_str(req->type),
            s->client_id, text);
    ev_emit("error", s, NULL, "refused %s: %.300s", aip_msg_type_str(req->type), text);
    send_error(s, req, "%s", text);
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

static void live_free(live_req *l)
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
    if (l->http) {
        aip_buf b;
        aip_buf_init(&b, LWS_PRE);
        aip_buf_puts(&b, "{\"client_id\":");
        put_str(&b, l->device->client_id);
        aip_buf_puts(&b, ",\"source\":");
        put_str(&b, source);
        aip_buf_puts(&b, ",\"device_info\":");
        aip_buf_puts(&b, info);
        aip_buf_putc(&b, '}');
        pss *ps = lws_wsi_user(l->http);
        if (ps)
            ps->live = NULL;
        http_answer_later(l->http, HTTP_STATUS_OK, &b);
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

/* Asks dev for fresh device info; the answer goes to requester (request_id) or to http. */
static live_req *live_start(session *dev, session *requester, const char *request_id,
                            struct lws *http)
{
    live_req *l = aip_calloc(1, sizeof *l);
    if (!l || (request_id && !(l->request_id = aip_strdup(request_id)))) {
        aip_free(l);
        return NULL;
    }
    new_id(l->q2);
    l->requester = requester;
    l->device = dev;
    l->http = http;
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

unsigned admin_device_info(struct lws *wsi, const char *client_id, aip_buf *out)
{
    session *dev = strmap_get(&g_srv.clients, client_id);
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        aip_buf_puts(out, "{\"error\":\"no such device\"}");
        return HTTP_STATUS_NOT_FOUND;
    }
    pss *ps = lws_wsi_user(wsi);
    if (!ps || ps->live) {
        aip_buf_puts(out, "{\"error\":\"a query is already waiting on this connection\"}");
        return HTTP_STATUS_CONFLICT;
    }
    bool live = g_srv.cfg.di_mode == DI_LIVE || (g_srv.cfg.di_mode == DI_AUTO && dev->ext_live);
    if (live && (ps->live = live_start(dev, NULL, NULL, wsi)))
        return 0;
    aip_buf_puts(out, "{\"client_id\":");
    put_str(out, dev->client_id);
    aip_buf_puts(out, ",\"source\":\"cache\",\"device_info\":");
    aip_buf_puts(out, dev->system_info ? dev->system_info : "{}");
    aip_buf_putc(out, '}');
    return HTTP_STATUS_OK;
}

void admin_live_cancel(struct live_req *l)
{
    l->http = NULL; /* the HTTP client left: the device's answer, if any, is dropped */
    live_free(l);
}

static void handle_info_request(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_CONSTELLATION) { /* Roles, rule 4 */
        unauthorized(s, m, "device_info_request is only for constellation clients");
        return;
    }
    const char *target = m->target_id ? m->target_id : s->target_id;
    if (!m->request_id) {
        send_error(s, m, "device_info_request requires request_id");
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
    live_start(dev, s, m->request_id, NULL);
}

static void handle_info_response(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_DEVICE) { /* Roles, rule 4 */
        unauthorized(s, m, "device_info_response is only for device clients");
        return;
    }
    live_req *asked = m->prev_response_id ? strmap_get(&g_srv.live, m->prev_response_id) : NULL;
    if (asked && asked->device != s) { /* Roles, rule 4: another device was asked */
        unauthorized(s, m, "device_info_response for a query sent to another device");
        return;
    }
    if (m->metadata) /* the fresh system_info: keep it */
        set_system_info(s, aip_strdup(m->metadata));
    if (!asked)
        return; /* an unsolicited update, or late: the cache already answered */
    ev_emit("device_info", s, NULL, "answered a live device-info query");
    live_answer(asked, s->system_info, "live");
}

/* ---- tasks ---------------------------------------------------------------------------------- */

/* An event about a task: its session_id, then more raw JSON members. */
static void ev_task(const char *kind, const task *t, const char *more, const char *text)
{
    aip_buf x;
    aip_buf_init(&x, 0);
    aip_buf_puts(&x, "\"session_id\":");
    put_str(&x, t->session_id);
    if (more) {
        aip_buf_putc(&x, ',');
        aip_buf_puts(&x, more);
    }
    aip_buf_nul(&x);
    ev_emit(kind, t->device, x.data ? (const char *)x.data : NULL, "%s", text);
    aip_buf_free(&x);
}

static void task_free(task *t)
{
    if (t->cmd_id[0])
        strmap_del(&g_srv.commands, t->cmd_id);
    strmap_del(&g_srv.tasks, t->session_id);
    for (size_t i = 0; t->actions && i < t->nactions; i++) {
        aip_free(t->actions[i].tool_name);
        aip_free(t->actions[i].params);
    }
    aip_free(t->actions);
    aip_free(t->batch_at);
    aip_buf_free(&t->results);
    aip_free(t->session_id);
    aip_free(t->task_name);
    aip_free(t->request);
    aip_free(t);
}

static void finish_task(task *t, bool completed, const char *error)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END,
                 completed ? AIP_STATUS_COMPLETED : AIP_STATUS_FAILED);
    m.session_id = t->session_id;
    m.task_name = t->task_name;
    m.error = (char *)(uintptr_t)error;
    if (t->results.len) {
        aip_buf_putc(&t->results, ']');
        aip_buf_nul(&t->results);
        m.result = (char *)t->results.data;
    }
    if (t->requester)
        send_msg(t->requester, &m);
    if (t->device) { /* UFO sends the device a copy */
        send_msg(t->device, &m);
        if (t->device->commands_in_flight && t->cmd_id[0])
            t->device->commands_in_flight--;
    }
    aip_log(AIP_LOG_INFO, LOG, "task %s %s%s%s", t->session_id, completed ? "completed" : "failed",
            error ? ": " : "", error ? error : "");
    record_finish(t->task_name, t->session_id, completed, m.result, error);
    if (completed)
        g_srv.m.tasks_completed++;
    else
        g_srv.m.tasks_failed++;
    aip_buf x;
    aip_buf_init(&x, 0);
    aip_buf_puts(&x, "\"session_id\":");
    put_str(&x, t->session_id);
    aip_buf_puts(&x, ",\"status\":");
    put_str(&x, completed ? "completed" : "failed");
    aip_buf_puts(&x, ",\"error\":");
    put_str(&x, error);
    aip_buf_nul(&x);
    ev_emit("task_end", t->device, x.data ? (const char *)x.data : NULL, "task %s %s%s%s",
            t->session_id, completed ? "completed" : "failed", error ? ": " : "",
            error ? error : "");
    aip_buf_free(&x);
    task_free(t);
}

/* ---- task requests: {"actions": [Command...]} or {"batches": [[Command...], ...]} ------------
 *
 * Nothing is allocated by a count the client chose before that count is checked: a first scan
 * (no tree) counts the actions of each batch and refuses more than --max-actions-per-batch in
 * one batch or --max-actions in all; the scan's estimate of cJSON's memory bounds the tree;
 * the action table is then sized by the checked total, and the tree is freed before the task
 * runs. */

struct req_shape {
    bool actions_list, batches_list; /* "actions" / "batches" is an array at the root */
    size_t n_actions;                /* elements of "actions" */
    size_t n_batches, n_in_batches;  /* elements of "batches", and of its elements */
    size_t cur_b, cur_n;             /* the batch being counted, and its count so far */
    size_t big_b, big_n;             /* the first batch over --max-actions-per-batch */
};

static void shape_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    (void)n;
    struct req_shape *sh = user;
    if (!p->depth || !p->key[0])
        return;
    bool acts = aip_jscan_key_eq(p->key[0], p->key_len[0], "actions");
    bool bats = !acts && aip_jscan_key_eq(p->key[0], p->key_len[0], "batches");
    if (p->depth == 1) {
        sh->actions_list |= acts && v[0] == '[';
        sh->batches_list |= bats && v[0] == '[';
    } else if (p->depth == 2 && acts) {
        sh->n_actions++;
    } else if (p->depth == 2 && bats) {
        sh->n_batches++;
    } else if (p->depth == 3 && bats) {
        if (p->index[1] != sh->cur_b || !sh->cur_n) {
            sh->cur_b = p->index[1];
            sh->cur_n = 0;
        }
        sh->n_in_batches++;
        if (++sh->cur_n > g_srv.cfg.max_batch_actions && !sh->big_n) {
            sh->big_b = sh->cur_b;
            sh->big_n = sh->cur_n;
        }
        if (sh->big_n && sh->cur_b == sh->big_b)
            sh->big_n = sh->cur_n;
    }
}

struct param_spans {
    task *t;
    bool batches_form;
};

static void param_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    struct param_spans *ps = user;
    task *t = ps->t;
    size_t b, i;
    if (!ps->batches_form && p->depth == 3 && p->key[0] && !p->key[1] && p->key[2] &&
        aip_jscan_key_eq(p->key[0], p->key_len[0], "actions") &&
        aip_jscan_key_eq(p->key[2], p->key_len[2], "parameters")) {
        b = 0;
        i = p->index[1];
    } else if (ps->batches_form && p->depth == 4 && p->key[0] && !p->key[1] && !p->key[2] &&
               p->key[3] && aip_jscan_key_eq(p->key[0], p->key_len[0], "batches") &&
               aip_jscan_key_eq(p->key[3], p->key_len[3], "parameters")) {
        b = p->index[1];
        i = p->index[2];
    } else {
        return;
    }
    if (b >= t->nbatches || i >= t->batch_at[b + 1] - t->batch_at[b])
        return;
    action *a = &t->actions[t->batch_at[b] + i];
    if (!a->params && !(n == 4 && memcmp(v, "null", 4) == 0))
        a->params = aip_strndup(v, n);
}

/* Parses t->request into t->actions. On false, why holds the reason (always written). */
static bool parse_actions(task *t, char *why, size_t wl)
{
    static const char no_planner[] =
        "aip-test-server has no planner: send the request as JSON actions, "
        "{\"actions\": [{\"tool_name\": ..., \"parameters\": {...}}]} or "
        "{\"batches\": [[...], [...]]}";
    snprintf(why, wl, "out of memory");
    const char *req = t->request ? t->request : "";
    size_t rl = strlen(req);
    size_t maxa = g_srv.cfg.max_actions, maxb = g_srv.cfg.max_batch_actions;

    /* 1. the shape and the counts, without building anything (the scan's memory does not grow
     * with the number of values, and the text is at most --max-frame) */
    struct req_shape sh;
    memset(&sh, 0, sizeof sh);
    aip_jscan sc = {0};
    sc.max_depth = 64;
    sc.visit = shape_visit;
    sc.user = &sh;
    sc.visit_depth = 3;
    int rc = aip_jscan_run(&sc, req, rl);
    if (rc || sc.root != '{' || (!sh.actions_list && !sh.batches_list)) {
        if (rc && rc != AIP_E_MALFORMED)
            snprintf(why, wl, "the request is JSON the server will not parse: %s", sc.why);
        else
            snprintf(why, wl, "%s", no_planner);
        return false;
    }
    bool batches_form = !sh.actions_list;
    size_t total = batches_form ? sh.n_in_batches : sh.n_actions;
    if (!batches_form && sh.n_actions > maxb) {
        sh.big_b = 0;
        sh.big_n = sh.n_actions;
    }
    if (sh.big_n) {
        snprintf(why, wl,
                 "batch %zu has %zu actions; aip-test-server takes at most %zu per batch "
                 "(--max-actions-per-batch)",
                 sh.big_b, sh.big_n, maxb);
        return false;
    }
    if (total > maxa || (batches_form && sh.n_batches > maxa)) {
        snprintf(why, wl,
                 "the task has %zu actions in %zu batch(es); aip-test-server takes at most %zu "
                 "in one task (--max-actions)",
                 total, batches_form ? sh.n_batches : (size_t)1, maxa);
        return false;
    }

    /* 2. the tree, validated action by action; its memory bounded as the codec bounds a
     * frame's (8x its size; the floor fits --max-actions small actions) */
    aip_jscan cost = {0};
    cost.max_depth = 64;
    cost.max_values = g_srv.limits.max_values;
    cost.mem_budget = rl * 8 > (4u << 20) ? rl * 8 : (4u << 20);
    if (aip_jscan_run(&cost, req, rl)) {
        snprintf(why, wl, "the request is JSON the server will not parse: %s", cost.why);
        return false;
    }
    bool ok = false;
    cJSON *root = cJSON_ParseWithLength(req, rl);
    if (!root)
        return false; /* the scans accepted it: only memory can fail here */
    cJSON *list = cJSON_GetObjectItemCaseSensitive(root, batches_form ? "batches" : "actions");
    size_t nb = batches_form ? sh.n_batches : 1, bi = 0, n = 0;
    if (!total) {
        snprintf(why, wl, "the task has no actions");
        goto out;
    }
    for (cJSON *b = batches_form ? list->child : list; b; b = batches_form ? b->next : NULL, bi++) {
        if (!cJSON_IsArray(b) || !b->child) {
            snprintf(why, wl, "batch %zu is not a non-empty list of actions", bi);
            goto out;
        }
        size_t ai = 0;
        for (cJSON *a = b->child; a; a = a->next, ai++) {
            cJSON *tn = cJSON_GetObjectItemCaseSensitive(a, "tool_name");
            cJSON *tt = cJSON_GetObjectItemCaseSensitive(a, "tool_type");
            cJSON *pa = cJSON_GetObjectItemCaseSensitive(a, "parameters");
            aip_tool_type ty;
            if (!cJSON_IsObject(a) || !cJSON_IsString(tn) || !tn->valuestring[0] ||
                (tt && !cJSON_IsNull(tt) &&
                 (!cJSON_IsString(tt) ||
                  aip_tool_type_parse(tt->valuestring, strlen(tt->valuestring), &ty))) ||
                (pa && !cJSON_IsNull(pa) && !cJSON_IsObject(pa))) {
                snprintf(why, wl,
                         "batch %zu, action %zu: needs a string tool_name, an optional "
                         "tool_type (action|data_collection) and object parameters",
                         bi, ai);
                goto out;
            }
        }
    }

    /* 3. the table, sized by the checked counts (nb <= total <= --max-actions) */
    if (!(t->actions = aip_calloc(total, sizeof *t->actions)) ||
        !(t->batch_at = aip_calloc(nb + 1, sizeof *t->batch_at)))
        goto out;
    t->nactions = total;
    t->nbatches = nb;
    bi = 0;
    for (cJSON *b = batches_form ? list->child : list; b; b = batches_form ? b->next : NULL) {
        t->batch_at[bi++] = n;
        for (cJSON *a = b->child; a && n < total; a = a->next, n++) {
            cJSON *tt = cJSON_GetObjectItemCaseSensitive(a, "tool_type");
            action *x = &t->actions[n];
            x->tool_type = AIP_TOOL_ACTION;
            if (cJSON_IsString(tt))
                aip_tool_type_parse(tt->valuestring, strlen(tt->valuestring), &x->tool_type);
            if (!(x->tool_name =
                      aip_strdup(cJSON_GetObjectItemCaseSensitive(a, "tool_name")->valuestring)))
                goto out;
        }
    }
    t->batch_at[nb] = n;
    if (n != total || bi != nb) {
        snprintf(why, wl, "internal error: counted %zu actions in %zu batches, found %zu in %zu",
                 total, nb, n, bi);
        goto out;
    }

    /* 4. parameters as their original text */
    struct param_spans ps = {t, batches_form};
    aip_jscan s2 = {0};
    s2.visit = param_visit;
    s2.user = &ps;
    s2.visit_depth = 4;
    s2.max_depth = 64;
    if (aip_jscan_run(&s2, req, rl))
        goto out;
    ok = true;
out:
    cJSON_Delete(root);
    return ok;
}

static void send_batch(task *t)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    aip_msg_set_str(&m.session_id, t->session_id);
    aip_msg_set_str(&m.task_name, t->task_name);
    new_id(t->cmd_id);
    aip_msg_set_str(&m.response_id, t->cmd_id);
    m.has_actions = true;
    size_t i = 0, from = t->batch_at[t->cur], to = t->batch_at[t->cur + 1];
    for (; from + i < to; i++) {
        const action *a = &t->actions[from + i];
        aip_command *c = aip_msg_add_command(&m);
        if (!c)
            break;
        c->tool_type = a->tool_type;
        aip_msg_set_str(&c->tool_name, a->tool_name);
        if (a->params)
            aip_msg_set_json(&c->parameters, a->params, AIP_JSON_OBJECT);
        char cid[40];
        new_id(cid);
        aip_msg_set_str(&c->call_id, cid);
    }
    strmap_put(&g_srv.commands, t->cmd_id, t);
    t->device->commands_in_flight++;
    t->cmd_sent_ns = aip_now_ns(NULL);
    send_msg(t->device, &m);
    aip_msg_clear(&m);
    char more[120], text[120];
    snprintf(more, sizeof more, "\"response_id\":\"%s\",\"actions\":%zu", t->cmd_id, i);
    snprintf(text, sizeof text, "command batch %zu/%zu (%zu action(s)) sent", t->cur + 1,
             t->nbatches, i);
    ev_task("command", t, more, text);
}

static void put_result(aip_buf *b, const aip_result *r)
{
    const char *st = aip_result_status_str(r->status);
    aip_buf_puts(b, "{\"status\":");
    aip_json_put_string(b, st, strlen(st));
    aip_buf_puts(b, ",\"error\":");
    if (r->error)
        aip_json_put_string(b, r->error, strlen(r->error));
    else
        aip_buf_puts(b, "null");
    aip_buf_puts(b, ",\"result\":");
    aip_buf_puts(b, r->result ? r->result : "null");
    aip_buf_puts(b, ",\"namespace\":");
    if (r->ns)
        aip_json_put_string(b, r->ns, strlen(r->ns));
    else
        aip_buf_puts(b, "null");
    aip_buf_puts(b, ",\"call_id\":");
    if (r->call_id)
        aip_json_put_string(b, r->call_id, strlen(r->call_id));
    else
        aip_buf_puts(b, "null");
    aip_buf_putc(b, '}');
}

static void handle_results(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_DEVICE) { /* Roles, rule 5 */
        unauthorized(s, m, "command_results are only for device clients");
        return;
    }
    task *t = m->prev_response_id ? strmap_get(&g_srv.commands, m->prev_response_id) : NULL;
    if (t && t->device != s) { /* Roles, rule 5 */
        unauthorized(s, m, "command_results for command '%.64s', which was sent to another device",
                     m->prev_response_id);
        return;
    }
    if (t && m->session_id && strcmp(m->session_id, t->session_id) != 0) {
        unauthorized(s, m,
                     "command_results for command '%.64s' name session '%.100s'; the "
                     "command belongs to another session",
                     m->prev_response_id, m->session_id);
        return;
    }
    if (!t) { /* late (its task ended) or made up: nothing to do */
        aip_log(AIP_LOG_INFO, LOG, "command_results from %s for no running command (%s)",
                s->client_id, m->prev_response_id ? m->prev_response_id : "no prev_response_id");
        return;
    }
    metrics_rtt((int64_t)((aip_now_ns(NULL) - t->cmd_sent_ns) / 1000));
    char more[80];
    snprintf(more, sizeof more, "\"response_id\":\"%.40s\"", t->cmd_id);
    ev_task("command_results", t, more, "command results received");
    strmap_del(&g_srv.commands, t->cmd_id);
    t->cmd_id[0] = 0;
    if (s->commands_in_flight)
        s->commands_in_flight--;
    size_t want = t->batch_at[t->cur + 1] - t->batch_at[t->cur];
    aip_buf_putc(&t->results, t->results.len ? ',' : '[');
    aip_buf_puts(&t->results, "{\"request\":");
    aip_json_put_string(&t->results, t->request, strlen(t->request));
    aip_buf_puts(&t->results, ",\"result\":[");
    for (size_t i = 0; i < m->n_action_results; i++) {
        if (i)
            aip_buf_putc(&t->results, ',');
        put_result(&t->results, &m->action_results[i]);
        if (m->action_results[i].status != AIP_RESULT_SUCCESS)
            t->all_success = false;
    }
    aip_buf_puts(&t->results, "]}");
    if (t->results.len > g_srv.cfg.max_frame) { /* bounded: it goes out as one task_end */
        char why[160];
        snprintf(why, sizeof why, "the task's results passed %zu bytes (--max-frame)",
                 g_srv.cfg.max_frame);
        aip_buf_free(&t->results);
        finish_task(t, false, why);
        return;
    }
    if (m->n_action_results != want)
        t->all_success = false;
    if (!t->all_success) {
        finish_task(t, false,
                    m->n_action_results != want ? "the device answered a different "
                                                  "number of results than actions"
                                                : "a command failed");
        return;
    }
    if (++t->cur < t->nbatches) {
        send_batch(t);
        return;
    }
    finish_task(t, true, NULL);
}

/* A new task from requester (NULL: the HTTP API) to dev, registered by session_id. */
static task *task_new(session *requester, session *dev, const char *sid, const char *task_name,
                      const char *request)
{
    task *t = aip_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->session_id = aip_strdup(sid);
    t->task_name = task_name ? aip_strdup(task_name) : NULL;
    t->request = aip_strdup(request ? request : "");
    t->requester = requester;
    t->device = dev;
    t->all_success = true;
    aip_buf_init(&t->results, 0);
    if (!t->session_id || !t->request || (task_name && !t->task_name) ||
        strmap_put(&g_srv.tasks, t->session_id, t)) {
        aip_free(t->session_id);
        aip_free(t->task_name);
        aip_free(t->request);
        aip_free(t);
        return NULL;
    }
    return t;
}

static void task_announce(task *t, const char *from)
{
    aip_log(AIP_LOG_INFO, LOG, "task %s from %s to %s: %zu batch(es)", t->session_id, from,
            t->device->client_id, t->nbatches);
    char text[300];
    snprintf(text, sizeof text, "task from %.100s: %zu batch(es)", from, t->nbatches);
    ev_task("task", t, NULL, text);
}

static void handle_task(session *s, aip_msg *m)
{
    const char *target = m->target_id;
    if (!target && s->type == AIP_CLIENT_CONSTELLATION) {
        send_error(s, m, "Constellation task requests require target_id");
        return;
    }
    if (!target) {
        send_error(s, m, "aip-test-server has no planner for device-initiated tasks");
        return;
    }
    if (s->type == AIP_CLIENT_DEVICE && strcmp(target, s->client_id) != 0) { /* Roles, rule 2 */
        unauthorized(s, m,
                     "a device's task runs on the device itself: target_id '%.100s' is not "
                     "this device ('%.100s')",
                     target, s->client_id);
        return;
    }
    char sid[AIP_ID_MAX + 1];
    if (m->session_id) {
        snprintf(sid, sizeof sid, "%s", m->session_id);
    } else {
        char u[40];
        new_id(u);
        snprintf(sid, sizeof sid, "%.100s@%s", m->task_name ? m->task_name : "task", u);
    }
    task *old = strmap_get(&g_srv.tasks, sid);
    if (old && old->requester == s) {
        send_error(s, m, "session_id '%s' is already running", sid);
        return;
    }
    if (old) { /* Roles, rule 3 */
        unauthorized(s, m, "session_id '%s' is owned by another client", sid);
        return;
    }
    session *dev = strmap_get(&g_srv.clients, target);
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        send_error(s, m, NOT_CONNECTED, target);
        return;
    }
    send_simple(s, AIP_MSG_HEARTBEAT, AIP_STATUS_OK, sid, NULL, NULL); /* the ack */
    task *t = task_new(s, dev, sid, m->task_name, m->request);
    if (!t) {
        send_error(s, m, "out of memory");
        return;
    }
    record_open(t->task_name, t->session_id, dev->client_id);
    char why[300];
    if (!parse_actions(t, why, sizeof why)) {
        g_srv.m.bad_tasks++;
        finish_task(t, false, why);
        return;
    }
    task_announce(t, s->client_id);
    send_batch(t);
}

unsigned admin_dispatch(const char *client_id, const char *request, const char *task_name,
                        aip_buf *out)
{
    session *dev = strmap_get(&g_srv.clients, client_id);
    char text[400];
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        snprintf(text, sizeof text, NOT_CONNECTED, client_id);
        aip_buf_puts(out, "{\"error\":");
        put_str(out, text);
        aip_buf_putc(out, '}');
        return HTTP_STATUS_NOT_FOUND;
    }
    char u[40], name[AIP_ID_MAX + 1], sid[AIP_ID_MAX + 1];
    new_id(u);
    if (task_name && (!task_name[0] || strlen(task_name) > 100)) {
        aip_buf_puts(out, "{\"error\":\"task_name must be 1 to 100 characters\"}");
        return HTTP_STATUS_BAD_REQUEST;
    }
    snprintf(name, sizeof name, "%s", task_name ? task_name : "");
    if (!task_name)
        snprintf(name, sizeof name, "task_%.8s", u);
    const task_record *r = record_get(name);
    if (r && r->state == 0) {
        aip_buf_puts(out, "{\"error\":\"a task with this task_name is still running\"}");
        return HTTP_STATUS_CONFLICT;
    }
    snprintf(sid, sizeof sid, "%.100s@%.39s", name, u);
    task *t = task_new(NULL, dev, sid, name, request);
    if (!t) {
        aip_buf_puts(out, "{\"error\":\"out of memory\"}");
        return HTTP_STATUS_INTERNAL_SERVER_ERROR;
    }
    char why[300];
    if (!parse_actions(t, why, sizeof why)) {
        g_srv.m.bad_tasks++;
        task_free(t);
        aip_buf_puts(out, "{\"error\":");
        put_str(out, why);
        aip_buf_putc(out, '}');
        return HTTP_STATUS_BAD_REQUEST;
    }
    record_open(name, sid, dev->client_id);
    task_announce(t, "the HTTP API");
    send_batch(t);
    aip_buf_puts(out, "{\"status\":\"dispatched\",\"task_name\":");
    put_str(out, name);
    aip_buf_puts(out, ",\"client_id\":");
    put_str(out, dev->client_id);
    aip_buf_puts(out, ",\"session_id\":");
    put_str(out, sid);
    aip_buf_putc(out, '}');
    return HTTP_STATUS_OK;
}

/* ---- registration and dispatch ----------------------------------------------------------- */

static void register_timeout(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, sul_register);
    if (s->registered)
        return;
    aip_log(AIP_LOG_INFO, LOG, "%s sent no registration within %u ms: closing", s->addr,
            g_srv.cfg.register_timeout_ms);
    close_session(s, 1008, "registration timeout");
}

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

/* Refuses a registration: the error, an event, then a close once the error is out (1000; 1013
 * "try again later" when the server is full). */
static void refuse_ex(session *s, const aip_msg *m, uint64_t *counter, const char *why, int code)
{
    (*counter)++;
    send_error(s, m, "%s", why);
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

static void refuse(session *s, const aip_msg *m, uint64_t *counter, const char *why)
{
    refuse_ex(s, m, counter, why, 1000);
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

static void handle_register(session *s, aip_msg *m)
{
    char why[300];
    if (!m->client_id) {
        refuse(s, m, &g_srv.m.refused_invalid, "registration requires client_id");
        return;
    }
    if (refusal_armed(m->client_id)) {
        refuse(s, m, &g_srv.m.refused_fault,
               "registration refused (fault injected: refuse_next_registration)");
        return;
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
        refuse(s, m, &g_srv.m.refused_duplicate, why);
        return;
    }
    if (g_srv.clients.count >= g_srv.cfg.max_clients) {
        snprintf(why, sizeof why,
                 "server full: %zu clients are registered, the most this server takes "
                 "(aip-test-server --max-clients)",
                 g_srv.clients.count);
        refuse_ex(s, m, &g_srv.m.refused_full, why, 1013);
        return;
    }
    if (m->client_type == AIP_CLIENT_CONSTELLATION && m->target_id) {
        session *dev = strmap_get(&g_srv.clients, m->target_id);
        if (!dev || dev->type != AIP_CLIENT_DEVICE) {
            snprintf(why, sizeof why, NOT_CONNECTED, m->target_id);
            refuse(s, m, &g_srv.m.refused_target, why);
            return;
        }
    }
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
 *     (handle_message), so there a frame could speak for another client; PROTOCOL.md §3.1
 *     pins them, with Galaxy's client_type "device" heartbeats from a constellation acked.
 *  2. Tasks: a constellation's task runs on its target_id; a device's task runs on the device
 *     itself (UFO's handle_task_request uses the sender's own task protocol for a device and
 *     ignores target_id): a device naming another device is refused, "a device's task runs on
 *     the device itself: ...". Results (task_end) go only to the requester, and a copy to the
 *     device that ran it (UFO's send_result callback does the same).
 *  3. Session ownership: a session belongs to the client that started it; a task naming a
 *     running session_id of another client is refused, "session_id 'S' is owned by another
 *     client" (PROTOCOL.md §3.3; UFO's get_or_create_session would join the running session).
 *     A constellation's sessions are cancelled when it leaves (UFO: disconnect()).
 *  4. Device info: only a constellation may ask (device_info_request), about any device, as in
 *     UFO, whose answer for a device that is not there is ok with result {"error": ...};
 *     a device asking gets "device_info_request is only for constellation clients"
 *     (PROTOCOL.md §3.5; UFO's handler answers any client). Only a device may answer
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

static void handle_client_task_end(session *s, aip_msg *m)
{
    task *t = m->session_id ? strmap_get(&g_srv.tasks, m->session_id) : NULL;
    if (!t || t->device != s) { /* Roles, rule 6 */
        unauthorized(s, m,
                     "task_end for session '%.100s' refused: no task of that session runs "
                     "on this client",
                     m->session_id ? m->session_id : "(none)");
        return;
    }
    aip_log(AIP_LOG_DEBUG, LOG, "task_end from %s for its session %s (the server ends tasks)",
            s->client_id, t->session_id);
}

static void handle_msg(session *s, aip_msg *m)
{
    if (!s->registered) {
        if (m->type == AIP_MSG_REGISTER)
            handle_register(s, m);
        else
            close_session(s, 1008, "register first"); /* UFO closes without a word */
        return;
    }
    /* Roles, rule 1: identity is pinned to the connection (PROTOCOL.md §3.1) */
    if (!m->client_id || strcmp(m->client_id, s->client_id) != 0) {
        unauthorized(s, m, "client_id mismatch: this connection is registered as '%s'",
                     s->client_id);
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
            unauthorized(s, m, "client_type mismatch: this connection is registered as %s",
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
    case AIP_MSG_REGISTER: send_error(s, m, "already registered"); break;
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

static void handle_frame(session *s, const uint8_t *data, size_t len, bool binary)
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
        enqueue(s, buf, len, binary);
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
        send_error(s, &req, "malformed frame: %s", e.reason);
        return;
    }
    g_srv.m.frames_in[m.type][binary]++;
    handle_msg(s, &m);
    aip_msg_clear(&m);
}

/* ---- session lifecycle ----------------------------------------------------------------------- */

static session *session_new(struct lws *wsi)
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

static void session_closed(session *s, int code, const char *reason)
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
    /* tasks: a device gone fails its tasks; a constellation gone cancels its own */
    const char *k;
    void *v;
    for (size_t i = 0; strmap_next(&g_srv.tasks, &i, &k, &v);) {
        task *t = v;
        if (t->device == s) {
            t->device = NULL;
            finish_task(t, false, "Task was cancelled because target device disconnected");
        } else if (t->requester == s) {
            aip_log(AIP_LOG_INFO, LOG, "task %s cancelled: its requester left", t->session_id);
            task_free(t);
        }
    }
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
    queue_drop(s);
    g_srv.nsessions--;
    aip_buf_free(&s->rx);
    aip_free(s->client_id);
    aip_free(s->target_id);
    aip_free(s->system_info);
    aip_free(s->si_summary);
    aip_free(s);
}

/* Liveness: ping a peer silent for --ping-after (20 s), drop one silent for --drop-after (60 s);
 * any frame or pong counts as life, and a pong re-arms the next ping. One timer sweeping every
 * session each second, instead of lws's per-connection validity timers: lws
 * 4.1 keeps timers in one sorted list and re-inserted a connection's timer (O(n)) on every
 * frame it received, which was most of the server's CPU with 10,000 connections. */

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

/* ---- faults (POST /api/faults) ------------------------------------------------------------ */

static const char *const g_fault_names[FAULT_COUNT_] = {
    "drop", "stall", "delay", "garbage", "refuse_next_registration", "mute_heartbeats"};

const char *fault_name(fault_kind f)
{
    return (unsigned)f < FAULT_COUNT_ ? g_fault_names[f] : "?";
}

/* Fires at the earliest fault deadline: ends what is over, re-arms for the rest. */
static void fault_timer(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, sul_fault);
    int64_t now = now_us(), next = 0;
    int64_t *d[] = {&s->stall_until_us, &s->delay_until_us, &s->mute_until_us};
    for (size_t i = 0; i < 3; i++) {
        if (*d[i] && *d[i] <= now) {
            if (d[i] == &s->stall_until_us)
                lws_rx_flow_control(s->wsi, 1);
            *d[i] = 0;
            ev_emit("fault", s, NULL, "%s ended",
                    i == 0   ? "stall"
                    : i == 1 ? "delay"
                             : "mute_heartbeats");
        } else if (*d[i] && (!next || *d[i] < next)) {
            next = *d[i];
        }
    }
    if (s->qh)
        lws_callback_on_writable(s->wsi);
    if (next)
        lws_sul_schedule(g_srv.ctx, 0, &s->sul_fault, fault_timer, (lws_usec_t)(next - now));
}

static void fault_arm(session *s, int64_t *until, double seconds)
{
    int64_t now = now_us();
    *until = now + (int64_t)(seconds * 1e6);
    lws_sul_cancel(&s->sul_fault);
    fault_timer(&s->sul_fault); /* schedules the earliest deadline */
}

unsigned admin_fault(const char *client_id, const char *fault, double seconds, aip_buf *out)
{
    int f = 0;
    while (f < FAULT_COUNT_ && strcmp(g_fault_names[f], fault) != 0)
        f++;
    if (f == FAULT_COUNT_) {
        aip_buf_puts(out, "{\"error\":\"unknown fault: use drop, stall, delay, garbage, "
                          "refuse_next_registration or mute_heartbeats\"}");
        return HTTP_STATUS_BAD_REQUEST;
    }
    bool timed = f == FAULT_STALL || f == FAULT_DELAY || f == FAULT_MUTE_HEARTBEATS;
    if (seconds < 0)
        seconds = timed ? 10 : 0;
    if (seconds > 3600 || (timed && seconds <= 0)) {
        aip_buf_puts(out, "{\"error\":\"seconds must be in (0, 3600]\"}");
        return HTTP_STATUS_BAD_REQUEST;
    }
    session *s = strmap_get(&g_srv.clients, client_id);
    if (f == FAULT_REFUSE_NEXT_REGISTRATION) { /* the client need not be connected now */
        int64_t *until = aip_malloc(sizeof *until);
        if (!until || (g_srv.refuse.count >= 10000 && !strmap_get(&g_srv.refuse, client_id))) {
            aip_free(until);
            aip_buf_puts(out, "{\"error\":\"too many armed refusals\"}");
            return HTTP_STATUS_SERVICE_UNAVAILABLE;
        }
        *until = seconds > 0 ? now_us() + (int64_t)(seconds * 1e6) : 0;
        aip_free(strmap_del(&g_srv.refuse, client_id));
        if (strmap_put(&g_srv.refuse, client_id, until)) {
            aip_free(until);
            aip_buf_puts(out, "{\"error\":\"out of memory\"}");
            return HTTP_STATUS_INTERNAL_SERVER_ERROR;
        }
    } else if (!s) {
        aip_buf_puts(out, "{\"error\":\"no such client\"}");
        return HTTP_STATUS_NOT_FOUND;
    }
    g_srv.m.faults[f]++;
    switch ((fault_kind)f) {
    case FAULT_DROP: { /* the TCP connection ends without a close handshake */
        int fd = lws_get_socket_fd(s->wsi);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        break;
    }
    case FAULT_STALL: /* half-open: nothing read (no pongs either), nothing written */
        lws_rx_flow_control(s->wsi, 0);
        fault_arm(s, &s->stall_until_us, seconds);
        break;
    case FAULT_DELAY: fault_arm(s, &s->delay_until_us, seconds); break;
    case FAULT_MUTE_HEARTBEATS: fault_arm(s, &s->mute_until_us, seconds); break;
    case FAULT_GARBAGE: {
        static const char text[] = "{\"this is\": not an AIP message";
        static const uint8_t bin[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x7f};
        size_t n = s->proto ? sizeof bin : sizeof text - 1;
        uint8_t *buf = aip_malloc(LWS_PRE + n);
        if (buf) {
            memcpy(buf + LWS_PRE, s->proto ? (const void *)bin : (const void *)text, n);
            enqueue(s, buf, n, s->proto);
        }
        break;
    }
    case FAULT_REFUSE_NEXT_REGISTRATION:
    case FAULT_COUNT_: break;
    }
    aip_log(AIP_LOG_INFO, LOG, "fault %s injected for %s (%.1f s)", fault, client_id, seconds);
    aip_buf e;
    aip_buf_init(&e, 0);
    bputf(&e, "\"fault\":\"%s\",\"seconds\":%g", fault, seconds);
    aip_buf_nul(&e);
    if (s)
        ev_emit("fault", s, (const char *)e.data, "fault injected: %s%s", fault,
                timed ? " (timed)" : "");
    else
        ev_emit("fault", NULL, (const char *)e.data, "fault injected for %.100s: %s", client_id,
                fault);
    aip_buf_free(&e);
    aip_buf_puts(out, "{\"ok\":true,\"fault\":");
    put_str(out, fault);
    aip_buf_puts(out, ",\"client_id\":");
    put_str(out, client_id);
    bputf(out, ",\"seconds\":%g}", seconds);
    return HTTP_STATUS_OK;
}

/* ---- lws callback ---------------------------------------------------------------------------- */

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

static int on_receive(session *s, struct lws *wsi, const void *in, size_t len)
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
    if (!lws_is_final_fragment(wsi))
        return 0;
    handle_frame(s, s->rx.data ? s->rx.data : (const uint8_t *)"", s->rx.len, s->rx_binary);
    if (s->rx.cap > 256 * 1024)
        aip_buf_free(&s->rx);
    else
        s->rx.len = 0;
    return 0;
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

int aip_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    pss *ps = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
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
            return reject_upgrade(wsi, 503,
                                  "too many connections (aip-test-server --max-connections)");
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        if (ps)
            ps->s = session_new(wsi);
        return ps && ps->s ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (!ps || !ps->s)
            return -1;
        ps->s->last_rx_us = now_us();
        ps->s->ping_sent = false;
        return on_receive(ps->s, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (ps && ps->s) {
            ps->s->last_rx_us = now_us();
            ps->s->ping_sent = false;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!ps || !ps->s)
            return 0;
        if (ps->s->closing && (ps->s->close_now || !ps->s->qh)) {
            lws_close_reason(wsi, (enum lws_close_status)ps->s->close_code,
                             (unsigned char *)ps->s->close_reason, strlen(ps->s->close_reason));
            return -1;
        }
        if (ps->s->ping_due && ps->s->stall_until_us <= now_us()) { /* a stall sends nothing */
            /* Never an empty ping: lws 4.1's server parser drops a zero-length PONG before the
             * protocol callback (ops-ws.c: "opcode == LWSWSOPC_PONG && !ebuf.len"), so the
             * answer to an empty ping never reached LWS_CALLBACK_RECEIVE_PONG and every peer
             * that heartbeats less often than --drop-after was dropped although it answered. */
            uint8_t ping[LWS_PRE + 4] = {[LWS_PRE] = 'a', 'i', 'p', '!'};
            ps->s->ping_due = false;
            if (lws_write(wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0)
                return -1;
            if (ps->s->qh)
                lws_callback_on_writable(wsi);
            return 0;
        }
        /* several queued frames per WRITEABLE while the socket takes them (one poll() round
         * per frame was most of the server's cost under load) */
        for (int i = 0; i < 16; i++) {
            if (write_one(ps->s))
                return -1;
            if (!ps->s->qh || ps->s->closing || lws_send_pipe_choked(wsi))
                break;
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (ps && ps->s && len >= 2 && !ps->s->closing) {
            const unsigned char *b = in;
            ps->s->close_code = (b[0] << 8) | b[1];
            size_t rl =
                len - 2 < sizeof ps->s->close_reason - 1 ? len - 2 : sizeof ps->s->close_reason - 1;
            memcpy(ps->s->close_reason, b + 2, rl);
            ps->s->close_reason[rl] = 0;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (ps && ps->s) {
            session *s = ps->s;
            ps->s = NULL;
            session_closed(s, s->close_code ? s->close_code : 1006,
                           s->close_code ? s->close_reason : "connection lost");
        }
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
