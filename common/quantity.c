/*
 * quantity.c - see quantity.h.
 *
 * The value is kept exact as  mantissa * 10^exp10 * 2^exp2  with a 128-bit mantissa of at most
 * 20 significant digits, so that every accepted input converts without floating point.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "quantity.h"

#define MAX_DIGITS 20

struct suffix {
    const char *s;
    int exp10;
    int exp2;
};

static const struct suffix suffixes[] = {
    {"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50}, {"Ei", 0, 60},
    {"m", -3, 0},  {"k", 3, 0},   {"M", 6, 0},   {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},
    {"E", 18, 0},  {"", 0, 0},
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses a decimal exponent after 'e'/'E': [+-]digits, bounded. */
static int parse_exponent(const char *p, int *ret)
{
    int sign = 1, v = 0;

    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!is_digit(*p))
        return -EINVAL;
    for (; is_digit(*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > 1000)
            return -ERANGE;
    }
    if (*p)
        return -EINVAL;
    *ret = sign * v;
    return 0;
}

int quantity_parse(const char *s, uint64_t *ret, ord_err *e)
{
    unsigned __int128 mant = 0, value, pow10;
    int digits = 0, frac = 0, exp10 = 0, exp2 = 0, r;
    bool seen_digit = false, seen_dot = false;
    const char *p = s;

    if (!s || !*s)
        return err_set(e, -EINVAL, "empty quantity; write a size such as 10Gi or 500M");
    if (strlen(s) > 64)
        return err_set(e, -EINVAL, "quantity is too long");
    if (*p == '-')
        return err_set(e, -EINVAL, "quantity '%s' is negative; sizes must be positive", s);
    if (*p == '+')
        p++;
    for (; is_digit(*p) || (*p == '.' && !seen_dot); p++) {
        if (*p == '.') {
            seen_dot = true;
            continue;
        }
        seen_digit = true;
        if (mant == 0 && *p == '0') {
            if (seen_dot)
                frac++;
            continue;
        }
        if (++digits > MAX_DIGITS)
            return err_set(e, -ERANGE, "quantity '%s' has more than %d significant digits", s,
                           MAX_DIGITS);
        mant = mant * 10 + (unsigned)(*p - '0');
        if (seen_dot)
            frac++;
    }
    if (!seen_digit)
        return err_set(e, -EINVAL, "'%s' is not a quantity; write a size such as 10Gi or 500M", s);

    /* 'e'/'E' starts an exponent, except "E" alone and "Ei", which are suffixes. */
    if ((*p == 'e' || *p == 'E') && !(p[0] == 'E' && (p[1] == '\0' || p[1] == 'i'))) {
        r = parse_exponent(p + 1, &exp10);
        if (r == -ERANGE)
            return err_set(e, -ERANGE, "quantity '%s' is out of range", s);
        if (r < 0)
            return err_set(e, -EINVAL, "'%s' is not a quantity: bad exponent '%s'", s, p);
        p = "";
    }
    if (*p || exp10 == 0) { /* a suffix, possibly the empty one */
        const struct suffix *sfx = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++)
            if (strcmp(p, suffixes[i].s) == 0)
                sfx = &suffixes[i];
        if (!sfx)
            return err_set(e, -EINVAL,
                           "'%s' has an unknown suffix '%s'; use Ki, Mi, Gi, Ti, Pi, Ei or k, M, "
                           "G, T, P, E",
                           s, p);
        exp10 += sfx->exp10;
        exp2 = sfx->exp2;
    }
    exp10 -= frac;

    /* mant < 10^20 < 2^67; exp2 <= 60: the product fits in 128 bits. */
    value = mant << exp2;
    if (value == 0) {
        *ret = 0;
        return 0;
    }
    if (exp10 >= 0) {
        for (int i = 0; i < exp10; i++) {
            value *= 10;
            if (value > QUANTITY_MAX)
                return err_set(e, -ERANGE, "quantity '%s' is larger than the API allows", s);
        }
    } else if (exp10 < -38) {
        value = 1; /* rounds up to one byte */
    } else {
        pow10 = 1;
        for (int i = 0; i < -exp10; i++)
            pow10 *= 10;
        value = value / pow10 + (value % pow10 != 0);
    }
    if (value > QUANTITY_MAX)
        return err_set(e, -ERANGE, "quantity '%s' is larger than the API allows", s);
    *ret = (uint64_t)value;
    return 0;
}

const char *quantity_format(uint64_t bytes, char buf[QUANTITY_STR_MAX])
{
    static const char *const bin[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
    static const char *const dec[] = {"E", "P", "T", "G", "M", "k"};

    if (bytes == 0) {
        snprintf(buf, QUANTITY_STR_MAX, "0");
        return buf;
    }
    for (size_t i = 0; i < ARRAY_SIZE(bin); i++) {
        unsigned shift = (unsigned)(60 - 10 * i);
        if ((bytes & ((UINT64_C(1) << shift) - 1)) == 0) {
            snprintf(buf, QUANTITY_STR_MAX, "%llu%s", (unsigned long long)(bytes >> shift), bin[i]);
            return buf;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(dec); i++) {
        uint64_t unit = 1;
        for (size_t k = 0; k < ARRAY_SIZE(dec) - i; k++)
            unit *= 1000;
        if (bytes % unit == 0) {
            snprintf(buf, QUANTITY_STR_MAX, "%llu%s", (unsigned long long)(bytes / unit), dec[i]);
            return buf;
        }
    }
    snprintf(buf, QUANTITY_STR_MAX, "%llu", (unsigned long long)bytes);
    return buf;
}
