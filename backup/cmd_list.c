/*
 * cmd_list.c - "ordinal-backup list": the complete backups in a repository, oldest first and
 * newest last (like 'ls -tr' and restic's snapshots: the one you most likely want is next to
 * the prompt). Incomplete backups (no backup.json) are not shown; a backup whose backup.json
 * does not parse is shown with status "damaged" so that it is noticed, and verify fails it.
 * Each backup shows the node that made it (backup.json's node): one-node backups of a
 * StatefulSet spread over nodes hold only that node's ordinals, and a person choosing what to
 * restore where needs to see which.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "cli.h"
#include "cmds.h"
#include "manifest.h"
#include "opts.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"

struct list_args {
    const char *repo, *statefulset;
    bool json;
};

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

static int run_list(const struct list_args *a, const struct sts_ref *filter, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(cjson_deletep) cJSON *arr = NULL;
    struct catalog cat = {0};
    int r;

    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    r = catalog_scan(repo, filter, &cat, e);
    if (r < 0)
        return r;
    arr = cJSON_CreateArray();
    if (!arr) {
        catalog_free(&cat);
        return err_set(e, -ENOMEM, "out of memory");
    }
    if (!a->json)
        printf("%-22s %-20s %-32s %-20s %-12s %10s  %s\n", "ID", "TIME", "STATEFULSET", "NODE",
               "ORDINALS", "STORED", "STATUS");
    for (size_t i = 0; i < cat.n; i++) {
        const struct catalog_entry *ce = &cat.v[i];
        struct backup_manifest b = {0};
        ord_err le = {0};
        char sts[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2], tm[32], ords[256] = "", sz[32];
        const char *status = "complete";
        cJSON *o, *oa;
        size_t len = 0;

        if (!ce->complete)
            continue;
        snprintf(sts, sizeof(sts), "%s/%s", ce->sts.ns, ce->sts.name);
        time_format_rfc3339(ce->time, tm, sizeof(tm));
        r = cli_load_backup(repo, &ce->sts, ce->id, &b, &le);
        if (r == -ENOENT) /* pruned while we listed */
            continue;
        if (r < 0) {
            status = "damaged";
            cli_warn("list", "%s", err_msg(&le));
        }
        o = cJSON_CreateObject();
        if (!o) {
            backup_manifest_free(&b);
            catalog_free(&cat);
            return err_set(e, -ENOMEM, "out of memory");
        }
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "id", ce->id);
        cJSON_AddStringToObject(o, "time", tm);
        cJSON_AddStringToObject(o, "statefulset", sts);
        /* A coordinator's backup over several nodes names none: each volume manifest does. */
        if (r == 0 && b.node[0])
            cJSON_AddStringToObject(o, "node", b.node);
        else
            cJSON_AddNullToObject(o, "node");
        oa = cJSON_AddArrayToObject(o, "ordinals");
        for (size_t k = 0; k < b.n_ordinals; k++) {
            if (oa)
                cJSON_AddItemToArray(oa, cJSON_CreateNumber(b.ordinals[k]));
            if (len < sizeof(ords) - 16)
                len += (size_t)snprintf(ords + len, sizeof(ords) - len, "%s%d", k ? "," : "",
                                        (int)b.ordinals[k]);
        }
        cJSON_AddNumberToObject(o, "bytes", (double)(r < 0 ? ce->bytes : b.bytes_stored));
        cJSON_AddStringToObject(o, "status", status);
        if (!a->json) {
            cli_format_bytes(r < 0 ? ce->bytes : b.bytes_stored, sz, sizeof(sz));
            printf("%-22s %-20s %-32s %-20s %-12s %10s  %s\n", ce->id, tm, sts,
                   r < 0       ? "?"
                   : b.node[0] ? b.node
                               : "(several)",
                   ords[0] ? ords : "-", sz, status);
        }
        backup_manifest_free(&b);
    }
    catalog_free(&cat);
    if (a->json) {
        _cleanup_free_ char *text = cJSON_Print(arr);
        if (!text)
            return err_set(e, -ENOMEM, "out of memory");
        cli_print_json_text(text);
    }
    return 0;
}

int cmd_list(int argc, char **argv)
{
    struct list_args a = {0};
    struct sts_ref sts;
    ord_err e = {0};
    int r;

    const struct opt_def opts[] = {
        CLI_OPT_REPO(&a.repo),
        REPO_S3_OPT_DEFS,
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "List only the backups of this StatefulSet.", "every StatefulSet", 0, 0, NULL, NULL,
         false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON array on stdout: [{id, time, statefulset, node, ordinals, bytes, "
         "status}]; node is null for a backup made on several nodes.",
         NULL, 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "list",
        .usage = "--repo URL [--statefulset NS/NAME] [--json]",
        .summary = "Lists the complete backups in the repository, oldest first, newest last, each\n"
                   "with the node that made it ('(several)' for a coordinator's backup of volumes\n"
                   "on several nodes). A backup that starts in the same second as another of "
                   "the same\nStatefulSet (another node's, on the same schedule) gets an ID with "
                   "a suffix\n(20261121T203000Z-1); IDs sort by time, then suffix. Backups "
                   "without backup.json\n(interrupted or still running) are not shown; 'prune' "
                   "removes them after an hour.\nbytes/STORED is the stored (compressed) size.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Repository URL: /srv/backups, file:///srv/backups or "
                  "s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup list --repo /srv/backups\n"
                  "  ordinal-backup list --repo /srv/backups --statefulset default/web --json\n\n"
                  "Exit status: 0 on success, 1 on failure, 2 on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (a.statefulset && cli_parse_sts("list", a.statefulset, &sts) < 0)
        return CLI_EXIT_USAGE;
    r = run_list(&a, a.statefulset ? &sts : NULL, &e);
    if (r < 0) {
        cli_error("list", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
