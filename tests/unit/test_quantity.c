/*
 * test_quantity.c - storage quantities parse exactly as the API server reads them, and
 * everything outside the grammar or the int64 range is refused with a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quantity.h"

static uint64_t parse_ok(const char *s)
{
    ord_err e = {0};
    uint64_t v = 0;
    int r = quantity_parse(s, &v, &e);
    if (r < 0)
        fail_msg("'%s' was refused: %s", s, err_msg(&e));
    return v;
}

static void parse_bad(const char *s, int code, const char *needle)
{
    ord_err e = {0};
    uint64_t v = 12345;
    int r = quantity_parse(s, &v, &e);
    if (r >= 0)
        fail_msg("'%s' was accepted as %llu", s, (unsigned long long)v);
    assert_int_equal(r, code);
    assert_int_equal(v, 12345); /* output untouched on failure */
    if (!strstr(e.msg, needle))
        fail_msg("message for '%s' lacks '%s': %s", s, needle, e.msg);
}

static void test_binary_suffixes(void **state)
{
    assert_int_equal(parse_ok("1Ki"), 1024);
    assert_int_equal(parse_ok("1Gi"), UINT64_C(1073741824));
    assert_int_equal(parse_ok("1.5Gi"), UINT64_C(1610612736));
    assert_int_equal(parse_ok("10Ti"), UINT64_C(10995116277760));
    assert_int_equal(parse_ok("7Ei"), UINT64_C(7) << 60);
}

static void test_decimal_forms(void **state)
{
    assert_int_equal(parse_ok("500M"), UINT64_C(500000000));
    assert_int_equal(parse_ok("1e9"), UINT64_C(1000000000));
    assert_int_equal(parse_ok("1E9"), UINT64_C(1000000000));
    assert_int_equal(parse_ok("1000000000"), UINT64_C(1000000000));
    assert_int_equal(parse_ok("2k"), 2000);
    assert_int_equal(parse_ok("+5G"), UINT64_C(5000000000));
    assert_int_equal(parse_ok("1.25e3"), 1250);
    assert_int_equal(parse_ok("12e-1"), 2); /* 1.2 rounds up */
    assert_int_equal(parse_ok("3E"), UINT64_C(3000000000000000000));
    assert_int_equal(parse_ok("0"), 0);
    assert_int_equal(parse_ok(".5Ki"), 512);
    assert_int_equal(parse_ok("5."), 5);
}

static void test_fractions_round_up(void **state)
{
    /* Quantity.Value() rounds away from zero. */
    assert_int_equal(parse_ok("0.5"), 1);
    assert_int_equal(parse_ok("100m"), 1);
    assert_int_equal(parse_ok("1500m"), 2);
    assert_int_equal(parse_ok("1.0000001Ki"), 1025);
    assert_int_equal(parse_ok("0.000000000000000001"), 1);
}

static void test_refused(void **state)
{
    parse_bad("", -EINVAL, "empty");
    parse_bad("-1Gi", -EINVAL, "negative");
    parse_bad("Gi", -EINVAL, "not a quantity");
    parse_bad("1GB", -EINVAL, "unknown suffix");
    parse_bad("1gi", -EINVAL, "unknown suffix");
    parse_bad("1 Gi", -EINVAL, "unknown suffix");
    parse_bad("1.2.3", -EINVAL, "unknown suffix");
    parse_bad("1e", -EINVAL, "bad exponent");
    parse_bad("1e+", -EINVAL, "bad exponent");
    parse_bad("0x10", -EINVAL, "unknown suffix");
    parse_bad("8Ei", -ERANGE, "larger than the API allows");
    parse_bad("9223372036854775808", -ERANGE, "larger than the API allows");
    parse_bad("1e19", -ERANGE, "larger than the API allows");
    parse_bad("1e99999", -ERANGE, "out of range");
    parse_bad("123456789012345678901", -ERANGE, "significant digits");
}

static void test_int64_edge(void **state)
{
    assert_int_equal(parse_ok("9223372036854775807"), INT64_MAX);
}

static void test_format(void **state)
{
    char buf[QUANTITY_STR_MAX];
    assert_string_equal(quantity_format(0, buf), "0");
    assert_string_equal(quantity_format(1024, buf), "1Ki");
    assert_string_equal(quantity_format(UINT64_C(1073741824), buf), "1Gi");
    assert_string_equal(quantity_format(UINT64_C(1610612736), buf), "1536Mi");
    assert_string_equal(quantity_format(UINT64_C(500000000), buf), "500M");
    assert_string_equal(quantity_format(1001, buf), "1001");
    assert_string_equal(quantity_format((uint64_t)INT64_MAX, buf), "9223372036854775807");
}

static void test_format_parse_roundtrip(void **state)
{
    const uint64_t values[] = {1, 999, 1000, 4096, 1536, UINT64_C(10) << 30, UINT64_C(3000000),
                               UINT64_C(123456789012), (uint64_t)INT64_MAX};
    char buf[QUANTITY_STR_MAX];
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        assert_int_equal(parse_ok(quantity_format(values[i], buf)), values[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_suffixes),   cmocka_unit_test(test_decimal_forms),
        cmocka_unit_test(test_fractions_round_up), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_int64_edge),         cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_parse_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
