/* SPDX-License-Identifier: MIT */
/* Shared cmocka helpers of the C tests (tests/unit and tests/integration).
 *
 * assert_aip(rc, AIP_E_...): rc must equal the expected AIP code (0 or a negative AIP_E_*). On
 * failure it prints both sides with their aip_strerror() text, e.g.
 *   rc = -7 (timed out), expected AIP_E_FULL = -13 (limit reached)
 * instead of cmocka's bare "0xfffffff9 != 0xfffffff3". Include it after <cmocka.h>.
 */
#ifndef AIP_TEST_ASSERT_H
#define AIP_TEST_ASSERT_H

#include <aip/common.h>

static inline void aip_test_assert_aip(long got, long want, const char *got_expr,
                                       const char *want_expr, const char *file, int line)
{
    if (got == want)
        return;
    print_error("%s = %ld (%s), expected %s = %ld (%s)\n", got_expr, got,
                got == 0 ? "ok" : aip_strerror((int)got), want_expr, want,
                want == 0 ? "ok" : aip_strerror((int)want));
    _fail(file, line);
}

#define assert_aip(rc, want) \
    aip_test_assert_aip((long)(rc), (long)(want), #rc, #want, __FILE__, __LINE__)

#endif
