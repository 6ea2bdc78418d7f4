/* SPDX-License-Identifier: MIT */
/*
 * Helper-thread jobs of the transport: DNS, and the HTTP CONNECT proxy probe.
 *
 * Debian's libwebsockets would block the service thread in getaddrinfo(), so a host name is
 * resolved on a short-lived detached thread (aip_thread_start_detached); lws then connects to
 * the address with the name as Host/SNI/certificate name. The probe reuses the same job to ask
 * a proxy for the status lws 4.1.6 does not keep (see probe_main).
 *
 * Threads: the service thread owns t->job and starts, polls (on every wake: the job's thread
 * wakes it with lws_cancel_service()) and abandons jobs; a job's thread touches only its job.
 * The job is shared by reference count (one for each side), its fields under its mutex; `ctx`
 * is cleared under that mutex before the transport stops wanting the answer, so a late job
 * never wakes a destroyed context.
 */
#include "aip/internal/link_error.h"
#include "aip/internal/transport_impl.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct resolve_job {
    aip_mutex m;
    int refs;
    bool done;
    int err;
    char host[256];
    char addr[INET6_ADDRSTRLEN];
    struct lws_context *ctx; /* NULL once the transport no longer wants the answer */
    /* a proxy probe (see probe_main): host is the proxy's, request the CONNECT to send */
    unsigned port;
    int status; /* the proxy's answer, 0 when none was read */
    char request[768];
};

static void job_release(struct resolve_job *j)
{
    aip_mutex_lock(&j->m);
    int left = --j->refs;
    aip_mutex_unlock(&j->m);
    if (!left) {
        aip_mutex_destroy(&j->m);
        aip_free(j);
    }
}

static void *resolve_main(void *arg)
{
    struct resolve_job *j = arg;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(j->host, NULL, &hints, &res);
    char addr[INET6_ADDRSTRLEN] = "";
    if (!rc && res) {
        /* prefer IPv4: loopback-only and NAT'ed devices rarely route IPv6 */
        struct addrinfo *pick = res;
        for (struct addrinfo *a = res; a; a = a->ai_next)
            if (a->ai_family == AF_INET) {
                pick = a;
                break;
            }
        if (pick->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, addr, sizeof addr);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, addr,
                      sizeof addr);
    }
    if (res)
        freeaddrinfo(res);
    aip_mutex_lock(&j->m);
    j->err = rc ? rc : (addr[0] ? 0 : EAI_NONAME);
    memcpy(j->addr, addr, sizeof addr);
    j->done = true;
    if (j->ctx)
        lws_cancel_service(j->ctx); /* safe: ctx is cleared under j->m before it is destroyed */
    aip_mutex_unlock(&j->m);
    job_release(j);
    return NULL;
}

/* ---- the helper threads ---------------------------------------------------------------------- */

/* A proxy probe: lws 4.1.6 reads an HTTP CONNECT proxy's answer itself and reports any status
 * but 200 as "proxy not h1", keeping no status. To name the refusal (407: credentials, 403:
 * refused) a failed attempt sends the same CONNECT once more, from this helper thread, and
 * reads the status line (connect, write and read bounded by PROBE_TIMEOUT_S). */
#define PROBE_TIMEOUT_S 5

