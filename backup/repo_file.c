/*
 * repo_file.c - the directory backend of the repository (a local disk or an NFS mount).
 *
 * Keys map to paths below the repository directory; every path is walked component by
 * component with openat(O_NOFOLLOW), so a symlink planted in the repository is never
 * followed. Atomicity: an object is written to a temporary dot name in its final directory,
 * fsync'ed, renamed over its final name, and the directory is fsync'ed: a reader sees the old
 * state or the whole new object, never a prefix of it, even after a crash. Dot names are
 * never listed, so leftovers of a killed writer are invisible until remove_prefix() (prune)
 * removes them together with their backup.
 *
 * Several users write one repository (the agent as root, the coordinator as uid 65532: repo.h,
 * "Shared repositories"). So whatever the umask, every directory created here is given mode
 * 2770 and every file 0660, both with the group of the repository's top directory, and
 * file_check_writable() tells a writer before it starts whether it can write what it needs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_rmtree.h"
#include "fsutil.h"
#include "repo.h"

#define FILE_LIST_DEPTH_MAX 16

struct file_repo {
    int rootfd;
    gid_t gid; /* the top directory's group: every writer's (repo.h, "Shared repositories") */
    char path[4096];
};

/*
 * Writeback of an object is started every this many bytes (sync_file_range, asynchronous),
 * so that the fsync at commit waits for the last few MiB instead of the whole object: on the
 * bench's 360 MiB object the fsync went from 0.31 s to the tail alone.
 */
#define WRITEBACK_CHUNK (8u << 20)

struct file_writer {
    struct file_repo *repo;
    int dirfd;
    int fd;
    uint64_t written, started; /* bytes written; bytes whose writeback was started */
    char tmp[NAME_MAX + 1];
    char base[NAME_MAX + 1];
    char key[REPO_KEY_MAX + 1];
};

struct file_reader {
    int fd;
};

static void tmp_name(char *buf, size_t size, const char *base, const char *what)
{
    static unsigned counter;
    uint64_t rnd = 0;

    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    snprintf(buf, size, ".%.180s.%s.%d.%u.%016llx", base, what, (int)getpid(), counter++,
             (unsigned long long)rnd);
}

/* Splits key into its directory part (copied into dir, "" for top-level) and its last name. */
static const char *split_key(const char *key, char *dir, size_t size)
{
    const char *slash = strrchr(key, '/');

    if (!slash) {
        dir[0] = '\0';
        return key;
    }
    snprintf(dir, size, "%.*s", (int)(slash - key), key);
    return slash + 1;
}

/*
 * Gives an entry this process just created the repository's group and mode (REPO_DIR_MODE or
 * REPO_FILE_MODE), whatever the umask. Best effort: a member of the group can always do both on
 * what it owns, and a setgid parent already gave the group; where it cannot (a process outside
 * the group), repo_check_writable() has told whoever runs it what to fix.
 */
static void set_shared_mode(const struct file_repo *fr, int fd, mode_t mode)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return;
    if (st.st_gid != fr->gid)
        (void)fchown(fd, (uid_t)-1, fr->gid);
    if ((st.st_mode & 07777) != mode)
        (void)fchmod(fd, mode);
}

/*
 * Opens the directory dir ("a/b/c", "" for the root) below the top without following
 * symlinks, creating missing components when create is set (with the shared mode, and
 * fsync'ing each parent that got a new entry). Returns an fd or a negative errno.
 */
static int open_dir_chain(const struct file_repo *fr, const char *dir, bool create)
{
    int rootfd = fr->rootfd;
    _cleanup_close_ int fd = -EBADF;
    char comp[NAME_MAX + 1];
    const char *p = dir;

    /* A fresh open file description: a dup would share the directory offset. */
    fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (*p) {
        size_t n = strcspn(p, "/");
        int next;

        if (n == 0 || n > NAME_MAX)
            return -EINVAL;
        memcpy(comp, p, n);
        comp[n] = '\0';
        next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            bool made = mkdirat(fd, comp, REPO_DIR_MODE & 0777) == 0;

            if (!made && errno != EEXIST)
                return -errno;
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (made && next >= 0)
                set_shared_mode(fr, next, REPO_DIR_MODE);
            (void)fs_fsync_dir(fd);
        }
        if (next < 0)
            return -errno;
        close(fd);
        fd = next;
        p += n;
        if (*p == '/')
            p++;
    }
    return TAKE_FD(fd);
}

