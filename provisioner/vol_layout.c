/*
 * vol_layout.c - node layout paths and openat-relative creation (see vol_layout.h).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol_layout.h"
#include "macro.h"

bool vlayout_name_ok(const char *name)
{
    size_t len;

    if (!name || !name[0] || name[0] == '.')
        return false;
    len = strlen(name);
    if (len > K8S_NAME_MAX || memchr(name, '/', len))
        return false;
    return true;
}

static int copy_name(char *dst, const char *src)
{
    if (!vlayout_name_ok(src))
        return -EINVAL;
    snprintf(dst, K8S_NAME_MAX + 1, "%s", src);
    return 0;
}

int vlayout_identity_sts(struct vol_identity *ret, const char *ns, const char *claim,
                         const char *sts, const char *tmpl, int32_t ordinal)
{
    struct vol_identity id = {.is_sts = true, .ordinal = ordinal};

    if (ordinal < 0 || copy_name(id.ns, ns) < 0 || copy_name(id.claim, claim) < 0 ||
        copy_name(id.sts, sts) < 0 || copy_name(id.tmpl, tmpl) < 0)
        return -EINVAL;
    /* "_claims" cannot be a StatefulSet name (DNS-1123), but the check costs nothing. */
    if (streq(id.sts, VLAYOUT_CLAIMS_DIR))
        return -EINVAL;
    *ret = id;
    return 0;
}

int vlayout_identity_claim(struct vol_identity *ret, const char *ns, const char *claim)
{
    struct vol_identity id = {.is_sts = false};

    if (copy_name(id.ns, ns) < 0 || copy_name(id.claim, claim) < 0)
        return -EINVAL;
    *ret = id;
    return 0;
}

bool vlayout_identity_eq(const struct vol_identity *a, const struct vol_identity *b)
{
    if (a->is_sts != b->is_sts || !streq(a->ns, b->ns))
        return false;
    if (a->is_sts)
        return a->ordinal == b->ordinal && streq(a->sts, b->sts) && streq(a->tmpl, b->tmpl);
    return streq(a->claim, b->claim);
}

const char *vlayout_leaf(const struct vol_identity *id)
{
    return id->is_sts ? id->tmpl : id->claim;
}

