/*
 * metrics.h - a small Prometheus metrics registry: counters, gauges and histograms with fixed
 * label sets, rendered in the text exposition format 0.0.4 for the /metrics endpoint
 * (http_server.h).
 *
 * Why our own: the format is a page of rules (HELP/TYPE lines, label escaping, cumulative
 * histogram buckets ending in le="+Inf", _sum and _count), and the C client libraries are not
 * in Debian. What matters for a daemon that runs for months is that the series cannot grow
 * without bound: every family has a maximum number of label combinations (series); an
 * observation that would create one more is dropped and counted in
 * ordinal_metrics_series_dropped_total (the family is named in a debug log line), so a bug or
 * a hostile cluster costs a counter, not memory. Label values are bounded in length too.
 *
 * Threading: one mutex per registry. Updates (from workers, the agent's main loop) and the
 * rendering (from the HTTP server's thread) take it briefly; nothing blocking runs under it.
 * Collectors (functions that refresh gauges at scrape time, such as the process metrics) run
 * before the rendering, outside the lock, in the scraping thread.
 *
 * Every update function accepts a NULL family and does nothing, so that code paths can update
 * metrics unconditionally and a program started without --metrics-address pays nothing.
 */
#ifndef ORDINAL_METRICS_H
#define ORDINAL_METRICS_H

#include <stddef.h>

#include "macro.h"

#define METRIC_LABELS_MAX      6    /* label names per family */
#define METRIC_LABEL_VALUE_MAX 253  /* bytes: a DNS subdomain, the longest Kubernetes name */
#define METRIC_SERIES_DEFAULT  4096 /* label combinations per family unless said otherwise */
#define METRIC_BUCKETS_MAX     32
#define METRICS_RENDER_MAX     (16u << 20) /* a scrape larger than this is refused */

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
};

struct metrics;
struct metric;

/* Creates an empty registry. Returns 0 or -ENOMEM. */
int metrics_new(struct metrics **ret);

/* Frees the registry and its families. NULL is fine. */
void metrics_free(struct metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct metrics *, metrics_free)

/*
 * Registers a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*, each label [a-zA-Z_][a-zA-Z0-9_]*
 * (not starting with "__", not "le" for a histogram); labels is NULL-terminated (NULL for
 * none), at most METRIC_LABELS_MAX. help is one sentence (escaped on output). The strings are
 * borrowed and must outlive the registry (string literals). max_series 0 means
 * METRIC_SERIES_DEFAULT. Histograms take their upper bounds, strictly increasing and finite
 * (+Inf is implicit), at most METRIC_BUCKETS_MAX; other types pass NULL, 0.
 * Returns 0 with *ret (owned by the registry), -EINVAL for a bad definition, -EEXIST for a
 * name registered already, -ENOMEM.
 */
int metrics_register(struct metrics *m, enum metric_type type, const char *name, const char *help,
                     const char *const *labels, const double *bounds, size_t n_bounds,
                     size_t max_series, struct metric **ret);

/*
 * Updates the series whose label values are `values` (as many as the family has labels, in
 * order; NULL when it has none). A series is created at its first update.
 * metric_add: counters (v >= 0) and gauges. metric_set: gauges, and counters that mirror a
 * counter kept elsewhere (the kernel's CPU time). metric_observe: histograms.
 * Returns 0; -EINVAL for a wrong type, a negative counter increment, a NaN, a missing label
 * value or one longer than METRIC_LABEL_VALUE_MAX bytes; -E2BIG when the family
 * has max_series series already (the update is dropped and counted); -ENOMEM.
 * A NULL family returns 0 and does nothing.
 */
int metric_add(struct metric *f, const char *const *values, double v);
int metric_set(struct metric *f, const char *const *values, double v);
int metric_observe(struct metric *f, const char *const *values, double v);

/* Drops one series (a volume that is gone), or every series of the family. */
void metric_remove(struct metric *f, const char *const *values);
void metric_clear(struct metric *f);

/* The value of a counter or gauge series, or the count of a histogram's (tests). -1 if none. */
double metric_value(struct metric *f, const char *const *values);

/*
 * Adds a function called at the start of every metrics_render(), outside the registry's lock,
 * to refresh gauges from their sources (process metrics, free space). At most 8.
 * Returns 0 or -ENOSPC.
 */
int metrics_add_collector(struct metrics *m, void (*fn)(void *ud), void *ud);

/*
 * Renders every family in registration order in the text format 0.0.4: "# HELP", "# TYPE",
 * then one line per series (histograms: cumulative _bucket lines ending with le="+Inf", then
 * _sum and _count). Returns 0 with *ret (malloc'ed, NUL-terminated) and *ret_len, -EFBIG over
 * METRICS_RENDER_MAX, -ENOMEM.
 */
int metrics_render(struct metrics *m, char **ret, size_t *ret_len);

/*
 * Registers the process_* metrics the Prometheus client libraries export (resident and virtual
 * memory, CPU seconds, open and maximum file descriptors, start time), read from /proc/self at
 * scrape time. Returns 0 or a negative errno.
 */
int metrics_register_process(struct metrics *m);

/*
 * A bounded label value for a negative errno: "not_found", "permission_denied", "no_space",
 * "timeout", "unreachable", ... "other". Never NULL; the set is fixed (docs/operations.md).
 */
const char *metrics_errno_reason(int code);

/*
 * Default histogram bounds: latencies of API calls and provisioning in seconds (1 ms .. 30 s),
 * and durations of backups and restores in seconds (1 s .. 24 h).
 */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_bounds_n;
extern const double metrics_duration_bounds[];
extern const size_t metrics_duration_bounds_n;

#endif
