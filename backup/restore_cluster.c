/*
 * restore_cluster.c - cluster restore (see restore_cluster.h).
 *
 * Order of steps, chosen so that a failure at any point leaves something a person can resume:
 *   1. Check everything that can be checked without changing anything: the StatefulSet, the
 *      backup (complete, manifests agree), the ordinals. A refusal here changes nothing.
 *   2. Record the replica count in the StatefulSet's annotation ordinal.dev/restore-replicas
 *      (only if it is not there yet: a second run after a failure finds the count of the
 *      first, not the 0 the first left behind), then scale to 0 and wait for its pods to go.
 *   3. Per volume, in the chosen order (ordinal by default): re-create the claim
 *      "<template>-<sts>-<ordinal>" from the template when it is missing, with selected-node =
 *      the node the volume was backed up from (it must still exist), wait for it to be Bound,
 *      then hand a restore VolumeTask to the agent of the PV's node and wait for it.
 *   4. Scale back to the recorded count and remove the annotation.
 * On failure after step 2 the StatefulSet stays at 0 (nothing runs on a half-restored set) and
 * the message says how to resume (run the same command again) or give up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "cli.h"
#include "cluster.h"
#include "cluster_objects.h"
#include "id.h"
#include "json.h"
#include "lock.h"
#include "manifest.h"
#include "repo.h"
#include "restore_cluster.h"

#define POLL_MS         300
#define PODS_TIMEOUT_S  300
#define BOUND_TIMEOUT_S 300

struct rc {
    const struct restore_cluster_args *a;
    const struct sts_ref *sts;
    struct kube_client *c;
    char ns[NAMES_LABEL_MAX + 1];
};

static void nap(void)
{
    struct timespec ts = {0, POLL_MS * 1000000L};

    nanosleep(&ts, NULL);
}

static int patch_sts(struct rc *rc, const char *sub, cJSON *p, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *patch = p;

    if (!patch)
        return err_set(e, -ENOMEM, "out of memory");
    return kube_patch(rc->c, &KUBE_RES_STATEFULSETS, rc->sts->ns, rc->sts->name, sub, patch, NULL,
                      e);
}

static int set_annotation(struct rc *rc, int32_t replicas, ord_err *e)
{
    cJSON *p = cJSON_CreateObject(), *meta, *ann;
    char v[16];

    snprintf(v, sizeof(v), "%d", (int)replicas);
    if (!p || !(meta = json_ensure_object(p, "metadata")) ||
        !(ann = json_ensure_object(meta, "annotations")) ||
        (replicas < 0 ? json_set_null(ann, COBJ_ANN_RESTORE_REPLICAS)
                      : json_set_string(ann, COBJ_ANN_RESTORE_REPLICAS, v)) < 0) {
        cJSON_Delete(p);
        return err_set(e, -ENOMEM, "out of memory");
    }
    return patch_sts(rc, NULL, p, e);
}

static int scale(struct rc *rc, int32_t replicas, ord_err *e)
{
    cJSON *p = cJSON_CreateObject(), *spec;

    if (!p || !(spec = json_ensure_object(p, "spec")) ||
        json_set_int64(spec, "replicas", replicas) < 0) {
        cJSON_Delete(p);
        return err_set(e, -ENOMEM, "out of memory");
    }
    return patch_sts(rc, "scale", p, e);
}

static int wait_pods_gone(struct rc *rc, ord_err *e)
{
    double deadline = cli_monotonic() + PODS_TIMEOUT_S;

    for (;;) {
        _cleanup_(cJSON_Deletep) cJSON *list = NULL;
        size_t n;
        int r = kube_list(rc->c, &KUBE_RES_PODS, rc->sts->ns, NULL, &list, e);

        if (r < 0)
            return err_wrap(e, r, "cannot list the pods of %s/%s", rc->sts->ns, rc->sts->name);
        n = cobj_count_sts_pods(list, rc->sts->name);
        if (n == 0)
            return 0;
        if (cli_monotonic() > deadline)
            return err_set(e, -ETIMEDOUT, "%zu pod(s) of %s/%s are still there after %d s", n,
                           rc->sts->ns, rc->sts->name, PODS_TIMEOUT_S);
        nap();
    }
}

/*
 * The PV and node of the claim of (ordinal, tmpl), re-creating the claim on `node` when it is
 * missing and waiting for it to be Bound. Returns 0 with ret_pv/ret_node, or a negative errno.
 */
