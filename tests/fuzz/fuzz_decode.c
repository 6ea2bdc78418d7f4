/*
 * libFuzzer target: one decoder (FUZZ_ENCODING x FUZZ_ENVELOPE) over arbitrary bytes.
 * Properties checked beyond "no crash, no leak, no UB" (ASan+UBSan):
 * - a decoded message re-encodes in both encodings (unless an action was marked invalid,
 *   which the encoders refuse by design), and each encoding decodes back to an equal model;
 * - a rejected frame always carries a reason.
 */
#include <aip/aip.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    aip_msg_clear(&back);
    aip_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aip_msg m = {0};
    aip_decode_error err;
    int rc = aip_decode(FUZZ_ENCODING, FUZZ_ENVELOPE, data, size, NULL, &m, &err);
    if (rc) {
        if (!err.reason[0] || err.code != rc)
            abort();
        return 0;
    }
    for (size_t i = 0; i < m.n_actions; i++)
        if (m.actions[i].invalid)
            goto done;
    roundtrip(&m, AIP_ENCODING_JSON);
    roundtrip(&m, AIP_ENCODING_PROTO);
done:
    aip_msg_clear(&m);
    return 0;
}
