/*
 * test_kube_client.c - the REST client against a scripted HTTP server in this process:
 * Status replies mapped to codes and messages, paths and query escaping, the retry policy
 * (429 with Retry-After, 5xx, create with generateName never repeated after an ambiguous
 * failure, a rotated token re-read after 401), pagination (and the unpaginated relist when a
 * continue token expires), bounded bodies, connection refused, and the watch machinery:
 * events over a chunked stream, list+watch with a relist after an ERROR 410 event, and the
 * informer's callbacks and cache through that relist.
 *
 * The server speaks plain HTTP/1.1 on 127.0.0.1 (TLS is covered by the integration tests
 * against the emulator); one thread per connection, since the client keeps its pooled
 * connection open while a watch opens another.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "json.h"
#include "kube_client.h"
#include "kube_informer.h"
#include "kube_private.h"
#include "kube_watch.h"

/* ---- scripted server ---- */

struct req {
    char method[16];
    char path[1024];
    char auth[256];
    char ctype[128];
    char body[8192];
};

typedef void (*handler_fn)(const struct req *rq, int fd, unsigned n);

static struct {
    int lfd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    handler_fn handler;
    unsigned requests; /* counted per test */
    struct req last[32];
} srv;

static void send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void respond(int fd, int status, const char *extra_headers, const char *body)
{
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s\r\n",
                     status, blen, extra_headers ? extra_headers : "");
    send_all(fd, head, (size_t)n);
    if (blen)
        send_all(fd, body, blen);
}

static void status_body(int fd, int code, const char *reason, const char *message,
                        const char *extra)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"%s\","
             "\"reason\":\"%s\",\"code\":%d}",
             message, reason, code);
    respond(fd, code, extra, body);
}

static void chunked_start(int fd)
{
    static const char head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, head, sizeof(head) - 1);
}

static void chunk(int fd, const char *data, size_t len)
{
    char h[32];
    int n = snprintf(h, sizeof(h), "%zx\r\n", len);
    send_all(fd, h, (size_t)n);
    send_all(fd, data, len);
    send_all(fd, "\r\n", 2);
}

static void chunked_end(int fd)
{
    send_all(fd, "0\r\n\r\n", 5);
}

/* Reads one request; returns false at EOF. */
static bool read_request(int fd, struct req *rq)
{
    char buf[16384];
    size_t len = 0, clen = 0;
    char *end, *p;

    memset(rq, 0, sizeof(*rq));
    for (;;) {
        ssize_t n;
        buf[len] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")))
            break;
        if (len + 1 >= sizeof(buf))
            return false;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
    }
    sscanf(buf, "%15s %1023s", rq->method, rq->path);
    for (p = strstr(buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "Authorization: ", 15) == 0)
            sscanf(p + 17, "%255[^\r]", rq->auth);
        if (strncasecmp(p + 2, "Content-Type: ", 14) == 0)
            sscanf(p + 16, "%127[^\r]", rq->ctype);
        if (strncasecmp(p + 2, "Content-Length: ", 16) == 0)
            clen = strtoul(p + 18, NULL, 10);
    }
    {
        size_t have = len - (size_t)(end + 4 - buf);
        size_t take = MIN(clen, sizeof(rq->body) - 1);
        memcpy(rq->body, end + 4, MIN(have, take));
        while (have < clen) {
            char tmp[4096];
            ssize_t n = recv(fd, tmp, MIN(sizeof(tmp), clen - have), 0);
            if (n <= 0)
                return false;
            if (have < take)
                memcpy(rq->body + have, tmp, MIN((size_t)n, take - have));
            have += (size_t)n;
        }
    }
    return true;
}

static void *conn_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct req rq;

    while (read_request(fd, &rq)) {
        unsigned n;
        handler_fn h;
        pthread_mutex_lock(&srv.lock);
        n = srv.requests++;
        if (n < ARRAY_SIZE(srv.last))
            srv.last[n] = rq;
        h = srv.handler;
        pthread_mutex_unlock(&srv.lock);
        if (!h)
            break;
        h(&rq, fd, n);
    }
    close(fd);
    return NULL;
}

