/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/conn_out.h — a connection's outbound limits, for the layers above that must
 * make an answer fit them (the agent's command_results). Not installed.
 *
 * Threads: any thread, like aip_conn_send_on.
 */
#ifndef AIP_INTERNAL_CONN_OUT_H
#define AIP_INTERNAL_CONN_OUT_H

#include "aip/conn.h"

#include <stddef.h>
#include <stdint.h>

/* The largest frame this connection can ever queue: its max_queued_bytes. That is the only cap
 * on an outbound frame (the transport sends a frame of any size, in 64 KiB fragments, and has no
 * frame-count cap here), so an answer larger than this can never go out. */
size_t aip_conn_max_frame_out(const aip_conn *c);

/* The bytes one more frame may have right now: max_queued_bytes less what is queued on the
 * link (aip_transport_queue_room). Another thread may take the room first. */
size_t aip_conn_queue_room(aip_conn *c);

/* The exact size of the frame aip_conn_send_on(c, link, m) would queue for m now (link 0: the
 * current link): its encoding, identity fields stamped. Returns 0 with *size set;
 * AIP_E_NOT_CONNECTED, AIP_E_CONN_LOST (that link is gone), AIP_E_SHUTDOWN, or the encoder's
 * error (AIP_E_PROTOCOL, AIP_E_NOMEM). */
int aip_conn_encoded_size(aip_conn *c, uint64_t link, const aip_msg *m, size_t *size);

#endif /* AIP_INTERNAL_CONN_OUT_H */
