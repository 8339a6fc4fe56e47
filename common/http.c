/*
 * http.c - see http.h. One CURL easy handle per http_conn, configured once with TLS material
 * and reused for every request so that libcurl keeps the connection (and HTTP/2 session) open.
 * Per-request options are reset explicitly at the start of each request, because an easy handle
 * remembers everything that was set on it.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "http.h"
#include "log.h"

struct http_conn {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
    char *ca_origin; /* copy of tls.ca_origin, for messages */
    bool has_ca;
    bool insecure;
};

/* State of one transfer, shared by the callbacks. */
struct xfer {
    CURL *curl;
    const struct http_request *req;
    struct http_response *resp;
    size_t max_body;
    size_t cap;
    bool too_big;
    bool streaming; /* decided at the first body byte: 2xx and on_data set */
    bool decided;
    int cb_error; /* the streaming callback's error */
    bool canceled;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* curl_global_init is not thread-safe in libcurl 7.88 (the build lacks CURL_VERSION_THREADSAFE
 * guarantees on all platforms): run it exactly once, before any handle exists. */
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int set_blob(CURL *curl, CURLoption opt, const char *data, size_t len)
{
    struct curl_blob blob = {.data = (void *)data, .len = len, .flags = CURL_BLOB_COPY};
    return curl_easy_setopt(curl, opt, &blob) == CURLE_OK ? 0 : -EINVAL;
}

void http_conn_free(struct http_conn *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->ca_origin);
    free(c);
}

int http_conn_new(const struct http_conn_opts *o, struct http_conn **ret, ord_err *e)
{
    _cleanup_(http_conn_freep) struct http_conn *c = NULL;
    const struct http_tls *t = &o->tls;
    CURL *h;
    int bad = 0;

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return err_set(e, -ENOMEM, "cannot initialise libcurl: %s", curl_easy_strerror(global_rc));

    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(e, -ENOMEM, "out of memory");
    c->curl = h = curl_easy_init();
    if (!h)
        return err_set(e, -ENOMEM, "cannot create a libcurl handle");
    if (t->ca_origin) {
        c->ca_origin = strdup(t->ca_origin);
        if (!c->ca_origin)
            return err_set(e, -ENOMEM, "out of memory");
    }
    c->has_ca = t->ca_file || t->ca_pem;
    c->insecure = t->insecure;

    /* Signals are unusable with threads: no SIGALRM-based DNS timeouts. */
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 15L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                            o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    if (o->user_agent)
        bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, o->user_agent) != CURLE_OK;
    if (bad)
        return err_set(e, -EINVAL, "libcurl refused a basic option");

    /* Trust exactly the configured CA when there is one, not the system bundle as well. */
    if (t->ca_pem) {
        if (set_blob(h, CURLOPT_CAINFO_BLOB, t->ca_pem, t->ca_pem_len) < 0 ||
            curl_easy_setopt(h, CURLOPT_CAINFO, NULL) != CURLE_OK ||
            curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK)
            return err_set(e, -EINVAL, "libcurl cannot use the CA certificate from %s",
                           t->ca_origin ? t->ca_origin : "memory");
    } else if (t->ca_file) {
        if (curl_easy_setopt(h, CURLOPT_CAINFO, t->ca_file) != CURLE_OK ||
            curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK)
            return err_set(e, -EINVAL, "libcurl cannot use the CA file '%s'", t->ca_file);
    }
    if (t->insecure) {
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (t->cert_pem) {
        bad |= set_blob(h, CURLOPT_SSLCERT_BLOB, t->cert_pem, t->cert_pem_len) < 0;
        bad |= curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK;
    } else if (t->cert_file) {
        bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, t->cert_file) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK;
    }
    if (t->key_pem) {
        bad |= set_blob(h, CURLOPT_SSLKEY_BLOB, t->key_pem, t->key_pem_len) < 0;
        bad |= curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK;
    } else if (t->key_file) {
        bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, t->key_file) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK;
    }
    if (bad)
        return err_set(e, -EINVAL, "libcurl refused the TLS settings");

    *ret = TAKE_PTR(c);
    return 0;
}

