/*
 * test_backup_id.c - backup IDs: UTC "YYYYMMDDTHHMMSSZ" with "-N" on collision, strict
 * parsing (calendar checked, canonical suffix), ordering by time then suffix (so "-10" comes
 * after "-2"), and generation that skips taken IDs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "id.h"
#include "macro.h"

static void test_format_parse(void **state)
{
    char buf[ID_MAX];
    struct backup_id id;
    time_t t;

    assert_int_equal(time_parse_rfc3339("2026-11-21T20:30:00Z", &t), 0);
    assert_int_equal(id_format(t, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "20261121T203000Z");
    assert_int_equal(id_format(t, 12, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "20261121T203000Z-12");
    assert_int_equal(id_parse(buf, &id), 0);
    assert_int_equal(id.time, t);
    assert_int_equal(id.suffix, 12);
    assert_int_equal(id_format(t, 0, buf, 8), -ERANGE);
    assert_int_equal(time_format_rfc3339(t, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2026-11-21T20:30:00Z");
    assert_int_equal(id_parse("20240229T000000Z", &id), 0); /* leap day */
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "20261121T203000",
        "20261121 203000Z",
        "20261121T203000Z-",
        "20261121T203000Z-0",
        "20261121T203000Z-01",
        "20261121T203000Z-10000",
        "20261121T203000Z-1a",
        "20261121T203000Z_1",
        "20261321T203000Z",
        "20261131T203000Z",
        "20250229T000000Z",
        "20261121T243000Z",
        "20261121T206000Z",
        "19691231T235959Z",
        "2026112xT203000Z",
        "../20261121T2030",
        "20261121T203000Z-1-1",
    };
    struct backup_id id;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (id_parse(bad[i], &id) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

static void test_compare(void **state)
{
    assert_true(id_compare("20261121T203000Z", "20261121T203000Z-1") < 0);
    assert_true(id_compare("20261121T203000Z-2", "20261121T203000Z-10") < 0);
    assert_true(id_compare("20261121T203000Z-10", "20261121T203001Z") < 0);
    assert_true(id_compare("20271121T203000Z", "20261121T203000Z") > 0);
    assert_int_equal(id_compare("20261121T203000Z-3", "20261121T203000Z-3"), 0);
    assert_true(id_compare("garbage", "20261121T203000Z") < 0);
}

static int taken_calls;
static int taken(void *ctx, const char *id)
{
    taken_calls++;
    /* the plain ID and -1 exist */
    return streq(id, "20261121T203000Z") || streq(id, "20261121T203000Z-1");
}

static int failing(void *ctx, const char *id)
{
    return -EIO;
}

static void test_generate(void **state)
{
    char buf[ID_MAX];
    time_t t;

    assert_int_equal(time_parse_rfc3339("2026-11-21T20:30:00Z", &t), 0);
    assert_int_equal(id_generate(t, taken, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "20261121T203000Z-2");
    assert_int_equal(taken_calls, 3);
    assert_int_equal(id_generate(t, failing, NULL, buf, sizeof(buf)), -EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
