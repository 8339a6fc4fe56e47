/*
 * s3_sign.h - AWS Signature Version 4 for S3, computed in-house with libcrypto.
 *
 * Why not libcurl's CURLOPT_AWS_SIGV4: Debian 12's libcurl 7.88 signs the query string as
 * written (unsorted, '/' left unencoded, "?uploads" signed as "uploads" instead of "uploads="),
 * does not add x-amz-content-sha256, and signs only the headers it chooses. Signing here puts
 * the canonical request under our control and under test: tests/unit/test_s3_sign.c checks
 * it against the AWS documentation's published examples. See docs/internals/s3.md.
 *
 * The caller builds the request already canonical: the path URI-encoded (s3_uri_encode with
 * keep_slash), the query from s3_canonical_query(), and the headers to sign as lower-case
 * names with trimmed values. Nothing here logs, and nothing here keeps the secret.
 */
#ifndef ORDINAL_S3_SIGN_H
#define ORDINAL_S3_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_SHA256_HEX_LEN 64
/* sha256("") */
#define S3_EMPTY_SHA256     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_SIGN_HEADERS_MAX 16

struct s3_header {
    const char *name;  /* lower case */
    const char *value; /* trimmed */
};

struct s3_query_param {
    const char *name;  /* raw (not encoded) */
    const char *value; /* raw; "" for a valueless parameter such as "uploads" */
};

struct s3_sign_input {
    const char *method;              /* "GET" */
    const char *canonical_uri;       /* "/bucket/key", already encoded */
    const char *canonical_query;     /* "a=1&b=2", already canonical, "" for none */
    const struct s3_header *headers; /* to sign; any order, names lower case, unique */
    size_t n_headers;
    const char *payload_sha256; /* hex, the value of x-amz-content-sha256 */
    const char *amz_date;       /* "20130524T000000Z" */
    const char *region;
    const char *service; /* "s3" */
    const char *access_key;
    const char *secret_key;
};

/*
 * Percent-encodes s the way SigV4 wants: unreserved characters (A-Z a-z 0-9 - . _ ~) kept,
 * every other byte as %XX in upper case; '/' kept only when keep_slash. Returns the length
 * written (without the NUL), or -ENAMETOOLONG when buf is too small.
 */
int s3_uri_encode(const char *s, bool keep_slash, char *buf, size_t size);

/*
 * Builds a canonical query string from params: each name and value encoded, sorted by name
 * then value, joined "n=v&…" ("uploads" becomes "uploads="). The same string is used in the
 * URL and in the signature, so what is sent is what is signed. Returns the length or
 * -ENAMETOOLONG / -E2BIG (more than 16 parameters).
 */
int s3_canonical_query(const struct s3_query_param *params, size_t n, char *buf, size_t size);

/* Lower-case hex SHA-256 of data into out[65]. */
void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX_LEN + 1]);

/* Base64 of the MD5 of data (the Content-MD5 header) into out[25]. */
void s3_md5_base64(const void *data, size_t len, char out[25]);

/*
 * The canonical request and the string to sign, exposed for tests. Returns the length or
 * -ENAMETOOLONG / -EINVAL (too many headers).
 */
int s3_canonical_request(const struct s3_sign_input *in, char *buf, size_t size);
int s3_string_to_sign(const struct s3_sign_input *in, char *buf, size_t size);

/*
 * Fills buf with the Authorization header value ("AWS4-HMAC-SHA256 Credential=…,
 * SignedHeaders=…,Signature=…"). Returns the length, -ENAMETOOLONG, -EINVAL or -ENOMEM.
 */
int s3_authorization(const struct s3_sign_input *in, char *buf, size_t size);

/* "20130524T000000Z" for t (UTC) into buf[17]. */
void s3_amz_date(int64_t t, char buf[17]);

#endif
