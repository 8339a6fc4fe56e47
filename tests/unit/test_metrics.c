/*
 * test_metrics.c - the registry renders the Prometheus text format 0.0.4 by its rules: HELP and
 * TYPE before the samples, escaping of backslash, double quote and newline in label values
 * (backslash and newline in HELP), cumulative histogram buckets ending in le="+Inf" equal to
 * _count, _sum; bad definitions and updates are refused, and the series of a family are
 * bounded (the overflow is counted, not stored).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

/* cmocka 1.1 has no assert_double_equal; the values compared here are exact. */
#define assert_double_equal(a, b, eps) assert_true((a) == (b))

static char *render(struct metrics *m)
{
    char *text = NULL;
    size_t len = 0;

    assert_int_equal(metrics_render(m, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Fails unless needle occurs in text as a whole line. */
static void assert_line(const char *text, const char *needle)
{
    size_t n = strlen(needle);

    for (const char *p = text; (p = strstr(p, needle)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("line '%s' missing in:\n%s", needle, text);
}

static void test_counter_and_gauge(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    struct metric *c, *g;
    char *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "ordinal_things_total", "Things done.",
                                      (const char *const[]){"result", "reason", NULL}, NULL, 0, 0,
                                      &c),
                     0);
    assert_int_equal(metrics_register(m, METRIC_GAUGE, "ordinal_free_bytes", "Free bytes.", NULL,
                                      NULL, 0, 0, &g),
                     0);
    assert_int_equal(metric_add(c, (const char *const[]){"success", "created"}, 1), 0);
    assert_int_equal(metric_add(c, (const char *const[]){"success", "created"}, 2), 0);
    assert_int_equal(metric_add(c, (const char *const[]){"failure", "no_space"}, 1), 0);
    assert_int_equal(metric_set(g, NULL, 1073741824.0), 0);
    assert_int_equal(metric_add(g, NULL, -24.0), 0);
    text = render(m);
    assert_line(text, "# HELP ordinal_things_total Things done.");
    assert_line(text, "# TYPE ordinal_things_total counter");
    assert_line(text, "ordinal_things_total{result=\"success\",reason=\"created\"} 3");
    assert_line(text, "ordinal_things_total{result=\"failure\",reason=\"no_space\"} 1");
    assert_line(text, "# TYPE ordinal_free_bytes gauge");
    assert_line(text, "ordinal_free_bytes 1073741800");
    /* HELP and TYPE come before the family's first sample. */
    assert_true(strstr(text, "# TYPE ordinal_things_total") < strstr(text, "ordinal_things_total{"));
    assert_double_equal(metric_value(c, (const char *const[]){"success", "created"}), 3, 0);
    free(text);
}

static void test_escaping(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    struct metric *g;
    char *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_GAUGE, "ordinal_x", "A \\ backslash,\nnewline \"q\".",
                                      (const char *const[]){"template", NULL}, NULL, 0, 0, &g),
                     0);
    assert_int_equal(metric_set(g, (const char *const[]){"a\\b\"c\nd"}, 1), 0);
    text = render(m);
    /* HELP escapes backslash and newline only; label values also the double quote. */
    assert_line(text, "# HELP ordinal_x A \\\\ backslash,\\nnewline \"q\".");
    assert_line(text, "ordinal_x{template=\"a\\\\b\\\"c\\nd\"} 1");
    free(text);
}

static void test_histogram(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    const double bounds[] = {0.005, 0.1, 1};
    struct metric *h;
    char *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "ordinal_latency_seconds", "Latency.",
                                      (const char *const[]){"verb", NULL}, bounds, 3, 0, &h),
                     0);
    assert_int_equal(metric_observe(h, (const char *const[]){"GET"}, 0.005), 0); /* le is <= */
    assert_int_equal(metric_observe(h, (const char *const[]){"GET"}, 0.05), 0);
    assert_int_equal(metric_observe(h, (const char *const[]){"GET"}, 0.07), 0);
    assert_int_equal(metric_observe(h, (const char *const[]){"GET"}, 7), 0);
    text = render(m);
    assert_line(text, "# TYPE ordinal_latency_seconds histogram");
    assert_line(text, "ordinal_latency_seconds_bucket{verb=\"GET\",le=\"0.005\"} 1");
    assert_line(text, "ordinal_latency_seconds_bucket{verb=\"GET\",le=\"0.1\"} 3");
    assert_line(text, "ordinal_latency_seconds_bucket{verb=\"GET\",le=\"1\"} 3");
    assert_line(text, "ordinal_latency_seconds_bucket{verb=\"GET\",le=\"+Inf\"} 4");
    assert_line(text, "ordinal_latency_seconds_sum{verb=\"GET\"} 7.125");
    assert_line(text, "ordinal_latency_seconds_count{verb=\"GET\"} 4");
    /* Buckets in increasing order, +Inf last, then _sum and _count. */
    assert_true(strstr(text, "le=\"0.005\"") < strstr(text, "le=\"0.1\""));
    assert_true(strstr(text, "le=\"1\"") < strstr(text, "le=\"+Inf\""));
    assert_true(strstr(text, "le=\"+Inf\"") < strstr(text, "_sum{"));
    assert_true(strstr(text, "_sum{") < strstr(text, "_count{"));
    free(text);
}

