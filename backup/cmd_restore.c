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
#include "cluster.h"
#include "cmds.h"
#include "engine.h"
#include "id.h"
#include "json.h"
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
    const char *node_name;       /* this node, as 'backup --node-name' records it */
    uint64_t task_timeout, unclaimed_warning; /* cluster mode, seconds */
    const char *place_lost_on;                /* cluster mode */
    const char *to;                           /* cluster mode: --to NS/NAME */
    bool create;                              /* cluster mode */
    bool json, dry_run, accept_lost;
};

struct target {
    const struct backup_manifest *b; /* the backup it is restored from */
    const struct backup_volume *bv;
    struct volume_manifest m;
    struct layout_volume lv;
    struct volop_fit fit;
};

/* --dry-run: what would be restored, where, and whether it fits. */
static int print_plan(const struct restore_args *a, const struct sts_ref *sts,
                      const struct target *t, size_t n, bool fits)
{
    _cleanup_(cJSON_Deletep) cJSON *o = NULL;
    _cleanup_free_ char *text = NULL;
    char name[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    cJSON *arr;

    if (!a->json) {
        printf("would restore %s/%s (order %s)%s:\n", sts->ns, sts->name, a->order,
               fits ? "" : "; it does NOT fit");
        for (size_t i = 0; i < n; i++) {
            char what[256];
            volop_fit_describe(&t[i].fit, what, sizeof(what));
            printf("  ordinal %-4d %-20s %-9s from backup %s -> %s: %s, %s\n",
                   (int)t[i].bv->ordinal, t[i].bv->template_name, volume_kind_name(t[i].bv->kind),
                   t[i].b->id, t[i].lv.path, t[i].fit.fits ? "fits" : "does NOT fit", what);
        }
        fflush(stdout);
        return 0;
    }
    snprintf(name, sizeof(name), "%s/%s", sts->ns, sts->name);
    if (!(o = cJSON_CreateObject()) || !cJSON_AddStringToObject(o, "statefulset", name) ||
        !cJSON_AddStringToObject(o, "order", a->order) ||
        !cJSON_AddBoolToObject(o, "dry_run", true) || !cJSON_AddBoolToObject(o, "fits", fits) ||
        !(arr = cJSON_AddArrayToObject(o, "volumes")))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct volop_fit *f = &t[i].fit;
        cJSON *v = cJSON_CreateObject();

        if (!v)
            return -ENOMEM;
        cJSON_AddItemToArray(arr, v);
        if (!cJSON_AddNumberToObject(v, "ordinal", t[i].bv->ordinal) ||
            !cJSON_AddStringToObject(v, "template", t[i].bv->template_name) ||
            !cJSON_AddStringToObject(v, "kind", volume_kind_name(t[i].bv->kind)) ||
            !cJSON_AddStringToObject(v, "backup", t[i].b->id) ||
            !cJSON_AddStringToObject(v, "path", t[i].lv.path) ||
            !cJSON_AddNumberToObject(v, "bytes_in", (double)t[i].bv->bytes_in) ||
            !cJSON_AddNumberToObject(v, "files", (double)t[i].bv->files) ||
            !cJSON_AddNumberToObject(v, "need_bytes", (double)f->need_bytes) ||
            !cJSON_AddNumberToObject(v, "free_bytes", (double)f->free_bytes) ||
            !cJSON_AddNumberToObject(v, "need_inodes", (double)f->need_inodes) ||
            (f->free_inodes != UINT64_MAX
                 ? !cJSON_AddNumberToObject(v, "free_inodes", (double)f->free_inodes)
                 : !cJSON_AddNullToObject(v, "free_inodes")) ||
            !cJSON_AddBoolToObject(v, "fits", f->fits))
            return -ENOMEM;
    }
    text = cJSON_Print(o);
    if (!text)
        return -ENOMEM;
    cli_print_json_text(text);
    return 0;
}

/*
 * --json of a restore stopped because volume t would lose attributes: the n volumes restored
 * before it, and t under "refused" with what it would have lost (lost[n]).
 */
