/* SPDX-License-Identifier: MIT */
/*
 * Logging. The level and hook are process-wide atomics: the check on the hot path is one
 * relaxed load, and lines are formatted only when they will be emitted. The default sink writes
 * one line per call to stderr with a single write(), so lines from several threads never
 * interleave mid-line.
 */
#include "aip/common.h"
#include "aip/redact.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static _Atomic int g_level = AIP_LOG_INFO;

/* The hook and its user pointer change together, and a caller that resets the hook must be
 * able to free its user data right after: so the hook runs under a mutex, and
 * aip_log_set_hook() waits for a line in progress. Only lines that pass the level check take
 * the mutex. */
static pthread_mutex_t g_hook_lock = PTHREAD_MUTEX_INITIALIZER;
static aip_log_hook g_hook_fn;
static void *g_hook_user;
static _Atomic bool g_hook_set;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Out-of-range levels are clamped: the level indexes level_names. */
static int clamp_level(int level)
{
    return level < AIP_LOG_ERROR ? AIP_LOG_ERROR : level > AIP_LOG_DEBUG ? AIP_LOG_DEBUG : level;
}

void aip_log_set_level(aip_log_level level)
{
    atomic_store_explicit(&g_level, clamp_level((int)level), memory_order_relaxed);
}

aip_log_level aip_log_get_level(void)
{
    return (aip_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

int aip_log_level_parse(const char *name, aip_log_level *out)
{
    if (!out)
        return AIP_E_INVAL;
    for (int i = 0; i < 4; i++) {
        if (name && strcasecmp(name, level_names[i]) == 0) {
            *out = (aip_log_level)i;
            return 0;
        }
    }
    if (name && strcasecmp(name, "warning") == 0) {
        *out = AIP_LOG_WARN;
        return 0;
    }
    return AIP_E_INVAL;
}

void aip_log_set_hook(aip_log_hook hook, void *user)
{
    pthread_mutex_lock(&g_hook_lock);
    g_hook_fn = hook;
    g_hook_user = user;
    atomic_store_explicit(&g_hook_set, hook != NULL, memory_order_release);
    pthread_mutex_unlock(&g_hook_lock);
}

void aip_vlog(aip_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (!fmt || (int)level > atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    level = (aip_log_level)clamp_level((int)level);
    char raw[1024], red[1280], msg[1024];
    vsnprintf(raw, sizeof raw, fmt, ap);
    /* The last gate for secrets: whatever a caller, a peer's text or libwebsockets put in the
     * line, URLs, token=..., Bearer ... and "api_key": ... come out redacted. */
    aip_redact_text(raw, red, sizeof red);
    /* One event, one line: control bytes (a peer's id or error text may carry newlines or
     * terminal escapes) are written as \n, \r, \t or \xHH, so nobody can forge a log line. */
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)red; *p && o + 5 < sizeof msg; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            msg[o++] = (char)*p;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            msg[o++] = '\\';
            msg[o++] = (char)(*p == '\n' ? 'n' : *p == '\r' ? 'r' : 't');
        } else {
            static const char hex[] = "0123456789abcdef";
            msg[o++] = '\\';
            msg[o++] = 'x';
            msg[o++] = hex[*p >> 4];
            msg[o++] = hex[*p & 15];
        }
    }
    msg[o] = 0;
    if (atomic_load_explicit(&g_hook_set, memory_order_acquire)) {
        pthread_mutex_lock(&g_hook_lock);
        bool sent = g_hook_fn != NULL;
        if (sent)
            g_hook_fn(level, component, msg, g_hook_user);
        pthread_mutex_unlock(&g_hook_lock);
        if (sent)
            return;
    }
    char ts[40];
    aip_format_timestamp(aip_wall_us(NULL), ts, sizeof ts);
    char line[1200];
    int n = snprintf(line, sizeof line, "%s %-5s %s: %s\n", ts, level_names[level],
                     component ? component : "aip", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void aip_log(aip_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aip_vlog(level, component, fmt, ap);
    va_end(ap);
}
