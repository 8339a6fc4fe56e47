/*
 * cmd_prune.c - "ordinal-backup prune": removes backups by a retention policy (prune.h:
 * restic's forget rules, applied per volume) and incomplete backups older than an hour.
 * Per volume because one-node backups of a StatefulSet spread over nodes each hold only that
 * node's ordinals: counted per StatefulSet, one node's backups would push another's out.
 *
 * Safety: each StatefulSet is pruned under its lock, so a backup being written or a restore
 * being read is never removed (a locked StatefulSet is skipped and reported). A complete
 * backup is removed backup.json FIRST: if prune is killed half-way, what remains is merely an
 * incomplete backup (invisible, removed by the next prune), never a listed backup with
 * missing objects. The newest complete backup of each volume is never removed, whatever the
 * policy, and neither is a backup whose backup.json is damaged.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "id.h"
#include "cli.h"
#include "cmds.h"
#include "lock.h"
#include "opts.h"
#include "prune.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"

#define PRUNE_INCOMPLETE_AGE ((time_t)3600) /* seconds */

struct prune_args {
    const char *repo, *statefulset;
    uint64_t last, daily, weekly, monthly;
    bool dry_run, json;
    bool quiet; /* prune_statefulset(): print nothing on stdout */
};

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

static int remove_backup(struct repo *repo, const struct catalog_entry *ce, ord_err *e)
{
    char key[REPO_KEY_MAX + 1];
    int r;

    if (ce->complete) {
        repo_key_backup_json(key, sizeof(key), ce->sts.ns, ce->sts.name, ce->id);
        r = repo_remove(repo, key, e);
        if (r < 0 && r != -ENOENT)
            return r;
    }
    repo_key_backup_dir(key, sizeof(key), ce->sts.ns, ce->sts.name, ce->id);
    return repo_remove_prefix(repo, key, e);
}

/* "node": the node that made it, null when it spans several (or is unknown). */
static cJSON *add_entry(cJSON *arr, const struct catalog_entry *ce, const char *reason)
{
    char sts[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    const char *node = catalog_node(ce);
    cJSON *o = cJSON_CreateObject();

    if (!o)
        return NULL;
    snprintf(sts, sizeof(sts), "%s/%s", ce->sts.ns, ce->sts.name);
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "id", ce->id);
    cJSON_AddStringToObject(o, "statefulset", sts);
    if (node[0])
        cJSON_AddStringToObject(o, "node", node);
    else
        cJSON_AddNullToObject(o, "node");
    cJSON_AddStringToObject(o, "reason", reason);
    return o;
}

/* The kept entry's machine-readable reasons: "rules" and the volumes it is the newest of. */
static void add_kept_details(cJSON *o, const struct prune_backup *pb)
{
    static const char *const rules[] = {"last", "daily", "weekly", "monthly", "newest"};
    cJSON *ra, *na;

    if (!o || !(ra = cJSON_AddArrayToObject(o, "rules")) ||
        !(na = cJSON_AddArrayToObject(o, "newest_of")))
        return;
    for (size_t i = 0; pb && i < ARRAY_SIZE(rules); i++)
        if (pb->reasons & (1u << i))
            cJSON_AddItemToArray(ra, cJSON_CreateString(rules[i]));
    for (size_t i = 0; pb && i < pb->n_volumes; i++) {
        cJSON *v;

        if (!(pb->volumes[i].reasons & PRUNE_KEEP_NEWEST) || !(v = cJSON_CreateObject()))
            continue;
        cJSON_AddItemToArray(na, v);
        cJSON_AddNumberToObject(v, "ordinal", pb->volumes[i].ordinal);
        cJSON_AddStringToObject(v, "template", pb->volumes[i].template_name);
    }
}

/* "from node 'X'", or "from several nodes" for a coordinator's backup spanning nodes. */
static void format_from(const struct catalog_entry *ce, char *buf, size_t size)
{
    const char *node = catalog_node(ce);

    if (node[0])
        snprintf(buf, size, "from node '%s'", node);
    else
        snprintf(buf, size, "from several nodes");
}

