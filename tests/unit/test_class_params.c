/*
 * test_class_params.c - StorageClass parameters: defaults, every accepted value, and every
 * refusal with the message a person reads in the ProvisioningFailed Event.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "class_params.h"

static const char *const allowed[] = {"/mnt/fast/", "/srv//data"};
static const char *const devdirs[] = {"/dev/disk/ordinal"};
static const struct class_limits lim = {
    .default_root = "/var/lib/ordinal",
    .allowed_roots = allowed,
    .n_allowed_roots = 2,
    .device_dirs = devdirs,
    .n_device_dirs = 1,
};

static int parse1(const char *k, const char *v, struct class_params *p, ord_err *e)
{
    struct class_kv kv[] = {{k, v}};
    return class_params_parse("fast", kv, 1, &lim, p, e);
}

static void test_defaults(void **state)
{
    struct class_params p;
    ord_err e = {0};

    assert_int_equal(class_params_parse("fast", NULL, 0, &lim, &p, &e), 0);
    assert_int_equal(p.backend, VOL_BACKEND_DIRECTORY);
    assert_int_equal(p.pv_type, PV_TYPE_HOSTPATH);
    assert_string_equal(p.root, "/var/lib/ordinal");
    assert_string_equal(p.allowed_root, "/var/lib/ordinal");
    assert_string_equal(p.fs_type, "ext4");
    assert_string_equal(p.device_dir, "");
}

static void test_accepted_values(void **state)
{
    struct class_params p;
    ord_err e = {0};
    struct class_kv kv[] = {
        {"backend", "directory"},
        {"pvType", "local"},
        {"root", "/mnt/fast//db/"},
        {"fsType", "xfs"},
    };

    assert_int_equal(class_params_parse("fast", kv, 4, &lim, &p, &e), 0);
    assert_int_equal(p.pv_type, PV_TYPE_LOCAL);
    assert_string_equal(p.root, "/mnt/fast/db");
    assert_string_equal(p.allowed_root, "/mnt/fast");
    assert_string_equal(p.fs_type, "xfs");

    assert_int_equal(parse1("root", "/srv/data", &p, &e), 0);
    assert_string_equal(p.allowed_root, "/srv/data");
    assert_int_equal(parse1("root", "/var/lib/ordinal/sub", &p, &e), 0);
    assert_int_equal(parse1("backend", "device", &p, &e), 0);
    assert_int_equal(p.pv_type, PV_TYPE_LOCAL); /* devices are always local PVs */
    assert_int_equal(parse1("deviceDir", "/dev/disk/ordinal/", &p, &e), 0);
    assert_string_equal(p.device_dir, "/dev/disk/ordinal");
}

static void test_root_outside_allowed(void **state)
{
    struct class_params p = {0};
    ord_err e = {0};

    assert_int_equal(parse1("root", "/mnt/x", &p, &e), -EINVAL);
    assert_string_equal(e.msg, "root '/mnt/x' is not under an allowed root (/var/lib/ordinal, "
                               "/mnt/fast, /srv/data); add --allowed-root /mnt/x to the "
                               "provisioner or fix the StorageClass 'fast'");
    /* a prefix of a name is not a parent directory */
    assert_int_equal(parse1("root", "/mnt/fastest", &p, &e), -EINVAL);
    assert_int_equal(parse1("root", "/var/lib/ordinal-other", &p, &e), -EINVAL);
    assert_int_equal(parse1("root", "/", &p, &e), -EINVAL);
}

static void test_bad_paths(void **state)
{
    static const char *const bad[] = {
        "relative/path", "", "/mnt/fast/../etc", "/mnt/fast/./x", "/mnt/fast/..", "./mnt", "~/x"};
    struct class_params p;
    ord_err e = {0};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse1("root", bad[i], &p, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "must be an absolute path without '.' or '..'"));
        assert_non_null(strstr(e.msg, "StorageClass 'fast'"));
    }
    assert_int_equal(parse1("deviceDir", "dev/x", &p, &e), -EINVAL);
    assert_int_equal(parse1("deviceDir", "/dev/other", &p, &e), -EINVAL);
    assert_string_equal(e.msg, "deviceDir '/dev/other' is not one of the provisioner's "
                               "--device-dir; add --device-dir /dev/other to the provisioner or "
                               "fix the StorageClass 'fast'");
}

static void test_long_path(void **state)
{
    char buf[CLASS_PATH_MAX + 16];
    struct class_params p;
    ord_err e = {0};

    memcpy(buf, "/mnt/fast/", 10);
    memset(buf + 10, 'a', sizeof(buf) - 11);
    buf[sizeof(buf) - 1] = '\0';
    assert_int_equal(parse1("root", buf, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "longer than"));
}

static void test_unknown_values(void **state)
{
    struct class_params p;
    ord_err e = {0};

    assert_int_equal(parse1("backend", "lvm", &p, &e), -EINVAL);
    assert_string_equal(e.msg, "StorageClass 'fast': unknown backend 'lvm'; use 'directory' or "
                               "'device'");
    assert_int_equal(parse1("pvType", "nfs", &p, &e), -EINVAL);
    assert_string_equal(e.msg, "StorageClass 'fast': unknown pvType 'nfs'; use 'hostPath' or "
                               "'local'");
    assert_int_equal(parse1("pvType", "HostPath", &p, &e), -EINVAL); /* case matters */
    assert_int_equal(parse1("fsType", "ext4; rm -rf /", &p, &e), -EINVAL);
    assert_int_equal(parse1("fsType", "", &p, &e), -EINVAL);
    assert_int_equal(parse1("rooot", "/mnt/fast", &p, &e), -EINVAL);
    assert_string_equal(e.msg, "StorageClass 'fast': unknown parameter 'rooot' (known: backend, "
                               "pvType, root, deviceDir, fsType); fix the StorageClass");
    {
        struct class_kv kv[] = {{"backend", "device"}, {"pvType", "hostPath"}};
        assert_int_equal(class_params_parse("fast", kv, 2, &lim, &p, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "cannot carry a device"));
    }
}

static void test_output_untouched_on_error(void **state)
{
    struct class_params p;
    struct class_kv kv[] = {{"pvType", "local"}, {"backend", "nope"}};

    memset(&p, 0x5a, sizeof(p));
    assert_int_equal(class_params_parse("fast", kv, 2, &lim, &p, NULL), -EINVAL);
    assert_int_equal(((unsigned char *)&p)[0], 0x5a);
}

static void test_normalize(void **state)
{
    char out[CLASS_PATH_MAX];

    assert_int_equal(class_path_normalize("//a///b/", out), 0);
    assert_string_equal(out, "/a/b");
    assert_int_equal(class_path_normalize("/", out), 0);
    assert_string_equal(out, "/");
    assert_int_equal(class_path_normalize("/a/.hidden/..b", out), 0);
    assert_string_equal(out, "/a/.hidden/..b");
    assert_true(class_path_is_under("/a/b", "/a"));
    assert_true(class_path_is_under("/a", "/a"));
    assert_false(class_path_is_under("/ab", "/a"));
    assert_true(class_path_is_under("/x", "/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_accepted_values),
        cmocka_unit_test(test_root_outside_allowed),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_unknown_values),
        cmocka_unit_test(test_output_untouched_on_error),
        cmocka_unit_test(test_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