static void print_lost_json(const struct backup_manifest *b, const struct sts_ref *sts,
                            const char *order, const struct backup_volume *done,
                            const struct engine_lost *lost, size_t n, const struct target *t)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    _cleanup_free_ char *text = NULL;
    char name[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    cJSON *arr, *ref, *lj;

    snprintf(name, sizeof(name), "%s/%s", sts->ns, sts->name);
    if (!o || !cJSON_AddStringToObject(o, "id", b->id) ||
        !cJSON_AddStringToObject(o, "statefulset", name) ||
        !cJSON_AddStringToObject(o, "order", order) ||
        !(arr = cJSON_AddArrayToObject(o, "volumes")) ||
        !(ref = cJSON_AddObjectToObject(o, "refused")) ||
        !cJSON_AddNumberToObject(ref, "ordinal", t->bv->ordinal) ||
        !cJSON_AddStringToObject(ref, "template", t->bv->template_name) ||
        !cJSON_AddStringToObject(ref, "path", t->lv.path) || !(lj = cli_lost_json(&lost[n])))
        return;
    cJSON_AddItemToObject(ref, "lost_attributes", lj);
    for (size_t i = 0; i < n; i++) {
        cJSON *v = cJSON_CreateObject();
        if (!v || !cJSON_AddNumberToObject(v, "ordinal", done[i].ordinal) ||
            !cJSON_AddStringToObject(v, "template", done[i].template_name)) {
            cJSON_Delete(v);
            return;
        }
        cJSON_AddItemToArray(arr, v);
        if (engine_lost_total(&lost[i]) > 0 && (lj = cli_lost_json(&lost[i])))
            cJSON_AddItemToObject(v, "lost_attributes", lj);
    }
    text = cJSON_Print(o);
    if (text)
        cli_print_json_text(text);
}

/* The message of a restore that would lose attributes, with the two ways on. */
static int refuse_lost(ord_err *e, const struct target *t, size_t done)
{
    char inner[ORD_ERR_MSG_MAX];

    snprintf(inner, sizeof(inner), "%s", e->msg);
    return err_set(e, -EPERM,
                   "ordinal %d volume '%s' ('%s') was not restored and keeps its previous "
                   "content (%zu volume(s) before it were restored, the rest were not touched): "
                   "%s. Run the restore with the privileges these need (as root with CAP_CHOWN, "
                   "CAP_FOWNER, CAP_FSETID, CAP_MKNOD and CAP_SYS_ADMIN: see "
                   "docs/security.md), or accept restoring without them with "
                   "--accept-lost-attributes",
                   (int)t->bv->ordinal, t->bv->template_name, t->lv.path, done, inner);
}

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
                t[n++] = (struct target){.b = b, .bv = &b->volumes[j]};
    }
    *ret = TAKE_PTR(t);
    *ret_n = n;
    return 0;
}

/* A volume left out because it belongs to another node. */
struct left_out {
    const struct backup_manifest *b;
    const struct backup_volume *bv;
    char node[NAMES_SUBDOMAIN_MAX + 1];
};

/*
 * Volumes of other nodes. A volume whose entry is missing here and whose backup was made on
 * another node (its manifest's node; --node-name or the host name here, as 'backup' records
 * it) lives on that node: advising 'mkdir -p' here would make a stray volume on the wrong
 * node. When the volumes were not chosen with --ordinals, such a volume is left out (*ret,
 * said on stderr); when they were, or when nothing is left, the restore is refused with the
 * node to run it on. Returns 0 with t and *n compacted, -ENOENT (e says where to go) or
 * -ENOMEM.
 */
static int leave_out_other_nodes(struct repo *repo, const struct restore_args *a,
                                 const struct sts_ref *sts, struct target *t, size_t *n,
                                 struct left_out **ret, size_t *ret_n, ord_err *e)
{
    _cleanup_free_ struct left_out *left = NULL;
    char node[NAMES_SUBDOMAIN_MAX + 1];
    size_t n_left = 0, k = 0;

