/*
 * catalog.h - what backups a repository holds, from its key listing alone: one entry per
 * backups/<ns>/<sts>/<id>/ directory, complete when its backup.json exists. Entries come
 * sorted oldest first (by the time in the ID, then its suffix), then by StatefulSet. Keys that
 * do not fit the layout (other names, invalid IDs) are not backups and are ignored.
 *
 * The key listing says which backups exist; what each holds (its volumes, the node that made
 * it) is in its backup.json, which catalog_load() reads. Volumes are what retention and
 * "latest" work on: one-node backups of a StatefulSet spread over several nodes each hold only
 * the ordinals of their node, so "the newest backup of the StatefulSet" is not the newest
 * backup of each of its volumes.
 */
#ifndef ORDINAL_CATALOG_H
#define ORDINAL_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"
#include "id.h"
#include "manifest.h"
#include "names.h"
#include "repo.h"

struct catalog_entry {
    struct sts_ref sts;
    char id[ID_MAX];
    time_t time;    /* from the ID */
    bool complete;  /* backup.json exists */
    uint64_t bytes; /* sum of the sizes of its objects */
    /* catalog_load(), complete backups only: */
    struct backup_manifest *manifest; /* its backup.json; NULL when not loaded or damaged */
    char *damaged;                    /* why its backup.json cannot be used, or NULL */
};

struct catalog {
    struct catalog_entry *v;
    size_t n;
};

void catalog_free(struct catalog *c);

/* Lists the repository (filter: one StatefulSet, or NULL for all). Returns 0 or -errno. */
int catalog_scan(struct repo *r, const struct sts_ref *filter, struct catalog *ret, ord_err *e);

/* The newest complete backup of sts, or NULL. */
const struct catalog_entry *catalog_latest(const struct catalog *c, const struct sts_ref *sts);

/* The backup id of sts (complete or not), or NULL. */
const struct catalog_entry *catalog_find(const struct catalog *c, const struct sts_ref *sts,
                                         const char *id);

/*
 * Reads the backup.json of every complete entry into ->manifest. One that does not parse, or
 * names another backup, gets ->damaged (a message) instead and does not fail the call; one
 * that vanished since the listing (pruned) is marked incomplete. Returns 0, or a negative
 * errno when the repository cannot be read (e filled).
 */
int catalog_load(struct repo *r, struct catalog *c, ord_err *e);

/* The node that made a loaded backup ("" when its volumes come from several nodes). */
const char *catalog_node(const struct catalog_entry *ce);

/* One volume to restore and the backup to restore it from. */
struct catalog_pick {
    const struct catalog_entry *entry;  /* the newest complete backup that holds the volume */
    const struct backup_volume *volume; /* the volume, in entry->manifest */
};

/*
 * "latest" per volume, after catalog_load(): the volumes of sts to restore, each with the
 * newest complete backup that holds it, sorted by ordinal, then template.
 *
 * Which volumes: those of the newest backup made by each node (backup.json's node; the
 * coordinator's backups that span several nodes count as one more node). So each node's
 * one-node backups contribute that node's current ordinals, and a coordinator's newest backup
 * all of them, while an ordinal that no node backs up any more (scaled down) is not brought
 * back. With ordinals (n_ordinals > 0), those ordinals' volumes among them; an ordinal that
 * none of them holds is taken from whichever backup holds it.
 *
 * Returns 0 with *ret (free()) and *ret_n > 0; -ENOENT when there is no complete backup of sts
 * or an ordinal is held by none (e says which); -EBADMSG when a complete backup of sts is
 * damaged (which volumes it holds cannot be told); -ENOMEM.
 */
int catalog_latest_volumes(const struct catalog *c, const struct sts_ref *sts,
                           const int32_t *ordinals, size_t n_ordinals, struct catalog_pick **ret,
                           size_t *ret_n, ord_err *e);

bool sts_ref_equal(const struct sts_ref *a, const struct sts_ref *b);

#endif
