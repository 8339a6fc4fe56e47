/*
 * kube_client.c - see kube_client.h.
 *
 * A request takes an idle http_conn from the client's pool (creating one while fewer than
 * max_connections exist, else waiting), so that each libcurl handle is used by one thread at a
 * time and keeps its connection warm between requests. The retry loop lives here; the Status
 * decoding helpers are shared with the watch code through kube_private.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "json.h"
#include "kube_client.h"
#include "kube_private.h"
#include "log.h"
#include "version.h"

const struct kube_res KUBE_RES_NAMESPACES = {"", "v1", "namespaces", false};
const struct kube_res KUBE_RES_NODES = {"", "v1", "nodes", false};
const struct kube_res KUBE_RES_PODS = {"", "v1", "pods", true};
const struct kube_res KUBE_RES_EVENTS = {"", "v1", "events", true};
const struct kube_res KUBE_RES_PERSISTENTVOLUMES = {"", "v1", "persistentvolumes", false};
const struct kube_res KUBE_RES_PERSISTENTVOLUMECLAIMS = {"", "v1", "persistentvolumeclaims", true};
const struct kube_res KUBE_RES_STORAGECLASSES = {"storage.k8s.io", "v1", "storageclasses", false};
const struct kube_res KUBE_RES_STATEFULSETS = {"apps", "v1", "statefulsets", true};
const struct kube_res KUBE_RES_LEASES = {"coordination.k8s.io", "v1", "leases", true};
const struct kube_res KUBE_RES_VOLUMETASKS = {"ordinal.dev", "v1alpha1", "volumetasks", true};

struct kube_client {
    struct kube_config *cfg;
    struct kube_client_opts o;
    char *user_agent;
    struct http_conn_opts conn_opts; /* points into cfg */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct http_conn **idle; /* max_connections slots */
    size_t n_idle;
    unsigned n_open;
    /* kube_client_set_observer(): set before the client is shared, read without the lock */
    kube_request_observer observe;
    void *observe_ud;
};

/* ---- time and randomness ---- */

int64_t kube_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t kube_rand(uint64_t n)
{
    static _Thread_local uint64_t state;
    uint64_t x;

    if (n == 0)
        return 0;
    if (state == 0) {
        if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state))
            state = (uint64_t)kube_now_ms() ^ (uint64_t)(uintptr_t)&state;
        state |= 1;
    }
    /* xorshift64*: plenty for spreading retries. */
    x = state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state = x;
    return (x * 0x2545F4914F6CDD1DULL) % n;
}

long kube_backoff_ms(long base_ms, long cap_ms, unsigned attempt)
{
    long ceiling = base_ms > 0 ? base_ms : 1;

    for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    if (ceiling <= 0)
        return 0;
    return (long)kube_rand((uint64_t)ceiling + 1);
}

int kube_sleep_ms(long ms, const atomic_bool *stop)
{
    int64_t end = kube_now_ms() + ms;

    for (;;) {
        int64_t left;
        struct timespec ts;
        if (stop && atomic_load(stop))
            return -ECANCELED;
        left = end - kube_now_ms();
        if (left <= 0)
            return 0;
        /* Short naps so that a stop flag is noticed within 50 ms. */
        if (left > 50)
            left = 50;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)left * 1000000L;
        nanosleep(&ts, NULL);
    }
}

/* ---- the client ---- */

int kube_client_new(struct kube_config *cfg, const struct kube_client_opts *opts,
                    struct kube_client **ret, ord_err *e)
{
    _cleanup_(kube_config_freep) struct kube_config *owned = cfg;
    struct kube_client *c;
    char ua[64];

