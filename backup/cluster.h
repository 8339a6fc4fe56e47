/*
 * cluster.h - what the node agent (cmd_agent.c) and the coordinator (cmd_run.c) share: the
 * connection to the API server, the namespace the VolumeTasks live in, and timestamps in the
 * API's form. See docs/internals/cluster-mode.md.
 */
#ifndef ORDINAL_CLUSTER_H
#define ORDINAL_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_objects.h"
#include "err.h"
#include "kube_client.h"
#include "names.h"

/* Where the deployment (deploy/namespace.yaml) keeps the tasks outside a pod. */
#define CLUSTER_DEFAULT_NAMESPACE "ordinal-system"

/*
 * Connects with --kubeconfig (may be NULL: $KUBECONFIG, then in-cluster) and picks the tasks'
 * namespace: ns_opt when given, else the pod's own namespace in a cluster, else
 * CLUSTER_DEFAULT_NAMESPACE. Returns 0 with *ret and ret_ns filled, or a negative errno.
 */
int cluster_connect(const char *kubeconfig, const char *ns_opt, struct kube_client **ret,
                    char *ret_ns, size_t ns_size, ord_err *e);

/* Now as RFC 3339 UTC ("2026-11-23T14:00:00Z"). */
void cluster_now_rfc3339(char *buf, size_t size);

struct lock_info;

/*
 * The repository lock of a coordinator. In a pod of the tasks' namespace the operation is
 * marked "<base>-pod" (the lock's host is then the pod's name), so that a later coordinator
 * can judge the lock of one that was killed: cluster_lock_holder_gone() asks the API whether
 * that pod still runs. Elsewhere the operation is just base and only the same host judges it.
 */
struct cluster_lock_ctx {
    struct kube_client *client;
    const char *ns;
};
void cluster_lock_operation(struct kube_client *c, const char *ns, const char *base, char *buf,
                            size_t size);
/* lock_holder_gone_fn: true when the holder was a coordinator pod of ctx->ns that is gone. */
bool cluster_lock_holder_gone(const struct lock_info *holder, void *ctx);

/* "ordinal-backup CMD: MESSAGE" on stderr, flushed: the log of a CronJob or Job. */
void cluster_progress(const char *cmd, const char *fmt, ...) _printf_(2, 3);

/*
 * Creates the VolumeTask for one volume (backup or restore of backup `id`) and waits until the
 * agent of `node` finished it. name_tag makes the task's name unique per run: the backup ID for
 * a backup, the restore's start time for a restore. The task's name goes to ret_name. Returns 0
 * with *ret (phase Succeeded or Failed), or a negative errno: the task could not be created, was
 * deleted, or did not finish within timeout_s.
 */
int cluster_task_run(struct kube_client *c, const char *ns, bool restore, bool accept_lost,
                     const char *name_tag, const char *id, const struct sts_ref *sts,
                     int32_t ordinal, const char *tmpl, const char *pv, const char *node,
                     uint64_t timeout_s, char *ret_name, size_t name_size, struct vtask *ret,
                     ord_err *e);

/*
 * Deletes the VolumeTasks (of any StatefulSet) labelled for a node that has no Node object any
 * more: no agent will ever take them, and nobody else would delete them. One line on stderr
 * per task, as cmd says. Best effort: a failure is a warning. Called by the coordinator (run,
 * and restore in cluster mode) at its start, before it creates tasks of its own.
 */
void cluster_delete_tasks_of_gone_nodes(struct kube_client *c, const char *ns, const char *cmd);

/* After this long without an agent taking a task, the wait says so (once) on stderr. */
#define CLUSTER_UNCLAIMED_WARN_S 60

/* cluster_task_run() with the delay of that line: unclaimed_s seconds (0: never), and for a
 * restore the StatefulSet whose backup is read, src, when it is not sts (restore --to; NULL:
 * sts). */
int cluster_task_run_ex(struct kube_client *c, const char *ns, bool restore, bool accept_lost,
                        const struct sts_ref *src, const char *name_tag, const char *id,
                        const struct sts_ref *sts, int32_t ordinal, const char *tmpl,
                        const char *pv, const char *node, uint64_t timeout_s, uint64_t unclaimed_s,
                        char *ret_name, size_t name_size, struct vtask *ret, ord_err *e);

#endif
