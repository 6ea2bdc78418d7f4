/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: HTTP on the same port.
 *   UFO's API:   GET /api/clients, GET /api/health, POST /api/dispatch,
 *                GET /api/task_result/{task_name} (ours answers once the task ended)
 *   debugging:   GET /api/clients/details, GET /api/clients/{id}, GET /api/device_info/{id},
 *                POST /api/faults, GET /metrics (Prometheus)
 *   dashboard:   GET / and its assets, embedded in the binary (dashboard_assets.c, generated)
 * Before an endpoint sees a request, guard.c checks Host, Origin, Sec-Fetch-Site, the method and
 * a POST's Content-Type (403/405/415). Then, unless started with --no-token, everything but the
 * dashboard's static files needs the key as X-API-Key (or Authorization: Bearer) — 401
 * otherwise — and WebSocket upgrades need ?token= (or the bearer header) — 403 otherwise (both
 * checked in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE).
 *
 * An answer is built whole, then written from HTTP_WRITEABLE. POST bodies are read up to
 * MAX_POST_BODY (413 beyond). GET /api/device_info/{id} may answer later, when the device does:
 * it registers a live_done completion (live_answered) that the relay calls then; the relay
 * never calls into this file (server.h shows who calls whom).
 */
#include "server.h"

#include "dashboard_assets.h"

#include <aip/internal/jscan.h>
#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POST_BODY (1u << 20)

static void body_task_result(aip_buf *b, const task_record *r)
{
    static const char *const st[] = {"pending", "completed", "failed"};
    aip_buf_puts(b, "{\"status\":");
    put_str(b, st[r->state]);
    aip_buf_puts(b, ",\"task_name\":");
    put_str(b, r->task_name);
    aip_buf_puts(b, ",\"session_id\":");
    put_str(b, r->session_id);
    aip_buf_puts(b, ",\"client_id\":");
    put_str(b, r->client_id);
    aip_buf_puts(b, ",\"result\":");
    aip_buf_puts(b, r->result ? r->result : "null");
    aip_buf_puts(b, ",\"error\":");
    put_str(b, r->error);
    aip_buf_putc(b, '}');
}

static void error_body(aip_buf *b, const char *text)
{
    aip_buf_reset(b);
    aip_buf_puts(b, "{\"error\":");
    put_str(b, text);
    aip_buf_putc(b, '}');
}

/* Writes the status line and headers now and keeps the body for HTTP_WRITEABLE. lws adds the
 * security headers (CSP, nosniff, referrer-policy, x-frame-options) to every answer: main.c
 * sets LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE. */
