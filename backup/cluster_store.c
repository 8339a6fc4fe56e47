/*
 * cluster_store.c - see cluster_store.h.
 *
 * The objects are stored as JSON text, pretty-printed so that a person can read them in the
 * repository (and re-create them by hand with `kubectl create -f`), each with its SHA-256 in
 * backup.json: a restore that re-creates a StatefulSet from a damaged object would start the
 * wrong workload, so a mismatch refuses it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cluster.h"
#include "cluster_store.h"
#include "json.h"
#include "s3_sign.h"

const struct kube_res CLUSTER_RES_SERVICES = {"", "v1", "services", true};

void cluster_store_clean(cJSON *obj)
{
    static const char *const server_fields[] = {
        "uid",           "resourceVersion", "creationTimestamp", "generation",
        "managedFields", "selfLink",        "deletionTimestamp", "deletionGracePeriodSeconds",
    };
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    const char *ip;

    for (size_t i = 0; meta && i < ARRAY_SIZE(server_fields); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(meta, server_fields[i]);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    /* A Service's cluster IP is allocated by the server from this cluster's range: only the
     * headless "None" is part of what the user asked for. */
    ip = json_string(obj, "spec.clusterIP");
    if (spec && streq(json_string(obj, "kind") ? json_string(obj, "kind") : "", "Service") &&
        !(ip && streq(ip, "None"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "clusterIP");
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "clusterIPs");
    }
}

/* Stores obj (cleaned here) as `name` of the backup and appends it to b->objects. */
static int store_one(struct repo *repo, const struct sts_ref *sts, const char *id, cJSON *obj,
                     const char *kind, const char *name, struct backup_manifest *b, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1], dir[REPO_KEY_MAX + 1];
    struct backup_object *bo;
    size_t len;
    int r;

    if (b->n_objects >= BACKUP_OBJECTS_MAX)
        return err_set(e, -E2BIG, "too many objects in one backup");
    if (!json_string(obj, "apiVersion"))
        json_set_string(obj, "apiVersion", streq(kind, "Service") ? "v1" : "apps/v1");
    if (!json_string(obj, "kind"))
        json_set_string(obj, "kind", kind);
    cluster_store_clean(obj);
    text = cJSON_Print(obj);
    if (!text)
        return err_set(e, -ENOMEM, "out of memory");
    len = strlen(text);
    if (len > CLUSTER_STORE_MAX)
        return err_set(e, -EFBIG, "the %s is larger than %u bytes", kind, CLUSTER_STORE_MAX);
    if (repo_key_backup_dir(dir, sizeof(dir), sts->ns, sts->name, id) < 0 ||
        snprintf(key, sizeof(key), "%s/%s", dir, name) >= (int)sizeof(key))
        return err_set(e, -ENAMETOOLONG, "the key of %s is too long", name);
    r = repo_put_small(repo, key, text, len, e);
    if (r < 0)
        return err_wrap(e, r, "storing the %s", kind);
    bo = &b->objects[b->n_objects++];
    snprintf(bo->kind, sizeof(bo->kind), "%s", kind);
    snprintf(bo->object, sizeof(bo->object), "%s", name);
    s3_sha256_hex(text, len, bo->sha256);
    return 0;
}

int cluster_store_objects(struct kube_client *c, struct repo *repo, const struct sts_ref *sts,
                          const char *id, struct backup_manifest *b, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *svc = NULL;
    char svc_name[NAMES_SUBDOMAIN_MAX + 1] = "";
    const char *s;
    int r;

    r = kube_get(c, &KUBE_RES_STATEFULSETS, sts->ns, sts->name, &obj, e);
    if (r < 0)
        return err_wrap(e, r, "cannot read StatefulSet %s/%s to store it with the backup", sts->ns,
                        sts->name);
    s = json_string(obj, "spec.serviceName");
    if (s && names_dns_label(s))
        snprintf(svc_name, sizeof(svc_name), "%s", s);
    r = store_one(repo, sts, id, obj, "StatefulSet", CLUSTER_STORE_STS, b, e);
    if (r < 0)
        return r;
    if (!svc_name[0])
        return 0;
    r = kube_get(c, &CLUSTER_RES_SERVICES, sts->ns, svc_name, &svc, e);
    if (r == KUBE_E_NOT_FOUND) {
        err_clear(e);
        cli_warn("run",
                 "the Service '%s' of StatefulSet %s/%s (spec.serviceName) does not exist; the "
                 "backup stores the StatefulSet without it",
                 svc_name, sts->ns, sts->name);
        return 0;
    }
    if (r < 0)
        return err_wrap(e, r, "cannot read Service %s/%s to store it with the backup", sts->ns,
                        svc_name);
    return store_one(repo, sts, id, svc, "Service", CLUSTER_STORE_SERVICE, b, e);
}

int cluster_store_load(struct repo *repo, const struct backup_manifest *b, const char *kind,
                       cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1], dir[REPO_KEY_MAX + 1], sum[S3_SHA256_HEX_LEN + 1];
    const struct backup_object *bo = NULL;
    cJSON *obj = NULL;
    size_t len;
    int r;

    for (size_t i = 0; i < b->n_objects && !bo; i++)
        if (streq(b->objects[i].kind, kind))
            bo = &b->objects[i];
    if (!bo)
        return -ENOENT;
    if (repo_key_backup_dir(dir, sizeof(dir), b->sts.ns, b->sts.name, b->id) < 0 ||
        snprintf(key, sizeof(key), "%s/%s", dir, bo->object) >= (int)sizeof(key))
        return err_set(e, -ENAMETOOLONG, "the key of %s is too long", bo->object);
    r = repo_get_small(repo, key, CLUSTER_STORE_MAX, &text, &len, e);
    if (r < 0)
        return err_wrap(e, r, "reading the %s stored with backup %s", kind, b->id);
    s3_sha256_hex(text, len, sum);
    if (!streq(sum, bo->sha256))
        return err_set(e, -EBADMSG,
                       "the %s stored with backup %s (%s) does not match its SHA-256 in "
                       "backup.json: it is damaged",
                       kind, b->id, bo->object);
    r = json_parse(text, len, &obj, e);
    if (r < 0)
        return err_wrap(e, r, "the %s stored with backup %s", kind, b->id);
    if (!cJSON_IsObject(obj) || !json_string(obj, "kind") ||
        !streq(json_string(obj, "kind"), kind)) {
        cJSON_Delete(obj);
        return err_set(e, -EBADMSG, "the object %s of backup %s is not a %s", bo->object, b->id,
                       kind);
    }
    *ret = obj;
    return 0;
}
