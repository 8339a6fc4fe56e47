/*
 * prune.c - see prune.h. A pure function over (id, time) pairs, so the policy is unit-tested
 * without a repository; cmd_prune.c does the listing, locking and removing.
 */
#include <errno.h>
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
