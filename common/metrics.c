/*
 * metrics.c - the metrics registry and its text exposition (see metrics.h).
 *
 * A family keeps its series in an array searched linearly: the families of ordinal hold a few
 * series (per verb, per reason) or one per volume of a node (hundreds), and updates come at
 * the pace of provisioning and backups, so a hash table would buy nothing measurable. Each
 * series is one allocation: the struct, then its label values, then (histograms) its bucket
 * counts. Bucket counts are kept per bucket and made cumulative when rendered.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define COLLECTORS_MAX 8

struct series {
    char *values[METRIC_LABELS_MAX];
    double value;     /* counter, gauge; histogram: sum */
    uint64_t count;   /* histogram: observations */
    uint64_t *bucket; /* histogram: per bucket (not cumulative), n_bounds entries */
};

struct metric {
    struct metrics *reg;
    enum metric_type type;
    const char *name, *help;
    const char *labels[METRIC_LABELS_MAX];
    size_t n_labels;
    double bounds[METRIC_BUCKETS_MAX];
    size_t n_bounds;
    size_t max_series;
    struct series **series;
    size_t n_series, cap_series;
};

struct metrics {
    pthread_mutex_t mu;
    struct metric **fam;
    size_t n_fam;
    struct metric *dropped; /* ordinal_metrics_series_dropped_total */
    struct {
        void (*fn)(void *ud);
        void *ud;
    } coll[COLLECTORS_MAX];
    size_t n_coll;
};

const double metrics_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};
const size_t metrics_latency_bounds_n = ARRAY_SIZE(metrics_latency_bounds);
const double metrics_duration_bounds[] = {1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400,
                                          43200, 86400};
const size_t metrics_duration_bounds_n = ARRAY_SIZE(metrics_duration_bounds);

static bool valid_name(const char *s, bool colon)
{
    if (!s || !(isalpha((unsigned char)s[0]) || s[0] == '_' || (colon && s[0] == ':')))
        return false;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || (colon && *p == ':')))
            return false;
    return true;
}

static void series_free(struct series *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < METRIC_LABELS_MAX; i++)
        free(s->values[i]);
    free(s->bucket);
    free(s);
}

static void family_free(struct metric *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i]);
    free(f->series);
    free(f);
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_fam; i++)
        family_free(m->fam[i]);
    free(m->fam);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int metrics_new(struct metrics **ret)
{
    _cleanup_(metrics_freep) struct metrics *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    r = metrics_register(m, METRIC_COUNTER, "ordinal_metrics_series_dropped_total",
                         "Metric updates dropped because their family already had its maximum "
                         "number of series (label combinations); the log of a debug run names "
                         "the family.",
                         NULL, NULL, 0, 1, &m->dropped);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(m);
    return 0;
}

int metrics_register(struct metrics *m, enum metric_type type, const char *name, const char *help,
                     const char *const *labels, const double *bounds, size_t n_bounds,
                     size_t max_series, struct metric **ret)
{
    _cleanup_free_ struct metric *f = NULL;
    struct metric **fam;
    int r = 0;

    if (!m || !valid_name(name, true) || !help)
        return -EINVAL;
    if (type == METRIC_HISTOGRAM ? (n_bounds == 0 || n_bounds > METRIC_BUCKETS_MAX || !bounds)
                                 : n_bounds != 0)
        return -EINVAL;
    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    *f = (struct metric){.reg = m,
                         .type = type,
                         .name = name,
                         .help = help,
                         .n_bounds = n_bounds,
                         .max_series = max_series ? max_series : METRIC_SERIES_DEFAULT};
    for (size_t i = 0; labels && labels[i]; i++) {
        if (i >= METRIC_LABELS_MAX || !valid_name(labels[i], false) ||
            strncmp(labels[i], "__", 2) == 0 ||
            (type == METRIC_HISTOGRAM && streq(labels[i], "le")))
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (streq(labels[i], labels[j]))
                return -EINVAL;
        f->labels[f->n_labels++] = labels[i];
    }
    for (size_t i = 0; i < n_bounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return -EINVAL;
        f->bounds[i] = bounds[i];
    }
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_fam; i++)
        if (streq(m->fam[i]->name, name))
            r = -EEXIST;
    if (r == 0) {
        fam = realloc(m->fam, (m->n_fam + 1) * sizeof(*fam));
        if (!fam)
            r = -ENOMEM;
        else {
            m->fam = fam;
            m->fam[m->n_fam++] = f;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (r < 0)
        return r;
    if (ret)
        *ret = f;
    TAKE_PTR(f);
    return 0;
}

static bool values_match(const struct metric *f, const struct series *s, const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (!streq(s->values[i], values[i]))
            return false;
    return true;
}

static int check_values(const struct metric *f, const char *const *values)
{
    if (f->n_labels && !values)
        return -EINVAL;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!values[i] || strnlen(values[i], METRIC_LABEL_VALUE_MAX + 1) > METRIC_LABEL_VALUE_MAX)
            return -EINVAL;
    return 0;
}

