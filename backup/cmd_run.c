/*
 * cmd_run.c - "ordinal-backup run": the coordinator of a cluster-wide backup (a CronJob).
 *
 * Steps, each of which either completes or stops the run with a message and exit 1:
 *   1. Resolve every volume first: ordinal -> claim "<template>-<sts>-<ordinal>" (for each
 *      volumeClaimTemplate) -> its bound PV -> the node (the PV's ordinal.dev/node annotation).
 *      Nothing is started when a volume cannot be found.
 *   2. Take the StatefulSet's lock in the repository and choose the backup ID, as the one-node
 *      backup does (lock.h, id.h), so a run and a CLI backup or prune never interleave.
 *   3. One VolumeTask at a time, in the chosen order (reverse by default): create it, labelled
 *      for the node's agent, and watch it until it is Succeeded or Failed.
 *   4. Only when every volume succeeded: read the manifests the agents wrote, check each against
 *      its task's result, and write backup.json - the commit record. A failure before that
 *      removes what the run wrote; a kill leaves an incomplete backup, invisible to list,
 *      restore and verify, which prune removes after an hour.
 *   5. Prune by the --keep-* flags (under the lock again), delete this run's tasks, and delete
 *      finished tasks of this StatefulSet older than --task-retention (a failed run leaves its
 *      tasks for 'kubectl get volumetasks' until then).
 */
#include <errno.h>
#include <stdarg.h>
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
#include "cmds.h"
#include "id.h"
#include "json.h"
#include "kube_watch.h"
#include "lock.h"
#include "manifest.h"
#include "opts.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"
#include "volume_op.h"

static const char *const orders[] = {"reverse", "ordinal", NULL};

struct run_args {
    const char *kubeconfig, *statefulset, *repo, *order, *ordinals, *ns;
    uint64_t last, daily, weekly, monthly, task_timeout, task_retention;
    bool json;
};

struct run_vol {
    int32_t ordinal;
    char tmpl[NAMES_SUBDOMAIN_MAX + 1];
    char pv[COBJ_NAME_MAX + 1];
    char node[COBJ_NAME_MAX + 1];
    char task[COBJ_NAME_MAX + 1];
};

struct run {
    const struct run_args *a;
    struct sts_ref sts;
    char sts_uid[64]; /* set once the StatefulSet was read: a failed run posts its Event */
    bool committed;   /* backup.json was written: a later failure is the prune's */
    struct kube_client *client;
    char ns[NAMES_LABEL_MAX + 1];
    struct run_vol *v;
    size_t n;
};

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;

    return a < b ? -1 : a > b;
}

