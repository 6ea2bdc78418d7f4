/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: tasks — a constellation's (or the HTTP API's) request relayed to a device as
 * command batches, their results gathered into UFO's task_end (docs/protocol.md §3.3).
 *
 * A task is the request's actions, parsed and bounded before anything runs (see "task
 * requests" below), sent one batch at a time as a `command` whose response_id names it; the
 * device's command_results for that id (from that device, for that session: "Roles" in
 * relay.c, rules 2, 3, 5 and 6) append to the result and send the next batch, or end the task.
 * task_end goes to the requester and a copy to the device, and completes the task's record
 * (GET /api/task_result). A task lives in g_srv.tasks (by session_id) and, while a batch is
 * out, in g_srv.commands (by the command's response_id); tasks_forget() ends the tasks of a
 * session that leaves.
 *
 * Calls metrics.c, session.c, events.c and json_out.c (server.h shows the order).
 */
#include "relay.h"

#include <aip/internal/jscan.h>
#include <cjson/cJSON.h>

#include <stdio.h>
#include <string.h>

#define LOG "server"

/* One action of a task, as validated by parse_actions(). */
typedef struct action {
    char *tool_name;
    char *params; /* the parameters' JSON text as sent (numbers like 32.0 survive), or NULL */
    aip_tool_type tool_type;
} action;

struct task {
    char *session_id, *task_name, *request;
    session *requester, *device;
    action *actions;  /* every batch's actions, in order (at most --max-actions) */
    size_t *batch_at; /* batch b is actions[batch_at[b] .. batch_at[b + 1]) */
    size_t nactions, nbatches, cur;
    aip_buf results; /* the UFO-shaped task_end result being built */
    bool all_success;
    char cmd_id[40];
    uint64_t cmd_sent_ns; /* for the command round-trip histogram */
};

/* An event about a task: its session_id, then more raw JSON members. */
static void ev_task(const char *kind, const task *t, const char *more, const char *text)
{
    aip_buf x;
    aip_buf_init(&x, 0);
    aip_buf_puts(&x, "\"session_id\":");
    put_str(&x, t->session_id);
    if (more) {
        aip_buf_putc(&x, ',');
        aip_buf_puts(&x, more);
    }
    aip_buf_nul(&x);
    ev_emit(kind, t->device, x.data ? (const char *)x.data : NULL, "%s", text);
    aip_buf_free(&x);
}

void task_free(task *t)
{
    if (t->cmd_id[0])
        strmap_del(&g_srv.commands, t->cmd_id);
    strmap_del(&g_srv.tasks, t->session_id);
    for (size_t i = 0; t->actions && i < t->nactions; i++) {
        aip_free(t->actions[i].tool_name);
        aip_free(t->actions[i].params);
    }
    aip_free(t->actions);
    aip_free(t->batch_at);
    aip_buf_free(&t->results);
    aip_free(t->session_id);
    aip_free(t->task_name);
    aip_free(t->request);
    aip_free(t);
}

static void finish_task(task *t, bool completed, const char *error)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_TASK_END,
                 completed ? AIP_STATUS_COMPLETED : AIP_STATUS_FAILED);
    m.session_id = t->session_id;
    m.task_name = t->task_name;
    m.error = (char *)(uintptr_t)error;
    if (t->results.len) {
        aip_buf_putc(&t->results, ']');
        aip_buf_nul(&t->results);
        m.result = (char *)t->results.data;
    }
    if (t->requester)
        send_msg(t->requester, &m);
    if (t->device) { /* UFO sends the device a copy */
        send_msg(t->device, &m);
        if (t->device->commands_in_flight && t->cmd_id[0])
            t->device->commands_in_flight--;
    }
    aip_log(AIP_LOG_INFO, LOG, "task %s %s%s%s", t->session_id, completed ? "completed" : "failed",
            error ? ": " : "", error ? error : "");
    record_finish(t->task_name, t->session_id, completed, m.result, error);
    if (completed)
        g_srv.m.tasks_completed++;
    else
        g_srv.m.tasks_failed++;
    aip_buf x;
    aip_buf_init(&x, 0);
    aip_buf_puts(&x, "\"session_id\":");
    put_str(&x, t->session_id);
    aip_buf_puts(&x, ",\"status\":");
    put_str(&x, completed ? "completed" : "failed");
    aip_buf_puts(&x, ",\"error\":");
    put_str(&x, error);
    aip_buf_nul(&x);
    ev_emit("task_end", t->device, x.data ? (const char *)x.data : NULL, "task %s %s%s%s",
            t->session_id, completed ? "completed" : "failed", error ? ": " : "",
            error ? error : "");
    aip_buf_free(&x);
    task_free(t);
}

