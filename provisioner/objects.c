/*
 * objects.c - decode edge: cJSON objects from the API into the structs of objects.h.
 *
 * Strings are copied (the cJSON tree is freed by the informer right after decode). A field of
 * the wrong type or over its bound refuses the whole object with -EINVAL/-ERANGE: the informer
 * leaves it out of the cache and says so, and a later version of the object may decode.
 */
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "json.h"
#include "objects.h"
#include "quantity.h"

/* Copies the string v (may be NULL or not a string: *ret = NULL). Returns 0, -EINVAL, -ERANGE,
 * -ENOMEM. */
static int dup_value(const cJSON *v, size_t max, char **ret)
{
    size_t len;

    *ret = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -EINVAL;
    len = strlen(v->valuestring);
    if (len > max)
        return -ERANGE;
    *ret = strndup(v->valuestring, len);
    return *ret ? 0 : -ENOMEM;
}

static int dup_path(const cJSON *obj, const char *path, size_t max, char **ret)
{
    return dup_value(json_path(obj, path), max, ret);
}

static int dup_ann(const cJSON *obj, const char *key, char **ret)
{
    return dup_value(json_pathv(obj, "metadata", "annotations", key, NULL), OBJ_STR_MAX, ret);
}

static int decode_reclaim(const char *s, enum reclaim_policy *ret)
{
    if (!s || streq(s, "Delete"))
        *ret = RECLAIM_DELETE;
    else if (streq(s, "Retain"))
        *ret = RECLAIM_RETAIN;
    else
        return -EINVAL; /* Recycle is deprecated and not something we do */
    return 0;
}

void obj_free_pvc(void *p)
{
    struct obj_pvc *c = p;

    if (!c)
        return;
    free(c->storage_class);
    free(c->volume_name);
    free(c->phase);
    free(c->provisioner);
    free(c->selected_node);
    free(c->request_text);
    free(c);
}

static unsigned decode_access_modes(const cJSON *arr)
{
    static const char *const names[] = {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                        "ReadWriteOncePod"};
    const cJSON *m;
    unsigned bits = 0;

    cJSON_ArrayForEach(m, arr)
    {
        if (!cJSON_IsString(m))
            continue;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
            if (streq(m->valuestring, names[i]))
                bits |= 1u << i;
    }
    return bits;
}

int obj_decode_pvc(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct obj_pvc *c = calloc(1, sizeof(*c));
    const char *mode;
    int r;

    if (!c)
        return -ENOMEM;
    if ((r = dup_path(obj, "spec.storageClassName", K8S_NAME_MAX, &c->storage_class)) < 0 ||
        (r = dup_path(obj, "spec.volumeName", K8S_NAME_MAX, &c->volume_name)) < 0 ||
        (r = dup_path(obj, "status.phase", 64, &c->phase)) < 0 ||
        (r = dup_ann(obj, ANN_STORAGE_PROVISIONER, &c->provisioner)) < 0 ||
        (r = dup_ann(obj, ANN_SELECTED_NODE, &c->selected_node)) < 0 ||
        (r = dup_path(obj, "spec.resources.requests.storage", QUANTITY_STR_MAX * 2,
                      &c->request_text)) < 0)
        goto fail;
    if (!c->provisioner && (r = dup_ann(obj, ANN_STORAGE_PROVISIONER_BETA, &c->provisioner)) < 0)
        goto fail;
    if (c->request_text && quantity_parse(c->request_text, &c->request, NULL) < 0)
        c->request_bad = true;
    c->access_modes = decode_access_modes(json_path(obj, "spec.accessModes"));
    mode = json_string(obj, "spec.volumeMode");
    c->block = mode && streq(mode, "Block");
    c->has_selector =
        json_path(obj, "spec.selector") && !cJSON_IsNull(json_path(obj, "spec.selector"));
    c->deleting = json_string(obj, "metadata.deletionTimestamp") != NULL;
    *ret = c;
    return 0;
fail:
    obj_free_pvc(c);
    return err_set(e, r, "cannot decode PersistentVolumeClaim '%s'",
                   json_string(obj, "metadata.name") ?: "?");
}

