/* SPDX-License-Identifier: MIT */
/* A growable byte buffer with headroom (see aip/buf.h). Growth doubles, so appends are
 * amortised O(1); the limit makes every encoder's output bounded. */
#include "aip/buf.h"
#include "aip/common.h"

#include <string.h>

void aip_buf_init(aip_buf *b, size_t headroom)
{
    if (!b)
        return;
    memset(b, 0, sizeof *b);
    b->headroom = headroom;
}

void aip_buf_free(aip_buf *b)
{
    if (!b)
        return;
    if (b->data)
        aip_free(b->data - b->headroom);
    size_t h = b->headroom, l = b->limit;
    memset(b, 0, sizeof *b);
    b->headroom = h;
    b->limit = l;
}

void aip_buf_reset(aip_buf *b)
{
    if (b)
        b->len = 0;
}

int aip_buf_reserve(aip_buf *b, size_t extra)
{
    if (!b)
        return AIP_E_INVAL;
    if (extra > SIZE_MAX - b->len - 1)
        return AIP_E_NOMEM;
    size_t need = b->len + extra;
    if (b->limit && need > b->limit)
        return AIP_E_TOO_LARGE;
    if (need + 1 <= b->cap) /* +1 keeps room for aip_buf_nul() */
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need + 1)
        ncap = ncap > SIZE_MAX / 2 ? need + 1 : ncap * 2;
    uint8_t *base = b->data ? b->data - b->headroom : NULL;
    uint8_t *nb = aip_realloc(base, b->data ? b->headroom + b->cap : 0, b->headroom + ncap);
    if (!nb)
        return AIP_E_NOMEM;
    b->data = nb + b->headroom;
    b->cap = ncap;
    return 0;
}

int aip_buf_append(aip_buf *b, const void *p, size_t n)
{
    if (!p && n)
        return AIP_E_INVAL;
    int rc = aip_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int aip_buf_putc(aip_buf *b, char c)
{
    if (!b)
        return AIP_E_INVAL;
    if (b->len + 2 > b->cap || (b->limit && b->len + 1 > b->limit)) {
        int rc = aip_buf_reserve(b, 1);
        if (rc)
            return rc;
    }
    b->data[b->len++] = (uint8_t)c;
    return 0;
}

int aip_buf_puts(aip_buf *b, const char *s)
{
    if (!s)
        return AIP_E_INVAL;
    return aip_buf_append(b, s, strlen(s));
}

int aip_buf_nul(aip_buf *b)
{
    int rc = aip_buf_reserve(b, 0);
    if (rc)
        return rc;
    b->data[b->len] = 0;
    return 0;
}

uint8_t *aip_buf_steal(aip_buf *b)
{
    if (!b)
        return NULL;
    uint8_t *p = b->data ? b->data - b->headroom : NULL;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