/* Step 1. Returns 0 with run->v filled in processing order, or a negative errno. */
static int resolve(struct run *run, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    _cleanup_free_ int32_t *ords = NULL;
    _cleanup_free_ struct cobj_sts *sts = calloc(1, sizeof(*sts));
    size_t n_ords = 0;
    bool reverse = streq(run->a->order, "reverse");
    int r;

    if (!sts)
        return err_set(e, -ENOMEM, "out of memory");
    r = kube_get(run->client, &KUBE_RES_STATEFULSETS, run->sts.ns, run->sts.name, &obj, e);
    if (r == KUBE_E_NOT_FOUND)
        return err_set(e, r, "StatefulSet %s/%s does not exist", run->sts.ns, run->sts.name);
    if (r < 0)
        return err_wrap(e, r, "cannot read StatefulSet %s/%s", run->sts.ns, run->sts.name);
    r = cobj_sts_from_json(obj, sts, e);
    if (r < 0)
        return r;
    snprintf(run->sts_uid, sizeof(run->sts_uid), "%s", sts->uid);
    if (sts->n_templates == 0)
        return err_set(e, -ENOENT,
                       "StatefulSet %s/%s has no volumeClaimTemplates: nothing to "
                       "back up",
                       run->sts.ns, run->sts.name);
    if (run->a->ordinals) {
        r = names_parse_ordinals(run->a->ordinals, &ords, &n_ords, e);
        if (r < 0)
            return r;
    } else {
        if (sts->replicas == 0)
            return err_set(e, -ENOENT,
                           "StatefulSet %s/%s has 0 replicas; name the ordinals to back up with "
                           "--ordinals",
                           run->sts.ns, run->sts.name);
        ords = calloc((size_t)sts->replicas, sizeof(*ords));
        if (!ords)
            return err_set(e, -ENOMEM, "out of memory");
        for (int32_t i = 0; i < sts->replicas; i++)
            ords[n_ords++] = i;
    }
    qsort(ords, n_ords, sizeof(*ords), cmp_i32);
    run->v = calloc(n_ords * sts->n_templates, sizeof(*run->v));
    if (!run->v)
        return err_set(e, -ENOMEM, "out of memory");

    for (size_t k = 0; k < n_ords; k++) {
        int32_t o = ords[reverse ? n_ords - 1 - k : k];

        for (size_t t = 0; t < sts->n_templates; t++) {
            _cleanup_(cJSON_Deletep) cJSON *cobj = NULL, *pobj = NULL;
            struct run_vol *v = &run->v[run->n];
            struct cobj_pvc pvc;
            struct cobj_pv pv;
            char claim[COBJ_NAME_MAX + 16];

            snprintf(claim, sizeof(claim), "%s-%s-%d", sts->templates[t], run->sts.name, (int)o);
            r = kube_get(run->client, &KUBE_RES_PERSISTENTVOLUMECLAIMS, run->sts.ns, claim, &cobj,
                         e);
            if (r == KUBE_E_NOT_FOUND)
                return err_set(e, r,
                               "ordinal %d has no claim '%s' in namespace '%s' (has the "
                               "StatefulSet created it?); leave the ordinal out with --ordinals",
                               (int)o, claim, run->sts.ns);
            if (r < 0)
                return err_wrap(e, r, "cannot read claim '%s'", claim);
            r = cobj_pvc_from_json(cobj, &pvc, e);
            if (r < 0)
                return r;
            if (!streq(pvc.phase, "Bound") || !pvc.volume_name[0])
                return err_set(e, -ENOENT, "claim '%s' is not Bound (phase '%s')", claim,
                               pvc.phase);
            r = kube_get(run->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, pvc.volume_name, &pobj, e);
            if (r < 0)
                return err_wrap(e, r, "cannot read PersistentVolume '%s' of claim '%s'",
                                pvc.volume_name, claim);
            r = cobj_pv_from_json(pobj, &pv, e);
            if (r < 0)
                return r;
            if (!pv.node[0])
                return err_set(e, -EINVAL,
                               "PersistentVolume '%s' of claim '%s' has no %s annotation: it was "
                               "not made by ordinal-provisioner and cannot be backed up by an "
                               "agent",
                               pv.name, claim, COBJ_ANN_NODE);
            if (strlen(pv.node) > NAMES_LABEL_MAX)
                return err_set(e, -EINVAL,
                               "node name '%s' is longer than 63 characters and cannot be a "
                               "label value",
                               pv.node);
            /* A lost node's volume: its task would wait for an agent that never comes. */
            r = kube_get(run->client, &KUBE_RES_NODES, NULL, pv.node, NULL, e);
            if (r == KUBE_E_NOT_FOUND)
                return err_set(e, -EHOSTDOWN,
                               "ordinal %d volume '%s' (claim '%s') is on node '%s', which no "
                               "longer exists (no Node object): nothing can back it up; restore "
                               "it onto another node (docs/operations.md, \"Node lost\"), or "
                               "leave the ordinal out with --ordinals",
                               (int)o, sts->templates[t], claim, pv.node);
            if (r < 0)
                return err_wrap(e, r, "cannot read node '%s'", pv.node);
            v->ordinal = o;
            snprintf(v->tmpl, sizeof(v->tmpl), "%s", sts->templates[t]);
            snprintf(v->pv, sizeof(v->pv), "%s", pv.name);
            snprintf(v->node, sizeof(v->node), "%s", pv.node);
            run->n++;
        }
    }
    return 0;
}

