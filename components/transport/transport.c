/*
 * The WebSocket client link (see aip/internal/transport.h for the design note).
 *
 * Thread map of this file
 * - service thread: service_main() and everything it calls: lws_callback(), timers,
 *   start_connect(), link_ended(), write_one(), and the aip_transport_{drop,close,...} calls.
 * - any thread: aip_transport_send(), _wake(), _get_stats() — they touch only the queue under
 *   `qlock`, atomics, and lws_cancel_service().
 * - the caller of aip_transport_stop(): sets `stopping`, wakes the service thread, joins it.
 * - resolver threads: touch only their own job (see struct resolve_job).
 */
#include "aip/internal/transport.h"
#include "aip/internal/backoff.h"
#include "aip/internal/link_error.h"
#include "aip/internal/reassembler.h"
#include "aip/port.h"
#include "aip/redact.h"

#include <libwebsockets.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TX_FRAGMENT (64u * 1024u)
#define WRITE_BURST 16
#define RX_BUFFER   16384u
#define PROTO_NAME  "aip.v1.proto"
#define LOG_COMP    "transport"

/* ---- frames ------------------------------------------------------------------------------ */

/* A queued frame lives in the headroom of its own buffer: [node | LWS_PRE | payload]. */
typedef struct frame {
    struct frame *next;
    uint64_t link;
    size_t len, off;
    bool binary;
} frame;

#define NODE_SPACE ((sizeof(frame) + 15) & ~(size_t)15)

size_t aip_transport_headroom(void)
{
    return NODE_SPACE + LWS_PRE;
}

static uint8_t *frame_payload(frame *f)
{
    return (uint8_t *)f + NODE_SPACE + LWS_PRE;
}

/* ---- DNS on a helper thread ------------------------------------------------------------- */

struct resolve_job {
    aip_mutex m;
    int refs;
    bool done;
    int err;
    char host[256];
    char addr[INET6_ADDRSTRLEN];
    struct lws_context *ctx; /* NULL once the transport no longer wants the answer */
    /* a proxy probe (see probe_main): host is the proxy's, request the CONNECT to send */
    unsigned port;
    int status; /* the proxy's answer, 0 when none was read */
    char request[768];
};

static void job_release(struct resolve_job *j)
{
    aip_mutex_lock(&j->m);
    int left = --j->refs;
    aip_mutex_unlock(&j->m);
    if (!left) {
        aip_mutex_destroy(&j->m);
        aip_free(j);
    }
}

static void *resolve_main(void *arg)
{
    struct resolve_job *j = arg;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(j->host, NULL, &hints, &res);
    char addr[INET6_ADDRSTRLEN] = "";
    if (!rc && res) {
        /* prefer IPv4: loopback-only and NAT'ed devices rarely route IPv6 */
        struct addrinfo *pick = res;
        for (struct addrinfo *a = res; a; a = a->ai_next)
            if (a->ai_family == AF_INET) {
                pick = a;
                break;
            }
        if (pick->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, addr, sizeof addr);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, addr,
                      sizeof addr);
    }
    if (res)
        freeaddrinfo(res);
    aip_mutex_lock(&j->m);
    j->err = rc ? rc : (addr[0] ? 0 : EAI_NONAME);
    memcpy(j->addr, addr, sizeof addr);
    j->done = true;
    if (j->ctx)
        lws_cancel_service(j->ctx); /* safe: ctx is cleared under j->m before it is destroyed */
    aip_mutex_unlock(&j->m);
    job_release(j);
    return NULL;
}

/* A proxy probe: lws 4.1.6 reads an HTTP CONNECT proxy's answer itself and reports any status
 * but 200 as "proxy not h1", keeping no status. To name the refusal (407: credentials, 403:
 * refused) a failed attempt sends the same CONNECT once more, from this helper thread, and
 * reads the status line (connect, write and read bounded by PROBE_TIMEOUT_S). */
#define PROBE_TIMEOUT_S 5

