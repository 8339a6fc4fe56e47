/*
 * http.h - the libcurl adapter. The only place, with kube_*.c, that sees CURL.
 *
 * An http_conn is one libcurl easy handle with its TLS settings: reusing it for successive
 * requests reuses the connection (keep-alive; HTTP/2 over TLS where the server offers it).
 * A connection is not thread-safe: one request at a time (kube_client pools them).
 *
 * Bodies are bounded: a response larger than max_body fails with -EFBIG instead of growing
 * without limit. Streaming requests (watch) hand each chunk to a callback instead.
 *
 * Errors: CURLcode and TLS failures become a negative errno plus a sentence naming the URL and,
 * for certificate trouble, where the CA came from ("TLS certificate of https://… is not signed by
 * the configured CA (certificate-authority in FILE)"). Request headers are never logged: they
 * carry bearer tokens.
 */
#ifndef ORDINAL_HTTP_H
#define ORDINAL_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "macro.h"

#define HTTP_BODY_MAX_DEFAULT (64u << 20)

struct http_tls {
    const char *ca_file; /* PEM bundle file, or NULL */
    const char *ca_pem;  /* PEM bytes, or NULL */
    size_t ca_pem_len;
    const char *ca_origin; /* for messages: "certificate-authority-data in /root/.kube/config" */
    const char *cert_file; /* client certificate (PEM) file, or NULL */
    const char *cert_pem;
    size_t cert_pem_len;
    const char *key_file; /* client key (PEM) file, or NULL */
    const char *key_pem;
    size_t key_pem_len;
    bool insecure; /* skip verification of the server certificate */
};

struct http_conn_opts {
    struct http_tls tls;
    long connect_timeout_ms; /* 0 = 10000 */
    const char *user_agent;  /* may be NULL */
};

struct http_conn;

/* Returns 0 and a connection, -ENOMEM, -EINVAL (libcurl refused an option; e says which). */
int http_conn_new(const struct http_conn_opts *o, struct http_conn **ret, ord_err *e);
void http_conn_free(struct http_conn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_conn *, http_conn_free)

/* Streaming sink: return 0 to continue, a negative errno to abort the transfer with it. */
typedef int (*http_data_cb)(const char *data, size_t len, void *userdata);

struct http_request {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* full URL */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    long timeout_ms; /* whole transfer; 0 = none */
    size_t max_body; /* 0 = HTTP_BODY_MAX_DEFAULT; ignored when streaming */
    /*
     * Streaming: when set, a 2xx response body goes to on_data chunk by chunk instead of being
     * collected (a non-2xx body is still collected, bounded, so the error can be read).
     */
    http_data_cb on_data;
    void *userdata;
    const atomic_bool *cancel; /* checked about once a second and on every chunk */
};

struct http_response {
    long status; /* HTTP status, 0 when none arrived */
    char *body;  /* collected body, NUL-terminated, or NULL; owned */
    size_t body_len;
    long retry_after_s; /* Retry-After in seconds (delta form), -1 when absent */
    bool sent;          /* the request may have reached the server (connected at least) */
};

/*
 * Performs one request on c. Returns 0 when an HTTP response arrived (any status: check
 * ret->status) and was read completely; a negative errno for transport failures (-ECONNREFUSED,
 * -EHOSTUNREACH, -ETIMEDOUT, -ECONNRESET, -EKEYREJECTED for an untrusted server certificate,
 * -EPROTO, -EFBIG, -ECANCELED, or the streaming callback's error), with *ret still filled as far
 * as it got (status, sent). Free with http_response_done() in every case.
 */
int http_do(struct http_conn *c, const struct http_request *req, struct http_response *ret,
            ord_err *e);

void http_response_done(struct http_response *r);

/* Percent-encodes s (RFC 3986 unreserved kept). Returns a malloc'd string, or NULL (-ENOMEM). */
char *http_escape(const char *s);

#endif
