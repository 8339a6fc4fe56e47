/*
 * dir_backend.c - the directory backend: one directory per volume under the class root.
 *
 * prepare makes <parent>/.pending-<claim uid> (mode 0777: the pod's user, whoever it is, must
 * be able to write; the parents are 0755) and fsyncs the parent, after checking the capacity
 * ledger. commit renames it to the entry with RENAME_NOREPLACE, so existing data is never
 * overwritten. release removes the entry with fs_rmtree_at(): no symlink is followed, no mount
 * crossed, nothing outside the entry touched.
 */
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "backend.h"
#include "fs_rmtree.h"
#include "log.h"

/* Shared with the device backend (see backend.h). */
pthread_mutex_t vlayout_lock = PTHREAD_MUTEX_INITIALIZER;

const struct prov_backend *backend_for(enum vol_backend_kind kind)
{
    static const struct prov_backend *const table[] = {
        [VOL_BACKEND_DIRECTORY] = &dir_backend,
        [VOL_BACKEND_DEVICE] = &dev_backend,
    };

    if ((size_t)kind >= ARRAY_SIZE(table))
        return NULL;
    return table[kind];
}

int backend_entry_path(const char *root, const struct vol_identity *id, char *buf, size_t size)
{
    char rel[VLAYOUT_REL_MAX];
    int r, n;

    r = vlayout_entry_rel(id, rel, sizeof(rel));
    if (r < 0)
        return r;
    n = snprintf(buf, size, "%s/%s", streq(root, "/") ? "" : root, rel);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

/* Opens the class root and the entry's parent. */
int backend_open_parent(const struct class_params *p, const struct vol_identity *id, bool create,
                        int *ret_root, int *ret_parent, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    int r;

    r = vlayout_open_root(p->allowed_root, p->root, create, &rootfd, e);
    if (r < 0)
        return r;
    r = vlayout_open_parent(rootfd, id, create, &parentfd, e);
    if (r < 0)
        return r;
    *ret_root = TAKE_FD(rootfd);
    *ret_parent = TAKE_FD(parentfd);
    return 0;
}

static int prepare_locked(const struct backend_ctx *ctx, const struct vol_request *req,
                          struct vol_prepared *out_, int *ret_parentfd, ord_err *e);

static int dir_prepare(const struct backend_ctx *ctx, const struct vol_request *req,
                       struct vol_prepared *ret, ord_err *e)
{
    _cleanup_close_ int parentfd = -EBADF;
    struct vol_prepared out = {0};
    char pending[NAME_MAX + 1];
    int r;

    if (req->block)
        return err_set(e, -EOPNOTSUPP,
                       "volumeMode Block needs a device; the directory backend only gives "
                       "Filesystem volumes (use a StorageClass with backend: device)");
    r = backend_entry_path(req->params->root, req->id, out.path, sizeof(out.path));
    if (r < 0)
        return err_set(e, r, "the volume path under '%s' is too long", req->params->root);
    pthread_mutex_lock(&vlayout_lock);
    r = prepare_locked(ctx, req, &out, &parentfd, e);
    pthread_mutex_unlock(&vlayout_lock);
    if (r < 0)
        return r;
    /*
     * Durable before the PV exists (a power cut must not leave a PV whose directory was never
     * written), synced outside the lock: a directory fsync can wait for a journal commit, and
     * the other workers need not wait with it.
     */
    r = vlayout_sync_dir(parentfd);
    if (r < 0) {
        err_set_errno(e, r, "cannot sync the directory of '%s'", out.path);
        if (out.created_now && vlayout_pending_name(req->claim_uid, pending, sizeof(pending)) == 0)
            (void)unlinkat(parentfd, pending, AT_REMOVEDIR);
        (void)cap_ledger_unreserve(ctx->ledger, req->pv_name);
        return r;
    }
    *ret = out;
    return 0;
}

static int prepare_locked(const struct backend_ctx *ctx, const struct vol_request *req,
                          struct vol_prepared *out_, int *ret_parentfd, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    struct vol_prepared out = *out_;
    char pending[NAME_MAX + 1];
    struct statvfs sv;
    struct stat st;
    int r;

    r = vlayout_pending_name(req->claim_uid, pending, sizeof(pending));
    if (r < 0)
        return err_set(e, r, "claim uid '%s' cannot name a directory", req->claim_uid);
    r = backend_open_parent(req->params, req->id, true, &rootfd, &parentfd, e);
    if (r < 0)
        return err_wrap(e, r, "cannot create the volume directory '%s'", out.path);

    /* A pending directory left by an earlier attempt of this claim is reused as it is. */
    if (fstatat(parentfd, pending, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(st.st_mode))
            return err_set(e, -ENOTDIR, "'%s' beside '%s' is not a directory; remove it", pending,
                           out.path);
    } else if (errno != ENOENT) {
        return err_set_errno(e, -errno, "cannot inspect '%s' beside '%s'", pending, out.path);
    }

    if (fstatvfs(rootfd, &sv) < 0)
        return err_set_errno(e, -errno, "cannot read the free space of '%s'", req->params->root);
    if (fstat(rootfd, &st) < 0)
        return err_set_errno(e, -errno, "cannot stat '%s'", req->params->root);
    r = cap_ledger_reserve(ctx->ledger, req->pv_name, st.st_dev,
                           (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize, req->request, out.path,
                           req->params->root, e);
    if (r < 0)
        return r;

    if (mkdirat(parentfd, pending, 0777) == 0) {
        out.created_now = true;
        /* mkdir's mode went through the umask: the volume must be writable for any pod user. */
        if (fchmodat(parentfd, pending, 0777, 0) < 0) {
            r = err_set_errno(e, -errno, "cannot set the mode of '%s'", out.path);
            goto fail;
        }
    } else if (errno != EEXIST) {
        r = err_set_errno(e, -errno, "cannot create the volume directory '%s'", out.path);
        goto fail;
    }
    *out_ = out;
    *ret_parentfd = TAKE_FD(parentfd);
    return 0;
fail:
    if (out.created_now)
        (void)unlinkat(parentfd, pending, AT_REMOVEDIR);
    (void)cap_ledger_unreserve(ctx->ledger, req->pv_name);
    return r;
}

int backend_entry_commit(const struct vol_request *req, mode_t type, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    char pending[NAME_MAX + 1];
    const char *leaf = vlayout_leaf(req->id);
    struct stat st;
    int r;

    r = vlayout_pending_name(req->claim_uid, pending, sizeof(pending));
    if (r < 0)
        return err_set(e, r, "claim uid '%s' cannot name a directory", req->claim_uid);
    r = backend_open_parent(req->params, req->id, false, &rootfd, &parentfd, e);
    if (r < 0)
        return r;
    if (renameat2(parentfd, pending, parentfd, leaf, RENAME_NOREPLACE) == 0)
        return vlayout_sync_dir(parentfd);
    r = -errno;
    if (r == -ENOENT && fstatat(parentfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (st.st_mode & S_IFMT) == type)
        return 0; /* committed before */
    return err_set_errno(e, r, "cannot move '%s' to '%s'", pending, leaf);
}

static int dir_commit(const struct backend_ctx *ctx, const struct vol_request *req, ord_err *e)
{
    return backend_entry_commit(req, S_IFDIR, e);
}

static void dir_abort(const struct backend_ctx *ctx, const struct vol_request *req)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    char pending[NAME_MAX + 1];

    (void)cap_ledger_unreserve(ctx->ledger, req->pv_name);
    if (vlayout_pending_name(req->claim_uid, pending, sizeof(pending)) < 0 ||
        backend_open_parent(req->params, req->id, false, &rootfd, &parentfd, NULL) < 0)
        return;
    /* rmdir, not a tree removal: a pending directory was never handed to a pod. */
    if (unlinkat(parentfd, pending, AT_REMOVEDIR) == 0) {
        (void)vlayout_sync_dir(parentfd);
        pthread_mutex_lock(&vlayout_lock);
        vlayout_prune_parents(rootfd, req->id);
        pthread_mutex_unlock(&vlayout_lock);
    }
}

static int dir_release(const struct backend_ctx *ctx, const struct class_params *params,
                       const struct vol_identity *id, const struct vol_owned *vol, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    int r;

    r = backend_open_parent(params, id, false, &rootfd, &parentfd, e);
    if (r == -ENOENT)
        return 0; /* already gone */
    if (r < 0)
        return r;
    r = fs_rmtree_at(parentfd, vlayout_leaf(id), e);
    if (r < 0)
        return r;
    (void)vlayout_sync_dir(parentfd);
    closep(&parentfd);
    pthread_mutex_lock(&vlayout_lock);
    vlayout_prune_parents(rootfd, id);
    pthread_mutex_unlock(&vlayout_lock);
    return 0;
}

int backend_entry_orphan(const struct backend_ctx *ctx, const struct class_params *params,
                         const struct vol_identity *id, time_t now, char *ret_dest,
                         size_t dest_size, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    int r;

    r = backend_open_parent(params, id, false, &rootfd, &parentfd, e);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    r = vlayout_orphan_move(rootfd, parentfd, vlayout_leaf(id), id, now, ret_dest, dest_size, e);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? r : 1;
}

int backend_entry_exists(const struct backend_ctx *ctx, const struct class_params *params,
                         const struct vol_identity *id)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    struct stat st;
    int r;

    r = backend_open_parent(params, id, false, &rootfd, &parentfd, NULL);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (fstatat(parentfd, vlayout_leaf(id), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT ? 0 : -errno;
}

const struct prov_backend dir_backend = {
    .name = "directory",
    .prepare = dir_prepare,
    .commit = dir_commit,
    .abort = dir_abort,
    .release = dir_release,
    .orphan = backend_entry_orphan,
    .exists = backend_entry_exists,
};
