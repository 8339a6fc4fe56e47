/*
 * test_engine_hostile.c - hostile stored objects against engine_restore_dir and
 * engine_verify. Each archive is built here with libarchive (pax, or a hand-patched ustar
 * header), compressed with zstd and hashed like a real object, and comes with an expectation
 * that matches it (the manifest is assumed to be as hostile as the archive). Every case must
 * fail with a message naming the problem, leave no staging directory, write nothing outside
 * it, and leave the sentinel "live" directory beside it untouched.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cmocka.h>

#include "engine_testlib.h"
#include "fs_rmtree.h"

static char tmproot[64];
static int rootfd = -1;

enum { T_FILE, T_DIR, T_LINK, T_HARD, T_HUGE };

struct hent {
    int type;
    const char *path;
    const char *target; /* symlink or hardlink target */
    const char *data;
};

struct obj {
    struct membuf z; /* the stored object */
    char sha[ENGINE_SHA256_HEX];
    uint64_t bytes_in, files;
};

static la_ssize_t tar_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
    (void)a;
    return mem_write(ctx, buf, len, NULL) < 0 ? -1 : (la_ssize_t)len;
}

static void sha_hex(const uint8_t *p, size_t len, char hex[ENGINE_SHA256_HEX])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    assert_int_equal(EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void compress_into(struct obj *o, const struct membuf *tar)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(tar->len);

    o->z.p = malloc(cap);
    o->z.cap = cap;
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    o->z.len = ZSTD_compress2(c, o->z.p, cap, tar->p, tar->len);
    assert_false(ZSTD_isError(o->z.len));
    ZSTD_freeCCtx(c);
    sha_hex(o->z.p, o->z.len, o->sha);
}

/* A pax tar of ents (ustar for T_HUGE, whose size field is then patched), compressed. */
static void build(struct obj *o, const struct hent *ents, size_t n)
{
    struct membuf tar = {0};
    struct archive *a = archive_write_new();
    bool huge = false;

    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < n; i++)
        huge |= ents[i].type == T_HUGE;
    if (huge)
        archive_write_set_format_ustar(a);
    else
        archive_write_set_format_pax(a);
    archive_write_set_bytes_in_last_block(a, 1);
    assert_int_equal(archive_write_open2(a, &tar, NULL, tar_write, NULL, NULL), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        const struct hent *h = &ents[i];
        size_t len = h->data ? strlen(h->data) : 0;

        archive_entry_set_pathname(e, h->path);
        archive_entry_set_mtime(e, 1600000000, 0);
        switch (h->type) {
        case T_FILE:
        case T_HUGE:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, (la_int64_t)len);
            break;
        case T_DIR:
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case T_LINK:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, h->target);
            break;
        case T_HARD:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_hardlink(e, h->target);
            break;
        }
        assert_true(archive_write_header(a, e) >= ARCHIVE_WARN);
        if (len)
            assert_int_equal(archive_write_data(a, h->data, len), (la_ssize_t)len);
        o->bytes_in += len;
        o->files++;
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    if (huge) {
        /* The first header is the T_HUGE entry: declare 8 GiB and fix the checksum. */
        unsigned sum = 0;
        memcpy(tar.p + 124, "77777777777", 12);
        memset(tar.p + 148, ' ', 8);
        for (int i = 0; i < 512; i++)
            sum += tar.p[i];
        snprintf((char *)tar.p + 148, 8, "%06o", sum);
        tar.p[155] = ' ';
    }
    compress_into(o, &tar);
    free(tar.p);
}

static struct engine_expect expect_obj(const struct obj *o)
{
    struct engine_expect x = {VOLUME_DIRECTORY, o->sha, o->z.len, o->bytes_in, o->files};
    return x;
}

/* ---------- the world around the staging directory ---------- */