static void count_drop_locked(struct metric *f);

/* The series of values, created when missing. Registry lock held. */
static int series_get_locked(struct metric *f, const char *const *values, struct series **ret)
{
    struct series *s;

    for (size_t i = 0; i < f->n_series; i++)
        if (values_match(f, f->series[i], values)) {
            *ret = f->series[i];
            return 0;
        }
    if (f->n_series >= f->max_series) {
        count_drop_locked(f);
        return -E2BIG;
    }
    if (f->n_series == f->cap_series) {
        size_t cap = f->cap_series ? f->cap_series * 2 : 4;
        struct series **v = realloc(f->series, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        f->series = v;
        f->cap_series = cap;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!(s->values[i] = strdup(values[i]))) {
            series_free(s);
            return -ENOMEM;
        }
    if (f->type == METRIC_HISTOGRAM && !(s->bucket = calloc(f->n_bounds, sizeof(*s->bucket)))) {
        series_free(s);
        return -ENOMEM;
    }
    f->series[f->n_series++] = s;
    *ret = s;
    return 0;
}

/*
 * Counts a dropped update in the registry's counter. Without a label: the family's name would
 * be one more label outside the documented set, and one debug line says which family it was.
 */
static void count_drop_locked(struct metric *f)
{
    struct metric *d = f->reg->dropped;
    struct series *s;

    log_debug("metrics: %s has %zu series already; an update with new labels was dropped",
              f->name, f->n_series);
    if (!d || d == f)
        return;
    if (series_get_locked(d, NULL, &s) == 0)
        s->value += 1;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static int update(struct metric *f, const char *const *values, double v, enum op op)
{
    struct series *s;
    int r;

    if (!f)
        return 0;
    if (check_values(f, values) < 0 || isnan(v))
        return -EINVAL;
    switch (op) {
    case OP_ADD:
        if (f->type == METRIC_HISTOGRAM || (f->type == METRIC_COUNTER && v < 0))
            return -EINVAL;
        break;
    case OP_SET:
        if (f->type == METRIC_HISTOGRAM)
            return -EINVAL;
        break;
    case OP_OBSERVE:
        if (f->type != METRIC_HISTOGRAM)
            return -EINVAL;
        break;
    }
    pthread_mutex_lock(&f->reg->mu);
    r = series_get_locked(f, values, &s);
    if (r == 0) {
        if (op == OP_ADD)
            s->value += v;
        else if (op == OP_SET)
            s->value = v;
        else {
            size_t i = 0;

            while (i < f->n_bounds && v > f->bounds[i])
                i++;
            if (i < f->n_bounds)
                s->bucket[i]++;
            s->count++;
            s->value += v;
        }
    }
    pthread_mutex_unlock(&f->reg->mu);
    return r;
}

int metric_add(struct metric *f, const char *const *values, double v)
{
    return update(f, values, v, OP_ADD);
}

int metric_set(struct metric *f, const char *const *values, double v)
{
    return update(f, values, v, OP_SET);
}

int metric_observe(struct metric *f, const char *const *values, double v)
{
    return update(f, values, v, OP_OBSERVE);
}

void metric_remove(struct metric *f, const char *const *values)
{
    if (!f || check_values(f, values) < 0)
        return;
    pthread_mutex_lock(&f->reg->mu);
    for (size_t i = 0; i < f->n_series; i++)
        if (values_match(f, f->series[i], values)) {
            series_free(f->series[i]);
            memmove(&f->series[i], &f->series[i + 1], (f->n_series - i - 1) * sizeof(*f->series));
            f->n_series--;
            break;
        }
    pthread_mutex_unlock(&f->reg->mu);
}

void metric_clear(struct metric *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->reg->mu);
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i]);
    f->n_series = 0;
    pthread_mutex_unlock(&f->reg->mu);
}

