"""Disaster recovery as docs/operations.md describes it ("Node lost", "Cluster lost", "A staging
copy"), on the emulated two-node cluster of test_cluster.py: a provisioner and an agent per node,
each with its own root directory standing for the node's disk, and the coordinator with its own
account and the RBAC of deploy/.

- Node lost: the node of ordinal 0 loses its agent first (the restore says, after the
  --unclaimed-warning delay, that no agent took the task, and stops at --task-timeout), then the
  whole node (provisioner and agent stopped, Node object deleted, root directory gone). The
  next `run` deletes the gone node's task and refuses to back up the lost volume; the restore
  names the claims and PVs the lost node holds with the command that frees them; with the claims deleted but a PV forgotten, the provisioner of
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
from harness import Proc, source_dir, wait_for  # noqa: E402
from test_cluster import BACKUP, NS, TASKS, ClusterMode  # noqa: E402


OPERATIONS = os.path.join(source_dir(), "docs", "operations.md")


def runbook(title):
    """The text of the section '### <title>' of docs/operations.md."""
    with open(OPERATIONS) as f:
        text = f.read()
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start:end if end >= 0 else None]


def as_documented(case, title, cm, args, subst=None, extra=0):
    """Checks that the command the test runs is the one the runbook `title` shows, on a line
    of its own: ordinal-backup with args (but the last `extra` ones, test-only options such as
    a short --unclaimed-warning), with this cluster's kubeconfig, repository and node names
    written as the runbook writes them (subst: more replacements)."""
    words = ["ordinal-backup", *args[:len(args) - extra]] if args[0] != "kubectl" else args
    line = " ".join(words)
    for old, new in [(cm.coord_kubeconfig, "~/.kube/config"), (cm.repo, "/srv/backups"),
                     *(subst or {}).items()]:
        line = line.replace(old, new)
    case.assertIn(line, [text.strip() for text in runbook(title).splitlines()],
                  f"runbook '{title}' does not show: {line}")


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
        names = {lost: "node-a", keep: "node-b"}  # as the runbook names them
        self.assertEqual(cm.c.procs[lost].terminate(), 0)
        as_documented(self, "Node lost (runbook)", cm, ["kubectl", "delete", "node", lost],
                      names)
        cm.c.kubectl("delete", "node", lost)
        shutil.rmtree(cm.c.roots[lost])

        # A backup deletes the gone node's task and refuses, naming the lost volume, rather
        # than hand a task to an agent that never comes (the StatefulSet is held at 0 by the
        # restore above: --ordinals names the ordinal).
        cp = cm.backup(*cm.run_args("--ordinals", "0"), check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(f"ordinal-backup run: deleted task '{left[0]}' (restore of default/web "
                      f"ordinal 0 volume 'data', phase Pending): its node '{lost}' no longer "
                      "exists (no Node object), so no agent will take it", cp.stderr)
        self.assertEqual([t for t in cm.tasks()
                          if t["metadata"]["labels"]["ordinal.dev/node"] == lost], [])
        self.assertIn(f"ordinal 0 volume 'data' (claim 'data-web-0') is on node '{lost}', which "
                      "no longer exists (no Node object): nothing can back it up; restore it "
                      "onto another node (docs/operations.md, \"Node lost\")", cp.stderr)

        # The restore lists what the lost node holds, with the command that frees it, before
        # it restores anything.
        args = cm.restore_args()
        as_documented(self, "Node lost (runbook)", cm, args, names)
        cp = cm.backup(*args, check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
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
        args = cm.restore_args("--place-lost-on", keep, "--unclaimed-warning", "2")
        as_documented(self, "Node lost (runbook)", cm, args, names, extra=2)
        restore = Proc([BACKUP, *args],
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


class TestVolumeOnOtherNode(unittest.TestCase):
    """The provisioner alone (no backup tools): a claim re-created with selected-node on a live
    node while a Released PV of a lost node holds its ordinal used to stay Pending without a
    word; now that node's provisioner says why on the claim, with the command that frees it,
    and the claim binds once it is run."""

    def test_event_and_the_command_that_frees(self):
        from prov_cluster import Cluster, statefulset, storage_class
        c = Cluster()
        try:
            c.apply(storage_class("ordinal"))
            c.apply(statefulset("web", "ordinal", replicas=2))
            c.wait_pods_ready("web", 2)
            claims, pvs = c.claims(), c.pvs()
            pv = claims["data-web-0"]["spec"]["volumeName"]
            lost = pvs[pv]["metadata"]["annotations"]["ordinal.dev/node"]
            keep = next(n for n in c.nodes if n != lost)
            # The node is lost; the StatefulSet is scaled down and the claim deleted, so the
            # PV is Released, and nobody is left to reclaim it.
            self.assertEqual(c.procs[lost].terminate(), 0)
            c.kubectl("delete", "node", lost)
            c.kubectl("scale", "statefulset", "web", "--replicas=0")
            wait_for(lambda: not [p for p in c.api_list("/api/v1/namespaces/default/pods")
                                  if p["metadata"]["name"].startswith("web-")], 60, "no pods")
            c.kubectl("delete", "pvc", "data-web-0")
            wait_for(lambda: c.pvs()[pv].get("status", {}).get("phase") == "Released", 30,
                     f"PV {pv} Released")
            c.create_claim("data-web-0", "ordinal",
                           annotations={"volume.kubernetes.io/selected-node": keep})
            evs = wait_for(lambda: c.events(name="data-web-0", reason="VolumeOnOtherNode"), 60,
                           "the VolumeOnOtherNode Event")
            ev = evs[0]
            self.assertEqual(ev["type"], "Warning")
            self.assertEqual(ev["message"],
                             f"PersistentVolume {pv} (Released, reclaim Delete) on node '{lost}' "
                             "holds the data of default/web ordinal 0 'data', so this claim is "
                             f"not provisioned on node '{keep}': only node '{lost}' may hand "
                             f"that volume over or remove it. If node '{lost}' is gone for good, "
                             f"free the ordinal: kubectl delete pv {pv} (this loses nothing "
                             "that did not go with that node; bring the data back with "
                             f"ordinal-backup restore); node '{keep}' then provisions a new, "
                             f"empty volume. If node '{lost}' comes back, its provisioner acts "
                             "on its own")
            self.assertNotEqual(c.claims()["data-web-0"]["status"].get("phase"), "Bound")
            # what the kubectl of a person shows
            out = c.kubectl("describe", "pvc", "data-web-0").stdout
            self.assertRegex(out, r"Warning\s+VolumeOnOtherNode")
            sh_cp = subprocess.run(["sh", "-c", re.search(r"free the ordinal: (kubectl delete pv "
                                                          r"\S+) \(", ev["message"]).group(1)],
                                   env=c.emu.env, capture_output=True, text=True, timeout=60)
            self.assertEqual(sh_cp.returncode, 0, sh_cp.stderr)
            bound = c.wait_bound(["data-web-0"], timeout=60)
            new = c.pvs()[bound["data-web-0"]["spec"]["volumeName"]]
            self.assertEqual(new["metadata"]["annotations"]["ordinal.dev/node"], keep)
        finally:
            c.close()


SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"clusterIP": "None", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80}]}}
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                 "selfLink")


class FreshCluster(ClusterMode):
    """A new cluster (a fresh emulator, empty node disks) with ordinal installed - the CRD,
    deploy/'s RBAC and restore record, a provisioner and an agent per node, the StorageClass -
    and the agents on the repository `repo` of the cluster that was lost; no StatefulSet."""

    def __init__(self, repo):
        super().__init__(replicas=None, repo=repo)


def volumes(cm, sts="web", ns="default"):
    """{ordinal: (node, path)} of the StatefulSet's claims, from the API."""
    claims, pvs = cm.c.claims(ns), cm.c.pvs()
    out = {}
    for name, c in claims.items():
        m = re.fullmatch(rf"data-{sts}-(\d+)", name)
        if m and c.get("status", {}).get("phase") == "Bound":
            pv = pvs[c["spec"]["volumeName"]]
            out[int(m.group(1))] = (pv["metadata"]["annotations"]["ordinal.dev/node"],
                                    pv["spec"]["hostPath"]["path"])
    return out


