/*
 * s3_client.c - see s3_client.h.
 *
 * Every request: curl_easy_reset() (the connection cache survives it, so the TCP/TLS
 * connection is reused), the base options again, then the URL, the signed headers and the
 * body. The request is signed with s3_sign.c over exactly the URL path and query that go on
 * the wire; the headers signed are host, x-amz-content-sha256, x-amz-date, the session token
 * when there is one, and the request's extra headers (range, content-md5, if-none-match, …).
 */
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "s3_client.h"
#include "s3_xml.h"

#define S3_URL_MAX           4096
#define S3_AUTH_MAX          2048
#define S3_RETRY_AFTER_MAX_S 60

struct s3_client {
    CURL *h;
    struct s3_config cfg;
    char bucket[64];
    char scheme[8];      /* "http" / "https" */
    char hostport[512];  /* as in the Host header */
    char base_path[128]; /* "/bucket" (path style) or "" */
    /* ORDINAL_S3_RESOLVE (tests only), or NULL */
    struct curl_slist *resolve;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;

static void curl_init(void)
{
    curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *s3_client_bucket(const struct s3_client *c)
{
    return c->bucket;
}

const char *s3_client_host(const struct s3_client *c)
{
    return c->hostport;
}

unsigned s3_client_max_attempts(const struct s3_client *c)
{
    return c->cfg.max_attempts;
}

/* Splits "scheme://host[:port][/]" into its parts. Returns 0 or -EINVAL. */
static int parse_endpoint(struct s3_client *c, ord_err *e)
{
    const char *ep = c->cfg.endpoint, *hp;
    size_t n;

    if (strncmp(ep, "https://", 8) == 0) {
        snprintf(c->scheme, sizeof(c->scheme), "https");
        hp = ep + 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        snprintf(c->scheme, sizeof(c->scheme), "http");
        hp = ep + 7;
    } else {
        return err_set(e, -EINVAL, "the S3 endpoint '%s' must start with https:// or http://", ep);
    }
    n = strcspn(hp, "/?#");
    if (n == 0 || n >= sizeof(c->hostport) || hp[n + strspn(hp + n, "/")] != '\0' ||
        memchr(hp, '@', n))
        return err_set(e, -EINVAL,
                       "the S3 endpoint '%s' must be scheme://host[:port] with no path, query "
                       "or user",
                       ep);
    snprintf(c->hostport, sizeof(c->hostport), "%.*s", (int)n, hp);
    /* The Host header leaves out the scheme's default port, as curl and the SDKs do. */
    size_t hl = strlen(c->hostport);
    if (streq(c->scheme, "https") && hl > 4 && streq(c->hostport + hl - 4, ":443"))
        c->hostport[hl - 4] = '\0';
    if (streq(c->scheme, "http") && hl > 3 && streq(c->hostport + hl - 3, ":80"))
        c->hostport[hl - 3] = '\0';
    return 0;
}

/*
 * ORDINAL_S3_RESOLVE="host:port:address" pins a name for libcurl (CURLOPT_RESOLVE). Test-only:
 * it lets the tests reach "<bucket>.<endpoint host>" (virtual-hosted addressing) on loopback
 * without touching /etc/hosts. curl ignores a malformed entry silently, which would turn a
 * typo into a confusing resolve failure, so the shape is checked here.
 */
static int load_resolve(struct s3_client *c, ord_err *e)
{
    const char *v = getenv("ORDINAL_S3_RESOLVE"), *p;
    size_t hl;

    if (!v || !*v)
        return 0;
    hl = strcspn(v, ":");
    p = v + hl;
    if (hl == 0 || *p != ':' || !isdigit((unsigned char)p[1]))
        goto bad;
    p += 1 + strspn(p + 1, "0123456789");
    if (*p != ':' || p[1] == '\0')
        goto bad;
    c->resolve = curl_slist_append(NULL, v);
    if (!c->resolve)
        return err_set(e, -ENOMEM, "out of memory");
    return 0;
bad:
    return err_set(e, -EINVAL, "ORDINAL_S3_RESOLVE='%s' is not host:port:address", v);
}

int s3_client_new(const struct s3_config *cfg, const char *bucket, struct s3_client **ret,
                  ord_err *e)
{
    _cleanup_free_ struct s3_client *c = NULL;
    int r;

    pthread_once(&curl_once, curl_init);
    if (curl_init_code != CURLE_OK)
        return err_set(e, -ENOMEM, "cannot initialise libcurl");
    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(e, -ENOMEM, "out of memory");
    c->cfg = *cfg;
    if (!c->cfg.connect_timeout_ms)
        c->cfg.connect_timeout_ms = 10000;
    if (!c->cfg.stall_timeout_s)
        c->cfg.stall_timeout_s = 60;
    if (!c->cfg.max_attempts)
        c->cfg.max_attempts = 8;
    if (!c->cfg.backoff_base_ms)
        c->cfg.backoff_base_ms = 200;
    if (!c->cfg.backoff_max_ms)
        c->cfg.backoff_max_ms = 20000;
    snprintf(c->bucket, sizeof(c->bucket), "%s", bucket);
    r = parse_endpoint(c, e);
    if (r < 0)
        return r;
    if (c->cfg.path_style) {
        snprintf(c->base_path, sizeof(c->base_path), "/%s", bucket);
    } else {
        char vh[sizeof(c->hostport)];
        int n = snprintf(vh, sizeof(vh), "%s.%s", bucket, c->hostport);
        if (n < 0 || (size_t)n >= sizeof(vh))
            return err_set(e, -EINVAL, "the S3 endpoint is too long");
        memcpy(c->hostport, vh, sizeof(vh));
        c->base_path[0] = '\0';
    }
    r = load_resolve(c, e);
    if (r < 0)
        return r;
    c->h = curl_easy_init();
    if (!c->h) {
        curl_slist_free_all(c->resolve);
        return err_set(e, -ENOMEM, "cannot create a libcurl handle");
    }
    *ret = TAKE_PTR(c);
    return 0;
}

void s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    if (c->h)
        curl_easy_cleanup(c->h);
    curl_slist_free_all(c->resolve);
    /* The secret should not outlive its use in freed heap memory. */
    explicit_bzero(&c->cfg, sizeof(c->cfg));
    free(c);
}

void s3_resp_done(struct s3_resp *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* Transfer state shared by the callbacks. */
struct xfer {
    CURL *h;
    const struct s3_req *req;
    struct s3_resp *resp;
    const char *up;
    size_t up_len, up_off;
    long status_seen; /* 0 until the first body byte tells us the status */
    bool to_sink;
    size_t cap;
    size_t collected_cap;
    bool overflow;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = MIN(size * nitems, x->up_len - x->up_off);

    if (n)
        memcpy(buf, x->up + x->up_off, n);
    x->up_off += n;
    return n;
}

/* curl rewinds the body when it must resend it (a redirect or an auth retry). */
static int seek_cb(void *userdata, curl_off_t offset, int origin)
{
    struct xfer *x = userdata;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > x->up_len)
        return CURL_SEEKFUNC_FAIL;
    x->up_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    struct s3_resp *r = x->resp;
    size_t n = size * nmemb;

    if (!x->status_seen) {
        long st = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &st);
        x->status_seen = st ? st : -1;
        x->to_sink = x->req->sink && st >= 200 && st < 300;
        if (x->to_sink)
            x->cap = x->req->sink_cap;
        else if (st >= 200 && st < 300)
            x->cap = x->req->max_body ? x->req->max_body : S3_XML_MAX;
        else
            x->cap = S3_ERROR_BODY_MAX;
    }
    if (r->body_len + n > x->cap || r->body_len + n < n) {
        x->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->to_sink) {
        memcpy((char *)x->req->sink + r->body_len, data, n);
        r->body_len += n;
        return n;
    }
    if (r->body_len + n + 1 > x->collected_cap) {
        size_t want = MAX(x->collected_cap * 2, r->body_len + n + 1);
        char *p;
        want = MIN(want, x->cap + 1);
        p = realloc(r->body, want);
        if (!p) {
            x->overflow = true;
            return 0;
        }
        r->body = p;
        x->collected_cap = want;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value,
                      size_t *ret_vlen)
{
    size_t nl = strlen(name);
    const char *v;
    size_t vl;

    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    v = line + nl + 1;
    vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    *ret_value = v;
    *ret_vlen = vl;
    return true;
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *userdata)
{
    struct xfer *x = userdata;
    struct s3_resp *r = x->resp;
    size_t len = size * nitems;
    const char *v;
    size_t vl;

    /* A new status line (after a 100 Continue, say) starts a new set of headers. */
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        r->etag[0] = r->content_range[0] = r->request_id[0] = '\0';
        r->has_length = false;
        r->retry_after_s = -1;
        return len;
    }
    if (header_is(line, len, "etag", &v, &vl)) {
        snprintf(r->etag, sizeof(r->etag), "%.*s", (int)vl, v);
    } else if (header_is(line, len, "content-range", &v, &vl)) {
        snprintf(r->content_range, sizeof(r->content_range), "%.*s", (int)vl, v);
    } else if (header_is(line, len, "x-amz-request-id", &v, &vl)) {
        snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)vl, v);
    } else if (header_is(line, len, "content-length", &v, &vl)) {
        char num[32];
        char *end;
        unsigned long long u;
        snprintf(num, sizeof(num), "%.*s", (int)MIN(vl, sizeof(num) - 1), v);
        errno = 0;
        u = strtoull(num, &end, 10);
        if (!errno && end != num && !*end && num[0] != '-') {
            r->has_length = true;
            r->content_length = u;
        }
    } else if (header_is(line, len, "retry-after", &v, &vl)) {
        char num[16];
        char *end;
        long s;
        snprintf(num, sizeof(num), "%.*s", (int)MIN(vl, sizeof(num) - 1), v);
        errno = 0;
        s = strtol(num, &end, 10);
        /* Only the delta-seconds form; an HTTP date falls back to our own backoff. */
        if (!errno && end != num && !*end && s >= 0)
            r->retry_after_s = MIN(s, (long)S3_RETRY_AFTER_MAX_S);
    }
    return len;
}

