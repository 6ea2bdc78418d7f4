/* SPDX-License-Identifier: MIT */
/*
 * aip-bench modes that drive libwebsockets directly (no aip_conn on the measured path):
 *
 *   raw    the transport ceiling: 200-byte frames echoed by aip-test-server's /echo, C in
 *          flight over one connection, no codec, no futures.
 *   fleet  N device connections on ONE lws context in one thread (registering, heartbeating,
 *          answering command batches) while a constellation (an aip_conn) drives tasks through
 *          the server to random devices.
 */
#include "bench.h"

#include <aip/aip.h>
#include <libwebsockets.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- shared helpers ------------------------------------------------------------------------ */

struct url_parts {
    char buf[512];
    const char *scheme, *host, *path;
    int port;
    char path_buf[512];
};

static int split_url(const char *url, struct url_parts *u)
{
    if (snprintf(u->buf, sizeof u->buf, "%s", url) >= (int)sizeof u->buf)
        return -1;
    const char *p = NULL;
    if (lws_parse_uri(u->buf, &u->scheme, &u->host, &u->port, &p))
        return -1;
    if (strcmp(u->scheme, "ws") != 0) {
        fprintf(stderr, "aip-bench: only ws:// URLs are measured here\n");
        return -1;
    }
    /* lws_parse_uri drops the leading '/' */
    snprintf(u->path_buf, sizeof u->path_buf, "/%s", p ? p : "");
    u->path = u->path_buf;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            fprintf(stderr, "aip-bench: cannot raise RLIMIT_NOFILE: %s\n", strerror(errno));
    }
}

/* ---- raw ------------------------------------------------------------------------------------- */

#define RAW_FRAME 200

struct raw_state {
    struct lws_context *ctx;
    struct lws *wsi;
    int inflight;
    uint64_t budget;     /* frames left to issue (UINT64_MAX with --seconds) */
    uint64_t issued;     /* frames issued (timestamped), sent or not */
    uint64_t sent;       /* frames written */
    uint64_t received;   /* frames echoed back */
    uint64_t *issued_ns; /* ring of size inflight: issue time of frame k at k % inflight */
    uint64_t mismatched, errors;
    bool stop, done, failed;
    bench_lat lat;
    unsigned char frame[LWS_PRE + RAW_FRAME]; /* lws masks client frames in place */
    unsigned char pattern[RAW_FRAME];
    unsigned char rx[RAW_FRAME];
    size_t rxlen;
};

static void raw_issue(struct raw_state *r)
{
    while (!r->stop && r->budget && r->issued - r->received < (uint64_t)r->inflight) {
        r->issued_ns[r->issued % (uint64_t)r->inflight] = bench_now_ns();
        r->issued++;
        if (r->budget != UINT64_MAX)
            r->budget--;
    }
    if (r->sent < r->issued)
        lws_callback_on_writable(r->wsi);
}

static int raw_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    struct raw_state *r = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "aip-bench: cannot connect: %s\n", in ? (const char *)in : "?");
        r->failed = r->done = true;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        r->wsi = wsi;
        raw_issue(r);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        /* as many frames as the socket takes, as libaip's transport does */
        while (r->sent < r->issued && !lws_send_pipe_choked(wsi)) {
            uint64_t seq = r->sent;
            memcpy(r->frame + LWS_PRE, r->pattern, RAW_FRAME);
            memcpy(r->frame + LWS_PRE, &seq, sizeof seq);
            if (lws_write(wsi, r->frame + LWS_PRE, RAW_FRAME, LWS_WRITE_BINARY) < RAW_FRAME) {
                r->errors++;
                r->failed = r->done = true;
                return -1;
            }
            r->sent++;
        }
        if (r->sent < r->issued)
            lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (r->rxlen + len <= sizeof r->rx)
            memcpy(r->rx + r->rxlen, in, len);
        r->rxlen += len;
        if (!lws_is_final_fragment(wsi))
            return 0;
        {
            uint64_t seq = 0, k = r->received;
            if (r->rxlen == RAW_FRAME)
                memcpy(&seq, r->rx, sizeof seq);
            r->rxlen = 0;
            if (k >= r->sent) {
                r->errors++;
                r->failed = r->done = true;
                return -1;
            }
            if (seq != k || memcmp(r->rx + 8, r->pattern + 8, RAW_FRAME - 8) != 0) {
                if (!r->mismatched)
                    fprintf(stderr, "aip-bench: echo %llu came back as %llu\n",
                            (unsigned long long)k, (unsigned long long)seq);
                r->mismatched++;
            } else
                bench_lat_add(&r->lat, bench_now_ns() - r->issued_ns[k % (uint64_t)r->inflight]);
            r->received++;
        }
        raw_issue(r);
        if (r->received == r->issued && (r->stop || !r->budget)) {
            r->done = true;
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!r->done) {
            fprintf(stderr, "aip-bench: the echo connection closed early\n");
            r->errors++;
            r->failed = true;
        }
        r->done = true;
        r->wsi = NULL;
        return 0;
    default: break;
    }
    return 0;
}

