/* SPDX-License-Identifier: MIT */
/*
 * The ConnectionManager (see aip/conn.h for the thread contract): one WebSocket link to the
 * server, kept registered, carrying this client's requests and the server's messages to it.
 *
 * This file holds its creation, destruction, stats, the shutdown gate and the state getters.
 * The link side (registration, heartbeat, liveness, the transport's events) is conn_link.c;
 * the request side (submit, pending, completion) is conn_request.c, with the argument for why
 * a request cannot be lost or sent on the wrong link. The struct and the locking rules they
 * share are in aip/internal/conn_int.h.
 *
 * Destruction: the gate is closed first and destroy waits for the calls inside it, so no
 * caller touches the transport once it stops; what is still pending fails with
 * AIP_E_SHUTDOWN before the link closes.
 */
#include "aip/conn.h"
#include "aip/common.h"
#include "aip/internal/backoff.h"
#include "aip/internal/conn_int.h"

#include <stdio.h>
#include <string.h>

const char *aip_conn_state_str(aip_conn_state s)
{
    switch (s) {
    case AIP_CONN_CONNECTING: return "connecting";
    case AIP_CONN_REGISTERING: return "registering";
    case AIP_CONN_REGISTERED: return "registered";
    case AIP_CONN_DISCONNECTED: return "disconnected";
    case AIP_CONN_BACKOFF: return "backoff";
    case AIP_CONN_STOPPED: return "stopped";
    default: return "unknown";
    }
}

void aip_conn_config_init(aip_conn_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->client_type = AIP_CLIENT_DEVICE;
    c->encoding = AIP_ENCODING_JSON;
    c->heartbeat_ms = 30000;
    c->register_timeout_ms = 10000;
    c->device_info_timeout_ms = 10000;
    c->task_timeout_ms = 1000000;
    c->max_frame_in = 1u << 20;
    c->max_pending = 65536;
    c->max_queued_bytes = 8u << 20;
    c->backoff_base_ms = 1000;
    c->backoff_cap_ms = 60000;
    c->stable_ms = 30000;
}

/* ---- state (any thread) ---------------------------------------------------------------- */

int aip_conn_get_refusal(aip_conn *c, char *why, size_t n)
{
    if (why && n)
        why[0] = 0;
    if (!c)
        return AIP_E_INVAL;
    aip_mutex_lock(&c->lock);
    int err = c->refused;
    if (why && n)
        snprintf(why, n, "%s", c->refused_why);
    aip_mutex_unlock(&c->lock);
    return err;
}

aip_conn_state aip_conn_get_state(aip_conn *c)
{
    if (!c)
        return AIP_CONN_STOPPED;
    aip_mutex_lock(&c->lock);
    aip_conn_state s = c->state;
    aip_mutex_unlock(&c->lock);
    return s;
}

aip_encoding aip_conn_encoding(aip_conn *c)
{
    if (!c)
        return AIP_ENCODING_JSON;
    aip_mutex_lock(&c->lock);
    aip_encoding e = c->registered ? c->enc : AIP_ENCODING_JSON;
    aip_mutex_unlock(&c->lock);
    return e;
}

const char *aip_conn_client_id(const aip_conn *c)
{
    return c ? c->client_id : NULL;
}

/* ---- the shutdown gate ------------------------------------------------------------------ */

int aip_conn_gate_enter(aip_conn *c)
{
    aip_mutex_lock(&c->lock);
    if (c->gate_closed) {
        aip_mutex_unlock(&c->lock);
        return AIP_E_SHUTDOWN;
    }
    c->inflight++;
    aip_mutex_unlock(&c->lock);
    return 0;
}

void aip_conn_gate_leave(aip_conn *c)
{
    aip_mutex_lock(&c->lock);
    if (--c->inflight == 0 && c->gate_closed)
        aip_cond_broadcast(&c->cond);
    aip_mutex_unlock(&c->lock);
}

static char *dup_opt(const char *s)
{
    return s ? aip_strdup(s) : NULL;
}

/* c->cfg: the caller's configuration with the defaults filled in, its strings owned copies
 * (never the url or token: they may carry a secret) and the registration metadata built. */
