/*
 * cmd_agent.c - "ordinal-backup agent": the node agent (the DaemonSet's second container).
 *
 * It watches the VolumeTasks labelled ordinal.dev/node=<its node> (an informer with that label
 * selector) and carries them out one at a time, oldest first: Pending -> Running ->
 * Succeeded/Failed, through the status subresource only (its RBAC allows nothing else).
 *
 * Trust: a task names a PV, never a path. The agent GETs that PV and requires that it was made
 * for this node (annotation ordinal.dev/node), for the task's namespace/statefulset/ordinal/
 * template (the ordinal.dev annotations), and that its hostPath/local path is exactly that
 * volume's entry in the node layout under --root (or, for a device volume, the device the
 * entry points to). Anything else fails the task with a message that says why. The repository
 * is the one on the command line: a task cannot name another. A backup task writes the
 * volume's object and manifest into the task's backup ID and refuses an ID that already has
 * backup.json (a committed backup is never changed); the coordinator commits the backup.
 *
 * Restarts: a task this process finds Running was left by a previous agent of this node (one
 * agent per node, and this one runs a single task at a time in its main thread). It is retried
 * once, with "retrying:" at the start of its message; found Running again after that, it is
 * failed with a message that says so. So a task is never lost and never loops.
 *
 * Finished tasks are not deleted here (the agent may not delete tasks): the coordinator deletes
 * those of its run, and old ones of its StatefulSet (cmd_run.c).
 *
 * With --metrics-address, an HTTP endpoint serves /metrics, /healthz and /readyz from a thread
 * of its own (http_server.h), and a probe thread reads the last successful backups from the
 * repository's catalog (agent_metrics.h) and then checks every REPO_CHECK_S that the
 * repository answers: /readyz needs the task cache in sync and the repository reachable.
 * Neither thread ever waits for the main loop, nor the main loop for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "agent_metrics.h"
#include "cli.h"
#include "cluster.h"
#include "cluster_objects.h"
#include "cmds.h"
#include "json.h"
#include "kube_informer.h"
#include "layout.h"
#include "health.h"
#include "http_server.h"
#include "kube_metrics.h"
#include "log.h"
#include "metrics.h"
#include "opts.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"
#include "volume_op.h"

#define RETRY_MARK          "retrying: "
#define PROGRESS_INTERVAL_S 3.0
#define DONE_RING           256
#define REPO_CHECK_S        30 /* how often the probe thread checks that the repository answers */
#define LIVENESS_STALE_S    30 /* the main loop turns every 2 s when idle */

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

struct agent_args {
    const char *node_name, *root, *repo, *kubeconfig, *ns, *health_file, *log_format, *log_level;
    const char *metrics_address;
    uint64_t level, threads;
};

struct agent {
    struct agent_args a;
    char root[LAYOUT_PATH_MAX]; /* --root without trailing slashes */
    char ns[NAMES_LABEL_MAX + 1];
    int lock_fd; /* <root>/.ordinal-agent.lock, flock'ed (lock_node) */
    struct kube_client *client;
    struct kube_informer *inf;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool kicked;
    /* uids of the tasks this process finished: the cache may still show them Running. */
    char done[DONE_RING][64];
    size_t n_done;
    /*
     * Liveness: the main loop stamps `beat` on every turn, and a task in progress sets `busy`.
     * The health thread rewrites --health-file every few seconds while either says the agent
     * works, so a long restore (which reports no progress) is not mistaken for a hang.
     */
    _Atomic double beat;
    atomic_bool busy, quit;
    pthread_t health;
    bool health_started;
    /* --metrics-address: the endpoint, and the probe thread that checks the repository */
    struct metrics *reg;
    struct http_server *srv;
    pthread_t prober;
    bool prober_started;
    atomic_bool inf_ready, repo_ok;
    /* the task being run, for progress reports */
    const struct vtask *cur;
    char cur_start[32];
    double last_progress;
};

static void kick(struct agent *ag)
{
    pthread_mutex_lock(&ag->mu);
    ag->kicked = true;
    pthread_cond_signal(&ag->cv);
    pthread_mutex_unlock(&ag->mu);
}

static void on_add(struct kube_obj *o, void *ud)
{
    kick(ud);
}

static void on_update(struct kube_obj *old, struct kube_obj *o, void *ud)
{
    kick(ud);
}

static void on_synced(void *ud)
{
    kick(ud);
}

static void on_error(int r, const ord_err *e, void *ud)
{
    log_warn("watching VolumeTasks: %s", err_msg(e));
}

