/*
 * catalog.h - what backups a repository holds, from its key listing alone: one entry per
 * backups/<ns>/<sts>/<id>/ directory, complete when its backup.json exists. Entries come
 * sorted oldest first (by the time in the ID, then its suffix), then by StatefulSet. Keys that
 * do not fit the layout (other names, invalid IDs) are not backups and are ignored.
 */
#ifndef ORDINAL_CATALOG_H
#define ORDINAL_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"
#include "id.h"
#include "names.h"
#include "repo.h"

struct catalog_entry {
    struct sts_ref sts;
    char id[ID_MAX];
    time_t time;    /* from the ID */
    bool complete;  /* backup.json exists */
    uint64_t bytes; /* sum of the sizes of its objects */
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

bool sts_ref_equal(const struct sts_ref *a, const struct sts_ref *b);

#endif
