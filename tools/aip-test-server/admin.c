/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: the HTTP API's actions on the AIP side — POST /api/dispatch (a task for a
 * device, as tasks.c runs them), GET /api/device_info/{id} (the cache, or a live query that
 * answers later through the caller's live_done), and POST /api/faults with the timers that
 * end the timed faults. Each action answers an HTTP status and writes its JSON body; http.c
 * reads the request and writes the answer.
 *
 * Faults (README "Fault injection"): drop (TCP shutdown, no close handshake), stall (neither
 * read nor write, half-open), delay (outbound frames held), garbage (one frame that is not
 * AIP), refuse_next_registration (once, or for a time; the client need not be connected),
 * mute_heartbeats (no acks). A timed one lasts until its deadline; fault_timer() fires at the
 * earliest deadline of a session, ends what is over and re-arms for the rest.
 *
 * Calls relay.c, tasks.c, session.c, session_queue.c, events.c and json_out.c (server.h shows
 * the order).
 */
#include "relay.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define LOG "server"

/* ---- POST /api/dispatch -------------------------------------------------------------------- */

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

/* ---- GET /api/device_info/{id} ------------------------------------------------------------- */

unsigned admin_device_info(const char *client_id, struct live_req **pending, live_done done,
                           aip_buf *out)
{
    session *dev = strmap_get(&g_srv.clients, client_id);
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        aip_buf_puts(out, "{\"error\":\"no such device\"}");
        return HTTP_STATUS_NOT_FOUND;
    }
    if (!pending || *pending) {
        aip_buf_puts(out, "{\"error\":\"a query is already waiting on this connection\"}");
        return HTTP_STATUS_CONFLICT;
    }
    bool live = g_srv.cfg.di_mode == DI_LIVE || (g_srv.cfg.di_mode == DI_AUTO && dev->ext_live);
    if (live && (*pending = live_start(dev, NULL, NULL, done)))
        return 0;
    put_device_info(out, dev->client_id, "cache", dev->system_info);
    return HTTP_STATUS_OK;
}

void admin_live_cancel(struct live_req *l)
{
    live_free(l); /* the HTTP client left: the device's answer, if any, is dropped */
}

/* ---- faults (POST /api/faults) ------------------------------------------------------------ */

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

/* refuse_next_registration for client_id: once (seconds 0), or until seconds from now. 0 when
 * armed, else the HTTP status of the error written to out. */
static unsigned arm_refusal(const char *client_id, double seconds, aip_buf *out)
{
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
    return 0;
}

/* Injects fault f, other than refuse_next_registration, into s. */
static void fault_apply(session *s, fault_kind f, double seconds)
{
    switch (f) {
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
            session_enqueue(s, buf, n, s->proto, false);
        }
        break;
    }
    case FAULT_REFUSE_NEXT_REGISTRATION:
    case FAULT_COUNT_: break;
    }
}

unsigned admin_fault(const char *client_id, const char *fault, double seconds, aip_buf *out)
{
    int f = 0;
    while (f < FAULT_COUNT_ && strcmp(fault_name((fault_kind)f), fault) != 0)
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
        unsigned st = arm_refusal(client_id, seconds, out);
        if (st)
            return st;
    } else if (!s) {
        aip_buf_puts(out, "{\"error\":\"no such client\"}");
        return HTTP_STATUS_NOT_FOUND;
    }
    g_srv.m.faults[f]++;
    if (f != FAULT_REFUSE_NEXT_REGISTRATION)
        fault_apply(s, (fault_kind)f, seconds);
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
