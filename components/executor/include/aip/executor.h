/* SPDX-License-Identifier: MIT */
/*
 * aip/executor.h — runs the server's command batches (docs/protocol.md §3.4): the tool registry,
 * the built-in tools, the worker threads, per-command deadlines, output caps.
 *
 * THE THREAD CONTRACT
 * - An executor owns `workers` threads. Tools and done() callbacks run on those threads only,
 *   never on the caller's thread and never on a connection's service thread, so a tool may
 *   block (sleep, wait for a child process, read files) without stalling heartbeats.
 * - Batches run concurrently across workers; the actions of one batch run in order on one
 *   worker. A tool may therefore run on several workers at once: its user data must be
 *   thread-safe.
 * - Any thread may call aip_executor_register, _submit and _features_json, concurrently,
 *   until aip_executor_destroy is called. Submissions that race with destroy get
 *   AIP_E_SHUTDOWN; do not use the pointer after destroy has returned, and never call destroy
 *   from a tool or a done() callback (it joins the thread it would run on).
 * - Cancellation is cooperative: destroy raises the flag aip_tool_call_cancelled() reads and
 *   wakes the built-in tools
 *   (sleep wakes at once, execute_command kills its process group), but a custom tool that
 *   ignores both its deadline and the flag keeps its worker — and destroy — waiting.
 *
 * Batch semantics (exact; docs/protocol.md §3.4): actions run in order; after the first failure
 * every remaining action is `skipped` with UFO's text "Skipped due to previous failure
 * (early_exit=True).", `result` and `namespace` null; an unknown tool, an action the decoder
 * marked invalid, a tool failure (with a generic reason when the tool gave none), invalid JSON
 * from a tool, and a tool that returns after its deadline are all `failure` Results naming the
 * problem. Every Result of a tool that exists carries the tool's namespace, as UFO's device
 * sends it. Every accepted batch gets exactly one done() call — also when the executor is
 * destroyed first.
 *
 * Tool lookup, as UFO's command2tool: the key "<tool_type>::<tool_name>" of the action; an
 * action without a tool type tries data_collection, then action. Unlike UFO, an action whose
 * type names no such tool falls back to the tool of that name under the other type (UFO fails
 * the action), so a server that mislabels a tool's type still reaches it.
 *
 * Ownership: config strings and tool names/descriptions are copied; tool user data is
 * borrowed (for aip_executor_set_tools: until the set is replaced AND the calls running it
 * have returned — or simply until destroy). submit takes the contents of *command; done() takes
 * ownership of *results.
 *
 * NULL: a NULL executor, out, tool definition, command or done is AIP_E_INVAL (submit still
 * frees a non-NULL command); features_json(NULL) is NULL; stop/destroy(NULL) do nothing.
 */
#ifndef AIP_EXECUTOR_H
#define AIP_EXECUTOR_H

#include "aip/export.h"

#include "aip/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_executor aip_executor;

/* What a tool is told about one call. Every pointer is valid only during the call. */
typedef struct aip_tool_call {
    const char *tool_name;
    const char *parameters; /* JSON object text, or NULL */
    const char *call_id;    /* may be NULL */
    uint64_t deadline_ns;   /* aip_now_ns(NULL) clock: the tool should give up by then */
    /* The executor's stop flag, opaque (an atomic inside the library): ask
     * aip_tool_call_cancelled(call). Not an _Atomic type here, so that the header is C++ too. */
    const void *cancelled;
} aip_tool_call;

/* True once the executor is stopping (aip_executor_stop/destroy): a long tool should give up.
 * Reads the flag atomically; any thread. False for a NULL call or flag. */
AIP_API bool aip_tool_call_cancelled(const aip_tool_call *call);

/* A tool runs on an executor worker thread (never the connection's service thread). Returns 0
 * for success with *result_json set to JSON text (aip_malloc'd; NULL = null), or nonzero for
 * failure with *error set (aip_malloc'd text; NULL is allowed and becomes a generic reason).
 * A failing tool may also set *result_json: it is kept as the failure's `result` (this is how
 * execute_command reports the exit code of a command that failed).
 *
 * The executor checks what comes back: result text must be valid JSON (else the Result is a
 * failure "tool returned invalid JSON"); a JSON string result longer than max_output bytes
 * keeps its tail; any other result larger than 16 x max(max_output, read_max_bytes) is a
 * failure. A tool that *succeeds* after its deadline has its result discarded and fails
 * "timed out after N ms"; one that fails after it keeps its own reason. */
typedef int (*aip_tool_fn)(const aip_tool_call *call, void *user, char **result_json, char **error);

