/*
 * kube_informer.h - a small informer: a cache of one resource type kept current by list+watch,
 * with add/update/delete callbacks, the way client-go's shared informers feed controllers.
 *
 * The informer runs kube_list_watch() (kube_watch.h) on a thread of its own (or in the caller's
 * thread with kube_informer_run). The first list fills the cache, fires on_add for each object,
 * then on_synced once. Watch events then update the cache and fire on_add/on_update/on_delete.
 * A relist (after 410 Gone) reconciles: objects that vanished get on_delete, new ones on_add,
 * changed ones (different resourceVersion) on_update; unchanged ones fire nothing.
 *
 * Objects: the cache holds each object as a struct kube_obj, immutable once published and
 * reference-counted. With a decode function the informer keeps only what decode returns (a typed
 * struct: less memory, no cJSON in business logic); without one it keeps the cJSON object.
 *
 * Threading: callbacks run on the informer's thread, one at a time, in event order, after the
 * cache was updated and without any informer lock held: they may call kube_informer_get/list
 * and may take a reference to keep an object past the call. Keep them short (queue work for
 * your own workers). kube_informer_get/list/count/synced are safe from any thread at any time.
 * A callback must not call kube_informer_free (it would join itself); kube_informer_stop is fine.
 */
#ifndef ORDINAL_KUBE_INFORMER_H
#define ORDINAL_KUBE_INFORMER_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "kube_client.h"
#include "kube_watch.h"
#include "macro.h"

/* ---- cached objects ---- */

struct kube_obj;

/* What decode returned, or the object's cJSON tree (const cJSON *) when there is no decode. */
const void *kube_obj_data(const struct kube_obj *o);
/* metadata.namespace ("" for cluster-scoped), name, uid, resourceVersion. Never NULL. */
const char *kube_obj_namespace(const struct kube_obj *o);
const char *kube_obj_name(const struct kube_obj *o);
const char *kube_obj_uid(const struct kube_obj *o);
const char *kube_obj_resource_version(const struct kube_obj *o);

/* Takes a reference. Returns o. */
struct kube_obj *kube_obj_ref(struct kube_obj *o);
/* Drops a reference; the last one frees the object. NULL is fine. */
void kube_obj_unref(struct kube_obj *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kube_obj *, kube_obj_unref)

/* Unrefs every element of a list from kube_informer_list() and frees the array. */
void kube_obj_list_free(struct kube_obj **objs, size_t n);

/* ---- the informer ---- */

struct kube_informer_opts {
    const struct kube_res *res; /* required */
    const char *ns;             /* NULL/"" = all namespaces (namespaced resources) */
    const char *label_selector; /* may be NULL */
    const char *field_selector; /* may be NULL */

    /*
     * Optional: turns an object into what the cache keeps. Returns 0 and *ret (owned by the
     * informer from then on, released with free_data), or a negative errno to leave the object
     * out of the cache (on_error is told; a later version may decode). Called on the informer
     * thread.
     */
    int (*decode)(const cJSON *obj, void **ret, ord_err *e, void *userdata);
    void (*free_data)(void *data); /* required with decode */

    /*
     * Callbacks, all optional; objects are borrowed for the call (kube_obj_ref to keep).
     * on_delete gets the object as it was last cached. A name reused by a new object (another
     * uid) is reported as a delete of the old one and an add of the new one.
     */
    void (*on_add)(struct kube_obj *obj, void *userdata);
    void (*on_update)(struct kube_obj *old_obj, struct kube_obj *new_obj, void *userdata);
    void (*on_delete)(struct kube_obj *obj, void *userdata);
    void (*on_synced)(void *userdata); /* once, after the first list was applied */
    void (*on_error)(int r, const ord_err *e, void *userdata); /* recovered failures, for logs */
    void *userdata;

    /* Tuning of the list+watch loop; 0 = kube_watch.h defaults. */
    long page_size;
    long backoff_base_ms;
    long backoff_cap_ms;
};

struct kube_informer;

/*
 * Creates an informer on client c (borrowed: it must outlive the informer). Strings in opts
 * are copied. Nothing runs until start/run. Returns 0, -EINVAL (no res, decode without
 * free_data), -ENOMEM.
 */
int kube_informer_new(struct kube_client *c, const struct kube_informer_opts *opts,
                      struct kube_informer **ret, ord_err *e);

/* Starts the informer thread. Returns 0, -EALREADY, or -errno from pthread_create. */
int kube_informer_start(struct kube_informer *inf, ord_err *e);

/*
 * Runs the informer in the calling thread until kube_informer_stop() (returns 0) or an
 * unrecoverable handler error.
 */
int kube_informer_run(struct kube_informer *inf, ord_err *e);

/* Asks the informer to stop; returns at once. Safe from any thread, callbacks included. */
void kube_informer_stop(struct kube_informer *inf);

/* Stops, joins the thread if started, frees the cache (objects still referenced live on). */
void kube_informer_free(struct kube_informer *inf);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kube_informer *, kube_informer_free)

/* Whether the first list has been applied. */
bool kube_informer_synced(struct kube_informer *inf);

/*
 * Waits until synced. timeout_ms < 0 waits forever. Returns 0, -ETIMEDOUT, or -ECANCELED
 * when the informer stopped first.
 */
int kube_informer_wait_synced(struct kube_informer *inf, long timeout_ms);

/*
 * Looks up ns/name (ns NULL or "" for cluster-scoped). Returns 0 and a new reference the
 * caller drops with kube_obj_unref(), or -ENOENT.
 */
int kube_informer_get(struct kube_informer *inf, const char *ns, const char *name,
                      struct kube_obj **ret);

/*
 * A snapshot of the whole cache: an array of new references, sorted by namespace then name.
 * Free with kube_obj_list_free(). Returns 0, -ENOMEM. *ret may be NULL when n is 0.
 */
int kube_informer_list(struct kube_informer *inf, struct kube_obj ***ret, size_t *ret_n);

/* Number of cached objects. */
size_t kube_informer_count(struct kube_informer *inf);

/* The resourceVersion the cache reflects ("" before the first list). Copied into buf. */
void kube_informer_resource_version(struct kube_informer *inf, char *buf, size_t size);

#endif
