/* SPDX-License-Identifier: MIT */
/* Inbound WebSocket message reassembly (see aip/internal/reassembler.h). */
#include "aip/internal/reassembler.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"

#include <string.h>

#define KEEP_DEFAULT (64u * 1024u) /* do not keep a large buffer for a rare large message */

void aip_reasm_init(aip_reasm *r, size_t max)
{
    aip_buf_init(&r->msg, 0);
    r->max = max;
    r->binary = false;
    r->in_msg = false;
    r->skipping = false;
    r->prefix_given = false;
    r->keep = KEEP_DEFAULT;
    r->prefix_max = max < AIP_REASM_PREFIX ? max : AIP_REASM_PREFIX;
    r->prefix_len = 0;
}

static void end_message(aip_reasm *r)
{
    r->in_msg = false;
    r->skipping = false;
    r->prefix_given = false;
}

static void drop_buffer(aip_reasm *r)
{
    if (r->msg.cap > r->keep)
        aip_buf_free(&r->msg);
    else
        aip_buf_reset(&r->msg);
}

static void add_prefix(aip_reasm *r, const void *data, size_t len)
{
    size_t room = r->prefix_max - r->prefix_len;
    size_t n = len < room ? len : room;
    if (n)
        memcpy(r->prefix + r->prefix_len, data, n);
    r->prefix_len += n;
}

/* The current message is over the cap: keep its first prefix_max bytes (from what was
 * buffered, then from this chunk), free the buffer, drop the rest from now on. */
static void start_skip(aip_reasm *r, const void *data, size_t len)
{
    size_t n = r->msg.len < r->prefix_max ? r->msg.len : r->prefix_max;
    if (n)
        memcpy(r->prefix, r->msg.data, n);
    r->prefix_len = n;
    drop_buffer(r);
    r->skipping = true;
    r->prefix_given = false;
    add_prefix(r, data, len);
}

/* After a chunk of a skipped message: the prefix is told once, as soon as it is full or the
 * message ends. */
static int skip_result(aip_reasm *r, bool final)
{
    int rc = AIP_REASM_MORE;
    if (!r->prefix_given && (final || r->prefix_len == r->prefix_max)) {
        r->prefix_given = true;
        rc = AIP_REASM_OVERSIZED;
    }
    if (final)
        end_message(r); /* the prefix stays readable until the next call */
    return rc;
}

int aip_reasm_feed(aip_reasm *r, const void *data, size_t len, bool first, bool final, bool binary,
                   size_t frame_left)
{
    if (first || !r->in_msg) {
        /* a message starts: whatever came before is gone (and was already answered) */
        drop_buffer(r);
        r->in_msg = true;
        r->skipping = false;
        r->prefix_given = false;
        r->prefix_len = 0;
        r->binary = binary;
    } else if (r->skipping) { /* the rest of a skipped message: dropped as it arrives */
        add_prefix(r, data, len);
        return skip_result(r, final);
    }
    /* skip as early as possible: this frame's header may already say how much is coming */
    size_t room = r->max - r->msg.len;
    if (len > room || frame_left > room - len) {
        start_skip(r, data, len);
        return skip_result(r, final);
    }
    if (len && aip_buf_append(&r->msg, data, len)) {
        /* nothing of this message can be delivered: drop the rest without telling a prefix */
        drop_buffer(r);
        r->skipping = true;
        r->prefix_given = true;
        r->prefix_len = 0;
        if (final)
            end_message(r);
        return AIP_E_NOMEM;
    }
    if (!final)
        return AIP_REASM_MORE;
    r->in_msg = false;
    if (!r->binary && !aip_utf8_valid((const char *)r->msg.data, r->msg.len, NULL)) {
        drop_buffer(r);
        return AIP_E_MALFORMED;
    }
    return AIP_REASM_MESSAGE;
}

const uint8_t *aip_reasm_data(const aip_reasm *r)
{
    return r->msg.data ? r->msg.data : (const uint8_t *)"";
}

size_t aip_reasm_len(const aip_reasm *r)
{
    return r->msg.len;
}

bool aip_reasm_binary(const aip_reasm *r)
{
    return r->binary;
}

const uint8_t *aip_reasm_prefix(const aip_reasm *r, size_t *len)
{
    *len = r->prefix_len;
    return r->prefix;
}

void aip_reasm_reset(aip_reasm *r)
{
    drop_buffer(r);
    end_message(r);
    r->prefix_len = 0;
}

void aip_reasm_free(aip_reasm *r)
{
    aip_buf_free(&r->msg);
    end_message(r);
    r->prefix_len = 0;
}
