/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/fields.h — the field tables of the message model (not installed).
 *
 * Each envelope's keys in UFO's declaration order (aip/messages.py), with where the value
 * lives in aip_msg and what kind it is. The model's clear/copy/equal/validate, the JSON codec
 * in both directions and the protobuf encoder (whose schema numbers each message's fields in
 * this order: aip_proto_tables_check) are driven by these tables, so a field is described
 * exactly once.
 */
#ifndef AIP_INTERNAL_FIELDS_H
#define AIP_INTERNAL_FIELDS_H

#include "aip/message.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum aip_field_kind {
    AIP_F_TYPE,          /* aip_msg_type */
    AIP_F_STATUS,        /* aip_status */
    AIP_F_CLIENT_TYPE,   /* aip_client_type */
    AIP_F_TEXT,          /* char *, free text */
    AIP_F_ID,            /* char *, at most AIP_ID_MAX bytes */
    AIP_F_JSON_OBJECT,   /* char *, JSON object text */
    AIP_F_JSON_ANY,      /* char *, any JSON text */
    AIP_F_RESULTS,       /* action_results */
    AIP_F_COMMANDS,      /* actions */
    AIP_F_STRINGS,       /* messages */
    AIP_F_TOOL_TYPE,     /* aip_tool_type (Command) */
    AIP_F_RESULT_STATUS, /* aip_result_status (Result) */
} aip_field_kind;

typedef struct aip_field {
    const char *name; /* the JSON key */
    aip_field_kind kind;
    size_t off; /* offset in aip_msg / aip_command / aip_result */
    /* The nesting level the value sits at inside a JSON frame (1: a key of the envelope; 3: a
     * key of a Command/Result inside a list). A free-form value may nest at most
     * max_depth - at levels itself, so every encoding bounds it the same way. */
    unsigned at;
} aip_field;

extern const aip_field aip_client_fields[];
extern const size_t aip_n_client_fields;
extern const aip_field aip_server_fields[];
extern const size_t aip_n_server_fields;
extern const aip_field aip_command_fields[];
extern const size_t aip_n_command_fields;
extern const aip_field aip_result_fields[];
extern const size_t aip_n_result_fields;

/* A field held as a char * (free text, an id, JSON text). */
static inline bool aip_field_is_str(aip_field_kind k)
{
    return k == AIP_F_TEXT || k == AIP_F_ID || k == AIP_F_JSON_OBJECT || k == AIP_F_JSON_ANY;
}

static inline const aip_field *aip_envelope_fields(aip_envelope env, size_t *n)
{
    if (env == AIP_ENVELOPE_SERVER) {
        *n = aip_n_server_fields;
        return aip_server_fields;
    }
    *n = aip_n_client_fields;
    return aip_client_fields;
}

#define AIP_FIELD_PTR(obj, f)  ((char **)((char *)(obj) + (f)->off))
#define AIP_FIELD_CPTR(obj, f) ((char *const *)((const char *)(obj) + (f)->off))
#define AIP_FIELD_INT(obj, f)  ((int *)((char *)(obj) + (f)->off))
#define AIP_FIELD_CINT(obj, f) ((const int *)((const char *)(obj) + (f)->off))

/* Validates free-form JSON text (strict, depth 64). Returns 0 or AIP_E_MALFORMED/_TOO_COMPLEX
 * with the reason in why. */
int aip_json_text_check(const char *text, size_t len, aip_json_kind kind, unsigned max_depth,
                        size_t max_values, char *why, size_t why_len);

#endif /* AIP_INTERNAL_FIELDS_H */
