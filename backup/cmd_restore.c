/*
 * cmd_restore.c - "ordinal-backup restore": puts the volumes of a backup back into the node
 * layout, one ordinal at a time (ordinal order by default).
 *
 * Nothing lost, in this order:
 *   1. Everything that can be checked without reading data is checked first: the backup
 *      exists and is complete, backup.json and every selected volume manifest parse and agree,
 *      every target entry exists in the node layout with the right kind.
 *   2. Every selected stored object is read whole and checked (engine_verify: SHA-256, sizes,
 *      full decompression, tar walk) before ANY volume is touched. A damaged object in
 *      ordinal 2 therefore stops the restore before ordinal 0 was replaced: the user is never
 *      left with half the StatefulSet from the backup and half from before because of a bad
 *      backup. This costs a second read of each object; at 3 a.m. that is the right trade.
 *      The first volume to restore is the exception when it is a directory: its extraction
 *      into staging (step 3) checks the same things before anything is swapped, so a damaged
 *      object there also stops the restore with every volume untouched, and a single-volume
 *      restore reads its object once.
 *   3. Then, volume by volume: a directory volume is extracted into a staging entry beside the
 *      live one (".<template>.restore-<id>", a dot name, so bookkeeping per DESIGN §2), checked
 *      again by the engine on the way, and exchanged with the live entry atomically
 *      (engine_swap); a device volume is written back only after step 2 checked its object.
 * A kill at any point leaves each volume entirely old or entirely restored; leftover staging
 * entries are removed by the next restore. The StatefulSet's lock is held throughout so that
 * a prune cannot remove the backup being read and a backup cannot run at the same time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cli.h"
#include "cmds.h"
#include "engine.h"
#include "id.h"
#include "layout.h"
#include "lock.h"
#include "manifest.h"
#include "opts.h"
#include "repo.h"
#include "repo_s3.h"
#include "restore_cluster.h"
#include "version.h"
#include "volume_op.h"

static const char *const orders[] = {"ordinal", "reverse", NULL};

struct restore_args {
    const char *root, *repo, *statefulset, *backup, *ordinals, *order;
    const char *kubeconfig, *ns; /* cluster mode (restore_cluster.c) */
    bool json;
};

struct target {
    const struct backup_volume *bv;
    struct volume_manifest m;
    struct layout_volume lv;
};

/* Picks the backup's volumes to restore, in processing order. */
static int select_targets(const struct backup_manifest *b, const char *ordinals, bool reverse,
                          struct target **ret, size_t *ret_n, ord_err *e)
{
    _cleanup_free_ int32_t *want = NULL, *sorted = NULL;
    _cleanup_free_ struct target *t = NULL;
    size_t n_want = 0, n = 0;

    if (ordinals) {
        int r = names_parse_ordinals(ordinals, &want, &n_want, e);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n_want; i++) {
            bool found = false;
            for (size_t j = 0; j < b->n_ordinals && !found; j++)
                found = b->ordinals[j] == want[i];
            if (!found)
                return err_set(e, -ENOENT, "backup '%s' of %s/%s holds no ordinal %d", b->id,
                               b->sts.ns, b->sts.name, (int)want[i]);
        }
    }
    sorted = calloc(b->n_ordinals, sizeof(*sorted));
    t = calloc(b->n_volumes, sizeof(*t));
    if (!sorted || !t)
        return err_set(e, -ENOMEM, "out of memory");
    memcpy(sorted, b->ordinals, b->n_ordinals * sizeof(*sorted));
    /* insertion sort: at most a few thousand ordinals */
    for (size_t i = 1; i < b->n_ordinals; i++)
        for (size_t j = i;
             j > 0 && (reverse ? sorted[j - 1] < sorted[j] : sorted[j - 1] > sorted[j]); j--) {
            int32_t tmp = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = tmp;
        }
    for (size_t i = 0; i < b->n_ordinals; i++) {
        bool wanted = !want;
        for (size_t k = 0; k < n_want; k++)
            wanted = wanted || want[k] == sorted[i];
        if (!wanted)
            continue;
        for (size_t j = 0; j < b->n_volumes; j++)
            if (b->volumes[j].ordinal == sorted[i])
                t[n++].bv = &b->volumes[j];
    }
    *ret = TAKE_PTR(t);
    *ret_n = n;
    return 0;
}