/* ---- task requests: {"actions": [Command...]} or {"batches": [[Command...], ...]} ------------
 *
 * Nothing is allocated by a count the client chose before that count is checked: a first scan
 * (no tree) counts the actions of each batch and refuses more than --max-actions-per-batch in
 * one batch or --max-actions in all; the scan's estimate of cJSON's memory bounds the tree;
 * the action table is then sized by the checked total, and the tree is freed before the task
 * runs. */

struct req_shape {
    bool actions_list, batches_list; /* "actions" / "batches" is an array at the root */
    size_t n_actions;                /* elements of "actions" */
    size_t n_batches, n_in_batches;  /* elements of "batches", and of its elements */
    size_t cur_b, cur_n;             /* the batch being counted, and its count so far */
    size_t big_b, big_n;             /* the first batch over --max-actions-per-batch */
};

static void shape_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    (void)n;
    struct req_shape *sh = user;
    if (!p->depth || !p->key[0])
        return;
    bool acts = aip_jscan_key_eq(p->key[0], p->key_len[0], "actions");
    bool bats = !acts && aip_jscan_key_eq(p->key[0], p->key_len[0], "batches");
    if (p->depth == 1) {
        sh->actions_list |= acts && v[0] == '[';
        sh->batches_list |= bats && v[0] == '[';
    } else if (p->depth == 2 && acts) {
        sh->n_actions++;
    } else if (p->depth == 2 && bats) {
        sh->n_batches++;
    } else if (p->depth == 3 && bats) {
        if (p->index[1] != sh->cur_b || !sh->cur_n) {
            sh->cur_b = p->index[1];
            sh->cur_n = 0;
        }
        sh->n_in_batches++;
        if (++sh->cur_n > g_srv.cfg.max_batch_actions && !sh->big_n) {
            sh->big_b = sh->cur_b;
            sh->big_n = sh->cur_n;
        }
        if (sh->big_n && sh->cur_b == sh->big_b)
            sh->big_n = sh->cur_n;
    }
}

struct param_spans {
    task *t;
    bool batches_form;
};

static void param_visit(void *user, const aip_jscan_path *p, const char *v, size_t n)
{
    struct param_spans *ps = user;
    task *t = ps->t;
    size_t b, i;
    if (!ps->batches_form && p->depth == 3 && p->key[0] && !p->key[1] && p->key[2] &&
        aip_jscan_key_eq(p->key[0], p->key_len[0], "actions") &&
        aip_jscan_key_eq(p->key[2], p->key_len[2], "parameters")) {
        b = 0;
        i = p->index[1];
    } else if (ps->batches_form && p->depth == 4 && p->key[0] && !p->key[1] && !p->key[2] &&
               p->key[3] && aip_jscan_key_eq(p->key[0], p->key_len[0], "batches") &&
               aip_jscan_key_eq(p->key[3], p->key_len[3], "parameters")) {
        b = p->index[1];
        i = p->index[2];
    } else {
        return;
    }
    if (b >= t->nbatches || i >= t->batch_at[b + 1] - t->batch_at[b])
        return;
    action *a = &t->actions[t->batch_at[b] + i];
    if (!a->params && !(n == 4 && memcmp(v, "null", 4) == 0))
        a->params = aip_strndup(v, n);
}

