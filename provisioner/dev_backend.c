/*
 * dev_backend.c - the device backend: one whole block device per volume.
 *
 * The node layout entry of a volume is a symlink to the device's stable path (the entry of
 * the --device-dir), created with the directory backend's crash-safe scheme:
 *
 *   prepare   choose a device (best fit, under the pool's allocation lock), symlink
 *             <parent>/.pending-<claim uid> -> <device dir>/<name>, fsync the parent
 *   (the controller creates the PV, annotated with the device's path and major:minor)
 *   commit    renameat2(.pending-<uid>, <leaf>, RENAME_NOREPLACE), fsync
 *   release   wipe the device (blk_wipe: every signature, first and last MiB), remove the
 *             symlink; the controller then deletes the PV and the device is free again
 *
 * A device is taken when a PV of ours owns it (the pool, fed from the PV informer), when this
 * process reserved it for a PV being created (the pool, under the PV's name), or when any
 * symlink of the class root's layout points at it: committed entries, pending entries left by
 * a crash, and entries moved to .orphaned (a raw Block volume may hold data without any
 * signature, and data is never handed out or destroyed silently). Only then do signatures
 * count: a free device has none (blk_discover.c explains why no marker is left).
 *
 * Two workers allocating at once are serialised by the pool's allocation lock, which is held
 * from discovery until the reservation is recorded; across restarts the PVs and the layout are
 * the record. Releases take the same lock, so a device being wiped is never being chosen.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blk_discover.h"
#include "dev_backend.h"
#include "identity.h"
#include "log.h"
#include "quantity.h"

#define POOL_MAX 4096 /* devices owned or seen; more is not a node */

struct dev_owner {
    char pv[K8S_NAME_MAX + 1];
    char device[BLK_PATH_MAX];
    dev_t rdev;
};

struct dev_seen {
    char dir[BLK_PATH_MAX];
    char path[BLK_PATH_MAX];
    char devname[BLK_PATH_MAX];
    uint64_t size;
    bool gone; /* reported as gone, not yet back */
};

struct dev_pool {
    pthread_mutex_t lock;  /* owners and seen */
    pthread_mutex_t alloc; /* one allocation or release at a time */
    struct dev_owner *owners;
    size_t n_owners;
    struct dev_seen *seen;
    size_t n_seen;
    dev_report_fn report;
    void *ud;
};

int dev_pool_new(dev_report_fn report, void *ud, struct dev_pool **ret)
{
    struct dev_pool *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->alloc, NULL);
    p->report = report;
    p->ud = ud;
    *ret = p;
    return 0;
}

void dev_pool_free(struct dev_pool *p)
{
    if (!p)
        return;
    free(p->owners);
    free(p->seen);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->alloc);
    free(p);
}

int dev_pool_own(struct dev_pool *p, const char *pv_name, const char *device, dev_t rdev)
{
    struct dev_owner *o = NULL;
    int r = 0;

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n_owners && !o; i++)
        if (streq(p->owners[i].pv, pv_name))
            o = &p->owners[i];
    if (!o) {
        struct dev_owner *n;

        if (p->n_owners >= POOL_MAX || !(n = realloc(p->owners, (p->n_owners + 1) * sizeof(*n)))) {
            r = -ENOMEM;
            goto out;
        }
        p->owners = n;
        o = &p->owners[p->n_owners++];
        snprintf(o->pv, sizeof(o->pv), "%s", pv_name);
    }
    snprintf(o->device, sizeof(o->device), "%s", device);
    o->rdev = rdev;
out:
    pthread_mutex_unlock(&p->lock);
    return r;
}

void dev_pool_forget(struct dev_pool *p, const char *pv_name)
{
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n_owners; i++)
        if (streq(p->owners[i].pv, pv_name)) {
            p->owners[i] = p->owners[--p->n_owners];
            break;
        }
    pthread_mutex_unlock(&p->lock);
}