/*
 * Prunes the entries [from, to) of cat, which all belong to one StatefulSet and were read by
 * catalog_load(). The policy is applied per volume (prune.h): a backup goes only when no rule
 * keeps it in the history of any volume it holds and none of its volumes has it as its newest
 * backup. A backup whose backup.json is damaged is kept: what it holds cannot be told.
 */
static int prune_one(struct repo *repo, const struct prune_args *a, const struct catalog *cat,
                     size_t from, size_t to, cJSON *kept, cJSON *removed, size_t *n_removed,
                     ord_err *e)
{
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_free_ struct prune_backup *pb = NULL;
    _cleanup_free_ struct prune_volume *vols = NULL;
    _cleanup_free_ size_t *idx = NULL;
    const struct sts_ref *sts = &cat->v[from].sts;
    struct prune_policy p = {a->last, a->daily, a->weekly, a->monthly};
    time_t now = time(NULL);
    size_t n = 0, n_vols = 0, k_vol = 0;
    int r;

    if (!a->dry_run) {
        r = lock_acquire(repo, sts, "prune", &lock, e);
        if (r < 0)
            return r;
    }
    for (size_t i = from; i < to; i++)
        if (cat->v[i].complete && cat->v[i].manifest)
            n_vols += cat->v[i].manifest->n_volumes;
    pb = calloc(to - from, sizeof(*pb));
    idx = calloc(to - from, sizeof(*idx));
    vols = calloc(n_vols ? n_vols : 1, sizeof(*vols));
    if (!pb || !idx || !vols)
        return err_set(e, -ENOMEM, "out of memory");
    for (size_t i = from; i < to; i++) {
        const struct catalog_entry *ce = &cat->v[i];
        const struct backup_manifest *m = ce->manifest;

        if (!ce->complete)
            continue;
        if (!m) {
            /* Damaged: never removed by a policy; a person decides (verify names it). */
            const char *why = "kept: its backup.json is damaged, so which volumes it holds "
                              "cannot be told; see 'ordinal-backup verify', remove it by hand "
                              "once it is of no use";
            add_kept_details(add_entry(kept, ce, why), NULL);
            cli_warn("prune", "%s; it is kept", ce->damaged ? ce->damaged : ce->id);
            if (!a->json)
                printf("keep         %s/%s %s (%s)\n", ce->sts.ns, ce->sts.name, ce->id, why);
            continue;
        }
        pb[n] = (struct prune_backup){
            .id = ce->id, .time = ce->time, .volumes = &vols[k_vol], .n_volumes = m->n_volumes};
        for (size_t j = 0; j < m->n_volumes; j++)
            vols[k_vol++] = (struct prune_volume){.ordinal = m->volumes[j].ordinal,
                                                  .template_name = m->volumes[j].template_name};
        idx[n++] = i;
    }
    r = prune_select_volumes(pb, n, &p);
    if (r < 0)
        return err_set(e, r, "out of memory");

    for (size_t k = 0; k < n; k++) {
        const struct catalog_entry *ce = &cat->v[idx[k]];
        char why[512], text[sizeof(why) + 8], from_node[NAMES_SUBDOMAIN_MAX + 32];

        format_from(ce, from_node, sizeof(from_node));
        if (pb[k].reasons) {
            prune_describe(&pb[k], &p, why, sizeof(why));
            snprintf(text, sizeof(text), "kept: %s", why);
            add_kept_details(add_entry(kept, ce, text), &pb[k]);
            if (!a->json)
                printf("keep         %s/%s %s %s (%s)\n", ce->sts.ns, ce->sts.name, ce->id,
                       from_node, text);
            continue;
        }
        add_entry(removed, ce, "policy");
        if (!a->json)
            printf("%-12s %s/%s %s %s (policy: no --keep-* rule keeps it, and each of its "
                   "volumes has a newer backup)\n",
                   a->dry_run ? "would remove" : "remove", ce->sts.ns, ce->sts.name, ce->id,
                   from_node);
        if (!a->dry_run) {
            r = remove_backup(repo, ce, e);
            if (r < 0)
                return err_wrap(e, r, "removing backup '%s' of %s/%s", ce->id, ce->sts.ns,
                                ce->sts.name);
        }
        (*n_removed)++;
    }
    for (size_t i = from; i < to; i++) {
        const struct catalog_entry *ce = &cat->v[i];

        if (ce->complete || now - ce->time < PRUNE_INCOMPLETE_AGE)
            continue;
        add_entry(removed, ce, "incomplete");
        if (!a->json)
            printf("%-12s %s/%s %s (incomplete, older than an hour)\n",
                   a->dry_run ? "would remove" : "remove", ce->sts.ns, ce->sts.name, ce->id);
        if (!a->dry_run) {
            r = remove_backup(repo, ce, e);
            if (r < 0)
                return err_wrap(e, r, "removing incomplete backup '%s' of %s/%s", ce->id,
                                ce->sts.ns, ce->sts.name);
        }
        (*n_removed)++;
    }
    return 0;
}

