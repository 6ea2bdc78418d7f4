/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/processor.h — the MessageProcessor: the only receive path (not installed).
 *
 * The transport hands every complete inbound message to aip_processor_feed() on the service
 * thread; nothing else ever reads the socket. feed() decodes by opcode (text -> JSON,
 * binary -> protobuf), and dispatches by message type to the handler registered for it.
 * A frame that does not decode goes to the malformed handler with whatever correlation the
 * decoder could read, so a broken `command` can still be answered; the link carries on.
 * Every outcome is counted.
 *
 * Threads: service thread only (feed, handlers). Counters are atomics, readable anywhere.
 */
#ifndef AIP_INTERNAL_PROCESSOR_H
#define AIP_INTERNAL_PROCESSOR_H

#include "aip/codec.h"

#include <stdatomic.h>
#include <stdbool.h>

/* The handler may take ownership of the message's contents (move them out and leave *m
 * zeroed); whatever is left is freed after it returns. */
typedef void (*aip_dispatch_fn)(void *user, aip_msg *m);
typedef void (*aip_malformed_fn)(void *user, const aip_decode_error *e, bool binary);

typedef struct aip_processor {
    aip_envelope inbound; /* the envelope peers send us */
    aip_codec_limits limits;
    aip_dispatch_fn handlers[AIP_MSG_TYPE_COUNT_];
    void *users[AIP_MSG_TYPE_COUNT_];
    aip_malformed_fn on_malformed;
    void *malformed_user;
    _Atomic uint64_t received[AIP_MSG_TYPE_COUNT_];
    _Atomic uint64_t malformed;
    _Atomic uint64_t unhandled; /* decoded, but no handler for its type */
} aip_processor;

void aip_processor_init(aip_processor *p, aip_envelope inbound, const aip_codec_limits *limits);
void aip_processor_on(aip_processor *p, aip_msg_type type, aip_dispatch_fn fn, void *user);
void aip_processor_on_malformed(aip_processor *p, aip_malformed_fn fn, void *user);
/* Decodes and dispatches one message. Returns 0, or the decode error code (already reported
 * to the malformed handler and counted). */
int aip_processor_feed(aip_processor *p, const uint8_t *data, size_t len, bool binary);

#endif /* AIP_INTERNAL_PROCESSOR_H */
