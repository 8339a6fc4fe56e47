/*
 * prune.h - which complete backups a retention policy keeps: restic's "forget" rules.
 *
 * Backups are taken newest first. --keep-last N keeps the N newest. --keep-daily N keeps, for
 * each of the last N days that have backups, the newest backup of that day; --keep-weekly
 * (ISO weeks) and --keep-monthly likewise. A backup is kept when any rule keeps it; the rules
 * count independently. As in restic, when a rule still has counts left at the oldest backup,
 * the oldest backup is kept too (it extends the history the rule covers). Days, weeks and
 * months are UTC, like the backup IDs. Whatever the policy, the newest backup is kept.
 *
 * prune_select_volumes() applies the rules per volume (StatefulSet, ordinal, template), which
 * is what a StatefulSet needs when its ordinals are backed up by different nodes: node A's
 * backups hold ordinals 0 and 2, node B's ordinal 1, and "--keep-last 2" counted over the
 * StatefulSet would let node A's backups push node B's out, losing ordinal 1. Each volume's
 * history is the backups that hold it; a backup is kept when the rules keep it in the history
 * of any of its volumes. Independently of the rules (so that no policy, and no bug in one, can
 * lose a volume), a backup that holds the newest backup of some volume is always kept. For
 * backups that each hold every volume (the coordinator's) this is the per-StatefulSet result.
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
    PRUNE_KEEP_NEWEST = 1u << 4, /* prune_select(): kept only because it is the newest;
                                    prune_select_volumes(): the newest backup of the volume */
};

/*
 * Fills ret_reasons[i] for items[i] (any order): a mask of PRUNE_KEEP_*, 0 = remove.
 * Returns 0 or -ENOMEM.
 */
int prune_select(const struct prune_item *items, size_t n, const struct prune_policy *p,
                 unsigned *ret_reasons);

/* "last,daily" etc. for a mask; writes "" for 0. */
void prune_reasons_format(unsigned mask, char *buf, size_t size);

/* One volume that a backup holds; reasons is written by prune_select_volumes(). */
struct prune_volume {
    int32_t ordinal;
    const char *template_name;
    unsigned reasons; /* out: PRUNE_KEEP_* of this backup in this volume's history */
};

/* A complete backup with the volumes it holds; reasons is written by prune_select_volumes(). */
struct prune_backup {
    const char *id;
    time_t time;
    struct prune_volume *volumes;
    size_t n_volumes;
    unsigned reasons; /* out: the union of its volumes' reasons; 0 = remove */
};

/*
 * Applies the policy per volume to the backups of one StatefulSet (any order) and fills the
 * reasons of every backup and of each of its volumes: PRUNE_KEEP_LAST..MONTHLY when the rule
 * keeps the backup in that volume's history, PRUNE_KEEP_NEWEST when it is the volume's newest
 * backup. A backup that holds no volume is judged with the other such backups as one history.
 * Returns 0 or -ENOMEM (reasons then undefined).
 */
int prune_select_volumes(struct prune_backup *b, size_t n, const struct prune_policy *p);

/*
 * Why a backup is kept, for a person: "newest backup of ordinal 1 'data'; --keep-last 2"
 * (at most three volumes named, then "and N more"). Writes "" for a backup to remove. The
 * text is truncated to size.
 */
void prune_describe(const struct prune_backup *b, const struct prune_policy *p, char *buf,
                    size_t size);

#endif
