/* SPDX-License-Identifier: MIT */
/*
 * aip/message.h — the AIP message model: both envelopes, Command and Result (docs/protocol.md §2).
 *
 * Design note
 * - One plain-data struct, aip_msg, holds either envelope; `envelope` says which, and only that
 *   envelope's fields may be set (aip_msg_validate checks it). Plain data rather than opaque,
 *   like protobuf-c's messages: 30 fields behind getters would help nobody.
 * - Ownership: every pointer in an aip_msg is owned by it and allocated with aip_malloc;
 *   aip_msg_clear() frees them all. Use aip_msg_set_str()/aip_msg_set_json() (they copy) or
 *   assign aip_malloc'd memory directly.
 * - NULL means "unset", and unset equals JSON null for the envelope's and Command/Result's own
 *   keys. Lists carry a has_ flag because an empty list is not null.
 * - Free-form values (`parameters`, `metadata`, `result`) are kept as JSON *text*, validated,
 *   never re-printed: numbers (32.0), nulls, key order and escapes survive byte for byte.
 * - Text is UTF-8 without NUL; ids are at most AIP_ID_MAX bytes.
 *
 * Threads: an aip_msg has one owner at a time; the functions here keep no global state and may
 * run on any thread.
 *
 * NULL: init/clear(NULL) do nothing; copy, set_str/set_json (NULL field), add_message and
 * validate with a NULL message return AIP_E_INVAL; add_command/add_result(NULL) return NULL;
 * equal() is true only when both are NULL; the *_parse functions return AIP_E_INVAL for a NULL
 * out (or NULL text with n > 0); why may be NULL wherever it is taken.
 */
#ifndef AIP_MESSAGE_H
#define AIP_MESSAGE_H

#include "aip/export.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AIP_ID_MAX         256 /* bytes, for every id-like field (session_id, client_id, call_id, ...) */
#define AIP_JSON_MAX_DEPTH 64 /* JSON nesting of a whole frame, free-form values included */

typedef enum aip_envelope {
    AIP_ENVELOPE_CLIENT = 0, /* ClientMessage: client -> server */
    AIP_ENVELOPE_SERVER = 1, /* ServerMessage: server -> client */
} aip_envelope;

typedef enum aip_msg_type {
    AIP_MSG_NONE = 0, /* unset / unknown */
    AIP_MSG_REGISTER,
    AIP_MSG_HEARTBEAT,
    AIP_MSG_TASK,
    AIP_MSG_COMMAND,
    AIP_MSG_COMMAND_RESULTS,
    AIP_MSG_TASK_END,
    AIP_MSG_DEVICE_INFO_REQUEST,
    AIP_MSG_DEVICE_INFO_RESPONSE,
    AIP_MSG_ERROR,
    AIP_MSG_TYPE_COUNT_
} aip_msg_type;

typedef enum aip_status {
    AIP_STATUS_NONE = 0,
    AIP_STATUS_CONTINUE,
    AIP_STATUS_COMPLETED,
    AIP_STATUS_FAILED,
    AIP_STATUS_OK,
    AIP_STATUS_ERROR,
    AIP_STATUS_COUNT_
} aip_status;

typedef enum aip_client_type {
    AIP_CLIENT_DEVICE = 0, /* UFO's default when the key is absent */
    AIP_CLIENT_CONSTELLATION = 1,
    AIP_CLIENT_TYPE_COUNT_
} aip_client_type;

typedef enum aip_tool_type {
    AIP_TOOL_NONE = 0, /* unset: invalid in a Command */
    AIP_TOOL_DATA_COLLECTION,
    AIP_TOOL_ACTION,
    AIP_TOOL_TYPE_COUNT_
} aip_tool_type;

typedef enum aip_result_status {
    AIP_RESULT_UNSET = 0, /* invalid in a Result */
    AIP_RESULT_SUCCESS,
    AIP_RESULT_FAILURE,
    AIP_RESULT_SKIPPED,
    AIP_RESULT_NONE, /* the wire value "none" */
    AIP_RESULT_STATUS_COUNT_
} aip_result_status;

/* Command: {tool_name, parameters, tool_type, call_id}. */
typedef struct aip_command {
    char *tool_name;         /* required */
    char *parameters;        /* JSON object text, or NULL */
    aip_tool_type tool_type; /* required */
    char *call_id;           /* or NULL */
    /* Set by the decoders only: why this action is unusable (the envelope was sound, so the
     * batch can still be answered, this action with a failure Result). NULL when valid. */
    char *invalid;
} aip_command;

/* Result: {status, error, result, namespace, call_id}. */
typedef struct aip_result {
    aip_result_status status; /* required */
    char *error;
    char *result; /* any JSON text, or NULL (= null) */
    char *ns;     /* wire key "namespace" */
    char *call_id;
} aip_result;

