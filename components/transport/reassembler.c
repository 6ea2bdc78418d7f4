/* Inbound WebSocket message reassembly (see aip/internal/reassembler.h). */
#include "aip/internal/reassembler.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"

#define KEEP_DEFAULT (64u * 1024u) /* do not keep a large buffer for a rare large message */

void aip_reasm_init(aip_reasm *r, size_t max)
{
    aip_buf_init(&r->msg, 0);
    r->max = max;
    r->binary = false;
    r->in_msg = false;
    r->refused = false;
    r->keep = KEEP_DEFAULT;
}

static void end_message(aip_reasm *r)
{
    r->in_msg = false;
    r->refused = false;
}

static void drop_buffer(aip_reasm *r)
{
    if (r->msg.cap > r->keep)
        aip_buf_free(&r->msg);
    else
        aip_buf_reset(&r->msg);
}

int aip_reasm_feed(aip_reasm *r, const void *data, size_t len, bool first, bool final, bool binary,
                   size_t frame_left)
{
    if (first || !r->in_msg) {
        /* a message starts: whatever came before is gone (and was already answered) */
        drop_buffer(r);
        r->in_msg = true;
        r->refused = false;
        r->binary = binary;
        /* refuse early: the first frame's header already says how much is coming */
        if (len > r->max || frame_left > r->max - len) {
            r->refused = true;
            if (final)
                end_message(r);
            return AIP_E_TOO_LARGE;
        }
    }
    if (r->refused) { /* the rest of a refused message: dropped as it arrives */
        if (final)
            end_message(r);
        return AIP_REASM_MORE;
    }
    if (len > r->max - r->msg.len) {
        drop_buffer(r);
        r->refused = true;
        if (final)
            end_message(r);
        return AIP_E_TOO_LARGE;
    }
    if (len && aip_buf_append(&r->msg, data, len)) {
        drop_buffer(r);
        r->refused = true;
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

void aip_reasm_reset(aip_reasm *r)
{
    drop_buffer(r);
    end_message(r);
}

void aip_reasm_free(aip_reasm *r)
{
    aip_buf_free(&r->msg);
    end_message(r);
}
