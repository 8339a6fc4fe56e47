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

struct deep_dir {
    char *rel;
    mode_t perm;
    struct timespec ts[2];
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
    struct deep_dir *deep; /* directories beyond PATH_MAX: see restore_deep_dirs */
    size_t ndeep, capdeep;
    bool root_seen;
    struct timespec root_times[2]; /* atime, mtime of the root entry */
};

/*
 * libarchive's deferred directory fixups (mode and times after the children) go by path and
 * fail beyond PATH_MAX; for those directories we keep what to set and do it after
 * archive_write_close, relative to the parent directory.
 */
static int remember_deep_dir(struct rs *s, struct archive_entry *ent)
{
    struct deep_dir *d;

    if (s->ndeep == s->capdeep) {
        size_t ncap = s->capdeep ? s->capdeep * 2 : 16;
        struct deep_dir *nd = realloc(s->deep, ncap * sizeof(*nd));
        if (!nd)
            return -ENOMEM;
        s->deep = nd;
        s->capdeep = ncap;
    }
    d = &s->deep[s->ndeep];
    d->rel = strdup(s->norm);
    if (!d->rel)
        return -ENOMEM;
    d->perm = archive_entry_perm(ent);
    d->ts[0] = (struct timespec){archive_entry_atime(ent), archive_entry_atime_nsec(ent)};
    d->ts[1] = (struct timespec){archive_entry_mtime(ent), archive_entry_mtime_nsec(ent)};
    if (!archive_entry_atime_is_set(ent))
        d->ts[0].tv_nsec = UTIME_OMIT;
    s->ndeep++;
    return 0;
}

