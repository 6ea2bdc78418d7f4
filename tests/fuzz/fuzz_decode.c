/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: one decoder (FUZZ_ENCODING x FUZZ_ENVELOPE) over arbitrary bytes.
 * Properties checked beyond "no crash, no leak, no UB" (ASan+UBSan):
 * - a decoded message re-encodes in both encodings (unless an action was marked invalid,
 *   which the encoders refuse by design), and each encoding decodes back to an equal model;
 * - a rejected frame always carries a reason;
 * - aip_frame_peek (type and ids from a frame's first bytes) survives any input and any
 *   prefix of it; on a frame that decodes it reads the decoded type and ids; on prefixes of
 *   the re-encoded frames it reads each of them whole or not at all.
 */
#include <aip/aip.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool id_ok(const char *peeked, const char *decoded, bool whole)
{
    const char *d = decoded ? decoded : "";
    return strcmp(peeked, d) == 0 || (!whole && !peeked[0]);
}

/* The peek of frame[0..len) against the decoded m: equal when whole, else each field equal
 * or unread. */
static void check_peek(const aip_msg *m, aip_encoding enc, const uint8_t *frame, size_t len,
                       bool whole)
{
    aip_frame_ids ids;
    aip_frame_peek(enc, m->envelope, frame, len, &ids);
    bool server = m->envelope == AIP_ENVELOPE_SERVER;
    bool ok = (ids.type == m->type || (!whole && ids.type == AIP_MSG_NONE)) &&
              id_ok(ids.session_id, m->session_id, whole) &&
              id_ok(ids.response_id, server ? m->response_id : NULL, whole) &&
              id_ok(ids.request_id, server ? NULL : m->request_id, whole) &&
              id_ok(ids.prev_response_id, server ? NULL : m->prev_response_id, whole);
    if (!ok) {
        fprintf(stderr, "peek of %zu bytes (%s, %s) disagrees with the decoder\n", len,
                enc == AIP_ENCODING_PROTO ? "proto" : "json", whole ? "whole" : "prefix");
        abort();
    }
}

static void roundtrip(const aip_msg *m, aip_encoding enc)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    if (aip_encode(enc, m, &b) != 0) {
        fprintf(stderr, "decoded message does not re-encode\n");
        abort();
    }
    aip_msg back = {0};
    aip_decode_error err;
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = 64u << 20;
    if (aip_decode(enc, m->envelope, b.data, b.len, &lim, &back, &err) != 0) {
        fprintf(stderr, "re-encoded message does not decode: %s\n", err.reason);
        abort();
    }
    if (!aip_msg_equal(m, &back)) {
        fprintf(stderr, "round trip changed the message\n");
        abort();
    }
    check_peek(m, enc, b.data, b.len, true);
    for (size_t k = 1; k < 8 && b.len; k++)
        check_peek(m, enc, b.data, b.len * k / 8, false);
    aip_msg_clear(&back);
    aip_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aip_msg m = {0};
    aip_decode_error err;
    aip_frame_ids ids;
    aip_frame_peek(FUZZ_ENCODING, FUZZ_ENVELOPE, data, size / 2, &ids); /* any prefix */
    int rc = aip_decode(FUZZ_ENCODING, FUZZ_ENVELOPE, data, size, NULL, &m, &err);
    if (rc) {
        if (!err.reason[0] || err.code != rc)
            abort();
        return 0;
    }
    check_peek(&m, FUZZ_ENCODING, data, size, true);
    for (size_t i = 0; i < m.n_actions; i++)
        if (m.actions[i].invalid)
            goto done;
    roundtrip(&m, AIP_ENCODING_JSON);
    roundtrip(&m, AIP_ENCODING_PROTO);
done:
    aip_msg_clear(&m);
    return 0;
}
