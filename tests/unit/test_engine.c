/*
 * test_engine.c - the archive engine round trip: a hostile-but-legal tree is backed up into
 * memory, verified, restored into a staging directory and compared field by field with the
 * original (type, mode, owner, nanosecond mtime, content, holes, xattrs, ACLs as their raw
 * system.posix_acl_* xattrs, link targets, device numbers, hardlink identity). Also: files
 * changing during the backup, mount points (skipped and reported; fs_rmtree refuses them),
 * verify refusing a wrong expectation, and the swap with removal of the old content.
 * Runs as root (owners, device nodes, security.* and trusted.* xattrs, mounts); skips
 * otherwise.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine_int.h"
#include "engine_testlib.h"
#include "fs_rmtree.h"

static char tmproot[64];
static int rootfd = -1;

/* ---------- building the tree ---------- */

static void write_at(int dfd, const char *name, const void *data, size_t len, mode_t mode)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    if (len)
        assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void pwrite_at(int dfd, const char *name, off_t size, off_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = malloc(len ? len : 1);
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    assert_true(fd >= 0);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
    if (len)
        assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
    free(buf);
}

static int mkdir_open(int dfd, const char *name, mode_t mode)
{
    int fd;

    assert_int_equal(mkdirat(dfd, name, 0700), 0);
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    return fd;
}