static int curl_errno(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        return -EKEYREJECTED;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return -ECONNRESET;
    default:
        return -EPROTO;
    }
}

/* The request path: base path plus the encoded key. Returns 0 or -ENAMETOOLONG. */
static int request_path(const struct s3_client *c, const char *key, char *buf, size_t size)
{
    char enc[S3_URL_MAX];
    int n;

    if (!key) {
        n = snprintf(buf, size, "%s%s", c->base_path, c->base_path[0] ? "" : "/");
    } else {
        if (s3_uri_encode(key, true, enc, sizeof(enc)) < 0)
            return -ENAMETOOLONG;
        n = snprintf(buf, size, "%s/%s", c->base_path, enc);
    }
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int s3_client_url(const struct s3_client *c, const char *key, const char *query, char *url,
                  size_t url_size, char *path, size_t path_size)
{
    int n;

    if (request_path(c, key, path, path_size) < 0)
        return -ENAMETOOLONG;
    n = snprintf(url, url_size, "%s://%s%s%s%s", c->scheme, c->hostport, path,
                 query && query[0] ? "?" : "", query ? query : "");
    return n < 0 || (size_t)n >= url_size ? -ENAMETOOLONG : 0;
}

static void parse_error_body(struct s3_resp *r)
{
    struct s3_span sp;

    r->code[0] = r->message[0] = '\0';
    if (!r->body || !r->body_len)
        return;
    sp = (struct s3_span){.p = r->body, .len = r->body_len};
    if (!s3_xml_root_is(sp, "Error"))
        return;
    if (s3_xml_text(sp, "Code", r->code, sizeof(r->code)) < 0)
        r->code[0] = '\0';
    if (s3_xml_text(sp, "Message", r->message, sizeof(r->message)) < 0)
        r->message[0] = '\0';
}

int s3_perform(struct s3_client *c, const struct s3_req *req, struct s3_resp *ret, ord_err *e)
{
    char path[S3_URL_MAX], query[S3_URL_MAX], url[S3_URL_MAX + 600], auth[S3_AUTH_MAX];
    char amz_date[17], payload[S3_SHA256_HEX_LEN + 1];
    char line[sizeof(((struct s3_config *)0)->session_token) + 64];
    struct s3_header sign[S3_SIGN_HEADERS_MAX];
    struct curl_slist *list = NULL;
    struct xfer x = {0};
    size_t ns = 0, nl = 0;
    CURLcode cc;
    CURL *h = c->h;
    bool bad = false;
    int r;

    free(ret->body);
    *ret = (struct s3_resp){.retry_after_s = -1};
    r = s3_canonical_query(req->query, req->n_query, query, sizeof(query));
    if (r < 0)
        return err_set(e, r, "the request's query string is too long");
    if (s3_client_url(c, req->key, query, url, sizeof(url), path, sizeof(path)) < 0)
        return err_set(e, -ENAMETOOLONG, "the object key or the request URL is too long");

    if (req->payload_sha256)
        snprintf(payload, sizeof(payload), "%s", req->payload_sha256);
    else
        s3_sha256_hex(req->body ? req->body : "", req->body_len, payload);
    s3_amz_date((int64_t)time(NULL), amz_date);

    sign[ns++] = (struct s3_header){"host", c->hostport};
    sign[ns++] = (struct s3_header){"x-amz-content-sha256", payload};
    sign[ns++] = (struct s3_header){"x-amz-date", amz_date};
    if (c->cfg.session_token[0])
        sign[ns++] = (struct s3_header){"x-amz-security-token", c->cfg.session_token};
    for (size_t i = 0; i < ARRAY_SIZE(req->headers) && req->headers[i].name; i++)
        sign[ns++] = req->headers[i];

    struct s3_sign_input in = {
        .method = req->method,
        .canonical_uri = path,
        .canonical_query = query,
        .headers = sign,
        .n_headers = ns,
        .payload_sha256 = payload,
        .amz_date = amz_date,
        .region = c->cfg.region,
        .service = "s3",
        .access_key = c->cfg.access_key,
        .secret_key = c->cfg.secret_key,
    };
    r = s3_authorization(&in, auth, sizeof(auth));
    if (r < 0)
        return err_set(e, r, "cannot sign the request");

    /* Header lines: the signed ones, Authorization, and the suppression of curl's defaults
     * (Expect would add a round trip per part; Content-Type and Accept are not ours). */
    for (size_t i = 0; i < ns + 3; i++) {
        struct curl_slist *t;

        if (i < ns)
            snprintf(line, sizeof(line), "%s: %s", sign[i].name, sign[i].value);
        else
            snprintf(line, sizeof(line), "%s",
                     i == ns       ? "Expect:"
                     : i == ns + 1 ? "Content-Type:"
                                   : "Authorization: ");
        if (i == ns + 2)
            snprintf(line, sizeof(line), "Authorization: %s", auth);
        t = curl_slist_append(list, line);
        if (!t) {
            curl_slist_free_all(list);
            explicit_bzero(auth, sizeof(auth));
            explicit_bzero(line, sizeof(line));
            return err_set(e, -ENOMEM, "out of memory");
        }
        list = t;
        nl++;
    }
    explicit_bzero(line, sizeof(line));
    explicit_bzero(auth, sizeof(auth));

    x.h = h;
    x.req = req;
    x.resp = ret;
    x.up = req->body ? req->body : "";
    x.up_len = req->body_len;

    curl_easy_reset(h);
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->cfg.stall_timeout_s) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "ordinal-backup") != CURLE_OK;
    if (c->cfg.ca_bundle[0]) {
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_bundle) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK;
    }
    /* curl_easy_reset() drops the pin too: it is given again for every request. */
    if (c->resolve)
        bad |= curl_easy_setopt(h, CURLOPT_RESOLVE, c->resolve) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, list) != CURLE_OK;
    if (req->body) {
        bad |= curl_easy_setopt(h, CURLOPT_UPLOAD, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_READDATA, &x) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SEEKDATA, &x) != CURLE_OK;
        if (!streq(req->method, "PUT"))
            bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK;
    } else if (streq(req->method, "HEAD")) {
        bad |= curl_easy_setopt(h, CURLOPT_NOBODY, 1L) != CURLE_OK;
    } else if (!streq(req->method, "GET")) {
        bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK;
    }
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &x) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &x) != CURLE_OK;
    if (bad) {
        curl_slist_free_all(list);
        return err_set(e, -EINVAL, "libcurl refused an option");
    }
    c->errbuf[0] = '\0';
    cc = curl_easy_perform(h);
    /* The list holds the Authorization line: wipe it before it goes back to the heap. */
    for (struct curl_slist *t = list; t; t = t->next)
        explicit_bzero(t->data, strlen(t->data));
    curl_slist_free_all(list);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);

    if (cc != CURLE_OK) {
        if (x.overflow)
            return err_set(e, -EFBIG, "the response of %s is larger than expected", url);
        r = curl_errno(cc);
        if (r == -EKEYREJECTED)
            return err_set(e, r,
                           "the TLS certificate of %s://%s is not trusted (%s); give its CA "
                           "with --s3-ca-bundle or AWS_CA_BUNDLE",
                           c->scheme, c->hostport,
                           c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        return err_set(e, r, "%s %s://%s: %s", req->method, c->scheme, c->hostport,
                       c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
    }
    if (ret->status < 200 || ret->status >= 300)
        parse_error_body(ret);
    return 0;
}

bool s3_retryable(int r, const struct s3_resp *resp)
{
    if (r < 0)
        return r == -ECONNRESET || r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH ||
               r == -EPROTO;
    if (resp->status >= 500 || resp->status == 429)
        return true;
    return streq(resp->code, "SlowDown") || streq(resp->code, "RequestTimeout") ||
           streq(resp->code, "InternalError");
}

void s3_backoff(const struct s3_client *c, unsigned attempt, long retry_after_s)
{
    uint64_t cap = c->cfg.backoff_base_ms, rnd = 0, ms;
    struct timespec ts;

    for (unsigned i = 1; i < attempt && cap < c->cfg.backoff_max_ms; i++)
        cap *= 2;
    cap = MIN(cap, (uint64_t)c->cfg.backoff_max_ms);
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint64_t)time(NULL) * 2654435761u;
    /* Full jitter: uniform in [cap/2, cap], so a crowd of clients spreads out. */
    ms = cap / 2 + (cap ? rnd % (cap / 2 + 1) : 0);
    if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000 > ms)
        ms = (uint64_t)retry_after_s * 1000;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int s3_call(struct s3_client *c, const struct s3_req *req, struct s3_resp *ret, ord_err *e)
{
    int r = 0;

    for (unsigned attempt = 1;; attempt++) {
        ord_err inner = {0};

        r = s3_perform(c, req, ret, &inner);
        ret->attempts = attempt;
        if (!s3_retryable(r, ret) || attempt >= c->cfg.max_attempts) {
            if (r < 0)
                return err_set(e, r, "%s%s", inner.msg, attempt > 1 ? " (after retries)" : "");
            return 0;
        }
        s3_backoff(c, attempt, r < 0 ? -1 : ret->retry_after_s);
    }
}

