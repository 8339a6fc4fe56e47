/*
 * engine_restore.c - a stored object back: verify, restore into a staging directory, restore
 * onto a block device.
 *
 * Reading: byte_source -> zsource (SHA-256 of the stored bytes, zstd with frame checksums)
 * -> libarchive's tar reader (no filters: libarchive never sees compressed bytes, so it
 * cannot be talked into another decompressor by a hostile object). After the tar's end the
 * rest of the object is drained (and must be zeros) so that the digest covers every byte.
 *
 * Restoring a directory. libarchive's write_disk resolves pathnames against the current
 * directory, so the process fchdir()s to the parent of the staging directory for the
 * extraction (and for archive_write_close, which sets directory modes and times after their
 * children) and back to the saved cwd afterwards: engine_restore_dir is not safe to call
 * while another thread relies on the cwd (the CLI is single-threaded). Every entry name is
 * checked by us before libarchive sees it, on top of its SECURE_NODOTDOT and
 * SECURE_NOABSOLUTEPATHS flags: no absolute path, no "..", the root entry "." only as a
 * directory, no parent that is a symlink or anything but a directory on disk (i.e. a
 * symlink created earlier by the same archive), a symlink already at the entry's own name
 * removed first, hardlink targets that are entries already extracted from this archive, no
 * sockets or unknown types, and not more data than the manifest promises. The name is then
 * prefixed with the staging directory's own name, so the root entry restores the staging
 * directory's owner, mode, times, xattrs and ACLs like any other directory.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "engine_int.h"
#include "fs_rmtree.h"
#include "log.h"

/* Longest entry name restored (the fuzz build: smaller, see ENGINE_BUF_SIZE). */
#ifdef ORDINAL_FUZZ_BUILD
#define RESTORE_PATH_MAX (64u << 10)
#else
#define RESTORE_PATH_MAX (1u << 20)
#endif

/*
 * Not ARCHIVE_EXTRACT_SECURE_SYMLINKS: it re-walks every component of every entry's path
 * (an openat, fstatat and close each: a third of the restore's time on 40,000 files). The
 * same guarantee comes from walk_parents (once per directory) and unlink_symlink_at (one
 * fstatat per entry); test_engine_hostile holds both to it.
 */
static const int restore_flags =
    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
    ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
    ARCHIVE_EXTRACT_ACL;

/* The common reading side: a zsource and a tar reader over it. */
struct rd {
    struct zsource z;
    struct archive *a;
};

static int rd_open(struct rd *r, const struct byte_source *src, ord_err *e)
{
    int ret;

    memset(r, 0, sizeof(*r));
    ret = zsource_init(&r->z, src);
    if (ret < 0)
        return err_set(e, ret, "%s", r->z.err.msg);
    r->a = archive_read_new();
    if (!r->a)
        return err_set(e, -ENOMEM, "out of memory");
    if (archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
        engine_archive_open_read(r->a, &r->z) < 0) {
        zsource_stop(&r->z);
        return engine_archive_err(r->a, &r->z.err, e, "reading the stored object");
    }
    return 0;
}

static void rd_close(struct rd *r)
{
    if (r->a)
        archive_read_free(r->a);
    r->a = NULL;
    zsource_done(&r->z);
}

/* Next header: 1 with *ret_ent, 0 at the end, negative errno with e filled. */
static int rd_next(struct rd *r, struct archive_entry **ret_ent, ord_err *e)
{
    int x = archive_read_next_header(r->a, ret_ent);

    if (x == ARCHIVE_EOF)
        return 0;
    if (x < ARCHIVE_WARN) {
        zsource_stop(&r->z);
        return engine_archive_err(r->a, &r->z.err, e, "reading the stored object");
    }
    return 1;
}

/*
 * After the tar's end: drains the object and compares the digest, size, entries and content
 * bytes with expect. content is the count compared with expect->bytes_in.
 */
static int rd_finish(struct rd *r, const struct engine_expect *x, uint64_t files,
                     uint64_t content, ord_err *e)
{
    char hex[ENGINE_SHA256_HEX];
    int ret;

    ret = zsource_drain(&r->z);
    if (ret < 0)
        return err_set(e, ret, "%s", r->z.err.msg);
    ret = zsource_digest(&r->z, hex);
    if (ret < 0)
        return err_set(e, ret, "%s", r->z.err.msg);
    if (!x->sha256 || strcmp(hex, x->sha256) != 0)
        return err_set(e, -EBADMSG, "SHA-256 mismatch: the stored object has %s, the manifest says %s",
                       hex, x->sha256 ? x->sha256 : "(none)");
    if (r->z.bytes_stored != x->bytes_stored)
        return err_set(e, -EBADMSG, "size mismatch: the stored object has %llu bytes, the manifest says %llu",
                       (unsigned long long)r->z.bytes_stored, (unsigned long long)x->bytes_stored);
    if (files != x->files)
        return err_set(e, -EBADMSG, "entry count mismatch: the archive has %llu entries, the manifest says %llu",
                       (unsigned long long)files, (unsigned long long)x->files);
    if (content != x->bytes_in)
        return err_set(e, -EBADMSG, "content size mismatch: the archive holds %llu bytes, the manifest says %llu",
                       (unsigned long long)content, (unsigned long long)x->bytes_in);
    return 0;
}

static int check_device_entry(struct archive_entry *ent, uint64_t n, ord_err *e)
{
    const char *p = archive_entry_pathname(ent);

    if (n > 0)
        return err_set(e, -EBADMSG, "a device image holds more than one entry ('%s')", p ? p : "?");
    if (!p || !streq(p, ENGINE_DEVICE_ENTRY) || archive_entry_filetype(ent) != AE_IFREG ||
        archive_entry_hardlink(ent))
        return err_set(e, -EBADMSG, "a device image must hold one regular file '%s', not '%s'",
                       ENGINE_DEVICE_ENTRY, p ? p : "?");
    return 0;
}

/*
 * Normalises an entry name into out: components separated by single '/', without "." or
 * empty ones. Refuses absolute names and "..". An empty result is the root.
 * Returns: 0, or -EPERM/-ENAMETOOLONG with e naming the entry.
 */
