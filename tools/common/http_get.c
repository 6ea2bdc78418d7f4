/* SPDX-License-Identifier: MIT */
/* A one-shot HTTP(S) GET (see http_get.h). Runs its own lws context on the calling thread. */
#include "http_get.h"

#include <libwebsockets.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_CAP (16u << 20)

struct req {
    const char *token;
    int status;
    char *body;
    size_t len;
    int done;
    int failed;
    char err[256];
    lws_sorted_usec_list_t sul;
};

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct req *r = lws_context_user(lws_get_context(wsi));
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (r->token) {
            unsigned char **p = (unsigned char **)in, *end = (*p) + len;
            if (lws_add_http_header_by_name(
                    wsi, (const unsigned char *)"x-api-key:", (const unsigned char *)r->token,
                    (int)strlen(r->token), p, end))
                return -1;
        }
        break;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        r->status = (int)lws_http_client_http_response(wsi);
        break;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + 4096];
        char *px = buf + LWS_PRE;
        int lenx = 4096;
        if (lws_http_client_read(wsi, &px, &lenx) < 0)
            return -1;
        return 0;
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (r->len + len > BODY_CAP) {
            snprintf(r->err, sizeof r->err, "answer larger than %u bytes", BODY_CAP);
            r->failed = 1;
            return -1;
        } else {
            char *nb = realloc(r->body, r->len + len + 1);
            if (!nb)
                return -1;
            r->body = nb;
            memcpy(r->body + r->len, in, len);
            r->len += len;
            r->body[r->len] = 0;
        }
        return 0;
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP: r->done = 1; break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        snprintf(r->err, sizeof r->err, "cannot reach the server: %s",
                 in ? (const char *)in : "connection error");
        r->failed = 1;
        r->done = 1;
        break;
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void on_timeout(lws_sorted_usec_list_t *sul)
{
    struct req *r = lws_container_of(sul, struct req, sul);
    snprintf(r->err, sizeof r->err, "no answer in time");
    r->failed = 1;
    r->done = 1;
}

int aip_http_get(const char *ws_url, const char *path, const char *token, const char *ca_file,
                 int timeout_ms, int *status, char **body, char *err, size_t errlen)
{
    return aip_http_get_tls(ws_url, path, token, ca_file, NULL, NULL, timeout_ms, status, body, err,
                            errlen);
}

int aip_http_get_tls(const char *ws_url, const char *path, const char *token, const char *ca_file,
                     const char *cert_file, const char *key_file, int timeout_ms, int *status,
                     char **body, char *err, size_t errlen)
{
    struct req r;
    memset(&r, 0, sizeof r);
    r.token = token;
    *body = NULL;
    int tls;
    const char *p;
    if (strncmp(ws_url, "ws://", 5) == 0) {
        tls = 0;
        p = ws_url + 5;
    } else if (strncmp(ws_url, "wss://", 6) == 0) {
        tls = 1;
        p = ws_url + 6;
    } else {
        snprintf(err, errlen, "the server URL must start with ws:// or wss://");
        return -1;
    }
    char host[200];
    size_t hl = strcspn(p, ":/?");
    if (hl == 0 || hl >= sizeof host) {
        snprintf(err, errlen, "bad server URL");
        return -1;
    }
    memcpy(host, p, hl);
    host[hl] = 0;
    int port = tls ? 443 : 80;
    if (p[hl] == ':') {
        char *end;
        long v = strtol(p + hl + 1, &end, 10);
        if (end == p + hl + 1 || v <= 0 || v > 65535) {
            snprintf(err, errlen, "bad port in the server URL");
            return -1;
        }
        port = (int)v;
    }

    static const struct lws_protocols protocols[] = {{"http", cb, 0, 0, 0, NULL, 0},
                                                     {NULL, NULL, 0, 0, 0, NULL, 0}};
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.protocols = protocols;
    ci.user = &r;
    ci.fd_limit_per_thread = 8;
    if (tls) {
        /* Only for https: a TLS-initialised context loads the system CA store, which
         * libwebsockets 4.1.6 does not fully free at lws_context_destroy() on this default-vhost
         * path (LeakSanitizer: ~500 OpenSSL objects per call). Harmless in a one-shot tool;
         * kept off the plain-http path the tests use. */
        ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        ci.client_ssl_ca_filepath = ca_file;
        ci.client_ssl_cert_filepath = cert_file;
        ci.client_ssl_private_key_filepath = key_file;
    }
    struct lws_context *ctx = lws_create_context(&ci);
    if (!ctx) {
        snprintf(err, errlen, "cannot create an HTTP client");
        return -1;
    }
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = ctx;
    i.address = host;
    i.port = port;
    i.path = path;
    i.host = host; /* no origin: not a browser (see the transport) */
    i.method = "GET";
    i.protocol = "http";
    i.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    lws_sul_schedule(ctx, 0, &r.sul, on_timeout, (lws_usec_t)timeout_ms * 1000);
    if (!lws_client_connect_via_info(&i)) {
        snprintf(r.err, sizeof r.err, "cannot connect to %s:%d", host, port);
        r.failed = 1;
        r.done = 1;
    }
    while (!r.done && lws_service(ctx, 0) >= 0)
        ;
    lws_sul_cancel(&r.sul);
    lws_context_destroy(ctx);
    if (r.failed) {
        snprintf(err, errlen, "%s", r.err);
        free(r.body);
        return -1;
    }
    *status = r.status;
    *body = r.body ? r.body : calloc(1, 1);
    return 0;
}
