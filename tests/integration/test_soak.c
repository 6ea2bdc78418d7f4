/* SPDX-License-Identifier: MIT */
/*
 * Soak: links dropped every few seconds with requests in flight, for a set time.
 *
 *   test_soak [--seconds N] [--drop-every-ms M] [--valgrind-agent]
 *
 * aip-test-server on 127.0.0.1 with fault_proxy.py in front of it; a constellation-agent (under
 * valgrind with --valgrind-agent) and this program's own constellation connection both go
 * through the proxy. Worker threads keep tasks (echo + a short sleep on the agent) and
 * device-info requests in flight; every M ms the proxy breaks every link, cycling through reset,
 * clean close, half-open stall (found by liveness) and a cut after a few bytes. RSS (VmRSS) of
 * the agent and of this process is sampled and printed.
 *
 * Passes when: every request accepted completed with some outcome (counted, none lost), some
 * succeeded in the last quarter (it keeps recovering), the links were dropped and came back,
 * the agent exits 0 on SIGTERM (valgrind: --error-exitcode, definite leaks are errors), and
 * the agent's RSS is flat after the warm-up. Run this program itself under valgrind to cover
 * libaip's client side too (tools/test.sh --stage soak does both). Valgrind runs with a 1 MB
 * freed-block quarantine (--freelist-vol; the 20 MB default alone would make RSS climb for
 * the first minutes of a soak).
 */
#include <aip/aip.h>

#include "peer_proc.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AIP_TOOLS_DIR
#error "AIP_TOOLS_DIR must be defined"
#endif
#ifndef AIP_AGENT_BIN
#error "AIP_AGENT_BIN must be defined"
#endif

#define WORKERS     4
#define MAX_SAMPLES 1024

static atomic_bool g_stop;
static aip_conn *g_conn;
static double g_t0, g_last_quarter;

enum { O_OK, O_REMOTE, O_LOST, O_TIMEOUT, O_NOTCONN, O_FULL, O_OTHER, O_N };
static const char *const o_names[O_N] = {
    "ok", "remote error", "conn lost", "timeout", "not connected", "full", "other"};
static atomic_ulong g_out[O_N], g_refused[O_N], g_submitted, g_completed, g_ok_late;

static int outcome(int rc)
{
    switch (rc) {
    case 0: return O_OK;
    case AIP_E_REMOTE: return O_REMOTE;
    case AIP_E_CONN_LOST: return O_LOST;
    case AIP_E_TIMEOUT: return O_TIMEOUT;
    case AIP_E_NOT_CONNECTED: return O_NOTCONN;
    case AIP_E_FULL: return O_FULL;
    default: return O_OTHER;
    }
}

static void *worker(void *arg)
{
    long id = (long)arg;
    unsigned n = 0;
    static const char task[] = "{\"actions\":[{\"tool_name\":\"echo\",\"parameters\":{\"text\":"
                               "\"soak\"}},{\"tool_name\":\"sleep\",\"parameters\":{\"seconds\":"
                               "0.2}},{\"tool_name\":\"echo\",\"parameters\":{\"text\":\"x\"}}]}";
    while (!atomic_load(&g_stop)) {
        aip_future *f = NULL;
        aip_request_opts ro = {.timeout_ms = 8000, .wait_for_link = true};
        int rc;
        if ((n++ + (unsigned)id) % 3 == 0) {
            rc = aip_conn_request_device_info(g_conn, "soak-dev", &ro, &f);
        } else {
            aip_task_opts to = {.request = task, .target_id = "soak-dev", .req = ro};
            rc = aip_conn_send_task(g_conn, &to, &f);
        }
        if (rc) { /* refused synchronously (no link within the timeout...): counted, no future */
            atomic_fetch_add(&g_refused[outcome(rc)], 1);
            usleep(50000);
            continue;
        }
        atomic_fetch_add(&g_submitted, 1);
        rc = aip_future_wait(f, 60000);
        aip_future_release(f);
        atomic_fetch_add(&g_completed, 1);
        atomic_fetch_add(&g_out[outcome(rc)], 1);
        if (rc == 0 && now_ms() >= g_last_quarter)
            atomic_fetch_add(&g_ok_late, 1);
        if (rc && rc != AIP_E_REMOTE)
            usleep(20000);
    }
    return NULL;
}

