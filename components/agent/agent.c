/* SPDX-License-Identifier: MIT */
/*
 * The device role (see aip/agent.h).
 *
 * Thread map: the connection's hooks run on its service thread and only hand work on — a
 * command batch to the executor's queue, a device-info answer (a few /proc reads) straight
 * back; batches run on executor workers, whose done() callback sends the command_results from
 * that worker (aip_conn_send_on is safe from any thread) on the link the command came in on, so
 * an answer never crosses to a newer connection.
 *
 * Every batch is answered (docs/protocol.md §3.4), also when its Results add up to more than the
 * connection can ever queue: the answer is cut to fit (aip/internal/answer_fit.h: long strings
 * keep shorter tails, then whole Results become failures naming the limit, at worst the batch
 * is answered failed with no Result), counted and logged at warn. When the queue is full of
 * other traffic at that moment, the worker waits for room, bounded (ANSWER_WAIT_MS for the
 * whole answer, then cut to the room there is, until ANSWER_GIVE_UP_MS): waiting holds one
 * executor worker, while cutting at once would lose output that a draining queue would carry a
 * moment later; a queue that stays full that long belongs to a server that is not reading, whose
 * link the heartbeat and ping checks are about to drop. An answer that cannot be sent (the link
 * gone, the queue still full, the agent stopping) is counted (answers_unsent) and logged at warn.
 */
#include "aip/agent.h"
#include "aip/common.h"
#include "aip/device_info.h"
#include "aip/internal/answer_fit.h"
#include "aip/internal/conn_out.h"
#include "aip/redact.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_COMP "agent"

#define ANSWER_WAIT_MS    5000  /* a full queue: wait this long for room for the whole answer */
#define ANSWER_GIVE_UP_MS 15000 /* then cut it to the room there is, and give up after this */

struct aip_agent {
    aip_agent_config cfg; /* its conn strings point to the copies below */
    char *conn_strs[9];
    char *tags_json, *proc_root;
    aip_executor *exec;
    aip_mcp_host *mcp;
    aip_conn *conn;
    char *features_json;
    _Atomic uint64_t batches, batches_refused, actions, info_requests, server_tasks;
    _Atomic uint64_t answers_cut, results_dropped, answers_unsent;
    _Atomic int stopping; /* destroy has begun: answers stop waiting for room */
};

struct batch_ctx {
    aip_agent *a;
    aip_conn *conn; /* the hook's own argument: a->conn is written by the creating thread */
    uint64_t link;
};

char *aip_agent_system_info(aip_agent *a)
{
    if (!a)
        return NULL;
    aip_device_info_opts o = {0};
    o.device_id = a->cfg.conn.client_id;
    o.proc_root = a->proc_root;
    o.features_json = a->features_json;
    o.custom_metadata_json = a->tags_json;
    char *json = NULL;
    if (aip_device_info_collect(&o, &json))
        return NULL;
    return json;
}

/* ---- tools of the agent itself -------------------------------------------------------------- */

static int tool_get_device_info(const aip_tool_call *call, void *user, char **result, char **error)
{
    (void)call;
    *result = aip_agent_system_info(user);
    if (!*result) {
        *error = aip_strdup("cannot collect system info");
        return 1;
    }
    return 0;
}

/* ---- hooks (service thread) ----------------------------------------------------------------- */

/* ---- answers that fit (any thread) ---------------------------------------------------------- */

struct measure_ctx {
    aip_conn *c;
    uint64_t link;
};

static int measure_on_link(const aip_msg *m, void *user, size_t *size)
{
    const struct measure_ctx *mc = user;
    return aip_conn_encoded_size(mc->c, mc->link, m, size);
}

/* Cuts r to at most limit bytes as the link would encode it; counts and logs what was cut.
 * Returns 0, AIP_E_TOO_LARGE (r is the minimal answer and still over), or the link's error. */