int bench_run_raw(const char *server, uint64_t requests, double seconds, int inflight)
{
    struct url_parts u;
    memset(&u, 0, sizeof u);
    if (split_url(server, &u))
        return 2;
    struct raw_state *r = calloc(1, sizeof *r);
    if (!r)
        return 1;
    r->inflight = inflight;
    r->budget = seconds > 0 ? UINT64_MAX : requests;
    r->issued_ns = calloc((size_t)inflight, sizeof *r->issued_ns);
    for (size_t i = 8; i < RAW_FRAME; i++)
        r->pattern[i] = (unsigned char)('a' + i % 26);
    static const struct lws_protocols protos[] = {
        {"raw-echo", raw_cb, 0, 4096, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    info.fd_limit_per_thread = 16;
    info.pt_serv_buf_size = 4096;
    info.user = r;
    r->ctx = r->issued_ns ? lws_create_context(&info) : NULL;
    if (!r->ctx) {
        free(r->issued_ns);
        free(r);
        return 1;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = r->ctx;
    ci.address = u.host;
    ci.port = u.port;
    ci.path = u.path;
    ci.host = u.host; /* no origin: not a browser */
    ci.local_protocol_name = "raw-echo";
    uint64_t t0 = bench_now_ns();
    if (!lws_client_connect_via_info(&ci)) {
        char shown[512];
        aip_redact_url(server, shown, sizeof shown); /* ?token= must not be printed */
        fprintf(stderr, "aip-bench: cannot start a connection to %s\n", shown);
        r->failed = r->done = true;
    }
    uint64_t first_ns = 0, deadline = 0;
    while (!r->done && lws_service(r->ctx, 0) >= 0) {
        if (!first_ns && r->wsi) {
            first_ns = bench_now_ns();
            if (seconds > 0)
                deadline = first_ns + (uint64_t)(seconds * 1e9);
        }
        if (deadline && !r->stop && bench_now_ns() >= deadline)
            r->stop = true;
        if (r->stop && r->wsi && r->received == r->sent && r->sent == r->issued) {
            r->done = true;
            break;
        }
    }
    uint64_t end = bench_now_ns();
    lws_context_destroy(r->ctx);
    double secs = (double)(end - (first_ns ? first_ns : t0)) / 1e9;
    bench_result res = {
        .mode = "raw",
        .encoding = "none",
        .threads = 1,
        .inflight = inflight,
        .requests = r->received + r->errors,
        .ok = r->received - r->mismatched,
        .errors = r->errors + (r->failed && !r->errors ? 1 : 0),
        .mismatched = r->mismatched,
        .seconds = secs,
    };
    bench_print(&res, &r->lat);
    int rc = res.errors == 0 && res.mismatched == 0 && res.requests > 0 ? 0 : 1;
    bench_lat_free(&r->lat);
    free(r->issued_ns);
    free(r);
    return rc;
}

/* ---- fleet ----------------------------------------------------------------------------------- */

struct fleet;

struct outq {
    struct outq *next;
    size_t len;
    bool binary;
    uint8_t *buf; /* [LWS_PRE | payload] */
};

struct device {
    struct fleet *fl;
    struct lws *wsi;
    int index;
    char id[48];
    _Atomic bool registered;
    bool closed;
    uint64_t connect_ns;
    struct device *hb_next; /* in its heartbeat wheel bucket */
    struct outq *qh, *qt;
    aip_buf rx;
};

struct fleet {
    struct lws_context *ctx;
    struct url_parts u;
    const char *token;
    bool proto;
    int n;
    struct device *devs;
    double ramp; /* connections per second */
    uint32_t heartbeat_ms;
    lws_sorted_usec_list_t sul_ramp, sul_wheel;
    /* Heartbeats: a wheel of HB_BUCKETS buckets ticked by one timer. lws 4.1's timers are a
     * sorted list (O(n) insert): one timer per device made 10,000 devices CPU-bound. */
    struct device **wheel;
    unsigned nbuckets, wheel_pos;
    uint64_t ramp_t0;
    int started;
    /* counters, touched on the fleet thread; read by main after join or as atomics */
    _Atomic int registered, connect_errors, closed_early;
    _Atomic uint64_t heartbeats_sent, heartbeat_acks, commands, malformed;
    bench_lat connect_lat; /* fleet thread only */
    _Atomic bool stop;
    pthread_t th;
};

static void dev_send(struct device *d, aip_msg *m)
{
    char ts[40];
    aip_format_timestamp(aip_wall_us(NULL), ts, sizeof ts);
    m->timestamp = ts;
    m->client_id = d->id;
    m->client_type = AIP_CLIENT_DEVICE;
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    int rc = aip_encode(d->fl->proto ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON, m, &b);
    m->timestamp = NULL;
    m->client_id = NULL;
    struct outq *q = rc ? NULL : calloc(1, sizeof *q);
    if (!q) {
        aip_buf_free(&b);
        return;
    }
    q->len = b.len;
    q->binary = d->fl->proto;
    q->buf = aip_buf_steal(&b);
    if (d->qt)
        d->qt->next = q;
    else
        d->qh = q;
    d->qt = q;
    if (d->wsi)
        lws_callback_on_writable(d->wsi);
}

#define HB_TICK_MS 50u

static void dev_heartbeat(struct device *d)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
    dev_send(d, &m);
    atomic_fetch_add(&d->fl->heartbeats_sent, 1);
}

static void wheel_tick(lws_sorted_usec_list_t *sul)
{
    struct fleet *fl = lws_container_of(sul, struct fleet, sul_wheel);
    if (atomic_load(&fl->stop))
        return;
    fl->wheel_pos = (fl->wheel_pos + 1) % fl->nbuckets;
    for (struct device *d = fl->wheel[fl->wheel_pos]; d; d = d->hb_next)
        if (d->wsi && !d->closed)
            dev_heartbeat(d);
    lws_sul_schedule(fl->ctx, 0, &fl->sul_wheel, wheel_tick, HB_TICK_MS * 1000);
}

static void dev_answer(struct device *d, aip_msg *cmd)
{
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, cmd->status);
    r.session_id = cmd->session_id;
    r.prev_response_id = cmd->response_id;
    r.has_action_results = true;
    for (size_t i = 0; i < cmd->n_actions; i++) {
        aip_result *res = aip_msg_add_result(&r);
        if (!res)
            break;
        res->status = AIP_RESULT_SUCCESS;
        res->result = "{\"fleet\":true}";
        res->call_id = cmd->actions[i].call_id;
    }
    dev_send(d, &r);
    /* borrowed strings: detach before clearing what r owns */
    for (size_t i = 0; i < r.n_action_results; i++) {
        r.action_results[i].result = NULL;
        r.action_results[i].call_id = NULL;
    }
    r.session_id = r.prev_response_id = NULL;
    aip_msg_clear(&r);
}

static void dev_frame(struct device *d, const uint8_t *data, size_t len, bool binary)
{
    aip_msg m;
    aip_decode_error e;
    if (aip_decode(binary ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON, AIP_ENVELOPE_SERVER, data, len,
                   NULL, &m, &e)) {
        atomic_fetch_add(&d->fl->malformed, 1);
        return;
    }
    switch (m.type) {
    case AIP_MSG_HEARTBEAT:
        if (!atomic_load(&d->registered)) {
            atomic_store(&d->registered, true);
            atomic_fetch_add(&d->fl->registered, 1);
            bench_lat_add(&d->fl->connect_lat, bench_now_ns() - d->connect_ns);
            /* heartbeats at a random phase so the fleet's are spread evenly */
            unsigned b = (unsigned)aip_random_below(NULL, d->fl->nbuckets);
            d->hb_next = d->fl->wheel[b];
            d->fl->wheel[b] = d;
        } else {
            atomic_fetch_add(&d->fl->heartbeat_acks, 1);
        }
        break;
    case AIP_MSG_COMMAND:
        atomic_fetch_add(&d->fl->commands, 1);
        dev_answer(d, &m);
        break;
    default: break; /* task_end copies, errors */
    }
    aip_msg_clear(&m);
}

static void dev_register(struct device *d)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_REGISTER, AIP_STATUS_OK);
    m.metadata = "{\"system_info\":{\"os\":\"linux\",\"fleet\":true}}";
    dev_send(d, &m);
}

