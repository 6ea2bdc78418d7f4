/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server — a UFO-compatible AIP orchestrator to debug and test against.
 *
 * One port, the libwebsockets way: the WebSocket endpoints /ws (AIP) and /echo (raw echo, for
 * transport measurements) and the HTTP API under /api/. Single-threaded: the main thread runs
 * the lws service loop; SIGINT/SIGTERM set a flag and wake it.
 */
#include "server.h"
#include "usage.h"

#include <aip/internal/transport.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

server g_srv;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aip-test-server [--host H] [--port P]\n"
            "                       [--token T | --token-file F | --no-token]\n"
            "                       [--allow-host NAME]... [--allow-origin ORIGIN]...\n"
            "                       [--tls-cert F --tls-key F [--tls-ca F]]\n"
            "                       [--device-info auto|cache|live] [--reply-jitter-ms N]\n"
            "                       [--max-frame BYTES] [--max-viewer-queue BYTES]\n"
            "                       [--max-queue BYTES] [--max-total-queue BYTES]\n"
            "                       [--max-connections N] [--max-clients N]\n"
            "                       [--max-actions N] [--max-actions-per-batch N]\n"
            "                       [--ping-after SECONDS] [--drop-after SECONDS]\n"
            "                       [--log-level L]\n"
            "\n"
            "A UFO-compatible AIP orchestrator for debugging and tests (not a production server).\n"
            "  --host H              IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port P              port (default 5000; 0 picks a free one)\n"
            "  --token T             the key: ?token= or Authorization: Bearer on the\n"
            "                        WebSockets, X-API-Key (or Bearer) on /api/ and /metrics\n"
            "  --token-file F        read the key from F (not readable by group or others)\n"
            "                        Without either: the key in $AIP_TOKEN, else a random one,\n"
            "                        printed in the dashboard URL (\"dashboard: URL\" on stdout)\n"
            "  --no-token            no key at all: anyone on this machine can use the server\n"
            "  --allow-host NAME     also answer requests for Host NAME (a reverse proxy's name;\n"
            "                        repeatable); localhost, 127.0.0.1, [::1] and the --host\n"
            "                        address always are\n"
            "  --allow-origin O      also accept browser requests from origin O (scheme://host\n"
            "                        [:port]; repeatable)\n"
            "  --tls-cert F, --tls-key F   serve wss:// and https://\n"
            "  --tls-ca F            also require client certificates signed by this CA (mTLS)\n"
            "  --device-info M       cache: answer from the registration (UFO); live: ask the\n"
            "                        device, falling back to the cache after 2 s; auto (default):\n"
            "                        live for devices that list live_device_info\n"
            "  --reply-jitter-ms N   delay each device-info answer by a random 0..N ms\n"
            "  --max-frame BYTES     largest inbound message (default 16777216), else close 1009\n"
            "  --max-viewer-queue BYTES  events queued for one dashboard viewer before it is\n"
            "                        closed with 1013 (default 1048576)\n"
            "  --max-queue BYTES     answers queued for one connection before it is dropped\n"
            "                        as too slow, 1008 (default 67108864)\n"
            "  --max-total-queue BYTES  answers queued over all connections; past it the\n"
            "                        connections holding the most are dropped first, 1008\n"
            "                        (default 268435456)\n"
            "  --max-connections N   open WebSocket connections; more get HTTP 503 (16384)\n"
            "  --max-clients N       registered clients; more are refused, 1013 (16000)\n"
            "  --max-actions N       actions in one task (4096), --max-actions-per-batch N\n"
            "                        in one batch (1024); a bigger task fails at once\n"
            "  --ping-after SECONDS  ping a connection silent this long (default 20)\n"
            "  --drop-after SECONDS  drop a connection silent this long, its pongs counting\n"
            "                        as life (default 60; more than --ping-after)\n"
            "  --log-level L         error, warn, info (default), debug\n"
            "  --help, --version\n"
            "\n"
            "Endpoints (README.md \"aip-test-server\" has them all):\n"
            "  GET /                 the dashboard (embedded; open it as /?token=KEY)\n"
            "  ws  /ws               AIP (JSON, or protobuf with subprotocol aip.v1.proto)\n"
            "  ws  /echo             raw echo, for transport measurements\n"
            "  ws  /events           the live event feed the dashboard shows\n"
            "  GET /api/clients, /api/health, /api/clients/details, /api/clients/{id},\n"
            "      /api/device_info/{id}, /api/task_result/{task_name}, /metrics\n"
            "  POST /api/dispatch {client_id, request, task_name}\n"
            "  POST /api/faults {client_id, fault, seconds}: drop, stall, delay, garbage,\n"
            "      refuse_next_registration, mute_heartbeats\n"
            "  (POSTs need Content-Type: application/json; requests naming another Host, or\n"
            "  coming from another site's page, are refused with 403)\n"
            "Prints \"listening on <host>:<port>\", then \"dashboard: <URL>\", once listening;\n"
            "exit 1 with the reason when it cannot listen, 2 on a usage error (one line naming\n"
            "the argument; a TLS file that is missing or not PEM is one).\n");
}

