/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: JSON output helpers — the pieces every answer, event and snapshot is built
 * from: formatted text, strings (or null), timestamps, the CLIENT object (GET /api/clients/...,
 * the /events snapshot and registration events), an action result in UFO's shape (task_end),
 * and the device-info answer of the HTTP API.
 *
 * Text from peers goes through put_str() (escaped) or, for JSON values, only when the decoder
 * (or the codec's scan) has validated it. Calls no other file of the server.
 */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void bputf(aip_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        aip_buf_append(b, small, (size_t)n);
        return;
    }
    char *big = aip_malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    aip_buf_append(b, big, (size_t)n);
    aip_free(big);
}

void put_str(aip_buf *b, const char *s)
{
    if (s)
        aip_json_put_string(b, s, strlen(s));
    else
        aip_buf_puts(b, "null");
}

void put_time(aip_buf *b, int64_t us)
{
    if (!us) {
        aip_buf_puts(b, "null");
        return;
    }
    char ts[40];
    aip_format_timestamp(us, ts, sizeof ts);
    put_str(b, ts);
}

/* The registered clients as a JSON array: their ids, or their full CLIENT objects. */
void put_clients(aip_buf *b, bool details)
{
    aip_buf_putc(b, '[');
    const char *k;
    void *v;
    bool first = true;
    for (size_t i = 0; strmap_next(&g_srv.clients, &i, &k, &v);) {
        if (!first)
            aip_buf_putc(b, ',');
        first = false;
        if (details)
            put_client(b, v, false);
        else
            put_str(b, k);
    }
    aip_buf_putc(b, ']');
}

void put_client(aip_buf *b, const session *s, bool full)
{
    aip_buf_puts(b, "{\"client_id\":");
    put_str(b, s->client_id);
    aip_buf_puts(b, ",\"client_type\":");
    put_str(b, aip_client_type_str(s->type));
    aip_buf_puts(b, ",\"target_id\":");
    put_str(b, s->target_id);
    aip_buf_puts(b, ",\"address\":");
    put_str(b, s->addr);
    aip_buf_puts(b, ",\"connected_since\":");
    put_time(b, s->connected_us);
    aip_buf_puts(b, ",\"last_heartbeat\":");
    put_time(b, s->last_heartbeat_us);
    aip_buf_puts(b, ",\"encoding\":");
    put_str(b, s->proto ? "proto" : "json");
    aip_buf_puts(b, ",\"extensions\":[");
    if (s->ext_correlated)
        aip_buf_puts(b, "\"correlated_errors\"");
    if (s->ext_live)
        aip_buf_puts(b, s->ext_correlated ? ",\"live_device_info\"" : "\"live_device_info\"");
    bputf(b, "],\"commands_in_flight\":%u,\"frames_in\":%llu,\"frames_out\":%llu",
          s->commands_in_flight, (unsigned long long)s->frames_in,
          (unsigned long long)s->frames_out);
    aip_buf_puts(b, ",\"faults\":[");
    int64_t now = now_us();
    bool first = true;
    const struct {
        int64_t until;
        const char *name;
    } f[] = {{s->stall_until_us, "stall"},
             {s->delay_until_us, "delay"},
             {s->mute_until_us, "mute_heartbeats"}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].until > now) {
            bputf(b, "%s{\"fault\":\"%s\",\"seconds_left\":%.1f}", first ? "" : ",", f[i].name,
                  (double)(f[i].until - now) / 1e6);
            first = false;
        }
    /* a big system_info is summarised except where it is asked for alone (GET
     * /api/clients/{id}): the whole of it stays one request away */
    bool summary = !full && s->si_summary;
    aip_buf_puts(b, "],\"system_info\":");
    aip_buf_puts(b, summary ? s->si_summary : s->system_info ? s->system_info : "null");
    bputf(b, ",\"system_info_bytes\":%zu,\"system_info_summarised\":%s}", s->si_bytes,
          summary ? "true" : "false");
}

void put_result(aip_buf *b, const aip_result *r)
{
    const char *st = aip_result_status_str(r->status);
    aip_buf_puts(b, "{\"status\":");
    aip_json_put_string(b, st, strlen(st));
    aip_buf_puts(b, ",\"error\":");
    if (r->error)
        aip_json_put_string(b, r->error, strlen(r->error));
    else
        aip_buf_puts(b, "null");
    aip_buf_puts(b, ",\"result\":");
    aip_buf_puts(b, r->result ? r->result : "null");
    aip_buf_puts(b, ",\"namespace\":");
    if (r->ns)
        aip_json_put_string(b, r->ns, strlen(r->ns));
    else
        aip_buf_puts(b, "null");
    aip_buf_puts(b, ",\"call_id\":");
    if (r->call_id)
        aip_json_put_string(b, r->call_id, strlen(r->call_id));
    else
        aip_buf_puts(b, "null");
    aip_buf_putc(b, '}');
}

void put_device_info(aip_buf *b, const char *client_id, const char *source, const char *info)
{
    aip_buf_puts(b, "{\"client_id\":");
    put_str(b, client_id);
    aip_buf_puts(b, ",\"source\":");
    put_str(b, source);
    aip_buf_puts(b, ",\"device_info\":");
    aip_buf_puts(b, info ? info : "{}");
    aip_buf_putc(b, '}');
}
