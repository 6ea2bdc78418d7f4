/* Clocks: monotonic for deadlines, wall for timestamps; injectable through aip_clock. */
#include "aip/common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t sys_mono_ns(void *user)
{
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t sys_wall_us(void *user)
{
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const aip_clock g_system_clock = {sys_mono_ns, sys_wall_us, NULL};

const aip_clock *aip_clock_system(void)
{
    return &g_system_clock;
}

uint64_t aip_now_ns(const aip_clock *c)
{
    return c && c->mono_ns ? c->mono_ns(c->user) : sys_mono_ns(NULL);
}

int64_t aip_wall_us(const aip_clock *c)
{
    return c && c->wall_us ? c->wall_us(c->user) : sys_wall_us(NULL);
}

uint64_t aip_add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? AIP_NEVER : a + b;
}

uint64_t aip_deadline_ms(uint64_t now_ns, int64_t timeout_ms)
{
    if (timeout_ms < 0 || (uint64_t)timeout_ms > UINT64_MAX / 1000000u)
        return AIP_NEVER;
    return aip_add_sat(now_ns, (uint64_t)timeout_ms * 1000000u);
}

void aip_format_timestamp(int64_t wall_us, char *buf, size_t len)
{
    time_t secs = (time_t)(wall_us / 1000000);
    long usec = (long)(wall_us % 1000000);
    if (usec < 0) {
        usec += 1000000;
        secs -= 1;
    }
    if (!buf || !len)
        return;
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        memset(&tm, 0, sizeof tm); /* out of range: 1900-01-00 rather than garbage */
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}