static int respond_as(struct lws *wsi, unsigned status, const char *type, aip_buf *body)
{
    pss *ps = lws_wsi_user(wsi);
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr;
    if (lws_add_http_common_headers(wsi, status, type, body->len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        (status == HTTP_STATUS_METHOD_NOT_ALLOWED &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                     (const unsigned char *)"GET, POST", 9, &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        aip_buf_free(body);
        return 1;
    }
    if (!ps) {
        aip_buf_free(body);
        return -1;
    }
    aip_free(ps->http_body);
    ps->http_len = body->len;
    ps->http_body = body->len ? aip_buf_steal(body) : NULL;
    aip_buf_free(body);
    if (!ps->http_body) /* an empty body: the transaction is complete */
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond(struct lws *wsi, unsigned status, aip_buf *body)
{
    return respond_as(wsi, status, "application/json", body);
}

/* The live_done that GET /api/device_info/{id} registers (user: the wsi): the device's
 * answer, or the cache when it did not answer in time, answered on the waiting connection. */
static void live_answered(void *user, const char *client_id, const char *source,
                          const char *device_info)
{
    struct lws *wsi = user;
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    put_device_info(&b, client_id, source, device_info);
    pss *ps = lws_wsi_user(wsi);
    if (ps)
        ps->live = NULL;
    if (respond(wsi, HTTP_STATUS_OK, &b))
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, LWS_TO_KILL_ASYNC);
}

static int serve_asset(struct lws *wsi, const char *uri)
{
    const char *name = strcmp(uri, "/") == 0 ? "index.html" : uri + 1;
    for (size_t i = 0; i < dashboard_asset_count; i++) {
        const dashboard_asset *a = &dashboard_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        aip_buf b;
        aip_buf_init(&b, LWS_PRE);
        aip_buf_append(&b, a->data, a->len);
        return respond_as(wsi, HTTP_STATUS_OK, a->type, &b);
    }
    return -1;
}

/* "/api/x/{id}" -> id, copied into buf; NULL when uri does not start with prefix, the id is
 * empty or too long. lws has already percent-decoded the path, so the id is taken as it is
 * (decoding again would turn "a%2541" into "aA"), '/' included: an id may contain one. */
static const char *path_arg(const char *uri, const char *prefix, char *buf, size_t n)
{
    size_t pl = strlen(prefix);
    if (strncmp(uri, prefix, pl) != 0 || !uri[pl] || strlen(uri + pl) >= n)
        return NULL;
    snprintf(buf, n, "%s", uri + pl);
    return buf;
}

/* A GET of the API (the key checked): builds the answer in b and writes it. */
static int api_get(struct lws *wsi, pss *ps, const char *uri, aip_buf *b)
{
    char arg[AIP_ID_MAX + 1];
    if (strcmp(uri, "/api/clients") == 0) {
        aip_buf_puts(b, "{\"online_clients\":");
        put_clients(b, false);
        aip_buf_putc(b, '}');
    } else if (strcmp(uri, "/api/clients/details") == 0) {
        aip_buf_puts(b, "{\"clients\":");
        put_clients(b, true);
        aip_buf_putc(b, '}');
    } else if (path_arg(uri, "/api/clients/", arg, sizeof arg)) {
        session *s = strmap_get(&g_srv.clients, arg);
        if (!s) {
            error_body(b, "no such client");
            return respond(wsi, HTTP_STATUS_NOT_FOUND, b);
        }
        put_client(b, s, true);
    } else if (strcmp(uri, "/api/health") == 0) {
        bputf(b, "{\"status\":\"healthy\",\"online_clients\":%zu,\"tasks\":%zu}",
              g_srv.clients.count, g_srv.tasks.count);
    } else if (path_arg(uri, "/api/task_result/", arg, sizeof arg)) {
        const task_record *r = record_get(arg);
        if (!r) {
            error_body(b, "no task with this name");
            return respond(wsi, HTTP_STATUS_NOT_FOUND, b);
        }
        body_task_result(b, r);
    } else if (path_arg(uri, "/api/device_info/", arg, sizeof arg)) {
        live_done done = {live_answered, wsi};
        unsigned st = admin_device_info(arg, ps ? &ps->live : NULL, done, b);
        if (!st) {
            aip_buf_free(b);
            return 0; /* answered when the device does */
        }
        return respond(wsi, st, b);
    } else if (strcmp(uri, "/metrics") == 0) {
        metrics_render(b);
        return respond_as(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", b);
    } else {
        aip_buf_puts(b, "{\"error\":\"not found\"}");
        return respond(wsi, HTTP_STATUS_NOT_FOUND, b);
    }
    return respond(wsi, HTTP_STATUS_OK, b);
}

int http_handle(struct lws *wsi, const char *uri)
{
    pss *ps = lws_wsi_user(wsi);
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool api = strncmp(uri, "/api/", 5) == 0 || strcmp(uri, "/metrics") == 0;
    req_kind kind = get && !api ? REQ_PAGE : REQ_API;
    refuse_reason why = REFUSE_KEY;
    bool refused =
        guard_refuse(wsi, kind, &why) || (kind != REQ_PAGE && guard_refuse_key(wsi, kind));
    char cl[32];
    unsigned long n = 0;
    if (!get && lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        n = strtoul(cl, NULL, 10);
    if (n > 0 && ps) {
        /* the body is read even when the answer is an error: answering before it has arrived
         * makes lws drop the connection under the answer */
        if (n > MAX_POST_BODY) { /* not read: the connection closes after the answer */
            error_body(&b, refused ? refuse_text(why) : "body too large (1 MiB at most)");
            ps->close_after = true;
            return respond(
                wsi, refused ? refuse_status(why, kind) : HTTP_STATUS_REQ_ENTITY_TOO_LARGE, &b);
        }
        snprintf(ps->post_uri, sizeof ps->post_uri, "%s", uri);
        ps->post_refused = refused ? (uint8_t)(why + 1) : 0;
        aip_buf_init(&ps->post_body, 0);
        aip_buf_free(&b);
        return 0; /* the body arrives in HTTP_BODY */
    }
    if (refused) {
        error_body(&b, refuse_text(why));
        return respond(wsi, refuse_status(why, kind), &b);
    }
    if (post) {
        error_body(&b, "a JSON body (with Content-Length) is required");
        return respond(wsi, HTTP_STATUS_BAD_REQUEST, &b);
    }
    if (kind == REQ_PAGE) {
        if (serve_asset(wsi, uri) >= 0)
            return 0;
        aip_buf_puts(&b, "{\"error\":\"not found\"}");
        return respond(wsi, HTTP_STATUS_NOT_FOUND, &b);
    }
    return api_get(wsi, ps, uri, &b);
}

int http_body(struct lws *wsi, const void *in, size_t len)
{
    pss *ps = lws_wsi_user(wsi);
    if (!ps || !ps->post_uri[0])
        return -1;
    if (ps->post_body.len + len > MAX_POST_BODY || aip_buf_append(&ps->post_body, in, len))
        return -1;
    return 0;
}

static const char *str_member(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int http_body_done(struct lws *wsi)
{
    pss *ps = lws_wsi_user(wsi);
    if (!ps || !ps->post_uri[0])
        return -1;
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    unsigned st;
    cJSON *root = NULL;
    char *request_text = NULL;
    bool dispatch = strcmp(ps->post_uri, "/api/dispatch") == 0;
    /* the codec's strict scan first: depth, value count, UTF-8, duplicate keys */
    aip_jscan scan = {0};
    scan.max_depth = 32;
    scan.max_values = 100000;
    const char *text = ps->post_body.data ? (const char *)ps->post_body.data : "";
    if (ps->post_refused) {
        refuse_reason why = (refuse_reason)(ps->post_refused - 1);
        error_body(&b, refuse_text(why));
        st = refuse_status(why, REQ_API);
    } else if (!dispatch && strcmp(ps->post_uri, "/api/faults") != 0) {
        error_body(&b, "no such POST endpoint: POST /api/dispatch or /api/faults");
        st = HTTP_STATUS_NOT_FOUND;
    } else if (aip_jscan_run(&scan, text, ps->post_body.len)) {
        char why[220];
        snprintf(why, sizeof why, "the body is not acceptable JSON: %s", scan.why);
        error_body(&b, why);
        st = HTTP_STATUS_BAD_REQUEST;
    } else if (!(root =
                     cJSON_ParseWithLength((const char *)ps->post_body.data, ps->post_body.len)) ||
               !cJSON_IsObject(root)) {
        error_body(&b, "the body must be a JSON object");
        st = HTTP_STATUS_BAD_REQUEST;
    } else if (dispatch) {
        const char *cid = str_member(root, "client_id");
        const char *name = str_member(root, "task_name");
        const cJSON *rq = cJSON_GetObjectItemCaseSensitive(root, "request");
        const char *req = cJSON_IsString(rq) ? rq->valuestring : NULL;
        if (cJSON_IsObject(rq))
            req = request_text = cJSON_PrintUnformatted(rq);
        if (!cid || !req) {
            error_body(&b, "dispatch needs a string client_id and a request (JSON actions, as a "
                           "string or an object)");
            st = HTTP_STATUS_BAD_REQUEST;
        } else {
            st = admin_dispatch(cid, req, name, &b);
        }
    } else {
        const char *cid = str_member(root, "client_id");
        const char *fault = str_member(root, "fault");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, "seconds");
        if (!cid || !fault || (sec && !cJSON_IsNumber(sec))) {
            error_body(&b, "faults need a string client_id, a string fault and numeric seconds");
            st = HTTP_STATUS_BAD_REQUEST;
        } else {
            st = admin_fault(cid, fault, sec ? sec->valuedouble : -1, &b);
        }
    }
    cJSON_free(request_text);
    cJSON_Delete(root);
    aip_buf_free(&ps->post_body);
    ps->post_uri[0] = 0;
    ps->post_refused = 0;
    return respond(wsi, st, &b);
}

int http_writeable(struct lws *wsi, void *user)
{
    pss *ps = user;
    if (!ps || !ps->http_body)
        return 0;
    int n = lws_write(wsi, ps->http_body + LWS_PRE, ps->http_len, LWS_WRITE_HTTP_FINAL);
    aip_free(ps->http_body);
    ps->http_body = NULL;
    if (n < 0 || ps->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void http_closed(struct lws *wsi)
{
    pss *ps = lws_wsi_user(wsi);
    if (!ps)
        return;
    aip_free(ps->http_body);
    ps->http_body = NULL;
    aip_buf_free(&ps->post_body);
    ps->post_uri[0] = 0;
    if (ps->live) {
        admin_live_cancel(ps->live);
        ps->live = NULL;
    }
}