static int denied(const char *top, gid_t top_gid, const char *key, const struct stat *st, int code,
                  ord_err *e);

static int file_open(const char *location, bool create, void **ret_state, ord_err *e)
{
    _cleanup_free_ struct file_repo *fr = NULL;
    struct stat st;
    int fd;

    if (strlen(location) >= sizeof(fr->path))
        return err_set(e, -ENAMETOOLONG, "the path is too long");
    bool made = false;

    fd = open(location, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        /* Only the last component: a typo in a parent should not build a tree somewhere. */
        made = mkdir(location, REPO_DIR_MODE & 0777) == 0;
        if (!made && errno != EEXIST)
            return err_set_errno(e, -errno, "cannot create directory '%s'", location);
        fd = open(location, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, -ENOENT, "directory '%s' does not exist", location);
        /* Another user's repository this process is not let into: say what it needs. */
        if (errno == EACCES && stat(location, &st) == 0 && S_ISDIR(st.st_mode))
            return denied(location, st.st_gid, "", &st, -EACCES, e);
        return err_set_errno(e, -errno, "cannot open directory '%s'", location);
    }
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(e, -ENOTDIR, "'%s' is not a directory", location);
    }
    fr = calloc(1, sizeof(*fr));
    if (!fr) {
        close(fd);
        return err_set(e, -ENOMEM, "out of memory");
    }
    fr->rootfd = fd;
    /* A new top directory keeps the group it was given (this process's, or a setgid
     * parent's): that group is the repository's from now on. */
    fr->gid = st.st_gid;
    if (made)
        set_shared_mode(fr, fd, REPO_DIR_MODE);
    snprintf(fr->path, sizeof(fr->path), "%s", location);
    *ret_state = TAKE_PTR(fr);
    return 0;
}

static void file_close(void *state)
{
    struct file_repo *fr = state;

    if (fr->rootfd >= 0)
        close(fr->rootfd);
    free(fr);
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static int file_is_empty(void *state, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;
    int fd;

    fd = openat(fr->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(e, -errno, "reading '%s'", fr->path);
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(e, -errno, "reading '%s'", fr->path);
    }
    while ((de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, "..") || streq(de->d_name, "lost+found") ||
            strncmp(de->d_name, "." REPO_CONFIG_KEY ".", strlen(REPO_CONFIG_KEY) + 2) == 0)
            continue;
        return 0;
    }
    return 1;
}

static int file_put_begin(void *state, const char *key, void **ret_writer, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_free_ struct file_writer *w = NULL;
    char dir[REPO_KEY_MAX + 1];
    const char *base = split_key(key, dir, sizeof(dir));
    int r = -ENOENT;

    w = calloc(1, sizeof(*w));
    if (!w)
        return err_set(e, -ENOMEM, "out of memory");
    w->repo = fr;
    w->dirfd = w->fd = -EBADF;
    snprintf(w->base, sizeof(w->base), "%s", base);
    snprintf(w->key, sizeof(w->key), "%s", key);
    tmp_name(w->tmp, sizeof(w->tmp), base, "tmp");
    /* A prune removing empty parent directories at the same moment can make a fresh
     * directory vanish between mkdir and open: try again a few times. */
    for (int attempt = 0; attempt < 8 && r == -ENOENT; attempt++) {
        if (w->dirfd >= 0)
            close(w->dirfd);
        w->dirfd = open_dir_chain(fr, dir, true);
        if (w->dirfd < 0) {
            r = w->dirfd;
            continue;
        }
        w->fd = openat(w->dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, REPO_FILE_MODE);
        r = w->fd < 0 ? -errno : 0;
        if (r == 0)
            set_shared_mode(fr, w->fd, REPO_FILE_MODE);
    }
    if (r < 0) {
        if (w->dirfd >= 0)
            close(w->dirfd);
        return err_set_errno(e, r, "cannot create '%s' in '%s'", key, fr->path);
    }
    *ret_writer = TAKE_PTR(w);
    return 0;
}

static int file_put_write(void *writer, const void *buf, size_t len, ord_err *e)
{
    struct file_writer *w = writer;
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_set_errno(e, -errno, "writing '%s' in '%s'", w->key, w->repo->path);
        }
        p += n;
        len -= (size_t)n;
        w->written += (uint64_t)n;
    }
    if (w->written - w->started >= WRITEBACK_CHUNK) {
        /* Advisory: an error here shows again at the fsync of the commit. */
        (void)sync_file_range(w->fd, (off64_t)w->started, (off64_t)(w->written - w->started),
                              SYNC_FILE_RANGE_WRITE);
        w->started = w->written;
    }
    return 0;
}

