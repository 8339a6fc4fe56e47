/*
 * cluster.c - see cluster.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cluster.h"
#include "json.h"
#include "kube_watch.h"
#include "lock.h"
#include "id.h"
#include "kube_config.h"

int cluster_connect(const char *kubeconfig, const char *ns_opt, struct kube_client **ret,
                    char *ret_ns, size_t ns_size, ord_err *e)
{
    struct kube_config *cfg = NULL;
    struct kube_client *c = NULL;
    const char *ns = ns_opt;
    char nsbuf[NAMES_LABEL_MAX + 1];
    bool in_cluster;
    int r;

    r = kube_config_load(kubeconfig, NULL, &cfg, e);
    if (r < 0)
        return err_wrap(e, r, "cannot load the Kubernetes configuration");
    /* A kubeconfig's context namespace is the user's workloads', not the deployment's. */
    in_cluster = cfg->source && strstr(cfg->source, "in-cluster");
    if (!ns || !ns[0])
        ns = in_cluster && cfg->namespace ? cfg->namespace : CLUSTER_DEFAULT_NAMESPACE;
    if (!names_dns_label(ns)) {
        kube_config_free(cfg);
        return err_set(e, -EINVAL, "'%s' is not a namespace name", ns);
    }
    snprintf(nsbuf, sizeof(nsbuf), "%s", ns);
    r = kube_client_new(cfg, NULL, &c, e); /* takes cfg */
    if (r < 0)
        return err_wrap(e, r, "cannot create the Kubernetes client");
    snprintf(ret_ns, ns_size, "%s", nsbuf);
    *ret = c;
    return 0;
}

void cluster_now_rfc3339(char *buf, size_t size)
{
    if (time_format_rfc3339(time(NULL), buf, size) < 0)
        snprintf(buf, size, "1970-01-01T00:00:00Z");
}

