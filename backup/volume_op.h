/*
 * volume_op.h - one volume's backup or restore against a repository: what the CLI's backup
 * and restore commands do per volume, shared with the node agent (cmd_agent.c), which does the
 * same thing for one VolumeTask at a time.
 *
 * Backup writes the volume's stored object, then its manifest, under the given backup ID; it
 * never writes backup.json (the caller commits the backup: cmd_backup.c on one node, the
 * coordinator cmd_run.c in a cluster). Restore reads an object of a committed backup, checks
 * it whole, extracts it beside the live entry and swaps it in (engine_swap), or writes a device
 * image back after the check.
 */
#ifndef ORDINAL_VOLUME_OP_H
#define ORDINAL_VOLUME_OP_H

#include "engine.h"
#include "err.h"
#include "layout.h"
#include "manifest.h"
#include "names.h"
#include "repo.h"

/* Where a volume came from, for its manifest. */
struct volop_source {
    const struct layout_volume *lv;
    const char *node; /* the node's name */
    const char *pv;   /* the PersistentVolume's name, or NULL when unknown (one-node CLI) */
    const char *cmd;  /* "backup" or "agent": prefixes the warning about changing files */
};

/*
 * Backs up src->lv into backup id of sts: the object, then the manifest. progress (may be
 * NULL) is called with the bytes read so far. Returns 0 with *ret (the volume's entry of
 * backup.json), or a negative errno with e filled; what was written is left for the caller to
 * remove with the rest of the backup.
 */
int volop_backup(struct repo *repo, const struct sts_ref *sts, const char *id,
                 const struct volop_source *src, const struct compress_opts *copts,
                 engine_progress_fn progress, void *progress_ctx, struct backup_volume *ret,
                 ord_err *e);

/*
 * Completes backup b and writes its backup.json, last: the caller has set sts, order, node,
 * ordinals and volumes; this fills id, time, totals, times, tool version and status.
 * started is the wall-clock start (cli_now()), t0 the monotonic one (cli_monotonic()).
 * Returns 0 or a negative errno.
 */
/*
 * For a backup that failed after every volume was copied (in the commit, or in what is written
 * just before it): prefixes e with "backup ID of NS/STS is NOT committed: ...", and for a
 * permission error appends what backup.json's directory needs (repo_explain_denied()).
 */
void volop_not_committed(struct repo *repo, const struct sts_ref *sts, const char *id,
                         size_t n_volumes, int code, ord_err *e);

int volop_commit_backup(struct repo *repo, struct backup_manifest *b, const char *id,
                        double started, double t0, ord_err *e);

/* What a restore or verify checks an object against, from its manifest. */
struct engine_expect volop_expect(const struct volume_manifest *m);

/*
 * Reads volume bv's object of backup b whole and checks it against its manifest m (size,
 * SHA-256, decompression, tar walk). Writes nothing. Returns 0 or a negative errno.
 */
int volop_verify_object(struct repo *repo, const struct backup_manifest *b,
                        const struct backup_volume *bv, const struct volume_manifest *m,
                        ord_err *e);

/* Whether a volume's restore fits where it goes (volop_check_fit). */
struct volop_fit {
    uint64_t need_bytes;  /* directory: content + half a block per entry; device: image size */
    uint64_t need_inodes; /* entries; 0 for a device */
    uint64_t free_bytes;  /* for an unprivileged user, as statvfs's f_bavail; device: its size */
    uint64_t free_inodes; /* UINT64_MAX when the filesystem does not count inodes (btrfs) */
    bool fits;
};

/*
 * Compares what restoring m onto lv needs with what the target has: for a directory volume
 * the free space and inodes of the filesystem that holds the entry (the restore is extracted
 * beside the live content, which stays until the swap), for a device volume the device's size.
 * The sizes are the manifest's: content bytes read (holes of sparse files are not counted)
 * plus half a block per entry for the partly used last blocks. Returns 0 with *ret filled, or
 * a negative errno (the target cannot be examined).
 */
int volop_check_fit(const struct volume_manifest *m, const struct layout_volume *lv,
                    struct volop_fit *ret, ord_err *e);

/* "needs 1.2 GiB and 4,000 inodes, 800 MiB and 1,000,000 inodes are free" for messages. */
void volop_fit_describe(const struct volop_fit *f, char *buf, size_t size);

/*
 * Restores bv of backup b onto the layout entry lv under root: a directory volume through a
 * staging entry and an atomic swap, a device volume written back in place (the caller has
 * checked the object with volop_verify_object() first). Refuses, changing nothing, a volume
 * that volop_check_fit finds too large for its target. lost (may be NULL) is passed to
 * engine_restore_dir: unless lost->accept, a restore that could not keep every attribute is
 * not swapped in. Returns 0 or a negative errno; on failure a directory volume keeps its
 * previous content and its staging entry is removed.
 */
int volop_restore(struct repo *repo, const struct backup_manifest *b,
                  const struct backup_volume *bv, const struct volume_manifest *m, const char *root,
                  const struct layout_volume *lv, struct engine_lost *lost, ord_err *e);

#endif