static void writer_free(struct file_writer *w, bool unlink_tmp)
{
    if (w->fd >= 0)
        close(w->fd);
    if (unlink_tmp)
        (void)unlinkat(w->dirfd, w->tmp, 0);
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w);
}

static int file_put_commit(void *writer, ord_err *e)
{
    struct file_writer *w = writer;
    int r;

    if (fsync(w->fd) < 0) {
        r = err_set_errno(e, -errno, "flushing '%s' in '%s'", w->key, w->repo->path);
        writer_free(w, true);
        return r;
    }
    if (close(w->fd) < 0) {
        w->fd = -EBADF;
        r = err_set_errno(e, -errno, "closing '%s' in '%s'", w->key, w->repo->path);
        writer_free(w, true);
        return r;
    }
    w->fd = -EBADF;
    if (renameat(w->dirfd, w->tmp, w->dirfd, w->base) < 0) {
        r = err_set_errno(e, -errno, "renaming '%s' into place in '%s'", w->key, w->repo->path);
        writer_free(w, true);
        return r;
    }
    r = fs_fsync_dir(w->dirfd);
    if (r < 0)
        err_set_errno(e, r, "flushing the directory of '%s' in '%s'", w->key, w->repo->path);
    writer_free(w, false);
    return r;
}

static void file_put_abort(void *writer)
{
    if (writer)
        writer_free(writer, true);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int file_create_excl(void *state, const char *key, const void *buf, size_t len, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
    char dir[REPO_KEY_MAX + 1], tmp[NAME_MAX + 1];
    const char *base = split_key(key, dir, sizeof(dir));
    int r;

    dirfd = open_dir_chain(fr, dir, true);
    if (dirfd < 0)
        return err_set_errno(e, dirfd, "cannot create the directory of '%s' in '%s'", key,
                             fr->path);
    tmp_name(tmp, sizeof(tmp), base, "new");
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, REPO_FILE_MODE);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot create '%s' in '%s'", key, fr->path);
    set_shared_mode(fr, fd, REPO_FILE_MODE);
    r = write_all(fd, buf, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r < 0) {
        (void)unlinkat(dirfd, tmp, 0);
        return err_set_errno(e, r, "writing '%s' in '%s'", key, fr->path);
    }
    /* link() fails with EEXIST when the name exists: the content appears complete or not at
     * all, and only one creator wins (O_EXCL alone would expose an empty file for a moment). */
    r = linkat(dirfd, tmp, dirfd, base, 0) < 0 ? -errno : 0;
    (void)unlinkat(dirfd, tmp, 0);
    if (r == -EEXIST)
        return -EEXIST;
    if (r < 0)
        return err_set_errno(e, r, "cannot create '%s' in '%s'", key, fr->path);
    (void)fs_fsync_dir(dirfd);
    return 0;
}

