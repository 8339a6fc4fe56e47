/*
 * restore_cluster.c - cluster restore (see restore_cluster.h).
 *
 * Order of steps, chosen so that a failure at any point leaves something a person can resume:
 *   1. Check everything that can be checked without changing anything: the StatefulSet, the
 *      backup (complete, manifests agree), the ordinals. A refusal here changes nothing.
 *   2. Record the replica count to return to under the key "<ns>.<sts>" of the ConfigMap
 *      ordinal-restores in the tasks' namespace (only if no record is there yet while the
 *      StatefulSet is at 0: a second run after a failure finds the count of the first, not the
 *      0 the first left behind), then scale to 0 through the scale subresource and wait for
 *      its pods to go.
 *   3. Per volume, in the chosen order (ordinal by default): re-create the claim
 *      "<template>-<sts>-<ordinal>" from the template when it is missing, with selected-node =
 *      the node the volume was backed up from (it must still exist), wait for it to be Bound,
 *      then hand a restore VolumeTask to the agent of the PV's node and wait for it.
 *   4. Scale back to the recorded count and remove the record.
 * On failure after step 2 the StatefulSet stays at 0 (nothing runs on a half-restored set), a
 * Warning Event RestoreFailed is posted on it, and the message says what failed and the two
 * ways on: fix the cause and run the same command again (it resumes), or scale back by hand.
 *
 * Why a ConfigMap and not the StatefulSet (where versions before kept the count, in the
 * annotation ordinal.dev/restore-replicas): writing an annotation needs `patch` on every
 * StatefulSet of the cluster, far more than scaling does. The record lives in one object of
 * the deployment's own namespace that the coordinator may read and patch by name, and nothing
 * else. The old annotation is still read, so that a restore interrupted by an older version
 * resumes; it is never written.
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
#include "cluster_store.h"
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

/* ConfigMaps are not in libordinal-common's table: only the restore record uses one. */
static const struct kube_res RES_CONFIGMAPS = {"", "v1", "configmaps", true};

/* The component named in Events (source and reportingComponent). */
#define EVENT_COMPONENT "ordinal-backup"

/*
 * The recorded replica count of this StatefulSet: 0 and *ret, -ENOENT when there is none, or
 * another negative errno with e saying why it cannot be read.
 */
static int record_read(struct rc *rc, int32_t *ret, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *cm = NULL;
    char key[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    int r;

    cobj_restore_record_key(rc->sts, key, sizeof(key));
    r = kube_get(rc->c, &RES_CONFIGMAPS, rc->ns, COBJ_RESTORE_RECORD, &cm, e);
    if (r == KUBE_E_NOT_FOUND) {
        err_clear(e);
        return -ENOENT;
    }
    if (r < 0)
        return err_wrap(e, r, "cannot read the restore record (ConfigMap %s/%s)", rc->ns,
                        COBJ_RESTORE_RECORD);
    r = cobj_restore_record_get(cm, key, ret);
    if (r == -EINVAL)
        return err_set(e, r,
                       "key '%s' of ConfigMap %s/%s is not a replica count; set it to the "
                       "StatefulSet's replica count before the restore, or remove it",
                       key, rc->ns, COBJ_RESTORE_RECORD);
    return r;
}

/*
 * Records replicas (>= 0) for this StatefulSet, or removes the record (replicas < 0), by a
 * merge patch of one key: records of other StatefulSets are left alone without any
 * read-modify-write, and two restores of one StatefulSet never run together (repository
 * lock). The ConfigMap comes with deploy/; when it is missing it is created, which the
 * coordinator's own account may not do (it is refused with a message that says so).
 */
static int record_write(struct rc *rc, int32_t replicas, ord_err *e)
{
    char key[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2], v[16];
    int r;

    cobj_restore_record_key(rc->sts, key, sizeof(key));
    snprintf(v, sizeof(v), "%d", (int)replicas);
    for (int attempt = 0; attempt < 3; attempt++) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject(), *obj = NULL;
        cJSON *data, *meta, *labels;

        if (!p || !(data = json_ensure_object(p, "data")) ||
            (replicas < 0 ? json_set_null(data, key) : json_set_string(data, key, v)) < 0)
            return err_set(e, -ENOMEM, "out of memory");
        r = kube_patch(rc->c, &RES_CONFIGMAPS, rc->ns, COBJ_RESTORE_RECORD, NULL, p, NULL, e);
        if (r != KUBE_E_NOT_FOUND)
            break;
        if (replicas < 0) {
            err_clear(e);
            return 0; /* no ConfigMap, no record */
        }
        obj = cJSON_CreateObject();
        if (!obj || json_set_string(obj, "apiVersion", "v1") < 0 ||
            json_set_string(obj, "kind", "ConfigMap") < 0 ||
            !(meta = json_ensure_object(obj, "metadata")) ||
            json_set_string(meta, "name", COBJ_RESTORE_RECORD) < 0 ||
            json_set_string(meta, "namespace", rc->ns) < 0 ||
            !(labels = json_ensure_object(meta, "labels")) ||
            json_set_string(labels, COBJ_LABEL_PART_OF, "ordinal") < 0 ||
            !(data = json_ensure_object(obj, "data")) || json_set_string(data, key, v) < 0)
            return err_set(e, -ENOMEM, "out of memory");
        r = kube_create(rc->c, &RES_CONFIGMAPS, rc->ns, obj, NULL, e);
        if (r == KUBE_E_FORBIDDEN)
            return err_wrap(e, r,
                            "ConfigMap %s/%s, where a restore records the replica count, is "
                            "missing; apply deploy/ again (kubectl apply -k deploy/), which "
                            "creates it",
                            rc->ns, COBJ_RESTORE_RECORD);
        if (r != KUBE_E_ALREADY_EXISTS)
            break;
    }
    if (r < 0)
        return err_wrap(e, r, "cannot %s the restore record (ConfigMap %s/%s, key '%s')",
                        replicas < 0 ? "remove" : "write", rc->ns, COBJ_RESTORE_RECORD, key);
    return 0;
}

