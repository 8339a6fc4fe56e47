/*
 * http_server.c - the libmicrohttpd adapter (see http_server.h).
 *
 * We bind the listening socket ourselves and hand it to the library (MHD_OPTION_LISTEN_SOCKET):
 * that gives the caller a precise error for an address in use or not on this host, port 0 for
 * the tests, and the bound address for the log. The library then owns the socket and closes it
 * in MHD_stop_daemon().
 *
 * One internal thread polls every connection (MHD_USE_POLL_INTERNAL_THREAD): a client that
 * sends its request a byte a minute holds one slot until HTTP_SERVER_IDLE_S, not the thread.
 * The connection memory limit bounds what one request may send: headers that do not fit are
 * answered 431 by the library itself.
 *
 * The library is loaded with dlopen() when a server starts, not linked: Debian's libmicrohttpd
 * initialises GnuTLS in its constructor (MHD_init), which cost the provisioner 0.8 MiB of RSS
 * at start whether or not --metrics-address was given (15.0 -> 16.0 MiB holding 1,000 PVs in
 * tests/bench/provision.py, against a 16 MiB target). Only the header is used at build time.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http_server.h"
#include "log.h"

#define ROUTES_MAX 8
#define MHD_SONAME "libmicrohttpd.so.12"

/* The library's functions we call, resolved by load_mhd(). */
static struct {
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
    __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
    __typeof__(&MHD_add_response_header) add_response_header;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_destroy_response) destroy_response;
    char error[256]; /* why loading failed, "" when it did not */
} mhd;
static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;

static void *mhd_sym(void *h, const char *name)
{
    void *p = dlsym(h, name);

    if (!p && !mhd.error[0])
        snprintf(mhd.error, sizeof(mhd.error), "%s has no %s", MHD_SONAME, name);
    return p;
}

static void load_mhd_once(void)
{
    void *h = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);

    if (!h) {
        snprintf(mhd.error, sizeof(mhd.error), "%s", dlerror());
        return;
    }
    /* dlsym returns void *: the conversion to a function pointer is what POSIX guarantees */
    *(void **)&mhd.start_daemon = mhd_sym(h, "MHD_start_daemon");
    *(void **)&mhd.stop_daemon = mhd_sym(h, "MHD_stop_daemon");
    *(void **)&mhd.create_response_from_buffer = mhd_sym(h, "MHD_create_response_from_buffer");
    *(void **)&mhd.add_response_header = mhd_sym(h, "MHD_add_response_header");
    *(void **)&mhd.queue_response = mhd_sym(h, "MHD_queue_response");
    *(void **)&mhd.destroy_response = mhd_sym(h, "MHD_destroy_response");
    /* never dlclose'd: the server's thread runs its code until the process ends */
}

/* Loads libmicrohttpd once. Returns 0, or -ENOPKG with e saying what to install. */
static int load_mhd(ord_err *e)
{
    pthread_once(&mhd_once, load_mhd_once);
    if (mhd.error[0])
        return err_set(e, -ENOPKG,
                       "the HTTP server library cannot be loaded (%s): install libmicrohttpd12 "
                       "(Debian) or leave --metrics-address out",
                       mhd.error);
    return 0;
}

struct http_server {
    struct MHD_Daemon *d;
    struct http_route routes[ROUTES_MAX];
    size_t n_routes;
    char address[HTTP_SERVER_ADDRESS_MAX];
};

/* Splits address into host (empty for ":PORT") and port. Returns 0 or -EINVAL. */
static int split_address(const char *address, char *host, size_t host_size, char *port,
                         size_t port_size, ord_err *e)
{
    const char *colon, *h = address;
    size_t hl;
    char *end;
    unsigned long p;

    if (!address || !address[0])
        return err_set(e, -EINVAL, "the address is empty; give HOST:PORT or :PORT");
    if (address[0] == '[') {
        const char *close = strchr(address, ']');

        if (!close || close[1] != ':')
            return err_set(e, -EINVAL, "'%s' is not [IPv6]:PORT", address);
        h = address + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon || memchr(address, ':', (size_t)(colon - address)))
            return err_set(e, -EINVAL,
                           "'%s' is not HOST:PORT or :PORT (an IPv6 address goes in brackets)",
                           address);
        hl = (size_t)(colon - address);
    }
    if (hl >= host_size)
        return err_set(e, -EINVAL, "the host of '%s' is too long", address);
    errno = 0;
    p = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || p > 65535 || colon[1] == '-' || colon[1] == '+')
        return err_set(e, -EINVAL, "the port of '%s' is not a number from 0 to 65535", address);
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, port_size, "%lu", p);
    return 0;
}

