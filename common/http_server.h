/*
 * http_server.h - the small HTTP endpoint of the long-running programs (the provisioner and
 * the backup agent): /metrics, /healthz, /readyz for Prometheus and the kubelet's probes.
 *
 * The adapter of libmicrohttpd (only http_server.c includes microhttpd.h). The library runs
 * the endpoint in a thread of its own, polling every connection, so a slow or hostile client
 * delays nobody else and never the programs' main loops; handlers must therefore only read
 * state that is safe to read from another thread (the metrics registry's lock, atomics).
 *
 * Limits, because the port may be reachable from the whole cluster network: GET and HEAD only
 * (405 otherwise), a request's headers must fit HTTP_SERVER_REQUEST_MAX bytes (431 or a closed
 * connection otherwise), at most HTTP_SERVER_CONNECTIONS connections at once, and a connection
 * idle for HTTP_SERVER_IDLE_S seconds is closed.
 */
#ifndef ORDINAL_HTTP_SERVER_H
#define ORDINAL_HTTP_SERVER_H

#include <stddef.h>

#include "err.h"
#include "macro.h"

#define HTTP_SERVER_REQUEST_MAX  (16 * 1024)
#define HTTP_SERVER_CONNECTIONS  32
#define HTTP_SERVER_IDLE_S       10
#define HTTP_SERVER_ADDRESS_MAX  128

/* What a route answers. body is malloc'ed (or NULL for none) and freed by the server. */
struct http_reply {
    unsigned status;          /* 200 when left 0 */
    const char *content_type; /* static; "text/plain; charset=utf-8" when NULL */
    char *body;
    size_t len;
};

/* A path ("/metrics") and the function that answers it, in the server's thread. */
struct http_route {
    const char *path;
    void (*fn)(void *ud, struct http_reply *ret);
    void *ud;
};

struct http_server;

/*
 * Checks "HOST:PORT", ":PORT" (every address) or "[IPv6]:PORT" without binding anything, so
 * that a bad flag is a usage error. Returns 0 or -EINVAL with e saying why.
 */
int http_server_check_address(const char *address, ord_err *e);

/*
 * Binds address and starts serving routes (copied; their ud must outlive the server). Port 0
 * picks a free port: http_server_address() says which. Returns 0 with *ret, or a negative
 * errno (-EADDRINUSE, -EADDRNOTAVAIL, -EINVAL, -ENOMEM) with e saying why.
 */
int http_server_start(const char *address, const struct http_route *routes, size_t n_routes,
                      struct http_server **ret, ord_err *e);

/* The bound address, "127.0.0.1:9090" or "[::]:9090", for the log. */
const char *http_server_address(const struct http_server *s);

/* Stops the thread, closes every connection, frees. NULL is fine. */
void http_server_stop(struct http_server *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_server *, http_server_stop)

#endif