static int copy_config(aip_conn *c, const aip_conn_config *cfg)
{
    c->cfg = *cfg;
    aip_conn_config defaults;
    aip_conn_config_init(&defaults);
#define DEF(f)     \
    if (!c->cfg.f) \
    c->cfg.f = defaults.f
    DEF(heartbeat_ms);
    DEF(register_timeout_ms);
    DEF(device_info_timeout_ms);
    DEF(task_timeout_ms);
    DEF(max_frame_in);
    DEF(max_pending);
    DEF(max_queued_bytes);
    DEF(backoff_base_ms);
    DEF(backoff_cap_ms);
    DEF(stable_ms);
#undef DEF
    aip_liveness_defaults(c->cfg.heartbeat_ms, &c->cfg.ping_s, &c->cfg.hangup_s);
    c->client_id = aip_strdup(cfg->client_id);
    c->target_id = dup_opt(cfg->target_id);
    c->thread_name = aip_strdup(cfg->thread_name ? cfg->thread_name : "aip-service");
    if (!c->client_id || !c->thread_name || (cfg->target_id && !c->target_id))
        return AIP_E_NOMEM;
    c->cfg.client_id = c->client_id;
    c->cfg.target_id = c->target_id;
    c->cfg.url = NULL; /* never kept: it may carry a token */
    c->cfg.token = NULL;
    int rc = aip_conn_build_metadata(c, cfg->metadata_json);
    if (!rc)
        c->cfg.metadata_json = c->reg_metadata;
    return rc;
}

/* The transport's configuration: the caller's url, token and TLS files (used, not kept), the
 * limits and schedules from c->cfg. */
static void transport_config(const aip_conn *c, const aip_conn_config *cfg,
                             aip_transport_config *tc)
{
    memset(tc, 0, sizeof *tc);
    tc->url = cfg->url;
    tc->token = cfg->token;
    tc->token_mode = cfg->token_placement == AIP_AUTH_BEARER ? AIP_TOKEN_BEARER : AIP_TOKEN_QUERY;
    tc->offer_proto = cfg->encoding == AIP_ENCODING_PROTO;
    tc->ca_file = cfg->ca_file;
    tc->cert_file = cfg->cert_file;
    tc->key_file = cfg->key_file;
    tc->tls_insecure = cfg->tls_insecure;
    tc->max_frame_in = c->cfg.max_frame_in;
    tc->max_queue_bytes = c->cfg.max_queued_bytes;
    tc->ping_s = c->cfg.ping_s;
    tc->hangup_s = c->cfg.hangup_s;
    tc->backoff_base_ms = c->cfg.backoff_base_ms;
    tc->backoff_cap_ms = c->cfg.backoff_cap_ms;
    tc->stable_ms = c->cfg.stable_ms;
    tc->random = cfg->random;
    tc->thread_name = c->thread_name;
}

int aip_conn_create(const aip_conn_config *cfg, aip_conn **out)
{
    if (!out)
        return AIP_E_INVAL;
    *out = NULL;
    if (!cfg || !cfg->url || !cfg->client_id || !cfg->client_id[0] ||
        strlen(cfg->client_id) > AIP_ID_MAX)
        return AIP_E_INVAL;
    aip_conn *c = aip_calloc(1, sizeof *c);
    if (!c)
        return AIP_E_NOMEM;
    int rc = copy_config(c, cfg);
    if (rc)
        goto fail;
    rc = AIP_E_NOMEM;
    c->settled_tail = &c->settled_head;
    if (aip_mutex_init(&c->lock) || aip_cond_init(&c->cond) ||
        aip_pending_init(&c->pending, c->cfg.max_pending))
        goto fail;

    /* what the server sends, and what the transport reports, to the two sides */
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = c->cfg.max_frame_in;
    aip_processor_init(&c->proc, AIP_ENVELOPE_SERVER, &lim);
    aip_transport_events ev = {0};
    aip_conn_link_wire(c, &ev);
    aip_conn_request_wire(c, &ev);

    aip_transport_config tc;
    transport_config(c, cfg, &tc);
    if ((rc = aip_transport_create(&tc, &ev, c, &c->tr)))
        goto fail_pending;
    rc = AIP_E_NOMEM;
    c->t_heartbeat = aip_timer_create(c->tr, aip_conn_on_heartbeat_timer, c);
    c->t_register = aip_timer_create(c->tr, aip_conn_on_register_timeout, c);
    c->t_deadline = aip_timer_create(c->tr, aip_conn_on_deadline, c);
    if (!c->t_heartbeat || !c->t_register || !c->t_deadline)
        goto fail_transport;
    c->state = AIP_CONN_CONNECTING;
    if ((rc = aip_transport_start(c->tr)))
        goto fail_transport;
    *out = c;
    return 0;

fail_transport:
    aip_timer_destroy(c->t_heartbeat);
    aip_timer_destroy(c->t_register);
    aip_timer_destroy(c->t_deadline);
    aip_transport_destroy(c->tr);
fail_pending:
    aip_pending_destroy(&c->pending);
    aip_cond_destroy(&c->cond);
    aip_mutex_destroy(&c->lock);
fail:
    aip_free(c->client_id);
    aip_free(c->target_id);
    aip_free(c->thread_name);
    aip_free(c->reg_metadata);
    aip_free(c);
    return rc;
}

