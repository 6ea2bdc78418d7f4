/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/hex.h — hexadecimal digits of JSON \uXXXX escapes (not installed).
 *
 * Shared by the JSON scanner (jscan.c, on every decode's hot path: hence inline) and the
 * redactor's key unescaping (redact.c). Pure functions, no state: any thread.
 */
#ifndef AIP_INTERNAL_HEX_H
#define AIP_INTERNAL_HEX_H

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
static inline int aip_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The value of the four hex digits at p (the XXXX of \uXXXX), or -1 when fewer than four
 * bytes lie before e or one of them is not a hex digit. */
static inline long aip_hex4(const char *p, const char *e)
{
    if (e - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = aip_hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

#endif