static int normalize(const char *in, char *out, size_t size, const char *what, ord_err *e)
{
    size_t o = 0;
    const char *p = in;

    if (!in)
        return err_set(e, -EBADMSG, "an entry has no usable %s", what);
    if (in[0] == '/')
        return err_set(e, -EPERM, "refusing %s '%.300s': absolute path", what, in);
    while (*p) {
        const char *s = p;
        size_t l;

        while (*p && *p != '/')
            p++;
        l = (size_t)(p - s);
        while (*p == '/')
            p++;
        if (l == 0 || (l == 1 && s[0] == '.'))
            continue;
        if (l == 2 && s[0] == '.' && s[1] == '.')
            return err_set(e, -EPERM, "refusing %s '%.300s': it contains '..'", what, in);
        if (o + l + 2 > size)
            return err_set(e, -ENAMETOOLONG, "refusing %s '%.300s': too long", what, in);
        if (o)
            out[o++] = '/';
        memcpy(out + o, s, l);
        o += l;
    }
    out[o] = '\0';
    return 0;
}

int engine_verify(const struct byte_source *source, const struct engine_expect *expect,
                  ord_err *e)
{
    _cleanup_free_ char *namebuf = malloc(RESTORE_PATH_MAX);
    struct rd r;
    uint64_t files = 0, content = 0;
    int ret;

    if (!namebuf)
        return err_set(e, -ENOMEM, "out of memory");
    ret = rd_open(&r, source, e);
    if (ret < 0)
        goto out;
    for (;;) {
        struct archive_entry *ent;
        const void *buf;
        size_t len;
        la_int64_t off;

        ret = rd_next(&r, &ent, e);
        if (ret < 0)
            goto out;
        if (ret == 0)
            break;
        /* The same name rules as a restore (those that need no disk). */
        ret = normalize(archive_entry_pathname(ent), namebuf, RESTORE_PATH_MAX, "entry", e);
        if (ret >= 0 && archive_entry_hardlink(ent))
            ret = normalize(archive_entry_hardlink(ent), namebuf, RESTORE_PATH_MAX,
                            "hardlink target", e);
        if (ret < 0)
            goto out;
        if (expect->kind == VOLUME_DEVICE) {
            ret = check_device_entry(ent, files, e);
            if (ret < 0)
                goto out;
            content = (uint64_t)archive_entry_size(ent);
        }
        files++;
        for (;;) {
            int x = archive_read_data_block(r.a, &buf, &len, &off);
            if (x == ARCHIVE_EOF)
                break;
            if (x < ARCHIVE_WARN) {
                zsource_stop(&r.z);
                ret = engine_archive_err(r.a, &r.z.err, e, "reading the stored object");
                err_wrap(e, ret, "entry '%s'", archive_entry_pathname(ent));
                goto out;
            }
            if (expect->kind != VOLUME_DEVICE)
                content += len;
        }
    }
    ret = rd_finish(&r, expect, files, content, e);
out:
    rd_close(&r);
    return ret;
}

/*
 * Walks the parent directories of rel (every component but the last) from dirfd without
 * following anything. Returns: 0 when they are all real directories (*ret_fd, if given, is
 * then an O_PATH descriptor of the last parent, or -EBADF for dirfd itself), or when the
 * chain stops at a missing one (*ret_complete false: libarchive will create it); -ENOTDIR
 * when one is a symlink or not a directory (its path goes to bad); another negative errno.
 */
static int walk_parents(int dirfd, const char *rel, bool *ret_complete, int *ret_fd, char *bad,
                        size_t badsz)
{
    _cleanup_close_ int cur = -EBADF;
    const char *p = rel;
    char comp[NAME_MAX + 1];
    int at = dirfd;

    *ret_complete = true;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l;
        int fd;

        if (!slash) {
            /* the last component: not a parent */
            if (ret_fd)
                *ret_fd = TAKE_FD(cur);
            return 0;
        }
        l = (size_t)(slash - p);
        if (l > NAME_MAX)
            return -ENAMETOOLONG;
        memcpy(comp, p, l);
        comp[l] = '\0';
        fd = openat(at, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) {
                *ret_complete = false;
                return 0;
            }
            snprintf(bad, badsz, "%.*s", (int)(slash - rel), rel);
            return errno == ELOOP ? -ENOTDIR : -errno;
        }
        if (cur >= 0)
            close(cur);
        cur = fd;
        at = cur;
        p = slash + 1;
    }
}

/* fstatat of rel below dirfd, component by component, never following a symlink. */
static int stat_beneath(int dirfd, const char *rel, struct stat *st)
{
    _cleanup_close_ int cur = -EBADF;
    const char *p = rel;
    char comp[NAME_MAX + 1];
    int at = dirfd;

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        int fd;

        if (l > NAME_MAX)
            return -ENAMETOOLONG;
        memcpy(comp, p, l);
        comp[l] = '\0';
        if (!slash)
            return fstatat(at, comp, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
        fd = openat(at, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        if (cur >= 0)
            close(cur);
        cur = fd;
        at = cur;
        p = slash + 1;
    }
}

/* Opens the parent directory of rel below dirfd, never following a symlink. */
static int open_parent_beneath(int dirfd, const char *rel, const char **ret_last)
{
    const char *p = rel;
    char comp[NAME_MAX + 1];
    int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);

    if (cur < 0)
        return -errno;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l;
        int fd;

        if (!slash) {
            *ret_last = p;
            return cur;
        }
        l = (size_t)(slash - p);
        if (l > NAME_MAX) {
            close(cur);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, l);
        comp[l] = '\0';
        fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(cur);
        if (fd < 0)
            return -errno;
        cur = fd;
        p = slash + 1;
    }
}

/*
 * libarchive sets the owner, mode and times of objects it cannot open (symlinks, FIFOs,
 * device nodes) by path, which fails beyond PATH_MAX; for those we set them again relative
 * to the parent directory.
 */
