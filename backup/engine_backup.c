/*
 * engine_backup.c - a volume to a stored object: the directory walk and the device image.
 *
 * Directory volumes are walked by us, not by archive_read_disk: every step is relative to an
 * open directory fd (openat/statx with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW on every open), so a
 * symlink is archived as a link and never resolved, the total path length is unlimited, and
 * a directory on another device (or the root of a bind mount, STATX_ATTR_MOUNT_ROOT) is
 * archived as an empty directory and reported, never entered. xattrs and POSIX ACLs are read
 * from the open fd (ACLs from their system.posix_acl_* xattrs, decoded here), so nothing is
 * ever looked up by a path string; for symlinks, FIFOs and device nodes, which we do not
 * open, xattrs are read through /proc/self/fd/<dirfd>/<name> with the l*xattr calls, which
 * do not follow the last component. Each directory's names are read and sorted first
 * (deterministic archives); only the deepest WALK_OPEN_MAX levels keep their fd, an ancestor
 * is reopened through ".." of its child and its identity checked.
 *
 * Regular files are read with change detection: small files (<= ENGINE_BUF_SIZE, no holes)
 * are read whole, then fstat'ed; if size/mtime/ctime moved they are read again, up to
 * WALK_TRIES times, so the archived copy is one consistent version. Larger files are
 * streamed (the tar header must precede the data, so they cannot be re-read without storing
 * them twice): if they moved during the read they are reported in engine_stats.changed.
 *
 * Device volumes: two passes over the device. The first finds the aligned ENGINE_HOLE_GRAIN
 * blocks of zeros and builds a sparse map (bounded at ENGINE_SPARSE_MAX runs by merging the
 * smallest holes); the second writes the data runs. The pax writer (GNU sparse 1.0) wants
 * the whole logical stream, skipping the hole parts, so holes are fed from a zero buffer.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "engine_int.h"
#include "log.h"

#define WALK_OPEN_MAX 256
#define WALK_TRIES 3
#define WALK_PATH_MAX (1u << 20)
#define XATTR_LIST_CAP (64u << 10)
#define XATTR_VALUE_CAP (64u << 10)

struct hl_ent {
    dev_t dev;
    ino_t ino;
    nlink_t left; /* links not seen yet; the entry is dropped at 0 */
    char *path;
    struct hl_ent *next;
};

struct frame {
    int fd;        /* -EBADF while closed (deep trees) */
    dev_t dev;
    ino_t ino;
    char *names;   /* NUL-separated, sorted through offs */
    size_t *offs;
    size_t n, i;
    size_t plen;   /* length of this directory's path in bk.path (0 for the root) */
};

struct sparse_run {
    int64_t off, len;
};

struct bk {
    struct archive *a;
    struct archive_entry *ent;
    struct zsink z;
    uint8_t *buf;
    uint8_t *zero;
    char *path;
    size_t plen, pcap;
    dev_t root_dev;
    struct hl_ent **hl;
    size_t hl_nb, hl_n;
    struct frame *fr;
    size_t nfr, capfr;
    struct sparse_run *runs;
    size_t nruns;
    char *xlist, *xval;
    struct engine_stats *st;
    engine_progress_fn progress;
    void *pctx;
    ord_err *e;
};

void (*engine_test_reread_hook)(const char *path, int attempt);

void engine_stats_free(struct engine_stats *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_changed; i++) {
        free(s->changed[i].path);
        free(s->changed[i].reason);
    }
    free(s->changed);
    s->changed = NULL;
    s->n_changed = 0;
}