typedef struct aip_tool_def {
    const char *name; /* required; with `type` it makes the tool's key "<type>::<name>" */
    aip_tool_type type;
    aip_tool_fn fn;          /* required */
    void *user;              /* borrowed; passed to fn */
    const char *description; /* may be NULL; shown by list_tools */
} aip_tool_def;

/* What list_tools tells about a tool besides its name, type and description: UFO's MCPToolInfo
 * (aip/messages.py). Give it to aip_executor_register_ex / aip_agent_register_tool_ex.
 *
 * EXTENSIBLE: set `size` to sizeof(aip_tool_info) as your header declares it. Fields may be
 * appended in later versions; the library reads only the fields that fit in `size`, and takes
 * the ones past it as NULL, so a program built against an older header keeps working. Every
 * JSON field must be a JSON object's text (else AIP_E_INVAL); all are copied. */
typedef struct aip_tool_info {
    size_t size;                /* sizeof(aip_tool_info) */
    const char *tool_namespace; /* UFO's namespace; NULL -> AIP_TOOL_NAMESPACE_DEFAULT */
    const char *title;          /* NULL -> null */
    const char *input_schema;   /* JSON Schema of the parameters; NULL -> {"type":"object"} */
    const char *output_schema;  /* NULL -> null */
    const char *annotations;    /* MCP ToolAnnotations; NULL -> null */
    const char *meta;           /* MCP _meta; NULL -> null */
} aip_tool_info;

/* The namespace of the built-in tools other than UFO's BashExecutor ones, and of tools
 * registered without one. */
#define AIP_TOOL_NAMESPACE_DEFAULT "AgentTools"
/* UFO's LinuxAgent namespace (config/ufo/mcp.yaml): execute_command and get_system_info. */
#define AIP_TOOL_NAMESPACE_BASH "BashExecutor"

typedef struct aip_executor_config {
    unsigned workers;            /* 0 -> 2: batches run concurrently on this many threads */
    unsigned max_queued;         /* 0 -> 64 batches waiting; then submit fails AIP_E_FULL */
    uint32_t default_timeout_ms; /* 0 -> 60000, per command */
    size_t max_output;           /* 0 -> 65536 bytes per result (tool output), tail kept */
    /* read_file: a path is readable only when its real path (symlinks resolved) lies inside one
     * of these directories; it is then opened from its root down without following any
     * symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or openat O_NOFOLLOW per component
     * where the kernel has no openat2), so a symlink swapped in after the check fails the
     * read instead of escaping. Symlinks inside a root that stay inside are fine. Every root
     * must exist (else create fails with AIP_E_CONFIG). None: read_file refuses everything.
     * Relative paths are taken relative to the first root. read_max_bytes 0 -> 65536.
     * A regular file with more than one hard link is refused (a hard link inside a root may
     * name a file outside it) unless read_allow_hardlinks. */
    const char *const *read_roots;
    size_t n_read_roots;
    size_t read_max_bytes;
    bool read_allow_hardlinks;
    /* execute_command exists only when exec_enabled. The program (argv[0]) must match an
     * allowlist entry: an entry with a '/' matches that exact path; a bare name matches the
     * program found under that name on the child's PATH (/usr/local/bin:/usr/bin:/bin), given
     * either bare ("ls") or by its path there ("/bin/ls") — never a same-named file elsewhere.
     * The entry "*" allows any program. An empty list allows nothing.
     * Without exec_shell the command is split into argv here (whitespace; '...' and "..."
     * quoting; backslash escapes) and unquoted shell syntax is refused with a clear reason:
     * | & ; < > ( ) $ ` newline, the globs * ? [, and ~ or # starting a word (and $ or `
     * inside "..."), since a command written for a shell would silently do something else. With
     * exec_shell it runs under /bin/sh -c and only its first word is checked against the allowlist
     * (a bare entry also allows a shell builtin of that name, e.g. "exit"): a shell runs whatever
     * follows a ';', so exec_shell means the server may run anything the agent's user may. */
    bool exec_enabled;
    const char *const *exec_allow;
    size_t n_exec_allow;
    bool exec_shell;
    uint32_t exec_timeout_ms; /* 0 -> 60000; also caps execute_command's `timeout` parameter */
    /* NULL, or "ufo-readonly": UFO's own LinuxAgent policy (linux_mcp_server.py) on top of the
     * allowlist: its read-only programs are allowed (added to exec_allow), and a command is
     * refused when it matches one of UFO's dangerous patterns (; | & ` $( ${ -exec -execdir
     * /dev/tcp/ /dev/udp/ < > CR LF NUL) or fails its argument rules (python/python3 only
     * with --version or -V; find without -exec, -execdir, -delete, -ok, -okdir, -fprint,
     * -fprint0, -fprintf, -fls). Needs exec_shell off (else create fails AIP_E_CONFIG); any
     * other name is AIP_E_CONFIG. */
    const char *exec_policy;
    /* NULL: execute_command and get_system_info accept and ignore an `api_key` parameter.
     * Set: they require it to equal this key (compared in constant time), as UFO's Linux MCP
     * server requires UFO_MCP_API_KEY, and answer UFO's "Authentication failed" otherwise.
     * Copied; never logged. */
    const char *api_key;
    /* NULL, or a cgroup v2 directory this process may create children in (a systemd unit's
     * own cgroup with Delegate=yes; see aip_executor_cgroup_detect): each command then also
     * runs in a child cgroup of its own, killed with cgroup.kill and removed when it ends.
     * Without it the per-command shepherd alone ends the command's process tree (see
     * docs/security.md). It must exist (else create fails AIP_E_CONFIG). */
    const char *exec_cgroup;
} aip_executor_config;