    cli_node_name(a->node_name, node, sizeof(node));
    left = calloc(*n ? *n : 1, sizeof(*left));
    if (!left)
        return err_set(e, -ENOMEM, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        struct volume_manifest m = {0};
        struct layout_volume lv;
        ord_err le = {0};
        bool other;

        /* Errors other than a missing entry on another node are step 1's to report. */
        if (layout_lookup(a->root, sts, t[i].bv->ordinal, t[i].bv->template_name, &lv, &le) !=
                -ENOENT ||
            cli_load_volume(repo, t[i].b, t[i].bv, &m, &le) < 0) {
            t[k++] = t[i];
            continue;
        }
        other = m.node[0] && !streq(m.node, node);
        if (other) {
            left[n_left] = (struct left_out){.b = t[i].b, .bv = t[i].bv};
            snprintf(left[n_left++].node, sizeof(left->node), "%s", m.node);
        } else {
            t[k++] = t[i];
        }
        volume_manifest_free(&m);
    }
    if (n_left > 0 && (a->ordinals || k == 0)) {
        const struct left_out *l = &left[0];

        return err_set(e, -ENOENT,
                       "refusing to restore %s/%s (nothing was changed): ordinal %d volume '%s' "
                       "is in backup '%s' made on node '%s'; this node is '%s' and has no "
                       "volume for it: run this restore on node '%s' (give --node-name if that "
                       "is not its host name), or restore in cluster mode (--kubeconfig), which "
                       "hands each volume to the agent of its node%s",
                       sts->ns, sts->name, (int)l->bv->ordinal, l->bv->template_name, l->b->id,
                       l->node, node, l->node,
                       n_left > 1 ? " (the same holds for other volumes of the selection)" : "");
    }
    for (size_t i = 0; i < n_left; i++)
        cli_warn("restore",
                 "ordinal %d volume '%s' was left out: backup '%s' that holds it was made on "
                 "node '%s', and this node ('%s') has no volume for it; restore it on node '%s', "
                 "or in cluster mode (--kubeconfig)",
                 (int)left[i].bv->ordinal, left[i].bv->template_name, left[i].b->id, left[i].node,
                 node, left[i].node);
    *n = k;
    *ret = TAKE_PTR(left);
    *ret_n = n_left;
    return 0;
}

/*
 * --backup latest, per volume: each volume is restored from the newest complete backup that
 * holds it (catalog_latest_volumes() says which volumes), so a StatefulSet whose nodes each
 * make their own one-node backups restores each node's ordinals from that node's newest
 * backup, whichever node backed up last. Volumes of other nodes are left out as by
 * leave_out_other_nodes(). *ret_newest is the newest backup used.
 */
static int select_latest(struct repo *repo, const struct restore_args *a, struct catalog *cat,
                         const struct sts_ref *sts, struct target **ret, size_t *ret_n,
                         const struct catalog_entry **ret_newest, struct left_out **ret_left,
                         size_t *ret_n_left, ord_err *e)
{
    _cleanup_free_ int32_t *want = NULL;
    _cleanup_free_ struct catalog_pick *picks = NULL;
    _cleanup_free_ struct target *t = NULL;
    const char *newest = NULL;
    bool reverse = streq(a->order, "reverse");
    size_t n_want = 0, n = 0, k = 0;
    int r;

    r = catalog_load(repo, cat, e);
    if (r < 0)
        return r;
    if (a->ordinals) {
        r = names_parse_ordinals(a->ordinals, &want, &n_want, e);
        if (r < 0)
            return r;
    }
    r = catalog_latest_volumes(cat, sts, want, n_want, &picks, &n, e);
    if (r < 0)
        return r;
    t = calloc(n, sizeof(*t));
    if (!t)
        return err_set(e, -ENOMEM, "out of memory");
    /* picks are by ordinal then template; reverse walks the ordinals down, templates up */
    for (size_t g = 0; g < n;) {
        size_t start = reverse ? n - g : g, end = start;

        if (reverse) {
            while (start > 0 && picks[start - 1].volume->ordinal == picks[end - 1].volume->ordinal)
                start--;
        } else {
            while (end < n && picks[end].volume->ordinal == picks[start].volume->ordinal)
                end++;
        }
        for (size_t i = start; i < end; i++)
            t[k++] = (struct target){.b = picks[i].entry->manifest, .bv = picks[i].volume};
        g += end - start;
    }
    r = leave_out_other_nodes(repo, a, sts, t, &n, ret_left, ret_n_left, e);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (!newest || id_compare(t[i].b->id, newest) > 0)
            newest = t[i].b->id;
    *ret_newest = catalog_find(cat, sts, newest);
    *ret = TAKE_PTR(t);
    *ret_n = n;
    return 0;
}

/*
 * The result of a restore (stdout). Volumes may come from several backups (--backup latest):
 * JSON gives each volume's "backup" and "left_out" lists the volumes of other nodes; "id" is
 * the newest backup used. Text prints one block per backup.
 */