static int add_changed(struct bk *b, const char *path, const char *fmt, ...) _printf_(3, 4);
static int add_changed(struct bk *b, const char *path, const char *fmt, ...)
{
    struct changed_file *n;
    char reason[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    log_debug("backup: '%s': %s", path, reason);
    n = realloc(b->st->changed, (b->st->n_changed + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    b->st->changed = n;
    n[b->st->n_changed].path = strdup(path);
    n[b->st->n_changed].reason = strdup(reason);
    if (!n[b->st->n_changed].path || !n[b->st->n_changed].reason) {
        free(n[b->st->n_changed].path);
        free(n[b->st->n_changed].reason);
        return -ENOMEM;
    }
    b->st->n_changed++;
    return 0;
}

static const char *show_path(const char *p)
{
    return *p ? p : ".";
}

/* statx without following the last component; *ret_mroot when it is the root of a mount. */
static int stat_at(int dirfd, const char *name, struct stat *st, bool *ret_mroot)
{
    struct statx sx;

    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH),
              STATX_BASIC_STATS, &sx) < 0)
        return -errno;
    memset(st, 0, sizeof(*st));
    st->st_mode = sx.stx_mode;
    st->st_ino = sx.stx_ino;
    st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st->st_nlink = sx.stx_nlink;
    st->st_uid = sx.stx_uid;
    st->st_gid = sx.stx_gid;
    st->st_size = (off_t)sx.stx_size;
    st->st_blocks = (blkcnt_t)sx.stx_blocks;
    st->st_atim.tv_sec = sx.stx_atime.tv_sec;
    st->st_atim.tv_nsec = sx.stx_atime.tv_nsec;
    st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
    st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
    st->st_ctim.tv_sec = sx.stx_ctime.tv_sec;
    st->st_ctim.tv_nsec = sx.stx_ctime.tv_nsec;
    *ret_mroot = (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                 (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    return 0;
}

static bool same_version(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Sets b->path to the child `name` of the directory whose path has length plen. */
static int path_set(struct bk *b, size_t plen, const char *name)
{
    size_t nlen = strlen(name);
    size_t need = plen + 1 + nlen + 1;

    if (need > WALK_PATH_MAX)
        return err_set(b->e, -ENAMETOOLONG, "path longer than %u bytes under '%.200s'",
                       WALK_PATH_MAX, b->path);
    if (need > b->pcap) {
        size_t ncap = MAX(need, b->pcap * 2);
        char *np = realloc(b->path, ncap);
        if (!np)
            return -ENOMEM;
        b->path = np;
        b->pcap = ncap;
    }
    if (plen > 0)
        b->path[plen++] = '/';
    memcpy(b->path + plen, name, nlen + 1);
    b->plen = plen + nlen;
    return 0;
}

/* Fills b->ent with the metadata every entry carries. */
static void entry_fill(struct bk *b, const char *path, const struct stat *st)
{
    struct archive_entry *ent = b->ent;

    archive_entry_clear(ent);
    archive_entry_copy_pathname(ent, *path ? path : ".");
    archive_entry_set_mode(ent, st->st_mode);
    archive_entry_set_uid(ent, st->st_uid);
    archive_entry_set_gid(ent, st->st_gid);
    archive_entry_set_mtime(ent, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_atime(ent, st->st_atim.tv_sec, st->st_atim.tv_nsec);
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        archive_entry_set_rdev(ent, st->st_rdev);
    archive_entry_set_size(ent, S_ISREG(st->st_mode) ? st->st_size : 0);
}

/* POSIX ACL xattr (linux/posix_acl_xattr.h): le32 version 2, then {le16 tag, le16 perm, le32 id}. */
static int acl_decode(struct archive_entry *ent, const uint8_t *v, size_t len, int type)
{
    if (len < 4 || (len - 4) % 8 != 0 || (v[0] | v[1] << 8 | v[2] << 16 | (uint32_t)v[3] << 24) != 2)
        return -EBADMSG;
    for (size_t off = 4; off < len; off += 8) {
        unsigned tag = v[off] | (unsigned)v[off + 1] << 8;
        unsigned perm = v[off + 2] | (unsigned)v[off + 3] << 8;
        uint32_t id = v[off + 4] | (uint32_t)v[off + 5] << 8 | (uint32_t)v[off + 6] << 16 |
                      (uint32_t)v[off + 7] << 24;
        int atag, aperm = 0, qual = -1;

        switch (tag) {
        case 0x01: atag = ARCHIVE_ENTRY_ACL_USER_OBJ; break;
        case 0x02: atag = ARCHIVE_ENTRY_ACL_USER; qual = (int)id; break;
        case 0x04: atag = ARCHIVE_ENTRY_ACL_GROUP_OBJ; break;
        case 0x08: atag = ARCHIVE_ENTRY_ACL_GROUP; qual = (int)id; break;
        case 0x10: atag = ARCHIVE_ENTRY_ACL_MASK; break;
        case 0x20: atag = ARCHIVE_ENTRY_ACL_OTHER; break;
        default: return -EBADMSG;
        }
        if (perm & 4)
            aperm |= ARCHIVE_ENTRY_ACL_READ;
        if (perm & 2)
            aperm |= ARCHIVE_ENTRY_ACL_WRITE;
        if (perm & 1)
            aperm |= ARCHIVE_ENTRY_ACL_EXECUTE;
        if (archive_entry_acl_add_entry(ent, type, aperm, atag, qual, NULL) != ARCHIVE_OK)
            return -EBADMSG;
    }
    return 0;
}

/*
 * Adds the xattrs (user., security., trusted.) and POSIX ACLs of an object to b->ent: from
 * fd when it is open, else through /proc/self/fd/<dirfd>/<name> without following it.
 * Unsupported (ENOTSUP) means none. Returns 0 or a negative errno.
 */
static int entry_xattrs(struct bk *b, int fd, int dirfd, const char *name)
{
    char proc[64 + NAME_MAX];
    ssize_t n;

    if (fd < 0) {
        int r = snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
        if (r < 0 || (size_t)r >= sizeof(proc))
            return -ENAMETOOLONG;
    }
    n = fd >= 0 ? flistxattr(fd, b->xlist, XATTR_LIST_CAP) : llistxattr(proc, b->xlist, XATTR_LIST_CAP);
    if (n < 0) {
        if (errno == ENOTSUP || errno == ENOENT)
            return 0;
        return -errno;
    }
    for (ssize_t off = 0; off < n;) {
        const char *xn = b->xlist + off;
        size_t xl = strnlen(xn, (size_t)(n - off));
        bool acl_a = streq(xn, "system.posix_acl_access");
        bool acl_d = streq(xn, "system.posix_acl_default");
        ssize_t vl;

        off += (ssize_t)xl + 1;
        if (!acl_a && !acl_d && strncmp(xn, "user.", 5) != 0 && strncmp(xn, "security.", 9) != 0 &&
            strncmp(xn, "trusted.", 8) != 0)
            continue;
        vl = fd >= 0 ? fgetxattr(fd, xn, b->xval, XATTR_VALUE_CAP)
                     : lgetxattr(proc, xn, b->xval, XATTR_VALUE_CAP);
        if (vl < 0) {
            if (errno == ENODATA)
                continue; /* removed meanwhile */
            return -errno;
        }
        if (acl_a || acl_d) {
            if (acl_decode(b->ent, (const uint8_t *)b->xval, (size_t)vl,
                           acl_a ? ARCHIVE_ENTRY_ACL_TYPE_ACCESS : ARCHIVE_ENTRY_ACL_TYPE_DEFAULT) < 0)
                return -EBADMSG;
            continue;
        }
        archive_entry_xattr_add_entry(b->ent, xn, b->xval, (size_t)vl);
    }
    return 0;
}

static int write_header(struct bk *b)
{
    int r = archive_write_header(b->a, b->ent);

    if (r < ARCHIVE_WARN)
        return engine_archive_err(b->a, &b->z.err, b->e, "writing the archive");
    b->st->files++;
    return 0;
}

static int write_data(struct bk *b, const void *buf, size_t len)
{
    while (len > 0) {
        la_ssize_t n = archive_write_data(b->a, buf, len);
        if (n <= 0)
            return engine_archive_err(b->a, &b->z.err, b->e, "writing the archive");
        buf = (const uint8_t *)buf + n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_zeros(struct bk *b, uint64_t len)
{
    while (len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)ENGINE_BUF_SIZE);
        int r = write_data(b, b->zero, n);
        if (r < 0)
            return r;
        len -= n;
    }
    return 0;
}

static void report_progress(struct bk *b, uint64_t done)
{
    if (b->progress)
        b->progress(b->pctx, done);
}

/* Hardlink table: (dev, ino) of files with st_nlink > 1 -> the path first archived. */
static struct hl_ent **hl_slot(struct bk *b, dev_t dev, ino_t ino)
{
    size_t h = (size_t)((ino * 0x9e3779b97f4a7c15ull) ^ dev) & (b->hl_nb - 1);
    struct hl_ent **p = &b->hl[h];

    while (*p && !((*p)->dev == dev && (*p)->ino == ino))
        p = &(*p)->next;
    return p;
}

static int hl_grow(struct bk *b)
{
    size_t nb = b->hl_nb ? b->hl_nb * 2 : 1024;
    struct hl_ent **nh = calloc(nb, sizeof(*nh));
    struct hl_ent **old = b->hl;
    size_t onb = b->hl_nb;

    if (!nh)
        return -ENOMEM;
    b->hl = nh;
    b->hl_nb = nb;
    for (size_t i = 0; i < onb; i++)
        for (struct hl_ent *e = old[i], *next; e; e = next) {
            next = e->next;
            e->next = NULL;
            *hl_slot(b, e->dev, e->ino) = e;
        }
    free(old);
    return 0;
}

/*
 * For an object with several links: if one was archived already, writes a hardlink entry
 * to it and sets *ret_done.
 */
static int hardlink_lookup(struct bk *b, const struct stat *st, bool *ret_done)
{
    struct hl_ent **slot, *n;
    int r;

    *ret_done = false;
    if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
        return 0;
    slot = hl_slot(b, st->st_dev, st->st_ino);
    if (!*slot)
        return 0;
    n = *slot;
    entry_fill(b, b->path, st);
    archive_entry_set_size(b->ent, 0);
    archive_entry_copy_hardlink(b->ent, n->path);
    r = write_header(b);
    if (r < 0)
        return r;
    if (--n->left == 0) {
        *slot = n->next;
        free(n->path);
        free(n);
        b->hl_n--;
    }
    *ret_done = true;
    return 0;
}

/* After the first link was archived with its content: remember its path for the others. */
static int hardlink_remember(struct bk *b, const struct stat *st)
{
    struct hl_ent **slot, *n;

    if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
        return 0;
    if (b->hl_n * 4 >= b->hl_nb * 3 && hl_grow(b) < 0)
        return -ENOMEM;
    slot = hl_slot(b, st->st_dev, st->st_ino);
    if (*slot)
        return 0;
    n = calloc(1, sizeof(*n));
    if (!n || !(n->path = strdup(b->path))) {
        free(n);
        return -ENOMEM;
    }
    n->dev = st->st_dev;
    n->ino = st->st_ino;
    n->left = st->st_nlink - 1;
    *slot = n;
    b->hl_n++;
    return 0;
}

static void hl_free(struct bk *b)
{
    for (size_t i = 0; i < b->hl_nb; i++)
        for (struct hl_ent *e = b->hl[i], *next; e; e = next) {
            next = e->next;
            free(e->path);
            free(e);
        }
    free(b->hl);
    b->hl = NULL;
    b->hl_nb = b->hl_n = 0;
}

/*
 * Whether a file may have holes worth looking for: like GNU tar, only when fewer blocks are
 * allocated than its size needs. Saves two lseeks per file (40,000 on the bench's small files).
 * A file with holes and blocks preallocated beyond its end is then stored with zeros in place
 * of its holes: the same content, restored without the holes.
 */
static bool may_have_holes(const struct stat *st)
{
    return (int64_t)st->st_blocks * 512 < (int64_t)st->st_size;
}

/* The data runs of a file without holes: one, or none when it is empty. */
static int one_run(struct bk *b, int64_t size, bool *ret_holes)
{
    b->nruns = 0;
    if (size > 0)
        b->runs[b->nruns++] = (struct sparse_run){0, size};
    *ret_holes = false;
    return 0;
}

/* Data runs of fd by SEEK_DATA/SEEK_HOLE into b->runs; *ret_holes when there is any hole. */
static int map_holes(struct bk *b, int fd, int64_t size, bool *ret_holes)
{
    int64_t pos = 0;

    b->nruns = 0;
    *ret_holes = false;
    while (pos < size) {
        off_t d = lseek(fd, pos, SEEK_DATA);
        off_t h;

        if (d < 0) {
            if (errno == ENXIO) /* only a hole up to the end */
                break;
            /* No SEEK_DATA support: one data run. */
            b->nruns = 0;
            pos = 0;
            d = 0;
            h = size;
        } else {
            h = lseek(fd, d, SEEK_HOLE);
            if (h < 0 || h > size)
                h = size;
        }
        if (d >= size)
            break;
        if (b->nruns == ENGINE_SPARSE_MAX) {
            /* Too fragmented: the rest is one data run. */
            b->runs[b->nruns - 1].len = size - b->runs[b->nruns - 1].off;
            pos = size;
            break;
        }
        b->runs[b->nruns++] = (struct sparse_run){d, h - d};
        pos = h;
    }
    *ret_holes = !(b->nruns == 1 && b->runs[0].off == 0 && b->runs[0].len == size);
    if (size == 0)
        *ret_holes = false;
    return 0;
}

/*
 * Reads up to len bytes at off; returns the count (short only at EOF) or a negative errno. A
 * short read that brings the count to `expect` or beyond is taken as the end of a file of that
 * size without another read to see 0 (the caller's fstat afterwards catches a file that grew).
 */
static ssize_t pread_full(int fd, void *buf, size_t len, int64_t off, size_t expect)
{
    size_t done = 0;

    while (done < len) {
        size_t want = len - done;
        ssize_t n = pread(fd, (uint8_t *)buf + done, want, (off_t)(off + (int64_t)done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
        if ((size_t)n < want && done >= expect)
            break;
    }
    return (ssize_t)done;
}

/* Streams the runs of a file (or device) of logical size `size` into the open entry. */
static int stream_runs(struct bk *b, int fd, int64_t size, bool *ret_short)
{
    int64_t pos = 0;

    *ret_short = false;
    for (size_t i = 0; i <= b->nruns; i++) {
        int64_t off = i < b->nruns ? b->runs[i].off : size;
        int64_t end = i < b->nruns ? off + b->runs[i].len : size;
        int r;

        if (off > pos) {
            r = write_zeros(b, (uint64_t)(off - pos));
            if (r < 0)
                return r;
            pos = off;
        }
        while (pos < end) {
            size_t want = (size_t)MIN((int64_t)ENGINE_BUF_SIZE, end - pos);
            ssize_t n = *ret_short ? 0 : pread_full(fd, b->buf, want, pos, want);
            if (n < 0)
                return err_set_errno(b->e, (int)n, "reading '%s'", show_path(b->path));
            if ((size_t)n < want) {
                /* Shrank while read: keep the header's promise with zeros. */
                memset(b->buf + n, 0, want - (size_t)n);
                *ret_short = true;
            }
            r = write_data(b, b->buf, want);
            if (r < 0)
                return r;
            pos += (int64_t)want;
            b->st->bytes_in += want;
            report_progress(b, b->st->bytes_in);
        }
    }
    return 0;
}

/* Opens a regular file for reading without following or blocking; O_NOATIME if allowed. */
static int open_file_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC | O_NOATIME);

    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int put_regular(struct bk *b, int dirfd, const char *name, const struct stat *lst)
{
    _cleanup_close_ int fd = -EBADF;
    struct stat st0, st1;
    bool holes, done, shorted;
    int r;

    r = hardlink_lookup(b, lst, &done);
    if (r < 0 || done)
        return r;
    fd = open_file_at(dirfd, name);
    if (fd == -ENOENT)
        return add_changed(b, b->path, "removed before it could be read");
    if (fd < 0)
        return add_changed(b, b->path, "could not be opened: %s", strerror(-fd));
    if (fstat(fd, &st0) < 0)
        return err_set_errno(b->e, -errno, "stat of '%s'", b->path);
    if (!S_ISREG(st0.st_mode) || st0.st_ino != lst->st_ino || st0.st_dev != lst->st_dev)
        return add_changed(b, b->path, "replaced while the backup ran; skipped");
    if (may_have_holes(&st0))
        r = map_holes(b, fd, st0.st_size, &holes);
    else
        r = one_run(b, st0.st_size, &holes);
    if (r < 0)
        return r;

    if (!holes && st0.st_size <= (off_t)ENGINE_BUF_SIZE) {
        /* Small: read whole, re-read while it moves, archive one consistent version. */
        ssize_t n = 0;
        int tries;

        for (tries = 1;; tries++) {
            n = pread_full(fd, b->buf, ENGINE_BUF_SIZE, 0, (size_t)st0.st_size);
            if (n < 0)
                return add_changed(b, b->path, "read failed: %s", strerror((int)-n));
            if (engine_test_reread_hook)
                engine_test_reread_hook(b->path, tries);
            if (fstat(fd, &st1) < 0)
                return err_set_errno(b->e, -errno, "stat of '%s'", b->path);
            if (same_version(&st0, &st1) && n == st1.st_size)
                break;
            if (tries == WALK_TRIES || st1.st_size > (off_t)ENGINE_BUF_SIZE) {
                r = add_changed(b, b->path, "still changing after %d reads (size %lld -> %lld)",
                                tries, (long long)st0.st_size, (long long)st1.st_size);
                if (r < 0)
                    return r;
                break;
            }
            st0 = st1;
        }
        entry_fill(b, b->path, &st1);
        archive_entry_set_size(b->ent, n);
        r = entry_xattrs(b, fd, -1, NULL);
        if (r < 0)
            return err_set_errno(b->e, r, "reading xattrs of '%s'", b->path);
        r = write_header(b);
        if (r < 0)
            return r;
        r = write_data(b, b->buf, (size_t)n);
        if (r < 0)
            return r;
        b->st->bytes_in += (uint64_t)n;
        report_progress(b, b->st->bytes_in);
        return hardlink_remember(b, lst);
    }

    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    entry_fill(b, b->path, &st0);
    if (holes) {
        for (size_t i = 0; i < b->nruns; i++)
            archive_entry_sparse_add_entry(b->ent, b->runs[i].off, b->runs[i].len);
        if (b->nruns == 0) /* all hole: an empty run at the end marks it sparse */
            archive_entry_sparse_add_entry(b->ent, st0.st_size, 0);
    }
    r = entry_xattrs(b, fd, -1, NULL);
    if (r < 0)
        return err_set_errno(b->e, r, "reading xattrs of '%s'", b->path);
    r = write_header(b);
    if (r < 0)
        return r;
    r = stream_runs(b, fd, st0.st_size, &shorted);
    if (r < 0)
        return r;
    r = hardlink_remember(b, lst);
    if (r < 0)
        return r;
    if (fstat(fd, &st1) < 0)
        return err_set_errno(b->e, -errno, "stat of '%s'", b->path);
    if (shorted || !same_version(&st0, &st1))
        return add_changed(b, b->path, "changed while read (size %lld -> %lld%s)",
                           (long long)st0.st_size, (long long)st1.st_size,
                           shorted ? ", padded with zeros" : "");
    return 0;
}

static int put_special(struct bk *b, int dirfd, const char *name, const struct stat *st)
{
    bool done;
    int r = hardlink_lookup(b, st, &done);

    if (r < 0 || done)
        return r;
    entry_fill(b, b->path, st);
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX + 1];
        ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
        if (n < 0)
            return add_changed(b, b->path, "symlink could not be read: %s", strerror(errno));
        target[n] = '\0';
        archive_entry_copy_symlink(b->ent, target);
    }
    r = entry_xattrs(b, -1, dirfd, name);
    if (r < 0 && r != -ENOENT)
        return err_set_errno(b->e, r, "reading xattrs of '%s'", b->path);
    r = write_header(b);
    if (r < 0)
        return r;
    return hardlink_remember(b, st);
}

static int cmp_names(const void *x, const void *y, void *ctx)
{
    const char *names = ctx;
    return strcmp(names + *(const size_t *)x, names + *(const size_t *)y);
}

/* Reads the names of directory fd (without . and ..) into f, sorted. */
static int read_names(int fd, struct frame *f)
{
    size_t len = 0, cap = 0, ocap = 0;
    int dfd;
    DIR *d;

    dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    for (;;) {
        struct dirent *de;
        size_t nl;

        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno) {
                int r = -errno;
                closedir(d);
                return r;
            }
            break;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        nl = strlen(de->d_name) + 1;
        if (len + nl > cap) {
            size_t ncap = MAX(cap * 2, len + nl + 4096);
            char *nn = realloc(f->names, ncap);
            if (!nn)
                goto oom;
            f->names = nn;
            cap = ncap;
        }
        if (f->n == ocap) {
            size_t nocap = ocap ? ocap * 2 : 64;
            size_t *no = realloc(f->offs, nocap * sizeof(*no));
            if (!no)
                goto oom;
            f->offs = no;
            ocap = nocap;
        }
        memcpy(f->names + len, de->d_name, nl);
        f->offs[f->n++] = len;
        len += nl;
    }
    closedir(d);
    if (f->n > 1)
        qsort_r(f->offs, f->n, sizeof(*f->offs), cmp_names, f->names);
    return 0;
oom:
    closedir(d);
    return -ENOMEM;
}

static void frame_release(struct frame *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -EBADF;
    free(f->names);
    free(f->offs);
    f->names = NULL;
    f->offs = NULL;
}

/* Opens a directory, archives its entry and pushes a frame for its children. */
static int put_dir(struct bk *b, int dirfd, const char *name, const struct stat *lst)
{
    _cleanup_close_ int fd = -EBADF;
    struct frame *f;
    struct stat st;
    int r;

    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && !lst)
        return err_set_errno(b->e, -errno, "cannot open the volume directory '%s'", name);
    if (fd == -1 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
        return add_changed(b, b->path, "removed or replaced before it could be read");
    if (fd < 0)
        return add_changed(b, b->path, "directory could not be opened: %s", strerror(errno));
    if (fstat(fd, &st) < 0)
        return err_set_errno(b->e, -errno, "stat of '%s'", show_path(b->path));
    if (lst && (st.st_ino != lst->st_ino || st.st_dev != lst->st_dev))
        return add_changed(b, b->path, "replaced while the backup ran; skipped");
    entry_fill(b, b->path, &st);
    r = entry_xattrs(b, fd, -1, NULL);
    if (r < 0)
        return err_set_errno(b->e, r, "reading xattrs of '%s'", show_path(b->path));
    r = write_header(b);
    if (r < 0)
        return r;

    if (b->nfr == b->capfr) {
        size_t ncap = b->capfr ? b->capfr * 2 : 32;
        struct frame *nf = realloc(b->fr, ncap * sizeof(*nf));
        if (!nf)
            return -ENOMEM;
        b->fr = nf;
        b->capfr = ncap;
    }
    f = &b->fr[b->nfr];
    memset(f, 0, sizeof(*f));
    f->fd = -EBADF;
    r = read_names(fd, f);
    if (r < 0) {
        frame_release(f);
        return add_changed(b, b->path, "directory could not be read: %s", strerror(-r));
    }
    f->fd = TAKE_FD(fd);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->plen = b->plen;
    b->nfr++;
    /* Bound the open fds: see the file comment. */
    if (b->nfr > WALK_OPEN_MAX) {
        struct frame *old = &b->fr[b->nfr - 1 - WALK_OPEN_MAX];
        if (old->fd >= 0) {
            close(old->fd);
            old->fd = -EBADF;
        }
    }
    return 0;
}

static int walk(struct bk *b, const char *root)
{
    struct stat st;
    int r;

    b->path[0] = '\0';
    b->plen = 0;
    r = put_dir(b, AT_FDCWD, root, NULL);
    if (r < 0)
        return r;
    if (b->nfr == 0)
        return err_set(b->e, -ENOENT, "cannot read the volume directory '%s'", root);
    if (fstat(b->fr[0].fd, &st) < 0)
        return -errno;
    b->root_dev = st.st_dev;

    while (b->nfr > 0) {
        struct frame *f = &b->fr[b->nfr - 1];
        const char *name;
        bool mroot = false;

        if (f->i == f->n) {
            /* Done with this directory: make sure its parent is open again. */
            if (b->nfr >= 2 && b->fr[b->nfr - 2].fd < 0) {
                struct frame *p = &b->fr[b->nfr - 2];
                struct stat ps;
                int pfd = openat(f->fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (pfd < 0 || fstat(pfd, &ps) < 0 || ps.st_dev != p->dev || ps.st_ino != p->ino) {
                    if (pfd >= 0)
                        close(pfd);
                    b->path[p->plen] = '\0';
                    return err_set(b->e, -ESTALE, "directory '%.300s' moved during the backup",
                                   show_path(b->path));
                }
                p->fd = pfd;
            }
            frame_release(f);
            b->nfr--;
            continue;
        }
        name = f->names + f->offs[f->i++];
        r = path_set(b, f->plen, name);
        if (r < 0)
            return r;
        r = stat_at(f->fd, name, &st, &mroot);
        if (r == -ENOENT) {
            r = add_changed(b, b->path, "removed before it could be read");
            if (r < 0)
                return r;
            continue;
        }
        if (r < 0)
            return err_set_errno(b->e, r, "stat of '%s'", b->path);
        if (mroot || st.st_dev != b->root_dev) {
            /* Another filesystem: keep the mount point itself, never its content. */
            if (S_ISDIR(st.st_mode)) {
                entry_fill(b, b->path, &st);
                r = write_header(b);
                if (r < 0)
                    return r;
            }
            r = add_changed(b, b->path, "mount point: its content was not backed up");
        } else if (S_ISDIR(st.st_mode)) {
            r = put_dir(b, f->fd, name, &st);
        } else if (S_ISREG(st.st_mode)) {
            r = put_regular(b, f->fd, name, &st);
        } else if (S_ISLNK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) ||
                   S_ISBLK(st.st_mode)) {
            r = put_special(b, f->fd, name, &st);
        } else {
            log_debug("backup: '%s': socket skipped", b->path);
            r = 0;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    if (len == 0)
        return true;
    if (len < 16) {
        for (size_t i = 0; i < len; i++)
            if (p[i])
                return false;
        return true;
    }
    for (size_t i = 0; i < 16; i++)
        if (p[i])
            return false;
    return memcmp(p, p + 16, len - 16) == 0;
}

/* Adds a data run, merging with the previous one when adjacent or when the map is full. */
static void runs_add(struct bk *b, int64_t off, int64_t len, int64_t *min_hole)
{
    if (b->nruns > 0) {
        struct sparse_run *last = &b->runs[b->nruns - 1];
        if (off - (last->off + last->len) < *min_hole) {
            last->len = off + len - last->off;
            return;
        }
    }
    if (b->nruns == ENGINE_SPARSE_MAX) {
        /* Full: double the smallest hole kept and merge the runs again. */
        size_t w = 0;
        *min_hole *= 2;
        for (size_t i = 1; i < b->nruns; i++) {
            struct sparse_run *cur = &b->runs[w];
            if (b->runs[i].off - (cur->off + cur->len) < *min_hole)
                cur->len = b->runs[i].off + b->runs[i].len - cur->off;
            else
                b->runs[++w] = b->runs[i];
        }
        b->nruns = w + 1;
        runs_add(b, off, len, min_hole);
        return;
    }
    b->runs[b->nruns++] = (struct sparse_run){off, len};
}

static int backup_device(struct bk *b, const char *path)
{
    _cleanup_close_ int fd = -EBADF;
    int64_t min_hole = ENGINE_HOLE_GRAIN;
    uint64_t size = 0;
    struct stat st;
    bool shorted;
    int r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_set_errno(b->e, -errno, "cannot open device '%s'", path);
    if (fstat(fd, &st) < 0)
        return err_set_errno(b->e, -errno, "cannot stat device '%s'", path);
    if (!S_ISBLK(st.st_mode))
        return err_set(b->e, -ENOTBLK, "'%s' is not a block device", path);
    if (ioctl(fd, BLKGETSIZE64, &size) < 0)
        return err_set_errno(b->e, -errno, "cannot size device '%s'", path);
    if (size > INT64_MAX)
        return err_set(b->e, -EFBIG, "device '%s' is too large", path);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    /* Pass 1: the map of non-zero grains. */
    b->nruns = 0;
    for (uint64_t pos = 0; pos < size;) {
        size_t want = (size_t)MIN((uint64_t)ENGINE_BUF_SIZE, size - pos);
        ssize_t n = pread_full(fd, b->buf, want, (int64_t)pos, want);
        if (n < 0)
            return err_set_errno(b->e, (int)n, "reading device '%s'", path);
        if ((size_t)n < want)
            return err_set(b->e, -EIO, "device '%s' ended early at %llu bytes", path,
                           (unsigned long long)(pos + (uint64_t)n));
        for (size_t g = 0; g < want; g += ENGINE_HOLE_GRAIN) {
            size_t gl = MIN((size_t)ENGINE_HOLE_GRAIN, want - g);
            if (!all_zero(b->buf + g, gl))
                runs_add(b, (int64_t)(pos + g), (int64_t)gl, &min_hole);
        }
        pos += want;
        report_progress(b, pos / 2);
    }

    memset(&st, 0, sizeof(st));
    st.st_mode = S_IFREG | 0600;
    st.st_mtim.tv_sec = time(NULL);
    st.st_atim = st.st_mtim;
    st.st_size = (off_t)size;
    entry_fill(b, ENGINE_DEVICE_ENTRY, &st);
    for (size_t i = 0; i < b->nruns; i++)
        archive_entry_sparse_add_entry(b->ent, b->runs[i].off, b->runs[i].len);
    if (b->nruns == 0)
        archive_entry_sparse_add_entry(b->ent, (int64_t)size, 0);
    r = write_header(b);
    if (r < 0)
        return r;

    /* Pass 2: the data runs. Progress was reported by pass 1, which read everything. */
    b->progress = NULL;
    r = stream_runs(b, fd, (int64_t)size, &shorted);
    if (r < 0)
        return r;
    if (shorted)
        return err_set(b->e, -EIO, "device '%s' shrank during the backup", path);
    b->st->bytes_in = size;
    return 0;
}

int engine_backup(const char *path, enum volume_kind kind, const struct compress_opts *opts,
                  const struct byte_sink *sink, engine_progress_fn progress, void *progress_ctx,
                  struct engine_stats *ret, ord_err *e)
{
    _cleanup_(archive_write_freep) struct archive *a = NULL;
    struct engine_stats st = {0};
    struct bk b = {0};
    double t0 = engine_now();
    int r;

    b.st = &st;
    b.e = e;
    b.progress = progress;
    b.pctx = progress_ctx;
    r = zsink_init(&b.z, opts, sink);
    if (r < 0) {
        err_set(e, r, "%s", b.z.err.msg);
        goto out;
    }
    a = archive_write_new();
    b.ent = archive_entry_new();
    b.buf = malloc(ENGINE_BUF_SIZE);
    b.zero = calloc(1, ENGINE_BUF_SIZE);
    b.runs = malloc(ENGINE_SPARSE_MAX * sizeof(*b.runs));
    b.xlist = malloc(XATTR_LIST_CAP);
    b.xval = malloc(XATTR_VALUE_CAP);
    b.pcap = 4096;
    b.path = malloc(b.pcap);
    if (!a || !b.ent || !b.buf || !b.zero || !b.runs || !b.xlist || !b.xval || !b.path ||
        hl_grow(&b) < 0) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    b.a = a;
    /*
     * Full pax (not restricted): nanosecond times on every entry. Names that are not valid in
     * the current locale go out as raw bytes with hdrcharset=BINARY (libarchive then warns,
     * which we accept); setting BINARY globally would mark every entry, which GNU tar
     * complains about. xattrs as SCHILY.xattr only (what GNU tar reads), not twice.
     */
    if (archive_write_set_format_pax(a) != ARCHIVE_OK) {
        r = engine_archive_err(a, NULL, e, "setting up the archive");
        goto out;
    }
    (void)archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY");
    if (engine_archive_open_write(a, &b.z) < 0) {
        r = engine_archive_err(a, &b.z.err, e, "opening the archive");
        goto out;
    }

    if (kind == VOLUME_DEVICE)
        r = backup_device(&b, path);
    else
        r = walk(&b, path);
    if (r < 0) {
        if (e && !e->code)
            err_set_errno(e, r, "backing up '%s'", path);
        goto out;
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        r = engine_archive_err(a, &b.z.err, e, "closing the archive");
        goto out;
    }
    r = zsink_finish(&b.z, st.sha256);
    if (r < 0) {
        err_set(e, r, "%s", b.z.err.msg);
        goto out;
    }
    st.bytes_stored = b.z.bytes_stored;
    st.seconds = engine_now() - t0;
    *ret = st;
    memset(&st, 0, sizeof(st));
    r = 0;
out:
    while (b.nfr > 0)
        frame_release(&b.fr[--b.nfr]);
    free(b.fr);
    hl_free(&b);
    if (b.ent)
        archive_entry_free(b.ent);
    free(b.buf);
    free(b.zero);
    free(b.runs);
    free(b.xlist);
    free(b.xval);
    free(b.path);
    if (a && r < 0) {
        /* Close (which frees libarchive's writer state; archive_write_fail would leak it)
         * without sending anything more to the sink. */
        b.z.discard = true;
        (void)archive_write_close(a);
    }
    zsink_done(&b.z);
    engine_stats_free(&st);
    return r;
}
