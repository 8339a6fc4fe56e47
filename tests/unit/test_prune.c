/*
 * test_prune.c - the retention policy (prune_select) follows restic's forget rules: keep-last
 * keeps the N newest; keep-daily/weekly/monthly keep the newest backup of each of the last N
 * days/ISO weeks/months that have backups; rules count independently; a rule with counts
 * left keeps the oldest backup too; the newest backup is always kept.
 *
 * Per volume (prune_select_volumes): one-node backups made on two nodes (node A: ordinals 0
 * and 2, node B: ordinal 1) are counted per volume, so node A's backups never push node B's
 * only backup out; the newest backup of every volume is kept and described as such; backups
 * that each hold every volume (the coordinator's) give the per-StatefulSet result.
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

/* Per-volume sets: each backup holds the ordinals given (template "data"). */
struct vset {
    struct prune_backup b[MAXN];
    struct prune_volume v[MAXN][8];
    char ids[MAXN][ID_MAX];
    size_t n;
};

/* Adds a backup at t0 + minutes holding ordinals (ended by -1); the ID suffix is its index. */
static size_t vadd(struct vset *s, int minutes, const int32_t *ords)
{
    time_t t0;
    size_t k = 0;

    assert_int_equal(time_parse_rfc3339("2026-11-01T00:00:00Z", &t0), 0);
    assert_int_equal(id_format(t0 + minutes * 60, 0, s->ids[s->n], ID_MAX), 0);
    for (; ords[k] >= 0; k++)
        s->v[s->n][k] = (struct prune_volume){.ordinal = ords[k], .template_name = "data"};
    s->b[s->n] = (struct prune_backup){
        .id = s->ids[s->n], .time = t0 + minutes * 60, .volumes = s->v[s->n], .n_volumes = k};
    return s->n++;
}

static void vrun(struct vset *s, uint64_t last, uint64_t daily)
{
    struct prune_policy p = {last, daily, 0, 0};
    assert_int_equal(prune_select_volumes(s->b, s->n, &p), 0);
}

static const int32_t node_a[] = {2, 0, -1}, node_b[] = {1, -1}, all[] = {2, 1, 0, -1};