static int claim_volume(struct rc *rc, const cJSON *sts_obj, int32_t ordinal, const char *tmpl,
                        const char *node, char *ret_pv, char *ret_node, ord_err *e)
{
    char claim[COBJ_NAME_MAX + 16];
    double deadline = cli_monotonic() + BOUND_TIMEOUT_S;
    bool created = false;
    int r;

    snprintf(claim, sizeof(claim), "%s-%s-%d", tmpl, rc->sts->name, (int)ordinal);
    for (;;) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *pobj = NULL;
        struct cobj_pvc pvc;
        struct cobj_pv pv;

        r = kube_get(rc->c, &KUBE_RES_PERSISTENTVOLUMECLAIMS, rc->sts->ns, claim, &obj, e);
        if (r == KUBE_E_NOT_FOUND && !created) {
            _cleanup_(cJSON_Deletep) cJSON *nobj = NULL, *nodeobj = NULL;

            r = kube_get(rc->c, &KUBE_RES_NODES, NULL, node, &nodeobj, e);
            if (r == KUBE_E_NOT_FOUND)
                return err_set(e, r,
                               "claim '%s' is missing and node '%s', which held the volume when "
                               "it was backed up, no longer exists; create the claim yourself "
                               "with the annotation volume.kubernetes.io/selected-node set to a "
                               "node that runs an agent",
                               claim, node);
            if (r < 0)
                return err_wrap(e, r, "cannot read node '%s'", node);
            r = cobj_claim_from_template(sts_obj, tmpl, claim, rc->sts->ns, node, &nobj);
            if (r < 0)
                return err_set(e, r, "the StatefulSet has no volumeClaimTemplate '%s'", tmpl);
            r = kube_create(rc->c, &KUBE_RES_PERSISTENTVOLUMECLAIMS, rc->sts->ns, nobj, NULL, e);
            if (r < 0 && r != KUBE_E_ALREADY_EXISTS)
                return err_wrap(e, r, "cannot re-create claim '%s'", claim);
            cluster_progress("restore", "claim '%s' re-created on node '%s'", claim, node);
            created = true;
            continue;
        }
        if (r < 0 && r != KUBE_E_NOT_FOUND)
            return err_wrap(e, r, "cannot read claim '%s'", claim);
        if (r == 0) {
            r = cobj_pvc_from_json(obj, &pvc, e);
            if (r < 0)
                return r;
            if (streq(pvc.phase, "Bound") && pvc.volume_name[0]) {
                r = kube_get(rc->c, &KUBE_RES_PERSISTENTVOLUMES, NULL, pvc.volume_name, &pobj, e);
                if (r < 0)
                    return err_wrap(e, r, "cannot read PersistentVolume '%s'", pvc.volume_name);
                r = cobj_pv_from_json(pobj, &pv, e);
                if (r < 0)
                    return r;
                if (!pv.node[0])
                    return err_set(e, -EINVAL,
                                   "PersistentVolume '%s' of claim '%s' was not made by "
                                   "ordinal-provisioner (no %s annotation)",
                                   pv.name, claim, COBJ_ANN_NODE);
                snprintf(ret_pv, COBJ_NAME_MAX + 1, "%s", pv.name);
                snprintf(ret_node, COBJ_NAME_MAX + 1, "%s", pv.node);
                return 0;
            }
        }
        if (cli_monotonic() > deadline)
            return err_set(e, -ETIMEDOUT,
                           "claim '%s' is not Bound after %d s; see 'kubectl -n %s describe pvc "
                           "%s' and the provisioner's log on node '%s'",
                           claim, BOUND_TIMEOUT_S, rc->sts->ns, claim, node);
        nap();
    }
}

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;

    return a < b ? -1 : a > b;
}

