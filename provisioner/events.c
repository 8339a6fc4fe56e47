/*
 * events.c - Event recorder with aggregation and a per-object rate limit (see events.h).
 *
 * Memory is bounded: at most EVENTS_CACHE entries are remembered (least recently used
 * dropped first); forgetting an entry only means the next identical event starts a new Event
 * object instead of bumping the count of the old one. Entries compare 64-bit hashes of the
 * object uid and of type|reason|message: a collision merely aggregates two different events.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "identity.h"
#include "json.h"
#include "log.h"

#define EVENTS_CACHE      256
#define EVENTS_BURST      25
#define EVENTS_REFILL_SEC 10
#define EVENT_MSG_MAX     1024
#define EVENTS_QUEUE_MAX  1024

/* Small on purpose (the daemon's memory budget): the key is a hash, names are allocated. */
struct ev_entry {
    bool used;
    uint64_t uid_hash;
    uint64_t key_hash; /* of type|reason|message */
    char *name;        /* the Event object's name */
    char *ns;
    long count;
    double tokens;
    time_t refill_at;
    unsigned long last_used;
};

/* One Event to post, queued for the poster thread; the strings live in buf. */
struct ev_post {
    struct ev_post *next;
    bool warning;
    long count;
    char ts[32];
    const char *kind, *ref_ns, *ref_name, *ref_uid, *ns, *name, *reason, *msg;
    char buf[];
};

struct events {
    struct kube_client *client;
    char *component, *host;
    pthread_mutex_t lock;
    unsigned long tick;
    struct ev_entry cache[EVENTS_CACHE];
    /* The poster: workers queue, one thread posts, so a decision never waits for an Event. */
    pthread_t poster;
    bool poster_started, stopping;
    pthread_cond_t cond;
    struct ev_post *head, *tail;
    size_t n_queued;
};

static void *poster_main(void *arg);

