/* SPDX-License-Identifier: MIT */
/*
 * constellation-agent — the device daemon: one AIP connection to an orchestrator; registers
 * this device, heartbeats, answers device-info queries, runs the command batches it is sent.
 *
 * Signals are handled synchronously: they are blocked before any thread starts (so every
 * library thread inherits the mask) and the main thread takes them with sigtimedwait(), which
 * also wakes it when the systemd watchdog ping or the periodic statistics line is due.
 *   SIGTERM, SIGINT  close with 1001 (going away), fail what is pending, exit 0 (within 2 s)
 *   SIGHUP           reload the config file; reconnect if the settings changed; otherwise
 *                    (wss) reload the TLS files into a new client vhost for the next link
 *   SIGUSR1          log a statistics line now
 * Exit codes: 0 clean stop, 1 cannot start, 2 usage, 78 configuration error.
 */
#include "config.h"
#include "usage.h"

#include <aip/agent.h>
#include <aip/aip.h>
#include <aip/redact.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PROG          "constellation-agent"
#define LOG           "agent"
#define STATS_EVERY_S 300

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: constellation-agent --server URL [--client-id ID]\n"
               "                           [--token T | --token-file F] [--ca-file F]\n"
               "                           [--cert F --key F] [--heartbeat SECONDS]\n"
               "                           [--encoding json|proto] [--config FILE]\n"
               "                           [--log-level L] [--check-config] [--config-schema]\n"
               "                           [--version]\n"
               "\n"
               "The device agent: keeps one AIP connection to an orchestrator (a UFO server or\n"
               "aip-test-server), registers this device, answers device-info queries and runs\n"
               "the command batches it is sent.\n"
               "  --server URL       ws:// or wss:// URL of the server (env AIP_SERVER)\n"
               "  --client-id ID     default: <hostname>-<first 8 chars of /etc/machine-id>\n"
               "  --token T          the server's key (env AIP_TOKEN); prefer --token-file\n"
               "  --token-file F     read the key from F (must not be readable by others)\n"
               "  --ca-file F        CA bundle for wss:// (default: the system store)\n"
               "  --cert F, --key F  client certificate for mutual TLS\n"
               "  --heartbeat S      heartbeat interval (default 30); silent 3x that = dead link\n"
               "  --encoding E       json (default) or proto (falls back to JSON if refused)\n"
               "  --config FILE      JSON settings (snake_case keys; see README); flags override\n"
               "                     the environment, which overrides the file\n"
               "  --log-level L      error, warn, info (default), debug\n"
               "  --check-config     print the effective settings (key and URL query values\n"
               "                     hidden) and exit\n"
               "  --config-schema    print every key of the config file as JSON (path, kind,\n"
               "                     range, default, help) and exit\n"
               "  --help, --version\n"
               "\n"
               "Signals: TERM/INT stop (close 1001, exit 0), HUP reloads the config file and\n"
               "the TLS files (used from the next connection), USR1 logs statistics.\n"
               "Exit: 0 stopped, 1 cannot start, 2 usage, 78 configuration.\n");
}

/* ---- systemd notification, without libsystemd ---------------------------------------------- */

static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0] || (path[0] != '/' && path[0] != '@'))
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path)
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    (void)w;
    close(fd);
}

/* ---- the running agent ---------------------------------------------------------------------- */

/* READY=1 goes first: the service thread may register (and report it) before the main thread
 * has said READY, so a state reported before then is held and sent with READY=1. Both sides
 * send under this lock, so systemd sees the states in the order they happened. */
static pthread_mutex_t g_notify_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_ready_sent;
static char g_held_status[300];

static void notify_status(const char *status)
{
    pthread_mutex_lock(&g_notify_lock);
    if (g_ready_sent)
        sd_notify_msg(status);
    else
        snprintf(g_held_status, sizeof g_held_status, "%s", status);
    pthread_mutex_unlock(&g_notify_lock);
}

static void notify_ready(void)
{
    char msg[320];
    pthread_mutex_lock(&g_notify_lock);
    snprintf(msg, sizeof msg, "READY=1\n%s",
             g_held_status[0] ? g_held_status : "STATUS=connecting");
    sd_notify_msg(msg);
    g_ready_sent = true;
    pthread_mutex_unlock(&g_notify_lock);
}