static int cmp_by_sts(const void *x, const void *y)
{
    const struct catalog_entry *a = x, *b = y;
    int r = strcmp(a->sts.ns, b->sts.ns);

    if (r)
        return r;
    r = strcmp(a->sts.name, b->sts.name);
    return r ? r : id_compare(a->id, b->id);
}

static int run_prune(const struct prune_args *a, const struct sts_ref *filter, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(cjson_deletep) cJSON *doc = cJSON_CreateObject();
    cJSON *kept, *removed;
    struct catalog cat = {0};
    size_t n_removed = 0, failed = 0;
    ord_err first = {0};
    int r;

    if (!doc || !cJSON_AddBoolToObject(doc, "dry_run", a->dry_run) ||
        !(kept = cJSON_AddArrayToObject(doc, "kept")) ||
        !(removed = cJSON_AddArrayToObject(doc, "removed")))
        return err_set(e, -ENOMEM, "out of memory");
    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    /* Removing a backup needs every directory of it writable: refuse before removing any. */
    if (!a->dry_run) {
        r = repo_check_writable(repo, filter ? filter->ns : NULL, filter ? filter->name : NULL,
                                NULL, REPO_WRITE_LOCK | REPO_WRITE_TREE, e);
        if (r < 0)
            return r;
    }
    r = catalog_scan(repo, filter, &cat, e);
    if (r < 0)
        return r;
    r = catalog_load(repo, &cat, e);
    if (r < 0) {
        catalog_free(&cat);
        return r;
    }
    if (cat.n > 1)
        qsort(cat.v, cat.n, sizeof(*cat.v), cmp_by_sts);
    for (size_t from = 0; from < cat.n;) {
        size_t to = from + 1;
        ord_err pe = {0};

        while (to < cat.n && sts_ref_equal(&cat.v[to].sts, &cat.v[from].sts))
            to++;
        r = prune_one(repo, a, &cat, from, to, kept, removed, &n_removed, &pe);
        if (r < 0) {
            cli_error("prune", "%s/%s: %s", cat.v[from].sts.ns, cat.v[from].sts.name, err_msg(&pe));
            if (!failed)
                first = pe;
            failed++;
        }
        from = to;
    }
    catalog_free(&cat);
    if (a->quiet) {
        /* the caller reports */
    } else if (a->json) {
        _cleanup_free_ char *text = NULL;
        cJSON_AddBoolToObject(doc, "ok", failed == 0);
        text = cJSON_Print(doc);
        if (text)
            cli_print_json_text(text);
    } else {
        printf("%zu backup(s) %s\n", n_removed, a->dry_run ? "would be removed" : "removed");
    }
    if (failed) {
        *e = first;
        return err_wrap(e, first.code ? first.code : -EIO,
                        "%zu StatefulSet(s) could not be pruned; first", failed);
    }
    return 0;
}