static void *accept_thread(void *arg)
{
    for (;;) {
        int fd = accept(srv.lfd, NULL, NULL);
        pthread_t t;
        if (fd < 0)
            return NULL;
        pthread_create(&t, NULL, conn_thread, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static void set_handler(handler_fn h)
{
    pthread_mutex_lock(&srv.lock);
    srv.handler = h;
    srv.requests = 0;
    memset(srv.last, 0, sizeof(srv.last));
    pthread_mutex_unlock(&srv.lock);
}

static unsigned requests(void)
{
    unsigned n;
    pthread_mutex_lock(&srv.lock);
    n = srv.requests;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static char tmpdir[256];

static int group_setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);

    pthread_mutex_init(&srv.lock, NULL);
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(srv.lfd >= 0);
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(srv.lfd, 64), 0);
    assert_int_equal(getsockname(srv.lfd, (struct sockaddr *)&a, &al), 0);
    srv.port = ntohs(a.sin_port);
    pthread_create(&srv.thread, NULL, accept_thread, NULL);
    pthread_detach(srv.thread);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kube_client.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[600];
    shutdown(srv.lfd, SHUT_RDWR);
    close(srv.lfd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A client for the scripted server; token_file NULL uses the literal token "tok". */
static struct kube_client *client_for(int port, const char *token_file, size_t max_response)
{
    char path[512], text[1024];
    struct kube_config *cfg = NULL;
    struct kube_client *c = NULL;
    ord_err e = {0};
    FILE *f;

    snprintf(path, sizeof(path), "%s/kc", tmpdir);
    snprintf(text, sizeof(text),
             "current-context: t\n"
             "clusters: [{name: s, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
             "contexts: [{name: t, context: {cluster: s, user: u, namespace: ns1}}]\n"
             "users: [{name: u, user: {%s: %s}}]\n",
             port, token_file ? "tokenFile" : "token", token_file ? token_file : "tok");
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    if (kube_config_from_file(path, NULL, &cfg, &e) < 0)
        fail_msg("config: %s", e.msg);
    if (kube_client_new(cfg,
                        &(struct kube_client_opts){.backoff_base_ms = 1,
                                                   .backoff_cap_ms = 20,
                                                   .max_attempts = 4,
                                                   .deadline_ms = 20000,
                                                   .timeout_ms = 5000,
                                                   .max_response = max_response},
                        &c, &e) < 0)
        fail_msg("client: %s", e.msg);
    return c;
}

/* ---- pure functions ---- */

static void test_status_mapping(void **state)
{
    assert_int_equal(kube_status_to_errno(200, NULL), 0);
    assert_int_equal(kube_status_to_errno(201, "Created"), 0);
    assert_int_equal(kube_status_to_errno(400, "BadRequest"), KUBE_E_BAD_REQUEST);
    assert_int_equal(kube_status_to_errno(401, "Unauthorized"), KUBE_E_UNAUTHORIZED);
    assert_int_equal(kube_status_to_errno(403, "Forbidden"), KUBE_E_FORBIDDEN);
    assert_int_equal(kube_status_to_errno(404, "NotFound"), KUBE_E_NOT_FOUND);
    assert_int_equal(kube_status_to_errno(405, "MethodNotAllowed"), KUBE_E_METHOD);
    assert_int_equal(kube_status_to_errno(409, "AlreadyExists"), KUBE_E_ALREADY_EXISTS);
    assert_int_equal(kube_status_to_errno(409, "Conflict"), KUBE_E_CONFLICT);
    assert_int_equal(kube_status_to_errno(409, NULL), KUBE_E_CONFLICT);
    assert_int_equal(kube_status_to_errno(410, "Expired"), KUBE_E_GONE);
    assert_int_equal(kube_status_to_errno(410, "Gone"), KUBE_E_GONE);
    assert_int_equal(kube_status_to_errno(413, "RequestEntityTooLarge"), KUBE_E_TOO_LARGE);
    assert_int_equal(kube_status_to_errno(422, "Invalid"), KUBE_E_INVALID);
    assert_int_equal(kube_status_to_errno(429, "TooManyRequests"), KUBE_E_THROTTLED);
    assert_int_equal(kube_status_to_errno(500, "InternalError"), KUBE_E_SERVER);
    assert_int_equal(kube_status_to_errno(503, "ServiceUnavailable"), KUBE_E_SERVER);
    assert_int_equal(kube_status_to_errno(504, "Timeout"), KUBE_E_TIMEOUT);
    assert_int_equal(kube_status_to_errno(500, "ServerTimeout"), KUBE_E_TIMEOUT);
    assert_int_equal(kube_status_to_errno(418, NULL), -EPROTO);
    /* All distinct, so callers can test them without the reason. */
    {
        const int codes[] = {KUBE_E_BAD_REQUEST, KUBE_E_UNAUTHORIZED, KUBE_E_FORBIDDEN,
                             KUBE_E_NOT_FOUND,   KUBE_E_METHOD,       KUBE_E_ALREADY_EXISTS,
                             KUBE_E_CONFLICT,    KUBE_E_GONE,         KUBE_E_TOO_LARGE,
                             KUBE_E_INVALID,     KUBE_E_THROTTLED,    KUBE_E_SERVER,
                             KUBE_E_TIMEOUT,     KUBE_E_TLS,          KUBE_E_CANCELED};
        for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
            for (size_t j = i + 1; j < ARRAY_SIZE(codes); j++)
                assert_int_not_equal(codes[i], codes[j]);
    }
    assert_true(kube_errno_is_transient(KUBE_E_THROTTLED));
    assert_true(kube_errno_is_transient(-ECONNREFUSED));
    assert_false(kube_errno_is_transient(KUBE_E_NOT_FOUND));
    assert_false(kube_errno_is_transient(KUBE_E_TLS));
}

static void path_is(const struct kube_res *r, const char *ns, const char *name, const char *sub,
                    const char *want)
{
    _cleanup_free_ char *p = NULL;
    assert_int_equal(kube_path(r, ns, name, sub, &p), 0);
    assert_string_equal(p, want);
}

static void test_paths(void **state)
{
    _cleanup_free_ char *q = NULL, *q2 = NULL;
    char *p = NULL;

    path_is(&KUBE_RES_PODS, "db", NULL, NULL, "/api/v1/namespaces/db/pods");
    path_is(&KUBE_RES_PODS, NULL, NULL, NULL, "/api/v1/pods");
    path_is(&KUBE_RES_PODS, "", NULL, NULL, "/api/v1/pods");
    path_is(&KUBE_RES_PERSISTENTVOLUMECLAIMS, "db", "data-web-0", "status",
            "/api/v1/namespaces/db/persistentvolumeclaims/data-web-0/status");
    path_is(&KUBE_RES_PERSISTENTVOLUMES, "ignored", "pvc-1", NULL,
            "/api/v1/persistentvolumes/pvc-1");
    path_is(&KUBE_RES_STATEFULSETS, "db", "web", "scale",
            "/apis/apps/v1/namespaces/db/statefulsets/web/scale");
    path_is(&KUBE_RES_STORAGECLASSES, NULL, "local", NULL,
            "/apis/storage.k8s.io/v1/storageclasses/local");
    path_is(&KUBE_RES_VOLUMETASKS, "ordinal", NULL, NULL,
            "/apis/ordinal.dev/v1alpha1/namespaces/ordinal/volumetasks");
    path_is(&KUBE_RES_NODES, NULL, "a/b?c", NULL, "/api/v1/nodes/a%2Fb%3Fc");
    assert_int_equal(kube_path(&KUBE_RES_NODES, NULL, "..", NULL, &p), -EINVAL);
    assert_int_equal(kube_path(&KUBE_RES_NODES, NULL, "", NULL, &p), -EINVAL);
    assert_int_equal(kube_path(&KUBE_RES_NODES, NULL, NULL, "status", &p), -EINVAL);
    assert_int_equal(kube_path(&KUBE_RES_PODS, ".", "x", NULL, &p), -EINVAL);
    assert_null(p);

    assert_int_equal(kube_path_query("/api/v1/pods", &q, "labelSelector", "app=web,tier!=db",
                                     "fieldSelector", NULL, "limit", "5", NULL),
                     0);
    assert_string_equal(q, "/api/v1/pods?labelSelector=app%3Dweb%2Ctier%21%3Ddb&limit=5");
    assert_int_equal(kube_path_query(q, &q2, "continue", "a b&c=d", NULL), 0);
    assert_string_equal(q2, "/api/v1/pods?labelSelector=app%3Dweb%2Ctier%21%3Ddb&limit=5"
                            "&continue=a%20b%26c%3Dd");
}

static void test_backoff(void **state)
{
    for (unsigned a = 0; a < 40; a++) {
        long d = kube_backoff_ms(100, 5000, a);
        assert_true(d >= 0);
        assert_true(d <= MIN(5000L, 100L << MIN(a, 20u)));
    }
    /* Full jitter: not always the ceiling. */
    {
        bool below = false;
        for (int i = 0; i < 100; i++)
            below |= kube_backoff_ms(1000, 1000, 3) < 900;
        assert_true(below);
    }
}

/* ---- requests ---- */

static const char pod_a[] = "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\","
                            "\"resourceVersion\":\"5\",\"uid\":\"u-a\"}}";

static void h_get_ok(const struct req *rq, int fd, unsigned n)
{
    respond(fd, 200, NULL, pod_a);
}

static void test_get_and_headers(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    ord_err e = {0};

    set_handler(h_get_ok);
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, "ns1", "a", &obj, &e), 0);
    assert_string_equal(json_string(obj, "metadata.name"), "a");
    assert_int_equal(requests(), 1);
    assert_string_equal(srv.last[0].method, "GET");
    assert_string_equal(srv.last[0].path, "/api/v1/namespaces/ns1/pods/a");
    assert_string_equal(srv.last[0].auth, "Bearer tok");
    assert_string_equal(kube_client_namespace(c), "ns1");
    /* A namespaced object without a namespace is refused before any request. */
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, NULL, "a", &obj, &e), -EINVAL);
    assert_int_equal(requests(), 1);
}