    if (!cfg)
        return err_set(e, -EINVAL, "no Kubernetes configuration");
    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(e, -ENOMEM, "out of memory");
    if (opts)
        c->o = *opts;
    if (!c->o.max_connections)
        c->o.max_connections = 4;
    if (!c->o.max_attempts)
        c->o.max_attempts = 6;
    if (c->o.deadline_ms <= 0)
        c->o.deadline_ms = 60000;
    if (c->o.timeout_ms <= 0)
        c->o.timeout_ms = 30000;
    if (c->o.connect_timeout_ms <= 0)
        c->o.connect_timeout_ms = 10000;
    if (c->o.backoff_base_ms <= 0)
        c->o.backoff_base_ms = 200;
    if (c->o.backoff_cap_ms <= 0)
        c->o.backoff_cap_ms = 10000;
    if (!c->o.max_response)
        c->o.max_response = HTTP_BODY_MAX_DEFAULT;
    snprintf(ua, sizeof(ua), "ordinal/%s", ORDINAL_VERSION);
    c->user_agent = strdup(c->o.user_agent ? c->o.user_agent : ua);
    c->idle = calloc(c->o.max_connections, sizeof(*c->idle));
    if (!c->user_agent || !c->idle) {
        free(c->user_agent);
        free(c->idle);
        free(c);
        return err_set(e, -ENOMEM, "out of memory");
    }
    c->o.user_agent = c->user_agent;
    c->cfg = TAKE_PTR(owned);
    c->conn_opts = (struct http_conn_opts){
        .tls =
            {
                .ca_file = cfg->ca_file,
                .ca_pem = cfg->ca_pem,
                .ca_pem_len = cfg->ca_pem_len,
                .ca_origin = cfg->ca_origin,
                .cert_file = cfg->cert_file,
                .cert_pem = cfg->cert_pem,
                .cert_pem_len = cfg->cert_pem_len,
                .key_file = cfg->key_file,
                .key_pem = cfg->key_pem,
                .key_pem_len = cfg->key_pem_len,
                .insecure = cfg->insecure,
            },
        .connect_timeout_ms = c->o.connect_timeout_ms,
        .user_agent = c->user_agent,
    };
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);

    /* Create the first connection now, so that unusable TLS material fails here. */
    {
        struct http_conn *conn;
        int r = http_conn_new(&c->conn_opts, &conn, e);
        if (r < 0) {
            kube_client_free(c);
            return r;
        }
        c->idle[c->n_idle++] = conn;
        c->n_open = 1;
    }
    *ret = c;
    return 0;
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_idle; i++)
        http_conn_free(c->idle[i]);
    free(c->idle);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    kube_config_free(c->cfg);
    free(c->user_agent);
    free(c);
}

const struct kube_config *kube_client_config(const struct kube_client *c)
{
    return c->cfg;
}

void kube_client_set_observer(struct kube_client *c, kube_request_observer fn, void *ud)
{
    c->observe = fn;
    c->observe_ud = ud;
}

const char *kube_client_namespace(const struct kube_client *c)
{
    return c->cfg->namespace ? c->cfg->namespace : "default";
}

int kube_client_conn_new(struct kube_client *c, struct http_conn **ret, ord_err *e)
{
    return http_conn_new(&c->conn_opts, ret, e);
}

