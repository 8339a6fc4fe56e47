/*
 * test_kube_watch.c - the watch-stream parser reassembles newline-delimited events from any
 * chunking (split events, several per chunk, byte by byte, a 5 MiB object), refuses garbage and
 * oversized lines with a message, and tells a truncated stream from a complete one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json.h"
#include "kube_watch.h"

#define MAX_SEEN 64

struct seen {
    size_t n;
    enum kube_event_type type[MAX_SEEN];
    char name[MAX_SEEN][64];
    size_t size[MAX_SEEN]; /* length of spec.data when present */
    int fail_at;           /* return -EIO at this event (1-based), 0 never */
    bool steal;
};

static int record(struct kube_event *ev, void *userdata)
{
    struct seen *s = userdata;
    const char *name = json_string(ev->object, "metadata.name");
    const char *data = json_string(ev->object, "spec.data");

    assert_non_null(ev->object);
    if (s->n < MAX_SEEN) {
        s->type[s->n] = ev->type;
        snprintf(s->name[s->n], sizeof(s->name[0]), "%s", name ? name : "");
        s->size[s->n] = data ? strlen(data) : 0;
    }
    s->n++;
    if (s->fail_at && (int)s->n == s->fail_at)
        return -EIO;
    if (s->steal) {
        cJSON *mine = TAKE_PTR(ev->object);
        cJSON_Delete(mine);
    }
    return 0;
}

static const char stream3[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"2\"}}}\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"3\"}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"c\",\"resourceVersion\":\"4\"}}}\n";

static void check_stream3(const struct seen *s)
{
    assert_int_equal(s->n, 4);
    assert_int_equal(s->type[0], KUBE_EVENT_ADDED);
    assert_string_equal(s->name[0], "a");
    assert_int_equal(s->type[1], KUBE_EVENT_MODIFIED);
    assert_string_equal(s->name[1], "b");
    assert_int_equal(s->type[2], KUBE_EVENT_BOOKMARK);
    assert_int_equal(s->type[3], KUBE_EVENT_DELETED);
    assert_string_equal(s->name[3], "c");
}

static void test_one_chunk(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    struct seen s = {0};

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), NULL), 0);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
    check_stream3(&s);
    assert_int_equal(kube_watch_parser_events(p), 4);
}

static void test_byte_by_byte(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    struct seen s = {0};

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    for (size_t i = 0; i < strlen(stream3); i++)
        assert_int_equal(kube_watch_parser_feed(p, stream3 + i, 1, NULL), 0);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
    check_stream3(&s);
}

/* Every way of cutting the stream in three pieces gives the same events. */
static void test_every_split(void **state)
{
    size_t len = strlen(stream3);

    for (size_t i = 0; i <= len; i += 3) {
        for (size_t j = i; j <= len; j += 7) {
            _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
            struct seen s = {0};
            assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
            assert_int_equal(kube_watch_parser_feed(p, stream3, i, NULL), 0);
            assert_int_equal(kube_watch_parser_feed(p, stream3 + i, j - i, NULL), 0);
            assert_int_equal(kube_watch_parser_feed(p, stream3 + j, len - j, NULL), 0);
            assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
            check_stream3(&s);
        }
    }
}

static void test_blank_lines_and_crlf(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    static const char in[] =
        "\n\r\n  \n{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\r\n\n";
    struct seen s = {0};

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, in, strlen(in), NULL), 0);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.name[0], "x");
}

static char *big_event(size_t data_len, size_t *ret_len)
{
    static const char head[] =
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"big\"},\"spec\":{\"data\":\"";
    static const char tail[] = "\"}}}\n";
    size_t n = strlen(head) + data_len + strlen(tail);
    char *buf = malloc(n + 1);

    assert_non_null(buf);
    memcpy(buf, head, strlen(head));
    memset(buf + strlen(head), 'x', data_len);
    memcpy(buf + strlen(head) + data_len, tail, strlen(tail) + 1);
    *ret_len = n;
    return buf;
}

static void test_five_mib_object(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    _cleanup_free_ char *ev = NULL;
    const size_t data_len = 5u << 20;
    struct seen s = {0};
    size_t len;

    ev = big_event(data_len, &len);
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    /* Odd-sized chunks, then a small event in the same last chunk. */
    for (size_t off = 0; off < len; off += 65521)
        assert_int_equal(kube_watch_parser_feed(p, ev + off, MIN((size_t)65521, len - off), NULL),
                         0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), NULL), 0);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.name[0], "big");
    assert_int_equal(s.size[0], data_len);

    /* The same object in a single chunk. */
    kube_watch_parser_free(TAKE_PTR(p));
    memset(&s, 0, sizeof(s));
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, ev, len, NULL), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.size[0], data_len);
}

