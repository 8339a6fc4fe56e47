/*
 * kube_client.h - the Kubernetes REST client: get, list, create, update, merge-patch, delete,
 * and the status/scale subresources, by resource path.
 *
 * Objects go in and come out as cJSON trees; callers decode them into typed structs at their
 * edge (json.h). The client owns a small pool of HTTP connections (one libcurl handle each, kept
 * alive and reused; HTTP/2 where the server offers it).
 *
 * Threading: a kube_client may be shared by any number of threads. Each request takes an idle
 * connection from the pool (or waits for one), so requests from different threads run in
 * parallel up to max_connections. Watches (kube_watch.h) open a connection of their own.
 *
 * Errors. Every call returns 0 or a negative errno, and fills e (may be NULL) with a sentence
 * a person can act on: the server's Status message plus the method, path and HTTP code, or the
 * transport failure ("connection refused to https://…", "TLS certificate of https://… is not
 * signed by the configured CA (certificate-authority-data in /root/.kube/config)"). Server
 * Status replies map to the KUBE_E_* codes below, which are distinct so that callers can test
 * for them without looking at the reason string; kube_request() exposes the HTTP code and reason
 * when a caller needs them.
 *
 * Retries (see docs/internals/kube-client.md). Retried with exponential backoff and full jitter
 * (sleep uniformly in [0, min(cap, base * 2^attempt)]), honouring Retry-After, within
 * max_attempts and deadline_ms:
 *   - 429 TooManyRequests and failures to connect (the server never saw the request): always;
 *   - 500, 502, 503, 504 and connections lost mid-request (the server may have acted): every
 *     request except a POST without metadata.name (generateName), which could create twice.
 *     Consequence callers must accept: a retried create may answer KUBE_E_ALREADY_EXISTS for an
 *     object the first attempt created, a retried update with a resourceVersion may answer
 *     KUBE_E_CONFLICT, a retried delete KUBE_E_NOT_FOUND. Controllers already treat those as
 *     "look again", which is why retrying them is safe.
 *   - 401 when the token comes from a file: the file is re-read once and the request repeated.
 */
#ifndef ORDINAL_KUBE_CLIENT_H
#define ORDINAL_KUBE_CLIENT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "kube_config.h"
#include "macro.h"

/* Status replies (and transport failures) as negative errnos. */
#define KUBE_E_BAD_REQUEST    (-EBADMSG)    /* 400 BadRequest */
#define KUBE_E_UNAUTHORIZED   (-EACCES)     /* 401 Unauthorized: token/certificate rejected */
#define KUBE_E_FORBIDDEN      (-EPERM)      /* 403 Forbidden: RBAC said no */
#define KUBE_E_NOT_FOUND      (-ENOENT)     /* 404 NotFound */
#define KUBE_E_METHOD         (-EOPNOTSUPP) /* 405 MethodNotAllowed, 406, 415 */
#define KUBE_E_ALREADY_EXISTS (-EEXIST)     /* 409 reason AlreadyExists */
#define KUBE_E_CONFLICT       (-ESTALE) /* 409 Conflict: stale resourceVersion; re-read and retry */
#define KUBE_E_GONE           (-EKEYEXPIRED) /* 410 Gone/Expired: resourceVersion too old; relist */
#define KUBE_E_TOO_LARGE      (-E2BIG)       /* 413 RequestEntityTooLarge */
#define KUBE_E_INVALID        (-EINVAL)      /* 422 Invalid (field errors in the message) */
#define KUBE_E_THROTTLED      (-EBUSY)       /* 429 TooManyRequests, after the retries ran out */
#define KUBE_E_SERVER         (-EIO)         /* 500, 502, 503 and other 5xx, after retries */
#define KUBE_E_TIMEOUT        (-ETIMEDOUT) /* 504, reason Timeout/ServerTimeout, or no answer in time */
#define KUBE_E_TLS                                                                                 \
    (-EKEYREJECTED) /* server certificate not trusted / wrong name, or our client certificate      \
                       refused */
#define KUBE_E_CANCELED (-ECANCELED) /* the request was cancelled (watch stop flag) */
/* Transport: -ECONNREFUSED, -EHOSTUNREACH (cannot resolve / no route), -ECONNRESET (lost
 * mid-request), -EPROTO (TLS handshake or HTTP protocol error, or a body that is not the
 * JSON it should be), -EFBIG (response body over max_response). */

/* A resource type: where its REST paths live. */
struct kube_res {
    const char *group;    /* "" for the core group, "apps", "storage.k8s.io", ... */
    const char *version;  /* "v1", "v1alpha1" */
    const char *resource; /* plural, lower case: "persistentvolumeclaims" */
    bool namespaced;
};