static int fix_deep_entry(int sfd, const char *rel, struct archive_entry *ent)
{
    struct timespec ts[2] = {{archive_entry_atime(ent), archive_entry_atime_nsec(ent)},
                             {archive_entry_mtime(ent), archive_entry_mtime_nsec(ent)}};
    const char *last = rel;
    int r = 0, pfd = open_parent_beneath(sfd, rel, &last);

    if (pfd < 0)
        return pfd;
    if (fchownat(pfd, last, (uid_t)archive_entry_uid(ent), (gid_t)archive_entry_gid(ent),
                 AT_SYMLINK_NOFOLLOW) < 0)
        r = -errno;
    if (r == 0 && archive_entry_filetype(ent) != AE_IFLNK &&
        fchmodat(pfd, last, archive_entry_perm(ent), 0) < 0)
        r = -errno;
    if (!archive_entry_atime_is_set(ent))
        ts[0].tv_nsec = UTIME_OMIT;
    if (r == 0 && utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW) < 0)
        r = -errno;
    close(pfd);
    return r;
}

/*
 * An earlier entry of this archive may have left a symlink where this entry goes: remove it,
 * so that libarchive replaces it instead of writing through it. This is what libarchive's
 * ARCHIVE_EXTRACT_SECURE_SYMLINKS does for the last component; the parents are checked by
 * walk_parents, once per directory instead of once per entry and component.
 */
static int unlink_symlink_at(int pfd, const char *last)
{
    struct stat st;

    if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISLNK(st.st_mode) && unlinkat(pfd, last, 0) < 0)
        return -errno;
    return 0;
}

/*
 * A directory of the archive, kept until archive_write_close has set its mode and times (after
 * its children): then it is checked against what it became. Directories beyond PATH_MAX
 * ("deep") also get their mode and times from us, since libarchive's fixups go by path and
 * fail there. One record per directory: libarchive keeps one per directory for its fixups too.
 */
struct dir_rec {
    char *rel; /* below the staging directory; "" is the root entry */
    mode_t perm;
    uid_t uid;
    gid_t gid;
    struct timespec ts[2];
    bool mtime_set;
    bool deep;
    bool acl_access, acl_default;
};

struct rs {
    struct rd rd;
    struct archive *w;
    int sfd;              /* the staging directory */
    const char *base;     /* its name in the parent (the cwd while extracting) */
    char *norm, *full, *cache;
    size_t cache_len;
    bool cache_ok;        /* cache names a chain of real directories below sfd... */
    int cache_fd;         /* ...and this is its last one (O_PATH) */
    uint64_t files, content;
    struct dir_rec *dirs; /* see struct dir_rec */
    size_t ndirs, capdirs;
    bool root_seen;
    struct timespec root_times[2]; /* atime, mtime of the root entry */
    struct engine_lost *lost;
    uint8_t *xbuf; /* XATTR_SIZE_MAX: an xattr value read back */
};

static const char *const lost_names[ENGINE_LOST_KINDS] = {
    [ENGINE_LOST_OWNER] = "owner",
    [ENGINE_LOST_MODE] = "mode",
    [ENGINE_LOST_TIMES] = "times",
    [ENGINE_LOST_XATTR_USER] = "xattr-user",
    [ENGINE_LOST_XATTR_TRUSTED] = "xattr-trusted",
    [ENGINE_LOST_XATTR_SECURITY] = "xattr-security",
    [ENGINE_LOST_XATTR_OTHER] = "xattr-other",
    [ENGINE_LOST_ACL] = "acl",
    [ENGINE_LOST_DEVICE] = "device-node",
    [ENGINE_LOST_FIFO] = "fifo",
};

/* How each kind reads in a sentence. */
static const char *const lost_phrases[ENGINE_LOST_KINDS] = {
    [ENGINE_LOST_OWNER] = "owner or group of",
    [ENGINE_LOST_MODE] = "mode bits (e.g. setuid/setgid) of",
    [ENGINE_LOST_TIMES] = "modification time of",
    [ENGINE_LOST_XATTR_USER] = "user.* xattrs of",
    [ENGINE_LOST_XATTR_TRUSTED] = "trusted.* xattrs of",
    [ENGINE_LOST_XATTR_SECURITY] = "security.* xattrs of",
    [ENGINE_LOST_XATTR_OTHER] = "other xattrs of",
    [ENGINE_LOST_ACL] = "POSIX ACLs of",
    [ENGINE_LOST_DEVICE] = "device nodes not created:",
    [ENGINE_LOST_FIFO] = "FIFOs not created:",
};

const char *engine_lost_kind_name(enum engine_lost_kind k)
{
    return (unsigned)k < ENGINE_LOST_KINDS ? lost_names[k] : "?";
}

uint64_t engine_lost_total(const struct engine_lost *l)
{
    uint64_t n = 0;

    for (size_t k = 0; l && k < ENGINE_LOST_KINDS; k++)
        n += l->count[k];
    return n;
}

void engine_lost_describe(const struct engine_lost *l, char *buf, size_t size)
{
    size_t o = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t k = 0; l && k < ENGINE_LOST_KINDS; k++) {
        int n;

        if (!l->count[k])
            continue;
        n = snprintf(buf + o, size - o, "%s%s %llu %s", o ? "; " : "", lost_phrases[k],
                     (unsigned long long)l->count[k], l->count[k] == 1 ? "entry" : "entries");
        if (n < 0 || (size_t)n >= size - o)
            return;
        o += (size_t)n;
        if (!l->examples[k][0])
            continue; /* counts alone (a task's result) */
        for (size_t i = 0; i < ENGINE_LOST_EXAMPLES && l->examples[k][i]; i++) {
            n = snprintf(buf + o, size - o, "%s'%s'", i ? ", " : " (", l->examples[k][i]);
            if (n < 0 || (size_t)n >= size - o)
                return;
            o += (size_t)n;
        }
        n = snprintf(buf + o, size - o, "%s)", l->count[k] > ENGINE_LOST_EXAMPLES ? ", ..." : "");
        if (n < 0 || (size_t)n >= size - o)
            return;
        o += (size_t)n;
    }
}

void engine_lost_clear(struct engine_lost *l)
{
    for (size_t k = 0; l && k < ENGINE_LOST_KINDS; k++) {
        for (size_t i = 0; i < ENGINE_LOST_EXAMPLES; i++) {
            free(l->examples[k][i]);
            l->examples[k][i] = NULL;
        }
        l->count[k] = 0;
    }
}