static void h_status(const struct req *rq, int fd, unsigned n)
{
    if (strstr(rq->path, "/missing"))
        status_body(fd, 404, "NotFound", "pods \\\"missing\\\" not found", NULL);
    else if (strcmp(rq->method, "POST") == 0)
        status_body(fd, 409, "AlreadyExists", "pods \\\"a\\\" already exists", NULL);
    else if (strcmp(rq->method, "PUT") == 0)
        status_body(fd, 409, "Conflict",
                    "Operation cannot be fulfilled on pods \\\"a\\\": the object has been "
                    "modified; please apply your changes to the latest version and try again",
                    NULL);
    else if (strcmp(rq->method, "PATCH") == 0)
        status_body(fd, 422, "Invalid", "Pod \\\"a\\\" is invalid: spec: Forbidden", NULL);
    else if (strcmp(rq->method, "DELETE") == 0)
        respond(fd, 403, NULL, "<html>nope</html>");
    else
        respond(fd, 200, NULL, pod_a);
}

static void test_status_errors(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL, *patch = NULL;
    struct kube_resp resp;
    ord_err e = {0};

    set_handler(h_status);
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, "ns1", "missing", &obj, &e), KUBE_E_NOT_FOUND);
    assert_null(obj);
    assert_string_equal(e.msg, "GET /api/v1/namespaces/ns1/pods/missing: 404 NotFound: "
                               "pods \"missing\" not found");
    assert_int_equal(requests(), 1); /* not retried */

    assert_int_equal(json_parse(pod_a, strlen(pod_a), &obj, NULL), 0);
    assert_int_equal(kube_create(c, &KUBE_RES_PODS, "ns1", obj, NULL, &e), KUBE_E_ALREADY_EXISTS);
    assert_non_null(strstr(e.msg, "already exists"));
    assert_int_equal(kube_update(c, &KUBE_RES_PODS, "ns1", obj, NULL, &e), KUBE_E_CONFLICT);
    assert_non_null(strstr(e.msg, "409 Conflict: Operation cannot be fulfilled"));
    assert_string_equal(srv.last[2].path, "/api/v1/namespaces/ns1/pods/a");
    assert_int_equal(requests(), 3);

    patch = cJSON_Parse("{\"metadata\":{\"labels\":{\"x\":null}}}");
    assert_int_equal(kube_patch(c, &KUBE_RES_PODS, "ns1", "a", "status", patch, NULL, &e),
                     KUBE_E_INVALID);
    assert_string_equal(srv.last[3].ctype, "application/merge-patch+json");
    assert_string_equal(srv.last[3].path, "/api/v1/namespaces/ns1/pods/a/status");
    assert_string_equal(srv.last[3].body, "{\"metadata\":{\"labels\":{\"x\":null}}}");

    assert_int_equal(
        kube_delete(c, &KUBE_RES_PODS, "ns1", "a",
                    &(struct kube_delete_opts){.precondition_uid = "u-a",
                                               .grace_period_seconds = KUBE_DELETE_NOW},
                    NULL, &e),
        KUBE_E_FORBIDDEN);
    assert_non_null(strstr(e.msg, "403 Forbidden: <html>nope</html> (check the RBAC rules"));
    assert_non_null(strstr(srv.last[4].body, "\"preconditions\":{\"uid\":\"u-a\"}"));
    assert_non_null(strstr(srv.last[4].body, "\"gracePeriodSeconds\":0"));

    /* The generic request exposes the HTTP code and reason. */
    assert_int_equal(
        kube_request(c,
                     &(struct kube_req){.method = "PUT", .path = "/x", .body = "{}", .body_len = 2},
                     &resp, &e),
        KUBE_E_CONFLICT);
    assert_int_equal(resp.http_status, 409);
    assert_string_equal(resp.reason, "Conflict");
    assert_string_equal(json_string(resp.body, "kind"), "Status");
    kube_resp_done(&resp);
}