/* The cgroup v2 directory of this process when it can be used as exec_cgroup: cgroup v2
 * mounted, and the process's own cgroup a systemd service's (".service") delegated to it
 * (owned by its effective uid, writable, with cgroup.kill: kernel 5.14+). Writes it to buf and
 * returns 0; AIP_E_NOT_FOUND when there is none usable (then run without: the shepherd alone);
 * AIP_E_INVAL for a NULL or empty buf. */
AIP_API int aip_executor_cgroup_detect(char *buf, size_t len);

/* Creates an executor and starts its workers. cfg NULL: all defaults. No tool is registered
 * yet (see aip_executor_register_builtins). Returns 0, AIP_E_NOMEM, AIP_E_CONFIG (a read root
 * that does not exist), AIP_E_INVAL (more than 256 workers, a NULL list entry). */
AIP_API int aip_executor_create(const aip_executor_config *cfg, aip_executor **out);

/* Adds a tool (everything is copied), keyed "<tool_type>::<name>" as UFO's make_tool_key: the
 * same name may be registered once per tool type. Returns 0, AIP_E_DUPLICATE (the key is
 * taken), AIP_E_INVAL (no name, no fn, tool type out of range or AIP_TOOL_NONE, text not UTF-8,
 * a metadata field that is not a JSON object, info->size too small to hold `size`),
 * AIP_E_NOMEM, AIP_E_SHUTDOWN. aip_executor_register(e, def) is register_ex(e, def, NULL):
 * namespace AIP_TOOL_NAMESPACE_DEFAULT, input_schema {"type":"object"}, the rest null. */
AIP_API int aip_executor_register(aip_executor *e, const aip_tool_def *def);
AIP_API int aip_executor_register_ex(aip_executor *e, const aip_tool_def *def,
                                     const aip_tool_info *info);

/* Tool sets that change at run time (the agent's MCP servers use this): replaces every tool
 * of `provider` (1..AIP_EXECUTOR_MAX_PROVIDERS) with defs[0..n) (infos: NULL, or n entries
 * parallel to defs, as register_ex takes them; n 0 removes the provider's tools). All or
 * nothing: AIP_E_INVAL (a bad definition, as register_ex; provider out of range; n over
 * AIP_EXECUTOR_MAX_SET), AIP_E_DUPLICATE (one key twice in defs), AIP_E_NOMEM, AIP_E_SHUTDOWN
 * leave the provider's previous set in place.
 * A key may be held by several providers and by a tool registered with aip_executor_register:
 * it resolves to the lowest-numbered provider's tool, else the registered one; the others are
 * kept, hidden (from lookups, list_tools and features_json), until the winner's set drops the
 * key. Each new collision is logged once (warn). A call already running a replaced tool
 * finishes with it; its memory is freed when the last such call returns. Any thread. */
/* Hides (or shows again) every tool of a provider: a hidden tool is in no list_tools answer
 * nor features_json, and is found by a call only when no other tool has its key — so a
 * provider that is down can keep its set and fail its calls with its own reason. A set given
 * by aip_executor_set_tools is shown. AIP_E_INVAL for a bad provider. Any thread. */
AIP_API int aip_executor_hide_tools(aip_executor *e, unsigned provider, bool hidden);
#define AIP_EXECUTOR_MAX_PROVIDERS 1024
#define AIP_EXECUTOR_MAX_SET       4096
AIP_API int aip_executor_set_tools(aip_executor *e, unsigned provider, const aip_tool_def *defs,
                                   const aip_tool_info *infos, size_t n);