double metric_value(struct metric *f, const char *const *values)
{
    double v = -1;

    if (!f || check_values(f, values) < 0)
        return -1;
    pthread_mutex_lock(&f->reg->mu);
    for (size_t i = 0; i < f->n_series; i++)
        if (values_match(f, f->series[i], values)) {
            v = f->type == METRIC_HISTOGRAM ? (double)f->series[i]->count : f->series[i]->value;
            break;
        }
    pthread_mutex_unlock(&f->reg->mu);
    return v;
}

int metrics_add_collector(struct metrics *m, void (*fn)(void *ud), void *ud)
{
    int r = 0;

    pthread_mutex_lock(&m->mu);
    if (m->n_coll >= COLLECTORS_MAX)
        r = -ENOSPC;
    else {
        m->coll[m->n_coll].fn = fn;
        m->coll[m->n_coll].ud = ud;
        m->n_coll++;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

/* ---- rendering ---- */

/* A growing buffer with a hard maximum (curl's dynbuf idea). */
struct buf {
    char *p;
    size_t len, cap;
    int err;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > METRICS_RENDER_MAX) {
        b->err = -EFBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

_printf_(2, 3) static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        if (!b->err)
            b->err = -EINVAL;
        return;
    }
    buf_put(b, tmp, (size_t)n);
}

/*
 * Escapes for the text format: in HELP text backslash and newline, in label values also the
 * double quote. Anything else (UTF-8 included) goes out as it is.
 */
static void buf_escaped(struct buf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            buf_put(b, "\\\\", 2);
        else if (*p == '\n')
            buf_put(b, "\\n", 2);
        else if (quote && *p == '"')
            buf_put(b, "\\\"", 2);
        else
            buf_put(b, p, 1);
    }
}

/* A sample value: Go's strconv forms for the specials, the shortest exact decimal otherwise. */
static void format_value(double v, char *out, size_t size)
{
    if (isnan(v))
        snprintf(out, size, "NaN");
    else if (isinf(v))
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, size, "%.0f", v); /* counts and byte sizes as integers, never 1e+01 */
    else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                return;
        }
    }
}

/* "{a="x",b="y"" without the closing brace; nothing for a family without labels. */
static void put_labels(struct buf *b, const struct metric *f, const struct series *s)
{
    for (size_t i = 0; i < f->n_labels; i++) {
        buf_str(b, i ? "," : "{");
        buf_str(b, f->labels[i]);
        buf_str(b, "=\"");
        buf_escaped(b, s->values[i], true);
        buf_str(b, "\"");
    }
}

static void put_sample(struct buf *b, const char *name, const char *suffix,
                       const struct metric *f, const struct series *s, const char *le, double v)
{
    char num[64];

    buf_str(b, name);
    buf_str(b, suffix);
    put_labels(b, f, s);
    if (le) {
        buf_str(b, f->n_labels ? ",le=\"" : "{le=\"");
        buf_str(b, le);
        buf_str(b, "\"}");
    } else if (f->n_labels)
        buf_str(b, "}");
    format_value(v, num, sizeof(num));
    buf_str(b, " ");
    buf_str(b, num);
    buf_str(b, "\n");
}

static void render_family(struct buf *b, const struct metric *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};

    buf_printf(b, "# HELP %s ", f->name);
    buf_escaped(b, f->help, false);
    buf_printf(b, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (size_t i = 0; i < f->n_series; i++) {
        const struct series *s = f->series[i];
        uint64_t cum = 0;
        char le[64];

        if (f->type != METRIC_HISTOGRAM) {
            put_sample(b, f->name, "", f, s, NULL, s->value);
            continue;
        }
        for (size_t k = 0; k < f->n_bounds; k++) {
            cum += s->bucket[k];
            format_value(f->bounds[k], le, sizeof(le));
            put_sample(b, f->name, "_bucket", f, s, le, (double)cum);
        }
        put_sample(b, f->name, "_bucket", f, s, "+Inf", (double)s->count);
        put_sample(b, f->name, "_sum", f, s, NULL, s->value);
        put_sample(b, f->name, "_count", f, s, NULL, (double)s->count);
    }
}