void obj_free_pv(void *p)
{
    struct obj_pv *v = p;

    if (!v)
        return;
    free(v->provisioned_by);
    free(v->ann_node);
    free(v->ann_ns);
    free(v->ann_sts);
    free(v->ann_tmpl);
    free(v->ann_claim);
    free(v->ann_root);
    free(v->ann_device);
    free(v->ann_device_id);
    free(v->fs_type);
    free(v->phase);
    free(v->storage_class);
    free(v->claim_ns);
    free(v->claim_name);
    free(v->claim_uid);
    free(v->path);
    free(v);
}

int obj_decode_pv(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct obj_pv *v = calloc(1, sizeof(*v));
    const cJSON *ord;
    const char *cap;
    int r;

    if (!v)
        return -ENOMEM;
    v->ann_ordinal = -1;
    if ((r = dup_ann(obj, ANN_PROVISIONED_BY, &v->provisioned_by)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_NODE, &v->ann_node)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_NAMESPACE, &v->ann_ns)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_STATEFULSET, &v->ann_sts)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_TEMPLATE, &v->ann_tmpl)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_CLAIM, &v->ann_claim)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_ROOT, &v->ann_root)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_DEVICE, &v->ann_device)) < 0 ||
        (r = dup_ann(obj, ANN_ORD_DEVICE_ID, &v->ann_device_id)) < 0 ||
        (r = dup_path(obj, "spec.local.fsType", 64, &v->fs_type)) < 0 ||
        (r = dup_path(obj, "status.phase", 64, &v->phase)) < 0 ||
        (r = dup_path(obj, "spec.storageClassName", K8S_NAME_MAX, &v->storage_class)) < 0 ||
        (r = dup_path(obj, "spec.claimRef.namespace", K8S_NAME_MAX, &v->claim_ns)) < 0 ||
        (r = dup_path(obj, "spec.claimRef.name", K8S_NAME_MAX, &v->claim_name)) < 0 ||
        (r = dup_path(obj, "spec.claimRef.uid", 128, &v->claim_uid)) < 0)
        goto fail;
    if (json_path(obj, "spec.hostPath.path"))
        r = dup_path(obj, "spec.hostPath.path", OBJ_STR_MAX, &v->path);
    else
        r = dup_path(obj, "spec.local.path", OBJ_STR_MAX, &v->path);
    if (r < 0)
        goto fail;
    ord = json_pathv(obj, "metadata", "annotations", ANN_ORD_ORDINAL, NULL);
    if (cJSON_IsString(ord) &&
        identity_parse_ordinal(ord->valuestring, strlen(ord->valuestring), &v->ann_ordinal) < 0)
        v->ann_ordinal = -1;
    if (decode_reclaim(json_string(obj, "spec.persistentVolumeReclaimPolicy"), &v->reclaim) < 0)
        v->reclaim = RECLAIM_RETAIN; /* unknown: the safe reading is "keep the data" */
    cap = json_string(obj, "spec.capacity.storage");
    if (cap && quantity_parse(cap, &v->capacity, NULL) < 0)
        v->capacity = 0;
    v->deleting = json_string(obj, "metadata.deletionTimestamp") != NULL;
    v->block =
        json_string(obj, "spec.volumeMode") && streq(json_string(obj, "spec.volumeMode"), "Block");
    v->access_modes = decode_access_modes(json_path(obj, "spec.accessModes"));
    *ret = v;
    return 0;
fail:
    obj_free_pv(v);
    return err_set(e, r, "cannot decode PersistentVolume '%s'",
                   json_string(obj, "metadata.name") ?: "?");
}

void obj_free_sc(void *p)
{
    struct obj_sc *s = p;

    if (!s)
        return;
    free(s->provisioner);
    for (size_t i = 0; i < s->n_params; i++) {
        free((char *)s->params[i].key);
        free((char *)s->params[i].value);
    }
    free(s->params);
    for (size_t i = 0; i < s->n_mount_options; i++)
        free(s->mount_options[i]);
    free(s->mount_options);
    free(s);
}

