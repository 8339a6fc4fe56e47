/*
 * fs_rmtree.c - see fs_rmtree.h.
 *
 * The walk is iterative: a stack of frames, one per directory level, each holding an open
 * directory stream. Only the deepest RMTREE_OPEN_MAX levels keep their stream open; an
 * ancestor whose stream was closed is reopened through ".." of its child when the walk comes
 * back to it, and its identity (st_dev, st_ino) is checked so that a directory moved
 * meanwhile is never mistaken for it. Reopening restarts its readdir from the start, which is
 * correct because everything already seen has been removed (the first failure aborts). So
 * depth is bounded neither by the fd limit nor by PATH_MAX.
 *
 * Mount points are recognised by a different st_dev or by STATX_ATTR_MOUNT_ROOT (which also
 * catches bind mounts of the same filesystem).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fs_rmtree.h"

#define RMTREE_OPEN_MAX 64

struct rm_frame {
    DIR *d;     /* NULL while closed to save fds */
    dev_t dev;
    ino_t ino;
    char *name; /* component inside the parent frame (or the top name) */
};

struct rm_walk {
    struct rm_frame *f;
    size_t n, cap;
};

static void walk_free(struct rm_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->f[i].d)
            closedir(w->f[i].d);
        free(w->f[i].name);
    }
    free(w->f);
    w->f = NULL;
    w->n = w->cap = 0;
}

/* The path of frame i (plus an optional leaf) for messages; truncated, never overflowed. */
static const char *walk_path(const struct rm_walk *w, size_t upto, const char *leaf, char *buf,
                             size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < upto && i < w->n; i++) {
        int r = snprintf(buf + len, size - len, "%s%s", i ? "/" : "", w->f[i].name);
        if (r < 0 || (size_t)r >= size - len)
            return buf;
        len += (size_t)r;
    }
    if (leaf)
        snprintf(buf + len, size - len, "/%s", leaf);
    return buf;
}

/* statx without following, reporting whether the object is the root of a mount. */
static int stat_nofollow(int dirfd, const char *name, struct stat *st, int *ret_mount_root)
{
    struct statx sx;

    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_MODE | STATX_INO,
              &sx) < 0)
        return -errno;
    memset(st, 0, sizeof(*st));
    st->st_mode = sx.stx_mode;
    st->st_ino = sx.stx_ino;
    st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    *ret_mount_root = (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                      (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    return 0;
}

/* Opens directory `name` in dirfd, checks it is the object stat'ed, makes it u+rwx. */
static int open_dir_checked(int dirfd, const char *name, const struct stat *expect, DIR **ret)
{
    struct stat st;
    int fd;
    DIR *d;

    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || st.st_dev != expect->st_dev || st.st_ino != expect->st_ino) {
        close(fd);
        return -ESTALE;
    }
    /* Emptying needs write and search permission; the directory goes away anyway. */
    if ((st.st_mode & 0700) != 0700 && fchmod(fd, (st.st_mode & 07777) | 0700) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret = d;
    return 0;
}

static int walk_push(struct rm_walk *w, DIR *d, const struct stat *st, const char *name)
{
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        struct rm_frame *nf = realloc(w->f, ncap * sizeof(*nf));
        if (!nf)
            return -ENOMEM;
        w->f = nf;
        w->cap = ncap;
    }
    w->f[w->n].name = strdup(name);
    if (!w->f[w->n].name)
        return -ENOMEM;
    w->f[w->n].d = d;
    w->f[w->n].dev = st->st_dev;
    w->f[w->n].ino = st->st_ino;
    w->n++;
    /* Keep only the deepest levels open; see the file comment. */
    if (w->n > RMTREE_OPEN_MAX && w->f[w->n - 1 - RMTREE_OPEN_MAX].d) {
        closedir(w->f[w->n - 1 - RMTREE_OPEN_MAX].d);
        w->f[w->n - 1 - RMTREE_OPEN_MAX].d = NULL;
    }
    return 0;
}

