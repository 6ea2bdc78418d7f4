/* SPDX-License-Identifier: MIT */
/*
 * MCP over streamable HTTP (see aip/mcp.h), with libcurl's easy interface, opened at first use
 * (curl_api.h: agents without an HTTP MCP server never map libcurl).
 *
 * Every request is one POST of one JSON-RPC message with
 *   Content-Type: application/json
 *   Accept: application/json, text/event-stream     (some servers answer 406 without it)
 *   MCP-Protocol-Version: <negotiated>              (after initialize)
 *   Mcp-Session-Id: <the id the server gave>        (when it gave one)
 *   the configured headers                          (never logged)
 * The answer is read as JSON (one message) or as an SSE stream (events whose data is a
 * message, even for one answer): our response ends the transfer; the server's own requests in
 * the stream are answered by another POST — ping with {}, anything else (sampling,
 * elicitation, roots: capabilities we do not declare) with -32601 — and its notifications are
 * read (tools/list_changed asks for a refresh) or ignored. A notification gets 202. A 404 to a
 * request that carried a session id means the session is gone: initialize again (once, shared
 * by the threads that saw it: session_gen) and retry once. Bounds: a JSON body, an SSE line
 * and an SSE event's data each at most AIP_MCP_MAX_MESSAGE (the transfer is cut there); every
 * transfer ends at its deadline (CURLOPT_TIMEOUT_MS and the progress callback, which also
 * ends it on cancel or stop). Redirects are not followed (the headers may hold a key); only
 * http and https; TLS verified (libcurl's defaults).
 *
 * Threads: the server's thread initializes the session, lists the tools, then holds the
 * standalone GET stream open (get_stream; a server that answers 405 has none) and leaves it to
 * refresh the list when asked (tools/list_changed, a failed call's recheck), and DELETEs the
 * session at stop (curl_multi_wakeup gets it out of the stream at once); a tools/call is POSTed by
 * the executor worker that runs it, on its own easy handle. The handles of one server share a
 * connection cache (a curl share, locked with share_locks), so calls reuse kept-alive connections.
 */
#include "aip/mcp.h"
#include "mcp_internal.h"

#include "curl_api.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SESSION_MAX   256
#define ANSWER_MS     2000u /* answering the server's request from inside a stream */
#define DELETE_MS     1000u
#define CONNECT_MAXMS 10000u
/* After our answer, the server should end the stream (the spec's SHOULD); reading to its end
 * keeps the connection for the next call. One that does not is cut this much later. */
#define REPLY_GRACE_NS 200000000ull

/* libcurl's functions (curl_api.h), set once by mcp_http_global_init() before any server of
 * this file exists, read-only after. */
static const mcp_curl_api *cx;

int mcp_http_global_init(void)
{
    char why[200];
    const mcp_curl_api *a = mcp_curl_load(why, sizeof why);
    if (!a) {
        aip_log(AIP_LOG_ERROR, MCP_LOG, "%s", why);
        return -1;
    }
    cx = a;
    return 0;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *user)
{
    (void)h;
    (void)access;
    mcp_server *s = user;
    aip_mutex_lock(&s->share_locks[(unsigned)data % 8]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user)
{
    (void)h;
    mcp_server *s = user;
    aip_mutex_unlock(&s->share_locks[(unsigned)data % 8]);
}

int mcp_http_server_init(mcp_server *s)
{
    for (int i = 0; i < 8; i++)
        if (aip_mutex_init(&s->share_locks[i])) {
            while (i--)
                aip_mutex_destroy(&s->share_locks[i]);
            return AIP_E_NOMEM;
        }
    CURLSH *sh = cx->share_init();
    if (!sh || cx->share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock) ||
        cx->share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
        cx->share_setopt(sh, CURLSHOPT_USERDATA, s) ||
        cx->share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) ||
        cx->share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS)) {
        if (sh)
            cx->share_cleanup(sh);
        for (int i = 0; i < 8; i++)
            aip_mutex_destroy(&s->share_locks[i]);
        return AIP_E_NOMEM;
    }
    s->curl_share = sh;
    return 0;
}