static void dev_free_queue(struct device *d)
{
    for (struct outq *q = d->qh, *n; q; q = n) {
        n = q->next;
        aip_free(q->buf);
        free(q);
    }
    d->qh = d->qt = NULL;
}

static int fleet_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user;
    struct device *d = lws_get_opaque_user_data(wsi);
    if (!d)
        return 0;
    struct fleet *fl = d->fl;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (!atomic_load(&fl->stop) && atomic_fetch_add(&fl->connect_errors, 1) < 3)
            fprintf(stderr, "aip-bench: device %d cannot connect: %s\n", d->index,
                    in ? (const char *)in : "?");
        d->wsi = NULL;
        d->closed = true;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        d->wsi = wsi;
        dev_register(d);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        struct outq *q = d->qh;
        if (!q)
            return 0;
        if (lws_write(wsi, q->buf + LWS_PRE, q->len,
                      q->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)q->len)
            return -1;
        d->qh = q->next;
        if (!d->qh)
            d->qt = NULL;
        aip_free(q->buf);
        free(q);
        if (d->qh)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_is_first_fragment(wsi))
            d->rx.len = 0;
        if (aip_buf_append(&d->rx, in, len))
            return -1;
        if (lws_is_final_fragment(wsi)) {
            dev_frame(d, d->rx.data ? d->rx.data : (const uint8_t *)"", d->rx.len,
                      lws_frame_is_binary(wsi));
            d->rx.len = 0;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!atomic_load(&fl->stop) && atomic_fetch_add(&fl->closed_early, 1) < 3)
            fprintf(stderr, "aip-bench: device %d lost its connection\n", d->index);
        d->wsi = NULL;
        d->closed = true;
        return 0;
    default: break;
    }
    return 0;
}