int events_new(struct kube_client *c, const char *component, const char *host, struct events **ret)
{
    struct events *ev = calloc(1, sizeof(*ev));

    if (!ev)
        return -ENOMEM;
    ev->client = c;
    ev->component = strdup(component);
    ev->host = strdup(host);
    if (!ev->component || !ev->host) {
        events_free(ev);
        return -ENOMEM;
    }
    pthread_mutex_init(&ev->lock, NULL);
    pthread_cond_init(&ev->cond, NULL);
    if (pthread_create(&ev->poster, NULL, poster_main, ev) != 0) {
        events_free(ev);
        return -EAGAIN;
    }
    ev->poster_started = true;
    *ret = ev;
    return 0;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void entry_clear(struct ev_entry *c)
{
    free(c->name);
    free(c->ns);
    *c = (struct ev_entry){0};
}

void events_free(struct events *ev)
{
    if (!ev)
        return;
    if (ev->poster_started) {
        /* The poster posts what is queued, then ends. */
        pthread_mutex_lock(&ev->lock);
        ev->stopping = true;
        pthread_cond_broadcast(&ev->cond);
        pthread_mutex_unlock(&ev->lock);
        pthread_join(ev->poster, NULL);
    }
    while (ev->head) {
        struct ev_post *p = ev->head;

        ev->head = p->next;
        free(p);
    }
    pthread_cond_destroy(&ev->cond);
    for (size_t i = 0; i < EVENTS_CACHE; i++)
        entry_clear(&ev->cache[i]);
    free(ev->component);
    free(ev->host);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

static void now_rfc3339(char buf[32])
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Tokens shared by every entry of one object uid: take one, or say no. Lock held. */
static bool take_token(struct events *ev, uint64_t uid)
{
    time_t now = time(NULL);
    struct ev_entry *first = NULL;

    for (size_t i = 0; i < EVENTS_CACHE; i++)
        if (ev->cache[i].used && ev->cache[i].uid_hash == uid) {
            first = &ev->cache[i];
            break;
        }
    if (!first)
        return true; /* a fresh object starts with a full bucket */
    if (now > first->refill_at) {
        first->tokens += (double)(now - first->refill_at) / EVENTS_REFILL_SEC;
        if (first->tokens > EVENTS_BURST)
            first->tokens = EVENTS_BURST;
        first->refill_at = now;
    }
    if (first->tokens < 1.0)
        return false;
    first->tokens -= 1.0;
    return true;
}

static int post_new(struct events *ev, const struct event_ref *ref, const char *ns,
                    const char *name, bool warning, const char *reason, const char *msg,
                    const char *ts)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    cJSON *meta, *inv, *src;
    ord_err e = {0};

    if (!o || !(meta = json_ensure_object(o, "metadata")) ||
        !(inv = json_ensure_object(o, "involvedObject")) ||
        !(src = json_ensure_object(o, "source")))
        return -ENOMEM;
    if (json_set_string(o, "apiVersion", "v1") < 0 || json_set_string(o, "kind", "Event") < 0 ||
        json_set_string(meta, "name", name) < 0 || json_set_string(meta, "namespace", ns) < 0 ||
        json_set_string(inv, "kind", ref->kind) < 0 ||
        json_set_string(inv, "apiVersion", "v1") < 0 ||
        json_set_string(inv, "name", ref->name) < 0 ||
        (ref->ns && json_set_string(inv, "namespace", ref->ns) < 0) ||
        (ref->uid && json_set_string(inv, "uid", ref->uid) < 0) ||
        json_set_string(o, "reason", reason) < 0 || json_set_string(o, "message", msg) < 0 ||
        json_set_string(o, "type", warning ? "Warning" : "Normal") < 0 ||
        json_set_string(src, "component", ev->component) < 0 ||
        json_set_string(src, "host", ev->host) < 0 ||
        json_set_string(o, "firstTimestamp", ts) < 0 ||
        json_set_string(o, "lastTimestamp", ts) < 0 || json_set_int64(o, "count", 1) < 0 ||
        json_set_string(o, "reportingComponent", ev->component) < 0 ||
        json_set_string(o, "reportingInstance", ev->host) < 0)
        return -ENOMEM;
    return kube_create(ev->client, &KUBE_RES_EVENTS, ns, o, NULL, &e);
}

static int post_bump(struct events *ev, const char *ns, const char *name, long count,
                     const char *ts)
{
    _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject();
    ord_err e = {0};

    if (!p || json_set_int64(p, "count", count) < 0 || json_set_string(p, "lastTimestamp", ts) < 0)
        return -ENOMEM;
    return kube_patch(ev->client, &KUBE_RES_EVENTS, ns, name, NULL, p, NULL, &e);
}

/* Copies s into the buffer at *o and returns the copy. */
static const char *put(char *buf, size_t *o, const char *s)
{
    char *d = buf + *o;
    size_t len = strlen(s) + 1;

    memcpy(d, s, len);
    *o += len;
    return d;
}

/* Queues one post. Lock held. Drops it (debug line) when the queue is full or on OOM. */
static void queue_post(struct events *ev, const struct event_ref *ref, bool warning,
                       const char *reason, const char *msg, const char *ns, const char *name,
                       long count, const char *ts)
{
    const char *ref_ns = ref->ns ? ref->ns : "", *uid = ref->uid ? ref->uid : "";
    size_t size = strlen(ref->kind) + strlen(ref_ns) + strlen(ref->name) + strlen(uid) +
                  strlen(ns) + strlen(name) + strlen(reason) + strlen(msg) + 8;
    struct ev_post *p;
    size_t o = 0;

    if (ev->n_queued >= EVENTS_QUEUE_MAX || !(p = malloc(sizeof(*p) + size))) {
        log_debug("event %s on %s '%s' dropped: queue full", reason, ref->kind, ref->name);
        return;
    }
    p->next = NULL;
    p->warning = warning;
    p->count = count;
    snprintf(p->ts, sizeof(p->ts), "%s", ts);
    p->kind = put(p->buf, &o, ref->kind);
    p->ref_ns = ref->ns ? put(p->buf, &o, ref->ns) : NULL;
    p->ref_name = put(p->buf, &o, ref->name);
    p->ref_uid = ref->uid ? put(p->buf, &o, ref->uid) : NULL;
    p->ns = put(p->buf, &o, ns);
    p->name = put(p->buf, &o, name);
    p->reason = put(p->buf, &o, reason);
    p->msg = put(p->buf, &o, msg);
    if (ev->tail)
        ev->tail->next = p;
    else
        ev->head = p;
    ev->tail = p;
    ev->n_queued++;
    pthread_cond_signal(&ev->cond);
}

static void post_one(struct events *ev, const struct ev_post *p)
{
    struct event_ref ref = {
        .kind = p->kind, .ns = p->ref_ns, .name = p->ref_name, .uid = p->ref_uid};
    int r = 0;

    if (p->count > 1) {
        r = post_bump(ev, p->ns, p->name, p->count, p->ts);
        if (r != KUBE_E_NOT_FOUND)
            goto done;
        /* The Event expired (the server keeps them an hour): start a new one. */
    }
    r = post_new(ev, &ref, p->ns, p->name, p->warning, p->reason, p->msg, p->ts);
done:
    if (r < 0)
        log_debug_errno(r, "cannot post event %s on %s '%s'", p->reason, p->kind, p->ref_name);
}

static void *poster_main(void *arg)
{
    struct events *ev = arg;

    pthread_mutex_lock(&ev->lock);
    for (;;) {
        struct ev_post *p;

        while (!ev->head && !ev->stopping)
            pthread_cond_wait(&ev->cond, &ev->lock);
        if (!ev->head)
            break;
        p = ev->head;
        ev->head = p->next;
        if (!ev->head)
            ev->tail = NULL;
        ev->n_queued--;
        pthread_mutex_unlock(&ev->lock);
        post_one(ev, p);
        free(p);
        pthread_mutex_lock(&ev->lock);
    }
    pthread_mutex_unlock(&ev->lock);
    return NULL;
}

void events_emit(struct events *ev, const struct event_ref *ref, bool warning, const char *reason,
                 const char *fmt, ...)
{
    char msg[EVENT_MSG_MAX], key[EVENT_MSG_MAX + 160], ts[32];
    char name[K8S_NAME_MAX + 1], ns[K8S_NAME_MAX + 1];
    struct ev_entry *hit = NULL, *victim = NULL;
    uint64_t uid = hash_str(ref->uid ? ref->uid : ref->name), kh;
    long count = 1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(key, sizeof(key), "%s|%s|%s", warning ? "W" : "N", reason, msg);
    kh = hash_str(key);
    now_rfc3339(ts);

    pthread_mutex_lock(&ev->lock);
    if (!take_token(ev, uid)) {
        pthread_mutex_unlock(&ev->lock);
        log_debug("event %s on %s '%s' rate-limited", reason, ref->kind, ref->name);
        return;
    }
    ev->tick++;
    for (size_t i = 0; i < EVENTS_CACHE; i++) {
        struct ev_entry *c = &ev->cache[i];

        if (c->used && c->uid_hash == uid && c->key_hash == kh) {
            hit = c;
            break;
        }
        /* The victim is a free slot if any, else the least recently used. */
        if (!victim || (victim->used && (!c->used || c->last_used < victim->last_used)))
            victim = c;
    }
    if (hit) {
        hit->count++;
        hit->last_used = ev->tick;
        count = hit->count;
        snprintf(name, sizeof(name), "%s", hit->name);
        snprintf(ns, sizeof(ns), "%s", hit->ns);
    } else {
        struct timespec tsn;

        clock_gettime(CLOCK_REALTIME, &tsn);
        /* client-go names Events "<object>.<unix nanos in hex>"; keep within 253 bytes. */
        snprintf(name, sizeof(name), "%.*s.%llx", 230, ref->name,
                 (unsigned long long)tsn.tv_sec * 1000000000ull + (unsigned long long)tsn.tv_nsec);
        snprintf(ns, sizeof(ns), "%s", ref->ns ? ref->ns : "default");
        entry_clear(victim);
        victim->name = strdup(name);
        victim->ns = strdup(ns);
        if (victim->name && victim->ns) {
            victim->used = true;
            victim->uid_hash = uid;
            victim->key_hash = kh;
            victim->count = 1;
            victim->last_used = ev->tick;
            victim->tokens = EVENTS_BURST - 1;
            victim->refill_at = time(NULL);
        } else {
            entry_clear(victim); /* out of memory: post without remembering */
        }
    }
    queue_post(ev, ref, warning, reason, msg, ns, name, count, ts);
    pthread_mutex_unlock(&ev->lock);
}

void events_forget(struct events *ev, const char *uid)
{
    uint64_t h = hash_str(uid);

    pthread_mutex_lock(&ev->lock);
    for (size_t i = 0; i < EVENTS_CACHE; i++)
        if (ev->cache[i].used && ev->cache[i].uid_hash == h)
            entry_clear(&ev->cache[i]);
    pthread_mutex_unlock(&ev->lock);
}