int obj_decode_sc(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct obj_sc *s = calloc(1, sizeof(*s));
    const cJSON *params, *it, *mopts;
    const char *mode;
    size_t n;
    int r;

    if (!s)
        return -ENOMEM;
    if ((r = dup_path(obj, "provisioner", K8S_NAME_MAX, &s->provisioner)) < 0)
        goto fail;
    if (decode_reclaim(json_string(obj, "reclaimPolicy"), &s->reclaim) < 0)
        s->reclaim = RECLAIM_RETAIN;
    mode = json_string(obj, "volumeBindingMode");
    s->wait_for_consumer = mode && streq(mode, "WaitForFirstConsumer");
    params = json_path(obj, "parameters");
    n = (size_t)cJSON_GetArraySize(params);
    if (n > OBJ_LIST_MAX) {
        r = -ERANGE;
        goto fail;
    }
    if (n) {
        s->params = calloc(n, sizeof(*s->params));
        if (!s->params) {
            r = -ENOMEM;
            goto fail;
        }
    }
    cJSON_ArrayForEach(it, params)
    {
        char *k, *v = NULL;

        if (!it->string || strlen(it->string) > OBJ_STR_MAX) {
            r = -ERANGE;
            goto fail;
        }
        k = strdup(it->string);
        if (!k || (r = dup_value(it, OBJ_STR_MAX, &v)) < 0) {
            free(k);
            r = k ? r : -ENOMEM;
            goto fail;
        }
        s->params[s->n_params].key = k;
        s->params[s->n_params].value = v ? v : strdup("");
        s->n_params++;
    }
    mopts = json_path(obj, "mountOptions");
    n = json_array_len(mopts);
    if (n > OBJ_LIST_MAX) {
        r = -ERANGE;
        goto fail;
    }
    if (n) {
        s->mount_options = calloc(n, sizeof(char *));
        if (!s->mount_options) {
            r = -ENOMEM;
            goto fail;
        }
    }
    cJSON_ArrayForEach(it, mopts)
    {
        if ((r = dup_value(it, OBJ_STR_MAX, &s->mount_options[s->n_mount_options])) < 0)
            goto fail;
        if (s->mount_options[s->n_mount_options])
            s->n_mount_options++;
    }
    *ret = s;
    return 0;
fail:
    obj_free_sc(s);
    return err_set(e, r, "cannot decode StorageClass '%s'",
                   json_string(obj, "metadata.name") ?: "?");
}

void obj_free_sts(void *p)
{
    struct obj_sts *s = p;

    if (!s)
        return;
    for (size_t i = 0; i < s->n_templates; i++)
        free(s->templates[i]);
    free(s->templates);
    free(s);
}

int obj_decode_sts(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct obj_sts *s = calloc(1, sizeof(*s));
    const cJSON *tmpls = json_path(obj, "spec.volumeClaimTemplates"), *t;
    size_t n = json_array_len(tmpls);
    int r = 0;

    if (!s)
        return -ENOMEM;
    if (n > OBJ_LIST_MAX) {
        r = -ERANGE;
        goto fail;
    }
    if (n && !(s->templates = calloc(n, sizeof(char *)))) {
        r = -ENOMEM;
        goto fail;
    }
    cJSON_ArrayForEach(t, tmpls)
    {
        if ((r = dup_path(t, "metadata.name", K8S_NAME_MAX, &s->templates[s->n_templates])) < 0)
            goto fail;
        if (s->templates[s->n_templates])
            s->n_templates++;
    }
    *ret = s;
    return 0;
fail:
    obj_free_sts(s);
    return err_set(e, r, "cannot decode StatefulSet '%s'",
                   json_string(obj, "metadata.name") ?: "?");
}

void obj_free_node(void *p)
{
    struct obj_node *n = p;

    if (!n)
        return;
    free(n->hostname);
    free(n);
}

int obj_decode_node(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct obj_node *n = calloc(1, sizeof(*n));
    int r;

    if (!n)
        return -ENOMEM;
    r = dup_value(json_pathv(obj, "metadata", "labels", LABEL_HOSTNAME, NULL), K8S_NAME_MAX,
                  &n->hostname);
    if (r < 0) {
        obj_free_node(n);
        return err_set(e, r, "cannot decode Node '%s'", json_string(obj, "metadata.name") ?: "?");
    }
    *ret = n;
    return 0;
}

bool obj_pv_is_ours(const struct obj_pv *pv, const char *provisioner, const char *node)
{
    return pv->provisioned_by && streq(pv->provisioned_by, provisioner) && pv->ann_node &&
           streq(pv->ann_node, node);
}
