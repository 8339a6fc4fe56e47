/*
 * prune.h - which complete backups a retention policy keeps: restic's "forget" rules.
 *
 * Backups are taken newest first. --keep-last N keeps the N newest. --keep-daily N keeps, for
 * each of the last N days that have backups, the newest backup of that day; --keep-weekly
 * (ISO weeks) and --keep-monthly likewise. A backup is kept when any rule keeps it; the rules
 * count independently. As in restic, when a rule still has counts left at the oldest backup,
 * the oldest backup is kept too (it extends the history the rule covers). Days, weeks and
 * months are UTC, like the backup IDs. Whatever the policy, the newest backup is kept.
 */
#ifndef ORDINAL_PRUNE_H
#define ORDINAL_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct prune_policy {
    uint64_t last, daily, weekly, monthly; /* 0 = rule not used */
};

struct prune_item {
    const char *id; /* backup ID: breaks ties between equal times */
    time_t time;
};

enum {
    PRUNE_KEEP_LAST = 1u << 0,
    PRUNE_KEEP_DAILY = 1u << 1,
    PRUNE_KEEP_WEEKLY = 1u << 2,
    PRUNE_KEEP_MONTHLY = 1u << 3,
    PRUNE_KEEP_NEWEST = 1u << 4, /* kept only because it is the newest */
};

/*
 * Fills ret_reasons[i] for items[i] (any order): a mask of PRUNE_KEEP_*, 0 = remove.
 * Returns 0 or -ENOMEM.
 */
int prune_select(const struct prune_item *items, size_t n, const struct prune_policy *p,
                 unsigned *ret_reasons);

/* "last,daily" etc. for a mask; writes "" for 0. */
void prune_reasons_format(unsigned mask, char *buf, size_t size);

#endif