/* Parses t->request into t->actions. On false, why holds the reason (always written). */
static const char no_planner[] =
    "aip-test-server has no planner: send the request as JSON actions, "
    "{\"actions\": [{\"tool_name\": ..., \"parameters\": {...}}]} or "
    "{\"batches\": [[...], [...]]}";

/* 1. the shape and the counts, without building anything (the scan's memory does not grow
 * with the number of values, and the text is at most --max-frame) */
static bool check_shape(const char *req, size_t rl, struct req_shape *sh, char *why, size_t wl)
{
    size_t maxa = g_srv.cfg.max_actions, maxb = g_srv.cfg.max_batch_actions;
    memset(sh, 0, sizeof *sh);
    aip_jscan sc = {0};
    sc.max_depth = 64;
    sc.visit = shape_visit;
    sc.user = sh;
    sc.visit_depth = 3;
    int rc = aip_jscan_run(&sc, req, rl);
    if (rc || sc.root != '{' || (!sh->actions_list && !sh->batches_list)) {
        if (rc && rc != AIP_E_MALFORMED)
            snprintf(why, wl, "the request is JSON the server will not parse: %s", sc.why);
        else
            snprintf(why, wl, "%s", no_planner);
        return false;
    }
    bool batches_form = !sh->actions_list;
    size_t total = batches_form ? sh->n_in_batches : sh->n_actions;
    if (!batches_form && sh->n_actions > maxb) {
        sh->big_b = 0;
        sh->big_n = sh->n_actions;
    }
    if (sh->big_n) {
        snprintf(why, wl,
                 "batch %zu has %zu actions; aip-test-server takes at most %zu per batch "
                 "(--max-actions-per-batch)",
                 sh->big_b, sh->big_n, maxb);
        return false;
    }
    if (total > maxa || (batches_form && sh->n_batches > maxa)) {
        snprintf(why, wl,
                 "the task has %zu actions in %zu batch(es); aip-test-server takes at most %zu "
                 "in one task (--max-actions)",
                 total, batches_form ? sh->n_batches : (size_t)1, maxa);
        return false;
    }
    return true;
}

/* 2a. the tree, its memory bounded as the codec bounds a frame's (8x its size; the floor fits
 * --max-actions small actions); NULL when refused (why says so) or out of memory */
static cJSON *parse_tree(const char *req, size_t rl, char *why, size_t wl)
{
    aip_jscan cost = {0};
    cost.max_depth = 64;
    cost.max_values = g_srv.limits.max_values;
    cost.mem_budget = rl * 8 > (4u << 20) ? rl * 8 : (4u << 20);
    if (aip_jscan_run(&cost, req, rl)) {
        snprintf(why, wl, "the request is JSON the server will not parse: %s", cost.why);
        return NULL;
    }
    return cJSON_ParseWithLength(req, rl); /* the scans accepted it: only memory can fail */
}

/* 2b. the tree validated action by action */
static bool check_actions(const cJSON *list, bool batches_form, char *why, size_t wl)
{
    size_t bi = 0;
    for (const cJSON *b = batches_form ? list->child : list; b;
         b = batches_form ? b->next : NULL, bi++) {
        if (!cJSON_IsArray(b) || !b->child) {
            snprintf(why, wl, "batch %zu is not a non-empty list of actions", bi);
            return false;
        }
        size_t ai = 0;
        for (const cJSON *a = b->child; a; a = a->next, ai++) {
            cJSON *tn = cJSON_GetObjectItemCaseSensitive(a, "tool_name");
            cJSON *tt = cJSON_GetObjectItemCaseSensitive(a, "tool_type");
            cJSON *pa = cJSON_GetObjectItemCaseSensitive(a, "parameters");
            aip_tool_type ty;
            if (!cJSON_IsObject(a) || !cJSON_IsString(tn) || !tn->valuestring[0] ||
                (tt && !cJSON_IsNull(tt) &&
                 (!cJSON_IsString(tt) ||
                  aip_tool_type_parse(tt->valuestring, strlen(tt->valuestring), &ty))) ||
                (pa && !cJSON_IsNull(pa) && !cJSON_IsObject(pa))) {
                snprintf(why, wl,
                         "batch %zu, action %zu: needs a string tool_name, an optional "
                         "tool_type (action|data_collection) and object parameters",
                         bi, ai);
                return false;
            }
        }
    }
    return true;
}