static int print_restored(const struct restore_args *a, const struct sts_ref *sts, const char *id,
                          const struct target *t, const struct backup_volume *done,
                          const struct engine_lost *lost, size_t n, const struct left_out *left,
                          size_t n_left)
{
    _cleanup_free_ struct backup_volume *gv = NULL;
    _cleanup_free_ struct engine_lost *gl = NULL;
    _cleanup_(cJSON_Deletep) cJSON *o = NULL;
    _cleanup_free_ char *text = NULL;
    char name[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    cJSON *arr, *la;

    if (!a->json) {
        bool one = true;

        for (size_t i = 1; i < n && one; i++)
            one = t[i].b == t[0].b;
        if (one) {
            cli_print_restored_text("restored backup", id, sts, a->order, done, lost, n);
            return 0;
        }
        gv = calloc(n, sizeof(*gv));
        gl = calloc(n, sizeof(*gl));
        if (!gv || !gl)
            return -ENOMEM;
        /* one block per backup, in the order their first volume was restored */
        for (size_t i = 0; i < n; i++) {
            size_t m = 0;
            bool seen = false;

            for (size_t j = 0; j < i && !seen; j++)
                seen = t[j].b == t[i].b;
            if (seen)
                continue;
            for (size_t j = i; j < n; j++)
                if (t[j].b == t[i].b) {
                    gv[m] = done[j];
                    gl[m++] = lost[j];
                }
            cli_print_restored_text("restored backup", t[i].b->id, sts, a->order, gv, gl, m);
        }
        return 0;
    }
    snprintf(name, sizeof(name), "%s/%s", sts->ns, sts->name);
    if (!(o = cJSON_CreateObject()) || !cJSON_AddStringToObject(o, "id", id) ||
        !cJSON_AddStringToObject(o, "statefulset", name) ||
        !cJSON_AddStringToObject(o, "order", a->order) ||
        !(arr = cJSON_AddArrayToObject(o, "volumes")) ||
        !(la = cJSON_AddArrayToObject(o, "left_out")))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cJSON *vj = cli_volume_json(&done[i]), *lj;

        if (!vj)
            return -ENOMEM;
        cJSON_AddItemToArray(arr, vj);
        if (!cJSON_AddStringToObject(vj, "backup", t[i].b->id))
            return -ENOMEM;
        if (lost && engine_lost_total(&lost[i]) > 0) {
            if (!(lj = cli_lost_json(&lost[i])))
                return -ENOMEM;
            cJSON_AddItemToObject(vj, "lost_attributes", lj);
        }
    }
    for (size_t i = 0; i < n_left; i++) {
        cJSON *lj = cJSON_CreateObject();

        if (!lj)
            return -ENOMEM;
        cJSON_AddItemToArray(la, lj);
        if (!cJSON_AddNumberToObject(lj, "ordinal", left[i].bv->ordinal) ||
            !cJSON_AddStringToObject(lj, "template", left[i].bv->template_name) ||
            !cJSON_AddStringToObject(lj, "backup", left[i].b->id) ||
            !cJSON_AddStringToObject(lj, "node", left[i].node))
            return -ENOMEM;
    }
    text = cJSON_Print(o);
    if (!text)
        return -ENOMEM;
    cli_print_json_text(text);
    return 0;
}

/*
 * The backup to restore from and its volumes (t, *n), in processing order: with latest, each
 * volume from the newest backup that holds it (select_latest); else the given backup. b is
 * the newest backup used (the one a --backup ID names).
 */