static void test_line_too_long(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    _cleanup_free_ char *ev = NULL;
    ord_err e = {0};
    struct seen s = {0};
    size_t len;

    ev = big_event(100000, &len);
    /* Carried over several chunks without a newline. */
    assert_int_equal(kube_watch_parser_new(4096, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, ev, 3000, &e), 0);
    assert_int_equal(kube_watch_parser_feed(p, ev + 3000, 3000, &e), -EMSGSIZE);
    assert_non_null(strstr(e.msg, "longer than 4096 bytes"));
    /* Poisoned: the next feed fails the same way, even with a fine event. */
    err_clear(&e);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), &e), -EMSGSIZE);
    assert_non_null(strstr(e.msg, "longer than"));
    assert_int_equal(kube_watch_parser_finish(p, NULL), -EMSGSIZE);
    assert_int_equal(s.n, 0);

    /* A whole long line inside one chunk. */
    kube_watch_parser_free(TAKE_PTR(p));
    assert_int_equal(kube_watch_parser_new(4096, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, ev, len, NULL), -EMSGSIZE);

    /* Exactly at the limit is fine. */
    kube_watch_parser_free(TAKE_PTR(p));
    assert_int_equal(kube_watch_parser_new(len - 1, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, ev, len, NULL), 0);
    assert_int_equal(s.n, 1);
}

static void expect_garbage(const char *in, const char *needle)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    ord_err e = {0};
    struct seen s = {0};
    int r;

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    r = kube_watch_parser_feed(p, in, strlen(in), &e);
    if (r != -EBADMSG)
        fail_msg("'%s' gave %d (%s)", in, r, e.msg);
    if (!strstr(e.msg, needle))
        fail_msg("message for '%s' lacks '%s': %s", in, needle, e.msg);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), NULL), -EBADMSG);
}

static void test_garbage(void **state)
{
    expect_garbage("hello\n", "not JSON");
    expect_garbage("{\"type\":\"ADDED\",\"object\":{}\n", "not JSON");
    expect_garbage("{\"type\":\"ADDED\",\"object\":{}}}\n", "not JSON");
    expect_garbage("{\"object\":{}}\n", "no type");
    expect_garbage("{\"type\":7,\"object\":{}}\n", "no type");
    expect_garbage("{\"type\":\"RENAMED\",\"object\":{}}\n", "unknown type 'RENAMED'");
    expect_garbage("{\"type\":\"ADDED\"}\n", "no object");
    expect_garbage("{\"type\":\"ADDED\",\"object\":\"x\"}\n", "no object");
    expect_garbage("[1,2]\n", "no type");
    expect_garbage("\"ADDED\"\n", "no type");
    /* A good event before the garbage is delivered; the count says which one failed. */
    {
        _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
        static const char in[] = "{\"type\":\"ADDED\",\"object\":{}}\n\x01\x02\n";
        ord_err e = {0};
        struct seen s = {0};
        assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
        assert_int_equal(kube_watch_parser_feed(p, in, sizeof(in) - 1, &e), -EBADMSG);
        assert_int_equal(s.n, 1);
        assert_non_null(strstr(e.msg, "event 2"));
    }
}

static void test_truncation(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    size_t len = strlen(stream3);
    ord_err e = {0};
    struct seen s = {0};

    /* Cut inside the third event. */
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, len - 100, NULL), 0);
    assert_int_equal(kube_watch_parser_finish(p, &e), -EPIPE);
    assert_non_null(strstr(e.msg, "middle of event"));

    /* A complete last event without its newline still counts. */
    kube_watch_parser_free(TAKE_PTR(p));
    memset(&s, 0, sizeof(s));
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, len - 1, NULL), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
    check_stream3(&s);

    /* Nothing at all. */
    kube_watch_parser_free(TAKE_PTR(p));
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_finish(p, NULL), 0);
}

static void test_callback_stops_and_steals(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    struct seen s = {.fail_at = 2};

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), NULL), -EIO);
    assert_int_equal(s.n, 2);
    assert_int_equal(kube_watch_parser_feed(p, "\n", 1, NULL), -EIO);

    kube_watch_parser_free(TAKE_PTR(p));
    memset(&s, 0, sizeof(s));
    s.steal = true;
    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, stream3, strlen(stream3), NULL), 0);
    check_stream3(&s);
}

static void test_error_event(void **state)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *p = NULL;
    static const char in[] =
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
        "\"Failure\",\"message\":\"too old resource version: 1 (5)\",\"reason\":\"Expired\","
        "\"code\":410}}\n";
    struct seen s = {0};

    assert_int_equal(kube_watch_parser_new(0, record, &s, &p), 0);
    assert_int_equal(kube_watch_parser_feed(p, in, strlen(in), NULL), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.type[0], KUBE_EVENT_ERROR);
    assert_string_equal(kube_event_type_name(KUBE_EVENT_ERROR), "ERROR");
    assert_string_equal(kube_event_type_name(KUBE_EVENT_BOOKMARK), "BOOKMARK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_chunk),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_blank_lines_and_crlf),
        cmocka_unit_test(test_five_mib_object),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_callback_stops_and_steals),
        cmocka_unit_test(test_error_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
