/*
 * s3_client.h - the S3 protocol over libcurl: one signed request at a time on one reused
 * connection, with retries. The only module of backup/ that includes curl.
 *
 * Why not common/http.c: S3 needs the response headers (ETag of each part for
 * CompleteMultipartUpload, Content-Range and Content-Length of ranged downloads), request
 * bodies uploaded with a known Content-Length and no Content-Type or Expect that curl invents,
 * and a body written straight into the caller's bounded buffer; http.c returns none of the
 * headers and owns its header list. This adapter stays small and translates CURLcode and S3's
 * XML errors into negative errno values with a sentence for people.
 *
 * Credentials live in the struct s3_client only; they are never put in a message or a log
 * line (curl's verbose mode is never turned on, request headers are never logged).
 */
#ifndef ORDINAL_S3_CLIENT_H
#define ORDINAL_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "s3_sign.h"

#define S3_ERROR_BODY_MAX (64u << 10)

struct s3_config {
    char endpoint[512]; /* "https://s3.us-east-1.amazonaws.com", no trailing '/' */
    char region[64];
    bool path_style;
    char ca_bundle[4096]; /* PEM file, "" for the system's */
    char access_key[256];
    char secret_key[256];
    char session_token[4096]; /* "" when none */
    long connect_timeout_ms;  /* 0 = 10 s */
    long stall_timeout_s;     /* abort a transfer that moves < 1 byte/s for this long; 0 = 60 */
    unsigned max_attempts;    /* 0 = 8 */
    unsigned backoff_base_ms; /* 0 = 200 */
    unsigned backoff_max_ms;  /* 0 = 20000 */
};

struct s3_client;

struct s3_req {
    const char *method;                 /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *key;                    /* object key (bucket-relative), NULL for the bucket */
    const struct s3_query_param *query; /* may be NULL */
    size_t n_query;
    const void *body; /* request body in memory, sent with its Content-Length */
    size_t body_len;
    const char *payload_sha256;  /* hex of body, or NULL to compute it here */
    struct s3_header headers[6]; /* extra signed headers (lower-case names), name NULL = unused */
    void *sink;                  /* when set, a 2xx body goes here, at most sink_cap bytes */
    size_t sink_cap;
    size_t max_body; /* without a sink: largest 2xx body collected (0 = S3_XML_MAX) */
};

struct s3_resp {
    long status;     /* 0 when no response arrived */
    char *body;      /* collected body (2xx without sink, or any error body), NUL-terminated */
    size_t body_len; /* bytes collected, or written to the sink */
    char etag[256];
    bool has_length;
    uint64_t content_length;
    char content_range[128];
    long retry_after_s; /* -1 when absent */
    char code[128];     /* S3 error code from an <Error> body, "" when none */
    char message[256];
    char request_id[128];
    unsigned attempts;
};

/* Returns 0 and a client, or -ENOMEM / -EINVAL with e filled. The config is copied. */
int s3_client_new(const struct s3_config *cfg, const char *bucket, struct s3_client **ret,
                  ord_err *e);
void s3_client_free(struct s3_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct s3_client *, s3_client_free);

/* Bucket name and endpoint, for messages. */
const char *s3_client_bucket(const struct s3_client *c);

/* The Host header every request carries and signs: the endpoint's host[:port], prefixed with
 * "<bucket>." in virtual-hosted addressing. */
const char *s3_client_host(const struct s3_client *c);

/*
 * The URL of key (NULL: the bucket) with the canonical query (may be NULL or ""), as it goes on
 * the wire, and the path part that is signed: "/<bucket>/<key>" in path style, "/<key>" in
 * virtual-hosted addressing. Returns 0 or -ENAMETOOLONG.
 */
int s3_client_url(const struct s3_client *c, const char *key, const char *query, char *url,
                  size_t url_size, char *path, size_t path_size);

/*
 * Performs req, retrying with exponential backoff and full jitter (honouring Retry-After) on
 * connection errors, 5xx, 429, SlowDown and RequestTimeout. Returns 0 when a final HTTP
 * response arrived (any status: see ret->status, ret->code), or a negative errno with e filled
 * when the server could not be reached (or kept failing) after every attempt. Free ret with
 * s3_resp_done() in every case.
 */
int s3_call(struct s3_client *c, const struct s3_req *req, struct s3_resp *ret, ord_err *e);

/* One attempt, no retry (used by s3_call, and by callers that retry themselves). */
int s3_perform(struct s3_client *c, const struct s3_req *req, struct s3_resp *ret, ord_err *e);

void s3_resp_done(struct s3_resp *r);

/* Whether a response (or transport error r < 0) is worth another attempt. */
bool s3_retryable(int r, const struct s3_resp *resp);

/* Sleeps before attempt number attempt (1-based) per the backoff policy and Retry-After. */
void s3_backoff(const struct s3_client *c, unsigned attempt, long retry_after_s);
unsigned s3_client_max_attempts(const struct s3_client *c);

/*
 * Turns a non-2xx response into a negative errno and a sentence naming what (e.g.
 * "uploading 'backups/…'"): -ENOENT (NoSuchKey, 404), -ENXIO (NoSuchBucket), -EACCES
 * (signature, key id, access denied: names the variables to check), -EEXIST (412), -EIO (5xx),
 * -EPROTO otherwise.
 */
int s3_resp_error(const struct s3_client *c, const struct s3_resp *resp, const char *what,
                  ord_err *e);

#endif
