/* SPDX-License-Identifier: MIT */
/*
 * mcp_internal.h — what mcp.c, mcp_call.c, mcp_stdio.c and mcp_http.c share (not installed).
 */
#ifndef AIP_MCP_INTERNAL_H
#define AIP_MCP_INTERNAL_H

#include "aip/buf.h"
#include "aip/common.h"
#include "aip/mcp.h"
#include "aip/port.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MCP_LOG "mcp"

typedef enum mcp_state {
    MCP_DOWN = 0, /* not started, crashed, or failed its handshake: no tools */
    MCP_STARTING, /* handshake under way */
    MCP_READY,    /* tools installed; calls go through */
} mcp_state;

/* A request waiting for its answer (stdio: the server thread completes it). */
typedef struct mcp_pending {
    struct mcp_pending *next;
    int64_t id;
    bool done;
    cJSON *reply; /* the response object (has "result" or "error"), when done without error */
    char error[256];
    aip_cond cond;
} mcp_pending;

typedef struct mcp_server mcp_server;

struct aip_mcp_host {
    aip_executor *exec;
    mcp_server **servers;
    size_t n;
    bool stopped;
    aip_mutex lock; /* guards started_count */
    aip_cond started;
    size_t started_count;
};

struct mcp_server {
    aip_mcp_host *host;
    unsigned provider; /* 1 + index */
    /* configuration (copied) */
    char *ns;
    aip_tool_type tool_type;
    char **argv; /* NULL-terminated */
    char **envp; /* NULL-terminated "K=V" */
    char *url;
    char **headers; /* NULL-terminated "Name: value" (secret: never logged) */
    uint32_t timeout_ms;
    bool http;

    aip_thread thread;
    bool thread_started;
    aip_mutex lock; /* guards everything below */
    aip_cond cond;  /* the server thread waits here (HTTP); stop broadcasts */
    _Atomic int stopping;
    mcp_state state;
    char why[300]; /* why it is down, for calls and the log */
    bool refresh_wanted, recheck_wanted, first_done;
    uint64_t ready_since_ns;
    unsigned failures;
    int64_t next_id;
    mcp_pending *pending;
    char version[16]; /* the negotiated protocol version */
    unsigned n_tools;

    /* stdio (the server thread owns the fds; the rest is under lock) */
    pid_t pid;
    int pidfd, in_fd, out_fd, err_fd, wake_fd;
    aip_buf outq; /* bytes for the child's stdin, written by the server thread */
    size_t outq_off;
    aip_buf line; /* a stdout line being read */
    bool line_skip;
    aip_buf errline;
    uint64_t err_window_ns;
    unsigned err_lines, err_dropped;

    /* HTTP */
    void *curl_share;
    aip_mutex share_locks[8];
    aip_mutex session_lock; /* serialises (re)initialisation */
    char *session_id;       /* under lock */
    void *get_multi;        /* under lock: the standalone GET stream's multi handle, or NULL */
    uint64_t session_gen;   /* under lock */
};

/* ---- mcp.c: shared by both transports ------------------------------------------------------ */