/* Counts one entry that lost kind k (rel: its path below the volume, "" for the root). */
static void lost_note(struct rs *s, enum engine_lost_kind k, const char *rel)
{
    uint64_t n = s->lost->count[k]++;

    if (n < ENGINE_LOST_EXAMPLES) {
        char ex[201];
        snprintf(ex, sizeof(ex), "%s", *rel ? rel : ".");
        s->lost->examples[k][n] = strdup(ex); /* NULL on OOM: no example */
    }
}

/* The kind of loss of xattr `name`, by namespace. */
static enum engine_lost_kind xattr_kind(const char *name)
{
    if (strncmp(name, "user.", 5) == 0)
        return ENGINE_LOST_XATTR_USER;
    if (strncmp(name, "trusted.", 8) == 0)
        return ENGINE_LOST_XATTR_TRUSTED;
    if (strncmp(name, "security.", 9) == 0)
        return ENGINE_LOST_XATTR_SECURITY;
    return ENGINE_LOST_XATTR_OTHER;
}

/*
 * lgetxattr of name on `last` in the directory pfd (an O_PATH descriptor: the xattr calls take
 * no descriptor of a symlink or a FIFO without opening it, so they go through /proc).
 * Returns the value's length, or a negative errno.
 */
static ssize_t xattr_at(int pfd, const char *last, const char *name, void *buf, size_t size)
{
    char path[64 + NAME_MAX];
    ssize_t n;

    if (snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", pfd, *last ? last : ".") >=
        (int)sizeof(path))
        return -ENAMETOOLONG;
    n = lgetxattr(path, name, buf, size);
    return n < 0 ? -errno : n;
}

/* Each xattr of ent must be on disk with the same value; one note per namespace at most. */
static void check_xattrs(struct rs *s, int pfd, const char *last, struct archive_entry *ent)
{
    bool noted[ENGINE_LOST_KINDS] = {false};
    const char *name;
    const void *value;
    size_t size;

    if (archive_entry_xattr_reset(ent) == 0)
        return;
    while (archive_entry_xattr_next(ent, &name, &value, &size) == ARCHIVE_OK) {
        enum engine_lost_kind k = xattr_kind(name);
        ssize_t n = xattr_at(pfd, last, name, s->xbuf, XATTR_SIZE_MAX);

        if (noted[k])
            continue;
        if (n < 0 || (size_t)n != size || (size && memcmp(s->xbuf, value, size) != 0)) {
            lost_note(s, k, s->norm);
            noted[k] = true;
        }
    }
}

/*
 * With an extended access ACL the group bits of the mode on disk are the ACL's mask, while
 * the archive's mode has the owning group's: those bits are the ACL's to check.
 */
#define ACL_MODE_MASK ((mode_t)07707)

/* The access (and for a directory the default) ACL the archive holds must be on disk. */
static bool acl_missing(int pfd, const char *last, bool access, bool dflt)
{
    return (access && xattr_at(pfd, last, "system.posix_acl_access", NULL, 0) <= 0) ||
           (dflt && xattr_at(pfd, last, "system.posix_acl_default", NULL, 0) <= 0);
}

/*
 * Owner, mode bits under mode_mask (0: none) and modification time (to the second: filesystems
 * differ below it).
 */
static void check_stat(struct rs *s, const struct stat *st, uid_t uid, gid_t gid, mode_t perm,
                       mode_t mode_mask, const struct timespec *mtime, bool mtime_set,
                       const char *rel)
{
    if (st->st_uid != uid || st->st_gid != gid)
        lost_note(s, ENGINE_LOST_OWNER, rel);
    if (mode_mask && (st->st_mode & mode_mask) != (perm & mode_mask))
        lost_note(s, ENGINE_LOST_MODE, rel);
    if (mtime_set && st->st_mtim.tv_sec != mtime->tv_sec)
        lost_note(s, ENGINE_LOST_TIMES, rel);
}

/*
 * After an entry other than a directory or a hardlink was extracted: what is on disk must be
 * what the archive says. A regular file must have its full size: libarchive reports a failed
 * write() as a mere warning and then extends the file to its size, so a full filesystem would
 * otherwise restore holes where the data should be. Returns 0, or -EIO with e filled.
 */
static int check_entry(struct rs *s, int pfd, const char *last, struct archive_entry *ent,
                       mode_t type, ord_err *e)
{
    struct timespec mt = {archive_entry_mtime(ent), archive_entry_mtime_nsec(ent)};
    bool acl = archive_entry_acl_count(ent, ARCHIVE_ENTRY_ACL_TYPE_ACCESS) > 0;
    struct stat st;

    if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_set_errno(e, -errno, "entry '%.300s' is not on disk after its extraction",
                             s->norm);
    if (type == AE_IFREG && (uint64_t)st.st_size != (uint64_t)archive_entry_size(ent))
        return err_set(e, -EIO, "entry '%.300s' has %llu bytes on disk, the archive holds %llu",
                       s->norm, (unsigned long long)st.st_size,
                       (unsigned long long)archive_entry_size(ent));
    check_stat(s, &st, (uid_t)archive_entry_uid(ent), (gid_t)archive_entry_gid(ent),
               archive_entry_perm(ent), type == AE_IFLNK ? 0 : acl ? ACL_MODE_MASK : 07777, &mt,
               archive_entry_mtime_is_set(ent), s->norm);
    check_xattrs(s, pfd, last, ent);
    if (type == AE_IFREG && acl_missing(pfd, last, acl, false))
        lost_note(s, ENGINE_LOST_ACL, s->norm);
    return 0;
}

