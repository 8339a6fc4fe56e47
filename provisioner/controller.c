/*
 * controller.c - the provisioner's control loop (see controller.h).
 *
 * Decisions, in the order sync_claim() takes them for a claim:
 *   1. Is it ours to look at? Pending, no volumeName, not being deleted, the storage-provisioner
 *      annotation names us, its class is ours. If PV pvc-<uid> already exists, the claim was
 *      provisioned (by us or another node): nothing to do.
 *   2. Does a PV of ours already hold this identity's data (namespace/statefulset/ordinal/
 *      template, or namespace/claim)? A retained one is handed to the claim (its claimRef is
 *      pointed at the claim; the PV controller completes the bind) by the node that owns it,
 *      whatever node the scheduler picked. One with reclaim Delete that is still being deleted
 *      makes us wait for it, so that the new volume cannot meet the old data.
 *   3. Is it this node's to provision? WaitForFirstConsumer: the selected-node annotation
 *      names us. Immediate: every node races, the PV name decides.
 *   4. Parameters, identity and capacity; data found at the entry without a PV is moved to
 *      .orphaned and reported; the backend prepares the volume under a pending name; the PV
 *      is created; the backend commits (renames) the volume into place.
 * Any refusal a person must fix becomes a ProvisioningFailed Event, and with
 * WaitForFirstConsumer the selected-node annotation is removed so that the scheduler tries
 * another node. Transient API trouble is retried with backoff without an Event.
 *
 * sync_volume() handles a PV of ours: completes an interrupted commit, keeps the capacity
 * ledger and the device pool (a PV that names ordinal.dev/device is the device backend's),
 * and for a Released PV with reclaim Delete removes the directory or wipes the device, then
 * the PV. Device discovery is refreshed every DEVICES_MS; a device that disappears is
 * reported (on_device_report).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "capacity.h"
#include "class_params.h"
#include "controller.h"
#include "dev_backend.h"
#include "events.h"
#include "identity.h"
#include "json.h"
#include "kube_informer.h"
#include "vol_layout.h"
#include "log.h"
#include "objects.h"
#include "pv_build.h"
#include "prov_metrics.h"
#include "quantity.h"
#include "workqueue.h"

#define KEY_MAX       (2 * K8S_NAME_MAX + 8)
#define MAX_WORKERS   64
#define RESYNC_KEY    "r/"
#define DEVICES_KEY   "d/"
#define DEVICES_MS    10000 /* device discovery refresh: disappearances are reported this soon */
#define WAIT_RETRY_MS 1000

struct controller {
    const struct prov_config *cfg;
    struct kube_client *client;
    struct kube_informer *pvcs, *pvs, *classes, *sets, *node;
    struct workqueue *q;
    struct events *ev;
    struct cap_ledger *ledger;
    struct dev_pool *devs;
    struct backend_ctx bctx;
    struct class_limits limits;
    char *default_root; /* --root, normalised */
    pthread_t workers[MAX_WORKERS];
    size_t n_workers;
    atomic_bool started;
    /*
     * PVs this process is creating right now (claim workers between prepare and commit), so
     * that a volume worker that sees the new PV first does not take the normal commit for the
     * repair of an interrupted one. At most one entry per worker.
     */
    pthread_mutex_t inflight_lock;
    char inflight[MAX_WORKERS][K8S_NAME_MAX + 1];
};

static void inflight_set(struct controller *ctl, const char *pv_name, bool on)
{
    pthread_mutex_lock(&ctl->inflight_lock);
    for (size_t i = 0; i < MAX_WORKERS; i++) {
        if (on && !ctl->inflight[i][0]) {
            snprintf(ctl->inflight[i], sizeof(ctl->inflight[i]), "%s", pv_name);
            break;
        }
        if (!on && streq(ctl->inflight[i], pv_name)) {
            ctl->inflight[i][0] = '\0';
            break;
        }
    }
    pthread_mutex_unlock(&ctl->inflight_lock);
}

/* inflight_lock held. */
static bool inflight_has_locked(struct controller *ctl, const char *pv_name)
{
    for (size_t i = 0; i < MAX_WORKERS; i++)
        if (streq(ctl->inflight[i], pv_name))
            return true;
    return false;
}

static bool inflight_has(struct controller *ctl, const char *pv_name)
{
    bool found;

    pthread_mutex_lock(&ctl->inflight_lock);
    found = inflight_has_locked(ctl, pv_name);
    pthread_mutex_unlock(&ctl->inflight_lock);
    return found;
}

/* How a claim sync ended, for the worker's retry decision. */
enum {
    SYNC_DONE = 0,  /* nothing more to do until something changes */
    SYNC_RETRY = 1, /* try again after backoff */
    SYNC_WAIT = 2,  /* waiting for another object to change; look again soon */
};

/* ---- keys and informer callbacks ---- */

static void enqueue_claim(struct controller *ctl, const char *ns, const char *name)
{
    char key[KEY_MAX];

    if (snprintf(key, sizeof(key), "c/%s/%s", ns, name) < (int)sizeof(key))
        (void)wq_add(ctl->q, key);
}

static void enqueue_volume(struct controller *ctl, const char *name)
{
    char key[KEY_MAX];

    if (snprintf(key, sizeof(key), "v/%s", name) < (int)sizeof(key))
        (void)wq_add(ctl->q, key);
}

static bool claim_unbound(const struct obj_pvc *c)
{
    return !c->volume_name && (!c->phase || streq(c->phase, "Pending")) && !c->deleting;
}

/*
 * A claim whose attempt left a capacity reservation (a PV create failed transiently) changed
 * or went away: sync_volume() of its PV name decides whether the reservation is still needed.
 */
static void check_reservation(struct controller *ctl, const char *claim_uid)
{
    char pv_name[K8S_NAME_MAX + 1];

    if (!claim_uid)
        return;
    snprintf(pv_name, sizeof(pv_name), "pvc-%s", claim_uid);
    if (cap_ledger_is_reserved(ctl->ledger, pv_name))
        enqueue_volume(ctl, pv_name);
}

/* Starts the selected-node -> PV latency clock of a claim that names this node. */
static void note_selected(struct controller *ctl, struct kube_obj *o)
{
    const struct obj_pvc *c = kube_obj_data(o);

    if (claim_unbound(c) && c->selected_node && streq(c->selected_node, ctl->cfg->node_name))
        prov_metrics_claim_selected(kube_obj_uid(o));
}

static void on_claim_add(struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;

    note_selected(ctl, o);
    if (claim_unbound(kube_obj_data(o)))
        enqueue_claim(ctl, kube_obj_namespace(o), kube_obj_name(o));
}

static void on_claim_update(struct kube_obj *old, struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;

    note_selected(ctl, o);
    if (claim_unbound(kube_obj_data(o)))
        enqueue_claim(ctl, kube_obj_namespace(o), kube_obj_name(o));
    else if (ctl->ev && claim_unbound(kube_obj_data(old)))
        events_forget(ctl->ev, kube_obj_uid(o));
    check_reservation(ctl, kube_obj_uid(o));
}

static void on_claim_delete(struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;

    if (ctl->ev)
        events_forget(ctl->ev, kube_obj_uid(o));
    prov_metrics_claim_forget(kube_obj_uid(o));
    check_reservation(ctl, kube_obj_uid(o));
}

static void on_volume_add(struct kube_obj *o, void *ud)
{
    enqueue_volume(ud, kube_obj_name(o));
}

static void on_volume_update(struct kube_obj *old, struct kube_obj *o, void *ud)
{
    enqueue_volume(ud, kube_obj_name(o));
}

static void on_volume_delete(struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;
    const struct obj_pv *pv = kube_obj_data(o);

    enqueue_volume(ctl, kube_obj_name(o));
    /* A claim may have been waiting for this volume (an old one of its identity) to go. */
    if (pv->claim_ns && pv->claim_name)
        enqueue_claim(ctl, pv->claim_ns, pv->claim_name);
    if (pv->ann_ns && pv->ann_claim)
        enqueue_claim(ctl, pv->ann_ns, pv->ann_claim);
}

