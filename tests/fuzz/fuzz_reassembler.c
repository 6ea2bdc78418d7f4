/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the transport's inbound reassembler (aip/internal/reassembler.h) fed an
 * arbitrary sequence of chunks, as libwebsockets could deliver them (first/final flags in any
 * order, frame-header announcements of any size, messages that never finish).
 * Input: [cap + prefix selector] then records [flags][len][len bytes]; byte 0: bits 0-2 the
 * cap, bit 3 reset after each delivered message, bits 4-6 a smaller prefix_max; record flags:
 * bit 0 first, bit 1 final, bit 2 binary, bits 3-7 the frame's announced remaining bytes
 * (0..30 x 16, or 31: huge).
 * Properties checked beyond "no crash, no leak, no UB" (ASan+UBSan), against a naive model
 * that keeps every byte of the current message:
 * - a delivered message is exactly the bytes of its chunks, never over the cap, of the type
 *   of its first chunk, and valid UTF-8 when text;
 * - a message is skipped exactly when its chunks, or a frame header's announcement added to
 *   what came before, exceed the cap; from then on nothing of it is buffered;
 * - a skipped message's prefix is told exactly once (AIP_REASM_OVERSIZED), on the chunk where
 *   prefix_max of its bytes have arrived or on its final chunk, whichever comes first, and it
 *   is exactly its first min(prefix_max, bytes so far) bytes;
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
static const size_t prefixes[8] = {SIZE_MAX, 0, 1, 3, 17, 100, 300, SIZE_MAX};

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
    CHECK(r.prefix_max == (cap < AIP_REASM_PREFIX ? cap : AIP_REASM_PREFIX));
    size_t pm = prefixes[(data[0] >> 4) & 7];
    if (pm < r.prefix_max)
        r.prefix_max = pm; /* allowed: lowered after init */
    pm = r.prefix_max;
    /* the model: every byte of the current message, without any cleverness */
    uint8_t *model = malloc(size + 1);
    size_t mlen = 0;
    bool in_msg = false, skipping = false, told = false, mbin = false;
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

        if (first || !in_msg) {
            in_msg = true;
            skipping = false;
            told = false;
            mbin = bin;
            mlen = 0;
        }
        if (!skipping && (mlen + len > cap || left > cap - mlen - len))
            skipping = true;
        memcpy(model + mlen, chunk, len);
        mlen += len;
        if (skipping) {
            if (!told && (mlen >= pm || final)) {
                CHECK(rc == AIP_REASM_OVERSIZED);
                told = true;
                size_t n;
                const uint8_t *p = aip_reasm_prefix(&r, &n);
                CHECK(n == (mlen < pm ? mlen : pm));
                CHECK(n == 0 || memcmp(p, model, n) == 0);
                CHECK(aip_reasm_binary(&r) == mbin);
            } else {
                CHECK(rc == AIP_REASM_MORE);
            }
            CHECK(aip_reasm_len(&r) == 0); /* nothing of a skipped message is buffered */
            CHECK(r.msg.cap <= r.keep);
        } else if (!final) {
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
        if (final) {
            in_msg = false;
            skipping = false;
        }
        CHECK(aip_reasm_len(&r) <= cap);
        if (rc == AIP_REASM_MESSAGE && (data[0] & 8))
            aip_reasm_reset(&r); /* as the transport does after delivering */
    }
    aip_reasm_free(&r);
    free(model);
    return 0;
}