static int select_backup(struct repo *repo, const struct restore_args *a, struct catalog *cat,
                         const struct sts_ref *sts, struct backup_manifest *b,
                         struct target **t, size_t *n, struct left_out **left, size_t *n_left,
                         ord_err *e)
{
    const struct catalog_entry *ce = NULL;
    int r;

    if (streq(a->backup, "latest")) {
        if (!catalog_latest(cat, sts))
            return err_set(e, -ENOENT,
                           "there is no complete backup of %s/%s in '%s'; run 'ordinal-backup "
                           "list --repo %s' to see the backups",
                           sts->ns, sts->name, a->repo, a->repo);
        r = select_latest(repo, a, cat, sts, t, n, &ce, left, n_left, e);
        if (r < 0)
            return r;
    } else {
        ce = catalog_find(cat, sts, a->backup);
        if (!ce)
            return err_set(e, -ENOENT,
                           "backup '%s' of %s/%s does not exist; run 'ordinal-backup list --repo "
                           "%s --statefulset %s/%s' to see the backups",
                           a->backup, sts->ns, sts->name, a->repo, sts->ns, sts->name);
        if (!ce->complete)
            return err_set(e, -ENOENT,
                           "backup '%s' of %s/%s is incomplete (it has no backup.json: it was "
                           "interrupted or is still being written) and cannot be restored; run "
                           "'ordinal-backup list --repo %s --statefulset %s/%s' to see the "
                           "complete backups",
                           a->backup, sts->ns, sts->name, a->repo, sts->ns, sts->name);
    }
    r = cli_load_backup(repo, sts, ce->id, b, e);
    if (r == -ENOENT)
        return err_set(e, -ENOENT, "backup '%s' of %s/%s vanished while being read (pruned?)",
                       ce->id, sts->ns, sts->name);
    if (r < 0)
        return r;
    if (*t) /* latest picked its volumes above */
        return 0;
    r = select_targets(b, a->ordinals, streq(a->order, "reverse"), t, n, e);
    if (r < 0)
        return r;
    return leave_out_other_nodes(repo, a, sts, *t, n, left, n_left, e);
}

/*
 * Step 1: every volume's manifest, its entry in the node layout, and whether it fits there
 * (*ret_fits). Reads no object and changes nothing.
 */
