/*
 * test_json.c - the cJSON helpers: bounded parsing, typed getters that refuse wrong types and
 * out-of-range values, dotted and key-by-key lookups, and the build helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "json.h"

static const char doc[] =
    "{\"metadata\":{\"name\":\"pvc-1\",\"namespace\":\"db\",\"generation\":3,"
    "\"annotations\":{\"pv.kubernetes.io/provisioned-by\":\"ordinal.dev/local\"}},"
    "\"spec\":{\"replicas\":2.5,\"big\":9007199254740993,\"ok\":true,\"none\":null,"
    "\"list\":[\"a\",\"b\",\"c\"]}}";

static cJSON *load(void)
{
    cJSON *j = NULL;
    ord_err e = {0};
    assert_int_equal(json_parse(doc, strlen(doc), &j, &e), 0);
    return j;
}

static void test_parse(void **state)
{
    cJSON *j = NULL;
    ord_err e = {0};

    assert_int_equal(json_parse("{\"a\":1}  \n", 10, &j, &e), 0);
    cJSON_Delete(TAKE_PTR(j));
    /* Not NUL-terminated: only len bytes are read. */
    assert_int_equal(json_parse("{\"a\":1}XXXX", 7, &j, &e), 0);
    cJSON_Delete(TAKE_PTR(j));
    assert_int_equal(json_parse("{\"a\":1} {}", 10, &j, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "trailing data"));
    assert_null(j);
    assert_int_equal(json_parse("{\"a\":", 5, &j, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "invalid JSON"));
    assert_int_equal(json_parse("", 0, &j, &e), -EBADMSG);
    assert_int_equal(json_parse(NULL, 0, &j, NULL), -EBADMSG);
}

static void test_paths(void **state)
{
    _cleanup_(cJSON_Deletep) cJSON *j = load();

    assert_string_equal(json_string(j, "metadata.name"), "pvc-1");
    assert_null(json_string(j, "metadata.generation")); /* not a string */
    assert_null(json_string(j, "metadata.nope"));
    assert_null(json_string(j, "metadata.name.deeper"));
    assert_null(json_path(j, "spec.list.0"));
    assert_null(json_path(NULL, "a"));
    /* Keys with dots need the key-by-key form. */
    assert_null(json_path(j, "metadata.annotations.pv.kubernetes.io/provisioned-by"));
    assert_string_equal(
        json_pathv(j, "metadata", "annotations", "pv.kubernetes.io/provisioned-by", NULL)
            ->valuestring,
        "ordinal.dev/local");
    assert_null(json_pathv(j, "metadata", "missing", "x", NULL));
    assert_int_equal(json_array_len(json_path(j, "spec.list")), 3);
    assert_string_equal(json_index(json_path(j, "spec.list"), 2)->valuestring, "c");
    assert_null(json_index(json_path(j, "spec.list"), 3));
    assert_int_equal(json_array_len(json_path(j, "metadata")), 0);
}

static void test_getters(void **state)
{
    _cleanup_(cJSON_Deletep) cJSON *j = load();
    const char *s = "untouched";
    int64_t v = 77;
    bool b = false;

    assert_int_equal(json_get_string(j, "metadata.name", 253, &s), 0);
    assert_string_equal(s, "pvc-1");
    assert_int_equal(json_get_string(j, "metadata.name", 4, &s), -ERANGE);
    assert_int_equal(json_get_string(j, "metadata.generation", 10, &s), -EINVAL);
    assert_int_equal(json_get_string(j, "spec.none", 10, &s), -ENOENT);
    assert_int_equal(json_get_string(j, "spec.missing", 10, &s), -ENOENT);
    assert_string_equal(s, "pvc-1");

    assert_int_equal(json_get_int64(j, "metadata.generation", 0, 10, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(json_get_int64(j, "metadata.generation", 4, 10, &v), -ERANGE);
    assert_int_equal(json_get_int64(j, "spec.replicas", 0, 10, &v), -EINVAL);   /* 2.5 */
    assert_int_equal(json_get_int64(j, "spec.big", 0, INT64_MAX, &v), -ERANGE); /* > 2^53 */
    assert_int_equal(json_get_int64(j, "metadata.name", 0, 10, &v), -EINVAL);
    assert_int_equal(json_get_int64(j, "spec.none", 0, 10, &v), -ENOENT);
    assert_int_equal(v, 3);

    assert_int_equal(json_get_bool(j, "spec.ok", &b), 0);
    assert_true(b);
    assert_int_equal(json_get_bool(j, "metadata.name", &b), -EINVAL);
    assert_int_equal(json_get_bool(j, "spec.gone", &b), -ENOENT);
}

static void test_build(void **state)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    _cleanup_free_ char *text = NULL;
    cJSON *meta, *s;

    assert_non_null(o);
    meta = json_ensure_object(o, "metadata");
    assert_non_null(meta);
    assert_ptr_equal(json_ensure_object(o, "metadata"), meta);
    assert_int_equal(json_set_string(meta, "name", "a"), 0);
    assert_int_equal(json_set_string(meta, "name", "b"), 0); /* replaces */
    assert_int_equal(json_set_int64(o, "n", 42), 0);
    assert_int_equal(json_set_bool(o, "t", true), 0);
    assert_int_equal(json_set_null(o, "gone"), 0);
    assert_null(json_ensure_object(o, "n")); /* exists, not an object */
    assert_int_equal(json_set_string(json_path(o, "n") ? (cJSON *)json_path(o, "n") : o, "x", "y"),
                     -EINVAL);
    s = cJSON_CreateString("kept?");
    assert_int_equal(json_set_item(NULL, "k", s), -EINVAL); /* freed, not leaked */
    assert_int_equal(json_set_item(o, "k", NULL), -ENOMEM);
    text = json_print(o);
    assert_string_equal(text, "{\"metadata\":{\"name\":\"b\"},\"n\":42,\"t\":true,\"gone\":null}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
