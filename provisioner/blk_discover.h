/*
 * blk_discover.h - candidate block devices of a --device-dir, what is on them, best fit, wipe.
 *
 * The adapter to libblkid: only blk_discover.c includes blkid.h, and blkid's 0/1/-1/-2 probe
 * results become the states below and negative errnos. Everything the device backend decides
 * (which device, why the others were refused) is a pure function over an array of
 * struct blk_candidate, so that it can be tested without devices (tests/unit/test_prov_blk.c).
 *
 * A candidate is an entry of the directory: a symlink to a block device (the usual case, e.g.
 * /dev/disk/by-id/... names) or a device node. Anything else is ignored with a debug line.
 * The entry's path is the device's stable name: PVs and the node layout refer to it, never to
 * /dev/sdX, which may change across reboots.
 */
#ifndef ORDINAL_BLK_DISCOVER_H
#define ORDINAL_BLK_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define BLK_PATH_MAX       1024
#define BLK_DETAIL_MAX     192
#define BLK_CANDIDATES_MAX 256 /* entries of one directory looked at; the rest are ignored */
#define BLK_EDGE_BYTES     (1024 * 1024) /* first and last MiB cleared on release */

enum blk_state {
    BLK_FREE = 0,  /* no signature, not mounted, not held, not owned */
    BLK_OWNED,     /* a PV or a node-layout entry holds it (decided by the caller) */
    BLK_SIGNATURE, /* a filesystem, partition table, RAID/LVM member, ... */
    BLK_MOUNTED,   /* in /proc/self/mountinfo */
    BLK_BUSY,      /* held open exclusively by someone (O_EXCL open: EBUSY) */
    BLK_EMPTY,     /* size 0: a detached loop device, a drive without medium */
    BLK_ERROR,     /* cannot be opened or probed; detail says why */
};

struct blk_candidate {
    char path[BLK_PATH_MAX];    /* the entry in the device directory (stable name) */
    char devname[BLK_PATH_MAX]; /* what it resolves to, e.g. /dev/loop3 */
    dev_t rdev;
    uint64_t size; /* bytes (BLKGETSIZE64) */
    enum blk_state state;
    char detail[BLK_DETAIL_MAX]; /* "an ext4 filesystem", a mount point, the owner, an error */
};

/*
 * Decides whether the device rdev (found at path) is taken by someone the caller knows of
 * (a PV, a pending or committed layout entry). Returns true and a short description of the
 * owner in detail ("volume pvc-123").
 */
typedef bool (*blk_owned_fn)(dev_t rdev, const char *path, char *detail, size_t size, void *ud);

/*
 * Lists the candidates of directory dir (sorted by path) and probes every one that is not
 * owned. Owned devices are only sized, never opened exclusively or probed: their volumes are
 * in use. Returns 0 with a malloc'ed array (free()) and its length, or a negative errno with
 * a message (the directory cannot be read).
 */
int blk_discover_dir(const char *dir, blk_owned_fn owned, void *ud, struct blk_candidate **ret,
                     size_t *ret_n, ord_err *e);

/*
 * Opens and probes one device (path may be a symlink to it). Returns 0 with *ret filled
 * (state FREE, SIGNATURE, MOUNTED, BUSY, EMPTY or ERROR), or -ENOTBLK when path is not a
 * block device, -ENOENT when it does not exist.
 */
int blk_probe(const char *path, struct blk_candidate *ret);

/*
 * Best fit: the smallest FREE candidate whose size is at least request (ties: the first in
 * the array). Pure. Returns 0 and the index; otherwise -ENOSPC (or -ENODEV when there is no
 * candidate at all) with `why` listing each candidate and why it was refused, bounded by
 * why_size ("... and 3 more" when it does not fit).
 */
int blk_best_fit(const struct blk_candidate *c, size_t n, uint64_t request, size_t *ret_idx,
                 char *why, size_t why_size);

/* One candidate's refusal as a phrase ("/d/a (/dev/loop3, 1Gi): too small for 2Gi"). */
void blk_refusal(const struct blk_candidate *c, uint64_t request, char *buf, size_t size);

/*
 * Whether device rdev is mounted (per /proc/self/mountinfo): 1 with the first mount point in
 * buf, 0 when not, negative errno when mountinfo cannot be read.
 */
int blk_mount_point(dev_t rdev, char *buf, size_t size);

/*
 * Releases a device that volume owned: checks that path still names device rdev of `size`
 * bytes, that it is neither mounted nor held open exclusively, and, when own_fs is given
 * (Filesystem volumes), that every signature on it is a filesystem of that type (what kubelet
 * made); then erases every signature libblkid finds (superblocks including RAID/LVM members,
 * partition tables with their backup copies, as `wipefs -a`), discards and zeroes the first
 * and last MiB, fsyncs, and probes again. The device is held with O_EXCL throughout.
 * ret_wiped (may be NULL) gets the erased signature types, comma-separated.
 * Returns 0; -ESTALE (path names another device now), -EBUSY (mounted or held), -EEXIST
 * (a signature the volume does not explain), -ENOENT/-ENXIO (device gone), -EIO; e says.
 */
int blk_wipe(const char *path, dev_t rdev, uint64_t size, const char *own_fs, char *ret_wiped,
             size_t wiped_size, ord_err *e);

/* "major:minor" into buf / back. blk_parse_devid returns 0 or -EINVAL. */
void blk_format_devid(dev_t rdev, char *buf, size_t size);
int blk_parse_devid(const char *s, dev_t *ret);

#endif