static int probe_connect(const char *host, unsigned port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {PROBE_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect() too */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static void *probe_main(void *arg)
{
    struct resolve_job *j = arg;
    int status = 0;
    int fd = probe_connect(j->host, j->port);
    if (fd >= 0) {
        size_t len = strlen(j->request);
        if (send(fd, j->request, len, MSG_NOSIGNAL) == (ssize_t)len) {
            char buf[512];
            size_t got = 0;
            for (;;) { /* until the status line is in */
                ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
                if (got == sizeof buf || memchr(buf, '\n', got))
                    break;
            }
            status = aip_http_status_line(buf, got);
        }
        close(fd);
    }
    aip_mutex_lock(&j->m);
    j->status = status;
    j->done = true;
    if (j->ctx)
        lws_cancel_service(j->ctx);
    aip_mutex_unlock(&j->m);
    job_release(j);
    return NULL;
}

/* ---- the service thread's side --------------------------------------------------------------- */

/* A job for the service thread's context, or NULL (out of memory). */
static struct resolve_job *job_new(aip_transport *t, const char *host)
{
    struct resolve_job *j = aip_calloc(1, sizeof *j);
    if (!j || aip_mutex_init(&j->m)) {
        aip_free(j);
        return NULL;
    }
    j->refs = 2; /* ours and the helper thread's */
    j->ctx = t->ctx;
    snprintf(j->host, sizeof j->host, "%s", host);
    return j;
}

/* A job whose thread could not start: nobody else holds it. */
static void job_discard(struct resolve_job *j)
{
    aip_mutex_destroy(&j->m);
    aip_free(j);
}

void aip_tp_resolve(aip_transport *t)
{
    struct resolve_job *j = job_new(t, t->u.host);
    if (!j) {
        aip_tp_link_ended(t, 1006, "out of memory", false, AIP_E_NOMEM);
        return;
    }
    if (aip_thread_start_detached(resolve_main, j)) {
        job_discard(j);
        aip_tp_link_ended(t, 1006, "cannot start the DNS thread", false, AIP_E_IO);
        return;
    }
    t->job = j;
    t->state = L_RESOLVING;
}

void aip_tp_job_abandon(aip_transport *t)
{
    if (!t->job)
        return;
    aip_mutex_lock(&t->job->m);
    t->job->ctx = NULL;
    aip_mutex_unlock(&t->job->m);
    job_release(t->job);
    t->job = NULL;
}

static void check_probe(aip_transport *t)
{
    aip_mutex_lock(&t->job->m);
    bool done = t->job->done;
    int status = t->job->status;
    aip_mutex_unlock(&t->job->m);
    if (!done)
        return;
    aip_tp_job_abandon(t);
    char why[224];
    int err = status >= 200 && status < 300
                  ? 0
                  : aip_link_proxy_refusal(status, t->proxy_auth[0] != 0, why, sizeof why);
    if (!err) { /* no answer to the probe, or it was let through: what lws said */
        snprintf(why, sizeof why,
                 "proxy not h1 (the proxy %.120s:%u did not answer the CONNECT "
                 "with 200)",
                 t->proxy_host, t->proxy_port);
        err = AIP_E_IO;
    }
    if (aip_link_error_is_final(err))
        t->slow_next = true;
    aip_tp_link_ended(t, 1006, why, false, err);
}

void aip_tp_job_check(aip_transport *t)
{
    if (t->job && t->state == L_PROBING) {
        check_probe(t);
        return;
    }
    if (!t->job || t->state != L_RESOLVING)
        return;
    aip_mutex_lock(&t->job->m);
    bool done = t->job->done;
    int err = t->job->err;
    char addr[INET6_ADDRSTRLEN];
    memcpy(addr, t->job->addr, sizeof addr);
    aip_mutex_unlock(&t->job->m);
    if (!done)
        return;
    aip_tp_job_abandon(t);
    if (err) {
        char why[160];
        snprintf(why, sizeof why, "cannot resolve %s: %s", t->u.host, gai_strerror(err));
        aip_tp_link_ended(t, 1006, why, false, AIP_E_IO);
        return;
    }
    aip_tp_connect_to(t, addr);
}

/* After lws' "proxy not h1": asks the proxy once more, from a helper thread, to learn its
 * status (see probe_main). The attempt ends when the answer is in (check_probe). Returns 0
 * when the probe started; nonzero: end the attempt now. */
int aip_tp_probe_start(aip_transport *t)
{
    if (!t->proxy_port || !t->address[0])
        return -1;
    struct resolve_job *j = job_new(t, t->proxy_host);
    if (!j)
        return -1;
    j->port = t->proxy_port;
    /* the request lws sends (client-handshake.c), with the same credentials */
    int n = snprintf(j->request, sizeof j->request,
                     "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\nUser-agent: lws\r\n%s%s%s\r\n",
                     t->address, t->u.port, t->address, t->u.port,
                     t->proxy_auth[0] ? "Proxy-authorization: basic " : "", t->proxy_auth,
                     t->proxy_auth[0] ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof j->request || aip_thread_start_detached(probe_main, j)) {
        job_discard(j);
        return -1;
    }
    t->job = j;
    t->state = L_PROBING;
    return 0;
}