static void fleet_connect(struct fleet *fl, struct device *d)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = fl->ctx;
    ci.address = fl->u.host;
    ci.port = fl->u.port;
    char path[700];
    if (fl->token)
        snprintf(path, sizeof path, "%s?token=%s", fl->u.path, fl->token);
    else
        snprintf(path, sizeof path, "%s", fl->u.path);
    ci.path = path;
    ci.host = fl->u.host; /* no origin: not a browser */
    ci.protocol = fl->proto ? AIP_PROTO_SUBPROTOCOL : NULL;
    ci.local_protocol_name = "fleet";
    ci.opaque_user_data = d;
    d->connect_ns = bench_now_ns();
    struct lws *w = lws_client_connect_via_info(&ci);
    if (!w && !d->closed) {
        atomic_fetch_add(&fl->connect_errors, 1);
        d->closed = true;
    }
}

static void fleet_ramp(lws_sorted_usec_list_t *sul)
{
    struct fleet *fl = lws_container_of(sul, struct fleet, sul_ramp);
    if (atomic_load(&fl->stop))
        return;
    double el = (double)(bench_now_ns() - fl->ramp_t0) / 1e9;
    int want = fl->ramp > 0 ? (int)(el * fl->ramp) + 1 : fl->n;
    if (want > fl->n)
        want = fl->n;
    while (fl->started < want)
        fleet_connect(fl, &fl->devs[fl->started++]);
    if (fl->started < fl->n)
        lws_sul_schedule(fl->ctx, 0, &fl->sul_ramp, fleet_ramp, 10 * 1000);
}