void mcp_set_why(mcp_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Strict JSON check (limits: AIP_MCP_MAX_MESSAGE, depth 64) then parse; NULL with why. */
cJSON *mcp_parse(const char *text, size_t len, char *why, size_t why_len);
/* {"jsonrpc":"2.0","id":id,"method":m,"params":params} (params NULL: none) as text. */
char *mcp_request_text(int64_t id, const char *method, const cJSON *params);
/* The answer to a request of the server that we do not serve: ping gets {}, the rest
 * -32601. NULL when msg is not a request. */
char *mcp_answer_server_request(const cJSON *msg);
/* What a message is: 'r' response, 'q' request, 'n' notification, 0 garbage. */
int mcp_classify(const cJSON *msg);
/* One incoming message text[0..*n) (a line of the child's stdout, an HTTP body or an SSE
 * event): trims its trailing whitespace (*n becomes the trimmed length), parses and
 * classifies it. Returns 0 when nothing is left (nothing to do); 'n' for a notification,
 * handled here (mcp_on_notification); 'r' (a response) or 'q' (a request of the server) with
 * *msg the message, the caller's to free; -1 when it is no JSON-RPC message, why saying what
 * it is instead. *msg is NULL unless 'r' or 'q'. */
int mcp_dispatch(mcp_server *s, const char *text, size_t *n, cJSON **msg, char *why,
                 size_t why_len);
/* cJSON_PrintUnformatted into aip_malloc'd memory; NULL on out of memory. */
char *mcp_print_compact(cJSON *j);
/* The id of a response as our integer id, or -1. */
int64_t mcp_response_id(const cJSON *msg);
/* The executor's tool function of every MCP tool (mcp_call.c); user is the mcp_server. */
int mcp_tool_call(const aip_tool_call *call, void *user, char **result, char **error);
/* A notification the server sent: list_changed sets refresh_wanted; others ignored. */
void mcp_on_notification(mcp_server *s, const cJSON *msg);
/* The initialize request's params. */
cJSON *mcp_initialize_params(void);
/* Checks an initialize answer (version accepted, copied to s->version). 0 or -1 with why. */
int mcp_check_initialize(mcp_server *s, const cJSON *reply);
/* A tools/list page's tools appended to *acc (an array, created on first use); *cursor set to
 * the next cursor (aip_malloc'd) or NULL. 0 or -1 with why. */
int mcp_collect_tools(mcp_server *s, const cJSON *reply, cJSON **acc, char **cursor);
/* Checks the whole list and installs it in the executor. 0 or -1 with why. */
int mcp_install_tools(mcp_server *s, const cJSON *tools);
/* Removes the server's tools from the executor (at stop). */
void mcp_remove_tools(mcp_server *s);
/* Hides them (the server is down): unlisted, and a call fails with the server's reason. */
void mcp_hide_tools(mcp_server *s);
/* Backoff before the next start: full jitter in [d/2, d], d = min(30 s, 250 ms * 2^failures). */
uint64_t mcp_backoff_ns(mcp_server *s);
/* Fails every pending request of s with `why` (under s->lock). */
void mcp_fail_pending_locked(mcp_server *s, const char *why);
/* Pending table (under s->lock). */
mcp_pending *mcp_pending_add_locked(mcp_server *s);
void mcp_pending_remove_locked(mcp_server *s, mcp_pending *p);
mcp_pending *mcp_pending_find_locked(mcp_server *s, int64_t id);
void mcp_pending_free(mcp_pending *p);
/* Records the end of a start attempt (for aip_mcp_host_wait_started). */
void mcp_first_attempt_done(mcp_server *s);
/* Sleeps on s->cond until deadline or stop; true when stopping. */
bool mcp_wait_until(mcp_server *s, uint64_t deadline_ns);

/* ---- the transports -------------------------------------------------------------------------- */

void *mcp_stdio_main(void *arg);
/* One request from a worker: waits for the response (*reply) until deadline, cancel or
 * stop. 0, or -1 with why (a transport failure: no answer). On timeout it sends
 * notifications/cancelled. */
int mcp_stdio_request(mcp_server *s, const char *method, const cJSON *params, uint64_t deadline_ns,
                      const _Atomic int *cancelled, cJSON **reply, char *why, size_t why_len);
void mcp_stdio_wake(mcp_server *s);

int mcp_http_global_init(void);
int mcp_http_server_init(mcp_server *s);
void mcp_http_server_free(mcp_server *s);
void *mcp_http_main(void *arg);
/* Wakes the server's thread out of its GET stream (stop, refresh). */
void mcp_http_wake(mcp_server *s);
int mcp_http_request(mcp_server *s, const char *method, const cJSON *params, uint64_t deadline_ns,
                     const _Atomic int *cancelled, cJSON **reply, char *why, size_t why_len);

#endif /* AIP_MCP_INTERNAL_H */