static int probe_connect(const char *host, unsigned port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {PROBE_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect() too */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static void *probe_main(void *arg)
{
    struct resolve_job *j = arg;
    int status = 0;
    int fd = probe_connect(j->host, j->port);
    if (fd >= 0) {
        size_t len = strlen(j->request);
        if (send(fd, j->request, len, MSG_NOSIGNAL) == (ssize_t)len) {
            char buf[512];
            size_t got = 0;
            for (;;) { /* until the status line is in */
                ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
                if (got == sizeof buf || memchr(buf, '\n', got))
                    break;
            }
            status = aip_http_status_line(buf, got);
        }
        close(fd);
    }
    aip_mutex_lock(&j->m);
    j->status = status;
    j->done = true;
    if (j->ctx)
        lws_cancel_service(j->ctx);
    aip_mutex_unlock(&j->m);
    job_release(j);
    return NULL;
}

/* ---- the transport ----------------------------------------------------------------------- */

enum link_state { L_IDLE, L_BACKOFF, L_RESOLVING, L_CONNECTING, L_PROBING, L_OPEN };

struct aip_timer {
    lws_sorted_usec_list_t sul;
    aip_transport *t;
    void (*cb)(void *user);
    void *user;
};

struct aip_transport {
    aip_transport_config cfg;
    aip_transport_events ev;
    void *user;

    /* parsed URL (owned) */
    bool tls;
    char *host;     /* for Host/SNI/cert check */
    char *path;     /* with ?token=... when token_mode is QUERY: never logged */
    char *redacted; /* scheme://host:port/path?key=<redacted> (aip_redact_url) */
    int port;
    char *token, *ca_file, *cert_file, *key_file, *thread_name;
    char *bearer; /* "Bearer <token>" */

    struct lws_context *ctx;
    struct lws_vhost *vh;           /* where the next connection is made */
    struct lws_vhost *wsi_vh;       /* the vhost of t->wsi */
    struct lws_vhost *retire_vh;    /* replaced by a TLS reload: destroyed once unused */
    int vh_variant, retire_variant; /* see make_vhost() */
    unsigned reloads;
    lws_sorted_usec_list_t sul_reload;
    char tls_error[160]; /* the last "SSL error" lws logged for this link attempt */
    /* the HTTP CONNECT proxy of t->vh, for the probe ("" when none); proxy_auth is the Basic
     * credentials (base64 of user:password, a secret: never logged) */
    char proxy_host[256];
    unsigned proxy_port;
    char proxy_auth[400];
    struct lws_protocols protocols[3];
    lws_retry_bo_t policy;
    uint32_t retry_table[1];

    aip_thread thread;
    bool thread_started;
    _Atomic bool stopping;
    int stop_code;
    char stop_reason[64];
    uint32_t stop_grace_ms;

    /* service-thread state */
    struct lws *wsi;
    struct lws *attempt; /* the wsi of the current attempt until its end was reported */
    enum link_state state;
    uint64_t link;
    bool proto_selected;
    uint64_t open_since_ns;
    bool marked_failed;
    bool marked_registered; /* the layer above registered on this link: progress */
    bool slow_next;         /* the attempt was refused for a lasting reason: aip_refusal_delay() */
    char address[INET6_ADDRSTRLEN + 2]; /* what the attempt connects to (the CONNECT target) */
    bool closing;                       /* a graceful close was requested: send it on WRITEABLE */
    int close_code;                     /* our close code (for drop/close) or the peer's */
    char close_reason[124];
    bool have_close; /* close_code/close_reason are set */
    int in_cb;       /* inside a callback for t->wsi */
    bool kill_requested;
    bool exit_loop;
    aip_reasm rx;
    bool rx_skip; /* a message was refused: inbound data is discarded until the link ends */
    frame *cur;
    lws_sorted_usec_list_t sul_connect, sul_stop;
    aip_backoff backoff;
    struct resolve_job *job;

    /* shared with producers */
    _Atomic bool wake_pending; /* a producer's lws_cancel_service() is not yet handled */
    aip_mutex qlock;
    frame *qhead, *qtail;
    size_t qbytes, qframes;
    uint64_t qlink;      /* the open link, or 0 */
    bool reload_pending; /* aip_transport_reload_tls(): the files below, for the service thread */
    char *rl_ca, *rl_cert, *rl_key;

    /* tls_insecure warnings (service thread): one per attempt, at most one per
     * INSECURE_WARN_EVERY_NS; the next line counts the attempts in between */
    uint64_t insecure_warned_ns;
    unsigned insecure_quiet;

    /* statistics (atomics: read from any thread) */
    _Atomic uint64_t st_frames_out, st_bytes_out, st_frames_in, st_bytes_in, st_dropped, st_full,
        st_connects, st_connect_failures, st_oversized;
};

static void stat_add(_Atomic uint64_t *s, uint64_t n)
{
    atomic_fetch_add_explicit(s, n, memory_order_relaxed);
}

/* ---- lws logging into ours ----------------------------------------------------------------- */

/* The transport whose service thread this is (NULL on other threads): lws logs a failed
 * certificate check only as a log line, so the line is kept for the link's close reason. */
static _Thread_local aip_transport *tl_service;

static void lws_log_emit(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    const char *ssl = strstr(buf, "SSL error: ");
    if (tl_service && ssl && !tl_service->tls_error[0])
        snprintf(tl_service->tls_error, sizeof tl_service->tls_error, "%s", ssl + 11);
    /* refusals the link's end names itself (see link_error.h): lws' own line is detail */
    bool named = strstr(buf, "proxy did not reply with h1") || strstr(buf, "got bad HTTP response");
    aip_log(named              ? AIP_LOG_DEBUG
            : level == LLL_ERR ? AIP_LOG_ERROR
                               : AIP_LOG_WARN,
            "lws", "%s", buf);
}

void aip_lws_log_to_aip(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

/* ---- URL --------------------------------------------------------------------------------- */

static int url_encode(const char *s, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~';
        if (o + 4 >= n)
            return AIP_E_INVAL;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
    return 0;
}

static int parse_url(aip_transport *t, const char *url)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        t->tls = false;
        p = url + 5;
        t->port = 80;
    } else if (strncmp(url, "wss://", 6) == 0) {
        t->tls = true;
        p = url + 6;
        t->port = 443;
    } else {
        return AIP_E_CONFIG;
    }
    const char *host_end;
    const char *h = p;
    if (*p == '[') { /* [v6]:port */
        host_end = strchr(p, ']');
        if (!host_end)
            return AIP_E_CONFIG;
        h = p + 1;
        p = host_end + 1;
    } else {
        p += strcspn(p, ":/?");
        host_end = p;
    }
    /* credentials in the URL (user:password@host) are not supported, and must not end up in a
     * host name that is logged */
    if (host_end == h || memchr(h, '@', strcspn(h, "/?#")))
        return AIP_E_CONFIG;
    t->host = aip_strndup(h, (size_t)(host_end - h));
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return AIP_E_CONFIG;
        t->port = (int)port;
        p = end;
    }
    const char *path = *p == '/' ? p : "/";
    if (*p && *p != '/' && *p != '?')
        return AIP_E_CONFIG;
    char enc[1024] = "";
    if (t->token && t->cfg.token_mode == AIP_TOKEN_QUERY && url_encode(t->token, enc, sizeof enc))
        return AIP_E_CONFIG;
    size_t n = strlen(path) + strlen(enc) + 16;
    t->path = aip_malloc(n);
    if (!t->path || !t->host)
        return AIP_E_NOMEM;
    if (*p == '?') /* a query without a path */
        snprintf(t->path, n, "/%s", p);
    else
        snprintf(t->path, n, "%s", path);
    if (enc[0])
        snprintf(t->path + strlen(t->path), n - strlen(t->path), "%stoken=%s",
                 strchr(t->path, '?') ? "&" : "?", enc);
    /* what the logs show: the effective URL, every query value (the token too) redacted */
    size_t fn = strlen(t->host) + strlen(t->path) + 32;
    char *full = aip_malloc(fn);
    if (!full)
        return AIP_E_NOMEM;
    bool v6 = strchr(t->host, ':') != NULL;
    snprintf(full, fn, "%s://%s%s%s:%d%s", t->tls ? "wss" : "ws", v6 ? "[" : "", t->host,
             v6 ? "]" : "", t->port, t->path);
    size_t rn = aip_redact_url(full, NULL, 0) + 1;
    if ((t->redacted = aip_malloc(rn)))
        aip_redact_url(full, t->redacted, rn);
    aip_free(full);
    return t->redacted ? 0 : AIP_E_NOMEM;
}

const char *aip_transport_url_redacted(const aip_transport *t)
{
    return t->redacted;
}

/* ---- queue ------------------------------------------------------------------------------- */

static void free_frame(frame *f)
{
    aip_free(f);
}

/* Drops every queued frame; returns how many. Caller holds qlock. */
static size_t flush_queue_locked(aip_transport *t)
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

void aip_transport_wake(aip_transport *t)
{
    lws_cancel_service(t->ctx);
}