static void *fleet_thread(void *arg)
{
    struct fleet *fl = arg;
    fl->ramp_t0 = bench_now_ns();
    fleet_ramp(&fl->sul_ramp);
    lws_sul_schedule(fl->ctx, 0, &fl->sul_wheel, wheel_tick, HB_TICK_MS * 1000);
    while (!atomic_load(&fl->stop) && lws_service(fl->ctx, 0) >= 0)
        ;
    return NULL;
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            char *end;
            kb = strtol(line + 6, &end, 10);
            break;
        }
    (void)fclose(f);
    return kb;
}

/* utime + stime of a process, in clock ticks (-1 when unreadable): fields 14 and 15 of
 * /proc/PID/stat, counted after the command name (which may hold spaces). */
static long long proc_cpu_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    (void)fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    unsigned long long v[15] = {0};
    for (int field = 3; field <= 15; field++) { /* field 3 is the state letter */
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        char *end = p;
        if (field >= 4)
            v[field - 1] = strtoull(p, &end, 10);
        while (*end && *end != ' ')
            end++;
        p = end;
    }
    return (long long)(v[13] + v[14]);
}

struct task_slot {
    aip_future *f;
    uint64_t start_ns;
    _Atomic uint64_t end_ns;
};

static void task_done(aip_future *f, void *user)
{
    (void)f;
    struct task_slot *s = user;
    atomic_store_explicit(&s->end_ns, bench_now_ns(), memory_order_release);
}