struct id_ctx {
    const struct catalog *cat;
    const struct sts_ref *sts;
};

static int id_taken(void *ctx, const char *id)
{
    struct id_ctx *x = ctx;

    return catalog_find(x->cat, x->sts, id) ? 1 : 0;
}

/* Deletes finished tasks of this StatefulSet completed more than the retention ago. */
static void delete_old_tasks(struct run *run)
{
    _cleanup_(cJSON_Deletep) cJSON *list = NULL;
    const cJSON *it;
    time_t now = time(NULL);
    ord_err e = {0};

    if (kube_list(run->client, &KUBE_RES_VOLUMETASKS, run->ns, NULL, &list, &e) < 0) {
        cli_warn("run", "cannot list old tasks: %s", err_msg(&e));
        return;
    }
    cJSON_ArrayForEach(it, json_path(list, "items"))
    {
        struct vtask t;
        time_t done;

        if (cobj_vtask_from_json(it, &t, NULL) < 0 || t.invalid[0] ||
            !sts_ref_equal(&t.sts, &run->sts) ||
            !(t.phase == VTASK_SUCCEEDED || t.phase == VTASK_FAILED) ||
            time_parse_rfc3339(t.completion, &done) < 0 ||
            now - done < (time_t)(run->a->task_retention * 60))
            continue;
        if (kube_delete(run->client, &KUBE_RES_VOLUMETASKS, run->ns, t.name, NULL, NULL, &e) < 0 &&
            e.code != KUBE_E_NOT_FOUND)
            cli_warn("run", "cannot delete old task '%s': %s", t.name, err_msg(&e));
    }
}

/* Step 4: the manifest the agent wrote for v, checked against the task's result. */
static int collect_volume(struct repo *repo, const struct run *run, const char *id,
                          const struct run_vol *v, const struct vtask *t, struct backup_volume *ret,
                          ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    struct volume_manifest m;
    char key[REPO_KEY_MAX + 1];
    size_t len;
    int r;

    if (repo_key_volume(key, sizeof(key), run->sts.ns, run->sts.name, id, v->ordinal, v->tmpl,
                        ".json") < 0)
        return err_set(e, -ENAMETOOLONG, "the manifest key is too long");
    r = repo_get_small(repo, key, MANIFEST_TEXT_MAX, &text, &len, e);
    if (r < 0)
        return err_wrap(e, r, "the agent's manifest of ordinal %d volume '%s'", (int)v->ordinal,
                        v->tmpl);
    r = volume_manifest_parse(text, len, &m, e);
    if (r < 0)
        return err_wrap(e, r, "the agent's manifest of ordinal %d volume '%s' is damaged",
                        (int)v->ordinal, v->tmpl);
    if (!streq(m.backup_id, id) || !sts_ref_equal(&m.sts, &run->sts) || m.ordinal != v->ordinal ||
        !streq(m.template_name, v->tmpl) || (t->has_result && !streq(t->result.sha256, m.sha256))) {
        volume_manifest_free(&m);
        return err_set(e, -EBADMSG,
                       "the manifest of ordinal %d volume '%s' does not match its task '%s'",
                       (int)v->ordinal, v->tmpl, t->name);
    }
    *ret = (struct backup_volume){
        .ordinal = m.ordinal,
        .kind = m.kind,
        .bytes_in = m.bytes_in,
        .bytes_stored = m.bytes_stored,
        .files = m.files,
        .started_at = m.started_at,
        .finished_at = m.finished_at,
        .seconds = m.seconds,
    };
    snprintf(ret->template_name, sizeof(ret->template_name), "%s", m.template_name);
    snprintf(ret->object, sizeof(ret->object), "%s", m.object);
    manifest_manifest_name(ret->manifest, sizeof(ret->manifest), m.ordinal, m.template_name);
    snprintf(ret->sha256, sizeof(ret->sha256), "%s", m.sha256);
    volume_manifest_free(&m);
    return 0;
}