int vlayout_parent_rel(const struct vol_identity *id, char *buf, size_t size)
{
    int n;

    if (!vlayout_name_ok(id->ns))
        return -EINVAL;
    if (id->is_sts) {
        if (!vlayout_name_ok(id->sts) || id->ordinal < 0)
            return -EINVAL;
        n = snprintf(buf, size, "%s/%s/%d", id->ns, id->sts, (int)id->ordinal);
    } else {
        n = snprintf(buf, size, "%s/%s", id->ns, VLAYOUT_CLAIMS_DIR);
    }
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int vlayout_entry_rel(const struct vol_identity *id, char *buf, size_t size)
{
    char parent[VLAYOUT_REL_MAX];
    int r, n;

    r = vlayout_parent_rel(id, parent, sizeof(parent));
    if (r < 0)
        return r;
    if (!vlayout_name_ok(vlayout_leaf(id)))
        return -EINVAL;
    n = snprintf(buf, size, "%s/%s", parent, vlayout_leaf(id));
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int vlayout_pending_name(const char *uid, char *buf, size_t size)
{
    size_t len = uid ? strlen(uid) : 0;
    int n;

    if (len == 0 || len > VLAYOUT_UID_MAX ||
        strspn(uid, "0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ-") != len)
        return -EINVAL;
    n = snprintf(buf, size, VLAYOUT_PENDING_PREFIX "%s", uid);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int vlayout_sync_dir(int dirfd)
{
    if (fsync(dirfd) < 0 && errno != EINVAL && errno != EROFS)
        return -errno;
    return 0;
}

/*
 * One step down: opens `name` below dirfd as a directory without following a symlink,
 * creating it first when asked. Returns 0 and the fd, or a negative errno.
 */
static int step(int dirfd, const char *name, bool create, mode_t mode, int *ret_fd)
{
    int fd;

    if (create && mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return -errno;
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? -ELOOP : -errno;
    *ret_fd = fd;
    return 0;
}

int vlayout_open_root(const char *allowed_root, const char *root, bool create, int *ret_fd,
                      ord_err *e)
{
    _cleanup_close_ int fd = -EBADF;
    size_t la = strlen(allowed_root);
    char rest[VLAYOUT_REL_MAX * 2];
    char *save = NULL, *tok;
    int r;

    /* Both normalised by class_params: root == allowed_root or starts with allowed_root + '/'. */
    if (strncmp(root, allowed_root, la) != 0 || (root[la] && root[la] != '/' && la > 1))
        return err_set(e, -EINVAL, "root '%s' is not below '%s'", root, allowed_root);
    fd = open(allowed_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open allowed root '%s'", allowed_root);
    if (snprintf(rest, sizeof(rest), "%s", root + la) >= (int)sizeof(rest))
        return err_set(e, -ENAMETOOLONG, "root '%s' is too long", root);
    for (tok = strtok_r(rest, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        int next = -EBADF;

        r = step(fd, tok, create, 0755, &next);
        if (r < 0)
            return err_set_errno(e, r, "cannot %s '%s' below '%s'", create ? "create" : "open", tok,
                                 allowed_root);
        closep(&fd);
        fd = next;
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

int vlayout_open_parent(int rootfd, const struct vol_identity *id, bool create, int *ret_fd,
                        ord_err *e)
{
    _cleanup_close_ int fd = -EBADF;
    char ord[16];
    const char *steps[3];
    size_t n = 0;
    int cur = rootfd, r;

    if (!vlayout_name_ok(id->ns))
        return err_set(e, -EINVAL, "invalid namespace name");
    steps[n++] = id->ns;
    if (id->is_sts) {
        if (!vlayout_name_ok(id->sts) || id->ordinal < 0)
            return err_set(e, -EINVAL, "invalid StatefulSet name");
        snprintf(ord, sizeof(ord), "%d", (int)id->ordinal);
        steps[n++] = id->sts;
        steps[n++] = ord;
    } else {
        steps[n++] = VLAYOUT_CLAIMS_DIR;
    }
    for (size_t i = 0; i < n; i++) {
        int next = -EBADF;

        r = step(cur, steps[i], create, 0755, &next);
        if (r < 0) {
            if (r == -ENOENT && !create)
                return r;
            return err_set_errno(e, r, "cannot %s directory '%s' of the layout",
                                 create ? "create" : "open", steps[i]);
        }
        closep(&fd);
        fd = next;
        cur = fd;
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

/* Appends src to dst (bounded), replacing characters that are awkward in file names. */
static void append_part(char *dst, size_t size, const char *src, size_t max)
{
    size_t o = strlen(dst);

    for (size_t i = 0; src[i] && i < max && o + 1 < size; i++)
        dst[o++] = src[i] == '/' ? '-' : src[i];
    dst[o] = '\0';
}

int vlayout_orphan_move(int rootfd, int parentfd, const char *leaf, const struct vol_identity *id,
                        time_t now, char *ret_dest, size_t dest_size, ord_err *e)
{
    _cleanup_close_ int ofd = -EBADF;
    char name[NAME_MAX + 1] = "", stamp[32], ord[16];
    struct tm tm;
    struct stat st;
    int r;

    if (fstatat(parentfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? -ENOENT : err_set_errno(e, -errno, "cannot inspect '%s'", leaf);
    r = step(rootfd, VLAYOUT_ORPHANED_DIR, true, 0700, &ofd);
    if (r < 0)
        return err_set_errno(e, r, "cannot create '%s' in the root", VLAYOUT_ORPHANED_DIR);
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    /* Each part is cut so the whole name stays within NAME_MAX with the suffixes below. */
    append_part(name, sizeof(name), id->ns, 63);
    append_part(name, sizeof(name), "_", 1);
    if (id->is_sts) {
        snprintf(ord, sizeof(ord), "%d", (int)id->ordinal);
        append_part(name, sizeof(name), id->sts, 70);
        append_part(name, sizeof(name), "_", 1);
        append_part(name, sizeof(name), ord, 11);
        append_part(name, sizeof(name), "_", 1);
        append_part(name, sizeof(name), id->tmpl, 60);
    } else {
        append_part(name, sizeof(name), VLAYOUT_CLAIMS_DIR, 8);
        append_part(name, sizeof(name), "_", 1);
        append_part(name, sizeof(name), id->claim, 140);
    }
    append_part(name, sizeof(name), "_", 1);
    append_part(name, sizeof(name), stamp, 20);
    for (int attempt = 0; attempt < 100; attempt++) {
        char final[NAME_MAX + 1];

        if (attempt == 0)
            snprintf(final, sizeof(final), "%s", name);
        else
            snprintf(final, sizeof(final), "%s.%d", name, attempt);
        if (renameat2(parentfd, leaf, ofd, final, RENAME_NOREPLACE) == 0) {
            (void)vlayout_sync_dir(ofd);
            (void)vlayout_sync_dir(parentfd);
            if (ret_dest)
                snprintf(ret_dest, dest_size, "%s/%s", VLAYOUT_ORPHANED_DIR, final);
            return 0;
        }
        if (errno != EEXIST)
            return err_set_errno(e, -errno, "cannot move '%s' to '%s/%s'", leaf,
                                 VLAYOUT_ORPHANED_DIR, final);
    }
    return err_set(e, -EEXIST, "too many orphans named '%s'", name);
}

void vlayout_prune_parents(int rootfd, const struct vol_identity *id)
{
    char ord[16];

    /* unlinkat(AT_REMOVEDIR) only removes empty directories: a sibling stops the climb. */
    if (id->is_sts) {
        _cleanup_close_ int nsfd = -EBADF, stsfd = -EBADF;

        snprintf(ord, sizeof(ord), "%d", (int)id->ordinal);
        if (step(rootfd, id->ns, false, 0, &nsfd) < 0 || step(nsfd, id->sts, false, 0, &stsfd) < 0)
            return;
        if (unlinkat(stsfd, ord, AT_REMOVEDIR) < 0 || unlinkat(nsfd, id->sts, AT_REMOVEDIR) < 0)
            return;
    } else {
        _cleanup_close_ int nsfd = -EBADF;

        if (step(rootfd, id->ns, false, 0, &nsfd) < 0)
            return;
        if (unlinkat(nsfd, VLAYOUT_CLAIMS_DIR, AT_REMOVEDIR) < 0)
            return;
    }
    (void)unlinkat(rootfd, id->ns, AT_REMOVEDIR);
}
