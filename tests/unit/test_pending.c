/* SPDX-License-Identifier: MIT */
/* Unit tests: the pending-request table — keys, duplicates, bounds, deadline order,
 * lazy cleanup of cancelled entries, late-answer memory, growth. */
#include <aip/aip.h>
#include <aip/internal/pending.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdio.h>
#include <stdlib.h>

static void test_insert_take_by_kind_and_id(void **state)
{
    (void)state;
    aip_pending p;
    assert_int_equal(aip_pending_init(&p, 10), 0);
    aip_future *a = aip_future_create(), *b = aip_future_create();
    assert_int_equal(aip_pending_insert(&p, AIP_PENDING_TASK, "x", 100, 1, a), 0);
    /* same id, other kind: a different key */
    assert_int_equal(aip_pending_insert(&p, AIP_PENDING_DEVICE_INFO, "x", 50, 1, b), 0);
    assert_aip(aip_pending_insert(&p, AIP_PENDING_TASK, "x", 100, 1, b), AIP_E_DUPLICATE);
    assert_int_equal(aip_pending_count(&p), 2);
    assert_int_equal(aip_pending_next_deadline(&p), 50);
    aip_pending_entry *e = aip_pending_take(&p, AIP_PENDING_DEVICE_INFO, "x");
    assert_non_null(e);
    assert_ptr_equal(e->f, b);
    aip_pending_entry_free(e);
    assert_null(aip_pending_take(&p, AIP_PENDING_DEVICE_INFO, "x"));
    assert_int_equal(aip_pending_next_deadline(&p), 100);
    aip_future_release(a);
    aip_future_release(b);
    aip_pending_destroy(&p);
}

static void test_bound_and_cancelled_entries(void **state)
{
    (void)state;
    aip_pending p;
    aip_pending_init(&p, 3);
    aip_future *f[4];
    char id[16];
    for (int i = 0; i < 4; i++)
        f[i] = aip_future_create();
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "r%d", i);
        assert_int_equal(aip_pending_insert(&p, AIP_PENDING_TASK, id, 10 + (uint64_t)i, 1, f[i]),
                         0);
    }
    assert_aip(aip_pending_insert(&p, AIP_PENDING_TASK, "r3", 99, 1, f[3]), AIP_E_FULL);
    /* a caller cancels r1: its slot is reclaimed when needed, and r1 is remembered as recent */
    aip_future_cancel(f[1]);
    assert_int_equal(aip_pending_insert(&p, AIP_PENDING_TASK, "r3", 99, 1, f[3]), 0);
    assert_true(aip_pending_was_recent(&p, AIP_PENDING_TASK, "r1"));
    assert_false(aip_pending_was_recent(&p, AIP_PENDING_TASK, "never"));
    /* a cancelled entry's id can be reused at once */
    aip_future_cancel(f[0]);
    aip_future *g = aip_future_create();
    assert_int_equal(aip_pending_insert(&p, AIP_PENDING_TASK, "r0", 5, 1, g), 0);
    assert_int_equal(aip_pending_next_deadline(&p), 5);
    aip_pending_entry *all[2];
    size_t n = aip_pending_pop_all(&p, all, 2); /* in batches */
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        aip_pending_entry_free(all[i]);
    n = aip_pending_pop_all(&p, all, 2);
    assert_int_equal(n, 1);
    aip_pending_entry_free(all[0]);
    assert_int_equal(aip_pending_pop_all(&p, all, 2), 0);
    assert_int_equal(aip_pending_count(&p), 0);
    assert_int_equal(aip_pending_next_deadline(&p), UINT64_MAX);
    for (int i = 0; i < 4; i++)
        aip_future_release(f[i]);
    aip_future_release(g);
    aip_pending_destroy(&p);
}

static void test_expiry_in_deadline_order_with_random_removals(void **state)
{
    (void)state;
    enum { N = 5000 };
    aip_pending p;
    aip_pending_init(&p, N);
    aip_future *f = aip_future_create();
    uint64_t *dl = malloc(N * sizeof *dl);
    char id[32];
    srand(7);
    for (int i = 0; i < N; i++) {
        dl[i] = (uint64_t)(rand() % 100000);
        snprintf(id, sizeof id, "id-%d", i);
        assert_int_equal(aip_pending_insert(&p, AIP_PENDING_DEVICE_INFO, id, dl[i], 1, f), 0);
    }
    /* remove every third entry by id (answers), exercising heap removal in the middle */
    for (int i = 0; i < N; i += 3) {
        snprintf(id, sizeof id, "id-%d", i);
        aip_pending_entry *e = aip_pending_take(&p, AIP_PENDING_DEVICE_INFO, id);
        assert_non_null(e);
        assert_int_equal(e->deadline_ns, dl[i]);
        aip_pending_entry_free(e);
    }
    size_t left = aip_pending_count(&p);
    assert_int_equal(left, N - (N + 2) / 3);
    uint64_t last = 0, now = 0;
    size_t popped = 0;
    while (aip_pending_count(&p)) {
        now += 997;
        aip_pending_entry *v[64];
        size_t n;
        while ((n = aip_pending_pop_expired(&p, now, v, 64)) > 0) {
            for (size_t i = 0; i < n; i++) {
                assert_true(v[i]->deadline_ns <= now);
                assert_true(v[i]->deadline_ns >= last);
                last = v[i]->deadline_ns;
                aip_pending_entry_free(v[i]);
            }
            popped += n;
        }
        assert_true(aip_pending_next_deadline(&p) > now);
    }
    assert_int_equal(popped, left);
    free(dl);
    aip_future_release(f);
    aip_pending_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_take_by_kind_and_id),
        cmocka_unit_test(test_bound_and_cancelled_entries),
        cmocka_unit_test(test_expiry_in_deadline_order_with_random_removals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
