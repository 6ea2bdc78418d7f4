/* Unit tests: inbound message reassembly — fragments to one message, the size cap (early from
 * the frame header, or when a later chunk crosses it; the rest of a refused message dropped
 * without buffering), UTF-8 for text, messages that never finish, reset between links. */
#include <aip/aip.h>
#include <aip/internal/reassembler.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

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
    assert_int_equal(FEED(&r, "56789", false, true, true, 0), AIP_E_TOO_LARGE);
    /* the message ended with that chunk: the next one is accepted */
    assert_int_equal(FEED(&r, "ok", true, true, true, 0), AIP_REASM_MESSAGE);
    aip_reasm_free(&r);
}

static void test_refused_early_from_the_header_without_buffering(void **state)
{
    (void)state;
    aip_reasm r;
    aip_reasm_init(&r, 1u << 20);
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    /* the first frame announces 24 MiB: refused on its first chunk, nothing kept */
    size_t left = (24u << 20) - sizeof chunk;
    assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, true, false, true, left),
                     AIP_E_TOO_LARGE);
    assert_int_equal(r.msg.cap, 0);
    /* the rest of it is dropped as it arrives: no second error, no memory */
    for (int i = 0; i < 100; i++) {
        left -= sizeof chunk;
        assert_int_equal(aip_reasm_feed(&r, chunk, sizeof chunk, false, false, true, left),
                         AIP_REASM_MORE);
        assert_int_equal(r.msg.cap, 0);
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
    int refusals = 0;
    for (int i = 1; i < 1000; i++) {
        int rc = aip_reasm_feed(&r, chunk, sizeof chunk, false, false, false, 0);
        assert_true(rc == AIP_REASM_MORE || rc == AIP_E_TOO_LARGE);
        refusals += rc == AIP_E_TOO_LARGE;
        assert_true(aip_reasm_len(&r) <= 64u * 1024u);
        assert_true(r.msg.cap <= 128u * 1024u);
    }
    assert_int_equal(refusals, 1); /* once, when the 65th KiB arrived */
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
    assert_int_equal(aip_reasm_feed(&r, bad, sizeof bad, true, true, false, 0), AIP_E_MALFORMED);
    assert_int_equal(aip_reasm_feed(&r, overlong, 2, true, true, false, 0), AIP_E_MALFORMED);
    assert_int_equal(aip_reasm_feed(&r, surrogate, 3, true, true, false, 0), AIP_E_MALFORMED);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_chunk_message),
        cmocka_unit_test(test_fragments_join_and_keep_first_type),
        cmocka_unit_test(test_cap_exact_and_one_over),
        cmocka_unit_test(test_refused_early_from_the_header_without_buffering),
        cmocka_unit_test(test_never_finishing_message_is_bounded),
        cmocka_unit_test(test_text_must_be_utf8),
        cmocka_unit_test(test_reset_drops_a_partial_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