extern const struct kube_res KUBE_RES_NAMESPACES;
extern const struct kube_res KUBE_RES_NODES;
extern const struct kube_res KUBE_RES_PODS;
extern const struct kube_res KUBE_RES_EVENTS; /* core v1 events */
extern const struct kube_res KUBE_RES_PERSISTENTVOLUMES;
extern const struct kube_res KUBE_RES_PERSISTENTVOLUMECLAIMS;
extern const struct kube_res KUBE_RES_STORAGECLASSES; /* storage.k8s.io/v1 */
extern const struct kube_res KUBE_RES_STATEFULSETS;   /* apps/v1 */
extern const struct kube_res KUBE_RES_LEASES;         /* coordination.k8s.io/v1 */
extern const struct kube_res KUBE_RES_VOLUMETASKS;    /* ordinal.dev/v1alpha1 */

struct kube_client_opts {
    unsigned max_connections; /* pooled connections; 0 = 4 */
    unsigned max_attempts;    /* per request, including the first; 0 = 6 */
    long deadline_ms;         /* per request, all attempts and sleeps; 0 = 60000 */
    long timeout_ms;          /* one attempt; 0 = 30000 */
    long connect_timeout_ms;  /* 0 = 10000 */
    long backoff_base_ms;     /* 0 = 200 */
    long backoff_cap_ms;    /* 0 = 10000 (a Retry-After is honoured as sent, within deadline_ms) */
    size_t max_response;    /* largest body accepted; 0 = 64 MiB */
    const char *user_agent; /* NULL = "ordinal/<version>" */
};

struct kube_client;

/*
 * Creates a client for cfg. The client takes ownership of cfg in every case (it is freed with
 * the client, or at once on failure). opts may be NULL for the defaults.
 * Returns 0, -ENOMEM, or -EINVAL/-ENOENT for TLS material that cannot be used (e says which).
 */
int kube_client_new(struct kube_config *cfg, const struct kube_client_opts *opts,
                    struct kube_client **ret, ord_err *e);

/* Frees the client. All requests using it must have returned. NULL is fine. */
void kube_client_free(struct kube_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kube_client *, kube_client_free)

/* The configuration (borrowed): server, default namespace, source. */
const struct kube_config *kube_client_config(const struct kube_client *c);

/* The default namespace of the configuration ("default" when none was set). */
const char *kube_client_namespace(const struct kube_client *c);

/*
 * Called after every attempt of a request (not watches) with the HTTP method, the status (0
 * when no answer came), the attempt's result (< 0 for a transport failure) and its duration,
 * from the requesting thread: it must be quick and thread-safe (metrics, kube_metrics.h).
 */
typedef void (*kube_request_observer)(void *ud, const char *method, long status, int r,
                                      double seconds);

/* Sets the observer (NULL for none) before the client is shared between threads. */
void kube_client_set_observer(struct kube_client *c, kube_request_observer fn, void *ud);

/*
 * Builds "/api/v1/namespaces/NS/RESOURCE/NAME/SUB" or "/apis/GROUP/VERSION/...", each segment
 * percent-escaped. ns is ignored for cluster-scoped resources and may be NULL for a namespaced
 * resource (all namespaces, for list/watch). name and sub may be NULL.
 * Returns 0 and a malloc'd path, -EINVAL (empty or "."/".." segment), -ENOMEM.
 */
int kube_path(const struct kube_res *r, const char *ns, const char *name, const char *sub,
              char **ret);

/* Query parameters for list (and watch, kube_watch.h). Unset fields are left out. */
struct kube_list_opts {
    const char *label_selector;   /* "app=web,tier!=db" */
    const char *field_selector;   /* "spec.nodeName=node-a" */
    long limit;                   /* page size; 0 = 500. kube_list() follows continue tokens. */
    const char *resource_version; /* list at least this fresh; NULL = most recent (quorum read) */
};

/*
 * Appends "?k=v&k=v" with values percent-escaped to a malloc'd path. Pairs are NULL-terminated
 * (key, value, key, value, ..., NULL); a pair with a NULL value is skipped.
 * Returns 0 and the new string, -ENOMEM.
 */
int kube_path_query(const char *path, char **ret, ...) __attribute__((sentinel));

/* Object operations. ret may be NULL when the caller does not want the answer. */

/* GET one object. Returns 0 and the object, or KUBE_E_NOT_FOUND and the others above. */
int kube_get(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
             cJSON **ret, ord_err *e);

/* GET a subresource ("status", "scale"). */
int kube_get_sub(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
                 const char *sub, cJSON **ret, ord_err *e);

