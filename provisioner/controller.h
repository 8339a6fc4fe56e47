/*
 * controller.h - the provisioner's control loop.
 *
 * Informers keep caches of PersistentVolumeClaims, PersistentVolumes, StorageClasses,
 * StatefulSets and this Node; their callbacks only queue keys ("c/<ns>/<claim>",
 * "v/<pv>"). Worker threads take keys from the queue (a key is never processed by two
 * workers at once) and reconcile the object against the node layout: provision a claim,
 * re-bind a retained volume, complete an interrupted create, reclaim a Released volume. All
 * state is in the API and on disk, so a restart rebuilds it; see docs/internals/provisioner.md
 * for the crash-safety argument.
 */
#ifndef ORDINAL_CONTROLLER_H
#define ORDINAL_CONTROLLER_H

#include <stdbool.h>

#include "err.h"
#include "kube_client.h"
#include "prov_config.h"

struct controller;

/*
 * Creates the controller (informers, queue, recorder) on client c (borrowed) and cfg
 * (borrowed; both must outlive it). Returns 0, -ENOMEM, -EINVAL (bad configuration, e says).
 */
int controller_new(struct kube_client *c, const struct prov_config *cfg, struct controller **ret,
                   ord_err *e);

/*
 * Starts the informers, waits for their first lists, repairs what a crash left on the node,
 * and starts the workers. Returns 0, or a negative errno (e says) when the caches cannot be
 * filled (e.g. the API server refuses our credentials).
 */
int controller_start(struct controller *ctl, ord_err *e);

/* True while every informer's cache is in sync with the API server (for --health-file). */
bool controller_healthy(struct controller *ctl);

struct prov_capacity;

/*
 * Calls fn for each directory-backend StorageClass of ours whose root exists on this node,
 * with the size, free bytes and promised bytes of the filesystem that holds the root (for the
 * metrics collector, prov_metrics.c). Safe from any thread; reads the caches and the ledger.
 */
void controller_capacity(struct controller *ctl, void (*fn)(const struct prov_capacity *, void *),
                         void *ud);

/* Stops workers and informers and frees everything. NULL is fine. */
void controller_free(struct controller *ctl);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct controller *, controller_free)

#endif
