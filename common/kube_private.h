/*
 * kube_private.h - what kube_client.c shares with kube_watch.c and kube_informer.c. Not for
 * use outside common/kube_*.c: none of it is a stable interface.
 */
#ifndef ORDINAL_KUBE_PRIVATE_H
#define ORDINAL_KUBE_PRIVATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "http.h"
#include "kube_client.h"

/* A fresh connection with the client's TLS settings (for a watch). Caller frees it. */
int kube_client_conn_new(struct kube_client *c, struct http_conn **ret, ord_err *e);

/* "https://server" + path, malloc'd. Returns 0 or -ENOMEM. */
int kube_client_url(struct kube_client *c, const char *path, char **ret);

/*
 * The "Authorization: Bearer …" header line, malloc'd, or NULL when no token is configured.
 * force re-reads a token file. Returns 0 or a negative errno (token file unreadable).
 */
int kube_client_auth_header(struct kube_client *c, bool force, char **ret, ord_err *e);

/* Whether the token comes from a file (so a 401 is worth a re-read). */
bool kube_client_token_from_file(const struct kube_client *c);

/*
 * Turns an error answer (status >= 300, body as received) into the KUBE_E_* errno with a
 * message "METHOD PATH: CODE Reason: server message" in e, and the Status reason in
 * reason (size 64). Returns the errno.
 */
int kube_status_error(struct kube_client *c, const char *method, const char *path, long status,
                      const char *body, size_t body_len, char reason[64], ord_err *e);

/* Same for a Status object already parsed (watch ERROR events). */
int kube_status_object_error(const char *what, const cJSON *status, char reason[64], ord_err *e);

/* kube_list() that ends with KUBE_E_CANCELED as soon as *cancel is set (may be NULL). */
int kube_list_cancelable(struct kube_client *c, const struct kube_res *r, const char *ns,
                         const struct kube_list_opts *o, const atomic_bool *cancel, cJSON **ret,
                         ord_err *e);

/* Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^attempt)] ms. */
long kube_backoff_ms(long base_ms, long cap_ms, unsigned attempt);

/* A random integer in [0, n) (n > 0), thread-safe, not for secrets. */
uint64_t kube_rand(uint64_t n);

/* Monotonic milliseconds. */
int64_t kube_now_ms(void);

/* Sleeps ms, waking early when *stop becomes true. Returns 0, or -ECANCELED when stopped. */
int kube_sleep_ms(long ms, const atomic_bool *stop);

#endif
