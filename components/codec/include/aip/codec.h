/* SPDX-License-Identifier: MIT */
/*
 * aip/codec.h — JSON (cJSON) and protobuf (protobuf-c) encode/decode of the message model.
 *
 * Design note (hiredis-style: fed bytes, returns whole messages, knows nothing of sockets)
 * - Decoders are the first line of defence against hostile input. They are strict and bounded:
 *   a frame over `max_frame` is refused before it is looked at; JSON is pre-scanned (strict RFC
 *   8259 grammar, UTF-8, no \u0000, depth, value count, estimated parse memory) before cJSON
 *   builds a tree, so parse memory stays a small multiple of the frame; protobuf unpacks
 *   through an allocator with a byte budget. Nothing recursive is on the wire schema.
 * - A decode error names the problem in `reason` and carries what correlation could still be
 *   read (type, session_id, request_id, response_id), so a broken `command` can be answered.
 * - A `command` whose envelope is sound but one of whose actions is malformed decodes
 *   successfully, with that action's `invalid` set to the reason (and its call_id kept when
 *   that member is usable). In JSON this includes defects that are valid JSON to lenient
 *   producers (Python's json.dumps) but that we refuse: \u0000 or an unpaired surrogate in a
 *   string, nesting deeper than max_depth, a duplicate key — and raw control characters or
 *   invalid UTF-8 — anywhere inside one element of the top-level `actions` list. Only the
 *   grammar (where that element ends) and the envelope must be sound; anything else makes
 *   the whole frame fail, and its decode error then carries the type and ids of the members
 *   read before the failure (aip_json_peek), so a command whose response_id came first can
 *   still be answered.
 * - Encoders validate the model first (aip_msg_validate) and never emit a frame a peer would
 *   reject. JSON keys come in UFO's declaration order, unset keys omitted, free-form values
 *   copied verbatim.
 *
 * Threads: no shared state; any thread, concurrently.
 *
 * NULL: a NULL message, output buffer, output message or encoding out is AIP_E_INVAL (a
 * decoder also sets err->code and reason); a NULL frame or text is AIP_E_INVAL unless its
 * length is 0; limits, err and why may be NULL (defaults / not reported).
 */
#ifndef AIP_CODEC_H
#define AIP_CODEC_H

#include "aip/export.h"

#include "aip/buf.h"
#include "aip/message.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum aip_encoding {
    AIP_ENCODING_JSON = 0,  /* text frames */
    AIP_ENCODING_PROTO = 1, /* binary frames, subprotocol "aip.v1.proto" [ext] */
} aip_encoding;

#define AIP_PROTO_SUBPROTOCOL "aip.v1.proto"

/* "json" or "proto" (also "protobuf") -> the encoding; 0 or AIP_E_INVAL. */
AIP_API int aip_encoding_parse(const char *name, aip_encoding *out);

typedef struct aip_codec_limits {
    size_t max_frame;    /* bytes; frames above are refused (AIP_E_TOO_LARGE) */
    unsigned max_depth;  /* JSON nesting depth (AIP_E_TOO_COMPLEX) */
    size_t max_values;   /* JSON values in one frame (AIP_E_TOO_COMPLEX) */
    unsigned mem_factor; /* decode memory budget = max(mem_floor, mem_factor * frame bytes) */
    size_t mem_floor;
} aip_codec_limits;

#define AIP_CODEC_DEFAULT_MAX_FRAME (1u << 20) /* the agent's inbound default: 1 MiB */
#define AIP_CODEC_LIMITS_DEFAULT                               \
    {                                                          \
        AIP_CODEC_DEFAULT_MAX_FRAME, 64, 1u << 20, 8, 1u << 20 \
    }

/* Fills l with the defaults above. */
AIP_API void aip_codec_limits_default(aip_codec_limits *l);

typedef struct aip_decode_error {
    int code;          /* AIP_E_MALFORMED, _PROTOCOL, _TOO_LARGE, _TOO_COMPLEX, _NOMEM */
    char reason[200];  /* e.g. `missing required field "status"` */
    aip_msg_type type; /* AIP_MSG_NONE when unreadable */
    char session_id[AIP_ID_MAX + 1]; /* "" when unreadable */
    char request_id[AIP_ID_MAX + 1];
    char response_id[AIP_ID_MAX + 1];
} aip_decode_error;

/* Decodes one frame into out (which must be zeroed or cleared; on failure it is left cleared).
 * env says which envelope the frame must be. limits may be NULL (defaults); err may be NULL.
 * Returns 0 or the negative code also stored in err->code. */