void aip_transport_get_stats(aip_transport *t, aip_transport_stats *o)
{
    o->frames_out = atomic_load(&t->st_frames_out);
    o->bytes_out = atomic_load(&t->st_bytes_out);
    o->frames_in = atomic_load(&t->st_frames_in);
    o->bytes_in = atomic_load(&t->st_bytes_in);
    o->dropped_stale = atomic_load(&t->st_dropped);
    o->refused_full = atomic_load(&t->st_full);
    o->connects = atomic_load(&t->st_connects);
    o->connect_failures = atomic_load(&t->st_connect_failures);
    o->oversized_in = atomic_load(&t->st_oversized);
}

/* ---- timers -------------------------------------------------------------------------------- */

static void timer_fire(lws_sorted_usec_list_t *sul)
{
    aip_timer *tm = lws_container_of(sul, aip_timer, sul);
    tm->cb(tm->user);
}

aip_timer *aip_timer_create(aip_transport *t, void (*cb)(void *user), void *user)
{
    aip_timer *tm = aip_calloc(1, sizeof *tm);
    if (tm) {
        tm->t = t;
        tm->cb = cb;
        tm->user = user;
    }
    return tm;
}

void aip_timer_schedule(aip_timer *tm, uint64_t delay_us)
{
    lws_sul_schedule(tm->t->ctx, 0, &tm->sul, timer_fire, (lws_usec_t)delay_us);
}

void aip_timer_cancel(aip_timer *tm)
{
    lws_sul_cancel(&tm->sul);
}

void aip_timer_destroy(aip_timer *tm)
{
    if (!tm)
        return;
    if (tm->t->ctx)
        lws_sul_cancel(&tm->sul);
    aip_free(tm);
}

/* ---- link lifecycle (service thread) -------------------------------------------------------- */

static void apply_reload(lws_sorted_usec_list_t *sul);

static void start_connect(lws_sorted_usec_list_t *sul);

static void schedule_retry(aip_transport *t)
{
    if (atomic_load(&t->stopping)) {
        t->exit_loop = true;
        return;
    }
    uint32_t attempt = t->backoff.attempt;
    uint32_t delay = t->slow_next ? aip_refusal_delay(&t->backoff) : aip_backoff_next(&t->backoff);
    t->slow_next = false;
    t->state = L_BACKOFF;
    if (t->ev.on_backoff)
        t->ev.on_backoff(t->user, delay, attempt + 1);
    lws_sul_schedule(t->ctx, 0, &t->sul_connect, start_connect, (lws_usec_t)delay * 1000);
}

/* Every end of a link comes through here exactly once: a failed attempt, a closed link. */
static void link_ended(aip_transport *t, int code, const char *reason, bool was_open, int err)
{
    uint64_t link = t->link;
    t->wsi = NULL;
    t->attempt = NULL;
    t->closing = false;
    t->kill_requested = false;
    aip_mutex_lock(&t->qlock);
    t->qlink = 0;
    size_t dropped = flush_queue_locked(t);
    aip_mutex_unlock(&t->qlock);
    if (t->cur) {
        free_frame(t->cur);
        t->cur = NULL;
        dropped++;
    }
    stat_add(&t->st_dropped, dropped);
    aip_reasm_free(&t->rx);
    t->rx_skip = false;
    if (t->retire_vh) /* its connection is gone: destroy it from a timer, outside lws' close */
        lws_sul_schedule(t->ctx, 0, &t->sul_reload, apply_reload, 1);
    if (!was_open)
        stat_add(&t->st_connect_failures, 1);
    if (aip_backoff_progress(&t->backoff, was_open, t->marked_failed, t->marked_registered,
                             was_open ? (aip_now_ns(NULL) - t->open_since_ns) / 1000000u : 0,
                             t->cfg.stable_ms))
        aip_backoff_reset(&t->backoff);
    if (t->ev.on_close)
        t->ev.on_close(t->user, link, code, reason ? reason : "", was_open, err);
    schedule_retry(t);
}

#define INSECURE_WARN_EVERY_NS (10ull * 1000000000ull)

/* tls_insecure must never be silent: every connection attempt says so (rate-limited when
 * reconnects are fast, with a count of the attempts not reported). */
static void warn_insecure(aip_transport *t)
{
    uint64_t now = aip_now_ns(NULL);
    if (t->insecure_warned_ns && now - t->insecure_warned_ns < INSECURE_WARN_EVERY_NS) {
        t->insecure_quiet++;
        return;
    }
    char more[64] = "";
    if (t->insecure_quiet)
        snprintf(more, sizeof more, " (and %u earlier attempts)", t->insecure_quiet);
    aip_log(AIP_LOG_WARN, LOG_COMP,
            "tls_insecure is on: the certificate and host name of %s are NOT verified; anyone "
            "on the path can pose as the server and read the key%s",
            t->redacted, more);
    t->insecure_warned_ns = now;
    t->insecure_quiet = 0;
}

static void connect_to(aip_transport *t, const char *address)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = t->ctx;
    i.vhost = t->vh;
    t->wsi_vh = t->vh;
    t->tls_error[0] = 0;
    i.address = address;
    i.port = t->port;
    i.path = t->path;
    i.host = t->host;
    /* no origin: Origin is a browser's header (lws would send "http://<host>", without the
     * port); servers that guard against cross-site pages (aip-test-server) refuse foreign ones */
    i.ietf_version_or_minus_one = -1;
    i.protocol = t->cfg.offer_proto ? PROTO_NAME : NULL;
    i.local_protocol_name = "aip";
    i.userdata = t;
    i.pwsi = &t->wsi;
    i.retry_and_idle_policy = &t->policy;
    if (t->tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (t->cfg.tls_insecure) {
            warn_insecure(t);
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
        }
    }
    t->state = L_CONNECTING;
    t->have_close = false;
    t->marked_failed = false;
    t->marked_registered = false;
    t->slow_next = false;
    snprintf(t->address, sizeof t->address, "%s%s%s", strchr(address, ':') ? "[" : "", address,
             strchr(address, ':') ? "]" : "");
    t->proto_selected = false;
    if (!(t->attempt = lws_client_connect_via_info(&i))) {
        /* the synchronous failure path: no CONNECTION_ERROR callback will follow */
        link_ended(t, 1006, "connect failed", false, AIP_E_IO);
    }
}

static bool is_numeric_host(const char *h)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

static void abandon_job(aip_transport *t)
{
    if (!t->job)
        return;
    aip_mutex_lock(&t->job->m);
    t->job->ctx = NULL;
    aip_mutex_unlock(&t->job->m);
    job_release(t->job);
    t->job = NULL;
}