/* 3. the table, sized by the checked counts (nb <= total <= --max-actions) */
static bool fill_actions(task *t, const cJSON *list, bool batches_form, size_t total, size_t nb,
                         char *why, size_t wl)
{
    if (!(t->actions = aip_calloc(total, sizeof *t->actions)) ||
        !(t->batch_at = aip_calloc(nb + 1, sizeof *t->batch_at)))
        return false;
    t->nactions = total;
    t->nbatches = nb;
    size_t bi = 0, n = 0;
    for (const cJSON *b = batches_form ? list->child : list; b; b = batches_form ? b->next : NULL) {
        t->batch_at[bi++] = n;
        for (const cJSON *a = b->child; a && n < total; a = a->next, n++) {
            cJSON *tt = cJSON_GetObjectItemCaseSensitive(a, "tool_type");
            action *x = &t->actions[n];
            x->tool_type = AIP_TOOL_ACTION;
            if (cJSON_IsString(tt))
                aip_tool_type_parse(tt->valuestring, strlen(tt->valuestring), &x->tool_type);
            if (!(x->tool_name =
                      aip_strdup(cJSON_GetObjectItemCaseSensitive(a, "tool_name")->valuestring)))
                return false;
        }
    }
    t->batch_at[nb] = n;
    if (n != total || bi != nb) {
        snprintf(why, wl, "internal error: counted %zu actions in %zu batches, found %zu in %zu",
                 total, nb, n, bi);
        return false;
    }
    return true;
}

/* 4. parameters as their original text */
static bool take_params(task *t, const char *req, size_t rl, bool batches_form)
{
    struct param_spans ps = {t, batches_form};
    aip_jscan s2 = {0};
    s2.visit = param_visit;
    s2.user = &ps;
    s2.visit_depth = 4;
    s2.max_depth = 64;
    return aip_jscan_run(&s2, req, rl) == 0;
}

bool parse_actions(task *t, char *why, size_t wl)
{
    snprintf(why, wl, "out of memory");
    const char *req = t->request ? t->request : "";
    size_t rl = strlen(req);
    struct req_shape sh;
    if (!check_shape(req, rl, &sh, why, wl))
        return false;
    bool batches_form = !sh.actions_list;
    size_t total = batches_form ? sh.n_in_batches : sh.n_actions;
    size_t nb = batches_form ? sh.n_batches : 1;
    cJSON *root = parse_tree(req, rl, why, wl);
    if (!root)
        return false;
    const cJSON *list =
        cJSON_GetObjectItemCaseSensitive(root, batches_form ? "batches" : "actions");
    bool ok = false;
    if (!total)
        snprintf(why, wl, "the task has no actions");
    else
        ok = check_actions(list, batches_form, why, wl) &&
             fill_actions(t, list, batches_form, total, nb, why, wl) &&
             take_params(t, req, rl, batches_form);
    cJSON_Delete(root);
    return ok;
}

void send_batch(task *t)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_SERVER, AIP_MSG_COMMAND, AIP_STATUS_CONTINUE);
    aip_msg_set_str(&m.session_id, t->session_id);
    aip_msg_set_str(&m.task_name, t->task_name);
    new_id(t->cmd_id);
    aip_msg_set_str(&m.response_id, t->cmd_id);
    m.has_actions = true;
    size_t i = 0, from = t->batch_at[t->cur], to = t->batch_at[t->cur + 1];
    for (; from + i < to; i++) {
        const action *a = &t->actions[from + i];
        aip_command *c = aip_msg_add_command(&m);
        if (!c)
            break;
        c->tool_type = a->tool_type;
        aip_msg_set_str(&c->tool_name, a->tool_name);
        if (a->params)
            aip_msg_set_json(&c->parameters, a->params, AIP_JSON_OBJECT);
        char cid[40];
        new_id(cid);
        aip_msg_set_str(&c->call_id, cid);
    }
    strmap_put(&g_srv.commands, t->cmd_id, t);
    t->device->commands_in_flight++;
    t->cmd_sent_ns = aip_now_ns(NULL);
    send_msg(t->device, &m);
    aip_msg_clear(&m);
    char more[120], text[120];
    snprintf(more, sizeof more, "\"response_id\":\"%s\",\"actions\":%zu", t->cmd_id, i);
    snprintf(text, sizeof text, "command batch %zu/%zu (%zu action(s)) sent", t->cur + 1,
             t->nbatches, i);
    ev_task("command", t, more, text);
}

