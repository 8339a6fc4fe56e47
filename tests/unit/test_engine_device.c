/*
 * test_engine_device.c - device volumes on loop devices over sparse files: back up through a
 * symlink (as in the node layout), check that the image is one sparse entry whose zero runs
 * are holes, restore onto a device full of garbage and compare byte for byte, and refuse a
 * device smaller than the image without writing to it. Loop devices are attached with the
 * loop-control ioctls and always detached. Exit 77 (skipped) without root or loop devices.
 */
#include <fcntl.h>
#include <linux/loop.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine_testlib.h"
#include "fs_rmtree.h"

#define MIB (1u << 20)

static char tmproot[64];
static int rootfd = -1;
static char loops[3][32];
static int nloops;

/* Attaches a loop device over the file `name` (in tmproot); its path goes to loops[]. */
static int loop_attach(const char *name, char *ret_path, size_t size)
{
    int ctl, dev, back, n;

    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;
    n = ioctl(ctl, LOOP_CTL_GET_FREE);
    close(ctl);
    if (n < 0)
        return -errno;
    snprintf(ret_path, size, "/dev/loop%d", n);
    dev = open(ret_path, O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -errno;
    back = openat(rootfd, name, O_RDWR | O_CLOEXEC);
    if (back < 0 || ioctl(dev, LOOP_SET_FD, back) < 0) {
        int r = -errno;
        if (back >= 0)
            close(back);
        close(dev);
        return r;
    }
    close(back);
    close(dev);
    return 0;
}

static void loop_detach_all(void)
{
    for (int i = 0; i < nloops; i++) {
        int fd = open(loops[i], O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            (void)ioctl(fd, LOOP_CLR_FD, 0);
            close(fd);
        }
    }
    nloops = 0;
}

static void make_image(const char *name, off_t size, bool garbage)
{
    int fd = openat(rootfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    uint8_t *buf = malloc(MIB);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    for (size_t i = 0; i < MIB; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 11));
    if (garbage) {
        for (off_t off = 0; off < size; off += MIB)
            assert_int_equal(pwrite(fd, buf, MIB, off), (ssize_t)MIB);
    } else {
        /* Data at the start, a MiB in the middle with a zero grain inside it, the tail. */
        assert_int_equal(pwrite(fd, buf, 4096, 0), 4096);
        memset(buf + 256 * 1024, 0, 128 * 1024);
        assert_int_equal(pwrite(fd, buf, MIB, 10 * MIB), (ssize_t)MIB);
        assert_int_equal(pwrite(fd, buf, 100, size - 100), 100);
    }
    close(fd);
    free(buf);
}

static int attach(const char *name)
{
    int r = loop_attach(name, loops[nloops], sizeof(loops[nloops]));
    if (r < 0)
        return r;
    return nloops++;
}

static void same_content(const char *a, const char *b, off_t size)
{
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    uint8_t *x = malloc(MIB), *y = malloc(MIB);

    assert_true(fa >= 0 && fb >= 0);
    for (off_t off = 0; off < size; off += MIB) {
        assert_int_equal(pread(fa, x, MIB, off), (ssize_t)MIB);
        assert_int_equal(pread(fb, y, MIB, off), (ssize_t)MIB);
        if (memcmp(x, y, MIB) != 0)
            fail_msg("devices differ in the MiB at %lld", (long long)off);
    }
    close(fa);
    close(fb);
    free(x);
    free(y);
}

static void test_device_roundtrip(void **state)
{
    struct membuf m = {0};
    struct engine_stats st = {0};
    struct compress_opts o = {3, 0};
    struct byte_sink sink = {mem_write, &m};
    char link[128];
    ord_err e = {0};
    int a, b, c;
    (void)state;

    make_image("src.img", 32 * MIB, false);
    make_image("dst.img", 32 * MIB, true);
    make_image("small.img", 16 * MIB, true);
    a = attach("src.img");
    b = attach("dst.img");
    c = attach("small.img");
    assert_true(a >= 0 && b >= 0 && c >= 0);

    /* The node layout points at the device through a symlink. */
    snprintf(link, sizeof(link), "%s/vol", tmproot);
    assert_int_equal(symlink(loops[a], link), 0);
    if (engine_backup(link, VOLUME_DEVICE, &o, &sink, NULL, NULL, &st, &e) < 0)
        fail_msg("backup: %s", e.msg);
    assert_int_equal(st.files, 1);
    assert_int_equal(st.bytes_in, 32 * MIB);
    /* Holes are not stored: far less than the device, about the data (random-ish 1 MiB). */
    assert_true(st.bytes_stored < 2 * MIB);

    struct engine_expect x = expect_of(&st, VOLUME_DEVICE);
    struct memsrc src = {m.p, m.len, 0, 0};
    struct byte_source bs = {mem_read, &src};
    if (engine_verify(&bs, &x, &e) < 0)
        fail_msg("verify: %s", e.msg);

    /* A directory restore of a device image, and the reverse, are refused. */
    src.pos = 0;
    x.kind = VOLUME_DIRECTORY;
    assert_int_equal(engine_restore_device(&bs, &x, loops[b], &e), -EINVAL);
    x.kind = VOLUME_DEVICE;

    /* Too small: refused with both sizes, nothing written. */
    src.pos = 0;
    assert_int_equal(engine_restore_device(&bs, &x, loops[c], &e), -ENOSPC);
    assert_non_null(strstr(e.msg, "smaller than the image"));
    assert_non_null(strstr(e.msg, "16777216"));
    assert_non_null(strstr(e.msg, "33554432"));
    {
        uint8_t first[4];
        int fd = open(loops[c], O_RDONLY);
        assert_int_equal(pread(fd, first, 4, 10 * MIB), 4);
        assert_int_equal(first[1], (uint8_t)131);
        close(fd);
    }

    /* Onto garbage: the holes must come back as zeros. */
    src.pos = 0;
    if (engine_restore_device(&bs, &x, loops[b], &e) < 0)
        fail_msg("restore: %s", e.msg);
    same_content(loops[a], loops[b], 32 * MIB);

    /* A wrong digest is noticed on the way (after writing: the caller verifies first). */
    char bad[ENGINE_SHA256_HEX];
    memcpy(bad, st.sha256, sizeof(bad));
    bad[0] = bad[0] == 'f' ? 'e' : 'f';
    x.sha256 = bad;
    src.pos = 0;
    assert_int_equal(engine_restore_device(&bs, &x, loops[b], &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "SHA-256 mismatch"));

    /* Not a block device. */
    x.sha256 = st.sha256;
    src.pos = 0;
    snprintf(link, sizeof(link), "%s/src.img", tmproot);
    assert_int_equal(engine_restore_device(&bs, &x, link, &e), -ENOTBLK);
    struct membuf m2 = {0};
    struct byte_sink sink2 = {mem_write, &m2};
    struct engine_stats st2 = {0};
    assert_int_equal(engine_backup(link, VOLUME_DEVICE, &o, &sink2, NULL, NULL, &st2, &e), -ENOTBLK);

    engine_stats_free(&st);
    free(m.p);
    free(m2.p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmproot, sizeof(tmproot), "/tmp/ordinal-device-XXXXXX");
    assert_non_null(mkdtemp(tmproot));
    rootfd = open(tmproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return 0;
}

static int teardown(void **state)
{
    ord_err e = {0};
    int pfd = open("/tmp", O_RDONLY | O_DIRECTORY);

    (void)state;
    loop_detach_all();
    close(rootfd);
    assert_int_equal(fs_rmtree_at(pfd, strrchr(tmproot, '/') + 1, &e), 0);
    close(pfd);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_roundtrip, setup, teardown),
    };
    int ctl;

    if (geteuid() != 0) {
        printf("test_engine_device needs root for loop devices: skipped\n");
        return 77;
    }
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        printf("no /dev/loop-control (%s): loop-device tests skipped\n", strerror(errno));
        return 77;
    }
    close(ctl);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
