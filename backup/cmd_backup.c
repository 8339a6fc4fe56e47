/*
 * cmd_backup.c - "ordinal-backup backup": every volume of the chosen ordinals of one
 * StatefulSet on this node, one ordinal at a time, into a new backup in the repository.
 *
 * Order of writes, which is what makes a backup all-or-nothing: for each volume the stored
 * object, then its manifest; backup.json last. Until backup.json exists the backup does not
 * exist for list, restore and verify; a failure removes what was written, and a kill leaves
 * an incomplete backup that prune removes after an hour. The StatefulSet's lock is held
 * throughout, so two backups of it never interleave and a prune never removes it mid-way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#include "version.h"
#include "volume_op.h"

static const char *const orders[] = {"reverse", "ordinal", NULL};

struct backup_args {
    const char *root, *repo, *statefulset, *ordinals, *order, *node_name;
    uint64_t level, threads;
    bool json;
};

/* Picks the volumes to back up, in processing order. Returns 0 or -errno with e filled. */
static int select_volumes(const struct layout *l, const char *ordinals, bool reverse,
                          struct layout_volume ***ret, size_t *ret_n, ord_err *e)
{
    _cleanup_free_ int32_t *want = NULL;
    _cleanup_free_ struct layout_volume **sel = NULL;
    size_t n_want = 0, n = 0;

    if (ordinals) {
        int r = names_parse_ordinals(ordinals, &want, &n_want, e);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n_want; i++) {
            bool found = false;
            for (size_t j = 0; j < l->n && !found; j++)
                found = l->v[j].ordinal == want[i];
            if (!found)
                return err_set(e, -ENOENT, "ordinal %d has no volume in the node layout",
                               (int)want[i]);
        }
    }
    sel = calloc(l->n + 1, sizeof(struct layout_volume *));
    if (!sel)
        return err_set(e, -ENOMEM, "out of memory");
    /* l is sorted by ordinal then template; walk ordinal groups forwards or backwards. */
    for (size_t k = 0; k < l->n;) {
        size_t g = reverse ? l->n - 1 - k : k, start = g, end = g;
        int32_t o = l->v[g].ordinal;
        bool wanted = !want;

        while (start > 0 && l->v[start - 1].ordinal == o)
            start--;
        while (end + 1 < l->n && l->v[end + 1].ordinal == o)
            end++;
        for (size_t i = 0; i < n_want; i++)
            wanted = wanted || want[i] == o;
        if (wanted)
            for (size_t i = start; i <= end; i++)
                sel[n++] = &l->v[i];
        k += end - start + 1;
    }
    *ret = TAKE_PTR(sel);
    *ret_n = n;
    return 0;
}

struct exists_ctx {
    struct repo *repo;
    const struct sts_ref *sts;
    bool any;
};

static int key_seen(void *ctx, const char *key, uint64_t size)
{
    ((struct exists_ctx *)ctx)->any = true;
    return -ECANCELED; /* one key is enough */
}

static int id_taken(void *ctx, const char *id)
{
    struct exists_ctx *x = ctx;
    char prefix[REPO_KEY_MAX + 1];
    int r;

    if (repo_key_backup_dir(prefix, sizeof(prefix), x->sts->ns, x->sts->name, id) < 0)
        return -ENAMETOOLONG;
    x->any = false;
    r = repo_list(x->repo, prefix, key_seen, x, NULL);
    if (r < 0 && r != -ECANCELED)
        return r;
    return x->any ? 1 : 0;
}