void handle_results(session *s, aip_msg *m)
{
    if (s->type != AIP_CLIENT_DEVICE) { /* Roles, rule 5 */
        reject_request(s, m, REJECT_UNAUTHORIZED, "command_results are only for device clients");
        return;
    }
    task *t = m->prev_response_id ? strmap_get(&g_srv.commands, m->prev_response_id) : NULL;
    if (t && t->device != s) { /* Roles, rule 5 */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "command_results for command '%.64s', which was sent to another device",
                       m->prev_response_id);
        return;
    }
    if (t && m->session_id && strcmp(m->session_id, t->session_id) != 0) {
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "command_results for command '%.64s' name session '%.100s'; the "
                       "command belongs to another session",
                       m->prev_response_id, m->session_id);
        return;
    }
    if (!t) { /* late (its task ended) or made up: nothing to do */
        aip_log(AIP_LOG_INFO, LOG, "command_results from %s for no running command (%s)",
                s->client_id, m->prev_response_id ? m->prev_response_id : "no prev_response_id");
        return;
    }
    metrics_rtt((int64_t)((aip_now_ns(NULL) - t->cmd_sent_ns) / 1000));
    char more[80];
    snprintf(more, sizeof more, "\"response_id\":\"%.40s\"", t->cmd_id);
    ev_task("command_results", t, more, "command results received");
    strmap_del(&g_srv.commands, t->cmd_id);
    t->cmd_id[0] = 0;
    if (s->commands_in_flight)
        s->commands_in_flight--;
    size_t want = t->batch_at[t->cur + 1] - t->batch_at[t->cur];
    aip_buf_putc(&t->results, t->results.len ? ',' : '[');
    aip_buf_puts(&t->results, "{\"request\":");
    aip_json_put_string(&t->results, t->request, strlen(t->request));
    aip_buf_puts(&t->results, ",\"result\":[");
    for (size_t i = 0; i < m->n_action_results; i++) {
        if (i)
            aip_buf_putc(&t->results, ',');
        put_result(&t->results, &m->action_results[i]);
        if (m->action_results[i].status != AIP_RESULT_SUCCESS)
            t->all_success = false;
    }
    aip_buf_puts(&t->results, "]}");
    if (t->results.len > g_srv.cfg.max_frame) { /* bounded: it goes out as one task_end */
        char why[160];
        snprintf(why, sizeof why, "the task's results passed %zu bytes (--max-frame)",
                 g_srv.cfg.max_frame);
        aip_buf_free(&t->results);
        finish_task(t, false, why);
        return;
    }
    if (m->n_action_results != want)
        t->all_success = false;
    if (!t->all_success) {
        finish_task(t, false,
                    m->n_action_results != want ? "the device answered a different "
                                                  "number of results than actions"
                                                : "a command failed");
        return;
    }
    if (++t->cur < t->nbatches) {
        send_batch(t);
        return;
    }
    finish_task(t, true, NULL);
}

/* A new task from requester (NULL: the HTTP API) to dev, registered by session_id. */
task *task_new(session *requester, session *dev, const char *sid, const char *task_name,
               const char *request)
{
    task *t = aip_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->session_id = aip_strdup(sid);
    t->task_name = task_name ? aip_strdup(task_name) : NULL;
    t->request = aip_strdup(request ? request : "");
    t->requester = requester;
    t->device = dev;
    t->all_success = true;
    aip_buf_init(&t->results, 0);
    if (!t->session_id || !t->request || (task_name && !t->task_name) ||
        strmap_put(&g_srv.tasks, t->session_id, t)) {
        aip_free(t->session_id);
        aip_free(t->task_name);
        aip_free(t->request);
        aip_free(t);
        return NULL;
    }
    return t;
}

