/* SPDX-License-Identifier: MIT */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_lat_add(bench_lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t n = l->cap ? l->cap * 2 : 4096;
        uint32_t *v = realloc(l->us, n * sizeof *v);
        if (!v)
            return;
        l->us = v;
        l->cap = n;
    }
    uint64_t us = ns / 1000;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->sorted = false;
}

void bench_lat_merge(bench_lat *dst, bench_lat *src)
{
    for (size_t i = 0; i < src->n; i++)
        bench_lat_add(dst, (uint64_t)src->us[i] * 1000);
    bench_lat_free(src);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void bench_lat_sort(bench_lat *l)
{
    if (l->n && !l->sorted)
        qsort(l->us, l->n, sizeof *l->us, cmp_u32);
    l->sorted = true;
}

uint32_t bench_lat_pct(const bench_lat *l, double p)
{
    if (!l->n)
        return 0;
    size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->us[i < l->n ? i : l->n - 1];
}

void bench_lat_free(bench_lat *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

void bench_print(const bench_result *r, bench_lat *lat)
{
    bench_lat_sort(lat);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"mode\":\"%s\",\"encoding\":\"%s\",\"threads\":%d,\"inflight\":%d,", r->mode,
           r->encoding, r->threads, r->inflight);
    if (r->rate > 0)
        printf("\"rate\":%.0f,", r->rate);
    printf("\"requests\":%llu,\"ok\":%llu,\"errors\":%llu,\"mismatched\":%llu,"
           "\"seconds\":%.3f,\"req_per_s\":%.0f,\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u,"
           "\"max_us\":%u,\"late\":%llu,\"cpu_s\":%.3f,\"max_rss_kb\":%ld}\n",
           (unsigned long long)r->requests, (unsigned long long)r->ok,
           (unsigned long long)r->errors, (unsigned long long)r->mismatched, r->seconds,
           r->seconds > 0 ? (double)r->requests / r->seconds : 0, bench_lat_pct(lat, 0.50),
           bench_lat_pct(lat, 0.99), bench_lat_pct(lat, 0.999), bench_lat_pct(lat, 1.0),
           (unsigned long long)r->late,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
               ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6,
           ru.ru_maxrss);
    if (fflush(stdout))
        fprintf(stderr, "aip-bench: cannot write the result line\n");
}