static int check_targets(struct repo *repo, const struct restore_args *a,
                         const struct sts_ref *sts, struct target *t, size_t n, bool *ret_fits,
                         ord_err *e)
{
    bool fits = true;
    int r;

    for (size_t i = 0; i < n; i++) {
        const struct backup_volume *bv = t[i].bv;

        r = cli_load_volume(repo, t[i].b, bv, &t[i].m, e);
        if (r < 0)
            return r;
        r = layout_lookup(a->root, sts, bv->ordinal, bv->template_name, &t[i].lv, e);
        if (r == -ENOENT && !a->ordinals) {
            char msg[ORD_ERR_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", e->msg);
            err_set(e, r, "%s; or leave ordinal %d out with --ordinals", msg, (int)bv->ordinal);
        }
        if (r < 0)
            return r;
        if (t[i].lv.kind != bv->kind)
            return err_set(e, -EINVAL, "'%s' is a %s volume but the backup holds a %s volume",
                           t[i].lv.path, volume_kind_name(t[i].lv.kind),
                           volume_kind_name(bv->kind));
        r = volop_check_fit(&t[i].m, &t[i].lv, &t[i].fit, e);
        if (r < 0)
            return r;
        fits = fits && t[i].fit.fits;
    }
    *ret_fits = fits;
    return 0;
}

/* The first volume that does not fit, refused with the numbers. */
static int refuse_unfit(const struct target *t, size_t n, ord_err *e)
{
    for (size_t i = 0; i < n; i++) {
        char what[256];

        if (t[i].fit.fits)
            continue;
        volop_fit_describe(&t[i].fit, what, sizeof(what));
        return err_set(e, -ENOSPC,
                       "ordinal %d volume '%s' does not fit on the %s of '%s': it %s; free space "
                       "there (or grow it), then run the restore again",
                       (int)t[i].bv->ordinal, t[i].bv->template_name,
                       t[i].lv.kind == VOLUME_DEVICE ? "device" : "filesystem", t[i].lv.path,
                       what);
    }
    return 0;
}

/*
 * Step 2: leftovers of a killed restore removed, then every object read whole and checked
 * before any volume is touched (the first directory volume excepted: see the top).
 */
static int check_objects(struct repo *repo, const struct restore_args *a,
                         const struct sts_ref *sts, const struct target *t, size_t n, ord_err *e)
{
    int r;

    for (size_t i = 0; i < n; i++) {
        r = layout_remove_staging(a->root, sts, t[i].bv->ordinal, t[i].bv->template_name, e);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < n; i++) {
        struct cli_progress p;

        if (i == 0 && t[i].lv.kind == VOLUME_DIRECTORY)
            continue; /* checked by its own extraction, before any swap (see the top) */
        cli_progress_init(&p);
        if (p.on)
            fprintf(stderr, "\r\033[Kchecking ordinal %d '%s'", (int)t[i].bv->ordinal,
                    t[i].bv->template_name);
        r = volop_verify_object(repo, t[i].b, t[i].bv, &t[i].m, e);
        p.last = 1;
        cli_progress_done(&p);
        if (r < 0)
            return err_wrap(e, r, "ordinal %d volume '%s': the stored object failed its check",
                            (int)t[i].bv->ordinal, t[i].bv->template_name);
    }
    return 0;
}

/* Step 3: volume by volume; done[i] and lost[i] filled for each restored one. */
static int restore_volumes(struct repo *repo, const struct restore_args *a,
                           const struct backup_manifest *b, const struct sts_ref *sts,
                           const struct target *t, size_t n, struct backup_volume *done,
                           struct engine_lost *lost, ord_err *e)
{
    for (size_t i = 0; i < n; i++) {
        struct cli_progress p;
        double started = cli_now(), t0 = cli_monotonic();
        int r;

        cli_progress_init(&p);
        if (p.on)
            fprintf(stderr, "\r\033[Krestoring ordinal %d '%s'", (int)t[i].bv->ordinal,
                    t[i].bv->template_name);
        lost[i].accept = a->accept_lost;
        r = volop_restore(repo, t[i].b, t[i].bv, &t[i].m, a->root, &t[i].lv, &lost[i], e);
        p.last = 1;
        cli_progress_done(&p);
        if (r == -EPERM && engine_lost_total(&lost[i]) > 0) {
            if (a->json)
                print_lost_json(b, sts, a->order, done, lost, i, &t[i]);
            return refuse_lost(e, &t[i], i);
        }
        if (r < 0)
            return err_wrap(e, r,
                            "restoring ordinal %d volume '%s' ('%s') failed and it keeps its "
                            "previous content; %zu volume(s) before it were restored, the rest "
                            "were not touched",
                            (int)t[i].bv->ordinal, t[i].bv->template_name, t[i].lv.path, i);
        done[i] = *t[i].bv;
        done[i].started_at = started;
        done[i].finished_at = cli_now();
        done[i].seconds = cli_monotonic() - t0;
    }
    return 0;
}

static int run_restore(const struct restore_args *a, const struct sts_ref *sts, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_free_ struct target *t = NULL;
    _cleanup_free_ struct backup_volume *done = NULL;
    _cleanup_free_ struct left_out *left = NULL;
    struct engine_lost *lost = NULL;
    struct catalog cat = {0};
    struct backup_manifest b = {0};
    size_t n = 0, n_left = 0;
    bool fits = false;
    int r;

    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    if (!a->dry_run) { /* a dry run writes nothing, not even a lock */
        r = lock_acquire(repo, sts, "restore", &lock, e);
        if (r < 0)
            return r;
    }
    r = catalog_scan(repo, sts, &cat, e);
    if (r < 0)
        return r;
    r = select_backup(repo, a, &cat, sts, &b, &t, &n, &left, &n_left, e);
    if (r < 0)
        goto out;
    r = check_targets(repo, a, sts, t, n, &fits, e);
    if (r < 0)
        goto refuse;
    if (a->dry_run) {
        r = print_plan(a, sts, t, n, fits);
        if (r < 0)
            err_set(e, r, "out of memory");
        else if (!fits)
            r = err_set(e, -ENOSPC, "dry run: the backup does not fit where it would go (see above)");
        goto out;
    }
    r = refuse_unfit(t, n, e);
    if (r >= 0)
        r = check_objects(repo, a, sts, t, n, e);
    if (r < 0)
        goto refuse;
    done = calloc(n, sizeof(*done));
    lost = calloc(n, sizeof(*lost));
    if (!done || !lost) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    r = restore_volumes(repo, a, &b, sts, t, n, done, lost, e);
    if (r < 0)
        goto out;
    r = print_restored(a, sts, b.id, t, done, lost, n, left, n_left);
    if (r < 0)
        err_set(e, r, "out of memory");
    goto out;

refuse:
    err_wrap(e, r, "refusing to restore backup '%s' of %s/%s (nothing was changed)", b.id, sts->ns,
             sts->name);
out:
    for (size_t i = 0; lost && i < n; i++)
        engine_lost_clear(&lost[i]);
    free(lost);
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
        .task_timeout = 6 * 3600,
        .unclaimed_warning = CLUSTER_UNCLAIMED_WARN_S,
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
         "The backup to restore (an ID from 'ordinal-backup list'), or latest: each volume from "
         "the newest complete backup that holds it, whichever node made it (cluster mode: the "
         "newest complete backup).",
         "latest", 0, 0, NULL, NULL, false},
        {"ordinals", OPT_STRING, &a.ordinals, "LIST", "Restore only these ordinals, e.g. 0,2.",
         "every ordinal in the backup (latest: in each node's newest backup); a volume of "
         "another node that has no entry here is left out",
         0, 0, NULL, NULL, false},
        {"node-name", OPT_STRING, &a.node_name, "NAME",
         "This node's name, as 'backup --node-name' recorded it: a missing volume backed up on "
         "another node is that node's to restore.",
         "the host name", 0, 0, NULL, "NODE_NAME", false},
        {"order", OPT_CHOICE, &a.order, "ORDER",
         "Process ordinals from 0 up (ordinal) or from the highest down (reverse).", "ordinal", 0,
         0, orders, NULL, false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {id, statefulset, order, volumes[], left_out[]}; "
         "each volume names its backup (id is the newest); left_out lists {ordinal, template, "
         "backup, node} of other nodes' volumes; a volume "
         "restored without some attributes has lost_attributes {kind: {count, examples}}; a "
         "restore stopped for them has refused {ordinal, template, path, lost_attributes}.",
         NULL, 0, 0, NULL, NULL, false},
        {"dry-run", OPT_FLAG, &a.dry_run, NULL,
         "Change nothing: print which volumes would be restored, where, and whether each fits "
         "(space and inodes needed against free). Exit status 1 when one does not fit.",
         NULL, 0, 0, NULL, NULL, false},
        {"accept-lost-attributes", OPT_FLAG, &a.accept_lost, NULL,
         "Restore even when some attributes cannot be kept as stored (owners, setuid/setgid "
         "bits, times, xattrs, ACLs, device nodes, FIFOs: e.g. without CAP_CHOWN, CAP_MKNOD or "
         "CAP_SYS_ADMIN). Without it such a restore is refused before the swap and the volume "
         "keeps its previous content. What was lost is reported either way.",
         NULL, 0, 0, NULL, NULL, false},
        {"kubeconfig", OPT_STRING, &a.kubeconfig, "FILE",
         "Cluster mode: scale the StatefulSet to 0, re-create missing claims, restore every "
         "volume through the agent of its node, scale back. In a pod, cluster mode is the "
         "default when --root is not given, with $KUBECONFIG if it is set, else the pod's "
         "service account. Excludes --root.",
         NULL, 0, 0, NULL, NULL, false},
        {"namespace", OPT_STRING, &a.ns, "NS", "Cluster mode: namespace of the VolumeTasks.",
         "the pod's namespace, else ordinal-system", 0, 0, NULL, NULL, false},
        {"task-timeout", OPT_UINT, &a.task_timeout, "SECONDS",
         "Cluster mode: stop the restore (held at 0 replicas, resumable) when one volume's task "
         "takes longer, e.g. because the agent of its node is down or the node is gone.",
         "21600", 10, 7 * 86400, NULL, NULL, false},
        {"unclaimed-warning", OPT_UINT, &a.unclaimed_warning, "SECONDS",
         "Cluster mode: say on stderr (once per task) when a task has waited this long and no "
         "agent has taken it, naming its node and what to check; 0 never.",
         "60", 0, 86400, NULL, NULL, false},
        {"place-lost-on", OPT_STRING, &a.place_lost_on, "NODE",
         "Cluster mode: re-create a missing claim whose volume's node no longer exists (a lost "
         "node) on NODE, a node that runs an agent, and restore it there.",
         NULL, 0, 0, NULL, NULL, false},
        {"create", OPT_FLAG, &a.create, NULL,
         "Cluster mode: when the StatefulSet does not exist (a new cluster), re-create it and "
         "its Service (spec.serviceName) from the copies the backup holds (backups by 'run'), "
         "with 0 replicas; restore every volume; then scale it to the stored replica count.",
         NULL, 0, 0, NULL, NULL, false},
        {"to", OPT_STRING, &a.to, "NS/NAME",
         "Cluster mode: restore into this StatefulSet instead (e.g. a staging copy of "
         "production): when missing it is created from the backup's copy under this name and "
         "namespace (claims <template>-<NAME>-<ordinal>), with 0 replicas, restored, then "
         "scaled to the stored count. The backup's own StatefulSet is not touched.",
         NULL, 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "restore",
        .usage = "--repo URL --statefulset NS/NAME [--root DIR | --kubeconfig FILE] "
                 "[--backup ID|latest] "
                 "[--ordinals 0,2] [--order ordinal|reverse] [--dry-run] "
                 "[--accept-lost-attributes] [--task-timeout SECONDS] "
                 "[--place-lost-on NODE] [--create] [--to NS/NAME] [--json]",
        .summary =
            "Restores the StatefulSet's volumes on this node from a backup. Stop the pods first\n"
            "(scale the StatefulSet to 0). Before touching any volume it checks the backup is\n"
            "complete, its manifests agree, every target entry exists in the node layout, and\n"
            "reads every selected stored object whole (SHA-256, decompression, tar walk). Then,\n"
            "ordinal by ordinal, a directory volume is extracted beside the live one and swapped\n"
            "in atomically (the old content is removed after the swap); a device volume is\n"
            "written back onto its block device. A refused restore changes nothing.\n"
            "A volume that does not fit (space or inodes of its filesystem, size of its device)\n"
            "is refused before anything is touched. A write that fails (full filesystem, quota,\n"
            "I/O error, read-only or vanished target) fails the volume: nothing is swapped in and\n"
            "the staging entry is removed. Every entry is compared on disk with the backup; an\n"
            "attribute that could not be restored refuses the swap unless\n"
            "--accept-lost-attributes is given.\n"
            "Without --backup, each volume comes from the newest complete backup that holds it,\n"
            "whichever node made it. A volume backed up on another node (see --node-name) that\n"
            "has no entry here belongs to that node: it is left out (refused with --ordinals),\n"
            "and the message names the node to run the restore on.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Repository URL: /srv/backups, file:///srv/backups or s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup restore --repo /srv/backups --statefulset default/web\n"
                  "  ordinal-backup restore --repo /srv/backups --statefulset default/web "
                  "--backup 20261121T203000Z --ordinals 1\n\n"
                  "  ordinal-backup restore --repo /srv/backups --statefulset default/web "
                  "--dry-run\n\n"
                  "Exit status: 0 when every selected volume was restored (with --dry-run: "
                  "when every one fits), 1 on failure (the message says what was and was not "
                  "restored), 2 on a usage error.\n",
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
    if ((a.create || a.to || a.place_lost_on) && !a.kubeconfig &&
        (a.root || !getenv("KUBERNETES_SERVICE_HOST"))) {
        cli_error("restore", "--%s is for cluster mode: give --kubeconfig FILE (or run in a "
                  "pod without --root)",
                  a.create ? "create" : a.to ? "to" : "place-lost-on");
        return CLI_EXIT_USAGE;
    }
    if (a.kubeconfig && a.root) {
        cli_error("restore",
                  "--root and --kubeconfig exclude each other: --root restores the volumes of "
                  "this node, --kubeconfig restores a StatefulSet through the agent of each "
                  "node; give one");
        return CLI_EXIT_USAGE;
    }
    if (a.kubeconfig || (!a.root && getenv("KUBERNETES_SERVICE_HOST"))) {
        struct restore_cluster_args ca;
        struct sts_ref to;

        if (a.dry_run) {
            cli_error("restore",
                      "--dry-run checks the volumes of this node: give --root DIR (and no "
                      "--kubeconfig) and run it on each node, or in the agent's container");
            return CLI_EXIT_USAGE;
        }
        ca = (struct restore_cluster_args){
            .kubeconfig = a.kubeconfig,
            .ns = a.ns,
            .repo = a.repo,
            .backup = a.backup,
            .ordinals = a.ordinals,
            .order = a.order,
            .task_timeout = a.task_timeout,
            .unclaimed_s = a.unclaimed_warning,
            .place_lost_on = a.place_lost_on,
            .create = a.create,
            .accept_lost_attributes = a.accept_lost,
            .json = a.json,
        };

        if (a.to) {
            if (cli_parse_sts("restore", a.to, &to) < 0)
                return CLI_EXIT_USAGE;
            ca.to = &to;
        }
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