static void start_connect(lws_sorted_usec_list_t *sul)
{
    aip_transport *t = lws_container_of(sul, aip_transport, sul_connect);
    if (atomic_load(&t->stopping)) {
        t->exit_loop = true;
        return;
    }
    t->link++;
    if (is_numeric_host(t->host)) {
        connect_to(t, t->host);
        return;
    }
    struct resolve_job *j = aip_calloc(1, sizeof *j);
    if (!j || aip_mutex_init(&j->m)) {
        aip_free(j);
        link_ended(t, 1006, "out of memory", false, AIP_E_NOMEM);
        return;
    }
    j->refs = 2; /* ours and the resolver thread's */
    j->ctx = t->ctx;
    snprintf(j->host, sizeof j->host, "%s", t->host);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, resolve_main, j);
    pthread_attr_destroy(&attr);
    if (rc) {
        aip_mutex_destroy(&j->m);
        aip_free(j);
        link_ended(t, 1006, "cannot start the DNS thread", false, AIP_E_IO);
        return;
    }
    t->job = j;
    t->state = L_RESOLVING;
}

static void check_probe(aip_transport *t)
{
    aip_mutex_lock(&t->job->m);
    bool done = t->job->done;
    int status = t->job->status;
    aip_mutex_unlock(&t->job->m);
    if (!done)
        return;
    abandon_job(t);
    char why[224];
    int err = status >= 200 && status < 300
                  ? 0
                  : aip_link_proxy_refusal(status, t->proxy_auth[0] != 0, why, sizeof why);
    if (!err) { /* no answer to the probe, or it was let through: what lws said */
        snprintf(why, sizeof why,
                 "proxy not h1 (the proxy %.120s:%u did not answer the CONNECT "
                 "with 200)",
                 t->proxy_host, t->proxy_port);
        err = AIP_E_IO;
    }
    if (aip_link_error_is_final(err))
        t->slow_next = true;
    link_ended(t, 1006, why, false, err);
}

static void check_job(aip_transport *t)
{
    if (t->job && t->state == L_PROBING) {
        check_probe(t);
        return;
    }
    if (!t->job || t->state != L_RESOLVING)
        return;
    aip_mutex_lock(&t->job->m);
    bool done = t->job->done;
    int err = t->job->err;
    char addr[INET6_ADDRSTRLEN];
    memcpy(addr, t->job->addr, sizeof addr);
    aip_mutex_unlock(&t->job->m);
    if (!done)
        return;
    abandon_job(t);
    if (err) {
        char why[160];
        snprintf(why, sizeof why, "cannot resolve %s: %s", t->host, gai_strerror(err));
        link_ended(t, 1006, why, false, AIP_E_IO);
        return;
    }
    connect_to(t, addr);
}

/* After lws' "proxy not h1": asks the proxy once more, from a helper thread, to learn its
 * status (see probe_main). The attempt ends when the answer is in (check_probe). Returns 0
 * when the probe started; nonzero: end the attempt now. */
static int start_probe(aip_transport *t)
{
    if (!t->proxy_port || !t->address[0])
        return -1;
    struct resolve_job *j = aip_calloc(1, sizeof *j);
    if (!j || aip_mutex_init(&j->m)) {
        aip_free(j);
        return -1;
    }
    j->refs = 2;
    j->ctx = t->ctx;
    j->port = t->proxy_port;
    snprintf(j->host, sizeof j->host, "%s", t->proxy_host);
    /* the request lws sends (client-handshake.c), with the same credentials */
    int n = snprintf(j->request, sizeof j->request,
                     "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\nUser-agent: lws\r\n%s%s%s\r\n",
                     t->address, t->port, t->address, t->port,
                     t->proxy_auth[0] ? "Proxy-authorization: basic " : "", t->proxy_auth,
                     t->proxy_auth[0] ? "\r\n" : "");
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc =
        n > 0 && (size_t)n < sizeof j->request ? pthread_create(&th, &attr, probe_main, j) : -1;
    pthread_attr_destroy(&attr);
    if (rc) {
        aip_mutex_destroy(&j->m);
        aip_free(j);
        return -1;
    }
    t->job = j;
    t->state = L_PROBING;
    return 0;
}

/* ---- service-thread API -------------------------------------------------------------------- */

void aip_transport_drop(aip_transport *t, int code, const char *reason)
{
    if (!t->wsi)
        return;
    t->close_code = code;
    snprintf(t->close_reason, sizeof t->close_reason, "%s", reason ? reason : "");
    t->have_close = true;
    if (t->in_cb) {
        t->kill_requested = true; /* the callback returns -1 */
        return;
    }
    lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

void aip_transport_close(aip_transport *t, int code, const char *reason)
{
    if (!t->wsi || t->state != L_OPEN)
        return;
    t->closing = true;
    t->close_code = code;
    snprintf(t->close_reason, sizeof t->close_reason, "%s", reason ? reason : "");
    t->have_close = true;
    lws_callback_on_writable(t->wsi);
}

void aip_transport_mark_failed(aip_transport *t)
{
    t->marked_failed = true;
}

void aip_transport_mark_registered(aip_transport *t)
{
    t->marked_registered = true;
}

void aip_transport_mark_refused(aip_transport *t)
{
    t->marked_failed = true;
    t->slow_next = true;
}

void aip_transport_alive(aip_transport *t)
{
    if (t->wsi && t->state == L_OPEN)
        lws_validity_confirmed(t->wsi);
}

/* ---- writing ------------------------------------------------------------------------------- */

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
        aip_log(AIP_LOG_WARN, LOG_COMP, "write failed on %s", t->redacted);
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
static int write_burst(aip_transport *t, struct lws *wsi)
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

/* ---- reading ------------------------------------------------------------------------------- */

static int on_receive(aip_transport *t, struct lws *wsi, const void *in, size_t len)
{
    if (t->rx_skip) /* after a refusal, until the link ends: dropped as it arrives */
        return 0;
    int rc = aip_reasm_feed(&t->rx, in, len, lws_is_first_fragment(wsi) != 0,
                            lws_is_final_fragment(wsi) != 0, lws_frame_is_binary(wsi) != 0,
                            lws_remaining_packet_payload(wsi));
    if (rc == AIP_REASM_MORE)
        return 0;
    if (rc == AIP_E_NOMEM) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "out of memory reassembling a message");
        return -1;
    }
    if (rc == AIP_REASM_OVERSIZED) { /* skipped, never buffered: the link stays up */
        stat_add(&t->st_oversized, 1);
        size_t n;
        const uint8_t *p = aip_reasm_prefix(&t->rx, &n);
        t->in_cb++;
        if (t->ev.on_oversized)
            t->ev.on_oversized(t->user, t->link, p, n, aip_reasm_binary(&t->rx));
        t->in_cb--;
        return t->kill_requested ? -1 : 0;
    }
    if (rc == AIP_E_MALFORMED) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "refusing a text message that is not UTF-8 (close 1007)");
        aip_reasm_reset(&t->rx);
        /* Close from WRITEABLE, not from here: lws 4.1.6 corrupts its rx buffer when
         * lws_close_reason() is called in CLIENT_RECEIVE while it is spilling a frame larger
         * than that buffer (lws issue #3412; seen here under valgrind). Until the close goes
         * out, inbound data is discarded chunk by chunk. */
        t->rx_skip = true;
        aip_transport_close(t, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        return 0;
    }
    stat_add(&t->st_frames_in, 1);
    stat_add(&t->st_bytes_in, aip_reasm_len(&t->rx));
    t->in_cb++;
    if (t->ev.on_frame)
        t->ev.on_frame(t->user, t->link, aip_reasm_data(&t->rx), aip_reasm_len(&t->rx),
                       aip_reasm_binary(&t->rx));
    t->in_cb--;
    aip_reasm_reset(&t->rx); /* keeps a small buffer, frees a large one */
    return t->kill_requested ? -1 : 0;
}

