/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/backoff.h — reconnect delays: exponential backoff with full jitter.
 *
 * delay(n) = uniform random in [0, min(cap, base * 2^n)] milliseconds, n = failed attempts so
 * far. Full jitter spreads a fleet's reconnects after a server restart (no thundering herd).
 * The attempt count is reset by the caller when a link made progress (aip_backoff_progress).
 *
 * Progress (why a registered link counts): a link cut by an idle timeout somewhere between
 * device and server (nginx's proxy_read_timeout below the heartbeat, a NAT, a load balancer)
 * registers, lives a few seconds and ends with a bare 1006. It never lives stable_ms, so with
 * "reset only after stable_ms" each such link grew the backoff until it reached its 60 s cap
 * and the device was offline most of the time. Now a link that registered AND lived at least
 * base_ms also resets the count: the next delay is again uniform in [0, base], still random.
 * The guard is the lifetime, not the registration alone: a server that accepts the
 * registration and closes at once (< base_ms) still counts as a failed attempt, so such a
 * server gets an exponentially slower loop, never a tight one; and a device whose links
 * register and last >= base_ms spends at least about 2/3 of the time connected (mean delay
 * base/2) while reconnecting at most once per 1.5 base on average.
 *
 * Streaks: links that keep ending after about the same short lifetime are the signature of
 * such an idle timeout; aip_link_streak_add() says when to name it (once per streak).
 */
#ifndef AIP_INTERNAL_BACKOFF_H
#define AIP_INTERNAL_BACKOFF_H

#include "aip/common.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct aip_backoff {
    uint32_t base_ms;
    uint32_t cap_ms;
    uint32_t attempt;
    const aip_random *random; /* NULL: the default source */
} aip_backoff;

static inline void aip_backoff_init(aip_backoff *b, uint32_t base_ms, uint32_t cap_ms,
                                    const aip_random *r)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
    b->attempt = 0;
    b->random = r;
}

/* The ceiling for the current attempt: min(cap, base * 2^attempt). */
static inline uint32_t aip_backoff_ceiling(const aip_backoff *b)
{
    uint64_t c = (uint64_t)b->base_ms << (b->attempt < 32 ? b->attempt : 32);
    return c > b->cap_ms ? b->cap_ms : (uint32_t)c;
}

/* Draws the next delay and counts the attempt. */
static inline uint32_t aip_backoff_next(aip_backoff *b)
{
    uint32_t ceil = aip_backoff_ceiling(b);
    if (b->attempt < 64)
        b->attempt++;
    return (uint32_t)aip_random_below(b->random, (uint64_t)ceil + 1);
}

static inline void aip_backoff_reset(aip_backoff *b)
{
    b->attempt = 0;
}

/* Whether a link that ended made progress, so the attempt count goes back to 0: it was open,
 * the layer above did not mark it failed (refused registration, no answer), and it either
 * lived stable_ms or registered and lived at least base_ms (see the note above). */
static inline bool aip_backoff_progress(const aip_backoff *b, bool was_open, bool failed,
                                        bool registered, uint64_t lived_ms, uint32_t stable_ms)
{
    if (!was_open || failed)
        return false;
    return lived_ms >= stable_ms || (registered && lived_ms >= b->base_ms);
}

/* Links in a row that lasted about the same time. */
typedef struct aip_link_streak {
    uint64_t ref_ms; /* the lifetime of the streak's first link */
    uint32_t count;  /* links in a row that lasted about ref_ms (0: no streak) */
    bool named;      /* this streak was reported */
} aip_link_streak;

#define AIP_STREAK_NAME_AT  3       /* links in a row before the streak is named */
#define AIP_STREAK_SHORT_MS 600000u /* only links shorter than this form a streak */

/* "About the same": within a fifth of the first link's lifetime, or 1.5 s (timers, the
 * reconnect and a registration's round trip blur a short idle timeout by that much). */
static inline bool aip_link_streak_same(uint64_t ref_ms, uint64_t lived_ms)
{
    uint64_t d = lived_ms > ref_ms ? lived_ms - ref_ms : ref_ms - lived_ms;
    uint64_t tol = ref_ms / 5 > 1500 ? ref_ms / 5 : 1500;
    return d <= tol;
}

/* Records the lifetime of a link that registered and then ended. Returns true exactly once per
 * streak: when AIP_STREAK_NAME_AT links in a row lasted about the same short time. A link
 * with another lifetime starts a new streak; a long one (AIP_STREAK_SHORT_MS) ends it. */
static inline bool aip_link_streak_add(aip_link_streak *s, uint64_t lived_ms)
{
    if (lived_ms >= AIP_STREAK_SHORT_MS) {
        *s = (aip_link_streak){0};
        return false;
    }
    if (s->count && aip_link_streak_same(s->ref_ms, lived_ms)) {
        if (s->count < UINT32_MAX)
            s->count++;
    } else {
        *s = (aip_link_streak){.ref_ms = lived_ms, .count = 1};
    }
    if (s->count >= AIP_STREAK_NAME_AT && !s->named) {
        s->named = true;
        return true;
    }
    return false;
}

/* The WebSocket ping and hang-up (seconds of silence) where the caller set none (0): the ping
 * follows the heartbeat, heartbeat + 5 s kept within [20, 50] (an answered heartbeat counts as
 * heard, so an idle link carries heartbeats only, and a heartbeat over 45 s still gets a ping
 * before a proxy's usual 60 s idle timeout); the hang-up 10 s after the ping. */
static inline void aip_liveness_defaults(uint32_t heartbeat_ms, uint32_t *ping_s,
                                         uint32_t *hangup_s)
{
    if (!*ping_s) {
        uint64_t p = ((uint64_t)heartbeat_ms + 999) / 1000 + 5;
        *ping_s = p < 20 ? 20 : p > 50 ? 50 : (uint32_t)p;
    }
    if (!*hangup_s)
        *hangup_s = *ping_s + 10;
}

#endif /* AIP_INTERNAL_BACKOFF_H */