/* The backup's volumes in processing order, filtered by --ordinals. */
static int select_volumes(const struct restore_cluster_args *a, const struct backup_manifest *b,
                          const struct backup_volume ***ret, size_t *ret_n, ord_err *e)
{
    _cleanup_free_ int32_t *want = NULL, *ords = NULL;
    _cleanup_free_ const struct backup_volume **sel = NULL;
    size_t n_want = 0, n = 0;
    bool reverse = streq(a->order, "reverse");
    int r;

    if (a->ordinals) {
        r = names_parse_ordinals(a->ordinals, &want, &n_want, e);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n_want; i++) {
            bool found = false;
            for (size_t j = 0; j < b->n_ordinals; j++)
                found = found || b->ordinals[j] == want[i];
            if (!found)
                return err_set(e, -ENOENT, "backup '%s' holds no ordinal %d", b->id, (int)want[i]);
        }
    }
    ords = calloc(b->n_ordinals + 1, sizeof(*ords));
    sel = calloc(b->n_volumes + 1, sizeof(*sel));
    if (!ords || !sel)
        return err_set(e, -ENOMEM, "out of memory");
    memcpy(ords, b->ordinals, b->n_ordinals * sizeof(*ords));
    qsort(ords, b->n_ordinals, sizeof(*ords), cmp_i32);
    for (size_t k = 0; k < b->n_ordinals; k++) {
        int32_t o = ords[reverse ? b->n_ordinals - 1 - k : k];
        bool wanted = !want;

        for (size_t i = 0; i < n_want; i++)
            wanted = wanted || want[i] == o;
        for (size_t j = 0; wanted && j < b->n_volumes; j++)
            if (b->volumes[j].ordinal == o)
                sel[n++] = &b->volumes[j];
    }
    *ret = TAKE_PTR(sel);
    *ret_n = n;
    return 0;
}

static int pick_backup(struct repo *repo, const struct restore_cluster_args *a,
                       const struct sts_ref *sts, struct backup_manifest *ret, ord_err *e)
{
    struct catalog cat = {0};
    const struct catalog_entry *ce;
    int r;

    r = catalog_scan(repo, sts, &cat, e);
    if (r < 0)
        return r;
    ce =
        streq(a->backup, "latest") ? catalog_latest(&cat, sts) : catalog_find(&cat, sts, a->backup);
    if (!ce || !ce->complete) {
        r = err_set(e, -ENOENT,
                    "there is no complete backup '%s' of %s/%s in '%s'; run 'ordinal-backup list "
                    "--repo %s --statefulset %s/%s' to see the backups",
                    a->backup, sts->ns, sts->name, a->repo, a->repo, sts->ns, sts->name);
        catalog_free(&cat);
        return r;
    }
    r = cli_load_backup(repo, sts, ce->id, ret, e);
    catalog_free(&cat);
    return r;
}