static int setup(void **state)
{
    (void)state;
    snprintf(tmproot, sizeof(tmproot), "/tmp/ordinal-hostile-XXXXXX");
    assert_non_null(mkdtemp(tmproot));
    rootfd = open(tmproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(mkdirat(rootfd, "outside", 0755), 0);
    assert_int_equal(mkdirat(rootfd, "vols", 0755), 0);
    assert_int_equal(mkdirat(rootfd, "vols/live", 0755), 0);
    int fd = openat(rootfd, "vols/live/data", O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(fd, "precious", 8), 8);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    ord_err e = {0};
    int pfd = open("/tmp", O_RDONLY | O_DIRECTORY);

    (void)state;
    close(rootfd);
    assert_int_equal(fs_rmtree_at(pfd, strrchr(tmproot, '/') + 1, &e), 0);
    close(pfd);
    return 0;
}

static size_t count_entries(const char *rel)
{
    int fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY);
    DIR *d = fdopendir(fd);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

/* Nothing but the sentinel is left, untouched, and nothing appeared anywhere else. */
static void check_world(void)
{
    char buf[16] = {0};
    int fd;

    assert_int_equal(count_entries("."), 2);      /* outside, vols */
    assert_int_equal(count_entries("outside"), 0);
    assert_int_equal(count_entries("vols"), 1);   /* live: no staging left behind */
    assert_int_equal(count_entries("vols/live"), 1);
    fd = openat(rootfd, "vols/live/data", O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof(buf)), 8);
    assert_string_equal(buf, "precious");
    close(fd);
}

static char *staging(void)
{
    static char p[128];
    snprintf(p, sizeof(p), "%s/vols/live.staging", tmproot);
    return p;
}

/* Restores o; expects failure with `msg` in the message; checks the world. */
static void expect_refused(const struct obj *o, const struct engine_expect *x, const char *msg,
                           bool verify_too)
{
    struct memsrc src = {o->z.p, o->z.len, 0, 0};
    struct byte_source bs = {mem_read, &src};
    ord_err e = {0};
    int r = engine_restore_dir(&bs, x, staging(), NULL, &e);

    if (r >= 0)
        fail_msg("restore accepted a hostile object (expected '%s')", msg);
    if (!strstr(e.msg, msg))
        fail_msg("message '%s' does not say '%s'", e.msg, msg);
    print_message("  refused: %s\n", e.msg);
    check_world();
    if (verify_too) {
        src.pos = 0;
        err_clear(&e);
        assert_true(engine_verify(&bs, x, &e) < 0);
    }
}