static int fit_answer(aip_agent *a, aip_conn *c, uint64_t link, aip_msg *r, size_t limit,
                      const char *what)
{
    struct measure_ctx mc = {c, link};
    aip_fit_report rep;
    size_t n = r->n_action_results;
    int rc = aip_answer_fit(r, limit, measure_on_link, &mc, &rep);
    if (rep.strings_cut || rep.results_dropped || rep.minimal) {
        atomic_fetch_add(&a->answers_cut, 1);
        atomic_fetch_add(&a->results_dropped, rep.results_dropped);
        aip_log(AIP_LOG_WARN, LOG_COMP,
                "command_results for %s: %zu bytes for %zu results, over %s (%zu bytes): "
                "%zu strings cut to their last %zu bytes, %zu results dropped%s; now %zu bytes",
                r->prev_response_id ? r->prev_response_id : "?", rep.before, n, what, limit,
                rep.strings_cut, rep.tail, rep.results_dropped,
                rep.minimal ? " (the batch answered as failed)" : "", rep.after);
    }
    return rc;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends a batch's answer on its link, cut to fit the connection's outbound limit, waiting for
 * room (bounded) when the queue is full of other traffic. Executor worker thread. */
static void send_answer(aip_agent *a, aip_conn *c, uint64_t link, aip_msg *r)
{
    char rid[AIP_ID_MAX + 1];
    snprintf(rid, sizeof rid, "%s", r->prev_response_id ? r->prev_response_id : "?");
    size_t cap = aip_conn_max_frame_out(c);
    int rc = fit_answer(a, c, link, r, cap, "the outbound limit (limits.max_queued_bytes)");
    uint64_t start = aip_now_ns(NULL), last_fit = start;
    unsigned nap = 5;
    while (!rc) {
        rc = aip_conn_send_on(c, link, r);
        if (rc != AIP_E_FULL)
            break;
        uint64_t now = aip_now_ns(NULL);
        if (nap == 5) /* the first wait */
            aip_log(AIP_LOG_INFO, LOG_COMP,
                    "command_results for %s: the outbound queue is full, waiting for room", rid);
        if (now - start >= (uint64_t)ANSWER_GIVE_UP_MS * 1000000u || atomic_load(&a->stopping))
            break;
        if (now - last_fit >= (uint64_t)ANSWER_WAIT_MS * 1000000u) {
            /* still no room: cut it to the room there is now (if even the minimal answer is
             * larger, r is that answer and waits for room for it) */
            last_fit = now;
            size_t room = aip_conn_queue_room(c);
            rc = fit_answer(a, c, link, r, room < cap ? room : cap,
                            "the room left in a full outbound queue");
            if (rc && rc != AIP_E_TOO_LARGE)
                break;
            rc = 0;
            continue;
        }
        nap_ms(nap);
        nap = nap < 100 ? nap * 2 : 100;
        rc = 0;
    }
    if (rc) {
        atomic_fetch_add(&a->answers_unsent, 1);
        aip_log(AIP_LOG_WARN, LOG_COMP, "command_results for %s not sent: %s%s", rid,
                aip_strerror(rc), rc == AIP_E_FULL ? " (the outbound queue stayed full)" : "");
    }
}

static void batch_done(aip_msg *results, void *user)
{
    struct batch_ctx *bc = user;
    send_answer(bc->a, bc->conn, bc->link, results);
    aip_msg_clear(results);
    aip_free(bc);
}

/* A batch the executor cannot take: still answered, every action a failure (a device must
 * always answer, docs/protocol.md §3.4). */
static void answer_refused(aip_agent *a, aip_conn *c, const aip_msg *cmd, uint64_t link,
                           const char *why)
{
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_COMMAND_RESULTS, cmd->status);
    aip_msg_set_str(&r.prev_response_id, cmd->response_id);
    aip_msg_set_str(&r.session_id, cmd->session_id);
    r.has_action_results = true;
    for (size_t i = 0; i < cmd->n_actions; i++) {
        aip_result *res = aip_msg_add_result(&r);
        if (!res)
            break;
        res->status = AIP_RESULT_FAILURE;
        aip_msg_set_str(&res->error, why);
        aip_msg_set_str(&res->call_id, cmd->actions ? cmd->actions[i].call_id : NULL);
    }
    /* the service thread cannot wait for room: cut to what fits now, then try once */
    size_t cap = aip_conn_max_frame_out(c), room = aip_conn_queue_room(c);
    int rc = fit_answer(a, c, link, &r, room < cap ? room : cap, "the outbound room");
    if (!rc)
        rc = aip_conn_send_on(c, link, &r);
    if (rc) {
        atomic_fetch_add(&a->answers_unsent, 1);
        aip_log(AIP_LOG_WARN, LOG_COMP, "the refusal of command %s was not sent: %s",
                cmd->response_id ? cmd->response_id : "?", aip_strerror(rc));
    }
    aip_msg_clear(&r);
}

