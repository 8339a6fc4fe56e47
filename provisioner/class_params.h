/*
 * class_params.h - a StorageClass of our provisioner, decoded and checked.
 *
 * The StorageClass is outside input: a person wrote it, and a typo in it must turn into a
 * ProvisioningFailed Event that says what to change, never into a directory in a surprising
 * place. class_params_parse() therefore refuses unknown parameters, unknown values, relative
 * paths, paths with "." or ".." components and roots that are not inside one of the
 * provisioner's allowed roots, with a message that names the class and the fix.
 */
#ifndef ORDINAL_CLASS_PARAMS_H
#define ORDINAL_CLASS_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define CLASS_PATH_MAX   1024
#define CLASS_FSTYPE_MAX 32

enum vol_backend_kind {
    VOL_BACKEND_DIRECTORY = 0,
    VOL_BACKEND_DEVICE = 1,
};

enum pv_type {
    PV_TYPE_HOSTPATH = 0,
    PV_TYPE_LOCAL = 1,
};

enum reclaim_policy {
    RECLAIM_DELETE = 0, /* the API server's default for StorageClasses */
    RECLAIM_RETAIN = 1,
};

/* One parameter of the StorageClass, as found in .parameters. */
struct class_kv {
    const char *key;
    const char *value;
};

/* The provisioner's side of the checks: where a class may put volumes and devices. */
struct class_limits {
    const char *default_root;         /* --root, always allowed */
    const char *const *allowed_roots; /* --allowed-root, normalised by the caller or not */
    size_t n_allowed_roots;
    const char *const *device_dirs; /* --device-dir */
    size_t n_device_dirs;
};

struct class_params {
    enum vol_backend_kind backend;
    enum pv_type pv_type;
    char root[CLASS_PATH_MAX];         /* normalised: absolute, no trailing slash, no . or .. */
    char device_dir[CLASS_PATH_MAX];   /* empty when not given */
    char fs_type[CLASS_FSTYPE_MAX];    /* "ext4" unless given */
    char allowed_root[CLASS_PATH_MAX]; /* the allowed root that contains root */
};

/*
 * Checks the parameters of StorageClass `class_name` against `lim`.
 * Returns 0 and fills *ret, or -EINVAL with a message for the claim's Event in e.
 */
int class_params_parse(const char *class_name, const struct class_kv *kv, size_t n_kv,
                       const struct class_limits *lim, struct class_params *ret, ord_err *e);

/*
 * Normalises an absolute path: collapses repeated slashes and drops a trailing slash.
 * Refuses (-EINVAL) a relative or empty path, "." and ".." components, and anything longer
 * than CLASS_PATH_MAX - 1. out must hold CLASS_PATH_MAX bytes.
 */
int class_path_normalize(const char *in, char out[CLASS_PATH_MAX]);

/* True when `path` equals `dir` or lies below it (both normalised). */
bool class_path_is_under(const char *path, const char *dir);

/* "directory"/"device", "hostPath"/"local", "Delete"/"Retain". */
const char *vol_backend_kind_name(enum vol_backend_kind k);
const char *pv_type_name(enum pv_type t);
const char *reclaim_policy_name(enum reclaim_policy p);

#endif
