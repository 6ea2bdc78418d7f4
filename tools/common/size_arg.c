/* SPDX-License-Identifier: MIT */
/* Byte sizes on the command line (see size_arg.h). */
#include "size_arg.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

int tool_parse_size(const char *s, size_t min, size_t max, size_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
        if (*end && strcasecmp(end, "iB") != 0)
            return -1;
    }
    if (v > (SIZE_MAX >> shift))
        return -1;
    size_t n = (size_t)v << shift;
    if (n < min || n > max)
        return -1;
    *out = n;
    return 0;
}
