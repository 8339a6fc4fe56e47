/*
 * cluster.c - see cluster.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
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

/*
 * Waits until the task is final (watch by name; a GET whenever a stream ends). A task that no
 * agent has taken (no status: still Pending) after unclaimed_s gets one progress line naming
 * its node and what to check, since the wait is otherwise silent until the timeout; watches
 * end at least that often so the line is not late by a whole watch.
 */
static int wait_task(struct kube_client *c, const char *cmd, const char *ns,
                     const struct vtask *created, uint64_t timeout_s, uint64_t unclaimed_s,
                     struct vtask *ret, ord_err *e)
{
    char selector[COBJ_NAME_MAX + 32];
    struct wait_ctx w = {.name = created->name, .t = *created};
    struct kube_watch_opts wo = {.field_selector = selector, .timeout_seconds = 30};
    double start = cli_monotonic(), deadline = start + (double)timeout_s;
    unsigned failures = 0;
    bool warned = false;

    if (unclaimed_s > 0 && unclaimed_s < 30)
        wo.timeout_seconds = (long)unclaimed_s;
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
        if (!warned && unclaimed_s > 0 && w.t.phase <= VTASK_PENDING &&
            cli_monotonic() - start >= (double)unclaimed_s) {
            warned = true;
            cluster_progress(cmd,
                             "task '%s' has waited %llu s and no agent has taken it (still "
                             "Pending): is the agent on node '%s' running (kubectl -n %s get "
                             "pods -o wide --field-selector spec.nodeName=%s)? Is node '%s' "
                             "gone (kubectl get node %s)? If it is, see 'Node lost' in "
                             "docs/operations.md. Waiting up to %llu s (--task-timeout)",
                             created->name, (unsigned long long)(cli_monotonic() - start),
                             created->node, ns, created->node, created->node, created->node,
                             (unsigned long long)timeout_s);
        }
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
    return cluster_task_run_ex(c, ns, restore, accept_lost, NULL, name_tag, id, sts, ordinal, tmpl,
                               pv, node, timeout_s, CLUSTER_UNCLAIMED_WARN_S, ret_name, name_size,
                               ret, e);
}

int cluster_task_run_ex(struct kube_client *c, const char *ns, bool restore, bool accept_lost,
                        const struct sts_ref *src, const char *name_tag, const char *id,
                        const struct sts_ref *sts, int32_t ordinal, const char *tmpl,
                        const char *pv, const char *node, uint64_t timeout_s, uint64_t unclaimed_s,
                        char *ret_name, size_t name_size, struct vtask *ret, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *created = NULL;
    char name[COBJ_NAME_MAX + 1];
    struct vtask t;
    int r;

    task_name(name, sizeof(name), restore, name_tag, sts, ordinal, tmpl);
    snprintf(ret_name, name_size, "%s", name);
    r = cobj_vtask_build(name, ns, restore, accept_lost, id, sts, ordinal, tmpl, pv, node, &obj);
    if (r >= 0 && restore && src && !sts_ref_equal(src, sts))
        r = cobj_vtask_set_source(obj, src);
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
    return wait_task(c, restore ? "restore" : "run", ns, &t, timeout_s, unclaimed_s, ret, e);
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

void cluster_delete_tasks_of_gone_nodes(struct kube_client *c, const char *ns, const char *cmd)
{
    _cleanup_(cJSON_Deletep) cJSON *list = NULL;
    const cJSON *it;
    /* the nodes already asked about, to ask once per node */
    char known[16][NAMES_LABEL_MAX + 1];
    bool gone[16];
    size_t n_known = 0;
    ord_err e = {0};

    if (kube_list(c, &KUBE_RES_VOLUMETASKS, ns, NULL, &list, &e) < 0) {
        cli_warn(cmd, "cannot list the tasks to find those of nodes that are gone: %s",
                 err_msg(&e));
        return;
    }
    cJSON_ArrayForEach(it, json_path(list, "items"))
    {
        const char *node;
        struct vtask t;
        bool is_gone = false, found = false;
        int r;

        /* spec.node: the node the task is labelled for (cobj_vtask_build sets both) */
        if (cobj_vtask_from_json(it, &t, NULL) < 0 || !t.node[0] ||
            strlen(t.node) > NAMES_LABEL_MAX)
            continue;
        node = t.node;
        for (size_t i = 0; i < n_known && !found; i++)
            if (streq(known[i], node)) {
                found = true;
                is_gone = gone[i];
            }
        if (!found) {
            r = kube_get(c, &KUBE_RES_NODES, NULL, node, NULL, &e);
            if (r < 0 && r != KUBE_E_NOT_FOUND) {
                cli_warn(cmd, "cannot tell whether node '%s' still exists: %s", node,
                         err_msg(&e));
                err_clear(&e);
                continue;
            }
            err_clear(&e);
            is_gone = r == KUBE_E_NOT_FOUND;
            if (n_known < ARRAY_SIZE(known)) {
                snprintf(known[n_known], sizeof(known[n_known]), "%s", node);
                gone[n_known++] = is_gone;
            }
        }
        if (!is_gone)
            continue;
        r = kube_delete(c, &KUBE_RES_VOLUMETASKS, ns, t.name, NULL, NULL, &e);
        if (r < 0 && r != KUBE_E_NOT_FOUND)
            cli_warn(cmd, "cannot delete task '%s' of node '%s', which no longer exists: %s",
                     t.name, node, err_msg(&e));
        else
            cluster_progress(cmd,
                             "deleted task '%s' (%s of %s/%s ordinal %d volume '%s', phase %s): "
                             "its node '%s' no longer exists (no Node object), so no agent "
                             "will take it",
                             t.name, t.restore ? "restore" : "backup", t.sts.ns, t.sts.name,
                             (int)t.ordinal, t.template_name, vtask_phase_name(t.phase), node);
        err_clear(&e);
    }
}
