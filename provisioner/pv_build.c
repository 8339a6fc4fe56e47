/*
 * pv_build.c - the PersistentVolume object (see pv_build.h).
 *
 * Choices recorded here because the PV outlives this process:
 * - hostPath.type is "Directory", not "DirectoryOrCreate": the provisioner creates the
 *   directory before the PV exists and renames it into place right after, so the path is
 *   there whenever the PV is usable. If it is not (a crash between the PV and the rename, a
 *   person removed it), kubelet must fail the mount and retry rather than silently create an
 *   empty directory at the path and run the database on it; the provisioner's restart repairs
 *   the rename and the retry then succeeds.
 * - nodeAffinity uses the Node's kubernetes.io/hostname label value, which the scheduler
 *   matches, and which may differ from the Node's name.
 * - No finalizer: see docs/internals/provisioner.md ("Why no PV finalizer").
 */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "objects.h"
#include "pv_build.h"
#include "quantity.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) < 0)                                                                               \
            return -ENOMEM;                                                                        \
    } while (0)

static int add_annotations(cJSON *meta, const struct pv_spec *s)
{
    cJSON *ann = json_ensure_object(meta, "annotations");
    char ord[16];

    if (!ann)
        return -ENOMEM;
    CHECK(json_set_string(ann, ANN_PROVISIONED_BY, s->provisioner));
    CHECK(json_set_string(ann, ANN_ORD_NODE, s->node_name));
    CHECK(json_set_string(ann, ANN_ORD_NAMESPACE, s->id->ns));
    CHECK(json_set_string(ann, ANN_ORD_ROOT, s->root));
    if (s->device) {
        CHECK(json_set_string(ann, ANN_ORD_DEVICE, s->device));
        CHECK(json_set_string(ann, ANN_ORD_DEVICE_ID, s->device_id ? s->device_id : ""));
    }
    if (s->id->is_sts) {
        snprintf(ord, sizeof(ord), "%d", (int)s->id->ordinal);
        CHECK(json_set_string(ann, ANN_ORD_STATEFULSET, s->id->sts));
        CHECK(json_set_string(ann, ANN_ORD_ORDINAL, ord));
        CHECK(json_set_string(ann, ANN_ORD_TEMPLATE, s->id->tmpl));
    } else {
        CHECK(json_set_string(ann, ANN_ORD_CLAIM, s->id->claim));
    }
    return 0;
}

static int add_access_modes(cJSON *spec, unsigned modes)
{
    static const char *const names[] = {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                        "ReadWriteOncePod"};
    cJSON *arr = cJSON_CreateArray();

    if (!arr)
        return -ENOMEM;
    if (modes == 0)
        modes = ACCESS_RWO; /* the API requires one; a claim without any is refused earlier */
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (modes & (1u << i))
            if (!cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]))) {
                cJSON_Delete(arr);
                return -ENOMEM;
            }
    return json_set_item(spec, "accessModes", arr);
}

static int add_node_affinity(cJSON *spec, const char *hostname)
{
    cJSON *na = json_ensure_object(spec, "nodeAffinity");
    cJSON *req = na ? json_ensure_object(na, "required") : NULL;
    cJSON *terms = cJSON_CreateArray(), *term = cJSON_CreateObject(), *exprs = cJSON_CreateArray(),
          *expr = cJSON_CreateObject(), *values = cJSON_CreateArray();

    if (!req || !terms || !term || !exprs || !expr || !values)
        goto oom;
    if (json_set_string(expr, "key", LABEL_HOSTNAME) < 0 ||
        json_set_string(expr, "operator", "In") < 0 ||
        !cJSON_AddItemToArray(values, cJSON_CreateString(hostname)))
        goto oom;
    cJSON_AddItemToObject(expr, "values", values);
    values = NULL;
    cJSON_AddItemToArray(exprs, expr);
    expr = NULL;
    cJSON_AddItemToObject(term, "matchExpressions", exprs);
    exprs = NULL;
    cJSON_AddItemToArray(terms, term);
    term = NULL;
    return json_set_item(req, "nodeSelectorTerms", terms);
oom:
    cJSON_Delete(terms);
    cJSON_Delete(term);
    cJSON_Delete(exprs);
    cJSON_Delete(expr);
    cJSON_Delete(values);
    return -ENOMEM;
}