static int read_at_most(int fd, char *buf, size_t max, size_t *ret_len)
{
    size_t len = 0;

    while (len < max) {
        ssize_t n = read(fd, buf + len, max - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret_len = len;
    return 0;
}

static int file_remove_if(void *state, const char *key, const void *expect, size_t len, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
    _cleanup_free_ char *buf = NULL;
    char dir[REPO_KEY_MAX + 1], tmp[NAME_MAX + 1];
    const char *base = split_key(key, dir, sizeof(dir));
    size_t got = 0;
    int r;

    dirfd = open_dir_chain(fr, dir, false);
    if (dirfd == -ENOENT)
        return -ENOENT;
    if (dirfd < 0)
        return err_set_errno(e, dirfd, "cannot open the directory of '%s' in '%s'", key, fr->path);
    /* Move it aside first: rename is atomic, so of two removers only one gets the object,
     * and it can then check that what it got is what it judged. */
    tmp_name(tmp, sizeof(tmp), base, "old");
    if (renameat(dirfd, base, dirfd, tmp) < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return err_set_errno(e, -errno, "cannot move '%s' aside in '%s'", key, fr->path);
    }
    buf = malloc(len + 1);
    fd = openat(dirfd, tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (!buf || fd < 0 || read_at_most(fd, buf, len + 1, &got) < 0)
        r = -EIO;
    else
        r = (got == len && memcmp(buf, expect, len) == 0) ? 0 : -ESTALE;
    if (r == 0) {
        (void)unlinkat(dirfd, tmp, 0);
        (void)fs_fsync_dir(dirfd);
        return 0;
    }
    /* Not what we judged (someone replaced it meanwhile): put it back unless a newer one
     * already took the name. */
    (void)linkat(dirfd, tmp, dirfd, base, 0);
    (void)unlinkat(dirfd, tmp, 0);
    return r == -ESTALE ? -ESTALE : err_set(e, r, "cannot read '%s' in '%s'", key, fr->path);
}

static int file_get_open(void *state, const char *key, uint64_t *ret_size, void **ret_reader,
                         ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
    struct file_reader *rd;
    char dir[REPO_KEY_MAX + 1];
    const char *base = split_key(key, dir, sizeof(dir));
    struct stat st;

    dirfd = open_dir_chain(fr, dir, false);
    if (dirfd == -ENOENT || dirfd == -ENOTDIR)
        return err_set(e, -ENOENT, "'%s' does not exist in '%s'", key, fr->path);
    if (dirfd < 0)
        return err_set_errno(e, dirfd, "cannot open the directory of '%s' in '%s'", key, fr->path);
    fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return err_set(e, -ENOENT, "'%s' does not exist in '%s'", key, fr->path);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open '%s' in '%s'", key, fr->path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return err_set(e, -EINVAL, "'%s' in '%s' is not a regular file", key, fr->path);
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return err_set(e, -ENOMEM, "out of memory");
    rd->fd = TAKE_FD(fd);
    *ret_size = (uint64_t)st.st_size;
    *ret_reader = rd;
    return 0;
}

static ssize_t file_get_read(void *reader, void *buf, size_t len, ord_err *e)
{
    struct file_reader *rd = reader;

    for (;;) {
        ssize_t n = read(rd->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return err_set_errno(e, -errno, "reading from the repository");
    }
}

static void file_get_close(void *reader)
{
    struct file_reader *rd = reader;

    if (!rd)
        return;
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd);
}

/* Lists dirfd recursively; key holds the key prefix of dirfd (len bytes, "" at the root). */
static int list_dir(int dirfd, char *key, size_t len, unsigned depth, repo_list_fn fn, void *ctx,
                    ord_err *e)
{
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;
    int fd;

    if (depth > FILE_LIST_DEPTH_MAX)
        return 0;
    fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return err_set_errno(e, -errno, "listing the repository");
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(e, -errno, "listing the repository");
    }
    rewinddir(d); /* fd is a dup of the caller's: start from the beginning */
    while ((errno = 0, de = readdir(d))) {
        struct stat st;
        size_t n = strlen(de->d_name);
        size_t at = len ? len + 1 : 0;
        int r;

        if (de->d_name[0] == '.')
            continue;
        if (at + n > REPO_KEY_MAX)
            continue;
        if (len)
            key[len] = '/';
        memcpy(key + at, de->d_name, n + 1);
        if (!repo_key_valid(key)) {
            key[len] = '\0';
            continue;
        }
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            key[len] = '\0';
            if (errno == ENOENT)
                continue;
            return err_set_errno(e, -errno, "listing the repository");
        }
        if (S_ISREG(st.st_mode)) {
            r = fn(ctx, key, (uint64_t)st.st_size);
        } else if (S_ISDIR(st.st_mode)) {
            _cleanup_close_ int sub =
                openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                r = errno == ENOENT ? 0 : err_set_errno(e, -errno, "listing '%s'", key);
            else
                r = list_dir(sub, key, at + n, depth + 1, fn, ctx, e);
        } else {
            r = 0;
        }
        key[len] = '\0';
        if (r < 0)
            return r;
    }
    if (errno)
        return err_set_errno(e, -errno, "listing the repository");
    return 0;
}

static int file_list(void *state, const char *prefix, repo_list_fn fn, void *ctx, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int fd = -EBADF;
    char key[REPO_KEY_MAX + 2];

    fd = open_dir_chain(fr, prefix, false);
    if (fd == -ENOENT || fd == -ENOTDIR)
        return 0;
    if (fd < 0)
        return err_set_errno(e, fd, "listing '%s' in '%s'", prefix, fr->path);
    snprintf(key, sizeof(key), "%s", prefix);
    return list_dir(fd, key, strlen(key), 0, fn, ctx, e);
}

static int file_remove(void *state, const char *key, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int dirfd = -EBADF;
    char dir[REPO_KEY_MAX + 1];
    const char *base = split_key(key, dir, sizeof(dir));

    dirfd = open_dir_chain(fr, dir, false);
    if (dirfd == -ENOENT)
        return -ENOENT;
    if (dirfd < 0)
        return err_set_errno(e, dirfd, "cannot open the directory of '%s' in '%s'", key, fr->path);
    if (unlinkat(dirfd, base, 0) < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return err_set_errno(e, -errno, "cannot remove '%s' in '%s'", key, fr->path);
    }
    return fs_fsync_dir(dirfd);
}

static int file_remove_prefix(void *state, const char *prefix, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int dirfd = -EBADF;
    char dir[REPO_KEY_MAX + 1];
    const char *base = split_key(prefix, dir, sizeof(dir));
    int r;

    dirfd = open_dir_chain(fr, dir, false);
    if (dirfd == -ENOENT)
        return 0;
    if (dirfd < 0)
        return err_set_errno(e, dirfd, "cannot open the directory of '%s' in '%s'", prefix,
                             fr->path);
    r = fs_rmtree_at(dirfd, base, e);
    if (r < 0)
        return err_wrap(e, r, "in '%s'", fr->path);
    (void)fs_fsync_dir(dirfd);

    /* Remove parents left empty, but keep the top-level directories (backups/, locks/). A
     * writer that loses its fresh directory to this retries (file_put_begin). */
    while (strchr(dir, '/')) {
        _cleanup_close_ int pfd = -EBADF;
        char pdir[REPO_KEY_MAX + 1];
        const char *name = split_key(dir, pdir, sizeof(pdir));

        pfd = open_dir_chain(fr, pdir, false);
        if (pfd < 0 || unlinkat(pfd, name, AT_REMOVEDIR) < 0)
            break;
        (void)fs_fsync_dir(pfd);
        snprintf(dir, sizeof(dir), "%s", pdir);
    }
    return 0;
}

/* "uid 65532, gid 65532, groups 65532,1000" of this process into buf. */
static void describe_self(char *buf, size_t size)
{
    gid_t groups[32];
    int n = getgroups((int)ARRAY_SIZE(groups), groups);
    size_t len;

    snprintf(buf, size, "uid %u, gid %u, groups ", (unsigned)geteuid(), (unsigned)getegid());
    len = strlen(buf);
    if (n <= 0) {
        snprintf(buf + len, size - len, "none");
        return;
    }
    for (int i = 0; i < n && len < size; i++) {
        snprintf(buf + len, size - len, "%s%u", i ? "," : "", (unsigned)groups[i]);
        len = strlen(buf);
    }
}

static bool in_group(gid_t gid)
{
    gid_t groups[64];
    int n = getgroups((int)ARRAY_SIZE(groups), groups);

    if (getegid() == gid)
        return true;
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return true;
    return false;
}

/* path as a shell word: as is when it is plain, else in single quotes. */
static void shell_word(char *buf, size_t size, const char *path)
{
    if (strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-+:@,") ==
        strlen(path))
        snprintf(buf, size, "%s", path);
    else
        snprintf(buf, size, "'%s'", path); /* a path with a quote in it: the user adapts it */
}

/*
 * The refusal for directory key (st its stat): what was found, what every writer needs, and
 * the command that fixes it. The group it names is the repository's (its top directory's)
 * unless that is root's, else this process's own, else REPO_SHARED_GID; a process outside that
 * group is told to join it. Kept short: it is also appended to other messages and must fit an
 * error and an Event (1 KiB).
 */
static int denied(const char *top, gid_t top_gid, const char *key, const struct stat *st, int code,
                  ord_err *e)
{
    char self[200], w[300], join[120] = "";
    unsigned g = REPO_SHARED_GID;

    if (top_gid != 0)
        g = (unsigned)top_gid;
    else if (getegid() != 0)
        g = (unsigned)getegid();
    if (!in_group((gid_t)g))
        snprintf(join, sizeof(join),
                 "; this process is not in group %u: run it with that group too, e.g. "
                 "supplementalGroups: [%u]",
                 g, g);
    describe_self(self, sizeof(self));
    shell_word(w, sizeof(w), top);
    return err_set(e, code,
                   "this process (%s) cannot write directory '%s%s%s' (owner %u, group %u, mode "
                   "%04o)%s: every writer (agent, CronJob, restore Job) needs each directory of "
                   "the repository writable by a group it is in (mode 2770, group %u)%s; fix as "
                   "root where the files are stored (the NFS server if it squashes root): chgrp "
                   "-R %u %s && chmod -R g+rwX %s && find %s -type d -exec chmod g+s {} +",
                   self, top, key[0] ? "/" : "", key, (unsigned)st->st_uid, (unsigned)st->st_gid,
                   (unsigned)(st->st_mode & 07777),
                   geteuid() == 0 ? " (root is mapped to another user here, as by NFS "
                                    "root_squash)"
                                  : "",
                   g, join, g, w, w, w);
}

/* Checks the directory name in dirfd (key for messages), then, if recursive, those below it. */
static int check_dir_at(const struct file_repo *fr, int dirfd, const char *name, char *key,
                        size_t len, bool recursive, unsigned depth, ord_err *e)
{
    _cleanup_close_ int fd = -EBADF;
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;
    struct stat st;
    int dfd;

    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
        return 0; /* made by whoever creates it, with the shared mode */
    if (fd < 0 && errno != EACCES)
        return err_set_errno(e, -errno, "cannot open directory '%s' in '%s'", key, fr->path);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_set_errno(e, -errno, "cannot inspect directory '%s' in '%s'", key, fr->path);
    /* The kernel (or the NFS server, for an export) decides, with this process's effective
     * ids, groups and capabilities: root's DAC_OVERRIDE, root_squash and ACLs included. */
    if (fd < 0 ||
        faccessat(dirfd, name, R_OK | W_OK | X_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0) {
        if (fd >= 0 && errno == EROFS)
            return err_set(e, -EROFS,
                           "directory '%s%s%s' is on a read-only file system (mounted read-only, "
                           "or an NFS export without rw): no backup, restore or prune can write "
                           "there",
                           fr->path, key[0] ? "/" : "", key);
        if (fd < 0 || errno == EACCES || errno == EPERM)
            return denied(fr->path, fr->gid, key, &st, -EACCES, e);
        return err_set_errno(e, -errno, "cannot check directory '%s' in '%s'", key, fr->path);
    }
    if (!recursive || depth >= FILE_LIST_DEPTH_MAX)
        return 0;
    dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dfd < 0)
        return err_set_errno(e, -errno, "listing '%s' in '%s'", key, fr->path);
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return err_set_errno(e, -errno, "listing '%s' in '%s'", key, fr->path);
    }
    while ((errno = 0, de = readdir(d))) {
        size_t n = strlen(de->d_name), at = len ? len + 1 : 0;
        struct stat sub;
        int r;

        if (de->d_name[0] == '.' || at + n > REPO_KEY_MAX)
            continue;
        if (fstatat(fd, de->d_name, &sub, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sub.st_mode))
            continue;
        if (len)
            key[len] = '/';
        memcpy(key + at, de->d_name, n + 1);
        r = check_dir_at(fr, fd, de->d_name, key, at + n, true, depth + 1, e);
        key[len] = '\0';
        if (r < 0)
            return r;
    }
    if (errno)
        return err_set_errno(e, -errno, "listing '%s' in '%s'", key, fr->path);
    return 0;
}