/* Registers the built-in tools (docs/ufo.md has their schemas and UFO's behaviour beside ours).
 * Namespace AIP_TOOL_NAMESPACE_DEFAULT unless said otherwise:
 *   echo          data_collection  {"text": "..."} -> the text as a JSON string (null without it)
 *   sleep         action           {"seconds": n} -> null; wakes at once on destroy; past the
 *                                  deadline it sleeps until the deadline and fails "timed out"
 *   list_tools    UFO's meta tool, registered under both tool types:
 *                 {"tool_type"?, "namespace"?, "remove_meta"? (default true)} -> a JSON list of
 *                 UFO MCPToolInfo objects {tool_key, tool_name, title, namespace, tool_type,
 *                 description, input_schema, output_schema, meta, annotations}, filtered by
 *                 the given tool_type and namespace (no match: []), meta tools (list_tools
 *                 itself) left out unless remove_meta is false
 *   read_file     data_collection  {"path": "..."} -> {"path","size","content","truncated"}:
 *       path is the resolved real path, size the file's, content at most read_max_bytes of
 *       UTF-8 text (a file that is not UTF-8 text, or holds NUL, fails "binary file")
 * With exec_enabled, UFO's LinuxAgent tools, namespace AIP_TOOL_NAMESPACE_BASH, tool type
 * action (as LinuxAgent's entry in UFO's config/ufo/mcp.yaml):
 *   execute_command {"command", "timeout"? (s, default 30, clamped to 1..120 and to
 *       exec_timeout_ms), "cwd"?, "api_key"?} -> UFO's result dict, always a *successful* call:
 *       {"success": exit_code == 0, "exit_code", "stdout", "stderr", "truncated"} when it ran
 *       (exit_code is -signal when killed), or {"success": false, "error"} when it was refused
 *       by policy, had a bad cwd or key, could not start, or timed out ("Timeout after Ns.").
 *       Only an invalid call (no string `command`, a `timeout` that is not an integer, a
 *       `cwd`/`api_key` that is not a string) is a tool failure. The child runs in its own
 *       process group with the environment PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
 *       only, stdin /dev/null, no inherited fds; at the timeout its group gets SIGTERM, then
 *       SIGKILL 2 s later. stdout and stderr each keep their last max_output bytes; bytes that
 *       are not UTF-8 become U+FFFD.
 *   get_system_info {"api_key"?} -> {"uname","uptime","memory","disk"}: the output (stripped)
 *       of the fixed argvs `uname -a`, `uptime`, `free -h`, `df -h`, run without a shell and
 *       without the allowlist (no input reaches them); "Error: ..." for one that cannot run.
 * Returns 0 or the first registration error. */
AIP_API int aip_executor_register_builtins(aip_executor *e);

/* The answer to one command batch: a ClientMessage command_results (prev_response_id = the
 * command's response_id, same session_id, status copied from the command, one Result per action
 * with its call_id), handed to done() on a worker thread; done takes ownership of *results
 * (aip_msg_clear it). done must not call aip_executor_destroy. */
typedef void (*aip_batch_done)(aip_msg *results, void *user);

/* Takes the contents of *command (a server `command` aip_msg; *command is left zeroed) and
 * queues it. Returns 0: done(…, user) will be called exactly once, on a worker thread — possibly
 * before submit returns. Fails synchronously with AIP_E_FULL (max_queued batches are waiting),
 * AIP_E_SHUTDOWN (destroy has begun), AIP_E_INVAL (not a server command, no response_id to
 * answer to, done NULL) or AIP_E_NOMEM; then done is never called and the caller still owns
 * nothing: the command is freed. */
AIP_API int aip_executor_submit(aip_executor *e, aip_msg *command, aip_batch_done done, void *user);

/* JSON array text of the tool names in registration order, each name once (for system_info.
 * supported_features); aip_free it. NULL on out of memory. */
AIP_API char *aip_executor_features_json(aip_executor *e);

/* Sets the cancel flag, wakes sleeping tools, kills running child processes, finishes queued
 * batches as failures (done is still called for each accepted batch) and joins the workers.
 * Later submits fail with AIP_E_SHUTDOWN, but the object stays valid until destroy — so an
 * owner can stop the executor, then tear down whatever still submits to it (a connection's
 * service thread), then destroy. Idempotent; not from an executor worker. */
AIP_API void aip_executor_stop(aip_executor *e);

/* aip_executor_stop, then frees. NULL is fine. Call it once, from a thread that is not an
 * executor worker, when nothing can submit any more. */
AIP_API void aip_executor_destroy(aip_executor *e);

#ifdef __cplusplus
}
#endif
#endif /* AIP_EXECUTOR_H */