/* ---- stopping (service thread) ------------------------------------------------------------ */

static void stop_deadline(lws_sorted_usec_list_t *sul)
{
    aip_transport *t = lws_container_of(sul, aip_transport, sul_stop);
    t->exit_loop = true;
}

/* Ends the loop: with a close handshake when a link is open (bounded by the grace period),
 * at once otherwise. Runs on every wake while stopping; acts once. */
static void begin_stop(aip_transport *t)
{
    if (t->exit_loop)
        return;
    if (t->closing) { /* a close is already under way: still bound the wait by the grace */
        if (!lws_dll2_is_detached(&t->sul_stop.list))
            return;
        lws_sul_schedule(t->ctx, 0, &t->sul_stop, stop_deadline,
                         (lws_usec_t)t->stop_grace_ms * 1000);
        return;
    }
    lws_sul_cancel(&t->sul_connect);
    abandon_job(t);
    if (t->state == L_OPEN && t->wsi) {
        aip_transport_close(t, t->stop_code, t->stop_reason);
        lws_sul_schedule(t->ctx, 0, &t->sul_stop, stop_deadline,
                         (lws_usec_t)t->stop_grace_ms * 1000);
        return;
    }
    if (t->wsi) /* still connecting */
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    t->exit_loop = true;
}

/* ---- the lws callback ---------------------------------------------------------------------- */

/* Did the attempt carry a token (Bearer, ?token= added from the config, or in the URL)? */
static bool link_has_token(const aip_transport *t)
{
    return t->bearer || strstr(t->path, "?token=") || strstr(t->path, "&token=");
}

/* Why a connection attempt failed, for the log: a certificate check lws logged names the
 * verification failure instead of OpenSSL's generic code; a TLS server that hangs up during
 * the handshake while we sent no client certificate is probably asking for one. */
static void attempt_failure(aip_transport *t, const char *lws_reason, char *why, size_t n)
{
    if (t->tls_error[0])
        snprintf(why, n, "TLS handshake failed: %.*s", (int)strcspn(t->tls_error, "("),
                 t->tls_error);
    else if (t->tls && !t->cert_file &&
             (strcmp(lws_reason, "read failed") == 0 ||
              strcmp(lws_reason, "Closed before conn") == 0))
        snprintf(why, n, "%s (no client certificate given: does the server require one?)",
                 lws_reason);
    else
        snprintf(why, n, "%s", lws_reason);
    size_t len = strlen(why);
    while (len && why[len - 1] == ' ')
        why[--len] = 0;
}

static int lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    aip_transport *t = lws_context_user(lws_get_context(wsi));
    if (!t)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Broadcast to every protocol: act once (protocol "aip" only). Always return 0. */
        if (!lws_get_protocol(wsi) || strcmp(lws_get_protocol(wsi)->name, "aip") != 0 ||
            (lws_get_vhost(wsi) && lws_get_vhost(wsi) != t->vh))
            return 0;
        atomic_store(&t->wake_pending, false);
        if (atomic_load(&t->stopping)) {
            begin_stop(t);
            return 0;
        }
        aip_mutex_lock(&t->qlock);
        bool reload = t->reload_pending;
        aip_mutex_unlock(&t->qlock);
        if (reload) /* vhosts are made and destroyed from a timer, not inside this broadcast */
            lws_sul_schedule(t->ctx, 0, &t->sul_reload, apply_reload, 1);
        check_job(t);
        if (t->wsi && t->state == L_OPEN) {
            aip_mutex_lock(&t->qlock);
            bool more = t->qhead != NULL;
            aip_mutex_unlock(&t->qlock);
            if (more)
                lws_callback_on_writable(t->wsi);
        }
        if (t->ev.on_wake)
            t->ev.on_wake(t->user);
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (wsi == t->wsi && t->bearer) {
            unsigned char **p = (unsigned char **)in, *end = (*p) + len;
            if (lws_add_http_header_by_name(
                    wsi, (const unsigned char *)"authorization:", (const unsigned char *)t->bearer,
                    (int)strlen(t->bearer), p, end))
                return -1;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        char buf[64];
        int n = lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_PROTOCOL);
        t->proto_selected = n > 0 && strcmp(buf, PROTO_NAME) == 0;
        return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (wsi != t->wsi)
            return 0;
        t->state = L_OPEN;
        t->open_since_ns = aip_now_ns(NULL);
        stat_add(&t->st_connects, 1);
        aip_mutex_lock(&t->qlock);
        t->qlink = t->link;
        aip_mutex_unlock(&t->qlock);
        t->in_cb++;
        if (t->ev.on_open)
            t->ev.on_open(t->user, t->link, t->proto_selected);
        t->in_cb--;
        if (t->kill_requested) {
            /* returning nonzero here would be reported as a connection error (lws #3098) */
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi != t->wsi)
            return 0;
        return on_receive(t, wsi, in, len);

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (wsi != t->wsi)
            return 0;
        if (t->kill_requested)
            return -1;
        if (t->closing) {
            lws_close_reason(wsi, (enum lws_close_status)t->close_code,
                             (unsigned char *)t->close_reason, strlen(t->close_reason));
            return -1;
        }
        return write_burst(t, wsi);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == t->wsi && !t->have_close) {
            const unsigned char *b = in;
            t->close_code = len >= 2 ? (b[0] << 8) | b[1] : 1005;
            size_t rl = len > 2 ? len - 2 : 0;
            if (rl >= sizeof t->close_reason)
                rl = sizeof t->close_reason - 1;
            memcpy(t->close_reason, len > 2 ? (const char *)b + 2 : "", rl);
            t->close_reason[rl] = 0;
            t->have_close = true;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        if (wsi != t->wsi && t->wsi)
            return 0;
        const char *r = in ? (const char *)in : "connection error";
        char why[224];
        int err = 0;
        if (strncmp(r, "HS: ws upgrade", 14) == 0) /* "... response not 101", "... unauthorized" */
            err = aip_link_upgrade_refusal((int)lws_http_client_http_response(wsi),
                                           link_has_token(t), why, sizeof why);
        else if (strcmp(r, "proxy not h1") == 0) {
            t->wsi = NULL; /* lws closes it; the attempt ends when the probe answers */
            t->attempt = NULL;
            if (start_probe(t) == 0)
                return 0;
        }
        if (!err) {
            attempt_failure(t, r, why, sizeof why);
            err = t->tls_error[0] ? AIP_E_TLS : AIP_E_IO;
        }
        if (aip_link_error_is_final(err))
            t->slow_next = true;
        link_ended(t, 1006, why, false, err);
        return 0;
    }

    case LWS_CALLBACK_WSI_DESTROY:
        /* lws 4.1.6 can free a client wsi that fails late in the TLS handshake (a server that
         * refuses our certificate after the client's side of TLS 1.3 finished) without either
         * CLIENT_CONNECTION_ERROR or CLIENT_CLOSED: the attempt would hang forever. */
        if (wsi == t->attempt) {
            bool was_open = t->state == L_OPEN;
            char why[224] = "connection lost";
            if (!was_open)
                attempt_failure(t, "Closed before conn", why, sizeof why);
            link_ended(t, 1006, why, was_open,
                       was_open          ? AIP_E_CONN_LOST
                       : t->tls_error[0] ? AIP_E_TLS
                                         : AIP_E_IO);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi != t->wsi)
            return 0;
        if (!t->have_close) {
            t->close_code = 1006;
            snprintf(t->close_reason, sizeof t->close_reason, "connection lost");
        }
        if (atomic_load(&t->stopping))
            t->exit_loop = true;
        link_ended(t, t->close_code, t->close_reason, true, AIP_E_CONN_LOST);
        return 0;

    default: return 0;
    }
}

