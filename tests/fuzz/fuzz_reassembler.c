/*
 * libFuzzer target: the transport's inbound reassembler (aip/internal/reassembler.h) fed an
 * arbitrary sequence of chunks, as libwebsockets could deliver them (first/final flags in any
 * order, frame-header announcements of any size, messages that never finish).
 * Input: [cap selector] then records [flags][len][len bytes]; flags bit 0 first, bit 1 final,
 * bit 2 binary, bits 3-7 the frame's announced remaining bytes (0..30 x 16, or 31: huge).
 * Properties checked beyond "no crash, no leak, no UB" (ASan+UBSan), against a naive model:
 * - a delivered message is exactly the bytes of its chunks, never over the cap, of the type
 *   of its first chunk, and valid UTF-8 when text;
 * - a message is refused (AIP_E_TOO_LARGE) exactly when its chunks or its first frame's
 *   announcement exceed the cap, at most once, and nothing of it is buffered afterwards;
 * - the buffer never holds more than the cap.
 */
#include <aip/aip.h>
#include <aip/internal/jscan.h>
#include <aip/internal/reassembler.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t caps[8] = {0, 1, 4, 16, 64, 255, 1024, 4096};

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz_reassembler: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = caps[data[0] & 7];
    aip_reasm r;
    aip_reasm_init(&r, cap);
    /* the model: what a message holds, without any cleverness */
    uint8_t *model = malloc(cap + 256);
    size_t mlen = 0;
    bool in_msg = false, refused = false, mbin = false;
    size_t i = 1;
    while (i + 2 <= size) {
        uint8_t flags = data[i], len = data[i + 1];
        i += 2;
        if (len > size - i)
            len = (uint8_t)(size - i);
        const uint8_t *chunk = data + i;
        i += len;
        bool first = flags & 1, final = flags & 2, bin = flags & 4;
        unsigned sel = flags >> 3;
        size_t left = sel == 31 ? SIZE_MAX / 2 : (size_t)sel * 16;

        int rc = aip_reasm_feed(&r, chunk, len, first, final, bin, left);

        bool want_refusal = false;
        if (first || !in_msg) {
            in_msg = true;
            refused = false;
            mbin = bin;
            mlen = 0;
            if (len > cap || left > cap - len)
                want_refusal = true;
        }
        if (!want_refusal && !refused && mlen + len > cap)
            want_refusal = true;
        if (want_refusal && !refused) {
            CHECK(rc == AIP_E_TOO_LARGE);
            refused = true;
            mlen = 0;
        } else if (refused) {
            CHECK(rc == AIP_REASM_MORE);
        } else {
            memcpy(model + mlen, chunk, len);
            mlen += len;
            if (!final) {
                CHECK(rc == AIP_REASM_MORE);
            } else if (!mbin && !aip_utf8_valid((const char *)model, mlen, NULL)) {
                CHECK(rc == AIP_E_MALFORMED);
            } else {
                CHECK(rc == AIP_REASM_MESSAGE);
                CHECK(aip_reasm_len(&r) == mlen);
                CHECK(aip_reasm_len(&r) <= cap);
                CHECK(aip_reasm_binary(&r) == mbin);
                CHECK(mlen == 0 || memcmp(aip_reasm_data(&r), model, mlen) == 0);
            }
        }
        if (final) {
            in_msg = false;
            refused = false;
        }
        CHECK(aip_reasm_len(&r) <= cap);
        if (refused)
            CHECK(aip_reasm_len(&r) == 0);
        if (rc == AIP_REASM_MESSAGE && (data[0] & 8))
            aip_reasm_reset(&r); /* as the transport does after delivering */
    }
    aip_reasm_free(&r);
    free(model);
    return 0;
}