static int run_backup_cluster(struct run *run, ord_err *e)
{
    const struct run_args *a = run->a;
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_free_ struct backup_volume *vols = NULL;
    _cleanup_free_ int32_t *ords = NULL;
    struct catalog cat = {0};
    struct backup_manifest b = {0};
    struct id_ctx ic;
    struct cluster_lock_ctx lc = {.client = run->client, .ns = run->ns};
    char op[16];
    char id[ID_MAX], key[REPO_KEY_MAX + 1];
    double started = cli_now(), t0 = cli_monotonic();
    size_t n_ords = 0;
    bool one_node = true, prunes, copied = false;
    int r;

    /* First, so that a run that stops on a lost node (resolve) still cleans up after it. */
    cluster_delete_tasks_of_gone_nodes(run->client, run->ns, "run");
    r = resolve(run, e);
    if (r < 0)
        return r;
    r = repo_open(a->repo, REPO_OPEN_CREATE, &repo, e);
    if (r < 0)
        return r;
    /* The agents (root) and this run (uid 65532 in deploy/) share the repository: refuse now,
     * with the fix, rather than after every volume was copied. With --keep-* it prunes: every
     * directory of the StatefulSet's backups must be writable then. */
    prunes = a->last || a->daily || a->weekly || a->monthly;
    r = repo_check_writable(repo, run->sts.ns, run->sts.name, NULL,
                            REPO_WRITE_BACKUPS | (prunes ? REPO_WRITE_TREE : 0), e);
    if (r < 0)
        return r;
    cluster_lock_operation(run->client, run->ns, "run", op, sizeof(op));
    r = lock_acquire_ex(repo, &run->sts, op, cluster_lock_holder_gone, &lc, &lock, e);
    if (r < 0)
        return r;
    r = catalog_scan(repo, &run->sts, &cat, e);
    if (r < 0)
        return r;
    ic = (struct id_ctx){.cat = &cat, .sts = &run->sts};
    r = id_generate((time_t)started, id_taken, &ic, id, sizeof(id));
    catalog_free(&cat);
    if (r < 0)
        return err_set_errno(e, r, "cannot choose a backup ID");
    delete_old_tasks(run);
    cluster_progress("run", "backup %s of %s/%s: %zu volume(s), order %s", id, run->sts.ns,
                     run->sts.name, run->n, a->order);

    vols = calloc(run->n, sizeof(*vols));
    ords = calloc(run->n, sizeof(*ords));
    if (!vols || !ords)
        return err_set(e, -ENOMEM, "out of memory");
    for (size_t i = 0; i < run->n; i++) {
        struct run_vol *v = &run->v[i];
        struct vtask t;

        r = cluster_task_run(run->client, run->ns, false, false, id, id, &run->sts, v->ordinal,
                             v->tmpl, v->pv, v->node, a->task_timeout, v->task, sizeof(v->task), &t,
                             e);
        if (r >= 0 && t.phase == VTASK_FAILED)
            r = err_set(e, -EIO, "task '%s' failed: %s", v->task,
                        t.message[0] ? t.message : "(no message)");
        if (r >= 0)
            r = collect_volume(repo, run, id, v, &t, &vols[i], e);
        if (r < 0) {
            err_wrap(e, r, "backing up ordinal %d volume '%s' on node '%s'", (int)v->ordinal,
                     v->tmpl, v->node);
            goto fail;
        }
        cluster_progress("run", "ordinal %d volume '%s' on node '%s': %s", (int)v->ordinal, v->tmpl,
                         v->node, t.message);
        if (n_ords == 0 || ords[n_ords - 1] != v->ordinal)
            ords[n_ords++] = v->ordinal;
        one_node = one_node && streq(v->node, run->v[0].node);
    }

    copied = true;
    b.sts = run->sts;
    snprintf(b.order, sizeof(b.order), "%s", a->order);
    /* Each volume's manifest names its node; backup.json names one only when there is one. */
    snprintf(b.node, sizeof(b.node), "%s", one_node ? run->v[0].node : "");
    b.ordinals = ords;
    b.n_ordinals = n_ords;
    b.volumes = vols;
    b.n_volumes = run->n;
    /* The StatefulSet and its Service, for restore --create/--to (cluster_store.h). */
    r = cluster_store_objects(run->client, repo, &run->sts, id, &b, e);
    if (r >= 0)
        r = volop_commit_backup(repo, &b, id, started, t0, e);
    if (r < 0)
        goto fail;
    run->committed = true;
    lock_release(TAKE_PTR(lock));
    cluster_progress("run", "backup %s of %s/%s is complete", id, run->sts.ns, run->sts.name);

    /* The backup is committed: from here on a problem is a warning, not a failed run. */
    for (size_t i = 0; i < run->n; i++) {
        ord_err de = {0};
        if (kube_delete(run->client, &KUBE_RES_VOLUMETASKS, run->ns, run->v[i].task, NULL, NULL,
                        &de) < 0 &&
            de.code != KUBE_E_NOT_FOUND)
            cli_warn("run", "cannot delete task '%s': %s", run->v[i].task, err_msg(&de));
    }
    if (a->last || a->daily || a->weekly || a->monthly) {
        ord_err pe = {0};

        r = prune_statefulset(a->repo, &run->sts, a->last, a->daily, a->weekly, a->monthly, &pe);
        if (r < 0) {
            *e = pe;
            err_wrap(e, r, "backup %s is complete, but pruning failed", id);
            return r;
        }
    }
    if (a->json)
        r = cli_print_volumes_json(id, &run->sts, a->order, vols, run->n);
    else
        cli_print_volumes_text("backup", id, &run->sts, a->order, vols, run->n);
    return r < 0 ? err_set(e, r, "out of memory") : 0;

fail:
    if (copied)
        volop_not_committed(repo, &run->sts, id, run->n, r, e);
    /* Remove what this run wrote; had we been killed, prune would do it later. */
    if (repo_key_backup_dir(key, sizeof(key), run->sts.ns, run->sts.name, id) == 0)
        (void)repo_remove_prefix(repo, key, NULL);
    return r;
}