def backed_up(cm, seed):
    """Writes data into every volume of default/web, backs it up with `run`; returns the
    backup ID and {ordinal: (node, tree hash)}."""
    for k, v in cm.vols.items():
        write_volume(v["path"], seed=seed + k)
    before = {k: (v["node"], tree_hash(v["path"])) for k, v in cm.vols.items()}
    cp = cm.backup(*cm.run_args("--json"))
    return json.loads(cp.stdout)["id"], before


class TestClusterLost(unittest.TestCase):
    """Runbook "Cluster lost" of docs/operations.md: backups store the StatefulSet and its
    Service; on a new cluster with the same repository, `restore --create` brings back the
    StatefulSet, its Service and the data in one command."""

    def test_cluster_lost(self):
        old = ClusterMode()
        try:
            status, out = old.c.emu.api("POST", "/api/v1/namespaces/default/services", SERVICE)
            self.assertEqual(status, 201, out)
            bid, before = backed_up(old, 500)
            self.assertEqual(len({n for n, _ in before.values()}), 2)
            repo = old.repo
            # The objects, as the API returned them, cleaned; listed in backup.json.
            bdir = os.path.join(repo, "backups", "default", "web", bid)
            with open(os.path.join(bdir, "backup.json")) as f:
                doc = json.load(f)
            self.assertEqual([(o["kind"], o["object"]) for o in doc["objects"]],
                             [("StatefulSet", "statefulset.json"), ("Service", "service.json")])
            live = old.c.get("statefulset", "web")
            for name, kind in (("statefulset.json", "StatefulSet"), ("service.json", "Service")):
                with open(os.path.join(bdir, name)) as f:
                    obj = json.load(f)
                self.assertEqual(obj["kind"], kind)
                self.assertEqual(obj["metadata"]["name"], "web")
                self.assertNotIn("status", obj)
                for field in SERVER_FIELDS:
                    self.assertNotIn(field, obj["metadata"], name)
            self.assertEqual(obj["spec"]["clusterIP"], "None")
            with open(os.path.join(bdir, "statefulset.json")) as f:
                self.assertEqual(json.load(f)["spec"], live["spec"])
            old.backup("verify", "--repo", repo, "--backup", bid)
        finally:
            old.close()

        # The whole cluster is lost: a new one, ordinal installed, the same repository.
        cm = FreshCluster(repo)
        try:
            self.assertEqual(cm.c.get("statefulsets"), [])
            cp = cm.backup(*cm.restore_args(), check=False)
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertIn("StatefulSet default/web does not exist; run the restore again with "
                          "--create: it re-creates the StatefulSet and its Service from the "
                          "backup with 0 replicas, restores the volumes, then scales it to its "
                          "count", cp.stderr)
            self.assertEqual(cm.c.get("statefulsets"), [])

            as_documented(self, "Cluster lost (runbook)", cm, cm.restore_args("--create"))
            cp = cm.backup(*cm.restore_args("--create"), timeout=300)
            self.assertIn(f"Service default/web created from backup {bid}", cp.stderr)
            self.assertIn(f"StatefulSet default/web created from backup {bid} with 0 replicas; "
                          "it scales to 3 once its volumes are restored", cp.stderr)
            self.assertIn("restored; scaled back to 3", cp.stderr)
            svc = cm.c.get("service", "web")
            self.assertEqual(svc["spec"]["clusterIP"], "None")
            self.assertEqual(svc["spec"]["selector"], {"app": "web"})
            self.assertEqual(cm.c.get("statefulset", "web")["spec"]["replicas"], 3)
            cm.c.wait_pods_ready("web", 3)
            now = volumes(cm)
            self.assertEqual(sorted(now), [0, 1, 2])
            for k, (node, h) in before.items():
                self.assertEqual(now[k][0], node, k)  # on the node it was backed up from
                self.assertEqual(tree_hash(now[k][1]), h, k)
            self.assertIsNone((cm.record() or {}).get("default.web"))
            self.assertEqual(cm.refused(), {})
        finally:
            cm.close()