static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = atol(line + fl + 1);
            break;
        }
    fclose(f);
    return v;
}

static pid_t spawn(char *const argv[], const char *errlog)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

static void print_file_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0)
        if (strstr(line, needle))
            printf("  agent %s", line);
    free(line);
    fclose(f);
}

int main(int argc, char **argv)
{
    int seconds = 60, drop_every = 3000;
    bool vg = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--drop-every-ms") && i + 1 < argc)
            drop_every = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--valgrind-agent"))
            vg = true;
        else {
            fprintf(stderr, "usage: test_soak [--seconds N] [--drop-every-ms M] "
                            "[--valgrind-agent]\n");
            return 2;
        }
    }
    if (seconds < 20 || drop_every < 500) {
        fprintf(stderr, "test_soak: --seconds >= 20, --drop-every-ms >= 500\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    aip_log_set_level(getenv("AIP_TEST_DEBUG") ? AIP_LOG_DEBUG : AIP_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    int failures = 0;
#define EXPECT(cond, ...)                \
    do {                                 \
        if (cond) {                      \
            printf("ok   " __VA_ARGS__); \
        } else {                         \
            printf("FAIL " __VA_ARGS__); \
            failures++;                  \
        }                                \
        printf("\n");                    \
    } while (0)

    /* server, proxy, agent */
    peer_proc srv, px;
    memset(&srv, 0, sizeof srv);
    snprintf(srv.errlog, sizeof srv.errlog, "/tmp/aip-soak-%d-server.err", (int)getpid());
    static char srv_bin[] = AIP_TOOLS_DIR "/aip-test-server", portf[] = "--port", zero[] = "0",
                nokey[] = "--no-token";
    char *sargv[] = {srv_bin, portf, zero, nokey, NULL};
    if (proc_start_listener(&srv, sargv) || proxy_start(&px, srv.port)) {
        fprintf(stderr, "test_soak: cannot start the server or the proxy\n");
        return 1;
    }
    char cfg_path[128], err_path[128], vg_path[128], vg_opt[160];
    snprintf(cfg_path, sizeof cfg_path, "/tmp/aip-soak-%d.json", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/aip-soak-%d-agent.err", (int)getpid());
    snprintf(vg_path, sizeof vg_path, "/tmp/aip-soak-%d-agent.vg", (int)getpid());
    snprintf(vg_opt, sizeof vg_opt, "--log-file=%s", vg_path);
    FILE *cf = fopen(cfg_path, "w");
    if (!cf)
        return 1;
    fprintf(cf, "{\"backoff\": {\"base_ms\": 100, \"cap_ms\": 1000}}\n");
    fclose(cf);
    static char vg_bin[] = "/usr/bin/valgrind", vg1[] = "--leak-check=full",
                vg2[] = "--errors-for-leak-kinds=definite", vg3[] = "--show-leak-kinds=definite",
                vg4[] = "--error-exitcode=99", vg5[] = "--freelist-vol=1000000",
                agent_bin[] = AIP_AGENT_BIN, a_srv[] = "--server", a_id[] = "--client-id",
                a_idv[] = "soak-dev", a_hb[] = "--heartbeat", a_hbv[] = "1", a_cfg[] = "--config",
                a_ll[] = "--log-level", a_llv[] = "info";
    char *aargv[24];
    int an = 0;
    if (vg) {
        aargv[an++] = vg_bin;
        aargv[an++] = vg1;
        aargv[an++] = vg2;
        aargv[an++] = vg3;
        aargv[an++] = vg4;
        aargv[an++] = vg5;
        aargv[an++] = vg_opt;
    }
    aargv[an++] = agent_bin;
    aargv[an++] = a_srv;
    aargv[an++] = px.url;
    aargv[an++] = a_id;
    aargv[an++] = a_idv;
    aargv[an++] = a_hb;
    aargv[an++] = a_hbv;
    aargv[an++] = a_cfg;
    aargv[an++] = cfg_path;
    aargv[an++] = a_ll;
    aargv[an++] = a_llv;
    aargv[an] = NULL;
    pid_t agent = spawn(aargv, err_path);
    if (agent < 0)
        return 1;

    /* this process's own constellation connection, through the proxy as well */
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = px.url;
    cfg.client_id = "soak-constellation";
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = "soak-dev";
    cfg.heartbeat_ms = 1000;
    cfg.backoff_base_ms = 100;
    cfg.backoff_cap_ms = 1000;
    if (aip_conn_create(&cfg, &g_conn)) {
        fprintf(stderr, "test_soak: cannot create the connection\n");
        return 1;
    }
    /* the agent registers first (under valgrind it starts slowly) */
    double until = now_ms() + 60000;
    while (now_ms() < until && count_lines(err_path, "registered as") < 1)
        usleep(100000);
    EXPECT(count_lines(err_path, "registered as") >= 1, "agent registered");
    /* the constellation may have tried before the device was there: the server's "Target
     * device ... is not connected" is a refusal, returned at once while it stands; the next
     * attempt comes on the slow schedule (here within the 1 s backoff cap) */
    int reg = AIP_E_TIMEOUT;
    for (double until_reg = now_ms() + 30000; now_ms() < until_reg;) {
        if ((reg = aip_conn_wait_registered(g_conn, 1000)) == 0)
            break;
        usleep(100000);
    }
    EXPECT(reg == 0, "constellation registered");

    printf("soak: %d s, a fault every %d ms, %d workers, agent %s\n", seconds, drop_every, WORKERS,
           vg ? "under valgrind" : "native");
    g_t0 = now_ms();
    double end = g_t0 + seconds * 1000.0;
    g_last_quarter = g_t0 + seconds * 750.0;
    pthread_t th[WORKERS];
    for (long i = 0; i < WORKERS; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);

    static const char *const faults[] = {"reset", "close", "stall", "drop-after 3000"};
    static long rss_agent[MAX_SAMPLES], rss_self[MAX_SAMPLES];
    int ns = 0, nf = 0;
    double next_fault = g_t0 + drop_every, next_sample = g_t0;
    printf("soak: RSS samples (s: agent kB / self kB):");
    while (now_ms() < end) {
        double now = now_ms();
        if (now >= next_fault) {
            proxy_cmd(&px, faults[nf % 4]);
            nf++;
            next_fault += drop_every;
        }
        if (now >= next_sample && ns < MAX_SAMPLES) {
            rss_agent[ns] = status_kb(agent, "VmRSS");
            rss_self[ns] = status_kb(getpid(), "VmRSS");
            printf(" %.0f:%ld/%ld", (now - g_t0) / 1000, rss_agent[ns], rss_self[ns]);
            ns++;
            next_sample += seconds >= 300 ? 10000 : 2000;
        }
        usleep(50000);
    }
    printf("\n");
    atomic_store(&g_stop, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    aip_conn_stats st;
    aip_conn_get_stats(g_conn, &st);
    aip_conn_destroy(g_conn);

    unsigned long submitted = atomic_load(&g_submitted), completed = atomic_load(&g_completed);
    printf("soak: %d faults; %lu requests submitted, %lu completed:", nf, submitted, completed);
    for (int i = 0; i < O_N; i++)
        printf(" %s %lu%s", o_names[i], atomic_load(&g_out[i]), i + 1 < O_N ? "," : "\n");
    printf("soak: refused at submission:");
    for (int i = 1; i < O_N; i++)
        printf(" %s %lu%s", o_names[i], atomic_load(&g_refused[i]), i + 1 < O_N ? "," : "\n");
    printf("soak: constellation stats: registrations %llu, reconnects %llu, liveness drops %llu, "
           "conn_lost %llu, timeouts %llu, late %llu, dropped frames %llu, pending %llu\n",
           (unsigned long long)st.registrations, (unsigned long long)st.reconnects,
           (unsigned long long)st.liveness_drops, (unsigned long long)st.conn_lost,
           (unsigned long long)st.timeouts, (unsigned long long)st.late,
           (unsigned long long)st.dropped_frames, (unsigned long long)st.pending);
    int agent_regs = count_lines(err_path, "registered as");
    int proxy_conns = peer_log_count(&px, "\"event\": \"connect\"", NULL);
    printf("soak: agent registrations %d, proxy connections %d\n", agent_regs, proxy_conns);

    EXPECT(submitted == completed, "every accepted request completed (%lu of %lu)", completed,
           submitted);
    EXPECT(atomic_load(&g_out[O_OK]) > 0 && atomic_load(&g_ok_late) > 0,
           "requests succeed, also in the last quarter (%lu)", atomic_load(&g_ok_late));
    EXPECT(atomic_load(&g_out[O_OTHER]) == 0 && atomic_load(&g_refused[O_OTHER]) == 0 &&
               atomic_load(&g_out[O_NOTCONN]) == 0 && atomic_load(&g_out[O_FULL]) == 0,
           "no unexpected outcome");
    EXPECT(st.pending == 0, "nothing left pending");
    EXPECT(agent_regs >= nf / 2 && (int)st.registrations >= nf / 2,
           "the links came back after the faults (agent %d, constellation %llu, %d faults)",
           agent_regs, (unsigned long long)st.registrations, nf);

    /* RSS flat: after a warm-up (the first quarter), the last quarter's peak may exceed the
     * second quarter's median by at most 10% + 1 MiB */
    if (ns >= 8) {
        int q = ns / 4;
        static long tmp[MAX_SAMPLES];
        for (int k = 0; k < 2; k++) {
            long *v = k ? rss_self : rss_agent;
            memcpy(tmp, v + q, sizeof(long) * (size_t)q);
            qsort(tmp, (size_t)q, sizeof(long), cmp_long);
            long base = tmp[q / 2], peak = 0;
            for (int i = ns - q; i < ns; i++)
                peak = v[i] > peak ? v[i] : peak;
            EXPECT(peak <= base + base / 10 + 1024,
                   "%s RSS flat: second-quarter median %ld kB, last-quarter peak %ld kB",
                   k ? "soak process" : "agent", base, peak);
        }
    }

    /* the agent: SIGTERM, exit 0 (valgrind: no errors, no definite leaks) */
    kill(agent, SIGTERM);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 1200 && (w = waitpid(agent, &status, WNOHANG)) == 0; i++)
        usleep(100000);
    if (w == 0) {
        kill(agent, SIGKILL);
        waitpid(agent, &status, 0);
        printf("FAIL the agent did not exit within 120 s of SIGTERM\n");
        failures++;
    } else {
        int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        EXPECT(rc == 0, "agent exit status %d%s", rc, rc == 99 ? " (valgrind found errors)" : "");
    }
    if (vg) {
        print_file_lines(vg_path, "ERROR SUMMARY");
        print_file_lines(vg_path, "All heap blocks were freed");
        print_file_lines(vg_path, "in use at exit");
        print_file_lines(vg_path, "definitely lost");
        print_file_lines(vg_path, "indirectly lost");
        print_file_lines(vg_path, "possibly lost");
        if (failures)
            printf("soak: valgrind log kept: %s\n", vg_path);
        else
            unlink(vg_path);
    }
    EXPECT(count_lines(err_path, "Sanitizer") == 0, "no sanitizer report from the agent");
    if (failures)
        printf("soak: agent log kept: %s\n", err_path);
    else
        unlink(err_path);
    unlink(cfg_path);
    peer_stop(&px);
    peer_stop(&srv);
    unlink(srv.errlog);
    printf("soak: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
