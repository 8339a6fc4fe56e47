/*
 * capacity.h - what the directory backend has promised, per filesystem.
 *
 * Directories share the filesystem of their root, so a request is only honest when the
 * filesystem can still hold it after every volume already there grows to its full request:
 *
 *     available = free space (statvfs f_bavail * f_frsize) - sum of promised capacities
 *
 * This counts space a volume already uses twice (once in "free", once in "promised"), which
 * errs on the side of refusing: a refused claim is rescheduled elsewhere, an over-committed
 * disk fills up under a running database. Promises are keyed by PV name and filesystem
 * (st_dev of the root); reservations taken while a PV is being created count too, so that
 * two claims processed at once cannot both take the last gigabyte. Thread-safe.
 */
#ifndef ORDINAL_CAPACITY_H
#define ORDINAL_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct cap_ledger;

int cap_ledger_new(struct cap_ledger **ret);
void cap_ledger_free(struct cap_ledger *l);

/*
 * Records (or updates) the promise of PV `name`: bytes on filesystem dev, for the volume at
 * `path` (may be NULL: kept as it was). Returns 0, -ENOMEM.
 */
int cap_ledger_set(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                   const char *path);

/*
 * Whether some PV of the ledger (other than `except`, may be NULL) owns the volume at path:
 * the ledger also learns PVs this process created before the informer reports them, which
 * is what the orphan check needs.
 */
bool cap_ledger_has_path(struct cap_ledger *l, const char *path, const char *except);

/* Forgets the promise of PV `name` (no-op when unknown). */
void cap_ledger_remove(struct cap_ledger *l, const char *name);

/* Sum of promises on dev, and how many volumes make it (ret_count may be NULL). */
uint64_t cap_ledger_promised(struct cap_ledger *l, dev_t dev, size_t *ret_count);

/*
 * Atomically checks that `request` fits in free_bytes minus the promises on dev, and if so
 * records it as the promise of `name`. Returns 0, -ENOSPC with a message naming the numbers
 * and `where` (the root, for people), -ENOMEM. Re-reserving an existing name replaces it.
 */
int cap_ledger_reserve(struct cap_ledger *l, const char *name, dev_t dev, uint64_t free_bytes,
                       uint64_t request, const char *path, const char *where, ord_err *e);

#endif
