/*
 * test_s3_client.c - what the S3 client puts on the wire for an address, without a server: the
 * Host header and the URL/signed path in path style ("ENDPOINT/BUCKET/KEY") and in
 * virtual-hosted addressing ("BUCKET.ENDPOINT/KEY", the default), the scheme's default port
 * left out of Host, and the shape check of the test-only ORDINAL_S3_RESOLVE pin. The
 * virtual-hosted requests themselves are checked end to end (signature re-verified by botocore)
 * in tests/integration/test_backup_s3.py.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "s3_client.h"

static struct s3_client *client(const char *endpoint, bool path_style, int want)
{
    struct s3_config cfg = {.path_style = path_style};
    struct s3_client *c = NULL;
    ord_err e = {0};

    snprintf(cfg.endpoint, sizeof(cfg.endpoint), "%s", endpoint);
    snprintf(cfg.region, sizeof(cfg.region), "us-east-1");
    assert_int_equal(s3_client_new(&cfg, "ordinal-test", &c, &e), want);
    if (want < 0)
        assert_true(e.msg[0] != '\0');
    return c;
}

static void test_path_style(void **state)
{
    _cleanup_(s3_client_freep) struct s3_client *c = client("http://127.0.0.1:9000", true, 0);
    char url[512], path[256];

    assert_string_equal(s3_client_host(c), "127.0.0.1:9000");
    assert_int_equal(
        s3_client_url(c, "repo/a b+c", "list-type=2", url, sizeof(url), path, sizeof(path)), 0);
    assert_string_equal(url, "http://127.0.0.1:9000/ordinal-test/repo/a%20b%2Bc?list-type=2");
    assert_string_equal(path, "/ordinal-test/repo/a%20b%2Bc");
    assert_int_equal(s3_client_url(c, NULL, "", url, sizeof(url), path, sizeof(path)), 0);
    assert_string_equal(url, "http://127.0.0.1:9000/ordinal-test");
    assert_string_equal(path, "/ordinal-test");
    /* Too small a buffer is an error, never a truncated URL. */
    assert_int_equal(s3_client_url(c, "repo/x", NULL, url, 20, path, sizeof(path)), -ENAMETOOLONG);
}

static void test_virtual_hosted(void **state)
{
    _cleanup_(s3_client_freep) struct s3_client *c =
        client("https://s3.eu-west-3.amazonaws.com:443/", false, 0);
    _cleanup_(s3_client_freep) struct s3_client *local = client("http://localhost:9000", false, 0);
    char url[512], path[256];

    /* The bucket moves into the host; the default port stays out of Host. */
    assert_string_equal(s3_client_host(c), "ordinal-test.s3.eu-west-3.amazonaws.com");
    assert_int_equal(s3_client_url(c, "repo/a b", "partNumber=2&uploadId=x", url, sizeof(url), path,
                                   sizeof(path)),
                     0);
    assert_string_equal(url, "https://ordinal-test.s3.eu-west-3.amazonaws.com/repo/a%20b?"
                             "partNumber=2&uploadId=x");
    assert_string_equal(path, "/repo/a%20b");
    /* The bucket itself (ListObjectsV2, multi-object delete) is "/". */
    assert_int_equal(s3_client_url(c, NULL, "delete=", url, sizeof(url), path, sizeof(path)), 0);
    assert_string_equal(url, "https://ordinal-test.s3.eu-west-3.amazonaws.com/?delete=");
    assert_string_equal(path, "/");

    assert_string_equal(s3_client_host(local), "ordinal-test.localhost:9000");
    assert_int_equal(s3_client_url(local, "k", NULL, url, sizeof(url), path, sizeof(path)), 0);
    assert_string_equal(url, "http://ordinal-test.localhost:9000/k");
    assert_string_equal(path, "/k");
}

static void test_resolve_pin(void **state)
{
    static const char *const bad[] = {"ordinal-test.s3.test", "ordinal-test.s3.test:9000",
                                      "ordinal-test.s3.test:9000:", ":9000:127.0.0.1",
                                      "ordinal-test.s3.test:port:127.0.0.1"};

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(setenv("ORDINAL_S3_RESOLVE", bad[i], 1), 0);
        assert_null(client("http://s3.test:9000", false, -EINVAL));
    }
    assert_int_equal(setenv("ORDINAL_S3_RESOLVE", "ordinal-test.s3.test:9000:127.0.0.1", 1), 0);
    s3_client_free(client("http://s3.test:9000", false, 0));
    assert_int_equal(setenv("ORDINAL_S3_RESOLVE", "", 1), 0);
    s3_client_free(client("http://s3.test:9000", false, 0));
    assert_int_equal(unsetenv("ORDINAL_S3_RESOLVE"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_style),
        cmocka_unit_test(test_virtual_hosted),
        cmocka_unit_test(test_resolve_pin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