/* ---- proxies ------------------------------------------------------------------------------ */

static bool is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0;
}

/* "http://[user:password@]host:port/" -> "[user:password@]host" and port, the form lws takes
 * (it sends the credentials as Basic proxy authorization, as written). Never logged as is. */
static int parse_proxy(const char *v, char *host, size_t len, unsigned int *port)
{
    const char *p = strstr(v, "://");
    p = p ? p + 3 : v;
    size_t an = strcspn(p, "/?#"); /* the authority; its userinfo ends at the last '@' */
    const char *h = p;
    for (size_t i = 0; i < an; i++)
        if (p[i] == '@')
            h = p + i + 1;
    size_t hl = (size_t)(h - p) + strcspn(h, ":/");
    if (h[0] == ':' || hl >= len || p[hl] != ':')
        return -1;
    memcpy(host, p, hl);
    host[hl] = 0;
    long n = strtol(p + hl + 1, NULL, 10);
    if (n <= 0 || n > 65535)
        return -1;
    *port = (unsigned int)n;
    return 0;
}

/* Keeps the proxy of the vhost being made for the probe: "[user:password@]host" as
 * parse_proxy() gives it (lws_set_proxy() sends the part before the last '@' as Basic
 * credentials, as written). Clears it with host NULL. */
static void remember_proxy(aip_transport *t, const char *host, unsigned port)
{
    t->proxy_host[0] = 0;
    t->proxy_auth[0] = 0;
    t->proxy_port = 0;
    if (!host)
        return;
    const char *at = strrchr(host, '@');
    const char *h = at ? at + 1 : host;
    if (!h[0] || strlen(h) >= sizeof t->proxy_host)
        return;
    if (at && lws_b64_encode_string(host, (int)(at - host), t->proxy_auth,
                                    (int)sizeof t->proxy_auth) < 0) {
        t->proxy_auth[0] = 0;
        return;
    }
    snprintf(t->proxy_host, sizeof t->proxy_host, "%s", h);
    t->proxy_port = port;
}

