/* SPDX-License-Identifier: MIT */
/* Encoding without re-validation (internal: the library, aip-test-server and tests). */
#ifndef AIP_INTERNAL_ENCODE_H
#define AIP_INTERNAL_ENCODE_H

#include "aip/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Encodes m as aip_encode() does, but without aip_msg_validate(): for a message every field of
 * which its builder took from values already checked — fields of a decoded frame, a JSON text
 * a decoder validated and kept, a timestamp of aip_format_timestamp(). Checking such a message
 * again costs as much as decoding it (a large cached `result` is scanned whole). A field that
 * was not checked gives an invalid frame: never use this for a caller's message. */
int aip_encode_prevalidated(aip_encoding enc, const aip_msg *m, aip_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* AIP_INTERNAL_ENCODE_H */