int pv_build(const struct pv_spec *s, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *pv = cJSON_CreateObject();
    cJSON *meta, *spec, *cap, *ref, *src, *mo;
    char qty[QUANTITY_STR_MAX];
    int r;

    if (!s->name || !s->provisioner || !s->node_name || !s->hostname || !s->id || !s->root ||
        !s->path || !s->claim_uid)
        return -EINVAL;
    if (!pv)
        return -ENOMEM;
    CHECK(json_set_string(pv, "apiVersion", "v1"));
    CHECK(json_set_string(pv, "kind", "PersistentVolume"));
    if (!(meta = json_ensure_object(pv, "metadata")) || !(spec = json_ensure_object(pv, "spec")))
        return -ENOMEM;
    CHECK(json_set_string(meta, "name", s->name));
    if ((r = add_annotations(meta, s)) < 0)
        return r;

    if (!(cap = json_ensure_object(spec, "capacity")))
        return -ENOMEM;
    CHECK(json_set_string(cap, "storage", quantity_format(s->capacity, qty)));
    if ((r = add_access_modes(spec, s->access_modes)) < 0)
        return r;
    CHECK(json_set_string(spec, "volumeMode", s->block ? "Block" : "Filesystem"));
    CHECK(json_set_string(spec, "persistentVolumeReclaimPolicy", reclaim_policy_name(s->reclaim)));
    if (s->storage_class)
        CHECK(json_set_string(spec, "storageClassName", s->storage_class));
    if (s->n_mount_options) {
        if (!(mo = cJSON_CreateArray()))
            return -ENOMEM;
        for (size_t i = 0; i < s->n_mount_options; i++)
            cJSON_AddItemToArray(mo, cJSON_CreateString(s->mount_options[i]));
        CHECK(json_set_item(spec, "mountOptions", mo));
    }

    /* The claimRef pre-binds the PV: the PV controller completes the bind on both sides. */
    if (!(ref = json_ensure_object(spec, "claimRef")))
        return -ENOMEM;
    CHECK(json_set_string(ref, "kind", "PersistentVolumeClaim"));
    CHECK(json_set_string(ref, "apiVersion", "v1"));
    CHECK(json_set_string(ref, "namespace", s->id->ns));
    CHECK(json_set_string(ref, "name", s->id->claim));
    CHECK(json_set_string(ref, "uid", s->claim_uid));
    if (s->claim_rv)
        CHECK(json_set_string(ref, "resourceVersion", s->claim_rv));

    if (s->pv_type == PV_TYPE_LOCAL) {
        if (!(src = json_ensure_object(spec, "local")))
            return -ENOMEM;
        CHECK(json_set_string(src, "path", s->path));
        /* kubelet formats a device volume with fsType on first use (Filesystem mode). */
        if (s->device && !s->block && s->fs_type)
            CHECK(json_set_string(src, "fsType", s->fs_type));
    } else {
        if (!(src = json_ensure_object(spec, "hostPath")))
            return -ENOMEM;
        CHECK(json_set_string(src, "path", s->path));
        CHECK(json_set_string(src, "type", "Directory"));
    }
    if ((r = add_node_affinity(spec, s->hostname)) < 0)
        return r;
    *ret = TAKE_PTR(pv);
    return 0;
}

int pv_build_rebind_patch(const char *pv_rv, const char *ns, const char *claim,
                          const char *claim_uid, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject();
    cJSON *meta, *spec, *ref;

    if (!p || !(meta = json_ensure_object(p, "metadata")) ||
        !(spec = json_ensure_object(p, "spec")) || !(ref = json_ensure_object(spec, "claimRef")))
        return -ENOMEM;
    if (pv_rv)
        CHECK(json_set_string(meta, "resourceVersion", pv_rv));
    CHECK(json_set_string(ref, "kind", "PersistentVolumeClaim"));
    CHECK(json_set_string(ref, "apiVersion", "v1"));
    CHECK(json_set_string(ref, "namespace", ns));
    CHECK(json_set_string(ref, "name", claim));
    CHECK(json_set_string(ref, "uid", claim_uid));
    CHECK(json_set_null(ref, "resourceVersion"));
    *ret = TAKE_PTR(p);
    return 0;
}

int pv_build_unselect_patch(const char *claim_rv, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject();
    cJSON *meta, *ann;

    if (!p || !(meta = json_ensure_object(p, "metadata")) ||
        !(ann = json_ensure_object(meta, "annotations")))
        return -ENOMEM;
    if (claim_rv)
        CHECK(json_set_string(meta, "resourceVersion", claim_rv));
    CHECK(json_set_null(ann, ANN_SELECTED_NODE));
    *ret = TAKE_PTR(p);
    return 0;
}
