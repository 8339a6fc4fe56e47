/*
 * layout.c - see layout.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_rmtree.h"
#include "fsutil.h"
#include "identity.h"
#include "layout.h"

#define LAYOUT_VOLUMES_MAX 65536

void layout_free(struct layout *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Opens <root>/<ns>/<sts> (root may be a symlink the administrator set up; below, none). */
static int open_sts_dir(const char *root, const struct sts_ref *sts, ord_err *e)
{
    _cleanup_close_ int rootfd = -EBADF, nsfd = -EBADF;
    int fd;

    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_set_errno(e, -errno, "cannot open the node root '%s'", root);
    nsfd = openat(rootfd, sts->ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nsfd < 0 && errno == ENOENT)
        return err_set(e, -ENOENT,
                       "there is no '%s/%s' in the node layout (no volumes of %s/%s "
                       "on this node)",
                       root, sts->ns, sts->ns, sts->name);
    if (nsfd < 0)
        return err_set_errno(e, -errno, "cannot open '%s/%s'", root, sts->ns);
    fd = openat(nsfd, sts->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return err_set(e, -ENOENT,
                       "there is no '%s/%s/%s' in the node layout (no volumes of "
                       "%s/%s on this node)",
                       root, sts->ns, sts->name, sts->ns, sts->name);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open '%s/%s/%s'", root, sts->ns, sts->name);
    return fd;
}

/* Classifies the entry name in dirfd. Returns 0 with kind/device filled, -ENOENT, -EINVAL. */
static int classify(int dirfd, const char *name, const char *path, struct layout_volume *v,
                    ord_err *e)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return err_set_errno(e, -errno, "cannot inspect '%s'", path);
    }
    if (S_ISDIR(st.st_mode)) {
        v->kind = VOLUME_DIRECTORY;
        v->device[0] = '\0';
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlinkat(dirfd, name, v->device, sizeof(v->device) - 1);
        if (n < 0)
            return err_set_errno(e, -errno, "cannot read the symlink '%s'", path);
        v->device[n] = '\0';
        /* Follow it only to look: a device volume is a symlink to a block device. */
        if (fstatat(dirfd, name, &st, 0) < 0 || !S_ISBLK(st.st_mode))
            return err_set(e, -EINVAL,
                           "'%s' is a symlink to '%s', which is not a block device; only "
                           "directories and symlinks to block devices are volumes",
                           path, v->device);
        v->kind = VOLUME_DEVICE;
        return 0;
    }
    return err_set(e, -EINVAL,
                   "'%s' is neither a directory nor a symlink to a block device; refusing it",
                   path);
}

static int cmp_volume(const void *a, const void *b)
{
    const struct layout_volume *x = a, *y = b;

    if (x->ordinal != y->ordinal)
        return x->ordinal < y->ordinal ? -1 : 1;
    return strcmp(x->template_name, y->template_name);
}

static int scan_ordinal(int stsfd, const char *root, const struct sts_ref *sts, int32_t ordinal,
                        const char *oname, struct layout *l, ord_err *e)
{
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;
    int fd;

    fd = openat(stsfd, oname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(e, -errno, "'%s/%s/%s/%s' is not a directory we can open", root,
                             sts->ns, sts->name, oname);
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(e, -errno, "cannot read '%s/%s/%s/%s'", root, sts->ns, sts->name,
                             oname);
    }
    while ((errno = 0, de = readdir(d))) {
        struct layout_volume v = {.ordinal = ordinal};
        int n, r;

        if (de->d_name[0] == '.')
            continue;
        n = snprintf(v.path, sizeof(v.path), "%s/%s/%s/%s/%s", root, sts->ns, sts->name, oname,
                     de->d_name);
        if (n < 0 || (size_t)n >= sizeof(v.path))
            return err_set(e, -ENAMETOOLONG, "a path under '%s' is too long", root);
        if (!names_dns_subdomain(de->d_name))
            return err_set(e, -EINVAL,
                           "'%s': a template name must be a DNS-1123 name; refusing the entry",
                           v.path);
        snprintf(v.template_name, sizeof(v.template_name), "%s", de->d_name);
        r = classify(dirfd(d), de->d_name, v.path, &v, e);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        if (l->n >= LAYOUT_VOLUMES_MAX)
            return err_set(e, -E2BIG, "too many volumes under '%s'", root);
        struct layout_volume *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
        if (!nv)
            return err_set(e, -ENOMEM, "out of memory");
        l->v = nv;
        l->v[l->n++] = v;
    }
    if (errno)
        return err_set_errno(e, -errno, "cannot read '%s/%s/%s/%s'", root, sts->ns, sts->name,
                             oname);
    return 0;
}

