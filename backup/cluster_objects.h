/*
 * cluster_objects.h - the Kubernetes objects cluster mode reads and writes, as typed structs:
 * VolumeTask (ordinal.dev/v1alpha1, deploy/crd-volumetask.yaml), PersistentVolume,
 * PersistentVolumeClaim and StatefulSet, plus the restore record (ConfigMap ordinal-restores)
 * and the Event a failed cluster restore posts. This is the one decode edge of the node agent
 * (cmd_agent.c) and the coordinator (cmd_run.c, restore_cluster.c): no cJSON tree goes
 * further. Every string is
 * bounded; a task whose spec does not fit is still decoded, with `invalid` saying why, so that
 * the agent can fail it with that message rather than leave it Pending for ever.
 */
#ifndef ORDINAL_CLUSTER_OBJECTS_H
#define ORDINAL_CLUSTER_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "id.h"
#include "manifest.h"
#include "names.h"

#define COBJ_NAME_MAX      253
#define COBJ_PATH_MAX      4096
#define COBJ_MESSAGE_MAX   1024
#define COBJ_TEMPLATES_MAX 64

#define COBJ_LABEL_NODE    "ordinal.dev/node"
#define COBJ_LABEL_PART_OF "app.kubernetes.io/part-of"
#define COBJ_ANN_NODE      "ordinal.dev/node"
#define COBJ_ANN_NAMESPACE "ordinal.dev/namespace"
#define COBJ_ANN_STS       "ordinal.dev/statefulset"
#define COBJ_ANN_ORDINAL   "ordinal.dev/ordinal"
#define COBJ_ANN_TEMPLATE  "ordinal.dev/template"

enum vtask_phase {
    VTASK_NEW = 0, /* no status yet: Pending */
    VTASK_PENDING,
    VTASK_RUNNING,
    VTASK_SUCCEEDED,
    VTASK_FAILED,
};

const char *vtask_phase_name(enum vtask_phase p);

/* The result of a task: the volume's entry of the backup (status.result). */
struct vtask_result {
    enum volume_kind kind;
    uint64_t bytes_in, bytes_stored, files;
    char sha256[ENGINE_SHA256_HEX];
    double seconds;
    uint64_t lost[ENGINE_LOST_KINDS]; /* restore: entries without each kind (lostAttributes) */
};

struct vtask {
    char name[COBJ_NAME_MAX + 1];
    char uid[64];
    char rv[128];     /* metadata.resourceVersion */
    char created[32]; /* metadata.creationTimestamp, RFC 3339 */
    bool deleting;
    /* spec */
    bool restore; /* action: restore (else backup) */
    char backup_id[ID_MAX];
    struct sts_ref sts;
    struct sts_ref source; /* restore: spec.sourceStatefulset, the backup's; else = sts */
    int32_t ordinal;
    char template_name[NAMES_SUBDOMAIN_MAX + 1];
    char pv[COBJ_NAME_MAX + 1];
    char node[COBJ_NAME_MAX + 1];
    bool accept_lost_attributes; /* restore: swap in even if attributes could not be restored */
    char invalid[256];           /* "" when the spec is usable, else why not */
    /* status */
    enum vtask_phase phase;
    char message[COBJ_MESSAGE_MAX];
    uint64_t progress;
    char completion[32]; /* status.completionTime, "" when unset */
    bool has_result;
    struct vtask_result result;
};

/* Informer decode/free pair for VolumeTasks (struct vtask). */
int cobj_decode_vtask(const cJSON *obj, void **ret, ord_err *e, void *userdata);
void cobj_free_vtask(void *p);
/* The same into a caller's struct. Returns 0 or -EINVAL/-ERANGE for an unusable metadata. */
int cobj_vtask_from_json(const cJSON *obj, struct vtask *ret, ord_err *e);

struct cobj_pv {
    char name[COBJ_NAME_MAX + 1];
    char node[COBJ_NAME_MAX + 1]; /* annotation ordinal.dev/node, "" when absent */
    char ann_ns[NAMES_LABEL_MAX + 1], ann_sts[NAMES_SUBDOMAIN_MAX + 1];
    char ann_template[NAMES_SUBDOMAIN_MAX + 1];
    int32_t ann_ordinal;      /* -1 when absent or invalid */
    char path[COBJ_PATH_MAX]; /* spec.hostPath.path or spec.local.path, "" when neither */
    char claim_ns[NAMES_LABEL_MAX + 1], claim_name[COBJ_NAME_MAX + 1];
    char phase[32];
};
int cobj_pv_from_json(const cJSON *obj, struct cobj_pv *ret, ord_err *e);