static void set_times(int dfd, const char *name, time_t sec, long nsec)
{
    struct timespec ts[2] = {{sec - 1000, 987654321}, {sec, nsec}};
    assert_int_equal(utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* Raw POSIX ACL xattr: version 2, then {tag, perm, id} sorted as the kernel wants. */
static size_t acl_blob(uint8_t *out, const uint16_t (*ents)[2], const uint32_t *ids, size_t n)
{
    size_t o = 0;

    out[o++] = 2, out[o++] = 0, out[o++] = 0, out[o++] = 0;
    for (size_t i = 0; i < n; i++) {
        out[o++] = (uint8_t)ents[i][0];
        out[o++] = (uint8_t)(ents[i][0] >> 8);
        out[o++] = (uint8_t)ents[i][1];
        out[o++] = 0;
        out[o++] = (uint8_t)ids[i];
        out[o++] = (uint8_t)(ids[i] >> 8);
        out[o++] = (uint8_t)(ids[i] >> 16);
        out[o++] = (uint8_t)(ids[i] >> 24);
    }
    return o;
}

static void set_acls(int dfd, const char *name, bool dir)
{
    static const uint16_t acc[][2] = {{1, 6}, {2, 6}, {4, 4}, {8, 4}, {0x10, 6}, {0x20, 0}};
    static const uint32_t acc_ids[] = {~0u, 1234, ~0u, 55, ~0u, ~0u};
    static const uint16_t def[][2] = {{1, 7}, {4, 5}, {8, 5}, {0x10, 5}, {0x20, 1}};
    static const uint32_t def_ids[] = {~0u, ~0u, 4321, ~0u, ~0u};
    uint8_t blob[128];
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    size_t n;

    assert_true(fd >= 0);
    n = acl_blob(blob, acc, acc_ids, 6);
    assert_int_equal(fsetxattr(fd, "system.posix_acl_access", blob, n, 0), 0);
    if (dir) {
        n = acl_blob(blob, def, def_ids, 5);
        assert_int_equal(fsetxattr(fd, "system.posix_acl_default", blob, n, 0), 0);
    }
    close(fd);
}

/* The tree the brief asks for; the root is a directory named `name` in rootfd. */
static void build_tree(const char *name)
{
    static const char bin[] = {'v', 0, 1, 2, 0, (char)0xff};
    char big[5000];
    int r = mkdir_open(rootfd, name, 0750);
    int a, b, c, d, e2, deep;

    assert_int_equal(fchown(r, 1000, 1000), 0);
    assert_int_equal(fsetxattr(r, "user.root", "1", 1, 0), 0);

    write_at(r, "plain.txt", "hello\n", 6, 0644);
    assert_int_equal(fchownat(r, "plain.txt", 12345, 54321, 0), 0);
    write_at(r, "spa ce", "space", 5, 0644);
    write_at(r, "new\nline", "newline", 7, 0644);
    write_at(r, "\xc3\xbcn\xc3\xaf\xc2\xa9\xc3\xb8\x64\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "u", 1, 0644);
    write_at(r, "bad\xff\xfe", "raw bytes", 9, 0644);
    write_at(r, "empty", "", 0, 0644);
    write_at(r, "setuid", "#!/bin/sh\n", 10, 04755);
    write_at(r, "setgid", "x", 1, 02711);
    write_at(r, "mode0", "zero", 4, 0);
    write_at(r, "wx", "wx", 2, 0333);
    set_times(r, "plain.txt", 1234567890, 123456789);
    set_times(r, "setgid", 2000000000, 1);

    close(mkdir_open(r, "empty_dir", 0755));
    e2 = mkdir_open(r, "empty_dir2", 0711);
    close(mkdir_open(e2, "nested_empty", 0700));
    set_times(e2, "nested_empty", 1500000000, 500);
    close(e2);
    close(mkdir_open(r, "sticky", 01777));

    assert_int_equal(mkfifoat(r, "fifo", 0600), 0);
    assert_int_equal(mknodat(r, "null_dev", S_IFCHR | 0666, makedev(1, 3)), 0);
    assert_int_equal(mknodat(r, "blk_dev", S_IFBLK | 0660, makedev(7, 200)), 0);
    assert_int_equal(fchownat(r, "blk_dev", 0, 6, AT_SYMLINK_NOFOLLOW), 0);

    /* Hardlinks across directories (3 links), and a hardlinked FIFO. */
    a = mkdir_open(r, "a", 0755);
    b = mkdir_open(r, "b", 0755);
    c = mkdir_open(b, "c", 0755);
    write_at(a, "h1", "linked content", 14, 0640);
    assert_int_equal(linkat(a, "h1", c, "h2", 0), 0);
    assert_int_equal(linkat(a, "h1", r, "h3", 0), 0);
    assert_int_equal(linkat(r, "fifo", b, "fifo_link", 0), 0);

    /* Symlinks: dangling, absolute, outside, to a directory; xattr on one (trusted.*). */
    assert_int_equal(symlinkat("does/not/exist", r, "dangling"), 0);
    assert_int_equal(symlinkat("/etc/passwd", r, "abs"), 0);
    assert_int_equal(symlinkat("../../outside", b, "outside"), 0);
    assert_int_equal(symlinkat("a", r, "dirlink"), 0);
    assert_int_equal(fchownat(r, "dirlink", 777, 888, AT_SYMLINK_NOFOLLOW), 0);
    set_times(r, "dangling", 1600000000, 42);

    /* Sparse files: holes at the start, in the middle, at the end, and nothing but a hole. */
    pwrite_at(r, "sparse_start", 5 << 20, 4 << 20, 1 << 20, 1);
    pwrite_at(r, "sparse_mid", (8 << 20) + 65536, 0, 65536, 2);
    pwrite_at(r, "sparse_mid", (8 << 20) + 65536, 8 << 20, 65536, 3);
    pwrite_at(r, "sparse_end", 6 << 20, 0, 1 << 20, 4);
    pwrite_at(r, "all_hole", 3 << 20, 0, 0, 0);
    /* Dense files around the small-file limit and above it. */
    pwrite_at(r, "exactly_1m", 1 << 20, 0, 1 << 20, 5);
    pwrite_at(r, "big", 3 << 20, 0, 3 << 20, 6);

    /* xattrs: user.* with a binary value, security.*, trusted.* on a directory. */
    d = openat(r, "plain.txt", O_RDONLY);
    assert_int_equal(fsetxattr(d, "user.bin", bin, sizeof(bin), 0), 0);
    assert_int_equal(fsetxattr(d, "user.text", "some text", 9, 0), 0);
    assert_int_equal(fsetxattr(d, "security.ordinal", "sec", 3, 0), 0);
    close(d);
    assert_int_equal(fsetxattr(a, "trusted.ordinal", "dir", 3, 0), 0);
    assert_int_equal(fsetxattr(a, "user.dir", "d", 1, 0), 0);

    /* ACLs: access on a file, access and default on a directory. */
    write_at(r, "acl_file", "acl", 3, 0640);
    set_acls(r, "acl_file", false);
    close(mkdir_open(r, "acl_dir", 0750));
    set_acls(r, "acl_dir", true);

    /* A directory we may not write into after the restore (children first, mode after). */
    d = mkdir_open(r, "readonly_dir", 0700);
    write_at(d, "inside", "ro", 2, 0444);
    assert_int_equal(fchmod(d, 0500), 0);
    close(d);

    /* A path longer than 4 KiB in total. */
    memset(big, 'd', sizeof(big));
    deep = dup(r);
    for (int i = 0; i < 40; i++) {
        char n[130];
        snprintf(n, sizeof(n), "%.*s%02d", 120, big, i);
        int nd = mkdir_open(deep, n, 0755);
        close(deep);
        deep = nd;
    }
    write_at(deep, "deep_file", "deep", 4, 0600);
    assert_int_equal(symlinkat("../../..", deep, "deep_link"), 0);
    close(deep);

    set_times(r, "sparse_mid", 1700000000, 999999999);
    set_times(r, "a", 1100000000, 111);
    set_times(b, "c", 1100000001, 222);
    set_times(r, "b", 1100000002, 333);
    close(a);
    close(b);
    close(c);
    set_times(rootfd, name, 1300000000, 13);
    close(r);
}

/* ---------- comparing two trees ---------- */

struct linkmap {
    ino_t src[256], dst[256];
    size_t n;
};

static void proc_path(char *buf, size_t size, int dfd, const char *name)
{
    snprintf(buf, size, "/proc/self/fd/%d/%s", dfd, name);
}

static void cmp_xattrs(int sd, int dd, const char *name, const char *what)
{
    char sp[512], dp[512], sl[4096], dl[4096];
    ssize_t sn, dn;

    proc_path(sp, sizeof(sp), sd, name);
    proc_path(dp, sizeof(dp), dd, name);
    sn = llistxattr(sp, sl, sizeof(sl));
    dn = llistxattr(dp, dl, sizeof(dl));
    assert_true(sn >= 0 && dn >= 0);
    /* Same set of names (order may differ); every value equal. */
    for (ssize_t o = 0; o < sn; o += (ssize_t)strlen(sl + o) + 1) {
        char sv[4096], dv[4096];
        ssize_t svl = lgetxattr(sp, sl + o, sv, sizeof(sv));
        ssize_t dvl = lgetxattr(dp, sl + o, dv, sizeof(dv));
        if (dvl < 0)
            fail_msg("%s: xattr %s missing after restore", what, sl + o);
        assert_int_equal(svl, dvl);
        assert_memory_equal(sv, dv, (size_t)svl);
    }
    if (sn != dn)
        fail_msg("%s: xattr lists differ (%zd vs %zd bytes)", what, sn, dn);
}

static void cmp_content(int sd, int dd, const char *name, off_t size, const char *what)
{
    int sf = openat(sd, name, O_RDONLY | O_NOFOLLOW), df = openat(dd, name, O_RDONLY | O_NOFOLLOW);
    static uint8_t sb[1 << 16], db[1 << 16];

    assert_true(sf >= 0 && df >= 0);
    for (off_t off = 0; off < size;) {
        ssize_t a = pread(sf, sb, sizeof(sb), off), b = pread(df, db, sizeof(db), off);
        assert_true(a > 0);
        assert_int_equal(a, b);
        if (memcmp(sb, db, (size_t)a) != 0)
            fail_msg("%s: content differs near offset %lld", what, (long long)off);
        off += a;
    }
    /* Holes stay holes: the same data/hole map. */
    for (off_t off = 0; off < size;) {
        off_t s1 = lseek(sf, off, SEEK_DATA), d1 = lseek(df, off, SEEK_DATA);
        if (s1 < 0 || d1 < 0) {
            assert_true(s1 < 0 && d1 < 0);
            break;
        }
        if (s1 != d1)
            fail_msg("%s: data starts at %lld, restored at %lld", what, (long long)s1, (long long)d1);
        off_t s2 = lseek(sf, s1, SEEK_HOLE), d2 = lseek(df, d1, SEEK_HOLE);
        if (s2 != d2)
            fail_msg("%s: hole starts at %lld, restored at %lld", what, (long long)s2, (long long)d2);
        off = s2;
    }
    close(sf);
    close(df);
}

static void cmp_entry(int sd, int dd, const char *name, const char *rel, struct linkmap *lm);

static void cmp_dir(int sd, int dd, const char *rel, struct linkmap *lm)
{
    DIR *d = fdopendir(dup(sd));
    struct dirent *de;
    size_t ns = 0, nd = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        char sub[8192];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        ns++;
        snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
        cmp_entry(sd, dd, de->d_name, sub, lm);
    }
    closedir(d);
    d = fdopendir(dup(dd));
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            nd++;
    closedir(d);
    if (ns != nd)
        fail_msg("%s: %zu entries, restored %zu", rel, ns, nd);
}

static void cmp_stat(const struct stat *s, const struct stat *d, const char *rel)
{
    if (strlen(rel) > 160)
        rel += strlen(rel) - 160; /* cmocka truncates long messages: keep the end */
    if (s->st_mode != d->st_mode)
        fail_msg("%s: mode 0%o, restored 0%o", rel, s->st_mode, d->st_mode);
    if (s->st_uid != d->st_uid || s->st_gid != d->st_gid)
        fail_msg("%s: owner %u:%u, restored %u:%u", rel, s->st_uid, s->st_gid, d->st_uid, d->st_gid);
    if (s->st_mtim.tv_sec != d->st_mtim.tv_sec || s->st_mtim.tv_nsec != d->st_mtim.tv_nsec)
        fail_msg("%s: mtime %lld.%09ld, restored %lld.%09ld", rel, (long long)s->st_mtim.tv_sec,
                 s->st_mtim.tv_nsec, (long long)d->st_mtim.tv_sec, d->st_mtim.tv_nsec);
    if (!S_ISDIR(s->st_mode) && s->st_nlink != d->st_nlink)
        fail_msg("%s: %lu links, restored %lu", rel, (unsigned long)s->st_nlink,
                 (unsigned long)d->st_nlink);
}

static void cmp_entry(int sd, int dd, const char *name, const char *rel, struct linkmap *lm)
{
    struct stat s, d;

    if (fstatat(dd, name, &d, AT_SYMLINK_NOFOLLOW) < 0)
        fail_msg("%s: missing after restore", rel);
    assert_int_equal(fstatat(sd, name, &s, AT_SYMLINK_NOFOLLOW), 0);
    cmp_xattrs(sd, dd, name, rel);
    if (S_ISDIR(s.st_mode)) {
        int sfd = openat(sd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        int dfd = openat(dd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        assert_true(sfd >= 0 && dfd >= 0);
        cmp_dir(sfd, dfd, rel, lm);
        close(sfd);
        close(dfd);
    }
    cmp_stat(&s, &d, rel);
    if (S_ISREG(s.st_mode)) {
        assert_int_equal(s.st_size, d.st_size);
        cmp_content(sd, dd, name, s.st_size, rel);
        if (d.st_blocks > s.st_blocks + 16)
            fail_msg("%s: %lld blocks, restored %lld", rel, (long long)s.st_blocks,
                     (long long)d.st_blocks);
    } else if (S_ISLNK(s.st_mode)) {
        char a[4096], b[4096];
        ssize_t an = readlinkat(sd, name, a, sizeof(a)), bn = readlinkat(dd, name, b, sizeof(b));
        assert_int_equal(an, bn);
        assert_memory_equal(a, b, (size_t)an);
    } else if (S_ISCHR(s.st_mode) || S_ISBLK(s.st_mode)) {
        assert_int_equal(s.st_rdev, d.st_rdev);
    }
    if (!S_ISDIR(s.st_mode) && s.st_nlink > 1) {
        size_t i;
        for (i = 0; i < lm->n; i++)
            if (lm->src[i] == s.st_ino)
                break;
        if (i == lm->n) {
            assert_true(lm->n < 256);
            lm->src[lm->n] = s.st_ino;
            lm->dst[lm->n++] = d.st_ino;
        } else if (lm->dst[i] != d.st_ino) {
            fail_msg("%s: hardlink identity lost", rel);
        }
    }
}

static void cmp_trees(const char *src, const char *dst)
{
    struct linkmap lm = {.n = 0};
    char rel[64];

    snprintf(rel, sizeof(rel), "%s", src);
    /* The roots are compared like any entry (owner, mode, times, xattrs), by their names. */
    int sd = dup(rootfd), dd = dup(rootfd);
    struct stat s, d;
    assert_int_equal(fstatat(sd, src, &s, 0), 0);
    assert_int_equal(fstatat(dd, dst, &d, 0), 0);
    cmp_stat(&s, &d, "(root)");
    int sfd = openat(sd, src, O_RDONLY | O_DIRECTORY), dfd = openat(dd, dst, O_RDONLY | O_DIRECTORY);
    cmp_dir(sfd, dfd, rel, &lm);
    /* Directory times again: they must not have moved while children were compared. */
    assert_int_equal(fstatat(dd, dst, &d, 0), 0);
    cmp_stat(&s, &d, "(root)");
    char sv[16], dv[16];
    assert_int_equal(fgetxattr(sfd, "user.root", sv, sizeof(sv)), fgetxattr(dfd, "user.root", dv, sizeof(dv)));
    close(sfd);
    close(dfd);
    close(sd);
    close(dd);
}

/* ---------- helpers ---------- */

static char *at(const char *name)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmproot, name);
    return buf[i];
}

static int backup_mem(const char *dir, struct membuf *m, struct engine_stats *st,
                      engine_progress_fn fn, void *ctx, ord_err *e)
{
    struct byte_sink sink = {mem_write, m};
    struct compress_opts o = {.level = 3, .threads = 0};
    return engine_backup(at(dir), VOLUME_DIRECTORY, &o, &sink, fn, ctx, st, e);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmproot, sizeof(tmproot), "/tmp/ordinal-engine-XXXXXX");
    assert_non_null(mkdtemp(tmproot));
    rootfd = open(tmproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return rootfd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    ord_err e = {0};
    char *slash = strrchr(tmproot, '/');
    int pfd = open("/tmp", O_RDONLY | O_DIRECTORY);

    (void)state;
    (void)umount2(at("vol/mnt"), MNT_DETACH);
    close(rootfd);
    assert_int_equal(fs_rmtree_at(pfd, slash + 1, &e), 0);
    close(pfd);
    return 0;
}

/* ---------- tests ---------- */

static void test_roundtrip(void **state)
{
    struct membuf m = {0};
    struct engine_stats st = {0};
    ord_err e = {0};
    (void)state;

    build_tree("vol");
    assert_int_equal(backup_mem("vol", &m, &st, NULL, NULL, &e), 0);
    if (st.n_changed)
        fail_msg("unexpected changed: %s: %s", st.changed[0].path, st.changed[0].reason);
    assert_true(st.files > 40);
    assert_int_equal(st.bytes_stored, m.len);
    assert_int_equal(strlen(st.sha256), 64);

    struct engine_expect x = expect_of(&st, VOLUME_DIRECTORY);
    struct memsrc src = {m.p, m.len, 0, 0};
    struct byte_source bs = {mem_read, &src};
    if (engine_verify(&bs, &x, &e) < 0)
        fail_msg("verify: %s", e.msg);

    src.pos = 0;
    src.chunk = 777; /* odd read sizes from the source */
    if (engine_restore_dir(&bs, &x, at("staging"), NULL, &e) < 0)
        fail_msg("restore: %s", e.msg);
    cmp_trees("vol", "staging");

    /* Restoring into an existing staging entry is refused, and leaves it alone. */
    src.pos = 0;
    assert_int_equal(engine_restore_dir(&bs, &x, at("staging"), NULL, &e), -EEXIST);
    assert_int_equal(faccessat(rootfd, "staging/plain.txt", F_OK, AT_SYMLINK_NOFOLLOW), 0);

    /* The same tree backs up to the same bytes (sorted walk, deterministic). */
    struct membuf m2 = {0};
    struct engine_stats st2 = {0};
    assert_int_equal(backup_mem("vol", &m2, &st2, NULL, NULL, &e), 0);
    assert_int_equal(st2.files, st.files);
    assert_int_equal(st2.bytes_in, st.bytes_in);

    engine_stats_free(&st);
    engine_stats_free(&st2);
    free(m.p);
    free(m2.p);
}

struct grow_ctx {
    const char *path;
    bool done;
};

static void grow_progress(void *ctx, uint64_t bytes)
{
    struct grow_ctx *g = ctx;

    if (!g->done && bytes >= (2u << 20)) {
        int fd = open(g->path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "more", 4), 4);
        close(fd);
        g->done = true;
    }
}

static void test_changed_during_read(void **state)
{
    struct membuf m = {0};
    struct engine_stats st = {0};
    struct grow_ctx g = {at("vol/growing"), false};
    ord_err e = {0};
    int d;
    (void)state;

    d = mkdir_open(rootfd, "vol", 0755);
    pwrite_at(d, "growing", 8 << 20, 0, 8 << 20, 9);
    close(d);
    assert_int_equal(backup_mem("vol", &m, &st, grow_progress, &g, &e), 0);
    assert_true(g.done);
    assert_int_equal(st.n_changed, 1);
    assert_string_equal(st.changed[0].path, "growing");
    assert_non_null(strstr(st.changed[0].reason, "changed while read"));

    /* The archive is still whole: it verifies and restores the size the header promised. */
    struct engine_expect x = expect_of(&st, VOLUME_DIRECTORY);
    struct memsrc src = {m.p, m.len, 0, 0};
    struct byte_source bs = {mem_read, &src};
    assert_int_equal(engine_verify(&bs, &x, &e), 0);
    src.pos = 0;
    assert_int_equal(engine_restore_dir(&bs, &x, at("staging"), NULL, &e), 0);
    struct stat s;
    assert_int_equal(fstatat(rootfd, "staging/growing", &s, 0), 0);
    assert_int_equal(s.st_size, 8 << 20);
    engine_stats_free(&st);
    free(m.p);
}

static int hook_dirfd = -1;
static int hook_changes; /* attempts on which "hot" is changed */
static int hook_calls;

static void change_hot(const char *path, int attempt)
{
    if (strcmp(path, "hot") != 0)
        return;
    hook_calls++;
    if (attempt <= hook_changes) {
        char v[64];
        memset(v, 'a' + attempt, sizeof(v));
        int fd = openat(hook_dirfd, "hot", O_WRONLY);
        assert_int_equal(pwrite(fd, v, (size_t)attempt * 8, 0), attempt * 8);
        close(fd);
    }
}

/* A small file changed during a read is read again; still moving after 3 reads, reported. */
static void test_small_file_reread(void **state)
{
    ord_err e = {0};
    (void)state;

    hook_dirfd = mkdir_open(rootfd, "vol", 0755);
    write_at(hook_dirfd, "cold", "cold", 4, 0644);
    engine_test_reread_hook = change_hot;
    for (int changes = 0; changes <= 3; changes++) {
        struct membuf m = {0};
        struct engine_stats st = {0};
        char stage[32], p[64], buf[64];

        write_at(hook_dirfd, "hot", "0123456789012345678901234567890123456789", 40, 0644);
        hook_changes = changes;
        hook_calls = 0;
        assert_int_equal(backup_mem("vol", &m, &st, NULL, NULL, &e), 0);
        assert_int_equal(hook_calls, changes < 3 ? changes + 1 : 3);
        snprintf(stage, sizeof(stage), "stage%d", changes);
        struct engine_expect x = expect_of(&st, VOLUME_DIRECTORY);
        struct memsrc src = {m.p, m.len, 0, 0};
        struct byte_source bs = {mem_read, &src};
        assert_int_equal(engine_restore_dir(&bs, &x, at(stage), NULL, &e), 0);
        snprintf(p, sizeof(p), "%s/hot", stage);
        int fd = openat(rootfd, p, O_RDONLY);
        assert_int_equal(read(fd, buf, sizeof(buf)), 40);
        close(fd);
        if (changes < 3) {
            /* Consistent: the version after the last change, not reported. */
            assert_int_equal(st.n_changed, 0);
            for (int i = 0; i < changes * 8; i++)
                assert_int_equal(buf[i], 'a' + changes);
            assert_memory_equal(buf + changes * 8, &"0123456789012345678901234567890123456789"[changes * 8],
                                (size_t)(40 - changes * 8));
        } else {
            assert_int_equal(st.n_changed, 1);
            assert_string_equal(st.changed[0].path, "hot");
            assert_non_null(strstr(st.changed[0].reason, "still changing after 3 reads"));
        }
        engine_stats_free(&st);
        free(m.p);
    }
    engine_test_reread_hook = NULL;
    close(hook_dirfd);
}

static void test_mount_point(void **state)
{
    struct membuf m = {0};
    struct engine_stats st = {0};
    ord_err e = {0};
    int d;
    (void)state;

    d = mkdir_open(rootfd, "vol", 0755);
    close(mkdir_open(d, "mnt", 0755));
    write_at(d, "z_after", "after", 5, 0644);
    close(d);
    if (mount("ordinal-test", at("vol/mnt"), "tmpfs", 0, "size=1m") < 0) {
        print_message("mount not permitted here: mount-point test skipped\n");
        skip();
    }
    d = open(at("vol/mnt"), O_RDONLY | O_DIRECTORY);
    write_at(d, "on_other_fs", "x", 1, 0644);
    close(d);

    assert_int_equal(backup_mem("vol", &m, &st, NULL, NULL, &e), 0);
    assert_int_equal(st.n_changed, 1);
    assert_string_equal(st.changed[0].path, "mnt");
    assert_non_null(strstr(st.changed[0].reason, "mount point"));
    struct engine_expect x = expect_of(&st, VOLUME_DIRECTORY);
    struct memsrc src = {m.p, m.len, 0, 0};
    struct byte_source bs = {mem_read, &src};
    assert_int_equal(engine_restore_dir(&bs, &x, at("staging"), NULL, &e), 0);
    assert_int_equal(faccessat(rootfd, "staging/mnt", F_OK, 0), 0);
    assert_int_equal(faccessat(rootfd, "staging/mnt/on_other_fs", F_OK, 0), -1);
    assert_int_equal(faccessat(rootfd, "staging/z_after", F_OK, 0), 0);

    /* fs_rmtree refuses to cross into the mount and leaves its content alone. */
    assert_int_equal(fs_rmtree_at(rootfd, "vol", &e), -EXDEV);
    assert_non_null(strstr(e.msg, "vol/mnt"));
    assert_int_equal(faccessat(rootfd, "vol/mnt/on_other_fs", F_OK, 0), 0);
    assert_int_equal(umount2(at("vol/mnt"), 0), 0);
    assert_int_equal(fs_rmtree_at(rootfd, "vol", &e), 0);
    assert_int_equal(faccessat(rootfd, "vol", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    engine_stats_free(&st);
    free(m.p);
}

static void test_verify_mismatch(void **state)
{
    struct membuf m = {0};
    struct engine_stats st = {0};
    ord_err e = {0};
    char badsha[ENGINE_SHA256_HEX];
    int d;
    (void)state;

    d = mkdir_open(rootfd, "vol", 0755);
    write_at(d, "f", "content", 7, 0644);
    close(d);
    assert_int_equal(backup_mem("vol", &m, &st, NULL, NULL, &e), 0);
    struct memsrc src = {m.p, m.len, 0, 0};
    struct byte_source bs = {mem_read, &src};

    struct engine_expect x = expect_of(&st, VOLUME_DIRECTORY);
    memcpy(badsha, st.sha256, sizeof(badsha));
    badsha[0] = badsha[0] == '0' ? '1' : '0';
    x.sha256 = badsha;
    assert_int_equal(engine_verify(&bs, &x, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "SHA-256 mismatch"));

    x = expect_of(&st, VOLUME_DIRECTORY);
    x.files++;
    src.pos = 0;
    assert_int_equal(engine_verify(&bs, &x, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "entry count"));

    x = expect_of(&st, VOLUME_DIRECTORY);
    x.kind = VOLUME_DEVICE;
    src.pos = 0;
    assert_int_equal(engine_verify(&bs, &x, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "device image"));

    /* A failed restore leaves no staging directory behind. */
    x = expect_of(&st, VOLUME_DIRECTORY);
    x.bytes_in--;
    src.pos = 0;
    assert_true(engine_restore_dir(&bs, &x, at("staging"), NULL, &e) < 0);
    assert_int_equal(faccessat(rootfd, "staging", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    engine_stats_free(&st);
    free(m.p);
}

static void test_swap(void **state)
{
    ord_err e = {0};
    int d, s, ro;
    (void)state;

    close(mkdir_open(rootfd, "outside", 0755));
    write_at(rootfd, "outside/keep", "keep", 4, 0644);
    d = mkdir_open(rootfd, "live", 0755);
    write_at(d, "old", "old", 3, 0644);
    assert_int_equal(symlinkat("../outside", d, "to_outside"), 0);
    ro = mkdir_open(d, "ro", 0700);
    write_at(ro, "file", "x", 1, 0444);
    assert_int_equal(fchmod(ro, 0500), 0);
    close(ro);
    close(d);
    s = mkdir_open(rootfd, "live.staging", 0755);
    write_at(s, "new", "new", 3, 0644);
    close(s);

    assert_int_equal(engine_swap(at("live"), at("live.staging"), &e), 0);
    assert_int_equal(faccessat(rootfd, "live/new", F_OK, 0), 0);
    assert_int_equal(faccessat(rootfd, "live/old", F_OK, 0), -1);
    assert_int_equal(faccessat(rootfd, "live.staging", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(faccessat(rootfd, "outside/keep", F_OK, 0), 0);

    /* No live entry yet: staging becomes it. */
    close(mkdir_open(rootfd, "fresh.staging", 0755));
    assert_int_equal(engine_swap(at("fresh"), at("fresh.staging"), &e), 0);
    assert_int_equal(faccessat(rootfd, "fresh", F_OK, 0), 0);
    /* Different parents are refused. */
    close(mkdir_open(rootfd, "outside/x.staging", 0755));
    assert_int_equal(engine_swap(at("live"), at("outside/x.staging"), &e), -EXDEV);
    assert_int_equal(faccessat(rootfd, "live/new", F_OK, 0), 0);
}

static void test_rmtree_deep(void **state)
{
    ord_err e = {0};
    int d = mkdir_open(rootfd, "deep", 0755);
    (void)state;

    /* Deeper than RMTREE_OPEN_MAX and than PATH_MAX, with read-only levels and symlinks. */
    for (int i = 0; i < 300; i++) {
        int n = mkdir_open(d, "level-with-a-long-name-0123456789", i % 7 ? 0755 : 0500);
        assert_int_equal(fchmod(n, 0755), 0);
        assert_int_equal(symlinkat("/", n, "root_link"), 0);
        write_at(n, "f", "f", 1, 0000);
        if (i % 7 == 0)
            assert_int_equal(fchmod(d, 0500), 0);
        close(d);
        d = n;
    }
    close(d);
    assert_int_equal(fs_rmtree_at(rootfd, "deep", &e), 0);
    assert_int_equal(faccessat(rootfd, "deep", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(fs_rmtree_at(rootfd, "deep", &e), 0); /* missing: fine */
    assert_int_equal(fs_rmtree_at(rootfd, "..", &e), -EINVAL);
    assert_int_equal(fs_rmtree_at(rootfd, "a/b", &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_during_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_file_reread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mount_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rmtree_deep, setup, teardown),
    };

    if (geteuid() != 0) {
        printf("test_engine needs root (owners, device nodes, security.* xattrs): skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
