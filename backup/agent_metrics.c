/*
 * agent_metrics.c - the node agent's metrics (see agent_metrics.h).
 *
 * The catalog rebuild runs in the agent's probe thread while tasks may already finish in the
 * main thread, so the last-success gauges only ever move forward (set_if_later, under one
 * mutex): whichever of the two comes second cannot put an older time over a newer one.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_metrics.h"
#include "catalog.h"
#include "cli.h"
#include "repo.h"

#define VOLUME_LABELS "namespace", "statefulset", "ordinal", "template"

static struct {
    struct metric *backup_ok, *backup_failed, *restore_ok, *read_bytes, *stored_bytes;
    struct metric *backup_seconds, *restore_seconds, *backup_failures, *restore_failures;
    struct metric *repo_up;
    pthread_mutex_t mu; /* orders the read-compare-set of the timestamp gauges */
} am = {.mu = PTHREAD_MUTEX_INITIALIZER};

int agent_metrics_init(struct metrics *m)
{
    const char *const vol[] = {VOLUME_LABELS, NULL};
    const char *const vol_reason[] = {VOLUME_LABELS, "reason", NULL};
    const char *const sts[] = {"namespace", "statefulset", NULL};
    int r;

    if ((r = metrics_register(m, METRIC_GAUGE, "ordinal_backup_last_success_timestamp_seconds",
                              "Unix time at which the newest successful backup of the volume "
                              "finished (rebuilt from the repository when the agent starts).",
                              vol, NULL, 0, 0, &am.backup_ok)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_backup_last_failure_timestamp_seconds",
                              "Unix time at which the newest failed backup of the volume ended "
                              "(since the agent started).",
                              vol, NULL, 0, 0, &am.backup_failed)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_restore_last_success_timestamp_seconds",
                              "Unix time at which the newest successful restore of the volume "
                              "finished (since the agent started).",
                              vol, NULL, 0, 0, &am.restore_ok)) < 0 ||
        (r = metrics_register(m, METRIC_COUNTER, "ordinal_backup_read_bytes_total",
                              "Bytes read from the volume by successful backups.", vol, NULL, 0,
                              0, &am.read_bytes)) < 0 ||
        (r = metrics_register(m, METRIC_COUNTER, "ordinal_backup_stored_bytes_total",
                              "Bytes stored in the repository (compressed) by successful "
                              "backups of the volume.",
                              vol, NULL, 0, 0, &am.stored_bytes)) < 0 ||
        (r = metrics_register(m, METRIC_HISTOGRAM, "ordinal_backup_duration_seconds",
                              "Duration of successful volume backups.", sts,
                              metrics_duration_bounds, metrics_duration_bounds_n, 1024,
                              &am.backup_seconds)) < 0 ||
        (r = metrics_register(m, METRIC_HISTOGRAM, "ordinal_restore_duration_seconds",
                              "Duration of successful volume restores.", sts,
                              metrics_duration_bounds, metrics_duration_bounds_n, 1024,
                              &am.restore_seconds)) < 0 ||
        (r = metrics_register(m, METRIC_COUNTER, "ordinal_backup_failures_total",
                              "Failed volume backups, by reason.", vol_reason, NULL, 0, 0,
                              &am.backup_failures)) < 0 ||
        (r = metrics_register(m, METRIC_COUNTER, "ordinal_restore_failures_total",
                              "Failed volume restores, by reason.", vol_reason, NULL, 0, 0,
                              &am.restore_failures)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_repository_up",
                              "1 when the repository answered the agent's last check, else 0.",
                              NULL, NULL, 0, 1, &am.repo_up)) < 0)
        return r;
    return 0;
}

/* Sets gauge series `values` to t unless it holds a later time already. */
static void set_if_later(struct metric *g, const char *const *values, double t)
{
    pthread_mutex_lock(&am.mu);
    if (metric_value(g, values) < t)
        (void)metric_set(g, values, t);
    pthread_mutex_unlock(&am.mu);
}

