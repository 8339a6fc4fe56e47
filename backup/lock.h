/*
 * lock.h - one lock object per StatefulSet in the repository (locks/<ns>/<sts>.lock), so two
 * backups of the same StatefulSet never run at once, and a prune never deletes a backup that
 * is being written or restored. Backups of different StatefulSets take different locks and
 * run side by side.
 *
 * The lock is created with create-if-absent semantics (link() for the directory backend), so
 * exactly one taker wins, and holds who took it: host, pid, the process start time, boot id,
 * operation and time. A lock whose holder is provably gone - same host, and the boot id
 * changed, or no process with that pid, or a process with that pid but another start time
 * (pid reuse) - is stale and taken over; the take-over is a compare-and-remove, so of two
 * processes that both saw it stale only one removes it. A lock from another host is never
 * judged from here: the message names the holder and the object to remove by hand.
 */
#ifndef ORDINAL_LOCK_H
#define ORDINAL_LOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "names.h"
#include "repo.h"

struct lock_info {
    char host[256];
    int64_t pid;
    uint64_t start_time; /* /proc/<pid>/stat field 22: clock ticks after boot */
    char boot_id[64];
    char operation[16];
    char created[32];
    char nonce[33];
};

struct repo_lock;

/* Describes this process. Returns 0 or a negative errno. */
int lock_info_self(const char *operation, struct lock_info *ret);

int lock_info_format(const struct lock_info *li, char **ret);
/* Strict parse of a lock object. Returns 0 or -EBADMSG. */
int lock_info_parse(const char *text, size_t len, struct lock_info *ret);

/* Start time of pid from /proc: 0, -ESRCH when there is no such process, or another errno. */
typedef int (*lock_proc_start_fn)(int64_t pid, uint64_t *ret);
int lock_proc_start(int64_t pid, uint64_t *ret);

/*
 * Whether holder is provably dead as seen by self (see the top of this file). proc_start is
 * lock_proc_start in production, a fake in tests.
 */
bool lock_is_stale(const struct lock_info *holder, const struct lock_info *self,
                   lock_proc_start_fn proc_start);

/*
 * Takes the lock of sts for operation ("backup", "restore", "prune"). Returns 0 with *ret,
 * -EBUSY when a live process holds it (e names the holder and how to remove the lock), or
 * another negative errno.
 */
int lock_acquire(struct repo *r, const struct sts_ref *sts, const char *operation,
                 struct repo_lock **ret, ord_err *e);

/*
 * Optional second opinion on a holder that lock_is_stale() cannot judge (another host): returns
 * true only when that holder is provably gone. The coordinator asks the API whether the pod
 * named as the holder's host still runs (cluster.c).
 */
typedef bool (*lock_holder_gone_fn)(const struct lock_info *holder, void *ctx);

/* lock_acquire() with a holder_gone judge (may be NULL). */
int lock_acquire_ex(struct repo *r, const struct sts_ref *sts, const char *operation,
                    lock_holder_gone_fn holder_gone, void *ctx, struct repo_lock **ret, ord_err *e);

/* Removes the lock if it is still ours and frees l. NULL is fine. */
void lock_release(struct repo_lock *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct repo_lock *, lock_release);

#endif
