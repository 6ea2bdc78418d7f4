/* SPDX-License-Identifier: MIT */
/*
 * aipctl — a command-line constellation client.
 *
 *   aipctl [--server URL] [--token T] [--encoding json|proto] [--timeout SECONDS]
 *          [--max-frame BYTES] [--ca-file F] [--cert F --key F]
 *          devices | info DEVICE | task DEVICE REQUEST
 *
 * `info` and `task` register as a constellation targeting DEVICE (client id
 * aipctl-<pid>-<random>@<DEVICE>) over one WebSocket; `devices` reads the server's
 * GET /api/clients. Answers up to --max-frame (default 100 MiB, UFO's own limit) are read; a
 * larger one is skipped without breaking the link, and its request fails at once with
 * "too large" when its first bytes name it. Exit: 0 success; 1 remote failure, timeout, lost
 * connection or an answer over --max-frame (reason on stderr); 2 usage. Secrets are never
 * printed: the key, URL query values (aip_redact_url in the library's log lines) and the secret
 * parameters of the actions a task result echoes.
 */
#include <aip/aip.h>
#include <aip/redact.h>

#include "http_get.h"
#include "reg_wait.h"
#include "usage.h"

#include <aip/internal/jscan.h>
#include <cjson/cJSON.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG              "aipctl"
#define DEFAULT_SERVER    "ws://127.0.0.1:5000/ws"
#define DEFAULT_MAX_FRAME (100u << 20) /* UFO's server, device and Galaxy client: 100 MiB */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aipctl [options] devices\n"
            "       aipctl [options] info DEVICE\n"
            "       aipctl [options] task DEVICE REQUEST\n"
            "\n"
            "A command-line constellation client for an AIP server (UFO or aip-test-server).\n"
            "  devices          list the connected clients (GET /api/clients)\n"
            "  info DEVICE      print DEVICE's system info as JSON\n"
            "  task DEVICE REQ  run a task on DEVICE and print {\"status\",\"result\",\"error\"};\n"
            "                   aip-test-server runs REQ given as JSON actions, e.g.\n"
            "                   "
            "'{\"actions\":[{\"tool_name\":\"echo\",\"parameters\":{\"text\":\"hi\"}}]}'\n"
            "\n"
            "options:\n"
            "  --server URL        server WebSocket URL (default %s)\n"
            "  --token T           the server's key (default: env AIP_TOKEN, or ?token= in the\n"
            "                      server URL); never printed, nor are URL query values\n"
            "  --encoding E        json (default) or proto (falls back to JSON if refused)\n"
            "  --timeout SECONDS   give up after this long (default 30)\n"
            "  --max-frame BYTES   largest answer read (default 100M, UFO's limit; suffixes\n"
            "                      K, M, G); a larger one is skipped, the request fails with\n"
            "                      \"too large\" at once when the answer's first bytes name it\n"
            "  --ca-file F         CA bundle to verify a wss:// server (default: system store)\n"
            "  --cert F --key F    client certificate for a server that requires one (mTLS)\n"
            "  --verbose           log the connection's progress on stderr\n"
            "  --help, --version\n"
            "\n"
            "exit status: 0 success; 1 remote failure, timeout, lost connection or an answer\n"
            "over --max-frame; 2 usage\n",
            DEFAULT_SERVER);
}

static int print_json(const char *text)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    if (aip_json_pretty(text, strlen(text), 2, &b) || aip_buf_putc(&b, '\n') || aip_buf_nul(&b)) {
        aip_buf_free(&b);
        return 1;
    }
    fputs((const char *)b.data, stdout);
    aip_buf_free(&b);
    return 0;
}

/* UFO's task result echoes each batch's request text ([{"request": "<the actions>", ...}]):
 * the actions' parameters are shown with their secrets (api_key, token, ...) redacted. The
 * rest of the result is copied byte for byte. */
struct spans {
    size_t off[64], len[64], n;
    const char *base;
};

