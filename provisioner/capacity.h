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
 *
 * Each entry is either a reservation (made by a backend's prepare, before the PV exists; the
 * PV may never exist) or a PV's promise (the informer reported the PV: cap_ledger_set_pv).
 * A reservation becomes the PV's when the PV is seen, never the other way round, and
 * cap_ledger_unreserve only ever forgets reservations: releasing an abandoned attempt cannot
 * take away the promise of a volume that exists. The ledger lives in memory only: after a
 * restart it is rebuilt from the PVs, so reservations never outlive the process.
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
 * `path` (may be NULL: kept as it was). A new entry is a reservation (see above); an entry
 * that is already the PV's stays the PV's. Returns 0, -ENOMEM.
 */
int cap_ledger_set(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                   const char *path);

/* The same for PV `name` as the informer reports it: from then on the entry is the PV's. */
int cap_ledger_set_pv(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                      const char *path);

/* Whether `name` is a reservation that no PV has taken over yet. */
bool cap_ledger_is_reserved(struct cap_ledger *l, const char *name);

/*
 * Forgets `name` if it is still a reservation (an attempt that was abandoned); leaves a PV's
 * promise alone. Returns true when it forgot something, so a second call is a no-op.
 */
bool cap_ledger_unreserve(struct cap_ledger *l, const char *name);

/*
 * The names of all reservations (malloc'd array of malloc'd strings, free each and the array).
 * Returns 0, -ENOMEM.
 */
int cap_ledger_reservations(struct cap_ledger *l, char ***ret, size_t *ret_n);

/*
 * Whether some PV of the ledger (other than `except`, may be NULL) owns the volume at path:
 * the ledger also learns PVs this process created before the informer reports them, which
 * is what the orphan check needs.
 */
bool cap_ledger_has_path(struct cap_ledger *l, const char *path, const char *except);

/* Forgets the promise of PV `name`, reservation or not (no-op when unknown): the PV is gone. */
void cap_ledger_remove(struct cap_ledger *l, const char *name);

/* Sum of promises on dev, and how many volumes make it (ret_count may be NULL). */
uint64_t cap_ledger_promised(struct cap_ledger *l, dev_t dev, size_t *ret_count);

/*
 * Atomically checks that `request` fits in free_bytes minus the promises on dev, and if so
 * records it as the promise of `name`. Returns 0, -ENOSPC with a message naming the numbers
 * and `where` (the root, for people), -ENOMEM. Re-reserving an existing name replaces its
 * bytes and path; an entry that is already the PV's stays the PV's.
 */
int cap_ledger_reserve(struct cap_ledger *l, const char *name, dev_t dev, uint64_t free_bytes,
                       uint64_t request, const char *path, const char *where, ord_err *e);

#endif