static int run_backup(const struct backup_args *a, const struct sts_ref *sts, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_(lock_releasep) struct repo_lock *lock = NULL;
    _cleanup_free_ struct layout_volume **sel = NULL;
    _cleanup_free_ struct backup_volume *vols = NULL;
    _cleanup_free_ int32_t *ords = NULL;
    struct layout l = {0};
    struct backup_manifest b = {0};
    struct compress_opts copts = {.level = (int)a->level, .threads = (int)a->threads};
    struct exists_ctx x;
    char id[ID_MAX], node[NAMES_SUBDOMAIN_MAX + 1], key[REPO_KEY_MAX + 1];
    size_t n = 0, n_ords = 0;
    double started = cli_now(), t0 = cli_monotonic();
    int r;

    r = layout_scan(a->root, sts, &l, e);
    if (r < 0)
        return r;
    if (l.n == 0) {
        layout_free(&l);
        return err_set(e, -ENOENT, "there are no volumes of %s/%s under '%s/%s/%s'", sts->ns,
                       sts->name, a->root, sts->ns, sts->name);
    }
    r = select_volumes(&l, a->ordinals, streq(a->order, "reverse"), &sel, &n, e);
    if (r < 0)
        goto out;
    cli_node_name(a->node_name, node, sizeof(node));

    r = repo_open(a->repo, REPO_OPEN_CREATE, &repo, e);
    if (r < 0)
        goto out;
    r = repo_check_writable(repo, sts->ns, sts->name, NULL, REPO_WRITE_BACKUPS, e);
    if (r < 0)
        goto out;
    r = lock_acquire(repo, sts, "backup", &lock, e);
    if (r < 0)
        goto out;
    x = (struct exists_ctx){.repo = repo, .sts = sts};
    r = id_generate((time_t)started, id_taken, &x, id, sizeof(id));
    if (r < 0) {
        err_set_errno(e, r, "cannot choose a backup ID");
        goto out;
    }

    vols = calloc(n, sizeof(*vols));
    ords = calloc(n, sizeof(*ords));
    if (!vols || !ords) {
        r = err_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct volop_source src = {.lv = sel[i], .node = node, .cmd = "backup"};
        struct cli_progress progress;

        cli_progress_init(&progress);
        snprintf(progress.label, sizeof(progress.label), "backing up ordinal %d '%s'",
                 (int)sel[i]->ordinal, sel[i]->template_name);
        r = volop_backup(repo, sts, id, &src, &copts, cli_progress_cb, &progress, &vols[i], e);
        cli_progress_done(&progress);
        if (r < 0) {
            err_wrap(e, r, "backing up ordinal %d volume '%s' ('%s')", (int)sel[i]->ordinal,
                     sel[i]->template_name, sel[i]->path);
            goto fail;
        }
        if (n_ords == 0 || ords[n_ords - 1] != sel[i]->ordinal)
            ords[n_ords++] = sel[i]->ordinal;
    }

    b.sts = *sts;
    snprintf(b.order, sizeof(b.order), "%s", a->order);
    snprintf(b.node, sizeof(b.node), "%s", node);
    b.ordinals = ords;
    b.n_ordinals = n_ords;
    b.volumes = vols;
    b.n_volumes = n;
    r = volop_commit_backup(repo, &b, id, started, t0, e);
    if (r < 0) {
        volop_not_committed(repo, sts, id, n, r, e);
        goto fail;
    }

    if (a->json)
        r = cli_print_volumes_json(id, sts, a->order, vols, n);
    else
        cli_print_volumes_text("backup", id, sts, a->order, vols, n);
    if (r < 0)
        err_set(e, r, "out of memory");
    goto out;

fail:
    /* Remove what this backup wrote; had we been killed, prune would do it later. */
    if (repo_key_backup_dir(key, sizeof(key), sts->ns, sts->name, id) == 0)
        (void)repo_remove_prefix(repo, key, NULL);
out:
    layout_free(&l);
    return r;
}

