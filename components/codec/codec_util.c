/* SPDX-License-Identifier: MIT */
/* Helpers shared by the JSON and protobuf codecs: the limits, the decode memory budget, the
 * decode error and the correlation ids it keeps. The two decoders (json.c, proto.c) call only
 * these, never codec.c, which dispatches to them. */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"
#include "codec_util.h"

#include <stdio.h>
#include <string.h>

static const aip_codec_limits g_default_limits = AIP_CODEC_LIMITS_DEFAULT;

void aip_codec_limits_default(aip_codec_limits *l)
{
    if (l)
        *l = g_default_limits;
}

const aip_codec_limits *aip_codec_limits_or_default(const aip_codec_limits *l)
{
    return l ? l : &g_default_limits;
}

size_t aip_codec_mem_budget(const aip_codec_limits *l, size_t frame_len)
{
    size_t factor = l->mem_factor ? l->mem_factor : 8;
    size_t b = frame_len > SIZE_MAX / factor ? SIZE_MAX : frame_len * factor;
    return b < l->mem_floor ? l->mem_floor : b;
}

int aip_codec_fail(aip_decode_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof err->reason, fmt, ap);
        va_end(ap);
        /* A reason may quote the frame's bytes, cut at a byte count: it is kept UTF-8 (each bad
         * byte becomes '?'), since it may be sent back to the peer in an answer's text. */
        char *r = err->reason;
        size_t n = strlen(r), bad;
        for (size_t i = 0; i < n && !aip_utf8_valid(r + i, n - i, &bad); i += bad + 1)
            r[i + bad] = '?';
    }
    return code;
}

void aip_codec_keep_id(char *slot, const char *s, size_t n)
{
    /* n == 0 may come with s == NULL (empty protobuf string): memchr/memcpy must not see it.
     * Not UTF-8 (a protobuf id): unusable, as the decoder would refuse it — an answer carrying
     * it could not be encoded, so the frame is answered uncorrelated instead of not at all. */
    if (n <= AIP_ID_MAX && (n == 0 || (!memchr(s, 0, n) && aip_utf8_valid(s, n, NULL)))) {
        if (n)
            memcpy(slot, s, n);
        slot[n] = 0;
    }
}