static void h_throttle_once(const struct req *rq, int fd, unsigned n)
{
    if (n == 0)
        status_body(fd, 429, "TooManyRequests", "slow down", "Retry-After: 1\r\n");
    else
        respond(fd, 200, NULL, pod_a);
}

static void test_retry_after(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    ord_err e = {0};
    int64_t t0 = kube_now_ms();

    set_handler(h_throttle_once);
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, "ns1", "a", &obj, &e), 0);
    assert_int_equal(requests(), 2);
    /* The client's own backoff is at most 20 ms here: only Retry-After explains a 1 s wait. */
    assert_true(kube_now_ms() - t0 >= 950);
}

static void h_5xx_twice(const struct req *rq, int fd, unsigned n)
{
    if (n < 2)
        status_body(fd, n == 0 ? 500 : 503, "InternalError", "etcd hiccup", NULL);
    else
        respond(fd, 201, NULL, pod_a);
}

static void h_5xx_always(const struct req *rq, int fd, unsigned n)
{
    status_body(fd, 500, "InternalError", "still broken", NULL);
}

static void test_retry_5xx_and_create_policy(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(cJSON_Deletep) cJSON *named = NULL, *generated = NULL;
    struct kube_resp resp;
    ord_err e = {0};

    named = cJSON_Parse("{\"metadata\":{\"name\":\"a\"}}");
    generated = cJSON_Parse("{\"metadata\":{\"generateName\":\"ev-\"}}");

    set_handler(h_5xx_twice);
    assert_int_equal(kube_create(c, &KUBE_RES_PODS, "ns1", named, NULL, &e), 0);
    assert_int_equal(requests(), 3);

    /* generateName: a repeat could create a second object, so a 5xx is final. */
    set_handler(h_5xx_twice);
    assert_int_equal(kube_create(c, &KUBE_RES_PODS, "ns1", generated, NULL, &e), KUBE_E_SERVER);
    assert_int_equal(requests(), 1);
    assert_non_null(strstr(e.msg, "500 InternalError: etcd hiccup"));

    /* A 429 is safe to repeat even then: the server did nothing. */
    set_handler(h_throttle_once);
    assert_int_equal(kube_create(c, &KUBE_RES_PODS, "ns1", generated, NULL, &e), 0);
    assert_int_equal(requests(), 2);

    /* Bounded attempts, and the message says how many. */
    set_handler(h_5xx_always);
    assert_int_equal(
        kube_request(c, &(struct kube_req){.method = "GET", .path = "/api/v1/pods"}, &resp, &e),
        KUBE_E_SERVER);
    assert_int_equal(resp.attempts, 4);
    assert_int_equal(requests(), 4);
    assert_non_null(strstr(e.msg, "after 4 attempts"));
    kube_resp_done(&resp);

    set_handler(h_5xx_always);
    assert_int_equal(
        kube_request(c,
                     &(struct kube_req){.method = "GET", .path = "/api/v1/pods", .no_retry = true},
                     &resp, &e),
        KUBE_E_SERVER);
    assert_int_equal(requests(), 1);
    kube_resp_done(&resp);
}

