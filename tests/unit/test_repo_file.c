/*
 * test_repo_file.c - the directory backend of the repository: opening and initialising (and
 * refusing what is not a repository), atomic streaming puts (nothing visible before commit,
 * nothing left after abort), create-if-absent and compare-and-remove (the lock primitives),
 * listing under a prefix without temporaries, removal of a whole backup without following
 * symlinks, and key validation. Also the backup catalog built from the listing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "catalog.h"
#include "repo.h"

static char dir[256];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_repo_file.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static struct repo *open_new(void)
{
    struct repo *r = NULL;
    ord_err e = {0};
    char url[512];

    snprintf(url, sizeof(url), "file://%s/repo", dir);
    if (repo_open(url, REPO_OPEN_CREATE, &r, &e) < 0)
        fail_msg("repo_open: %s", e.msg);
    return r;
}

static void test_open_and_refuse(void **state)
{
    struct repo *r = NULL;
    ord_err e = {0};
    char path[512];

    snprintf(path, sizeof(path), "%s/repo", dir);
    assert_int_equal(repo_open(path, REPO_OPEN_EXISTING, &r, &e), -ENOENT);
    r = open_new();
    repo_close(r);
    r = NULL;
    snprintf(path, sizeof(path), "%s/repo/ordinal-repo.json", dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/repo", dir);
    assert_int_equal(repo_open(path, REPO_OPEN_EXISTING, &r, &e), 0);
    repo_close(r);

    /* a directory with something else in it */
    snprintf(path, sizeof(path), "%s/other", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/other/file", dir);
    write_file(path, "x");
    snprintf(path, sizeof(path), "%s/other", dir);
    assert_int_equal(repo_open(path, REPO_OPEN_CREATE, &r, &e), -ENOTEMPTY);
    assert_non_null(strstr(e.msg, "not empty"));
    assert_int_equal(repo_open(path, REPO_OPEN_EXISTING, &r, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "not an ordinal repository"));

    /* a repository of another format version */
    snprintf(path, sizeof(path), "%s/other/ordinal-repo.json", dir);
    write_file(path, "{\"format\":\"ordinal-repository\",\"version\":2}");
    snprintf(path, sizeof(path), "%s/other", dir);
    assert_int_equal(repo_open(path, REPO_OPEN_CREATE, &r, &e), -EPROTONOSUPPORT);
    assert_non_null(strstr(e.msg, "version 2"));

    assert_int_equal(repo_open("relative/path", REPO_OPEN_CREATE, &r, &e), -EINVAL);
    assert_int_equal(repo_open("file://host/path", REPO_OPEN_CREATE, &r, &e), -EINVAL);
    assert_int_equal(repo_open("ftp://x/y", REPO_OPEN_CREATE, &r, &e), -EINVAL);
    /* a missing parent is not created */
    snprintf(path, sizeof(path), "%s/no/such/repo", dir);
    assert_int_equal(repo_open(path, REPO_OPEN_CREATE, &r, &e), -ENOENT);
}