static void on_state(aip_conn *c, const aip_conn_event *ev, void *user)
{
    (void)c;
    (void)user;
    char status[300];
    switch (ev->state) {
    case AIP_CONN_REGISTERED:
        snprintf(status, sizeof status, "STATUS=registered (%s frames)",
                 ev->proto ? "protobuf" : "JSON");
        break;
    case AIP_CONN_DISCONNECTED:
        /* a lasting refusal (the conn logged it at warn) is what systemctl status should say */
        if (ev->error == AIP_E_AUTH || ev->error == AIP_E_REFUSED)
            snprintf(status, sizeof status, "STATUS=refused: %s", ev->detail);
        else
            snprintf(status, sizeof status, "STATUS=disconnected");
        break;
    case AIP_CONN_BACKOFF:
        snprintf(status, sizeof status, "STATUS=reconnecting in %u ms", ev->delay_ms);
        break;
    default: return;
    }
    notify_status(status);
}

static void log_stats(aip_agent *a)
{
    aip_conn_stats s;
    aip_conn_get_stats(aip_agent_conn(a), &s);
    aip_agent_stats as;
    aip_agent_get_stats(a, &as);
    aip_log(AIP_LOG_INFO, LOG,
            "stats: state %s; frames out %llu in %llu; registrations %llu (failed %llu); "
            "reconnects %llu; liveness drops %llu; malformed %llu; batches %llu (refused %llu, "
            "actions %llu; answers cut to fit %llu, results dropped %llu, answers unsent %llu); "
            "device-info answers %llu; requests %llu ok %llu errors %llu timeouts %llu lost "
            "%llu; pending %llu",
            aip_conn_state_str(aip_conn_get_state(aip_agent_conn(a))),
            (unsigned long long)s.frames_sent, (unsigned long long)s.frames_received,
            (unsigned long long)s.registrations, (unsigned long long)s.registration_failures,
            (unsigned long long)s.reconnects, (unsigned long long)s.liveness_drops,
            (unsigned long long)s.malformed, (unsigned long long)as.batches,
            (unsigned long long)as.batches_refused, (unsigned long long)as.actions,
            (unsigned long long)as.answers_cut, (unsigned long long)as.results_dropped,
            (unsigned long long)as.answers_unsent, (unsigned long long)as.info_requests,
            (unsigned long long)s.requests, (unsigned long long)s.completed,
            (unsigned long long)s.remote_errors, (unsigned long long)s.timeouts,
            (unsigned long long)s.conn_lost, (unsigned long long)s.pending);
}

static bool is_wss(const agent_settings *st)
{
    return st->server && strncmp(st->server, "wss://", 6) == 0;
}