static int file_check_writable(void *state, const char *dir, bool recursive, ord_err *e)
{
    struct file_repo *fr = state;
    _cleanup_close_ int pfd = -EBADF;
    char parent[REPO_KEY_MAX + 1], key[REPO_KEY_MAX + 2];
    const char *base;

    snprintf(key, sizeof(key), "%s", dir);
    if (!dir[0])
        return check_dir_at(fr, fr->rootfd, ".", key, 0, recursive, 0, e);
    base = split_key(dir, parent, sizeof(parent));
    pfd = open_dir_chain(fr, parent, false);
    if (pfd == -ENOENT || pfd == -ENOTDIR)
        return 0;
    if (pfd == -EACCES) /* a parent it cannot enter: the check of that parent says why */
        return 0;
    if (pfd < 0)
        return err_set_errno(e, pfd, "cannot open '%s' in '%s'", parent, fr->path);
    return check_dir_at(fr, pfd, base, key, strlen(key), recursive, 0, e);
}

const struct repo_backend repo_file_backend = {
    .name = "file",
    .open = file_open,
    .close = file_close,
    .is_empty = file_is_empty,
    .put_begin = file_put_begin,
    .put_write = file_put_write,
    .put_commit = file_put_commit,
    .put_abort = file_put_abort,
    .create_excl = file_create_excl,
    .remove_if = file_remove_if,
    .get_open = file_get_open,
    .get_read = file_get_read,
    .get_close = file_get_close,
    .list = file_list,
    .remove = file_remove,
    .remove_prefix = file_remove_prefix,
    .check_writable = file_check_writable,
};
