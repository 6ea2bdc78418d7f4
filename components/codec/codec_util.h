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

/* The encoders proper; the model has already passed aip_msg_validate. */
int aip_json_encode_valid(const aip_msg *m, aip_buf *out);
int aip_proto_encode_valid(const aip_msg *m, aip_buf *out);

#endif