static int remember_dir(struct rs *s, struct archive_entry *ent, bool deep)
{
    struct dir_rec *d;

    if (s->ndirs == s->capdirs) {
        size_t ncap = s->capdirs ? s->capdirs * 2 : 64;
        struct dir_rec *nd = realloc(s->dirs, ncap * sizeof(*nd));
        if (!nd)
            return -ENOMEM;
        s->dirs = nd;
        s->capdirs = ncap;
    }
    d = &s->dirs[s->ndirs];
    d->rel = strdup(s->norm);
    if (!d->rel)
        return -ENOMEM;
    d->perm = archive_entry_perm(ent);
    d->uid = (uid_t)archive_entry_uid(ent);
    d->gid = (gid_t)archive_entry_gid(ent);
    d->ts[0] = (struct timespec){archive_entry_atime(ent), archive_entry_atime_nsec(ent)};
    d->ts[1] = (struct timespec){archive_entry_mtime(ent), archive_entry_mtime_nsec(ent)};
    if (!archive_entry_atime_is_set(ent))
        d->ts[0].tv_nsec = UTIME_OMIT;
    d->mtime_set = archive_entry_mtime_is_set(ent);
    d->deep = deep;
    d->acl_access = archive_entry_acl_count(ent, ARCHIVE_ENTRY_ACL_TYPE_ACCESS) > 0;
    d->acl_default = archive_entry_acl_count(ent, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT) > 0;
    s->ndirs++;
    return 0;
}

/*
 * After archive_write_close: directories beyond PATH_MAX get their mode and times (deepest
 * first, so that a parent's mode never stands in the way of a child), then every directory is
 * compared with its archive entry.
 */
static int finish_dirs(struct rs *s, ord_err *e)
{
    for (size_t i = s->ndirs; i-- > 0;) {
        struct dir_rec *d = &s->dirs[i];
        const char *last = d->rel;
        struct stat st;
        int r = 0, pfd;

        if (!*d->rel) {
            /* the root entry is the staging directory itself (times: engine_restore_dir) */
            if (fstat(s->sfd, &st) < 0)
                return err_set_errno(e, -errno, "checking the restored root directory");
            check_stat(s, &st, d->uid, d->gid, d->perm, d->acl_access ? ACL_MODE_MASK : 07777,
                       &s->root_times[1], d->mtime_set, "");
            if (acl_missing(s->sfd, "", d->acl_access, d->acl_default))
                lost_note(s, ENGINE_LOST_ACL, "");
            continue;
        }
        pfd = open_parent_beneath(s->sfd, d->rel, &last);
        if (pfd < 0)
            return err_set_errno(e, pfd, "checking the restored directory '%.300s'", d->rel);
        if (d->deep && (fchmodat(pfd, last, d->perm, 0) < 0 ||
                        utimensat(pfd, last, d->ts, AT_SYMLINK_NOFOLLOW) < 0))
            r = -errno;
        if (r == 0 && fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno;
        if (r == 0 && S_ISDIR(st.st_mode)) {
            /* a later entry of the same name may have replaced it: then there is nothing
             * of this one to check */
            check_stat(s, &st, d->uid, d->gid, d->perm, d->acl_access ? ACL_MODE_MASK : 07777,
                       &d->ts[1], d->mtime_set, d->rel);
            if (acl_missing(pfd, last, d->acl_access, d->acl_default))
                lost_note(s, ENGINE_LOST_ACL, d->rel);
        }
        close(pfd);
        if (r < 0)
            return err_set_errno(e, r, "setting or checking the attributes of '%.300s'", d->rel);
    }
    return 0;
}

/* errno values with which creating a device node or FIFO fails for want of a privilege or of
 * support by the filesystem, rather than for want of space or a broken disk */
static bool not_permitted(int err)
{
    return err == EPERM || err == EACCES || err == EOPNOTSUPP || err == ENOTSUP;
}

/*
 * A write into staging failed: the message names the entry and the error and, for a full
 * filesystem or quota, the sizes.
 */
static int write_failed(struct rs *s, const struct engine_expect *x, const char *what, ord_err *e)
{
    int err = archive_errno(s->w);
    int code = err > 0 ? -err : -EIO;
    struct statvfs v;

    if ((code == -ENOSPC || code == -EDQUOT) && fstatvfs(s->sfd, &v) == 0) {
        unsigned long long mib = 1024ull * 1024ull;
        return err_set(e, code,
                       "%s '%.300s': %s: the backup holds %llu MiB of file content in %llu "
                       "entries, %llu MiB of it were written when the %s ran out (%llu MiB and "
                       "%llu inodes free on that filesystem now)",
                       what, s->norm, strerror(-code),
                       (unsigned long long)(x->bytes_in + mib - 1) / mib,
                       (unsigned long long)x->files, (unsigned long long)s->content / mib,
                       code == -EDQUOT ? "quota" : "space",
                       (unsigned long long)((uint64_t)v.f_bavail * v.f_frsize / mib),
                       (unsigned long long)v.f_favail);
    }
    return err_set(e, code, "%s '%.300s': %s", what, s->norm,
                   err > 0 ? strerror(err) : archive_error_string(s->w));
}

/*
 * The parent directory of the entry just extracted (plen: length of its path, 0 = the staging
 * directory), as an O_PATH descriptor that stays owned by s. libarchive has created the
 * missing parents by now, so the cache is refreshed when it does not cover them.
 */
static int extracted_parent(struct rs *s, size_t plen, ord_err *e)
{
    char bad[512];
    bool complete;
    int fd = -EBADF, r;

    if (plen == 0)
        return s->sfd;
    if (s->cache_ok && plen == s->cache_len && memcmp(s->cache, s->norm, plen) == 0)
        return s->cache_fd;
    r = walk_parents(s->sfd, s->norm, &complete, &fd, bad, sizeof(bad));
    if (r == 0 && !complete)
        r = -ENOENT;
    if (r < 0)
        return err_set_errno(e, r, "entry '%.300s': its parent directory is not there after "
                             "the extraction", s->norm);
    if (s->cache_fd >= 0)
        close(s->cache_fd);
    s->cache_fd = fd;
    s->cache_ok = true;
    memcpy(s->cache, s->norm, plen);
    s->cache[plen] = '\0';
    s->cache_len = plen;
    return fd;
}

/* The root entry: libarchive treats the existing staging directory as "already there" and
 * sets its times at once, before the children move them: we set them at the end. */
static void note_root(struct rs *s, struct archive_entry *ent)
{
    s->root_seen = true;
    s->root_times[0].tv_sec = archive_entry_atime(ent);
    s->root_times[0].tv_nsec = archive_entry_atime_nsec(ent);
    s->root_times[1].tv_sec = archive_entry_mtime(ent);
    s->root_times[1].tv_nsec = archive_entry_mtime_nsec(ent);
    if (!archive_entry_atime_is_set(ent))
        s->root_times[0].tv_nsec = UTIME_OMIT;
    if (!archive_entry_mtime_is_set(ent))
        s->root_times[1].tv_nsec = UTIME_OMIT;
}

/*
 * Before extracting the entry at s->norm (nlen > 0): its parents must be real directories (never
 * write through a symlink), and a symlink at its own name goes first. replaces_dirs: the entry
 * is not a directory, so it invalidates a cached parent chain it replaces a component of.
 */
static int check_parents(struct rs *s, size_t nlen, bool replaces_dirs, ord_err *e)
{
    const char *slash = strrchr(s->norm, '/');
    size_t plen = slash ? (size_t)(slash - s->norm) : 0;
    int pfd = s->sfd, ret;

    if (plen > 0 && !(s->cache_ok && plen == s->cache_len && memcmp(s->cache, s->norm, plen) == 0)) {
        char bad[512];
        bool complete;
        int fd = -EBADF;

        ret = walk_parents(s->sfd, s->norm, &complete, &fd, bad, sizeof(bad));
        if (ret == -ENOTDIR)
            return err_set(e, -EPERM,
                           "refusing entry '%.300s': '%.300s' is a symlink or not a directory",
                           s->norm, bad);
        if (ret < 0)
            return err_set_errno(e, ret, "checking the parents of entry '%.300s'", s->norm);
        if (s->cache_fd >= 0)
            close(s->cache_fd);
        s->cache_fd = fd;
        s->cache_ok = complete;
        if (complete) {
            memcpy(s->cache, s->norm, plen);
            s->cache[plen] = '\0';
            s->cache_len = plen;
        }
    }
    if (plen > 0)
        pfd = s->cache_ok ? s->cache_fd : -EBADF; /* -EBADF: the parent is missing */
    ret = pfd == -EBADF ? 0 : unlink_symlink_at(pfd, slash ? slash + 1 : s->norm);
    if (ret < 0)
        return err_set_errno(e, ret, "replacing the symlink at entry '%.300s'", s->norm);
    if (replaces_dirs && s->cache_ok && nlen <= s->cache_len &&
        memcmp(s->cache, s->norm, nlen) == 0 && (s->cache[nlen] == '/' || s->cache[nlen] == '\0'))
        s->cache_ok = false;
    return 0;
}

/*
 * A hardlink's target must be a file extracted earlier from this archive, reached through real
 * directories; it is rewritten to the name libarchive sees (<staging name>/<target>).
 */
static int check_hardlink(struct rs *s, struct archive_entry *ent, const char *hl, size_t blen,
                          ord_err *e)
{
    char *tn = s->full; /* scratch: the normalised target, then rebuilt below */
    struct stat st;
    char bad[512];
    bool complete;
    int ret;

    ret = normalize(hl, tn, RESTORE_PATH_MAX, "hardlink target", e);
    if (ret < 0)
        return err_wrap(e, ret, "entry '%.300s'", s->norm);
    if (!*tn)
        return err_set(e, -EPERM, "refusing hardlink '%.300s' to the root", s->norm);
    ret = walk_parents(s->sfd, tn, &complete, NULL, bad, sizeof(bad));
    if (ret == -ENOTDIR)
        return err_set(e, -EPERM,
                       "refusing hardlink '%.300s' -> '%.300s': '%.300s' is a symlink or not a "
                       "directory",
                       s->norm, hl, bad);
    if (ret == 0 && complete)
        ret = stat_beneath(s->sfd, tn, &st);
    else if (ret == 0)
        ret = -ENOENT;
    if (ret < 0 || S_ISDIR(st.st_mode))
        return err_set(e, -EPERM,
                       "refusing hardlink '%.300s' -> '%.300s': the target is not a file "
                       "extracted earlier from this archive",
                       s->norm, hl);
    memmove(tn + blen + 1, tn, strlen(tn) + 1);
    memcpy(tn, s->base, blen);
    tn[blen] = '/';
    archive_entry_copy_hardlink(ent, tn);
    return 0;
}

/* The entry's data from the archive to disk, within the manifest's content size. */
static int copy_data(struct rs *s, const struct engine_expect *x, ord_err *e)
{
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int rr = archive_read_data_block(s->rd.a, &buf, &len, &off);

        if (rr == ARCHIVE_EOF)
            return 0;
        if (rr < ARCHIVE_WARN) {
            int ret;
            zsource_stop(&s->rd.z);
            ret = engine_archive_err(s->rd.a, &s->rd.z.err, e, "reading the stored object");
            return err_wrap(e, ret, "entry '%.300s'", s->norm);
        }
        s->content += len;
        if (s->content > x->bytes_in)
            return err_set(e, -EBADMSG,
                           "entry '%.300s': the archive holds more data than the manifest's "
                           "%llu bytes",
                           s->norm, (unsigned long long)x->bytes_in);
        /* Not only below ARCHIVE_WARN: libarchive reports a failed write() (ENOSPC, EDQUOT,
         * EIO) as a warning and goes on. Any warning here is a lost write. */
        if (archive_write_data_block(s->w, buf, len, off) != ARCHIVE_OK)
            return write_failed(s, x, "writing entry", e);
    }
}