/*
 * The run-level record of a failed run: a Warning Event BackupFailed on the StatefulSet with
 * the message the run exits with (kubectl describe statefulset); PruneFailed when the backup
 * was committed and only the pruning after it failed. The VolumeTasks are not
 * changed: each says what became of its volume (a task whose volume was copied stays
 * Succeeded even when the backup could not be committed), their status is the agents' to
 * write, and the Event is where a failed restore is reported too. Best effort.
 */
static void post_backup_failed(struct run *run, const ord_err *failure)
{
    _cleanup_(cJSON_Deletep) cJSON *ev = NULL;
    ord_err e = {0};
    int r;

    if (!run->client || !run->sts_uid[0])
        return; /* no StatefulSet to report on */
    r = cobj_event_build("StatefulSet", "apps/v1", run->sts.ns, run->sts.name, run->sts_uid, true,
                         run->committed ? "PruneFailed" : "BackupFailed", err_msg(failure),
                         "ordinal-backup", &ev);
    if (r < 0) {
        cli_warn("run", "cannot build the Event BackupFailed: out of memory");
        return;
    }
    r = kube_create(run->client, &KUBE_RES_EVENTS, run->sts.ns, ev, NULL, &e);
    if (r < 0)
        cli_warn("run", "cannot post the Event %s on StatefulSet %s/%s: %s",
                 run->committed ? "PruneFailed" : "BackupFailed", run->sts.ns, run->sts.name,
                 err_msg(&e));
}