void mcp_http_wake(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    if (s->get_multi)
        cx->multi_wakeup(s->get_multi);
    aip_mutex_unlock(&s->lock);
}

void mcp_http_server_free(mcp_server *s)
{
    if (!s->curl_share)
        return;
    cx->share_cleanup(s->curl_share);
    s->curl_share = NULL;
    for (int i = 0; i < 8; i++)
        aip_mutex_destroy(&s->share_locks[i]);
}

/* ---- one transfer ---------------------------------------------------------------------------- */

typedef struct xfer {
    mcp_server *s;
    bool watch_flags; /* the standalone GET stream: end on refresh or recheck too */
    int64_t want_id;  /* the response we wait for; -1: none */
    uint64_t deadline_ns;
    const _Atomic int *cancelled;
    const char *session; /* sent, for answering the server's requests in the stream */
    bool sse, got_ctype, cut;
    aip_buf body; /* a JSON body, or the SSE line being read */
    aip_buf data; /* the SSE event's data */
    bool last_cr;
    cJSON *reply;
    uint64_t reply_ns; /* when it came: the stream then has REPLY_GRACE_NS to end */
    char why[300];
    char new_session[SESSION_MAX + 1];
    char ctype[128];
} xfer;

static struct curl_slist *make_headers(mcp_server *s, const char *session, const char *version)
{
    struct curl_slist *h = NULL, *t;
    char buf[SESSION_MAX + 64];
#define ADD(x)                                 \
    do {                                       \
        if (!(t = cx->slist_append(h, (x)))) { \
            cx->slist_free_all(h);             \
            return NULL;                       \
        }                                      \
        h = t;                                 \
    } while (0)
    ADD("Content-Type: application/json");
    ADD("Accept: application/json, text/event-stream");
    ADD("Expect:"); /* no 100-continue round trip */
    if (version && version[0]) {
        snprintf(buf, sizeof buf, "MCP-Protocol-Version: %s", version);
        ADD(buf);
    }
    if (session && session[0]) {
        snprintf(buf, sizeof buf, "Mcp-Session-Id: %s", session);
        ADD(buf);
    }
    for (char **k = s->headers; k && *k; k++)
        ADD(*k);
#undef ADD
    return h;
}

static CURL *make_easy(mcp_server *s, xfer *x, uint64_t deadline_ns);

/* Answers a request the server sent inside a stream: one more POST, short. */
static void answer_in_stream(xfer *x, const cJSON *msg)
{
    char *text = mcp_answer_server_request(msg);
    if (!text)
        return;
    mcp_server *s = x->s;
    xfer ax = {.s = s, .want_id = -1, .cancelled = x->cancelled};
    aip_buf_init(&ax.body, 0);
    aip_buf_init(&ax.data, 0);
    uint64_t dl = aip_now_ns(NULL) + (uint64_t)ANSWER_MS * 1000000u;
    CURL *c = make_easy(s, &ax, dl);
    aip_mutex_lock(&s->lock);
    char version[16];
    snprintf(version, sizeof version, "%s", s->version);
    aip_mutex_unlock(&s->lock);
    struct curl_slist *h = make_headers(s, x->session, version);
    if (c && h) {
        cx->easy_setopt(c, CURLOPT_HTTPHEADER, h);
        cx->easy_setopt(c, CURLOPT_POSTFIELDS, text);
        cx->easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
        CURLcode rc = cx->easy_perform(c);
        if (rc != CURLE_OK)
            aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] answering the server's request: %s", s->ns,
                    cx->easy_strerror(rc));
    }
    cx->slist_free_all(h);
    if (c)
        cx->easy_cleanup(c);
    cJSON_Delete(ax.reply);
    aip_buf_free(&ax.body);
    aip_buf_free(&ax.data);
    aip_free(text);
}