static int run_restore(const struct restore_args *a, const struct sts_ref *sts, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_free_ struct target *t = NULL;
    _cleanup_free_ struct backup_volume *done = NULL;
    struct catalog cat = {0};
    struct backup_manifest b = {0};
    const struct catalog_entry *ce;
    size_t n = 0;
    int r;

    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    r = lock_acquire(repo, sts, "restore", &lock, e);
    if (r < 0)
        return r;
    r = catalog_scan(repo, sts, &cat, e);
    if (r < 0)
        return r;
    if (streq(a->backup, "latest")) {
        ce = catalog_latest(&cat, sts);
        if (!ce) {
            r = err_set(e, -ENOENT,
                        "there is no complete backup of %s/%s in '%s'; run 'ordinal-backup list "
                        "--repo %s' to see the backups",
                        sts->ns, sts->name, a->repo, a->repo);
            goto out;
        }
    } else {
        ce = catalog_find(&cat, sts, a->backup);
        if (!ce) {
            r = err_set(e, -ENOENT,
                        "backup '%s' of %s/%s does not exist; run 'ordinal-backup list --repo %s "
                        "--statefulset %s/%s' to see the backups",
                        a->backup, sts->ns, sts->name, a->repo, sts->ns, sts->name);
            goto out;
        }
        if (!ce->complete) {
            r = err_set(e, -ENOENT,
                        "backup '%s' of %s/%s is incomplete (it has no backup.json: it was "
                        "interrupted or is still being written) and cannot be restored; run "
                        "'ordinal-backup list --repo %s --statefulset %s/%s' to see the complete "
                        "backups",
                        a->backup, sts->ns, sts->name, a->repo, sts->ns, sts->name);
            goto out;
        }
    }
    r = cli_load_backup(repo, sts, ce->id, &b, e);
    if (r == -ENOENT) {
        r = err_set(e, -ENOENT, "backup '%s' of %s/%s vanished while being read (pruned?)", ce->id,
                    sts->ns, sts->name);
        goto out;
    }
    if (r < 0)
        goto out;
    r = select_targets(&b, a->ordinals, streq(a->order, "reverse"), &t, &n, e);
    if (r < 0)
        goto out;

    /* 1. Manifests and targets. */
    for (size_t i = 0; i < n; i++) {
        const struct backup_volume *bv = t[i].bv;

        r = cli_load_volume(repo, &b, bv, &t[i].m, e);
        if (r < 0)
            goto refuse;
        r = layout_lookup(a->root, sts, bv->ordinal, bv->template_name, &t[i].lv, e);
        if (r == -ENOENT && !a->ordinals) {
            char msg[ORD_ERR_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", e->msg);
            err_set(e, r, "%s; or leave ordinal %d out with --ordinals", msg, (int)bv->ordinal);
        }
        if (r < 0)
            goto refuse;
        if (t[i].lv.kind != bv->kind) {
            r = err_set(e, -EINVAL, "'%s' is a %s volume but the backup holds a %s volume",
                        t[i].lv.path, volume_kind_name(t[i].lv.kind), volume_kind_name(bv->kind));
            goto refuse;
        }
    }
    /* Leftovers of a killed restore (partial staging, or old content after the swap). */
    for (size_t i = 0; i < n; i++) {
        r = layout_remove_staging(a->root, sts, t[i].bv->ordinal, t[i].bv->template_name, e);
        if (r < 0)
            goto refuse;
    }
    /* 2. Every object, whole, before any volume is touched. */
    for (size_t i = 0; i < n; i++) {
        struct cli_progress p;

        if (i == 0 && t[i].lv.kind == VOLUME_DIRECTORY)
            continue; /* checked by its own extraction, before any swap (see the top) */
        cli_progress_init(&p);
        if (p.on)
            fprintf(stderr, "\r\033[Kchecking ordinal %d '%s'", (int)t[i].bv->ordinal,
                    t[i].bv->template_name);
        r = volop_verify_object(repo, &b, t[i].bv, &t[i].m, e);
        p.last = 1;
        cli_progress_done(&p);
        if (r < 0) {
            err_wrap(e, r, "ordinal %d volume '%s': the stored object failed its check",
                     (int)t[i].bv->ordinal, t[i].bv->template_name);
            goto refuse;
        }
    }

    /* 3. Volume by volume. */
    done = calloc(n, sizeof(*done));
    if (!done) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct cli_progress p;
        double started = cli_now(), t0 = cli_monotonic();

        cli_progress_init(&p);
        if (p.on)
            fprintf(stderr, "\r\033[Krestoring ordinal %d '%s'", (int)t[i].bv->ordinal,
                    t[i].bv->template_name);
        r = volop_restore(repo, &b, t[i].bv, &t[i].m, a->root, &t[i].lv, e);
        p.last = 1;
        cli_progress_done(&p);
        if (r < 0) {
            err_wrap(e, r,
                     "restoring ordinal %d volume '%s' ('%s') failed and it keeps its previous "
                     "content; %zu volume(s) before it were restored, the rest were not touched",
                     (int)t[i].bv->ordinal, t[i].bv->template_name, t[i].lv.path, i);
            goto out;
        }
        done[i] = *t[i].bv;
        done[i].started_at = started;
        done[i].finished_at = cli_now();
        done[i].seconds = cli_monotonic() - t0;
    }
    if (a->json)
        r = cli_print_volumes_json(b.id, sts, a->order, done, n);
    else
        cli_print_volumes_text("restored backup", b.id, sts, a->order, done, n);
    if (r < 0)
        err_set(e, r, "out of memory");
    goto out;

refuse:
    err_wrap(e, r, "refusing to restore backup '%s' of %s/%s (nothing was changed)", b.id, sts->ns,
             sts->name);
out:
    for (size_t i = 0; t && i < n; i++)
        volume_manifest_free(&t[i].m);
    backup_manifest_free(&b);
    catalog_free(&cat);
    return r;
}

