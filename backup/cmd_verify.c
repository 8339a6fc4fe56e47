/*
 * cmd_verify.c - "ordinal-backup verify": re-reads backups and checks everything that a
 * restore would rely on: backup.json parses, every volume manifest parses and agrees with it,
 * and every stored object passes engine_verify (SHA-256, sizes, full decompression, tar
 * walk). Writes nothing and takes no lock. Exit 1 names every volume that failed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "cli.h"
#include "cmds.h"
#include "engine.h"
#include "id.h"
#include "manifest.h"
#include "opts.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"

struct verify_args {
    const char *repo, *statefulset, *backup;
    bool json;
};

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

static int verify_volume(struct repo *repo, const struct backup_manifest *b,
                         const struct backup_volume *v, ord_err *e)
{
    _cleanup_(repo_reader_closep) struct repo_reader *rd = NULL;
    struct volume_manifest m = {0};
    struct engine_expect ex;
    struct byte_source src;
    char key[REPO_KEY_MAX + 1];
    int r;

    r = cli_load_volume(repo, b, v, &m, e);
    if (r < 0)
        return r;
    ex = (struct engine_expect){.kind = m.kind,
                                .sha256 = m.sha256,
                                .bytes_stored = m.bytes_stored,
                                .bytes_in = m.bytes_in,
                                .files = m.files};
    cli_object_key(key, sizeof(key), b, v);
    r = repo_get_open(repo, key, &rd, e);
    if (r == -ENOENT)
        r = err_set(e, -EBADMSG, "the stored object is missing");
    else if (r >= 0 && rd->size != m.bytes_stored)
        r = err_set(e, -EBADMSG, "the stored object is %llu bytes, the manifest says %llu",
                    (unsigned long long)rd->size, (unsigned long long)m.bytes_stored);
    else if (r >= 0) {
        src = repo_reader_source(rd);
        r = engine_verify(&src, &ex, e);
    }
    volume_manifest_free(&m);
    return r;
}

static int run_verify(const struct verify_args *a, const struct sts_ref *filter, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(cjson_deletep) cJSON *doc = NULL;
    cJSON *backups;
    struct catalog cat = {0};
    size_t checked = 0, failed = 0;
    char failures[ORD_ERR_MSG_MAX] = "";
    int r;

    r = repo_open(a->repo, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    r = catalog_scan(repo, filter, &cat, e);
    if (r < 0)
        return r;
    doc = cJSON_CreateObject();
    backups = doc ? cJSON_AddArrayToObject(doc, "backups") : NULL;
    if (!backups) {
        catalog_free(&cat);
        return err_set(e, -ENOMEM, "out of memory");
    }

    for (size_t i = 0; i < cat.n; i++) {
        const struct catalog_entry *ce = &cat.v[i];
        struct backup_manifest b = {0};
        char sts[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
        cJSON *bo, *vols;
        ord_err be = {0};
        bool ok = true;

        if (!ce->complete)
            continue;
        if (a->backup && !streq(a->backup, "latest") && !streq(a->backup, ce->id))
            continue;
        if (a->backup && streq(a->backup, "latest") && catalog_latest(&cat, &ce->sts) != ce)
            continue;
        snprintf(sts, sizeof(sts), "%s/%s", ce->sts.ns, ce->sts.name);
        checked++;
        bo = cJSON_CreateObject();
        if (!bo)
            break;
        cJSON_AddItemToArray(backups, bo);
        cJSON_AddStringToObject(bo, "id", ce->id);
        cJSON_AddStringToObject(bo, "statefulset", sts);
        vols = cJSON_AddArrayToObject(bo, "volumes");

        r = cli_load_backup(repo, &ce->sts, ce->id, &b, &be);
        if (r == -ENOENT) { /* pruned meanwhile */
            checked--;
            cJSON_DeleteItemFromArray(backups, cJSON_GetArraySize(backups) - 1);
            continue;
        }
        if (r < 0) {
            ok = false;
            cJSON_AddStringToObject(bo, "error", err_msg(&be));
            cli_error("verify", "%s %s: FAILED: %s", sts, ce->id, err_msg(&be));
        }
        for (size_t k = 0; r >= 0 && k < b.n_volumes; k++) {
            const struct backup_volume *v = &b.volumes[k];
            ord_err ve = {0};
            cJSON *vo = cJSON_CreateObject();
            int vr = verify_volume(repo, &b, v, &ve);

            if (vo) {
                cJSON_AddItemToArray(vols, vo);
                cJSON_AddNumberToObject(vo, "ordinal", v->ordinal);
                cJSON_AddStringToObject(vo, "template", v->template_name);
                cJSON_AddStringToObject(vo, "status", vr < 0 ? "failed" : "ok");
                if (vr < 0)
                    cJSON_AddStringToObject(vo, "error", err_msg(&ve));
            }
            if (vr < 0) {
                size_t len = strlen(failures);
                ok = false;
                cli_error("verify", "%s %s ordinal %d volume '%s': FAILED: %s", sts, ce->id,
                          (int)v->ordinal, v->template_name, err_msg(&ve));
                snprintf(failures + len, sizeof(failures) - len, "%s%s %s ordinal %d '%s'",
                         len ? ", " : "", sts, ce->id, (int)v->ordinal, v->template_name);
            } else if (!a->json) {
                printf("%s %s ordinal %d volume '%s': ok\n", sts, ce->id, (int)v->ordinal,
                       v->template_name);
            }
        }
        if (r < 0) {
            size_t len = strlen(failures);
            snprintf(failures + len, sizeof(failures) - len, "%s%s %s (backup.json)",
                     len ? ", " : "", sts, ce->id);
        }
        cJSON_AddStringToObject(bo, "status", ok ? "ok" : "failed");
        if (!ok)
            failed++;
        backup_manifest_free(&b);
    }
    catalog_free(&cat);
    cJSON_AddBoolToObject(doc, "ok", failed == 0);
    if (a->json) {
        _cleanup_free_ char *text = cJSON_Print(doc);
        if (text)
            cli_print_json_text(text);
    }
    if (a->backup && checked == 0) {
        if (streq(a->backup, "latest"))
            return err_set(e, -ENOENT, "there is no complete backup to verify");
        return err_set(e, -ENOENT,
                       "backup '%s' does not exist (or is incomplete); run 'ordinal-backup list "
                       "--repo %s' to see the backups",
                       a->backup, a->repo);
    }
    if (failed)
        return err_set(e, -EBADMSG, "%zu of %zu backup(s) failed verification: %s", failed, checked,
                       failures);
    if (!a->json)
        printf("%zu backup(s) verified, all ok\n", checked);
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    struct verify_args a = {0};
    struct sts_ref sts;
    struct backup_id bid;
    ord_err e = {0};
    int r;

    const struct opt_def opts[] = {
        CLI_OPT_REPO(&a.repo),
        REPO_S3_OPT_DEFS,
        {"backup", OPT_STRING, &a.backup, "ID",
         "Verify only this backup (an ID from 'ordinal-backup list', or latest).",
         "every complete backup", 0, 0, NULL, NULL, false},
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "Verify only the backups of this StatefulSet.", "every StatefulSet", 0, 0, NULL, NULL,
         false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {backups: [{id, statefulset, status, volumes: "
         "[{ordinal, template, status, error}]}], ok}.",
         NULL, 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "verify",
        .usage = "--repo URL [--backup ID] [--statefulset NS/NAME] [--json]",
        .summary = "Re-reads complete backups and checks each volume: its manifest parses and "
                   "agrees with\nbackup.json, and its stored object has the recorded SHA-256 and "
                   "sizes, decompresses\nand walks as a tar. Changes nothing.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Repository URL: /srv/backups, file:///srv/backups or s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup verify --repo /srv/backups\n"
                  "  ordinal-backup verify --repo /srv/backups --backup 20261121T203000Z\n\n"
                  "Exit status: 0 when everything checked is intact, 1 when something failed "
                  "(each failed volume is named on stderr), 2 on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (a.statefulset && cli_parse_sts("verify", a.statefulset, &sts) < 0)
        return CLI_EXIT_USAGE;
    if (a.backup && !streq(a.backup, "latest") && id_parse(a.backup, &bid) < 0) {
        cli_error("verify", "--backup: '%s' is not a backup ID (like 20261121T203000Z) or 'latest'",
                  a.backup);
        return CLI_EXIT_USAGE;
    }
    r = run_verify(&a, a.statefulset ? &sts : NULL, &e);
    if (r < 0) {
        cli_error("verify", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