static int restore_deep_dirs(struct rs *s, ord_err *e)
{
    /* Deepest first, so that a parent's mode never stands in the way of a child. */
    for (size_t i = s->ndeep; i-- > 0;) {
        struct deep_dir *d = &s->deep[i];
        const char *last = d->rel;
        int r = 0, pfd = open_parent_beneath(s->sfd, d->rel, &last);

        if (pfd < 0)
            return err_set_errno(e, pfd, "setting the attributes of '%.300s'", d->rel);
        if (fchmodat(pfd, last, d->perm, 0) < 0 || utimensat(pfd, last, d->ts, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno;
        close(pfd);
        if (r < 0)
            return err_set_errno(e, r, "setting the attributes of '%.300s'", d->rel);
    }
    return 0;
}

static int restore_entries(struct rs *s, const struct engine_expect *x, ord_err *e)
{
    size_t blen = strlen(s->base);

    for (;;) {
        struct archive_entry *ent;
        const char *hl;
        char bad[512];
        bool complete;
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
        if (nlen == 0) {
            /* libarchive treats the existing staging directory as "already there" and sets
             * its times at once, before the children move them: we set them at the end. */
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

        /* Parents must be real directories: never write through a symlink. */
        if (nlen > 0) {
            const char *slash = strrchr(s->norm, '/');
            size_t plen = slash ? (size_t)(slash - s->norm) : 0;
            int pfd = s->sfd;

            if (plen > 0 && !(s->cache_ok && plen == s->cache_len &&
                              memcmp(s->cache, s->norm, plen) == 0)) {
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
            /* A non-directory replacing a cached parent component invalidates the cache. */
            if ((type != AE_IFDIR || hl) && s->cache_ok && nlen <= s->cache_len &&
                memcmp(s->cache, s->norm, nlen) == 0 &&
                (s->cache[nlen] == '/' || s->cache[nlen] == '\0'))
                s->cache_ok = false;
        }

        if (hl) {
            struct stat st;
            char *tn = s->full; /* scratch: the normalised target, then rebuilt below */
            ret = normalize(hl, tn, RESTORE_PATH_MAX, "hardlink target", e);
            if (ret < 0)
                return err_wrap(e, ret, "entry '%.300s'", s->norm);
            if (!*tn)
                return err_set(e, -EPERM, "refusing hardlink '%.300s' to the root", s->norm);
            ret = walk_parents(s->sfd, tn, &complete, NULL, bad, sizeof(bad));
            if (ret == -ENOTDIR)
                return err_set(e, -EPERM,
                               "refusing hardlink '%.300s' -> '%.300s': '%.300s' is a symlink or "
                               "not a directory",
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
        }

        /* The name libarchive sees: <staging name>[/<normalised entry>]. */
        if (blen + 1 + nlen + 1 > RESTORE_PATH_MAX)
            return err_set(e, -ENAMETOOLONG, "refusing entry '%.300s': too long", s->norm);
        {
            char *full = s->full; /* the hardlink target was copied into ent: reuse it */
            memcpy(full, s->base, blen);
            if (nlen) {
                full[blen] = '/';
                memcpy(full + blen + 1, s->norm, nlen + 1);
            } else {
                full[blen] = '\0';
            }
            archive_entry_copy_pathname(ent, full);
        }

        ret = archive_write_header(s->w, ent);
        if (ret < ARCHIVE_WARN) {
            engine_archive_err(s->w, NULL, e, "extracting");
            return err_wrap(e, -EIO, "entry '%.300s'", s->norm);
        }
        if (ret == ARCHIVE_WARN)
            log_debug("restore: '%s': %s", s->norm, archive_error_string(s->w));
        for (;;) {
            const void *buf;
            size_t len;
            la_int64_t off;
            int rr = archive_read_data_block(s->rd.a, &buf, &len, &off);
            if (rr == ARCHIVE_EOF)
                break;
            if (rr < ARCHIVE_WARN) {
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
            la_ssize_t wn = archive_write_data_block(s->w, buf, len, off);
            if (wn < ARCHIVE_WARN) {
                engine_archive_err(s->w, NULL, e, "extracting");
                return err_wrap(e, -EIO, "entry '%.300s'", s->norm);
            }
        }
        ret = archive_write_finish_entry(s->w);
        if (ret < ARCHIVE_WARN) {
            engine_archive_err(s->w, NULL, e, "extracting");
            return err_wrap(e, -EIO, "entry '%.300s'", s->norm);
        }
        if (ret == ARCHIVE_WARN)
            log_debug("restore: '%s': %s", s->norm, archive_error_string(s->w));
        if (blen + 1 + nlen >= PATH_MAX && type == AE_IFDIR && !hl) {
            ret = remember_deep_dir(s, ent);
            if (ret < 0)
                return err_set(e, ret, "out of memory");
        }
        if (blen + 1 + nlen >= PATH_MAX && !hl &&
            (type == AE_IFLNK || type == AE_IFIFO || type == AE_IFCHR || type == AE_IFBLK)) {
            ret = fix_deep_entry(s->sfd, s->norm, ent);
            if (ret < 0)
                return err_set_errno(e, ret, "setting the attributes of '%.300s'", s->norm);
        }
    }
}

int engine_restore_dir(const struct byte_source *source, const struct engine_expect *expect,
                       const char *staging_path, ord_err *e)
{
    _cleanup_close_ int pfd = -EBADF, cwd = -EBADF;
    struct rs s = {.sfd = -EBADF, .cache_fd = -EBADF};
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
    s.w = archive_write_disk_new();
    if (!s.norm || !s.full || !s.cache || !s.w) {
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
    ret = restore_deep_dirs(&s, e);
    if (ret < 0)
        goto out;
    if (s.root_seen && futimens(s.sfd, s.root_times) < 0) {
        ret = err_set_errno(e, -errno, "setting the times of '%s'", staging_path);
        goto out;
    }
    ret = rd_finish(&s.rd, expect, s.files, s.content, e);
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
    for (size_t i = 0; i < s.ndeep; i++)
        free(s.deep[i].rel);
    free(s.deep);
    if (ret < 0 && created) {
        ord_err e2 = {0};
        if (fs_rmtree_at(pfd, s.base, &e2) < 0)
            err_wrap(e, ret, "(the staging directory '%s' could not be removed: %s)", staging_path,
                     e2.msg);
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
