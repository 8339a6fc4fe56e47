/*
 * prov_metrics.c - the provisioner's metrics (see prov_metrics.h).
 *
 * The selected-node -> PV created latency needs the moment the scheduler's choice reached this
 * node. The annotation carries no time, so the first informer event that shows the claim with
 * selected-node = this node starts the clock (the earliest this process can know; the watch's
 * delay is the API server's, the same for every node). Those start times are kept in a small
 * fixed table: when it is full, the oldest start is overwritten, so a flood of claims that
 * never get a PV costs nothing more than the table.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "controller.h"
#include "prov_metrics.h"

#define SEEN_MAX 1024
#define UID_MAX  64

static struct {
    struct metric *provisions, *deletes, *latency, *capacity, *promised, *free;
    struct controller *ctl;
    const char *node;
    pthread_mutex_t mu;
    struct {
        char uid[UID_MAX];
        double t;
    } seen[SEEN_MAX];
    size_t next; /* slot to overwrite when the table is full */
} pm = {.mu = PTHREAD_MUTEX_INITIALIZER};

static double monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void prov_metrics_provision(const char *storageclass, const char *result, const char *reason)
{
    (void)metric_add(pm.provisions,
                     (const char *const[]){storageclass ? storageclass : "", result, reason}, 1);
}

void prov_metrics_provision_failed(const char *storageclass, int code)
{
    prov_metrics_provision(storageclass, "failure", metrics_errno_reason(code));
}

void prov_metrics_delete(const char *storageclass, int code)
{
    (void)metric_add(pm.deletes,
                     (const char *const[]){storageclass ? storageclass : "",
                                           code < 0 ? "failure" : "success",
                                           code < 0 ? metrics_errno_reason(code) : "deleted"},
                     1);
}

void prov_metrics_claim_selected(const char *uid)
{
    size_t free_slot = SEEN_MAX;

    if (!pm.latency || !uid || strlen(uid) >= UID_MAX)
        return;
    pthread_mutex_lock(&pm.mu);
    for (size_t i = 0; i < SEEN_MAX; i++) {
        if (streq(pm.seen[i].uid, uid))
            goto out; /* the first sighting counts */
        if (!pm.seen[i].uid[0] && free_slot == SEEN_MAX)
            free_slot = i;
    }
    if (free_slot == SEEN_MAX) {
        free_slot = pm.next;
        pm.next = (pm.next + 1) % SEEN_MAX;
    }
    snprintf(pm.seen[free_slot].uid, UID_MAX, "%s", uid);
    pm.seen[free_slot].t = monotonic();
out:
    pthread_mutex_unlock(&pm.mu);
}

/* Takes the start time of uid out of the table: >= 0, or -1 when it was not there. */
static double take_seen(const char *uid)
{
    double t = -1;

    pthread_mutex_lock(&pm.mu);
    for (size_t i = 0; i < SEEN_MAX; i++)
        if (streq(pm.seen[i].uid, uid)) {
            t = pm.seen[i].t;
            pm.seen[i].uid[0] = '\0';
            break;
        }
    pthread_mutex_unlock(&pm.mu);
    return t;
}

void prov_metrics_claim_created(const char *uid, const char *storageclass)
{
    double t;

    if (!pm.latency || !uid)
        return;
    t = take_seen(uid);
    if (t >= 0)
        (void)metric_observe(pm.latency, (const char *const[]){storageclass ? storageclass : ""},
                             monotonic() - t);
}

void prov_metrics_claim_forget(const char *uid)
{
    if (pm.latency && uid)
        (void)take_seen(uid);
}

static void on_capacity(const struct prov_capacity *c, void *ud)
{
    const char *const v[] = {c->storageclass, pm.node};

    (void)metric_set(pm.capacity, v, (double)c->capacity);
    (void)metric_set(pm.promised, v, (double)c->promised);
    (void)metric_set(pm.free, v, (double)c->free);
}

/* At scrape time: the classes of now (a deleted class's series go away). */
static void collect_capacity(void *ud)
{
    metric_clear(pm.capacity);
    metric_clear(pm.promised);
    metric_clear(pm.free);
    controller_capacity(pm.ctl, on_capacity, NULL);
}

int prov_metrics_init(struct metrics *m, struct controller *ctl, const char *node)
{
    const char *const outcome[] = {"storageclass", "result", "reason", NULL};
    const char *const per_class[] = {"storageclass", "node", NULL};
    int r;

    pm.ctl = ctl;
    pm.node = node;
    if ((r = metrics_register(m, METRIC_COUNTER, "ordinal_provision_total",
                              "Provisioning attempts of claims by outcome: result success "
                              "(reason created or retained) or failure (reason why).",
                              outcome, NULL, 0, 512, &pm.provisions)) < 0 ||
        (r = metrics_register(m, METRIC_COUNTER, "ordinal_volume_delete_total",
                              "Reclaims of Released volumes with reclaim policy Delete, by "
                              "outcome.",
                              outcome, NULL, 0, 512, &pm.deletes)) < 0 ||
        (r = metrics_register(m, METRIC_HISTOGRAM, "ordinal_provision_latency_seconds",
                              "Seconds from this node seeing a claim's selected-node annotation "
                              "name it to the claim's PersistentVolume created.",
                              (const char *const[]){"storageclass", NULL}, metrics_latency_bounds,
                              metrics_latency_bounds_n, 256, &pm.latency)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_storage_capacity_bytes",
                              "Size of the filesystem that holds the root of a directory-backend "
                              "StorageClass on this node.",
                              per_class, NULL, 0, 256, &pm.capacity)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_storage_promised_bytes",
                              "Bytes promised to the volumes (PVs and reservations) on the "
                              "filesystem of a StorageClass's root.",
                              per_class, NULL, 0, 256, &pm.promised)) < 0 ||
        (r = metrics_register(m, METRIC_GAUGE, "ordinal_storage_free_bytes",
                              "Free bytes (for unprivileged users) of the filesystem of a "
                              "StorageClass's root.",
                              per_class, NULL, 0, 256, &pm.free)) < 0)
        return r;
    return metrics_add_collector(m, collect_capacity, NULL);
}
