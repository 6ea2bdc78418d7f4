/* SPDX-License-Identifier: MIT */
/* The pending-request table (see aip/internal/pending.h). */
#include "aip/common.h"
#include "aip/internal/pending.h"

#include <string.h>

#define TOMBSTONE ((aip_pending_entry *)(uintptr_t)1)

static uint32_t key_hash(aip_pending_kind kind, const char *id)
{
    uint32_t h = 2166136261u ^ (uint32_t)kind; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h ? h : 1; /* 0 marks an empty slot in the recent ring */
}

int aip_pending_init(aip_pending *p, size_t max)
{
    memset(p, 0, sizeof *p);
    p->max = max ? max : 1;
    p->nslots = 64;
    p->slots = aip_calloc(p->nslots, sizeof *p->slots);
    p->heap_cap = p->max < 64 ? p->max : 64;
    p->heap = aip_calloc(p->heap_cap, sizeof *p->heap);
    if (!p->slots || !p->heap) {
        aip_free(p->slots);
        aip_free(p->heap);
        return AIP_E_NOMEM;
    }
    return 0;
}

void aip_pending_entry_free(aip_pending_entry *e)
{
    if (!e)
        return;
    aip_future_release(e->f);
    aip_free(e);
}

void aip_pending_destroy(aip_pending *p)
{
    for (size_t i = 0; i < p->count; i++)
        aip_pending_entry_free(p->heap[i]);
    aip_free(p->slots);
    aip_free(p->heap);
    memset(p, 0, sizeof *p);
}

size_t aip_pending_count(const aip_pending *p)
{
    return p->count;
}

/* ---- heap ---------------------------------------------------------------------------------- */

static void heap_set(aip_pending *p, size_t i, aip_pending_entry *e)
{
    p->heap[i] = e;
    e->heap_idx = i;
}

static void sift_up(aip_pending *p, size_t i)
{
    aip_pending_entry *e = p->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (p->heap[parent]->deadline_ns <= e->deadline_ns)
            break;
        heap_set(p, i, p->heap[parent]);
        i = parent;
    }
    heap_set(p, i, e);
}

static void sift_down(aip_pending *p, size_t i)
{
    aip_pending_entry *e = p->heap[i];
    size_t n = p->count;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = e->deadline_ns;
        if (l < n && p->heap[l]->deadline_ns < best) {
            m = l;
            best = p->heap[l]->deadline_ns;
        }
        if (l + 1 < n && p->heap[l + 1]->deadline_ns < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(p, i, p->heap[m]);
        i = m;
    }
    heap_set(p, i, e);
}

/* Removes e from the heap (and counts it out). */
static void heap_remove(aip_pending *p, aip_pending_entry *e)
{
    size_t i = e->heap_idx, last = p->count - 1;
    p->count--;
    if (i == last)
        return;
    aip_pending_entry *moved = p->heap[last];
    heap_set(p, i, moved);
    sift_up(p, i);
    if (moved->heap_idx == i)
        sift_down(p, i);
}

/* ---- hash ------------------------------------------------------------------------------------ */

static size_t find_slot(const aip_pending *p, aip_pending_kind kind, const char *id, uint32_t h)
{
    size_t mask = p->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        aip_pending_entry *e = p->slots[i];
        if (!e)
            return SIZE_MAX;
        if (e != TOMBSTONE && e->hash == h && e->kind == kind && strcmp(e->id, id) == 0)
            return i;
    }
}

static void slot_put(aip_pending_entry **slots, size_t nslots, aip_pending_entry *e)
{
    size_t mask = nslots - 1;
    size_t i = e->hash & mask;
    while (slots[i] && slots[i] != TOMBSTONE)
        i = (i + 1) & mask;
    slots[i] = e;
}

static int maybe_grow(aip_pending *p)
{
    if ((p->count + p->tombstones + 1) * 10 < p->nslots * 7)
        return 0;
    size_t n = p->nslots;
    while ((p->count + 1) * 10 >= n * 5) /* rehash to at most half full */
        n *= 2;
    aip_pending_entry **ns = aip_calloc(n, sizeof *ns);
    if (!ns)
        return AIP_E_NOMEM;
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i] && p->slots[i] != TOMBSTONE)
            slot_put(ns, n, p->slots[i]);
    aip_free(p->slots);
    p->slots = ns;
    p->nslots = n;
    p->tombstones = 0;
    return 0;
}