#define PROG "aip-test-server"

/* A one-line start-up refusal (a usage error): exit 2. */
static int refuse_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int refuse_start(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tool_usage_error(PROG, "%s", msg);
}

#define KEY_MAX 256

/* A key must not be empty (that would let anyone in while looking protected), and must fit in
 * the headers that carry it. Returns NULL or the reason. */
static const char *key_problem(const char *k)
{
    if (!k[0])
        return "is empty: an empty key would let anyone in (--no-token runs without a key, "
               "explicitly)";
    if (strlen(k) > KEY_MAX)
        return "is longer than 256 bytes";
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "holds a control character (no header can carry it)";
    return NULL;
}

/* Reads the key from a file that only its owner may read or write (up to the first line end). */
static int read_key_file(const char *path, char *key, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return refuse_start("--token-file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return refuse_start("--token-file %s: not a regular file", path);
    }
    if (st.st_mode & 0077) {
        close(fd);
        return refuse_start("--token-file %s: readable or writable by group or others (mode "
                            "%04o): chmod 600 it",
                            path, (unsigned)(st.st_mode & 07777));
    }
    char buf[KEY_MAX + 4];
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got < 0)
        return refuse_start("--token-file %s: %s", path, strerror(errno));
    buf[got] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    if ((size_t)got == sizeof buf - 1 && strlen(buf) == (size_t)got)
        return refuse_start("--token-file %s: the key is longer than %d bytes", path, KEY_MAX);
    const char *why = key_problem(buf);
    if (why)
        return refuse_start("the key in --token-file %s %s", path, why);
    size_t len = strlen(buf); /* <= KEY_MAX: key_problem() said so */
    if (len >= n)
        return refuse_start("the key in --token-file %s is too long", path);
    memcpy(key, buf, len + 1);
    return 0;
}

/* "dashboard: http://127.0.0.1:PORT/" (with ?token= when the key was made here: it is the only
 * way to learn it, as Jupyter does). A wildcard address is shown as 127.0.0.1. */
static void print_dashboard_url(int port)
{
    const server_config *cfg = &g_srv.cfg;
    const char *h = cfg->host;
    if (!h[0] || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0)
        h = "127.0.0.1";
    struct in6_addr a6;
    bool v6 = inet_pton(AF_INET6, h, &a6) == 1;
    printf("dashboard: %s://%s%s%s:%d/%s%s\n", cfg->tls_cert ? "https" : "http", v6 ? "[" : "", h,
           v6 ? "]" : "", port, cfg->token_generated ? "?token=" : "",
           cfg->token_generated ? cfg->token : "");
}