class TestRestoreTo(unittest.TestCase):
    """Runbook "A staging copy" of docs/operations.md: `restore --to NS/NAME` makes a copy of
    a StatefulSet from its backup, under another name and namespace, and leaves the original
    alone."""

    def setUp(self):
        self.cm = ClusterMode()

    def tearDown(self):
        self.cm.close()

    def test_restore_to_another_name(self):
        cm = self.cm
        status, out = cm.c.emu.api("POST", "/api/v1/namespaces/default/services", SERVICE)
        self.assertEqual(status, 201, out)
        bid, before = backed_up(cm, 700)
        # production moves on after the backup: the copy must have the backup, the original
        # keeps its own data
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=900 + k)
        prod = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        title = "A staging copy (restore into another StatefulSet)"
        as_documented(self, title, cm, ["kubectl", "create", "namespace", "staging"])
        cm.c.kubectl("create", "namespace", "staging")

        args = cm.restore_args("--to", "staging/web-copy", "--json")
        as_documented(self, title, cm, args, extra=1)
        cp = cm.backup(*args, timeout=300)
        self.assertEqual(json.loads(cp.stdout)["statefulset"], "staging/web-copy")
        self.assertIn(f"Service staging/web created from backup {bid}", cp.stderr)
        self.assertIn(f"StatefulSet staging/web-copy created from backup {bid} with 0 replicas",
                      cp.stderr)
        copy = cm.c.get("statefulset", "web-copy", ns="staging")
        self.assertEqual(copy["spec"]["replicas"], 3)
        self.assertEqual(copy["spec"]["serviceName"], "web")
        cm.c.wait_pods_ready("web-copy", 3, ns="staging")
        now = volumes(cm, sts="web-copy", ns="staging")
        self.assertEqual(sorted(now), [0, 1, 2])
        for k, (node, h) in before.items():
            self.assertEqual(now[k][0], node, k)
            self.assertEqual(tree_hash(now[k][1]), h, k)
            self.assertTrue(now[k][1].endswith(f"/staging/web-copy/{k}/data"), now[k][1])
        # The original was not touched: still 3 replicas, its own (newer) data.
        self.assertEqual(cm.c.get("statefulset", "web")["spec"]["replicas"], 3)
        for k, v in cm.vols.items():
            self.assertEqual(tree_hash(v["path"]), prod[k], k)
        self.assertEqual(cm.record() or {}, {})

        # Run again into the copy that now exists: it restores into it (no create).
        cp = cm.backup(*cm.restore_args("--to", "staging/web-copy"), timeout=300)
        self.assertNotIn("created from backup", cp.stderr)
        self.assertIn("backup %s of staging/web-copy restored; scaled back to 3" % bid,
                      cp.stderr)
        self.assertEqual(cm.refused(), {})


if __name__ == "__main__":
    unittest.main()
