"""Disaster recovery as docs/operations.md describes it ("Node lost", "Cluster lost", "A staging
copy"), on the emulated two-node cluster of test_cluster.py: a provisioner and an agent per node,
each with its own root directory standing for the node's disk, and the coordinator with its own
account and the RBAC of deploy/.

- Node lost: the node of ordinal 0 loses its agent first (the restore says, after the
  --unclaimed-warning delay, that no agent took the task, and stops at --task-timeout), then the
  whole node (provisioner and agent stopped, Node object deleted, root directory gone). The
  next restore deletes the gone node's task, names the claims and PVs the lost node holds with
  the command that frees them; with the claims deleted but a PV forgotten, the provisioner of
  the other node posts a Warning Event on the re-created claim with the command that frees it;
  running it lets `restore --place-lost-on` finish, and every ordinal's data is back on the
  node that is left.

Each scenario failed before issue 17 part 3: `restore` had no --task-timeout (exit 2).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import tree_hash, write_volume  # noqa: E402
from harness import Proc, wait_for  # noqa: E402
from test_cluster import BACKUP, NS, TASKS, ClusterMode  # noqa: E402


def sh(cm, command):
    """Runs one shell command line (as printed by ordinal-backup or an Event) against the
    emulator, the way a person pastes it; returns the CompletedProcess."""
    cp = subprocess.run(["sh", "-c", command], env=cm.c.emu.env, capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, f"{command}:\n{cp.stdout}{cp.stderr}"
    return cp


class TestNodeLost(unittest.TestCase):
    """Runbook "Node lost" of docs/operations.md."""

    def setUp(self):
        self.cm = ClusterMode()

    def tearDown(self):
        self.cm.close()

    def sts_replicas(self):
        return self.cm.c.get("statefulset", "web")["spec"]["replicas"]

    def test_node_lost(self):
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=300 + k)
        before = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        cp = cm.backup(*cm.run_args("--json"))
        bid = json.loads(cp.stdout)["id"]
        lost = cm.vols[0]["node"]
        keep = next(n for n in cm.c.nodes if n != lost)
        on_lost = sorted(k for k, v in cm.vols.items() if v["node"] == lost)

        # 1. The agent of the node is down (the node is still there): the restore says so after
        # --unclaimed-warning seconds and stops at --task-timeout, held at 0.
        self.assertEqual(cm.agents[lost].terminate(), 0)
        cp = cm.backup(*cm.restore_args("--backup", bid, "--task-timeout", "10",
                                        "--unclaimed-warning", "2"), check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertRegex(cp.stderr, r"task '\S+' has waited \d+ s and no agent has taken it "
                                    r"\(still Pending\): is the agent on node '" + lost +
                         r"' running .*\? Is node '" + lost + r"' gone \(kubectl get node " +
                         lost + r"\)\? If it is, see 'Node lost' in docs/operations.md")
        self.assertIn("did not finish within 10 s (phase Pending); is the agent on node "
                      f"'{lost}' running?", cp.stderr)
        self.assertEqual(self.sts_replicas(), 0)
        self.assertEqual(cm.record(), {"default.web": "3"})
        left = [t["metadata"]["name"] for t in cm.tasks()
                if t["metadata"]["labels"]["ordinal.dev/node"] == lost]
        self.assertEqual(len(left), 1, cm.tasks())

        # 2. The node is lost: provisioner and agent gone, its Node object deleted, its disk gone.
        self.assertEqual(cm.c.procs[lost].terminate(), 0)
        cm.c.kubectl("delete", "node", lost)
        shutil.rmtree(cm.c.roots[lost])

        # The next restore deletes the gone node's task and lists what the lost node holds,
        # with the command that frees it, before it restores anything.
        cp = cm.backup(*cm.restore_args("--backup", bid), check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(f"deleted task '{left[0]}' (restore of default/web ordinal 0 volume "
                      f"'data', phase Pending): its node '{lost}' no longer exists (no Node "
                      "object), so no agent will take it", cp.stderr)
        self.assertEqual([t for t in cm.tasks()
                          if t["metadata"]["labels"]["ordinal.dev/node"] == lost], [])
        for k in on_lost:
            self.assertIn(f"ordinal {k} volume 'data': claim 'data-web-{k}' is bound to "
                          f"PersistentVolume '{cm.vols[k]['pv']}' of node '{lost}', which no "
                          "longer exists (no Node object)", cp.stderr)
        m = re.search(r"free them \(their data went with the node; the backup brings it back\): "
                      r"(kubectl -n default delete pvc[^&]*) && (kubectl delete pv .*)$",
                      cp.stderr, re.M)
        self.assertIsNotNone(m, cp.stderr)
        self.assertEqual(m.group(1).split()[5:], [f"data-web-{k}" for k in on_lost])
        self.assertEqual(m.group(2).split()[3:], [cm.vols[k]["pv"] for k in on_lost])
        self.assertIn("free them, then run this restore again with --place-lost-on NODE",
                      cp.stderr)
        self.assertEqual(self.sts_replicas(), 0)

        # 3. A person deletes the claims but forgets the PVs: the re-created claim cannot bind
        # on the node that is left, and its provisioner says why on the claim, with the command.
        sh(cm, m.group(1))
        restore = Proc([BACKUP, *cm.restore_args("--backup", bid, "--place-lost-on", keep,
                                                 "--unclaimed-warning", "2")],
                       env=cm.c.emu.env, name="restore-node-lost", log_dir=cm.c.base)
        freed = set()
        while restore.running() or len(freed) < len(on_lost):
            def blocked():
                evs = [e for e in cm.c.events(reason="VolumeOnOtherNode")
                       if e["involvedObject"]["name"] not in freed]
                return evs or (not restore.running() and ["exited"])
            evs = wait_for(blocked, 120, "a VolumeOnOtherNode Event or the restore's end")
            if evs == ["exited"]:
                break
            ev = evs[0]
            claim = ev["involvedObject"]["name"]
            k = int(claim.rsplit("-", 1)[1])
            self.assertEqual(ev["type"], "Warning")
            self.assertEqual(ev["involvedObject"]["kind"], "PersistentVolumeClaim")
            pv = cm.vols[k]["pv"]
            self.assertIn(f"PersistentVolume {pv} (Released, reclaim Delete) on node '{lost}' "
                          f"holds the data of default/web ordinal {k} 'data', so this claim is "
                          f"not provisioned on node '{keep}'", ev["message"])
            cmd = re.search(r"free the ordinal: (kubectl delete pv \S+) \(", ev["message"])
            self.assertIsNotNone(cmd, ev["message"])
            self.assertEqual(cmd.group(1), f"kubectl delete pv {pv}")
            # the restore, waiting for the claim, points at its Events (--unclaimed-warning 2)
            wait_for(lambda: f"claim '{claim}' is not Bound yet; its Events say why (kubectl -n "
                     f"default describe pvc {claim})" in restore.log(), 60,
                     "the restore's line about the Pending claim")
            sh(cm, cmd.group(1))
            freed.add(claim)
        self.assertEqual(restore.wait(timeout=240), 0, restore.log() + cm.logs())
        log = restore.log()
        self.assertEqual(freed, {f"data-web-{k}" for k in on_lost})
        for k in on_lost:
            self.assertIn(f"node '{lost}', which held ordinal {k} volume 'data', no longer "
                          f"exists: its claim goes to node '{keep}' (--place-lost-on)", log)
        self.assertIn("restored; scaled back to 3", log)

        # Every ordinal is back, on the node that is left, with its data.
        cm.c.wait_pods_ready("web", 3)
        claims, pvs = cm.c.claims(), cm.c.pvs()
        for k in range(3):
            pv = pvs[claims[f"data-web-{k}"]["spec"]["volumeName"]]
            self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/node"], keep)
            self.assertEqual(tree_hash(pv["spec"]["hostPath"]["path"]), before[k], k)
        self.assertIsNone((cm.record() or {}).get("default.web"))
        self.assertEqual(cm.refused(), {})


if __name__ == "__main__":
    unittest.main()
