"""A restore never reports success for data it did not write (issue 12's fault campaign).

Every case restores a backup onto a volume that lives on a real filesystem on a loop device
(ext4, xfs, btrfs with a qgroup limit) and then makes the target fail in one way: too small,
out of inodes, a quota that runs out at the first file, in the middle of a large file, in a
sparse file's tail or while creating directories, a real ENOSPC that the space check could not
foresee, read-only, shut down in the middle of the restore (what a vanished disk looks like to
the filesystem), I/O errors from the device under the filesystem, and a restore without the
privileges some attributes need. Each one must: exit 1, say in one message what failed (volume,
file, error, and for space the sizes needed and free), keep the old volume byte for byte, and
leave no staging entry behind (where the filesystem still works).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import bin_path, skip, temp_dir, wait_for  # noqa: E402
from backup_util import Backup, staging_leftovers, tree_hash, write_volume  # noqa: E402

if not os.path.exists(bin_path("ordinal-backup")):
    skip("ordinal-backup is not built")
if os.geteuid() != 0 or not shutil.which("losetup"):
    skip("needs root, losetup and mount for loop-device filesystems")

MiB = 1024 * 1024
STS = "default/db"


def sh(*cmd, check=True):
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr}")
    return p


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir("restore-faults-")
        self.src = os.path.join(self.dir, "src")    # the volume that is backed up
        self.repo = os.path.join(self.dir, "repo")
        self.b = Backup(self.src, self.repo)

    # -- filesystems on loop devices ------------------------------------------------------------

    def loop_fs(self, size, fstype, *mkfs_args, backing_dir=None):
        """A fresh filesystem on a loop device over a sparse file; returns its mount point."""
        img = os.path.join(backing_dir or self.dir, f"{fstype}-{len(os.listdir(self.dir))}.img")
        with open(img, "wb") as f:
            f.truncate(size)
        dev = sh("losetup", "-f", "--show", img).stdout.strip()
        self.addCleanup(sh, "losetup", "-d", dev, check=False)
        mkfs = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"],
                "btrfs": ["mkfs.btrfs", "-q", "-f"]}[fstype]
        sh(*mkfs, *mkfs_args, dev)
        mnt = os.path.join(self.dir, f"mnt-{os.path.basename(img)}")
        os.mkdir(mnt)
        sh("mount", dev, mnt)
        self.addCleanup(sh, "umount", "-l", mnt, check=False)
        self.dev = dev
        return mnt

    def target_on(self, mnt):
        """The node root on mnt with an old volume (ordinal 0, template data) to protect."""
        self.root = os.path.join(mnt, "root")
        self.live = os.path.join(self.root, "default", "db", "0", "data")
        write_volume(self.live, seed=99, size=32 * 1024)
        sh("sync")  # the old volume has long been on disk
        self.old = tree_hash(self.live)
        self.t = Backup(self.root, self.repo)

    def source(self, fill):
        """Backs up the volume that fill(path) creates; returns the backup's --json."""
        path = self.source_path = os.path.join(self.src, "default", "db", "0", "data")
        os.makedirs(path)
        fill(path)
        return self.b.backup(sts=STS)

    def restore_fails(self, *extra, msg=(), env=None):
        p = self.t.run(*self.t.args("restore", STS), *extra, check=None)
        self.assertEqual(p.returncode, 1, f"the restore did not fail:\n{p.stdout}\n{p.stderr}")
        for m in msg:
            self.assertIn(m, p.stderr)
        self.assertIn("ordinal 0 volume 'data'", p.stderr)
        return p

    def assertOldIntact(self, leftovers=True):
        self.assertEqual(tree_hash(self.live), self.old, "the old volume was changed")
        if leftovers:
            self.assertEqual(staging_leftovers(self.root), [], "a staging entry was left behind")


def random_file(path, size, seed=1):
    import random
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(rng.randbytes(MiB))
        f.write(rng.randbytes(size % MiB))