/* One message from the server. false: stop the transfer (our answer came, or garbage). */
static bool on_message(xfer *x, const char *text, size_t n)
{
    char why[200];
    cJSON *msg;
    int kind = mcp_dispatch(x->s, text, &n, &msg, why, sizeof why);
    if (kind < 0) {
        snprintf(x->why, sizeof x->why,
                 "the server sent something that is not a JSON-RPC message: %s", why);
        return false;
    }
    if (kind == 'r') {
        if (x->want_id > 0 && mcp_response_id(msg) == x->want_id && !x->reply) {
            x->reply = msg; /* ours: done, once the stream ends (or the grace runs out) */
            x->reply_ns = aip_now_ns(NULL);
            return true;
        }
        aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] a response to no request of this stream", x->s->ns);
    } else if (kind == 'q') {
        answer_in_stream(x, msg);
    }
    cJSON_Delete(msg); /* NULL: empty, or a notification mcp_dispatch handled */
    return true;
}

/* One SSE line (without its end). false: stop. */
static bool sse_line(xfer *x, const char *p, size_t n)
{
    if (n == 0) { /* the event ends */
        bool go = true;
        if (x->data.len)
            go = on_message(x, (const char *)x->data.data, x->data.len);
        aip_buf_reset(&x->data);
        return go;
    }
    if (p[0] == ':')
        return true; /* a comment (keep-alive) */
    const char *colon = memchr(p, ':', n);
    size_t fl = colon ? (size_t)(colon - p) : n;
    if (fl == 4 && memcmp(p, "data", 4) == 0) {
        const char *v = colon ? colon + 1 : p + n;
        size_t vl = (size_t)(p + n - v);
        if (vl && *v == ' ') {
            v++;
            vl--;
        }
        if (x->data.len + vl + 1 > AIP_MCP_MAX_MESSAGE) {
            snprintf(x->why, sizeof x->why, "the server sent an event over the %u-byte limit",
                     AIP_MCP_MAX_MESSAGE);
            x->cut = true;
            return false;
        }
        if (aip_buf_append(&x->data, v, vl) || aip_buf_putc(&x->data, '\n')) {
            snprintf(x->why, sizeof x->why, "out of memory");
            return false;
        }
    }
    /* event:, id:, retry: — one kind of event, no resumption: nothing to keep */
    return true;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user)
{
    xfer *x = user;
    size_t n = size * nitems;
    static const char sid[] = "mcp-session-id:", ct[] = "content-type:";
    const char *v = NULL;
    char *dst = NULL;
    size_t cap = 0;
    if (n > sizeof sid - 1 && strncasecmp(buf, sid, sizeof sid - 1) == 0) {
        v = buf + sizeof sid - 1;
        dst = x->new_session;
        cap = sizeof x->new_session;
    } else if (n > sizeof ct - 1 && strncasecmp(buf, ct, sizeof ct - 1) == 0) {
        v = buf + sizeof ct - 1;
        dst = x->ctype;
        cap = sizeof x->ctype;
        x->got_ctype = true;
    }
    if (!v)
        return n;
    const char *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= cap)
        vl = dst == x->new_session ? 0 : cap - 1; /* an oversized session id is not kept */
    for (size_t i = 0; dst == x->new_session && i < vl; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            vl = 0; /* the spec's visible ASCII only */
    memcpy(dst, v, vl);
    dst[vl] = 0;
    if (dst == x->ctype)
        x->sse = strncasecmp(x->ctype, "text/event-stream", 17) == 0;
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *user)
{
    xfer *x = user;
    size_t n = size * nmemb;
    if (!x->sse) {
        if (x->body.len + n > AIP_MCP_MAX_MESSAGE) {
            snprintf(x->why, sizeof x->why, "the server sent a message over the %u-byte limit",
                     AIP_MCP_MAX_MESSAGE);
            x->cut = true;
            return 0;
        }
        return aip_buf_append(&x->body, p, n) ? 0 : n;
    }
    /* SSE: lines end with \n, \r\n or \r */
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n' && x->last_cr) {
            x->last_cr = false;
            continue;
        }
        x->last_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            bool go = sse_line(x, (const char *)x->body.data, x->body.len);
            aip_buf_reset(&x->body);
            if (!go)
                return 0;
            continue;
        }
        if (x->body.len >= AIP_MCP_MAX_MESSAGE) {
            snprintf(x->why, sizeof x->why, "the server sent an SSE line over the %u-byte limit",
                     AIP_MCP_MAX_MESSAGE);
            x->cut = true;
            return 0;
        }
        if (aip_buf_putc(&x->body, c))
            return 0;
    }
    return n;
}

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    xfer *x = user;
    uint64_t now = aip_now_ns(NULL);
    if (x->watch_flags) {
        aip_mutex_lock(&x->s->lock);
        bool wanted = x->s->refresh_wanted || x->s->recheck_wanted;
        aip_mutex_unlock(&x->s->lock);
        if (wanted)
            return 1;
    }
    return (now >= x->deadline_ns || atomic_load(&x->s->stopping) ||
            (x->cancelled && atomic_load(x->cancelled)) ||
            (x->reply && now - x->reply_ns >= REPLY_GRACE_NS))
               ? 1
               : 0;
}

