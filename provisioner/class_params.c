/*
 * class_params.c - StorageClass parameter parsing and validation (see class_params.h).
 *
 * Every refusal says which class, which parameter, what was wrong and what to change, because
 * the message ends up verbatim in a ProvisioningFailed Event that a person reads with
 * `kubectl describe pvc`.
 */
#include <stdio.h>
#include <string.h>

#include "class_params.h"

#define KNOWN_PARAMS "backend, pvType, root, deviceDir, fsType"

const char *vol_backend_kind_name(enum vol_backend_kind k)
{
    return k == VOL_BACKEND_DEVICE ? "device" : "directory";
}

const char *pv_type_name(enum pv_type t)
{
    return t == PV_TYPE_LOCAL ? "local" : "hostPath";
}

const char *reclaim_policy_name(enum reclaim_policy p)
{
    return p == RECLAIM_RETAIN ? "Retain" : "Delete";
}

int class_path_normalize(const char *in, char out[CLASS_PATH_MAX])
{
    size_t o = 0;
    const char *p;

    if (!in || in[0] != '/')
        return -EINVAL;
    p = in;
    while (*p) {
        const char *start, *end;
        size_t len;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        start = p;
        end = strchr(p, '/');
        if (!end)
            end = p + strlen(p);
        len = (size_t)(end - start);
        /* "." and ".." would let a class name a place other than the one it appears to. */
        if ((len == 1 && start[0] == '.') || (len == 2 && start[0] == '.' && start[1] == '.'))
            return -EINVAL;
        if (o + 1 + len >= CLASS_PATH_MAX)
            return -ENAMETOOLONG;
        out[o++] = '/';
        memcpy(out + o, start, len);
        o += len;
        p = end;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

bool class_path_is_under(const char *path, const char *dir)
{
    size_t ld = strlen(dir);

    if (streq(dir, "/"))
        return path[0] == '/';
    return strncmp(path, dir, ld) == 0 && (path[ld] == '\0' || path[ld] == '/');
}

/* Writes the allowed roots as "a, b, c" into buf, for messages. */
static void allowed_list(const struct class_limits *lim, char *buf, size_t size)
{
    char norm[CLASS_PATH_MAX];
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i <= lim->n_allowed_roots && o < size; i++) {
        const char *a = i == 0 ? lim->default_root : lim->allowed_roots[i - 1];

        if (!a)
            continue;
        if (class_path_normalize(a, norm) == 0)
            a = norm;
        o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "", a);
    }
}

/* Finds the allowed root (normalised into ret) that contains root. Returns 0 or -EACCES. */
static int find_allowed(const struct class_limits *lim, const char *root, char ret[CLASS_PATH_MAX])
{
    char norm[CLASS_PATH_MAX];

    for (size_t i = 0; i <= lim->n_allowed_roots; i++) {
        const char *a = i == 0 ? lim->default_root : lim->allowed_roots[i - 1];

        if (!a || class_path_normalize(a, norm) < 0)
            continue;
        if (class_path_is_under(root, norm)) {
            memcpy(ret, norm, CLASS_PATH_MAX);
            return 0;
        }
    }
    return -EACCES;
}

static int parse_root(const char *cls, const char *value, const struct class_limits *lim,
                      struct class_params *p, ord_err *e)
{
    char list[CLASS_PATH_MAX * 2];
    int r;

    r = class_path_normalize(value, p->root);
    if (r == -ENAMETOOLONG)
        return err_set(e, -EINVAL,
                       "StorageClass '%s': parameter root is longer than %d bytes; use a "
                       "shorter path",
                       cls, CLASS_PATH_MAX - 1);
    if (r < 0)
        return err_set(e, -EINVAL,
                       "StorageClass '%s': parameter root '%s' must be an absolute path "
                       "without '.' or '..' components; fix the StorageClass",
                       cls, value);
    if (find_allowed(lim, p->root, p->allowed_root) < 0) {
        allowed_list(lim, list, sizeof(list));
        return err_set(e, -EINVAL,
                       "root '%s' is not under an allowed root (%s); add --allowed-root %s to "
                       "the provisioner or fix the StorageClass '%s'",
                       p->root, list, p->root, cls);
    }
    return 0;
}