static void hostile_names(void **state)
{
    char abs[128], outside[128];
    struct {
        struct hent ents[3];
        size_t n;
        const char *msg;
        bool verify_too;
    } cases[] = {
        {{{T_DIR, ".", NULL, NULL}, {T_FILE, "../escape", NULL, "x"}}, 2, "contains '..'", true},
        {{{T_FILE, "ok", NULL, "fine"}, {T_FILE, abs, NULL, "x"}}, 2, "absolute path", true},
        {{{T_DIR, "a", NULL, NULL}, {T_FILE, "a/../../b", NULL, "x"}}, 2, "contains '..'", true},
        {{{T_LINK, "link", outside, NULL}, {T_FILE, "link/pwned", NULL, "x"}}, 2,
         "'link' is a symlink", false},
        {{{T_LINK, "rel", "../../outside", NULL}, {T_DIR, "rel/sub", NULL, NULL}}, 2,
         "'rel' is a symlink", false},
        {{{T_FILE, "f", NULL, "x"}, {T_HARD, "h", "/etc/passwd", NULL}}, 2, "absolute path", true},
        {{{T_FILE, "f", NULL, "x"}, {T_HARD, "h", "../x", NULL}}, 2, "contains '..'", true},
        {{{T_HARD, "h", "not/extracted", NULL}}, 1, "not a file extracted earlier", false},
        {{{T_LINK, "l", outside, NULL}, {T_HARD, "h", "l/keep", NULL}}, 2, "'l' is a symlink",
         false},
        {{{T_FILE, ".", NULL, "x"}}, 1, "the root must be a directory", false},
    };
    (void)state;

    snprintf(abs, sizeof(abs), "%s/abs_pwned", tmproot);
    snprintf(outside, sizeof(outside), "%s/outside", tmproot);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct obj o;
        print_message("case %zu: %s\n", i, cases[i].ents[cases[i].n - 1].path);
        build(&o, cases[i].ents, cases[i].n);
        struct engine_expect x = expect_obj(&o);
        expect_refused(&o, &x, cases[i].msg, cases[i].verify_too);
        assert_int_equal(faccessat(rootfd, "abs_pwned", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        free(o.z.p);
    }
}

/*
 * A legal archive may hold a symlink and later another entry of the same name (the later
 * one wins). The later entry must replace the symlink, never write through it: a
 * directory entry "x" after "x -> <outside>" must not chmod or retime <outside>.
 * The restore may succeed (the symlink replaced) or be refused; either way the world
 * around the staging directory is untouched.
 */
static void hostile_replaced_symlink(void **state)
{
    char outside[128], outfile[128];
    struct {
        struct hent ents[2];
    } cases[] = {
        {{{T_LINK, "x", outside, NULL}, {T_DIR, "x", NULL, NULL}}},
        {{{T_LINK, "y", outfile, NULL}, {T_FILE, "y", NULL, "pwned"}}},
        {{{T_LINK, "z", outside, NULL}, {T_LINK, "z", "elsewhere", NULL}}},
        {{{T_DIR, "d", NULL, NULL}, {T_LINK, "d/x", outside, NULL}}},
    };
    struct stat before, after;
    (void)state;

    snprintf(outside, sizeof(outside), "%s/outside", tmproot);
    snprintf(outfile, sizeof(outfile), "%s/outside/f", tmproot);
    assert_int_equal(fchmodat(rootfd, "outside", 0711, 0), 0);
    assert_int_equal(fstatat(rootfd, "outside", &before, 0), 0);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct obj o;
        struct memsrc src;
        struct byte_source bs = {mem_read, &src};
        ord_err e = {0};
        int r;

        print_message("case %zu: %s\n", i, cases[i].ents[1].path);
        build(&o, cases[i].ents, 2);
        struct engine_expect x = expect_obj(&o);
        src = (struct memsrc){o.z.p, o.z.len, 0, 0};
        r = engine_restore_dir(&bs, &x, staging(), NULL, &e);
        if (r >= 0) {
            struct stat st;
            int vfd = openat(rootfd, "vols", O_RDONLY | O_DIRECTORY);
            char rel[64];

            snprintf(rel, sizeof(rel), "live.staging/%s", cases[i].ents[1].path);
            assert_int_equal(fstatat(vfd, rel, &st, AT_SYMLINK_NOFOLLOW), 0);
            assert_int_equal(st.st_mode & S_IFMT,
                             cases[i].ents[1].type == T_DIR    ? S_IFDIR
                             : cases[i].ents[1].type == T_FILE ? S_IFREG
                                                               : S_IFLNK);
            assert_int_equal(fs_rmtree_at(vfd, "live.staging", &e), 0);
            close(vfd);
        } else {
            print_message("  refused: %s\n", e.msg);
        }
        assert_int_equal(fstatat(rootfd, "outside", &after, 0), 0);
        assert_int_equal(after.st_mode, before.st_mode);
        assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
        assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
        check_world();
        free(o.z.p);
    }
}

static void hostile_huge_size(void **state)
{
    struct hent ents[] = {{T_HUGE, "huge", NULL, "small content that claims to be 8 GiB"}};
    struct obj o;
    (void)state;

    build(&o, ents, 1);
    struct engine_expect x = expect_obj(&o);
    /* The manifest agrees with the little data there is; the header lies. */
    expect_refused(&o, &x, "", true);
    free(o.z.p);
}