static CURL *make_easy(mcp_server *s, xfer *x, uint64_t deadline_ns)
{
    CURL *c = cx->easy_init();
    if (!c)
        return NULL;
    x->deadline_ns = deadline_ns;
    uint64_t now = aip_now_ns(NULL);
    long ms = deadline_ns > now ? (long)((deadline_ns - now) / 1000000u) : 1;
    if (ms < 1)
        ms = 1;
    cx->easy_setopt(c, CURLOPT_URL, s->url);
    cx->easy_setopt(c, CURLOPT_SHARE, s->curl_share);
    cx->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cx->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cx->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    cx->easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    cx->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                    ms < (long)CONNECT_MAXMS ? ms : (long)CONNECT_MAXMS);
    cx->easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    cx->easy_setopt(c, CURLOPT_HEADERDATA, x);
    cx->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    cx->easy_setopt(c, CURLOPT_WRITEDATA, x);
    cx->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    cx->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    cx->easy_setopt(c, CURLOPT_XFERINFODATA, x);
    cx->easy_setopt(c, CURLOPT_USERAGENT, "constellation-agent");
    return c;
}

typedef struct post_out {
    long status;
    cJSON *reply;
    char session[SESSION_MAX + 1];
    bool transport_failed, timed_out;
} post_out;

/* POSTs one message; out->reply is the response with id want_id when it came. Returns 0 when
 * an HTTP answer came (any status), -1 with why on a transport failure. */
static int post(mcp_server *s, const char *text, int64_t want_id, const char *session,
                const char *version, uint64_t deadline_ns, const _Atomic int *cancelled,
                post_out *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    xfer x = {.s = s, .want_id = want_id, .cancelled = cancelled, .session = session};
    aip_buf_init(&x.body, 0);
    aip_buf_init(&x.data, 0);
    CURL *c = make_easy(s, &x, deadline_ns);
    struct curl_slist *h = make_headers(s, session, version);
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = 0;
    if (!c || !h) {
        snprintf(why, why_len, "out of memory");
        rc = -1;
        goto out;
    }
    cx->easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cx->easy_setopt(c, CURLOPT_POSTFIELDS, text);
    cx->easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    cx->easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cr = cx->easy_perform(c);
    cx->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (!x.reply && !x.sse && x.body.len && out->status >= 200 && out->status < 300 &&
        cr == CURLE_OK && !on_message(&x, (const char *)x.body.data, x.body.len) && !x.reply)
        cr = CURLE_WRITE_ERROR; /* garbage: x.why says what */
    if (x.reply) {
        /* ours came: a transfer we cut there is no error */
    } else if (x.why[0]) {
        snprintf(why, why_len, "%s", x.why);
        rc = -1;
    } else if (cr == CURLE_ABORTED_BY_CALLBACK || cr == CURLE_OPERATION_TIMEDOUT) {
        if (atomic_load(&s->stopping) || (cancelled && atomic_load(cancelled)))
            snprintf(why, why_len, "cancelled: the agent is stopping");
        else {
            snprintf(why, why_len, "timeout");
            out->timed_out = true;
        }
        rc = -1;
    } else if (cr != CURLE_OK) {
        snprintf(why, why_len, "HTTP request failed: %s",
                 errbuf[0] ? errbuf : cx->easy_strerror(cr));
        out->transport_failed = true;
        rc = -1;
    }
    if (!rc && out->status >= 400 && x.body.len && !x.sse) {
        /* the error's JSON-RPC message, if the body has one, for the caller's reason */
        char pw[64];
        cJSON *j = mcp_parse((const char *)x.body.data, x.body.len, pw, sizeof pw);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "error"), "message");
        snprintf(why, why_len, "HTTP %ld%s%.200s", out->status, cJSON_IsString(m) ? ": " : "",
                 cJSON_IsString(m) ? m->valuestring : "");
        cJSON_Delete(j);
    } else if (!rc && (out->status < 200 || out->status >= 300)) {
        snprintf(why, why_len, "HTTP %ld", out->status);
    }
    out->reply = x.reply;
    x.reply = NULL;
    snprintf(out->session, sizeof out->session, "%s", x.new_session);
