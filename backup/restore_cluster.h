/*
 * restore_cluster.h - "ordinal-backup restore" in cluster mode (with --kubeconfig, or in a pod
 * without --root): the StatefulSet is scaled to 0, its missing claims re-created, and every
 * volume restored by the agent of its node through a VolumeTask, ordinal by ordinal; then it is
 * scaled back. See restore_cluster.c and docs/internals/cluster-mode.md.
 */
#ifndef ORDINAL_RESTORE_CLUSTER_H
#define ORDINAL_RESTORE_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "names.h"

struct restore_cluster_args {
    const char *kubeconfig, *ns, *repo, *backup, *ordinals, *order;
    uint64_t task_timeout; /* seconds per volume */
    uint64_t unclaimed_s;  /* a progress line when no agent took a task after this long */
    /* --place-lost-on: a missing claim whose volume's node is gone is re-created on this node
     * (NULL: such a claim stops the restore) */
    const char *place_lost_on;
    /* --create: a missing StatefulSet (and its Service) is re-created from the backup with 0
     * replicas and scaled to its stored count after the restore */
    bool create;
    /* --to: restore into this StatefulSet (created from the backup's copy when missing)
     * instead of the backup's own; NULL: the backup's */
    const struct sts_ref *to;
    /* --accept-lost-attributes: each restore task carries spec.acceptLostAttributes */
    bool accept_lost_attributes;
    bool json;
};

/* Restores the backup of StatefulSet src (into a->to when given). Returns 0 when every
 * selected volume was restored and the StatefulSet scaled back, or a negative errno with e
 * saying what happened and what to do next. */
int restore_cluster(const struct restore_cluster_args *a, const struct sts_ref *src, ord_err *e);

#endif
