/* SPDX-License-Identifier: MIT */
/* The codec's entry points: encoding names, decode (the checks both encodings share, around
 * the two decoders) and encode (validation, then the encoder proper). json.c and proto.c are
 * leaves: they call codec_util.c, never this file. */
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

int aip_decode(aip_encoding enc, aip_envelope env, const void *frame, size_t len,
               const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err)
{
    const aip_codec_limits *l = aip_codec_limits_or_default(limits);
    if (err)
        memset(err, 0, sizeof *err);
    if (!out || (!frame && len))
        return aip_codec_fail(err, AIP_E_INVAL, "no %s", out ? "frame" : "output message");
    aip_msg_init(out, env, AIP_MSG_NONE, AIP_STATUS_NONE);
    if (!frame)
        frame = "";
    if (enc == AIP_ENCODING_PROTO && len == 0) /* protobuf-c takes it as an all-default message */
        return aip_codec_fail(err, AIP_E_MALFORMED, "empty frame");
    if (len > l->max_frame)
        return aip_codec_fail(err, AIP_E_TOO_LARGE, "frame of %zu bytes exceeds the limit of %zu",
                              len, l->max_frame);
    int rc = enc == AIP_ENCODING_PROTO ? aip_proto_decode_frame(env, frame, len, l, out, err)
                                       : aip_json_decode_frame(env, frame, len, l, out, err);
    /* what both encodings require of the whole message, once the frame is read */
    if (!rc && out->type == AIP_MSG_NONE)
        rc = aip_codec_fail(err, AIP_E_PROTOCOL, "missing required field \"type\"");
    if (!rc && !aip_msg_type_allowed(env, out->type))
        rc = aip_codec_fail(err, AIP_E_PROTOCOL, "message type \"%s\" is not valid in a %s message",
                            aip_msg_type_str(out->type), aip_envelope_str(env));
    if (!rc && out->status == AIP_STATUS_NONE)
        rc = aip_codec_fail(err, AIP_E_PROTOCOL, "missing required field \"status\"");
    if (rc) {
        aip_msg_clear(out);
        out->envelope = env;
    }
    return rc;
}

int aip_json_decode(aip_envelope env, const char *frame, size_t len, const aip_codec_limits *limits,
                    aip_msg *out, aip_decode_error *err)
{
    return aip_decode(AIP_ENCODING_JSON, env, frame, len, limits, out, err);
}

int aip_proto_decode(aip_envelope env, const uint8_t *frame, size_t len,
                     const aip_codec_limits *limits, aip_msg *out, aip_decode_error *err)
{
    return aip_decode(AIP_ENCODING_PROTO, env, frame, len, limits, out, err);
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