void task_announce(task *t, const char *from)
{
    aip_log(AIP_LOG_INFO, LOG, "task %s from %s to %s: %zu batch(es)", t->session_id, from,
            t->device->client_id, t->nbatches);
    char text[300];
    snprintf(text, sizeof text, "task from %.100s: %zu batch(es)", from, t->nbatches);
    ev_task("task", t, NULL, text);
}

void handle_task(session *s, aip_msg *m)
{
    const char *target = m->target_id;
    if (!target && s->type == AIP_CLIENT_CONSTELLATION) {
        reject_request(s, m, REJECT_ERROR, "Constellation task requests require target_id");
        return;
    }
    if (!target) {
        reject_request(s, m, REJECT_ERROR,
                       "aip-test-server has no planner for device-initiated tasks");
        return;
    }
    if (s->type == AIP_CLIENT_DEVICE && strcmp(target, s->client_id) != 0) { /* Roles, rule 2 */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "a device's task runs on the device itself: target_id '%.100s' is not "
                       "this device ('%.100s')",
                       target, s->client_id);
        return;
    }
    char sid[AIP_ID_MAX + 1];
    if (m->session_id) {
        snprintf(sid, sizeof sid, "%s", m->session_id);
    } else {
        char u[40];
        new_id(u);
        snprintf(sid, sizeof sid, "%.100s@%s", m->task_name ? m->task_name : "task", u);
    }
    task *old = strmap_get(&g_srv.tasks, sid);
    if (old && old->requester == s) {
        reject_request(s, m, REJECT_ERROR, "session_id '%s' is already running", sid);
        return;
    }
    if (old) { /* Roles, rule 3 */
        reject_request(s, m, REJECT_UNAUTHORIZED, "session_id '%s' is owned by another client",
                       sid);
        return;
    }
    session *dev = strmap_get(&g_srv.clients, target);
    if (!dev || dev->type != AIP_CLIENT_DEVICE) {
        reject_request(s, m, REJECT_ERROR, NOT_CONNECTED, target);
        return;
    }
    send_simple(s, AIP_MSG_HEARTBEAT, AIP_STATUS_OK, sid, NULL, NULL); /* the ack */
    task *t = task_new(s, dev, sid, m->task_name, m->request);
    if (!t) {
        reject_request(s, m, REJECT_ERROR, "out of memory");
        return;
    }
    record_open(t->task_name, t->session_id, dev->client_id);
    char why[300];
    if (!parse_actions(t, why, sizeof why)) {
        g_srv.m.bad_tasks++;
        finish_task(t, false, why);
        return;
    }
    task_announce(t, s->client_id);
    send_batch(t);
}

void handle_client_task_end(session *s, aip_msg *m)
{
    task *t = m->session_id ? strmap_get(&g_srv.tasks, m->session_id) : NULL;
    if (!t || t->device != s) { /* Roles, rule 6 */
        reject_request(s, m, REJECT_UNAUTHORIZED,
                       "task_end for session '%.100s' refused: no task of that session runs "
                       "on this client",
                       m->session_id ? m->session_id : "(none)");
        return;
    }
    aip_log(AIP_LOG_DEBUG, LOG, "task_end from %s for its session %s (the server ends tasks)",
            s->client_id, t->session_id);
}

void tasks_forget(session *s)
{
    const char *k;
    void *v;
    for (size_t i = 0; strmap_next(&g_srv.tasks, &i, &k, &v);) {
        task *t = v;
        if (t->device == s) {
            t->device = NULL;
            finish_task(t, false, "Task was cancelled because target device disconnected");
        } else if (t->requester == s) {
            aip_log(AIP_LOG_INFO, LOG, "task %s cancelled: its requester left", t->session_id);
            task_free(t);
        }
    }
}
