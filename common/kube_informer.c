/*
 * kube_informer.c - see kube_informer.h.
 *
 * The cache is a chained hash table keyed by "namespace/name", guarded by a rwlock: the
 * informer thread writes, any thread reads. Objects are immutable and reference-counted, so a
 * reader keeps a consistent object after the informer replaced or dropped it, and callbacks can
 * run after the lock is released. A relist builds the new state aside, swaps it in under the
 * write lock, and then reports the differences.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "kube_informer.h"
#include "kube_private.h"
#include "log.h"

struct kube_obj {
    atomic_uint refs;
    void *data;
    void (*free_data)(void *data);    /* NULL: data is a cJSON tree */
    const char *ns, *name, *uid, *rv; /* point into the same allocation */
};

struct entry {
    struct entry *next;
    uint64_t hash;
    struct kube_obj *obj; /* one reference held by the table */
};

struct table {
    struct entry **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
};

struct kube_informer {
    struct kube_client *client;
    struct kube_informer_opts o; /* strings below are our copies */
    char *ns, *label_selector, *field_selector;

    pthread_rwlock_t lock; /* guards table and rv */
    struct table table;
    char rv[128];

    pthread_mutex_t state_lock; /* guards synced, stopped; with synced_cond */
    pthread_cond_t synced_cond;
    bool synced;
    bool stopped;
    atomic_bool stop;

    pthread_t thread;
    bool started;
    int run_result;
    ord_err run_err;
};

/* ---- objects ---- */

const void *kube_obj_data(const struct kube_obj *o)
{
    return o->data;
}
const char *kube_obj_namespace(const struct kube_obj *o)
{
    return o->ns;
}
const char *kube_obj_name(const struct kube_obj *o)
{
    return o->name;
}
const char *kube_obj_uid(const struct kube_obj *o)
{
    return o->uid;
}
const char *kube_obj_resource_version(const struct kube_obj *o)
{
    return o->rv;
}

struct kube_obj *kube_obj_ref(struct kube_obj *o)
{
    if (o)
        atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
    return o;
}

void kube_obj_unref(struct kube_obj *o)
{
    if (!o)
        return;
    if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (o->free_data)
        o->free_data(o->data);
    else
        cJSON_Delete(o->data);
    free(o);
}

void kube_obj_list_free(struct kube_obj **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kube_obj_unref(objs[i]);
    free(objs);
}

/*
 * Makes a cached object from an API object, taking ownership of json (freed in every case
 * when decode is used; kept as the data otherwise). Returns 0, -EINVAL (no name), -ENOMEM,
 * or decode's error.
 */
static int obj_new(struct kube_informer *inf, cJSON *json, struct kube_obj **ret, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *j = json;
    const char *ns = json_string(j, "metadata.namespace");
    const char *name = json_string(j, "metadata.name");
    const char *uid = json_string(j, "metadata.uid");
    const char *rv = json_string(j, "metadata.resourceVersion");
    size_t lns, lname, luid, lrv;
    struct kube_obj *o;
    char *p;
    void *data = NULL;
    int r;

    if (!name || !name[0])
        return err_set(e, -EINVAL, "%s object without metadata.name", inf->o.res->resource);
    ns = ns ? ns : "";
    uid = uid ? uid : "";
    rv = rv ? rv : "";
    lns = strlen(ns) + 1;
    lname = strlen(name) + 1;
    luid = strlen(uid) + 1;
    lrv = strlen(rv) + 1;
    o = malloc(sizeof(*o) + lns + lname + luid + lrv);
    if (!o)
        return err_set(e, -ENOMEM, "out of memory");
    p = (char *)(o + 1);
    o->ns = memcpy(p, ns, lns);
    p += lns;
    o->name = memcpy(p, name, lname);
    p += lname;
    o->uid = memcpy(p, uid, luid);
    p += luid;
    o->rv = memcpy(p, rv, lrv);
    atomic_init(&o->refs, 1);
    if (inf->o.decode) {
        r = inf->o.decode(j, &data, e, inf->o.userdata);
        if (r < 0) {
            free(o);
            if (e && e->code == 0)
                err_set(e, r, "cannot decode %s '%s%s%s'", inf->o.res->resource, ns,
                        ns[0] ? "/" : "", name);
            return r;
        }
        o->data = data;
        o->free_data = inf->o.free_data;
    } else {
        o->data = TAKE_PTR(j);
        o->free_data = NULL;
    }
    *ret = o;
    return 0;
}