struct cobj_pvc {
    char volume_name[COBJ_NAME_MAX + 1]; /* "" when unbound */
    char phase[32];
};
int cobj_pvc_from_json(const cJSON *obj, struct cobj_pvc *ret, ord_err *e);

/*
 * Where a cluster restore records the replica count to scale back to: one key per StatefulSet,
 * "<namespace>.<name>" (a namespace has no dot, so the key is unambiguous), value the count in
 * decimal, in the ConfigMap COBJ_RESTORE_RECORD of the tasks' namespace (deploy/
 * restore-record.yaml). The key exists while a restore holds the StatefulSet at 0.
 */
#define COBJ_RESTORE_RECORD "ordinal-restores"
/* Where versions before the ConfigMap kept it: an annotation on the StatefulSet. Still read
 * (a restore interrupted by an older version resumes), never written. */
#define COBJ_ANN_RESTORE_REPLICAS "ordinal.dev/restore-replicas"

struct cobj_sts {
    char uid[64];
    int32_t replicas;
    int32_t restore_replicas; /* legacy annotation COBJ_ANN_RESTORE_REPLICAS, -1 when absent */
    size_t n_templates;
    char templates[COBJ_TEMPLATES_MAX][NAMES_SUBDOMAIN_MAX + 1];
};
int cobj_sts_from_json(const cJSON *obj, struct cobj_sts *ret, ord_err *e);

/* The record's key of sts ("<ns>.<name>") into buf (size >= NAMES_LABEL_MAX +
 * NAMES_SUBDOMAIN_MAX + 2). */
void cobj_restore_record_key(const struct sts_ref *sts, char *buf, size_t size);

/*
 * The replica count recorded under key in the ConfigMap cm (may be NULL: none). Returns 0 and
 * *ret, -ENOENT when there is no such key, -EINVAL when its value is not a count.
 */
int cobj_restore_record_get(const cJSON *cm, const char *key, int32_t *ret);

/*
 * A core/v1 Event about the object (kind, apiVersion, ns, name, uid) in namespace ns, named
 * "<name>.<hex nanoseconds>" as client-go names them, with reason, message (cut at
 * COBJ_MESSAGE_MAX bytes), type Warning or Normal, and component as source and reporting
 * component. Returns 0 and *ret, or -ENOMEM.
 */
int cobj_event_build(const char *kind, const char *api_version, const char *ns, const char *name,
                     const char *uid, bool warning, const char *reason, const char *message,
                     const char *component, cJSON **ret);

/* The number of items of a List of pods, and the phase of the first in phase ("" if none). */
size_t cobj_pod_list_phase(const cJSON *list, char *phase, size_t size);

/* How many pods of a List of pods are named "<sts>-<ordinal>" (the StatefulSet's). */
size_t cobj_count_sts_pods(const cJSON *list, const char *sts);

/*
 * The claim "<template>-<sts>-<ordinal>" as the StatefulSet controller would make it from the
 * volumeClaimTemplate `tmpl` of the StatefulSet object sts_obj (its spec and labels, plus the
 * selector's matchLabels), with volume.kubernetes.io/selected-node = node so that node's
 * provisioner binds it. Returns 0 and *ret, -ENOENT (no such template), or -ENOMEM.
 */
int cobj_claim_from_template(const cJSON *sts_obj, const char *tmpl, const char *claim,
                             const char *ns, const char *node, cJSON **ret);

/*
 * The VolumeTask the coordinator creates (name, namespace, node label, spec).
 * accept_lost (restore only) sets spec.acceptLostAttributes: the agent swaps the restored
 * volume in even when attributes could not be restored as stored (ordinal-backup restore
 * --accept-lost-attributes). Returns 0 and *ret, or -ENOMEM.
 */
int cobj_vtask_build(const char *name, const char *ns, bool restore, bool accept_lost,
                     const char *backup_id, const struct sts_ref *sts, int32_t ordinal,
                     const char *tmpl, const char *pv, const char *node, cJSON **ret);

/* Sets spec.sourceStatefulset of a restore task built by cobj_vtask_build (restore --to).
 * Returns 0 or -ENOMEM. */
int cobj_vtask_set_source(cJSON *task, const struct sts_ref *source);

/*
 * A merge patch of status: phase, message (may be NULL: unchanged), progressBytes,
 * startTime/completionTime (NULL: unchanged) and result (NULL: unchanged). Returns 0 or -ENOMEM.
 */
int cobj_vtask_status_patch(enum vtask_phase phase, const char *message, uint64_t progress,
                            const char *start_time, const char *completion_time,
                            const struct vtask_result *result, cJSON **ret);

#endif