static void on_signal(int sig)
{
    (void)sig;
    g_srv.stop = 1;
    if (g_srv.ctx)
        lws_cancel_service(g_srv.ctx);
}

static void grace_over(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    g_srv.stop = 3;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            aip_log(AIP_LOG_WARN, "server", "cannot raise RLIMIT_NOFILE: %s", strerror(errno));
    }
}

static int size_opt(const char *opt, const char *s, size_t *out)
{
    long long v;
    if (tool_arg_int(PROG, opt, s, 1, LLONG_MAX, &v))
        return 2;
    *out = (size_t)v;
    return 0;
}

/* Why host:port cannot be listened on, found by binding a probe socket the way lws will
 * (SO_REUSEADDR), or NULL when it can. lws 4.1.6 logs a failed bind without its errno, and
 * takes a name it cannot resolve as an interface that may appear later (listening nowhere). */
static const char *listen_problem(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return "not an IPv4 address";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return strerror(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const char *why = NULL;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1))
        why =
            errno == EADDRINUSE ? "address in use (another server on this port?)" : strerror(errno);
    close(fd);
    return why;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"token", required_argument, 0, 't'},
        {"token-file", required_argument, 0, 'T'},
        {"no-token", no_argument, 0, 'n'},
        {"allow-host", required_argument, 0, 'A'},
        {"allow-origin", required_argument, 0, 'O'},
        {"tls-cert", required_argument, 0, 'c'},
        {"tls-key", required_argument, 0, 'k'},
        {"tls-ca", required_argument, 0, 'a'},
        {"device-info", required_argument, 0, 'd'},
        {"reply-jitter-ms", required_argument, 0, 'j'},
        {"max-frame", required_argument, 0, 'm'},
        {"max-viewer-queue", required_argument, 0, 'q'},
        {"log-level", required_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    /* the budgets (docs/security.md), parsed by the same loop */
    static const struct option budget_opts[] = {
        {"max-queue", required_argument, 0, 1001},
        {"max-total-queue", required_argument, 0, 1002},
        {"max-connections", required_argument, 0, 1003},
        {"max-clients", required_argument, 0, 1004},
        {"max-actions", required_argument, 0, 1005},
        {"max-actions-per-batch", required_argument, 0, 1006},
        {"ping-after", required_argument, 0, 1007},
        {"drop-after", required_argument, 0, 1008},
    };
    struct option
        all_opts[sizeof opts / sizeof opts[0] + sizeof budget_opts / sizeof budget_opts[0]];
    memcpy(all_opts, budget_opts, sizeof budget_opts);
    memcpy(all_opts + sizeof budget_opts / sizeof budget_opts[0], opts, sizeof opts);
    const char *token_file = NULL;
    bool no_token = false;
    int key_sources = 0;
    server_config *cfg = &g_srv.cfg;
    cfg->host = "127.0.0.1";
    cfg->port = 5000;
    cfg->max_frame = 16u << 20;
    cfg->max_queue = 64u << 20;
    cfg->max_viewer_queue = 1u << 20;
    cfg->max_total_queue = 256u << 20;
    cfg->max_connections = 16384;
    cfg->max_clients = 16000;
    cfg->max_actions = 4096;
    cfg->max_batch_actions = 1024;
    cfg->register_timeout_ms = 10000;
    cfg->ping_after_us = 20 * 1000000LL;
    cfg->drop_after_us = 60 * 1000000LL;
    cfg->di_mode = DI_AUTO;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", all_opts, NULL)) != -1) {
        long long v;
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p':
            if (tool_arg_int(PROG, "--port", optarg, 0, 65535, &v))
                return 2;
            cfg->port = (int)v;
            break;
        case 't':
            cfg->token = optarg;
            key_sources++;
            break;
        case 'T':
            token_file = optarg;
            key_sources++;
            break;
        case 'n':
            no_token = true;
            key_sources++;
            break;
        case 'A':
            if (cfg->n_allow_host == MAX_ALLOWED)
                return refuse_start("at most %d --allow-host", MAX_ALLOWED);
            cfg->allow_host[cfg->n_allow_host++] = optarg;
            break;
        case 'O':
            if (cfg->n_allow_origin == MAX_ALLOWED)
                return refuse_start("at most %d --allow-origin", MAX_ALLOWED);
            cfg->allow_origin[cfg->n_allow_origin++] = optarg;
            break;
        /* TLS files are checked now: lws would only say it cannot create the server */
        case 'c':
            if (tool_arg_pem(PROG, "--tls-cert", optarg, TOOL_PEM_CERT))
                return 2;
            cfg->tls_cert = optarg;
            break;
        case 'k':
            if (tool_arg_pem(PROG, "--tls-key", optarg, TOOL_PEM_KEY))
                return 2;
            cfg->tls_key = optarg;
            break;
        case 'a':
            if (tool_arg_pem(PROG, "--tls-ca", optarg, TOOL_PEM_CERT))
                return 2;
            cfg->tls_ca = optarg;
            break;
        case 'd': {
            static const char *const modes[] = {"auto", "cache", "live", NULL};
            static const device_info_mode as[] = {DI_AUTO, DI_CACHE, DI_LIVE};
            int ix;
            if (tool_arg_choice(PROG, "--device-info", optarg, modes, &ix))
                return 2;
            cfg->di_mode = as[ix];
            break;
        }
        case 'j':
            if (tool_arg_int(PROG, "--reply-jitter-ms", optarg, 0, 600000, &v))
                return 2;
            cfg->reply_jitter_ms = (unsigned)v;
            break;
        case 'm':
            if (size_opt("--max-frame", optarg, &cfg->max_frame))
                return 2;
            break;
        case 'q':
            if (size_opt("--max-viewer-queue", optarg, &cfg->max_viewer_queue))
                return 2;
            break;
        case 1001:
        case 1002:
        case 1003:
        case 1004:
        case 1005:
        case 1006: {
            size_t *const dst[] = {&cfg->max_queue,       &cfg->max_total_queue,
                                   &cfg->max_connections, &cfg->max_clients,
                                   &cfg->max_actions,     &cfg->max_batch_actions};
            char opt[48];
            snprintf(opt, sizeof opt, "--%s", budget_opts[c - 1001].name);
            if (size_opt(opt, optarg, dst[c - 1001]))
                return 2;
            break;
        }
        case 1007:
        case 1008:
            if (tool_arg_int(PROG, c == 1007 ? "--ping-after" : "--drop-after", optarg, 1, 86400,
                             &v))
                return 2;
            *(c == 1007 ? &cfg->ping_after_us : &cfg->drop_after_us) = (int64_t)v * 1000000LL;
            break;
        case 'l': {
            aip_log_level lvl;
            if (aip_log_level_parse(optarg, &lvl))
                return refuse_start("--log-level: \"%s\" is not one of error, warn, info, debug",
                                    optarg);
            aip_log_set_level(lvl);
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("aip-test-server %s\n", aip_version()); return 0;
        default: return tool_option_error(PROG, c, argv, all_opts);
        }
    }
    if (optind != argc)
        return refuse_start("%s: unexpected argument (every setting is an option)", argv[optind]);
    if (!cfg->tls_cert != !cfg->tls_key)
        return refuse_start("%s needs %s too (a certificate and its key)",
                            cfg->tls_cert ? "--tls-cert" : "--tls-key",
                            cfg->tls_cert ? "--tls-key" : "--tls-cert");
    if (cfg->tls_ca && !cfg->tls_cert)
        return refuse_start("--tls-ca needs --tls-cert and --tls-key (client certificates are "
                            "checked over TLS only)");
    if (key_sources > 1)
        return refuse_start("give one of --token, --token-file and --no-token");
    if (cfg->drop_after_us <= cfg->ping_after_us)
        return refuse_start("--drop-after (%lld s) must be longer than --ping-after (%lld s)",
                            (long long)(cfg->drop_after_us / 1000000),
                            (long long)(cfg->ping_after_us / 1000000));
    char why[200];
    if (guard_config(why, sizeof why))
        return refuse_start("%s", why);
    /* the key: --token, --token-file, $AIP_TOKEN, else a random one; --no-token: none */
    static char key[KEY_MAX + 1];
    const char *env = getenv("AIP_TOKEN");
    const char *problem;
    if (cfg->token && (problem = key_problem(cfg->token)))
        return refuse_start("--token %s", problem);
    if (token_file && read_key_file(token_file, key, sizeof key))
        return 2;
    if (token_file)
        cfg->token = key;
    if (!key_sources && env) {
        if ((problem = key_problem(env)))
            return refuse_start("the key in AIP_TOKEN %s", problem);
        cfg->token = env;
    }
    if (!key_sources && !env) {
        uint8_t raw[24]; /* 192 bits */
        if (aip_random_secret(raw, sizeof raw))
            return refuse_start("cannot draw a random key (getrandom failed); give one with "
                                "--token-file");
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(key + 2 * i, 3, "%02x", raw[i]);
        cfg->token = key;
        cfg->token_generated = true;
    }

    raise_nofile();
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN; /* a peer that vanishes mid-write is an ordinary event */
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    aip_lws_log_to_aip();

    aip_codec_limits_default(&g_srv.limits);
    g_srv.limits.max_frame = cfg->max_frame;
    strmap_init(&g_srv.clients);
    strmap_init(&g_srv.tasks);
    strmap_init(&g_srv.commands);
    strmap_init(&g_srv.live);
    strmap_init(&g_srv.results);
    strmap_init(&g_srv.refuse);
    g_srv.started_us = aip_wall_us(NULL);

    /* protocols[0] handles HTTP, upgrades without a subprotocol (UFO clients send none) and
     * WSI_DESTROY; protocols[1] is selected by Sec-WebSocket-Protocol: aip.v1.proto. */
    static struct lws_protocols protocols[] = {
        {"aip", aip_ws_callback, sizeof(pss), 16384, 0, NULL, 65536},
        {AIP_PROTO_SUBPROTOCOL, aip_ws_callback, sizeof(pss), 16384, 0, NULL, 65536},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    /* Liveness (ping after 20 s of silence, drop after 60 s; UFO's devices answer pings, and
     * dropping for AIP silence is off: UFO devices heartbeat only every 120 s) is one sweep in
     * session.c, not lws's retry_and_idle_policy: see server_liveness_start(). */

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = cfg->port;
    info.iface = cfg->host;
    info.protocols = protocols;
    info.pt_serv_buf_size = 16384; /* = rx_buffer_size (see the client transport) */
    /* the security headers (CSP without inline script and with frame-ancestors 'none',
     * nosniff, referrer-policy: no-referrer, x-frame-options) on every HTTP answer lws writes,
     * error pages included; reject_upgrade() in callback.c writes the same by hand */
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (cfg->tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        /* HTTP/1.1 only: over h2 (which lws would offer) lws 4.1.6 gives no access to the
         * headers it does not know (X-API-Key, Sec-Fetch-Site), so the dashboard's key and the
         * cross-site check would silently not work on https:// */
        info.alpn = "http/1.1";
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
        if (cfg->tls_ca) {
            info.ssl_ca_filepath = cfg->tls_ca;
            info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        }
    }
    /* the reason first (lws logs a failed bind without one), then lws, told to fail rather
     * than wait for an interface of that name; "listening on" only once it really listens */
    const char *why_not = listen_problem(cfg->host, cfg->port);
    if (why_not) {
        fprintf(stderr, "aip-test-server: cannot listen on %s:%d: %s\n", cfg->host, cfg->port,
                why_not);
        return 1;
    }
    info.options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    g_srv.ctx = lws_create_context(&info);
    g_srv.vh = g_srv.ctx ? lws_get_vhost_by_name(g_srv.ctx, "default") : NULL;
    int port = g_srv.vh ? lws_get_vhost_listen_port(g_srv.vh) : 0;
    if (port <= 0) {
        why_not = listen_problem(cfg->host, cfg->port);
        if (!why_not && cfg->tls_cert) /* the files are PEM (checked): lws refused their contents */
            fprintf(stderr,
                    "aip-test-server: cannot serve TLS with --tls-cert %s and --tls-key %s%s%s: "
                    "libwebsockets refused them (its reason is above; does the key match the "
                    "certificate?)\n",
                    cfg->tls_cert, cfg->tls_key, cfg->tls_ca ? " and --tls-ca " : "",
                    cfg->tls_ca ? cfg->tls_ca : "");
        else
            fprintf(stderr, "aip-test-server: cannot listen on %s:%d: %s\n", cfg->host, cfg->port,
                    why_not ? why_not : "libwebsockets could not set up the listener (see above)");
        if (g_srv.ctx)
            lws_context_destroy(g_srv.ctx);
        return 1;
    }
    printf("listening on %s:%d\n", cfg->host, port);
    print_dashboard_url(port);
    if (fflush(stdout)) /* tests and scripts wait for these lines */
        aip_log(AIP_LOG_WARN, "server", "cannot write the listening line to stdout");
    if (no_token)
        aip_log(AIP_LOG_WARN, "server",
                "--no-token: no key; anyone who can reach this port (any user of this machine) "
                "can drive the server and its devices");
    else if (cfg->token_generated)
        aip_log(AIP_LOG_INFO, "server",
                "no key given: made a random one, in the dashboard URL printed on stdout; "
                "devices and aipctl need it (AIP_TOKEN, or --token-file)");
    if ((!cfg->host[0] || strcmp(cfg->host, "0.0.0.0") == 0) && !cfg->n_allow_host)
        aip_log(AIP_LOG_INFO, "server",
                "listening on every interface: requests that name this machine by another name "
                "or address (Host) are refused until --allow-host names it");
    if (no_token && env)
        aip_log(AIP_LOG_INFO, "server", "AIP_TOKEN is set but ignored (--no-token)");
    aip_log(AIP_LOG_INFO, "server", "aip-test-server %s on %s://%s:%d (device info: %s)",
            aip_version(), cfg->tls_cert ? "wss" : "ws", cfg->host, port,
            cfg->di_mode == DI_LIVE    ? "live"
            : cfg->di_mode == DI_CACHE ? "cache"
                                       : "auto");

    server_liveness_start();
    while (!g_srv.stop && lws_service(g_srv.ctx, 0) >= 0)
        ;
    /* close every client with 1001 and give the close handshakes at most 500 ms: a timer
     * bounds the wait, since lws_service() sleeps until the next event */
    server_close_all(1001, "server shutting down");
    static lws_sorted_usec_list_t grace;
    g_srv.stop = 2;
    lws_sul_schedule(g_srv.ctx, 0, &grace, grace_over, 500 * 1000);
    while (g_srv.stop == 2 && g_srv.clients.count && lws_service(g_srv.ctx, 0) >= 0)
        ;
    lws_sul_cancel(&grace);
    lws_sul_cancel(&g_srv.sul_liveness);
    lws_context_destroy(g_srv.ctx);
    strmap_free(&g_srv.clients);
    strmap_free(&g_srv.tasks);
    strmap_free(&g_srv.commands);
    strmap_free(&g_srv.live);
    events_free();
    const char *rk;
    void *rv;
    for (size_t i = 0; strmap_next(&g_srv.refuse, &i, &rk, &rv);)
        aip_free(rv);
    strmap_free(&g_srv.refuse);
    aip_log(AIP_LOG_INFO, "server", "stopped");
    return 0;
}
