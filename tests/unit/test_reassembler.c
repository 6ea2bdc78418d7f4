/* SPDX-License-Identifier: MIT */
/* Unit tests: inbound message reassembly — fragments to one message, the size cap (a message
 * over it is skipped: found early from a frame header, or when a chunk crosses it; only its
 * first bytes are kept and told once, the rest dropped without buffering, the next message
 * delivered as usual), UTF-8 for text, messages that never finish, reset between links. */
#include <aip/aip.h>
#include <aip/internal/reassembler.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "aip_test_assert.h"

#define FEED(r, s, first, final, bin, left) \
    aip_reasm_feed((r), (s), strlen(s), (first), (final), (bin), (left))

static void test_one_chunk_message(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1024);
    assert_int_equal(FEED(&r, "{\"a\":1}", true, true, false, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 7);
    assert_memory_equal(aip_reasm_data(&r), "{\"a\":1}", 7);
    assert_false(aip_reasm_binary(&r));
    /* an empty message is a message, with a valid pointer */
    assert_int_equal(aip_reasm_feed(&r, NULL, 0, true, true, true, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 0);
    assert_non_null(aip_reasm_data(&r));
    assert_true(aip_reasm_binary(&r));
    aip_reasm_free(&r);
}

static void test_fragments_join_and_keep_first_type(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1024);
    assert_int_equal(FEED(&r, "abc", true, false, true, 0), AIP_REASM_MORE);
    /* continuation frames carry no type of their own: the first chunk's counts */
    assert_int_equal(FEED(&r, "def", false, false, false, 0), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "gh", false, true, false, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 8);
    assert_memory_equal(aip_reasm_data(&r), "abcdefgh", 8);
    assert_true(aip_reasm_binary(&r));
    /* the next message starts empty */
    assert_int_equal(FEED(&r, "x", true, true, false, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 1);
    aip_reasm_free(&r);
}

static void test_cap_exact_and_one_over(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 8);
    assert_int_equal(FEED(&r, "1234", true, false, true, 4), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "5678", false, true, true, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 8);
    assert_int_equal(FEED(&r, "1234", true, false, true, 0), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "56789", false, true, true, 0), AIP_REASM_OVERSIZED);
    /* skipped: its first bytes (never more than the cap) are told, nothing is buffered */
    size_t n;
    const uint8_t *p = aip_reasm_prefix(&r, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(p, "12345678", 8);
    assert_int_equal(aip_reasm_len(&r), 0);
    /* the message ended with that chunk: the next one is accepted */
    assert_int_equal(FEED(&r, "ok", true, true, true, 0), AIP_REASM_MESSAGE);
    aip_reasm_free(&r);
}

static void test_skipped_early_from_the_header_without_buffering(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1u << 20);
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    chunk[0] = '{';
    /* the first frame announces 24 MiB: skipped from its first chunk, which is not buffered:
     * only the prefix keeps it, and the prefix is told once it holds AIP_REASM_PREFIX bytes */
    size_t left = (24u << 20) - sizeof chunk;
    assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, true, false, true, left),
                     AIP_REASM_MORE);
    assert_int_equal(r.msg.cap, 0);
    left -= sizeof chunk;
    assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, false, false, true, left),
                     AIP_REASM_OVERSIZED);
    size_t n;
    const uint8_t *p = aip_reasm_prefix(&r, &n);
    assert_int_equal(n, AIP_REASM_PREFIX);
    assert_int_equal(p[0], '{');
    assert_int_equal(p[4096], '{'); /* the second chunk's first byte */
    /* the rest of it is dropped as it arrives: told once, no memory */
    for (int i = 0; i < 100; i++) {
        left -= sizeof chunk;
        assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, false, false, true, left),
                         AIP_REASM_MORE);
        assert_int_equal(r.msg.cap, 0);
        assert_int_equal(aip_reasm_len(&r), 0);
    }
    assert_int_equal(aip_reasm_feed(&r, chunk, 10, false, true, true, 0), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "next", true, true, false, 0), AIP_REASM_MESSAGE);
    assert_memory_equal(aip_reasm_data(&r), "next", 4);
    aip_reasm_free(&r);
}

static void test_never_finishing_message_is_bounded(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 64u * 1024u);
    char chunk[1024];
    memset(chunk, 'y', sizeof chunk);
    assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, true, false, false, 0),
                     AIP_REASM_MORE);
    int told = 0;
    for (int i = 1; i < 1000; i++) {
        int rc = aip_reasm_feed(&r, chunk, sizeof chunk, false, false, false, 0);
        assert_true(rc == AIP_REASM_MORE || rc == AIP_REASM_OVERSIZED);
        told += rc == AIP_REASM_OVERSIZED;
        if (told) /* skipped since the 65th KiB: nothing buffered any more */
            assert_int_equal(aip_reasm_len(&r), 0);
        assert_true(aip_reasm_len(&r) <= 64u * 1024u);
        assert_true(r.msg.cap <= 128u * 1024u);
    }
    assert_int_equal(told, 1);             /* once, when the 65th KiB arrived */
    assert_true(r.msg.cap <= 64u * 1024u); /* the large buffer was freed */
    /* endless empty continuation frames: nothing grows */
    aip_reasm_reset(&r);
    assert_int_equal(aip_reasm_feed(&r, NULL, 0, true, false, true, 0), AIP_REASM_MORE);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(aip_reasm_feed(&r, NULL, 0, false, false, true, 0), AIP_REASM_MORE);
    assert_int_equal(r.msg.cap, 0);
    aip_reasm_free(&r);
}