out:
    cx->slist_free_all(h);
    if (c)
        cx->easy_cleanup(c);
    cJSON_Delete(x.reply);
    aip_buf_free(&x.body);
    aip_buf_free(&x.data);
    return rc;
}

/* ---- the session ------------------------------------------------------------------------------
 */

static int64_t take_id(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    int64_t id = s->next_id++;
    aip_mutex_unlock(&s->lock);
    return id;
}

/* initialize + notifications/initialized; on success the session and version are stored and
 * session_gen bumped. Call with session_lock held. 0 or -1 with s->why. */
static int initialize(mcp_server *s)
{
    uint64_t deadline = aip_now_ns(NULL) + (uint64_t)s->timeout_ms * 1000000u;
    cJSON *params = mcp_initialize_params();
    int64_t id = take_id(s);
    char *text = params ? mcp_request_text(id, "initialize", params) : NULL;
    cJSON_Delete(params);
    if (!text) {
        mcp_set_why(s, "out of memory");
        return -1;
    }
    post_out o = {0};
    char why[300] = "";
    int rc = post(s, text, id, NULL, NULL, deadline, NULL, &o, why, sizeof why);
    aip_free(text);
    if (rc || !o.reply) {
        if (!rc && !why[0])
            snprintf(why, sizeof why, "HTTP %ld without an answer", o.status);
        mcp_set_why(s, "initialize: %s", strcmp(why, "timeout") == 0 ? "no answer in time" : why);
        cJSON_Delete(o.reply);
        return -1;
    }
    rc = mcp_check_initialize(s, o.reply);
    cJSON_Delete(o.reply);
    if (rc)
        return -1;
    char *note = mcp_request_text(-1, "notifications/initialized", NULL);
    post_out n = {0};
    rc = note ? post(s, note, -1, o.session, s->version, deadline, NULL, &n, why, sizeof why) : -1;
    aip_free(note);
    if (rc || n.status < 200 || n.status >= 300) {
        mcp_set_why(s, "notifications/initialized: %s", why[0] ? why : "refused");
        cJSON_Delete(n.reply);
        return -1;
    }
    cJSON_Delete(n.reply);
    aip_mutex_lock(&s->lock);
    aip_free(s->session_id);
    s->session_id = o.session[0] ? aip_strdup(o.session) : NULL;
    s->session_gen++;
    aip_mutex_unlock(&s->lock);
    return 0;
}

/* The session is gone (404): initialize again unless another thread already did since gen. */
static int reinitialize(mcp_server *s, uint64_t gen)
{
    aip_mutex_lock(&s->session_lock);
    aip_mutex_lock(&s->lock);
    bool stale = s->session_gen == gen;
    aip_mutex_unlock(&s->lock);
    int rc = 0;
    if (stale) {
        aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] the server lost our session (404): initializing again",
                s->ns);
        rc = initialize(s);
        if (!rc) {
            aip_mutex_lock(&s->lock);
            s->refresh_wanted = true; /* a new session may have another tool list */
            aip_cond_broadcast(&s->cond);
            aip_mutex_unlock(&s->lock);
        }
    }
    aip_mutex_unlock(&s->session_lock);
    return rc;
}

