/* SPDX-License-Identifier: MIT */
/*
 * aip/buf.h — a growable byte buffer with optional headroom.
 *
 * Encoders write into an aip_buf. `headroom` bytes are reserved in front of `data` so a frame
 * can be handed to libwebsockets (which needs LWS_PRE bytes before the payload) without a copy:
 * the allocation starts at data - headroom. Not thread-safe; one owner at a time.
 *
 * NULL: a NULL b makes the int functions return AIP_E_INVAL, steal() NULL, and init/free/reset
 * do nothing; a NULL p with n > 0 (or a NULL s) is AIP_E_INVAL.
 */
#ifndef AIP_BUF_H
#define AIP_BUF_H

#include "aip/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_buf {
    uint8_t *data;   /* payload start; NULL until the first write */
    size_t len;      /* payload bytes written */
    size_t cap;      /* payload capacity (not counting headroom) */
    size_t headroom; /* bytes reserved before data */
    size_t limit;    /* 0 = none; a write that would pass it fails with AIP_E_TOO_LARGE */
} aip_buf;

AIP_API void aip_buf_init(aip_buf *b, size_t headroom);
AIP_API void aip_buf_free(aip_buf *b);
AIP_API void aip_buf_reset(aip_buf *b); /* len = 0, keeps memory */
AIP_API int aip_buf_reserve(aip_buf *b, size_t extra);
AIP_API int aip_buf_append(aip_buf *b, const void *p, size_t n);
AIP_API int aip_buf_putc(aip_buf *b, char c);
AIP_API int aip_buf_puts(aip_buf *b, const char *s);
/* Appends a NUL after the payload without counting it in len. */
AIP_API int aip_buf_nul(aip_buf *b);
/* Hands the allocation to the caller: returns the start of the allocation (data - headroom)
 * and leaves b empty. Free it with aip_free(). */
AIP_API uint8_t *aip_buf_steal(aip_buf *b);

#ifdef __cplusplus
}
#endif
#endif /* AIP_BUF_H */