int bench_run_fleet(const bench_fleet_opts *o)
{
    raise_nofile();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)o->devices + 64 > rl.rlim_cur) {
        fprintf(stderr,
                "aip-bench: %d devices need %d file descriptors; RLIMIT_NOFILE allows %llu\n",
                o->devices, o->devices + 64, (unsigned long long)rl.rlim_cur);
        return 1;
    }
    struct fleet *fl = calloc(1, sizeof *fl);
    if (!fl)
        return 1;
    if (split_url(o->server, &fl->u)) {
        free(fl);
        return 2;
    }
    fl->token = o->token;
    fl->proto = o->proto;
    fl->n = o->devices;
    fl->ramp = o->ramp;
    fl->heartbeat_ms = o->heartbeat_ms;
    fl->nbuckets = o->heartbeat_ms / HB_TICK_MS ? o->heartbeat_ms / HB_TICK_MS : 1;
    fl->devs = calloc((size_t)fl->n, sizeof *fl->devs);
    fl->wheel = calloc(fl->nbuckets, sizeof *fl->wheel);
    if (!fl->devs || !fl->wheel) {
        free(fl->devs);
        free(fl->wheel);
        free(fl);
        return 1;
    }
    long pid = (long)getpid();
    for (int i = 0; i < fl->n; i++) {
        struct device *d = &fl->devs[i];
        d->fl = fl;
        d->index = i;
        snprintf(d->id, sizeof d->id, "fleet-%ld-%d", pid, i);
        aip_buf_init(&d->rx, 0);
    }
    static const struct lws_protocols protos[] = {
        {"fleet", fleet_cb, 0, 4096, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    /* no fd_limit_per_thread: with it lws 4.1 finds a wsi by a linear search of its fd table
     * (wsi_from_fd); without it, by index in a table sized from RLIMIT_NOFILE */
    info.pt_serv_buf_size = 4096;
    info.timeout_secs = 60; /* a ramped connect may wait in the server's accept backlog */
    fl->ctx = lws_create_context(&info);
    if (!fl->ctx) {
        free(fl->devs);
        free(fl->wheel);
        free(fl);
        return 1;
    }
    long rss0 = o->server_pid > 0 ? proc_rss_kb(o->server_pid) : -1;
    long long cpu_ramp0 = o->server_pid > 0 ? proc_cpu_ticks(o->server_pid) : -1;
    uint64_t t0 = bench_now_ns();
    pthread_create(&fl->th, NULL, fleet_thread, fl);

    /* wait for every device to register (or fail), bounded */
    double ramp_s = fl->ramp > 0 ? fl->n / fl->ramp : 0;
    uint64_t wait_until = t0 + (uint64_t)((ramp_s + 30) * 1e9);
    int last_report = -1;
    while (bench_now_ns() < wait_until) {
        int reg = atomic_load(&fl->registered);
        int failed = atomic_load(&fl->connect_errors) + atomic_load(&fl->closed_early);
        if (reg + failed >= fl->n)
            break;
        if (reg / 1000 != last_report) {
            last_report = reg / 1000;
            fprintf(stderr, "aip-bench: %d/%d devices registered\n", reg, fl->n);
        }
        usleep(20 * 1000);
    }
    double connect_s = (double)(bench_now_ns() - t0) / 1e9;
    int registered = atomic_load(&fl->registered);
    fprintf(stderr, "aip-bench: %d/%d devices registered in %.1f s; steady state for %.0f s\n",
            registered, fl->n, connect_s, o->seconds);
    long long cpu_ramp1 = o->server_pid > 0 ? proc_cpu_ticks(o->server_pid) : -1;

    /* steady state: heartbeats from every device, tasks from one constellation */
    tool_reg_waiter w = TOOL_REG_WAITER_INIT;
    char cid[64];
    snprintf(cid, sizeof cid, "fleet-%ld-constellation", pid);
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = o->server;
    cfg.client_id = cid;
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.token = o->token;
    cfg.encoding = o->proto ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
    cfg.on_state = tool_reg_on_state;
    cfg.user = &w;
    aip_conn *c = NULL;
    uint64_t tasks = 0, task_ok = 0, task_err = 0;
    bench_lat task_lat = {0};
    long long cpu0 = -1, cpu1 = -1;
    double steady_s = 0;
    long rss1 = -1;
    int ntasks_max = o->task_rate > 0 ? (int)(o->task_rate * o->seconds) + 1 : 0;
    struct task_slot *slots = calloc((size_t)ntasks_max + 1, sizeof *slots);
    if (registered > 0 && slots && aip_conn_create(&cfg, &c) == 0 &&
        tool_reg_wait(&w, 10, "aip-bench") == 0) {
        cpu0 = o->server_pid > 0 ? proc_cpu_ticks(o->server_pid) : -1;
        uint64_t s0 = bench_now_ns(), end = s0 + (uint64_t)(o->seconds * 1e9);
        uint64_t next = s0;
        const char *req = "{\"actions\":[{\"tool_name\":\"get_device_info\",\"tool_type\":"
                          "\"data_collection\",\"parameters\":{}}]}";
        while (bench_now_ns() < end) {
            if (ntasks_max && (int)tasks < ntasks_max && bench_now_ns() >= next) {
                int k = (int)aip_random_below(NULL, (uint64_t)fl->n);
                for (int tries = 0; tries < fl->n && !atomic_load(&fl->devs[k].registered); tries++)
                    k = (k + 1) % fl->n;
                struct task_slot *s = &slots[tasks];
                aip_task_opts to = {
                    .request = req, .task_name = "fleet", .target_id = fl->devs[k].id};
                to.req.timeout_ms = 30000;
                to.req.callback = task_done;
                to.req.user = s;
                s->start_ns = bench_now_ns();
                if (aip_conn_send_task(c, &to, &s->f))
                    s->f = NULL;
                tasks++;
                next += (uint64_t)(1e9 / o->task_rate);
                continue;
            }
            usleep(1000);
        }
        steady_s = (double)(bench_now_ns() - s0) / 1e9;
        cpu1 = o->server_pid > 0 ? proc_cpu_ticks(o->server_pid) : -1;
        rss1 = o->server_pid > 0 ? proc_rss_kb(o->server_pid) : -1;
        /* collect the tasks (each bounded by its own timeout) */
        for (uint64_t i = 0; i < tasks; i++) {
            struct task_slot *s = &slots[i];
            if (!s->f) {
                task_err++;
                continue;
            }
            aip_future_wait(s->f, 35000);
            uint64_t e = atomic_load_explicit(&s->end_ns, memory_order_acquire);
            for (int spin = 0; !e && aip_future_status(s->f) == 0 && spin < 1000; spin++) {
                usleep(1000); /* the callback runs just after the waiter is woken */
                e = atomic_load_explicit(&s->end_ns, memory_order_acquire);
            }
            if (aip_future_status(s->f) == 0 && e) {
                task_ok++;
                bench_lat_add(&task_lat, e - s->start_ns);
            } else {
                if (!task_err)
                    fprintf(stderr, "aip-bench: task failed: %s %s\n",
                            aip_strerror(aip_future_status(s->f)),
                            aip_future_error(s->f) ? aip_future_error(s->f) : "");
                task_err++;
            }
            aip_future_release(s->f);
        }
    } else if (registered > 0) {
        fprintf(stderr, "aip-bench: the constellation could not register\n");
        task_err++;
    }
    aip_conn_destroy(c);
    free(slots);
    uint64_t hb_sent = atomic_load(&fl->heartbeats_sent),
             hb_acks = atomic_load(&fl->heartbeat_acks);
    atomic_store(&fl->stop, true);
    lws_cancel_service(fl->ctx);
    pthread_join(fl->th, NULL);
    int closed_early = atomic_load(&fl->closed_early), conn_err = atomic_load(&fl->connect_errors);
    lws_context_destroy(fl->ctx);
    for (int i = 0; i < fl->n; i++) {
        dev_free_queue(&fl->devs[i]);
        aip_buf_free(&fl->devs[i].rx);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long clk = sysconf(_SC_CLK_TCK);
    double cpu_pct = cpu0 >= 0 && cpu1 >= 0 && steady_s > 0
                         ? 100.0 * (double)(cpu1 - cpu0) / (double)clk / steady_s
                         : -1;
    double ramp_cpu_pct = cpu_ramp0 >= 0 && cpu_ramp1 >= 0 && connect_s > 0
                              ? 100.0 * (double)(cpu_ramp1 - cpu_ramp0) / (double)clk / connect_s
                              : -1;
    bench_lat_sort(&fl->connect_lat);
    bench_lat_sort(&task_lat);
    long per_conn_b =
        rss0 >= 0 && rss1 >= 0 && registered > 0 ? (rss1 - rss0) * 1024 / registered : -1;
    printf("{\"mode\":\"fleet\",\"encoding\":\"%s\",\"devices\":%d,\"registered\":%d,"
           "\"connect_errors\":%d,\"closed_early\":%d,\"connect_s\":%.2f,"
           "\"connect_p50_us\":%u,\"connect_p99_us\":%u,\"connect_max_us\":%u,"
           "\"heartbeat_ms\":%u,\"heartbeats_sent\":%llu,\"heartbeat_acks\":%llu,"
           "\"steady_s\":%.2f,\"tasks\":%llu,\"task_ok\":%llu,\"task_errors\":%llu,"
           "\"task_p50_us\":%u,\"task_p99_us\":%u,\"task_max_us\":%u,\"malformed\":%llu,"
           "\"server_rss_before_kb\":%ld,\"server_rss_kb\":%ld,\"server_rss_per_conn_b\":%ld,"
           "\"server_cpu_pct\":%.1f,\"server_ramp_cpu_pct\":%.1f,\"max_rss_kb\":%ld}\n",
           fl->proto ? "proto" : "json", fl->n, registered, conn_err, closed_early, connect_s,
           bench_lat_pct(&fl->connect_lat, 0.5), bench_lat_pct(&fl->connect_lat, 0.99),
           bench_lat_pct(&fl->connect_lat, 1.0), fl->heartbeat_ms, (unsigned long long)hb_sent,
           (unsigned long long)hb_acks, steady_s, (unsigned long long)tasks,
           (unsigned long long)task_ok, (unsigned long long)task_err, bench_lat_pct(&task_lat, 0.5),
           bench_lat_pct(&task_lat, 0.99), bench_lat_pct(&task_lat, 1.0),
           (unsigned long long)atomic_load(&fl->malformed), rss0, rss1, per_conn_b, cpu_pct,
           ramp_cpu_pct, ru.ru_maxrss);
    bool ok = registered == fl->n && conn_err == 0 && closed_early == 0 && task_err == 0 &&
              atomic_load(&fl->malformed) == 0;
    bench_lat_free(&fl->connect_lat);
    bench_lat_free(&task_lat);
    free(fl->devs);
    free(fl->wheel);
    free(fl);
    return ok ? 0 : 1;
}