static bool is_done(const struct agent *ag, const char *uid)
{
    for (size_t i = 0; i < MIN(ag->n_done, (size_t)DONE_RING); i++)
        if (streq(ag->done[i], uid))
            return true;
    return false;
}

static void mark_done(struct agent *ag, const char *uid)
{
    snprintf(ag->done[ag->n_done % DONE_RING], sizeof(ag->done[0]), "%s", uid);
    ag->n_done++;
}

/* Rewrites --health-file (the probes check its age). Failures are logged at debug only. */
static void touch_health(const struct agent *ag)
{
    int r;

    if (ag->a.health_file && (r = health_touch(ag->a.health_file)) < 0)
        log_debug("cannot write --health-file '%s': %s", ag->a.health_file, strerror(-r));
}

static void *health_main(void *arg)
{
    struct agent *ag = arg;

    while (!atomic_load(&ag->quit)) {
        if (atomic_load(&ag->busy) || cli_monotonic() - atomic_load(&ag->beat) < 30)
            touch_health(ag);
        for (int i = 0; i < 20 && !atomic_load(&ag->quit); i++)
            usleep(250 * 1000);
    }
    return NULL;
}

static void reply_text(struct http_reply *ret, unsigned status, const char *text)
{
    ret->status = status;
    ret->body = strdup(text);
    ret->len = ret->body ? strlen(ret->body) : 0;
}

