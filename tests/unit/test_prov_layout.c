/*
 * test_prov_layout.c - the node layout of the provisioner: entry paths for StatefulSet and
 * plain claims, refused names, openat-relative creation that never follows a planted
 * symlink, pending names, orphan moves, and the directory backend's prepare/commit/abort/
 * release cycle on a real temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "capacity.h"
#include "class_params.h"
#include "vol_layout.h"

static char base[256];

static int setup(void **state)
{
    snprintf(base, sizeof(base), "/tmp/test_prov_layout.XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_entry_paths(void **state)
{
    struct vol_identity id;
    char buf[VLAYOUT_REL_MAX];

    assert_int_equal(vlayout_identity_sts(&id, "db", "data-my-sql-2", "my-sql", "data", 2), 0);
    assert_int_equal(vlayout_entry_rel(&id, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "db/my-sql/2/data");
    assert_int_equal(vlayout_parent_rel(&id, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "db/my-sql/2");
    assert_string_equal(vlayout_leaf(&id), "data");
    assert_int_equal(vlayout_identity_claim(&id, "db", "scratch"), 0);
    assert_int_equal(vlayout_entry_rel(&id, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "db/_claims/scratch");
    assert_int_equal(vlayout_entry_rel(&id, buf, 10), -ENAMETOOLONG);
}

static void test_refused_names(void **state)
{
    struct vol_identity id;

    assert_int_equal(vlayout_identity_claim(&id, "..", "x"), -EINVAL);
    assert_int_equal(vlayout_identity_claim(&id, "ns", "a/b"), -EINVAL);
    assert_int_equal(vlayout_identity_claim(&id, "ns", ".hidden"), -EINVAL);
    assert_int_equal(vlayout_identity_claim(&id, "", "x"), -EINVAL);
    assert_int_equal(vlayout_identity_sts(&id, "ns", "c", "_claims", "t", 0), -EINVAL);
    assert_int_equal(vlayout_identity_sts(&id, "ns", "c", "s", "t", -1), -EINVAL);
    assert_int_equal(vlayout_identity_sts(&id, "ns", "c", "s", "..", 0), -EINVAL);
}

static void test_identity_eq(void **state)
{
    struct vol_identity a, b;

    vlayout_identity_sts(&a, "ns", "data-web-0", "web", "data", 0);
    vlayout_identity_sts(&b, "ns", "other-name", "web", "data", 0);
    assert_true(vlayout_identity_eq(&a, &b)); /* the claim name is not part of an sts identity */
    vlayout_identity_sts(&b, "ns", "data-web-1", "web", "data", 1);
    assert_false(vlayout_identity_eq(&a, &b));
    vlayout_identity_claim(&b, "ns", "data-web-0");
    assert_false(vlayout_identity_eq(&a, &b));
}