/* At debug level, one line per action: tool, call_id and its parameters with every secret
 * (an api_key, a token, a password, ... at any depth) redacted. The parameters are never
 * logged otherwise. */
static void log_actions(const aip_msg *m)
{
    if (aip_log_get_level() < AIP_LOG_DEBUG)
        return;
    for (size_t i = 0; i < m->n_actions; i++) {
        const aip_command *cmd = &m->actions[i];
        aip_buf b;
        aip_buf_init(&b, 0);
        const char *params = "null";
        if (cmd->parameters) {
            if (aip_redact_json(cmd->parameters, strlen(cmd->parameters), &b) == 0 &&
                aip_buf_nul(&b) == 0)
                params = (const char *)b.data;
            else
                params = "(not shown)";
        }
        aip_log(AIP_LOG_DEBUG, LOG_COMP,
                "command %s action %zu/%zu: %s call_id %s parameters %.600s",
                m->response_id ? m->response_id : "?", i + 1, m->n_actions,
                cmd->tool_name ? cmd->tool_name : "?", cmd->call_id ? cmd->call_id : "-", params);
        aip_buf_free(&b);
    }
}

static void on_command(aip_conn *c, aip_msg *m, uint64_t link, void *user)
{
    aip_agent *a = user;
    atomic_fetch_add(&a->batches, 1);
    atomic_fetch_add(&a->actions, m->n_actions);
    log_actions(m);
    /* keep what a refusal needs: submit consumes the command either way */
    aip_msg keep;
    aip_msg_init(&keep, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, m->status);
    keep.response_id = m->response_id ? aip_strdup(m->response_id) : NULL;
    keep.session_id = m->session_id ? aip_strdup(m->session_id) : NULL;
    if (m->n_actions && (keep.actions = aip_calloc(m->n_actions, sizeof *keep.actions))) {
        keep.n_actions = m->n_actions;
        for (size_t i = 0; i < m->n_actions; i++)
            keep.actions[i].call_id =
                m->actions[i].call_id ? aip_strdup(m->actions[i].call_id) : NULL;
    }
    struct batch_ctx *bc = aip_malloc(sizeof *bc);
    int rc = AIP_E_NOMEM;
    if (bc) {
        bc->a = a;
        bc->conn = c;
        bc->link = link;
        rc = aip_executor_submit(a->exec, m, batch_done, bc);
    }
    if (rc) {
        aip_free(bc);
        atomic_fetch_add(&a->batches_refused, 1);
        aip_log(AIP_LOG_WARN, LOG_COMP, "command %s refused: %s",
                keep.response_id ? keep.response_id : "?", aip_strerror(rc));
        answer_refused(a, c, &keep, link,
                       rc == AIP_E_FULL ? "the agent is busy: too many batches queued"
                                        : "the agent is shutting down");
    }
    aip_msg_clear(&keep);
}

static void on_device_info_request(aip_conn *c, aip_msg *m, uint64_t link, void *user)
{
    aip_agent *a = user;
    atomic_fetch_add(&a->info_requests, 1);
    aip_msg r;
    aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_DEVICE_INFO_RESPONSE, AIP_STATUS_OK);
    aip_msg_set_str(&r.prev_response_id, m->response_id);
    r.metadata = aip_agent_system_info(a);
    if (!r.metadata) {
        r.status = AIP_STATUS_ERROR;
        aip_msg_set_str(&r.error, "cannot collect system info");
    }
    aip_conn_send_on(c, link, &r);
    aip_msg_clear(&r);
}