/* Says which proxy the connections of this vhost go through, never its password. */
static void log_proxy(const char *var, const char *value)
{
    char shown[300];
    aip_redact_url(value, shown, sizeof shown);
    aip_log(AIP_LOG_INFO, LOG_COMP, "connecting through the HTTP CONNECT proxy %s (%s)", shown,
            var);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static char *dup_opt(const char *s)
{
    return s ? aip_strdup(s) : NULL;
}

/* The client vhost: where the TLS files are loaded (OpenSSL context, CA store). A TLS reload
 * makes a new one; the lws context is never re-created. */
/* libwebsockets 4.1 shares one OpenSSL client context between vhosts whose TLS settings
 * hash the same, and it hashes the file *names*, not their contents: a vhost made after the
 * files were rotated would silently reuse the old context (old CA store, old certificate) as
 * long as an older vhost lives. Each live vhost therefore gets a different "variant": an
 * OpenSSL option bit that only a TLS server reads (a no-op for a client), which enters the
 * hash. Three variants suffice: the open link's vhost, the current one, the new one. */
#if defined(LWS_WITH_TLS) && defined(SSL_OP_CIPHER_SERVER_PREFERENCE) && \
    defined(SSL_OP_PRIORITIZE_CHACHA)
static const long vh_variant_opt[3] = {0, SSL_OP_CIPHER_SERVER_PREFERENCE,
                                       SSL_OP_PRIORITIZE_CHACHA};
#define VH_VARIANTS 3
#else
#define VH_VARIANTS 1
#endif

static struct lws_vhost *make_vhost(aip_transport *t, int variant)
{
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.port = CONTEXT_PORT_NO_LISTEN;
    vi.vhost_name = "aip-client";
    vi.protocols = t->protocols;
    /* No LWS_SERVER_OPTION_VALIDATE_UTF8: lws 4.1.6 checks it one byte at a time in its
     * payload parser (about 5% of a request's instructions); the reassembler checks each
     * complete text message instead, eight bytes at a time, and closes 1007 the same way. */
    vi.options = 0;
#if defined(LWS_WITH_TLS)
    if (t->tls) {
        vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        vi.client_ssl_ca_filepath = t->ca_file;
        vi.client_ssl_cert_filepath = t->cert_file;
        vi.client_ssl_private_key_filepath = t->key_file;
#if VH_VARIANTS > 1
        vi.ssl_client_options_set = vh_variant_opt[variant % VH_VARIANTS];
#endif
    }
#endif
    (void)variant;
    vi.retry_and_idle_policy = &t->policy;
    /* Proxies: libwebsockets reads http_proxy by itself (HTTP CONNECT proxies only; Debian's
     * build has no SOCKS5). For wss:// we also honour https_proxy, as curl does, except for
     * loopback servers. */
    char proxy_host[256];
    const char *hp = getenv("https_proxy") ? getenv("https_proxy") : getenv("HTTPS_PROXY");
    const char *plain = getenv("http_proxy");
    unsigned plain_port = 0;
    if (t->tls && hp && hp[0] && !is_loopback(t->host) &&
        parse_proxy(hp, proxy_host, sizeof proxy_host, &vi.http_proxy_port) == 0) {
        vi.http_proxy_address = proxy_host;
        log_proxy("https_proxy", hp);
        remember_proxy(t, proxy_host, vi.http_proxy_port);
    } else if (plain && plain[0]) {
        log_proxy("http_proxy", plain); /* lws reads it itself */
        if (parse_proxy(plain, proxy_host, sizeof proxy_host, &plain_port) == 0)
            remember_proxy(t, proxy_host, plain_port);
        else
            remember_proxy(t, NULL, 0);
    } else {
        remember_proxy(t, NULL, 0);
    }
    struct lws_vhost *vh = lws_create_vhost(t->ctx, &vi);
    if (!vh)
        aip_log(AIP_LOG_ERROR, LOG_COMP,
                "cannot create the client vhost (certificate files? ca %s, cert %s, key %s)",
                t->ca_file ? t->ca_file : "system", t->cert_file ? t->cert_file : "none",
                t->key_file ? t->key_file : "none");
    return vh;
}

/* ---- TLS reload (service thread, from a timer) ---------------------------------------------- */

/* A vhost replaced by a reload stays while the connection made on it lasts. */
static void retire_unused(aip_transport *t)
{
    if (t->retire_vh && !(t->wsi && t->wsi_vh == t->retire_vh)) {
        lws_vhost_destroy(t->retire_vh);
        t->retire_vh = NULL;
    }
}

static void apply_reload(lws_sorted_usec_list_t *sul)
{
    aip_transport *t = lws_container_of(sul, aip_transport, sul_reload);
    retire_unused(t);
    aip_mutex_lock(&t->qlock);
    bool pending = t->reload_pending;
    char *ca = t->rl_ca, *cert = t->rl_cert, *key = t->rl_key;
    t->reload_pending = false;
    t->rl_ca = t->rl_cert = t->rl_key = NULL;
    aip_mutex_unlock(&t->qlock);
    if (!pending)
        return;
    char *old[3] = {t->ca_file, t->cert_file, t->key_file};
    t->ca_file = ca;
    t->cert_file = cert;
    t->key_file = key;
    int variant = 0; /* one no live vhost uses */
    while (VH_VARIANTS > 1 &&
           (variant == t->vh_variant || (t->retire_vh && variant == t->retire_variant)))
        variant++;
    struct lws_vhost *nv = make_vhost(t, variant);
    if (!nv) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "TLS reload failed: keeping the previous certificates");
        t->ca_file = old[0];
        t->cert_file = old[1];
        t->key_file = old[2];
        aip_free(ca);
        aip_free(cert);
        aip_free(key);
        return;
    }
    for (int i = 0; i < 3; i++)
        aip_free(old[i]);
    t->cfg.ca_file = t->ca_file;
    t->cfg.cert_file = t->cert_file;
    t->cfg.key_file = t->key_file;
    struct lws_vhost *prev = t->vh;
    int prev_variant = t->vh_variant;
    t->vh = nv;
    t->vh_variant = variant;
    t->reloads++;
    bool in_use = t->wsi && t->wsi_vh == prev;
    if (in_use) { /* at most one vhost has a connection: any earlier retiree is gone by now */
        t->retire_vh = prev;
        t->retire_variant = prev_variant;
    } else {
        lws_vhost_destroy(prev);
    }
    aip_log(AIP_LOG_INFO, LOG_COMP,
            "TLS files reloaded (reload %u: ca %s, cert %s): the next connection uses them%s",
            t->reloads, t->ca_file ? t->ca_file : "system", t->cert_file ? t->cert_file : "none",
            in_use ? "; the open one keeps the old ones until it ends" : "");
    /* Waiting for a retry (perhaps refused by the old files): try the new ones now. */
    if (t->state == L_BACKOFF)
        lws_sul_schedule(t->ctx, 0, &t->sul_connect, start_connect, 1);
}

int aip_transport_reload_tls(aip_transport *t, const char *ca_file, const char *cert_file,
                             const char *key_file)
{
    if (!t->tls)
        return AIP_E_UNSUPPORTED;
    if (!cert_file != !key_file)
        return AIP_E_INVAL;
    char *ca = dup_opt(ca_file), *cert = dup_opt(cert_file), *key = dup_opt(key_file);
    if ((ca_file && !ca) || (cert_file && !cert) || (key_file && !key)) {
        aip_free(ca);
        aip_free(cert);
        aip_free(key);
        return AIP_E_NOMEM;
    }
    aip_mutex_lock(&t->qlock);
    if (atomic_load(&t->stopping)) {
        aip_mutex_unlock(&t->qlock);
        aip_free(ca);
        aip_free(cert);
        aip_free(key);
        return AIP_E_SHUTDOWN;
    }
    char *old[3] = {t->rl_ca, t->rl_cert, t->rl_key}; /* an earlier request not applied yet */
    t->rl_ca = ca;
    t->rl_cert = cert;
    t->rl_key = key;
    t->reload_pending = true;
    aip_mutex_unlock(&t->qlock);
    for (int i = 0; i < 3; i++)
        aip_free(old[i]);
    lws_cancel_service(t->ctx);
    return 0;
}

