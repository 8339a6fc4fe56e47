/*
 * capacity.c - the promise ledger (see capacity.h). A flat array: a node holds at most a few
 * thousand volumes and a claim is checked once, so a linear scan costs less than a hash table
 * in code and memory.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "macro.h"
#include "quantity.h"

struct cap_entry {
    char *name;
    char *path;
    dev_t dev;
    uint64_t bytes;
    bool pv; /* the PV's promise (informer), else a reservation of an attempt */
};

struct cap_ledger {
    pthread_mutex_t lock;
    struct cap_entry *v;
    size_t n, cap;
};

int cap_ledger_new(struct cap_ledger **ret)
{
    struct cap_ledger *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    pthread_mutex_init(&l->lock, NULL);
    *ret = l;
    return 0;
}

void cap_ledger_free(struct cap_ledger *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].path);
    }
    free(l->v);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* Lock held. */
static struct cap_entry *find(struct cap_ledger *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

/* Lock held. */
static int set_locked(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                      const char *path, bool pv)
{
    struct cap_entry *e = find(l, name);
    char *p = NULL;

    if (path && !(p = strdup(path)))
        return -ENOMEM;
    if (e) {
        e->dev = dev;
        e->bytes = bytes;
        e->pv = e->pv || pv; /* a reservation becomes the PV's, never the other way round */
        if (p) {
            free(e->path);
            e->path = p;
        }
        return 0;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct cap_entry *nv = realloc(l->v, ncap * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].name = strdup(name);
    if (!l->v[l->n].name) {
        free(p);
        return -ENOMEM;
    }
    l->v[l->n].path = p;
    l->v[l->n].dev = dev;
    l->v[l->n].bytes = bytes;
    l->v[l->n].pv = pv;
    l->n++;
    return 0;
}

/* Lock held. */
static uint64_t promised_locked(struct cap_ledger *l, dev_t dev, const char *except,
                                size_t *ret_count)
{
    uint64_t sum = 0;
    size_t n = 0;

    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].dev == dev && !(except && streq(l->v[i].name, except))) {
            sum = sum + l->v[i].bytes < sum ? UINT64_MAX : sum + l->v[i].bytes;
            n++;
        }
    if (ret_count)
        *ret_count = n;
    return sum;
}

int cap_ledger_set(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                   const char *path)
{
    int r;

    pthread_mutex_lock(&l->lock);
    r = set_locked(l, name, dev, bytes, path, false);
    pthread_mutex_unlock(&l->lock);
    return r;
}

int cap_ledger_set_pv(struct cap_ledger *l, const char *name, dev_t dev, uint64_t bytes,
                      const char *path)
{
    int r;

    pthread_mutex_lock(&l->lock);
    r = set_locked(l, name, dev, bytes, path, true);
    pthread_mutex_unlock(&l->lock);
    return r;
}

bool cap_ledger_is_reserved(struct cap_ledger *l, const char *name)
{
    struct cap_entry *e;
    bool reserved;

    pthread_mutex_lock(&l->lock);
    e = find(l, name);
    reserved = e && !e->pv;
    pthread_mutex_unlock(&l->lock);
    return reserved;
}

/* Lock held. */
static void remove_at(struct cap_ledger *l, size_t i)
{
    free(l->v[i].name);
    free(l->v[i].path);
    l->v[i] = l->v[--l->n];
}

bool cap_ledger_unreserve(struct cap_ledger *l, const char *name)
{
    bool done = false;

    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i].name, name)) {
            if (!l->v[i].pv) {
                remove_at(l, i);
                done = true;
            }
            break;
        }
    pthread_mutex_unlock(&l->lock);
    return done;
}

int cap_ledger_reservations(struct cap_ledger *l, char ***ret, size_t *ret_n)
{
    char **v = NULL;
    size_t n = 0;
    int r = 0;

    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i].pv)
            n++;
    if (n && !(v = calloc(n, sizeof(*v))))
        r = -ENOMEM;
    n = 0;
    for (size_t i = 0; r == 0 && i < l->n; i++)
        if (!l->v[i].pv && !(v[n++] = strdup(l->v[i].name)))
            r = -ENOMEM;
    pthread_mutex_unlock(&l->lock);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

void cap_ledger_remove(struct cap_ledger *l, const char *name)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i].name, name)) {
            remove_at(l, i);
            break;
        }
    pthread_mutex_unlock(&l->lock);
}

uint64_t cap_ledger_promised(struct cap_ledger *l, dev_t dev, size_t *ret_count)
{
    uint64_t sum;

    pthread_mutex_lock(&l->lock);
    sum = promised_locked(l, dev, NULL, ret_count);
    pthread_mutex_unlock(&l->lock);
    return sum;
}

/* Bytes for people: exact in the largest binary unit when it divides ("16Mi"), else one
 * decimal ("15.9Mi"). */
static const char *fmt_bytes(uint64_t v, char buf[QUANTITY_STR_MAX])
{
    static const char *const suffix[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    uint64_t unit = 1024;
    int i = 0;

    if (v < 1024) {
        snprintf(buf, QUANTITY_STR_MAX, "%llu", (unsigned long long)v);
        return buf;
    }
    while (i < 5 && v / unit >= 1024) {
        unit *= 1024;
        i++;
    }
    if (v % unit == 0)
        snprintf(buf, QUANTITY_STR_MAX, "%llu%s", (unsigned long long)(v / unit), suffix[i]);
    else
        snprintf(buf, QUANTITY_STR_MAX, "%.1f%s", (double)v / (double)unit, suffix[i]);
    return buf;
}

int cap_ledger_reserve(struct cap_ledger *l, const char *name, dev_t dev, uint64_t free_bytes,
                       uint64_t request, const char *path, const char *where, ord_err *e)
{
    char q_req[QUANTITY_STR_MAX], q_free[QUANTITY_STR_MAX], q_prom[QUANTITY_STR_MAX],
        q_avail[QUANTITY_STR_MAX];
    uint64_t promised, avail;
    size_t count;
    int r;

    pthread_mutex_lock(&l->lock);
    promised = promised_locked(l, dev, name, &count);
    avail = free_bytes > promised ? free_bytes - promised : 0;
    if (request > avail) {
        pthread_mutex_unlock(&l->lock);
        return err_set(e, -ENOSPC,
                       "requested %s but only %s is available in '%s' (%s free minus %s "
                       "promised to %zu volume%s); request less, free space on the node, or let "
                       "the claim go to another node",
                       fmt_bytes(request, q_req), fmt_bytes(avail, q_avail), where,
                       fmt_bytes(free_bytes, q_free), fmt_bytes(promised, q_prom), count,
                       count == 1 ? "" : "s");
    }
    r = set_locked(l, name, dev, request, path, false);
    pthread_mutex_unlock(&l->lock);
    return r;
}

bool cap_ledger_has_path(struct cap_ledger *l, const char *path, const char *except)
{
    bool found = false;

    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n && !found; i++)
        found =
            l->v[i].path && streq(l->v[i].path, path) && !(except && streq(l->v[i].name, except));
    pthread_mutex_unlock(&l->lock);
    return found;
}
