/*
 * volume_op.c - one volume's backup or restore (see volume_op.h). The code the CLI's backup
 * and restore commands used to carry per volume, moved here so that the node agent runs
 * exactly the same steps for a VolumeTask.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli.h"
#include "id.h"
#include "volume_op.h"
#include "version.h"

int volop_backup(struct repo *repo, const struct sts_ref *sts, const char *id,
                 const struct volop_source *src, const struct compress_opts *copts,
                 engine_progress_fn progress, void *progress_ctx, struct backup_volume *ret,
                 ord_err *e)
{
    _cleanup_(repo_writer_abortp) struct repo_writer *w = NULL;
    _cleanup_free_ char *text = NULL;
    const struct layout_volume *lv = src->lv;
    struct engine_stats stats = {0};
    struct volume_manifest m = {0};
    struct backup_volume bv;
    char key[REPO_KEY_MAX + 1], claim[600];
    struct byte_sink sink;
    double t0, started;
    int r;

    r = repo_key_volume(key, sizeof(key), sts->ns, sts->name, id, lv->ordinal, lv->template_name,
                        ".tar.zst");
    if (r < 0)
        return err_set(e, r, "the object key is too long");
    /* Before reading a byte: a writer that cannot write there (another user made the
     * directories) says so now, with the fix, not after copying the whole volume. */
    r = repo_check_writable(repo, sts->ns, sts->name, id, REPO_WRITE_BACKUPS, e);
    if (r < 0)
        return r;
    r = repo_put_begin(repo, key, &w, e);
    if (r < 0)
        return r;
    sink = repo_writer_sink(w);
    started = cli_now();
    t0 = cli_monotonic();
    r = engine_backup(lv->path, lv->kind, copts, &sink, progress, progress_ctx, &stats, e);
    if (r < 0)
        return r;
    r = repo_writer_commit(TAKE_PTR(w), e);
    if (r < 0) {
        engine_stats_free(&stats);
        return r;
    }

    snprintf(m.backup_id, sizeof(m.backup_id), "%s", id);
    m.sts = *sts;
    m.ordinal = lv->ordinal;
    snprintf(m.template_name, sizeof(m.template_name), "%s", lv->template_name);
    m.kind = lv->kind;
    snprintf(m.node, sizeof(m.node), "%s", src->node);
    snprintf(m.path, sizeof(m.path), "%s", lv->path);
    snprintf(m.device, sizeof(m.device), "%s", lv->device);
    if (src->pv)
        snprintf(m.pv, sizeof(m.pv), "%s", src->pv);
    /* The claim the StatefulSet controller makes for this volume, when it is a valid name. */
    snprintf(claim, sizeof(claim), "%s-%s-%d", lv->template_name, sts->name, (int)lv->ordinal);
    if (names_dns_subdomain(claim))
        snprintf(m.claim, sizeof(m.claim), "%s", claim);
    manifest_object_name(m.object, sizeof(m.object), lv->ordinal, lv->template_name);
    snprintf(m.sha256, sizeof(m.sha256), "%s", stats.sha256);
    m.bytes_in = stats.bytes_in;
    m.bytes_stored = stats.bytes_stored;
    m.files = stats.files;
    m.level = copts->level;
    m.threads = copts->threads;
    m.started_at = started;
    m.finished_at = cli_now();
    m.seconds = stats.seconds > 0 ? stats.seconds : cli_monotonic() - t0;
    m.changed = stats.changed;
    m.n_changed = MIN(stats.n_changed, (size_t)MANIFEST_CHANGED_MAX);
    m.n_changed_total = stats.n_changed;
    snprintf(m.tool_version, sizeof(m.tool_version), "%s", ORDINAL_VERSION);
    if (stats.n_changed > 0)
        cli_warn(src->cmd ? src->cmd : "backup",
                 "ordinal %d '%s': %zu file(s) kept changing while being read (listed "
                 "in the volume manifest), e.g. '%s'",
                 (int)lv->ordinal, lv->template_name, stats.n_changed,
                 stats.changed[0].path ? stats.changed[0].path : "?");
    r = volume_manifest_format(&m, &text);
    m.changed = NULL; /* owned by stats */
    m.n_changed = 0;
    if (r < 0) {
        engine_stats_free(&stats);
        return err_set(e, r, "out of memory");
    }
    bv = (struct backup_volume){
        .ordinal = lv->ordinal,
        .kind = lv->kind,
        .bytes_in = m.bytes_in,
        .bytes_stored = m.bytes_stored,
        .files = m.files,
        .started_at = m.started_at,
        .finished_at = m.finished_at,
        .seconds = m.seconds,
    };
    snprintf(bv.template_name, sizeof(bv.template_name), "%s", lv->template_name);
    snprintf(bv.object, sizeof(bv.object), "%s", m.object);
    manifest_manifest_name(bv.manifest, sizeof(bv.manifest), lv->ordinal, lv->template_name);
    snprintf(bv.sha256, sizeof(bv.sha256), "%s", m.sha256);
    engine_stats_free(&stats);

    r = repo_key_volume(key, sizeof(key), sts->ns, sts->name, id, lv->ordinal, lv->template_name,
                        ".json");
    if (r < 0)
        return err_set(e, r, "the manifest key is too long");
    r = repo_put_small(repo, key, text, strlen(text), e);
    if (r < 0)
        return r;
    *ret = bv;
    return 0;
}