int metrics_render(struct metrics *m, char **ret, size_t *ret_len)
{
    struct buf b = {0};
    size_t n_coll;

    pthread_mutex_lock(&m->mu);
    n_coll = m->n_coll;
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n_coll; i++)
        m->coll[i].fn(m->coll[i].ud);

    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_fam; i++)
        render_family(&b, m->fam[i]);
    pthread_mutex_unlock(&m->mu);
    if (!b.err && !b.p)
        buf_put(&b, "", 0);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *ret = b.p;
    *ret_len = b.len;
    return 0;
}

/* ---- process metrics ---- */

struct proc_metrics {
    struct metric *cpu, *rss, *vsz, *fds, *max_fds, *start;
    double start_time;
};

/* Reads /proc/self/stat's fields 14, 15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss). */
static int read_stat(double *cpu, double *start_ticks, double *vsize, double *rss_pages)
{
    char text[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    unsigned long long utime, stime, starttime, vsz;
    long long rss;
    size_t n;
    const char *p;

    if (!f)
        return -errno;
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    p = strrchr(text, ')');
    if (!p ||
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &utime, &stime, &starttime, &vsz, &rss) != 5)
        return -EBADMSG;
    *cpu = (double)(utime + stime);
    *start_ticks = (double)starttime;
    *vsize = (double)vsz;
    *rss_pages = (double)rss;
    return 0;
}

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    double n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void collect_process(void *ud)
{
    struct proc_metrics *pm = ud;
    double cpu = 0, start = 0, vsz = 0, rss = 0, fds;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;

    if (read_stat(&cpu, &start, &vsz, &rss) == 0 && tck > 0 && page > 0) {
        metric_set(pm->cpu, NULL, cpu / (double)tck);
        metric_set(pm->vsz, NULL, vsz);
        metric_set(pm->rss, NULL, rss * (double)page);
        if (pm->start_time == 0) {
            FILE *f = fopen("/proc/stat", "re");
            char line[256];
            unsigned long long btime = 0;

            while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "btime %llu", &btime) == 1)
                    break;
            if (f)
                fclose(f);
            if (btime)
                pm->start_time = (double)btime + start / (double)tck;
        }
        if (pm->start_time)
            metric_set(pm->start, NULL, pm->start_time);
    }
    if ((fds = count_fds()) >= 0)
        metric_set(pm->fds, NULL, fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metric_set(pm->max_fds, NULL,
                   rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

int metrics_register_process(struct metrics *m)
{
    /* Lives as long as the process: the registry has no destructor hook for collectors. */
    static struct proc_metrics pm;
    int r;

    if ((r = metrics_register(m, METRIC_COUNTER, "process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.", NULL, NULL, 0,
                              1, &pm.cpu)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "process_resident_memory_bytes",
                              "Resident memory size in bytes.", NULL, NULL, 0, 1, &pm.rss)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "process_virtual_memory_bytes",
                              "Virtual memory size in bytes.", NULL, NULL, 0, 1, &pm.vsz)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "process_open_fds",
                              "Number of open file descriptors.", NULL, NULL, 0, 1, &pm.fds)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "process_max_fds",
                              "Maximum number of open file descriptors.", NULL, NULL, 0, 1,
                              &pm.max_fds)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.", NULL, NULL,
                              0, 1, &pm.start)) < 0)
        return r;
    return metrics_add_collector(m, collect_process, &pm);
}

/* ---- reasons ---- */

const char *metrics_errno_reason(int code)
{
    static const struct {
        int code;
        const char *reason;
    } table[] = {
        {EPERM, "permission_denied"}, {EACCES, "permission_denied"}, {ENOENT, "not_found"},
        {ENOSPC, "no_space"},         {EDQUOT, "no_space"},          {EINVAL, "invalid"},
        {EEXIST, "already_exists"},   {EIO, "io_error"},             {ETIMEDOUT, "timeout"},
        {ECONNREFUSED, "unreachable"}, {EHOSTUNREACH, "unreachable"}, {ECONNRESET, "unreachable"},
        {EBADMSG, "bad_data"},        {EPROTO, "bad_data"},          {ENOMEM, "out_of_memory"},
        {ECANCELED, "canceled"},      {ESTALE, "conflict"},          {EBUSY, "busy"},
        {EOPNOTSUPP, "unsupported"},  {ENAMETOOLONG, "invalid"},     {EXDEV, "cross_device"},
        {EKEYREJECTED, "tls"},        {EFBIG, "too_large"},          {E2BIG, "too_large"},
    };
    int c = code < 0 ? -code : code;

    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (table[i].code == c)
            return table[i].reason;
    return "other";
}
