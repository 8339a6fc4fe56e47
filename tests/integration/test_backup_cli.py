"""ordinal-backup backup/restore/list/verify/prune on one node with a directory repository.

What a user sees: processing order (reverse by default for backup, ordinal for restore,
--ordinals subsets) from the --json volumes and their timestamps; list/verify/prune including
--dry-run and the removal of incomplete backups; the per-StatefulSet lock (a live holder is
named, a dead one is taken over); usage errors (exit 2, a specific message); and every refusal
of restore (missing, incomplete, corrupted, truncated, bad manifest, missing target): exit 1,
a clear message, and the live volumes untouched (tree hashes before and after).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, bin_path, skip, temp_dir  # noqa: E402
from backup_util import (Backup, hashes, lock_content, make_layout, page_cache_state,  # noqa: E402
                         staging_leftovers, tree_hash, write_volume)

if not os.path.exists(bin_path("ordinal-backup")):
    skip("ordinal-backup is not built")


def order_of(doc):
    return [(v["ordinal"], v["template"]) for v in doc["volumes"]]


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir("backup-cli-")
        self.root = os.path.join(self.dir, "root")
        self.repo = os.path.join(self.dir, "repo")
        self.vols = make_layout(self.root, extra={1: ("logs",)})
        self.b = Backup(self.root, self.repo)

    def assertUntouched(self, before):
        self.assertEqual(hashes(self.vols), before, "a live volume was changed")
        self.assertEqual(staging_leftovers(self.root), [])

    def modify_all(self, seed=7):
        for (k, t), path in self.vols.items():
            write_volume(path, seed * 100 + k)


class TestOrder(Base):
    def test_backup_reverse_default(self):
        doc = self.b.backup()
        self.assertEqual(doc["order"], "reverse")
        self.assertEqual(doc["statefulset"], "default/web")
        self.assertEqual(order_of(doc), [(2, "data"), (1, "data"), (1, "logs"), (0, "data")])
        # one volume at a time, in that order
        for prev, cur in zip(doc["volumes"], doc["volumes"][1:]):
            self.assertLessEqual(prev["finished_at"], cur["started_at"])
        for v in doc["volumes"]:
            self.assertEqual(set(v) >= {"ordinal", "template", "kind", "bytes_in",
                                        "bytes_stored", "files", "seconds", "sha256"}, True)
            self.assertEqual(v["kind"], "directory")
            self.assertEqual(len(v["sha256"]), 64)
            self.assertGreater(v["bytes_in"], 64 * 1024)

    def test_backup_ordinal_and_subset(self):
        doc = self.b.backup("--order", "ordinal")
        self.assertEqual(order_of(doc), [(0, "data"), (1, "data"), (1, "logs"), (2, "data")])
        doc = self.b.backup("--ordinals", "0,2")
        self.assertEqual(order_of(doc), [(2, "data"), (0, "data")])
        listed = self.b.list()
        self.assertEqual(listed[-1]["ordinals"], [2, 0])

    def test_human_output_and_runbook_forms(self):
        # the command forms of docs/operations.md
        p = self.b.run(*self.b.args("backup"), check=0)
        self.assertRegex(p.stdout, r"backup \d{8}T\d{6}Z(-\d+)? of default/web \(order reverse\)")
        self.assertIn("ordinal 2", p.stdout)
        doc = self.b.backup("--ordinals", "0,2", "--order", "ordinal")
        self.assertEqual(order_of(doc), [(0, "data"), (2, "data")])
        self.assertEqual([x["id"] for x in self.b.list(sts="default/web")][-1], doc["id"])
        p = self.b.run(*self.b.args("restore"), check=0)
        self.assertIn(f"restored backup {doc['id']} of default/web (order ordinal)", p.stdout)
        back = self.b.restore("--backup", doc["id"], "--ordinals", "2,0", "--order", "reverse")
        self.assertEqual(order_of(back), [(2, "data"), (0, "data")])

    def test_restore_orders(self):
        self.b.backup()
        doc = self.b.restore()
        self.assertEqual(doc["order"], "ordinal")
        self.assertEqual(order_of(doc), [(0, "data"), (1, "data"), (1, "logs"), (2, "data")])
        for prev, cur in zip(doc["volumes"], doc["volumes"][1:]):
            self.assertLessEqual(prev["finished_at"], cur["started_at"])
        doc = self.b.restore("--order", "reverse", "--ordinals", "1,2")
        self.assertEqual(order_of(doc), [(2, "data"), (1, "data"), (1, "logs")])

    def test_ordinal_without_volume(self):
        p = self.b.backup("--ordinals", "0,5", check=1)
        self.assertIn("ordinal 5 has no volume in the node layout", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.repo, "backups")))

    def test_round_trip(self):
        before = hashes(self.vols)
        doc = self.b.backup()
        self.modify_all()
        self.assertNotEqual(hashes(self.vols), before)
        restored = self.b.restore("--backup", doc["id"])
        self.assertEqual(restored["id"], doc["id"])
        self.assertEqual(hashes(self.vols), before)
        self.assertEqual(staging_leftovers(self.root), [])

    def test_restored_content_on_disk_before_swap(self):
        # The old content is removed right after the swap: a power cut then must find the
        # restored files on disk, so none may still have dirty pages when restore returns.
        doc = self.b.backup()
        self.modify_all()
        self.b.restore("--backup", doc["id"])
        files = [os.path.join(d, f) for path in self.vols.values()
                 for d, _, fs in os.walk(path) for f in fs]
        self.assertGreater(len(files), 8)
        states = {f: page_cache_state(f) for f in files if os.path.isfile(f)}
        if any(s is None for s in states.values()):
            self.skipTest("no cachestat(2) here, or the volumes are on tmpfs")
        self.assertEqual([f for f, s in states.items() if s != (0, 0)], [])

    def test_leftover_staging_removed(self):
        doc = self.b.backup()
        # what a killed restore leaves: a half-extracted staging tree beside the volume
        junk = os.path.join(self.root, "default/web/0/.data.restore-20200101T000000Z")
        os.makedirs(os.path.join(junk, "a/b/c"))
        with open(os.path.join(junk, "a/b/c/f"), "w") as f:
            f.write("partial")
        os.symlink("/etc", os.path.join(junk, "a/escape"))
        self.b.restore("--backup", doc["id"], "--ordinals", "0")
        self.assertFalse(os.path.lexists(junk))
        self.assertTrue(os.path.exists("/etc/hostname") or os.path.isdir("/etc"))


class TestFailures(Base):
    def test_node_name_recorded(self):
        env = dict(os.environ, NODE_NAME="node-x")
        p = subprocess.run([bin_path("ordinal-backup"), *self.b.args("backup"), "--json"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        bid = json.loads(p.stdout)["id"]
        with open(os.path.join(self.b.backup_dir(bid), "ordinal-0", "data.json")) as f:
            m = json.load(f)
        self.assertEqual(m["source"]["node"], "node-x")
        self.assertEqual(m["source"]["claim"], "data-web-0")
        self.assertEqual(m["source"]["path"], self.vols[(0, "data")])
        with open(os.path.join(self.b.backup_dir(bid), "backup.json")) as f:
            self.assertEqual(json.load(f)["node"], "node-x")
        doc = self.b.backup("--node-name", "node-y")
        with open(os.path.join(self.b.backup_dir(doc["id"]), "backup.json")) as f:
            self.assertEqual(json.load(f)["node"], "node-y")

    def test_failed_backup_records_nothing(self):
        """The repository fills up half-way: exit 1, no backup.json, nothing left behind."""
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs")
        os.makedirs(self.repo)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.repo],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount tmpfs: {p.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.repo])
        big = make_layout(self.root, sts="big", ordinals=(0, 1), size=600 * 1024)
        p = self.b.backup(sts="default/big", check=1)
        self.assertIn("ordinal-backup backup: backing up ordinal 0 volume 'data'", p.stderr)
        self.assertIn("No space left on device", p.stderr)
        self.assertEqual(self.b.list(), [])
        leftovers = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(self.repo, "backups"))
                     for f in fs]
        self.assertEqual(leftovers, [])
        self.assertFalse(os.path.exists(os.path.join(self.repo, "locks", "default", "big.lock")))
        self.assertEqual(len(big), 2)


class TestLayoutRules(Base):
    def test_refuses_other_entries(self):
        os.symlink("/tmp", os.path.join(self.root, "default/web/2/cache"))
        p = self.b.backup(check=1)
        self.assertIn("not a block device", p.stderr)
        os.unlink(os.path.join(self.root, "default/web/2/cache"))
        with open(os.path.join(self.root, "default/web/2/file"), "w") as f:
            f.write("x")
        p = self.b.backup(check=1)
        self.assertIn("neither a directory nor a symlink to a block device", p.stderr)
        os.unlink(os.path.join(self.root, "default/web/2/file"))
        # dot names are bookkeeping, non-ordinal names are not ours: both skipped
        os.makedirs(os.path.join(self.root, "default/web/2/.data.restore-x"))
        os.makedirs(os.path.join(self.root, "default/web/notanordinal/data"))
        doc = self.b.backup()
        self.assertEqual(len(doc["volumes"]), 4)

    def test_no_volumes(self):
        p = self.b.backup(sts="default/nothing", check=1)
        self.assertIn("no volumes of default/nothing", p.stderr)


class TestUsage(Base):
    def usage(self, *args, msg):
        p = self.b.run(*args)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(msg, p.stderr)
        self.assertEqual(p.stdout, "")

    def test_usage_errors(self):
        r, root = self.repo, self.root
        self.usage("backup", "--root", root, "--statefulset", "default/web", msg="--repo is required")
        self.usage("backup", "--repo", r, msg="--statefulset is required")
        self.usage("backup", "--repo", r, "--statefulset", "web", msg="is not NAMESPACE/NAME")
        self.usage("backup", "--repo", r, "--statefulset", "Default/web", msg="DNS-1123")
        self.usage("backup", "--repo", r, "--statefulset", "default/web_1", msg="DNS-1123")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--order", "sideways",
                   msg="'sideways' is not one of: reverse ordinal")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--level", "25",
                   msg="--level: '25' is out of range 1..19")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--threads", "0",
                   msg="--threads: '0' is out of range")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--ordinals", "01",
                   msg="'01' is not an ordinal")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--ordinals", "1,1",
                   msg="ordinal 1 is listed twice")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "--frobnicate",
                   msg="unknown option '--frobnicate'")
        self.usage("backup", "--repo", r, "--statefulset", "default/web", "extra",
                   msg="unexpected argument 'extra'")
        self.usage("restore", "--repo", r, "--statefulset", "default/web", "--backup", "yesterday",
                   msg="'yesterday' is not a backup ID")
        self.usage("restore", "--repo", r, "--statefulset", "default/web", "--order", "random",
                   msg="is not one of")
        self.usage("restore", "--repo", r, "--statefulset", "default/web", "--root", root,
                   "--kubeconfig", os.path.join(self.dir, "kubeconfig"),
                   msg="--root and --kubeconfig exclude each other")
        self.usage("restore", "--repo", r, "--statefulset", "default/web", "--kubeconfig",
                   os.path.join(self.dir, "kubeconfig"), "--dry-run",
                   msg="--dry-run checks the volumes of this node")
        self.usage("verify", "--repo", r, "--backup", "2026", msg="is not a backup ID")
        self.usage("prune", "--repo", r, msg="no retention policy")
        self.usage("prune", "--repo", r, "--keep-last", "0", msg="out of range")
        self.usage("list", msg="--repo is required")
        self.usage("nonsense", msg="unknown command 'nonsense'")
        self.assertEqual(self.b.run().returncode, 2)

    def test_help_names_exit_status_and_environment(self):
        """Issue 17 part 5: every command's --help says its exit statuses; restore and run say
        that they read $KUBECONFIG."""
        for cmd in ("backup", "restore", "list", "verify", "prune", "run", "agent"):
            out = self.b.run(cmd, "--help", check=0).stdout
            self.assertIn("Exit status:", out, cmd)
        for cmd in ("restore", "run", "agent"):
            self.assertIn("KUBECONFIG", self.b.run(cmd, "--help", check=0).stdout, cmd)

    def test_help(self):
        for cmd in ("backup", "restore", "list", "verify", "prune"):
            p = self.b.run(cmd, "--help", check=0)
            self.assertIn(f"Usage: ordinal-backup {cmd}", p.stdout)
            self.assertIn("file:///", p.stdout)
            self.assertIn("Exit status", p.stdout)
            self.assertIn("Examples", p.stdout)
        p = self.b.run("backup", "--help", check=0)
        self.assertIn("Default: reverse", p.stdout)
        self.assertIn("Default: 3", p.stdout)
        self.assertIn("Default: /var/lib/ordinal", p.stdout)
        p = self.b.run("restore", "--help", check=0)
        self.assertIn("Default: ordinal", p.stdout)
        self.assertIn("Default: latest", p.stdout)
        self.b.run("--help", check=0)


class TestRepository(Base):
    def test_refuses_foreign_directory(self):
        os.makedirs(self.repo)
        with open(os.path.join(self.repo, "precious.txt"), "w") as f:
            f.write("not a repository")
        p = self.b.backup(check=1)
        self.assertIn("is not empty and is not an ordinal repository", p.stderr)
        self.assertEqual(os.listdir(self.repo), ["precious.txt"])

    def test_refuses_other_version(self):
        os.makedirs(self.repo)
        with open(os.path.join(self.repo, "ordinal-repo.json"), "w") as f:
            json.dump({"format": "ordinal-repository", "version": 9}, f)
        p = self.b.backup(check=1)
        self.assertIn("format version 9", p.stderr)

    def test_urls(self):
        b = Backup(self.root, "file://" + self.repo)
        b.backup()
        self.assertEqual(len(self.b.list()), 1)
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            # S3 repositories: test_backup_s3.py; without credentials a clear refusal.
            p = Backup(self.root, "s3://bucket/prefix").backup(check=1)
            self.assertIn("AWS_ACCESS_KEY_ID is not set", p.stderr)
        p = Backup(self.root, "relative/repo").backup(check=1)
        self.assertIn("must be an absolute path", p.stderr)
        p = self.b.run("list", "--repo", os.path.join(self.dir, "nowhere"), check=1)
        self.assertIn("does not exist", p.stderr)

    def test_concurrent_statefulsets(self):
        make_layout(self.root, sts="db", ordinals=(0, 1), size=2 * 1024 * 1024)
        make_layout(self.root, sts="web", ordinals=(0, 1, 2), size=2 * 1024 * 1024)
        procs = [Proc([bin_path("ordinal-backup"), "backup", "--root", self.root, "--repo",
                       self.repo, "--statefulset", f"default/{s}"], name=f"backup-{s}")
                 for s in ("db", "web", "db2")]
        make_layout(self.root, sts="db2", ordinals=(0,))
        for p in procs:
            self.assertEqual(p.wait(timeout=120), 0, p.log())
        listed = self.b.list()
        self.assertEqual(sorted(x["statefulset"] for x in listed),
                         ["default/db", "default/db2", "default/web"])
        self.b.run("verify", "--repo", self.repo, check=0)


class TestListVerifyPrune(Base):
    def test_list_and_verify(self):
        first = self.b.backup()
        second = self.b.backup()
        self.assertNotEqual(first["id"], second["id"])
        # an incomplete backup (no backup.json) is never listed
        shutil.copytree(self.b.backup_dir(second["id"]), self.b.backup_dir("20991231T235959Z"))
        os.unlink(os.path.join(self.b.backup_dir("20991231T235959Z"), "backup.json"))
        listed = self.b.list()
        self.assertEqual([x["id"] for x in listed], [first["id"], second["id"]])  # newest last
        docs = {first["id"]: first, second["id"]: second}
        for x in listed:
            self.assertEqual(set(x), {"id", "time", "statefulset", "node", "ordinals", "bytes",
                                  "status"})
            self.assertEqual(x["statefulset"], "default/web")
            self.assertEqual(x["ordinals"], [2, 1, 0])
            self.assertEqual(x["status"], "complete")
            self.assertEqual(x["bytes"], sum(v["bytes_stored"] for v in docs[x["id"]]["volumes"]))
        p = self.b.run("list", "--repo", self.repo, check=0)
        self.assertIn(second["id"], p.stdout)
        self.assertNotIn("20991231T235959Z", p.stdout)
        p = self.b.run("verify", "--repo", self.repo, "--json", check=0)
        doc = json.loads(p.stdout)
        self.assertTrue(doc["ok"])
        self.assertEqual(len(doc["backups"]), 2)
        self.b.run("verify", "--repo", self.repo, "--backup", first["id"], check=0)
        p = self.b.run("verify", "--repo", self.repo, "--backup", "20991231T235959Z", check=1)
        self.assertIn("does not exist", p.stderr)
        self.assertEqual(self.b.list(sts="other/web"), [])

    def test_verify_names_failures(self):
        doc = self.b.backup()
        obj = os.path.join(self.b.backup_dir(doc["id"]), "ordinal-1", "logs.tar.zst")
        with open(obj, "r+b") as f:
            f.seek(os.path.getsize(obj) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x55]))
        p = self.b.run("verify", "--repo", self.repo, check=1)
        self.assertIn("ordinal 1 volume 'logs': FAILED", p.stderr)
        self.assertIn("failed verification", p.stderr)
        self.assertNotIn("ordinal 0 volume 'data': FAILED", p.stderr)
        p = self.b.run("verify", "--repo", self.repo, "--json", check=1)
        v = json.loads(p.stdout)
        self.assertFalse(v["ok"])
        failed = [x for x in v["backups"][0]["volumes"] if x["status"] == "failed"]
        self.assertEqual([(x["ordinal"], x["template"]) for x in failed], [(1, "logs")])

    def test_prune(self):
        ids = [self.b.backup()["id"] for _ in range(4)]
        old_incomplete = self.b.backup_dir("20200101T000000Z")
        fresh_incomplete = self.b.backup_dir(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-99")
        for d in (old_incomplete, fresh_incomplete):
            os.makedirs(os.path.join(d, "ordinal-0"))
            with open(os.path.join(d, "ordinal-0", "data.tar.zst"), "wb") as f:
                f.write(b"partial")
            with open(os.path.join(d, "ordinal-0", ".data.tar.zst.tmp.1.2.3"), "wb") as f:
                f.write(b"partial temporary")
        p = self.b.run("prune", "--repo", self.repo, "--keep-last", "2", "--dry-run", "--json",
                       check=0)
        doc = json.loads(p.stdout)
        self.assertTrue(doc["dry_run"])
        removed = sorted((x["id"], x["reason"]) for x in doc["removed"])
        self.assertEqual(removed, sorted([(ids[0], "policy"), (ids[1], "policy"),
                                          ("20200101T000000Z", "incomplete")]))
        self.assertEqual(len(self.b.list()), 4)  # dry run: nothing removed
        self.assertTrue(os.path.exists(old_incomplete))
        p = self.b.run("prune", "--repo", self.repo, "--keep-last", "2", check=0)
        self.assertIn("3 backup(s) removed", p.stdout)
        self.assertEqual([x["id"] for x in self.b.list()], ids[2:])
        self.assertFalse(os.path.exists(old_incomplete))
        self.assertTrue(os.path.exists(fresh_incomplete))  # younger than an hour
        self.assertFalse(os.path.exists(self.b.backup_dir(ids[0])))
        self.b.run("verify", "--repo", self.repo, check=0)
        # the newest complete backup is never removed
        self.b.run("prune", "--repo", self.repo, "--statefulset", "default/web",
                   "--keep-daily", "1", check=0)
        self.assertEqual([x["id"] for x in self.b.list()], ids[3:])

    def test_prune_skips_locked(self):
        self.b.backup()
        self.b.backup()
        holder = Proc(["sleep", "60"], name="holder")
        lock = os.path.join(self.repo, "locks", "default", "web.lock")
        with open(lock, "w") as f:
            f.write(lock_content(holder.pid))
        p = self.b.run("prune", "--repo", self.repo, "--keep-last", "1", check=1)
        self.assertIn("locked by a backup", p.stderr)
        self.assertEqual(len(self.b.list()), 2)
        holder.kill9()


class TestLock(Base):
    def test_live_holder_refused(self):
        self.b.backup()
        holder = Proc(["sleep", "60"], name="holder")
        lock = os.path.join(self.repo, "locks", "default", "web.lock")
        with open(lock, "w") as f:
            f.write(lock_content(holder.pid))
        p = self.b.backup(check=1)
        self.assertIn(f"default/web is locked by a backup running on host", p.stderr)
        self.assertIn(f"pid {holder.pid}", p.stderr)
        self.assertIn("locks/default/web.lock", p.stderr)
        self.assertEqual(len(self.b.list()), 1)
        p = self.b.restore(check=1)
        self.assertIn("is locked", p.stderr)
        # another StatefulSet is not blocked
        make_layout(self.root, sts="db", ordinals=(0,))
        self.b.backup(sts="default/db")
        holder.kill9()
        # its holder is gone now: the stale lock is taken over
        self.b.backup()
        self.assertFalse(os.path.exists(lock))

    def test_stale_locks_taken_over(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        self.b.backup()
        lock = os.path.join(self.repo, "locks", "default", "web.lock")
        with open(lock, "w") as f:
            f.write(lock_content(dead.pid))
        self.b.backup()
        # same pid as a live process but from before a reboot
        with open(lock, "w") as f:
            f.write(lock_content(os.getpid(), boot_id="00000000-0000-0000-0000-000000000000"))
        self.b.backup()
        # a lock from another host is never judged from here
        with open(lock, "w") as f:
            f.write(lock_content(dead.pid, host="another-node"))
        p = self.b.backup(check=1)
        self.assertIn("another-node", p.stderr)


class TestRestoreRefusals(Base):
    """Every refusal: exit 1, a clear message, and no live volume touched."""

    def setUp(self):
        super().setUp()
        self.doc = self.b.backup()
        self.id = self.doc["id"]
        self.modify_all()  # so that a restore would change every volume
        self.before = hashes(self.vols)

    def refused(self, *args, msg):
        p = self.b.restore(*args, check=1)
        for m in ([msg] if isinstance(msg, str) else msg):
            self.assertIn(m, p.stderr)
        self.assertTrue(p.stderr.startswith("ordinal-backup restore: "), p.stderr)
        self.assertUntouched(self.before)
        return p

    def obj(self, ordinal, tmpl, ext=".tar.zst"):
        return os.path.join(self.b.backup_dir(self.id), f"ordinal-{ordinal}", tmpl + ext)

    def test_missing_backup(self):
        self.refused("--backup", "20200101T000000Z",
                     msg=["backup '20200101T000000Z' of default/web does not exist",
                          f"run 'ordinal-backup list --repo {self.repo}"])
        p = self.b.restore(sts="default/other", check=1)
        self.assertIn("there is no complete backup of default/other", p.stderr)

    def test_incomplete_backup(self):
        os.unlink(os.path.join(self.b.backup_dir(self.id), "backup.json"))
        self.refused("--backup", self.id, msg="is incomplete")
        # and "latest" does not pick it
        p = self.b.restore(check=1)
        self.assertIn("there is no complete backup", p.stderr)

    def flip(self, path):
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))

    def test_corrupted_object(self):
        # damage in ordinal 2: ordinals 0 and 1, restored first, must not be touched either
        self.flip(self.obj(2, "data"))
        self.refused(msg=["ordinal 2 volume 'data': the stored object failed its check",
                          "nothing was changed"])

    def test_corrupted_first_object(self):
        # ordinal 0 is restored first and checked by its own extraction: still nothing touched
        self.flip(self.obj(0, "data"))
        self.refused(msg=["ordinal 0 volume 'data'", "keeps its previous content",
                          "the rest were not touched", "corrupt"])
        self.refused("--order", "reverse", "--ordinals", "0,1",
                     msg=["ordinal 0 volume 'data': the stored object failed its check",
                          "nothing was changed"])

    def test_truncated_object(self):
        path = self.obj(1, "logs")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 100)
        self.refused("--backup", self.id, msg="ordinal 1 volume 'logs'")

    def test_corrupted_manifest(self):
        path = self.obj(0, "data", ".json")
        with open(path) as f:
            m = json.load(f)
        m["sha256"] = "0" * 64
        with open(path, "w") as f:
            json.dump(m, f)
        self.refused(msg="disagrees with backup.json (SHA-256)")
        with open(path, "w") as f:
            f.write("{ not json")
        self.refused(msg="the manifest of ordinal 0 volume 'data' is damaged")
        os.unlink(path)
        self.refused(msg="the manifest of ordinal 0 volume 'data' is missing")

    def test_corrupted_backup_json(self):
        path = os.path.join(self.b.backup_dir(self.id), "backup.json")
        with open(path) as f:
            doc = json.load(f)
        doc["version"] = 99
        with open(path, "w") as f:
            json.dump(doc, f)
        self.refused(msg=["is damaged", "format version 99 is not supported"])
        doc["version"] = 1
        doc["volumes"][0]["object"] = "../../../../etc/passwd"
        with open(path, "w") as f:
            json.dump(doc, f)
        self.refused(msg="is damaged")

    def test_missing_target(self):
        shutil.rmtree(self.vols[(2, "data")])
        del self.vols[(2, "data")]
        self.before = hashes(self.vols)
        self.refused(msg=["the volume entry", "default/web/2/data' does not exist",
                          "mkdir -p", "claim 'data-web-2'",
                          "or leave ordinal 2 out with --ordinals"])
        self.refused("--ordinals", "7", msg="holds no ordinal 7")

    def test_kind_mismatch(self):
        path = self.vols[(0, "data")]
        shutil.rmtree(path)
        os.symlink("/tmp", path)
        del self.vols[(0, "data")]
        self.before = hashes(self.vols)
        self.refused(msg="not a block device")


def device_sha(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class TestDevice(Base):
    """A device volume: a symlink to a block device (a loop device over a sparse file)."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or not shutil.which("losetup"):
            self.skipTest("needs root and losetup for a loop device")
        img = os.path.join(self.dir, "disk.img")
        with open(img, "wb") as f:
            f.truncate(8 * 1024 * 1024)
            f.seek(40960)
            f.write(os.urandom(200 * 1024))
        p = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"losetup failed: {p.stderr.strip()}")
        self.loop = p.stdout.strip()
        self.addCleanup(subprocess.run, ["losetup", "-d", self.loop])
        os.makedirs(os.path.join(self.root, "default/blk/0"))
        os.symlink(self.loop, os.path.join(self.root, "default/blk/0/disk"))

    def test_device_round_trip_and_refusal(self):
        before = device_sha(self.loop)
        doc = self.b.backup(sts="default/blk")
        self.assertEqual([(v["ordinal"], v["template"], v["kind"]) for v in doc["volumes"]],
                         [(0, "disk", "device")])
        self.assertEqual(doc["volumes"][0]["bytes_in"], 8 * 1024 * 1024)
        with open(self.loop, "r+b") as f:
            f.seek(45000)
            f.write(b"damage" * 100)
        damaged = device_sha(self.loop)
        self.assertNotEqual(damaged, before)
        # a corrupted object is refused before anything is written to the device
        obj = os.path.join(self.b.backup_dir(doc["id"], sts="blk"), "ordinal-0", "disk.tar.zst")
        with open(obj, "r+b") as f:
            data = bytearray(f.read())
            data[len(data) // 2] ^= 0xFF
            f.seek(0)
            f.write(data)
        p = self.b.restore(sts="default/blk", check=1)
        self.assertIn("failed its check", p.stderr)
        self.assertEqual(device_sha(self.loop), damaged)
        data[len(data) // 2] ^= 0xFF
        with open(obj, "r+b") as f:
            f.write(data)
        self.b.restore(sts="default/blk")
        self.assertEqual(device_sha(self.loop), before)


if __name__ == "__main__":
    unittest.main(verbosity=2)
