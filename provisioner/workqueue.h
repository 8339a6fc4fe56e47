/*
 * workqueue.h - keyed work queue for the controller, after client-go's workqueue.
 *
 * A key ("c/ns/name" for a claim, "v/name" for a volume) is queued at most once however many
 * times it is added; a key being processed is not handed to a second worker, and if it is added
 * meanwhile it is processed again after wq_done(). wq_add_after() delays a key (retries with
 * backoff); wq_backoff() gives the next delay of a failing key (exponential, capped) and
 * wq_forget() resets it once the key succeeds. Thread-safe.
 */
#ifndef ORDINAL_WORKQUEUE_H
#define ORDINAL_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct workqueue;

int wq_new(long backoff_base_ms, long backoff_cap_ms, struct workqueue **ret);
void wq_free(struct workqueue *q);

/* Queues key now / after delay_ms. Returns 0 or -ENOMEM. */
int wq_add(struct workqueue *q, const char *key);
int wq_add_after(struct workqueue *q, const char *key, long delay_ms);

/*
 * Blocks until a key is ready or the queue is shut down. Returns 0 and a malloc'd key the
 * caller passes to wq_done() and frees, or -ESHUTDOWN.
 */
int wq_get(struct workqueue *q, char **ret_key);
void wq_done(struct workqueue *q, const char *key);

/* The delay before the next retry of key (and counts the failure). */
long wq_backoff(struct workqueue *q, const char *key);
void wq_forget(struct workqueue *q, const char *key);

/* Number of keys queued or delayed (for tests and idle detection). */
size_t wq_len(struct workqueue *q);

/* Wakes every wq_get() with -ESHUTDOWN. */
void wq_shutdown(struct workqueue *q);

#endif