static int conn_acquire(struct kube_client *c, struct http_conn **ret, ord_err *e)
{
    int r = 0;

    pthread_mutex_lock(&c->lock);
    while (c->n_idle == 0 && c->n_open >= c->o.max_connections)
        pthread_cond_wait(&c->cond, &c->lock);
    if (c->n_idle > 0) {
        *ret = c->idle[--c->n_idle];
    } else {
        c->n_open++;
        pthread_mutex_unlock(&c->lock);
        r = http_conn_new(&c->conn_opts, ret, e);
        pthread_mutex_lock(&c->lock);
        if (r < 0) {
            c->n_open--;
            pthread_cond_signal(&c->cond);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

static void conn_release(struct kube_client *c, struct http_conn *conn)
{
    pthread_mutex_lock(&c->lock);
    c->idle[c->n_idle++] = conn;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int kube_client_url(struct kube_client *c, const char *path, char **ret)
{
    size_t n = strlen(c->cfg->server) + strlen(path) + 1;
    char *url = malloc(n);

    if (!url)
        return -ENOMEM;
    snprintf(url, n, "%s%s", c->cfg->server, path);
    *ret = url;
    return 0;
}

bool kube_client_token_from_file(const struct kube_client *c)
{
    return c->cfg->token_file != NULL;
}

int kube_client_auth_header(struct kube_client *c, bool force, char **ret, ord_err *e)
{
    _cleanup_free_ char *tok = NULL;
    char *line;
    size_t n;
    int r;

    r = kube_config_token(c->cfg, force, &tok, e);
    if (r < 0)
        return r;
    if (!tok) {
        *ret = NULL;
        return 0;
    }
    n = strlen(tok) + sizeof("Authorization: Bearer ");
    line = malloc(n);
    if (!line)
        return err_set(e, -ENOMEM, "out of memory");
    snprintf(line, n, "Authorization: Bearer %s", tok);
    explicit_bzero(tok, strlen(tok));
    *ret = line;
    return 0;
}

/* ---- paths ---- */

static bool bad_segment(const char *s)
{
    return !s[0] || streq(s, ".") || streq(s, "..");
}

int kube_path(const struct kube_res *r, const char *ns, const char *name, const char *sub,
              char **ret)
{
    _cleanup_free_ char *ens = NULL, *ename = NULL, *esub = NULL, *eres = NULL;
    const char *parts[8];
    size_t np = 0, len = 1;
    char *out, *p;

    if (!r || !r->version || !r->resource || bad_segment(r->resource) || bad_segment(r->version))
        return -EINVAL;
    if (r->group && r->group[0] && bad_segment(r->group))
        return -EINVAL;
    if (!r->namespaced || (ns && !ns[0]))
        ns = NULL;
    if ((ns && bad_segment(ns)) || (name && bad_segment(name)) || (sub && bad_segment(sub)))
        return -EINVAL;
    if (sub && !name)
        return -EINVAL;

    eres = http_escape(r->resource);
    if (!eres)
        return -ENOMEM;
    if (ns && !(ens = http_escape(ns)))
        return -ENOMEM;
    if (name && !(ename = http_escape(name)))
        return -ENOMEM;
    if (sub && !(esub = http_escape(sub)))
        return -ENOMEM;

    if (r->group && r->group[0]) {
        parts[np++] = "apis";
        parts[np++] = r->group;
    } else {
        parts[np++] = "api";
    }
    parts[np++] = r->version;
    if (ens) {
        parts[np++] = "namespaces";
        parts[np++] = ens;
    }
    parts[np++] = eres;
    if (ename)
        parts[np++] = ename;
    if (esub)
        parts[np++] = esub;
    for (size_t i = 0; i < np; i++)
        len += strlen(parts[i]) + 1;
    out = p = malloc(len);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < np; i++) {
        size_t n = strlen(parts[i]);
        *p++ = '/';
        memcpy(p, parts[i], n);
        p += n;
    }
    *p = '\0';
    *ret = out;
    return 0;
}

int kube_path_query(const char *path, char **ret, ...)
{
    va_list ap;
    size_t len = strlen(path) + 1, cap;
    const char *k, *v;
    char *out;
    bool first = strchr(path, '?') == NULL;
    int r = 0;

    cap = len + 256;
    out = malloc(cap);
    if (!out)
        return -ENOMEM;
    memcpy(out, path, len);
    va_start(ap, ret);
    while ((k = va_arg(ap, const char *))) {
        _cleanup_free_ char *ek = NULL, *ev = NULL;
        size_t need;
        v = va_arg(ap, const char *);
        if (!v)
            continue;
        ek = http_escape(k);
        ev = http_escape(v);
        if (!ek || !ev) {
            r = -ENOMEM;
            break;
        }
        need = len + strlen(ek) + strlen(ev) + 2;
        if (need > cap) {
            char *p;
            cap = need * 2;
            p = realloc(out, cap);
            if (!p) {
                r = -ENOMEM;
                break;
            }
            out = p;
        }
        snprintf(out + len - 1, cap - (len - 1), "%c%s=%s", first ? '?' : '&', ek, ev);
        len = strlen(out) + 1;
        first = false;
    }
    va_end(ap);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- Status ---- */

int kube_status_to_errno(long status, const char *reason)
{
    if (status >= 200 && status < 300)
        return 0;
    switch (status) {
    case 400:
        return KUBE_E_BAD_REQUEST;
    case 401:
        return KUBE_E_UNAUTHORIZED;
    case 403:
        return KUBE_E_FORBIDDEN;
    case 404:
        return KUBE_E_NOT_FOUND;
    case 405:
    case 406:
    case 415:
        return KUBE_E_METHOD;
    case 409:
        return reason && streq(reason, "AlreadyExists") ? KUBE_E_ALREADY_EXISTS : KUBE_E_CONFLICT;
    case 410:
        return KUBE_E_GONE;
    case 413:
        return KUBE_E_TOO_LARGE;
    case 422:
        return KUBE_E_INVALID;
    case 429:
        return KUBE_E_THROTTLED;
    case 504:
        return KUBE_E_TIMEOUT;
    default:
        break;
    }
    if (reason && (streq(reason, "Timeout") || streq(reason, "ServerTimeout")))
        return KUBE_E_TIMEOUT;
    if (status >= 500)
        return KUBE_E_SERVER;
    return -EPROTO;
}

bool kube_errno_is_transient(int r)
{
    switch (r) {
    case KUBE_E_THROTTLED:
    case KUBE_E_SERVER:
    case KUBE_E_TIMEOUT:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
    case -EAGAIN:
        return true;
    default:
        return false;
    }
}

static const char *http_reason_phrase(long status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Request Entity Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

/* Copies at most 200 printable bytes of a non-JSON body, for a message. */
static void printable_excerpt(const char *body, size_t len, char *buf, size_t size)
{
    size_t j = 0;

    for (size_t i = 0; i < len && j + 1 < size && i < 200; i++) {
        unsigned char ch = (unsigned char)body[i];
        buf[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
    }
    buf[j] = '\0';
}

int kube_status_object_error(const char *what, const cJSON *st, char reason[64], ord_err *e)
{
    const char *msg = json_string(st, "message");
    const char *rsn = json_string(st, "reason");
    int64_t code = 0;
    int r;

    json_get_int64(st, "code", 0, 999, &code);
    snprintf(reason, 64, "%s", rsn ? rsn : "");
    r = kube_status_to_errno(code, rsn);
    if (r == 0)
        r = -EPROTO;
    return err_set(e, r, "%s: %lld %s: %s", what, (long long)code, rsn ? rsn : "",
                   msg && msg[0] ? msg : "(no message)");
}

int kube_status_error(struct kube_client *c, const char *method, const char *path, long status,
                      const char *body, size_t body_len, char reason[64], ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *st = NULL;
    const char *msg = NULL, *rsn = NULL;
    char excerpt[256] = "";
    int r;

    reason[0] = '\0';
    if (body && body_len > 0 && json_parse(body, body_len, &st, NULL) == 0 && cJSON_IsObject(st)) {
        msg = json_string(st, "message");
        rsn = json_string(st, "reason");
        if (rsn)
            snprintf(reason, 64, "%s", rsn);
    } else if (body && body_len > 0) {
        printable_excerpt(body, body_len, excerpt, sizeof(excerpt));
        msg = excerpt;
    }
    r = kube_status_to_errno(status, rsn);
    if (!rsn || !rsn[0])
        rsn = http_reason_phrase(status);
    if (status == 401)
        return err_set(e, r,
                       "%s %s: 401 Unauthorized: the API server at %s rejected the credentials "
                       "from %s (wrong or expired token, or a client certificate it does not "
                       "trust)",
                       method, path, c->cfg->server, c->cfg->source);
    if (status == 403)
        return err_set(e, r, "%s %s: 403 Forbidden: %s (check the RBAC rules granted to %s)",
                       method, path, msg && msg[0] ? msg : "forbidden", c->cfg->source);
    return err_set(e, r, "%s %s: %ld %s: %s", method, path, status, rsn,
                   msg && msg[0] ? msg : "(no message)");
}

/* ---- requests ---- */

void kube_resp_done(struct kube_resp *r)
{
    if (!r)
        return;
    cJSON_Delete(r->body);
    r->body = NULL;
}

static bool transport_retryable(int r, bool sent, bool ambiguous_ok)
{
    switch (r) {
    case -ECONNREFUSED:
    case -EHOSTUNREACH:
        return true;
    case -ECONNRESET:
    case -ETIMEDOUT:
        return !sent || ambiguous_ok;
    default:
        return false;
    }
}

int kube_request(struct kube_client *c, const struct kube_req *req, struct kube_resp *ret,
                 ord_err *e)
{
    _cleanup_free_ char *url = NULL;
    const char *ctype = req->content_type ? req->content_type : "application/json";
    bool ambiguous_ok = !streq(req->method, "POST") || req->retry_ambiguous_post;
    bool force_token = false, token_retried = false;
    int64_t deadline = kube_now_ms() + c->o.deadline_ms;
    char ctype_line[128];
    int r = 0;

    memset(ret, 0, sizeof(*ret));
    if (kube_client_url(c, req->path, &url) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    snprintf(ctype_line, sizeof(ctype_line), "Content-Type: %s", ctype);

    for (unsigned attempt = 1;; attempt++) {
        _cleanup_free_ char *auth = NULL;
        struct http_response resp;
        struct http_conn *conn;
        const char *headers[4];
        size_t nh = 0;
        bool retry = false;
        long delay_ms = -1, timeout = c->o.timeout_ms;
        int64_t left = deadline - kube_now_ms();
        ord_err attempt_err = {0};
        struct timespec t0, t1;

        if (timeout > left)
            timeout = left > 1000 ? (long)left : 1000;
        r = kube_client_auth_header(c, force_token, &auth, e);
        if (r < 0)
            return r;
        force_token = false;
        headers[nh++] = "Accept: application/json";
        if (req->body)
            headers[nh++] = ctype_line;
        if (auth)
            headers[nh++] = auth;
        headers[nh] = NULL;

        if (req->cancel && atomic_load(req->cancel))
            return err_set(e, KUBE_E_CANCELED, "%s %s: cancelled", req->method, req->path);
        r = conn_acquire(c, &conn, e);
        if (r < 0)
            return r;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = http_do(conn,
                    &(struct http_request){
                        .method = req->method,
                        .url = url,
                        .headers = headers,
                        .body = req->body,
                        .body_len = req->body_len,
                        .timeout_ms = timeout,
                        .max_body = c->o.max_response,
                        .cancel = req->cancel,
                    },
                    &resp, &attempt_err);
        conn_release(c, conn);
        if (c->observe) {
            /* Each attempt, as client-go's rest_client_request_duration_seconds counts them. */
            clock_gettime(CLOCK_MONOTONIC, &t1);
            c->observe(c->observe_ud, req->method, r < 0 ? 0 : resp.status, r,
                       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        }
        if (auth)
            explicit_bzero(auth, strlen(auth));
        ret->attempts = attempt;
        ret->http_status = resp.status;

        if (r < 0) {
            retry = transport_retryable(r, resp.sent, ambiguous_ok);
            http_response_done(&resp);
            if (e)
                *e = attempt_err;
        } else if (resp.status >= 200 && resp.status < 300) {
            if (resp.body_len > 0) {
                r = json_parse(resp.body, resp.body_len, &ret->body, e);
                if (r < 0) {
                    err_wrap(e, -EPROTO, "%s %s: the answer is not JSON", req->method, req->path);
                    r = -EPROTO;
                    if (e)
                        e->code = r;
                }
            }
            http_response_done(&resp);
            return r;
        } else {
            r = kube_status_error(c, req->method, req->path, resp.status, resp.body, resp.body_len,
                                  ret->reason, e);
            if (resp.body_len > 0) {
                cJSON_Delete(ret->body);
                ret->body = NULL;
                (void)json_parse(resp.body, resp.body_len, &ret->body, NULL);
            }
            if (resp.status == 401 && kube_client_token_from_file(c) && !token_retried) {
                /* A rotated token: re-read the file and try again at once. */
                token_retried = true;
                force_token = true;
                retry = true;
                delay_ms = 0;
            } else if (resp.status == 429) {
                retry = true;
            } else if (resp.status == 500 || resp.status == 502 || resp.status == 503 ||
                       resp.status == 504) {
                retry = ambiguous_ok;
            }
            /* The server knows best when to come back; only the deadline bounds it. */
            if (retry && resp.retry_after_s >= 0 && delay_ms < 0)
                delay_ms = resp.retry_after_s * 1000;
            http_response_done(&resp);
        }

        if (!retry || req->no_retry || attempt >= c->o.max_attempts)
            break;
        if (delay_ms < 0)
            delay_ms = kube_backoff_ms(c->o.backoff_base_ms, c->o.backoff_cap_ms, attempt - 1);
        if (kube_now_ms() + delay_ms >= deadline)
            break;
        log_debug("%s %s: %s; retrying in %ld ms (attempt %u of %u)", req->method, req->path,
                  e ? err_msg(e) : "failed", delay_ms, attempt + 1, c->o.max_attempts);
        cJSON_Delete(ret->body);
        ret->body = NULL;
        ret->reason[0] = '\0';
        if (kube_sleep_ms(delay_ms, req->cancel) < 0)
            return err_set(e, KUBE_E_CANCELED, "%s %s: cancelled", req->method, req->path);
    }
    if (ret->attempts > 1 && e && e->code)
        err_wrap(e, r, "after %u attempts", ret->attempts);
    return r;
}

/* Sends and hands back the body of a successful answer. */
static int simple(struct kube_client *c, const char *method, const char *path, const cJSON *body,
                  const char *ctype, bool retry_post, const atomic_bool *cancel, cJSON **ret,
                  ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    struct kube_resp resp;
    int r;

    if (body) {
        text = json_print(body);
        if (!text)
            return err_set(e, -ENOMEM, "out of memory");
    }
    r = kube_request(c,
                     &(struct kube_req){
                         .method = method,
                         .path = path,
                         .body = text,
                         .body_len = text ? strlen(text) : 0,
                         .content_type = ctype,
                         .retry_ambiguous_post = retry_post,
                         .cancel = cancel,
                     },
                     &resp, e);
    if (r >= 0 && ret)
        *ret = TAKE_PTR(resp.body);
    kube_resp_done(&resp);
    return r;
}

static int path_or_err(const struct kube_res *r, const char *ns, const char *name, const char *sub,
                       char **ret, ord_err *e)
{
    int k;

    if (r && r->namespaced && name && (!ns || !ns[0]))
        return err_set(e, -EINVAL, "%s '%s': no namespace given", r->resource, name);
    k = kube_path(r, ns, name, sub, ret);
    if (k == -ENOMEM)
        return err_set(e, k, "out of memory");
    if (k < 0)
        return err_set(e, k, "invalid resource path (%s '%s')", r ? r->resource : "?",
                       name ? name : "");
    return 0;
}

int kube_get_sub(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
                 const char *sub, cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *path = NULL;
    int k;

    k = path_or_err(r, ns, name, sub, &path, e);
    if (k < 0)
        return k;
    return simple(c, "GET", path, NULL, NULL, false, NULL, ret, e);
}

int kube_get(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
             cJSON **ret, ord_err *e)
{
    return kube_get_sub(c, r, ns, name, NULL, ret, e);
}

/* One list request: the page at cont (NULL: the first). */
static int list_page(struct kube_client *c, const char *base, const struct kube_list_opts *o,
                     long limit, const char *cont, const atomic_bool *cancel, cJSON **ret,
                     ord_err *e)
{
    _cleanup_free_ char *path = NULL;
    char lim[32];

    snprintf(lim, sizeof(lim), "%ld", limit);
    if (kube_path_query(base, &path, "labelSelector", o ? o->label_selector : NULL, "fieldSelector",
                        o ? o->field_selector : NULL, "limit", limit > 0 ? lim : NULL, "continue",
                        cont, "resourceVersion", cont ? NULL : (o ? o->resource_version : NULL),
                        NULL) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    return simple(c, "GET", path, NULL, NULL, false, cancel, ret, e);
}

/*
 * Lists every page into the first page's List object. Returns KUBE_E_GONE (with gone_in_paging
 * set) when a continue token expired, so that the caller can list again.
 */
static int list_all(struct kube_client *c, const char *base, const struct kube_list_opts *o,
                    long limit, const atomic_bool *cancel, bool *gone_in_paging, cJSON **ret,
                    ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *list = NULL;
    cJSON *items, *meta;
    int k;

    k = list_page(c, base, o, limit, NULL, cancel, &list, e);
    if (k < 0)
        return k;
    if (!cJSON_IsObject(list))
        return err_set(e, -EPROTO, "GET %s: the answer is not a List", base);
    items = cJSON_GetObjectItemCaseSensitive(list, "items");
    if (!items || cJSON_IsNull(items)) {
        /* An empty list may come as "items": null. */
        if (json_set_item(list, "items", cJSON_CreateArray()) < 0)
            return err_set(e, -ENOMEM, "out of memory");
        items = cJSON_GetObjectItemCaseSensitive(list, "items");
    }
    if (!cJSON_IsArray(items))
        return err_set(e, -EPROTO, "GET %s: the answer's items is not an array", base);
    meta = json_ensure_object(list, "metadata");
    if (!meta)
        return err_set(e, -EPROTO, "GET %s: the answer's metadata is not an object", base);

    for (unsigned pages = 1;; pages++) {
        _cleanup_(cJSON_Deletep) cJSON *page = NULL;
        _cleanup_free_ char *cont = NULL;
        const char *ct = json_string(meta, "continue");
        cJSON *pitems, *it;

        if (!ct || !ct[0])
            break;
        if (pages >= 100000)
            return err_set(e, -E2BIG, "GET %s: more than %u pages", base, pages);
        cont = strdup(ct);
        if (!cont)
            return err_set(e, -ENOMEM, "out of memory");
        k = list_page(c, base, o, limit, cont, cancel, &page, e);
        if (k == KUBE_E_GONE)
            *gone_in_paging = true;
        if (k < 0)
            return k;
        pitems = cJSON_GetObjectItemCaseSensitive(page, "items");
        while (cJSON_IsArray(pitems) && (it = pitems->child)) {
            cJSON_DetachItemViaPointer(pitems, it);
            cJSON_AddItemToArray(items, it);
        }
        /* Carry the next continue token; keep the first page's resourceVersion. */
        ct = json_string(page, "metadata.continue");
        k = json_set_string(meta, "continue", ct ? ct : "");
        if (k < 0)
            return err_set(e, k, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "continue");
    *ret = TAKE_PTR(list);
    return 0;
}

int kube_list(struct kube_client *c, const struct kube_res *r, const char *ns,
              const struct kube_list_opts *o, cJSON **ret, ord_err *e)
{
    return kube_list_cancelable(c, r, ns, o, NULL, ret, e);
}

int kube_list_cancelable(struct kube_client *c, const struct kube_res *r, const char *ns,
                         const struct kube_list_opts *o, const atomic_bool *cancel, cJSON **ret,
                         ord_err *e)
{
    _cleanup_free_ char *base = NULL;
    long limit = o && o->limit > 0 ? o->limit : 500;
    bool gone = false;
    int k;

    k = path_or_err(r, ns, NULL, NULL, &base, e);
    if (k < 0)
        return k;
    k = list_all(c, base, o, limit, cancel, &gone, ret, e);
    if (k == KUBE_E_GONE && gone) {
        /* The continue token expired with its snapshot: list again in one piece, the way
         * client-go's pager falls back. */
        log_debug("GET %s: continue token expired; listing again without paging", base);
        err_clear(e);
        k = list_all(c, base, o, 0, cancel, &gone, ret, e);
    }
    return k;
}

int kube_create(struct kube_client *c, const struct kube_res *r, const char *ns, const cJSON *obj,
                cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *path = NULL;
    const char *name = json_string(obj, "metadata.name");
    int k;

    if (r && r->namespaced && (!ns || !ns[0]))
        return err_set(e, -EINVAL, "creating %s: no namespace given", r->resource);
    k = path_or_err(r, ns, NULL, NULL, &path, e);
    if (k < 0)
        return k;
    return simple(c, "POST", path, obj, NULL, name && name[0], NULL, ret, e);
}

int kube_update_sub(struct kube_client *c, const struct kube_res *r, const char *ns,
                    const cJSON *obj, const char *sub, cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *path = NULL;
    const char *name = json_string(obj, "metadata.name");
    int k;

    if (!name || !name[0])
        return err_set(e, -EINVAL, "updating %s: the object has no metadata.name",
                       r ? r->resource : "?");
    k = path_or_err(r, ns, name, sub, &path, e);
    if (k < 0)
        return k;
    return simple(c, "PUT", path, obj, NULL, false, NULL, ret, e);
}

int kube_update(struct kube_client *c, const struct kube_res *r, const char *ns, const cJSON *obj,
                cJSON **ret, ord_err *e)
{
    return kube_update_sub(c, r, ns, obj, NULL, ret, e);
}

int kube_patch(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
               const char *sub, const cJSON *patch, cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *path = NULL;
    int k;

    if (!patch)
        return err_set(e, -EINVAL, "empty patch");
    k = path_or_err(r, ns, name, sub, &path, e);
    if (k < 0)
        return k;
    return simple(c, "PATCH", path, patch, "application/merge-patch+json", false, NULL, ret, e);
}

int kube_delete(struct kube_client *c, const struct kube_res *r, const char *ns, const char *name,
                const struct kube_delete_opts *opts, cJSON **ret, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *body = NULL, *answer = NULL;
    _cleanup_free_ char *path = NULL;
    int k;

    k = path_or_err(r, ns, name, NULL, &path, e);
    if (k < 0)
        return k;
    if (opts) {
        body = cJSON_CreateObject();
        if (!body || json_set_string(body, "kind", "DeleteOptions") < 0 ||
            json_set_string(body, "apiVersion", "v1") < 0)
            return err_set(e, -ENOMEM, "out of memory");
        if (opts->precondition_uid || opts->precondition_resource_version) {
            cJSON *pre = json_ensure_object(body, "preconditions");
            if (!pre ||
                (opts->precondition_uid &&
                 json_set_string(pre, "uid", opts->precondition_uid) < 0) ||
                (opts->precondition_resource_version &&
                 json_set_string(pre, "resourceVersion", opts->precondition_resource_version) < 0))
                return err_set(e, -ENOMEM, "out of memory");
        }
        if (opts->propagation_policy &&
            json_set_string(body, "propagationPolicy", opts->propagation_policy) < 0)
            return err_set(e, -ENOMEM, "out of memory");
        if (opts->grace_period_seconds != 0 &&
            json_set_int64(body, "gracePeriodSeconds",
                           opts->grace_period_seconds < 0 ? 0 : opts->grace_period_seconds) < 0)
            return err_set(e, -ENOMEM, "out of memory");
    }
    k = simple(c, "DELETE", path, body, NULL, false, NULL, &answer, e);
    if (k < 0)
        return k;
    if (ret) {
        const char *kind = json_string(answer, "kind");
        *ret = kind && streq(kind, "Status") ? NULL : TAKE_PTR(answer);
    }
    return 0;
}