int aip_transport_create(const aip_transport_config *cfg, const aip_transport_events *ev,
                         void *user, aip_transport **out)
{
    static pthread_once_t log_once = PTHREAD_ONCE_INIT;
    pthread_once(&log_once, aip_lws_log_to_aip);
    *out = NULL;
    if (!cfg || !cfg->url)
        return AIP_E_INVAL;
    aip_transport *t = aip_calloc(1, sizeof *t);
    if (!t)
        return AIP_E_NOMEM;
    t->cfg = *cfg;
    if (ev)
        t->ev = *ev;
    t->user = user;
    int rc = AIP_E_NOMEM;
    if (aip_mutex_init(&t->qlock)) {
        aip_free(t);
        return AIP_E_NOMEM;
    }
    t->token = dup_opt(cfg->token);
    t->ca_file = dup_opt(cfg->ca_file);
    t->cert_file = dup_opt(cfg->cert_file);
    t->key_file = dup_opt(cfg->key_file);
    t->thread_name = aip_strdup(cfg->thread_name ? cfg->thread_name : "aip-service");
    t->cfg.token = t->token;
    t->cfg.ca_file = t->ca_file;
    t->cfg.cert_file = t->cert_file;
    t->cfg.key_file = t->key_file;
    t->cfg.url = NULL; /* not kept: it may hold a token */
    if (!t->cfg.max_frame_in)
        t->cfg.max_frame_in = 1u << 20;
    aip_reasm_init(&t->rx, t->cfg.max_frame_in);
    if ((rc = parse_url(t, cfg->url)))
        goto fail;
    if (t->token && cfg->token_mode == AIP_TOKEN_BEARER) {
        size_t n = strlen(t->token) + 8;
        if (!(t->bearer = aip_malloc(n))) {
            rc = AIP_E_NOMEM;
            goto fail;
        }
        snprintf(t->bearer, n, "Bearer %s", t->token);
    }
#if !defined(LWS_WITH_TLS)
    if (t->tls) {
        rc = AIP_E_UNSUPPORTED;
        goto fail;
    }
#endif
    aip_backoff_init(&t->backoff, cfg->backoff_base_ms ? cfg->backoff_base_ms : 1000,
                     cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 60000, cfg->random);
    if (!t->cfg.stable_ms)
        t->cfg.stable_ms = 30000;

    unsigned ping = cfg->ping_s ? cfg->ping_s : 20;
    unsigned hangup = cfg->hangup_s > ping ? cfg->hangup_s : ping + 10;
    t->retry_table[0] = 1000;
    t->policy.retry_ms_table = t->retry_table;
    t->policy.retry_ms_table_count = 1;
    t->policy.conceal_count = 0;
    t->policy.secs_since_valid_ping = (uint16_t)ping;
    t->policy.secs_since_valid_hangup = (uint16_t)hangup;
    t->policy.jitter_percent = 0;

    /* protocols[0] also gets WSI_DESTROY and unmatched events in 4.1.6; both names map to the
     * same handler so a server that selects aip.v1.proto is matched. */
    t->protocols[0] = (struct lws_protocols){"aip", lws_cb, 0, RX_BUFFER, 0, NULL, TX_FRAGMENT};
    t->protocols[1] =
        (struct lws_protocols){PROTO_NAME, lws_cb, 0, RX_BUFFER, 0, NULL, TX_FRAGMENT};
    memset(&t->protocols[2], 0, sizeof t->protocols[2]);

    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS; /* UTF-8: see make_vhost() */
#if defined(LWS_WITH_TLS)
    /* TLS only for wss://: a ws:// link never loads OpenSSL's CA store (memory, start-up) */
    if (t->tls)
        ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
#endif
    ci.user = t;
    ci.fd_limit_per_thread = 16; /* one link, the event pipe, a few spares */
    /* lws reads into a per-thread buffer of this size and copies into the protocol's rx
     * buffer; 4.1.6 overruns the latter when rx_buffer_size is larger (seen under valgrind
     * with a 300 KB message), so the two are kept equal. */
    ci.pt_serv_buf_size = RX_BUFFER;
    ci.timeout_secs = 10;
    ci.connect_timeout_secs = 10;
    t->ctx = lws_create_context(&ci);
    if (!t->ctx) {
        rc = AIP_E_NOMEM;
        goto fail;
    }
    if (!(t->vh = make_vhost(t, 0))) {
        rc = t->tls ? AIP_E_TLS : AIP_E_NOMEM;
        goto fail;
    }
    *out = t;
    return 0;
fail:
    aip_transport_destroy(t);
    return rc;
}

static void *service_main(void *arg)
{
    aip_transport *t = arg;
    tl_service = t;
    lws_sul_schedule(t->ctx, 0, &t->sul_connect, start_connect, 1);
    while (!t->exit_loop) {
        if (lws_service(t->ctx, 0) < 0)
            break;
    }
    /* A link still open here (the peer never acknowledged our close within the grace) is
     * ended now, on this thread, so its last callbacks reach the layer above while it still
     * exists — not later from lws_context_destroy(). */
    if (t->wsi)
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    lws_sul_cancel(&t->sul_connect);
    lws_sul_cancel(&t->sul_stop);
    lws_sul_cancel(&t->sul_reload);
    abandon_job(t);
    tl_service = NULL;
    return NULL;
}

int aip_transport_start(aip_transport *t)
{
    if (t->thread_started)
        return AIP_E_STATE;
    int rc = aip_thread_start(&t->thread, t->thread_name, service_main, t);
    if (rc)
        return rc;
    t->thread_started = true;
    return 0;
}

void aip_transport_stop(aip_transport *t, int code, const char *reason, uint32_t grace_ms)
{
    if (!t)
        return;
    aip_mutex_lock(&t->qlock);
    bool already = atomic_load(&t->stopping);
    if (!already) {
        t->stop_code = code ? code : 1000;
        snprintf(t->stop_reason, sizeof t->stop_reason, "%s", reason ? reason : "");
        t->stop_grace_ms = grace_ms;
        atomic_store(&t->stopping, true);
        flush_queue_locked(t);
    }
    aip_mutex_unlock(&t->qlock);
    if (t->thread_started) {
        lws_cancel_service(t->ctx);
        aip_thread_join(&t->thread);
        t->thread_started = false;
    }
}

void aip_transport_destroy(aip_transport *t)
{
    if (!t)
        return;
    if (t->thread_started)
        aip_transport_stop(t, 1001, "going away", 1000);
    if (t->ctx) {
        abandon_job(t);
        /* nothing may call back into the layer above from here on */
        memset(&t->ev, 0, sizeof t->ev);
        lws_context_destroy(t->ctx);
        t->ctx = NULL;
    }
    aip_mutex_lock(&t->qlock);
    flush_queue_locked(t);
    aip_mutex_unlock(&t->qlock);
    if (t->cur)
        free_frame(t->cur);
    aip_reasm_free(&t->rx);
    aip_mutex_destroy(&t->qlock);
    aip_free(t->host);
    aip_free(t->path);
    aip_free(t->redacted);
    aip_free(t->token);
    aip_free(t->bearer);
    aip_free(t->ca_file);
    aip_free(t->cert_file);
    aip_free(t->key_file);
    aip_free(t->rl_ca);
    aip_free(t->rl_cert);
    aip_free(t->rl_key);
    aip_free(t->thread_name);
    aip_free(t);
}