int s3_resp_error(const struct s3_client *c, const struct s3_resp *resp, const char *what,
                  ord_err *e)
{
    const char *code = resp->code[0] ? resp->code : "no error code";
    char detail[512];

    snprintf(detail, sizeof(detail), "HTTP %ld %s%s%s%s", resp->status, code,
             resp->message[0] ? ": " : "", resp->message,
             resp->attempts > 1 ? " (after retries)" : "");
    if (streq(resp->code, "NoSuchBucket"))
        return err_set(e, -ENXIO, "%s: the bucket '%s' does not exist (%s)", what, c->bucket,
                       detail);
    if (streq(resp->code, "SignatureDoesNotMatch"))
        return err_set(e, -EACCES,
                       "%s: S3 refused the request signature (%s); check AWS_SECRET_ACCESS_KEY "
                       "and AWS_ACCESS_KEY_ID, and the region (--s3-region/AWS_REGION)",
                       what, detail);
    if (streq(resp->code, "InvalidAccessKeyId") || streq(resp->code, "ExpiredToken") ||
        streq(resp->code, "InvalidToken"))
        return err_set(e, -EACCES,
                       "%s: S3 does not accept the credentials (%s); check AWS_ACCESS_KEY_ID and "
                       "AWS_SESSION_TOKEN",
                       what, detail);
    if (resp->status == 403)
        return err_set(e, -EACCES, "%s: access denied (%s)", what, detail);
    if (resp->status == 404 || streq(resp->code, "NoSuchKey"))
        return err_set(e, -ENOENT, "%s: not found (%s)", what, detail);
    if (resp->status == 412)
        return err_set(e, -EEXIST, "%s: precondition failed (%s)", what, detail);
    if (resp->status >= 500 || resp->status == 429)
        return err_set(e, -EIO, "%s: the server failed (%s)", what, detail);
    return err_set(e, -EPROTO, "%s: %s", what, detail);
}
