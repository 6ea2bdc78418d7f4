/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: the live event feed and task records.
 *
 * Events (registrations, heartbeats, tasks, commands, errors, disconnects, faults) go to every
 * viewer of the /events WebSocket as one JSON text message each (DASHBOARD contract in
 * README.md). A viewer first gets a snapshot of the connected clients, then the last
 * EV_REPLAY events, then live ones. Memory is bounded three times: every event line is at
 * most about EV_MAX_EXTRA + 1 KiB (a client's system_info appears as a bounded summary, and
 * extra members past EV_MAX_EXTRA bytes are left out), the replay ring holds EV_REPLAY lines,
 * and a viewer whose live events queue past --max-viewer-queue bytes (1 MiB) is closed with
 * 1013 (try again later) instead of buffering for it — the page reconnects and gets a fresh
 * snapshot. The opening burst (snapshot + replay) is not held against that cap, so a viewer
 * always gets its snapshot: its size is bounded by --max-clients summaries and the ring.
 *
 * Task records answer GET /api/task_result/{task_name}: created when a task with a name enters
 * the server, completed at task_end, at most MAX_TASK_RECORDS kept (the oldest dropped first).
 */
#include "server.h"

#include <aip/internal/jscan.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define EV_REPLAY         200
#define EV_MAX_EXTRA      (8u * 1024u) /* extra members of one event, bytes */
#define MAX_RECORD_RESULT (64u * 1024u)
#define SI_INLINE         2048u /* a system_info up to this size is shown whole */
#define SI_FIELD_MAX      256u  /* a summarised field's value, as JSON text */

static char *g_ring[EV_REPLAY];
static size_t g_ring_next;
static uint64_t g_seq;

static void viewer_send(session *v, const char *text, size_t len, bool opening)
{
    if (v->closing)
        return;
    if (!opening && v->qbytes - v->qexempt + len > g_srv.cfg.max_viewer_queue) {
        g_srv.m.viewer_drops++;
        aip_log(AIP_LOG_INFO, "events", "viewer %s is %zu bytes behind: closing it (1013)", v->addr,
                v->qbytes);
        v->closing = true;
        v->close_now = true;
        v->close_code = 1013;
        snprintf(v->close_reason, sizeof v->close_reason, "viewer too slow");
        lws_callback_on_writable(v->wsi);
        return;
    }
    session_enqueue_text(v, text, len, opening);
}

void events_viewer_open(session *s)
{
    /* a fixed kernel send buffer: without it loopback autotuning lets the kernel hold megabytes
     * for a viewer that does not read, before our own bound is even reached */
    int fd = lws_get_socket_fd(s->wsi), sndbuf = 64 * 1024;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    s->next_viewer = g_srv.viewers;
    g_srv.viewers = s;
    g_srv.nviewers++;
    aip_buf b;
    aip_buf_init(&b, 0);
    char ts[40];
    aip_format_timestamp(g_srv.started_us, ts, sizeof ts);
    /* seq: the last event before the snapshot; the replayed ones have seq <= it */
    bputf(&b, "{\"type\":\"snapshot\",\"seq\":%llu,\"server\":{\"version\":",
          (unsigned long long)g_seq);
    put_str(&b, aip_version());
    aip_buf_puts(&b, ",\"device_info\":");
    put_str(&b, g_srv.cfg.di_mode == DI_LIVE    ? "live"
                : g_srv.cfg.di_mode == DI_CACHE ? "cache"
                                                : "auto");
    aip_buf_puts(&b, ",\"started\":");
    put_str(&b, ts);
    aip_buf_puts(&b, "},\"clients\":");
    put_clients(&b, true);
    aip_buf_putc(&b, '}');
    viewer_send(s, b.data ? (const char *)b.data : "", b.len, true);
    aip_buf_free(&b);
    for (size_t i = 0; i < EV_REPLAY; i++) {
        const char *line = g_ring[(g_ring_next + i) % EV_REPLAY];
        if (line)
            viewer_send(s, line, strlen(line), true);
    }
}

void events_viewer_close(session *s)
{
    for (session **pp = &g_srv.viewers; *pp; pp = &(*pp)->next_viewer)
        if (*pp == s) {
            *pp = s->next_viewer;
            g_srv.nviewers--;
            return;
        }
}

void ev_emit(const char *kind, const session *s, const char *extra_json, const char *fmt, ...)
{
    g_srv.m.events++;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char ts[40];
    aip_format_timestamp(now_us(), ts, sizeof ts);
    aip_buf b;
    aip_buf_init(&b, 0);
    bputf(&b, "{\"type\":\"event\",\"seq\":%llu,\"ts\":", (unsigned long long)++g_seq);
    put_str(&b, ts);
    aip_buf_puts(&b, ",\"kind\":");
    put_str(&b, kind);
    aip_buf_puts(&b, ",\"client_id\":");
    put_str(&b, s ? s->client_id : NULL);
    aip_buf_puts(&b, ",\"text\":");
    put_str(&b, text);
    size_t xl = extra_json ? strlen(extra_json) : 0;
    if (xl > EV_MAX_EXTRA) /* bounded: the ring keeps every line */
        bputf(&b, ",\"extra_omitted_bytes\":%zu", xl);
    else if (xl) {
        aip_buf_putc(&b, ',');
        aip_buf_puts(&b, extra_json);
    }
    aip_buf_putc(&b, '}');
    if (aip_buf_nul(&b)) {
        aip_buf_free(&b);
        return;
    }
    for (session *v = g_srv.viewers; v; v = v->next_viewer)
        viewer_send(v, (const char *)b.data, b.len, false);
    /* the replay ring keeps the line itself */
    aip_free(g_ring[g_ring_next]);
    g_ring[g_ring_next] = (char *)aip_buf_steal(&b);
    g_ring_next = (g_ring_next + 1) % EV_REPLAY;
}