void http_response_done(struct http_response *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* Parses a Retry-After value: delta-seconds, or an HTTP date. Returns seconds or -1. */
static long parse_retry_after(const char *v, size_t len)
{
    char buf[128];
    char *end;
    unsigned long long n;
    time_t when;

    while (len > 0 && isspace((unsigned char)v[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*v)) {
        v++;
        len--;
    }
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (isdigit((unsigned char)buf[0])) {
        errno = 0;
        n = strtoull(buf, &end, 10);
        if (errno || *end || n > 86400)
            return -1;
        return (long)n;
    }
    when = curl_getdate(buf, NULL);
    if (when < 0)
        return -1;
    when -= time(NULL);
    return when < 0 ? 0 : (when > 86400 ? 86400 : (long)when);
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * nmemb;
    static const char name[] = "retry-after:";

    /* A new status line starts a new response (after 100 Continue): forget earlier headers. */
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
        x->resp->retry_after_s = -1;
    else if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0)
        x->resp->retry_after_s =
            parse_retry_after(data + sizeof(name) - 1, len - (sizeof(name) - 1));
    return len;
}

static int collect(struct xfer *x, const char *data, size_t len)
{
    struct http_response *r = x->resp;
    size_t need;

    if (len > x->max_body || r->body_len > x->max_body - len) {
        x->too_big = true;
        return -EFBIG;
    }
    need = r->body_len + len + 1;
    if (need > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        char *p;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        p = realloc(r->body, cap);
        if (!p)
            return -ENOMEM;
        r->body = p;
        x->cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * nmemb;
    int r;

    if (x->req->cancel && atomic_load(x->req->cancel)) {
        x->canceled = true;
        return 0;
    }
    if (!x->decided) {
        long status = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
        x->streaming = x->req->on_data && status >= 200 && status < 300;
        x->decided = true;
    }
    if (x->streaming) {
        r = x->req->on_data(data, len, x->req->userdata);
        if (r < 0) {
            x->cb_error = r;
            return 0;
        }
        return len;
    }
    r = collect(x, data, len);
    if (r < 0) {
        if (r != -EFBIG)
            x->cb_error = r;
        return 0;
    }
    return len;
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = userdata;

    if (x->req->cancel && atomic_load(x->req->cancel)) {
        x->canceled = true;
        return 1;
    }
    return 0;
}

/* "https://host:port" of a URL, for messages about the connection rather than one request. */
static void url_origin(const char *url, char *buf, size_t size)
{
    const char *p = strstr(url, "://");
    size_t n;

    p = p ? strchr(p + 3, '/') : NULL;
    n = p ? (size_t)(p - url) : strlen(url);
    if (n >= size)
        n = size - 1;
    memcpy(buf, url, n);
    buf[n] = '\0';
}

static int map_curl_error(struct http_conn *c, const struct http_request *req, struct xfer *x,
                          CURLcode rc, ord_err *e)
{
    char origin[256];
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    long oserr = 0;

    url_origin(req->url, origin, sizeof(origin));
    /* The server refusing our client certificate shows up as a TLS alert, at the handshake or
     * (TLS 1.3) at the first read. Say so instead of "connection lost". */
    if ((rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
        strstr(detail, "alert")) {
        if (strstr(detail, "certificate required"))
            return err_set(e, -EKEYREJECTED,
                           "the server at %s requires a TLS client certificate and none is "
                           "configured (%s)",
                           origin, detail);
        if (strstr(detail, "bad certificate") || strstr(detail, "unknown ca") ||
            strstr(detail, "certificate unknown") || strstr(detail, "certificate expired") ||
            strstr(detail, "certificate revoked") || strstr(detail, "unsupported certificate"))
            return err_set(e, -EKEYREJECTED,
                           "the server at %s rejected the TLS client certificate (%s)", origin,
                           detail);
    }
    switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK:
        return err_set(e, -ECANCELED, "request to %s cancelled", origin);
    case CURLE_WRITE_ERROR:
        if (x->canceled)
            return err_set(e, -ECANCELED, "request to %s cancelled", origin);
        if (x->too_big)
            return err_set(e, -EFBIG, "response from %s is larger than %zu bytes", origin,
                           x->max_body);
        if (x->cb_error < 0)
            return err_set_errno(e, x->cb_error, "reading the response from %s", origin);
        return err_set(e, -EIO, "cannot store the response from %s", origin);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return err_set(e, -EHOSTUNREACH, "cannot resolve the host of %s: %s", origin, detail);
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
        if (oserr == EHOSTUNREACH || oserr == ENETUNREACH)
            return err_set(e, -EHOSTUNREACH, "no route to %s", origin);
        if (oserr == ETIMEDOUT)
            return err_set(e, -ETIMEDOUT, "connecting to %s timed out", origin);
        return err_set(e, -ECONNREFUSED,
                       "connection refused to %s (is the API server running at that address?)",
                       origin);
    case CURLE_OPERATION_TIMEDOUT:
        return err_set(e, -ETIMEDOUT, "no complete answer from %s within %ld ms", origin,
                       req->timeout_ms);
    case CURLE_PEER_FAILED_VERIFICATION: {
        const char *ca = c->ca_origin ? c->ca_origin : "the system CA bundle";
        if (strstr(detail, "subject name") || strstr(detail, "does not match") ||
            strstr(detail, "hostname"))
            return err_set(e, -EKEYREJECTED,
                           "TLS certificate of %s is not valid for that host name (%s)", origin,
                           detail);
        if (strstr(detail, "expired"))
            return err_set(e, -EKEYREJECTED, "TLS certificate of %s has expired (%s)", origin,
                           detail);
        return err_set(e, -EKEYREJECTED,
                       "TLS certificate of %s is not signed by the configured CA (%s): %s", origin,
                       ca, detail);
    }
    case CURLE_SSL_CACERT_BADFILE:
        return err_set(e, -ENOENT, "cannot load the CA certificate (%s) to verify %s: %s",
                       c->ca_origin ? c->ca_origin : "system CA bundle", origin, detail);
    case CURLE_SSL_CERTPROBLEM:
        return err_set(e, -EINVAL, "cannot use the client certificate for %s: %s", origin, detail);
    case CURLE_SSL_CONNECT_ERROR:
        return err_set(e, -EPROTO,
                       "TLS handshake with %s failed (a client certificate the server does not "
                       "accept, or not a TLS server?): %s",
                       origin, detail);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return err_set(e, -ECONNRESET, "connection to %s lost: %s", origin, detail);
    case CURLE_OUT_OF_MEMORY:
        return err_set(e, -ENOMEM, "out of memory talking to %s", origin);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return err_set(e, -EINVAL, "cannot use the URL %s: %s", origin, detail);
    default:
        return err_set(e, -EPROTO, "request to %s failed: %s", origin, detail);
    }
}

/* Whether the server may have seen the request: anything past connecting and TLS. */
static bool maybe_sent(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return false;
    default:
        return true;
    }
}

int http_do(struct http_conn *c, const struct http_request *req, struct http_response *ret,
            ord_err *e)
{
    struct curl_slist *hdrs = NULL;
    struct xfer x = {0};
    CURL *h = c->curl;
    CURLcode rc;
    int r = 0, bad = 0;

    memset(ret, 0, sizeof(*ret));
    ret->retry_after_s = -1;
    c->errbuf[0] = '\0';
    x.curl = h;
    x.req = req;
    x.resp = ret;
    x.max_body = req->max_body ? req->max_body : HTTP_BODY_MAX_DEFAULT;

    /* Headers: ours, plus "Expect:" to stop libcurl from waiting for 100 Continue on bodies. */
    for (const char *const *hp = req->headers; hp && *hp; hp++) {
        struct curl_slist *n = curl_slist_append(hdrs, *hp);
        if (!n) {
            curl_slist_free_all(hdrs);
            return err_set(e, -ENOMEM, "out of memory");
        }
        hdrs = n;
    }
    {
        struct curl_slist *n = curl_slist_append(hdrs, "Expect:");
        if (!n) {
            curl_slist_free_all(hdrs);
            return err_set(e, -ENOMEM, "out of memory");
        }
        hdrs = n;
    }

    /* Reset what an earlier request on this handle may have set. HTTPGET clears POST state. */
    bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_URL, req->url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
    if (req->body || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
        strcmp(req->method, "PATCH") == 0) {
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                                (curl_off_t)(req->body ? req->body_len : 0)) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "") != CURLE_OK;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
        bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L) !=
           CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &x) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &x) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOPROGRESS, req->cancel ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x) != CURLE_OK;
    if (bad) {
        curl_slist_free_all(hdrs);
        return err_set(e, -EINVAL, "libcurl refused the request options for %s %s", req->method,
                       req->url);
    }

    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    ret->sent = maybe_sent(rc);
    /* The handle must not keep pointers to our stack or to the freed header list. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hdrs);

    if (rc != CURLE_OK)
        r = map_curl_error(c, req, &x, rc, e);
    if (x.canceled && r == 0)
        r = err_set(e, -ECANCELED, "request cancelled");
    return r;
}

char *http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out, *p;

    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    out = p = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}