int cmd_restore(int argc, char **argv)
{
    struct restore_args a = {
        .root = NULL, /* CLI_DEFAULT_ROOT; NULL tells "not given" (cluster mode in a pod) */
        .order = "ordinal",
        .backup = "latest",
    };
    struct sts_ref sts;
    struct backup_id bid;
    ord_err e = {0};
    int r;

    const struct opt_def opts[] = {
        {"root", OPT_STRING, &a.root, "DIR",
         "Node directory that holds the volumes "
         "(ROOT/NAMESPACE/STATEFULSET/ORDINAL/TEMPLATE).",
         CLI_DEFAULT_ROOT, 0, 0, NULL, NULL, false},
        CLI_OPT_REPO(&a.repo),
        REPO_S3_OPT_DEFS,
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "The StatefulSet whose volumes are restored.", NULL, 0, 0, NULL, NULL, true},
        {"backup", OPT_STRING, &a.backup, "ID",
         "The backup to restore (an ID from 'ordinal-backup list'), or latest: the newest "
         "complete one.",
         "latest", 0, 0, NULL, NULL, false},
        {"ordinals", OPT_STRING, &a.ordinals, "LIST", "Restore only these ordinals, e.g. 0,2.",
         "every ordinal in the backup", 0, 0, NULL, NULL, false},
        {"order", OPT_CHOICE, &a.order, "ORDER",
         "Process ordinals from 0 up (ordinal) or from the highest down (reverse).", "ordinal", 0,
         0, orders, NULL, false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {id, statefulset, order, volumes[]}.", NULL, 0, 0,
         NULL, NULL, false},
        {"kubeconfig", OPT_STRING, &a.kubeconfig, "FILE",
         "Cluster mode: scale the StatefulSet to 0, re-create missing claims, restore every "
         "volume through the agent of its node, scale back. In a pod, cluster mode is the "
         "default when --root is not given.",
         NULL, 0, 0, NULL, NULL, false},
        {"namespace", OPT_STRING, &a.ns, "NS", "Cluster mode: namespace of the VolumeTasks.",
         "the pod's namespace, else ordinal-system", 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "restore",
        .usage = "--repo URL --statefulset NS/NAME [--root DIR | --kubeconfig FILE] "
                 "[--backup ID|latest] "
                 "[--ordinals 0,2] [--order ordinal|reverse] [--json]",
        .summary =
            "Restores the StatefulSet's volumes on this node from a backup. Stop the pods first\n"
            "(scale the StatefulSet to 0). Before touching any volume it checks the backup is\n"
            "complete, its manifests agree, every target entry exists in the node layout, and\n"
            "reads every selected stored object whole (SHA-256, decompression, tar walk). Then,\n"
            "ordinal by ordinal, a directory volume is extracted beside the live one and swapped\n"
            "in atomically (the old content is removed after the swap); a device volume is\n"
            "written back onto its block device. A refused restore changes nothing.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Repository URL: /srv/backups, file:///srv/backups or s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup restore --repo /srv/backups --statefulset default/web\n"
                  "  ordinal-backup restore --repo /srv/backups --statefulset default/web "
                  "--backup 20261121T203000Z --ordinals 1\n\n"
                  "Exit status: 0 when every selected volume was restored, 1 on failure (the "
                  "message says what was and was not restored), 2 on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (cli_parse_sts("restore", a.statefulset, &sts) < 0)
        return CLI_EXIT_USAGE;
    if (!streq(a.backup, "latest") && id_parse(a.backup, &bid) < 0) {
        cli_error("restore",
                  "--backup: '%s' is not a backup ID (like 20261121T203000Z or "
                  "20261121T203000Z-1) or 'latest'",
                  a.backup);
        return CLI_EXIT_USAGE;
    }
    if (a.ordinals) {
        _cleanup_free_ int32_t *tmp = NULL;
        size_t n;
        if (names_parse_ordinals(a.ordinals, &tmp, &n, &e) < 0) {
            cli_error("restore", "--ordinals: %s", err_msg(&e));
            return CLI_EXIT_USAGE;
        }
    }
    if (a.kubeconfig || (!a.root && getenv("KUBERNETES_SERVICE_HOST"))) {
        struct restore_cluster_args ca = {
            .kubeconfig = a.kubeconfig,
            .ns = a.ns,
            .repo = a.repo,
            .backup = a.backup,
            .ordinals = a.ordinals,
            .order = a.order,
            .task_timeout = 6 * 3600,
            .json = a.json,
        };

        r = restore_cluster(&ca, &sts, &e);
    } else {
        if (!a.root)
            a.root = CLI_DEFAULT_ROOT;
        r = run_restore(&a, &sts, &e);
    }
    if (r < 0) {
        cli_error("restore", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