int restore_cluster(const struct restore_cluster_args *a, const struct sts_ref *sts, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_(cJSON_Deletep) cJSON *sts_obj = NULL;
    _cleanup_free_ const struct backup_volume **sel = NULL;
    _cleanup_free_ struct volume_manifest *mans = NULL;
    _cleanup_free_ struct backup_volume *done = NULL;
    _cleanup_free_ struct cobj_sts *st = calloc(1, sizeof(*st));
    struct backup_manifest b = {0};
    struct rc rc = {.a = a, .sts = sts};
    char tag[ID_MAX], op[16];
    struct cluster_lock_ctx lc;
    int32_t replicas;
    size_t n = 0, n_mans = 0, n_done = 0;
    bool scaled = false;
    int r;

    if (!st)
        return err_set(e, -ENOMEM, "out of memory");
    r = cluster_connect(a->kubeconfig, a->ns, &rc.c, rc.ns, sizeof(rc.ns), e);
    if (r < 0)
        return r;

    /* 1. Checks that change nothing. */
    r = kube_get(rc.c, &KUBE_RES_STATEFULSETS, sts->ns, sts->name, &sts_obj, e);
    if (r == KUBE_E_NOT_FOUND) {
        r = err_set(e, r, "StatefulSet %s/%s does not exist; create it (with its replicas) first",
                    sts->ns, sts->name);
        goto out;
    }
    if (r < 0 || (r = cobj_sts_from_json(sts_obj, st, e)) < 0)
        goto out;
    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        goto out;
    lc = (struct cluster_lock_ctx){.client = rc.c, .ns = rc.ns};
    cluster_lock_operation(rc.c, rc.ns, "restore", op, sizeof(op));
    r = lock_acquire_ex(repo, sts, op, cluster_lock_holder_gone, &lc, &lock, e);
    if (r < 0)
        goto out;
    r = pick_backup(repo, a, sts, &b, e);
    if (r < 0)
        goto out;
    r = select_volumes(a, &b, &sel, &n, e);
    if (r < 0)
        goto out;
    mans = calloc(n + 1, sizeof(*mans));
    done = calloc(n + 1, sizeof(*done));
    if (!mans || !done) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (; n_mans < n; n_mans++) {
        r = cli_load_volume(repo, &b, sel[n_mans], &mans[n_mans], e);
        if (r < 0)
            goto out;
    }

    /* 2. Record, scale to 0, wait. */
    replicas = st->restore_replicas >= 0 ? st->restore_replicas : st->replicas;
    if (st->restore_replicas < 0 && (r = set_annotation(&rc, replicas, e)) < 0) {
        err_wrap(e, r, "cannot record the replica count on the StatefulSet");
        goto out;
    }
    scaled = true;
    cluster_progress("restore", "backup %s of %s/%s: scaling to 0 (replicas to restore: %d)", b.id,
                     sts->ns, sts->name, (int)replicas);
    r = scale(&rc, 0, e);
    if (r < 0 || (r = wait_pods_gone(&rc, e)) < 0)
        goto fail;

    /* 3. Volume by volume. */
    /* Task names must differ from a previous run's (a failed one's tasks are kept), even
     * within the same second: the start time plus a few random hex digits. */
    {
        struct timespec ts;
        char when[ID_MAX];

        clock_gettime(CLOCK_REALTIME, &ts);
        if (id_format(ts.tv_sec, 0, when, sizeof(when)) < 0)
            snprintf(when, sizeof(when), "restore");
        snprintf(tag, sizeof(tag), "%s-%04x", when,
                 (unsigned)((ts.tv_nsec / 1000) ^ getpid()) & 0xffffu);
    }
    for (size_t i = 0; i < n; i++) {
        const struct backup_volume *bv = sel[i];
        char pv[COBJ_NAME_MAX + 1], node[COBJ_NAME_MAX + 1], task[COBJ_NAME_MAX + 1];
        double t0 = cli_monotonic();
        struct vtask t;

        r = claim_volume(&rc, sts_obj, bv->ordinal, bv->template_name, mans[i].node, pv, node, e);
        if (r >= 0)
            r = cluster_task_run(rc.c, rc.ns, true, tag, b.id, sts, bv->ordinal, bv->template_name,
                                 pv, node, a->task_timeout, task, sizeof(task), &t, e);
        if (r >= 0 && t.phase == VTASK_FAILED)
            r = err_set(e, -EIO, "task '%s' failed: %s", task, t.message);
        if (r < 0) {
            err_wrap(e, r, "restoring ordinal %d volume '%s' (%zu of %zu volumes restored before)",
                     (int)bv->ordinal, bv->template_name, i, n);
            goto fail;
        }
        cluster_progress("restore", "ordinal %d volume '%s' on node '%s': %s", (int)bv->ordinal,
                         bv->template_name, node, t.message);
        (void)kube_delete(rc.c, &KUBE_RES_VOLUMETASKS, rc.ns, task, NULL, NULL, NULL);
        done[n_done] = *bv;
        done[n_done].seconds = cli_monotonic() - t0;
        n_done++;
    }

    /* 4. Scale back. */
    r = scale(&rc, replicas, e);
    if (r < 0)
        goto fail;
    r = set_annotation(&rc, -1, e);
    if (r < 0) {
        cli_warn("restore", "cannot remove the annotation %s: %s", COBJ_ANN_RESTORE_REPLICAS,
                 err_msg(e));
        err_clear(e);
    }
    cluster_progress("restore", "backup %s of %s/%s restored; scaled back to %d", b.id, sts->ns,
                     sts->name, (int)replicas);
    if (a->json)
        r = cli_print_volumes_json(b.id, sts, a->order, done, n_done);
    else
        cli_print_volumes_text("restored backup", b.id, sts, a->order, done, n_done);
    r = r < 0 ? err_set(e, r, "out of memory") : 0;
    goto out;

fail:
    if (scaled)
        err_wrap(e, r,
                 "restore of %s/%s stopped; the StatefulSet is left at 0 replicas (it had %d, "
                 "recorded in its annotation %s). Fix the cause, then run the same command "
                 "again: it resumes and scales back to %d. To give up instead: kubectl -n %s "
                 "scale statefulset %s --replicas=%d && kubectl -n %s annotate statefulset %s "
                 "%s-. What happened",
                 sts->ns, sts->name, (int)replicas, COBJ_ANN_RESTORE_REPLICAS, (int)replicas,
                 sts->ns, sts->name, (int)replicas, sts->ns, sts->name, COBJ_ANN_RESTORE_REPLICAS);
out:
    for (size_t i = 0; mans && i < n_mans; i++)
        volume_manifest_free(&mans[i]);
    backup_manifest_free(&b);
    kube_client_free(rc.c);
    return r;
}