/* Room for one more heap entry (count < max is already checked). */
static int heap_reserve(aip_pending *p)
{
    if (p->count < p->heap_cap)
        return 0;
    size_t n = p->heap_cap * 2 > p->max ? p->max : p->heap_cap * 2;
    aip_pending_entry **h = aip_realloc(p->heap, p->heap_cap * sizeof *h, n * sizeof *h);
    if (!h)
        return AIP_E_NOMEM;
    p->heap = h;
    p->heap_cap = n;
    return 0;
}

static void remember(aip_pending *p, uint32_t h)
{
    p->recent[p->recent_pos] = h;
    p->recent_pos = (p->recent_pos + 1) % AIP_PENDING_RECENT;
}

/* Unlinks e from both structures (does not free it). */
static void unlink_entry(aip_pending *p, aip_pending_entry *e)
{
    size_t s = find_slot(p, (aip_pending_kind)e->kind, e->id, e->hash);
    if (s != SIZE_MAX) {
        p->slots[s] = TOMBSTONE;
        p->tombstones++;
    }
    heap_remove(p, e);
}

/* Drops every entry whose future a caller already completed (cancelled). O(n); runs only when
 * the table is full. */
static void purge_done(aip_pending *p)
{
    for (size_t i = 0; i < p->count;) {
        aip_pending_entry *e = p->heap[i];
        if (aip_future_done(e->f)) {
            remember(p, e->hash);
            unlink_entry(p, e);
            aip_pending_entry_free(e);
            continue; /* position i now holds another entry */
        }
        i++;
    }
}

int aip_pending_insert(aip_pending *p, aip_pending_kind kind, const char *id, uint64_t deadline_ns,
                       uint64_t link, aip_future *f)
{
    uint32_t h = key_hash(kind, id);
    size_t s = find_slot(p, kind, id, h);
    if (s != SIZE_MAX) {
        aip_pending_entry *old = p->slots[s];
        if (!aip_future_done(old->f))
            return AIP_E_DUPLICATE;
        remember(p, old->hash);
        unlink_entry(p, old);
        aip_pending_entry_free(old);
    }
    if (p->count >= p->max)
        purge_done(p);
    if (p->count >= p->max)
        return AIP_E_FULL;
    if (maybe_grow(p) || heap_reserve(p))
        return AIP_E_NOMEM;
    size_t idlen = strlen(id);
    aip_pending_entry *e = aip_malloc(sizeof *e + idlen + 1);
    if (!e)
        return AIP_E_NOMEM;
    memcpy(e->id, id, idlen + 1);
    e->f = f;
    aip_future_retain(f);
    e->deadline_ns = deadline_ns;
    e->link = link;
    e->hash = h;
    e->kind = (uint8_t)kind;
    slot_put(p->slots, p->nslots, e);
    heap_set(p, p->count, e);
    p->count++;
    sift_up(p, p->count - 1);
    return 0;
}

aip_pending_entry *aip_pending_take(aip_pending *p, aip_pending_kind kind, const char *id)
{
    uint32_t h = key_hash(kind, id);
    size_t s = find_slot(p, kind, id, h);
    if (s == SIZE_MAX)
        return NULL;
    aip_pending_entry *e = p->slots[s];
    unlink_entry(p, e);
    if (aip_future_done(e->f))
        remember(p, h);
    return e;
}

bool aip_pending_was_recent(const aip_pending *p, aip_pending_kind kind, const char *id)
{
    uint32_t h = key_hash(kind, id);
    for (size_t i = 0; i < AIP_PENDING_RECENT; i++)
        if (p->recent[i] == h)
            return true;
    return false;
}

uint64_t aip_pending_next_deadline(const aip_pending *p)
{
    return p->count ? p->heap[0]->deadline_ns : UINT64_MAX;
}

size_t aip_pending_pop_expired(aip_pending *p, uint64_t now_ns, aip_pending_entry **out, size_t max)
{
    size_t n = 0;
    while (n < max && p->count && p->heap[0]->deadline_ns <= now_ns) {
        aip_pending_entry *e = p->heap[0];
        unlink_entry(p, e);
        remember(p, e->hash);
        out[n++] = e;
    }
    return n;
}

size_t aip_pending_pop_all(aip_pending *p, aip_pending_entry **out, size_t max)
{
    size_t n = 0;
    while (n < max && p->count) {
        aip_pending_entry *e = p->heap[p->count - 1]; /* the last heap slot: no sifting */
        unlink_entry(p, e);
        remember(p, e->hash);
        out[n++] = e;
    }
    return n;
}
