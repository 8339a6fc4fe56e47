/*
 * engine_swap.c - puts a restored staging directory in place of the live one.
 *
 * The restored content must be on disk before: engine_restore_dir flushed it (and reported
 * its writeback errors), because the old content is removed right after the exchange and a
 * power cut must then find the new one on disk. renameat2(RENAME_EXCHANGE) swaps the two names in one step, so at every instant the live
 * name holds either the whole old content or the whole restored one; the parent is fsync'ed
 * so that the exchange survives a crash, and only then is the old content (now under the
 * staging name) removed with fs_rmtree_at, which never follows a symlink or crosses a mount.
 * A crash before the removal leaves the old content under the staging name; the next restore
 * (or prune) removes it. When the live entry does not exist at all, staging is renamed to it
 * (RENAME_NOREPLACE).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_int.h"
#include "fs_rmtree.h"

/* Opens the parent of path; *ret_base points into path at its last component, a plain name. */
int engine_open_parent(const char *path, int *ret_fd, const char **ret_base, ord_err *e)
{
    _cleanup_free_ char *dir = NULL;
    const char *slash, *base;
    int fd;

    if (!path || !*path)
        return err_set(e, -EINVAL, "empty path");
    slash = strrchr(path, '/');
    base = slash ? slash + 1 : path;
    if (!*base || streq(base, ".") || streq(base, ".."))
        return err_set(e, -EINVAL, "'%s' must end in a plain name", path);
    dir = slash == path ? strdup("/") : slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return err_set(e, -ENOMEM, "out of memory");
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open directory '%s'", dir);
    *ret_fd = fd;
    *ret_base = base;
    return 0;
}

/*
 * The swap failed before the exchange: the live entry is untouched, and the restored content
 * goes, so that a failed restore gives its space back. Returns r.
 */
static int drop_staging(int dirfd, const char *name, int r, ord_err *e)
{
    ord_err e2 = {0};

    if (fs_rmtree_at(dirfd, name, &e2) < 0)
        err_append(e, "the staging entry could not be removed either (%s): the next restore "
                      "of this volume removes it", e2.msg);
    return r;
}

int engine_swap(const char *live_path, const char *staging_path, ord_err *e)
{
    _cleanup_close_ int lfd = -EBADF, sfd = -EBADF;
    const char *lbase, *sbase;
    struct stat a, b;
    int r;

    r = engine_open_parent(live_path, &lfd, &lbase, e);
    if (r < 0)
        return r;
    r = engine_open_parent(staging_path, &sfd, &sbase, e);
    if (r < 0)
        return r;
    if (fstat(lfd, &a) < 0 || fstat(sfd, &b) < 0)
        return err_set_errno(e, -errno, "cannot stat the parent of '%s'", live_path);
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return err_set(e, -EXDEV, "'%s' and '%s' are not in the same directory", live_path,
                       staging_path);
    if (streq(lbase, sbase))
        return err_set(e, -EINVAL, "live and staging are the same entry '%s'", live_path);
    if (fstatat(lfd, sbase, &b, AT_SYMLINK_NOFOLLOW) < 0)
        return err_set_errno(e, -errno, "staging entry '%s'", staging_path);
    if (!S_ISDIR(b.st_mode))
        return err_set(e, -ENOTDIR, "staging entry '%s' is not a directory", staging_path);
    if (renameat2(lfd, sbase, lfd, lbase, RENAME_EXCHANGE) < 0) {
        if (errno != ENOENT || fstatat(lfd, lbase, &a, AT_SYMLINK_NOFOLLOW) == 0) {
            r = err_set_errno(e, -errno, "cannot exchange '%s' and '%s'", staging_path,
                              live_path);
            return drop_staging(lfd, sbase, r, e);
        }
        /* No live entry: the restored directory simply becomes it. */
        if (renameat2(lfd, sbase, lfd, lbase, RENAME_NOREPLACE) < 0) {
            r = err_set_errno(e, -errno, "cannot rename '%s' to '%s'", staging_path, live_path);
            return drop_staging(lfd, sbase, r, e);
        }
        if (fsync(lfd) < 0)
            return err_set_errno(e, -errno, "cannot flush the directory of '%s'", live_path);
        return 0;
    }
    if (fsync(lfd) < 0)
        return err_set_errno(e, -errno, "cannot flush the directory of '%s'", live_path);
    r = fs_rmtree_at(lfd, sbase, e);
    if (r < 0)
        return err_wrap(e, r, "'%s' is restored, but its old content under '%s' could not be removed",
                        live_path, staging_path);
    return 0;
}
