/*
 * test_prov_blk.c - the device backend's pure decisions: best fit over a candidate list, the
 * refusal reasons a person reads in the ProvisioningFailed Event, and major:minor parsing.
 * No device is opened here; tests/integration/test_provisioner_device.py does that.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <cmocka.h>

#include "blk_discover.h"

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static struct blk_candidate cand(const char *path, const char *dev, uint64_t size,
                                 enum blk_state state, const char *detail)
{
    struct blk_candidate c = {.size = size, .state = state};

    snprintf(c.path, sizeof(c.path), "%s", path);
    snprintf(c.devname, sizeof(c.devname), "%s", dev);
    snprintf(c.detail, sizeof(c.detail), "%s", detail ? detail : "");
    return c;
}

static void test_best_fit_smallest_big_enough(void **state)
{
    struct blk_candidate c[] = {
        cand("/d/large", "/dev/loop1", 4 * GiB, BLK_FREE, NULL),
        cand("/d/small", "/dev/loop2", 1 * GiB, BLK_FREE, NULL),
        cand("/d/medium", "/dev/loop3", 2 * GiB, BLK_FREE, NULL),
    };
    char why[512];
    size_t idx = 99;

    assert_int_equal(blk_best_fit(c, 3, 1536 * MiB, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 2); /* medium: the smallest not smaller than 1.5Gi */
    assert_int_equal(blk_best_fit(c, 3, 1 * GiB, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 1); /* exactly the size is big enough */
    assert_int_equal(blk_best_fit(c, 3, 1, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 1);
    assert_int_equal(blk_best_fit(c, 3, 3 * GiB, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 0);
}

static void test_best_fit_ties_take_the_first(void **state)
{
    struct blk_candidate c[] = {
        cand("/d/a", "/dev/loop1", 1 * GiB, BLK_FREE, NULL),
        cand("/d/b", "/dev/loop2", 1 * GiB, BLK_FREE, NULL),
    };
    char why[64];
    size_t idx = 99;

    assert_int_equal(blk_best_fit(c, 2, GiB, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 0);
}

static void test_only_free_devices_are_chosen(void **state)
{
    struct blk_candidate c[] = {
        cand("/d/owned", "/dev/loop1", 8 * GiB, BLK_OWNED, "volume pvc-1"),
        cand("/d/ext4", "/dev/loop2", 8 * GiB, BLK_SIGNATURE, "has an ext4 filesystem"),
        cand("/d/gpt", "/dev/loop3", 8 * GiB, BLK_SIGNATURE, "has a gpt partition table"),
        cand("/d/mnt", "/dev/loop4", 8 * GiB, BLK_MOUNTED, "mounted at /mnt/x"),
        cand("/d/busy", "/dev/loop5", 8 * GiB, BLK_BUSY, "is held open exclusively (in use)"),
        cand("/d/gone", "/dev/loop6", 0, BLK_EMPTY,
             "has size 0 (detached loop device or no "
             "medium)"),
        cand("/d/tiny", "/dev/loop7", 1 * GiB, BLK_FREE, NULL),
    };
    char why[2048];
    size_t idx = 99;

    assert_int_equal(blk_best_fit(c, 7, 2 * GiB, &idx, why, sizeof(why)), -ENOSPC);
    assert_int_equal(idx, 99); /* untouched on failure */
    assert_string_equal(why, "/d/owned (/dev/loop1): in use by volume pvc-1; "
                             "/d/ext4 (/dev/loop2): has an ext4 filesystem; "
                             "/d/gpt (/dev/loop3): has a gpt partition table; "
                             "/d/mnt (/dev/loop4): mounted at /mnt/x; "
                             "/d/busy (/dev/loop5): is held open exclusively (in use); "
                             "/d/gone (/dev/loop6): has size 0 (detached loop device or no "
                             "medium); "
                             "/d/tiny (/dev/loop7, 1Gi): too small for 2Gi");
    /* the small one fits a small request, whatever the others are */
    assert_int_equal(blk_best_fit(c, 7, GiB, &idx, why, sizeof(why)), 0);
    assert_int_equal(idx, 6);
}

static void test_no_candidates(void **state)
{
    char why[64] = "x";
    size_t idx = 99;

    assert_int_equal(blk_best_fit(NULL, 0, GiB, &idx, why, sizeof(why)), -ENODEV);
    assert_string_equal(why, "");
}

static void test_refusals_are_bounded(void **state)
{
    struct blk_candidate c[40];
    char why[300];
    size_t idx;

    for (size_t i = 0; i < 40; i++) {
        char p[32];

        snprintf(p, sizeof(p), "/d/disk%02zu", i);
        c[i] = cand(p, "/dev/loop9", MiB, BLK_FREE, NULL);
    }
    assert_int_equal(blk_best_fit(c, 40, GiB, &idx, why, sizeof(why)), -ENOSPC);
    assert_true(strlen(why) < sizeof(why));
    assert_non_null(strstr(why, "/d/disk00 (/dev/loop9, 1Mi): too small for 1Gi"));
    assert_non_null(strstr(why, "more"));
    assert_null(strstr(why, "/d/disk39"));
}

static void test_devid(void **state)
{
    char buf[32];
    dev_t d;

    blk_format_devid(makedev(7, 3), buf, sizeof(buf));
    assert_string_equal(buf, "7:3");
    assert_int_equal(blk_parse_devid("7:3", &d), 0);
    assert_true(d == makedev(7, 3));
    assert_int_equal(blk_parse_devid("259:12", &d), 0);
    assert_true(major(d) == 259 && minor(d) == 12);
    assert_int_equal(blk_parse_devid("", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("7", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("7:", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("-7:3", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("7:3x", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("7:-3", &d), -EINVAL);
    assert_int_equal(blk_parse_devid("99999999999:1", &d), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_best_fit_smallest_big_enough),
        cmocka_unit_test(test_best_fit_ties_take_the_first),
        cmocka_unit_test(test_only_free_devices_are_chosen),
        cmocka_unit_test(test_no_candidates),
        cmocka_unit_test(test_refusals_are_bounded),
        cmocka_unit_test(test_devid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
