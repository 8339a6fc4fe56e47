/*
 * kube_watch.h - Kubernetes watch streams: the event parser, and list+watch.
 *
 * A watch answer is newline-delimited JSON, one event per line:
 *   {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{…}}
 * arriving in arbitrary chunks (an event may be split across chunks, a chunk may hold several).
 * The parser reassembles lines up to a bounded size and hands each event to a callback.
 *
 * kube_list_watch() is the reflector loop the informer (kube_informer.h) runs: list (paginated)
 * to get the state and a resourceVersion, then watch from that resourceVersion with
 * allowWatchBookmarks=true. Bookmarks advance the resourceVersion silently. On 410 Gone (HTTP
 * 410 or an ERROR event carrying a 410 Status) it relists. When a watch ends (server timeout,
 * dropped connection, garbage) it re-watches from the last resourceVersion; on errors it waits
 * with exponential backoff and full jitter first. It stops when the stop flag is set: the flag is
 * checked by the transfer at least once a second and between all steps, so setting it from any
 * thread ends the loop within about a second.
 */
#ifndef ORDINAL_KUBE_WATCH_H
#define ORDINAL_KUBE_WATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "kube_client.h"
#include "macro.h"

/* Longest event line accepted by default: a few objects near etcd's 1.5 MiB limit, with room. */
#define KUBE_WATCH_LINE_MAX_DEFAULT (16u << 20)

enum kube_event_type {
    KUBE_EVENT_ADDED,
    KUBE_EVENT_MODIFIED,
    KUBE_EVENT_DELETED,
    KUBE_EVENT_BOOKMARK,
    KUBE_EVENT_ERROR, /* object is a Status */
};

/* "ADDED", ... */
const char *kube_event_type_name(enum kube_event_type t);

struct kube_event {
    enum kube_event_type type;
    /*
     * The event's object. Owned by whoever calls the callback; the callback may take it over
     * with TAKE_PTR(ev->object) (then it frees it). Never NULL when the callback is called.
     */
    cJSON *object;
};

/* Return 0 to continue, a negative errno to stop (the feed call then returns it). */
typedef int (*kube_event_cb)(struct kube_event *ev, void *userdata);

/* ---- The stream parser ---- */

struct kube_watch_parser;

/*
 * max_line: longest line accepted (0 = KUBE_WATCH_LINE_MAX_DEFAULT). Empty lines are skipped.
 * Returns 0 and the parser, -ENOMEM.
 */
int kube_watch_parser_new(size_t max_line, kube_event_cb cb, void *userdata,
                          struct kube_watch_parser **ret);
void kube_watch_parser_free(struct kube_watch_parser *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kube_watch_parser *, kube_watch_parser_free)

/*
 * Feeds len bytes of the stream. Calls cb for each complete event, in order.
 * Returns 0; -EMSGSIZE when a line exceeds max_line; -EBADMSG for a line that is not a watch
 * event (not JSON, no known "type", no object "object"); -ENOMEM; or the callback's negative
 * return. After an error the parser is poisoned: every later feed returns the same error.
 */
int kube_watch_parser_feed(struct kube_watch_parser *p, const char *data, size_t len, ord_err *e);

/*
 * Ends the stream. Returns 0 when it ended on a line boundary, -EPIPE when a partial event was
 * left (a truncated stream), or the earlier error.
 */
int kube_watch_parser_finish(struct kube_watch_parser *p, ord_err *e);

/* Number of events delivered so far. */
size_t kube_watch_parser_events(const struct kube_watch_parser *p);

/* ---- list + watch ---- */

struct kube_watch_opts {
    const char *label_selector;
    const char *field_selector;
    long page_size;        /* list page size; 0 = 500 */
    long timeout_seconds;  /* server-side watch timeout; 0 = random in [300, 600) like client-go */
    size_t max_line;       /* 0 = KUBE_WATCH_LINE_MAX_DEFAULT */
    long backoff_base_ms;  /* 0 = 500 */
    long backoff_cap_ms;   /* 0 = 30000 */
    unsigned max_failures; /* consecutive failed attempts before giving up; 0 = never give up */
    const atomic_bool *stop; /* set to true (from any thread) to end the loop; may be NULL */
};

struct kube_watch_handler {
    /*
     * A full list: after the first list and after every relist. list is the merged List object
     * ({"metadata":{"resourceVersion":…},"items":[…]}); the handler may detach items from it.
     * Events that follow are relative to this state. Return a negative errno to stop.
     */
    int (*on_list)(cJSON *list, const char *resource_version, void *userdata);
    /* ADDED, MODIFIED, DELETED (never BOOKMARK or ERROR, which the loop handles). */
    kube_event_cb on_event;
    /*
     * Optional: told about each failure the loop recovers from (a failed list, a dropped
     * watch, a 410 and the relist it causes), for logging. e holds the message.
     */
    void (*on_error)(int r, const ord_err *e, void *userdata);
};

/*
 * Runs list+watch on r in ns (NULL or "" for all namespaces of a namespaced resource) until
 * o->stop is set, a handler returns a negative errno, or max_failures consecutive failures.
 * Uses a connection of its own for the watch.
 * Returns 0 when stopped by the flag, the handler's error, or the last failure's errno (e).
 */
int kube_list_watch(struct kube_client *c, const struct kube_res *r, const char *ns,
                    const struct kube_watch_opts *o, const struct kube_watch_handler *h,
                    void *userdata, ord_err *e);

/*
 * One watch request from resource_version (NULL: the server's "now", which skips the current
 * state — use kube_list_watch for a consistent view). Delivers every event, BOOKMARK and ERROR
 * included, until the server ends the stream, cb returns non-zero, or the stop flag is set.
 * o may be NULL. Returns 0 when the stream ended cleanly, KUBE_E_CANCELED when stopped, the
 * callback's error, or a request/stream error (KUBE_E_GONE for HTTP 410).
 */
int kube_watch_once(struct kube_client *c, const struct kube_res *r, const char *ns,
                    const char *resource_version, const struct kube_watch_opts *o, kube_event_cb cb,
                    void *userdata, ord_err *e);

#endif
