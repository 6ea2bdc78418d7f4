/* SPDX-License-Identifier: MIT */
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

static char *put_digits(char *o, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + width;
}

/* Civil date of a day count from 1970-01-01 (proleptic Gregorian; Howard Hinnant's
 * days-from-civil inverse), so no gmtime_r and no snprintf on every outgoing frame. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void aip_format_timestamp(int64_t wall_us, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    int64_t secs = wall_us / 1000000;
    int64_t usec = wall_us % 1000000;
    if (usec < 0) {
        usec += 1000000;
        secs -= 1;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    char tmp[40];
    if (y < 0 || y > 9999) {
        /* outside four digits: what gmtime_r and printf say (rare; never on a real clock) */
        time_t t = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
            memset(&tm, 0, sizeof tm); /* out of range: 1900-01-00 rather than garbage */
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)usec);
        return;
    }
    /* YYYY-MM-DDTHH:MM:SS.uuuuuu+00:00 */
    char *o = put_digits(tmp, (unsigned)y, 4);
    *o++ = '-';
    o = put_digits(o, mo, 2);
    *o++ = '-';
    o = put_digits(o, d, 2);
    *o++ = 'T';
    o = put_digits(o, (unsigned)(sod / 3600), 2);
    *o++ = ':';
    o = put_digits(o, (unsigned)(sod / 60 % 60), 2);
    *o++ = ':';
    o = put_digits(o, (unsigned)(sod % 60), 2);
    *o++ = '.';
    o = put_digits(o, (unsigned)usec, 6);
    memcpy(o, "+00:00", 6);
    o += 6;
    size_t n = (size_t)(o - tmp);
    if (n > len - 1)
        n = len - 1; /* truncated like snprintf */
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}
