/*
 * workqueue.c - see workqueue.h. Keys live in one table of records (key, state, due time,
 * failures); the ready list is a FIFO of record indices. Sizes are bounded by the number of
 * objects the node cares about, a few thousand at most, so lookups are a hash of the key
 * into an open table that grows by doubling.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "workqueue.h"

enum { ST_IDLE = 0, ST_QUEUED = 1, ST_DELAYED = 2 };

struct wq_item {
    char *key;
    int state;
    bool processing;
    bool dirty;       /* added while processing: queue again at wq_done() */
    long long due_ms; /* ST_DELAYED */
    unsigned failures;
    struct wq_item *next_ready;
};

struct workqueue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shutdown;
    long base_ms, cap_ms;
    struct wq_item **table; /* open addressing, NULL = empty */
    size_t table_size, n_items;
    struct wq_item *head, *tail; /* ready FIFO */
    size_t n_pending;
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int wq_new(long backoff_base_ms, long backoff_cap_ms, struct workqueue **ret)
{
    struct workqueue *q = calloc(1, sizeof(*q));
    pthread_condattr_t ca;

    if (!q)
        return -ENOMEM;
    q->table_size = 256;
    q->table = calloc(q->table_size, sizeof(*q->table));
    if (!q->table) {
        free(q);
        return -ENOMEM;
    }
    q->base_ms = backoff_base_ms > 0 ? backoff_base_ms : 500;
    q->cap_ms = backoff_cap_ms > 0 ? backoff_cap_ms : 300000;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    *ret = q;
    return 0;
}

void wq_free(struct workqueue *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->table_size; i++)
        if (q->table[i]) {
            free(q->table[i]->key);
            free(q->table[i]);
        }
    free(q->table);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* Lock held. Returns the slot of key, or the empty slot where it would go. */
static size_t slot_of(struct workqueue *q, const char *key)
{
    size_t i = (size_t)(hash(key) & (q->table_size - 1));

    while (q->table[i] && !streq(q->table[i]->key, key))
        i = (i + 1) & (q->table_size - 1);
    return i;
}

/* Lock held. */
static int grow(struct workqueue *q)
{
    struct wq_item **old = q->table;
    size_t old_size = q->table_size;

    q->table = calloc(old_size * 2, sizeof(*q->table));
    if (!q->table) {
        q->table = old;
        return -ENOMEM;
    }
    q->table_size = old_size * 2;
    for (size_t i = 0; i < old_size; i++)
        if (old[i])
            q->table[slot_of(q, old[i]->key)] = old[i];
    free(old);
    return 0;
}

/* Lock held. Finds or creates the record of key. */
static struct wq_item *item_of(struct workqueue *q, const char *key)
{
    size_t s = slot_of(q, key);
    struct wq_item *it;

    if (q->table[s])
        return q->table[s];
    if ((q->n_items + 1) * 2 > q->table_size) {
        if (grow(q) < 0)
            return NULL;
        s = slot_of(q, key);
    }
    it = calloc(1, sizeof(*it));
    if (!it || !(it->key = strdup(key))) {
        free(it);
        return NULL;
    }
    q->table[s] = it;
    q->n_items++;
    return it;
}

/* Lock held. */
static void push_ready(struct workqueue *q, struct wq_item *it)
{
    if (it->state == ST_DELAYED)
        q->n_pending--;
    it->state = ST_QUEUED;
    q->n_pending++;
    it->next_ready = NULL;
    if (q->tail)
        q->tail->next_ready = it;
    else
        q->head = it;
    q->tail = it;
    pthread_cond_signal(&q->cond);
}