/*
 * LIST, following continue tokens until the last page. Returns 0 and one List object
 * ({"kind":"…List","metadata":{"resourceVersion":RV},"items":[…all pages…]}) whose
 * metadata.resourceVersion is the first page's, the one to watch from.
 * If a continue token expires (410) during paging, the list restarts once from the start.
 */
int kube_list(struct kube_client *c, const struct kube_res *r, const char *ns,
              const struct kube_list_opts *o, cJSON **ret, ord_err *e);

/*
 * POST obj (metadata.name or metadata.generateName set by the caller). ns is the target
 * namespace for namespaced resources. Returns 0 and the created object,
 * KUBE_E_ALREADY_EXISTS, KUBE_E_INVALID, ...
 */
int kube_create(struct kube_client *c, const struct kube_res *r, const char *ns, const cJSON *obj,
                cJSON **ret, ord_err *e);

/*
 * PUT obj to its name (metadata.name). With metadata.resourceVersion set the server checks it:
 * KUBE_E_CONFLICT when the object changed meanwhile. Returns 0 and the stored object.
 */
int kube_update(struct kube_client *c, const struct kube_res *r, const char *ns, const cJSON *obj,
                cJSON **ret, ord_err *e);

/* PUT to a subresource of obj's name ("status", "scale"). Same returns as kube_update(). */
int kube_update_sub(struct kube_client *c, const struct kube_res *r, const char *ns,
                    const cJSON *obj, const char *sub, cJSON **ret, ord_err *e);

/*
 * PATCH with application/merge-patch+json (RFC 7386: null deletes a key). sub may be NULL,
 * "status" or "scale". A metadata.resourceVersion inside the patch acts as a precondition.
 * Returns 0 and the patched object.
 */
int kube_patch(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
               const char *sub, const cJSON *patch, cJSON **ret, ord_err *e);

#define KUBE_DELETE_NOW (-1L)

struct kube_delete_opts {
    const char *precondition_uid;              /* only delete this incarnation */
    const char *precondition_resource_version; /* only delete this version */
    const char *propagation_policy;            /* "Background", "Foreground", "Orphan" */
    long grace_period_seconds;                 /* 0 = server default; KUBE_DELETE_NOW: at once */
};

/*
 * DELETE. opts may be NULL. Returns 0 and, in *ret, the object as it is after the call (with
 * deletionTimestamp while finalizers hold it) or NULL when the server answered a Status;
 * KUBE_E_NOT_FOUND when it did not exist; KUBE_E_CONFLICT when a precondition failed.
 */
int kube_delete(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
                const struct kube_delete_opts *opts, cJSON **ret, ord_err *e);

/* The generic request under all of the above, for callers that need the HTTP details. */
struct kube_req {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;   /* absolute path with query: "/api/v1/nodes?limit=10" */
    const char *body;   /* NULL for none */
    size_t body_len;
    const char *content_type; /* NULL = "application/json" when body is set */
    bool no_retry;            /* one attempt only */
    /*
     * POST only: also retry after failures where the server may have acted (5xx, lost
     * connection). Set it when the object has a fixed metadata.name, so that a repeat can only
     * answer AlreadyExists; kube_create() does. Other methods are always retried.
     */
    bool retry_ambiguous_post;
    /* Optional: when it becomes true the request (and its retry sleeps) ends with KUBE_E_CANCELED.
     */
    const atomic_bool *cancel;
};

struct kube_resp {
    long http_status;  /* 0 when no response arrived */
    char reason[64];   /* Status.reason of an error reply ("Conflict"), or "" */
    cJSON *body;       /* the parsed body (object or Status), or NULL; owned */
    unsigned attempts; /* how many attempts were made */
};

/*
 * Sends req with the retry policy above. Returns 0 for a 2xx answer (ret->body parsed when
 * non-empty), or the KUBE_E_* code of the final answer with *ret still filled (http_status,
 * reason, Status body) so that callers can inspect it. Free with kube_resp_done().
 */
int kube_request(struct kube_client *c, const struct kube_req *req, struct kube_resp *ret,
                 ord_err *e);
void kube_resp_done(struct kube_resp *r);

/*
 * The errno for an HTTP status and Status.reason (reason may be NULL or ""): the table above.
 * 2xx gives 0. Exposed for tests and for watch ERROR events.
 */
int kube_status_to_errno(long http_status, const char *reason);

/*
 * Whether an errno returned by this client is worth retrying later (throttling, server or
 * transport trouble), as opposed to an answer about the request itself (NotFound, Invalid...).
 */
bool kube_errno_is_transient(int r);

#endif
