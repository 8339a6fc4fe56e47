#!/usr/bin/env python3
"""Issue 17, part 2: one directory repository for every writer.

In a cluster the agent runs as root and the CronJob's coordinator and the restore Job as uid
65532, all on one repository. Here they are real processes of those users (setpriv):
- CLI writers as root and as uid 65532 on a repository prepared as docs/operations.md says,
  in both orders: each can back up, prune the other's backups and list; every directory is
  mode 2770 and every file 0660, all in group 65532, whoever wrote them;
- a repository written as the versions before wrote it (root:root, 0755/0644) refuses the
  uid 65532 writer (backup, prune, restore, run) with the owner, group and mode it found and
  the command that fixes it, changing nothing; the command, run as the message gives it, fixes
  it;
- an agent that is neither root nor in the group (what NFS root_squash makes of root: nobody)
  is refused at start, and starts with the group;
- a commit that fails (`backup.json` cannot be written) fails the CLI `backup` with a message
  that names the backup and says it is not committed;
- in the emulated cluster of test_cluster.py: the coordinator as uid 65532 with agents as root
  backs up and prunes; when the commit fails (backup.json's directory not writable for the
  coordinator, as the agent of the versions before made it) the run exits 1 saying which
  backup is not committed and why, and posts a Warning Event BackupFailed on the StatefulSet;
  the restore Job's command as uid 65532 restores.

Run: /usr/bin/python3 tests/integration/test_repo_shared.py (as root).
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import hashes, make_layout, tree_hash, write_volume  # noqa: E402
from harness import bin_path, skip, temp_dir  # noqa: E402

BACKUP = bin_path("ordinal-backup")
GID = 65532
AS_COORDINATOR = ["setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"]
FIX_PREFIX = "fix as root where the files are stored (the NFS server if it squashes root): "

if os.geteuid() != 0 or not shutil.which("setpriv"):
    skip("needs root and setpriv")
if not os.path.exists(BACKUP):
    skip(f"{BACKUP} is not built")


def run(args, user=None, env=None, check=True):
    """ordinal-backup args as root (user None) or with the setpriv prefix user."""
    cp = subprocess.run([*(user or []), BACKUP, *args], capture_output=True, text=True,
                        timeout=300, env=env)
    assert "Sanitizer" not in cp.stderr, cp.stderr
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(user or ['root'])} ordinal-backup {' '.join(args)} "
                             f"exited {cp.returncode}:\n{cp.stdout}{cp.stderr}")
    return cp


def snapshot(path):
    """Everything a refusal must not change: names, types, modes, owners, sizes, mtimes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [""] + dirnames + filenames:
            full = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(full)
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                st.st_mtime_ns)
    return out


def open_to_all(path):
    """A temp dir is 0700: let uid 65532 through it, as /srv is on a real machine."""
    os.chmod(path, 0o755)
    return path


def prepare_repo(path):
    """docs/operations.md, 'Sharing a directory repository': the directory on the server."""
    subprocess.run(["install", "-d", "-o", str(GID), "-g", str(GID), "-m", "2770", path],
                   check=True)


def fix_command(message):
    """The command a refusal gives, as a person would copy it."""
    assert FIX_PREFIX in message, message
    return message.split(FIX_PREFIX, 1)[1].strip()


class SharedModes:
    def assert_shared_modes(self, repo):
        """Every directory 2770 and every file 0660, in the repository's group, whoever made
        them: the next writer of the other user can use and remove them."""
        for dirpath, dirnames, filenames in os.walk(repo):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), repo)
                want = 0o2770 if stat.S_ISDIR(st.st_mode) else 0o660
                self.assertEqual(stat.S_IMODE(st.st_mode), want, f"{rel}: {oct(st.st_mode)}")
                self.assertEqual(st.st_gid, GID, rel)