/* ---- system_info summaries -------------------------------------------------------------- */

/* The fields a summary keeps (UFO's, docs/protocol.md §4, less the lists and objects that make a
 * system_info big), each when its value is at most SI_FIELD_MAX bytes of JSON. */
static const char *const g_si_fields[] = {"device_id",       "platform",      "os_version",
                                          "hostname",        "ip_address",    "cpu_count",
                                          "memory_total_gb", "platform_type", "schema_version"};
#define SI_NFIELDS (sizeof g_si_fields / sizeof g_si_fields[0])

struct si_pick {
    const char *v[SI_NFIELDS];
    size_t n[SI_NFIELDS];
};

static void si_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    struct si_pick *pk = user;
    if (p->depth != 1 || !p->key[0] || n > SI_FIELD_MAX)
        return;
    for (size_t i = 0; i < SI_NFIELDS; i++)
        if (aip_jscan_key_eq(p->key[0], p->key_len[0], g_si_fields[i])) {
            pk->v[i] = v;
            pk->n[i] = n;
        }
}

char *si_summary_make(const char *si, size_t len)
{
    if (!si || len <= SI_INLINE)
        return NULL; /* shown whole */
    struct si_pick pk;
    memset(&pk, 0, sizeof pk);
    aip_jscan sc = {0};
    sc.visit = si_visit;
    sc.user = &pk;
    sc.visit_depth = 1;
    aip_buf b;
    aip_buf_init(&b, 0);
    aip_buf_putc(&b, '{');
    /* the text was validated by the decoder: a failure here leaves an empty summary */
    if (aip_jscan_run(&sc, si, len) == 0)
        for (size_t i = 0; i < SI_NFIELDS; i++)
            if (pk.v[i]) {
                if (b.len > 1)
                    aip_buf_putc(&b, ',');
                put_str(&b, g_si_fields[i]);
                aip_buf_putc(&b, ':');
                aip_buf_append(&b, pk.v[i], pk.n[i]);
            }
    aip_buf_putc(&b, '}');
    if (aip_buf_nul(&b)) {
        aip_buf_free(&b);
        return aip_strdup("{}");
    }
    return (char *)aip_buf_steal(&b);
}

/* ---- task records ---------------------------------------------------------------------- */

static void record_free(task_record *r)
{
    aip_free(r->task_name);
    aip_free(r->session_id);
    aip_free(r->client_id);
    aip_free(r->result);
    aip_free(r->error);
    aip_free(r);
}

static void record_unlink(task_record *r, task_record *prev)
{
    if (prev)
        prev->next = r->next;
    else
        g_srv.rec_head = r->next;
    if (g_srv.rec_tail == r)
        g_srv.rec_tail = prev;
    strmap_del(&g_srv.results, r->task_name);
    record_free(r);
}

/* Drops the oldest finished record (or, when every record is pending, the oldest). */
static void record_evict(void)
{
    task_record *prev = NULL, *r = g_srv.rec_head;
    while (r && r->state == 0) {
        prev = r;
        r = r->next;
    }
    if (!r) {
        r = g_srv.rec_head;
        prev = NULL;
    }
    if (r)
        record_unlink(r, prev);
}

task_record *record_open(const char *task_name, const char *session_id, const char *client_id)
{
    if (!task_name)
        return NULL;
    task_record *old = strmap_get(&g_srv.results, task_name);
    if (old && old->state == 0)
        return NULL; /* a pending task already has this name */
    if (old) {       /* a finished one: replaced */
        task_record *prev = NULL;
        for (task_record *r = g_srv.rec_head; r && r != old; r = r->next)
            prev = r;
        record_unlink(old, prev);
    }
    if (g_srv.results.count >= MAX_TASK_RECORDS)
        record_evict();
    task_record *r = aip_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->task_name = aip_strdup(task_name);
    r->session_id = aip_strdup(session_id);
    r->client_id = client_id ? aip_strdup(client_id) : NULL;
    if (!r->task_name || !r->session_id || strmap_put(&g_srv.results, r->task_name, r)) {
        record_free(r);
        return NULL;
    }
    if (g_srv.rec_tail)
        g_srv.rec_tail->next = r;
    else
        g_srv.rec_head = r;
    g_srv.rec_tail = r;
    return r;
}

void record_finish(const char *task_name, const char *session_id, bool completed,
                   const char *result, const char *error)
{
    task_record *r = task_name ? strmap_get(&g_srv.results, task_name) : NULL;
    if (!r || r->state != 0 || strcmp(r->session_id, session_id) != 0)
        return;
    r->state = completed ? 1 : 2;
    r->error = error ? aip_strdup(error) : NULL;
    if (result && strlen(result) <= MAX_RECORD_RESULT) {
        r->result = aip_strdup(result);
    } else if (result && !r->error) { /* kept bounded: 1024 records x 64 KiB at most */
        char why[120];
        snprintf(why, sizeof why, "the result (%zu bytes) was too large to keep (%u at most)",
                 strlen(result), MAX_RECORD_RESULT);
        r->error = aip_strdup(why);
    }
}

const task_record *record_get(const char *task_name)
{
    return strmap_get(&g_srv.results, task_name);
}

void events_free(void)
{
    for (size_t i = 0; i < EV_REPLAY; i++) {
        aip_free(g_ring[i]);
        g_ring[i] = NULL;
    }
    for (task_record *r = g_srv.rec_head, *n; r; r = n) {
        n = r->next;
        record_free(r);
    }
    g_srv.rec_head = g_srv.rec_tail = NULL;
    strmap_free(&g_srv.results);
}