typedef struct aip_msg {
    aip_envelope envelope;
    aip_msg_type type; /* required */
    aip_status status; /* required */

    /* both envelopes */
    char *session_id;
    char *task_name;
    char *timestamp;
    char *error;

    /* ClientMessage only */
    aip_client_type client_type;
    char *client_id;
    char *target_id;
    char *request;
    aip_result *action_results;
    size_t n_action_results;
    bool has_action_results;
    char *request_id;
    char *prev_response_id;
    char *metadata; /* JSON object text, or NULL */

    /* ServerMessage only */
    char *user_request;
    char *agent_name;
    char *process_name;
    char *root_name;
    aip_command *actions;
    size_t n_actions;
    bool has_actions;
    char **messages;
    size_t n_messages;
    bool has_messages;
    char *response_id;
    char *result; /* any JSON text, or NULL */
} aip_msg;

/* Zeroes m and sets envelope, type and status. Owns nothing yet; no allocation. */
AIP_API void aip_msg_init(aip_msg *m, aip_envelope env, aip_msg_type type, aip_status status);
/* Frees everything m owns and zeroes it (envelope CLIENT, type NONE). Safe on a zeroed m. */
AIP_API void aip_msg_clear(aip_msg *m);
/* Deep copy into dst (which is overwritten, not cleared first). */
AIP_API int aip_msg_copy(aip_msg *dst, const aip_msg *src);

/* Replaces *field with a copy of value (NULL unsets). Returns 0 or AIP_E_NOMEM/AIP_E_INVAL
 * (not valid UTF-8). Works for any char * field of aip_msg, aip_command, aip_result. */
AIP_API int aip_msg_set_str(char **field, const char *value);

typedef enum aip_json_kind {
    AIP_JSON_ANY = 0,    /* any JSON value (result) */
    AIP_JSON_OBJECT = 1, /* an object (parameters, metadata) */
} aip_json_kind;
/* Replaces *field with a copy of json_text after validating it (strict RFC 8259, UTF-8, depth
 * <= 64, no NUL, no duplicate keys). NULL or "null" unsets. AIP_E_MALFORMED when invalid. */
AIP_API int aip_msg_set_json(char **field, const char *json_text, aip_json_kind kind);

/* Appends a zeroed Command/Result and returns it (NULL on ENOMEM); sets has_actions. */
AIP_API aip_command *aip_msg_add_command(aip_msg *m);
AIP_API aip_result *aip_msg_add_result(aip_msg *m);
/* Appends a copy of s to messages. */
AIP_API int aip_msg_add_message(aip_msg *m, const char *s);

/* Checks the model against docs/protocol.md §2: type valid in the envelope, enums in range, only
 * the envelope's fields set, Commands with tool_name + tool_type, Results with status, text
 * valid UTF-8, ids within AIP_ID_MAX, free-form values valid JSON of the right kind.
 * Returns 0 or AIP_E_PROTOCOL with the reason in why (if why_len > 0). */
AIP_API int aip_msg_validate(const aip_msg *m, char *why, size_t why_len);

/* Deep equality of two models (free-form JSON text compared byte for byte). */
AIP_API bool aip_msg_equal(const aip_msg *a, const aip_msg *b);

/* ---- enums <-> exact wire strings ------------------------------------------------------------
 * The *_str functions return NULL for values outside the enum. The parsers are case-sensitive
 * and take a length (the text need not be NUL-terminated); they return 0 or AIP_E_PROTOCOL. */
AIP_API const char *aip_msg_type_str(aip_msg_type t);
AIP_API const char *aip_status_str(aip_status s);
AIP_API const char *aip_client_type_str(aip_client_type t);
AIP_API const char *aip_tool_type_str(aip_tool_type t);
AIP_API const char *aip_result_status_str(aip_result_status s);
AIP_API int aip_msg_type_parse(const char *s, size_t n, aip_msg_type *out);
AIP_API int aip_status_parse(const char *s, size_t n, aip_status *out);
AIP_API int aip_client_type_parse(const char *s, size_t n, aip_client_type *out);
AIP_API int aip_tool_type_parse(const char *s, size_t n, aip_tool_type *out);
AIP_API int aip_result_status_parse(const char *s, size_t n, aip_result_status *out);
AIP_API const char *aip_envelope_str(aip_envelope e); /* "client" / "server" */

/* Is this message type part of that envelope (docs/protocol.md §2 table)? */
AIP_API bool aip_msg_type_allowed(aip_envelope env, aip_msg_type t);

#ifdef __cplusplus
}
#endif
#endif /* AIP_MESSAGE_H */