static void h_token(const struct req *rq, int fd, unsigned n)
{
    if (strcmp(rq->auth, "Bearer new-1") == 0)
        respond(fd, 200, NULL, pod_a);
    else
        status_body(fd, 401, "Unauthorized", "Unauthorized", NULL);
}

static void test_token_reread_on_401(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = NULL;
    _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
    char tokpath[512];
    struct stat st;
    struct timespec times[2];
    ord_err e = {0};
    FILE *f;

    snprintf(tokpath, sizeof(tokpath), "%s/token", tmpdir);
    f = fopen(tokpath, "w");
    fputs("old-1", f);
    fclose(f);
    c = client_for(srv.port, tokpath, 0);
    assert_int_equal(stat(tokpath, &st), 0);

    /* Same size, same inode, same mtime: only the 401 tells the client to look again. */
    f = fopen(tokpath, "r+");
    fputs("new-1", f);
    fclose(f);
    times[0] = st.st_atim;
    times[1] = st.st_mtim;
    assert_int_equal(utimensat(AT_FDCWD, tokpath, times, 0), 0);

    set_handler(h_token);
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, "ns1", "a", &obj, &e), 0);
    assert_int_equal(requests(), 2);
    assert_string_equal(srv.last[0].auth, "Bearer old-1");
    assert_string_equal(srv.last[1].auth, "Bearer new-1");

    /* A token that stays wrong: one re-read, then the error a person reads. */
    f = fopen(tokpath, "w");
    fputs("bogus", f);
    fclose(f);
    set_handler(h_token);
    assert_int_equal(kube_get(c, &KUBE_RES_PODS, "ns1", "a", NULL, &e), KUBE_E_UNAUTHORIZED);
    assert_int_equal(requests(), 2);
    assert_non_null(strstr(e.msg, "401 Unauthorized: the API server at http://127.0.0.1:"));
    assert_non_null(strstr(e.msg, "rejected the credentials from kubeconfig"));
}

static void h_big(const struct req *rq, int fd, unsigned n)
{
    static char body[70000];
    memset(body, ' ', sizeof(body) - 3);
    body[0] = '{';
    body[sizeof(body) - 2] = '}';
    body[sizeof(body) - 1] = '\0';
    respond(fd, 200, NULL, body);
}

static void test_body_bound_and_refused(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 65536);
    _cleanup_(kube_client_freep) struct kube_client *dead = NULL;
    struct kube_resp resp;
    ord_err e = {0};
    int port;

    set_handler(h_big);
    assert_int_equal(kube_get(c, &KUBE_RES_NODES, NULL, "n", NULL, &e), -EFBIG);
    assert_non_null(strstr(e.msg, "larger than 65536 bytes"));

    /* A port nobody listens on: bind one, close it. */
    {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
        port = ntohs(a.sin_port);
        close(fd);
    }
    dead = client_for(port, NULL, 0);
    assert_int_equal(
        kube_request(dead, &(struct kube_req){.method = "GET", .path = "/version"}, &resp, &e),
        -ECONNREFUSED);
    assert_int_equal(resp.attempts, 4);
    assert_non_null(strstr(e.msg, "connection refused to http://127.0.0.1:"));
    kube_resp_done(&resp);
}

/* ---- lists ---- */

static void h_pages(const struct req *rq, int fd, unsigned n)
{
    if (!strstr(rq->path, "continue="))
        respond(fd, 200, NULL,
                "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":"
                "\"c1\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}");
    else if (strstr(rq->path, "continue=c1"))
        respond(fd, 200, NULL,
                "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":"
                "\"c2\"},\"items\":[{\"metadata\":{\"name\":\"b\"}}]}");
    else
        respond(fd, 200, NULL,
                "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":"
                "[{\"metadata\":{\"name\":\"c\"}}]}");
}

static void h_pages_expire(const struct req *rq, int fd, unsigned n)
{
    if (strstr(rq->path, "continue="))
        status_body(fd, 410, "Expired", "The provided continue parameter is too old", NULL);
    else if (strstr(rq->path, "limit="))
        respond(fd, 200, NULL,
                "{\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"c1\"},\"items\":"
                "[{\"metadata\":{\"name\":\"a\"}}]}");
    else
        respond(fd, 200, NULL,
                "{\"metadata\":{\"resourceVersion\":\"12\"},\"items\":[{\"metadata\":{\"name\":"
                "\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}");
}