static void test_histogram_without_labels(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    const double bounds[] = {1};
    struct metric *h;
    char *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "ordinal_d_seconds", "D.", NULL,
                                      bounds, 1, 0, &h),
                     0);
    assert_int_equal(metric_observe(h, NULL, 2), 0);
    text = render(m);
    assert_line(text, "ordinal_d_seconds_bucket{le=\"1\"} 0");
    assert_line(text, "ordinal_d_seconds_bucket{le=\"+Inf\"} 1");
    assert_line(text, "ordinal_d_seconds_sum 2");
    assert_line(text, "ordinal_d_seconds_count 1");
    free(text);
}

static void test_refused(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    const double good[] = {1, 2}, bad[] = {2, 1}, inf[] = {1, INFINITY};
    struct metric *c, *h;
    char longv[METRIC_LABEL_VALUE_MAX + 2];

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "9bad", "x", NULL, NULL, 0, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "a-b", "x", NULL, NULL, 0, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "ok", "x",
                                      (const char *const[]){"__reserved", NULL}, NULL, 0, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "ok", "x",
                                      (const char *const[]){"a", "a", NULL}, NULL, 0, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "h", "x",
                                      (const char *const[]){"le", NULL}, good, 2, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "h", "x", NULL, bad, 2, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "h", "x", NULL, inf, 2, 0, NULL),
                     -EINVAL);
    assert_int_equal(metrics_register(m, METRIC_HISTOGRAM, "h", "x", NULL, good, 2, 0, &h), 0);
    assert_int_equal(metrics_register(m, METRIC_GAUGE, "h", "x", NULL, NULL, 0, 0, NULL),
                     -EEXIST);
    assert_int_equal(metrics_register(m, METRIC_COUNTER, "c_total", "x",
                                      (const char *const[]){"verb", NULL}, NULL, 0, 0, &c),
                     0);
    assert_int_equal(metric_add(c, (const char *const[]){"GET"}, -1), -EINVAL);
    assert_int_equal(metric_add(c, (const char *const[]){"GET"}, NAN), -EINVAL);
    assert_int_equal(metric_observe(c, (const char *const[]){"GET"}, 1), -EINVAL);
    assert_int_equal(metric_add(h, NULL, 1), -EINVAL);
    assert_int_equal(metric_add(c, NULL, 1), -EINVAL);
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    assert_int_equal(metric_add(c, (const char *const[]){longv}, 1), -EINVAL);
    /* A NULL family (metrics off) is a no-op. */
    assert_int_equal(metric_add(NULL, NULL, 1), 0);
    assert_int_equal(metric_observe(NULL, NULL, 1), 0);
}

static void test_cardinality_bounded(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    struct metric *g;
    char name[32], *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_GAUGE, "ordinal_v", "V.",
                                      (const char *const[]){"ordinal", NULL}, NULL, 0, 3, &g),
                     0);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "%d", i);
        assert_int_equal(metric_set(g, (const char *const[]){name}, i), i < 3 ? 0 : -E2BIG);
    }
    /* Existing series still update when the family is full. */
    assert_int_equal(metric_set(g, (const char *const[]){"0"}, 10), 0);
    text = render(m);
    assert_line(text, "ordinal_v{ordinal=\"0\"} 10");
    assert_null(strstr(text, "ordinal_v{ordinal=\"3\"}"));
    assert_line(text, "ordinal_metrics_series_dropped_total 2");
    free(text);
    /* Removing a series makes room again. */
    metric_remove(g, (const char *const[]){"1"});
    assert_int_equal(metric_set(g, (const char *const[]){"4"}, 4), 0);
    assert_double_equal(metric_value(g, (const char *const[]){"1"}), -1, 0);
    metric_clear(g);
    assert_double_equal(metric_value(g, (const char *const[]){"4"}), -1, 0);
}

static void test_values(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    struct metric *g;
    char *text;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register(m, METRIC_GAUGE, "g", "G.",
                                      (const char *const[]){"k", NULL}, NULL, 0, 0, &g),
                     0);
    metric_set(g, (const char *const[]){"inf"}, INFINITY);
    metric_set(g, (const char *const[]){"ninf"}, -INFINITY);
    metric_set(g, (const char *const[]){"frac"}, 0.1);
    metric_set(g, (const char *const[]){"time"}, 1764870000.25);
    metric_set(g, (const char *const[]){"big"}, 18446744073709551616.0);
    text = render(m);
    assert_line(text, "g{k=\"inf\"} +Inf");
    assert_line(text, "g{k=\"ninf\"} -Inf");
    assert_line(text, "g{k=\"frac\"} 0.1");
    assert_line(text, "g{k=\"time\"} 1764870000.25");
    assert_line(text, "g{k=\"big\"} 1.8446744073709552e+19");
    free(text);
}

static void test_process_metrics(void **state)
{
    _cleanup_(metrics_freep) struct metrics *m = NULL;
    char *text, *p;
    double rss;

    assert_int_equal(metrics_new(&m), 0);
    assert_int_equal(metrics_register_process(m), 0);
    text = render(m);
    assert_line(text, "# TYPE process_cpu_seconds_total counter");
    assert_line(text, "# TYPE process_resident_memory_bytes gauge");
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_non_null(strstr(text, "\nprocess_start_time_seconds "));
    p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    rss = strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL);
    assert_true(rss > 4096); /* this test's own memory, in bytes not pages */
    free(text);
}

static void test_reasons(void **state)
{
    assert_string_equal(metrics_errno_reason(-ENOSPC), "no_space");
    assert_string_equal(metrics_errno_reason(-EPERM), "permission_denied");
    assert_string_equal(metrics_errno_reason(-ENOENT), "not_found");
    assert_string_equal(metrics_errno_reason(-12345), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_without_labels),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_cardinality_bounded),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