static int parse_device_dir(const char *cls, const char *value, const struct class_limits *lim,
                            struct class_params *p, ord_err *e)
{
    char norm[CLASS_PATH_MAX];

    if (class_path_normalize(value, p->device_dir) < 0)
        return err_set(e, -EINVAL,
                       "StorageClass '%s': parameter deviceDir '%s' must be an absolute path "
                       "without '.' or '..' components; fix the StorageClass",
                       cls, value);
    for (size_t i = 0; i < lim->n_device_dirs; i++)
        if (class_path_normalize(lim->device_dirs[i], norm) == 0 && streq(norm, p->device_dir))
            return 0;
    return err_set(e, -EINVAL,
                   "deviceDir '%s' is not one of the provisioner's --device-dir; add "
                   "--device-dir %s to the provisioner or fix the StorageClass '%s'",
                   p->device_dir, p->device_dir, cls);
}

static int parse_fs_type(const char *cls, const char *value, struct class_params *p, ord_err *e)
{
    size_t len = strlen(value);

    /* mkfs.<fsType> is what kubelet runs: keep to the characters filesystem names use. */
    if (len == 0 || len >= CLASS_FSTYPE_MAX ||
        strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789") != len)
        return err_set(e, -EINVAL,
                       "StorageClass '%s': parameter fsType '%s' is not a filesystem type "
                       "name (like ext4 or xfs); fix the StorageClass",
                       cls, value);
    memcpy(p->fs_type, value, len + 1);
    return 0;
}

int class_params_parse(const char *class_name, const struct class_kv *kv, size_t n_kv,
                       const struct class_limits *lim, struct class_params *ret, ord_err *e)
{
    struct class_params p = {.backend = VOL_BACKEND_DIRECTORY, .pv_type = PV_TYPE_HOSTPATH};
    const char *root = lim->default_root;
    const char *cls = class_name ? class_name : "";
    bool pv_type_given = false;
    int r;

    snprintf(p.fs_type, sizeof(p.fs_type), "ext4");
    for (size_t i = 0; i < n_kv; i++) {
        const char *k = kv[i].key, *v = kv[i].value ? kv[i].value : "";

        if (streq(k, "backend")) {
            if (streq(v, "directory"))
                p.backend = VOL_BACKEND_DIRECTORY;
            else if (streq(v, "device"))
                p.backend = VOL_BACKEND_DEVICE;
            else
                return err_set(e, -EINVAL,
                               "StorageClass '%s': unknown backend '%s'; use 'directory' or "
                               "'device'",
                               cls, v);
        } else if (streq(k, "pvType")) {
            pv_type_given = true;
            if (streq(v, "hostPath"))
                p.pv_type = PV_TYPE_HOSTPATH;
            else if (streq(v, "local"))
                p.pv_type = PV_TYPE_LOCAL;
            else
                return err_set(e, -EINVAL,
                               "StorageClass '%s': unknown pvType '%s'; use 'hostPath' or "
                               "'local'",
                               cls, v);
        } else if (streq(k, "root")) {
            root = v;
        } else if (streq(k, "deviceDir")) {
            r = parse_device_dir(cls, v, lim, &p, e);
            if (r < 0)
                return r;
        } else if (streq(k, "fsType")) {
            r = parse_fs_type(cls, v, &p, e);
            if (r < 0)
                return r;
        } else {
            return err_set(e, -EINVAL,
                           "StorageClass '%s': unknown parameter '%s' (known: " KNOWN_PARAMS
                           "); fix the StorageClass",
                           cls, k);
        }
    }
    if (!root)
        return err_set(e, -EINVAL, "StorageClass '%s': no root and no --root", cls);
    r = parse_root(cls, root, lim, &p, e);
    if (r < 0)
        return r;
    /* A device volume is always a `local` PV: hostPath cannot carry a block device. */
    if (p.backend == VOL_BACKEND_DEVICE) {
        if (pv_type_given && p.pv_type != PV_TYPE_LOCAL)
            return err_set(e, -EINVAL,
                           "StorageClass '%s': pvType 'hostPath' cannot carry a device; remove "
                           "pvType or set it to 'local'",
                           cls);
        p.pv_type = PV_TYPE_LOCAL;
    }
    *ret = p;
    return 0;
}
