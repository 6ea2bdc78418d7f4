/* SPDX-License-Identifier: MIT */
/*
 * aip/agent.h — the device role: a connection manager, an executor and device info, wired the
 * way UFO's device client behaves (docs/protocol.md §3).
 *
 * - Registers as a device with metadata {system_info, registration_time, platform} (system_info:
 *   UFO's eleven fields, supported_features from the enabled tools, custom_metadata from tags).
 * - A server `command` batch goes to the executor (worker threads, never the service thread);
 *   its one `command_results` goes back on the link the command came from, cut to fit the
 *   connection's outbound limit when its Results are larger (long strings keep a shorter tail,
 *   then whole Results become failures naming the limit; see aip_agent_stats).
 * - A server `device_info_request` [ext] is answered with fresh system info.
 * - A server `task` is mirrored as UFO's device does: a client `task` with that text (unless
 *   server tasks are disabled: then an `error`).
 *
 * Threads: create/start/destroy from one thread (not from a callback); register_tool before
 * start; everything else from any thread. Ownership: config strings are copied (at create:
 * the caller may free them right after).
 *
 * NULL: a NULL agent, config or out is AIP_E_INVAL; conn(NULL) and system_info(NULL) are NULL;
 * destroy(NULL) does nothing; get_stats(NULL, s) zeroes s and get_stats(a, NULL) does nothing.
 */
#ifndef AIP_AGENT_H
#define AIP_AGENT_H

#include "aip/export.h"

#include "aip/conn.h"
#include "aip/executor.h"
#include "aip/mcp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest tags_json (registration metadata, system_info.custom_metadata), bytes. */
#define AIP_AGENT_MAX_TAGS 16384

typedef struct aip_agent aip_agent;

typedef struct aip_agent_config {
    aip_conn_config conn;      /* url, client_id, token, TLS, timers, limits, on_state/user */
    aip_executor_config exec;  /* workers, timeouts, read_file roots, execute_command policy */
    const char *tags_json;     /* system_info.custom_metadata: a JSON object; NULL = {};
                                  at most AIP_AGENT_MAX_TAGS bytes, else AIP_E_TOO_LARGE */
    bool disable_server_tasks; /* answer server `task` frames with an error instead */
    const char *proc_root;     /* tests: a fixture /proc; NULL = "/proc" */
    /* MCP servers whose tools the agent hosts (aip/mcp.h), in priority order: copied. They
     * start (in the background) in aip_agent_create and stop first in aip_agent_destroy. */
    const aip_mcp_server_config *mcp_servers;
    size_t n_mcp_servers;
    /* aip_agent_start waits up to this long for the MCP servers' first start, so that their
     * tools are in system_info.supported_features of the registration (0: does not wait). */
    uint32_t mcp_start_wait_ms;
} aip_agent_config;

/* Creates the executor with the built-in tools plus get_device_info, and starts the MCP
 * servers (aip_mcp_host_create's errors). Does not connect. */
AIP_API int aip_agent_create(const aip_agent_config *cfg, aip_agent **out);
/* Adds an embedder's tool (before aip_agent_start, so it is listed in supported_features),
 * keyed "<tool_type>::<name>". _ex adds what list_tools shows of it in UFO's MCPToolInfo shape
 * (namespace, title, schemas, annotations: see aip_tool_info and its `size` rule); without it
 * the tool is in namespace AIP_TOOL_NAMESPACE_DEFAULT with input_schema {"type":"object"}.
 * Returns as aip_executor_register_ex, or AIP_E_STATE after start, AIP_E_INVAL for a NULL a. */
AIP_API int aip_agent_register_tool(aip_agent *a, const aip_tool_def *def);
AIP_API int aip_agent_register_tool_ex(aip_agent *a, const aip_tool_def *def,
                                       const aip_tool_info *info);
/* Collects system info and starts the connection (registration, heartbeats, reconnects). */
AIP_API int aip_agent_start(aip_agent *a);
/* The connection, for requests of the embedder's own (NULL before start). */
AIP_API aip_conn *aip_agent_conn(aip_agent *a);
/* The current system_info JSON (aip_free it). */
AIP_API char *aip_agent_system_info(aip_agent *a);
/* Closes with code (1000 or 1001), fails what is pending, stops the executor (running tools are
 * cancelled; their batches are answered while the link lasts), frees. */
AIP_API void aip_agent_destroy(aip_agent *a, int code, const char *reason);

typedef struct aip_agent_stats {
    uint64_t batches, batches_refused, actions, info_requests, server_tasks;
    /* Answers that had to be cut to fit the connection's outbound limit (max_queued_bytes, or
     * the room left in a queue that stayed full), and the Results they lost (replaced by
     * failure Results naming the limit); answers that could not be sent at all (the link gone,
     * the queue still full after 15 s, the agent stopping). Each is also logged at warn. */
    uint64_t answers_cut, results_dropped, answers_unsent;
} aip_agent_stats;
AIP_API void aip_agent_get_stats(aip_agent *a, aip_agent_stats *s);

#ifdef __cplusplus
}
#endif
#endif /* AIP_AGENT_H */