static void request_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    struct spans *s = user;
    /* key[i] leads from level i to level i + 1: [ (index) { "request": <here> } ] */
    if (p->depth == 2 && !p->key[0] && p->key[1] &&
        aip_jscan_key_eq(p->key[1], p->key_len[1], "request") && n && v[0] == '"' && s->n < 64) {
        s->off[s->n] = (size_t)(v - s->base);
        s->len[s->n++] = n;
    }
}

static void put_result_redacted(aip_buf *b, const char *result)
{
    size_t len = strlen(result);
    struct spans s = {.n = 0, .base = result};
    aip_jscan js = {0};
    js.visit = request_visit;
    js.user = &s;
    js.visit_depth = 2;
    if (aip_jscan_run(&js, result, len)) {
        aip_buf_puts(b, result); /* not ours to judge: printed as it came */
        return;
    }
    size_t at = 0;
    for (size_t i = 0; i < s.n; i++) {
        aip_buf_append(b, result + at, s.off[i] - at);
        at = s.off[i] + s.len[i];
        cJSON *str = cJSON_ParseWithLength(result + s.off[i], s.len[i]);
        const char *text = cJSON_GetStringValue(str);
        aip_buf red;
        aip_buf_init(&red, 0);
        if (text && aip_redact_json(text, strlen(text), &red) == 0)
            aip_json_put_string(b, (const char *)red.data, red.len);
        else
            aip_buf_append(b, result + s.off[i], s.len[i]); /* not JSON: no parameters in it */
        aip_buf_free(&red);
        cJSON_Delete(str);
    }
    aip_buf_puts(b, result + at);
}

