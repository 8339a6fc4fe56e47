/*
 * test_prov_capacity.c - the capacity ledger: free space minus what was promised on the same
 * filesystem, per filesystem, with the message a person reads when a request does not fit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "capacity.h"

#define MI (1024ull * 1024ull)
#define GI (1024ull * MI)

static void test_reserve_and_refuse(void **state)
{
    struct cap_ledger *l = NULL;
    ord_err e = {0};
    size_t n;

    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_reserve(l, "pv-1", 1, 10 * GI, 4 * GI, "/a/1", "/root", &e), 0);
    assert_int_equal(cap_ledger_reserve(l, "pv-2", 1, 10 * GI, 6 * GI, "/a/2", "/root", &e), 0);
    assert_int_equal(cap_ledger_promised(l, 1, &n), 10 * GI);
    assert_int_equal(n, 2);
    assert_int_equal(cap_ledger_reserve(l, "pv-3", 1, 10 * GI, 1, "/a/3", "/root", &e), -ENOSPC);
    assert_string_equal(e.msg, "requested 1 but only 0 is available in '/root' (10Gi free minus "
                               "10Gi promised to 2 volumes); request less, free space on the "
                               "node, or let the claim go to another node");
    /* another filesystem has its own account */
    assert_int_equal(cap_ledger_reserve(l, "pv-3", 2, 1 * GI, 1 * GI, "/b/3", "/other", &e), 0);
    assert_int_equal(cap_ledger_promised(l, 2, &n), 1 * GI);
    assert_int_equal(n, 1);
    /* sizes that no suffix divides are shown rounded, for people */
    assert_int_equal(
        cap_ledger_reserve(l, "pv-4", 3, 15 * MI + 900 * 1024, 100 * MI, "/c/4", "/small", &e),
        -ENOSPC);
    assert_string_equal(e.msg, "requested 100Mi but only 15.9Mi is available in '/small' (15.9Mi "
                               "free minus 0 promised to 0 volumes); request less, free space on "
                               "the node, or let the claim go to another node");
    cap_ledger_free(l);
}

static void test_rereserve_replaces(void **state)
{
    struct cap_ledger *l = NULL;
    ord_err e = {0};

    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_reserve(l, "pv-1", 1, 1 * GI, 1 * GI, "/a", "/r", &e), 0);
    /* the same volume retried does not count against itself */
    assert_int_equal(cap_ledger_reserve(l, "pv-1", 1, 1 * GI, 1 * GI, "/a", "/r", &e), 0);
    assert_int_equal(cap_ledger_promised(l, 1, NULL), 1 * GI);
    cap_ledger_remove(l, "pv-1");
    assert_int_equal(cap_ledger_promised(l, 1, NULL), 0);
    cap_ledger_remove(l, "unknown");
    cap_ledger_free(l);
}

static void test_set_and_paths(void **state)
{
    struct cap_ledger *l = NULL;
    char name[32];

    assert_int_equal(cap_ledger_new(&l), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "pv-%d", i);
        assert_int_equal(cap_ledger_set(l, name, 7, 100 * MI, name), 0);
    }
    assert_int_equal(cap_ledger_promised(l, 7, NULL), 1000 * 100 * MI);
    assert_true(cap_ledger_has_path(l, "pv-500", NULL));
    assert_false(cap_ledger_has_path(l, "pv-500", "pv-500"));
    assert_false(cap_ledger_has_path(l, "nowhere", NULL));
    /* an update without a path keeps the old one */
    assert_int_equal(cap_ledger_set(l, "pv-1", 7, 1, NULL), 0);
    assert_true(cap_ledger_has_path(l, "pv-1", NULL));
    cap_ledger_free(l);
}

static void test_overflow_saturates(void **state)
{
    struct cap_ledger *l = NULL;
    ord_err e = {0};

    assert_int_equal(cap_ledger_new(&l), 0);
    assert_int_equal(cap_ledger_set(l, "a", 1, UINT64_MAX - 1, NULL), 0);
    assert_int_equal(cap_ledger_set(l, "b", 1, 10, NULL), 0);
    assert_int_equal(cap_ledger_promised(l, 1, NULL), UINT64_MAX);
    assert_int_equal(cap_ledger_reserve(l, "c", 1, UINT64_MAX, 1, NULL, "/r", &e), -ENOSPC);
    cap_ledger_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_and_refuse),
        cmocka_unit_test(test_rereserve_replaces),
        cmocka_unit_test(test_set_and_paths),
        cmocka_unit_test(test_overflow_saturates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