int cmd_run(int argc, char **argv)
{
    struct run_args a = {
        .order = "reverse",
        .task_timeout = 6 * 3600,
        .task_retention = 24 * 60,
    };
    struct run run = {.a = &a};
    ord_err e = {0};
    int r;

    const struct opt_def opts[] = {
        {"kubeconfig", OPT_STRING, &a.kubeconfig, "FILE",
         "kubeconfig to use instead of the in-cluster service account.", NULL, 0, 0, NULL,
         "KUBECONFIG", false},
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "The StatefulSet whose volumes are backed up.", NULL, 0, 0, NULL, NULL, true},
        {"repo", OPT_STRING, &a.repo, "URL",
         "Repository: the one the agents were started with (an absolute path, file:///path or "
         "s3://BUCKET/PREFIX).",
         NULL, 0, 0, NULL, "ORDINAL_REPO", true},
        REPO_S3_OPT_DEFS,
        {"order", OPT_CHOICE, &a.order, "ORDER",
         "Process ordinals from the highest down (reverse) or from 0 up (ordinal).", "reverse", 0,
         0, orders, NULL, false},
        {"ordinals", OPT_STRING, &a.ordinals, "LIST", "Back up only these ordinals, e.g. 0,2.",
         "0 .. replicas-1", 0, 0, NULL, NULL, false},
        {"keep-last", OPT_UINT, &a.last, "N", "After the backup, prune: keep the N newest.", NULL,
         1, 1000000, NULL, NULL, false},
        {"keep-daily", OPT_UINT, &a.daily, "N", "... and the newest of each of the last N days.",
         NULL, 1, 1000000, NULL, NULL, false},
        {"keep-weekly", OPT_UINT, &a.weekly, "N", "... and of each of the last N ISO weeks.", NULL,
         1, 1000000, NULL, NULL, false},
        {"keep-monthly", OPT_UINT, &a.monthly, "N", "... and of each of the last N months.", NULL,
         1, 1000000, NULL, NULL, false},
        {"namespace", OPT_STRING, &a.ns, "NS", "Namespace of the VolumeTasks (the agents').",
         "the pod's namespace, else " CLUSTER_DEFAULT_NAMESPACE, 0, 0, NULL, NULL, false},
        {"task-timeout", OPT_UINT, &a.task_timeout, "SECONDS",
         "Fail the run when one volume's task takes longer.", "21600", 10, 7 * 86400, NULL, NULL,
         false},
        {"task-retention", OPT_UINT, &a.task_retention, "MINUTES",
         "Delete finished tasks of this StatefulSet (a failed run's) after this long.", "1440", 0,
         525600, NULL, NULL, false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {id, statefulset, order, volumes[]}.", NULL, 0, 0,
         NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "run",
        .usage = "--statefulset NS/NAME --repo URL [--kubeconfig FILE] [--order reverse|ordinal] "
                 "[--ordinals 0,2] [--keep-last N] [--keep-daily N] [--keep-weekly N] "
                 "[--keep-monthly N] [--namespace NS] [--json]",
        .summary =
            "Backs up every volume of a StatefulSet across the cluster (run it from a CronJob):\n"
            "finds each ordinal's claims, PVs and nodes, hands one VolumeTask at a time to the\n"
            "agent of the volume's node and waits for it, then commits the backup (backup.json)\n"
            "only when every volume succeeded, and prunes by the --keep-* flags.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Example:\n"
                  "  ordinal-backup run --statefulset default/mysql --repo s3://backups/ordinal "
                  "--keep-daily 7 --keep-weekly 4\n\n"
                  "Exit status: 0 when the backup is complete, 1 on failure (no backup is "
                  "recorded), 2 on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (cli_parse_sts("run", a.statefulset, &run.sts) < 0)
        return CLI_EXIT_USAGE;
    if (a.ordinals) {
        _cleanup_free_ int32_t *tmp = NULL;
        size_t n;
        if (names_parse_ordinals(a.ordinals, &tmp, &n, &e) < 0) {
            cli_error("run", "--ordinals: %s", err_msg(&e));
            return CLI_EXIT_USAGE;
        }
    }
    r = cluster_connect(a.kubeconfig, a.ns, &run.client, run.ns, sizeof(run.ns), &e);
    if (r >= 0) {
        r = run_backup_cluster(&run, &e);
        if (r < 0)
            post_backup_failed(&run, &e);
    }
    kube_client_free(run.client);
    free(run.v);
    if (r < 0) {
        cli_error("run", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
