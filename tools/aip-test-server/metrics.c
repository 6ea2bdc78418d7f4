/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: GET /metrics in the Prometheus text format (version 0.0.4), names prefixed
 * aip_. Counters live in g_srv.m and are bumped on the service thread; gauges are computed when
 * the page is rendered.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* upper bounds of the command round-trip histogram, in seconds */
static const double rtt_le[RTT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};

void metrics_rtt(int64_t us)
{
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < RTT_BUCKETS && s > rtt_le[i])
        i++;
    g_srv.m.rtt_bucket[i]++;
    g_srv.m.rtt_count++;
    g_srv.m.rtt_sum_s += s;
}

static void head(aip_buf *b, const char *name, const char *type, const char *help)
{
    bputf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static long rss_bytes(void)
{
    /* /proc/self/statm: "size resident shared ..." in pages */
    char line[128] = "";
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    bool ok = fgets(line, sizeof line, f) != NULL;
    if (fclose(f) != 0 || !ok)
        return 0;
    char *end;
    long size = strtol(line, &end, 10), rss = strtol(end, NULL, 10);
    if (size <= 0)
        return 0;
    return rss > 0 ? rss * sysconf(_SC_PAGESIZE) : 0;
}

void metrics_render(aip_buf *b)
{
    const metrics *m = &g_srv.m;
    size_t by_type[3] = {0, 0, 0}; /* device, constellation, unregistered */
    const char *k;
    void *v;
    for (size_t i = 0; strmap_next(&g_srv.clients, &i, &k, &v);)
        by_type[((session *)v)->type == AIP_CLIENT_CONSTELLATION ? 1 : 0]++;

    head(b, "aip_connections", "gauge", "Registered AIP connections by client type.");
    bputf(b, "aip_connections{type=\"device\"} %zu\n", by_type[0]);
    bputf(b, "aip_connections{type=\"constellation\"} %zu\n", by_type[1]);
    head(b, "aip_viewers", "gauge", "Dashboard event viewers connected to /events.");
    bputf(b, "aip_viewers %zu\n", g_srv.nviewers);
    head(b, "aip_tasks_in_flight", "gauge", "Tasks the server is relaying.");
    bputf(b, "aip_tasks_in_flight %zu\n", g_srv.tasks.count);
    head(b, "aip_websocket_connections", "gauge",
         "Open WebSocket connections (AIP, echo, viewers), limited by --max-connections.");
    bputf(b, "aip_websocket_connections %zu\n", g_srv.nsessions);
    head(b, "aip_queued_bytes", "gauge",
         "Outbound bytes queued over every connection, limited by --max-total-queue.");
    bputf(b, "aip_queued_bytes %zu\n", g_srv.queued_total);
    head(b, "aip_connections_refused_total", "counter",
         "WebSocket upgrades refused with 503 by --max-connections.");
    bputf(b, "aip_connections_refused_total %llu\n", (unsigned long long)m->refused_connections);

    static const char *const enc[2] = {"json", "proto"};
    head(b, "aip_frames_in_total", "counter", "AIP messages received, by type and encoding.");
    for (int t = 1; t < AIP_MSG_TYPE_COUNT_; t++)
        for (int e = 0; e < 2; e++)
            bputf(b, "aip_frames_in_total{type=\"%s\",encoding=\"%s\"} %llu\n",
                  aip_msg_type_str((aip_msg_type)t), enc[e],
                  (unsigned long long)m->frames_in[t][e]);
    head(b, "aip_frames_out_total", "counter", "AIP messages sent, by type and encoding.");
    for (int t = 1; t < AIP_MSG_TYPE_COUNT_; t++)
        for (int e = 0; e < 2; e++)
            bputf(b, "aip_frames_out_total{type=\"%s\",encoding=\"%s\"} %llu\n",
                  aip_msg_type_str((aip_msg_type)t), enc[e],
                  (unsigned long long)m->frames_out[t][e]);
    head(b, "aip_echo_frames_total", "counter", "Frames echoed on /echo.");
    bputf(b, "aip_echo_frames_total %llu\n", (unsigned long long)m->echo_frames);

    head(b, "aip_errors_total", "counter", "Errors, by kind.");
    bputf(b, "aip_errors_total{kind=\"malformed_frame\"} %llu\n", (unsigned long long)m->malformed);
    bputf(b, "aip_errors_total{kind=\"error_sent\"} %llu\n", (unsigned long long)m->errors_sent);
    bputf(b, "aip_errors_total{kind=\"error_received\"} %llu\n",
          (unsigned long long)m->errors_received);
    bputf(b, "aip_errors_total{kind=\"frame_too_big\"} %llu\n", (unsigned long long)m->too_big);
    bputf(b, "aip_errors_total{kind=\"slow_reader\"} %llu\n", (unsigned long long)m->slow_readers);
    bputf(b, "aip_errors_total{kind=\"outbound_budget\"} %llu\n",
          (unsigned long long)m->budget_drops);
    bputf(b, "aip_errors_total{kind=\"unauthorized\"} %llu\n", (unsigned long long)m->unauthorized);
    bputf(b, "aip_errors_total{kind=\"bad_task\"} %llu\n", (unsigned long long)m->bad_tasks);

    head(b, "aip_registrations_total", "counter", "Registrations accepted.");
    bputf(b, "aip_registrations_total %llu\n", (unsigned long long)m->registrations);
    head(b, "aip_registrations_refused_total", "counter", "Registrations refused, by reason.");
    bputf(b, "aip_registrations_refused_total{reason=\"duplicate\"} %llu\n",
          (unsigned long long)m->refused_duplicate);
    bputf(b, "aip_registrations_refused_total{reason=\"invalid\"} %llu\n",
          (unsigned long long)m->refused_invalid);
    bputf(b, "aip_registrations_refused_total{reason=\"target_not_connected\"} %llu\n",
          (unsigned long long)m->refused_target);
    bputf(b, "aip_registrations_refused_total{reason=\"fault\"} %llu\n",
          (unsigned long long)m->refused_fault);
    bputf(b, "aip_registrations_refused_total{reason=\"server_full\"} %llu\n",
          (unsigned long long)m->refused_full);

    head(b, "aip_requests_refused_total", "counter",
         "HTTP requests and WebSocket handshakes refused before any endpoint, by reason.");
    for (int r = 0; r < REFUSE_COUNT_; r++)
        bputf(b, "aip_requests_refused_total{reason=\"%s\"} %llu\n", refuse_name((refuse_reason)r),
              (unsigned long long)m->refused[r]);

    head(b, "aip_faults_total", "counter", "Faults injected through POST /api/faults.");
    for (int f = 0; f < FAULT_COUNT_; f++)
        bputf(b, "aip_faults_total{fault=\"%s\"} %llu\n", fault_name((fault_kind)f),
              (unsigned long long)m->faults[f]);

    head(b, "aip_tasks_total", "counter", "Tasks ended, by status.");
    bputf(b, "aip_tasks_total{status=\"completed\"} %llu\n",
          (unsigned long long)m->tasks_completed);
    bputf(b, "aip_tasks_total{status=\"failed\"} %llu\n", (unsigned long long)m->tasks_failed);

    head(b, "aip_events_total", "counter", "Events published to the dashboard feed.");
    bputf(b, "aip_events_total %llu\n", (unsigned long long)m->events);
    head(b, "aip_viewer_drops_total", "counter", "Viewers closed for falling behind (1013).");
    bputf(b, "aip_viewer_drops_total %llu\n", (unsigned long long)m->viewer_drops);

    head(b, "aip_command_rtt_seconds", "histogram",
         "Command batch round trip: command sent to command_results received.");
    uint64_t cum = 0;
    for (int i = 0; i < RTT_BUCKETS; i++) {
        cum += m->rtt_bucket[i];
        bputf(b, "aip_command_rtt_seconds_bucket{le=\"%g\"} %llu\n", rtt_le[i],
              (unsigned long long)cum);
    }
    cum += m->rtt_bucket[RTT_BUCKETS];
    bputf(b, "aip_command_rtt_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    bputf(b, "aip_command_rtt_seconds_sum %.6f\n", m->rtt_sum_s);
    bputf(b, "aip_command_rtt_seconds_count %llu\n", (unsigned long long)m->rtt_count);

    head(b, "aip_process_resident_memory_bytes", "gauge", "Resident memory of the server.");
    bputf(b, "aip_process_resident_memory_bytes %ld\n", rss_bytes());
    head(b, "aip_uptime_seconds", "gauge", "Seconds since the server started.");
    bputf(b, "aip_uptime_seconds %.3f\n", (double)(now_us() - g_srv.started_us) / 1e6);
}
