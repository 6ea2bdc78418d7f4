/* SPDX-License-Identifier: MIT */
/* The allocator seam: libaip's own allocations go through here (see aip/common.h). */
#include "aip/common.h"

#include <stdlib.h>
#include <string.h>

static aip_allocator g_alloc = {malloc, realloc, free};

void aip_set_allocator(const aip_allocator *a)
{
    g_alloc.malloc_fn = (a && a->malloc_fn) ? a->malloc_fn : malloc;
    g_alloc.free_fn = (a && a->free_fn) ? a->free_fn : free;
    if (a && a->malloc_fn)
        g_alloc.realloc_fn = a->realloc_fn; /* may be NULL: emulated below */
    else
        g_alloc.realloc_fn = realloc;
}

void *aip_malloc(size_t size)
{
    return g_alloc.malloc_fn(size ? size : 1);
}

void *aip_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    /* the default allocator: calloc leaves fresh zero pages untouched (RSS) */
    if (g_alloc.malloc_fn == malloc && g_alloc.free_fn == free)
        return calloc(n ? n : 1, size ? size : 1);
    void *p = aip_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *aip_realloc(void *ptr, size_t old_size, size_t new_size)
{
    if (g_alloc.realloc_fn)
        return g_alloc.realloc_fn(ptr, new_size ? new_size : 1);
    void *p = aip_malloc(new_size);
    if (!p)
        return NULL;
    if (ptr) {
        memcpy(p, ptr, old_size < new_size ? old_size : new_size);
        g_alloc.free_fn(ptr);
    }
    return p;
}

void aip_free(void *ptr)
{
    if (ptr)
        g_alloc.free_fn(ptr);
}

char *aip_strndup(const char *s, size_t n)
{
    if (!s || n == SIZE_MAX)
        return NULL;
    char *p = aip_malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *aip_strdup(const char *s)
{
    return s ? aip_strndup(s, strlen(s)) : NULL;
}
