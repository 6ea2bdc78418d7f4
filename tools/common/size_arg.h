/* SPDX-License-Identifier: MIT */
/* Byte sizes on the command line of the tools: "1048576", "512K", "1M", "2G" (also "KiB",
 * "MiB", "GiB"; binary multiples, case-insensitive). */
#ifndef AIP_TOOLS_SIZE_ARG_H
#define AIP_TOOLS_SIZE_ARG_H

#include <stddef.h>

/* Parses s into *out, which must fall in [min, max]. Returns 0, or -1 (*out untouched). */
int tool_parse_size(const char *s, size_t min, size_t max, size_t *out);

#endif
