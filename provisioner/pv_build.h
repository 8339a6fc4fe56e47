/*
 * pv_build.h - the PersistentVolume object for a provisioned volume, and the claimRef patch
 * that hands a retained PV to a new claim. Encoding edge: the only place in the provisioner,
 * with objects.c and events.c, that touches cJSON.
 */
#ifndef ORDINAL_PV_BUILD_H
#define ORDINAL_PV_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "class_params.h"
#include "vol_layout.h"

struct pv_spec {
    const char *name;        /* pvc-<claim uid> */
    const char *provisioner; /* --provisioner-name */
    const char *node_name;   /* --node-name */
    const char *hostname;    /* the Node's kubernetes.io/hostname label value */
    const struct vol_identity *id;
    const char *root; /* class root (normalised) */
    const char *path; /* root + "/" + entry */
    const char *claim_uid;
    const char *claim_rv; /* may be NULL */
    uint64_t capacity;
    unsigned access_modes; /* ACCESS_* */
    bool block;
    enum reclaim_policy reclaim;
    const char *storage_class;
    char *const *mount_options;
    size_t n_mount_options;
    enum pv_type pv_type;
    const char *device;    /* device backend: the device's stable path, else NULL */
    const char *device_id; /* device backend: "major:minor" */
    const char *fs_type;   /* device backend, Filesystem mode: spec.local.fsType */
};

/* Returns 0 and the PV object (caller frees), -EINVAL for an incomplete spec, -ENOMEM. */
int pv_build(const struct pv_spec *s, cJSON **ret);

/*
 * A merge patch that points the PV's claimRef at another claim: namespace, name and uid set,
 * the old claim's resourceVersion cleared, and pv_rv as a precondition (a stale PV gets 409).
 * Returns 0 and the patch, -ENOMEM.
 */
int pv_build_rebind_patch(const char *pv_rv, const char *ns, const char *claim,
                          const char *claim_uid, cJSON **ret);

/* A merge patch that removes the selected-node annotation of a claim, at claim_rv. */
int pv_build_unselect_patch(const char *claim_rv, cJSON **ret);

#endif