/*
 * After the entry (not a hardlink) was extracted: attributes beyond PATH_MAX, then the entry on
 * disk against the archive (a directory: its xattrs now, the rest in finish_dirs).
 */
static int after_entry(struct rs *s, struct archive_entry *ent, mode_t type, bool deep,
                       ord_err *e)
{
    const char *slash = strrchr(s->norm, '/');
    const char *last = slash ? slash + 1 : s->norm;
    int pfd, ret;

    if (type == AE_IFDIR) {
        ret = remember_dir(s, ent, deep);
        if (ret < 0)
            return err_set(e, ret, "out of memory");
    } else if (deep && type != AE_IFREG) {
        ret = fix_deep_entry(s->sfd, s->norm, ent);
        if (ret < 0)
            return err_set_errno(e, ret, "setting the attributes of '%.300s'", s->norm);
    }
    pfd = *s->norm ? extracted_parent(s, slash ? (size_t)(slash - s->norm) : 0, e) : s->sfd;
    if (pfd < 0)
        return pfd;
    if (type != AE_IFDIR)
        return check_entry(s, pfd, last, ent, type, e);
    check_xattrs(s, pfd, *s->norm ? last : "", ent);
    return 0;
}

static int restore_entries(struct rs *s, const struct engine_expect *x, ord_err *e)
{
    size_t blen = strlen(s->base);

    for (;;) {
        struct archive_entry *ent;
        const char *hl;
        size_t nlen;
        int ret;
        mode_t type;

        ret = rd_next(&s->rd, &ent, e);
        if (ret <= 0)
            return ret;
        s->files++;
        ret = normalize(archive_entry_pathname(ent), s->norm, RESTORE_PATH_MAX, "entry", e);
        if (ret < 0)
            return ret;
        type = archive_entry_filetype(ent);
        hl = archive_entry_hardlink(ent);
        if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO &&
            type != AE_IFCHR && type != AE_IFBLK && !hl)
            return err_set(e, -EBADMSG, "refusing entry '%.300s': unsupported file type 0%o",
                           s->norm, (unsigned)type);
        nlen = strlen(s->norm);
        if (nlen == 0 && (type != AE_IFDIR || hl))
            return err_set(e, -EPERM, "refusing entry '%.300s': the root must be a directory",
                           archive_entry_pathname(ent));
        if (nlen == 0)
            note_root(s, ent);
        else if ((ret = check_parents(s, nlen, type != AE_IFDIR || hl, e)) < 0)
            return ret;
        if (hl && (ret = check_hardlink(s, ent, hl, blen, e)) < 0)
            return ret;

        /* The name libarchive sees: <staging name>[/<normalised entry>]. The hardlink target
         * was copied into ent, so s->full is free again. */
        if (blen + 1 + nlen + 1 > RESTORE_PATH_MAX)
            return err_set(e, -ENAMETOOLONG, "refusing entry '%.300s': too long", s->norm);
        memcpy(s->full, s->base, blen);
        s->full[blen] = '\0';
        if (nlen) {
            s->full[blen] = '/';
            memcpy(s->full + blen + 1, s->norm, nlen + 1);
        }
        archive_entry_copy_pathname(ent, s->full);

        ret = archive_write_header(s->w, ent);
        if (ret < ARCHIVE_WARN && ret != ARCHIVE_FATAL && !hl &&
            (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO) &&
            not_permitted(archive_errno(s->w))) {
            /* no CAP_MKNOD, or a filesystem without them: counted, decided at the end */
            log_debug("restore: '%s': %s", s->norm, archive_error_string(s->w));
            lost_note(s, type == AE_IFIFO ? ENGINE_LOST_FIFO : ENGINE_LOST_DEVICE, s->norm);
            continue;
        }
        if (ret < ARCHIVE_WARN)
            return write_failed(s, x, "creating entry", e);
        if (ret == ARCHIVE_WARN) /* what it concerns is found by check_entry/finish_dirs */
            log_debug("restore: '%s': %s", s->norm, archive_error_string(s->w));
        ret = copy_data(s, x, e);
        if (ret < 0)
            return ret;
        ret = archive_write_finish_entry(s->w);
        if (ret < ARCHIVE_WARN)
            return write_failed(s, x, "finishing entry", e);
        if (ret == ARCHIVE_WARN)
            log_debug("restore: '%s': %s", s->norm, archive_error_string(s->w));
        if (!hl && (ret = after_entry(s, ent, type, blen + 1 + nlen >= PATH_MAX, e)) < 0)
            return ret;
    }
}