struct engine_expect volop_expect(const struct volume_manifest *m)
{
    return (struct engine_expect){
        .kind = m->kind,
        .sha256 = m->sha256,
        .bytes_stored = m->bytes_stored,
        .bytes_in = m->bytes_in,
        .files = m->files,
    };
}

int volop_commit_backup(struct repo *repo, struct backup_manifest *b, const char *id,
                        double started, double t0, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1];
    int r;

    snprintf(b->id, sizeof(b->id), "%s", id);
    time_format_rfc3339((time_t)started, b->time, sizeof(b->time));
    b->bytes_in = b->bytes_stored = b->files = 0;
    for (size_t i = 0; i < b->n_volumes; i++) {
        b->bytes_in += b->volumes[i].bytes_in;
        b->bytes_stored += b->volumes[i].bytes_stored;
        b->files += b->volumes[i].files;
    }
    b->started_at = started;
    b->finished_at = cli_now();
    b->seconds = cli_monotonic() - t0;
    snprintf(b->tool_version, sizeof(b->tool_version), "%s", ORDINAL_VERSION);
    snprintf(b->status, sizeof(b->status), "complete");
    r = backup_manifest_format(b, &text);
    if (r < 0)
        return err_set(e, r, "out of memory");
    repo_key_backup_json(key, sizeof(key), b->sts.ns, b->sts.name, id);
    r = repo_put_small(repo, key, text, strlen(text), e);
    if (r < 0)
        return err_wrap(e, r, "writing its commit record backup.json");
    return 0;
}

void volop_not_committed(struct repo *repo, const struct sts_ref *sts, const char *id,
                         size_t n_volumes, int code, ord_err *e)
{
    char key[REPO_KEY_MAX + 1];

    /* Every volume is in the repository, and yet there is no backup: say it plainly. */
    err_wrap(e, code,
             "backup '%s' of %s/%s is NOT committed: its %zu volume(s) were copied, but without "
             "its commit record the backup does not exist (for list, restore and verify)",
             id, sts->ns, sts->name, n_volumes);
    if (e && !strstr(e->msg, "cannot write directory") &&
        repo_key_backup_json(key, sizeof(key), sts->ns, sts->name, id) == 0)
        repo_explain_denied(repo, key, code, e);
}

int volop_verify_object(struct repo *repo, const struct backup_manifest *b,
                        const struct backup_volume *bv, const struct volume_manifest *m, ord_err *e)
{
    _cleanup_(repo_reader_closep) struct repo_reader *rd = NULL;
    struct engine_expect ex = volop_expect(m);
    struct byte_source src;
    char key[REPO_KEY_MAX + 1];
    int r;

    cli_object_key(key, sizeof(key), b, bv);
    r = repo_get_open(repo, key, &rd, e);
    if (r < 0)
        return r;
    if (rd->size != m->bytes_stored)
        return err_set(e, -EBADMSG, "the stored object is %llu bytes, the manifest says %llu",
                       (unsigned long long)rd->size, (unsigned long long)m->bytes_stored);
    src = repo_reader_source(rd);
    return engine_verify(&src, &ex, e);
}