/* The PV that owns rdev (or device path) into buf. Returns true when there is one. */
static bool pool_owner(struct dev_pool *p, dev_t rdev, const char *path, char *buf, size_t size)
{
    bool found = false;

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n_owners && !found; i++)
        if (p->owners[i].rdev == rdev || (path && streq(p->owners[i].device, path))) {
            snprintf(buf, size, "volume %s", p->owners[i].pv);
            found = true;
        }
    pthread_mutex_unlock(&p->lock);
    return found;
}

/* ---- the layout's claims on devices ---- */

struct layout_refs {
    dev_t rdev[POOL_MAX];
    char where[64][128]; /* descriptions of the first few, for messages */
    size_t n;
};

/* Records the device entry `name` of dirfd points at, if it is a symlink to a block device. */
static void note_link(struct layout_refs *lr, int dirfd, const char *name, const char *rel)
{
    struct stat st;

    if (lr->n >= POOL_MAX || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISLNK(st.st_mode))
        return;
    /* Following the link is fine here: only its device number is read. */
    if (fstatat(dirfd, name, &st, 0) < 0 || !S_ISBLK(st.st_mode))
        return;
    if (lr->n < ARRAY_SIZE(lr->where))
        snprintf(lr->where[lr->n], sizeof(lr->where[0]), "node entry %s/%s", rel, name);
    lr->rdev[lr->n++] = st.st_rdev;
}

/* Calls note_link for every entry (including dot entries) of directory fd. */
static void note_dir(struct layout_refs *lr, int fd, const char *rel)
{
    _cleanup_close_ int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;

    if (!d)
        return;
    TAKE_FD(dfd);
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            note_link(lr, fd, de->d_name, rel);
    closedir(d);
}