AIP_API int aip_decode(aip_encoding enc, aip_envelope env, const void *frame, size_t len,
                       const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err);
AIP_API int aip_json_decode(aip_envelope env, const char *frame, size_t len,
                            const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err);
AIP_API int aip_proto_decode(aip_envelope env, const uint8_t *frame, size_t len,
                             const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err);

/* A frame's type and correlation ids, as far as they can be read from its first bytes. */
typedef struct aip_frame_ids {
    aip_msg_type type; /* AIP_MSG_NONE when unreadable (or not a type of that envelope) */
    char session_id[AIP_ID_MAX + 1]; /* "" when unreadable */
    char request_id[AIP_ID_MAX + 1];
    char response_id[AIP_ID_MAX + 1];
    char prev_response_id[AIP_ID_MAX + 1];
} aip_frame_ids;

/* Reads the type and ids of a frame from a prefix of it — e.g. the first kilobytes of a
 * message too large to accept, so the request it answers can still be failed at once.
 * Tolerant and bounded: the prefix may stop anywhere (mid-string, mid-field); it never
 * fails, allocates at most the JSON scanner's key stack, and reads each byte at most once.
 * - JSON: the members of the top-level object that are complete within the prefix (the
 *   strict scanner of aip_json_validate, stopping where the prefix ends). UFO's key order
 *   puts type, status, error, session_id, ... response_id before result (server messages)
 *   and session_id before action_results (client messages).
 * - protobuf: the top-level fields before the first one that runs past the prefix.
 *   protobuf-c writes fields in field-number order; ServerMessage has session_id (10) and
 *   response_id (13) before result_json (14), but after actions (7), messages (8) and
 *   error (9); ClientMessage has session_id (4) before action_results (9), request_id (11)
 *   and prev_response_id (12) after it.
 * Ids read: session_id, and response_id (server) or request_id and prev_response_id
 * (client). A repeated key: JSON (where the decoder refuses duplicates) keeps the first,
 * protobuf the last, as protobuf does. An id over AIP_ID_MAX bytes, with a NUL, not UTF-8,
 * or (JSON) not a string is left empty. So a peek of a whole valid frame reads what aip_decode()
 * would, and a peek of a prefix of a frame our encoders wrote reads each id whole or not at all. */
AIP_API void aip_frame_peek(aip_encoding enc, aip_envelope env, const void *prefix, size_t len,
                            aip_frame_ids *out);
AIP_API void aip_json_peek(aip_envelope env, const char *prefix, size_t len, aip_frame_ids *out);
AIP_API void aip_proto_peek(aip_envelope env, const uint8_t *prefix, size_t len,
                            aip_frame_ids *out);

/* Appends the encoded frame to out (out->headroom is honoured, out->limit enforced).
 * Returns 0, AIP_E_PROTOCOL (model invalid; reason logged at debug), AIP_E_NOMEM, or
 * AIP_E_TOO_LARGE. On failure out->len is restored. */
AIP_API int aip_encode(aip_encoding enc, const aip_msg *m, aip_buf *out);
AIP_API int aip_json_encode(const aip_msg *m, aip_buf *out);
AIP_API int aip_proto_encode(const aip_msg *m, aip_buf *out);
/* As aip_encode, with the validation failure's reason in why. */
AIP_API int aip_encode_why(aip_encoding enc, const aip_msg *m, aip_buf *out, char *why,
                           size_t why_len);

/* ---- JSON text utilities --------------------------------------------------------------------- */

/* Strictly validates one JSON value (RFC 8259, UTF-8, no \u0000, no duplicate keys) within
 * limits (NULL = defaults). kind AIP_JSON_OBJECT also requires an object.
 * Returns 0 or an AIP_E_* code with the reason in why. */
AIP_API int aip_json_validate(const char *text, size_t len, aip_json_kind kind,
                              const aip_codec_limits *limits, char *why, size_t why_len);

/* Re-indents valid JSON text with `indent` spaces per level, leaving every token (numbers,
 * strings, escapes) byte for byte as it was. The input must be valid (aip_json_validate). */
AIP_API int aip_json_pretty(const char *text, size_t len, unsigned indent, aip_buf *out);

/* Appends s (n bytes of UTF-8) as a quoted, escaped JSON string. */
AIP_API int aip_json_put_string(aip_buf *out, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* AIP_CODEC_H */