static int start_agent(const agent_settings *st, aip_agent **out)
{
    const char *roots[MAX_LIST], *allow[MAX_LIST];
    aip_agent_config ac;
    settings_to_agent(st, &ac, roots, allow);
    ac.conn.on_state = on_state;
    aip_log_level lvl = AIP_LOG_INFO;
    if (st->log_level)
        aip_log_level_parse(st->log_level, &lvl);
    aip_log_set_level(lvl);
    int rc = aip_agent_create(&ac, out);
    if (!rc && (rc = aip_agent_start(*out))) {
        aip_agent_destroy(*out, 1000, "start failed");
        *out = NULL;
    }
    if (!rc) {
        char server[1024]; /* ?token=KEY is UFO's way of passing the key: never logged */
        aip_redact_url(st->server, server, sizeof server);
        aip_log(AIP_LOG_INFO, LOG, "constellation-agent %s: %s as %s%s", aip_version(), server,
                st->client_id, st->exec_enabled ? " (execute_command enabled)" : "");
        if (st->tls_insecure && !is_wss(st))
            aip_log(AIP_LOG_WARN, LOG, "tls_insecure is set, but %s is not wss://: no TLS at all",
                    server);
        if (settings_heartbeat_warning(st))
            aip_log(AIP_LOG_WARN, LOG, "heartbeat %u s: %s", st->heartbeat_s,
                    settings_heartbeat_warning(st));
    }
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Equal settings; with tls_files false, the CA/cert/key file names may differ. */
static bool same_settings(agent_settings *a, agent_settings *b, bool tls_files)
{
    char *saved[3] = {b->ca_file, b->cert, b->key};
    if (!tls_files) { /* compare b as if it named a's files */
        b->ca_file = a->ca_file;
        b->cert = a->cert;
        b->key = a->key;
    }
    char *da = settings_describe(a), *db = settings_describe(b);
    b->ca_file = saved[0];
    b->cert = saved[1];
    b->key = saved[2];
    bool same = da && db && strcmp(da, db) == 0 && same_str(a->token, b->token) &&
                same_str(a->tags_json, b->tags_json) && same_str(a->mcp_json, b->mcp_json);
    aip_free(da);
    aip_free(db);
    return same;
}

static void reload_tls(aip_agent *a, const agent_settings *st)
{
    int rc = aip_conn_reload_tls(aip_agent_conn(a), st->ca_file, st->cert, st->key);
    if (rc)
        aip_log(AIP_LOG_ERROR, LOG, "SIGHUP: cannot reload the TLS files: %s", aip_strerror(rc));
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, 0, 's'},    {"client-id", required_argument, 0, 'i'},
        {"token", required_argument, 0, 't'},     {"token-file", required_argument, 0, 'T'},
        {"ca-file", required_argument, 0, 'a'},   {"cert", required_argument, 0, 'c'},
        {"key", required_argument, 0, 'k'},       {"heartbeat", required_argument, 0, 'H'},
        {"encoding", required_argument, 0, 'e'},  {"config", required_argument, 0, 'C'},
        {"log-level", required_argument, 0, 'l'}, {"check-config", no_argument, 0, 'x'},
        {"config-schema", no_argument, 0, 'S'},   {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0},
    };
    agent_flags f = {0};
    f.heartbeat_s = -1;
    bool check = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (tool_arg_ws_url(PROG, "--server", optarg))
                return 2;
            f.server = optarg;
            break;
        case 'i': f.client_id = optarg; break;
        case 't': f.token = optarg; break;
        case 'T': f.token_file = optarg; break; /* may be empty: settings_load() reads it */
        case 'a':
            if (tool_arg_pem(PROG, "--ca-file", optarg, TOOL_PEM_CERT))
                return 2;
            f.ca_file = optarg;
            break;
        case 'c':
            if (tool_arg_pem(PROG, "--cert", optarg, TOOL_PEM_CERT))
                return 2;
            f.cert = optarg;
            break;
        case 'k':
            if (tool_arg_pem(PROG, "--key", optarg, TOOL_PEM_KEY))
                return 2;
            f.key = optarg;
            break;
        case 'H': {
            long long v;
            if (tool_arg_int(PROG, "--heartbeat", optarg, 1, 3600, &v))
                return 2;
            f.heartbeat_s = (long)v;
            break;
        }
        case 'e': {
            static const char *const encodings[] = {"json", "proto", "protobuf", NULL};
            int i;
            if (tool_arg_choice(PROG, "--encoding", optarg, encodings, &i))
                return 2;
            f.encoding = optarg;
            break;
        }
        case 'C': f.config_file = optarg; break; /* its problems are configuration errors, 78 */
        case 'l': {
            aip_log_level lvl;
            if (aip_log_level_parse(optarg, &lvl))
                return tool_usage_error(PROG,
                                        "--log-level: \"%s\" is not one of error, warn, "
                                        "info, debug",
                                        optarg);
            f.log_level = optarg;
            break;
        }
        case 'x': check = true; break;
        case 'S': {
            char *schema = settings_schema();
            printf("%s\n", schema ? schema : "[]");
            aip_free(schema);
            return schema ? 0 : 1;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("constellation-agent %s\n", aip_version()); return 0;
        default: return tool_option_error(PROG, c, argv, opts);
        }
    }
    if (optind != argc)
        return tool_usage_error(PROG, "%s: unexpected argument (every setting is an option)",
                                argv[optind]);
    if (!f.cert != !f.key)
        return tool_usage_error(PROG, "%s needs %s too (a client certificate and its key)",
                                f.cert ? "--cert" : "--key", f.cert ? "--key" : "--cert");

    agent_settings st;
    char why[400];
    if (settings_load(&f, &st, why, sizeof why)) {
        fprintf(stderr, "constellation-agent: configuration error: %s\n", why);
        settings_free(&st);
        return EXIT_CONFIG;
    }
    if (check) {
        char *d = settings_describe(&st);
        printf("%s\n", d ? d : "{}");
        if (st.tls_insecure)
            fprintf(stderr, "constellation-agent: warning: tls_insecure is on: the server's "
                            "certificate and host name are not verified (for tests only)\n");
        if (settings_heartbeat_warning(&st))
            fprintf(stderr, "constellation-agent: warning: heartbeat %u s: %s\n", st.heartbeat_s,
                    settings_heartbeat_warning(&st));
        aip_free(d);
        settings_free(&st);
        return 0;
    }

    /* every thread started from here on inherits this mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    aip_agent *agent = NULL;
    int rc = start_agent(&st, &agent);
    if (rc) {
        fprintf(stderr, "constellation-agent: cannot start: %s\n", aip_strerror(rc));
        settings_free(&st);
        return rc == AIP_E_CONFIG || rc == AIP_E_TLS ? EXIT_CONFIG : 1;
    }
    notify_ready();

    uint64_t wd_usec = 0;
    const char *wd = getenv("WATCHDOG_USEC");
    if (wd)
        wd_usec = strtoull(wd, NULL, 10);
    /* Idle, this thread wakes only when something is due: the watchdog ping (every half of
     * WatchdogSec, so a watchdog of 60 s gives one wake-up in 30 s) and the statistics line;
     * never on a fixed tick. */
    uint64_t wd_every = wd_usec / 2 * 1000u, stats_every = (uint64_t)STATS_EVERY_S * 1000000000u;
    uint64_t now = mono_ns(), next_wd = wd_every ? now : UINT64_MAX;
    uint64_t next_stats = now + stats_every;
    int exit_code = 0;
    for (;;) {
        uint64_t due = next_wd < next_stats ? next_wd : next_stats;
        uint64_t wait = due > now ? due - now : 0;
        struct timespec tick = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &tick);
        now = mono_ns();
        if (now >= next_wd) {
            sd_notify_msg("WATCHDOG=1");
            next_wd = now + wd_every;
        }
        if (now >= next_stats) {
            log_stats(agent);
            next_stats = now + stats_every;
        }
        if (sig < 0)
            continue; /* something was due (EAGAIN), or EINTR */
        if (sig == SIGTERM || sig == SIGINT) {
            aip_log(AIP_LOG_INFO, LOG, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            sd_notify_msg("STOPPING=1");
            break;
        }
        if (sig == SIGUSR1) {
            log_stats(agent);
            continue;
        }
        if (sig == SIGHUP) {
            sd_notify_msg("RELOADING=1");
            agent_settings next;
            if (settings_load(&f, &next, why, sizeof why)) {
                aip_log(AIP_LOG_ERROR, LOG, "SIGHUP: configuration error, keeping the old one: %s",
                        why);
                settings_free(&next);
            } else if (same_settings(&st, &next, true)) {
                /* Same settings (the files may have new contents): a wss link reloads its
                 * certificates into a new client vhost, used from the next connection. */
                aip_log(AIP_LOG_INFO, LOG, "SIGHUP: configuration unchanged%s",
                        is_wss(&st) ? "; reloading the TLS files" : "");
                if (is_wss(&st))
                    reload_tls(agent, &st);
                settings_free(&next);
            } else if (is_wss(&st) && same_settings(&st, &next, false)) {
                aip_log(AIP_LOG_INFO, LOG, "SIGHUP: new TLS file names: reloading them");
                settings_free(&st);
                st = next;
                reload_tls(agent, &st);
            } else {
                aip_log(AIP_LOG_INFO, LOG, "SIGHUP: configuration changed: reconnecting");
                aip_agent_destroy(agent, 1001, "reconfiguring");
                agent = NULL;
                settings_free(&st);
                st = next;
                if ((rc = start_agent(&st, &agent))) {
                    aip_log(AIP_LOG_ERROR, LOG, "cannot restart: %s", aip_strerror(rc));
                    exit_code = 1;
                    break;
                }
            }
            sd_notify_msg("READY=1");
        }
    }
    aip_agent_destroy(agent, 1001, "agent stopping");
    settings_free(&st);
    aip_log(AIP_LOG_INFO, LOG, "stopped");
    return exit_code;
}