class TestSharedDirectoryRepository(SharedModes, unittest.TestCase):
    """CLI writers of two users on one directory repository."""

    def setUp(self):
        self.base = open_to_all(temp_dir("ordinal-shared-"))
        self.root = os.path.join(self.base, "node")
        self.vols = make_layout(self.root, ordinals=(0, 1))
        self.repo = os.path.join(self.base, "repo")

    def backup(self, user=None, check=True):
        return run(["backup", "--root", self.root, "--repo", self.repo, "--statefulset",
                    "default/web", "--json"], user=user, check=check)

    def ids(self, user=None):
        return [b["id"] for b in json.loads(run(["list", "--repo", self.repo, "--json"],
                                                user=user).stdout)]

    def prune(self, user=None, check=True):
        return run(["prune", "--repo", self.repo, "--keep-last", "1"], user=user, check=check)

    def both_users_take_turns(self, first, second):
        """first writes the repository first. Each user prunes while the other user has made
        two backups: --keep-last 1 leaves one, so it removes at least one of the other's
        (which one depends on the IDs, which a fast test can reuse within a second)."""
        prepare_repo(self.repo)
        made = [self.backup(user=first), self.backup(user=second), self.backup(user=second)]
        ids = [json.loads(cp.stdout)["id"] for cp in made]
        self.assertEqual(sorted(self.ids(first)), sorted(ids))
        self.assert_shared_modes(self.repo)
        self.prune(user=first)
        self.assertEqual(len(self.ids(second)), 1)
        self.backup(user=first)
        self.backup(user=first)
        self.assertEqual(len(self.ids(first)), 3)
        self.prune(user=second)
        self.assertEqual(len(self.ids(first)), 1)
        self.assert_shared_modes(self.repo)
        self.assertEqual(run(["verify", "--repo", self.repo], user=second).returncode, 0)
        # and what either wrote restores
        before = hashes(self.vols)
        for path in self.vols.values():
            write_volume(path, seed=7)
        run(["restore", "--root", self.root, "--repo", self.repo, "--statefulset", "default/web"])
        self.assertEqual(hashes(self.vols), before)

    def test_root_first_then_uid_65532(self):
        self.both_users_take_turns(None, AS_COORDINATOR)

    def test_uid_65532_first_then_root(self):
        self.both_users_take_turns(AS_COORDINATOR, None)

    def test_repository_of_the_versions_before_is_refused_with_the_fix(self):
        """root:root, 0755 directories and 0644 files, as the versions before wrote it (and
        as a root writer alone still makes it in a new directory, minus the group bits): uid
        65532 is refused by every writing command before it changes anything; the command
        the message gives fixes it."""
        self.backup()
        # what the versions before left: no group write, no setgid, the root group
        subprocess.run(["chgrp", "-R", "0", self.repo], check=True)
        subprocess.run(["chmod", "-R", "g-w,g-s,o+rX", self.repo], check=True)
        os.chmod(self.repo, 0o755)
        before = snapshot(self.repo)
        vols_before = hashes(self.vols)
        commands = {
            "backup": ["backup", "--root", self.root, "--repo", self.repo, "--statefulset",
                       "default/web"],
            "prune": ["prune", "--repo", self.repo, "--keep-last", "1"],
            "restore": ["restore", "--root", self.root, "--repo", self.repo, "--statefulset",
                        "default/web"],
        }
        messages = {}
        for name, args in commands.items():
            with self.subTest(command=name):
                cp = run(args, user=AS_COORDINATOR, check=False)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                err = cp.stderr
                self.assertIn(f"ordinal-backup {name}: refused, nothing was changed: repository "
                              f"'{self.repo}': this process "
                              f"(uid 65532, gid 65532, groups none) cannot write directory "
                              f"'{self.repo}' (owner 0, group 0, mode 0755)", err)
                self.assertIn("(mode 2770, group 65532)", err)
                self.assertIn("nothing was changed", err)
                messages[name] = err
                self.assertEqual(snapshot(self.repo), before, f"{name} changed the repository")
                self.assertEqual(hashes(self.vols), vols_before)
        # list and verify only read: they still work
        self.assertEqual(len(self.ids(AS_COORDINATOR)), 1)
        fix = fix_command(messages["backup"])
        self.assertEqual(fix, f"chgrp -R 65532 {self.repo} && chmod -R g+rwX {self.repo} && "
                              f"find {self.repo} -type d -exec chmod g+s {{}} +")
        subprocess.run(["sh", "-c", fix], check=True)
        self.backup(user=AS_COORDINATOR)
        self.prune(user=AS_COORDINATOR)
        self.assertEqual(len(self.ids()), 1)

    def test_a_deeper_directory_is_named(self):
        """The top is writable, one StatefulSet's lock directory is not (made by root before):
        the refusal names that directory."""
        prepare_repo(self.repo)
        self.backup()
        locks = os.path.join(self.repo, "locks", "default")
        os.chown(locks, 0, 0)
        os.chmod(locks, 0o755)
        before = snapshot(self.repo)
        cp = self.backup(user=AS_COORDINATOR, check=False)
        self.assertEqual(cp.returncode, 1)
        self.assertIn(f"cannot write directory '{locks}' (owner 0, group 0, mode 0755)",
                      cp.stderr)
        self.assertIn(f"chgrp -R 65532 {self.repo} ", cp.stderr)
        self.assertEqual(snapshot(self.repo), before)

    def test_agent_squashed_to_nobody_needs_the_group(self):
        """NFS root_squash makes the root agent nobody (65534) on the server: emulated with
        uid 65534. Without group 65532 it is refused at start with the fix; with it (the
        deploy/ supplementalGroups) it gets past the check (here to the missing kubeconfig)."""
        prepare_repo(self.repo)
        self.backup(user=AS_COORDINATOR)  # a repository exists: the agent checks it
        args = ["agent", "--node-name", "node-a", "--root", self.root, "--repo", self.repo,
                "--kubeconfig", os.path.join(self.base, "no-such-kubeconfig")]
        nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        before = snapshot(self.repo)
        cp = run(args, user=nobody, check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(f"this process (uid 65534, gid 65534, groups none) cannot write directory "
                      f"'{self.repo}' (owner 65532, group 65532, mode 2770)", cp.stderr)
        self.assertIn("this process is not in group 65532: run it with that group too, e.g. "
                      "supplementalGroups: [65532]", cp.stderr)
        self.assertIn(f"chgrp -R 65532 {self.repo} ", cp.stderr)
        self.assertEqual(snapshot(self.repo), before)
        member = ["setpriv", "--reuid", "65534", "--regid", "65534", "--groups", "65532"]
        cp = run(args, user=member, check=False)
        self.assertEqual(cp.returncode, 1)
        self.assertNotIn("cannot write directory", cp.stderr)
        self.assertIn("no-such-kubeconfig", cp.stderr)

    def test_failed_commit_fails_backup_and_says_so(self):
        """backup.json cannot be written (a directory holds its name, for every ID the next
        minutes can give): the CLI backup exits 1 naming the backup, saying it is not
        committed and why, and nothing is listed."""
        prepare_repo(self.repo)
        first = json.loads(self.backup().stdout)["id"]
        sts_dir = os.path.join(self.repo, "backups", "default", "web")
        now = int(time.time())
        for t in range(now - 5, now + 900):
            for suffix in ("", "-1", "-2"):  # the first backup's second is taken
                bid = os.path.join(sts_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)))
                if not os.path.exists(bid + suffix):  # not the first backup's
                    os.makedirs(os.path.join(bid + suffix, "backup.json"))
        cp = self.backup(check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout, "")
        self.assertRegex(cp.stderr, r"ordinal-backup backup: backup '\d{8}T\d{6}Z(-\d+)?' of "
                                    r"default/web is NOT committed: its 2 volume\(s\) were "
                                    r"copied, but without its commit record the backup does not "
                                    r"exist \(for list, restore and verify\): writing its commit "
                                    r"record backup.json: .*Is a directory")
        self.assertEqual(self.ids(), [first])