void agent_metrics_task(const struct agent_metrics_volume *v, bool restore, int code,
                        uint64_t bytes_in, uint64_t bytes_stored, double seconds, double when)
{
    char ord[16];
    const char *const vol[] = {v->sts->ns, v->sts->name, ord, v->template_name};
    const char *const sts[] = {v->sts->ns, v->sts->name};

    if (!am.backup_ok)
        return;
    snprintf(ord, sizeof(ord), "%d", (int)v->ordinal);
    if (code < 0) {
        const char *const vr[] = {v->sts->ns, v->sts->name, ord, v->template_name,
                                  metrics_errno_reason(code)};

        (void)metric_add(restore ? am.restore_failures : am.backup_failures, vr, 1);
        if (!restore)
            set_if_later(am.backup_failed, vol, when);
        return;
    }
    if (restore) {
        set_if_later(am.restore_ok, vol, when);
        (void)metric_observe(am.restore_seconds, sts, seconds);
        return;
    }
    set_if_later(am.backup_ok, vol, when);
    (void)metric_add(am.read_bytes, vol, (double)bytes_in);
    (void)metric_add(am.stored_bytes, vol, (double)bytes_stored);
    (void)metric_observe(am.backup_seconds, sts, seconds);
}

void agent_metrics_repository_up(bool up)
{
    (void)metric_set(am.repo_up, NULL, up ? 1 : 0);
}

/* A volume already decided by a newer backup (newest first). */
struct seen {
    struct sts_ref sts;
    int32_t ordinal;
    const char *template_name; /* points into the catalog */
};

static bool seen_has(const struct seen *s, size_t n, const struct sts_ref *sts, int32_t ordinal,
                     const char *tmpl)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].ordinal == ordinal && streq(s[i].template_name, tmpl) &&
            sts_ref_equal(&s[i].sts, sts))
            return true;
    return false;
}

int agent_metrics_rebuild(const char *url, const char *node, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *repo = NULL;
    _cleanup_free_ struct seen *seen = NULL;
    struct catalog c = {0};
    size_t n_seen = 0, cap = 0;
    int r, found = 0;

    if (!am.backup_ok)
        return 0;
    r = repo_open(url, REPO_OPEN_EXISTING, &repo, e);
    if (r < 0)
        return r;
    r = catalog_scan(repo, NULL, &c, e);
    if (r >= 0)
        r = catalog_load(repo, &c, e);
    if (r < 0)
        goto out;
    for (size_t i = c.n; i > 0; i--) {
        const struct catalog_entry *ce = &c.v[i - 1];

        if (!ce->complete || !ce->manifest)
            continue;
        for (size_t j = 0; j < ce->manifest->n_volumes; j++) {
            const struct backup_volume *bv = &ce->manifest->volumes[j];
            const char *made_by = catalog_node(ce);
            struct volume_manifest m = {0};
            bool mine;

            if (seen_has(seen, n_seen, &ce->sts, bv->ordinal, bv->template_name))
                continue;
            if (n_seen == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct seen *v = realloc(seen, ncap * sizeof(*v));

                if (!v) {
                    r = err_set(e, -ENOMEM, "out of memory");
                    goto out;
                }
                seen = v;
                cap = ncap;
            }
            seen[n_seen++] = (struct seen){
                .sts = ce->sts, .ordinal = bv->ordinal, .template_name = bv->template_name};
            /* A coordinator's backup spanning nodes: the volume's manifest names its node. */
            if (made_by[0])
                mine = streq(made_by, node);
            else {
                ord_err me = {0};

                mine = cli_load_volume(repo, ce->manifest, bv, &m, &me) == 0 &&
                       streq(m.node, node);
                volume_manifest_free(&m);
            }
            if (!mine)
                continue;
            {
                char ord[16];
                const char *const vol[] = {ce->sts.ns, ce->sts.name, ord, bv->template_name};

                snprintf(ord, sizeof(ord), "%d", (int)bv->ordinal);
                set_if_later(am.backup_ok, vol, bv->finished_at);
                found++;
            }
        }
    }
    r = found;
out:
    catalog_free(&c);
    return r;
}
