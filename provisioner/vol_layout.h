/*
 * vol_layout.h - where a volume lives on the node, and the openat-relative operations on it.
 *
 *   <root>/<namespace>/<statefulset>/<ordinal>/<template>   StatefulSet claims
 *   <root>/<namespace>/_claims/<claim>                      any other claim
 *   <root>/<namespace>/<statefulset>/<ordinal>/.pending-<claim uid>
 *   <root>/<namespace>/_claims/.pending-<claim uid>         a volume being created (no PV yet)
 *   <root>/.orphaned/<ns>_<sts>_<ordinal>_<template>_<UTC timestamp>
 *                                                           data found without its PV
 *
 * Only the root itself is opened by path (the administrator chose it, symlinks in it are
 * theirs); every step below it is opened with O_NOFOLLOW relative to the previous one, so a
 * symlink planted inside the layout can never lead a create or a delete out of the root.
 * Names come from the API and are checked (no '/', no leading '.', no empty name) before use.
 */
#ifndef ORDINAL_LAYOUT_H
#define ORDINAL_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"
#include "identity.h"

#define VLAYOUT_CLAIMS_DIR     "_claims"
#define VLAYOUT_ORPHANED_DIR   ".orphaned"
#define VLAYOUT_PENDING_PREFIX ".pending-"
#define VLAYOUT_UID_MAX        64
#define VLAYOUT_REL_MAX        1024

/* Which volume: a StatefulSet ordinal's template, or a plain claim. */
struct vol_identity {
    char ns[K8S_NAME_MAX + 1];
    bool is_sts;
    char sts[K8S_NAME_MAX + 1];   /* is_sts */
    char tmpl[K8S_NAME_MAX + 1];  /* is_sts */
    int32_t ordinal;              /* is_sts */
    char claim[K8S_NAME_MAX + 1]; /* the claim name (both kinds) */
};

/* Fills an identity for a StatefulSet claim / a plain claim. Returns 0 or -EINVAL. */
int vlayout_identity_sts(struct vol_identity *ret, const char *ns, const char *claim,
                         const char *sts, const char *tmpl, int32_t ordinal);
int vlayout_identity_claim(struct vol_identity *ret, const char *ns, const char *claim);

/* True when both name the same volume entry. */
bool vlayout_identity_eq(const struct vol_identity *a, const struct vol_identity *b);

/* A name usable as one path component of the layout (API names; no '/', '.', '..', ''). */
bool vlayout_name_ok(const char *name);

/*
 * The entry relative to the root ("ns/sts/0/data", "ns/_claims/pvc") and its parent
 * ("ns/sts/0", "ns/_claims"). Returns 0, -EINVAL for an unusable name, -ENAMETOOLONG.
 */
int vlayout_entry_rel(const struct vol_identity *id, char *buf, size_t size);
int vlayout_parent_rel(const struct vol_identity *id, char *buf, size_t size);

/* The leaf name of the entry (template or claim name). */
const char *vlayout_leaf(const struct vol_identity *id);

/* ".pending-<uid>" into buf. Returns 0, -EINVAL (uid not [0-9a-zA-Z-]), -ENAMETOOLONG. */
int vlayout_pending_name(const char *uid, char *buf, size_t size);

/*
 * Opens the class root: `allowed_root` by path (it must exist), then the rest of `root`
 * (which lies below it) step by step with O_NOFOLLOW, creating missing directories when
 * create is true. Returns 0 and an O_DIRECTORY fd, or a negative errno with a message.
 */
int vlayout_open_root(const char *allowed_root, const char *root, bool create, int *ret_fd,
                      ord_err *e);

/*
 * Opens the entry's parent below rootfd (O_NOFOLLOW each step), creating missing directories
 * (mode 0755) when create is true. Returns 0 and the fd, -ENOENT when a step is missing and
 * create is false, -ENOTDIR/-ELOOP when a step is not a real directory.
 */
int vlayout_open_parent(int rootfd, const struct vol_identity *id, bool create, int *ret_fd,
                        ord_err *e);

/*
 * Moves the entry `leaf` of parentfd aside to <root>/.orphaned/<name>_<timestamp>, creating
 * .orphaned (0700: data there is nobody's any more). ret_dest (may be NULL) receives the path
 * relative to the root. Returns 0, -ENOENT when there was nothing to move, other errnos.
 */
int vlayout_orphan_move(int rootfd, int parentfd, const char *leaf, const struct vol_identity *id,
                        time_t now, char *ret_dest, size_t dest_size, ord_err *e);

/*
 * After a volume was removed, removes its now-empty parents (ordinal, statefulset or
 * _claims, namespace directories), stopping at the first that is not empty.
 */
void vlayout_prune_parents(int rootfd, const struct vol_identity *id);

/* fsync a directory fd; errors other than EINVAL/EROFS are returned. */
int vlayout_sync_dir(int dirfd);

#endif