static void on_task(aip_conn *c, aip_msg *m, uint64_t link, void *user)
{
    aip_agent *a = user;
    atomic_fetch_add(&a->server_tasks, 1);
    aip_msg r;
    if (a->cfg.disable_server_tasks) {
        aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_ERROR, AIP_STATUS_ERROR);
        aip_msg_set_str(&r.session_id, m->session_id);
        aip_msg_set_str(&r.error, "server tasks are disabled on this agent");
    } else {
        /* UFO's device: start the task the server asked for, with its text */
        aip_msg_init(&r, AIP_ENVELOPE_CLIENT, AIP_MSG_TASK, AIP_STATUS_CONTINUE);
        aip_msg_set_str(&r.request, m->user_request ? m->user_request : "");
        aip_msg_set_str(&r.session_id, m->session_id);
        aip_msg_set_str(&r.task_name, m->task_name);
    }
    aip_conn_send_on(c, link, &r);
    aip_msg_clear(&r);
}

static void forward_state(aip_conn *c, const aip_conn_event *ev, void *user)
{
    aip_agent *a = user;
    a->cfg.conn.on_state(c, ev, a->cfg.conn.user);
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

/* The header promises that config strings are copied: the connection is made later, at
 * start, so the agent keeps its own copies of the connection's strings until then. */
static int copy_conn_strings(aip_agent *a)
{
    const char **f[] = {
        &a->cfg.conn.url,      &a->cfg.conn.client_id,     &a->cfg.conn.target_id,
        &a->cfg.conn.token,    &a->cfg.conn.ca_file,       &a->cfg.conn.cert_file,
        &a->cfg.conn.key_file, &a->cfg.conn.metadata_json, &a->cfg.conn.thread_name};
    _Static_assert(sizeof f / sizeof f[0] == sizeof a->conn_strs / sizeof a->conn_strs[0],
                   "one copy per string");
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!*f[i])
            continue;
        if (!(a->conn_strs[i] = aip_strdup(*f[i])))
            return AIP_E_NOMEM;
        *f[i] = a->conn_strs[i];
    }
    return 0;
}

static void free_conn_strings(aip_agent *a)
{
    for (size_t i = 0; i < sizeof a->conn_strs / sizeof a->conn_strs[0]; i++)
        aip_free(a->conn_strs[i]);
}

int aip_agent_create(const aip_agent_config *cfg, aip_agent **out)
{
    if (!out)
        return AIP_E_INVAL;
    *out = NULL;
    if (!cfg || !cfg->conn.url || !cfg->conn.client_id)
        return AIP_E_INVAL;
    aip_agent *a = aip_calloc(1, sizeof *a);
    if (!a)
        return AIP_E_NOMEM;
    a->cfg = *cfg;
    int rc = copy_conn_strings(a);
    if (rc)
        goto fail;
    rc = AIP_E_NOMEM;
    if (cfg->tags_json && strlen(cfg->tags_json) > AIP_AGENT_MAX_TAGS) {
        aip_log(AIP_LOG_ERROR, LOG_COMP, "tags: %zu bytes, over the limit of %d",
                strlen(cfg->tags_json), AIP_AGENT_MAX_TAGS);
        rc = AIP_E_TOO_LARGE;
        goto fail;
    }
    if (cfg->tags_json && !(a->tags_json = aip_strdup(cfg->tags_json)))
        goto fail;
    if (cfg->proc_root && !(a->proc_root = aip_strdup(cfg->proc_root)))
        goto fail;
    if ((rc = aip_executor_create(&cfg->exec, &a->exec)) ||
        (rc = aip_executor_register_builtins(a->exec)))
        goto fail;
    aip_tool_def gdi = {"get_device_info", AIP_TOOL_DATA_COLLECTION, tool_get_device_info, a,
                        "this device's system information (UFO's system_info fields and more)"};
    aip_tool_info gdi_info = {.size = sizeof gdi_info,
                              .title = "Get device info",
                              .input_schema = "{\"type\":\"object\",\"properties\":{}}",
                              .annotations = "{\"readOnlyHint\":true}"};
    if ((rc = aip_executor_register_ex(a->exec, &gdi, &gdi_info)))
        goto fail;
    if (cfg->n_mcp_servers &&
        (rc = aip_mcp_host_create(a->exec, cfg->mcp_servers, cfg->n_mcp_servers, &a->mcp)))
        goto fail;
    a->cfg.mcp_servers = NULL; /* copied by the host */
    a->cfg.n_mcp_servers = 0;
    *out = a;
    return 0;
fail:
    if (a->exec)
        aip_executor_destroy(a->exec);
    free_conn_strings(a);
    aip_free(a->tags_json);
    aip_free(a->proc_root);
    aip_free(a);
    return rc;
}