int http_server_check_address(const char *address, ord_err *e)
{
    char host[HTTP_SERVER_ADDRESS_MAX], port[8];

    return split_address(address, host, sizeof(host), port, sizeof(port), e);
}

/* Binds and listens on address. Returns the socket, or a negative errno with e filled. */
static int bind_address(const char *address, char *bound, size_t bound_size, ord_err *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[HTTP_SERVER_ADDRESS_MAX], port[8], num[INET6_ADDRSTRLEN];
    int r, fd = -EBADF, one = 1;

    r = split_address(address, host, sizeof(host), port, sizeof(port), e);
    if (r < 0)
        return r;
    /* ":PORT" listens on every IPv4 address: kubelets and Prometheus reach pods over IPv4. */
    r = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &res);
    if (r != 0)
        return err_set(e, -EADDRNOTAVAIL, "cannot resolve '%s': %s", host, gai_strerror(r));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = err_set_errno(e, -errno, "cannot create a socket for '%s'", address);
        goto out;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        r = err_set_errno(e, -errno, "cannot listen on '%s'", address);
        goto out;
    }
    if (listen(fd, 64) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        r = err_set_errno(e, -errno, "cannot listen on '%s'", address);
        goto out;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &a->sin6_addr, num, sizeof(num));
        snprintf(bound, bound_size, "[%s]:%u", num, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &a->sin_addr, num, sizeof(num));
        snprintf(bound, bound_size, "%s:%u", num, ntohs(a->sin_port));
    }
    r = TAKE_FD(fd);
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return r;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype,
                               char *body, size_t len, const char *allow)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = mhd.create_response_from_buffer(len, body ? body : (char *)"",
                                           body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO; /* the library closes the connection */
    }
    (void)mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                  ctype ? ctype : "text/plain; charset=utf-8");
    if (allow)
        (void)mhd.add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    ret = mhd.queue_response(conn, status, resp);
    mhd.destroy_response(resp);
    return ret;
}

static char *text(const char *s, size_t *len)
{
    char *p = strdup(s);

    *len = p ? strlen(p) : 0;
    return p;
}

/*
 * Called by the library for each request (several times for one with a body). We answer at
 * the first call: nothing we serve takes a body, and a body is not read before a refusal.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    struct http_server *s = cls;
    size_t len;
    char *body;

    if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD)) {
        body = text("method not allowed\n", &len);
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, body, len, "GET, HEAD");
    }
    for (size_t i = 0; i < s->n_routes; i++) {
        struct http_reply rep = {0};

        if (!streq(url, s->routes[i].path))
            continue;
        s->routes[i].fn(s->routes[i].ud, &rep);
        return respond(conn, rep.status ? rep.status : MHD_HTTP_OK, rep.content_type, rep.body,
                       rep.len, NULL);
    }
    body = text("not found\n", &len);
    return respond(conn, MHD_HTTP_NOT_FOUND, NULL, body, len, NULL);
}

int http_server_start(const char *address, const struct http_route *routes, size_t n_routes,
                      struct http_server **ret, ord_err *e)
{
    _cleanup_free_ struct http_server *s = NULL;
    int fd;

    if (n_routes > ROUTES_MAX)
        return err_set(e, -EINVAL, "too many routes");
    fd = load_mhd(e);
    if (fd < 0)
        return fd;
    s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(e, -ENOMEM, "out of memory");
    memcpy(s->routes, routes, n_routes * sizeof(*routes));
    s->n_routes = n_routes;
    fd = bind_address(address, s->address, sizeof(s->address), e);
    if (fd < 0)
        return fd;
    /*
     * The thread inherits the caller's signal mask: the programs block SIGTERM/SIGINT before
     * they start us, so signals keep going to their sigwait().
     */
    s->d = mhd.start_daemon(MHD_USE_POLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_SERVER_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_SERVER_IDLE_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_SERVER_REQUEST_MAX,
                            MHD_OPTION_END);
    if (!s->d) {
        close(fd);
        return err_set(e, -EIO, "cannot start the HTTP server on '%s'", address);
    }
    *ret = TAKE_PTR(s);
    return 0;
}

const char *http_server_address(const struct http_server *s)
{
    return s->address;
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    if (s->d)
        mhd.stop_daemon(s->d);
    free(s);
}
