/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/link_error.h — naming why a link could not be made (not installed).
 *
 * Design note
 * - A refusal is named once, here, from what libwebsockets tells us (the HTTP status of a failed
 *   WebSocket upgrade, lws_http_client_http_response()) or, for an HTTP CONNECT proxy, from a
 *   probe CONNECT of our own: lws 4.1.6 reads the proxy's answer itself, keeps no status and
 *   reports every non-200 answer as "proxy not h1" (client-http.c, LRS_WAITING_PROXY_REPLY).
 * - Each function returns the AIP_E_* code the link's end is reported with, and writes one
 *   sentence (no secrets: the token and the proxy's password are never part of it).
 * - Refusals that will not fix themselves within seconds — credentials refused (AIP_E_AUTH) and
 *   registrations the server refused for a lasting reason (AIP_E_REFUSED) — are retried on the
 *   slow schedule (aip_refusal_delay), not the fast reconnect backoff.
 * All pure: no I/O, no allocation, any thread.
 */
#ifndef AIP_INTERNAL_LINK_ERROR_H
#define AIP_INTERNAL_LINK_ERROR_H

#include "aip/common.h"
#include "aip/internal/backoff.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The server answered the WebSocket upgrade with HTTP `status` (not 101). have_token: a token
 * was sent. 401/403: AIP_E_AUTH ("the server refused the token (HTTP 403)", or without a
 * token "the server requires a token (HTTP 401)"); 404: AIP_E_NOT_FOUND; any other status:
 * AIP_E_REMOTE, named ("... HTTP 503 to the WebSocket upgrade: server busy"). status <= 0 (not
 * known): 0, and why is left empty. */
int aip_link_upgrade_refusal(int status, bool have_token, char *why, size_t n);

/* An HTTP CONNECT proxy answered `status` (not 2xx). have_credentials: the proxy URL carried
 * user:password. 407 and 403: AIP_E_AUTH; 502/503/504 and others: AIP_E_REMOTE. status <= 0:
 * 0, why left empty. */
int aip_link_proxy_refusal(int status, bool have_credentials, char *why, size_t n);

/* The status code of an HTTP/1.x status line at the start of buf ("HTTP/1.1 407 ..."), or 0
 * when buf does not start with one. len: the bytes in buf (no NUL needed). */
int aip_http_status_line(const char *buf, size_t len);

/* A registration refused with the server's `text`: is the reason a lasting one (retry on the
 * slow schedule, report AIP_E_REFUSED at once)? True for the refusals UFO's server and ours
 * send for a state only a person or another client changes: a duplicate client_id, a target
 * device that is not connected, a missing client_id or a first frame that is not a
 * registration. False for anything else (a full server, an injected fault, unknown texts):
 * those keep the fast backoff. */
bool aip_refusal_is_final(const char *text);

/* Is err one of the codes retried on the slow schedule (AIP_E_AUTH, AIP_E_REFUSED)? */
static inline bool aip_link_error_is_final(int err)
{
    return err == AIP_E_AUTH || err == AIP_E_REFUSED;
}

/* The delay before the attempt after such a refusal: uniform in [3/4 cap, cap] (the backoff's
 * cap, 60 s by default: jittered, so that a fleet refused together does not come back
 * together). Counts the attempt, as aip_backoff_next() does. */
static inline uint32_t aip_refusal_delay(aip_backoff *b)
{
    if (b->attempt < 64)
        b->attempt++;
    uint32_t quarter = b->cap_ms / 4;
    return b->cap_ms - (uint32_t)aip_random_below(b->random, (uint64_t)quarter + 1);
}

#endif /* AIP_INTERNAL_LINK_ERROR_H */
