/* SPDX-License-Identifier: MIT */
/*
 * The transport's client vhost: where the TLS files are loaded (OpenSSL context, CA store) and
 * which proxy its connections go through; and TLS reloads, which make a new vhost (the lws
 * context is never re-created: re-creating contexts grows RSS in lws 4.1).
 *
 * Threads: aip_transport_reload_tls() runs on any thread and only hands the file names to the
 * service thread (under qlock, then lws_cancel_service()); the service thread makes and
 * destroys vhosts from the sul_reload timer (aip_tp_apply_reload), never inside an lws
 * callback.
 */
#include "aip/internal/transport_impl.h"
#include "aip/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- proxies --------------------------------------------------------------------------------- */

/* Keeps the proxy of the vhost being made for the probe: "[user:password@]host" as
 * aip_url_parse_proxy() gives it (lws_set_proxy() sends the part before the last '@' as Basic
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

/* Proxies: libwebsockets reads http_proxy by itself (HTTP CONNECT proxies only; Debian's build
 * has no SOCKS5). For wss:// we also honour https_proxy, as curl does, except for loopback
 * servers. proxy_host (n bytes) must live until the vhost is made. */
static void choose_proxy(aip_transport *t, struct lws_context_creation_info *vi, char *proxy_host,
                         size_t n)
{
    const char *hp = getenv("https_proxy") ? getenv("https_proxy") : getenv("HTTPS_PROXY");
    const char *plain = getenv("http_proxy");
    unsigned plain_port = 0;
    if (t->u.tls && hp && hp[0] && !aip_url_is_loopback(t->u.host) &&
        aip_url_parse_proxy(hp, proxy_host, n, &vi->http_proxy_port) == 0) {
        vi->http_proxy_address = proxy_host;
        log_proxy("https_proxy", hp);
        remember_proxy(t, proxy_host, vi->http_proxy_port);
    } else if (plain && plain[0]) {
        log_proxy("http_proxy", plain); /* lws reads it itself */
        if (aip_url_parse_proxy(plain, proxy_host, n, &plain_port) == 0)
            remember_proxy(t, proxy_host, plain_port);
        else
            remember_proxy(t, NULL, 0);
    } else {
        remember_proxy(t, NULL, 0);
    }
}

/* ---- the vhost ------------------------------------------------------------------------------- */

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

struct lws_vhost *aip_tp_make_vhost(aip_transport *t, int variant)
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
    if (t->u.tls) {
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
    char proxy_host[256];
    choose_proxy(t, &vi, proxy_host, sizeof proxy_host);
    struct lws_vhost *vh = lws_create_vhost(t->ctx, &vi);
    if (!vh)
        aip_log(AIP_LOG_ERROR, LOG_COMP,
                "cannot create the client vhost (certificate files? ca %s, cert %s, key %s)",
                t->ca_file ? t->ca_file : "system", t->cert_file ? t->cert_file : "none",
                t->key_file ? t->key_file : "none");
    return vh;
}

/* ---- TLS reload (service thread, from a timer) ----------------------------------------------- */

/* A vhost replaced by a reload stays while the connection made on it lasts. */
static void retire_unused(aip_transport *t)
{
    if (t->retire_vh && !(t->wsi && t->wsi_vh == t->retire_vh)) {
        lws_vhost_destroy(t->retire_vh);
        t->retire_vh = NULL;
    }
}

void aip_tp_apply_reload(lws_sorted_usec_list_t *sul)
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
    struct lws_vhost *nv = aip_tp_make_vhost(t, variant);
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
        lws_sul_schedule(t->ctx, 0, &t->sul_connect, aip_tp_start_connect, 1);
}

int aip_transport_reload_tls(aip_transport *t, const char *ca_file, const char *cert_file,
                             const char *key_file)
{
    if (!t->u.tls)
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