int engine_restore_dir(const struct byte_source *source, const struct engine_expect *expect,
                       const char *staging_path, struct engine_lost *lost, ord_err *e)
{
    _cleanup_close_ int pfd = -EBADF, cwd = -EBADF;
    struct engine_lost none = {0};
    struct rs s = {.sfd = -EBADF, .cache_fd = -EBADF, .lost = lost ? lost : &none};
    bool created = false, moved = false;
    int ret;

    if (expect->kind != VOLUME_DIRECTORY)
        return err_set(e, -EINVAL, "not a directory volume");
    ret = engine_open_parent(staging_path, &pfd, &s.base, e);
    if (ret < 0)
        return ret;
    if (mkdirat(pfd, s.base, 0700) < 0)
        return err_set_errno(e, -errno, "cannot create the staging directory '%s'", staging_path);
    created = true;
    s.sfd = openat(pfd, s.base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s.sfd < 0) {
        ret = err_set_errno(e, -errno, "cannot open the staging directory '%s'", staging_path);
        goto out;
    }
    s.norm = malloc(RESTORE_PATH_MAX);
    s.full = malloc(RESTORE_PATH_MAX);
    s.cache = malloc(RESTORE_PATH_MAX);
    s.xbuf = malloc(XATTR_SIZE_MAX);
    s.w = archive_write_disk_new();
    if (!s.norm || !s.full || !s.cache || !s.xbuf || !s.w) {
        ret = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    if (archive_write_disk_set_options(s.w, restore_flags) != ARCHIVE_OK) {
        ret = engine_archive_err(s.w, NULL, e, "setting up extraction");
        goto out;
    }
    ret = rd_open(&s.rd, source, e);
    if (ret < 0)
        goto out;

    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) {
        ret = err_set_errno(e, -errno, "cannot open the current directory");
        goto out;
    }
    if (fchdir(pfd) < 0) {
        ret = err_set_errno(e, -errno, "cannot change into the parent of '%s'", staging_path);
        goto out;
    }
    moved = true;
    ret = restore_entries(&s, expect, e);
    if (ret < 0)
        goto out;
    /* Directory modes and times are set here, after their children. */
    if (archive_write_close(s.w) != ARCHIVE_OK) {
        ret = engine_archive_err(s.w, NULL, e, "finishing the extraction");
        goto out;
    }
    if (s.root_seen && futimens(s.sfd, s.root_times) < 0) {
        ret = err_set_errno(e, -errno, "setting the times of '%s'", staging_path);
        goto out;
    }
    ret = finish_dirs(&s, e);
    if (ret < 0)
        goto out;
    ret = rd_finish(&s.rd, expect, s.files, s.content, e);
    if (ret < 0)
        goto out;
    /* Writeback errors (EIO from the disk, a thin pool or an NFS server) surface here: the
     * descriptor was opened before anything was written, so syncfs reports every one since. */
    if (syncfs(s.sfd) < 0) {
        ret = err_set_errno(e, -errno, "flushing the restored content of '%s' to disk",
                            staging_path);
        goto out;
    }
    if (engine_lost_total(s.lost) > 0 && !s.lost->accept) {
        char what[ORD_ERR_MSG_MAX / 2];

        engine_lost_describe(s.lost, what, sizeof(what));
        ret = err_set(e, -EPERM, "the restore could not keep %s", what);
    }
out:
    if (moved && fchdir(cwd) < 0 && ret >= 0)
        ret = err_set_errno(e, -errno, "cannot return to the previous working directory");
    if (s.w)
        archive_write_free(s.w);
    rd_close(&s.rd);
    if (s.sfd >= 0)
        close(s.sfd);
    if (s.cache_fd >= 0)
        close(s.cache_fd);
    free(s.norm);
    free(s.full);
    free(s.cache);
    free(s.xbuf);
    for (size_t i = 0; i < s.ndirs; i++)
        free(s.dirs[i].rel);
    free(s.dirs);
    engine_lost_clear(&none);
    if (ret < 0 && created) {
        ord_err e2 = {0};
        if (fs_rmtree_at(pfd, s.base, &e2) < 0)
            err_append(e, "the staging directory '%s' could not be removed (%s): the next "
                       "restore of this volume removes it", staging_path, e2.msg);
    }
    return ret;
}

