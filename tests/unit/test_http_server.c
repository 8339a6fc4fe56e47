/*
 * test_http_server.c - the libmicrohttpd adapter: addresses are checked before anything binds,
 * routes answer with their status and content type, unknown paths get 404, other methods 405
 * with Allow, headers over the limit are refused, and an address in use is a clear error.
 * Loopback only, port 0 (the kernel picks a free port).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "http_server.h"

static unsigned status_503 = 503;

static void hello(void *ud, struct http_reply *ret)
{
    ret->status = ud ? *(unsigned *)ud : 0;
    ret->content_type = "text/plain; version=0.0.4; charset=utf-8";
    ret->body = strdup("hello\n");
    ret->len = ret->body ? 6 : 0;
}

/* The port of "127.0.0.1:NNNN". */
static unsigned short port_of(const struct http_server *s)
{
    const char *colon = strrchr(http_server_address(s), ':');
    char *end;
    unsigned long p;

    assert_non_null(colon);
    p = strtoul(colon + 1, &end, 10);
    assert_true(*end == '\0' && p > 0 && p < 65536);
    return (unsigned short)p;
}

/* Sends request (len bytes) and reads the answer until the server closes; returns it. */
static char *exchange(unsigned short port, const char *request, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    size_t cap = 1 << 16, n = 0, off = 0;
    char *buf = calloc(1, cap + 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ssize_t k;

    assert_non_null(buf);
    assert_true(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    while (off < len) {
        k = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (k <= 0)
            break; /* the server refused mid-request and closed: read what it said */
        off += (size_t)k;
    }
    while (n < cap && (k = recv(fd, buf + n, cap - n, 0)) > 0)
        n += (size_t)k;
    close(fd);
    return buf;
}

static void test_addresses(void **state)
{
    ord_err e = {0};

    assert_int_equal(http_server_check_address(":9101", &e), 0);
    assert_int_equal(http_server_check_address("127.0.0.1:0", &e), 0);
    assert_int_equal(http_server_check_address("[::1]:9101", &e), 0);
    assert_int_equal(http_server_check_address("localhost:80", &e), 0);
    assert_int_equal(http_server_check_address("9101", &e), -EINVAL);
    assert_non_null(strstr(e.msg, "HOST:PORT"));
    assert_int_equal(http_server_check_address(":", &e), -EINVAL);
    assert_int_equal(http_server_check_address(":65536", &e), -EINVAL);
    assert_int_equal(http_server_check_address(":-1", &e), -EINVAL);
    assert_int_equal(http_server_check_address(":12ab", &e), -EINVAL);
    assert_int_equal(http_server_check_address("::1:80", &e), -EINVAL); /* unbracketed IPv6 */
    assert_int_equal(http_server_check_address("[::1]80", &e), -EINVAL);
    assert_int_equal(http_server_check_address("", &e), -EINVAL);
}

static void test_routes(void **state)
{
    const struct http_route routes[] = {{"/metrics", hello, NULL}, {"/readyz", hello, &status_503}};
    struct http_server *s = NULL;
    ord_err e = {0};
    char *ans, big[HTTP_SERVER_REQUEST_MAX * 2];
    unsigned short port;
    int n;

    assert_int_equal(http_server_start("127.0.0.1:0", routes, 2, &s, &e), 0);
    port = port_of(s);

    ans = exchange(port, "GET /metrics HTTP/1.0\r\n\r\n", 25);
    assert_true(strncmp(ans, "HTTP/1.0 200", 12) == 0 || strncmp(ans, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(ans, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(ans, "\r\n\r\nhello\n"));
    free(ans);

    ans = exchange(port, "GET /readyz HTTP/1.0\r\n\r\n", 24);
    assert_non_null(strstr(ans, " 503 "));
    free(ans);

    ans = exchange(port, "GET /metricsx HTTP/1.0\r\n\r\n", 26);
    assert_non_null(strstr(ans, " 404 "));
    free(ans);

    ans = exchange(port, "HEAD /metrics HTTP/1.0\r\n\r\n", 26);
    assert_non_null(strstr(ans, " 200 "));
    assert_null(strstr(ans, "hello")); /* HEAD: headers only */
    free(ans);

    ans = exchange(port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", 47);
    assert_non_null(strstr(ans, " 405 "));
    assert_non_null(strstr(ans, "Allow: GET, HEAD\r\n"));
    free(ans);

    /* Headers larger than the limit: refused (431) or the connection closed; never a 200. */
    n = snprintf(big, sizeof(big), "GET /metrics HTTP/1.0\r\nX-Big: ");
    memset(big + n, 'a', sizeof(big) - (size_t)n - 5);
    memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
    ans = exchange(port, big, sizeof(big) - 1);
    assert_null(strstr(ans, " 200 "));
    if (ans[0])
        assert_non_null(strstr(ans, " 431 "));
    free(ans);

    /* The server still answers after all that. */
    ans = exchange(port, "GET /metrics HTTP/1.0\r\n\r\n", 25);
    assert_non_null(strstr(ans, " 200 "));
    free(ans);

    /* The same address again: in use. */
    {
        char addr[HTTP_SERVER_ADDRESS_MAX];
        struct http_server *s2 = NULL;

        snprintf(addr, sizeof(addr), "%s", http_server_address(s));
        assert_int_equal(http_server_start(addr, routes, 2, &s2, &e), -EADDRINUSE);
        assert_non_null(strstr(e.msg, "cannot listen on"));
        assert_null(s2);
    }
    http_server_stop(s);
    http_server_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