static void serve_metrics(void *ud, struct http_reply *ret)
{
    struct agent *ag = ud;

    if (metrics_render(ag->reg, &ret->body, &ret->len) < 0)
        return reply_text(ret, 500, "cannot render the metrics\n");
    ret->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* Alive while starting, while a task runs, and while the main loop turns (as --health-file). */
static void serve_healthz(void *ud, struct http_reply *ret)
{
    struct agent *ag = ud;
    double beat = atomic_load(&ag->beat);

    if (beat > 0 && !atomic_load(&ag->busy) && cli_monotonic() - beat > LIVENESS_STALE_S)
        return reply_text(ret, 503, "the main loop is stuck\n");
    reply_text(ret, 200, "ok\n");
}

static void serve_readyz(void *ud, struct http_reply *ret)
{
    struct agent *ag = ud;

    if (!atomic_load(&ag->inf_ready) || !kube_informer_synced(ag->inf))
        return reply_text(ret, 503, "the VolumeTask cache is not in sync with the API server\n");
    if (!atomic_load(&ag->repo_ok))
        return reply_text(ret, 503, "the repository does not answer\n");
    reply_text(ret, 200, "ok\n");
}

/*
 * The probe thread: rebuilds the last-success gauges from the catalog (until it once
 * succeeds), then checks every REPO_CHECK_S that the repository opens.
 */
static void *prober_main(void *arg)
{
    struct agent *ag = arg;
    bool rebuilt = false, warned = false;

    while (!atomic_load(&ag->quit)) {
        ord_err e = {0};
        int r;

        if (!rebuilt) {
            r = agent_metrics_rebuild(ag->a.repo, ag->a.node_name, &e);
            if (r >= 0 || r == -ENOENT) {
                rebuilt = true;
                log_info("metrics: the last successful backups of %d volumes of this node read "
                         "from the repository",
                         r > 0 ? r : 0);
            }
        } else {
            struct repo *repo = NULL;

            r = repo_open(ag->a.repo, REPO_OPEN_EXISTING, &repo, &e);
            repo_close(repo);
        }
        /*
         * No repository there yet (the first backup creates it): the location answered, so
         * the agent is ready; its first task initialises nothing itself either way.
         */
        if (r == -ENOENT)
            r = 0;
        if (r < 0 && !warned)
            log_warn("metrics: the repository does not answer: %s", err_msg(&e));
        warned = r < 0;
        atomic_store(&ag->repo_ok, r >= 0);
        agent_metrics_repository_up(r >= 0);
        for (int i = 0; i < REPO_CHECK_S * 4 && !atomic_load(&ag->quit); i++)
            usleep(250 * 1000);
    }
    return NULL;
}

/* Registry, endpoint and probe thread for --metrics-address. Returns 0 or -errno (e says). */
static int start_metrics(struct agent *ag, ord_err *e)
{
    const struct http_route routes[] = {
        {"/metrics", serve_metrics, ag},
        {"/healthz", serve_healthz, ag},
        {"/readyz", serve_readyz, ag},
    };
    int r;

    r = metrics_new(&ag->reg);
    if (r >= 0)
        r = metrics_register_process(ag->reg);
    if (r >= 0)
        r = kube_metrics_register(ag->reg, ag->client);
    if (r >= 0)
        r = agent_metrics_init(ag->reg);
    if (r < 0)
        return err_set(e, r, "cannot set up the metrics");
    r = http_server_start(ag->a.metrics_address, routes, ARRAY_SIZE(routes), &ag->srv, e);
    if (r < 0)
        return err_wrap(e, r, "--metrics-address");
    r = pthread_create(&ag->prober, NULL, prober_main, ag);
    if (r != 0)
        return err_set(e, -r, "cannot start the repository probe thread");
    ag->prober_started = true;
    log_info("serving /metrics, /healthz and /readyz on http://%s",
             http_server_address(ag->srv));
    return 0;
}

/* PATCHes the task's status. Returns 0 or a negative errno (logged by the caller). */
static int patch_status(struct agent *ag, const struct vtask *t, enum vtask_phase phase,
                        const char *msg, uint64_t progress, const char *start, const char *done,
                        const struct vtask_result *res, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *p = NULL;
    int r;

    r = cobj_vtask_status_patch(phase, msg, progress, start, done, res, &p);
    if (r < 0)
        return err_set(e, r, "out of memory");
    return kube_patch(ag->client, &KUBE_RES_VOLUMETASKS, ag->ns, t->name, "status", p, NULL, e);
}

static void report_progress(void *ctx, uint64_t bytes)
{
    struct agent *ag = ctx;
    double now = cli_monotonic();
    ord_err e = {0};

    if (!ag->cur || now - ag->last_progress < PROGRESS_INTERVAL_S)
        return;
    ag->last_progress = now;
    if (patch_status(ag, ag->cur, VTASK_RUNNING, NULL, bytes, NULL, NULL, NULL, &e) < 0)
        log_warn("task '%s': cannot report progress: %s", ag->cur->name, err_msg(&e));
}

/*
 * Finds the task's volume from its PV and checks that this agent may touch it (see the top of
 * this file). Returns 0 with *ret, or a negative errno with e saying why not.
 */
static int resolve_volume(struct agent *ag, const struct vtask *t, struct layout_volume *ret,
                          ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    struct layout_volume lv;
    struct cobj_pv pv;
    char entry[LAYOUT_PATH_MAX];
    size_t rl = strlen(ag->root);
    int r;

    r = kube_get(ag->client, &KUBE_RES_PERSISTENTVOLUMES, NULL, t->pv, &obj, e);
    if (r == KUBE_E_NOT_FOUND)
        return err_set(e, r, "PersistentVolume '%s' does not exist", t->pv);
    if (r < 0)
        return err_wrap(e, r, "cannot read PersistentVolume '%s'", t->pv);
    r = cobj_pv_from_json(obj, &pv, e);
    if (r < 0)
        return r;
    if (!pv.node[0])
        return err_set(e, -EPERM,
                       "refused: PersistentVolume '%s' has no %s annotation (it was not made by "
                       "ordinal-provisioner)",
                       t->pv, COBJ_ANN_NODE);
    if (!streq(pv.node, ag->a.node_name))
        return err_set(e, -EPERM,
                       "refused: PersistentVolume '%s' is on node '%s', not on this agent's node "
                       "'%s'",
                       t->pv, pv.node, ag->a.node_name);
    if (!streq(pv.ann_ns, t->sts.ns) || !streq(pv.ann_sts, t->sts.name) ||
        pv.ann_ordinal != t->ordinal || !streq(pv.ann_template, t->template_name))
        return err_set(e, -EPERM,
                       "refused: PersistentVolume '%s' belongs to %s/%s ordinal %d template '%s', "
                       "not to %s/%s ordinal %d template '%s'",
                       t->pv, pv.ann_ns, pv.ann_sts, (int)pv.ann_ordinal, pv.ann_template,
                       t->sts.ns, t->sts.name, (int)t->ordinal, t->template_name);
    if (!pv.path[0])
        return err_set(e, -EPERM, "refused: PersistentVolume '%s' has neither hostPath nor local",
                       t->pv);
    r = snprintf(entry, sizeof(entry), "%s/%s/%s/%d/%s", ag->root, t->sts.ns, t->sts.name,
                 (int)t->ordinal, t->template_name);
    if (r < 0 || (size_t)r >= sizeof(entry))
        return err_set(e, -ENAMETOOLONG, "the volume's path is too long");
    if (!streq(pv.path, entry) &&
        !(strncmp(pv.path, "/dev/", 5) == 0 && !strstr(pv.path, "/../"))) {
        if (strncmp(pv.path, ag->root, rl) != 0 || pv.path[rl] != '/')
            return err_set(e, -EPERM,
                           "refused: PersistentVolume '%s' has path '%s', outside this agent's "
                           "--root '%s'",
                           t->pv, pv.path, ag->root);
        return err_set(e, -EPERM,
                       "refused: PersistentVolume '%s' has path '%s', which is not the node "
                       "layout entry '%s' of its volume",
                       t->pv, pv.path, entry);
    }
    r = layout_lookup(ag->root, &t->sts, t->ordinal, t->template_name, &lv, e);
    if (r < 0)
        return r;
    /* A device volume's PV names the device; the entry is a symlink to it. */
    if (!streq(pv.path, entry) && !(lv.kind == VOLUME_DEVICE && streq(lv.device, pv.path)))
        return err_set(e, -EPERM,
                       "refused: PersistentVolume '%s' has path '%s', but the node layout entry "
                       "'%s' does not point to it",
                       t->pv, pv.path, entry);
    *ret = lv;
    return 0;
}

static int backup_exists(struct repo *repo, const struct vtask *t, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1];
    size_t len;
    int r;

    if (repo_key_backup_json(key, sizeof(key), t->sts.ns, t->sts.name, t->backup_id) < 0)
        return err_set(e, -ENAMETOOLONG, "the backup key is too long");
    r = repo_get_small(repo, key, MANIFEST_TEXT_MAX, &text, &len, e);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? r : 1;
}

