/* SPDX-License-Identifier: MIT */
/* The MessageProcessor (see aip/internal/processor.h). */
#include "aip/internal/processor.h"

#include <string.h>

void aip_processor_init(aip_processor *p, aip_envelope inbound, const aip_codec_limits *limits)
{
    memset(p, 0, sizeof *p);
    p->inbound = inbound;
    if (limits)
        p->limits = *limits;
    else
        aip_codec_limits_default(&p->limits);
}

void aip_processor_on(aip_processor *p, aip_msg_type type, aip_dispatch_fn fn, void *user)
{
    if (type > AIP_MSG_NONE && type < AIP_MSG_TYPE_COUNT_) {
        p->handlers[type] = fn;
        p->users[type] = user;
    }
}

void aip_processor_on_malformed(aip_processor *p, aip_malformed_fn fn, void *user)
{
    p->on_malformed = fn;
    p->malformed_user = user;
}

int aip_processor_feed(aip_processor *p, const uint8_t *data, size_t len, bool binary)
{
    aip_msg m;
    aip_decode_error err;
    int rc = aip_decode(binary ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON, p->inbound, data, len,
                        &p->limits, &m, &err);
    if (rc) {
        atomic_fetch_add_explicit(&p->malformed, 1, memory_order_relaxed);
        if (p->on_malformed)
            p->on_malformed(p->malformed_user, &err, binary);
        return rc;
    }
    atomic_fetch_add_explicit(&p->received[m.type], 1, memory_order_relaxed);
    if (p->handlers[m.type])
        p->handlers[m.type](p->users[m.type], &m);
    else
        atomic_fetch_add_explicit(&p->unhandled, 1, memory_order_relaxed);
    aip_msg_clear(&m);
    return 0;
}