void cluster_progress(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s %s: ", CLI_PROG, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

#define WATCH_DONE (-ECHILD) /* callback sentinel: the task reached a final phase */

/* "<sts>[-restore]-<tag in lower case>-<ordinal>-<template>", or a hashed form past 253. */
static void task_name(char *buf, size_t size, bool restore, const char *tag,
                      const struct sts_ref *sts, int32_t ordinal, const char *tmpl)
{
    char ltag[ID_MAX];
    uint32_t h = 2166136261u;
    int n;

    for (size_t i = 0; i < sizeof(ltag); i++) {
        ltag[i] = tag[i] >= 'A' && tag[i] <= 'Z' ? (char)(tag[i] - 'A' + 'a') : tag[i];
        if (!tag[i])
            break;
    }
    ltag[sizeof(ltag) - 1] = '\0';
    n = snprintf(buf, size, "%s%s-%s-%d-%s", sts->name, restore ? "-restore" : "", ltag,
                 (int)ordinal, tmpl);
    if (n > 0 && (size_t)n < size && n <= COBJ_NAME_MAX)
        return;
    for (const char *p = sts->name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = tmpl; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(buf, size, "vt-%s%s-%d-%08x", restore ? "r-" : "", ltag, (int)ordinal, h);
}

struct wait_ctx {
    const char *name;
    struct vtask t;
    bool final, deleted;
    char rv[128];
};

static int on_task_event(struct kube_event *ev, void *ud)
{
    struct wait_ctx *w = ud;
    struct vtask t;

    if (ev->type == KUBE_EVENT_ERROR)
        return KUBE_E_GONE; /* re-read and watch again */
    if (ev->type == KUBE_EVENT_BOOKMARK) {
        const char *rv = json_string(ev->object, "metadata.resourceVersion");
        if (rv)
            snprintf(w->rv, sizeof(w->rv), "%s", rv);
        return 0;
    }
    if (cobj_vtask_from_json(ev->object, &t, NULL) < 0 || !streq(t.name, w->name))
        return 0;
    snprintf(w->rv, sizeof(w->rv), "%s", t.rv);
    if (ev->type == KUBE_EVENT_DELETED) {
        w->deleted = true;
        return WATCH_DONE;
    }
    w->t = t;
    if (t.phase == VTASK_SUCCEEDED || t.phase == VTASK_FAILED) {
        w->final = true;
        return WATCH_DONE;
    }
    return 0;
}

/* Waits until the task is final (watch by name; a GET whenever a stream ends). */
static int wait_task(struct kube_client *c, const char *ns, const struct vtask *created,
                     uint64_t timeout_s, struct vtask *ret, ord_err *e)
{
    char selector[COBJ_NAME_MAX + 32];
    struct wait_ctx w = {.name = created->name, .t = *created};
    struct kube_watch_opts wo = {.field_selector = selector, .timeout_seconds = 30};
    double deadline = cli_monotonic() + (double)timeout_s;
    unsigned failures = 0;

    snprintf(selector, sizeof(selector), "metadata.name=%s", created->name);
    snprintf(w.rv, sizeof(w.rv), "%s", created->rv);
    while (!w.final && !w.deleted) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
        ord_err we = {0};
        struct vtask t;
        int r;

        if (cli_monotonic() > deadline)
            return err_set(e, -ETIMEDOUT,
                           "task '%s' did not finish within %llu s (phase %s); is the agent on "
                           "node '%s' running? (kubectl -n %s get volumetask %s)",
                           created->name, (unsigned long long)timeout_s,
                           vtask_phase_name(w.t.phase), created->node, ns, created->name);
        r = kube_watch_once(c, &KUBE_RES_VOLUMETASKS, ns, w.rv, &wo, on_task_event, &w, &we);
        if (r == WATCH_DONE)
            break;
        if (r < 0 && r != KUBE_E_GONE) {
            if (++failures > 10) {
                *e = we;
                return err_wrap(e, r, "cannot watch task '%s'", created->name);
            }
            sleep(1);
        } else {
            failures = 0;
        }
        /* The stream ended (timeout, 410, error): re-read, so no change is missed. */
        r = kube_get(c, &KUBE_RES_VOLUMETASKS, ns, created->name, &obj, &we);
        if (r == KUBE_E_NOT_FOUND) {
            w.deleted = true;
            break;
        }
        if (r < 0 || cobj_vtask_from_json(obj, &t, &we) < 0)
            continue;
        w.t = t;
        snprintf(w.rv, sizeof(w.rv), "%s", t.rv);
        w.final = t.phase == VTASK_SUCCEEDED || t.phase == VTASK_FAILED;
    }
    if (w.deleted)
        return err_set(e, -ECANCELED, "task '%s' was deleted before it finished", created->name);
    *ret = w.t;
    return 0;
}

int cluster_task_run(struct kube_client *c, const char *ns, bool restore, bool accept_lost,
                     const char *name_tag, const char *id, const struct sts_ref *sts,
                     int32_t ordinal, const char *tmpl, const char *pv, const char *node,
                     uint64_t timeout_s, char *ret_name, size_t name_size, struct vtask *ret,
                     ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *created = NULL;
    char name[COBJ_NAME_MAX + 1];
    struct vtask t;
    int r;

    task_name(name, sizeof(name), restore, name_tag, sts, ordinal, tmpl);
    snprintf(ret_name, name_size, "%s", name);
    r = cobj_vtask_build(name, ns, restore, accept_lost, id, sts, ordinal, tmpl, pv, node, &obj);
    if (r < 0)
        return err_set(e, r, "out of memory");
    r = kube_create(c, &KUBE_RES_VOLUMETASKS, ns, obj, &created, e);
    if (r < 0)
        return err_wrap(e, r, "cannot create task '%s'", name);
    r = cobj_vtask_from_json(created, &t, e);
    if (r < 0)
        return r;
    cluster_progress(restore ? "restore" : "run",
                     "ordinal %d volume '%s' on node '%s': task '%s' created", (int)ordinal, tmpl,
                     node, name);
    return wait_task(c, ns, &t, timeout_s, ret, e);
}

void cluster_lock_operation(struct kube_client *c, const char *ns, const char *base, char *buf,
                            size_t size)
{
    const struct kube_config *cfg = kube_client_config(c);
    bool in_pod = cfg->source && strstr(cfg->source, "in-cluster") && cfg->namespace &&
                  streq(cfg->namespace, ns);

    snprintf(buf, size, "%s%s", base, in_pod ? "-pod" : "");
}

bool cluster_lock_holder_gone(const struct lock_info *holder, void *ctx)
{
    struct cluster_lock_ctx *lc = ctx;
    _cleanup_(cJSON_Deletep) cJSON *list = NULL;
    char selector[300], phase[32];
    size_t op = strlen(holder->operation), n;
    struct kube_list_opts lo = {.field_selector = selector};

    /* Only coordinators that ran in a pod of this namespace: their host is the pod's name. */
    if (op < 4 || !streq(holder->operation + op - 4, "-pod") || !names_dns_subdomain(holder->host))
        return false;
    snprintf(selector, sizeof(selector), "metadata.name=%s", holder->host);
    if (kube_list(lc->client, &KUBE_RES_PODS, lc->ns, &lo, &list, NULL) < 0)
        return false; /* cannot tell: not gone */
    n = cobj_pod_list_phase(list, phase, sizeof(phase));
    return n == 0 || streq(phase, "Succeeded") || streq(phase, "Failed");
}
