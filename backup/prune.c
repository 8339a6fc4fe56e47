/*
 * prune.c - see prune.h. Pure functions over (id, time) pairs and the volumes each backup
 * holds, so the policy is unit-tested without a repository; cmd_prune.c does the listing,
 * reading of backup.json, locking and removing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "macro.h"
#include "prune.h"

/* Newest first; equal times by ID, newest (largest) first. ctx: the items. */
static int cmp_newest_first(const void *a, const void *b, void *ctx)
{
    const struct prune_item *items = ctx;
    const struct prune_item *x = &items[*(const size_t *)a];
    const struct prune_item *y = &items[*(const size_t *)b];

    if (x->time != y->time)
        return x->time > y->time ? -1 : 1;
    return -id_compare(x->id, y->id);
}

static long bucket(int rule, time_t t)
{
    struct tm tm;
    char buf[16];

    if (!gmtime_r(&t, &tm))
        return 0;
    switch (rule) {
    case 1: /* daily */
        return (long)(tm.tm_year + 1900) * 10000 + (long)(tm.tm_mon + 1) * 100 + tm.tm_mday;
    case 2: /* ISO week */
        if (strftime(buf, sizeof(buf), "%G%V", &tm) == 0)
            return 0;
        return strtol(buf, NULL, 10);
    case 3: /* monthly */
        return (long)(tm.tm_year + 1900) * 100 + tm.tm_mon + 1;
    }
    return 0;
}

int prune_select(const struct prune_item *items, size_t n, const struct prune_policy *p,
                 unsigned *ret_reasons)
{
    _cleanup_free_ size_t *order = NULL;
    uint64_t count[4] = {p->last, p->daily, p->weekly, p->monthly};
    const unsigned reason[4] = {PRUNE_KEEP_LAST, PRUNE_KEEP_DAILY, PRUNE_KEEP_WEEKLY,
                                PRUNE_KEEP_MONTHLY};
    long last[4] = {-1, -1, -1, -1};
    bool used[4] = {p->last > 0, p->daily > 0, p->weekly > 0, p->monthly > 0};

    if (n == 0)
        return 0;
    order = calloc(n, sizeof(*order));
    if (!order)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        ret_reasons[i] = 0;
    }
    qsort_r(order, n, sizeof(*order), cmp_newest_first, (void *)items);

    for (size_t k = 0; k < n; k++) {
        const struct prune_item *it = &items[order[k]];
        unsigned mask = 0;

        for (int b = 0; b < 4; b++) {
            long val;

            if (!used[b] || count[b] == 0)
                continue;
            /* keep-last: every backup is its own bucket */
            val = b == 0 ? (long)k : bucket(b, it->time);
            if (val != last[b] || k == n - 1) {
                mask |= reason[b];
                last[b] = val;
                count[b]--;
            }
        }
        if (k == 0 && mask == 0)
            mask = PRUNE_KEEP_NEWEST;
        ret_reasons[order[k]] = mask;
    }
    return 0;
}

void prune_reasons_format(unsigned mask, char *buf, size_t size)
{
    static const char *const names[] = {"last", "daily", "weekly", "monthly", "newest"};
    size_t len = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!(mask & (1u << i)))
            continue;
        int w = snprintf(buf + len, size - len, "%s%s", len ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= size - len)
            return;
        len += (size_t)w;
    }
}

/* One volume of one backup while the histories are grouped. */
struct pair {
    struct prune_volume *v; /* NULL: the backup holds no volume */
    size_t backup;          /* index into the backups */
};

/* By volume (volume-less first, then ordinal, then template), then by backup. */
static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int r;

    if (!x->v != !y->v)
        return x->v ? 1 : -1;
    if (x->v) {
        if (x->v->ordinal != y->v->ordinal)
            return x->v->ordinal < y->v->ordinal ? -1 : 1;
        r = strcmp(x->v->template_name, y->v->template_name);
        if (r)
            return r;
    }
    return x->backup < y->backup ? -1 : x->backup > y->backup;
}

static bool same_volume(const struct pair *x, const struct pair *y)
{
    if (!x->v || !y->v)
        return !x->v && !y->v;
    return x->v->ordinal == y->v->ordinal && streq(x->v->template_name, y->v->template_name);
}

static bool newer(const struct prune_item *x, const struct prune_item *y)
{
    if (x->time != y->time)
        return x->time > y->time;
    return id_compare(x->id, y->id) > 0;
}