static void test_pending_name(void **state)
{
    char buf[128];

    assert_int_equal(vlayout_pending_name("0b4c-49", buf, sizeof(buf)), 0);
    assert_string_equal(buf, ".pending-0b4c-49");
    assert_int_equal(vlayout_pending_name("../x", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(vlayout_pending_name("", buf, sizeof(buf)), -EINVAL);
}

static void test_symlink_in_layout_not_followed(void **state)
{
    char root[512], outside[512], link[600];
    int rootfd = -1, parent = -1;
    struct vol_identity id;
    struct stat st;

    snprintf(root, sizeof(root), "%s/root1", base);
    snprintf(outside, sizeof(outside), "%s/outside", base);
    assert_int_equal(mkdir(root, 0755), 0);
    assert_int_equal(mkdir(outside, 0755), 0);
    /* a namespace directory replaced by a symlink to elsewhere */
    snprintf(link, sizeof(link), "%s/ns", root);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(vlayout_open_root(base, root, false, &rootfd, NULL), 0);
    vlayout_identity_claim(&id, "ns", "c");
    assert_true(vlayout_open_parent(rootfd, &id, true, &parent, NULL) < 0);
    snprintf(link, sizeof(link), "%s/_claims", outside);
    assert_int_equal(lstat(link, &st), -1); /* nothing created through the link */
    close(rootfd);
}

static void test_open_root_creates_below_allowed(void **state)
{
    char root[512];
    int fd = -1;
    ord_err e = {0};

    snprintf(root, sizeof(root), "%s/a/b/c", base);
    assert_int_equal(vlayout_open_root(base, root, false, &fd, &e), -ENOENT);
    assert_int_equal(vlayout_open_root(base, root, true, &fd, &e), 0);
    close(fd);
    assert_int_equal(
        vlayout_open_root("/nonexistent-allowed", "/nonexistent-allowed/x", true, &fd, &e),
        -ENOENT);
    assert_non_null(strstr(e.msg, "cannot open allowed root"));
}

static void test_dir_backend_cycle(void **state)
{
    char root[512], path[1024], dest[512];
    struct class_params p;
    struct class_kv kv[] = {{"root", root}};
    struct class_limits lim = {.default_root = base};
    struct cap_ledger *ledger = NULL;
    struct backend_ctx ctx;
    struct vol_identity id;
    struct vol_prepared prep;
    struct vol_request req;
    struct stat st;
    ord_err e = {0};
    FILE *f;

    snprintf(root, sizeof(root), "%s/root2", base);
    assert_int_equal(class_params_parse("c", kv, 1, &lim, &p, &e), 0);
    assert_int_equal(cap_ledger_new(&ledger), 0);
    ctx.ledger = ledger;
    vlayout_identity_sts(&id, "ns", "data-web-0", "web", "data", 0);
    req = (struct vol_request){
        .params = &p, .id = &id, .claim_uid = "u-1", .pv_name = "pvc-u-1", .request = 1024};

    assert_int_equal(dir_backend.exists(&ctx, &p, &id), 0);
    assert_int_equal(dir_backend.prepare(&ctx, &req, &prep, &e), 0);
    snprintf(path, sizeof(path), "%s/ns/web/0/data", root);
    assert_string_equal(prep.path, path);
    assert_true(prep.created_now);
    snprintf(path, sizeof(path), "%s/ns/web/0/.pending-u-1", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0777);
    assert_int_equal(dir_backend.exists(&ctx, &p, &id), 0); /* not yet at the entry */
    assert_true(cap_ledger_has_path(ledger, prep.path, NULL));
    /* a second prepare (retry after a crash) reuses it */
    assert_int_equal(dir_backend.prepare(&ctx, &req, &prep, &e), 0);
    assert_false(prep.created_now);
    assert_int_equal(dir_backend.commit(&ctx, &req, &e), 0);
    assert_int_equal(dir_backend.exists(&ctx, &p, &id), 1);
    assert_int_equal(dir_backend.commit(&ctx, &req, &e), 0); /* idempotent */

    /* data at the entry: orphan moves it aside */
    snprintf(path, sizeof(path), "%s/ns/web/0/data/file", root);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(dir_backend.orphan(&ctx, &p, &id, 0, dest, sizeof(dest), &e), 1);
    assert_string_equal(dest, ".orphaned/ns_web_0_data_19700101T000000Z");
    snprintf(path, sizeof(path), "%s/.orphaned/ns_web_0_data_19700101T000000Z/file", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(dir_backend.orphan(&ctx, &p, &id, 0, dest, sizeof(dest), &e), 0);

    /* prepare again, release: the entry and its empty parents go, the root stays */
    req.claim_uid = "u-2";
    assert_int_equal(dir_backend.prepare(&ctx, &req, &prep, &e), 0);
    assert_int_equal(dir_backend.commit(&ctx, &req, &e), 0);
    assert_int_equal(dir_backend.release(&ctx, &p, &id, NULL, &e), 0);
    snprintf(path, sizeof(path), "%s/ns", root);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat(root, &st), 0);
    assert_int_equal(dir_backend.release(&ctx, &p, &id, NULL, &e), 0); /* already gone */

    /* abort removes only the pending directory */
    req.claim_uid = "u-3";
    assert_int_equal(dir_backend.prepare(&ctx, &req, &prep, &e), 0);
    dir_backend.abort(&ctx, &req);
    snprintf(path, sizeof(path), "%s/ns", root);
    assert_int_equal(stat(path, &st), -1);
    assert_false(cap_ledger_has_path(ledger, prep.path, NULL));

    /* Block volumes need a device */
    req.block = true;
    assert_int_equal(dir_backend.prepare(&ctx, &req, &prep, &e), -EOPNOTSUPP);
    cap_ledger_free(ledger);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_paths),
        cmocka_unit_test(test_refused_names),
        cmocka_unit_test(test_identity_eq),
        cmocka_unit_test(test_pending_name),
        cmocka_unit_test(test_symlink_in_layout_not_followed),
        cmocka_unit_test(test_open_root_creates_below_allowed),
        cmocka_unit_test(test_dir_backend_cycle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