class TestSpaceChecks(Base):
    """Refused before anything is touched, with the numbers; --dry-run says the same."""

    def test_too_large_for_the_filesystem(self):
        self.source(lambda p: random_file(os.path.join(p, "big.bin"), 48 * MiB))
        self.target_on(self.loop_fs(40 * MiB, "ext4"))
        p = self.restore_fails(msg=("does not fit on the filesystem of", "needs about",
                                    "are free", "nothing was changed"))
        self.assertIn("48.0 MiB", p.stderr)
        self.assertOldIntact()

        p = self.t.run(*self.t.args("restore", STS), "--dry-run")
        self.assertEqual(p.returncode, 1)
        self.assertIn("does NOT fit", p.stdout)
        self.assertIn(self.live, p.stdout)
        p = self.t.run(*self.t.args("restore", STS), "--dry-run", "--json")
        doc = json.loads(p.stdout)
        self.assertEqual((doc["dry_run"], doc["fits"]), (True, False))
        v = doc["volumes"][0]
        self.assertEqual((v["ordinal"], v["template"], v["path"], v["fits"]),
                         (0, "data", self.live, False))
        self.assertEqual(v["backup"], self.t.list()[0]["id"])
        self.assertGreater(v["need_bytes"], v["free_bytes"])
        self.assertOldIntact()

    def test_dry_run_that_fits_changes_nothing(self):
        doc = self.source(lambda p: random_file(os.path.join(p, "small.bin"), 2 * MiB))
        self.target_on(self.loop_fs(64 * MiB, "ext4"))
        p = self.t.run(*self.t.args("restore", STS), "--dry-run", check=0)
        self.assertIn(f"from backup {doc['id']} -> {self.live}: fits", p.stdout)
        self.assertIn("fits", p.stdout)
        self.assertOldIntact()
        locks = [f for _, _, files in os.walk(os.path.join(self.repo, "locks")) for f in files]
        self.assertEqual(locks, [], "a dry run took a lock")
        self.t.restore(sts=STS)
        self.assertNotEqual(tree_hash(self.live), self.old)

    def test_out_of_inodes(self):
        def many(p):
            for i in range(600):
                with open(os.path.join(p, f"f{i:04d}"), "w") as f:
                    f.write("x")
        self.source(many)
        self.target_on(self.loop_fs(64 * MiB, "ext4", "-N", "256"))
        p = self.restore_fails(msg=("does not fit", "inodes"))
        self.assertRegex(p.stderr, r"needs about .* and 60[0-9] inodes")
        self.assertOldIntact()