/* ---- table ---- */

static uint64_t key_hash(const char *ns, const char *name)
{
    /* FNV-1a over "ns\0name". */
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = ns; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static void table_clear(struct table *t)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct entry *en = t->buckets[i];
        while (en) {
            struct entry *next = en->next;
            kube_obj_unref(en->obj);
            free(en);
            en = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static struct entry **table_slot(struct table *t, const char *ns, const char *name, uint64_t h)
{
    struct entry **pp;

    if (!t->n_buckets)
        return NULL;
    for (pp = &t->buckets[h & (t->n_buckets - 1)]; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && streq((*pp)->obj->name, name) && streq((*pp)->obj->ns, ns))
            return pp;
    return pp;
}

static struct kube_obj *table_get(struct table *t, const char *ns, const char *name)
{
    struct entry **pp = table_slot(t, ns, name, key_hash(ns, name));
    return pp && *pp ? (*pp)->obj : NULL;
}

static int table_grow(struct table *t)
{
    size_t n = t->n_buckets ? t->n_buckets * 2 : 64;
    struct entry **b = calloc(n, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct entry *en = t->buckets[i];
        while (en) {
            struct entry *next = en->next;
            en->next = b[en->hash & (n - 1)];
            b[en->hash & (n - 1)] = en;
            en = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
    return 0;
}

/*
 * Stores obj (taking the caller's reference). Returns the object it replaced (its table
 * reference handed to the caller) or NULL; -ENOMEM leaves the table unchanged (*ret_old NULL).
 */
static int table_put(struct table *t, struct kube_obj *obj, struct kube_obj **ret_old)
{
    uint64_t h = key_hash(obj->ns, obj->name);
    struct entry **pp, *en;

    *ret_old = NULL;
    if (t->count + 1 > t->n_buckets * 3 / 4 && table_grow(t) < 0)
        return -ENOMEM;
    pp = table_slot(t, obj->ns, obj->name, h);
    if (*pp) {
        *ret_old = (*pp)->obj;
        (*pp)->obj = obj;
        return 0;
    }
    en = calloc(1, sizeof(*en));
    if (!en)
        return -ENOMEM;
    en->hash = h;
    en->obj = obj;
    *pp = en;
    t->count++;
    return 0;
}

/* Removes ns/name; returns the table's reference to the caller, or NULL. */
static struct kube_obj *table_del(struct table *t, const char *ns, const char *name)
{
    struct entry **pp = table_slot(t, ns, name, key_hash(ns, name));
    struct entry *en;
    struct kube_obj *o;

    if (!pp || !*pp)
        return NULL;
    en = *pp;
    *pp = en->next;
    o = en->obj;
    free(en);
    t->count--;
    return o;
}

/* ---- callbacks ---- */

enum change_kind { CHANGE_ADD, CHANGE_UPDATE, CHANGE_DELETE };

struct change {
    enum change_kind kind;
    struct kube_obj *old_obj, *new_obj; /* references owned by the change */
};

static void fire(struct kube_informer *inf, const struct change *ch)
{
    switch (ch->kind) {
    case CHANGE_ADD:
        if (inf->o.on_add)
            inf->o.on_add(ch->new_obj, inf->o.userdata);
        break;
    case CHANGE_UPDATE:
        if (inf->o.on_update)
            inf->o.on_update(ch->old_obj, ch->new_obj, inf->o.userdata);
        break;
    case CHANGE_DELETE:
        if (inf->o.on_delete)
            inf->o.on_delete(ch->old_obj, inf->o.userdata);
        break;
    }
}

static void report(struct kube_informer *inf, int r, const ord_err *e)
{
    if (inf->o.on_error)
        inf->o.on_error(r, e, inf->o.userdata);
    else
        log_debug("informer %s: %s", inf->o.res->resource, err_msg(e));
}

static void set_rv(struct kube_informer *inf, const char *rv)
{
    if (rv && strlen(rv) < sizeof(inf->rv))
        snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
}

/* Appends a change, taking its references (dropped on -ENOMEM). */
static int push_change(struct change **v, size_t *n, size_t *cap, struct change ch)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        struct change *p = realloc(*v, ncap * sizeof(*p));
        if (!p) {
            kube_obj_unref(ch.old_obj);
            kube_obj_unref(ch.new_obj);
            return -ENOMEM;
        }
        *v = p;
        *cap = ncap;
    }
    (*v)[(*n)++] = ch;
    return 0;
}

static int on_list(cJSON *list, const char *rv, void *userdata)
{
    struct kube_informer *inf = userdata;
    cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    struct table fresh = {0};
    struct change *changes = NULL;
    struct kube_obj **order = NULL; /* the list's order, for callbacks; references */
    size_t n_order = 0, n_changes = 0, cap = 0;
    size_t n_items = (size_t)cJSON_GetArraySize(items);
    cJSON *it;
    bool first;
    int r = 0;

    if (n_items > 0) {
        order = calloc(n_items, sizeof(*order));
        if (!order)
            return -ENOMEM;
    }
    /* Build the new state aside. */
    while (cJSON_IsArray(items) && (it = items->child) && n_order < n_items) {
        struct kube_obj *o = NULL, *dup = NULL;
        ord_err err = {0};
        cJSON_DetachItemViaPointer(items, it);
        r = obj_new(inf, it, &o, &err);
        if (r == -ENOMEM)
            goto fail;
        if (r < 0) {
            report(inf, r, &err);
            r = 0;
            continue;
        }
        r = table_put(&fresh, kube_obj_ref(o), &dup);
        if (r < 0) {
            kube_obj_unref(o);
            kube_obj_unref(o);
            goto fail;
        }
        kube_obj_unref(dup);
        order[n_order++] = o;
    }

    pthread_rwlock_wrlock(&inf->lock);
    /* Diff in list order. Objects whose version did not change keep their old incarnation,
     * so that readers holding them see no difference. */
    for (size_t i = 0; i < n_order && r == 0; i++) {
        struct entry **pp = table_slot(&fresh, order[i]->ns, order[i]->name,
                                       key_hash(order[i]->ns, order[i]->name));
        struct kube_obj *cur = (*pp)->obj; /* a duplicate name: the last one listed */
        struct kube_obj *old = table_get(&inf->table, cur->ns, cur->name);
        if (cur != order[i])
            continue;
        if (old && streq(old->rv, cur->rv) && streq(old->uid, cur->uid)) {
            (*pp)->obj = kube_obj_ref(old);
            kube_obj_unref(cur);
            continue;
        }
        if (old && !streq(old->uid, cur->uid)) {
            /* Same name, new incarnation: a delete and an add. */
            r = push_change(&changes, &n_changes, &cap,
                            (struct change){CHANGE_DELETE, kube_obj_ref(old), NULL});
            old = NULL;
        }
        if (r == 0)
            r = push_change(
                &changes, &n_changes, &cap,
                old ? (struct change){CHANGE_UPDATE, kube_obj_ref(old), kube_obj_ref(cur)}
                    : (struct change){CHANGE_ADD, NULL, kube_obj_ref(cur)});
    }
    for (size_t i = 0; i < inf->table.n_buckets && r == 0; i++) {
        for (struct entry *en = inf->table.buckets[i]; en && r == 0; en = en->next) {
            if (table_get(&fresh, en->obj->ns, en->obj->name))
                continue;
            r = push_change(&changes, &n_changes, &cap,
                            (struct change){CHANGE_DELETE, kube_obj_ref(en->obj), NULL});
        }
    }
    if (r == 0) {
        struct table old = inf->table;
        inf->table = fresh;
        fresh = old; /* freed below */
        set_rv(inf, rv);
    }
    pthread_rwlock_unlock(&inf->lock);
    if (r < 0)
        goto fail;

    for (size_t i = 0; i < n_changes; i++) {
        fire(inf, &changes[i]);
        kube_obj_unref(changes[i].old_obj);
        kube_obj_unref(changes[i].new_obj);
    }
    free(changes);
    table_clear(&fresh);
    kube_obj_list_free(order, n_order);

    pthread_mutex_lock(&inf->state_lock);
    first = !inf->synced;
    inf->synced = true;
    pthread_cond_broadcast(&inf->synced_cond);
    pthread_mutex_unlock(&inf->state_lock);
    if (first && inf->o.on_synced)
        inf->o.on_synced(inf->o.userdata);
    return 0;

fail:
    for (size_t i = 0; i < n_changes; i++) {
        kube_obj_unref(changes[i].old_obj);
        kube_obj_unref(changes[i].new_obj);
    }
    free(changes);
    table_clear(&fresh);
    kube_obj_list_free(order, n_order);
    return -ENOMEM;
}

static int on_event(struct kube_event *ev, void *userdata)
{
    struct kube_informer *inf = userdata;
    struct change ch = {0};
    struct kube_obj *o = NULL, *old = NULL;
    ord_err err = {0};
    int r;

    if (ev->type == KUBE_EVENT_DELETED) {
        const char *ns = json_string(ev->object, "metadata.namespace");
        const char *name = json_string(ev->object, "metadata.name");
        const char *rv = json_string(ev->object, "metadata.resourceVersion");
        if (!name)
            return 0;
        pthread_rwlock_wrlock(&inf->lock);
        old = table_del(&inf->table, ns ? ns : "", name);
        set_rv(inf, rv);
        pthread_rwlock_unlock(&inf->lock);
        if (old) {
            ch = (struct change){CHANGE_DELETE, old, NULL};
            fire(inf, &ch);
            kube_obj_unref(old);
        }
        return 0;
    }
    if (ev->type != KUBE_EVENT_ADDED && ev->type != KUBE_EVENT_MODIFIED)
        return 0;

    r = obj_new(inf, TAKE_PTR(ev->object), &o, &err);
    if (r == -ENOMEM)
        return r;
    if (r < 0) {
        report(inf, r, &err);
        return 0;
    }
    pthread_rwlock_wrlock(&inf->lock);
    r = table_put(&inf->table, kube_obj_ref(o), &old);
    if (r == 0)
        set_rv(inf, o->rv);
    pthread_rwlock_unlock(&inf->lock);
    if (r < 0) {
        kube_obj_unref(o);
        kube_obj_unref(o);
        return r;
    }
    if (old && !streq(old->uid, o->uid)) {
        ch = (struct change){CHANGE_DELETE, old, NULL};
        fire(inf, &ch);
        kube_obj_unref(old);
        old = NULL;
    }
    ch = old ? (struct change){CHANGE_UPDATE, old, o} : (struct change){CHANGE_ADD, NULL, o};
    fire(inf, &ch);
    kube_obj_unref(old);
    kube_obj_unref(o);
    return 0;
}

static void on_lw_error(int r, const ord_err *e, void *userdata)
{
    report(userdata, r, e);
}

/* ---- lifecycle ---- */

int kube_informer_new(struct kube_client *c, const struct kube_informer_opts *opts,
                      struct kube_informer **ret, ord_err *e)
{
    struct kube_informer *inf;

    if (!c || !opts || !opts->res)
        return err_set(e, -EINVAL, "informer: no resource given");
    if (opts->decode && !opts->free_data)
        return err_set(e, -EINVAL, "informer: decode without free_data");
    inf = calloc(1, sizeof(*inf));
    if (!inf)
        return err_set(e, -ENOMEM, "out of memory");
    inf->client = c;
    inf->o = *opts;
    if ((opts->ns && !(inf->ns = strdup(opts->ns))) ||
        (opts->label_selector && !(inf->label_selector = strdup(opts->label_selector))) ||
        (opts->field_selector && !(inf->field_selector = strdup(opts->field_selector)))) {
        free(inf->ns);
        free(inf->label_selector);
        free(inf->field_selector);
        free(inf);
        return err_set(e, -ENOMEM, "out of memory");
    }
    inf->o.ns = inf->ns;
    inf->o.label_selector = inf->label_selector;
    inf->o.field_selector = inf->field_selector;
    pthread_rwlock_init(&inf->lock, NULL);
    pthread_mutex_init(&inf->state_lock, NULL);
    pthread_cond_init(&inf->synced_cond, NULL);
    atomic_init(&inf->stop, false);
    *ret = inf;
    return 0;
}

int kube_informer_run(struct kube_informer *inf, ord_err *e)
{
    int r;

    r = kube_list_watch(inf->client, inf->o.res, inf->o.ns,
                        &(struct kube_watch_opts){
                            .label_selector = inf->o.label_selector,
                            .field_selector = inf->o.field_selector,
                            .page_size = inf->o.page_size,
                            .backoff_base_ms = inf->o.backoff_base_ms,
                            .backoff_cap_ms = inf->o.backoff_cap_ms,
                            .stop = &inf->stop,
                        },
                        &(struct kube_watch_handler){
                            .on_list = on_list,
                            .on_event = on_event,
                            .on_error = on_lw_error,
                        },
                        inf, e);
    pthread_mutex_lock(&inf->state_lock);
    inf->stopped = true;
    pthread_cond_broadcast(&inf->synced_cond);
    pthread_mutex_unlock(&inf->state_lock);
    return r;
}

static void *informer_thread(void *arg)
{
    struct kube_informer *inf = arg;

    inf->run_result = kube_informer_run(inf, &inf->run_err);
    if (inf->run_result < 0)
        report(inf, inf->run_result, &inf->run_err);
    return NULL;
}

int kube_informer_start(struct kube_informer *inf, ord_err *e)
{
    int r;

    if (inf->started)
        return err_set(e, -EALREADY, "informer already started");
    r = pthread_create(&inf->thread, NULL, informer_thread, inf);
    if (r != 0)
        return err_set_errno(e, -r, "cannot start the informer thread");
    inf->started = true;
    return 0;
}

void kube_informer_stop(struct kube_informer *inf)
{
    if (inf)
        atomic_store(&inf->stop, true);
}

void kube_informer_free(struct kube_informer *inf)
{
    if (!inf)
        return;
    kube_informer_stop(inf);
    if (inf->started)
        pthread_join(inf->thread, NULL);
    table_clear(&inf->table);
    pthread_rwlock_destroy(&inf->lock);
    pthread_mutex_destroy(&inf->state_lock);
    pthread_cond_destroy(&inf->synced_cond);
    free(inf->ns);
    free(inf->label_selector);
    free(inf->field_selector);
    free(inf);
}

bool kube_informer_synced(struct kube_informer *inf)
{
    bool s;

    pthread_mutex_lock(&inf->state_lock);
    s = inf->synced;
    pthread_mutex_unlock(&inf->state_lock);
    return s;
}

int kube_informer_wait_synced(struct kube_informer *inf, long timeout_ms)
{
    struct timespec deadline;
    int r = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&inf->state_lock);
    while (!inf->synced && !inf->stopped && !atomic_load(&inf->stop)) {
        if (timeout_ms < 0) {
            /* Wake now and then to notice a stop request that raced with the wait. */
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += 1;
            pthread_cond_timedwait(&inf->synced_cond, &inf->state_lock, &t);
        } else if (pthread_cond_timedwait(&inf->synced_cond, &inf->state_lock, &deadline) ==
                   ETIMEDOUT) {
            r = inf->synced ? 0 : -ETIMEDOUT;
            break;
        }
    }
    if (r == 0 && !inf->synced)
        r = -ECANCELED;
    pthread_mutex_unlock(&inf->state_lock);
    return r;
}

int kube_informer_get(struct kube_informer *inf, const char *ns, const char *name,
                      struct kube_obj **ret)
{
    struct kube_obj *o;

    if (!name)
        return -EINVAL;
    pthread_rwlock_rdlock(&inf->lock);
    o = kube_obj_ref(table_get(&inf->table, ns ? ns : "", name));
    pthread_rwlock_unlock(&inf->lock);
    if (!o)
        return -ENOENT;
    *ret = o;
    return 0;
}

static int cmp_obj(const void *a, const void *b)
{
    const struct kube_obj *x = *(struct kube_obj *const *)a;
    const struct kube_obj *y = *(struct kube_obj *const *)b;
    int c = strcmp(x->ns, y->ns);
    return c ? c : strcmp(x->name, y->name);
}

int kube_informer_list(struct kube_informer *inf, struct kube_obj ***ret, size_t *ret_n)
{
    struct kube_obj **v = NULL;
    size_t n = 0;

    pthread_rwlock_rdlock(&inf->lock);
    if (inf->table.count > 0) {
        v = malloc(inf->table.count * sizeof(*v));
        if (!v) {
            pthread_rwlock_unlock(&inf->lock);
            return -ENOMEM;
        }
        for (size_t i = 0; i < inf->table.n_buckets; i++)
            for (struct entry *en = inf->table.buckets[i]; en; en = en->next)
                v[n++] = kube_obj_ref(en->obj);
    }
    pthread_rwlock_unlock(&inf->lock);
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_obj);
    *ret = v;
    *ret_n = n;
    return 0;
}

size_t kube_informer_count(struct kube_informer *inf)
{
    size_t n;

    pthread_rwlock_rdlock(&inf->lock);
    n = inf->table.count;
    pthread_rwlock_unlock(&inf->lock);
    return n;
}

void kube_informer_resource_version(struct kube_informer *inf, char *buf, size_t size)
{
    if (!size)
        return;
    pthread_rwlock_rdlock(&inf->lock);
    snprintf(buf, size, "%s", inf->rv);
    pthread_rwlock_unlock(&inf->lock);
}
