/* SPDX-License-Identifier: MIT */
/*
 * A string-keyed hash map (open addressing, linear probing, tombstones) for the test server's
 * registries: clients by client_id, tasks by session_id, commands by response_id. Keys are
 * copied; values are borrowed pointers. Single-threaded (the server's service thread).
 */
#ifndef AIP_STRMAP_H
#define AIP_STRMAP_H

#include <stddef.h>

typedef struct strmap_slot {
    char *key; /* NULL: empty; STRMAP_TOMB: deleted */
    void *val;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap, count, tombs;
} strmap;

void strmap_init(strmap *m);
void strmap_free(strmap *m);
void *strmap_get(const strmap *m, const char *key);
/* Inserts or replaces; returns 0 or -1 on out of memory. */
int strmap_put(strmap *m, const char *key, void *val);
/* Removes and returns the value (NULL when absent). */
void *strmap_del(strmap *m, const char *key);

/* Iteration: for (size_t i = 0; strmap_next(m, &i, &k, &v);) ... (do not modify while iterating,
 * except through strmap_del of the current key, which is safe). */
int strmap_next(const strmap *m, size_t *i, const char **key, void **val);

#endif
