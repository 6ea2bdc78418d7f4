/* SPDX-License-Identifier: MIT */
/*
 * The default random source: splitmix64 over an atomic counter seeded once from getrandom().
 * Each call is one atomic add and a few multiplies, safe from any thread, and every output is
 * distinct for 2^64 calls (splitmix64 is a bijection of its counter). Not cryptographic: it
 * makes ids and jitter, never keys. Keys come from aip_random_secret(): the kernel's CSPRNG.
 */
#include "aip/common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

static _Atomic uint64_t g_ctr;
static atomic_flag g_seeded_flag = ATOMIC_FLAG_INIT;
static _Atomic int g_seeded;

static void seed_once(void)
{
    if (atomic_load_explicit(&g_seeded, memory_order_acquire))
        return;
    if (!atomic_flag_test_and_set(&g_seeded_flag)) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&s;
        }
        atomic_store_explicit(&g_ctr, s, memory_order_relaxed);
        atomic_store_explicit(&g_seeded, 1, memory_order_release);
    } else {
        while (!atomic_load_explicit(&g_seeded, memory_order_acquire))
            ; /* another thread is seeding: a few instructions */
    }
}

static uint64_t splitmix64_next(void)
{
    seed_once();
    uint64_t z = atomic_fetch_add_explicit(&g_ctr, 0x9e3779b97f4a7c15ull, memory_order_relaxed) +
                 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t aip_random_u64(const aip_random *r)
{
    return r && r->next ? r->next(r->user) : splitmix64_next();
}

uint64_t aip_random_below(const aip_random *r, uint64_t bound)
{
    if (bound <= 1)
        return 0;
    /* Rejection sampling: discard the top partial range so every value is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    for (;;) {
        uint64_t x = aip_random_u64(r);
        if (x < limit)
            return x % bound;
    }
}

void aip_uuid4(const aip_random *r, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    uint8_t b[16];
    uint64_t a = aip_random_u64(r), c = aip_random_u64(r);
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(a >> (8 * i));
        b[8 + i] = (uint8_t)(c >> (8 * i));
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int aip_random_secret(void *buf, size_t len)
{
    if (!buf && len)
        return AIP_E_INVAL;
    uint8_t *p = buf;
    while (len) {
        /* blocking, no fallback: before the pool is initialised (early boot) it waits, and a
         * failure is an error, never a weaker key */
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return AIP_E_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
