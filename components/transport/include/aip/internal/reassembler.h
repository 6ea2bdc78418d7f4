/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/reassembler.h — inbound WebSocket message reassembly (not installed).
 *
 * libwebsockets hands the receive callback a message in chunks (pieces of frames, frames of
 * a fragmented message) and enforces no size limit. The reassembler turns the chunks back
 * into one message under a cap, without ever buffering more than the cap:
 * - a message over the cap is skipped, not refused: it is found as early as a frame header
 *   announces more than the cap allows, or when a chunk crosses it; from then on only
 *   its first min(AIP_REASM_PREFIX, cap) bytes are kept (for the layer above to read its type
 *   and ids), everything after them is dropped as it arrives, and the next message is
 *   reassembled as usual: a large message costs neither memory nor the link;
 * - a complete text message must be valid UTF-8 (RFC 3629), or it is refused (a skipped
 *   message is not checked: it is never delivered);
 * - a message that never finishes holds at most the cap (the connection's liveness check
 *   ends such a link: nothing complete is heard).
 * Memory: the message buffer (at most the cap; a buffer larger than `keep` is freed between
 * messages) plus the fixed prefix array inside the struct.
 * Pure data structure: no libwebsockets, no threads; one per link, used by one thread.
 */
#ifndef AIP_INTERNAL_REASSEMBLER_H
#define AIP_INTERNAL_REASSEMBLER_H

#include "aip/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of a skipped message kept for sniffing (never more than the cap). */
#define AIP_REASM_PREFIX 8192u

typedef struct aip_reasm {
    size_t max;        /* the largest message accepted, bytes */
    aip_buf msg;       /* the message being assembled */
    bool binary;       /* its type, from its first chunk */
    bool in_msg;       /* a message started and has not ended */
    bool skipping;     /* the current message is over max: only its prefix is kept */
    bool prefix_given; /* AIP_REASM_OVERSIZED was returned for the current message */
    size_t keep;       /* buffer capacity kept between messages (larger ones are freed) */
    size_t prefix_max; /* bytes of a skipped message kept: min(AIP_REASM_PREFIX, max); tests
                          may lower it after init */
    size_t prefix_len; /* bytes in prefix[] */
    uint8_t prefix[AIP_REASM_PREFIX];
} aip_reasm;

/* What aip_reasm_feed() returns, besides AIP_E_* errors. */
enum { AIP_REASM_MORE = 0, AIP_REASM_MESSAGE = 1, AIP_REASM_OVERSIZED = 2 };

void aip_reasm_init(aip_reasm *r, size_t max);
/* One chunk as libwebsockets delivers it. first: the message's first chunk; final: its last;
 * binary: the message type (read on the first chunk); frame_left: bytes the current frame's
 * header still announces after this chunk (lws_remaining_packet_payload()).
 * Returns:
 * - AIP_REASM_MORE: nothing to do yet;
 * - AIP_REASM_MESSAGE: a complete message, aip_reasm_data()/_len() until the next call;
 * - AIP_REASM_OVERSIZED: the current message is over max and is being skipped; its first
 *   bytes are aip_reasm_prefix() until the next call. Returned exactly once per such
 *   message, as soon as the prefix is full (prefix_max bytes) or the message
 *   ends, whichever comes first; its other chunks return AIP_REASM_MORE;
 * - AIP_E_MALFORMED: a text message that is not UTF-8 (close with 1007);
 * - AIP_E_NOMEM.
 * A chunk that arrives outside a message (no first chunk seen) starts one. */
int aip_reasm_feed(aip_reasm *r, const void *data, size_t len, bool first, bool final, bool binary,
                   size_t frame_left);
const uint8_t *aip_reasm_data(const aip_reasm *r); /* never NULL */
size_t aip_reasm_len(const aip_reasm *r);
bool aip_reasm_binary(const aip_reasm *r);
/* The kept first bytes of the message being skipped (see AIP_REASM_OVERSIZED); never NULL. */
const uint8_t *aip_reasm_prefix(const aip_reasm *r, size_t *len);
/* A new link: drops any partial message (memory is kept up to `keep`). */
void aip_reasm_reset(aip_reasm *r);
void aip_reasm_free(aip_reasm *r);

#endif /* AIP_INTERNAL_REASSEMBLER_H */