static void test_per_volume_keeps_other_nodes_ordinals(void **state)
{
    struct vset s = {0};
    struct prune_policy p = {2, 0, 0, 0};
    char buf[256];

    size_t a1 = vadd(&s, 0, node_a);
    size_t b1 = vadd(&s, 1, node_b);
    size_t a2 = vadd(&s, 2, node_a);
    size_t a3 = vadd(&s, 3, node_a);
    vrun(&s, 2, 0);
    /* per StatefulSet, keep-last 2 would keep a3 and a2 only, and ordinal 1 would be lost */
    assert_int_equal(s.b[b1].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    assert_int_equal(s.b[a3].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    assert_int_equal(s.b[a2].reasons, PRUNE_KEEP_LAST);
    assert_int_equal(s.b[a1].reasons, 0);
    assert_int_equal(s.v[a3][0].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);

    prune_describe(&s.b[b1], &p, buf, sizeof(buf));
    assert_string_equal(buf, "newest backup of ordinal 1 'data'; --keep-last 2");
    prune_describe(&s.b[a3], &p, buf, sizeof(buf));
    assert_string_equal(buf, "newest backup of ordinal 0 'data', ordinal 2 'data'; --keep-last 2");
    prune_describe(&s.b[a2], &p, buf, sizeof(buf));
    assert_string_equal(buf, "--keep-last 2");
    prune_describe(&s.b[a1], &p, buf, sizeof(buf));
    assert_string_equal(buf, "");

    /* keep-last 1: still one backup per volume, node B's included */
    vrun(&s, 1, 0);
    assert_int_not_equal(s.b[b1].reasons, 0);
    assert_int_not_equal(s.b[a3].reasons, 0);
    assert_int_equal(s.b[a2].reasons, 0);
    assert_int_equal(s.b[a1].reasons, 0);
}

static void test_newest_of_a_volume_kept_whatever_the_policy(void **state)
{
    struct vset s = {0};
    static const int32_t four[] = {3, 2, 1, 0, -1}, three[] = {2, 1, 0, -1};
    struct prune_policy p = {1, 0, 0, 0};
    char buf[256];

    /* scaled down from 4 to 3 ordinals: the last backup of ordinal 3 stays */
    size_t old = vadd(&s, 0, four);
    size_t last4 = vadd(&s, 10, four);
    size_t n1 = vadd(&s, 20, three);
    size_t n2 = vadd(&s, 30, three);
    vrun(&s, 1, 0);
    assert_int_equal(s.b[old].reasons, 0);
    assert_int_equal(s.b[last4].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    assert_int_equal(s.v[last4][0].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST); /* ordinal 3 */
    assert_int_equal(s.v[last4][1].reasons, 0);                                   /* ordinal 2 */
    assert_int_equal(s.b[n1].reasons, 0);
    assert_int_equal(s.b[n2].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    prune_describe(&s.b[last4], &p, buf, sizeof(buf));
    assert_string_equal(buf, "newest backup of ordinal 3 'data'; --keep-last 1");

    /* more than three volumes: the first three by ordinal, then a count */
    prune_describe(&s.b[n2], &p, buf, sizeof(buf));
    assert_string_equal(
        buf,
        "newest backup of ordinal 0 'data', ordinal 1 'data', ordinal 2 'data'; --keep-last 1");
    static const int32_t five[] = {4, 3, 2, 1, 0, -1};
    size_t n3 = vadd(&s, 40, five);
    vrun(&s, 1, 0);
    prune_describe(&s.b[n3], &p, buf, sizeof(buf));
    assert_string_equal(buf, "newest backup of ordinal 0 'data', ordinal 1 'data', ordinal 2 "
                             "'data', and 2 more volume(s); --keep-last 1");
    /* a small buffer is truncated, never overrun */
    prune_describe(&s.b[n3], &p, buf, 12);
    assert_string_equal(buf, "newest back");
}

static void test_coordinator_backups_as_per_statefulset(void **state)
{
    struct vset v = {0};
    struct set s = {0};
    char when[32];

    /* every backup holds every volume: the same as the per-StatefulSet policy */
    for (int i = 0; i < 12; i++) {
        size_t k = vadd(&v, i * 60 * 7, all); /* every 7 hours */
        time_t t = v.b[k].time;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        add(&s, when);
    }
    vrun(&v, 2, 3);
    run(&s, 2, 3, 0, 0);
    for (size_t i = 0; i < v.n; i++) {
        assert_int_equal(v.b[i].reasons & ~PRUNE_KEEP_NEWEST, s.reasons[i] & ~PRUNE_KEEP_NEWEST);
        assert_int_equal((v.b[i].reasons & PRUNE_KEEP_NEWEST) != 0, i == v.n - 1);
    }
}

static void test_volume_listed_twice_and_no_volumes(void **state)
{
    struct vset s = {0};
    static const int32_t twice[] = {0, 0, -1}, none[] = {-1};

    size_t a = vadd(&s, 0, twice);
    size_t b = vadd(&s, 1, twice);
    size_t c = vadd(&s, 2, none);
    size_t d = vadd(&s, 3, none);
    vrun(&s, 1, 0);
    /* a backup counts once in a history even if it lists the volume twice */
    assert_int_equal(s.b[a].reasons, 0);
    assert_int_equal(s.b[b].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    assert_int_equal(s.v[b][1].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    /* volume-less backups form one history of their own */
    assert_int_equal(s.b[c].reasons, 0);
    assert_int_equal(s.b[d].reasons, PRUNE_KEEP_LAST | PRUNE_KEEP_NEWEST);
    struct prune_policy p = {1, 0, 0, 0};
    assert_int_equal(prune_select_volumes(NULL, 0, &p), 0);
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
        cmocka_unit_test(test_per_volume_keeps_other_nodes_ordinals),
        cmocka_unit_test(test_newest_of_a_volume_kept_whatever_the_policy),
        cmocka_unit_test(test_coordinator_backups_as_per_statefulset),
        cmocka_unit_test(test_volume_listed_twice_and_no_volumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
