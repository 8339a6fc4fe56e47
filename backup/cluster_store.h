/*
 * cluster_store.h - the Kubernetes objects a cluster backup stores beside its volumes, so that
 * a restore can bring back a StatefulSet that is gone (restore --create) or make a copy of it
 * under another name (restore --to): the StatefulSet and the Service named by its
 * spec.serviceName, as the API returned them, cleaned of status and of the fields the server
 * sets (metadata.uid, resourceVersion, creationTimestamp, generation, managedFields, selfLink,
 * deletionTimestamp; a Service's allocated clusterIP). Written by the coordinator (`run`)
 * before backup.json, which lists them ("objects", manifest.h). See
 * docs/internals/repository.md.
 */
#ifndef ORDINAL_CLUSTER_STORE_H
#define ORDINAL_CLUSTER_STORE_H

#include <cjson/cJSON.h>

#include "err.h"
#include "kube_client.h"
#include "manifest.h"
#include "names.h"
#include "repo.h"

#define CLUSTER_STORE_STS     "statefulset.json"
#define CLUSTER_STORE_SERVICE "service.json"
#define CLUSTER_STORE_MAX     (1u << 20) /* an object larger than this is refused */

/* Services are not in libordinal-common's table: only this module and the restore use them. */
extern const struct kube_res CLUSTER_RES_SERVICES;

/* Removes status and the server's fields from an object read from the API (see above). */
void cluster_store_clean(cJSON *obj);

/*
 * Reads the StatefulSet sts and its Service, cleans them and stores them under backup `id`
 * (statefulset.json, service.json), adding them to b->objects. A StatefulSet without
 * spec.serviceName, or whose Service does not exist, is stored alone (a warning says so).
 * Returns 0, or a negative errno with e.
 */
int cluster_store_objects(struct kube_client *c, struct repo *repo, const struct sts_ref *sts,
                          const char *id, struct backup_manifest *b, ord_err *e);

/*
 * The stored object of `kind` ("StatefulSet", "Service") of backup b, checked against its
 * SHA-256 in backup.json. Returns 0 and *ret (free with cJSON_Delete), -ENOENT when the backup
 * holds none, or another negative errno with e.
 */
int cluster_store_load(struct repo *repo, const struct backup_manifest *b, const char *kind,
                       cJSON **ret, ord_err *e);

#endif
