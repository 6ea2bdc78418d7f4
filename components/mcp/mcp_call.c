/* SPDX-License-Identifier: MIT */
/*
 * An MCP tool call (mcp_tool_call: the aip_tool_fn of every MCP tool in the executor).
 *
 * A tool call runs on the executor worker of its action (mcp_tool_call): it builds the
 * tools/call request, hands it to the transport (stdio: queued for the server thread, the
 * worker waits on its own condition variable; HTTP: the worker POSTs itself) and maps the
 * CallToolResult to the executor's success/failure as UFO's device does (docs/ufo.md).
 * Both transports give back the reply (a JSON-RPC response) or why there is none; a timeout
 * names the limit that ran out (the server's timeout_s or the action's deadline).
 */
#include "aip/codec.h"
#include "aip/mcp.h"
#include "mcp_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Text of the `content` items of type text, joined with newlines; NULL if there is none. */
static char *joined_text(const cJSON *content, bool first_only)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    bool any = false;
    const cJSON *c;
    cJSON_ArrayForEach(c, content)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
            !cJSON_IsString(text))
            continue;
        if ((any && aip_buf_putc(&b, '\n')) || aip_buf_puts(&b, text->valuestring)) {
            aip_buf_free(&b);
            return NULL;
        }
        any = true;
        if (first_only)
            break;
    }
    if (!any || aip_buf_nul(&b)) {
        aip_buf_free(&b);
        return NULL;
    }
    return (char *)aip_buf_steal(&b);
}

static char *json_string_text(const char *s)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    if (aip_json_put_string(&b, s, strlen(s)) || aip_buf_nul(&b)) {
        aip_buf_free(&b);
        return NULL;
    }
    return (char *)aip_buf_steal(&b);
}

static int fail_with(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_with(char **error, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *error = aip_strdup(buf);
    return -1;
}

/* The CallToolResult (or JSON-RPC error) as the executor's success/failure, as UFO's device
 * builds its Result (ufo/client/computer.py; docs/ufo.md). */
static int map_call_result(const mcp_server *s, const char *tool, const cJSON *reply, char **result,
                           char **error)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    if (err) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
        return fail_with(error, "MCP error %d: %s", cJSON_IsNumber(c) ? c->valueint : 0,
                         cJSON_IsString(m) ? m->valuestring : "(no message)");
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (!cJSON_IsObject(r))
        return fail_with(error,
                         "MCP server of namespace '%s' answered tools/call '%s' without a "
                         "result object",
                         s->ns, tool);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(r, "content");
    if (content && !cJSON_IsArray(content))
        return fail_with(error,
                         "MCP server of namespace '%s': tools/call '%s': content is not "
                         "a list",
                         s->ns, tool);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "isError"))) {
        char *text = joined_text(content, true);
        if (text) {
            *error = text;
            return -1;
        }
        return fail_with(error, "tool '%s' reported an error without a text", tool);
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(r, "structuredContent");
    if (sc && !cJSON_IsNull(sc))
        *result = mcp_print_compact((cJSON *)sc);
    else if (content && cJSON_GetArraySize(content) > 0) {
        char *text = joined_text(content, false);
        *result = text ? json_string_text(text) : mcp_print_compact((cJSON *)content);
        aip_free(text);
    } else {
        return 0; /* nothing: null */
    }
    if (!*result)
        return fail_with(error, "out of memory");
    return 0;
}

int mcp_tool_call(const aip_tool_call *call, void *user, char **result, char **error)
{
    mcp_server *s = user;
    uint64_t now = aip_now_ns(NULL);
    uint64_t deadline = now + (uint64_t)s->timeout_ms * 1000000u;
    bool own_limit = deadline < call->deadline_ns;
    if (!own_limit)
        deadline = call->deadline_ns;
    cJSON *params = cJSON_CreateObject();
    cJSON *args = call->parameters ? cJSON_Parse(call->parameters) : cJSON_CreateObject();
    if (!params || !cJSON_IsObject(args)) {
        cJSON_Delete(params);
        cJSON_Delete(args);
        return fail_with(error, "parameters must be a JSON object");
    }
    cJSON_AddStringToObject(params, "name", call->tool_name);
    cJSON_AddItemToObject(params, "arguments", args);
    cJSON *reply = NULL;
    char why[300] = "";
    int rc = s->http ? mcp_http_request(s, "tools/call", params, deadline, call->cancelled, &reply,
                                        why, sizeof why)
                     : mcp_stdio_request(s, "tools/call", params, deadline, call->cancelled, &reply,
                                         why, sizeof why);
    cJSON_Delete(params);
    if (rc) {
        if (strcmp(why, "timeout") == 0)
            return fail_with(error, "Tool %s execution timed out after %llu ms%s", call->tool_name,
                             (unsigned long long)((deadline - now) / 1000000u),
                             own_limit ? " (the MCP server's timeout_s)" : "");
        return fail_with(error, "Tool %s execution failed: MCP server of namespace '%s': %s",
                         call->tool_name, s->ns, why);
    }
    rc = map_call_result(s, call->tool_name, reply, result, error);
    cJSON_Delete(reply);
    return rc;
}
