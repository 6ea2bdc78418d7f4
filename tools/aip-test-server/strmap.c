/* SPDX-License-Identifier: MIT */
/* String-keyed hash map (see strmap.h). */
#include "strmap.h"

#include <aip/common.h>

#include <stdint.h>
#include <string.h>

static char tomb_marker;
#define STRMAP_TOMB (&tomb_marker)

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void strmap_init(strmap *m)
{
    memset(m, 0, sizeof *m);
}

void strmap_free(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != STRMAP_TOMB)
            aip_free(m->slots[i].key);
    aip_free(m->slots);
    memset(m, 0, sizeof *m);
}

static size_t find(const strmap *m, const char *key)
{
    if (!m->cap)
        return SIZE_MAX;
    size_t mask = m->cap - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
        const char *k = m->slots[i].key;
        if (!k)
            return SIZE_MAX;
        if (k != STRMAP_TOMB && strcmp(k, key) == 0)
            return i;
    }
}

void *strmap_get(const strmap *m, const char *key)
{
    size_t i = find(m, key);
    return i == SIZE_MAX ? NULL : m->slots[i].val;
}

static int grow(strmap *m)
{
    size_t ncap = m->cap ? m->cap : 16;
    while ((m->count + 1) * 2 > ncap)
        ncap *= 2;
    strmap_slot *ns = aip_calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        char *k = m->slots[i].key;
        if (!k || k == STRMAP_TOMB)
            continue;
        size_t j = hash(k) & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    aip_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->tombs = 0;
    return 0;
}

int strmap_put(strmap *m, const char *key, void *val)
{
    size_t i = find(m, key);
    if (i != SIZE_MAX) {
        m->slots[i].val = val;
        return 0;
    }
    if ((m->count + m->tombs + 1) * 10 >= m->cap * 7 && grow(m))
        return -1;
    char *k = aip_strdup(key);
    if (!k)
        return -1;
    size_t mask = m->cap - 1;
    for (i = hash(key) & mask; m->slots[i].key && m->slots[i].key != STRMAP_TOMB;
         i = (i + 1) & mask)
        ;
    if (m->slots[i].key == STRMAP_TOMB)
        m->tombs--;
    m->slots[i].key = k;
    m->slots[i].val = val;
    m->count++;
    return 0;
}

void *strmap_del(strmap *m, const char *key)
{
    size_t i = find(m, key);
    if (i == SIZE_MAX)
        return NULL;
    void *v = m->slots[i].val;
    aip_free(m->slots[i].key);
    m->slots[i].key = STRMAP_TOMB;
    m->slots[i].val = NULL;
    m->count--;
    m->tombs++;
    return v;
}

int strmap_next(const strmap *m, size_t *i, const char **key, void **val)
{
    for (; *i < m->cap; (*i)++) {
        const char *k = m->slots[*i].key;
        if (k && k != STRMAP_TOMB) {
            *key = k;
            *val = m->slots[*i].val;
            (*i)++;
            return 1;
        }
    }
    return 0;
}