static int count_dot_files(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

struct keys {
    char k[16][REPO_KEY_MAX + 1];
    uint64_t size[16];
    int n;
};

static int collect(void *ctx, const char *key, uint64_t size)
{
    struct keys *ks = ctx;
    if (ks->n >= 16)
        return -E2BIG;
    snprintf(ks->k[ks->n], sizeof(ks->k[0]), "%s", key);
    ks->size[ks->n++] = size;
    return 0;
}

static bool has_key(const struct keys *ks, const char *key)
{
    for (int i = 0; i < ks->n; i++)
        if (streq(ks->k[i], key))
            return true;
    return false;
}

static void test_atomic_put(void **state)
{
    struct repo *r = open_new();
    struct repo_writer *w = NULL;
    struct keys ks = {0};
    ord_err e = {0};
    char *got = NULL, path[512];
    size_t len;
    struct byte_sink sink;
    const char *key = "backups/default/web/20261121T203000Z/ordinal-0/data.tar.zst";

    assert_int_equal(repo_put_begin(r, key, &w, &e), 0);
    sink = repo_writer_sink(w);
    assert_int_equal(sink.write(sink.ctx, "hello ", 6, &e), 0);
    assert_int_equal(sink.write(sink.ctx, "world", 5, &e), 0);
    /* not visible before commit */
    assert_int_equal(repo_get_small(r, key, 100, &got, &len, &e), -ENOENT);
    assert_int_equal(repo_list(r, "backups", collect, &ks, &e), 0);
    assert_int_equal(ks.n, 0);
    assert_int_equal(repo_writer_commit(w, &e), 0);
    assert_int_equal(repo_get_small(r, key, 100, &got, &len, &e), 0);
    assert_int_equal(len, 11);
    assert_string_equal(got, "hello world");
    free(got);
    assert_int_equal(repo_get_small(r, key, 5, &got, &len, &e), -EFBIG);

    /* abort leaves nothing, not even the temporary */
    assert_int_equal(repo_put_begin(r, "backups/default/web/20261121T203000Z/backup.json", &w, &e),
                     0);
    sink = repo_writer_sink(w);
    assert_int_equal(sink.write(sink.ctx, "{}", 2, &e), 0);
    repo_writer_abort(w);
    snprintf(path, sizeof(path), "%s/repo/backups/default/web/20261121T203000Z", dir);
    assert_int_equal(count_dot_files(path), 0);

    /* replacing an object */
    assert_int_equal(repo_put_small(r, key, "new", 3, &e), 0);
    assert_int_equal(repo_get_small(r, key, 100, &got, &len, &e), 0);
    assert_string_equal(got, "new");
    free(got);

    ks.n = 0;
    snprintf(path, sizeof(path), "%s/repo/backups/default/web/.stray.tmp", dir);
    write_file(path, "leftover of a killed writer");
    assert_int_equal(repo_list(r, "", collect, &ks, &e), 0);
    assert_int_equal(ks.n, 2);
    assert_true(has_key(&ks, key));
    assert_true(has_key(&ks, "ordinal-repo.json"));
    ks.n = 0;
    assert_int_equal(repo_list(r, "backups/default/nothing", collect, &ks, &e), 0);
    assert_int_equal(ks.n, 0);
    repo_close(r);
}

static void test_create_excl_remove_if(void **state)
{
    struct repo *r = open_new();
    ord_err e = {0};
    char *got = NULL;
    size_t len;

    assert_int_equal(repo_create_excl(r, "locks/ns/a.lock", "one", 3, &e), 0);
    assert_int_equal(repo_create_excl(r, "locks/ns/a.lock", "two", 3, &e), -EEXIST);
    assert_int_equal(repo_get_small(r, "locks/ns/a.lock", 100, &got, &len, &e), 0);
    assert_string_equal(got, "one");
    free(got);
    assert_int_equal(repo_remove_if(r, "locks/ns/a.lock", "two", 3, &e), -ESTALE);
    assert_int_equal(repo_get_small(r, "locks/ns/a.lock", 100, &got, &len, &e), 0);
    assert_string_equal(got, "one");
    free(got);
    assert_int_equal(repo_remove_if(r, "locks/ns/a.lock", "one", 3, &e), 0);
    assert_int_equal(repo_remove_if(r, "locks/ns/a.lock", "one", 3, &e), -ENOENT);
    assert_int_equal(repo_create_excl(r, "locks/ns/a.lock", "three", 5, &e), 0);
    repo_close(r);
}

static void test_remove_prefix_no_follow(void **state)
{
    struct repo *r = open_new();
    ord_err e = {0};
    char path[512], target[512];
    struct keys ks = {0};

    assert_int_equal(
        repo_put_small(r, "backups/ns/a/20261121T203000Z/ordinal-0/d.json", "x", 1, &e), 0);
    assert_int_equal(repo_put_small(r, "backups/ns/b/20261121T203000Z/backup.json", "x", 1, &e), 0);
    /* a symlink inside the backup pointing outside: removed, never followed */
    snprintf(target, sizeof(target), "%s/outside", dir);
    assert_int_equal(mkdir(target, 0755), 0);
    snprintf(path, sizeof(path), "%s/outside/keep", dir);
    write_file(path, "precious");
    snprintf(path, sizeof(path), "%s/repo/backups/ns/a/20261121T203000Z/ordinal-0/link", dir);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof(path), "%s/repo/backups/ns/a/20261121T203000Z/ordinal-0/.x.tmp", dir);
    write_file(path, "temp");

    assert_int_equal(repo_remove_prefix(r, "backups/ns/a/20261121T203000Z", &e), 0);
    snprintf(path, sizeof(path), "%s/outside/keep", dir);
    assert_int_equal(access(path, F_OK), 0);
    /* the emptied parents went, the other StatefulSet and the top level stayed */
    snprintf(path, sizeof(path), "%s/repo/backups/ns/a", dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/repo/backups", dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(repo_list(r, "backups", collect, &ks, &e), 0);
    assert_int_equal(ks.n, 1);
    assert_string_equal(ks.k[0], "backups/ns/b/20261121T203000Z/backup.json");
    assert_int_equal(repo_remove(r, "backups/ns/b/20261121T203000Z/backup.json", &e), 0);
    assert_int_equal(repo_remove(r, "backups/ns/b/20261121T203000Z/backup.json", &e), -ENOENT);
    repo_close(r);
}

static void test_keys(void **state)
{
    static const char *const bad[] = {"",     "/abs", "a//b",   "a/../b", "..", ".hidden",
                                      "a/.b", "a/b/", "sp ace", "a\nb",   "x:y"};
    struct repo *r = open_new();
    struct repo_writer *w = NULL;
    ord_err e = {0};
    char long_key[REPO_KEY_MAX + 8];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (repo_key_valid(bad[i]))
            fail_msg("'%s' is accepted", bad[i]);
        assert_int_equal(repo_put_begin(r, bad[i], &w, &e), -EINVAL);
    }
    memset(long_key, 'a', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    assert_false(repo_key_valid(long_key));
    assert_true(repo_key_valid("backups/default/web/20261121T203000Z-1/ordinal-0/data.tar.zst"));
    repo_close(r);
}

static void test_catalog(void **state)
{
    struct repo *r = open_new();
    struct catalog c = {0};
    struct sts_ref web = {"default", "web"}, db = {"prod", "db"};
    ord_err e = {0};

    assert_int_equal(
        repo_put_small(r, "backups/default/web/20261121T203000Z-10/backup.json", "12345", 5, &e),
        0);
    assert_int_equal(
        repo_put_small(r, "backups/default/web/20261121T203000Z-2/backup.json", "1", 1, &e), 0);
    assert_int_equal(
        repo_put_small(r, "backups/default/web/20261121T203000Z-2/ordinal-0/d.json", "12", 2, &e),
        0);
    /* incomplete: no backup.json */
    assert_int_equal(
        repo_put_small(r, "backups/default/web/20261122T000000Z/ordinal-0/d.json", "1", 1, &e), 0);
    assert_int_equal(repo_put_small(r, "backups/prod/db/20261120T000000Z/backup.json", "1", 1, &e),
                     0);
    /* not backups */
    assert_int_equal(repo_put_small(r, "backups/default/web/notanid/backup.json", "1", 1, &e), 0);
    assert_int_equal(repo_put_small(r, "backups/default/web/backup.json", "1", 1, &e), 0);

    assert_int_equal(catalog_scan(r, NULL, &c, &e), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.v[0].id, "20261120T000000Z");
    assert_string_equal(c.v[1].id, "20261121T203000Z-2");
    assert_int_equal(c.v[1].bytes, 3);
    assert_string_equal(c.v[2].id, "20261121T203000Z-10");
    assert_false(c.v[3].complete);
    assert_string_equal(catalog_latest(&c, &web)->id, "20261121T203000Z-10");
    assert_string_equal(catalog_latest(&c, &db)->id, "20261120T000000Z");
    assert_non_null(catalog_find(&c, &web, "20261122T000000Z"));
    assert_null(catalog_find(&c, &db, "20261122T000000Z"));
    catalog_free(&c);
    assert_int_equal(catalog_scan(r, &db, &c, &e), 0);
    assert_int_equal(c.n, 1);
    catalog_free(&c);
    repo_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_excl_remove_if, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_prefix_no_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
