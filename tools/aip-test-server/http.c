/*
 * aip-test-server: HTTP on the same port. UFO's GET /api/clients and GET /api/health, plus
 * GET /api/clients/details for debugging. With --token, the API needs X-API-Key (or
 * Authorization: Bearer) — 401 otherwise — and WebSocket upgrades need ?token= (or the bearer
 * header) — 403 otherwise (checked in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE).
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

static bool token_eq(const char *given)
{
    /* length-independent compare: do not leak the token through timing */
    const char *want = g_srv.cfg.token;
    size_t wl = strlen(want), gl = strlen(given);
    unsigned char diff = (unsigned char)(wl != gl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)(want[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

bool auth_ok(struct lws *wsi, bool http_api)
{
    if (!g_srv.cfg.token)
        return true;
    char buf[512];
    if (http_api && lws_hdr_custom_copy(wsi, buf, sizeof buf, "x-api-key:", 10) > 0 &&
        token_eq(buf))
        return true;
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        strncmp(buf, "Bearer ", 7) == 0 && token_eq(buf + 7))
        return true;
    /* lws 4.1.6 copies "token=<value>" into buf and returns a pointer to the value */
    const char *v;
    if (!http_api && (v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf)) && token_eq(v))
        return true;
    return false;
}

static void put_str(aip_buf *b, const char *s)
{
    if (s)
        aip_json_put_string(b, s, strlen(s));
    else
        aip_buf_puts(b, "null");
}

static void put_time(aip_buf *b, int64_t us)
{
    if (!us) {
        aip_buf_puts(b, "null");
        return;
    }
    char ts[40];
    aip_format_timestamp(us, ts, sizeof ts);
    put_str(b, ts);
}

static void body_clients(aip_buf *b)
{
    aip_buf_puts(b, "{\"online_clients\":[");
    const char *k;
    void *v;
    bool first = true;
    for (size_t i = 0; strmap_next(&g_srv.clients, &i, &k, &v);) {
        if (!first)
            aip_buf_putc(b, ',');
        first = false;
        put_str(b, k);
    }
    aip_buf_puts(b, "]}");
}

static void body_details(aip_buf *b)
{
    aip_buf_puts(b, "{\"clients\":[");
    const char *k;
    void *v;
    bool first = true;
    for (size_t i = 0; strmap_next(&g_srv.clients, &i, &k, &v);) {
        session *s = v;
        if (!first)
            aip_buf_putc(b, ',');
        first = false;
        aip_buf_puts(b, "{\"client_id\":");
        put_str(b, s->client_id);
        aip_buf_puts(b, ",\"client_type\":");
        put_str(b, aip_client_type_str(s->type));
        aip_buf_puts(b, ",\"target_id\":");
        put_str(b, s->target_id);
        aip_buf_puts(b, ",\"address\":");
        put_str(b, s->addr);
        aip_buf_puts(b, ",\"connected_since\":");
        put_time(b, s->connected_us);
        aip_buf_puts(b, ",\"last_heartbeat\":");
        put_time(b, s->last_heartbeat_us);
        aip_buf_puts(b, ",\"encoding\":");
        put_str(b, s->proto ? "proto" : "json");
        aip_buf_puts(b, ",\"extensions\":[");
        if (s->ext_correlated)
            aip_buf_puts(b, "\"correlated_errors\"");
        if (s->ext_live)
            aip_buf_puts(b, s->ext_correlated ? ",\"live_device_info\"" : "\"live_device_info\"");
        char n[64];
        snprintf(n, sizeof n, "],\"commands_in_flight\":%u,\"frames_in\":%llu,\"frames_out\":%llu",
                 s->commands_in_flight, (unsigned long long)s->frames_in,
                 (unsigned long long)s->frames_out);
        aip_buf_puts(b, n);
        aip_buf_puts(b, ",\"system_info\":");
        aip_buf_puts(b, s->system_info ? s->system_info : "null");
        aip_buf_putc(b, '}');
    }
    aip_buf_puts(b, "]}");
}

static int respond(struct lws *wsi, unsigned status, aip_buf *body)
{
    pss *ps = lws_wsi_user(wsi);
    uint8_t hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr;
    if (lws_add_http_common_headers(wsi, status, "application/json", body->len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
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
    ps->http_body = aip_buf_steal(body);
    lws_callback_on_writable(wsi);
    return 0;
}

int http_handle(struct lws *wsi, const char *uri)
{
    aip_buf b;
    aip_buf_init(&b, LWS_PRE);
    bool api = strncmp(uri, "/api/", 5) == 0;
    if (api && !auth_ok(wsi, true)) {
        aip_buf_puts(&b, "{\"error\":\"unauthorized: send the server key as X-API-Key\"}");
        return respond(wsi, HTTP_STATUS_UNAUTHORIZED, &b);
    }
    if (strcmp(uri, "/api/clients") == 0) {
        body_clients(&b);
    } else if (strcmp(uri, "/api/clients/details") == 0) {
        body_details(&b);
    } else if (strcmp(uri, "/api/health") == 0) {
        char h[160];
        snprintf(h, sizeof h, "{\"status\":\"healthy\",\"online_clients\":%zu,\"tasks\":%zu}",
                 g_srv.clients.count, g_srv.tasks.count);
        aip_buf_puts(&b, h);
    } else {
        aip_buf_puts(&b, "{\"error\":\"not found\"}");
        return respond(wsi, HTTP_STATUS_NOT_FOUND, &b);
    }
    return respond(wsi, HTTP_STATUS_OK, &b);
}

int http_writeable(struct lws *wsi, void *user)
{
    pss *ps = user;
    if (!ps || !ps->http_body)
        return 0;
    int n = lws_write(wsi, ps->http_body + LWS_PRE, ps->http_len, LWS_WRITE_HTTP_FINAL);
    aip_free(ps->http_body);
    ps->http_body = NULL;
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