/* Scales through the scale subresource: the only write the coordinator may make to a
 * StatefulSet. */
static int scale(struct rc *rc, int32_t replicas, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject();
    cJSON *spec;

    if (!p || !(spec = json_ensure_object(p, "spec")) ||
        json_set_int64(spec, "replicas", replicas) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    return kube_patch(rc->c, &KUBE_RES_STATEFULSETS, rc->sts->ns, rc->sts->name, "scale", p, NULL,
                      e);
}

/* Posts a Warning Event on the StatefulSet. Best effort: a failure is a warning on stderr. */
static void post_event(struct rc *rc, const struct cobj_sts *st, const char *reason,
                       const char *message)
{
    _cleanup_(cJSON_Deletep) cJSON *ev = NULL;
    ord_err e = {0};
    int r;

    r = cobj_event_build("StatefulSet", "apps/v1", rc->sts->ns, rc->sts->name, st->uid, true,
                         reason, message, EVENT_COMPONENT, &ev);
    if (r >= 0)
        r = kube_create(rc->c, &KUBE_RES_EVENTS, rc->sts->ns, ev, NULL, &e);
    if (r < 0)
        cli_warn("restore", "cannot post the Event %s on StatefulSet %s/%s: %s", reason,
                 rc->sts->ns, rc->sts->name, err_msg(&e));
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

/* 1 when the Node exists, 0 when it does not, or a negative errno with e. */
static int node_exists(struct rc *rc, const char *node, ord_err *e)
{
    int r = kube_get(rc->c, &KUBE_RES_NODES, NULL, node, NULL, e);

    if (r == KUBE_E_NOT_FOUND) {
        err_clear(e);
        return 0;
    }
    if (r < 0)
        return err_wrap(e, r, "cannot read node '%s'", node);
    return 1;
}

/*
 * Before any volume: every selected volume whose claim is bound to a PV of a node that no
 * longer exists (a lost node) would get a task no agent ever takes. Lists them with the
 * commands that free them (stderr) and refuses, so that the person deletes what the lost node
 * held and runs the restore again, which then re-creates the claims (--place-lost-on).
 * Returns 0 when there is none, or a negative errno with e.
 */
static int check_lost_nodes(struct rc *rc, const struct backup_volume **sel, size_t n, ord_err *e)
{
    _cleanup_free_ char *claims = NULL, *pvs = NULL;
    size_t size = n * (COBJ_NAME_MAX + 2) + 1, n_lost = 0, len_c = 0, len_p = 0;
    int r;

    claims = calloc(1, size);
    pvs = calloc(1, size);
    if (!claims || !pvs)
        return err_set(e, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *pobj = NULL;
        char claim[COBJ_NAME_MAX + 16];
        struct cobj_pvc pvc;
        struct cobj_pv pv;

        snprintf(claim, sizeof(claim), "%s-%s-%d", sel[i]->template_name, rc->sts->name,
                 (int)sel[i]->ordinal);
        r = kube_get(rc->c, &KUBE_RES_PERSISTENTVOLUMECLAIMS, rc->sts->ns, claim, &obj, e);
        if (r == KUBE_E_NOT_FOUND) {
            err_clear(e);
            continue;
        }
        if (r < 0)
            return err_wrap(e, r, "cannot read claim '%s'", claim);
        if (cobj_pvc_from_json(obj, &pvc, e) < 0 || !pvc.volume_name[0])
            continue;
        r = kube_get(rc->c, &KUBE_RES_PERSISTENTVOLUMES, NULL, pvc.volume_name, &pobj, e);
        if (r == KUBE_E_NOT_FOUND) {
            err_clear(e);
            continue;
        }
        if (r < 0)
            return err_wrap(e, r, "cannot read PersistentVolume '%s'", pvc.volume_name);
        if (cobj_pv_from_json(pobj, &pv, e) < 0 || !pv.node[0])
            continue;
        r = node_exists(rc, pv.node, e);
        if (r < 0)
            return r;
        if (r > 0)
            continue;
        cluster_progress("restore",
                         "ordinal %d volume '%s': claim '%s' is bound to PersistentVolume '%s' "
                         "of node '%s', which no longer exists (no Node object)",
                         (int)sel[i]->ordinal, sel[i]->template_name, claim, pv.name, pv.node);
        /* each name fits: size holds n names of at most COBJ_NAME_MAX + 1 */
        len_c += (size_t)snprintf(claims + len_c, size - len_c, " %s", claim);
        len_p += (size_t)snprintf(pvs + len_p, size - len_p, " %s", pv.name);
        n_lost++;
    }
    if (n_lost == 0)
        return 0;
    cluster_progress("restore",
                     "free them (their data went with the node; the backup brings it back): "
                     "kubectl -n %s delete pvc%s && kubectl delete pv%s",
                     rc->sts->ns, claims, pvs);
    return err_set(e, -EHOSTDOWN,
                   "%zu claim(s) are bound to volumes of nodes that no longer exist (the "
                   "restore's output lists them and the commands that free them: kubectl -n %s "
                   "delete pvc ..., kubectl delete pv ...); free them, then run this restore "
                   "again with --place-lost-on NODE, a node that runs an agent",
                   n_lost, rc->sts->ns);
}

/*
 * The PV and node of the claim of (ordinal, tmpl), re-creating the claim on `node` when it is
 * missing (on --place-lost-on when `node` is gone) and waiting for it to be Bound. A claim
 * that stays Pending gets one progress line after the unclaimed delay, pointing at its Events
 * (the provisioner says there why it cannot bind it). Returns 0 with ret_pv/ret_node, or a
 * negative errno.
 */
static int claim_volume(struct rc *rc, const cJSON *sts_obj, int32_t ordinal, const char *tmpl,
                        const char *node, char *ret_pv, char *ret_node, ord_err *e)
{
    char claim[COBJ_NAME_MAX + 16];
    double start = cli_monotonic(), deadline = start + BOUND_TIMEOUT_S;
    bool created = false, warned = false;
    int r;

    snprintf(claim, sizeof(claim), "%s-%s-%d", tmpl, rc->sts->name, (int)ordinal);
    for (;;) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *pobj = NULL;
        struct cobj_pvc pvc;
        struct cobj_pv pv;

        r = kube_get(rc->c, &KUBE_RES_PERSISTENTVOLUMECLAIMS, rc->sts->ns, claim, &obj, e);
        if (r == KUBE_E_NOT_FOUND && !created) {
            _cleanup_(cJSON_Deletep) cJSON *nobj = NULL;

            r = node_exists(rc, node, e);
            if (r < 0)
                return r;
            if (r == 0 && !rc->a->place_lost_on)
                return err_set(e, -EHOSTDOWN,
                               "claim '%s' is missing and node '%s', which held the volume when "
                               "it was backed up, no longer exists; run the restore again with "
                               "--place-lost-on NODE (a node that runs an agent), or create the "
                               "claim yourself with the annotation "
                               "volume.kubernetes.io/selected-node set to such a node",
                               claim, node);
            if (r == 0) {
                cluster_progress("restore",
                                 "node '%s', which held ordinal %d volume '%s', no longer "
                                 "exists: its claim goes to node '%s' (--place-lost-on)",
                                 node, (int)ordinal, tmpl, rc->a->place_lost_on);
                node = rc->a->place_lost_on;
                r = node_exists(rc, node, e);
                if (r < 0)
                    return r;
                if (r == 0)
                    return err_set(e, -ENOENT, "--place-lost-on: node '%s' does not exist",
                                   node);
            }
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
        if (!warned && rc->a->unclaimed_s > 0 &&
            cli_monotonic() - start >= (double)rc->a->unclaimed_s) {
            warned = true;
            cluster_progress("restore",
                             "claim '%s' is not Bound yet; its Events say why "
                             "(kubectl -n %s describe pvc %s). Waiting up to %d s",
                             claim, rc->sts->ns, claim, BOUND_TIMEOUT_S);
        }
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

/*
 * The restore stopped with the StatefulSet held at 0: turns the cause in e into the message a
 * person reads (what failed, what the volumes hold now, the two ways on) and posts it as a
 * Warning Event RestoreFailed on the StatefulSet. failed is the volume being restored, or NULL
 * when it stopped before or after the volumes; n_done of n volumes were restored.
 */
static void stopped(struct rc *rc, const struct cobj_sts *st, const char *id, int32_t replicas,
                    const struct backup_volume *failed, size_t n_done, size_t n, int r, ord_err *e)
{
    char where[NAMES_SUBDOMAIN_MAX + 96], key[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    char head[ORD_ERR_MSG_MAX], tail[ORD_ERR_MSG_MAX], cause[ORD_ERR_MSG_MAX];
    const struct sts_ref *sts = rc->sts;
    size_t len, avail;

    snprintf(cause, sizeof(cause), "%s", err_msg(e));
    cobj_restore_record_key(sts, key, sizeof(key));
    if (failed)
        snprintf(where, sizeof(where),
                 " at ordinal %d volume '%s' (%zu of %zu volumes restored before it)",
                 (int)failed->ordinal, failed->template_name, n_done, n);
    else if (n_done == n && n > 0)
        snprintf(where, sizeof(where), " after restoring all %zu volumes", n);
    else
        snprintf(where, sizeof(where), " before restoring any volume");
    snprintf(head, sizeof(head), "restore of backup %s into %s/%s stopped%s: ", id, sts->ns,
             sts->name, where);
    snprintf(tail, sizeof(tail),
             ". The StatefulSet stays at 0 replicas, so nothing runs on a half-restored set (it "
             "had %d; recorded in ConfigMap %s/%s). Either fix the cause and run the same "
             "restore again: it resumes and scales back to %d. Or scale back by hand to the "
             "volumes as they are (restored ones hold the backup, the rest their old data): "
             "kubectl -n %s scale statefulset %s --replicas=%d && kubectl -n %s patch configmap "
             "%s --type=merge -p '{\"data\":{\"%s\":null}}'",
             (int)replicas, rc->ns, COBJ_RESTORE_RECORD, (int)replicas, sts->ns, sts->name,
             (int)replicas, rc->ns, COBJ_RESTORE_RECORD, key);
    /* One line of at most ORD_ERR_MSG_MAX - 1 bytes, which also fits an Event's 1 KiB: the
     * cause gives way (cut on a character boundary, "..." says so) so that the two ways on
     * always fit; a failed task's whole message stays in its status. */
    len = strlen(cause);
    avail = ORD_ERR_MSG_MAX - 1 - MIN(strlen(head) + strlen(tail), (size_t)ORD_ERR_MSG_MAX - 65);
    if (len > avail) {
        len = avail - 3;
        while (len > 0 && ((unsigned char)cause[len] & 0xc0) == 0x80)
            len--;
        memcpy(cause + len, "...", 4);
    }
    err_set(e, r, "%s%s%s", head, cause, tail);
    post_event(rc, st, "RestoreFailed", err_msg(e));
}

/*
 * The StatefulSet rc->sts is missing and --create or --to was given: re-creates it, and its
 * Service when that is missing too, from the copies stored with backup b, with 0 replicas, after
 * recording the stored replica count (so that a run killed right after the create resumes
 * with the right count). The copy keeps its spec, labels and annotations; its name and
 * namespace are rc->sts's, and owner references are dropped (their owners' uids are another
 * incarnation's, and the garbage collector would delete the copy). Returns 0 with *ret_obj
 * (the created StatefulSet) and *ret_replicas, or a negative errno with e; before the record
 * is written nothing was changed.
 */
static int create_from_backup(struct rc *rc, struct repo *repo, const struct backup_manifest *b,
                              cJSON **ret_obj, int32_t *ret_replicas, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *so = NULL, *created = NULL;
    const struct sts_ref *sts = rc->sts;
    char svc_name[NAMES_SUBDOMAIN_MAX + 1] = "";
    cJSON *meta, *spec;
    int64_t replicas = 1; /* the API's default */
    const char *s;
    int r;

    r = cluster_store_load(repo, b, "StatefulSet", &so, e);
    if (r == -ENOENT)
        return err_set(e, r,
                       "StatefulSet %s/%s does not exist and backup %s holds no copy of it (a "
                       "one-node backup, or one made before backups stored it); create the "
                       "StatefulSet yourself with replicas: 0 (with its replicas, pods would "
                       "start on empty volumes), then run the restore again",
                       sts->ns, sts->name, b->id);
    if (r < 0)
        return r;
    if (json_path(so, "spec.replicas") &&
        json_get_int64(so, "spec.replicas", 0, INT32_MAX, &replicas) < 0)
        return err_set(e, -EBADMSG,
                       "the StatefulSet stored with backup %s has no valid "
                       "spec.replicas",
                       b->id);
    s = json_string(so, "spec.serviceName");
    if (s && names_dns_label(s))
        snprintf(svc_name, sizeof(svc_name), "%s", s);
    if (!(meta = json_ensure_object(so, "metadata")) || !(spec = json_ensure_object(so, "spec")) ||
        json_set_string(meta, "name", sts->name) < 0 ||
        json_set_string(meta, "namespace", sts->ns) < 0 || json_set_int64(spec, "replicas", 0) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "ownerReferences");
    r = record_write(rc, (int32_t)replicas, e);
    if (r < 0)
        return err_wrap(e, r, "restore of %s/%s not started (nothing was changed)", sts->ns,
                        sts->name);
    if (svc_name[0]) {
        _cleanup_(cJSON_Deletep) cJSON *svc = NULL;

        r = kube_get(rc->c, &CLUSTER_RES_SERVICES, sts->ns, svc_name, NULL, e);
        if (r == KUBE_E_NOT_FOUND) {
            err_clear(e);
            r = cluster_store_load(repo, b, "Service", &svc, e);
            if (r == -ENOENT) {
                cli_warn("restore",
                         "backup %s holds no Service '%s' (spec.serviceName of the "
                         "StatefulSet); create it yourself: the pods' DNS names need it",
                         b->id, svc_name);
            } else if (r < 0) {
                return r;
            } else {
                if (!(meta = json_ensure_object(svc, "metadata")) ||
                    json_set_string(meta, "namespace", sts->ns) < 0)
                    return err_set(e, -ENOMEM, "out of memory");
                cJSON_DeleteItemFromObjectCaseSensitive(meta, "ownerReferences");
                r = kube_create(rc->c, &CLUSTER_RES_SERVICES, sts->ns, svc, NULL, e);
                if (r < 0 && r != KUBE_E_ALREADY_EXISTS)
                    return err_wrap(e, r, "cannot create Service %s/%s from backup %s", sts->ns,
                                    svc_name, b->id);
                cluster_progress("restore", "Service %s/%s created from backup %s", sts->ns,
                                 svc_name, b->id);
            }
        } else if (r < 0) {
            return err_wrap(e, r, "cannot read Service %s/%s", sts->ns, svc_name);
        }
    }
    r = kube_create(rc->c, &KUBE_RES_STATEFULSETS, sts->ns, so, &created, e);
    if (r < 0)
        return err_wrap(e, r, "cannot create StatefulSet %s/%s from backup %s", sts->ns, sts->name,
                        b->id);
    cluster_progress("restore",
                     "StatefulSet %s/%s created from backup %s with 0 replicas; it scales to %d "
                     "once its volumes are restored",
                     sts->ns, sts->name, b->id, (int)replicas);
    *ret_obj = TAKE_PTR(created);
    *ret_replicas = (int32_t)replicas;
    return 0;
}

int restore_cluster(const struct restore_cluster_args *a, const struct sts_ref *src, ord_err *e)
{
    /* sts: where the volumes go (--to, else the backup's own StatefulSet); src: whose
     * backup is read (the repository's lock and keys) */
    const struct sts_ref *sts = a->to ? a->to : src;
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_(cJSON_Deletep) cJSON *sts_obj = NULL;
    _cleanup_free_ const struct backup_volume **sel = NULL;
    _cleanup_free_ struct volume_manifest *mans = NULL;
    _cleanup_free_ struct backup_volume *done = NULL;
    _cleanup_free_ struct engine_lost *lost = NULL; /* counts from each task's result */
    _cleanup_free_ struct cobj_sts *st = calloc(1, sizeof(*st));
    struct backup_manifest b = {0};
    struct rc rc = {.a = a, .sts = sts};
    char tag[ID_MAX], op[16];
    struct cluster_lock_ctx lc;
    const struct backup_volume *failed = NULL;
    int32_t replicas = 0;
    size_t n = 0, n_mans = 0, n_done = 0;
    bool scaled = false, missing = false;
    int r;

    if (!st)
        return err_set(e, -ENOMEM, "out of memory");
    r = cluster_connect(a->kubeconfig, a->ns, &rc.c, rc.ns, sizeof(rc.ns), e);
    if (r < 0)
        return r;
    cluster_delete_tasks_of_gone_nodes(rc.c, rc.ns, "restore");

    /* 1. Checks that change nothing. */
    r = kube_get(rc.c, &KUBE_RES_STATEFULSETS, sts->ns, sts->name, &sts_obj, e);
    if (r == KUBE_E_NOT_FOUND && !a->create && !a->to) {
        r = err_set(e, r,
                    "StatefulSet %s/%s does not exist; run the restore again with --create: it "
                    "re-creates the StatefulSet and its Service from the backup with 0 replicas, "
                    "restores the volumes, then scales it to its count (created by hand with its "
                    "replicas, its pods would start on empty volumes)",
                    sts->ns, sts->name);
        goto out;
    }
    if (r == KUBE_E_NOT_FOUND) {
        err_clear(e);
        missing = true;
    } else if (r < 0 || (r = cobj_sts_from_json(sts_obj, st, e)) < 0) {
        goto out;
    }
    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        goto out;
    lc = (struct cluster_lock_ctx){.client = rc.c, .ns = rc.ns};
    cluster_lock_operation(rc.c, rc.ns, "restore", op, sizeof(op));
    r = lock_acquire_ex(repo, src, op, cluster_lock_holder_gone, &lc, &lock, e);
    if (r < 0)
        goto out;
    r = pick_backup(repo, a, src, &b, e);
    if (r < 0)
        goto out;
    r = select_volumes(a, &b, &sel, &n, e);
    if (r < 0)
        goto out;
    mans = calloc(n + 1, sizeof(*mans));
    done = calloc(n + 1, sizeof(*done));
    lost = calloc(n + 1, sizeof(*lost));
    if (!mans || !done || !lost) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (; n_mans < n; n_mans++) {
        r = cli_load_volume(repo, &b, sel[n_mans], &mans[n_mans], e);
        if (r < 0)
            goto out;
    }

    /* 2. Record, scale to 0, wait. A record (or, from an older version, the annotation)
     * counts only while the StatefulSet is at 0: once someone scaled it back by hand, the
     * record of the restore they gave up is stale and the current count is the one to keep. */
    if (missing) {
        r = create_from_backup(&rc, repo, &b, &sts_obj, &replicas, e);
        if (r >= 0)
            r = cobj_sts_from_json(sts_obj, st, e);
        if (r < 0)
            goto out;
        r = 0; /* recorded by create_from_backup */
    } else {
        r = record_read(&rc, &replicas, e);
    }
    if (r < 0 && r != -ENOENT)
        goto out;
    if (missing) {
        /* created at 0 a moment ago, its count recorded */
    } else if (r == -ENOENT || st->replicas > 0) {
        if (st->replicas == 0 && st->restore_replicas >= 0) {
            replicas = st->restore_replicas;
            cluster_progress("restore",
                             "%s/%s is at 0 replicas with a restore recorded by an older "
                             "ordinal-backup (annotation %s=%d): resuming it",
                             sts->ns, sts->name, COBJ_ANN_RESTORE_REPLICAS, (int)replicas);
        } else {
            replicas = st->replicas;
        }
        r = record_write(&rc, replicas, e);
        if (r < 0) {
            err_wrap(e, r, "restore of %s/%s not started (nothing was changed)", sts->ns,
                     sts->name);
            goto out;
        }
    } else {
        cluster_progress("restore",
                         "%s/%s is at 0 replicas with a restore recorded in ConfigMap %s/%s: "
                         "resuming it",
                         sts->ns, sts->name, rc.ns, COBJ_RESTORE_RECORD);
    }
    scaled = true;
    cluster_progress("restore", "backup %s of %s/%s: scaling to 0 (replicas to restore: %d)", b.id,
                     sts->ns, sts->name, (int)replicas);
    r = scale(&rc, 0, e);
    if (r < 0) {
        err_wrap(e, r, "cannot scale %s/%s to 0", sts->ns, sts->name);
        goto fail;
    }
    r = wait_pods_gone(&rc, e);
    if (r < 0)
        goto fail;
    r = check_lost_nodes(&rc, sel, n, e);
    if (r < 0)
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

        failed = bv;
        r = claim_volume(&rc, sts_obj, bv->ordinal, bv->template_name, mans[i].node, pv, node, e);
        if (r >= 0)
            r = cluster_task_run_ex(rc.c, rc.ns, true, a->accept_lost_attributes, src, tag, b.id,
                                    sts, bv->ordinal, bv->template_name, pv, node, a->task_timeout,
                                    a->unclaimed_s, task, sizeof(task), &t, e);
        if (r >= 0 && t.phase == VTASK_FAILED)
            r = err_set(e, -EIO, "task '%s' failed: %s", task, t.message);
        if (r < 0)
            goto fail;
        cluster_progress("restore", "ordinal %d volume '%s' on node '%s': %s", (int)bv->ordinal,
                         bv->template_name, node, t.message);
        (void)kube_delete(rc.c, &KUBE_RES_VOLUMETASKS, rc.ns, task, NULL, NULL, NULL);
        done[n_done] = *bv;
        done[n_done].seconds = cli_monotonic() - t0;
        memcpy(lost[n_done].count, t.result.lost, sizeof(lost[n_done].count));
        n_done++;
    }
    failed = NULL;

    /* 4. Scale back. Only here, after every selected volume was restored. */
    r = scale(&rc, replicas, e);
    if (r < 0) {
        err_wrap(e, r, "every volume was restored, but scaling %s/%s back to %d failed", sts->ns,
                 sts->name, (int)replicas);
        goto fail;
    }
    r = record_write(&rc, -1, e);
    if (r < 0) {
        cli_warn("restore", "%s", err_msg(e));
        err_clear(e);
    }
    if (st->restore_replicas >= 0)
        cli_warn("restore",
                 "%s/%s still carries the annotation %s left by an older ordinal-backup; it is "
                 "no longer used and this version may not remove it: kubectl -n %s annotate "
                 "statefulset %s %s-",
                 sts->ns, sts->name, COBJ_ANN_RESTORE_REPLICAS, sts->ns, sts->name,
                 COBJ_ANN_RESTORE_REPLICAS);
    cluster_progress("restore", "backup %s of %s/%s restored; scaled back to %d", b.id, sts->ns,
                     sts->name, (int)replicas);
    if (a->json)
        r = cli_print_restored_json(b.id, sts, a->order, done, lost, n_done);
    else
        cli_print_restored_text("restored backup", b.id, sts, a->order, done, lost, n_done);
    r = r < 0 ? err_set(e, r, "out of memory") : 0;
    goto out;

fail:
    if (scaled)
        stopped(&rc, st, b.id, replicas, failed, n_done, n, r, e);
out:
    for (size_t i = 0; mans && i < n_mans; i++)
        volume_manifest_free(&mans[i]);
    backup_manifest_free(&b);
    kube_client_free(rc.c);
    return r;
}