int wq_add(struct workqueue *q, const char *key)
{
    struct wq_item *it;

    pthread_mutex_lock(&q->lock);
    it = item_of(q, key);
    if (!it) {
        pthread_mutex_unlock(&q->lock);
        return -ENOMEM;
    }
    if (it->processing)
        it->dirty = true;
    else if (it->state != ST_QUEUED)
        push_ready(q, it);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

int wq_add_after(struct workqueue *q, const char *key, long delay_ms)
{
    struct wq_item *it;
    long long due = now_ms() + delay_ms;

    if (delay_ms <= 0)
        return wq_add(q, key);
    pthread_mutex_lock(&q->lock);
    it = item_of(q, key);
    if (!it) {
        pthread_mutex_unlock(&q->lock);
        return -ENOMEM;
    }
    if (it->state == ST_IDLE) {
        it->state = ST_DELAYED;
        it->due_ms = due;
        q->n_pending++;
    } else if (it->state == ST_DELAYED && due < it->due_ms) {
        it->due_ms = due;
    }
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

/* Lock held. Moves due delayed keys to the ready list; returns the next due time or -1. */
static long long promote_due(struct workqueue *q)
{
    long long now = now_ms(), next = -1;

    for (size_t i = 0; i < q->table_size; i++) {
        struct wq_item *it = q->table[i];

        if (!it || it->state != ST_DELAYED)
            continue;
        if (it->due_ms <= now) {
            if (it->processing) {
                it->state = ST_IDLE;
                q->n_pending--;
                it->dirty = true;
            } else {
                push_ready(q, it);
            }
        } else if (next < 0 || it->due_ms < next) {
            next = it->due_ms;
        }
    }
    return next;
}

int wq_get(struct workqueue *q, char **ret_key)
{
    pthread_mutex_lock(&q->lock);
    for (;;) {
        long long next;

        if (q->shutdown) {
            pthread_mutex_unlock(&q->lock);
            return -ESHUTDOWN;
        }
        next = promote_due(q);
        if (q->head) {
            struct wq_item *it = q->head;
            char *k = strdup(it->key);

            if (!k) {
                pthread_mutex_unlock(&q->lock);
                return -ENOMEM;
            }
            q->head = it->next_ready;
            if (!q->head)
                q->tail = NULL;
            it->state = ST_IDLE;
            q->n_pending--;
            it->processing = true;
            pthread_mutex_unlock(&q->lock);
            *ret_key = k;
            return 0;
        }
        if (next < 0) {
            pthread_cond_wait(&q->cond, &q->lock);
        } else {
            struct timespec ts = {.tv_sec = next / 1000, .tv_nsec = (next % 1000) * 1000000};

            pthread_cond_timedwait(&q->cond, &q->lock, &ts);
        }
    }
}

void wq_done(struct workqueue *q, const char *key)
{
    struct wq_item *it;

    pthread_mutex_lock(&q->lock);
    it = q->table[slot_of(q, key)];
    if (it) {
        it->processing = false;
        if (it->dirty) {
            it->dirty = false;
            if (it->state != ST_QUEUED)
                push_ready(q, it);
        }
    }
    pthread_mutex_unlock(&q->lock);
}

long wq_backoff(struct workqueue *q, const char *key)
{
    struct wq_item *it;
    long d;

    pthread_mutex_lock(&q->lock);
    it = item_of(q, key);
    d = q->base_ms;
    if (it) {
        for (unsigned i = 0; i < it->failures && d < q->cap_ms; i++)
            d *= 2;
        if (it->failures < 64)
            it->failures++;
    }
    pthread_mutex_unlock(&q->lock);
    return MIN(d, q->cap_ms);
}

void wq_forget(struct workqueue *q, const char *key)
{
    struct wq_item *it;

    pthread_mutex_lock(&q->lock);
    it = q->table[slot_of(q, key)];
    if (it)
        it->failures = 0;
    pthread_mutex_unlock(&q->lock);
}

size_t wq_len(struct workqueue *q)
{
    size_t n;

    pthread_mutex_lock(&q->lock);
    n = q->n_pending;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void wq_shutdown(struct workqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->shutdown = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}