int volop_check_fit(const struct volume_manifest *m, const struct layout_volume *lv,
                    struct volop_fit *ret, ord_err *e)
{
    struct volop_fit f = {.need_bytes = m->bytes_in};
    struct statvfs v;

    if (lv->kind == VOLUME_DEVICE) {
        _cleanup_close_ int fd = open(lv->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        uint64_t size = 0;

        if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0)
            return err_set_errno(e, -errno, "cannot size the device of '%s'", lv->path);
        f.free_bytes = size;
        f.free_inodes = UINT64_MAX;
    } else {
        _cleanup_free_ char *dir = strdup(lv->path);
        char *slash = dir ? strrchr(dir, '/') : NULL;

        if (!dir)
            return err_set(e, -ENOMEM, "out of memory");
        if (slash && slash != dir)
            *slash = '\0';
        if (statvfs(dir, &v) < 0)
            return err_set_errno(e, -errno, "cannot examine the filesystem of '%s'", dir);
        f.need_bytes += m->files * (uint64_t)v.f_bsize / 2;
        f.need_inodes = m->files;
        f.free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
        f.free_inodes = v.f_files == 0 ? UINT64_MAX : (uint64_t)v.f_favail;
    }
    f.fits = f.need_bytes <= f.free_bytes && f.need_inodes <= f.free_inodes;
    *ret = f;
    return 0;
}

void volop_fit_describe(const struct volop_fit *f, char *buf, size_t size)
{
    char need[32], have[32];

    cli_format_bytes(f->need_bytes, need, sizeof(need));
    cli_format_bytes(f->free_bytes, have, sizeof(have));
    if (f->free_inodes == UINT64_MAX || f->need_inodes == 0)
        snprintf(buf, size, "needs about %s, %s %s", need, have,
                 f->need_inodes ? "is free" : "is the device's size");
    else
        snprintf(buf, size, "needs about %s and %llu inodes, %s and %llu inodes are free", need,
                 (unsigned long long)f->need_inodes, have, (unsigned long long)f->free_inodes);
}

int volop_restore(struct repo *repo, const struct backup_manifest *b,
                  const struct backup_volume *bv, const struct volume_manifest *m, const char *root,
                  const struct layout_volume *lv, struct engine_lost *lost, ord_err *e)
{
    _cleanup_(repo_reader_closep) struct repo_reader *rd = NULL;
    struct engine_expect ex = volop_expect(m);
    struct byte_source src;
    struct volop_fit fit;
    char key[REPO_KEY_MAX + 1], staging[LAYOUT_PATH_MAX], what[256];
    int r;

    r = volop_check_fit(m, lv, &fit, e);
    if (r < 0)
        return r;
    if (!fit.fits) {
        volop_fit_describe(&fit, what, sizeof(what));
        return err_set(e, -ENOSPC, "it does not fit on the %s of '%s': it %s; free space there "
                       "(or grow it) and run the restore again",
                       lv->kind == VOLUME_DEVICE ? "device" : "filesystem", lv->path, what);
    }
    cli_object_key(key, sizeof(key), b, bv);
    r = repo_get_open(repo, key, &rd, e);
    if (r < 0)
        return r;
    src = repo_reader_source(rd);
    if (lv->kind == VOLUME_DEVICE)
        return engine_restore_device(&src, &ex, lv->path, e);

    /* Beside the target entry (lv->path, "<root>/<ns>/<sts>/<ordinal>/<template>"), which
     * belongs to another StatefulSet than the backup's with restore --to. */
    {
        const char *slash = strrchr(lv->path, '/');
        int n = slash ? snprintf(staging, sizeof(staging), "%.*s/.%s.restore-%s",
                                 (int)(slash - lv->path), lv->path, bv->template_name, b->id)
                      : -1;

        (void)root;
        if (n < 0 || (size_t)n >= sizeof(staging))
            return err_set(e, -ENAMETOOLONG, "the staging path is too long");
    }
    r = engine_restore_dir(&src, &ex, staging, lost, e);
    if (r < 0)
        return r;
    return engine_swap(lv->path, staging, e);
}