/* A valid object with enough incompressible data that corruption lands in it. */
static void build_valid(struct obj *o, char **keep)
{
    char *data = malloc(300001);
    struct hent ents[] = {{T_DIR, ".", NULL, NULL}, {T_FILE, "a", NULL, "alpha"},
                          {T_FILE, "b", NULL, data}, {T_FILE, "c", NULL, "gamma"}};

    for (int i = 0; i < 300000; i++)
        data[i] = (char)('A' + ((unsigned)i * 7919u + (unsigned)i / 13) % 53);
    data[300000] = '\0';
    build(o, ents, ARRAY_SIZE(ents));
    *keep = data;
}

static void hostile_stream(void **state)
{
    struct obj o;
    char *data;
    (void)state;

    build_valid(&o, &data);
    struct engine_expect x = expect_obj(&o);
    uint8_t *orig = malloc(o.z.len);
    memcpy(orig, o.z.p, o.z.len);

    /* Sanity: the untouched object restores. */
    {
        struct memsrc src = {o.z.p, o.z.len, 0, 0};
        struct byte_source bs = {mem_read, &src};
        ord_err e = {0};
        if (engine_restore_dir(&bs, &x, staging(), NULL, &e) < 0)
            fail_msg("valid object refused: %s", e.msg);
        int vfd = openat(rootfd, "vols", O_RDONLY | O_DIRECTORY);
        assert_int_equal(fs_rmtree_at(vfd, "live.staging", &e), 0);
        close(vfd);
    }

    /* Truncated: half the object, with the manifest of the whole. */
    size_t full = o.z.len;
    o.z.len = full / 2;
    expect_refused(&o, &x, "truncated", true);
    o.z.len = full;

    /* Corrupted zstd frames: a byte flipped in the middle, then one near the end (the
     * frame checksum), then one in the frame header. */
    size_t spots[] = {full / 2, full - 2, 5};
    for (size_t i = 0; i < ARRAY_SIZE(spots); i++) {
        memcpy(o.z.p, orig, full);
        o.z.p[spots[i]] ^= 0x5a;
        /* With the manifest of the original object: the digest catches it last. */
        expect_refused(&o, &x, "", true);
        /* With a manifest forged to match the corrupt bytes: zstd must catch it. */
        char sha[ENGINE_SHA256_HEX];
        sha_hex(o.z.p, full, sha);
        struct engine_expect forged = x;
        forged.sha256 = sha;
        expect_refused(&o, &forged, "corrupt", true);
    }
    memcpy(o.z.p, orig, full);

    /* Wrong checksum in the manifest. */
    char bad[ENGINE_SHA256_HEX];
    memcpy(bad, o.sha, sizeof(bad));
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    x.sha256 = bad;
    expect_refused(&o, &x, "SHA-256 mismatch", true);
    x.sha256 = o.sha;

    /* Garbage after the end of the zstd frame. */
    uint8_t *longer = malloc(full + 16);
    memcpy(longer, orig, full);
    memset(longer + full, 0x41, 16);
    struct obj o2 = o;
    o2.z.p = longer;
    o2.z.len = full + 16;
    sha_hex(longer, full + 16, o2.sha);
    struct engine_expect x2 = expect_obj(&o2);
    expect_refused(&o2, &x2, "corrupt", true);
    free(longer);

    /* An empty object. */
    struct obj o3 = o;
    o3.z.len = 0;
    sha_hex(o.z.p, 0, o3.sha);
    struct engine_expect x3 = expect_obj(&o3);
    expect_refused(&o3, &x3, "empty", true);

    free(orig);
    free(o.z.p);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hostile_names, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_replaced_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_huge_size, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_stream, setup, teardown),
    };

    if (geteuid() != 0) {
        printf("test_engine_hostile needs root (restores owners): skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