class TestSharedRepositoryInCluster(SharedModes, unittest.TestCase):
    """The emulated cluster of test_cluster.py: agents as root, the coordinator (`run`) and the
    restore Job's command as uid 65532, on one repository."""

    @classmethod
    def setUpClass(cls):
        from test_cluster import ClusterMode  # the emulated cluster, agents and coordinator
        cls.cm = ClusterMode()
        cm = cls.cm
        open_to_all(os.path.dirname(cm.repo))
        prepare_repo(cm.repo)
        # the coordinator's own kubeconfig, readable by its user
        kdir = open_to_all(temp_dir("ordinal-coordinator-"))
        cls.kubeconfig = os.path.join(kdir, "kubeconfig")
        shutil.copy(cm.coord_kubeconfig, cls.kubeconfig)
        os.chown(cls.kubeconfig, GID, GID)
        cls.env = dict(cm.c.emu.env, KUBECONFIG=cls.kubeconfig, HOME=kdir)

    @classmethod
    def tearDownClass(cls):
        cls.cm.close()

    def coordinator(self, *args, check=True):
        return run(list(args), user=AS_COORDINATOR, env=self.env, check=check)

    def run_args(self, *extra):
        return ["run", "--kubeconfig", self.kubeconfig, "--statefulset", "default/web",
                "--repo", self.cm.repo, *extra]

    def events(self, reason):
        cp = subprocess.run(["kubectl", "-n", "default", "get", "events", "-o", "json",
                             "--field-selector", "involvedObject.kind=StatefulSet,"
                             f"involvedObject.name=web,reason={reason}"],
                            env=self.cm.c.emu.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout)["items"]

    def test_1_coordinator_65532_with_root_agents(self):
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=300 + k)
        cp = self.coordinator(*self.run_args("--json"))
        first = json.loads(cp.stdout)["id"]
        cp = self.coordinator(*self.run_args("--json", "--keep-last", "1"))
        second = json.loads(cp.stdout)["id"]
        self.assertEqual([b["id"] for b in cm.list_backups()], [second], first)
        self.assert_shared_modes(cm.repo)
        self.assertEqual(self.events("BackupFailed"), [])

    def test_2_failed_commit_is_reported(self):
        """The agents (root) write into directories the coordinator cannot write, as the agents
        of the versions before made them (root:root 0755): every task succeeds, the commit
        fails. The run says which backup is not committed and why and exits 1; the
        StatefulSet gets a Warning Event BackupFailed with the same message."""
        cm = self.cm
        sts_dir = os.path.join(cm.repo, "backups", "default", "web")
        if not os.path.isdir(sts_dir):  # run alone: a first backup makes the shared tree
            self.coordinator(*self.run_args())
        listed = [b["id"] for b in cm.list_backups()]
        now = int(time.time())
        planted = []
        for t in range(now - 5, now + 900):
            for suffix in ("", "-1", "-2"):  # a second that a backup of test 1 took
                d = os.path.join(sts_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + suffix)
                if os.path.exists(d):
                    continue
                os.mkdir(d, 0o755)
                os.chown(d, 0, 0)
                os.chmod(d, 0o755)
                planted.append(d)
        try:
            cp = self.coordinator(*self.run_args(), check=False)
        finally:
            for d in planted:
                shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        m = re.search(r"ordinal-backup run: backup '(\d{8}T\d{6}Z(?:-\d+)?)' of default/web is NOT "
                      r"committed: its 3 volume\(s\) were copied, but without its commit record "
                      r"the backup does not exist \(for list, restore and verify\): ", cp.stderr)
        self.assertTrue(m, cp.stderr)
        bid = m.group(1)
        self.assertIn("Permission denied", cp.stderr)
        self.assertIn(f"cannot write directory '{sts_dir}/{bid}' (owner 0, group 0, mode 0755)",
                      cp.stderr)
        self.assertIn("chgrp -R 65532", cp.stderr)
        self.assertEqual([b["id"] for b in cm.list_backups()], listed)
        events = self.events("BackupFailed")
        self.assertEqual(len(events), 1, events)
        ev = events[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertIn(f"backup '{bid}' of default/web is NOT committed", ev["message"])
        self.assertEqual(ev["source"]["component"], "ordinal-backup")
        # each task says what became of its volume: copied
        phases = {t["status"]["phase"] for t in cm.tasks() if bid.lower() in t["metadata"]["name"]}
        self.assertEqual(phases, {"Succeeded"})

    def test_3_restore_job_as_65532(self):
        """The restore Job's command (cluster restore, no --root) as uid 65532 takes the lock
        in the shared repository and restores through the root agents."""
        cm = self.cm
        before = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        for v in cm.vols.values():
            write_volume(v["path"], seed=999)
        self.coordinator("restore", "--kubeconfig", self.kubeconfig, "--statefulset",
                         "default/web", "--repo", cm.repo)
        self.assertEqual({k: tree_hash(v["path"]) for k, v in cm.vols.items()}, before)
        self.assert_shared_modes(cm.repo)


if __name__ == "__main__":
    unittest.main(verbosity=2)