/* Queues every unbound claim, of one namespace (ns) or class (cls) when given. */
static void enqueue_unbound_claims(struct controller *ctl, const char *ns, const char *cls)
{
    struct kube_obj **objs = NULL;
    size_t n = 0;

    if (kube_informer_list(ctl->pvcs, &objs, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct obj_pvc *c = kube_obj_data(objs[i]);

        if (!claim_unbound(c) || (ns && !streq(ns, kube_obj_namespace(objs[i]))) ||
            (cls && !(c->storage_class && streq(c->storage_class, cls))))
            continue;
        enqueue_claim(ctl, kube_obj_namespace(objs[i]), kube_obj_name(objs[i]));
    }
    kube_obj_list_free(objs, n);
}

static void on_class_change(struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;

    if (atomic_load(&ctl->started))
        enqueue_unbound_claims(ctl, NULL, kube_obj_name(o));
}

static void on_class_update(struct kube_obj *old, struct kube_obj *o, void *ud)
{
    on_class_change(o, ud);
}

static void on_set_change(struct kube_obj *o, void *ud)
{
    struct controller *ctl = ud;

    if (atomic_load(&ctl->started))
        enqueue_unbound_claims(ctl, kube_obj_namespace(o), NULL);
}

static void on_set_update(struct kube_obj *old, struct kube_obj *o, void *ud)
{
    on_set_change(o, ud);
}

static void on_informer_error(int r, const ord_err *e, void *ud)
{
    log_debug_errno(r, "informer: %s", err_msg(e));
}

/* ---- lookups ---- */

static bool class_is_ours(struct controller *ctl, const struct obj_sc *sc)
{
    return sc->provisioner && streq(sc->provisioner, ctl->cfg->provisioner_name);
}

/*
 * The claim's identity: a StatefulSet ordinal when the name resolves against the namespace's
 * StatefulSets, else a plain claim. When the name looks like a StatefulSet claim but no
 * StatefulSet of the cache matches, the cache may just be behind the claim (both are created
 * within milliseconds): the StatefulSets are then listed from the API before deciding.
 * Returns 0 and *ret, or a negative errno with a message (-ENOTUNIQ, -EINVAL).
 */
static int resolve_identity(struct controller *ctl, const char *ns, const char *claim, bool ask_api,
                            struct vol_identity *ret, ord_err *e)
{
    struct kube_obj **objs = NULL;
    struct sts_templates *sets = NULL;
    struct ordinal_id oid;
    size_t n = 0, k = 0;
    const char *dash, *dash2;
    int32_t ord;
    int r;

    r = kube_informer_list(ctl->sets, &objs, &n);
    if (r < 0)
        return err_set(e, r, "out of memory");
    sets = calloc(n ? n : 1, sizeof(*sets));
    if (!sets) {
        kube_obj_list_free(objs, n);
        return err_set(e, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const struct obj_sts *s = kube_obj_data(objs[i]);

        if (!streq(kube_obj_namespace(objs[i]), ns))
            continue;
        sets[k].name = kube_obj_name(objs[i]);
        sets[k].templates = (const char *const *)s->templates;
        sets[k].n_templates = s->n_templates;
        k++;
    }
    r = identity_resolve(claim, sets, k, &oid, e);
    free(sets);
    kube_obj_list_free(objs, n);

    /*
     * Looks like <template>-<sts>-<ordinal> (the part before the ordinal holds a dash between
     * two non-empty names): ask the API server, not the cache.
     */
    if (r == IDENTITY_NOT_STS && ask_api && (dash = strrchr(claim, '-')) &&
        identity_parse_ordinal(dash + 1, strlen(dash + 1), &ord) == 0 &&
        (dash2 = memrchr(claim, '-', (size_t)(dash - claim))) && dash2 > claim &&
        dash2 + 1 < dash) {
        _cleanup_(cJSON_Deletep) cJSON *list = NULL;
        const cJSON *it;
        struct obj_sts **decoded;
        size_t nd = 0, cnt;
        ord_err le = {0};

        r = kube_list(ctl->client, &KUBE_RES_STATEFULSETS, ns, NULL, &list, &le);
        if (r < 0)
            return err_set(e, r, "cannot list the StatefulSets of namespace '%s': %s", ns,
                           err_msg(&le));
        cnt = json_array_len(json_path(list, "items"));
        decoded = calloc(cnt ? cnt : 1, sizeof(*decoded));
        sets = calloc(cnt ? cnt : 1, sizeof(*sets));
        if (!decoded || !sets) {
            free(decoded);
            free(sets);
            return err_set(e, -ENOMEM, "out of memory");
        }
        cJSON_ArrayForEach(it, json_path(list, "items"))
        {
            void *d = NULL;
            const char *nm = json_string(it, "metadata.name");

            if (!nm || obj_decode_sts(it, &d, NULL, NULL) < 0)
                continue;
            decoded[nd] = d;
            sets[nd].name = nm;
            sets[nd].templates = (const char *const *)decoded[nd]->templates;
            sets[nd].n_templates = decoded[nd]->n_templates;
            nd++;
        }
        r = identity_resolve(claim, sets, nd, &oid, e);
        for (size_t i = 0; i < nd; i++)
            obj_free_sts(decoded[i]);
        free(decoded);
        free(sets);
    }
    if (r < 0)
        return r;
    if (r == IDENTITY_STS)
        r = vlayout_identity_sts(ret, ns, claim, oid.statefulset, oid.template_name, oid.ordinal);
    else
        r = vlayout_identity_claim(ret, ns, claim);
    if (r < 0)
        return err_set(e, r, "claim '%s' cannot name a directory", claim);
    return 0;
}

/* The identity a PV of ours records in its annotations. Returns 0 or -EINVAL. */
static int pv_identity(const struct obj_pv *pv, const char *claim_hint, struct vol_identity *ret)
{
    if (!pv->ann_ns)
        return -EINVAL;
    if (pv->ann_sts || pv->ann_tmpl) {
        if (!pv->ann_sts || !pv->ann_tmpl || pv->ann_ordinal < 0)
            return -EINVAL;
        return vlayout_identity_sts(ret, pv->ann_ns, claim_hint ? claim_hint : pv->ann_tmpl,
                                    pv->ann_sts, pv->ann_tmpl, pv->ann_ordinal);
    }
    if (!pv->ann_claim)
        return -EINVAL;
    return vlayout_identity_claim(ret, pv->ann_ns, pv->ann_claim);
}

/*
 * The PV (provisioned by us, on any node) that holds the data of identity id, other than
 * `except`. Prefers one not being deleted. Returns a new reference or NULL.
 */
static struct kube_obj *find_identity_volume(struct controller *ctl, const struct vol_identity *id,
                                             const char *except)
{
    struct kube_obj **objs = NULL, *found = NULL;
    size_t n = 0;

    if (kube_informer_list(ctl->pvs, &objs, &n) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct obj_pv *pv = kube_obj_data(objs[i]);
        struct vol_identity pid;

        if (!pv->provisioned_by || !streq(pv->provisioned_by, ctl->cfg->provisioner_name) ||
            (except && streq(kube_obj_name(objs[i]), except)))
            continue;
        if (pv_identity(pv, NULL, &pid) < 0 || !vlayout_identity_eq(&pid, id))
            continue;
        if (!found || ((const struct obj_pv *)kube_obj_data(found))->deleting)
            found = objs[i];
    }
    if (found)
        kube_obj_ref(found);
    kube_obj_list_free(objs, n);
    return found;
}

/* The Node's kubernetes.io/hostname label value into buf. Returns 0 or -ENOENT. */
static int node_hostname(struct controller *ctl, char *buf, size_t size)
{
    _cleanup_(kube_obj_unrefp) struct kube_obj *o = NULL;
    const struct obj_node *node;

    if (kube_informer_get(ctl->node, NULL, ctl->cfg->node_name, &o) < 0)
        return -ENOENT;
    node = kube_obj_data(o);
    /* Without the label the scheduler matches nothing; the name is the kubelet's default. */
    snprintf(buf, size, "%s", node->hostname ? node->hostname : ctl->cfg->node_name);
    return 0;
}

/* Class parameters of a class (decoded). */
static int parse_class(struct controller *ctl, const char *name, const struct obj_sc *sc,
                       struct class_params *ret, ord_err *e)
{
    return class_params_parse(name, sc->params, sc->n_params, &ctl->limits, ret, e);
}

/* ---- claim sync ---- */

struct claim_ctx {
    struct controller *ctl;
    struct kube_obj *obj;
    const struct obj_pvc *pvc;
    const char *ns, *name, *uid;
    struct event_ref ref;
    bool wffc;
};

/*
 * A refusal a person must act on: Event, log line, and with WaitForFirstConsumer the
 * selected-node annotation removed so that the scheduler can pick another node.
 * Returns SYNC_RETRY (the claim is looked at again after backoff).
 */
static int fail_claim(struct claim_ctx *cc, const ord_err *e)
{
    struct controller *ctl = cc->ctl;
    _cleanup_(cJSON_Deletep) cJSON *patch = NULL;
    ord_err pe = {0};
    int r;

    prov_metrics_provision_failed(cc->pvc->storage_class, e->code);
    events_emit(ctl->ev, &cc->ref, true, "ProvisioningFailed", "%s", err_msg(e));
    if (!cc->wffc) {
        log_info("claim %s/%s: provisioning failed: %s", cc->ns, cc->name, err_msg(e));
        return SYNC_RETRY;
    }
    r = pv_build_unselect_patch(kube_obj_resource_version(cc->obj), &patch);
    if (r >= 0)
        r = kube_patch(ctl->client, &KUBE_RES_PERSISTENTVOLUMECLAIMS, cc->ns, cc->name, NULL, patch,
                       NULL, &pe);
    if (r < 0 && r != KUBE_E_CONFLICT && r != KUBE_E_NOT_FOUND) {
        log_warn("claim %s/%s: provisioning failed: %s; and cannot remove %s: %s", cc->ns, cc->name,
                 err_msg(e), ANN_SELECTED_NODE, err_msg(&pe));
        return SYNC_RETRY;
    }
    log_info("claim %s/%s: provisioning failed on this node: %s; removed %s so that the "
             "scheduler picks another node",
             cc->ns, cc->name, err_msg(e), ANN_SELECTED_NODE);
    return SYNC_RETRY;
}

/* The ACCESS_* bits as the API spells them, comma-separated ("none" for no bit). */
static const char *access_modes_format(unsigned modes, char *buf, size_t size)
{
    static const char *const names[] = {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                        "ReadWriteOncePod"};
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        int n;

        if (!(modes & (1u << i)))
            continue;
        n = snprintf(buf + off, size - off, "%s%s", off ? "," : "", names[i]);
        if (n < 0 || (size_t)n >= size - off)
            break;
        off += (size_t)n;
    }
    if (!off)
        snprintf(buf, size, "none");
    return buf;
}

/*
 * Hands a retained PV (pv_obj) of ours to the claim. Returns a SYNC_* value.
 */
static int rebind_retained(struct claim_ctx *cc, struct kube_obj *pv_obj)
{
    struct controller *ctl = cc->ctl;
    const struct obj_pv *pv = kube_obj_data(pv_obj);
    const char *pv_name = kube_obj_name(pv_obj);
    _cleanup_(cJSON_Deletep) cJSON *patch = NULL;
    char q1[QUANTITY_STR_MAX], q2[QUANTITY_STR_MAX];
    ord_err e = {0};
    int r;

    if (pv->claim_uid && streq(pv->claim_uid, cc->uid))
        return SYNC_DONE; /* handed over already; the PV controller completes the bind */
    if (pv->deleting)
        return SYNC_WAIT;
    if (!(pv->storage_class && cc->pvc->storage_class &&
          streq(pv->storage_class, cc->pvc->storage_class))) {
        err_set(&e, -EINVAL,
                "retained volume %s holds this claim's data but has StorageClass '%s', not "
                "'%s'; give the claim that class, or move the data aside and delete the PV",
                pv_name, pv->storage_class ? pv->storage_class : "",
                cc->pvc->storage_class ? cc->pvc->storage_class : "");
        prov_metrics_provision_failed(cc->pvc->storage_class, e.code);
        events_emit(ctl->ev, &cc->ref, true, "ProvisioningFailed", "%s", err_msg(&e));
        log_warn("claim %s/%s: %s", cc->ns, cc->name, err_msg(&e));
        return SYNC_RETRY;
    }
    if (pv->capacity < cc->pvc->request) {
        err_set(&e, -ENOSPC,
                "retained volume %s holds this claim's data but was made for %s and the claim "
                "asks for %s; ask for %s or less",
                pv_name, quantity_format(pv->capacity, q1), quantity_format(cc->pvc->request, q2),
                q1);
        prov_metrics_provision_failed(cc->pvc->storage_class, e.code);
        events_emit(ctl->ev, &cc->ref, true, "ProvisioningFailed", "%s", err_msg(&e));
        log_warn("claim %s/%s: %s", cc->ns, cc->name, err_msg(&e));
        return SYNC_RETRY;
    }
    /*
     * The PV controller binds a pre-bound PV only if it satisfies the claim (findByClaim and
     * FindMatchingVolume: access modes that include the claim's, the same volumeMode); handed
     * a PV that does not, the claim would stay Pending for ever without a word.
     */
    if ((cc->pvc->access_modes & ~pv->access_modes) != 0 || cc->pvc->block != pv->block) {
        char want[64], have[64];

        err_set(&e, -EINVAL,
                "retained volume %s holds this claim's data but offers %s (volumeMode %s) and "
                "the claim asks for %s (volumeMode %s); give the claim the volume's access "
                "modes and volumeMode",
                pv_name, access_modes_format(pv->access_modes, have, sizeof(have)),
                pv->block ? "Block" : "Filesystem",
                access_modes_format(cc->pvc->access_modes, want, sizeof(want)),
                cc->pvc->block ? "Block" : "Filesystem");
        prov_metrics_provision_failed(cc->pvc->storage_class, e.code);
        events_emit(ctl->ev, &cc->ref, true, "ProvisioningFailed", "%s", err_msg(&e));
        log_warn("claim %s/%s: %s", cc->ns, cc->name, err_msg(&e));
        return SYNC_RETRY;
    }
    if (!pv->phase || (!streq(pv->phase, "Released") && !streq(pv->phase, "Available"))) {
        /* Still Bound to the claim's previous incarnation: the PV controller will release it. */
        if (pv->claim_name &&
            !(streq(pv->claim_name, cc->name) && pv->claim_ns && streq(pv->claim_ns, cc->ns)))
            return SYNC_DONE; /* bound to another claim entirely: not ours to take */
        return SYNC_WAIT;
    }
    r = pv_build_rebind_patch(kube_obj_resource_version(pv_obj), cc->ns, cc->name, cc->uid, &patch);
    if (r >= 0)
        r = kube_patch(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, pv_name, NULL, patch, NULL,
                       &e);
    if (r == KUBE_E_CONFLICT || r == KUBE_E_NOT_FOUND)
        return SYNC_WAIT;
    if (r < 0) {
        log_warn("claim %s/%s: cannot hand retained volume %s to it: %s", cc->ns, cc->name, pv_name,
                 err_msg(&e));
        return SYNC_RETRY;
    }
    log_info("claim %s/%s: handed retained volume %s (%s) to it; its data is back", cc->ns,
             cc->name, pv_name, pv->path ? pv->path : "");
    prov_metrics_provision(cc->pvc->storage_class, "success", "retained");
    events_emit(ctl->ev, &cc->ref, false, "ProvisioningSucceeded",
                "Bound to retained volume %s at %s on node %s, with the data it held", pv_name,
                pv->path ? pv->path : "", ctl->cfg->node_name);
    return SYNC_DONE;
}

/*
 * Data at the entry that no PV of ours owns: never handed over silently, never destroyed
 * silently. Returns 0 (nothing there, or moved aside and reported) or a negative errno.
 */
static int orphan_if_present(struct claim_ctx *cc, const struct prov_backend *be,
                             const struct class_params *params, const struct vol_identity *id,
                             const char *path, const char *pv_name, ord_err *e)
{
    struct controller *ctl = cc->ctl;
    char dest[VLAYOUT_REL_MAX];
    int r;

    if (cap_ledger_has_path(ctl->ledger, path, pv_name))
        return -EBUSY; /* a PV of ours, created moments ago, owns it: the cache is behind */
    r = be->exists(&ctl->bctx, params, id);
    if (r <= 0)
        return r;
    /*
     * Before calling data nobody's, ask the API server rather than the caches: the entry may
     * be this very claim's volume, committed by an earlier sync whose PV the informer has not
     * delivered yet.
     */
    {
        ord_err ge = {0};

        r = kube_get(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, pv_name, NULL, &ge);
        if (r == 0)
            return -EBUSY;
        if (r != KUBE_E_NOT_FOUND)
            return -EAGAIN;
    }
    r = be->orphan(&ctl->bctx, params, id, time(NULL), dest, sizeof(dest), e);
    if (r <= 0)
        return r;
    log_warn("claim %s/%s: found data at '%s' that no volume owns; moved it to '%s/%s' instead "
             "of handing it to the claim",
             cc->ns, cc->name, path, params->root, dest);
    events_emit(ctl->ev, &cc->ref, true, "OrphanedDataMoved",
                "Data found at %s on node %s belonged to no PersistentVolume; it was moved to "
                "%s/%s and the claim gets a new, empty volume. Copy back what you need.",
                path, ctl->cfg->node_name, params->root, dest);
    return 0;
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/*
 * Whether a PV of ours (on any node) already holds the data of identity id, and if so what to
 * do: hand it over (Retain, owner node), wait for its reclaim (Delete, owner node), or leave
 * the claim to the owner node. Returns true with the SYNC_* result in *ret, false when no PV
 * holds the identity.
 */
static bool held_decision(struct claim_ctx *cc, const struct vol_identity *id, const char *pv_name,
                          int *ret)
{
    struct controller *ctl = cc->ctl;
    _cleanup_(kube_obj_unrefp) struct kube_obj *held = find_identity_volume(ctl, id, pv_name);
    const struct obj_pv *hpv;

    if (!held)
        return false;
    hpv = kube_obj_data(held);
    if (!hpv->ann_node || !streq(hpv->ann_node, ctl->cfg->node_name)) {
        /*
         * The node that holds the data decides. If that node is gone (or its provisioner
         * is down) nobody ever does, and the claim stays Pending without a word: the node
         * the scheduler picked says why on the claim, and how to free the ordinal. Only a
         * volume no claim holds (Released, Available); one still Bound to the claim's
         * previous incarnation is released by the PV controller in a moment.
         */
        if (cc->wffc && cc->pvc->selected_node &&
            streq(cc->pvc->selected_node, ctl->cfg->node_name) && hpv->phase &&
            (streq(hpv->phase, "Released") || streq(hpv->phase, "Available"))) {
            const char *owner = hpv->ann_node ? hpv->ann_node : "?";
            char what[3 * K8S_NAME_MAX + 32];

            if (id->is_sts)
                snprintf(what, sizeof(what), "%s/%s ordinal %d '%s'", id->ns, id->sts,
                         (int)id->ordinal, id->tmpl);
            else
                snprintf(what, sizeof(what), "claim %s/%s", id->ns, id->claim);

            events_emit(ctl->ev, &cc->ref, true, "VolumeOnOtherNode",
                        "PersistentVolume %s (%s, reclaim %s) on node '%s' holds the data of "
                        "%s, so this claim is not provisioned on node '%s': "
                        "only node '%s' may hand that volume over or remove it. If node '%s' "
                        "is gone for good, free the ordinal: kubectl delete pv %s (this loses "
                        "nothing that did not go with that node; bring the data back with "
                        "ordinal-backup restore); node '%s' then provisions a new, empty "
                        "volume. If node '%s' comes back, its provisioner acts on its own",
                        kube_obj_name(held), hpv->phase,
                        hpv->reclaim == RECLAIM_RETAIN ? "Retain" : "Delete", owner, what,
                        ctl->cfg->node_name, owner, owner,
                        kube_obj_name(held), ctl->cfg->node_name, owner);
            log_warn("claim %s/%s: PersistentVolume %s of node '%s' holds its data; waiting "
                     "for that node, or for the PV to be deleted",
                     cc->ns, cc->name, kube_obj_name(held), owner);
        }
        *ret = SYNC_DONE;
        return true;
    }
    if (hpv->reclaim == RECLAIM_RETAIN) {
        *ret = rebind_retained(cc, held);
        return true;
    }
    /* Reclaim Delete, not yet deleted: wait until the old data is gone. */
    if ((hpv->claim_uid && streq(hpv->claim_uid, cc->uid)) ||
        (cc->wffc &&
         !(cc->pvc->selected_node && streq(cc->pvc->selected_node, ctl->cfg->node_name)))) {
        *ret = SYNC_DONE;
        return true;
    }
    log_debug("claim %s/%s: waiting for volume %s of its previous incarnation to be deleted",
              cc->ns, cc->name, kube_obj_name(held));
    *ret = SYNC_WAIT;
    return true;
}

static int provision(struct claim_ctx *cc, const struct obj_sc *sc)
{
    struct controller *ctl = cc->ctl;
    const struct obj_pvc *pvc = cc->pvc;
    _cleanup_(cJSON_Deletep) cJSON *pv = NULL, *existing = NULL;
    struct class_params params;
    struct vol_identity id;
    struct vol_prepared prep;
    struct vol_request req;
    const struct prov_backend *be;
    char pv_name[K8S_NAME_MAX + 1], hostname[K8S_NAME_MAX + 1], q[QUANTITY_STR_MAX];
    struct timespec t_start, t_create, t_created;
    ord_err e = {0};
    int r;

    clock_gettime(CLOCK_MONOTONIC, &t_start);
    snprintf(pv_name, sizeof(pv_name), "pvc-%s", cc->uid);
    if (pvc->has_selector) {
        err_set(&e, -EINVAL, "claim Selector is not supported by %s; remove spec.selector",
                ctl->cfg->provisioner_name);
        return fail_claim(cc, &e);
    }
    if (!pvc->request_text || pvc->request_bad || pvc->request == 0) {
        err_set(&e, -EINVAL,
                "the claim has no valid storage request ('%s'); set "
                "spec.resources.requests.storage",
                pvc->request_text ? pvc->request_text : "");
        return fail_claim(cc, &e);
    }
    r = parse_class(ctl, pvc->storage_class, sc, &params, &e);
    if (r < 0)
        return fail_claim(cc, &e);
    be = backend_for(params.backend);
    if (!be) {
        err_set(&e, -EOPNOTSUPP,
                "StorageClass '%s': backend '%s' is not available in this provisioner build; "
                "use backend 'directory'",
                pvc->storage_class, vol_backend_kind_name(params.backend));
        return fail_claim(cc, &e);
    }
    r = resolve_identity(ctl, cc->ns, cc->name, true, &id, &e);
    if (r < 0)
        return fail_claim(cc, &e);
    /*
     * The identity may differ from the one sync_claim() found in the caches (a StatefulSet
     * re-created a moment ago): look again for a PV that holds its data.
     */
    if (held_decision(cc, &id, pv_name, &r))
        return r;
    r = node_hostname(ctl, hostname, sizeof(hostname));
    if (r < 0) {
        err_set(&e, r,
                "Node '%s' does not exist; start the provisioner with the Node's name "
                "(--node-name)",
                ctl->cfg->node_name);
        return fail_claim(cc, &e);
    }

    req = (struct vol_request){.params = &params,
                               .id = &id,
                               .claim_uid = cc->uid,
                               .pv_name = pv_name,
                               .request = pvc->request,
                               .block = pvc->block};
    {
        char path[BACKEND_PATH_MAX];

        if (backend_entry_path(params.root, &id, path, sizeof(path)) < 0) {
            err_set(&e, -ENAMETOOLONG, "the volume path under '%s' is too long", params.root);
            return fail_claim(cc, &e);
        }
        r = orphan_if_present(cc, be, &params, &id, path, pv_name, &e);
        if (r == -EBUSY)
            return SYNC_WAIT;
        if (r == -EAGAIN)
            return SYNC_RETRY;
        if (r < 0) {
            err_wrap(&e, r, "cannot move the data found at '%s' aside", path);
            return fail_claim(cc, &e);
        }
    }
    r = be->prepare(&ctl->bctx, &req, &prep, &e);
    if (r < 0)
        return fail_claim(cc, &e);

    {
        struct pv_spec spec = {
            .name = pv_name,
            .provisioner = ctl->cfg->provisioner_name,
            .node_name = ctl->cfg->node_name,
            .hostname = hostname,
            .id = &id,
            .root = params.root,
            .path = prep.path,
            .claim_uid = cc->uid,
            .claim_rv = NULL,
            .capacity = prep.capacity ? prep.capacity : pvc->request,
            .access_modes = pvc->access_modes,
            .block = pvc->block,
            .reclaim = sc->reclaim,
            .storage_class = pvc->storage_class,
            .mount_options = sc->mount_options,
            .n_mount_options = sc->n_mount_options,
            .pv_type = params.pv_type,
            .device = prep.device[0] ? prep.device : NULL,
            .device_id = prep.device_id,
            .fs_type = params.fs_type,
        };

        r = pv_build(&spec, &pv);
        if (r < 0) {
            be->abort(&ctl->bctx, &req);
            return SYNC_RETRY;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t_create);
    r = kube_create(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, pv, NULL, &e);
    clock_gettime(CLOCK_MONOTONIC, &t_created);
    log_debug("claim %s/%s: prepare %.1f ms, PV create %.1f ms", cc->ns, cc->name,
              ms_between(&t_start, &t_create), ms_between(&t_create, &t_created));
    if (r == KUBE_E_ALREADY_EXISTS) {
        /* Ours from an earlier attempt whose answer was lost, or another node won the race. */
        void *dec = NULL;
        ord_err ge = {0};

        r = kube_get(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, pv_name, &existing, &ge);
        if (r == 0 && obj_decode_pv(existing, &dec, NULL, NULL) == 0) {
            bool ours = obj_pv_is_ours(dec, ctl->cfg->provisioner_name, ctl->cfg->node_name);
            char *winner = ((struct obj_pv *)dec)->ann_node;

            if (!ours) {
                log_info("claim %s/%s: node %s created %s first; removing this node's "
                         "directory",
                         cc->ns, cc->name, winner ? winner : "?", pv_name);
                obj_free_pv(dec);
                be->abort(&ctl->bctx, &req);
                return SYNC_DONE;
            }
            obj_free_pv(dec);
            r = 0;
        } else {
            log_warn("claim %s/%s: %s exists but cannot be read: %s", cc->ns, cc->name, pv_name,
                     err_msg(&ge));
            return SYNC_RETRY;
        }
    } else if (r == KUBE_E_INVALID || r == KUBE_E_FORBIDDEN || r == KUBE_E_BAD_REQUEST) {
        be->abort(&ctl->bctx, &req);
        err_wrap(&e, r, "the API server refused PersistentVolume %s", pv_name);
        return fail_claim(cc, &e);
    } else if (r < 0) {
        /*
         * The server may or may not have created it: keep the pending directory (it names the
         * claim) and look again; the PV's name makes the retry idempotent.
         */
        log_warn("claim %s/%s: cannot create %s yet: %s", cc->ns, cc->name, pv_name, err_msg(&e));
        prov_metrics_provision_failed(pvc->storage_class, r);
        return SYNC_RETRY;
    }
    prov_metrics_claim_created(cc->uid, pvc->storage_class);
    prov_metrics_provision(pvc->storage_class, "success", "created");
    r = be->commit(&ctl->bctx, &req, &e);
    if (r < 0) {
        log_error("claim %s/%s: created %s but cannot move its directory into place: %s; will "
                  "retry",
                  cc->ns, cc->name, pv_name, err_msg(&e));
        enqueue_volume(ctl, pv_name);
        return SYNC_RETRY;
    }
    if (prep.device[0]) {
        log_info("claim %s/%s: provisioned %s at '%s' -> device %s (%s, %s, reclaim %s)", cc->ns,
                 cc->name, pv_name, prep.path, prep.device, quantity_format(prep.capacity, q),
                 pvc->block ? "Block" : params.fs_type, reclaim_policy_name(sc->reclaim));
        events_emit(ctl->ev, &cc->ref, false, "ProvisioningSucceeded",
                    "Successfully provisioned volume %s on device %s (%s) at %s on node %s",
                    pv_name, prep.device, q, prep.path, ctl->cfg->node_name);
        return SYNC_DONE;
    }
    log_info("claim %s/%s: provisioned %s at '%s' (%s, %s, reclaim %s)", cc->ns, cc->name, pv_name,
             prep.path, quantity_format(pvc->request, q), pv_type_name(params.pv_type),
             reclaim_policy_name(sc->reclaim));
    events_emit(ctl->ev, &cc->ref, false, "ProvisioningSucceeded",
                "Successfully provisioned volume %s at %s on node %s", pv_name, prep.path,
                ctl->cfg->node_name);
    return SYNC_DONE;
}

static int sync_claim(struct controller *ctl, const char *ns, const char *name)
{
    _cleanup_(kube_obj_unrefp) struct kube_obj *o = NULL, *sco = NULL, *pvo = NULL;
    const struct obj_pvc *pvc;
    const struct obj_sc *sc;
    struct claim_ctx cc;
    char pv_name[K8S_NAME_MAX + 1];
    int r;

    if (kube_informer_get(ctl->pvcs, ns, name, &o) < 0)
        return SYNC_DONE;
    pvc = kube_obj_data(o);
    if (!claim_unbound(pvc) || !pvc->provisioner ||
        !streq(pvc->provisioner, ctl->cfg->provisioner_name) || !pvc->storage_class)
        return SYNC_DONE;
    if (kube_informer_get(ctl->classes, NULL, pvc->storage_class, &sco) < 0)
        return SYNC_DONE; /* the class informer requeues the claim when the class appears */
    sc = kube_obj_data(sco);
    if (!class_is_ours(ctl, sc))
        return SYNC_DONE;

    cc = (struct claim_ctx){
        .ctl = ctl,
        .obj = o,
        .pvc = pvc,
        .ns = ns,
        .name = name,
        .uid = kube_obj_uid(o),
        .wffc = sc->wait_for_consumer,
        .ref = {.kind = "PersistentVolumeClaim", .ns = ns, .name = name, .uid = kube_obj_uid(o)},
    };
    snprintf(pv_name, sizeof(pv_name), "pvc-%s", cc.uid);
    if (kube_informer_get(ctl->pvs, NULL, pv_name, &pvo) == 0)
        return SYNC_DONE; /* provisioned; the PV controller binds */

    /* Data of this identity already held by a PV of ours? (identity from the caches) */
    {
        struct vol_identity id;
        ord_err e = {0};

        if (resolve_identity(ctl, ns, name, false, &id, &e) == 0 &&
            held_decision(&cc, &id, pv_name, &r))
            return r;
    }
    if (cc.wffc && !(pvc->selected_node && streq(pvc->selected_node, ctl->cfg->node_name)))
        return SYNC_DONE;
    inflight_set(ctl, pv_name, true);
    r = provision(&cc, sc);
    inflight_set(ctl, pv_name, false);
    /*
     * An attempt that ends without a PV may leave its reservation for the retry (ambiguous
     * create failures). The claim may have gone while the attempt ran, after its delete was
     * handled: look again now that the attempt is over.
     */
    if (r != SYNC_DONE)
        check_reservation(ctl, cc.uid);
    return r;
}

/* ---- volume sync ---- */

/* Class-like parameters of a PV of ours, from its annotations, checked against our roots. */
static int volume_params(struct controller *ctl, const char *pv_name, const struct obj_pv *pv,
                         struct class_params *ret, struct vol_identity *ret_id, ord_err *e)
{
    struct class_kv kv[1] = {{"root", pv->ann_root}};
    char path[BACKEND_PATH_MAX];
    int r;

    if (!pv->ann_root || pv_identity(pv, NULL, ret_id) < 0)
        return err_set(e, -EINVAL, "PV %s lacks the ordinal.dev annotations", pv_name);
    r = class_params_parse(pv_name, kv, 1, &ctl->limits, ret, e);
    if (r < 0)
        return r;
    r = backend_entry_path(ret->root, ret_id, path, sizeof(path));
    if (r < 0 || !pv->path || !streq(pv->path, path))
        return err_set(e, -EINVAL,
                       "PV %s names path '%s' but its annotations say '%s'; not touching it",
                       pv_name, pv->path ? pv->path : "", path);
    return 0;
}

/*
 * Whether the claim of uid still wants this node to provision it: what sync_claim() checks
 * before it calls provision(). Its reservation is kept for the retry then.
 */
static bool claim_wants_here(struct controller *ctl, const char *uid)
{
    _cleanup_(kube_obj_unrefp) struct kube_obj *sco = NULL;
    struct kube_obj **objs = NULL;
    const struct obj_pvc *pvc = NULL;
    size_t n = 0;
    bool wants = false;

    if (kube_informer_list(ctl->pvcs, &objs, &n) < 0)
        return true; /* cannot tell: keep it, the resync looks again */
    for (size_t i = 0; i < n && !pvc; i++)
        if (kube_obj_uid(objs[i]) && streq(kube_obj_uid(objs[i]), uid))
            pvc = kube_obj_data(objs[i]);
    if (pvc && claim_unbound(pvc) && pvc->provisioner &&
        streq(pvc->provisioner, ctl->cfg->provisioner_name) && pvc->storage_class &&
        kube_informer_get(ctl->classes, NULL, pvc->storage_class, &sco) == 0) {
        const struct obj_sc *sc = kube_obj_data(sco);

        wants = class_is_ours(ctl, sc) &&
                (!sc->wait_for_consumer ||
                 (pvc->selected_node && streq(pvc->selected_node, ctl->cfg->node_name)));
    }
    kube_obj_list_free(objs, n);
    return wants;
}

/*
 * PV `name` is not in the cache but the ledger holds a reservation for it: an attempt that
 * ended without knowing whether the PV was created (a transient create failure). Kept while
 * the attempt runs or the claim still wants this node; otherwise released once the API server
 * says the PV does not exist (if it does, its informer event makes the promise the PV's). Only
 * memory changes: the pending directory stays for the next start's repair, so a PV that the
 * server created after all still finds its directory (sync_volume commits it).
 */
static int sync_reservation(struct controller *ctl, const char *name)
{
    ord_err e = {0};
    bool released = false;
    int r;

    if (inflight_has(ctl, name))
        return SYNC_DONE; /* sync_claim looks again when the attempt ends */
    if (strncmp(name, "pvc-", 4) == 0 && claim_wants_here(ctl, name + 4))
        return SYNC_DONE;
    r = kube_get(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, name, NULL, &e);
    if (r == 0)
        return SYNC_DONE;
    if (r != KUBE_E_NOT_FOUND) {
        log_debug("volume %s: cannot tell whether it exists yet: %s", name, err_msg(&e));
        return SYNC_RETRY;
    }
    /*
     * Under the in-flight lock: an attempt of the same claim that started meanwhile (a worker
     * that read the claim just before it went) keeps what it reserves; when it ends, sync_claim
     * queues this check again.
     */
    pthread_mutex_lock(&ctl->inflight_lock);
    if (!inflight_has_locked(ctl, name) && cap_ledger_unreserve(ctl->ledger, name)) {
        dev_pool_forget(ctl->devs, name);
        released = true;
    }
    pthread_mutex_unlock(&ctl->inflight_lock);
    if (released)
        log_info("volume %s: released the capacity reserved for it; its claim no longer needs "
                 "this node and the PV was never created",
                 name);
    return SYNC_DONE;
}

static int sync_volume(struct controller *ctl, const char *name)
{
    _cleanup_(kube_obj_unrefp) struct kube_obj *o = NULL;
    const struct obj_pv *pv;
    struct class_params params;
    struct vol_identity id;
    const struct prov_backend *be;
    struct stat st;
    ord_err e = {0};
    int r;

    if (kube_informer_get(ctl->pvs, NULL, name, &o) < 0) {
        if (cap_ledger_is_reserved(ctl->ledger, name))
            return sync_reservation(ctl, name);
        cap_ledger_remove(ctl->ledger, name);
        dev_pool_forget(ctl->devs, name);
        return SYNC_DONE;
    }
    pv = kube_obj_data(o);
    if (!obj_pv_is_ours(pv, ctl->cfg->provisioner_name, ctl->cfg->node_name)) {
        cap_ledger_remove(ctl->ledger, name);
        dev_pool_forget(ctl->devs, name);
        return SYNC_DONE;
    }
    r = volume_params(ctl, name, pv, &params, &id, &e);
    if (r < 0) {
        log_warn("volume %s: %s", name, err_msg(&e));
        return SYNC_DONE;
    }
    /* A PV that names a device is the device backend's; its device is taken while it exists. */
    be = pv->ann_device ? &dev_backend : &dir_backend;
    if (pv->ann_device) {
        dev_t rdev = 0;

        if (pv->ann_device_id && blk_parse_devid(pv->ann_device_id, &rdev) == 0)
            (void)dev_pool_own(ctl->devs, name, pv->ann_device, rdev);
        else
            log_warn("volume %s: annotation %s '%s' is not major:minor", name, ANN_ORD_DEVICE_ID,
                     pv->ann_device_id ? pv->ann_device_id : "");
    }
    /* A device volume promises nothing on the root's filesystem; the entry is only a symlink. */
    if (stat(params.root, &st) == 0)
        (void)cap_ledger_set_pv(ctl->ledger, name, st.st_dev, pv->ann_device ? 0 : pv->capacity,
                                pv->path);

    /* Complete a create that was interrupted between the PV and the rename. */
    if (!pv->deleting && strncmp(name, "pvc-", 4) == 0 && !inflight_has(ctl, name) &&
        be->exists(&ctl->bctx, &params, &id) == 0) {
        struct vol_request req = {
            .params = &params, .id = &id, .claim_uid = name + 4, .pv_name = name};

        if (be->commit(&ctl->bctx, &req, &e) == 0)
            log_info("volume %s: moved its directory into place at '%s' (finishing an "
                     "interrupted create)",
                     name, pv->path);
        else if (!(pv->phase && streq(pv->phase, "Released")))
            log_warn("volume %s: its directory '%s' is missing: %s", name, pv->path, err_msg(&e));
    }

    if (pv->phase && streq(pv->phase, "Released") && pv->reclaim == RECLAIM_DELETE &&
        !pv->deleting) {
        struct kube_delete_opts dopts = {.precondition_uid = kube_obj_uid(o),
                                         .grace_period_seconds = -1};
        struct event_ref ref = {.kind = "PersistentVolume", .name = name, .uid = kube_obj_uid(o)};
        struct vol_owned vol = {.pv_name = name,
                                .device = pv->ann_device,
                                .device_id = pv->ann_device_id,
                                .capacity = pv->capacity,
                                .block = pv->block,
                                .fs_type = pv->fs_type};

        err_clear(&e);
        r = be->release(&ctl->bctx, &params, &id, &vol, &e);
        if (r < 0) {
            prov_metrics_delete(pv->storage_class, r);
            log_warn("volume %s: cannot remove '%s': %s", name, pv->path, err_msg(&e));
            events_emit(ctl->ev, &ref, true, "VolumeFailedDelete",
                        "Cannot remove %s on node %s: %s%s", pv->path, ctl->cfg->node_name,
                        err_msg(&e),
                        r == -EXDEV ? " (a mount inside the volume was left alone; unmount it "
                                      "and the removal completes)"
                                    : "");
            return SYNC_RETRY;
        }
        r = kube_delete(ctl->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, name, &dopts, NULL, &e);
        if (r < 0 && r != KUBE_E_NOT_FOUND && r != KUBE_E_CONFLICT) {
            log_warn("volume %s: removed '%s' but cannot delete the PV yet: %s", name, pv->path,
                     err_msg(&e));
            prov_metrics_delete(pv->storage_class, r);
            return SYNC_RETRY;
        }
        prov_metrics_delete(pv->storage_class, 0);
        cap_ledger_remove(ctl->ledger, name);
        log_info("volume %s: released by %s/%s; removed '%s' and deleted the PV", name,
                 pv->claim_ns ? pv->claim_ns : "?", pv->claim_name ? pv->claim_name : "?",
                 pv->path);
    }
    return SYNC_DONE;
}

/* ---- startup repair ---- */

/* Handles one ".pending-<uid>" directory found in dirfd at startup. */
static void repair_pending(struct controller *ctl, int dirfd, const char *where, const char *entry,
                           struct kube_obj **claims, size_t n_claims)
{
    _cleanup_(kube_obj_unrefp) struct kube_obj *pvo = NULL;
    const char *uid = entry + strlen(VLAYOUT_PENDING_PREFIX);
    char pv_name[K8S_NAME_MAX + 1];

    snprintf(pv_name, sizeof(pv_name), "pvc-%s", uid);
    if (kube_informer_get(ctl->pvs, NULL, pv_name, &pvo) == 0 &&
        obj_pv_is_ours(kube_obj_data(pvo), ctl->cfg->provisioner_name, ctl->cfg->node_name)) {
        enqueue_volume(ctl, pv_name); /* sync_volume completes the rename */
        return;
    }
    if (!pvo)
        for (size_t i = 0; i < n_claims; i++)
            if (streq(kube_obj_uid(claims[i]), uid) && claim_unbound(kube_obj_data(claims[i]))) {
                /* The claim still waits: provisioning resumes and reuses the directory. */
                enqueue_claim(ctl, kube_obj_namespace(claims[i]), kube_obj_name(claims[i]));
                return;
            }
    /*
     * Nobody will ever use it: it was never handed to a pod, so it is empty (a directory) or
     * only names a device that nobody wrote to (the device backend's symlink).
     */
    if (unlinkat(dirfd, entry, AT_REMOVEDIR) == 0 ||
        (errno == ENOTDIR && unlinkat(dirfd, entry, 0) == 0))
        log_info("removed '%s/%s', left by an interrupted create whose claim no longer needs it",
                 where, entry);
    else
        log_warn("cannot remove '%s/%s' (left by an interrupted create): %m", where, entry);
}

/* Scans one directory of the layout (a parent of entries) for pending entries. */
static void scan_parent(struct controller *ctl, int dirfd, const char *where,
                        struct kube_obj **claims, size_t n_claims)
{
    _cleanup_close_ int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (!d)
        return;
    TAKE_FD(fd);
    while ((de = readdir(d)))
        if (strncmp(de->d_name, VLAYOUT_PENDING_PREFIX, strlen(VLAYOUT_PENDING_PREFIX)) == 0)
            repair_pending(ctl, dirfd, where, de->d_name, claims, n_claims);
    closedir(d);
}

/* Calls fn for each subdirectory (not starting with '.') of dirfd. */
static void for_each_subdir(int dirfd, void (*fn)(int fd, const char *name, void *ud), void *ud)
{
    _cleanup_close_ int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (!d)
        return;
    TAKE_FD(fd);
    while ((de = readdir(d))) {
        _cleanup_close_ int sub = -EBADF;

        if (de->d_name[0] == '.')
            continue;
        sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            fn(sub, de->d_name, ud);
    }
    closedir(d);
}

struct scan_state {
    struct controller *ctl;
    struct kube_obj **claims;
    size_t n_claims;
    const char *root;
};

static void scan_ordinal(int fd, const char *name, void *ud)
{
    struct scan_state *s = ud;

    scan_parent(s->ctl, fd, s->root, s->claims, s->n_claims);
}

static void scan_set(int fd, const char *name, void *ud)
{
    struct scan_state *s = ud;

    if (streq(name, VLAYOUT_CLAIMS_DIR))
        scan_parent(s->ctl, fd, s->root, s->claims, s->n_claims);
    else
        for_each_subdir(fd, scan_ordinal, ud);
}

static void scan_namespace(int fd, const char *name, void *ud)
{
    for_each_subdir(fd, scan_set, ud);
}

/*
 * Finds what a crash left behind in one root: pending directories are completed, resumed or
 * removed (repair_pending). Entries without a PV are left for the claim that wants them
 * (which moves them aside), so that nothing is moved while the caches could be behind.
 */
static void repair_root(struct controller *ctl, const char *allowed, const char *root)
{
    _cleanup_close_ int fd = -EBADF;
    struct scan_state s = {.ctl = ctl, .root = root};

    if (vlayout_open_root(allowed, root, false, &fd, NULL) < 0)
        return;
    if (kube_informer_list(ctl->pvcs, &s.claims, &s.n_claims) < 0)
        return;
    for_each_subdir(fd, scan_namespace, &s);
    kube_obj_list_free(s.claims, s.n_claims);
}

/* Repairs every root a class of ours or a PV of ours names, and --root. */
static void repair_all(struct controller *ctl)
{
    struct kube_obj **objs = NULL;
    size_t n = 0;
    ord_err e = {0};
    struct class_params p;
    struct class_kv kv[1] = {{"root", ctl->default_root}};

    if (class_params_parse("--root", kv, 1, &ctl->limits, &p, &e) == 0)
        repair_root(ctl, p.allowed_root, p.root);
    if (kube_informer_list(ctl->classes, &objs, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            const struct obj_sc *sc = kube_obj_data(objs[i]);

            if (class_is_ours(ctl, sc) &&
                parse_class(ctl, kube_obj_name(objs[i]), sc, &p, &e) == 0 &&
                !streq(p.root, ctl->default_root))
                repair_root(ctl, p.allowed_root, p.root);
        }
        kube_obj_list_free(objs, n);
    }
}

/* ---- workers ---- */

static void resync(struct controller *ctl)
{
    struct kube_obj **objs = NULL;
    size_t n = 0;

    enqueue_unbound_claims(ctl, NULL, NULL);
    if (kube_informer_list(ctl->pvs, &objs, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (obj_pv_is_ours(kube_obj_data(objs[i]), ctl->cfg->provisioner_name,
                               ctl->cfg->node_name))
                enqueue_volume(ctl, kube_obj_name(objs[i]));
        kube_obj_list_free(objs, n);
    }
    /* Reservations whose claim went away unnoticed (a missed event) are looked at too. */
    {
        char **names = NULL;

        n = 0;
        if (cap_ledger_reservations(ctl->ledger, &names, &n) == 0) {
            for (size_t i = 0; i < n; i++) {
                enqueue_volume(ctl, names[i]);
                free(names[i]);
            }
            free(names);
        }
    }
}

static void process(struct controller *ctl, const char *key)
{
    int res = SYNC_DONE;

    if (strncmp(key, "c/", 2) == 0) {
        char ns[K8S_NAME_MAX + 1];
        const char *slash = strchr(key + 2, '/');

        if (slash && (size_t)(slash - key - 2) < sizeof(ns)) {
            memcpy(ns, key + 2, (size_t)(slash - key - 2));
            ns[slash - key - 2] = '\0';
            res = sync_claim(ctl, ns, slash + 1);
        }
    } else if (strncmp(key, "v/", 2) == 0) {
        res = sync_volume(ctl, key + 2);
    } else if (streq(key, DEVICES_KEY)) {
        dev_pool_refresh(ctl->devs, ctl->cfg->device_dirs.v, ctl->cfg->device_dirs.n);
        (void)wq_add_after(ctl->q, DEVICES_KEY, DEVICES_MS);
        return;
    } else if (streq(key, RESYNC_KEY)) {
        resync(ctl);
        (void)wq_add_after(ctl->q, RESYNC_KEY, (long)ctl->cfg->resync_seconds * 1000);
        return;
    }
    if (res == SYNC_DONE)
        wq_forget(ctl->q, key);
    else if (res == SYNC_WAIT)
        (void)wq_add_after(ctl->q, key, WAIT_RETRY_MS);
    else
        (void)wq_add_after(ctl->q, key, wq_backoff(ctl->q, key));
}

static void *worker_main(void *arg)
{
    struct controller *ctl = arg;
    char *key;

    while (wq_get(ctl->q, &key) == 0) {
        process(ctl, key);
        wq_done(ctl->q, key);
        free(key);
    }
    return NULL;
}

/*
 * A device of a --device-dir disappeared or came back: one log line, and a Warning Event on
 * the PV that owns it, or on this Node when it was free (a person looks there first).
 */
static void on_device_report(const struct dev_report *rep, void *ud)
{
    struct controller *ctl = ud;
    _cleanup_(kube_obj_unrefp) struct kube_obj *o = NULL;
    struct event_ref ref = {0};
    char q[QUANTITY_STR_MAX];

    if (rep->back) {
        log_info("device %s (%s) in '%s' is back", rep->path, rep->devname, rep->dir);
        return;
    }
    log_warn("device %s (%s, %s) in '%s' %s%s%s", rep->path, rep->devname,
             quantity_format(rep->size, q), rep->dir, rep->why,
             rep->owner ? "; it holds volume " : " (it was free)", rep->owner ? rep->owner : "");
    if (rep->owner && kube_informer_get(ctl->pvs, NULL, rep->owner, &o) == 0)
        ref = (struct event_ref){
            .kind = "PersistentVolume", .name = rep->owner, .uid = kube_obj_uid(o)};
    else if (kube_informer_get(ctl->node, NULL, ctl->cfg->node_name, &o) == 0)
        ref =
            (struct event_ref){.kind = "Node", .name = ctl->cfg->node_name, .uid = kube_obj_uid(o)};
    if (ref.kind)
        events_emit(ctl->ev, &ref, true, "DeviceMissing",
                    "Device %s (%s, %s) of --device-dir %s on node %s %s%s%s", rep->path,
                    rep->devname, q, rep->dir, ctl->cfg->node_name, rep->why,
                    rep->owner ? "; it holds volume " : "; it was free and is no longer offered",
                    rep->owner ? rep->owner : "");
}

/* ---- lifecycle ---- */

static int new_informer(struct controller *ctl, const struct kube_res *res,
                        const char *field_selector,
                        int (*decode)(const cJSON *, void **, ord_err *, void *),
                        void (*free_data)(void *), void (*on_add)(struct kube_obj *, void *),
                        void (*on_update)(struct kube_obj *, struct kube_obj *, void *),
                        void (*on_delete)(struct kube_obj *, void *), struct kube_informer **ret,
                        ord_err *e)
{
    struct kube_informer_opts o = {
        .res = res,
        .field_selector = field_selector,
        .decode = decode,
        .free_data = free_data,
        .on_add = on_add,
        .on_update = on_update,
        .on_delete = on_delete,
        .on_error = on_informer_error,
        .userdata = ctl,
    };

    return kube_informer_new(ctl->client, &o, ret, e);
}

int controller_new(struct kube_client *c, const struct prov_config *cfg, struct controller **ret,
                   ord_err *e)
{
    _cleanup_(controller_freep) struct controller *ctl = calloc(1, sizeof(*ctl));
    char norm[CLASS_PATH_MAX], selector[K8S_NAME_MAX + 32];
    int r;

    if (!ctl)
        return -ENOMEM;
    ctl->cfg = cfg;
    ctl->client = c;
    pthread_mutex_init(&ctl->inflight_lock, NULL);
    if (class_path_normalize(cfg->root, norm) < 0)
        return err_set(e, -EINVAL, "--root '%s' must be an absolute path without . or ..",
                       cfg->root);
    for (size_t i = 0; i < cfg->allowed_roots.n; i++)
        if (class_path_normalize(cfg->allowed_roots.v[i], norm + 0) < 0)
            return err_set(e, -EINVAL,
                           "--allowed-root '%s' must be an absolute path without . or ..",
                           cfg->allowed_roots.v[i]);
    class_path_normalize(cfg->root, norm);
    if (!(ctl->default_root = strdup(norm)))
        return -ENOMEM;
    ctl->limits = (struct class_limits){
        .default_root = ctl->default_root,
        .allowed_roots = cfg->allowed_roots.v,
        .n_allowed_roots = cfg->allowed_roots.n,
        .device_dirs = cfg->device_dirs.v,
        .n_device_dirs = cfg->device_dirs.n,
    };
    if ((r = wq_new(500, 300000, &ctl->q)) < 0 || (r = cap_ledger_new(&ctl->ledger)) < 0 ||
        (r = dev_pool_new(on_device_report, ctl, &ctl->devs)) < 0 ||
        (r = events_new(c, cfg->provisioner_name, cfg->node_name, &ctl->ev)) < 0)
        return err_set(e, r, "out of memory");
    ctl->bctx = (struct backend_ctx){.ledger = ctl->ledger,
                                     .devs = ctl->devs,
                                     .device_dirs = cfg->device_dirs.v,
                                     .n_device_dirs = cfg->device_dirs.n};
    snprintf(selector, sizeof(selector), "metadata.name=%s", cfg->node_name);
    if ((r = new_informer(ctl, &KUBE_RES_PERSISTENTVOLUMECLAIMS, NULL, obj_decode_pvc, obj_free_pvc,
                          on_claim_add, on_claim_update, on_claim_delete, &ctl->pvcs, e)) < 0 ||
        (r = new_informer(ctl, &KUBE_RES_PERSISTENTVOLUMES, NULL, obj_decode_pv, obj_free_pv,
                          on_volume_add, on_volume_update, on_volume_delete, &ctl->pvs, e)) < 0 ||
        (r = new_informer(ctl, &KUBE_RES_STORAGECLASSES, NULL, obj_decode_sc, obj_free_sc,
                          on_class_change, on_class_update, NULL, &ctl->classes, e)) < 0 ||
        (r = new_informer(ctl, &KUBE_RES_STATEFULSETS, NULL, obj_decode_sts, obj_free_sts,
                          on_set_change, on_set_update, NULL, &ctl->sets, e)) < 0 ||
        (r = new_informer(ctl, &KUBE_RES_NODES, selector, obj_decode_node, obj_free_node, NULL,
                          NULL, NULL, &ctl->node, e)) < 0)
        return r;
    *ret = TAKE_PTR(ctl);
    return 0;
}

bool controller_healthy(struct controller *ctl)
{
    struct kube_informer *infs[] = {ctl->node, ctl->classes, ctl->sets, ctl->pvs, ctl->pvcs};

    for (size_t i = 0; i < ARRAY_SIZE(infs); i++)
        if (!kube_informer_synced(infs[i]))
            return false;
    return true;
}

int controller_start(struct controller *ctl, ord_err *e)
{
    struct kube_informer *infs[] = {ctl->node, ctl->classes, ctl->sets, ctl->pvs, ctl->pvcs};
    char hostname[K8S_NAME_MAX + 1];
    int r;

    for (size_t i = 0; i < ARRAY_SIZE(infs); i++) {
        r = kube_informer_start(infs[i], e);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ARRAY_SIZE(infs); i++) {
        r = kube_informer_wait_synced(infs[i], -1);
        if (r < 0)
            return err_set(e, r, "cannot fill the caches from the API server");
    }
    if (node_hostname(ctl, hostname, sizeof(hostname)) < 0)
        log_warn("Node '%s' does not exist (yet); claims wait until it does", ctl->cfg->node_name);
    else
        log_info("serving node %s (hostname label '%s'), root '%s', provisioner %s; %zu volumes "
                 "known",
                 ctl->cfg->node_name, hostname, ctl->default_root, ctl->cfg->provisioner_name,
                 kube_informer_count(ctl->pvs));
    /* Volumes first, so that the capacity ledger is full before any claim is looked at. */
    {
        struct kube_obj **objs = NULL;
        size_t n = 0;

        if (kube_informer_list(ctl->pvs, &objs, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                (void)sync_volume(ctl, kube_obj_name(objs[i]));
            kube_obj_list_free(objs, n);
        }
    }
    repair_all(ctl);
    atomic_store(&ctl->started, true);
    resync(ctl);
    (void)wq_add_after(ctl->q, RESYNC_KEY, (long)ctl->cfg->resync_seconds * 1000);
    if (ctl->cfg->device_dirs.n) {
        /* What is there now is the baseline; later refreshes report what disappears. */
        dev_pool_refresh(ctl->devs, ctl->cfg->device_dirs.v, ctl->cfg->device_dirs.n);
        (void)wq_add_after(ctl->q, DEVICES_KEY, DEVICES_MS);
    }
    for (size_t i = 0; i < ctl->cfg->workers && i < MAX_WORKERS; i++) {
        r = pthread_create(&ctl->workers[i], NULL, worker_main, ctl);
        if (r != 0)
            return err_set_errno(e, -r, "cannot start a worker thread");
        ctl->n_workers++;
    }
    return 0;
}

void controller_capacity(struct controller *ctl, void (*fn)(const struct prov_capacity *, void *),
                         void *ud)
{
    struct kube_obj **objs = NULL;
    size_t n = 0;

    if (!ctl || !atomic_load(&ctl->started) || kube_informer_list(ctl->classes, &objs, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct obj_sc *sc = kube_obj_data(objs[i]);
        struct class_params p;
        struct statvfs sv;
        struct stat st;
        ord_err e = {0};

        if (!class_is_ours(ctl, sc) || parse_class(ctl, kube_obj_name(objs[i]), sc, &p, &e) < 0 ||
            p.backend != VOL_BACKEND_DIRECTORY || stat(p.root, &st) < 0 ||
            statvfs(p.root, &sv) < 0)
            continue;
        fn(&(struct prov_capacity){
               .storageclass = kube_obj_name(objs[i]),
               .capacity = (uint64_t)sv.f_blocks * (uint64_t)sv.f_frsize,
               .promised = cap_ledger_promised(ctl->ledger, st.st_dev, NULL),
               .free = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize,
           },
           ud);
    }
    kube_obj_list_free(objs, n);
}

void controller_free(struct controller *ctl)
{
    if (!ctl)
        return;
    if (ctl->q)
        wq_shutdown(ctl->q);
    for (size_t i = 0; i < ctl->n_workers; i++)
        pthread_join(ctl->workers[i], NULL);
    kube_informer_free(ctl->pvcs);
    kube_informer_free(ctl->pvs);
    kube_informer_free(ctl->classes);
    kube_informer_free(ctl->sets);
    kube_informer_free(ctl->node);
    wq_free(ctl->q);
    events_free(ctl->ev);
    cap_ledger_free(ctl->ledger);
    dev_pool_free(ctl->devs);
    free(ctl->default_root);
    pthread_mutex_destroy(&ctl->inflight_lock);
    free(ctl);
}
