"""Reclaim Delete against hostile volume contents: symlinks to files and directories outside
the root, a directory bind-mounted from elsewhere, read-only files and directories. Nothing
outside the volume may be touched; a mount inside is left alone and reported (Event on the PV),
and the removal completes once it is unmounted.
"""

import os
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import Cluster, storage_class  # noqa: E402
from harness import skip, temp_dir, wait_for  # noqa: E402


def tree(path):
    """Every file under path with its content, and every directory."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), path) + "/"] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, f), path)] = fh.read()
    return out


def is_mounted(path):
    """From /proc/self/mountinfo: os.path.ismount misses a bind mount of the same filesystem."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class DeleteSafety(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            skip("needs root for mount --bind")
        cls.c = Cluster(nodes=("node-a",))
        cls.c.apply(storage_class("wipe", reclaim="Delete"))
        cls.outside = temp_dir("outside-")
        os.makedirs(os.path.join(cls.outside, "dir/sub"))
        for rel, data in (("secret.txt", b"do not delete\n"), ("dir/a", b"a"),
                          ("dir/sub/b", b"b")):
            with open(os.path.join(cls.outside, rel), "wb") as f:
                f.write(data)
        cls.mounts = []

    @classmethod
    def tearDownClass(cls):
        for m in reversed(cls.mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
        cls.c.close()

    def provision(self, name):
        c = self.c
        c.create_claim(name, "wipe", annotations={"volume.kubernetes.io/selected-node": "node-a"})
        claims = c.wait_bound([name])
        pv_name = claims[name]["spec"]["volumeName"]
        path = c.pvs()[pv_name]["spec"]["hostPath"]["path"]
        # The provisioner renames the prepared directory into place right after creating the PV
        # (docs/internals/provisioner.md), so the claim can be Bound a moment before the
        # directory is at its path: what the kubelet meets as a mount retried.
        wait_for(lambda: os.path.isdir(path), 30, f"the directory of {name}")
        return pv_name, path

    def fill_hostile(self, path):
        os.symlink(os.path.join(self.outside, "secret.txt"), os.path.join(path, "link-file"))
        os.symlink(os.path.join(self.outside, "dir"), os.path.join(path, "link-dir"))
        os.symlink("../../../../../../../../", os.path.join(path, "link-up"))
        os.makedirs(os.path.join(path, "ro/deeper"))
        with open(os.path.join(path, "ro/deeper/file"), "w") as f:
            f.write("x")
        with open(os.path.join(path, "ro/file"), "w") as f:
            f.write("y")
        os.chmod(os.path.join(path, "ro/deeper/file"), 0o444)
        os.chmod(os.path.join(path, "ro/file"), 0o400)
        os.chmod(os.path.join(path, "ro/deeper"), 0o555)
        os.chmod(os.path.join(path, "ro"), 0o500)
        os.mkfifo(os.path.join(path, "fifo"))

    def test_symlinks_and_read_only_content(self):
        c = self.c
        before = tree(self.outside)
        pv_name, path = self.provision("hostile")
        self.fill_hostile(path)
        c.kubectl("delete", "pvc", "hostile")
        wait_for(lambda: pv_name not in c.pvs(), 30, "the PV to be deleted")
        self.assertFalse(os.path.lexists(path))
        self.assertEqual(tree(self.outside), before)
        self.assertTrue(os.path.isdir(c.roots["node-a"]))

    def test_bind_mount_inside_is_left_alone_and_reported(self):
        c = self.c
        src = temp_dir("bind-src-")
        with open(os.path.join(src, "precious"), "w") as f:
            f.write("mounted data\n")
        before_src, before_out = tree(src), tree(self.outside)
        pv_name, path = self.provision("mounted")
        self.fill_hostile(path)
        target = os.path.join(path, "mnt")
        os.mkdir(target)
        r = subprocess.run(["mount", "--bind", src, target], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"mount --bind failed: {r.stderr}")
        self.mounts.append(target)
        c.kubectl("delete", "pvc", "mounted")
        wait_for(lambda: c.events(ns="default", name=pv_name, reason="VolumeFailedDelete"), 30,
                 "a VolumeFailedDelete Event on the PV")
        ev = c.events(ns="default", name=pv_name, reason="VolumeFailedDelete")[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertIn("mount point", ev["message"])
        self.assertIn("unmount it", ev["message"])
        self.assertIn(pv_name, c.pvs(), "the PV stays while its directory cannot go")
        self.assertEqual(tree(src), before_src, "nothing inside the mount was touched")
        self.assertEqual(tree(self.outside), before_out)
        self.assertTrue(is_mounted(target))
        # once unmounted, a retry completes the reclaim
        subprocess.run(["umount", target], check=True)
        self.mounts.remove(target)
        wait_for(lambda: pv_name not in c.pvs(), 90, "the PV to be deleted after the unmount")
        self.assertFalse(os.path.lexists(path))
        self.assertEqual(tree(src), before_src)
        self.assertEqual(tree(self.outside), before_out)

    def test_entry_replaced_by_symlink_is_not_followed(self):
        """A volume directory swapped for a symlink to elsewhere: the link goes, not its target."""
        c = self.c
        before = tree(self.outside)
        pv_name, path = self.provision("swapped")
        os.rmdir(path)
        os.symlink(os.path.join(self.outside, "dir"), path)
        c.kubectl("delete", "pvc", "swapped")
        wait_for(lambda: pv_name not in c.pvs(), 30, "the PV to be deleted")
        self.assertFalse(os.path.lexists(path))
        self.assertEqual(tree(self.outside), before)
        self.assertEqual(stat.S_IFMT(os.lstat(os.path.join(self.outside, "dir")).st_mode),
                         stat.S_IFDIR)


if __name__ == "__main__":
    unittest.main(verbosity=2)
