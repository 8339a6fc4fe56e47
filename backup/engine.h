/*
 * engine.h - the archive engine: one volume to one stored object and back.
 *
 * A stored object is a pax tar compressed with zstd (checksummed frames). For a directory
 * volume the tar holds the tree; for a device volume it holds one sparse regular-file entry
 * named "device.img" with the whole device, zero runs as holes. The engine computes the
 * SHA-256 of the stored (compressed) bytes as they pass, so that the manifest can record it
 * and restore/verify can check it.
 *
 * The engine knows nothing of repositories, manifests or Kubernetes: backup/ glues those.
 * Owner: backup/engine_*.c.
 */
#ifndef ORDINAL_ENGINE_H
#define ORDINAL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "stream.h"

#define ENGINE_SHA256_HEX 65
#define ENGINE_DEVICE_ENTRY "device.img"

enum volume_kind {
    VOLUME_DIRECTORY = 0,
    VOLUME_DEVICE = 1,
};

struct compress_opts {
    int level;   /* zstd level, 1..19 (default 3) */
    int threads; /* compression workers; 0 = online CPUs (at most 8: memory budget) */
};

/* A file that was still changing after the re-reads; recorded in the manifest. */
struct changed_file {
    char *path; /* relative to the volume root */
    char *reason;
};

struct engine_stats {
    uint64_t bytes_in;     /* bytes of file (or device) content read */
    uint64_t bytes_stored; /* bytes pushed into the sink */
    uint64_t files;        /* entries written (directories, files, links, ...) */
    double seconds;
    char sha256[ENGINE_SHA256_HEX]; /* of the stored bytes, lowercase hex */
    struct changed_file *changed;
    size_t n_changed;
};

void engine_stats_free(struct engine_stats *s);

/* Progress callback: bytes of content read so far; may be NULL. */
typedef void (*engine_progress_fn)(void *ctx, uint64_t bytes_done);

/*
 * Backs up the volume at `path` (a directory, or for VOLUME_DEVICE a block device or a symlink
 * to one) into sink. Never follows a symlink out of the volume, never crosses into another
 * mount. Bounded memory whatever the volume size. Fills *ret on success.
 */
int engine_backup(const char *path, enum volume_kind kind, const struct compress_opts *opts,
                  const struct byte_sink *sink, engine_progress_fn progress, void *progress_ctx,
                  struct engine_stats *ret, ord_err *e);

/* What a restore or a verify checks the stored object against (from the volume manifest). */
struct engine_expect {
    enum volume_kind kind;
    const char *sha256; /* required */
    uint64_t bytes_stored;
    uint64_t bytes_in;
    uint64_t files;
};

/*
 * Reads the whole object from source: checks the SHA-256 and sizes, decompresses fully and
 * walks the tar. Writes nothing. Returns 0 when everything agrees with expect, else -EBADMSG
 * (or another negative errno) with a message that names what disagrees.
 */
int engine_verify(const struct byte_source *source, const struct engine_expect *expect,
                  ord_err *e);

/*
 * What a restore could not put back as it was stored, by kind. Each entry is compared with
 * what it became on disk (owner, mode, mtime, each xattr, ACLs); device nodes and FIFOs that
 * could not be created are skipped and counted. Without the capabilities for them (CAP_CHOWN,
 * CAP_FOWNER, CAP_FSETID, CAP_SYS_ADMIN for trusted.* xattrs, CAP_MKNOD) or on a filesystem
 * without xattrs or ACLs, this is where the difference shows.
 */
enum engine_lost_kind {
    ENGINE_LOST_OWNER,
    ENGINE_LOST_MODE,
    ENGINE_LOST_TIMES,
    ENGINE_LOST_XATTR_USER,
    ENGINE_LOST_XATTR_TRUSTED,
    ENGINE_LOST_XATTR_SECURITY,
    ENGINE_LOST_XATTR_OTHER,
    ENGINE_LOST_ACL,
    ENGINE_LOST_DEVICE,
    ENGINE_LOST_FIFO,
    ENGINE_LOST_KINDS
};

#define ENGINE_LOST_EXAMPLES 3

struct engine_lost {
    bool accept;                         /* in: restore even when something is lost */
    uint64_t count[ENGINE_LOST_KINDS];   /* out: entries that lost each kind */
    char *examples[ENGINE_LOST_KINDS][ENGINE_LOST_EXAMPLES]; /* out: the first paths */
};

/* "owner", "mode", "times", "xattr-user", ... (the names of --json and the messages). */
const char *engine_lost_kind_name(enum engine_lost_kind k);
uint64_t engine_lost_total(const struct engine_lost *l);
/* One line for people: "owner of 3 entries (e.g. 'a', 'b'); device nodes: 1 ('dev/x')". */
void engine_lost_describe(const struct engine_lost *l, char *buf, size_t size);
/* Frees the examples and zeroes the counts (keeps accept). */
void engine_lost_clear(struct engine_lost *l);

/*
 * Restores a directory volume: extracts source into `staging_path` (which must not exist; it
 * is created beside the live entry) with secure extraction (no "..", no absolute paths, no
 * writing through symlinks), keeping owners, modes, times, xattrs, ACLs and holes; checks
 * every entry on disk against the archive (a file must have its full size: a write that
 * failed is never taken for a hole) and the object against expect; flushes the staging
 * directory's filesystem so that writeback errors show here. On failure the staging directory
 * is removed and the live volume was never touched. The caller swaps staging and live
 * afterwards (engine_swap).
 *
 * lost (may be NULL: nothing may be lost) counts what could not be restored as stored; unless
 * lost->accept, any such loss fails the restore with -EPERM after the whole archive was read,
 * so that the message and lost name everything. A full filesystem or quota fails with -ENOSPC
 * or -EDQUOT and a message with the sizes needed and free.
 */
int engine_restore_dir(const struct byte_source *source, const struct engine_expect *expect,
                       const char *staging_path, struct engine_lost *lost, ord_err *e);

/*
 * Restores a device volume: writes the image in source onto the block device at device_path
 * (holes as zeros or discards), refusing a device smaller than the image. The caller must
 * have checked the same object entirely with engine_verify() first (nothing is written to a
 * device from an unchecked object); the SHA-256 is computed again on the way and a mismatch
 * fails loudly.
 */
int engine_restore_device(const struct byte_source *source, const struct engine_expect *expect,
                          const char *device_path, ord_err *e);

/*
 * Atomically exchanges the live entry and the staging entry (renameat2 RENAME_EXCHANGE, same
 * directory; staging must be on disk already, as engine_restore_dir leaves it), then removes what is now at staging_path (the old content) without following
 * symlinks or crossing mounts. A crash between the two steps leaves the old content under
 * the staging name, which the next restore or prune removes.
 */
int engine_swap(const char *live_path, const char *staging_path, ord_err *e);

#endif
