/*
 * id.c - see id.h. Times are always UTC: timegm()/gmtime_r(), never the local zone, so that
 * an ID names the same instant on every node and in every repository listing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "id.h"
#include "macro.h"

int id_format(time_t t, uint32_t suffix, char *buf, size_t size)
{
    struct tm tm;
    size_t n;

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1970 || tm.tm_year + 1900 > 9999)
        return -ERANGE;
    n = strftime(buf, size, "%Y%m%dT%H%M%SZ", &tm);
    if (n == 0)
        return -ERANGE;
    if (suffix > 0) {
        int w = snprintf(buf + n, size - n, "-%u", suffix);
        if (w < 0 || (size_t)w >= size - n)
            return -ERANGE;
    }
    return 0;
}

/* Parses exactly len decimal digits. */
static int digits(const char *s, size_t len, int *ret)
{
    int v = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return 0;
}

/* Fills tm from "YYYYMMDD" + sep + "HHMMSS" digits and checks the calendar. */
static int parse_calendar(int year, int mon, int day, int hour, int min, int sec, time_t *ret)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct tm tm = {0};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] ||
        (mon == 2 && day == 29 && !leap) || hour > 23 || min > 59 || sec > 59)
        return -EINVAL;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    *ret = timegm(&tm);
    return 0;
}

int id_parse(const char *s, struct backup_id *ret)
{
    int year, mon, day, hour, min, sec;
    uint32_t suffix = 0;
    time_t t;

    if (!s || strnlen(s, ID_MAX) >= ID_MAX || strlen(s) < 16)
        return -EINVAL;
    if (s[8] != 'T' || s[15] != 'Z')
        return -EINVAL;
    if (digits(s, 4, &year) < 0 || digits(s + 4, 2, &mon) < 0 || digits(s + 6, 2, &day) < 0 ||
        digits(s + 9, 2, &hour) < 0 || digits(s + 11, 2, &min) < 0 || digits(s + 13, 2, &sec) < 0)
        return -EINVAL;
    if (parse_calendar(year, mon, day, hour, min, sec, &t) < 0)
        return -EINVAL;
    if (s[16]) {
        const char *p = s + 17;
        size_t len = strlen(p);
        int v;

        if (s[16] != '-' || len == 0 || len > 4 || p[0] == '0' || digits(p, len, &v) < 0 || v < 1 ||
            (uint32_t)v > ID_SUFFIX_MAX)
            return -EINVAL;
        suffix = (uint32_t)v;
    }
    *ret = (struct backup_id){.time = t, .suffix = suffix};
    return 0;
}

int id_compare(const char *a, const char *b)
{
    struct backup_id x, y;
    bool vx = id_parse(a, &x) == 0, vy = id_parse(b, &y) == 0;

    if (!vx || !vy) {
        if (vx != vy)
            return vx ? 1 : -1;
        return strcmp(a, b);
    }
    if (x.time != y.time)
        return x.time < y.time ? -1 : 1;
    if (x.suffix != y.suffix)
        return x.suffix < y.suffix ? -1 : 1;
    return 0;
}

int id_generate(time_t t, int (*exists)(void *ctx, const char *id), void *ctx, char *ret,
                size_t size)
{
    char buf[ID_MAX];

    for (uint32_t suffix = 0; suffix <= ID_SUFFIX_MAX; suffix++) {
        int r = id_format(t, suffix, buf, sizeof(buf));
        if (r < 0)
            return r;
        r = exists(ctx, buf);
        if (r < 0)
            return r;
        if (r == 0) {
            if (strlen(buf) >= size)
                return -ERANGE;
            memcpy(ret, buf, strlen(buf) + 1);
            return 0;
        }
    }
    return -EEXIST;
}

int time_format_rfc3339(time_t t, char *buf, size_t size)
{
    struct tm tm;

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1970 || tm.tm_year + 1900 > 9999)
        return -ERANGE;
    if (strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -ERANGE;
    return 0;
}

int time_parse_rfc3339(const char *s, time_t *ret)
{
    int year, mon, day, hour, min, sec;

    if (!s || strnlen(s, 21) != 20)
        return -EINVAL;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        return -EINVAL;
    if (digits(s, 4, &year) < 0 || digits(s + 5, 2, &mon) < 0 || digits(s + 8, 2, &day) < 0 ||
        digits(s + 11, 2, &hour) < 0 || digits(s + 14, 2, &min) < 0 || digits(s + 17, 2, &sec) < 0)
        return -EINVAL;
    return parse_calendar(year, mon, day, hour, min, sec, ret);
}
