/* SPDX-License-Identifier: MIT */
/*
 * aip/mcp.h — the agent as an MCP host: tools that come from MCP servers (Model Context
 * Protocol, 2025-06-18; 2025-03-26 and 2024-11-05 servers are accepted), as UFO's device gets
 * every tool it has (microsoft/UFO config/ufo/mcp.yaml, ufo/client/computer.py).
 *
 * Each configured server gets a namespace and a tool type; its tools join the executor's
 * registry under UFO's key "<tool_type>::<tool_name>" (aip_executor_set_tools, provider =
 * 1 + the server's index: the first configured server wins a key two servers share, and any
 * server wins over a built-in tool). A server is reached over
 * - stdio: a child process (its own process group, a scrubbed environment, no inherited fds),
 *   newline-delimited JSON-RPC 2.0 on its stdin/stdout; its stderr goes to the log, rate
 *   limited. It is restarted with backoff when it exits, and killed when the host stops (and
 *   with PR_SET_PDEATHSIG when the agent is killed);
 * - streamable HTTP (libcurl): POSTs with Accept: application/json, text/event-stream, the
 *   session id and MCP-Protocol-Version after initialize, answers as JSON or SSE, the
 *   standalone GET stream kept open when the server offers one, the session re-initialized
 *   once on a 404, DELETEd at stop.
 * A server that is down (not started, crashed, a bad handshake or tool list) has no tools in
 * list_tools (nor in features_json); its last known tools are kept hidden, so their calls
 * fail naming the reason (a tool it never listed is an "unknown tool"). docs/ufo.md says how a
 * CallToolResult becomes a Result.
 *
 * Threads: one thread per server (supervision, handshake, tool list); tools/call runs on the
 * executor's worker thread that runs the action, bounded by the command's deadline and the
 * server's timeout (then `notifications/cancelled`). create/stop/destroy from one thread, not
 * from a tool. Ownership: the configuration is copied; the executor is borrowed and must
 * outlive the host (stop the host, then the executor, then destroy both).
 */
#ifndef AIP_MCP_H
#define AIP_MCP_H

#include "aip/export.h"

#include "aip/executor.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version offered; the answers accepted are this one and the two before it. */
#define AIP_MCP_PROTOCOL_VERSION "2025-06-18"
/* Bounds (each refused with a named error, see README "Limits"). */
#define AIP_MCP_MAX_SERVERS 32
#define AIP_MCP_MAX_MESSAGE (4u << 20) /* one stdio line, HTTP body or SSE event */
#define AIP_MCP_MAX_TOOLS   512        /* tools of one server (all pages of tools/list) */
#define AIP_MCP_MAX_NAME    128        /* a tool name: 1-128 of [A-Za-z0-9_.-] */

typedef struct aip_mcp_kv {
    const char *name, *value;
} aip_mcp_kv;

typedef struct aip_mcp_server_config {
    const char *tool_namespace; /* required: UFO's namespace of every tool of this server */
    aip_tool_type tool_type;    /* AIP_TOOL_ACTION or AIP_TOOL_DATA_COLLECTION */
    /* stdio: argv[0..argc) (argv[0] with a '/' is run as is, else found on the child's PATH);
     * env adds to (or replaces in) PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8, the whole
     * environment the child gets. */
    const char *const *argv;
    size_t argc;
    const aip_mcp_kv *env;
    size_t n_env;
    /* streamable HTTP: the endpoint (http:// or https://; TLS verified against the system
     * store), and headers sent with every request (values never logged). */
    const char *url;
    const aip_mcp_kv *headers;
    size_t n_headers;
    /* The longest any request to this server waits for its answer (initialize, tools/list,
     * tools/call; a call also ends at its command's deadline). 0 -> 60000. */
    uint32_t timeout_ms;
} aip_mcp_server_config;

typedef struct aip_mcp_host aip_mcp_host;

/* Copies the configuration and starts one thread per server; the servers start at once, in
 * the background (their tools appear in e's registry when each is ready). Returns 0,
 * AIP_E_INVAL (no namespace, a bad tool type, neither or both of argv and url, a URL that is
 * not http(s)://, a header or env entry that is not text without CR/LF, more than
 * AIP_MCP_MAX_SERVERS, a namespace + tool type given twice), AIP_E_NOMEM, AIP_E_UNSUPPORTED
 * (libcurl cannot be initialised). n 0: a host with no server. */
AIP_API int aip_mcp_host_create(aip_executor *e, const aip_mcp_server_config *servers, size_t n,
                                aip_mcp_host **out);

/* Waits until every server has finished its first start attempt (ready or not), at most
 * timeout_ms (0, as AIP_TIMEOUT_POLL: only looks). Returns the number of servers ready. */
AIP_API size_t aip_mcp_host_wait_started(aip_mcp_host *h, uint32_t timeout_ms);

/* Stops every server: calls in flight fail at once ("the agent is stopping"), their tools
 * leave the registry, stdio children get EOF and SIGTERM (their process group), SIGKILL 1 s
 * later, HTTP sessions are DELETEd (1 s at most); joins the threads. Idempotent. */
AIP_API void aip_mcp_host_stop(aip_mcp_host *h);

/* aip_mcp_host_stop, then frees. NULL is fine. */
AIP_API void aip_mcp_host_destroy(aip_mcp_host *h);

#ifdef __cplusplus
}
#endif
#endif /* AIP_MCP_H */