/* One request in the current session, retried once in a new session after a 404. */
static int rpc(mcp_server *s, const char *method, const cJSON *params, uint64_t deadline_ns,
               const _Atomic int *cancelled, cJSON **reply, char *why, size_t why_len)
{
    *reply = NULL;
    int64_t id = take_id(s);
    char *text = mcp_request_text(id, method, params);
    if (!text) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    int rc = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        aip_mutex_lock(&s->lock);
        char session[SESSION_MAX + 1], version[16];
        snprintf(session, sizeof session, "%s", s->session_id ? s->session_id : "");
        snprintf(version, sizeof version, "%s", s->version);
        uint64_t gen = s->session_gen;
        aip_mutex_unlock(&s->lock);
        post_out o = {0};
        rc = post(s, text, id, session, version, deadline_ns, cancelled, &o, why, why_len);
        if (rc) {
            if (o.timed_out) {
                /* MCP: tell the server we gave up (best effort, short) */
                cJSON *cp = cJSON_CreateObject();
                if (cp) {
                    cJSON_AddNumberToObject(cp, "requestId", (double)id);
                    cJSON_AddStringToObject(cp, "reason", "timeout");
                }
                char *note = cp ? mcp_request_text(-1, "notifications/cancelled", cp) : NULL;
                post_out n = {0};
                char nw[64];
                if (note)
                    post(s, note, -1, session, version,
                         aip_now_ns(NULL) + (uint64_t)ANSWER_MS * 1000000u, NULL, &n, nw,
                         sizeof nw);
                if (note)
                    cJSON_Delete(n.reply);
                aip_free(note);
                cJSON_Delete(cp);
            } else if (o.transport_failed) {
                aip_mutex_lock(&s->lock);
                s->recheck_wanted = true; /* is the server still there? its thread finds out */
                aip_cond_broadcast(&s->cond);
                aip_mutex_unlock(&s->lock);
            }
            break;
        }
        if (o.status == 404 && session[0] && attempt == 0) {
            cJSON_Delete(o.reply);
            if (reinitialize(s, gen)) {
                aip_mutex_lock(&s->lock);
                snprintf(why, why_len, "the session was lost and a new one failed: %s", s->why);
                s->recheck_wanted = true;
                aip_cond_broadcast(&s->cond);
                aip_mutex_unlock(&s->lock);
                rc = -1;
                break;
            }
            continue;
        }
        if (o.reply && o.status >= 200 && o.status < 300) {
            *reply = o.reply;
            break;
        }
        cJSON_Delete(o.reply);
        if (!why[0] || (o.status >= 200 && o.status < 300))
            snprintf(why, why_len, "HTTP %ld without an answer to %s", o.status, method);
        /* not the answer MCP promises (e.g. a 400 for a session a restarted server does not
         * know): the server's thread checks it, and starts a new session if need be */
        aip_mutex_lock(&s->lock);
        s->recheck_wanted = true;
        aip_cond_broadcast(&s->cond);
        aip_mutex_unlock(&s->lock);
        rc = -1;
        break;
    }
    aip_free(text);
    return rc;
}

int mcp_http_request(mcp_server *s, const char *method, const cJSON *params, uint64_t deadline_ns,
                     const _Atomic int *cancelled, cJSON **reply, char *why, size_t why_len)
{
    *reply = NULL;
    aip_mutex_lock(&s->lock);
    bool stopping = atomic_load(&s->stopping);
    if (stopping || s->state != MCP_READY) {
        snprintf(why, why_len, "%s%s",
                 stopping ? "" : "unavailable: ", stopping ? "the agent is stopping" : s->why);
        aip_mutex_unlock(&s->lock);
        return -1;
    }
    aip_mutex_unlock(&s->lock);
    return rpc(s, method, params, deadline_ns, cancelled, reply, why, why_len);
}

/* ---- the server thread -------------------------------------------------------------------- */

