/*
 * events.h - Kubernetes Events about claims and volumes, aggregated like client-go's recorder.
 *
 * The same event (object, type, reason, message) emitted again does not create a new Event:
 * the existing one gets count+1 and a new lastTimestamp, which is what `kubectl describe`
 * shows as "(x5 over 3m)". On top, each object has a token bucket (burst 25, one token back
 * every 10 s), so a claim that fails in a tight loop cannot flood the API server. Emission is
 * best effort and asynchronous, like client-go's broadcaster: events_emit() queues (at most
 * 1,024 waiting) and returns; a thread of the recorder posts. A failure to post is logged at
 * debug and never fails the caller. events_free() posts what is still queued.
 */
#ifndef ORDINAL_EVENTS_H
#define ORDINAL_EVENTS_H

#include <stdbool.h>

#include "kube_client.h"
#include "macro.h"

struct event_ref {
    const char *kind; /* "PersistentVolumeClaim", "PersistentVolume" */
    const char *ns;   /* NULL for cluster-scoped objects */
    const char *name;
    const char *uid;
};

struct events;

/* component: --provisioner-name; host: --node-name. Returns 0 or -ENOMEM. */
int events_new(struct kube_client *c, const char *component, const char *host, struct events **ret);
void events_free(struct events *ev);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct events *, events_free)

/* Emits (or aggregates) one Event. Thread-safe. */
void events_emit(struct events *ev, const struct event_ref *ref, bool warning, const char *reason,
                 const char *fmt, ...) _printf_(5, 6);

/* Drops what is remembered about an object (its claim was bound or deleted). */
void events_forget(struct events *ev, const char *uid);

#endif
