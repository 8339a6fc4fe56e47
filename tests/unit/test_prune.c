/*
 * test_prune.c - the retention policy (prune_select) follows restic's forget rules: keep-last
 * keeps the N newest; keep-daily/weekly/monthly keep the newest backup of each of the last N
 * days/ISO weeks/months that have backups; rules count independently; a rule with counts
 * left keeps the oldest backup too; the newest backup is always kept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "id.h"
#include "prune.h"

#define MAXN 64

struct set {
    struct prune_item items[MAXN];
    char ids[MAXN][ID_MAX];
    unsigned reasons[MAXN];
    size_t n;
};

/* Adds a backup at "YYYY-MM-DDTHH:MM:SSZ". */
static void add(struct set *s, const char *when)
{
    time_t t;

    assert_int_equal(time_parse_rfc3339(when, &t), 0);
    assert_int_equal(id_format(t, 0, s->ids[s->n], ID_MAX), 0);
    s->items[s->n] = (struct prune_item){.id = s->ids[s->n], .time = t};
    s->n++;
}

static void run(struct set *s, uint64_t last, uint64_t daily, uint64_t weekly, uint64_t monthly)
{
    struct prune_policy p = {last, daily, weekly, monthly};
    assert_int_equal(prune_select(s->items, s->n, &p, s->reasons), 0);
}

static size_t kept(const struct set *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += s->reasons[i] != 0;
    return k;
}

static void test_keep_last(void **state)
{
    struct set s = {0};
    char when[32];

    for (int i = 0; i < 10; i++) {
        snprintf(when, sizeof(when), "2026-11-%02dT10:00:00Z", i + 1);
        add(&s, when);
    }
    run(&s, 3, 0, 0, 0);
    assert_int_equal(kept(&s), 3);
    for (int i = 0; i < 10; i++)
        assert_int_equal(s.reasons[i] != 0, i >= 7);
    assert_int_equal(s.reasons[9], PRUNE_KEEP_LAST);
}

static void test_keep_daily_newest_of_each_day(void **state)
{
    struct set s = {0};

    add(&s, "2026-11-01T01:00:00Z"); /* 0: oldest day */
    add(&s, "2026-11-01T23:00:00Z"); /* 1 */
    add(&s, "2026-11-03T01:00:00Z"); /* 2 */
    add(&s, "2026-11-03T12:00:00Z"); /* 3 */
    add(&s, "2026-11-03T13:00:00Z"); /* 4: newest of 11-03 */
    add(&s, "2026-11-04T00:00:00Z"); /* 5 */
    add(&s, "2026-11-07T09:00:00Z"); /* 6: newest */
    /* the last 3 days that HAVE backups: 11-07, 11-04, 11-03 */
    run(&s, 0, 3, 0, 0);
    unsigned expect[7] = {0, 0, 0, 0, PRUNE_KEEP_DAILY, PRUNE_KEEP_DAILY, PRUNE_KEEP_DAILY};
    for (int i = 0; i < 7; i++)
        assert_int_equal(s.reasons[i], expect[i]);
}

static void test_counts_left_keep_oldest(void **state)
{
    struct set s = {0};

    add(&s, "2026-11-01T01:00:00Z"); /* oldest: kept because daily has counts left */
    add(&s, "2026-11-01T05:00:00Z"); /* newest of 11-01 */
    add(&s, "2026-11-02T05:00:00Z");
    run(&s, 0, 7, 0, 0);
    assert_int_equal(s.reasons[0], PRUNE_KEEP_DAILY);
    assert_int_equal(s.reasons[1], PRUNE_KEEP_DAILY);
    assert_int_equal(s.reasons[2], PRUNE_KEEP_DAILY);
}

static void test_weekly_iso_weeks(void **state)
{
    struct set s = {0};

    /* 2026-01-04 is a Sunday (ISO week 1 of 2026), 2026-01-05 a Monday (week 2). */
    add(&s, "2025-12-29T10:00:00Z"); /* 0: week 2026-W01 (Monday) */
    add(&s, "2026-01-04T10:00:00Z"); /* 1: week 2026-W01, newest of it */
    add(&s, "2026-01-05T10:00:00Z"); /* 2: week 2026-W02 */
    add(&s, "2026-01-06T10:00:00Z"); /* 3: week 2026-W02, newest */
    run(&s, 0, 0, 2, 0);
    assert_int_equal(s.reasons[0], 0);
    assert_int_equal(s.reasons[1], PRUNE_KEEP_WEEKLY);
    assert_int_equal(s.reasons[2], 0);
    assert_int_equal(s.reasons[3], PRUNE_KEEP_WEEKLY);
}

static void test_monthly_and_combined(void **state)
{
    struct set s = {0};

    add(&s, "2026-08-15T10:00:00Z"); /* 0 */
    add(&s, "2026-09-01T10:00:00Z"); /* 1 */
    add(&s, "2026-09-30T10:00:00Z"); /* 2: newest of September */
    add(&s, "2026-10-31T23:59:59Z"); /* 3: newest of October */
    add(&s, "2026-11-01T00:00:00Z"); /* 4 */
    add(&s, "2026-11-02T00:00:00Z"); /* 5: newest */
    run(&s, 2, 0, 0, 3);
    assert_int_equal(s.reasons[5], PRUNE_KEEP_LAST | PRUNE_KEEP_MONTHLY);
    assert_int_equal(s.reasons[4], PRUNE_KEEP_LAST);
    assert_int_equal(s.reasons[3], PRUNE_KEEP_MONTHLY);
    assert_int_equal(s.reasons[2], PRUNE_KEEP_MONTHLY);
    assert_int_equal(s.reasons[1], 0);
    assert_int_equal(s.reasons[0], 0);
    char buf[64];
    prune_reasons_format(s.reasons[5], buf, sizeof(buf));
    assert_string_equal(buf, "last,monthly");
}

static void test_newest_always_kept_and_any_order(void **state)
{
    struct set s = {0};

    /* given out of order; equal times resolved by ID suffix */
    add(&s, "2026-11-05T10:00:00Z");
    add(&s, "2026-11-01T10:00:00Z");
    add(&s, "2026-11-09T10:00:00Z");
    snprintf(s.ids[s.n], ID_MAX, "%s-1", s.ids[2]);
    s.items[s.n] = (struct prune_item){.id = s.ids[s.n], .time = s.items[2].time};
    s.n++;
    run(&s, 1, 0, 0, 0);
    assert_int_equal(kept(&s), 1);
    assert_int_equal(s.reasons[3], PRUNE_KEEP_LAST); /* "-1" is newer than the plain ID */
    /* no rule at all: only the newest survives, marked as such */
    run(&s, 0, 0, 0, 0);
    assert_int_equal(kept(&s), 1);
    assert_int_equal(s.reasons[3], PRUNE_KEEP_NEWEST);
    /* empty input */
    struct prune_policy p = {1, 0, 0, 0};
    assert_int_equal(prune_select(NULL, 0, &p, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_last),
        cmocka_unit_test(test_keep_daily_newest_of_each_day),
        cmocka_unit_test(test_counts_left_keep_oldest),
        cmocka_unit_test(test_weekly_iso_weeks),
        cmocka_unit_test(test_monthly_and_combined),
        cmocka_unit_test(test_newest_always_kept_and_any_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