int aip_agent_register_tool_ex(aip_agent *a, const aip_tool_def *def, const aip_tool_info *info)
{
    if (!a)
        return AIP_E_INVAL;
    if (a->conn)
        return AIP_E_STATE;
    return aip_executor_register_ex(a->exec, def, info);
}

int aip_agent_register_tool(aip_agent *a, const aip_tool_def *def)
{
    return aip_agent_register_tool_ex(a, def, NULL);
}

int aip_agent_start(aip_agent *a)
{
    if (!a)
        return AIP_E_INVAL;
    if (a->conn)
        return AIP_E_STATE;
    if (a->mcp && a->cfg.mcp_start_wait_ms)
        aip_mcp_host_wait_started(a->mcp, a->cfg.mcp_start_wait_ms);
    aip_free(a->features_json);
    a->features_json = aip_executor_features_json(a->exec);
    char *si = aip_agent_system_info(a);
    if (!si)
        return AIP_E_NOMEM;
    /* UFO's device registration metadata */
    char ts[40];
    aip_format_timestamp(aip_wall_us(NULL), ts, sizeof ts);
    aip_buf md;
    aip_buf_init(&md, 0);
    aip_buf_puts(&md, "{\"system_info\":");
    aip_buf_puts(&md, si);
    aip_buf_puts(&md, ",\"registration_time\":");
    aip_json_put_string(&md, ts, strlen(ts));
    aip_buf_puts(&md, ",\"platform\":\"linux\"}");
    int rc = aip_buf_nul(&md);
    aip_free(si);
    if (rc) {
        aip_buf_free(&md);
        return rc;
    }
    aip_conn_config cc = a->cfg.conn;
    cc.client_type = AIP_CLIENT_DEVICE;
    cc.metadata_json = (const char *)md.data;
    cc.on_command = on_command;
    cc.on_device_info_request = on_device_info_request;
    cc.on_task = on_task;
    /* the hooks get the agent; the embedder's state callback is forwarded with its own user */
    cc.user = a;
    cc.on_state = a->cfg.conn.on_state ? forward_state : NULL;
    rc = aip_conn_create(&cc, &a->conn);
    aip_buf_free(&md);
    return rc;
}

aip_conn *aip_agent_conn(aip_agent *a)
{
    return a ? a->conn : NULL;
}

void aip_agent_destroy(aip_agent *a, int code, const char *reason)
{
    if (!a)
        return;
    /* 0. stop the MCP servers: their calls in flight fail at once, their tools leave the
     * registry, their children end; 1. stop the executor: running batches finish (their done()
     * still finds the connection) and later submits are refused; 2. destroy the connection,
     * whose service thread may still submit until it is joined (and is then answered
     * "shutting down"); 3. free the executor, then the MCP host its tools pointed at. */
    atomic_store(&a->stopping, 1);
    aip_mcp_host_stop(a->mcp);
    aip_executor_stop(a->exec);
    aip_conn_destroy_ex(a->conn, code ? code : 1000, reason ? reason : "agent shutdown", 1500);
    aip_executor_destroy(a->exec);
    aip_mcp_host_destroy(a->mcp);
    aip_free(a->features_json);
    free_conn_strings(a);
    aip_free(a->tags_json);
    aip_free(a->proc_root);
    aip_free(a);
}

void aip_agent_get_stats(aip_agent *a, aip_agent_stats *s)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!a)
        return;
    s->batches = atomic_load(&a->batches);
    s->batches_refused = atomic_load(&a->batches_refused);
    s->actions = atomic_load(&a->actions);
    s->info_requests = atomic_load(&a->info_requests);
    s->server_tasks = atomic_load(&a->server_tasks);
    s->answers_cut = atomic_load(&a->answers_cut);
    s->results_dropped = atomic_load(&a->results_dropped);
    s->answers_unsent = atomic_load(&a->answers_unsent);
}