static void test_text_must_be_utf8(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1024);
    static const char bad[] = {'"', (char)0xC3, '"'};        /* truncated sequence */
    static const char overlong[] = {(char)0xC0, (char)0xAF}; /* overlong '/' */
    static const char surrogate[] = {(char)0xED, (char)0xA0, (char)0x80};
    assert_aip(aip_reasm_feed(&r, bad, sizeof bad, true, true, false, 0), AIP_E_MALFORMED);
    assert_aip(aip_reasm_feed(&r, overlong, 2, true, true, false, 0), AIP_E_MALFORMED);
    assert_aip(aip_reasm_feed(&r, surrogate, 3, true, true, false, 0), AIP_E_MALFORMED);
    /* the same bytes in a binary message are fine */
    assert_int_equal(aip_reasm_feed(&r, bad, sizeof bad, true, true, true, 0), AIP_REASM_MESSAGE);
    /* a character split across two fragments is valid once joined */
    static const char e1[] = {'"', (char)0xC3}, e2[] = {(char)0xA9, '"'};
    assert_int_equal(aip_reasm_feed(&r, e1, 2, true, false, false, 0), AIP_REASM_MORE);
    assert_int_equal(aip_reasm_feed(&r, e2, 2, false, true, false, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 4);
    aip_reasm_free(&r);
}

static void test_reset_drops_a_partial_message(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1u << 20);
    static char big[200 * 1024];
    memset(big, 'z', sizeof big);
    assert_int_equal(aip_reasm_feed(&r, big, sizeof big, true, false, true, 0), AIP_REASM_MORE);
    aip_reasm_reset(&r);            /* the link ended mid-message */
    assert_int_equal(r.msg.cap, 0); /* a large buffer is not kept */
    /* a continuation without a start (a new link's first bytes) starts a new message */
    assert_int_equal(FEED(&r, "fresh", false, true, false, 0), AIP_REASM_MESSAGE);
    assert_int_equal(aip_reasm_len(&r), 5);
    /* a new first chunk mid-message restarts it */
    assert_int_equal(FEED(&r, "old", true, false, false, 0), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "new", true, true, false, 0), AIP_REASM_MESSAGE);
    assert_memory_equal(aip_reasm_data(&r), "new", 3);
    aip_reasm_free(&r);
}

/* A later fragment frame whose header announces more than the cap allows skips the message
 * at once (before buffering it); the prefix holds the bytes of the earlier fragments first. */
static void test_later_frame_header_skips_early(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1024);
    assert_int_equal(FEED(&r, "{\"type\":", true, false, false, 0), AIP_REASM_MORE);
    /* the next frame announces 2000 bytes after this chunk: 8 + 5 + 2000 > 1024 */
    assert_int_equal(FEED(&r, "\"task", false, false, false, 2000), AIP_REASM_MORE);
    assert_int_equal(aip_reasm_len(&r), 0);
    assert_true(r.msg.cap < 1024); /* not grown for the announced frame */
    char pad[1019];
    memset(pad, 'a', sizeof pad);
    /* the prefix fills at the cap (1024 < AIP_REASM_PREFIX): told now, mid-message */
    assert_int_equal(aip_reasm_feed(&r, pad, sizeof pad, false, false, false, 981),
                     AIP_REASM_OVERSIZED);
    size_t n;
    const uint8_t *p = aip_reasm_prefix(&r, &n);
    assert_int_equal(n, 1024);
    assert_memory_equal(p, "{\"type\":\"task", 13);
    assert_int_equal(aip_reasm_feed(&r, pad, 981, false, true, false, 0), AIP_REASM_MORE);
    /* the next message is delivered as usual */
    assert_int_equal(FEED(&r, "{}", true, true, false, 0), AIP_REASM_MESSAGE);
    assert_memory_equal(aip_reasm_data(&r), "{}", 2);
    aip_reasm_free(&r);
}

/* A skipped message that ends before its prefix is full tells it at its end; a smaller
 * prefix_max is honoured; a skipped text message is not checked for UTF-8. */
static void test_short_prefix_told_at_the_end(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 4096);
    static const char bad[] = {'"', (char)0xC3};
    assert_int_equal(aip_reasm_feed(&r, bad, 2, true, false, false, 5000), AIP_REASM_MORE);
    assert_int_equal(aip_reasm_feed(&r, "x", 1, false, true, false, 0), AIP_REASM_OVERSIZED);
    size_t n;
    aip_reasm_prefix(&r, &n);
    assert_int_equal(n, 3);
    r.prefix_max = 4;
    assert_int_equal(FEED(&r, "abcdefgh", true, false, true, 10000), AIP_REASM_OVERSIZED);
    const uint8_t *p = aip_reasm_prefix(&r, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "abcd", 4);
    assert_true(aip_reasm_binary(&r));
    assert_int_equal(FEED(&r, "ijkl", false, true, true, 0), AIP_REASM_MORE);
    assert_int_equal(FEED(&r, "ok", true, true, false, 0), AIP_REASM_MESSAGE);
    aip_reasm_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_chunk_message),
        cmocka_unit_test(test_fragments_join_and_keep_first_type),
        cmocka_unit_test(test_cap_exact_and_one_over),
        cmocka_unit_test(test_skipped_early_from_the_header_without_buffering),
        cmocka_unit_test(test_later_frame_header_skips_early),
        cmocka_unit_test(test_short_prefix_told_at_the_end),
        cmocka_unit_test(test_never_finishing_message_is_bounded),
        cmocka_unit_test(test_text_must_be_utf8),
        cmocka_unit_test(test_reset_drops_a_partial_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