int layout_scan(const char *root, const struct sts_ref *sts, struct layout *ret, ord_err *e)
{
    _cleanup_(closedirp) DIR *d = NULL;
    struct layout l = {0};
    struct dirent *de;
    int fd, r = 0;

    fd = open_sts_dir(root, sts, e);
    if (fd < 0)
        return fd;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(e, -errno, "cannot read '%s/%s/%s'", root, sts->ns, sts->name);
    }
    while ((errno = 0, de = readdir(d))) {
        int32_t ordinal;

        if (de->d_name[0] == '.')
            continue;
        /* Only canonical ordinals are the StatefulSet's; anything else is not ours. */
        if (identity_parse_ordinal(de->d_name, strlen(de->d_name), &ordinal) < 0)
            continue;
        r = scan_ordinal(dirfd(d), root, sts, ordinal, de->d_name, &l, e);
        if (r < 0)
            break;
    }
    if (r == 0 && errno)
        r = err_set_errno(e, -errno, "cannot read '%s/%s/%s'", root, sts->ns, sts->name);
    if (r < 0) {
        layout_free(&l);
        return r;
    }
    if (l.n > 1)
        qsort(l.v, l.n, sizeof(*l.v), cmp_volume);
    *ret = l;
    return 0;
}

int layout_lookup(const char *root, const struct sts_ref *sts, int32_t ordinal, const char *tmpl,
                  struct layout_volume *ret, ord_err *e)
{
    _cleanup_close_ int stsfd = -EBADF, ofd = -EBADF;
    struct layout_volume v = {.ordinal = ordinal};
    char oname[16];
    int n, r;

    snprintf(oname, sizeof(oname), "%d", (int)ordinal);
    snprintf(v.template_name, sizeof(v.template_name), "%s", tmpl);
    n = snprintf(v.path, sizeof(v.path), "%s/%s/%s/%s/%s", root, sts->ns, sts->name, oname, tmpl);
    if (n < 0 || (size_t)n >= sizeof(v.path))
        return err_set(e, -ENAMETOOLONG, "a path under '%s' is too long", root);
    stsfd = open_sts_dir(root, sts, NULL);
    if (stsfd >= 0)
        ofd = openat(stsfd, oname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    r = ofd >= 0 ? classify(ofd, tmpl, v.path, &v, e) : -ENOENT;
    if (r == -ENOENT)
        return err_set(e, -ENOENT,
                       "the volume entry '%s' does not exist; for a directory volume create it "
                       "(mkdir -p '%s'), for a claim of the StatefulSet let the provisioner bind "
                       "claim '%s-%s-%d' first",
                       v.path, v.path, tmpl, sts->name, (int)ordinal);
    if (r < 0)
        return r;
    *ret = v;
    return 0;
}

int layout_staging_path(char *buf, size_t size, const char *root, const struct sts_ref *sts,
                        int32_t ordinal, const char *tmpl, const char *id)
{
    int n = snprintf(buf, size, "%s/%s/%s/%d/.%s.restore-%s", root, sts->ns, sts->name,
                     (int)ordinal, tmpl, id);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int layout_remove_staging(const char *root, const struct sts_ref *sts, int32_t ordinal,
                          const char *tmpl, ord_err *e)
{
    _cleanup_close_ int stsfd = -EBADF;
    _cleanup_(closedirp) DIR *d = NULL;
    char oname[16], prefix[NAMES_SUBDOMAIN_MAX + 16];
    struct dirent *de;
    int fd, removed = 0;

    snprintf(oname, sizeof(oname), "%d", (int)ordinal);
    snprintf(prefix, sizeof(prefix), ".%s.restore-", tmpl);
    stsfd = open_sts_dir(root, sts, e);
    if (stsfd < 0)
        return stsfd;
    fd = openat(stsfd, oname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open '%s/%s/%s/%s'", root, sts->ns, sts->name,
                             oname);
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(e, -errno, "cannot read '%s/%s/%s/%s'", root, sts->ns, sts->name,
                             oname);
    }
    while ((de = readdir(d))) {
        int r;

        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        r = fs_rmtree_at(dirfd(d), de->d_name, e);
        if (r < 0)
            return err_wrap(e, r, "removing the leftover restore entry '%s/%s/%s/%s/%s'", root,
                            sts->ns, sts->name, oname, de->d_name);
        removed++;
    }
    return removed;
}
