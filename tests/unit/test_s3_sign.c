/*
 * test_s3_sign.c - the S3 client's pure parts: SigV4 against the AWS documentation's published
 * examples ("Signature Calculations for the Authorization Header", examples with
 * AKIAIOSFODNN7EXAMPLE: GET Object with Range, PUT Object, GET Bucket Lifecycle, Get Bucket
 * (List Objects)), the canonical query (sorting, full encoding, "uploads="), URI encoding,
 * Content-MD5, the multipart part-size policy (10,000 parts reach S3's 5 TiB), and the XML
 * scanner on S3's response shapes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "repo_s3.h"
#include "s3_sign.h"
#include "s3_xml.h"

#define AK   "AKIAIOSFODNN7EXAMPLE"
#define SK   "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"

static struct s3_sign_input input(const char *method, const char *uri, const char *query,
                                  const struct s3_header *h, size_t n, const char *payload)
{
    return (struct s3_sign_input){.method = method,
                                  .canonical_uri = uri,
                                  .canonical_query = query,
                                  .headers = h,
                                  .n_headers = n,
                                  .payload_sha256 = payload,
                                  .amz_date = DATE,
                                  .region = "us-east-1",
                                  .service = "s3",
                                  .access_key = AK,
                                  .secret_key = SK};
}

static void test_get_object(void **state)
{
    /* Headers given out of order: the signer sorts them. */
    const struct s3_header h[] = {{"x-amz-date", DATE},
                                  {"range", "bytes=0-9"},
                                  {"host", HOST},
                                  {"x-amz-content-sha256", S3_EMPTY_SHA256}};
    struct s3_sign_input in = input("GET", "/test.txt", "", h, ARRAY_SIZE(h), S3_EMPTY_SHA256);
    char buf[4096];

    assert_true(s3_canonical_request(&in, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "GET\n/test.txt\n\nhost:" HOST "\nrange:bytes=0-9\n"
                             "x-amz-content-sha256:" S3_EMPTY_SHA256 "\nx-amz-date:" DATE "\n\n"
                             "host;range;x-amz-content-sha256;x-amz-date\n" S3_EMPTY_SHA256);
    assert_true(s3_string_to_sign(&in, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "AWS4-HMAC-SHA256\n" DATE "\n20130524/us-east-1/s3/aws4_request\n"
                             "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    assert_true(s3_authorization(&in, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/"
                             "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
                             "x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba"
                             "48dd91039c6036bdb41");
    /* Too small a buffer is an error, never a truncated header. */
    assert_int_equal(s3_authorization(&in, buf, 40), -ENAMETOOLONG);
}

static void test_put_object(void **state)
{
    const char *body = "Welcome to Amazon S3.";
    char payload[S3_SHA256_HEX_LEN + 1], uri[64], buf[4096];

    s3_sha256_hex(body, strlen(body), payload);
    assert_string_equal(payload,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    /* The key "test$file.text" encodes '$'. */
    assert_int_equal(s3_uri_encode("/test$file.text", true, uri, sizeof(uri)), 17);
    assert_string_equal(uri, "/test%24file.text");
    const struct s3_header h[] = {{"date", "Fri, 24 May 2013 00:00:00 GMT"},
                                  {"host", HOST},
                                  {"x-amz-content-sha256", payload},
                                  {"x-amz-date", DATE},
                                  {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    struct s3_sign_input in = input("PUT", uri, "", h, ARRAY_SIZE(h), payload);
    assert_true(s3_authorization(&in, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                                "x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d8"
                                "41ea1380cd77a1b5971af0ece108bd"));
}

static void test_lifecycle_and_list(void **state)
{
    const struct s3_header h[] = {
        {"host", HOST}, {"x-amz-content-sha256", S3_EMPTY_SHA256}, {"x-amz-date", DATE}};
    const struct s3_query_param life[] = {{"lifecycle", ""}};
    const struct s3_query_param list[] = {{"prefix", "J"}, {"max-keys", "2"}};
    char q[256], buf[4096];

    /* A valueless parameter is signed as "name=" (libcurl 7.88 gets this wrong). */
    assert_int_equal(s3_canonical_query(life, 1, q, sizeof(q)), 10);
    assert_string_equal(q, "lifecycle=");
    struct s3_sign_input in = input("GET", "/", q, h, ARRAY_SIZE(h), S3_EMPTY_SHA256);
    assert_true(s3_authorization(&in, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a2"
                                "00a0136783543"));
    /* Parameters sorted by name. */
    assert_true(s3_canonical_query(list, 2, q, sizeof(q)) > 0);
    assert_string_equal(q, "max-keys=2&prefix=J");
    in = input("GET", "/", q, h, ARRAY_SIZE(h), S3_EMPTY_SHA256);
    assert_true(s3_authorization(&in, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed"
                                "5711ef69dc6f7"));
}

static void test_canonical_query(void **state)
{
    const struct s3_query_param p[] = {{"prefix", "backups/ns a/"},
                                       {"list-type", "2"},
                                       {"continuation-token", "1/ab+c=="},
                                       {"uploads", ""}};
    struct s3_query_param many[17];
    char q[512];

    assert_true(s3_canonical_query(p, ARRAY_SIZE(p), q, sizeof(q)) > 0);
    assert_string_equal(q, "continuation-token=1%2Fab%2Bc%3D%3D&list-type=2&"
                           "prefix=backups%2Fns%20a%2F&uploads=");
    assert_int_equal(s3_canonical_query(p, 0, q, sizeof(q)), 0);
    assert_string_equal(q, "");
    assert_int_equal(s3_canonical_query(p, ARRAY_SIZE(p), q, 20), -ENAMETOOLONG);
    for (size_t i = 0; i < ARRAY_SIZE(many); i++)
        many[i] = (struct s3_query_param){"a", "b"};
    assert_int_equal(s3_canonical_query(many, ARRAY_SIZE(many), q, sizeof(q)), -E2BIG);
    /* Encoding: unreserved kept, '~' kept, UTF-8 bytes and '/' (unless kept) encoded. */
    assert_true(s3_uri_encode("a~b-c_d.e/f\xc3\xa9 *", false, q, sizeof(q)) > 0);
    assert_string_equal(q, "a~b-c_d.e%2Ff%C3%A9%20%2A");
    assert_int_equal(s3_uri_encode("abc", false, q, 3), -ENAMETOOLONG);
}

static void test_md5(void **state)
{
    char out[25];

    s3_md5_base64("", 0, out);
    assert_string_equal(out, "1B2M2Y8AsgTpgAmY7PhCfg==");
    s3_amz_date(1369353600, out);
    assert_string_equal(out, DATE);
}

static void test_part_size(void **state)
{
    uint64_t total = 0, prev = 0;

    assert_int_equal(repo_s3_part_size(S3_PART_BASE, 0), 0);
    assert_int_equal(repo_s3_part_size(S3_PART_BASE, S3_PARTS_MAX + 1), 0);
    assert_int_equal(repo_s3_part_size(S3_PART_BASE, 1), S3_PART_BASE);
    assert_int_equal(repo_s3_part_size(S3_PART_BASE, 1000), S3_PART_BASE);
    assert_int_equal(repo_s3_part_size(S3_PART_BASE, 1001), 2 * S3_PART_BASE);
    for (unsigned p = 1; p <= S3_PARTS_MAX; p++) {
        uint64_t s = repo_s3_part_size(S3_PART_BASE, p);
        assert_true(s >= S3_PART_MIN && s <= S3_PART_MAX);
        assert_true(s >= prev);
        prev = s;
        total += s;
    }
    /* 10,000 parts cover the largest object S3 stores. */
    assert_true(total >= S3_OBJECT_MAX);
    /* A huge base is capped at S3's maximum part. */
    assert_int_equal(repo_s3_part_size(S3_PART_MAX, 9999), S3_PART_MAX);
}

static void test_xml(void **state)
{
    static const char list[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c <Contents> -->"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><IsTruncated>true</IsTruncated>"
        "<Contents><Key>a&amp;b&#x2F;c&#47;&lt;</Key><Size>12</Size></Contents>"
        "<Contents ><Key>k2</Key><Size>18446744073709551615</Size></Contents>"
        "<NextContinuationToken>tok=</NextContinuationToken></ListBucketResult>";
    struct s3_span doc = {list, sizeof(list) - 1}, item;
    char buf[64];
    uint64_t u;
    size_t pos = 0;

    assert_true(s3_xml_root_is(doc, "ListBucketResult"));
    assert_false(s3_xml_root_is(doc, "Error"));
    assert_int_equal(s3_xml_next(doc, "Contents", &pos, &item), 1);
    assert_int_equal(s3_xml_text(item, "Key", buf, sizeof(buf)), 7);
    assert_string_equal(buf, "a&b/c/<");
    assert_int_equal(s3_xml_u64(item, "Size", &u), 0);
    assert_int_equal(u, 12);
    assert_int_equal(s3_xml_next(doc, "Contents", &pos, &item), 1);
    assert_int_equal(s3_xml_u64(item, "Size", &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(s3_xml_next(doc, "Contents", &pos, &item), 0);
    assert_int_equal(s3_xml_text(doc, "NextContinuationToken", buf, sizeof(buf)), 4);
    assert_int_equal(s3_xml_text(doc, "Missing", buf, sizeof(buf)), -ENOENT);
    assert_int_equal(s3_xml_text(doc, "NextContinuationToken", buf, 3), -ENAMETOOLONG);

    static const char err[] = "<Error><Code>SlowDown</Code><Message/><Bad>&bogus;</Bad>"
                              "<Num>99999999999999999999</Num><Open>x";
    doc = (struct s3_span){err, sizeof(err) - 1};
    assert_true(s3_xml_root_is(doc, "Error"));
    assert_int_equal(s3_xml_text(doc, "Code", buf, sizeof(buf)), 8);
    assert_int_equal(s3_xml_text(doc, "Message", buf, sizeof(buf)), 0);
    assert_int_equal(s3_xml_text(doc, "Bad", buf, sizeof(buf)), -EBADMSG);
    assert_int_equal(s3_xml_u64(doc, "Num", &u), -ERANGE);
    assert_int_equal(s3_xml_text(doc, "Open", buf, sizeof(buf)), -EBADMSG);
    /* A name that is a prefix of another element's name does not match it. */
    doc = (struct s3_span){"<KeyCount>3</KeyCount>", 22};
    assert_int_equal(s3_xml_text(doc, "Key", buf, sizeof(buf)), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object),
        cmocka_unit_test(test_put_object),
        cmocka_unit_test(test_lifecycle_and_list),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_md5),
        cmocka_unit_test(test_part_size),
        cmocka_unit_test(test_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
