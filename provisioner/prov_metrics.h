/*
 * prov_metrics.h - the provisioner's metrics (docs/operations.md, "Metrics and alerts").
 *
 * The controller calls these hooks where outcomes are decided; they are no-ops until
 * prov_metrics_init() ran (the provisioner was started with --metrics-address), so the
 * controller does not need to know whether anyone scrapes it. Process-wide state: there is one
 * controller per process.
 */
#ifndef ORDINAL_PROV_METRICS_H
#define ORDINAL_PROV_METRICS_H

#include <stdint.h>

#include "metrics.h"

struct controller;

/*
 * Registers the provisioner's families in m (borrowed, must outlive every hook call) and a
 * collector that reads capacity from ctl at scrape time. Returns 0 or a negative errno.
 */
int prov_metrics_init(struct metrics *m, struct controller *ctl, const char *node);

/* A provisioning attempt ended: result "success" or "failure", reason from a fixed set. */
void prov_metrics_provision(const char *storageclass, const char *result, const char *reason);

/* The same for a failure that carries a negative errno (reason from metrics_errno_reason). */
void prov_metrics_provision_failed(const char *storageclass, int code);

/* A Released volume's reclaim ended (reason "deleted", or the errno's reason). */
void prov_metrics_delete(const char *storageclass, int code);

/*
 * The claim of uid names this node in selected-node (first call counts: later ones keep the
 * first time), and its PV was created (observes the latency since, and forgets the claim),
 * or the claim was deleted. Not forgotten when it is bound: the PV controller may bind it
 * before the worker that created the PV gets the API server's answer.
 */
void prov_metrics_claim_selected(const char *uid);
void prov_metrics_claim_created(const char *uid, const char *storageclass);
void prov_metrics_claim_forget(const char *uid);

/* What the capacity collector gets from the controller, per StorageClass of ours. */
struct prov_capacity {
    const char *storageclass;
    uint64_t capacity, promised, free; /* bytes of the filesystem that holds its root */
};

#endif