/* Opens subdirectory name of fd without following symlinks; -1 when it is not one. */
static int sub(int fd, const char *name)
{
    return openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * Every device a symlink of the layout under rootfd points at: the entries of <ns>/_claims
 * and <ns>/<sts>/<ordinal>, pending entries among them, and the entries of .orphaned.
 */
static void scan_layout(int rootfd, struct layout_refs *lr)
{
    _cleanup_close_ int dfd = dup(rootfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;

    if (!d)
        return;
    TAKE_FD(dfd);
    while ((de = readdir(d))) {
        _cleanup_close_ int nsfd = -EBADF;
        DIR *nd;
        struct dirent *se;

        if (streq(de->d_name, VLAYOUT_ORPHANED_DIR)) {
            _cleanup_close_ int ofd = sub(rootfd, de->d_name);

            if (ofd >= 0)
                note_dir(lr, ofd, VLAYOUT_ORPHANED_DIR);
            continue;
        }
        if (de->d_name[0] == '.' || (nsfd = sub(rootfd, de->d_name)) < 0)
            continue;
        {
            int tmp = dup(nsfd);

            nd = tmp >= 0 ? fdopendir(tmp) : NULL;
            if (!nd) {
                if (tmp >= 0)
                    close(tmp);
                continue;
            }
        }
        while ((se = readdir(nd))) {
            _cleanup_close_ int sfd = -EBADF;
            char rel[2 * K8S_NAME_MAX + 8];

            if (se->d_name[0] == '.' || (sfd = sub(nsfd, se->d_name)) < 0)
                continue;
            snprintf(rel, sizeof(rel), "%s/%s", de->d_name, se->d_name);
            if (streq(se->d_name, VLAYOUT_CLAIMS_DIR)) {
                note_dir(lr, sfd, rel);
                continue;
            }
            {
                int tmp = dup(sfd);
                DIR *od = tmp >= 0 ? fdopendir(tmp) : NULL;
                struct dirent *oe;

                if (!od) {
                    if (tmp >= 0)
                        close(tmp);
                    continue;
                }
                while ((oe = readdir(od))) {
                    _cleanup_close_ int ofd = -EBADF;
                    char orel[3 * K8S_NAME_MAX + 16];

                    if (oe->d_name[0] == '.' || (ofd = sub(sfd, oe->d_name)) < 0)
                        continue;
                    snprintf(orel, sizeof(orel), "%s/%s", rel, oe->d_name);
                    note_dir(lr, ofd, orel);
                }
                closedir(od);
            }
        }
        closedir(nd);
    }
    closedir(d);
}

struct owned_ctx {
    struct dev_pool *pool;
    const struct layout_refs *lr;
};

static bool owned_cb(dev_t rdev, const char *path, char *detail, size_t size, void *ud)
{
    struct owned_ctx *oc = ud;

    if (pool_owner(oc->pool, rdev, path, detail, size))
        return true;
    for (size_t i = 0; i < oc->lr->n; i++)
        if (oc->lr->rdev[i] == rdev) {
            snprintf(detail, size, "%s",
                     i < ARRAY_SIZE(oc->lr->where) ? oc->lr->where[i] : "a node entry");
            return true;
        }
    return false;
}

/* ---- what discovery saw, to report disappearances ---- */

/*
 * Compares a fresh listing of dir with what was seen before; reports (after unlocking) the
 * devices that were usable and are gone or empty now, and those that came back.
 */
static void note_seen(struct dev_pool *p, const char *dir, const struct blk_candidate *c, size_t n)
{
    struct dev_report reps[16];
    char owners[16][K8S_NAME_MAX + 16], whys[16][BLK_DETAIL_MAX];
    struct dev_seen copies[16];
    size_t nrep = 0;

    pthread_mutex_lock(&p->lock);
    /* Known entries of this directory: gone, or back? */
    for (size_t i = 0; i < p->n_seen; i++) {
        struct dev_seen *s = &p->seen[i];
        const struct blk_candidate *now = NULL;
        bool present;

        if (!streq(s->dir, dir))
            continue;
        for (size_t j = 0; j < n && !now; j++)
            if (streq(c[j].path, s->path))
                now = &c[j];
        present = now && now->state != BLK_EMPTY && now->state != BLK_ERROR;
        if (present == !s->gone)
            continue;
        s->gone = !present;
        if (nrep >= ARRAY_SIZE(reps))
            continue;
        copies[nrep] = *s;
        snprintf(whys[nrep], sizeof(whys[0]), "%s",
                 !now ? "is gone from the directory (or no longer a block device)"
                 : now->state == BLK_EMPTY || now->state == BLK_ERROR ? now->detail
                                                                      : "is back");
        owners[nrep][0] = '\0';
        for (size_t k = 0; k < p->n_owners; k++)
            if (streq(p->owners[k].device, s->path))
                snprintf(owners[nrep], sizeof(owners[0]), "%s", p->owners[k].pv);
        nrep++;
    }
    /* New entries that are usable (or owned) are remembered. */
    for (size_t j = 0; j < n; j++) {
        bool known = false;

        if (c[j].state == BLK_EMPTY || c[j].state == BLK_ERROR)
            continue;
        for (size_t i = 0; i < p->n_seen && !known; i++)
            if (streq(p->seen[i].dir, dir) && streq(p->seen[i].path, c[j].path)) {
                known = true;
                p->seen[i].size = c[j].size;
                snprintf(p->seen[i].devname, sizeof(p->seen[i].devname), "%s", c[j].devname);
            }
        if (!known && p->n_seen < POOL_MAX) {
            struct dev_seen *ns = realloc(p->seen, (p->n_seen + 1) * sizeof(*ns));

            if (!ns)
                break;
            p->seen = ns;
            ns = &p->seen[p->n_seen++];
            memset(ns, 0, sizeof(*ns));
            snprintf(ns->dir, sizeof(ns->dir), "%s", dir);
            snprintf(ns->path, sizeof(ns->path), "%s", c[j].path);
            snprintf(ns->devname, sizeof(ns->devname), "%s", c[j].devname);
            ns->size = c[j].size;
        }
    }
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < nrep && p->report; i++) {
        reps[i] = (struct dev_report){.dir = copies[i].dir,
                                      .path = copies[i].path,
                                      .devname = copies[i].devname,
                                      .owner = owners[i][0] ? owners[i] : NULL,
                                      .why = whys[i],
                                      .size = copies[i].size,
                                      .back = !copies[i].gone};
        p->report(&reps[i], p->ud);
    }
}

void dev_pool_refresh(struct dev_pool *p, const char *const *dirs, size_t n)
{
    static const struct layout_refs none = {.n = 0};

    for (size_t i = 0; i < n; i++) {
        char dir[CLASS_PATH_MAX];
        _cleanup_free_ struct blk_candidate *c = NULL;
        struct owned_ctx oc = {.pool = p, .lr = &none};
        size_t nc = 0;
        ord_err e = {0};

        if (class_path_normalize(dirs[i], dir) < 0)
            continue;
        /*
         * Under the allocation lock: discovery opens free devices exclusively for a moment,
         * which must not make a concurrent release think its device is held.
         */
        pthread_mutex_lock(&p->alloc);
        if (blk_discover_dir(dir, owned_cb, &oc, &c, &nc, &e) < 0) {
            pthread_mutex_unlock(&p->alloc);
            log_debug("device refresh: %s", err_msg(&e));
            continue;
        }
        pthread_mutex_unlock(&p->alloc);
        note_seen(p, dir, c, nc);
    }
}

/* ---- the backend operations ---- */

/* The device directory a class uses: its deviceDir, else the first --device-dir. */
static int class_device_dir(const struct backend_ctx *ctx, const struct class_params *p,
                            char dir[CLASS_PATH_MAX], ord_err *e)
{
    if (p->device_dir[0]) {
        snprintf(dir, CLASS_PATH_MAX, "%s", p->device_dir);
        return 0;
    }
    if (ctx->n_device_dirs == 0 || class_path_normalize(ctx->device_dirs[0], dir) < 0)
        return err_set(e, -EINVAL,
                       "the StorageClass asks for backend 'device' but this node's provisioner "
                       "has no --device-dir; start it with --device-dir DIR (a directory of "
                       "symlinks to the devices it may use)");
    return 0;
}

/*
 * Chooses the device for req under the allocation lock (held by the caller) and creates the
 * pending symlink in parentfd. Fills out->device/device_id/capacity and *ret_rdev.
 */
static int choose_locked(const struct backend_ctx *ctx, const struct vol_request *req, int rootfd,
                         int parentfd, const char *pending, struct vol_prepared *out,
                         dev_t *ret_rdev, ord_err *e)
{
    _cleanup_free_ struct layout_refs *lr = NULL;
    _cleanup_free_ struct blk_candidate *c = NULL;
    char dir[CLASS_PATH_MAX], target[BLK_PATH_MAX], q[QUANTITY_STR_MAX];
    char why[ORD_ERR_MSG_MAX - 200];
    struct owned_ctx oc;
    size_t n = 0, best;
    ssize_t len;
    int r;

    r = class_device_dir(ctx, req->params, dir, e);
    if (r < 0)
        return r;

    /*
     * A pending entry of an earlier attempt of this claim: keep its device if it is still
     * free and still one of the class's directory (the layout is not trusted to name devices).
     */
    len = readlinkat(parentfd, pending, target, sizeof(target) - 1);
    if (len > 0) {
        struct blk_candidate one;
        const char *slash;

        target[len] = '\0';
        slash = strrchr(target, '/');
        if (slash && (size_t)(slash - target) == strlen(dir) &&
            strncmp(target, dir, strlen(dir)) == 0 && blk_probe(target, &one) == 0 &&
            one.state == BLK_FREE && one.size >= req->request) {
            snprintf(out->device, sizeof(out->device), "%s", target);
            out->capacity = one.size;
            *ret_rdev = one.rdev;
            return 0;
        }
        /* Gone or taken meanwhile: it was never handed to a pod, start over. */
        (void)unlinkat(parentfd, pending, 0);
    } else if (len < 0 && errno != ENOENT) {
        return err_set_errno(e, -errno, "'%s' beside '%s' is not a symlink; remove it", pending,
                             out->path);
    }

    lr = calloc(1, sizeof(*lr));
    if (!lr)
        return err_set(e, -ENOMEM, "out of memory");
    scan_layout(rootfd, lr);
    oc = (struct owned_ctx){.pool = ctx->devs, .lr = lr};
    r = blk_discover_dir(dir, owned_cb, &oc, &c, &n, e);
    if (r < 0)
        return r;
    note_seen(ctx->devs, dir, c, n);
    r = blk_best_fit(c, n, req->request, &best, why, sizeof(why));
    if (r == -ENODEV)
        return err_set(e, -ENOSPC,
                       "no block device in deviceDir '%s' on this node; add a symlink to a "
                       "free device there",
                       dir);
    if (r < 0)
        return err_set(e, -ENOSPC, "no free device of at least %s in deviceDir '%s': %s",
                       quantity_format(req->request, q), dir, why);
    if (symlinkat(c[best].path, parentfd, pending) < 0)
        return err_set_errno(e, -errno, "cannot create the volume entry '%s'", out->path);
    out->created_now = true;
    snprintf(out->device, sizeof(out->device), "%s", c[best].path);
    out->capacity = c[best].size;
    *ret_rdev = c[best].rdev;
    return 0;
}

static int dev_prepare(const struct backend_ctx *ctx, const struct vol_request *req,
                       struct vol_prepared *ret, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    struct vol_prepared out = {0};
    char pending[NAME_MAX + 1];
    dev_t rdev = 0;
    int r;

    r = backend_entry_path(req->params->root, req->id, out.path, sizeof(out.path));
    if (r < 0)
        return err_set(e, r, "the volume path under '%s' is too long", req->params->root);
    r = vlayout_pending_name(req->claim_uid, pending, sizeof(pending));
    if (r < 0)
        return err_set(e, r, "claim uid '%s' cannot name a directory", req->claim_uid);

    /* Lock order everywhere: allocation, then layout. */
    pthread_mutex_lock(&ctx->devs->alloc);
    pthread_mutex_lock(&vlayout_lock);
    r = backend_open_parent(req->params, req->id, true, &rootfd, &parentfd, e);
    if (r < 0)
        err_wrap(e, r, "cannot create the volume entry '%s'", out.path);
    else
        r = choose_locked(ctx, req, rootfd, parentfd, pending, &out, &rdev, e);
    pthread_mutex_unlock(&vlayout_lock);
    if (r == 0) {
        blk_format_devid(rdev, out.device_id, sizeof(out.device_id));
        r = dev_pool_own(ctx->devs, req->pv_name, out.device, rdev);
        if (r == 0)
            r = cap_ledger_set(ctx->ledger, req->pv_name, 0, 0, out.path);
        if (r < 0)
            err_set(e, r, "out of memory");
    }
    pthread_mutex_unlock(&ctx->devs->alloc);
    if (r < 0) {
        if (out.created_now && parentfd >= 0)
            (void)unlinkat(parentfd, pending, 0);
        return r;
    }
    /* Durable before the PV exists, as with directories. */
    r = vlayout_sync_dir(parentfd);
    if (r < 0) {
        err_set_errno(e, r, "cannot sync the directory of '%s'", out.path);
        if (out.created_now)
            (void)unlinkat(parentfd, pending, 0);
        dev_pool_forget(ctx->devs, req->pv_name);
        (void)cap_ledger_unreserve(ctx->ledger, req->pv_name);
        return r;
    }
    *ret = out;
    return 0;
}

static int dev_commit(const struct backend_ctx *ctx, const struct vol_request *req, ord_err *e)
{
    return backend_entry_commit(req, S_IFLNK, e);
}

static void dev_abort(const struct backend_ctx *ctx, const struct vol_request *req)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    char pending[NAME_MAX + 1];
    struct stat st;

    dev_pool_forget(ctx->devs, req->pv_name);
    (void)cap_ledger_unreserve(ctx->ledger, req->pv_name);
    if (vlayout_pending_name(req->claim_uid, pending, sizeof(pending)) < 0 ||
        backend_open_parent(req->params, req->id, false, &rootfd, &parentfd, NULL) < 0)
        return;
    /* Only a symlink: the device behind it was never handed to a pod, nothing to wipe. */
    if (fstatat(parentfd, pending, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
        unlinkat(parentfd, pending, 0) == 0) {
        (void)vlayout_sync_dir(parentfd);
        pthread_mutex_lock(&vlayout_lock);
        vlayout_prune_parents(rootfd, req->id);
        pthread_mutex_unlock(&vlayout_lock);
    }
}

/* Whether path lies directly in one of the --device-dir directories. */
static bool in_device_dirs(const struct backend_ctx *ctx, const char *path)
{
    char norm[CLASS_PATH_MAX], dir[CLASS_PATH_MAX];
    const char *slash;

    if (class_path_normalize(path, norm) < 0 || !(slash = strrchr(norm, '/')) || slash == norm)
        return false;
    for (size_t i = 0; i < ctx->n_device_dirs; i++)
        if (class_path_normalize(ctx->device_dirs[i], dir) == 0 &&
            strlen(dir) == (size_t)(slash - norm) && strncmp(norm, dir, strlen(dir)) == 0)
            return true;
    return false;
}

static int dev_release(const struct backend_ctx *ctx, const struct class_params *params,
                       const struct vol_identity *id, const struct vol_owned *vol, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, parentfd = -EBADF;
    char wiped[256] = "";
    const char *leaf = vlayout_leaf(id);
    struct stat st;
    dev_t rdev;
    int r;

    if (!vol || !vol->device || !vol->device_id || blk_parse_devid(vol->device_id, &rdev) < 0)
        return err_set(e, -EINVAL,
                       "the PV lacks the ordinal.dev/device annotations; not "
                       "touching any device");
    /* The annotations are API data: only a device of a configured directory is ever wiped. */
    if (!in_device_dirs(ctx, vol->device))
        return err_set(e, -EACCES,
                       "device '%s' is not in any --device-dir of this provisioner; not wiping "
                       "it",
                       vol->device);

    pthread_mutex_lock(&ctx->devs->alloc);
    r = blk_wipe(vol->device, rdev, vol->capacity, vol->block ? NULL : vol->fs_type, wiped,
                 sizeof(wiped), e);
    pthread_mutex_unlock(&ctx->devs->alloc);
    if (r < 0)
        return r;
    log_info("volume %s: wiped device %s (%s; signatures erased: %s)", vol->pv_name, vol->device,
             vol->device_id, wiped);

    r = backend_open_parent(params, id, false, &rootfd, &parentfd, e);
    if (r == -ENOENT)
        return 0; /* entry already gone */
    if (r < 0)
        return r;
    if (fstatat(parentfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISLNK(st.st_mode))
            log_warn("volume %s: '%s/%s' is not the symlink the provisioner made; left it",
                     vol->pv_name, params->root, leaf);
        else if (unlinkat(parentfd, leaf, 0) < 0 && errno != ENOENT)
            return err_set_errno(e, -errno, "cannot remove the volume entry '%s'", leaf);
    }
    (void)vlayout_sync_dir(parentfd);
    closep(&parentfd);
    pthread_mutex_lock(&vlayout_lock);
    vlayout_prune_parents(rootfd, id);
    pthread_mutex_unlock(&vlayout_lock);
    return 0;
}

const struct prov_backend dev_backend = {
    .name = "device",
    .prepare = dev_prepare,
    .commit = dev_commit,
    .abort = dev_abort,
    .release = dev_release,
    .orphan = backend_entry_orphan, /* the symlink keeps its device taken in .orphaned */
    .exists = backend_entry_exists,
};