int prune_statefulset(const char *url, const struct sts_ref *sts, uint64_t last, uint64_t daily,
                      uint64_t weekly, uint64_t monthly, ord_err *e)
{
    /* json suppresses the per-backup lines, quiet the final document. */
    struct prune_args a = {.repo = url,
                           .last = last,
                           .daily = daily,
                           .weekly = weekly,
                           .monthly = monthly,
                           .json = true,
                           .quiet = true};

    return run_prune(&a, sts, e);
}

int cmd_prune(int argc, char **argv)
{
    struct prune_args a = {0};
    struct sts_ref sts;
    ord_err e = {0};
    int r;

    const struct opt_def opts[] = {
        CLI_OPT_REPO(&a.repo),
        REPO_S3_OPT_DEFS,
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "Prune only the backups of this StatefulSet.", "every StatefulSet", 0, 0, NULL, NULL,
         false},
        {"keep-last", OPT_UINT, &a.last, "N", "Keep the N newest backups of each volume.", NULL, 1,
         1000000, NULL, NULL, false},
        {"keep-daily", OPT_UINT, &a.daily, "N",
         "For the last N days that have backups, keep the newest backup of each day (UTC).", NULL,
         1, 1000000, NULL, NULL, false},
        {"keep-weekly", OPT_UINT, &a.weekly, "N",
         "For the last N ISO weeks that have backups, keep the newest of each week.", NULL, 1,
         1000000, NULL, NULL, false},
        {"keep-monthly", OPT_UINT, &a.monthly, "N",
         "For the last N months that have backups, keep the newest of each month.", NULL, 1,
         1000000, NULL, NULL, false},
        {"dry-run", OPT_FLAG, &a.dry_run, NULL,
         "Only print what would be removed and what is kept, and why.", NULL, 0, 0, NULL, NULL,
         false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {dry_run, kept: [{id, statefulset, node, reason, "
         "rules, newest_of: [{ordinal, template}]}], removed: [{id, statefulset, node, "
         "reason}], ok}; node is null for a backup made on several nodes.",
         NULL, 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "prune",
        .usage = "--repo URL [--statefulset NS/NAME] [--keep-last N] [--keep-daily N] "
                 "[--keep-weekly N] [--keep-monthly N] [--dry-run] [--json]",
        .summary =
            "Removes old backups with restic's 'forget' rules, applied per volume (StatefulSet,\n"
            "ordinal, template), whichever node made the backups: each volume's history is the\n"
            "backups that hold it, and a backup is kept when any --keep-* rule keeps it in the\n"
            "history of any of its volumes. The rules count independently, newest first; when a\n"
            "rule still has counts left at the oldest backup, that one is kept too. Whatever the\n"
            "policy, a backup that is the newest complete backup of some volume is kept, and so\n"
            "is one whose backup.json is damaged. Backups without backup.json older than an hour\n"
            "are removed too. Each StatefulSet is pruned under its lock; a locked one is skipped.\n"
            "Every backup is listed with the node that made it and why it is kept or removed.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "At least one --keep-* option is required.\n"
                  "Repository URL: /srv/backups, file:///srv/backups or "
                  "s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup prune --repo /srv/backups --keep-last 3 --keep-daily 7 "
                  "--keep-weekly 4 --keep-monthly 6\n"
                  "  ordinal-backup prune --repo /srv/backups --statefulset default/web "
                  "--keep-last 5 --dry-run\n\n"
                  "Exit status: 0 on success, 1 on failure (e.g. a StatefulSet was locked), 2 "
                  "on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (!a.last && !a.daily && !a.weekly && !a.monthly) {
        cli_error("prune", "no retention policy: give at least one of --keep-last, --keep-daily, "
                           "--keep-weekly, --keep-monthly; see 'ordinal-backup prune --help'");
        return CLI_EXIT_USAGE;
    }
    if (a.statefulset && cli_parse_sts("prune", a.statefulset, &sts) < 0)
        return CLI_EXIT_USAGE;
    r = run_prune(&a, a.statefulset ? &sts : NULL, &e);
    if (r < 0) {
        cli_error("prune", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
