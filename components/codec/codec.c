/* Encoding dispatch, limits and error helpers shared by the JSON and protobuf codecs. */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/encode.h"
#include "aip/internal/jscan.h"
#include "codec_util.h"

#include <stdio.h>
#include <string.h>

int aip_encoding_parse(const char *name, aip_encoding *out)
{
    if (!out)
        return AIP_E_INVAL;
    if (name && strcmp(name, "json") == 0)
        *out = AIP_ENCODING_JSON;
    else if (name && (strcmp(name, "proto") == 0 || strcmp(name, "protobuf") == 0))
        *out = AIP_ENCODING_PROTO;
    else
        return AIP_E_INVAL;
    return 0;
}

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

int aip_decode(aip_encoding enc, aip_envelope env, const void *frame, size_t len,
               const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err)
{
    /* the NULL checks are in the two decoders */
    if (enc == AIP_ENCODING_PROTO)
        return aip_proto_decode(env, frame, len, limits, out, err);
    return aip_json_decode(env, frame, len, limits, out, err);
}

void aip_frame_peek(aip_encoding enc, aip_envelope env, const void *prefix, size_t len,
                    aip_frame_ids *out)
{
    if (enc == AIP_ENCODING_PROTO)
        aip_proto_peek(env, prefix, len, out);
    else
        aip_json_peek(env, prefix, len, out);
}

int aip_encode_prevalidated(aip_encoding enc, const aip_msg *m, aip_buf *out)
{
    if (!m || !out)
        return AIP_E_INVAL;
    size_t mark = out->len;
    int rc =
        enc == AIP_ENCODING_PROTO ? aip_proto_encode_valid(m, out) : aip_json_encode_valid(m, out);
    if (rc)
        out->len = mark;
    return rc;
}

int aip_encode_why(aip_encoding enc, const aip_msg *m, aip_buf *out, char *why, size_t why_len)
{
    if (!why)
        why_len = 0;
    if (!m || !out) {
        if (why_len)
            snprintf(why, why_len, "no %s", m ? "output buffer" : "message");
        return AIP_E_INVAL;
    }
    char r[200];
    int rc = aip_msg_validate(m, r, sizeof r);
    if (rc) {
        if (why_len)
            snprintf(why, why_len, "%s", r);
        aip_log(AIP_LOG_DEBUG, "codec", "refusing to encode an invalid message: %s", r);
        return rc;
    }
    rc = aip_encode_prevalidated(enc, m, out);
    if (rc && why_len)
        snprintf(why, why_len, "%s", aip_strerror(rc));
    return rc;
}

int aip_encode(aip_encoding enc, const aip_msg *m, aip_buf *out)
{
    return aip_encode_why(enc, m, out, NULL, 0);
}

int aip_json_encode(const aip_msg *m, aip_buf *out)
{
    return aip_encode_why(AIP_ENCODING_JSON, m, out, NULL, 0);
}

int aip_proto_encode(const aip_msg *m, aip_buf *out)
{
    return aip_encode_why(AIP_ENCODING_PROTO, m, out, NULL, 0);
}