void aip_conn_destroy_ex(aip_conn *c, int code, const char *reason, uint32_t grace_ms)
{
    if (!c)
        return;
    /* 1. close the gate and wait for the calls already inside */
    aip_mutex_lock(&c->lock);
    c->gate_closed = true;
    aip_cond_broadcast(&c->cond);
    while (c->inflight > 0)
        aip_cond_wait(&c->cond, &c->lock);
    c->registered = false;
    aip_mutex_unlock(&c->lock);
    /* 2. fail what is pending */
    aip_conn_fail_all(c, AIP_E_SHUTDOWN, "the connection is shutting down");
    /* 3. close the link and stop the service thread */
    aip_transport_stop(c->tr, code ? code : 1000, reason ? reason : "client shutdown", grace_ms);
    if (c->cfg.on_state) {
        aip_conn_event ev = {AIP_CONN_STOPPED, "stopped", 0, 0, 0, false, 0};
        c->cfg.on_state(c, &ev, c->cfg.user);
    }
    /* 4. free: timers before the transport (they live in its lws context) */
    aip_timer_destroy(c->t_heartbeat);
    aip_timer_destroy(c->t_register);
    aip_timer_destroy(c->t_deadline);
    aip_transport_destroy(c->tr);
    aip_pending_destroy(&c->pending);
    aip_cond_destroy(&c->cond);
    aip_mutex_destroy(&c->lock);
    aip_free(c->client_id);
    aip_free(c->target_id);
    aip_free(c->thread_name);
    aip_free(c->reg_metadata);
    aip_free(c);
}

void aip_conn_destroy(aip_conn *c)
{
    aip_conn_destroy_ex(c, 1000, "client shutdown", 2000);
}

int aip_conn_reload_tls(aip_conn *c, const char *ca_file, const char *cert_file,
                        const char *key_file)
{
    if (!c)
        return AIP_E_INVAL;
    int rc = aip_conn_gate_enter(c);
    if (rc)
        return rc;
    rc = aip_transport_reload_tls(c->tr, ca_file, cert_file, key_file);
    aip_conn_gate_leave(c);
    return rc;
}

void aip_conn_get_stats(aip_conn *c, aip_conn_stats *s)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!c)
        return;
    aip_transport_stats ts;
    aip_transport_get_stats(c->tr, &ts);
    s->frames_sent = ts.frames_out;
    s->bytes_sent = ts.bytes_out;
    s->frames_received = ts.frames_in;
    s->bytes_received = ts.bytes_in;
    s->dropped_frames = ts.dropped_stale;
#define LD(i) atomic_load_explicit(&c->st[i], memory_order_relaxed)
    s->requests = LD(S_REQUESTS);
    s->completed = LD(S_COMPLETED);
    s->remote_errors = LD(S_REMOTE_ERRORS);
    s->timeouts = LD(S_TIMEOUTS);
    s->conn_lost = LD(S_CONN_LOST);
    s->late = LD(S_LATE);
    s->unmatched = LD(S_UNMATCHED);
    s->errors_uncorrelated = LD(S_ERRORS_UNCORRELATED);
    s->registrations = LD(S_REGISTRATIONS);
    s->registration_failures = LD(S_REGISTRATION_FAILURES);
    s->reconnects = LD(S_RECONNECTS);
    s->liveness_drops = LD(S_LIVENESS_DROPS);
    s->queue_full = LD(S_QUEUE_FULL);
    s->too_large = LD(S_TOO_LARGE);
#undef LD
    s->oversized = ts.oversized_in;
    s->malformed = atomic_load_explicit(&c->proc.malformed, memory_order_relaxed);
    aip_mutex_lock(&c->lock);
    s->pending = aip_pending_count(&c->pending);
    aip_mutex_unlock(&c->lock);
}
