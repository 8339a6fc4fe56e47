/*
 * dev_backend.h - the device backend's pool: which devices PVs own, the allocation lock, and
 * what discovery saw last (to report devices that disappear).
 *
 * The backend itself is `dev_backend` (backend.h). The pool holds no state that cannot be
 * rebuilt: the controller feeds it every PV of ours that owns a device (dev_pool_own from the
 * PV informer, dev_pool_forget when the PV goes), prepare adds its reservation under the PV
 * name it is about to create, and the node layout (committed and pending entries, .orphaned)
 * is scanned at every allocation. After a restart the same sources give the same answer.
 */
#ifndef ORDINAL_DEV_BACKEND_H
#define ORDINAL_DEV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

/* A device that disappeared from (or came back to) a device directory. */
struct dev_report {
    const char *dir;     /* the --device-dir */
    const char *path;    /* the entry (stable name) */
    const char *devname; /* what it resolved to when last seen */
    const char *owner;   /* the PV that owns it, or NULL when it was free */
    const char *why;     /* "is gone", "has size 0 (detached ...)" */
    uint64_t size;       /* size when last seen */
    bool back;           /* true: it is present again */
};

typedef void (*dev_report_fn)(const struct dev_report *r, void *ud);

struct dev_pool;

/* report (may be NULL) is called, without locks held, for each disappearance/return. */
int dev_pool_new(dev_report_fn report, void *ud, struct dev_pool **ret);
void dev_pool_free(struct dev_pool *p);

/* Records that PV pv_name owns the device at `device` (rdev). Returns 0 or -ENOMEM. */
int dev_pool_own(struct dev_pool *p, const char *pv_name, const char *device, dev_t rdev);

/* Forgets what PV pv_name owned (no-op when unknown). */
void dev_pool_forget(struct dev_pool *p, const char *pv_name);

/*
 * Discovery on the timer: lists every device directory, compares with what was seen before,
 * and reports devices that disappeared or came back.
 */
void dev_pool_refresh(struct dev_pool *p, const char *const *dirs, size_t n);

#endif