/* {"status": ..., "result": ..., "error": ...} for a task's outcome. */
static int print_task(const aip_future *f)
{
    const aip_msg *m = aip_future_msg(f);
    int st = aip_future_status(f);
    aip_buf b;
    aip_buf_init(&b, 0);
    const char *status = m && m->type == AIP_MSG_TASK_END ? aip_status_str(m->status)
                         : st == 0                        ? "completed"
                                                          : "failed";
    aip_buf_puts(&b, "{\"status\":");
    aip_json_put_string(&b, status, strlen(status));
    aip_buf_puts(&b, ",\"result\":");
    if (m && m->result)
        put_result_redacted(&b, m->result);
    else
        aip_buf_puts(&b, "null");
    aip_buf_puts(&b, ",\"error\":");
    const char *err = m && m->error ? m->error : aip_future_error(f);
    if (err)
        aip_json_put_string(&b, err, strlen(err));
    else
        aip_buf_puts(&b, "null");
    aip_buf_puts(&b, "}");
    aip_buf_nul(&b);
    int rc = print_json((const char *)b.data);
    aip_buf_free(&b);
    return rc;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* UFO passes the key as ?token= in the URL: the HTTP API (devices) sends it as X-API-Key.
 * Returns the percent-decoded value in buf, or NULL when the URL has none. */
static const char *url_token(const char *url, char *buf, size_t n)
{
    const char *q = strchr(url, '?');
    for (const char *p = q; p && *p && *p != '#'; p = strpbrk(p + 1, "&#")) {
        if (strncmp(p + 1, "token=", 6) != 0)
            continue;
        size_t o = 0;
        for (const char *v = p + 7; *v && *v != '&' && *v != '#' && o + 1 < n; v++) {
            if (*v == '%' && hexv(v[1]) >= 0 && hexv(v[2]) >= 0) {
                buf[o++] = (char)(hexv(v[1]) * 16 + hexv(v[2]));
                v += 2;
            } else {
                buf[o++] = *v;
                if (*v == '+')
                    buf[o - 1] = ' ';
            }
        }
        buf[o] = 0;
        for (size_t i = 0; i < o; i++)
            if ((unsigned char)buf[i] < 0x20) /* no header injection through %0d%0a */
                return NULL;
        return buf;
    }
    return NULL;
}

static int cmd_devices(const char *server, const char *token, const char *ca_file, const char *cert,
                       const char *key, double timeout_s)
{
    char from_url[512];
    if (!token)
        token = url_token(server, from_url, sizeof from_url);
    char *body = NULL;
    int status = 0;
    char err[256];
    if (aip_http_get_tls(server, "/api/clients", token, ca_file, cert, key, (int)(timeout_s * 1000),
                         &status, &body, err, sizeof err)) {
        fprintf(stderr, "aipctl: %s\n", err);
        return 1;
    }
    int rc = 1;
    if (status == 200 && body &&
        !aip_json_validate(body, strlen(body), AIP_JSON_OBJECT, NULL, NULL, 0)) {
        rc = print_json(body);
    } else if (status == 401 || status == 403) {
        fprintf(stderr, "aipctl: the server refused the key (HTTP %d)\n", status);
    } else {
        fprintf(stderr, "aipctl: unexpected answer from the server (HTTP %d)\n", status);
    }
    free(body);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, 0, 's'},    {"token", required_argument, 0, 't'},
        {"encoding", required_argument, 0, 'e'},  {"timeout", required_argument, 0, 'T'},
        {"max-frame", required_argument, 0, 'm'}, {"ca-file", required_argument, 0, 'c'},
        {"cert", required_argument, 0, 'C'},      {"key", required_argument, 0, 'k'},
        {"verbose", no_argument, 0, 'v'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0},
    };
    const char *server = DEFAULT_SERVER, *token = getenv("AIP_TOKEN"), *ca_file = NULL;
    const char *cert = NULL, *key = NULL;
    aip_encoding enc = AIP_ENCODING_JSON;
    double timeout_s = 30;
    size_t max_frame = DEFAULT_MAX_FRAME;
    int verbose = 0, c;
    static const char *const encodings[] = {"json", "proto", "protobuf", NULL};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int i;
        switch (c) {
        case 's':
            if (tool_arg_ws_url(PROG, "--server", optarg))
                return 2;
            server = optarg;
            break;
        case 't': token = optarg; break;
        case 'e':
            if (tool_arg_choice(PROG, "--encoding", optarg, encodings, &i))
                return 2;
            enc = i ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
            break;
        case 'T':
            if (tool_arg_num(PROG, "--timeout", optarg, 0, true, 86400 * 30, "seconds", &timeout_s))
                return 2;
            break;
        case 'm':
            if (tool_arg_size(PROG, "--max-frame", optarg, 1024, (size_t)1 << 30, &max_frame))
                return 2;
            break;
        case 'c':
            if (tool_arg_pem(PROG, "--ca-file", optarg, TOOL_PEM_CERT))
                return 2;
            ca_file = optarg;
            break;
        case 'C':
            if (tool_arg_pem(PROG, "--cert", optarg, TOOL_PEM_CERT))
                return 2;
            cert = optarg;
            break;
        case 'k':
            if (tool_arg_pem(PROG, "--key", optarg, TOOL_PEM_KEY))
                return 2;
            key = optarg;
            break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("aipctl %s\n", aip_version()); return 0;
        default: return tool_option_error(PROG, c, argv, opts);
        }
    }
    if (!cert != !key)
        return tool_usage_error(PROG, "%s needs %s too (a client certificate and its key)",
                                cert ? "--cert" : "--key", cert ? "--key" : "--cert");
    if (optind >= argc)
        return tool_usage_error(PROG, "no command: give devices, info DEVICE or task DEVICE "
                                      "REQUEST");
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    if (strcmp(cmd, "devices") == 0) {
        if (nargs != 0)
            return tool_usage_error(PROG, "devices: takes no arguments (\"%s\" is one too many)",
                                    argv[optind + 1]);
        return cmd_devices(server, token, ca_file, cert, key, timeout_s);
    }
    bool is_info = strcmp(cmd, "info") == 0, is_task = strcmp(cmd, "task") == 0;
    if (!is_info && !is_task)
        return tool_usage_error(PROG,
                                "%s: not a command (devices, info DEVICE, task DEVICE "
                                "REQUEST)",
                                cmd);
    int want = is_info ? 1 : 2;
    if (nargs < want)
        return tool_usage_error(PROG, "%s: needs %s", cmd,
                                is_info ? "DEVICE"
                                : nargs ? "REQUEST after DEVICE"
                                        : "DEVICE and REQUEST");
    if (nargs > want)
        return tool_usage_error(PROG, "%s: \"%s\" is one argument too many (quote the %s)", cmd,
                                argv[optind + 1 + want], is_info ? "device id" : "request");
    const char *device = argv[optind + 1];
    if (!device[0] || strlen(device) > 200)
        return tool_usage_error(PROG, "%s: the device id must be 1 to 200 bytes", cmd);

    aip_log_set_level(verbose ? AIP_LOG_DEBUG : AIP_LOG_ERROR);
    char client_id[AIP_ID_MAX + 1], rnd[40];
    aip_uuid4(NULL, rnd, sizeof rnd);
    snprintf(client_id, sizeof client_id, "aipctl-%ld-%.8s@%s", (long)getpid(), rnd, device);

    tool_reg_waiter w = TOOL_REG_WAITER_INIT;
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = server;
    cfg.client_id = client_id;
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = device;
    cfg.token = token;
    cfg.encoding = enc;
    cfg.ca_file = ca_file;
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.max_frame_in = max_frame;
    cfg.on_state = tool_reg_on_state;
    cfg.user = &w;
    /* a one-shot tool: do not sit in backoff for long */
    cfg.backoff_base_ms = 200;
    cfg.backoff_cap_ms = 1000;
    aip_conn *conn;
    int rc = aip_conn_create(&cfg, &conn);
    if (rc) {
        fprintf(stderr, "aipctl: cannot start: %s\n", aip_strerror(rc));
        return rc == AIP_E_CONFIG || rc == AIP_E_INVAL ? 2 : 1;
    }
    int exit_code = tool_reg_wait(&w, timeout_s, "aipctl");
    if (exit_code) {
        aip_conn_destroy(conn);
        return exit_code;
    }
    aip_future *f = NULL;
    aip_request_opts ro = {.timeout_ms = (int64_t)(timeout_s * 1000)};
    if (is_info) {
        rc = aip_conn_request_device_info(conn, device, &ro, &f);
    } else {
        aip_task_opts to = {.request = argv[optind + 2], .target_id = device, .req = ro};
        rc = aip_conn_send_task(conn, &to, &f);
    }
    if (rc) {
        fprintf(stderr, "aipctl: %s\n", aip_strerror(rc));
        aip_conn_destroy(conn);
        return 1;
    }
    rc = aip_future_wait(f, -1);
    if (is_info) {
        const aip_msg *m = aip_future_msg(f);
        if (rc == 0 && m && m->result) {
            exit_code = print_json(m->result);
        } else {
            fprintf(stderr, "aipctl: %s: %s%s\n", aip_strerror(rc),
                    aip_future_error(f) ? aip_future_error(f) : "no system info in the answer",
                    rc == AIP_E_TOO_LARGE ? " (see --max-frame)" : "");
            exit_code = 1;
        }
    } else {
        const aip_msg *m = aip_future_msg(f);
        if (m && m->type == AIP_MSG_TASK_END) {
            print_task(f);
            exit_code = m->status == AIP_STATUS_COMPLETED ? 0 : 1;
        } else {
            fprintf(stderr, "aipctl: %s: %s%s\n", aip_strerror(rc),
                    aip_future_error(f) ? aip_future_error(f) : "",
                    rc == AIP_E_TOO_LARGE ? " (see --max-frame)" : "");
            exit_code = 1;
        }
    }
    aip_future_release(f);
    aip_conn_destroy(conn);
    return exit_code;
}