int fs_rmtree_at(int atfd, const char *name, ord_err *e)
{
    char pbuf[512];
    struct rm_walk w = {0};
    struct stat st, pst;
    int mroot, r;
    DIR *d = NULL;

    if (!name || !*name || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
        return err_set(e, -EINVAL, "refusing to remove '%s': not a single path component",
                       name ? name : "(null)");
    r = stat_nofollow(atfd, name, &st, &mroot);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return err_set_errno(e, r, "cannot stat '%s'", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(atfd, name, 0) < 0 && errno != ENOENT)
            return err_set_errno(e, -errno, "cannot remove '%s'", name);
        return 0;
    }
    if (fstat(atfd, &pst) < 0)
        return err_set_errno(e, -errno, "cannot stat the parent of '%s'", name);
    if (mroot || st.st_dev != pst.st_dev)
        return err_set(e, -EXDEV, "refusing to remove '%s': it is a mount point", name);

    r = open_dir_checked(atfd, name, &st, &d);
    if (r < 0)
        return err_set_errno(e, r, "cannot open directory '%s'", name);
    r = walk_push(&w, d, &st, name);
    if (r < 0) {
        closedir(d);
        goto fail_nomsg;
    }

    while (w.n > 0) {
        struct rm_frame *top = &w.f[w.n - 1];
        struct dirent *de;

        errno = 0;
        de = readdir(top->d);
        if (!de) {
            if (errno) {
                r = err_set_errno(e, -errno, "cannot read directory '%s'",
                                  walk_path(&w, w.n, NULL, pbuf, sizeof(pbuf)));
                goto out;
            }
            if (w.n == 1) {
                closedir(top->d);
                top->d = NULL;
                if (unlinkat(atfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                    r = err_set_errno(e, -errno, "cannot remove directory '%s'", name);
                    goto out;
                }
                r = 0;
                goto out;
            }
            struct rm_frame *parent = &w.f[w.n - 2];
            if (!parent->d) {
                struct stat ps = {.st_dev = parent->dev, .st_ino = parent->ino};
                r = open_dir_checked(dirfd(top->d), "..", &ps, &parent->d);
                if (r < 0) {
                    err_set_errno(e, r, "cannot return to directory '%s' (moved during removal?)",
                                  walk_path(&w, w.n - 1, NULL, pbuf, sizeof(pbuf)));
                    goto out;
                }
            }
            closedir(top->d);
            top->d = NULL;
            if (unlinkat(dirfd(parent->d), top->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                r = err_set_errno(e, -errno, "cannot remove directory '%s'",
                                  walk_path(&w, w.n, NULL, pbuf, sizeof(pbuf)));
                goto out;
            }
            free(top->name);
            w.n--;
            continue;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;

        r = stat_nofollow(dirfd(top->d), de->d_name, &st, &mroot);
        if (r == -ENOENT)
            continue;
        if (r < 0) {
            err_set_errno(e, r, "cannot stat '%s'",
                          walk_path(&w, w.n, de->d_name, pbuf, sizeof(pbuf)));
            goto out;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (unlinkat(dirfd(top->d), de->d_name, 0) < 0 && errno != ENOENT) {
                r = err_set_errno(e, -errno, "cannot remove '%s'",
                                  walk_path(&w, w.n, de->d_name, pbuf, sizeof(pbuf)));
                goto out;
            }
            continue;
        }
        if (mroot || st.st_dev != top->dev) {
            r = err_set(e, -EXDEV, "refusing to remove '%s': it is a mount point",
                        walk_path(&w, w.n, de->d_name, pbuf, sizeof(pbuf)));
            goto out;
        }
        r = open_dir_checked(dirfd(top->d), de->d_name, &st, &d);
        if (r < 0) {
            err_set_errno(e, r, "cannot open directory '%s'",
                          walk_path(&w, w.n, de->d_name, pbuf, sizeof(pbuf)));
            goto out;
        }
        r = walk_push(&w, d, &st, de->d_name);
        if (r < 0) {
            closedir(d);
            goto fail_nomsg;
        }
    }
    r = 0;
    goto out;

fail_nomsg:
    r = err_set_errno(e, r, "cannot remove '%s'", name);
out:
    walk_free(&w);
    return r;
}
