/*
 * test_prov_reservation.c - the ledger's reservations (capacity.h): what an abandoned attempt
 * gives back, and that a PV's promise is never given back with it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"

#define MI (1024ULL * 1024)

/* A transient create failure, then the claim goes: the space comes back, once. */
static void test_abandoned_reservation_is_released_once(void **state)
{
    struct cap_ledger *l;
    ord_err e = {0};

    (void)state;
    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_reserve(l, "pvc-a", 1, 8 * MI, 6 * MI, "/r/a", "/r", &e), 0);
    assert_true(cap_ledger_is_reserved(l, "pvc-a"));
    assert_int_equal(cap_ledger_reserve(l, "pvc-b", 1, 8 * MI, 6 * MI, "/r/b", "/r", &e),
                     -ENOSPC);
    assert_true(cap_ledger_unreserve(l, "pvc-a"));
    assert_false(cap_ledger_unreserve(l, "pvc-a"));
    assert_false(cap_ledger_is_reserved(l, "pvc-a"));
    assert_false(cap_ledger_has_path(l, "/r/a", NULL));
    assert_int_equal(cap_ledger_reserve(l, "pvc-b", 1, 8 * MI, 6 * MI, "/r/b", "/r", &e), 0);
    cap_ledger_free(l);
}

/* Once the PV is seen the promise is the PV's: unreserve (abort, sweep) leaves it alone. */
static void test_pv_promise_is_never_unreserved(void **state)
{
    struct cap_ledger *l;
    ord_err e = {0};

    (void)state;
    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_reserve(l, "pvc-a", 1, 8 * MI, 6 * MI, "/r/a", "/r", &e), 0);
    assert_int_equal(cap_ledger_set_pv(l, "pvc-a", 1, 6 * MI, "/r/a"), 0);
    assert_false(cap_ledger_is_reserved(l, "pvc-a"));
    assert_false(cap_ledger_unreserve(l, "pvc-a"));
    assert_int_equal(cap_ledger_promised(l, 1, NULL), 6 * MI);
    /* a retried attempt that re-reserves does not turn it back into a reservation */
    assert_int_equal(cap_ledger_reserve(l, "pvc-a", 1, 8 * MI, 6 * MI, "/r/a", "/r", &e), 0);
    assert_int_equal(cap_ledger_set(l, "pvc-a", 1, 6 * MI, NULL), 0);
    assert_false(cap_ledger_unreserve(l, "pvc-a"));
    assert_int_equal(cap_ledger_promised(l, 1, NULL), 6 * MI);
    /* the PV gone: remove forgets it */
    cap_ledger_remove(l, "pvc-a");
    assert_int_equal(cap_ledger_promised(l, 1, NULL), 0);
    cap_ledger_free(l);
}

static void test_reservations_lists_only_reservations(void **state)
{
    struct cap_ledger *l;
    char **names = NULL;
    size_t n = 99;
    ord_err e = {0};

    (void)state;
    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_reservations(l, &names, &n), 0);
    assert_int_equal(n, 0);
    free(names);
    assert_int_equal(cap_ledger_set_pv(l, "pvc-pv", 1, MI, "/r/pv"), 0);
    assert_int_equal(cap_ledger_reserve(l, "pvc-r", 1, 8 * MI, MI, "/r/r", "/r", &e), 0);
    assert_int_equal(cap_ledger_set(l, "pvc-dev", 0, 0, "/r/dev"), 0); /* device backend's */
    assert_int_equal(cap_ledger_reservations(l, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_true((strcmp(names[0], "pvc-r") == 0 && strcmp(names[1], "pvc-dev") == 0) ||
                (strcmp(names[1], "pvc-r") == 0 && strcmp(names[0], "pvc-dev") == 0));
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    cap_ledger_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abandoned_reservation_is_released_once),
        cmocka_unit_test(test_pv_promise_is_never_unreserved),
        cmocka_unit_test(test_reservations_lists_only_reservations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