static int do_backup(struct agent *ag, const struct vtask *t, const struct layout_volume *lv,
                     struct vtask_result *ret, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    struct compress_opts copts = {.level = (int)ag->a.level, .threads = (int)ag->a.threads};
    struct volop_source src = {.lv = lv, .node = ag->a.node_name, .pv = t->pv, .cmd = "agent"};
    struct backup_volume bv;
    int r;

    r = repo_open(ag->a.repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    r = backup_exists(repo, t, e);
    if (r < 0)
        return r;
    if (r > 0)
        return err_set(e, -EEXIST,
                       "refused: backup '%s' of %s/%s is already complete and is never changed",
                       t->backup_id, t->sts.ns, t->sts.name);
    r = volop_backup(repo, &t->sts, t->backup_id, &src, &copts, report_progress, ag, &bv, e);
    if (r < 0)
        return r;
    *ret = (struct vtask_result){.kind = bv.kind,
                                 .bytes_in = bv.bytes_in,
                                 .bytes_stored = bv.bytes_stored,
                                 .files = bv.files,
                                 .seconds = bv.seconds};
    snprintf(ret->sha256, sizeof(ret->sha256), "%s", bv.sha256);
    return 0;
}

static int do_restore(struct agent *ag, const struct vtask *t, const struct layout_volume *lv,
                      struct vtask_result *ret, char *lost_text, size_t lost_size, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    struct backup_manifest b = {0};
    struct volume_manifest m = {0};
    const struct backup_volume *bv = NULL;
    struct engine_lost lost = {0};
    double t0 = cli_monotonic();
    int r;

    r = repo_open(ag->a.repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    /* t->source: the StatefulSet whose backup this is (restore --to: not t->sts) */
    r = cli_load_backup(repo, &t->source, t->backup_id, &b, e);
    if (r == -ENOENT)
        return err_set(e, r, "backup '%s' of %s/%s does not exist or is incomplete", t->backup_id,
                       t->source.ns, t->source.name);
    if (r < 0)
        return r;
    for (size_t i = 0; i < b.n_volumes && !bv; i++)
        if (b.volumes[i].ordinal == t->ordinal &&
            streq(b.volumes[i].template_name, t->template_name))
            bv = &b.volumes[i];
    if (!bv) {
        r = err_set(e, -ENOENT, "backup '%s' of %s/%s holds no volume '%s' of ordinal %d",
                    t->backup_id, t->source.ns, t->source.name, t->template_name,
                    (int)t->ordinal);
        goto out;
    }
    r = cli_load_volume(repo, &b, bv, &m, e);
    if (r < 0)
        goto out;
    if (lv->kind != bv->kind) {
        r = err_set(e, -EINVAL, "'%s' is a %s volume but the backup holds a %s volume", lv->path,
                    volume_kind_name(lv->kind), volume_kind_name(bv->kind));
        goto out;
    }
    r = layout_remove_staging(ag->root, &t->sts, t->ordinal, t->template_name, e);
    if (r < 0)
        goto out;
    r = volop_verify_object(repo, &b, bv, &m, e);
    if (r < 0) {
        err_wrap(e, r, "the stored object failed its check (the volume was not touched)");
        goto out;
    }
    lost.accept = t->accept_lost_attributes;
    r = volop_restore(repo, &b, bv, &m, ag->root, lv, &lost, e);
    if (r == -EPERM && engine_lost_total(&lost) > 0) {
        err_wrap(e, r, "the volume was not restored and keeps its previous content");
        err_append(e, "give the agent the capabilities these need (the restore-capabilities "
                      "component of deploy/, docs/security.md), or restore with "
                      "--accept-lost-attributes");
        goto out;
    }
    if (r < 0) {
        err_wrap(e, r, "restoring failed and the volume keeps its previous content");
        goto out;
    }
    *ret = (struct vtask_result){.kind = bv->kind,
                                 .bytes_in = bv->bytes_in,
                                 .bytes_stored = bv->bytes_stored,
                                 .files = bv->files,
                                 .seconds = cli_monotonic() - t0};
    snprintf(ret->sha256, sizeof(ret->sha256), "%s", bv->sha256);
    for (size_t k = 0; k < ENGINE_LOST_KINDS; k++)
        ret->lost[k] = lost.count[k];
    if (engine_lost_total(&lost) > 0)
        engine_lost_describe(&lost, lost_text, lost_size);
out:
    engine_lost_clear(&lost);
    volume_manifest_free(&m);
    backup_manifest_free(&b);
    return r;
}

/* Carries out one task from Pending (or an interrupted Running) to its final phase. */
/*
 * Sets task t Running, on the condition that it is still the version read (metadata.
 * resourceVersion in the merge patch is a precondition for the API server): of two agents
 * that read the same Pending task, one gets KUBE_E_CONFLICT and leaves it to the other.
 */
static int claim_task(struct agent *ag, const struct vtask *t, const char *msg, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *p = NULL;
    cJSON *meta;
    int r;

    r = cobj_vtask_status_patch(VTASK_RUNNING, msg, 0, ag->cur_start, NULL, NULL, &p);
    if (r < 0 || !(meta = json_ensure_object(p, "metadata")) ||
        json_set_string(meta, "resourceVersion", t->rv) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    return kube_patch(ag->client, &KUBE_RES_VOLUMETASKS, ag->ns, t->name, "status", p, NULL, e);
}

static void run_task(struct agent *ag, const struct vtask *t, bool retry)
{
    struct layout_volume lv;
    struct vtask_result res = {0};
    char msg[COBJ_MESSAGE_MAX], now[32], lost_text[COBJ_MESSAGE_MAX / 2] = "";
    ord_err e = {0};
    int r;

    cluster_now_rfc3339(ag->cur_start, sizeof(ag->cur_start));
    snprintf(msg, sizeof(msg), "%s%s ordinal %d volume '%s' of %s/%s (PV %s, backup %s)",
             retry ? RETRY_MARK "the agent restarted while this task ran; " : "",
             t->restore ? "restoring" : "backing up", (int)t->ordinal, t->template_name, t->sts.ns,
             t->sts.name, t->pv, t->backup_id);
    log_info("task '%s': %s", t->name, msg);
    r = claim_task(ag, t, msg, &e);
    if (r == KUBE_E_CONFLICT) {
        /* Changed since it was read: another agent (during a roll-out, the old and the new pod
         * of a node run at once) took it, or it was deleted or finished. Read it again. */
        log_info("task '%s': changed while being claimed; not started", t->name);
        return;
    }
    if (r < 0) {
        /* Not started: the task stays as it was and is picked up again. */
        log_warn("task '%s': cannot set it Running: %s", t->name, err_msg(&e));
        return;
    }
    ag->cur = t;
    atomic_store(&ag->busy, true);
    ag->last_progress = cli_monotonic();
    r = resolve_volume(ag, t, &lv, &e);
    if (r >= 0)
        r = t->restore ? do_restore(ag, t, &lv, &res, lost_text, sizeof(lost_text), &e)
                       : do_backup(ag, t, &lv, &res, &e);
    ag->cur = NULL;
    atomic_store(&ag->busy, false);
    agent_metrics_task(&(struct agent_metrics_volume){.sts = &t->sts,
                                                      .ordinal = t->ordinal,
                                                      .template_name = t->template_name},
                       t->restore, r, res.bytes_in, res.bytes_stored, res.seconds, cli_now());
    cluster_now_rfc3339(now, sizeof(now));
    if (r < 0) {
        log_error("task '%s': Failed: %s", t->name, err_msg(&e));
        r = patch_status(ag, t, VTASK_FAILED, err_msg(&e), 0, NULL, now, NULL, &e);
    } else {
        char in[32], st[32];

        cli_format_bytes(res.bytes_in, in, sizeof(in));
        cli_format_bytes(res.bytes_stored, st, sizeof(st));
        snprintf(msg, sizeof(msg), "%s ordinal %d volume '%s': %s, %s stored, %llu files, %.1f s%s%s",
                 t->restore ? "restored" : "backed up", (int)t->ordinal, t->template_name, in, st,
                 (unsigned long long)res.files, res.seconds,
                 lost_text[0] ? "; restored without (acceptLostAttributes): " : "", lost_text);
        log_info("task '%s': Succeeded: %s", t->name, msg);
        r = patch_status(ag, t, VTASK_SUCCEEDED, msg, res.bytes_in, NULL, now, &res, &e);
    }
    if (r < 0)
        /* The work is done but not reported: the task shows Running and is redone once. */
        log_error("task '%s': cannot report its outcome: %s", t->name, err_msg(&e));
    else
        mark_done(ag, t->uid);
}

/* Fails a task without running it (bad spec, or interrupted twice). */
static void fail_task(struct agent *ag, const struct vtask *t, const char *why)
{
    char now[32];
    ord_err e = {0};

    cluster_now_rfc3339(now, sizeof(now));
    log_error("task '%s': Failed: %s", t->name, why);
    if (patch_status(ag, t, VTASK_FAILED, why, t->progress, NULL, now, NULL, &e) < 0)
        log_error("task '%s': cannot report its outcome: %s", t->name, err_msg(&e));
    else
        mark_done(ag, t->uid);
}

static int cmp_task(const struct vtask *a, const struct vtask *b)
{
    int r = strcmp(a->created, b->created);

    return r ? r : strcmp(a->name, b->name);
}

/*
 * Picks the next task: the oldest that is Pending, or Running but not run by this process.
 * Returns true with *ret filled (a copy, re-read from the server so that a stale cache never
 * starts a task twice).
 */
static bool pick_task(struct agent *ag, struct vtask *ret)
{
    struct kube_obj **objs = NULL;
    const struct vtask *best = NULL;
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    struct vtask fresh;
    size_t n = 0;
    bool found = false;

    if (kube_informer_list(ag->inf, &objs, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        const struct vtask *t = kube_obj_data(objs[i]);

        if (t->deleting || is_done(ag, t->uid) ||
            !(t->phase == VTASK_NEW || t->phase == VTASK_PENDING || t->phase == VTASK_RUNNING))
            continue;
        if (!best || cmp_task(t, best) < 0)
            best = t;
    }
    if (best) {
        ord_err e = {0};
        int r = kube_get(ag->client, &KUBE_RES_VOLUMETASKS, ag->ns, best->name, &obj, &e);

        if (r < 0)
            log_warn("task '%s': cannot read it: %s", best->name, err_msg(&e));
        else if (cobj_vtask_from_json(obj, &fresh, &e) == 0 && streq(fresh.uid, best->uid) &&
                 fresh.phase == best->phase && !fresh.deleting) {
            *ret = fresh;
            found = true;
        }
    }
    kube_obj_list_free(objs, n);
    return found;
}

static bool stop_requested(void)
{
    sigset_t set;
    struct timespec zero = {0, 0};

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return sigtimedwait(&set, NULL, &zero) > 0;
}

static void wait_kick(struct agent *ag, long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ag->mu);
    while (!ag->kicked)
        if (pthread_cond_timedwait(&ag->cv, &ag->mu, &ts) != 0)
            break;
    ag->kicked = false;
    pthread_mutex_unlock(&ag->mu);
}

/*
 * One agent per node at a time: an exclusive flock on <root>/.ordinal-agent.lock, held for the
 * process's life. Two agents of one node (during an upgrade the old and the new pod can run
 * at once) would otherwise both take a Running task for their own interrupted one and restore
 * the same volume twice. The second one waits, saying why, until the first stops.
 * Returns 1 with the lock held, 0 when asked to stop while waiting, or a negative errno.
 */
static int lock_node(struct agent *ag, ord_err *e)
{
    char path[LAYOUT_PATH_MAX];
    sigset_t set;
    bool said = false;
    int fd;

    if (snprintf(path, sizeof(path), "%s/.ordinal-agent.lock", ag->root) >= (int)sizeof(path))
        return err_set(e, -ENAMETOOLONG, "the root path '%s' is too long", ag->root);
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set_errno(e, -errno, "cannot open '%s'", path);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        struct timespec second = {1, 0};

        if (errno != EWOULDBLOCK && errno != EINTR) {
            int r = err_set_errno(e, -errno, "cannot lock '%s'", path);
            close(fd);
            return r;
        }
        if (!said)
            log_warn("another agent of this node holds '%s' (an old pod still stopping?): "
                     "waiting for it to stop",
                     path);
        said = true;
        if (sigtimedwait(&set, NULL, &second) > 0) {
            close(fd);
            return 0;
        }
    }
    ag->lock_fd = fd; /* closed at exit: the lock goes with the process */
    return 1;
}

static int agent_loop(struct agent *ag, ord_err *e)
{
    char selector[COBJ_NAME_MAX + 32];
    struct kube_informer_opts io = {
        .res = &KUBE_RES_VOLUMETASKS,
        .ns = ag->ns,
        .label_selector = selector,
        .decode = cobj_decode_vtask,
        .free_data = cobj_free_vtask,
        .on_add = on_add,
        .on_update = on_update,
        .on_synced = on_synced,
        .on_error = on_error,
        .userdata = ag,
    };
    int r;

    r = lock_node(ag, e);
    if (r <= 0)
        return r;
    snprintf(selector, sizeof(selector), "%s=%s", COBJ_LABEL_NODE, ag->a.node_name);
    r = kube_informer_new(ag->client, &io, &ag->inf, e);
    if (r < 0)
        return r;
    r = kube_informer_start(ag->inf, e);
    if (r < 0)
        return r;
    atomic_store(&ag->inf_ready, true);
    while (kube_informer_wait_synced(ag->inf, 1000) == -ETIMEDOUT)
        if (stop_requested())
            return 0;
    atomic_store(&ag->beat, cli_monotonic());
    touch_health(ag);
    if (ag->a.health_file) {
        r = pthread_create(&ag->health, NULL, health_main, ag);
        if (r != 0)
            return err_set(e, -r, "cannot start the health thread");
        ag->health_started = true;
    }
    log_info("serving node '%s': VolumeTasks in namespace '%s', root '%s', repository '%s'",
             ag->a.node_name, ag->ns, ag->root, ag->a.repo);
    for (;;) {
        struct vtask t;

        atomic_store(&ag->beat, cli_monotonic());
        if (stop_requested())
            break;
        if (!pick_task(ag, &t)) {
            wait_kick(ag, 2000);
            continue;
        }
        if (t.invalid[0]) {
            char why[512];

            snprintf(why, sizeof(why), "refused: %s", t.invalid);
            fail_task(ag, &t, why);
        } else if (!streq(t.node, ag->a.node_name)) {
            char why[COBJ_NAME_MAX * 2 + 128];

            snprintf(why, sizeof(why),
                     "refused: spec.node is '%s' but the task is labelled for node '%s'", t.node,
                     ag->a.node_name);
            fail_task(ag, &t, why);
        } else if (t.phase == VTASK_RUNNING &&
                   strncmp(t.message, RETRY_MARK, strlen(RETRY_MARK)) == 0) {
            fail_task(ag, &t,
                      "the agent stopped twice while running this task (killed, out of memory, "
                      "or the node restarted); see the agent's log, then run the backup or "
                      "restore again");
        } else {
            run_task(ag, &t, t.phase == VTASK_RUNNING);
        }
    }
    log_info("received a signal; shutting down");
    return 0;
}

int cmd_agent(int argc, char **argv)
{
    struct agent *ag = calloc(1, sizeof(*ag));
    enum log_level level;
    enum log_format format;
    ord_err e = {0};
    sigset_t set;
    size_t len;
    int r;

    if (!ag) {
        cli_error("agent", "out of memory");
        return CLI_EXIT_FAILURE;
    }
    ag->a = (struct agent_args){
        .root = CLI_DEFAULT_ROOT,
        .log_format = "text",
        .log_level = "info",
        .level = 3,
        .threads = cli_online_cpus(),
    };
    const struct opt_def opts[] = {
        {"node-name", OPT_STRING, &ag->a.node_name, "NAME",
         "The Node this agent serves (the downward API's spec.nodeName in a DaemonSet).", NULL, 0,
         0, NULL, "NODE_NAME", true},
        {"root", OPT_STRING, &ag->a.root, "DIR",
         "Node directory that holds the volumes (the provisioner's --root).", CLI_DEFAULT_ROOT, 0,
         0, NULL, NULL, false},
        {"repo", OPT_STRING, &ag->a.repo, "URL",
         "The repository: the only one this agent reads and writes.", NULL, 0, 0, NULL,
         "ORDINAL_REPO", true},
        REPO_S3_OPT_DEFS,
        {"kubeconfig", OPT_STRING, &ag->a.kubeconfig, "FILE",
         "kubeconfig to use instead of the in-cluster service account.", NULL, 0, 0, NULL,
         "KUBECONFIG", false},
        {"namespace", OPT_STRING, &ag->a.ns, "NS", "Namespace of the VolumeTasks.",
         "the pod's namespace, else " CLUSTER_DEFAULT_NAMESPACE, 0, 0, NULL, NULL, false},
        {"level", OPT_UINT, &ag->a.level, "N", "zstd compression level, 1..19.", "3", 1, 19, NULL,
         NULL, false},
        {"threads", OPT_UINT, &ag->a.threads, "N", "Compression threads, 1..256.",
         "the number of online CPUs", 1, 256, NULL, NULL, false},
        {"health-file", OPT_STRING, &ag->a.health_file, "FILE",
         "Rewritten every few seconds while the agent works (for exec probes).", NULL, 0, 0, NULL,
         NULL, false},
        {"metrics-address", OPT_STRING, &ag->a.metrics_address, "HOST:PORT",
         "Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address (':PORT' "
         "for every IPv4 address); off when not given.",
         NULL, 0, 0, NULL, NULL, false},
        {"log-format", OPT_CHOICE, &ag->a.log_format, "FORMAT",
         "Log as text for people or as JSON lines for collectors.", "text", 0, 0, log_formats, NULL,
         false},
        {"log-level", OPT_CHOICE, &ag->a.log_level, "LEVEL", "Least severe level logged.", "info",
         0, 0, log_levels, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "agent",
        .usage = "--node-name NAME --repo URL [--root DIR] [--kubeconfig FILE] [--namespace NS]",
        .summary =
            "The node agent: carries out the VolumeTasks labelled ordinal.dev/node=NAME, one at a\n"
            "time, reporting in their status. It finds each volume from the PersistentVolume the\n"
            "task names, refuses one that is not on this node or not under --root, and writes\n"
            "only to --repo. Runs until SIGTERM or SIGINT (after the task in progress).",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Example:\n"
                  "  ordinal-backup agent --node-name node-a --root /var/lib/ordinal "
                  "--repo s3://backups/ordinal\n\n"
                  "Exit status: 0 after SIGTERM or SIGINT (once the task in progress is done), "
                  "1 when it cannot start (repository, Kubernetes configuration, metrics "
                  "address) or its watch fails for good, 2 on a usage error. Another agent of "
                  "the same node (same --root) makes it wait, not exit.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK) {
        free(ag);
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    log_level_from_string(ag->a.log_level, &level);
    log_format_from_string(ag->a.log_format, &format);
    log_setup("ordinal-backup agent", level, format);
    len = strlen(ag->a.root);
    while (len > 1 && ag->a.root[len - 1] == '/')
        len--;
    if (ag->a.root[0] != '/' || len >= sizeof(ag->root) || !ag->a.node_name[0]) {
        cli_error("agent", "--root must be an absolute path and --node-name must not be empty");
        free(ag);
        return CLI_EXIT_USAGE;
    }
    memcpy(ag->root, ag->a.root, len);
    ag->root[len] = '\0';
    if (ag->a.metrics_address && http_server_check_address(ag->a.metrics_address, &e) < 0) {
        cli_error("agent", "--metrics-address: %s", err_msg(&e));
        free(ag);
        return CLI_EXIT_USAGE;
    }

    /* Signals are taken synchronously between tasks (stop_requested), never mid-write. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&ag->mu, NULL);
    pthread_cond_init(&ag->cv, NULL);
    ag->lock_fd = -EBADF;

    /* A repository this agent could not write is refused at start, with what to fix (repo.h,
     * "Shared repositories"); each backup task checks its own directories again. */
    r = repo_check_url_writable(ag->a.repo, &e);
    if (r >= 0)
        r = cluster_connect(ag->a.kubeconfig, ag->a.ns, &ag->client, ag->ns, sizeof(ag->ns), &e);
    if (r >= 0 && ag->a.metrics_address)
        r = start_metrics(ag, &e);
    if (r >= 0)
        r = agent_loop(ag, &e);
    if (r < 0)
        log_error("%s", err_msg(&e));
    atomic_store(&ag->quit, true);
    if (ag->health_started)
        pthread_join(ag->health, NULL);
    if (ag->prober_started)
        pthread_join(ag->prober, NULL);
    /* Before the informer and the client go: the handlers read them. */
    http_server_stop(ag->srv);
    health_remove(ag->a.health_file); /* a stopped agent is not alive */
    kube_informer_free(ag->inf);
    kube_client_free(ag->client);
    metrics_free(ag->reg);
    pthread_cond_destroy(&ag->cv);
    pthread_mutex_destroy(&ag->mu);
    if (ag->lock_fd >= 0)
        close(ag->lock_fd);
    free(ag);
    return r < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
