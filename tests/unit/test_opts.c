/*
 * test_opts.c - the options table: values, bounds, choices, environment defaults, required
 * options, and a specific message (never the whole help) for each kind of bad flag.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "opts.h"

static const char *const orders[] = {"reverse", "ordinal", NULL};

struct args {
    const char *repo;
    const char *order;
    uint64_t level;
    bool json;
    struct strv roots;
};

/* Runs opts_parse with stderr captured into errbuf. */
static int parse(struct args *a, char *errbuf, size_t errsize, int argc, const char **argv)
{
    *a = (struct args){.order = "reverse", .level = 3};
    const struct opt_def opts[] = {
        {"repo", OPT_STRING, &a->repo, "URL", "Repository.", NULL, 0, 0, NULL, "TEST_REPO", true},
        {"order", OPT_CHOICE, &a->order, "ORDER", "Order.", "reverse", 0, 0, orders, NULL, false},
        {"level", OPT_UINT, &a->level, "N", "Level.", "3", 1, 19, NULL, NULL, false},
        {"json", OPT_FLAG, &a->json, NULL, "JSON.", NULL, 0, 0, NULL, NULL, false},
        {"root", OPT_STRING_LIST, &a->roots, "DIR", "Root.", NULL, 0, 0, NULL, NULL, false},
    };
    const struct opt_cmd cmd = {"backup", "--repo URL", "Backs up.", opts, 5, NULL};
    FILE *tmp = tmpfile();
    int saved = dup(2), r;

    dup2(fileno(tmp), 2);
    r = opts_parse(&cmd, "prog", "1.0", argc, (char **)argv, 2);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(errbuf, 1, errsize - 1, tmp);
    errbuf[n] = '\0';
    fclose(tmp);
    return r;
}

static void test_values(void **state)
{
    const char *argv[] = {"prog", "backup", "--repo", "/r", "--order", "ordinal", "--level=19",
                          "--json", "--root", "/a", "--root", "/b"};
    struct args a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), 12, argv), OPTS_OK);
    assert_string_equal(a.repo, "/r");
    assert_string_equal(a.order, "ordinal");
    assert_int_equal(a.level, 19);
    assert_true(a.json);
    assert_int_equal(a.roots.n, 2);
    assert_string_equal(a.roots.v[1], "/b");
    strv_free(&a.roots);
}

static void expect_error(const char *needle, int argc, const char **argv)
{
    struct args a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), argc, argv), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("stderr lacks '%s': %s", needle, err);
    assert_null(strstr(err, "Usage:")); /* one specific line, not the help */
    strv_free(&a.roots);
}

static void test_errors(void **state)
{
    unsetenv("TEST_REPO");
    expect_error("--level: '20' is out of range 1..19", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--level=20"});
    expect_error("--level: '3x' is not a whole number", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--level=3x"});
    expect_error("--level: '-1' is not a whole number", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--level=-1"});
    expect_error("--order: 'random' is not one of: reverse ordinal", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--order=random"});
    expect_error("prog backup: unknown option '--bogus'", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--bogus"});
    expect_error("--repo is required", 3, (const char *[]){"prog", "backup", "--json"});
    expect_error("missing value for '--order'", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "--order"});
    expect_error("unexpected argument 'extra'", 5,
                 (const char *[]){"prog", "backup", "--repo", "/r", "extra"});
    expect_error("--repo must not be empty", 3, (const char *[]){"prog", "backup", "--repo="});
}

static void test_env_default(void **state)
{
    struct args a;
    char err[512];
    setenv("TEST_REPO", "/from-env", 1);
    assert_int_equal(parse(&a, err, sizeof(err), 2, (const char *[]){"prog", "backup"}), OPTS_OK);
    assert_string_equal(a.repo, "/from-env");
    /* the flag wins over the environment */
    assert_int_equal(
        parse(&a, err, sizeof(err), 4, (const char *[]){"prog", "backup", "--repo", "/flag"}),
        OPTS_OK);
    assert_string_equal(a.repo, "/flag");
    unsetenv("TEST_REPO");
}

static void test_help(void **state)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    struct args a = {0};
    const struct opt_def opts[] = {
        {"order", OPT_CHOICE, &a.order, "ORDER", "Processing order.", "reverse", 0, 0, orders,
         NULL, false},
    };
    const struct opt_cmd cmd = {"backup", "--repo URL", "Backs up.", opts, 1, "Exit status: 0\n"};
    opts_help(&cmd, "prog", f);
    fclose(f);
    assert_non_null(strstr(buf, "Usage: prog backup --repo URL"));
    assert_non_null(strstr(buf, "--order ORDER"));
    assert_non_null(strstr(buf, "One of: reverse ordinal. Default: reverse."));
    assert_non_null(strstr(buf, "Exit status: 0"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env_default),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
