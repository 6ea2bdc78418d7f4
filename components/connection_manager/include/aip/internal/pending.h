/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/pending.h — the pending-request table of the connection manager (not installed).
 *
 * Requests waiting for an answer, keyed by (kind, id): tasks by session_id, device-info
 * queries by request_id. A hash table (open addressing) finds an answer's request in O(1); a
 * binary min-heap on the deadline finds what has timed out in O(log n). Bounded: at most
 * `max` entries, then AIP_E_FULL.
 *
 * Not locked: the connection manager holds its own mutex around every call, so that checking
 * the link, inserting the entry and queueing the frame are atomic with respect to the service
 * thread's fail-all on disconnect. Entries are handed back to the caller (take, pop_expired,
 * take_all) to complete *after* dropping that mutex — never complete a future under it.
 *
 * A caller may cancel a future at any time without telling the table; such entries are found
 * done and dropped lazily (when their answer arrives, at their deadline, or when their id or
 * slot is needed), and their ids are remembered for a while so a late answer is counted as late.
 */
#ifndef AIP_INTERNAL_PENDING_H
#define AIP_INTERNAL_PENDING_H

#include "aip/future.h"

#include <stddef.h>
#include <stdint.h>

typedef enum aip_pending_kind {
    AIP_PENDING_TASK = 0,
    AIP_PENDING_DEVICE_INFO = 1,
} aip_pending_kind;

typedef struct aip_pending_entry {
    aip_future *f; /* one reference, owned by the entry */
    uint64_t deadline_ns;
    uint64_t link; /* the connection it was sent on */
    uint32_t hash;
    uint8_t kind;
    size_t heap_idx;
    /* taken out and settled, waiting for the end of the service round (future_settle.h) */
    struct aip_pending_entry *settled_next;
    char id[]; /* NUL-terminated */
} aip_pending_entry;

#define AIP_PENDING_RECENT 1024 /* ids remembered after a timeout or cancel */

typedef struct aip_pending {
    aip_pending_entry **slots; /* NULL = empty, TOMBSTONE = deleted */
    size_t nslots;             /* a power of two */
    size_t count, tombstones;
    aip_pending_entry **heap;
    size_t heap_cap; /* grows by doubling up to max: an idle table stays small */
    size_t max;
    uint32_t recent[AIP_PENDING_RECENT]; /* hashes of recently expired/cancelled keys */
    size_t recent_pos;
} aip_pending;

int aip_pending_init(aip_pending *p, size_t max);
/* Frees the table; entries still in it are freed too (their futures released uncompleted:
 * call aip_pending_take_all first to complete them). */
void aip_pending_destroy(aip_pending *p);

/* Adds (kind, id) -> f with a deadline; retains f. AIP_E_DUPLICATE when a live entry has the
 * same key (a done one is dropped and replaced), AIP_E_FULL at max live entries, AIP_E_NOMEM. */
int aip_pending_insert(aip_pending *p, aip_pending_kind kind, const char *id, uint64_t deadline_ns,
                       uint64_t link, aip_future *f);

/* Removes and returns the entry for (kind, id), or NULL. The caller completes entry->f (it may
 * already be done: then the answer is late) and frees the entry with aip_pending_entry_free. */
aip_pending_entry *aip_pending_take(aip_pending *p, aip_pending_kind kind, const char *id);

/* Was (kind, id) recently timed out or found cancelled? (approximate: a hash match). */
bool aip_pending_was_recent(const aip_pending *p, aip_pending_kind kind, const char *id);

/* Earliest deadline of a live entry, or UINT64_MAX when empty. */
uint64_t aip_pending_next_deadline(const aip_pending *p);

/* Removes up to max entries whose deadline is <= now into out; returns how many. */
size_t aip_pending_pop_expired(aip_pending *p, uint64_t now_ns, aip_pending_entry **out,
                               size_t max);

/* Removes up to max entries (any order) into out; returns how many. Callers loop until it
 * returns 0, completing each batch after dropping their lock. Never allocates, so a sweep
 * cannot fail for lack of memory. */
size_t aip_pending_pop_all(aip_pending *p, aip_pending_entry **out, size_t max);

size_t aip_pending_count(const aip_pending *p);

void aip_pending_entry_free(aip_pending_entry *e);

#endif /* AIP_INTERNAL_PENDING_H */
