/*
 * test_identity.c - claim names resolve to (statefulset, template, ordinal) by lookup, with
 * dashes anywhere, canonical ordinals only, and ambiguity refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "identity.h"

static const char *const web_t[] = {"data", "wal-log"};
static const char *const mysql_t[] = {"mysql-data"};
static const char *const my_t[] = {"sql-data"};
static const struct sts_templates sets[] = {
    {"web", web_t, 2},
    {"my-db", mysql_t, 1},
};

static void test_simple(void **state)
{
    struct ordinal_id id;
    assert_int_equal(identity_resolve("data-web-0", sets, 2, &id, NULL), IDENTITY_STS);
    assert_string_equal(id.statefulset, "web");
    assert_string_equal(id.template_name, "data");
    assert_int_equal(id.ordinal, 0);
}

static void test_dashes_everywhere(void **state)
{
    struct ordinal_id id;
    assert_int_equal(identity_resolve("wal-log-web-12", sets, 2, &id, NULL), IDENTITY_STS);
    assert_string_equal(id.template_name, "wal-log");
    assert_int_equal(id.ordinal, 12);
    assert_int_equal(identity_resolve("mysql-data-my-db-2147483647", sets, 2, &id, NULL),
                     IDENTITY_STS);
    assert_string_equal(id.statefulset, "my-db");
    assert_string_equal(id.template_name, "mysql-data");
    assert_int_equal(id.ordinal, INT32_MAX);
}

static void test_not_a_statefulset_claim(void **state)
{
    struct ordinal_id id;
    memset(&id, 0x5a, sizeof(id));
    const char *names[] = {
        "data-web",         /* no ordinal */
        "data-web-01",      /* leading zero: the controller never writes it */
        "data-web--1",      /* negative */
        "data-web-+1",      /* sign */
        "data-web-2147483648", /* over int32 */
        "data-web-1a",      /* not a number */
        "other-web-0",      /* unknown template */
        "data-webx-0",      /* unknown statefulset */
        "data-web-",        /* empty ordinal */
        "0",
        "-0",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = identity_resolve(names[i], sets, 2, &id, NULL);
        if (r != IDENTITY_NOT_STS)
            fail_msg("'%s' resolved to %d", names[i], r);
    }
    assert_int_equal(((unsigned char *)&id)[0], 0x5a); /* untouched */
}

static void test_ambiguous(void **state)
{
    /* "mysql-data-my-db-0" could be (my-db, mysql-data) or (db, mysql-data-my)… */
    static const char *const amb_t[] = {"mysql-data-my"};
    const struct sts_templates s[] = {{"my-db", mysql_t, 1}, {"db", amb_t, 1}, {"x", my_t, 1}};
    struct ordinal_id id;
    ord_err e = {0};
    assert_int_equal(identity_resolve("mysql-data-my-db-0", s, 3, &id, &e), -ENOTUNIQ);
    assert_non_null(strstr(e.msg, "rename one"));
}

static void test_invalid(void **state)
{
    char big[300];
    struct ordinal_id id;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(identity_resolve("", sets, 2, &id, NULL), -EINVAL);
    assert_int_equal(identity_resolve(NULL, sets, 2, &id, NULL), -EINVAL);
    assert_int_equal(identity_resolve(big, sets, 2, &id, NULL), -EINVAL);
    assert_int_equal(identity_resolve("data-web-0", NULL, 0, &id, NULL), IDENTITY_NOT_STS);
}

static void test_parse_ordinal(void **state)
{
    int32_t v;
    assert_int_equal(identity_parse_ordinal("0", 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(identity_parse_ordinal("42", 2, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(identity_parse_ordinal("007", 3, &v), -EINVAL);
    assert_int_equal(identity_parse_ordinal("99999999999", 11, &v), -EINVAL);
    assert_int_equal(identity_parse_ordinal("4294967296", 10, &v), -ERANGE);
    assert_int_equal(identity_parse_ordinal("", 0, &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),        cmocka_unit_test(test_dashes_everywhere),
        cmocka_unit_test(test_not_a_statefulset_claim), cmocka_unit_test(test_ambiguous),
        cmocka_unit_test(test_invalid),       cmocka_unit_test(test_parse_ordinal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
