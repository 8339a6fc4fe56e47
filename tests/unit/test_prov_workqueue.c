/*
 * test_prov_workqueue.c - the controller's keyed queue: a key queued once however often it is
 * added, never handed to two workers at once (re-queued after wq_done when added meanwhile),
 * delayed keys, exponential backoff with a cap, shutdown.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "workqueue.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_dedupe_and_order(void **state)
{
    struct workqueue *q = NULL;
    char *k = NULL;

    assert_int_equal(wq_new(10, 100, &q), 0);
    assert_int_equal(wq_add(q, "a"), 0);
    assert_int_equal(wq_add(q, "b"), 0);
    assert_int_equal(wq_add(q, "a"), 0);
    assert_int_equal(wq_len(q), 2);
    assert_int_equal(wq_get(q, &k), 0);
    assert_string_equal(k, "a");
    /* added while processing: not handed out again until done */
    assert_int_equal(wq_add(q, "a"), 0);
    {
        char *k2 = NULL;
        assert_int_equal(wq_get(q, &k2), 0);
        assert_string_equal(k2, "b");
        wq_done(q, k2);
        free(k2);
    }
    assert_int_equal(wq_len(q), 0);
    wq_done(q, k);
    free(k);
    assert_int_equal(wq_len(q), 1); /* "a" again, because it was added meanwhile */
    assert_int_equal(wq_get(q, &k), 0);
    assert_string_equal(k, "a");
    wq_done(q, k);
    free(k);
    wq_free(q);
}

static void test_delay(void **state)
{
    struct workqueue *q = NULL;
    long long t0 = now_ms();
    char *k = NULL;

    assert_int_equal(wq_new(10, 100, &q), 0);
    assert_int_equal(wq_add_after(q, "late", 150), 0);
    assert_int_equal(wq_add_after(q, "soon", 30), 0);
    assert_int_equal(wq_len(q), 2);
    assert_int_equal(wq_get(q, &k), 0);
    assert_string_equal(k, "soon");
    assert_true(now_ms() - t0 >= 29);
    wq_done(q, k);
    free(k);
    assert_int_equal(wq_get(q, &k), 0);
    assert_string_equal(k, "late");
    assert_true(now_ms() - t0 >= 149);
    wq_done(q, k);
    free(k);
    /* an immediate add overtakes a pending delay */
    assert_int_equal(wq_add_after(q, "x", 100000), 0);
    assert_int_equal(wq_add(q, "x"), 0);
    assert_int_equal(wq_len(q), 1);
    assert_int_equal(wq_get(q, &k), 0);
    assert_string_equal(k, "x");
    wq_done(q, k);
    free(k);
    assert_int_equal(wq_len(q), 0);
    wq_free(q);
}

static void test_backoff(void **state)
{
    struct workqueue *q = NULL;

    assert_int_equal(wq_new(10, 100, &q), 0);
    assert_int_equal(wq_backoff(q, "k"), 10);
    assert_int_equal(wq_backoff(q, "k"), 20);
    assert_int_equal(wq_backoff(q, "k"), 40);
    assert_int_equal(wq_backoff(q, "k"), 80);
    assert_int_equal(wq_backoff(q, "k"), 100);
    assert_int_equal(wq_backoff(q, "k"), 100);
    assert_int_equal(wq_backoff(q, "other"), 10);
    wq_forget(q, "k");
    assert_int_equal(wq_backoff(q, "k"), 10);
    wq_free(q);
}

static void test_many_keys_and_shutdown(void **state)
{
    struct workqueue *q = NULL;
    char key[32], *k = NULL;

    assert_int_equal(wq_new(0, 0, &q), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "c/ns/claim-%d", i);
        assert_int_equal(wq_add(q, key), 0);
    }
    assert_int_equal(wq_len(q), 5000);
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(wq_get(q, &k), 0);
        snprintf(key, sizeof(key), "c/ns/claim-%d", i);
        assert_string_equal(k, key); /* FIFO */
        wq_done(q, k);
        free(k);
    }
    wq_shutdown(q);
    assert_int_equal(wq_get(q, &k), -ESHUTDOWN);
    wq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedupe_and_order),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_many_keys_and_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