static int list_tools(mcp_server *s)
{
    cJSON *acc = NULL;
    char *cursor = NULL;
    int rc = 0;
    for (int page = 0; !rc; page++) {
        if (page >= 64) {
            mcp_set_why(s, "tools/list: more than 64 pages");
            rc = -1;
            break;
        }
        cJSON *params = cJSON_CreateObject();
        if (params && cursor)
            cJSON_AddStringToObject(params, "cursor", cursor);
        cJSON *reply = NULL;
        char why[300] = "";
        if (!params ||
            rpc(s, "tools/list", params, aip_now_ns(NULL) + (uint64_t)s->timeout_ms * 1000000u,
                NULL, &reply, why, sizeof why)) {
            mcp_set_why(s, "tools/list: %s",
                        strcmp(why, "timeout") == 0 ? "no answer in time" : why);
            rc = -1;
        }
        cJSON_Delete(params);
        if (rc)
            break;
        char *next = NULL;
        if (mcp_collect_tools(s, reply, &acc, &next))
            rc = -1;
        cJSON_Delete(reply);
        bool same = next && cursor && strcmp(next, cursor) == 0;
        aip_free(cursor);
        cursor = next;
        if (same) {
            mcp_set_why(s, "tools/list: the server gave the same cursor twice");
            rc = -1;
        }
        if (!cursor)
            break;
    }
    aip_free(cursor);
    if (!rc && mcp_install_tools(s, acc))
        rc = -1;
    cJSON_Delete(acc);
    return rc;
}

/* The standalone GET stream (MCP's MAY): the server's notifications and requests outside any
 * request of ours (tools/list_changed, ping). Runs in the server's thread until a refresh or
 * recheck is wanted, the agent stops, or the stream ends. Returns false when the server does not
 * offer one (405, or any answer that is not an event stream): the thread then just waits. */
static bool get_stream(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    char session[SESSION_MAX + 1], version[16];
    snprintf(session, sizeof session, "%s", s->session_id ? s->session_id : "");
    snprintf(version, sizeof version, "%s", s->version);
    aip_mutex_unlock(&s->lock);
    xfer x = {.s = s, .want_id = -1, .session = session, .watch_flags = true};
    aip_buf_init(&x.body, 0);
    aip_buf_init(&x.data, 0);
    CURL *c = make_easy(s, &x, UINT64_MAX);
    struct curl_slist *h = make_headers(s, session, version);
    bool offered = false;
    CURLM *m = cx->multi_init();
    if (c && h && m && cx->multi_add_handle(m, c) == CURLM_OK) {
        cx->easy_setopt(c, CURLOPT_HTTPGET, 1L);
        cx->easy_setopt(c, CURLOPT_HTTPHEADER, h);
        cx->easy_setopt(c, CURLOPT_TIMEOUT_MS, 0L); /* as long as it lasts; the flags end it */
        /* the multi interface only so that stop can wake this thread at once */
        aip_mutex_lock(&s->lock);
        s->get_multi = m;
        aip_mutex_unlock(&s->lock);
        CURLcode rc = CURLE_OK;
        for (;;) {
            int running = 0;
            if (cx->multi_perform(m, &running) != CURLM_OK || !running)
                break;
            aip_mutex_lock(&s->lock);
            bool end = atomic_load(&s->stopping) || s->refresh_wanted || s->recheck_wanted;
            aip_mutex_unlock(&s->lock);
            if (end)
                break;
            cx->multi_poll(m, NULL, 0, 1000, NULL);
        }
        int left;
        for (CURLMsg *msg; (msg = cx->multi_info_read(m, &left));)
            if (msg->msg == CURLMSG_DONE)
                rc = msg->data.result;
        aip_mutex_lock(&s->lock);
        s->get_multi = NULL;
        aip_mutex_unlock(&s->lock);
        cx->multi_remove_handle(m, c);
        long status = 0;
        cx->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        offered = status == 200 && x.sse;
        if (x.why[0])
            aip_log(AIP_LOG_WARN, MCP_LOG, "[%s] GET stream: %s", s->ns, x.why);
        aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] GET stream ended: %s (HTTP %ld)", s->ns,
                cx->easy_strerror(rc), status);
    }
    cx->slist_free_all(h);
    if (c)
        cx->easy_cleanup(c);
    if (m)
        cx->multi_cleanup(m);
    aip_buf_free(&x.body);
    aip_buf_free(&x.data);
    return offered;
}

static void set_state(mcp_server *s, mcp_state st)
{
    aip_mutex_lock(&s->lock);
    s->state = st;
    if (st == MCP_READY)
        s->ready_since_ns = aip_now_ns(NULL);
    aip_mutex_unlock(&s->lock);
}