int cmd_backup(int argc, char **argv)
{
    struct backup_args a = {
        .root = CLI_DEFAULT_ROOT,
        .order = "reverse",
        .level = 3,
        .threads = cli_online_cpus(),
    };
    char threads_def[64];
    struct sts_ref sts;
    ord_err e = {0};
    int r;

    snprintf(threads_def, sizeof(threads_def), "the number of online CPUs (%llu here)",
             (unsigned long long)a.threads);
    const struct opt_def opts[] = {
        {"root", OPT_STRING, &a.root, "DIR",
         "Node directory that holds the volumes "
         "(ROOT/NAMESPACE/STATEFULSET/ORDINAL/TEMPLATE).",
         CLI_DEFAULT_ROOT, 0, 0, NULL, NULL, false},
        {"repo", OPT_STRING, &a.repo, "URL",
         "Repository: an absolute path, file:///path or s3://BUCKET/PREFIX "
         "(created on the first backup; must be empty or a repository).",
         NULL, 0, 0, NULL, "ORDINAL_REPO", true},
        REPO_S3_OPT_DEFS,
        {"statefulset", OPT_STRING, &a.statefulset, "NS/NAME",
         "The StatefulSet whose volumes are backed up.", NULL, 0, 0, NULL, NULL, true},
        {"ordinals", OPT_STRING, &a.ordinals, "LIST",
         "Back up only these ordinals, e.g. 0,2 (each must have a volume on this node).",
         "every ordinal found", 0, 0, NULL, NULL, false},
        {"order", OPT_CHOICE, &a.order, "ORDER",
         "Process ordinals from the highest down (reverse) or from 0 up (ordinal).", "reverse", 0,
         0, orders, NULL, false},
        {"level", OPT_UINT, &a.level, "N", "zstd compression level, 1..19.", "3", 1, 19, NULL, NULL,
         false},
        {"threads", OPT_UINT, &a.threads, "N", "Compression threads, 1..256.", threads_def, 1, 256,
         NULL, NULL, false},
        {"node-name", OPT_STRING, &a.node_name, "NAME", "Node name recorded in the manifests.",
         "the host name", 0, 0, NULL, "NODE_NAME", false},
        {"json", OPT_FLAG, &a.json, NULL,
         "Print one JSON document on stdout: {id, statefulset, order, volumes[]}.", NULL, 0, 0,
         NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "backup",
        .usage = "--repo URL --statefulset NS/NAME [--root DIR] [--ordinals 0,2] "
                 "[--order reverse|ordinal] [--level N] [--threads N] [--json]",
        .summary =
            "Backs up every volume of the StatefulSet's ordinals found on this node, one ordinal\n"
            "at a time, into a new backup: one zstd-compressed pax tar per volume, a manifest\n"
            "per volume, and backup.json written last. A directory entry is a directory volume;\n"
            "a symlink to a block device is a device volume (stored as a sparse image). Holds the\n"
            "StatefulSet's lock in the repository while it runs. Progress goes to stderr when it\n"
            "is a terminal.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog = "Repository URL: /srv/backups, file:///srv/backups or s3://bucket/prefix.\n" REPO_S3_HELP "\n"
                  "Examples:\n"
                  "  ordinal-backup backup --repo /srv/backups --statefulset default/web\n"
                  "  ordinal-backup backup --repo file:///mnt/nfs/ordinal --statefulset db/pg "
                  "--ordinals 0,2 --order ordinal --json\n\n"
                  "Exit status: 0 when the backup is complete, 1 on failure (no backup is "
                  "recorded), 2 on a usage error.\n",
    };

    r = opts_parse(&cmd, CLI_PROG, ORDINAL_VERSION, argc, argv, 2);
    if (r != OPTS_OK)
        return r == OPTS_EXIT ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (cli_parse_sts("backup", a.statefulset, &sts) < 0)
        return CLI_EXIT_USAGE;
    if (a.ordinals) {
        _cleanup_free_ int32_t *tmp = NULL;
        size_t n;
        if (names_parse_ordinals(a.ordinals, &tmp, &n, &e) < 0) {
            cli_error("backup", "--ordinals: %s", err_msg(&e));
            return CLI_EXIT_USAGE;
        }
    }
    r = run_backup(&a, &sts, &e);
    if (r < 0) {
        cli_error("backup", "%s", err_msg(&e));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