int prune_select_volumes(struct prune_backup *b, size_t n, const struct prune_policy *p)
{
    _cleanup_free_ struct pair *pairs = NULL;
    _cleanup_free_ struct prune_item *items = NULL;
    _cleanup_free_ unsigned *reasons = NULL;
    size_t n_pairs = 0, k = 0;
    int r;

    for (size_t i = 0; i < n; i++) {
        b[i].reasons = 0;
        for (size_t j = 0; j < b[i].n_volumes; j++)
            b[i].volumes[j].reasons = 0;
        if (n_pairs > SIZE_MAX / sizeof(*pairs) - b[i].n_volumes - 1)
            return -ENOMEM;
        n_pairs += b[i].n_volumes ? b[i].n_volumes : 1;
    }
    if (n == 0)
        return 0;
    pairs = calloc(n_pairs, sizeof(*pairs));
    items = calloc(n, sizeof(*items)); /* one history holds each backup at most once */
    reasons = calloc(n, sizeof(*reasons));
    if (!pairs || !items || !reasons)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (b[i].n_volumes == 0)
            pairs[k++] = (struct pair){.v = NULL, .backup = i};
        for (size_t j = 0; j < b[i].n_volumes; j++)
            pairs[k++] = (struct pair){.v = &b[i].volumes[j], .backup = i};
    }
    qsort(pairs, n_pairs, sizeof(*pairs), cmp_pair);

    for (size_t g = 0; g < n_pairs;) {
        size_t end = g, m = 0, newest = 0;

        while (end < n_pairs && same_volume(&pairs[g], &pairs[end]))
            end++;
        /* The volume's history: each backup once (a backup.json could list a volume twice). */
        for (size_t j = g; j < end; j++)
            if (j == g || pairs[j].backup != pairs[j - 1].backup) {
                items[m] = (struct prune_item){.id = b[pairs[j].backup].id,
                                               .time = b[pairs[j].backup].time};
                if (newer(&items[m], &items[newest]))
                    newest = m;
                m++;
            }
        r = prune_select(items, m, p, reasons);
        if (r < 0)
            return r;
        /* The guard does not rely on the rules: the newest of every history is marked here. */
        for (size_t t = 0; t < m; t++)
            reasons[t] = (reasons[t] & ~PRUNE_KEEP_NEWEST) | (t == newest ? PRUNE_KEEP_NEWEST : 0);
        for (size_t j = g, t = 0; j < end; j++) {
            if (j > g && pairs[j].backup != pairs[j - 1].backup)
                t++;
            if (pairs[j].v)
                pairs[j].v->reasons |= reasons[t];
            b[pairs[j].backup].reasons |= reasons[t];
        }
        g = end;
    }
    return 0;
}

static int volume_cmp(const struct prune_volume *x, const struct prune_volume *y)
{
    if (x->ordinal != y->ordinal)
        return x->ordinal < y->ordinal ? -1 : 1;
    return strcmp(x->template_name, y->template_name);
}

/* Appends to buf (length *len, capacity size), truncating; keeps it NUL-terminated. */
_printf_(4, 5) static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*len + 1 >= size)
        return;
    va_start(ap, fmt);
    w = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (w < 0)
        buf[*len] = '\0';
    else
        *len = MIN(*len + (size_t)w, size - 1);
}

void prune_describe(const struct prune_backup *b, const struct prune_policy *p, char *buf,
                    size_t size)
{
    static const char *const flags[] = {"--keep-last", "--keep-daily", "--keep-weekly",
                                        "--keep-monthly"};
    const uint64_t counts[] = {p->last, p->daily, p->weekly, p->monthly};
    size_t len = 0, named = 0, newest = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < b->n_volumes; i++)
        newest += (b->volumes[i].reasons & PRUNE_KEEP_NEWEST) != 0;
    /* Named in ordinal order (backup.json lists them in the order processed). */
    for (const struct prune_volume *prev = NULL; named < MIN(newest, (size_t)3); named++) {
        const struct prune_volume *next = NULL;

        for (size_t i = 0; i < b->n_volumes; i++) {
            const struct prune_volume *v = &b->volumes[i];

            if ((v->reasons & PRUNE_KEEP_NEWEST) && (!prev || volume_cmp(v, prev) > 0) &&
                (!next || volume_cmp(v, next) < 0))
                next = v;
        }
        if (!next)
            break;
        append(buf, size, &len, "%sordinal %d '%s'", named ? ", " : "newest backup of ",
               (int)next->ordinal, next->template_name);
        prev = next;
    }
    if (newest > named)
        append(buf, size, &len, ", and %zu more volume(s)", newest - named);
    if (b->n_volumes == 0 && (b->reasons & PRUNE_KEEP_NEWEST))
        append(buf, size, &len, "newest backup");
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
        if (b->reasons & (1u << i))
            append(buf, size, &len, "%s%s %llu", len ? "; " : "", flags[i],
                   (unsigned long long)counts[i]);
}