static void test_list_pages(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(cJSON_Deletep) cJSON *list = NULL;
    ord_err e = {0};

    set_handler(h_pages);
    assert_int_equal(kube_list(c, &KUBE_RES_PODS, "ns1",
                               &(struct kube_list_opts){.limit = 1, .label_selector = "app=x"},
                               &list, &e),
                     0);
    assert_int_equal(json_array_len(json_path(list, "items")), 3);
    assert_string_equal(json_string(json_index(json_path(list, "items"), 2), "metadata.name"), "c");
    assert_string_equal(json_string(list, "metadata.resourceVersion"), "10");
    assert_null(json_path(list, "metadata.continue"));
    assert_string_equal(srv.last[0].path,
                        "/api/v1/namespaces/ns1/pods?labelSelector=app%3Dx&limit=1");
    assert_string_equal(srv.last[1].path,
                        "/api/v1/namespaces/ns1/pods?labelSelector=app%3Dx&limit=1&continue=c1");
    cJSON_Delete(TAKE_PTR(list));

    set_handler(h_pages_expire);
    assert_int_equal(
        kube_list(c, &KUBE_RES_PODS, NULL, &(struct kube_list_opts){.limit = 1}, &list, &e), 0);
    assert_int_equal(requests(), 3);
    assert_string_equal(srv.last[2].path, "/api/v1/pods");
    assert_int_equal(json_array_len(json_path(list, "items")), 2);
    assert_string_equal(json_string(list, "metadata.resourceVersion"), "12");
}

/* ---- watch ---- */

