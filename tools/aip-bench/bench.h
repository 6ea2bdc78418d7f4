/* SPDX-License-Identifier: MIT */
/* aip-bench internals shared by its modes: latency samples and the one JSON output line. */
#ifndef AIP_BENCH_H
#define AIP_BENCH_H

#include "reg_wait.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_lat {
    uint32_t *us;
    size_t n, cap;
    bool sorted;
} bench_lat;

uint64_t bench_now_ns(void);
void bench_lat_add(bench_lat *l, uint64_t ns);
/* Moves src's samples into dst (src is emptied). */
void bench_lat_merge(bench_lat *dst, bench_lat *src);
void bench_lat_sort(bench_lat *l);
/* Percentile p in [0, 1] of sorted samples (0 when none). */
uint32_t bench_lat_pct(const bench_lat *l, double p);
void bench_lat_free(bench_lat *l);

typedef struct bench_result {
    const char *mode, *encoding;
    int threads, inflight;
    double rate; /* open loop: intended requests per second; 0 = closed loop */
    uint64_t requests, ok, errors, mismatched, late;
    double seconds;
} bench_result;

/* Prints the result line: {"mode":..., "req_per_s":..., "p50_us":..., "max_rss_kb":...}. */
void bench_print(const bench_result *r, bench_lat *lat);

int bench_run_raw(const char *server, uint64_t requests, double seconds, int inflight);

typedef struct bench_fleet_opts {
    const char *server, *token;
    bool proto;
    int devices;
    double ramp;      /* connections per second (0: all at once) */
    double seconds;   /* steady state after the ramp */
    double task_rate; /* tasks per second from the constellation */
    uint32_t heartbeat_ms;
    int server_pid;
} bench_fleet_opts;

int bench_run_fleet(const bench_fleet_opts *o);

#endif
