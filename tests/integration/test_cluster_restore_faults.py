"""Issue 12 in cluster mode: the node agent restores as carefully as the CLI.

The emulated two-node cluster of test_cluster.py (provisioners, agents, the coordinator with
the RBAC of deploy/). Two faults an agent meets on a real node:
- the PV it restores is too small for the backup (a small filesystem under the volume): the
  task fails before anything is touched, with the sizes, and the coordinator stops with the
  StatefulSet at 0;
- the agent runs without CAP_CHOWN and CAP_MKNOD (deploy/'s default): a volume with another
  owner's file and a device node is not swapped in; the task says what would be lost and how
  to go on; with --accept-lost-attributes it is restored and the task reports what it lacks.
"""

import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import staging_leftovers, tree_hash, write_volume  # noqa: E402
from harness import Proc, skip, wait_for  # noqa: E402
from test_cluster import BACKUP, ClusterMode  # noqa: E402

if os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("setpriv"):
    skip("needs root, losetup and setpriv")

MiB = 1024 * 1024


def sh(*cmd):
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: {p.stderr}")
    return p.stdout


class UnprivilegedAgents(ClusterMode):
    """ClusterMode whose agents can be restarted without some capabilities (setpriv)."""

    def restart_agent(self, node, drop):
        self.agents[node].terminate()
        self.agent_prefix = ("setpriv", "--bounding-set", drop, "--") if drop else ()
        self.start_agent(node)


class TestClusterRestoreFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cm = UnprivilegedAgents(replicas=2)

    @classmethod
    def tearDownClass(cls):
        cls.cm.close()

    def sts_replicas(self):
        status, body = self.cm.c.emu.api("GET", "/apis/apps/v1/namespaces/default/statefulsets/web")
        return body["spec"]["replicas"]

    def failed_task_message(self):
        failed = [t for t in self.cm.tasks() if t.get("status", {}).get("phase") == "Failed"]
        self.assertEqual(len(failed), 1, failed)
        self.cm.c.emu.api("DELETE", f"/apis/ordinal.dev/v1alpha1/namespaces/ordinal-system/"
                                    f"volumetasks/{failed[0]['metadata']['name']}")
        return failed[0]["status"]["message"]

    def test_1_undersized_pv(self):
        cm = self.cm
        vol = cm.vols[0]["path"]
        with open(os.path.join(vol, "big.bin"), "wb") as f:
            f.write(os.urandom(24 * MiB))
        backup = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        os.unlink(os.path.join(vol, "big.bin"))
        # The ordinal's directory moves onto a 16 MiB filesystem (what a small disk looks like).
        ordinal_dir = os.path.dirname(vol)
        img = os.path.join(cm.c.base, "small.img")
        with open(img, "wb") as f:
            f.truncate(16 * MiB)
        dev = sh("losetup", "-f", "--show", img).strip()
        self.addCleanup(subprocess.run, ["losetup", "-d", dev], capture_output=True)
        sh("mkfs.ext4", "-q", "-F", dev)
        tmp = os.path.join(cm.c.base, "small-mnt")
        os.mkdir(tmp)
        sh("mount", dev, tmp)
        sh("cp", "-a", f"{ordinal_dir}/.", tmp)
        sh("umount", tmp)
        sh("mount", dev, ordinal_dir)
        self.addCleanup(subprocess.run, ["umount", "-l", ordinal_dir], capture_output=True)
        before = tree_hash(vol)

        cp = cm.backup(*cm.restore_args("--backup", backup), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        msg = self.failed_task_message()
        self.assertIn("does not fit on the filesystem of", msg)
        self.assertRegex(msg, r"needs about 24\.\d MiB")
        self.assertIn("does not fit on the filesystem of", cp.stderr)
        self.assertIn("The StatefulSet stays at 0 replicas", cp.stderr)
        self.assertEqual(self.sts_replicas(), 0)
        self.assertEqual(tree_hash(vol), before, "the volume was changed")
        self.assertEqual(staging_leftovers(cm.c.roots[cm.vols[0]["node"]]), [])
        # Back to the node's own disk; the next restore resumes and scales back.
        sh("umount", ordinal_dir)
        cm.backup(*cm.restore_args("--backup", backup))
        self.assertEqual(self.sts_replicas(), 2)
        self.assertEqual(os.path.getsize(os.path.join(vol, "big.bin")), 24 * MiB)
        cm.c.wait_pods_ready("web", 2)

    def test_2_agent_without_capabilities(self):
        cm = self.cm
        vol, node = cm.vols[1]["path"], cm.vols[1]["node"]
        write_volume(vol, seed=7)
        os.chown(os.path.join(vol, "big.bin"), 1234, 1234)
        os.mknod(os.path.join(vol, "null"), 0o600 | 0o020000, os.makedev(1, 3))
        backup = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        want = tree_hash(vol)
        write_volume(vol, seed=8)
        before = tree_hash(vol)
        cm.restart_agent(node, "-chown,-mknod,-fowner,-fsetid")

        cp = cm.backup(*cm.restore_args("--backup", backup, "--ordinals", "1"), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        msg = self.failed_task_message()
        for m in ("the restore could not keep owner or group of 1 entry ('big.bin')",
                  "device nodes not created: 1 entry ('null')",
                  "keeps its previous content", "restore-capabilities", "--accept-lost-attributes"):
            self.assertIn(m, msg)
        self.assertEqual(tree_hash(vol), before, "the volume was changed")
        self.assertEqual(self.sts_replicas(), 0)

        cp = cm.backup(*cm.restore_args("--backup", backup, "--ordinals", "1",
                                        "--accept-lost-attributes", "--json"))
        lost = json.loads(cp.stdout)["volumes"][0]["lost_attributes"]
        self.assertEqual(lost["owner"], {"count": 1, "examples": []})
        self.assertEqual(lost["device-node"]["count"], 1)
        self.assertIn("restored without (acceptLostAttributes): owner or group of 1 entry "
                      "('big.bin')", cp.stderr)
        self.assertIn("device nodes not created: 1 entry ('null')", cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(vol, "null")))
        self.assertEqual(os.stat(os.path.join(vol, "big.bin")).st_uid, 0)
        self.assertNotEqual(tree_hash(vol), before)
        self.assertEqual(self.sts_replicas(), 2)
        self.assertNotEqual(want, before)

    def test_3_second_agent_of_a_node_waits(self):
        """Two agents of one node (an upgrade's old and new pod): the second waits for the
        node's lock and takes no task until the first stops, then serves."""
        cm = self.cm
        node = cm.vols[0]["node"]
        cm.restart_agent(node, None)  # back to a full agent
        first = cm.agents[node]
        second = Proc([BACKUP, "agent", "--kubeconfig", cm.c.emu.kubeconfig, "--node-name", node,
                       "--root", cm.c.roots[node], "--repo", cm.repo],
                      env=cm.c.emu.env, name=f"agent-{node}-second", log_dir=cm.c.base)
        try:
            wait_for(lambda: "another agent of this node holds" in second.log(), 30,
                     "the second agent to wait for the node's lock")
            cm.backup(*cm.run_args())
            self.assertNotIn("task '", second.log())
            self.assertIn("task '", first.log())
            first.terminate()
            wait_for(lambda: "serving node" in second.log(), 30, "the second agent to serve")
            cm.backup(*cm.run_args())
            self.assertIn("Succeeded", second.log())
        finally:
            cm.agents[node] = second  # stopped (and checked) by close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
