/*
 * objects.h - the Kubernetes objects the provisioner reads, as typed structs.
 *
 * This is the provisioner's one decode edge: informers call the obj_decode_* functions on
 * every object they receive and cache only the struct, so no cJSON tree reaches the controller
 * and the cache of 1,000 PVs stays small. Every string is bounded (names by K8S_NAME_MAX,
 * everything else by OBJ_STR_MAX); an object that does not fit is refused, not truncated.
 * Fields the provisioner does not read are not kept.
 */
#ifndef ORDINAL_OBJECTS_H
#define ORDINAL_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "class_params.h"
#include "err.h"

#define OBJ_STR_MAX  4096
#define OBJ_LIST_MAX 64

#define ANN_STORAGE_PROVISIONER      "volume.kubernetes.io/storage-provisioner"
#define ANN_STORAGE_PROVISIONER_BETA "volume.beta.kubernetes.io/storage-provisioner"
#define ANN_SELECTED_NODE            "volume.kubernetes.io/selected-node"
#define ANN_PROVISIONED_BY           "pv.kubernetes.io/provisioned-by"
#define ANN_ORD_NODE                 "ordinal.dev/node"
#define ANN_ORD_NAMESPACE            "ordinal.dev/namespace"
#define ANN_ORD_STATEFULSET          "ordinal.dev/statefulset"
#define ANN_ORD_ORDINAL              "ordinal.dev/ordinal"
#define ANN_ORD_TEMPLATE             "ordinal.dev/template"
#define ANN_ORD_CLAIM                "ordinal.dev/claim"
#define ANN_ORD_ROOT                 "ordinal.dev/root"
#define ANN_ORD_DEVICE               "ordinal.dev/device"    /* device backend: stable path */
#define ANN_ORD_DEVICE_ID            "ordinal.dev/device-id" /* device backend: major:minor */
#define LABEL_HOSTNAME               "kubernetes.io/hostname"

/* Access modes as a bit set, in the API's order. */
enum {
    ACCESS_RWO = 1 << 0,  /* ReadWriteOnce */
    ACCESS_ROX = 1 << 1,  /* ReadOnlyMany */
    ACCESS_RWX = 1 << 2,  /* ReadWriteMany */
    ACCESS_RWOP = 1 << 3, /* ReadWriteOncePod */
};

struct obj_pvc {
    char *storage_class;   /* spec.storageClassName, NULL when unset */
    char *volume_name;     /* spec.volumeName, NULL when unset */
    char *phase;           /* status.phase, NULL when unset */
    char *provisioner;     /* storage-provisioner annotation (GA, else beta), or NULL */
    char *selected_node;   /* selected-node annotation, or NULL */
    char *request_text;    /* spec.resources.requests.storage as written, or NULL */
    uint64_t request;      /* in bytes, 0 when absent */
    bool request_bad;      /* present but not a valid quantity */
    unsigned access_modes; /* ACCESS_* bits */
    bool block;            /* volumeMode: Block */
    bool has_selector;     /* spec.selector set */
    bool deleting;         /* deletionTimestamp set */
};

struct obj_pv {
    char *provisioned_by;
    char *ann_node, *ann_ns, *ann_sts, *ann_tmpl, *ann_claim, *ann_root;
    int32_t ann_ordinal; /* -1 when absent or invalid */
    char *phase;
    enum reclaim_policy reclaim;
    char *storage_class;
    char *claim_ns, *claim_name, *claim_uid; /* spec.claimRef, NULLs when unset */
    uint64_t capacity;
    char *path; /* spec.hostPath.path or spec.local.path */
    bool deleting;
    char *ann_device, *ann_device_id; /* device backend, NULL otherwise */
    char *fs_type;                    /* spec.local.fsType, or NULL */
    bool block;                       /* spec.volumeMode: Block */
    unsigned access_modes;            /* ACCESS_* bits of spec.accessModes */
};

struct obj_sc {
    char *provisioner;
    enum reclaim_policy reclaim;
    bool wait_for_consumer;  /* volumeBindingMode: WaitForFirstConsumer */
    struct class_kv *params; /* keys and values owned by the struct */
    size_t n_params;
    char **mount_options;
    size_t n_mount_options;
};

struct obj_sts {
    char **templates; /* volumeClaimTemplates[].metadata.name */
    size_t n_templates;
};

struct obj_node {
    char *hostname; /* label kubernetes.io/hostname, NULL when absent */
};

/* Decoders with the informer's decode signature; ret is the struct, freed by the free_*. */
int obj_decode_pvc(const cJSON *obj, void **ret, ord_err *e, void *userdata);
int obj_decode_pv(const cJSON *obj, void **ret, ord_err *e, void *userdata);
int obj_decode_sc(const cJSON *obj, void **ret, ord_err *e, void *userdata);
int obj_decode_sts(const cJSON *obj, void **ret, ord_err *e, void *userdata);
int obj_decode_node(const cJSON *obj, void **ret, ord_err *e, void *userdata);
void obj_free_pvc(void *p);
void obj_free_pv(void *p);
void obj_free_sc(void *p);
void obj_free_sts(void *p);
void obj_free_node(void *p);

/* Whether PV is ours: provisioned by `name` and made on node `node`. */
bool obj_pv_is_ours(const struct obj_pv *pv, const char *provisioner, const char *node);

#endif