static void delete_session(mcp_server *s)
{
    aip_mutex_lock(&s->lock);
    char *session = s->session_id;
    s->session_id = NULL;
    char version[16];
    snprintf(version, sizeof version, "%s", s->version);
    aip_mutex_unlock(&s->lock);
    if (!session)
        return;
    xfer x = {.s = s, .want_id = -1};
    aip_buf_init(&x.body, 0);
    aip_buf_init(&x.data, 0);
    CURL *c = make_easy(s, &x, aip_now_ns(NULL) + (uint64_t)DELETE_MS * 1000000u);
    struct curl_slist *h = make_headers(s, session, version);
    if (c && h) {
        cx->easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
        cx->easy_setopt(c, CURLOPT_HTTPHEADER, h);
        cx->easy_setopt(c, CURLOPT_NOPROGRESS, 1L); /* the stop flag is set: run anyway */
        CURLcode rc = cx->easy_perform(c);
        long status = 0;
        cx->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        aip_log(AIP_LOG_DEBUG, MCP_LOG, "[%s] DELETE session: %s (HTTP %ld)", s->ns,
                cx->easy_strerror(rc), status);
    }
    cx->slist_free_all(h);
    if (c)
        cx->easy_cleanup(c);
    aip_buf_free(&x.body);
    aip_buf_free(&x.data);
    aip_free(session);
}

void *mcp_http_main(void *arg)
{
    mcp_server *s = arg;
    uint64_t next_start = 0;
    while (!atomic_load(&s->stopping)) {
        if (next_start && mcp_wait_until(s, next_start))
            break;
        set_state(s, MCP_STARTING);
        aip_mutex_lock(&s->lock);
        s->recheck_wanted = false;
        aip_mutex_unlock(&s->lock);
        aip_mutex_lock(&s->session_lock);
        int rc = initialize(s);
        aip_mutex_unlock(&s->session_lock);
        if (!rc) {
            aip_mutex_lock(&s->lock);
            s->refresh_wanted = false;
            aip_mutex_unlock(&s->lock);
            rc = list_tools(s);
        }
        if (!rc) {
            set_state(s, MCP_READY);
            aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] ready: %u tools (streamable HTTP, protocol %s%s)",
                    s->ns, s->n_tools, s->version, s->session_id ? ", session" : "");
            mcp_first_attempt_done(s);
            bool has_stream = true;
            for (;;) {
                if (has_stream) {
                    uint64_t t0 = aip_now_ns(NULL);
                    has_stream = get_stream(s);
                    if (has_stream && aip_now_ns(NULL) - t0 < 1000000000u)
                        mcp_wait_until(s, t0 + 1000000000u); /* a stream that ends at once */
                }
                aip_mutex_lock(&s->lock);
                while (!has_stream && !atomic_load(&s->stopping) && !s->refresh_wanted &&
                       !s->recheck_wanted)
                    aip_cond_wait(&s->cond, &s->lock);
                bool refresh = s->refresh_wanted || s->recheck_wanted;
                s->refresh_wanted = s->recheck_wanted = false;
                aip_mutex_unlock(&s->lock);
                if (atomic_load(&s->stopping))
                    break;
                if (!refresh)
                    continue; /* the stream ended: open it again */
                /* a fresh list: also the health check after a failed call */
                rc = list_tools(s);
                if (rc)
                    break;
                aip_log(AIP_LOG_INFO, MCP_LOG, "[%s] tool list refreshed: %u tools", s->ns,
                        s->n_tools);
            }
        }
        if (atomic_load(&s->stopping))
            break;
        aip_mutex_lock(&s->lock);
        s->state = MCP_DOWN;
        aip_mutex_unlock(&s->lock);
        mcp_hide_tools(s);
        uint64_t delay = mcp_backoff_ns(s);
        aip_log(AIP_LOG_WARN, MCP_LOG, "[%s] unavailable: %s; trying again in %llu ms", s->ns,
                s->why, (unsigned long long)(delay / 1000000u));
        mcp_first_attempt_done(s);
        next_start = aip_now_ns(NULL) + delay;
    }
    set_state(s, MCP_DOWN);
    delete_session(s);
    mcp_first_attempt_done(s);
    return NULL;
}