static const char watch_events[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\",\"namespace\":\"ns1\","
    "\"resourceVersion\":\"11\",\"uid\":\"u-c\"}}}\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\","
    "\"resourceVersion\":\"13\",\"uid\":\"u-a\"}}}\n";

static void h_watch_once(const struct req *rq, int fd, unsigned n)
{
    size_t len = strlen(watch_events);
    chunked_start(fd);
    /* Awkward chunk boundaries: inside the first event, across the second. */
    chunk(fd, watch_events, 17);
    chunk(fd, watch_events + 17, 120);
    chunk(fd, watch_events + 137, len - 137);
    chunked_end(fd);
}

struct counted {
    unsigned n;
    enum kube_event_type types[8];
};

static int count_event(struct kube_event *ev, void *userdata)
{
    struct counted *c = userdata;
    if (c->n < 8)
        c->types[c->n] = ev->type;
    c->n++;
    return 0;
}

static void test_watch_once(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    struct counted seen = {0};
    ord_err e = {0};

    set_handler(h_watch_once);
    assert_int_equal(
        kube_watch_once(c, &KUBE_RES_PODS, "ns1", "10",
                        &(struct kube_watch_opts){.timeout_seconds = 30, .label_selector = "a=b"},
                        count_event, &seen, &e),
        0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.types[1], KUBE_EVENT_BOOKMARK);
    assert_string_equal(srv.last[0].path,
                        "/api/v1/namespaces/ns1/pods?labelSelector=a%3Db&watch=1&"
                        "resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=30");
}

/*
 * list (a, b @10) -> watch from 10: ADDED c, BOOKMARK 12, MODIFIED a, then ERROR 410 ->
 * relist (a', c' @20; b vanished) -> watch from 20: stays open until the test stops it.
 */
static void h_reflector(const struct req *rq, int fd, unsigned n)
{
    static const char gone[] =
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
        "\"Failure\",\"message\":\"too old resource version: 13 (19)\",\"reason\":\"Expired\","
        "\"code\":410}}\n";

    if (!strstr(rq->path, "watch=1")) {
        if (n == 0)
            respond(fd, 200, NULL,
                    "{\"metadata\":{\"resourceVersion\":\"10\"},\"items\":["
                    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\",\"resourceVersion\":"
                    "\"5\",\"uid\":\"u-a\"}},"
                    "{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns1\",\"resourceVersion\":"
                    "\"6\",\"uid\":\"u-b\"}}]}");
        else
            respond(fd, 200, NULL,
                    "{\"metadata\":{\"resourceVersion\":\"20\"},\"items\":["
                    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\",\"resourceVersion\":"
                    "\"13\",\"uid\":\"u-a\"}},"
                    "{\"metadata\":{\"name\":\"c\",\"namespace\":\"ns1\",\"resourceVersion\":"
                    "\"18\",\"uid\":\"u-c\"}}]}");
        return;
    }
    chunked_start(fd);
    if (strstr(rq->path, "resourceVersion=10")) {
        chunk(fd, watch_events, strlen(watch_events));
        chunk(fd, gone, strlen(gone));
        chunked_end(fd);
        return;
    }
    /* The second watch: idle until the client hangs up. */
    {
        char b;
        while (recv(fd, &b, 1, 0) > 0)
            ;
    }
}

struct log {
    pthread_mutex_t lock;
    char text[2048];
    unsigned synced;
    atomic_bool *stop_after_relist;
    unsigned lists;
};

static void logf_(struct log *l, const char *fmt, ...) _printf_(2, 3);
static void logf_(struct log *l, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    pthread_mutex_lock(&l->lock);
    n = strlen(l->text);
    va_start(ap, fmt);
    vsnprintf(l->text + n, sizeof(l->text) - n, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&l->lock);
}

static int lw_list(cJSON *list, const char *rv, void *userdata)
{
    struct log *l = userdata;
    logf_(l, "list@%s:%zu ", rv, json_array_len(json_path(list, "items")));
    if (++l->lists == 2)
        atomic_store(l->stop_after_relist, true);
    return 0;
}

static int lw_event(struct kube_event *ev, void *userdata)
{
    logf_(userdata, "%s:%s ", kube_event_type_name(ev->type),
          json_string(ev->object, "metadata.name"));
    return 0;
}

static void lw_error(int r, const ord_err *e, void *userdata)
{
    logf_(userdata, "error(%s) ", r == KUBE_E_GONE ? "gone" : "other");
}

static void test_list_watch_relist(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    atomic_bool stop = false;
    struct log l = {.lock = PTHREAD_MUTEX_INITIALIZER, .stop_after_relist = &stop};
    ord_err e = {0};

    set_handler(h_reflector);
    assert_int_equal(kube_list_watch(c, &KUBE_RES_PODS, "ns1",
                                     &(struct kube_watch_opts){.stop = &stop, .backoff_base_ms = 1},
                                     &(struct kube_watch_handler){.on_list = lw_list,
                                                                  .on_event = lw_event,
                                                                  .on_error = lw_error},
                                     &l, &e),
                     0);
    assert_string_equal(l.text, "list@10:2 ADDED:c MODIFIED:a error(gone) list@20:2 ");
    assert_non_null(strstr(srv.last[1].path, "resourceVersion=10&allowWatchBookmarks=true"));
}

struct inf_log {
    struct log l;
    struct kube_informer *inf;
};

static void inf_add(struct kube_obj *o, void *userdata)
{
    logf_(userdata, "add:%s@%s ", kube_obj_name(o), kube_obj_resource_version(o));
}

static void inf_update(struct kube_obj *old, struct kube_obj *new, void *userdata)
{
    logf_(userdata, "update:%s@%s->%s ", kube_obj_name(new), kube_obj_resource_version(old),
          kube_obj_resource_version(new));
}

static void inf_delete(struct kube_obj *o, void *userdata)
{
    struct inf_log *il = userdata;
    logf_(userdata, "delete:%s ", kube_obj_name(o));
    /* The relist is the last thing the scripted server offers: stop after it. */
    if (streq(kube_obj_name(o), "b"))
        kube_informer_stop(il->inf);
}

static void inf_synced(void *userdata)
{
    logf_(userdata, "synced ");
}

static void test_informer(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(kube_informer_freep) struct kube_informer *inf = NULL;
    struct inf_log il = {.l = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    ord_err e = {0};

    set_handler(h_reflector);
    assert_int_equal(kube_informer_new(c,
                                       &(struct kube_informer_opts){
                                           .res = &KUBE_RES_PODS,
                                           .ns = "ns1",
                                           .on_add = inf_add,
                                           .on_update = inf_update,
                                           .on_delete = inf_delete,
                                           .on_synced = inf_synced,
                                           .userdata = &il,
                                           .backoff_base_ms = 1,
                                       },
                                       &inf, &e),
                     0);
    il.inf = inf;
    assert_int_equal(kube_informer_start(inf, &e), 0);
    assert_int_equal(kube_informer_wait_synced(inf, 10000), 0);
    assert_true(kube_informer_synced(inf));
    /* Wait for the informer to stop itself after the relist. */
    for (int i = 0; i < 500 && !strstr(il.l.text, "delete:b"); i++)
        usleep(10000);
    kube_informer_free(TAKE_PTR(inf));
    inf = NULL;

    assert_string_equal(il.l.text, "add:a@5 add:b@6 synced add:c@11 update:a@5->13 "
                                   "update:c@11->18 delete:b ");
}

/* The cache itself, read while the informer runs: lookups, the sorted snapshot, references. */
static void test_informer_cache(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(kube_informer_freep) struct kube_informer *inf = NULL;
    _cleanup_(kube_obj_unrefp) struct kube_obj *held = NULL;
    struct kube_obj **all = NULL, *o = NULL;
    size_t n = 0;
    char rv[32];
    ord_err e = {0};

    set_handler(h_reflector);
    assert_int_equal(
        kube_informer_new(
            c,
            &(struct kube_informer_opts){.res = &KUBE_RES_PODS, .ns = "ns1", .backoff_base_ms = 1},
            &inf, &e),
        0);
    assert_int_equal(kube_informer_start(inf, &e), 0);
    assert_int_equal(kube_informer_start(inf, &e), -EALREADY);
    assert_int_equal(kube_informer_wait_synced(inf, 10000), 0);
    /* Wait until the relist (rv 20) has been applied: the second watch then idles. */
    for (int i = 0; i < 500; i++) {
        kube_informer_resource_version(inf, rv, sizeof(rv));
        if (streq(rv, "20"))
            break;
        usleep(10000);
    }
    assert_string_equal(rv, "20");
    assert_int_equal(kube_informer_count(inf), 2);
    assert_int_equal(kube_informer_get(inf, "ns1", "b", &o), -ENOENT);
    assert_int_equal(kube_informer_get(inf, "ns1", "a", &held), 0);
    assert_string_equal(kube_obj_resource_version(held), "13");
    assert_string_equal(kube_obj_uid(held), "u-a");
    assert_string_equal(kube_obj_namespace(held), "ns1");
    assert_string_equal(json_string(kube_obj_data(held), "metadata.name"), "a");
    assert_int_equal(kube_informer_list(inf, &all, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(kube_obj_name(all[0]), "a");
    assert_string_equal(kube_obj_name(all[1]), "c");
    kube_obj_list_free(all, n);
    /* held outlives the informer. */
    kube_informer_free(TAKE_PTR(inf));
    assert_string_equal(kube_obj_name(held), "a");
}

/* With decode, the cache keeps typed structs; an object that does not decode is left out. */
struct mini_pod {
    char name[64];
    long rv;
};

static int decode_pod(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct mini_pod *p;
    const char *name = json_string(obj, "metadata.name");
    const char *rv = json_string(obj, "metadata.resourceVersion");

    if (!name || streq(name, "b"))
        return err_set(e, -EINVAL, "pod '%s' is not for us", name ? name : "");
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->rv = rv ? strtol(rv, NULL, 10) : 0;
    *ret = p;
    return 0;
}

static void count_errors(int r, const ord_err *e, void *userdata)
{
    if (r == -EINVAL && strstr(e->msg, "pod 'b' is not for us"))
        (*(unsigned *)userdata)++;
}

static void test_informer_decode(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = client_for(srv.port, NULL, 0);
    _cleanup_(kube_informer_freep) struct kube_informer *inf = NULL;
    _cleanup_(kube_obj_unrefp) struct kube_obj *a = NULL;
    const struct mini_pod *p;
    unsigned decode_errors = 0;
    char rv[32] = "";
    ord_err e = {0};

    set_handler(h_reflector);
    assert_int_equal(kube_informer_new(c,
                                       &(struct kube_informer_opts){.res = &KUBE_RES_PODS,
                                                                    .ns = "ns1",
                                                                    .decode = decode_pod,
                                                                    .free_data = free,
                                                                    .on_error = count_errors,
                                                                    .userdata = &decode_errors,
                                                                    .backoff_base_ms = 1},
                                       &inf, &e),
                     0);
    assert_int_equal(kube_informer_start(inf, &e), 0);
    assert_int_equal(kube_informer_wait_synced(inf, 10000), 0);
    for (int i = 0; i < 500 && !streq(rv, "20"); i++) {
        usleep(10000);
        kube_informer_resource_version(inf, rv, sizeof(rv));
    }
    assert_string_equal(rv, "20");
    assert_int_equal(decode_errors, 1);
    assert_int_equal(kube_informer_count(inf), 2);
    assert_int_equal(kube_informer_get(inf, "ns1", "a", &a), 0);
    p = kube_obj_data(a);
    assert_string_equal(p->name, "a");
    assert_int_equal(p->rv, 13);
}

/* Stopping does not wait for a list that retries against a server that is not there. */
static void test_informer_stops_during_list_retries(void **state)
{
    _cleanup_(kube_client_freep) struct kube_client *c = NULL;
    _cleanup_(kube_informer_freep) struct kube_informer *inf = NULL;
    ord_err e = {0};
    int64_t t0;
    int port;

    {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
        port = ntohs(a.sin_port);
        close(fd);
    }
    {
        /* Long backoff and deadline: only cancellation can end the list early. */
        char path[512];
        struct kube_config *cfg = NULL;
        FILE *f;
        snprintf(path, sizeof(path), "%s/kc-dead", tmpdir);
        f = fopen(path, "w");
        fprintf(f,
                "current-context: t\n"
                "clusters: [{name: s, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
                "contexts: [{name: t, context: {cluster: s}}]\n",
                port);
        fclose(f);
        assert_int_equal(kube_config_from_file(path, NULL, &cfg, &e), 0);
        assert_int_equal(kube_client_new(cfg,
                                         &(struct kube_client_opts){.backoff_base_ms = 30000,
                                                                    .backoff_cap_ms = 30000,
                                                                    .max_attempts = 10,
                                                                    .deadline_ms = 600000},
                                         &c, &e),
                         0);
    }
    assert_int_equal(
        kube_informer_new(c, &(struct kube_informer_opts){.res = &KUBE_RES_NODES}, &inf, &e), 0);
    assert_int_equal(kube_informer_start(inf, &e), 0);
    assert_int_equal(kube_informer_wait_synced(inf, 300), -ETIMEDOUT);
    t0 = kube_now_ms();
    kube_informer_stop(inf);
    assert_int_equal(kube_informer_wait_synced(inf, -1), -ECANCELED);
    kube_informer_free(TAKE_PTR(inf));
    assert_true(kube_now_ms() - t0 < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_get_and_headers),
        cmocka_unit_test(test_status_errors),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_retry_5xx_and_create_policy),
        cmocka_unit_test(test_token_reread_on_401),
        cmocka_unit_test(test_body_bound_and_refused),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_watch_once),
        cmocka_unit_test(test_list_watch_relist),
        cmocka_unit_test(test_informer),
        cmocka_unit_test(test_informer_cache),
        cmocka_unit_test(test_informer_decode),
        cmocka_unit_test(test_informer_stops_during_list_retries),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