/* Zeros [off, off+len) of the device: BLKZEROOUT where aligned, writes elsewhere. */
static int zero_range(int fd, uint64_t off, uint64_t len, const uint8_t *zeros, size_t zlen)
{
    uint64_t a0 = (off + 511) & ~(uint64_t)511, a1 = (off + len) & ~(uint64_t)511;

    if (a1 > a0 + 4096) {
        uint64_t range[2] = {a0, a1 - a0};
        if (ioctl(fd, BLKZEROOUT, range) == 0) {
            int r = zero_range(fd, off, a0 - off, zeros, zlen);
            if (r < 0)
                return r;
            return zero_range(fd, a1, off + len - a1, zeros, zlen);
        }
    }
    while (len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)zlen);
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf = (const uint8_t *)buf + w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int engine_restore_device(const struct byte_source *source, const struct engine_expect *expect,
                          const char *device_path, ord_err *e)
{
    _cleanup_close_ int fd = -EBADF;
    _cleanup_free_ uint8_t *zeros = NULL;
    struct rd r = {0};
    uint64_t devsize = 0, size = 0, pos = 0, files = 0;
    struct stat st;
    int ret;

    if (expect->kind != VOLUME_DEVICE)
        return err_set(e, -EINVAL, "not a device volume");
    /* O_EXCL on a block device: refuse one that is mounted or otherwise claimed. */
    fd = open(device_path, O_WRONLY | O_EXCL | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open device '%s'%s", device_path,
                             errno == EBUSY ? " (mounted or in use)" : "");
    if (fstat(fd, &st) < 0)
        return err_set_errno(e, -errno, "cannot stat device '%s'", device_path);
    if (!S_ISBLK(st.st_mode))
        return err_set(e, -ENOTBLK, "'%s' is not a block device", device_path);
    if (ioctl(fd, BLKGETSIZE64, &devsize) < 0)
        return err_set_errno(e, -errno, "cannot size device '%s'", device_path);
    zeros = calloc(1, ENGINE_BUF_SIZE);
    if (!zeros)
        return -ENOMEM;

    ret = rd_open(&r, source, e);
    if (ret < 0)
        goto out;
    for (;;) {
        struct archive_entry *ent;

        ret = rd_next(&r, &ent, e);
        if (ret < 0)
            goto out;
        if (ret == 0)
            break;
        ret = check_device_entry(ent, files, e);
        if (ret < 0)
            goto out;
        files++;
        size = (uint64_t)archive_entry_size(ent);
        if (size > devsize) {
            ret = err_set(e, -ENOSPC,
                          "device '%s' is smaller than the image: %llu bytes < %llu bytes",
                          device_path, (unsigned long long)devsize, (unsigned long long)size);
            goto out;
        }
        if (size != expect->bytes_in) {
            ret = err_set(e, -EBADMSG, "the image is %llu bytes, the manifest says %llu",
                          (unsigned long long)size, (unsigned long long)expect->bytes_in);
            goto out;
        }
        for (;;) {
            const void *buf;
            size_t len;
            la_int64_t off;
            int x = archive_read_data_block(r.a, &buf, &len, &off);
            if (x == ARCHIVE_EOF)
                break;
            if (x < ARCHIVE_WARN) {
                zsource_stop(&r.z);
                ret = engine_archive_err(r.a, &r.z.err, e, "reading the stored object");
                goto out;
            }
            if (off < 0 || (uint64_t)off < pos || (uint64_t)off + len > size) {
                ret = err_set(e, -EBADMSG, "the image has a data block outside its size");
                goto out;
            }
            if ((uint64_t)off > pos) {
                ret = zero_range(fd, pos, (uint64_t)off - pos, zeros, ENGINE_BUF_SIZE);
                if (ret < 0) {
                    err_set_errno(e, ret, "writing device '%s'", device_path);
                    goto out;
                }
            }
            ret = pwrite_all(fd, buf, len, (uint64_t)off);
            if (ret < 0) {
                err_set_errno(e, ret, "writing device '%s'", device_path);
                goto out;
            }
            pos = (uint64_t)off + len;
        }
        if (pos < size) {
            ret = zero_range(fd, pos, size - pos, zeros, ENGINE_BUF_SIZE);
            if (ret < 0) {
                err_set_errno(e, ret, "writing device '%s'", device_path);
                goto out;
            }
            pos = size;
        }
    }
    if (fsync(fd) < 0) {
        ret = err_set_errno(e, -errno, "flushing device '%s'", device_path);
        goto out;
    }
    ret = rd_finish(&r, expect, files, size, e);
    if (ret < 0)
        err_wrap(e, ret, "device '%s' was written but the object did not check out again", device_path);
out:
    rd_close(&r);
    return ret;
}
