/* SPDX-License-Identifier: MIT */
/* Shared helpers of the two codecs (private to components/codec). */
#ifndef AIP_CODEC_UTIL_H
#define AIP_CODEC_UTIL_H

#include "aip/codec.h"

#include <stdarg.h>

/* Records a decode failure: code and formatted reason. Returns code. */
int aip_codec_fail(aip_decode_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies an id into a correlation slot of err if it is short enough, has no NUL and is UTF-8. */
void aip_codec_keep_id(char *slot, const char *s, size_t n);

/* The effective limits (defaults when l is NULL) and the decode memory budget for a frame. */
const aip_codec_limits *aip_codec_limits_or_default(const aip_codec_limits *l);
size_t aip_codec_mem_budget(const aip_codec_limits *l, size_t frame_len);

/* The decoders proper, called by aip_decode() only: it has checked the arguments and the frame's
 * size (len <= l->max_frame; frame non-NULL; proto: len > 0), cleared err and initialised out.
 * They read the frame into out, or fail with err set. The checks on the whole message (type
 * present and allowed in env, status present) and clearing out on failure are aip_decode's. */
int aip_json_decode_frame(aip_envelope env, const char *frame, size_t len,
                          const aip_codec_limits *l, aip_msg *out, aip_decode_error *err);
int aip_proto_decode_frame(aip_envelope env, const uint8_t *frame, size_t len,
                           const aip_codec_limits *l, aip_msg *out, aip_decode_error *err);

/* The encoders proper; the model has already passed aip_msg_validate. */
int aip_json_encode_valid(const aip_msg *m, aip_buf *out);
int aip_proto_encode_valid(const aip_msg *m, aip_buf *out);

/* Proves that the protobuf schema numbers and names each message's fields as the field tables
 * list them (what aip_proto_encode_valid relies on). 0, or AIP_E_STATE with the mismatch. */
int aip_proto_tables_check(char *why, size_t why_len);

#endif
