/*
 * test_lock.c - the per-StatefulSet lock: one holder at a time with a message naming it, a
 * lock of a dead process on this host (pid gone, pid reused, boot id changed) taken over, a
 * lock from another host never judged stale, release only of our own lock, different
 * StatefulSets independent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lock.h"
#include "repo.h"

static char dir[256];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_lock.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int fake_alive_start;
static int fake_proc(int64_t pid, uint64_t *ret)
{
    if (pid == 999)
        return -ESRCH;
    if (pid == 998)
        return -EACCES;
    *ret = (uint64_t)fake_alive_start;
    return 0;
}

static void test_staleness(void **state)
{
    struct lock_info self = {.host = "node-1", .pid = 10, .start_time = 5, .boot_id = "b1"};
    struct lock_info h = {.host = "node-1", .pid = 20, .start_time = 7, .boot_id = "b1"};

    fake_alive_start = 7;
    assert_false(lock_is_stale(&h, &self, fake_proc)); /* alive, same start */
    fake_alive_start = 8;
    assert_true(lock_is_stale(&h, &self, fake_proc)); /* pid reused */
    h.pid = 999;
    assert_true(lock_is_stale(&h, &self, fake_proc)); /* gone */
    h.pid = 998;
    assert_false(lock_is_stale(&h, &self, fake_proc)); /* cannot tell: not stale */
    h.pid = 20;
    fake_alive_start = 7;
    snprintf(h.boot_id, sizeof(h.boot_id), "b0");
    assert_true(lock_is_stale(&h, &self, fake_proc)); /* rebooted since */
    snprintf(h.host, sizeof(h.host), "node-2");
    h.pid = 999;
    assert_false(lock_is_stale(&h, &self, fake_proc)); /* another host: never judged */
}

static void test_info_round_trip(void **state)
{
    struct lock_info self, back;
    char *text = NULL;

    assert_int_equal(lock_info_self("backup", &self), 0);
    assert_int_equal(self.pid, getpid());
    assert_int_equal(lock_info_format(&self, &text), 0);
    assert_int_equal(lock_info_parse(text, strlen(text), &back), 0);
    assert_string_equal(back.host, self.host);
    assert_int_equal(back.start_time, self.start_time);
    assert_string_equal(back.nonce, self.nonce);
    assert_false(lock_is_stale(&back, &self, lock_proc_start));
    free(text);
    assert_int_equal(lock_info_parse("{\"host\":1}", 10, &back), -EBADMSG);
    assert_int_equal(lock_info_parse("nonsense", 8, &back), -EBADMSG);
}

static struct repo *open_repo(void)
{
    struct repo *r = NULL;
    ord_err e = {0};

    if (repo_open(dir, REPO_OPEN_CREATE, &r, &e) < 0)
        fail_msg("repo_open: %s", e.msg);
    return r;
}

static void put_lock(struct repo *r, const struct lock_info *li)
{
    char *text = NULL;
    ord_err e = {0};

    assert_int_equal(lock_info_format(li, &text), 0);
    assert_int_equal(repo_put_small(r, "locks/default/web.lock", text, strlen(text), &e), 0);
    free(text);
}

static void test_acquire_busy_release(void **state)
{
    struct repo *r = open_repo();
    struct repo_lock *l = NULL, *l2 = NULL, *other = NULL;
    struct sts_ref web = {"default", "web"}, db = {"default", "db"};
    ord_err e = {0};

    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), 0);
    assert_int_equal(lock_acquire(r, &web, "prune", &l2, &e), -EBUSY);
    assert_non_null(strstr(e.msg, "locked by a backup"));
    assert_non_null(strstr(e.msg, "locks/default/web.lock"));
    /* another StatefulSet is independent */
    assert_int_equal(lock_acquire(r, &db, "backup", &other, &e), 0);
    lock_release(l);
    assert_int_equal(lock_acquire(r, &web, "prune", &l2, &e), 0);
    lock_release(l2);
    lock_release(other);
    repo_close(r);
}

static void test_takeover(void **state)
{
    struct repo *r = open_repo();
    struct repo_lock *l = NULL;
    struct sts_ref web = {"default", "web"};
    struct lock_info dead;
    ord_err e = {0};
    pid_t child;
    int status;

    /* a process that has exited: its pid is free */
    child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(lock_info_self("backup", &dead), 0);
    dead.pid = child;
    put_lock(r, &dead);
    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), 0);
    lock_release(l);

    /* our own pid, but from before a reboot */
    assert_int_equal(lock_info_self("backup", &dead), 0);
    snprintf(dead.boot_id, sizeof(dead.boot_id), "00000000-0000-0000-0000-000000000000");
    put_lock(r, &dead);
    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), 0);
    lock_release(l);

    /* another host: never taken over */
    assert_int_equal(lock_info_self("backup", &dead), 0);
    snprintf(dead.host, sizeof(dead.host), "some-other-node");
    dead.pid = 999999;
    put_lock(r, &dead);
    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), -EBUSY);
    assert_non_null(strstr(e.msg, "some-other-node"));

    /* a damaged lock object is not guessed about */
    assert_int_equal(repo_put_small(r, "locks/default/web.lock", "garbage", 7, &e), 0);
    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), -EBUSY);
    assert_non_null(strstr(e.msg, "damaged"));
    repo_close(r);
}

static void test_release_only_ours(void **state)
{
    struct repo *r = open_repo();
    struct repo_lock *l = NULL;
    struct sts_ref web = {"default", "web"};
    struct lock_info other;
    char *got = NULL;
    size_t len;
    ord_err e = {0};

    assert_int_equal(lock_acquire(r, &web, "backup", &l, &e), 0);
    /* someone replaced it (took it over wrongly): our release must not remove theirs */
    assert_int_equal(lock_info_self("backup", &other), 0);
    snprintf(other.host, sizeof(other.host), "thief");
    put_lock(r, &other);
    lock_release(l);
    assert_int_equal(repo_get_small(r, "locks/default/web.lock", 4096, &got, &len, &e), 0);
    assert_non_null(strstr(got, "thief"));
    free(got);
    repo_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staleness),
        cmocka_unit_test(test_info_round_trip),
        cmocka_unit_test_setup_teardown(test_acquire_busy_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_only_ours, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