class TestWriteFailures(Base):
    """Failures the space check cannot foresee: the write itself fails, and nothing is swapped."""

    def quota_target(self, limit):
        mnt = self.loop_fs(256 * MiB, "btrfs")
        sh("btrfs", "quota", "enable", mnt)
        sub = os.path.join(mnt, "vols")
        sh("btrfs", "subvolume", "create", sub)
        self.target_on(sub)
        sh("btrfs", "qgroup", "limit", limit, sub)
        sh("sync")
        return sub

    def test_quota_runs_out_at_the_first_file(self):
        self.source(lambda p: random_file(os.path.join(p, "first.bin"), 8 * MiB))
        self.quota_target("1M")
        p = self.restore_fails(msg=("Disk quota exceeded", "first.bin", "quota ran out",
                                    "keeps its previous content"))
        self.assertOldIntact()

    def test_quota_runs_out_in_the_middle_of_a_large_file(self):
        self.source(lambda p: random_file(os.path.join(p, "large.bin"), 40 * MiB))
        self.quota_target("16M")
        p = self.restore_fails(msg=("Disk quota exceeded", "large.bin", "quota ran out"))
        self.assertRegex(p.stderr, r"the backup holds 40 MiB of file content in \d+ entries, "
                                   r"(1[0-6]|[1-9]) MiB of it were written")
        self.assertOldIntact()

    def test_quota_runs_out_in_a_sparse_files_tail(self):
        def sparse(p):
            with open(os.path.join(p, "sparse.bin"), "wb") as f:
                f.write(b"head" * 1024)
                f.truncate(512 * MiB)
                f.seek(480 * MiB)
                f.write(os.urandom(24 * MiB))
        self.source(sparse)
        self.quota_target("8M")
        self.restore_fails(msg=("Disk quota exceeded", "sparse.bin"))
        self.assertOldIntact()

    def test_quota_runs_out_while_creating_directories(self):
        def dirs(p):
            for i in range(3000):
                os.makedirs(os.path.join(p, f"{i:04d}-" + "d" * 200, "e" * 200))
        self.source(dirs)
        self.quota_target("2M")
        self.restore_fails(msg=("Disk quota exceeded",))
        self.assertOldIntact()

    def test_real_enospc_the_estimate_did_not_foresee(self):
        # 1-byte files take a 4 KiB block each: the check counts half a block per entry, so it
        # lets this through, and the filesystem fills in the middle of the restore.
        def small(p):
            for i in range(12000):
                with open(os.path.join(p, f"s{i:05d}"), "w") as f:
                    f.write("y")
        self.source(small)
        mnt = self.loop_fs(48 * MiB, "ext4", "-b", "4096", "-N", "12288", "-m", "0")
        self.target_on(mnt)
        p = self.restore_fails(msg=("No space left on device", "space ran out",
                                    "MiB and", "inodes free"))
        self.assertOldIntact()

    def test_read_only_target(self):
        self.source(lambda p: random_file(os.path.join(p, "a.bin"), MiB))
        mnt = self.loop_fs(64 * MiB, "ext4")
        self.target_on(mnt)
        sh("mount", "-o", "remount,ro", mnt)
        self.restore_fails(msg=("Read-only file system",))
        self.assertOldIntact()

    def test_target_shut_down_in_the_middle(self):
        """The disk goes away under the filesystem (xfs_io shutdown: every I/O then fails)."""
        def files(p):
            for i in range(64):
                random_file(os.path.join(p, f"part{i:02d}"), 3 * MiB, seed=i)
        self.source(files)
        mnt = self.loop_fs(512 * MiB, "xfs")
        self.target_on(mnt)
        proc = subprocess.Popen([bin_path("ordinal-backup"), *self.t.args("restore", STS)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

        def midway():
            for n in os.listdir(os.path.dirname(self.live)):
                if ".restore-" in n and len(os.listdir(os.path.join(os.path.dirname(self.live), n))) >= 4:
                    return True
            return False
        try:
            wait_for(midway, timeout=60, what="the restore to be in the middle of its volume",
                     interval=0.002)
            os.kill(proc.pid, signal.SIGSTOP)
            sh("xfs_io", "-x", "-c", "shutdown", mnt)
            os.kill(proc.pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 1, f"the restore did not fail:\n{out}\n{err}")
        self.assertIn("Input/output error", err)
        self.assertIn("keeps its previous content", err)
        # what a person does next: bring the disk back; the old content is there, and the
        # next restore removes the staging entry the dead filesystem still held
        sh("umount", mnt)
        sh("mount", self.dev, mnt)
        self.assertOldIntact(leftovers=False)
        self.t.restore(sts=STS)
        self.assertEqual(staging_leftovers(self.root), [])
        self.assertEqual(tree_hash(self.live), tree_hash(self.source_path))

    def test_io_errors_from_the_device(self):
        """The block device under the filesystem fails writes (a loop device whose backing
        store is full: what a thin pool out of space does). The kernel here has no
        device-mapper, so no dm-error/dm-flakey. The errors appear only at writeback: the
        restore's flush must report them."""
        self.source(lambda p: random_file(os.path.join(p, "db.bin"), 96 * MiB))
        tmp = os.path.join(self.dir, "thin")
        os.mkdir(tmp)
        sh("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", tmp)
        self.addCleanup(sh, "umount", "-l", tmp, check=False)
        mnt = self.loop_fs(256 * MiB, "ext4", "-E", "lazy_itable_init=1,lazy_journal_init=1",
                           backing_dir=tmp)
        self.target_on(mnt)
        p = self.restore_fails(msg=("keeps its previous content",))
        self.assertRegex(p.stderr, r"Input/output error|Read-only file system")
        if staging_leftovers(self.root):
            # the filesystem went read-only on the errors: the message says what happens next
            self.assertIn("the next restore of this volume removes it", p.stderr)
        # what a person does next: give the device room, repair, and restore again
        sh("umount", mnt)
        sh("mount", "-o", "remount,size=512m", tmp)
        self.assertIn(sh("e2fsck", "-fy", self.dev, check=False).returncode, (0, 1, 2))
        sh("mount", self.dev, mnt)
        self.assertOldIntact(leftovers=False)
        self.t.restore(sts=STS)
        self.assertEqual(staging_leftovers(self.root), [])
        self.assertEqual(tree_hash(self.live), tree_hash(self.source_path))


def have_setpriv():
    return shutil.which("setpriv") is not None


class TestLostAttributes(Base):
    """Without the privileges some attributes need, the restore refuses to swap unless told."""

    def fill(self, p):
        with open(os.path.join(p, "owned"), "w") as f:
            f.write("owned by 1234\n")
        os.chown(os.path.join(p, "owned"), 1234, 5678)
        with open(os.path.join(p, "setuid-tool"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chown(os.path.join(p, "setuid-tool"), 1234, 1234)
        os.chmod(os.path.join(p, "setuid-tool"), 0o6755)
        with open(os.path.join(p, "labelled"), "w") as f:
            f.write("x")
        os.setxattr(os.path.join(p, "labelled"), "trusted.overlay", b"v1")
        os.setxattr(os.path.join(p, "labelled"), "user.note", b"kept")
        os.mknod(os.path.join(p, "null"), 0o600 | 0o020000, os.makedev(1, 3))
        os.mkfifo(os.path.join(p, "pipe"))

    def setUp(self):
        super().setUp()
        if not have_setpriv():
            self.skipTest("setpriv (util-linux) is not installed")
        self.source(self.fill)
        self.target_on(self.loop_fs(64 * MiB, "ext4"))
        self.unpriv = ["setpriv", "--bounding-set",
                       "-chown,-fowner,-fsetid,-mknod,-sys_admin", "--"]

    def run_unpriv(self, *extra):
        return subprocess.run([*self.unpriv, bin_path("ordinal-backup"),
                               *self.t.args("restore", STS), *extra],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def test_refused_by_default(self):
        p = self.run_unpriv()
        self.assertEqual(p.returncode, 1, p.stderr)
        for m in ("was not restored and keeps its previous content", "owner or group of",
                  "'owned'", "trusted.* xattrs of 1 entry ('labelled')",
                  "device nodes not created: 1 entry ('null')", "mode bits",
                  "--accept-lost-attributes", "CAP_MKNOD"):
            self.assertIn(m, p.stderr)
        self.assertNotIn("user.* xattrs", p.stderr)
        self.assertOldIntact()

        p = self.run_unpriv("--json")
        self.assertEqual(p.returncode, 1)
        lost = json.loads(p.stdout)["refused"]["lost_attributes"]
        self.assertEqual(lost["device-node"], {"count": 1, "examples": ["null"]})
        self.assertEqual(lost["xattr-trusted"]["examples"], ["labelled"])
        self.assertIn("owned", lost["owner"]["examples"])
        self.assertOldIntact()

    def test_accepted_and_reported(self):
        p = self.run_unpriv("--accept-lost-attributes", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        lost = json.loads(p.stdout)["volumes"][0]["lost_attributes"]
        self.assertEqual(lost["device-node"]["count"], 1)
        self.assertIn("owner", lost)
        self.assertFalse(os.path.exists(os.path.join(self.live, "null")))
        with open(os.path.join(self.live, "owned")) as f:
            self.assertEqual(f.read(), "owned by 1234\n")
        self.assertEqual(os.getxattr(os.path.join(self.live, "labelled"), "user.note"), b"kept")

    def test_full_privileges_lose_nothing(self):
        doc = self.t.restore(sts=STS)
        self.assertNotIn("lost_attributes", doc["volumes"][0])
        st = os.lstat(os.path.join(self.live, "owned"))
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        self.assertEqual(os.stat(os.path.join(self.live, "setuid-tool")).st_mode & 0o7777, 0o6755)
        self.assertEqual(os.getxattr(os.path.join(self.live, "labelled"), "trusted.overlay"), b"v1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
