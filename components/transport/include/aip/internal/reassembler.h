/*
 * aip/internal/reassembler.h — inbound WebSocket message reassembly (not installed).
 *
 * libwebsockets hands the receive callback a message in chunks (pieces of frames, frames of
 * a fragmented message) and enforces no size limit. The reassembler turns the chunks back
 * into one message under a cap, without ever buffering more than the cap:
 * - a message whose first frame header already announces more than the cap is refused on
 *   its first chunk; any later chunk that would cross the cap refuses it too;
 * - after a refusal the rest of that message is dropped as it arrives, never kept;
 * - a complete text message must be valid UTF-8 (RFC 3629), or it is refused;
 * - a message that never finishes holds at most the cap (the connection's liveness check
 *   ends such a link: nothing complete is heard).
 * Pure data structure: no libwebsockets, no threads; one per link, used by one thread.
 */
#ifndef AIP_INTERNAL_REASSEMBLER_H
#define AIP_INTERNAL_REASSEMBLER_H

#include "aip/buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct aip_reasm {
    size_t max;   /* the largest message accepted, bytes */
    aip_buf msg;  /* the message being assembled */
    bool binary;  /* its type, from its first chunk */
    bool in_msg;  /* a message started and has not ended */
    bool refused; /* the current message was refused: its rest is dropped */
    size_t keep;  /* buffer capacity kept between messages (larger ones are freed) */
} aip_reasm;

/* What aip_reasm_feed() returns, besides AIP_E_* errors. */
enum { AIP_REASM_MORE = 0, AIP_REASM_MESSAGE = 1 };

void aip_reasm_init(aip_reasm *r, size_t max);
/* One chunk as libwebsockets delivers it. first: the message's first chunk; final: its last;
 * binary: the message type (read on the first chunk); frame_left: bytes the current frame's
 * header still announces after this chunk (lws_remaining_packet_payload()).
 * Returns AIP_REASM_MORE; AIP_REASM_MESSAGE (the message is aip_reasm_data()/_len() until the
 * next call); AIP_E_TOO_LARGE (over max: close with 1009), returned once per message, whose
 * remaining chunks then return AIP_REASM_MORE; AIP_E_MALFORMED (a text message that is not
 * UTF-8: close with 1007); AIP_E_NOMEM. A chunk that arrives outside a message (no first
 * chunk seen) starts one. */
int aip_reasm_feed(aip_reasm *r, const void *data, size_t len, bool first, bool final, bool binary,
                   size_t frame_left);
const uint8_t *aip_reasm_data(const aip_reasm *r); /* never NULL */
size_t aip_reasm_len(const aip_reasm *r);
bool aip_reasm_binary(const aip_reasm *r);
/* A new link: drops any partial message (memory is kept up to `keep`). */
void aip_reasm_reset(aip_reasm *r);
void aip_reasm_free(aip_reasm *r);

#endif /* AIP_INTERNAL_REASSEMBLER_H */
