/*
 * s3_sign.c - see s3_sign.h. SigV4 per the AWS documentation ("Authenticating Requests:
 * Using the Authorization Header"): canonical request, string to sign, signing key derived
 * by chained HMAC-SHA256 over date, region, service and "aws4_request".
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "s3_sign.h"

#define S3_QUERY_PARAMS_MAX 16
#define S3_ENCODED_MAX      2048

/* A bounded string builder: every append checks the room left. */
struct sbuf {
    char *p;
    size_t size, len;
    bool overflow;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->overflow || b->len + n >= b->size) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fmt(struct sbuf *b, const char *fmt, ...) _printf_(2, 3);
static void sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->size - b->len) {
        b->overflow = true;
        b->p[b->len] = '\0';
        return;
    }
    b->len += (size_t)n;
}

static int sb_done(struct sbuf *b)
{
    return b->overflow ? -ENAMETOOLONG : (int)b->len;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int s3_uri_encode(const char *s, bool keep_slash, char *buf, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = 0;

    if (size == 0)
        return -ENAMETOOLONG;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            if (len + 1 >= size)
                return -ENAMETOOLONG;
            buf[len++] = (char)*p;
        } else {
            if (len + 3 >= size)
                return -ENAMETOOLONG;
            buf[len++] = '%';
            buf[len++] = hex[*p >> 4];
            buf[len++] = hex[*p & 15];
        }
    }
    buf[len] = '\0';
    return (int)len;
}

struct enc_param {
    char name[S3_ENCODED_MAX];
    char value[S3_ENCODED_MAX];
};

static int cmp_param(const void *a, const void *b)
{
    const struct enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

int s3_canonical_query(const struct s3_query_param *params, size_t n, char *buf, size_t size)
{
    _cleanup_free_ struct enc_param *enc = NULL;
    struct sbuf b = {.p = buf, .size = size};

    if (size == 0)
        return -ENAMETOOLONG;
    buf[0] = '\0';
    if (n == 0)
        return 0;
    if (n > S3_QUERY_PARAMS_MAX)
        return -E2BIG;
    enc = calloc(n, sizeof(*enc));
    if (!enc)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (s3_uri_encode(params[i].name, false, enc[i].name, sizeof(enc[i].name)) < 0 ||
            s3_uri_encode(params[i].value ? params[i].value : "", false, enc[i].value,
                          sizeof(enc[i].value)) < 0)
            return -ENAMETOOLONG;
    qsort(enc, n, sizeof(*enc), cmp_param);
    for (size_t i = 0; i < n; i++)
        sb_fmt(&b, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value);
    return sb_done(&b);
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX_LEN + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];

    SHA256(data, len, d);
    hex_of(d, sizeof(d), out);
}

void s3_md5_base64(const void *data, size_t len, char out[25])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;

    if (EVP_Digest(data, len, d, &dl, EVP_md5(), NULL) != 1 || dl != 16) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, d, 16);
}

static int cmp_header(const void *a, const void *b)
{
    const struct s3_header *x = a, *y = b;

    return strcmp(x->name, y->name);
}

/* The headers sorted by name into sorted[]. Returns 0 or -EINVAL (too many). */
static int sort_headers(const struct s3_sign_input *in, struct s3_header *sorted)
{
    if (in->n_headers > S3_SIGN_HEADERS_MAX)
        return -EINVAL;
    memcpy(sorted, in->headers, in->n_headers * sizeof(*sorted));
    qsort(sorted, in->n_headers, sizeof(*sorted), cmp_header);
    return 0;
}

static void signed_headers(struct sbuf *b, const struct s3_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_str(b, ";");
        sb_str(b, h[i].name);
    }
}

int s3_canonical_request(const struct s3_sign_input *in, char *buf, size_t size)
{
    struct s3_header h[S3_SIGN_HEADERS_MAX];
    struct sbuf b = {.p = buf, .size = size};

    if (size == 0)
        return -ENAMETOOLONG;
    buf[0] = '\0';
    if (sort_headers(in, h) < 0)
        return -EINVAL;
    sb_fmt(&b, "%s\n%s\n%s\n", in->method, in->canonical_uri, in->canonical_query);
    for (size_t i = 0; i < in->n_headers; i++)
        sb_fmt(&b, "%s:%s\n", h[i].name, h[i].value);
    sb_str(&b, "\n");
    signed_headers(&b, h, in->n_headers);
    sb_fmt(&b, "\n%s", in->payload_sha256);
    return sb_done(&b);
}

/* "20130524/us-east-1/s3/aws4_request" */
static int scope(const struct s3_sign_input *in, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%.8s/%s/%s/aws4_request", in->amz_date, in->region, in->service);

    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : n;
}

int s3_string_to_sign(const struct s3_sign_input *in, char *buf, size_t size)
{
    _cleanup_free_ char *creq = NULL;
    char hash[S3_SHA256_HEX_LEN + 1], sc[256];
    size_t cap = 16384;
    int n;

    creq = malloc(cap);
    if (!creq)
        return -ENOMEM;
    n = s3_canonical_request(in, creq, cap);
    if (n < 0)
        return n;
    s3_sha256_hex(creq, (size_t)n, hash);
    if (scope(in, sc, sizeof(sc)) < 0)
        return -ENAMETOOLONG;
    n = snprintf(buf, size, "AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, sc, hash);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : n;
}

static int hmac(const void *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int len = 0;

    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out,
              &len) ||
        len != 32)
        return -ENOMEM;
    return 0;
}

int s3_authorization(const struct s3_sign_input *in, char *buf, size_t size)
{
    struct s3_header h[S3_SIGN_HEADERS_MAX];
    char sts[512], sc[256], date[9], sig[65];
    unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
    _cleanup_free_ char *kinit = NULL;
    struct sbuf b = {.p = buf, .size = size};
    size_t klen = strlen(in->secret_key) + 5;
    int r;

    if (size == 0)
        return -ENAMETOOLONG;
    r = s3_string_to_sign(in, sts, sizeof(sts));
    if (r < 0)
        return r;
    if (scope(in, sc, sizeof(sc)) < 0 || sort_headers(in, h) < 0)
        return -EINVAL;
    snprintf(date, sizeof(date), "%.8s", in->amz_date);
    kinit = malloc(klen);
    if (!kinit)
        return -ENOMEM;
    memcpy(kinit, "AWS4", 4);
    memcpy(kinit + 4, in->secret_key, klen - 4);
    r = hmac(kinit, klen - 1, date, k1);
    if (r == 0)
        r = hmac(k1, 32, in->region, k2);
    if (r == 0)
        r = hmac(k2, 32, in->service, k3);
    if (r == 0)
        r = hmac(k3, 32, "aws4_request", k4);
    if (r == 0)
        r = hmac(k4, 32, sts, s);
    /* The derived keys are as good as the secret for a day: do not leave them around. */
    OPENSSL_cleanse(kinit, klen);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    OPENSSL_cleanse(k4, sizeof(k4));
    if (r < 0)
        return r;
    hex_of(s, sizeof(s), sig);
    sb_fmt(&b, "AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=", in->access_key, sc);
    signed_headers(&b, h, in->n_headers);
    sb_fmt(&b, ",Signature=%s", sig);
    return sb_done(&b);
}

void s3_amz_date(int64_t t, char buf[17])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    if (strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm) == 0)
        buf[0] = '\0';
}
