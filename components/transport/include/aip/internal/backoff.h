/*
 * aip/internal/backoff.h — reconnect delays: exponential backoff with full jitter.
 *
 * delay(n) = uniform random in [0, min(cap, base * 2^n)] milliseconds, n = failed attempts so
 * far. Full jitter spreads a fleet's reconnects after a server restart (no thundering herd).
 * The attempt count is reset only by the caller, after a link stayed up for a while.
 */
#ifndef AIP_INTERNAL_BACKOFF_H
#define AIP_INTERNAL_BACKOFF_H

#include "aip/common.h"

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

#endif /* AIP_INTERNAL_BACKOFF_H */
