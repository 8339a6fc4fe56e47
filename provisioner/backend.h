/*
 * backend.h - volume backends as a const table of operations, like libblkid's idinfo tables.
 *
 * The controller decides (which claim, which identity, which class); a backend makes and
 * removes the thing on the node. The directory backend is dir_backend.c; the device backend
 * plugs in with the same table. The crash-safe protocol the operations implement:
 *
 *   prepare   make the volume under a name no PV points at yet (".pending-<claim uid>"
 *             beside the entry), durable (fsync) before the PV is created;
 *   (the controller creates the PV)
 *   commit    move it to the entry the PV names (rename, fsync), idempotent;
 *   abort     undo prepare when the PV will never exist (lost a 409 race, claim gone), only
 *             for what this attempt created;
 *   release   reclaim Delete: remove the entry safely (and wipe the device it names);
 *   orphan    move data found at an entry without a PV aside, under <root>/.orphaned/.
 */
#ifndef ORDINAL_BACKEND_H
#define ORDINAL_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "blk_discover.h"
#include "capacity.h"
#include "class_params.h"
#include "err.h"
#include "vol_layout.h"

#define BACKEND_PATH_MAX (CLASS_PATH_MAX + VLAYOUT_REL_MAX + 2)

struct dev_pool;

/* What the backend needs from the controller, shared by all calls. */
struct backend_ctx {
    struct cap_ledger *ledger;
    struct dev_pool *devs;          /* device backend: owners, allocation lock, what was seen */
    const char *const *device_dirs; /* --device-dir, as given */
    size_t n_device_dirs;
};

/*
 * What a PV of ours says about the volume it owns, for release (the device backend needs the
 * device; the directory backend ignores it). Strings may be NULL.
 */
struct vol_owned {
    const char *pv_name;
    const char *device;    /* annotation ordinal.dev/device: the stable path */
    const char *device_id; /* annotation ordinal.dev/device-id: "major:minor" */
    uint64_t capacity;     /* bytes on the PV */
    bool block;            /* volumeMode Block */
    const char *fs_type;   /* spec.local.fsType */
};

struct vol_request {
    const struct class_params *params;
    const struct vol_identity *id;
    const char *claim_uid; /* names the pending entry */
    const char *pv_name;   /* the ledger key */
    uint64_t request;      /* bytes */
    bool block;            /* volumeMode Block */
};

struct vol_prepared {
    char path[BACKEND_PATH_MAX]; /* the entry path the PV will name */
    bool created_now;            /* prepare made the pending entry in this call */
    uint64_t capacity;           /* what the PV offers; 0: the request (directory backend) */
    char device[BLK_PATH_MAX];   /* device backend: the stable path of the device, else "" */
    char device_id[32];          /* device backend: "major:minor" */
};

struct prov_backend {
    const char *name; /* the StorageClass `backend` value */
    /* Returns 0, -ENOSPC (no room), -EOPNOTSUPP (unsupported request), other errnos; e says. */
    int (*prepare)(const struct backend_ctx *ctx, const struct vol_request *req,
                   struct vol_prepared *ret, ord_err *e);
    /* Returns 0 (also when already committed), -ENOENT when neither pending nor entry exist. */
    int (*commit)(const struct backend_ctx *ctx, const struct vol_request *req, ord_err *e);
    /* Best effort; only removes what prepare created. */
    void (*abort)(const struct backend_ctx *ctx, const struct vol_request *req);
    /*
     * Returns 0 when nothing is left (device: wiped, entry removed), -EXDEV (a mount inside;
     * left in place), -EBUSY/-EEXIST/-ESTALE (device mounted, held, foreign or replaced: not
     * wiped), other errnos.
     */
    int (*release)(const struct backend_ctx *ctx, const struct class_params *params,
                   const struct vol_identity *id, const struct vol_owned *vol, ord_err *e);
    /*
     * Whether data exists at the entry: returns 1 and moves it to .orphaned (ret_dest, relative
     * to the root), 0 when there was nothing, or a negative errno.
     */
    int (*orphan)(const struct backend_ctx *ctx, const struct class_params *params,
                  const struct vol_identity *id, time_t now, char *ret_dest, size_t dest_size,
                  ord_err *e);
    /* Whether the entry exists: 1, 0, or a negative errno. */
    int (*exists)(const struct backend_ctx *ctx, const struct class_params *params,
                  const struct vol_identity *id);
};

extern const struct prov_backend dir_backend;
extern const struct prov_backend dev_backend;

/*
 * Serialises creating an entry's parents with pruning empty parents after a removal, for all
 * backends (they share the layout): without it a worker could open <ns>/<sts>/<ordinal> just
 * before another removes it as empty, and create the new volume inside a deleted directory.
 */
extern pthread_mutex_t vlayout_lock;

/* The backend for a kind, or NULL when this build has none. */
const struct prov_backend *backend_for(enum vol_backend_kind kind);

/* root + "/" + entry into buf. Returns 0, -ENAMETOOLONG, -EINVAL. */
int backend_entry_path(const char *root, const struct vol_identity *id, char *buf, size_t size);

/*
 * Opens the class's root (creating it and the entry's parents when create is set) and the
 * directory that holds the entry (directory fds the caller owns). Returns 0 or -errno.
 */
int backend_open_parent(const struct class_params *p, const struct vol_identity *id, bool create,
                        int *ret_root, int *ret_parent, ord_err *e);

/*
 * Renames the pending entry ".pending-<claim uid>" to its final name, never replacing anything;
 * an entry of the given file type (S_IFDIR, S_IFLNK) already there means an earlier attempt
 * committed it. Returns 0 or a negative errno with e filled.
 */
int backend_entry_commit(const struct vol_request *req, mode_t type, ord_err *e);

/*
 * The orphan and exists operations, the same for every backend because they only look at the
 * node-layout entry (a directory, or a symlink to a device): see struct prov_backend.
 */
int backend_entry_orphan(const struct backend_ctx *ctx, const struct class_params *params,
                         const struct vol_identity *id, time_t now, char *ret_dest,
                         size_t dest_size, ord_err *e);
int backend_entry_exists(const struct backend_ctx *ctx, const struct class_params *params,
                         const struct vol_identity *id);

#endif
