/* SPDX-License-Identifier: MIT */
/*
 * constellation-agent configuration: flags > environment (AIP_SERVER, AIP_TOKEN) > JSON file.
 * Every problem is reported by name and makes the daemon exit 78 (EX_CONFIG), which its
 * systemd unit does not restart on.
 */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <aip/aip.h>

#include <stdbool.h>
#include <stddef.h>

#define EXIT_CONFIG 78
#define MAX_LIST    32

typedef struct agent_settings {
    char *server, *client_id, *token, *token_file, *ca_file, *cert, *key, *log_level;
    char *config_file;
    char *tags_json;
    aip_token_placement token_placement;
    aip_encoding encoding;
    unsigned heartbeat_s;
    bool server_tasks;
    bool tls_insecure;
    size_t max_frame, max_pending, max_queued_bytes;
    unsigned backoff_base_ms, backoff_cap_ms, stable_s;
    unsigned workers, command_timeout_s;
    size_t max_output;
    char *read_roots[MAX_LIST];
    size_t n_read_roots, read_max_bytes;
    bool read_allow_hardlinks;
    bool exec_enabled, exec_shell;
    char *exec_allow[MAX_LIST];
    size_t n_exec_allow;
    unsigned exec_timeout_s;
    char *exec_policy;       /* NULL or "ufo-readonly" */
    char *exec_api_key_file; /* tools.execute_command.api_key_file */
    char *exec_api_key;      /* its content; never logged */
    char *exec_cgroup;       /* tools.execute_command.cgroup: "auto" (default), "off" or a path */
    char *exec_cgroup_dir;   /* what it resolved to, or NULL */
    /* tools.mcp.servers, as the agent takes them (strings owned by mcp_strings) */
    aip_mcp_server_config *mcp;
    size_t n_mcp;
    void **mcp_blocks; /* every allocation the configs point into (freed by settings_free) */
    size_t n_mcp_blocks, cap_mcp_blocks;
    char *mcp_json; /* tools.mcp as given (compared on SIGHUP: values hidden in describe) */
} agent_settings;

/* Command-line values (NULL/0 when not given). */
typedef struct agent_flags {
    const char *server, *client_id, *token, *token_file, *ca_file, *cert, *key, *config_file,
        *log_level, *encoding;
    long heartbeat_s; /* -1 when not given */
} agent_flags;

/* Builds the effective settings. Returns 0, or EXIT_CONFIG with the problem in why. */
int settings_load(const agent_flags *f, agent_settings *s, char *why, size_t why_len);
void settings_free(agent_settings *s);
/* The effective settings as JSON: every key of the file by its dotted path ("tools.workers"),
 * then the summary keys --check-config always had (execute_command, read_roots: a count,
 * workers, max_frame, mcp_servers, ...). The token, the API key and MCP env/header values are
 * hidden, the server URL redacted (aip_redact_url: ?token= and every other query value) — for
 * --check-config, logs, and the SIGHUP comparison. */
char *settings_describe(const agent_settings *s);
/* The keys of the JSON file (the schema table in config.c) as a JSON list of {path, kind, min,
 * max, unit, choices, default (as the README shows it), help}: for --config-schema. */
char *settings_schema(void);
/* A heartbeat over 60 s is allowed, but the usual idle timeouts on the path (nginx
 * proxy_read_timeout, squid's read_timeout, load balancers: often 60 s) may cut a link whose
 * WebSocket pings do not pass end to end: the warning to show, or NULL. */
const char *settings_heartbeat_warning(const agent_settings *s);
/* Fills an agent config that borrows the settings' strings. */
void settings_to_agent(const agent_settings *s, aip_agent_config *out, const char **roots,
                       const char **allow);

#endif
