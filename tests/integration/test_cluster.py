"""Cluster mode end to end: the emulator with two nodes, and per node an ordinal-provisioner and an
`ordinal-backup agent`, each with its own root directory standing for the node's disk; the
coordinator `ordinal-backup run` and restore tasks carried out by the agents.

What is checked is what a user sees: exit codes and messages, VolumeTask objects, `list` and
`verify` of the repository, and the files in the volumes.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import tree_hash, write_volume  # noqa: E402
from harness import Proc, bin_path, skip, source_dir, temp_dir, wait_for  # noqa: E402
from prov_cluster import Cluster, statefulset, storage_class  # noqa: E402

NS = "ordinal-system"
BACKUP = bin_path("ordinal-backup")
DEPLOY = os.path.join(source_dir(), "deploy")
CRD = os.path.join(DEPLOY, "crd-volumetask.yaml")
KUBECTL = "/usr/bin/kubectl"  # the real one: what a person reads Events with
RECORD = f"/api/v1/namespaces/{NS}/configmaps/ordinal-restores"
TASKS = f"/apis/ordinal.dev/v1alpha1/namespaces/{NS}/volumetasks"


class ClusterMode:
    """A Cluster plus the VolumeTask CRD, the ordinal-system namespace, a repository and one agent
    per node, with the StatefulSet default/web (3 replicas, one template 'data') bound."""

    def __init__(self, agent_args=(), replicas=3, repo=None):
        """replicas None: ordinal installed but no StatefulSet (a fresh cluster); repo: the
        agents' repository (default: a new one)."""
        if not os.path.exists(BACKUP):
            skip(f"{BACKUP} is not built")
        if not os.path.exists(CRD):
            skip(f"{CRD} is missing")
        self.c = Cluster()
        self.repo = repo or os.path.join(temp_dir("ordinal-cluster-repo-"), "repo")
        self.c.kubectl("apply", "-f", CRD)
        self.c.kubectl("create", "namespace", NS)
        wait_for(lambda: self.c.emu.api("GET", TASKS)[0] == 200, 20, "the VolumeTask resource")
        # The coordinator runs with its own account's token and the RBAC of deploy/, so that a
        # request deploy/ does not allow fails the test (issue 12: least privilege).
        self.c.kubectl("apply", "-f", os.path.join(DEPLOY, "rbac-coordinator.yaml"),
                       "-f", os.path.join(DEPLOY, "restore-record.yaml"))
        self.coord_kubeconfig = self.account_kubeconfig("ordinal-coordinator")
        self.agent_args = list(agent_args)
        self.agents = {}
        self.agent_logs = {n: [] for n in self.c.nodes}
        for n in self.c.nodes:
            self.start_agent(n)
        self.c.apply(storage_class("ordinal"))
        self.vols = {}
        if replicas is None:
            return
        self.c.apply(statefulset("web", "ordinal", replicas=replicas))
        self.c.wait_pods_ready("web", replicas)
        for k in range(replicas):
            claim = self.c.claims()[f"data-web-{k}"]
            pv = self.c.pvs()[claim["spec"]["volumeName"]]
            self.vols[k] = {"path": pv["spec"]["hostPath"]["path"], "pv": pv["metadata"]["name"],
                            "node": pv["metadata"]["annotations"]["ordinal.dev/node"]}

    def account_kubeconfig(self, sa):
        """A copy of the emulator's kubeconfig with a token of ServiceAccount sa instead of the
        admin's."""
        token = self.c.kubectl("-n", NS, "create", "token", sa).stdout.strip()
        path = os.path.join(self.c.base, f"kubeconfig-{sa}")
        with open(self.c.emu.kubeconfig) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"token: \S+", "token: " + token, text))
        os.chmod(path, 0o600)
        return path

    def restore_args(self, *extra):
        return ["restore", "--kubeconfig", self.coord_kubeconfig, "--statefulset", "default/web",
                "--repo", self.repo, *extra]

    def refused(self):
        """Requests the emulator answered 403, by verb."""
        return {verb: codes["403"] for verb, codes in self.c.emu.stats()["requests"].items()
                if codes.get("403")}

    def record(self):
        """The restore record: ConfigMap ordinal-restores' data (None when it is gone)."""
        status, body = self.c.emu.api("GET", RECORD)
        return (body.get("data") or {}) if status == 200 else None

    # Words put before the agent's command line (e.g. setpriv, to take capabilities away).
    agent_prefix = ()

    def start_agent(self, node, *extra):
        p = Proc([*self.agent_prefix, BACKUP, "agent", "--kubeconfig", self.c.emu.kubeconfig,
                  "--node-name", node, "--root", self.c.roots[node], "--repo", self.repo, "--log-level", "debug",
                  "--health-file", self.health_file(node),
                  *self.agent_args, *extra],
                 env=self.c.emu.env, name=f"agent-{node}-{len(self.agent_logs[node])}",
                 log_dir=self.c.base)
        self.agents[node] = p
        self.agent_logs[node].append(p)
        wait_for(lambda: "serving node" in p.log() or not p.running(), 30,
                 f"agent of {node} to start")
        if not p.running():
            raise AssertionError(f"agent of {node} exited:\n{p.log()}")
        return p

    def health_file(self, node):
        return os.path.join(self.c.base, f"agent-{node}.health")

    def agent_log(self, node):
        return "".join(p.log() for p in self.agent_logs[node])

    def logs(self):
        return "\n".join(f"--- agent {n} ---\n{self.agent_log(n)}" for n in self.c.nodes)

    def close(self):
        """Stops everything; fails when an agent did not exit cleanly on SIGTERM or a sanitizer
        spoke (an agent killed on purpose is not asked again)."""
        codes = {n: p.terminate() for n, p in self.agents.items()}
        self.c.close()
        for n, code in codes.items():
            assert code == 0, f"agent of {n} exited {code}:\n{self.agent_log(n)[-4000:]}"
            # a stopped agent must not look alive to the probes
            assert not os.path.exists(self.health_file(n)), f"health file of {n} left behind"
        for n in self.c.nodes:
            assert "Sanitizer" not in self.agent_log(n), self.agent_log(n)[-6000:]

    def backup(self, *args, check=True, timeout=180):
        cp = subprocess.run([BACKUP, *args], env=self.c.emu.env, capture_output=True, text=True,
                            timeout=timeout)
        assert "Sanitizer" not in cp.stderr, cp.stderr
        if check and cp.returncode != 0:
            raise AssertionError(f"ordinal-backup {' '.join(args)} exited {cp.returncode}:\n"
                                 f"{cp.stdout}{cp.stderr}\n{self.logs()}")
        return cp

    def run_args(self, *extra):
        return ["run", "--kubeconfig", self.coord_kubeconfig, "--statefulset", "default/web",
                "--repo", self.repo, *extra]

    def list_backups(self):
        if not os.path.exists(os.path.join(self.repo, "ordinal-repo.json")):
            return []
        return json.loads(self.backup("list", "--repo", self.repo, "--json").stdout)

    def tasks(self):
        status, body = self.c.emu.api("GET", TASKS)
        assert status == 200, body
        return body["items"]

    def task(self, name):
        status, body = self.c.emu.api("GET", f"{TASKS}/{name}")
        return body if status == 200 else None

    def create_task(self, name, action, backup_id, ordinal, pv, node, label_node=None,
                    template="data", sts="default/web"):
        body = {"apiVersion": "ordinal.dev/v1alpha1", "kind": "VolumeTask",
                "metadata": {"name": name, "namespace": NS,
                             "labels": {"ordinal.dev/node": label_node or node}},
                "spec": {"action": action, "backupId": backup_id, "statefulset": sts,
                         "ordinal": ordinal, "template": template, "pvName": pv, "node": node}}
        status, out = self.c.emu.api("POST", TASKS, body)
        assert status == 201, out
        return out

    def wait_task_final(self, name, timeout=60):
        def final():
            t = self.task(name)
            phase = (t or {}).get("status", {}).get("phase")
            return t if phase in ("Succeeded", "Failed") else None
        try:
            return wait_for(final, timeout, f"task {name} to finish")
        except AssertionError:
            print(self.logs()[-6000:], file=sys.stderr)
            raise

    def wait_running(self, timeout=60):
        def running():
            return [t for t in self.tasks() if t.get("status", {}).get("phase") == "Running"]
        return wait_for(running, timeout, "a Running task")[0]


class TestClusterBackup(unittest.TestCase):
    """run in reverse order, list/verify, then restore every ordinal through tasks."""

    @classmethod
    def setUpClass(cls):
        cls.cm = ClusterMode()

    @classmethod
    def tearDownClass(cls):
        cls.cm.close()

    def test_1_run_reverse_then_restore(self):
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=100 + k)
        before = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        self.assertEqual(len({v["node"] for v in cm.vols.values()}), 2,
                         "the StatefulSet should span both nodes")

        cp = cm.backup(*cm.run_args("--json"))
        doc = json.loads(cp.stdout)
        self.assertEqual(doc["order"], "reverse")
        self.assertEqual([v["ordinal"] for v in doc["volumes"]], [2, 1, 0])
        bid = doc["id"]
        # One task at a time, highest ordinal first: each volume's manifest (written by the
        # agent of its node) started after the previous one finished.
        mans = []
        for k in (2, 1, 0):
            with open(os.path.join(cm.repo, "backups", "default", "web", bid, f"ordinal-{k}",
                                   "data.json")) as f:
                mans.append(json.load(f))
        for prev, cur in zip(mans, mans[1:]):
            self.assertLessEqual(prev["finished_at"], cur["started_at"])
        for k, m in zip((2, 1, 0), mans):
            self.assertEqual(m["source"]["node"], cm.vols[k]["node"])
            self.assertEqual(m["source"]["pv"], cm.vols[k]["pv"])
        # Each agent logged only its own node's tasks, and the run deleted its tasks.
        for k, v in cm.vols.items():
            self.assertIn(f"-{k}-data': backing up ordinal {k}", cm.agent_log(v["node"]))
        self.assertEqual([t["metadata"]["name"] for t in cm.tasks()], [])
        # The agents keep their --health-file fresh (what the DaemonSet's probes check).
        for n in cm.c.nodes:
            self.assertLess(time.time() - os.path.getmtime(cm.health_file(n)), 30)

        backups = cm.list_backups()
        self.assertEqual([(b["id"], b["status"]) for b in backups], [(bid, "complete")])
        cm.backup("verify", "--repo", cm.repo, "--backup", bid)

        # Damage every volume, then restore each through a restore task for its node.
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=900 + k)
            self.assertNotEqual(tree_hash(v["path"]), before[k])
        for k in (0, 1, 2):
            v = cm.vols[k]
            name = f"restore-web-{k}"
            cm.create_task(name, "restore", bid, k, v["pv"], v["node"])
            t = cm.wait_task_final(name)
            self.assertEqual(t["status"]["phase"], "Succeeded", t["status"])
            self.assertEqual(tree_hash(v["path"]), before[k], f"ordinal {k}")
        # kubectl shows the tasks with the CRD's columns
        out = cm.c.kubectl("get", "volumetasks", "-n", NS).stdout
        self.assertRegex(out, r"restore-web-0\s+default/web\s+0\s+restore\s+\S+\s+Succeeded")

    def sts(self):
        status, body = self.cm.c.emu.api("GET", "/apis/apps/v1/namespaces/default/statefulsets/web")
        assert status == 200, body
        return body

    def test_3_cluster_restore(self):
        """restore --kubeconfig: scale to 0, restore ordinal by ordinal, scale back."""
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=400 + k)
        want = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        bid = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=500 + k)
        cp = cm.backup(*cm.restore_args("--json"))
        doc = json.loads(cp.stdout)
        self.assertEqual(doc["id"], bid)
        self.assertEqual([v["ordinal"] for v in doc["volumes"]], [0, 1, 2])
        self.assertIn("scaling to 0 (replicas to restore: 3)", cp.stderr)
        created = re.findall(r"ordinal (\d+) volume 'data' on node '[^']+': task '([^']+)' created",
                             cp.stderr)
        self.assertEqual([int(k) for k, _ in created], [0, 1, 2])
        self.assertIn("restored; scaled back to 3", cp.stderr)
        for k, v in cm.vols.items():
            self.assertEqual(tree_hash(v["path"]), want[k], f"ordinal {k}")
        sts = self.sts()
        self.assertEqual(sts["spec"]["replicas"], 3)
        self.assertNotIn("ordinal.dev/restore-replicas",
                         sts["metadata"].get("annotations", {}))
        self.assertEqual(cm.record(), {})  # the key is gone, the ConfigMap stays
        # The coordinator's own account (deploy/rbac-coordinator.yaml) was enough.
        self.assertEqual(cm.refused(), {})
        cm.c.wait_pods_ready("web", 3)

    def test_4_restore_missing_claim(self):
        """A claim deleted while the StatefulSet is at 0 is re-created on its node and filled."""
        cm = self.cm
        bid = cm.list_backups()[-1]["id"]
        want = tree_hash(cm.vols[1]["path"])
        cm.c.kubectl("scale", "statefulset", "web", "--replicas=0")
        wait_for(lambda: not [p for p in cm.c.api_list("/api/v1/namespaces/default/pods")
                              if p["metadata"]["name"].startswith("web-")], 60, "pods to go")
        old_pv = cm.vols[1]["pv"]
        cm.c.kubectl("delete", "pvc", "data-web-1", "--wait=false")
        wait_for(lambda: old_pv not in cm.c.pvs() and not os.path.exists(cm.vols[1]["path"]),
                 60, "the PV and directory of data-web-1 to go")
        cp = cm.backup(*cm.restore_args("--backup", bid, "--ordinals", "1"))
        self.assertIn(f"claim 'data-web-1' re-created on node '{cm.vols[1]['node']}'", cp.stderr)
        claim = cm.c.claims()["data-web-1"]
        pv = cm.c.pvs()[claim["spec"]["volumeName"]]
        self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/node"], cm.vols[1]["node"])
        self.assertEqual(tree_hash(cm.vols[1]["path"]), want)
        self.assertEqual(self.sts()["spec"]["replicas"], 0)  # as it was
        cm.c.kubectl("scale", "statefulset", "web", "--replicas=3")
        cm.c.wait_pods_ready("web", 3)
        cm.vols[1]["pv"] = pv["metadata"]["name"]

    def restore_failed_events(self):
        """The RestoreFailed Events of default/web, read as a person would: the real kubectl."""
        cp = subprocess.run([KUBECTL, "-n", "default", "get", "events", "-o", "json",
                             "--field-selector", "involvedObject.kind=StatefulSet,"
                             "involvedObject.name=web,reason=RestoreFailed"],
                            env=self.cm.c.emu.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout)["items"]

    def test_5_restore_failure_stops_at_zero_then_resumes(self):
        """Issue 12, part 4: an ordinal whose restore fails (its object corrupted in the
        repository) stops the restore with the StatefulSet held at 0, an Event RestoreFailed on
        it and a message with the two ways on; the same command resumes once the cause is
        fixed; giving up by hand works as the message says."""
        cm = self.cm
        self.assertTrue(os.path.exists(KUBECTL), KUBECTL)
        good = cm.list_backups()[-1]["id"]
        want = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=600 + k)
        bad = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        obj = os.path.join(cm.repo, "backups", "default", "web", bad, "ordinal-2", "data.tar.zst")
        saved = os.path.join(temp_dir("ordinal-saved-"), "data.tar.zst")
        shutil.copyfile(obj, saved)
        with open(obj, "r+b") as f:
            f.seek(os.path.getsize(obj) // 2)
            f.write(b"\0garbage\0" * 8)
        after_bad = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        self.assertEqual(self.restore_failed_events(), [])
        cp = cm.backup(*cm.restore_args("--backup", bad), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        err = cp.stderr
        # What failed, where, and what the volumes hold now.
        self.assertIn(f"restore of backup {bad} into default/web stopped at ordinal 2 volume "
                      "'data' (2 of 3 volumes restored before it)", err)
        self.assertIn("the stored object failed its check", err)
        self.assertIn("The StatefulSet stays at 0 replicas, so nothing runs on a half-restored "
                      "set (it had 3; recorded in ConfigMap ordinal-system/ordinal-restores)", err)
        # The two ways on.
        self.assertIn("Either fix the cause and run the same restore again: it resumes and "
                      "scales back to 3.", err)
        self.assertIn("Or scale back by hand to the volumes as they are (restored ones hold the "
                      "backup, the rest their old data): kubectl -n default scale statefulset "
                      "web --replicas=3 && kubectl -n ordinal-system patch configmap "
                      "ordinal-restores --type=merge -p '{\"data\":{\"default.web\":null}}'", err)
        self.assertNotIn("scaled back", err)
        sts = self.sts()
        self.assertEqual(sts["spec"]["replicas"], 0)
        self.assertNotIn("ordinal.dev/restore-replicas", sts["metadata"].get("annotations", {}))
        self.assertEqual(cm.record(), {"default.web": "3"})
        self.assertEqual(tree_hash(cm.vols[2]["path"]), after_bad[2], "ordinal 2 was changed")
        self.assertEqual(tree_hash(cm.vols[0]["path"]), after_bad[0])  # the same data as before
        # The Event on the StatefulSet says the same.
        events = self.restore_failed_events()
        self.assertEqual(len(events), 1, events)
        ev = events[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["involvedObject"]["uid"], sts["metadata"]["uid"])
        self.assertEqual(ev["source"]["component"], "ordinal-backup")
        line = err.strip().splitlines()[-1]
        self.assertIn(ev["message"], line)
        self.assertIn("kubectl -n default scale statefulset web --replicas=3", ev["message"])
        self.assertLessEqual(len(ev["message"].encode()), 1024)
        out = subprocess.run([KUBECTL, "-n", "default", "get", "events"], env=cm.c.emu.env,
                             capture_output=True, text=True, timeout=60).stdout
        self.assertRegex(out, r"Warning\s+RestoreFailed\s+statefulset/web\s+restore of backup")
        # Nothing scaled it up meanwhile.
        self.assertEqual(self.sts()["spec"]["replicas"], 0)
        self.assertEqual([p for p in cm.c.api_list("/api/v1/namespaces/default/pods")
                          if p["metadata"]["name"].startswith("web-")], [])

        # Fix the cause (the object back as it was), run the same command: it resumes and
        # scales back to the recorded 3.
        shutil.copyfile(saved, obj)
        cp = cm.backup(*cm.restore_args("--backup", bad))
        self.assertIn("is at 0 replicas with a restore recorded in ConfigMap "
                      "ordinal-system/ordinal-restores: resuming it", cp.stderr)
        self.assertIn("scaled back to 3", cp.stderr)
        for k, v in cm.vols.items():
            self.assertEqual(tree_hash(v["path"]), after_bad[k], f"ordinal {k}")
        self.assertEqual(self.sts()["spec"]["replicas"], 3)
        self.assertEqual(cm.record(), {})
        cm.c.wait_pods_ready("web", 3)

        # Fail again (the good backup this time, damaged), then give up as the message says:
        # its two commands scale back by hand and drop the record.
        obj = os.path.join(cm.repo, "backups", "default", "web", good, "ordinal-2", "data.tar.zst")
        with open(obj, "r+b") as f:
            f.seek(os.path.getsize(obj) // 2)
            f.write(b"\0garbage\0" * 8)
        cp = cm.backup(*cm.restore_args("--backup", good), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertEqual(len(self.restore_failed_events()), 2)
        give_up = re.search(r"their old data\): (kubectl .*?) && (kubectl .*)$", cp.stderr.strip())
        self.assertIsNotNone(give_up, cp.stderr)
        for cmd in give_up.groups():
            cm.c.kubectl(*shlex.split(cmd)[1:])
        sts = self.sts()
        self.assertEqual(sts["spec"]["replicas"], 3)
        self.assertEqual(cm.record(), {})
        for k in (0, 1):
            self.assertEqual(tree_hash(cm.vols[k]["path"]), want[k], f"ordinal {k}")
        self.assertEqual(tree_hash(cm.vols[2]["path"]), after_bad[2])
        self.assertEqual(cm.refused(), {})
        cm.c.wait_pods_ready("web", 3)

    def test_7_resume_a_restore_of_an_older_version(self):
        """A restore interrupted by a version that kept the count in the StatefulSet's
        annotation: the StatefulSet is at 0 with ordinal.dev/restore-replicas=3 and no record.
        This version resumes from the annotation, scales back to 3, never writes the
        annotation, and says how to remove it (it may not)."""
        cm = self.cm
        bid = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        cm.c.kubectl("annotate", "statefulset", "web", "ordinal.dev/restore-replicas=3")
        cm.c.kubectl("scale", "statefulset", "web", "--replicas=0")
        cp = cm.backup(*cm.restore_args("--backup", bid))
        self.assertIn("is at 0 replicas with a restore recorded by an older ordinal-backup "
                      "(annotation ordinal.dev/restore-replicas=3): resuming it", cp.stderr)
        self.assertIn("scaled back to 3", cp.stderr)
        self.assertIn("still carries the annotation ordinal.dev/restore-replicas left by an "
                      "older ordinal-backup; it is no longer used and this version may not "
                      "remove it: kubectl -n default annotate statefulset web "
                      "ordinal.dev/restore-replicas-", cp.stderr)
        sts = self.sts()
        self.assertEqual(sts["spec"]["replicas"], 3)
        self.assertEqual(cm.record(), {})
        self.assertEqual(cm.refused(), {})
        cm.c.kubectl("annotate", "statefulset", "web", "ordinal.dev/restore-replicas-")
        cm.c.wait_pods_ready("web", 3)

    def test_6_lock_of_a_gone_coordinator_pod(self):
        """A coordinator killed in its pod leaves its lock; the next run (another pod) takes it
        over once the API says that pod is gone, and not while it runs."""
        cm = self.cm
        pod = "ordinal-backup-web-29000000-abcde"
        lock = os.path.join(cm.repo, "locks", "default", "web.lock")

        def plant():
            with open(lock, "w") as f:
                json.dump({"host": pod, "pid": 7, "start_time": 1, "boot_id": "x" * 36,
                           "operation": "run-pod", "created": "2026-01-01T00:00:00Z",
                           "nonce": "0" * 32}, f)
        plant()
        cm.backup(*cm.run_args())
        self.assertFalse(os.path.exists(lock))
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NS},
                "spec": {"containers": [{"name": "run", "image": "ordinal:0.1.0"}]}}
        status, out = cm.c.emu.api("POST", f"/api/v1/namespaces/{NS}/pods", body)
        self.assertEqual(status, 201, out)
        wait_for(lambda: cm.c.emu.api("GET", f"/api/v1/namespaces/{NS}/pods/{pod}")[1]
                 .get("status", {}).get("phase") == "Running", 30, "the pod to run")
        plant()
        cp = cm.backup(*cm.run_args(), check=False)
        self.assertEqual(cp.returncode, 1)
        self.assertIn(f"is locked by a run-pod running on host '{pod}'", cp.stderr)
        os.unlink(lock)

    def test_2_refused_tasks(self):
        cm = self.cm
        bid = "20200101T000000Z"
        # A PV of the other node, in a task labelled for this node.
        k = next(k for k, v in cm.vols.items() if v["node"] == "node-b")
        cm.create_task("wrong-node", "backup", bid, k, cm.vols[k]["pv"], "node-a")
        t = cm.wait_task_final("wrong-node")
        self.assertEqual(t["status"]["phase"], "Failed")
        self.assertIn("is on node 'node-b', not on this agent's node 'node-a'",
                      t["status"]["message"])
        # A PV that claims node-a but whose path lies outside node-a's root.
        outside = temp_dir("ordinal-outside-")
        write_volume(outside, seed=5)
        pv = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": "evil-pv", "annotations": {
                  "ordinal.dev/node": "node-a", "ordinal.dev/namespace": "default",
                  "ordinal.dev/statefulset": "web", "ordinal.dev/ordinal": "7",
                  "ordinal.dev/template": "data"}},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                       "hostPath": {"path": outside}}}
        status, out = cm.c.emu.api("POST", "/api/v1/persistentvolumes", pv)
        self.assertEqual(status, 201, out)
        cm.create_task("outside-root", "restore", bid, 7, "evil-pv", "node-a")
        t = cm.wait_task_final("outside-root")
        self.assertEqual(t["status"]["phase"], "Failed")
        self.assertIn(f"has path '{outside}', outside this agent's --root", t["status"]["message"])
        # Nothing was written to the repository for the refused backup, nothing restored.
        self.assertFalse(os.path.exists(os.path.join(cm.repo, "backups", "default", "web", bid)))
        self.assertEqual(tree_hash(outside), tree_hash(outside))
        # A run over an ordinal without a claim fails before creating any task.
        cp = cm.backup(*cm.run_args("--ordinals", "5"), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("ordinal 5 has no claim 'data-web-5'", cp.stderr)

    def test_8_record_missing(self):
        """Without the ConfigMap ordinal-restores the coordinator's account (which may not
        create it) refuses before changing anything and says to apply deploy/; an admin's
        restore (the demo's) creates it."""
        cm = self.cm
        bid = json.loads(cm.backup(*cm.run_args("--json")).stdout)["id"]
        cm.c.kubectl("-n", NS, "delete", "configmap", "ordinal-restores")
        cp = cm.backup(*cm.restore_args("--backup", bid), check=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("restore of default/web not started (nothing was changed): ConfigMap "
                      "ordinal-system/ordinal-restores, where a restore records the replica "
                      "count, is missing; apply deploy/ again (kubectl apply -k deploy/), which "
                      "creates it", cp.stderr)
        self.assertEqual(self.sts()["spec"]["replicas"], 3)
        self.assertIsNone(cm.record())
        cp = cm.backup("restore", "--kubeconfig", cm.c.emu.kubeconfig, "--statefulset",
                       "default/web", "--repo", cm.repo, "--backup", bid)
        self.assertIn("scaled back to 3", cp.stderr)
        self.assertEqual(cm.record(), {})
        cm.c.wait_pods_ready("web", 3)


class TestClusterKills(unittest.TestCase):
    """Agents and the coordinator killed with SIGKILL mid-task. The agents compress at level 19
    so that ordinal 2's volume takes a few seconds: long enough to be killed while Running."""

    def setUp(self):
        self.cm = ClusterMode(agent_args=("--level", "19", "--threads", "1"))
        for k, v in self.cm.vols.items():
            write_volume(v["path"], seed=300 + k, size=(8 << 20) if k == 2 else 4096)

    def tearDown(self):
        self.cm.close()

    def test_agent_killed_mid_task(self):
        cm = self.cm
        run = Proc([BACKUP, *cm.run_args()], env=cm.c.emu.env, name="run-1", log_dir=cm.c.base)
        t = cm.wait_running()
        node = t["spec"]["node"]
        self.assertEqual(t["spec"]["ordinal"], 2)
        cm.agents[node].kill9()  # waits for the agent to be gone: nobody can move the task now
        self.assertEqual(cm.task(t["metadata"]["name"])["status"]["phase"], "Running")
        cm.start_agent(node)
        # The restarted agent retries the interrupted task once; the run then completes.
        self.assertEqual(run.wait(timeout=240), 0, run.log() + cm.logs())
        self.assertIn("retrying: the agent restarted", cm.agent_log(node))
        backups = cm.list_backups()
        self.assertEqual(len(backups), 1)
        cm.backup("verify", "--repo", cm.repo)
        # A second run succeeds too (as the CronJob runs it: kubeconfig from the environment),
        # and prunes the first.
        cm.backup("run", "--statefulset", "default/web", "--repo", cm.repo, "--keep-last", "1",
                  timeout=240)
        backups2 = cm.list_backups()
        self.assertEqual(len(backups2), 1)
        self.assertNotEqual(backups2[0]["id"], backups[0]["id"])

    def test_coordinator_killed_mid_run(self):
        cm = self.cm
        run = Proc([BACKUP, *cm.run_args()], env=cm.c.emu.env, name="run-1", log_dir=cm.c.base)
        t = cm.wait_running()
        run.kill9()
        # The agent finishes what it started; without backup.json nothing is listed.
        final = cm.wait_task_final(t["metadata"]["name"], timeout=120)
        self.assertEqual(final["status"]["phase"], "Succeeded")
        self.assertEqual(cm.list_backups(), [])
        cp = cm.backup("list", "--repo", cm.repo)
        self.assertNotIn(t["spec"]["backupId"], cp.stdout)
        # Run again: the dead coordinator's lock is taken over and the run completes.
        cp = cm.backup(*cm.run_args("--json", "--keep-last", "1"), timeout=240)
        doc = json.loads(cp.stdout)
        self.assertNotEqual(doc["id"], t["spec"]["backupId"])
        self.assertEqual([b["id"] for b in cm.list_backups()], [doc["id"]])
        cm.backup("verify", "--repo", cm.repo)


    def test_coordinator_killed_mid_restore(self):
        """A restore killed while it holds the StatefulSet at 0: running it again finds the
        recorded count in ConfigMap ordinal-restores and scales back to it (issue 12)."""
        cm = self.cm
        want = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        bid = json.loads(cm.backup(*cm.run_args("--json"), timeout=240).stdout)["id"]
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=700 + k, size=4096)
        # Without agents the restore waits on its first task, held at 0: kill it there.
        for n in cm.c.nodes:
            self.assertEqual(cm.agents[n].terminate(), 0, cm.agent_log(n))
        restore = Proc([BACKUP, *cm.restore_args("--backup", bid)], env=cm.c.emu.env,
                       name="restore-1", log_dir=cm.c.base)
        wait_for(lambda: [t for t in cm.tasks() if t["spec"]["action"] == "restore"]
                 or not restore.running(), 120, "the first restore task")
        self.assertTrue(restore.running(), restore.log())
        self.assertEqual(cm.record(), {"default.web": "3"})
        self.assertEqual(json.loads(cm.c.kubectl("get", "statefulset", "web", "-o", "json")
                                    .stdout)["spec"]["replicas"], 0)
        restore.kill9()
        for n in cm.c.nodes:
            cm.start_agent(n)
        cp = cm.backup(*cm.restore_args("--backup", bid), timeout=240)
        self.assertIn("is at 0 replicas with a restore recorded in ConfigMap "
                      "ordinal-system/ordinal-restores: resuming it", cp.stderr)
        self.assertIn("scaled back to 3", cp.stderr)
        for k, v in cm.vols.items():
            self.assertEqual(tree_hash(v["path"]), want[k], f"ordinal {k}")
        self.assertEqual(json.loads(cm.c.kubectl("get", "statefulset", "web", "-o", "json")
                                    .stdout)["spec"]["replicas"], 3)
        self.assertEqual(cm.record(), {})
        self.assertEqual(cm.refused(), {})
        cm.c.wait_pods_ready("web", 3)


class TestAgentTokenRotation(unittest.TestCase):
    """The agent as the DaemonSet runs it: in-cluster configuration from a service-account
    directory laid out as the kubelet lays out a projected volume (..data -> a timestamped
    directory, token/ca.crt/namespace symlinks through it), with a token of ordinal-agent and
    only deploy/rbac-agent.yaml's rights. The token is rotated mid-run, and the old one revoked
    (its ServiceAccount re-created): the agent keeps working with the new one."""

    def setUp(self):
        self.cm = ClusterMode()

    def tearDown(self):
        self.cm.close()

    def project(self, sa_dir, n):
        """Writes a fresh token of ordinal-agent the way the kubelet's atomic writer does;
        returns the token."""
        cm = self.cm
        token = cm.c.kubectl("-n", NS, "create", "token", "ordinal-agent").stdout.strip()
        d = f"..2026_12_04_00_00_0{n}.{n:09d}"
        os.makedirs(os.path.join(sa_dir, d))
        for name, text in (("token", token), ("namespace", NS)):
            with open(os.path.join(sa_dir, d, name), "w") as f:
                f.write(text)
        shutil.copyfile(cm.c.emu.ca_file, os.path.join(sa_dir, d, "ca.crt"))
        os.symlink(d, os.path.join(sa_dir, "..data_tmp"))
        os.rename(os.path.join(sa_dir, "..data_tmp"), os.path.join(sa_dir, "..data"))
        for name in ("token", "namespace", "ca.crt"):
            if not os.path.islink(os.path.join(sa_dir, name)):
                os.symlink(f"..data/{name}", os.path.join(sa_dir, name))
        return token

    def test_token_rotated_mid_run(self):
        cm = self.cm
        rbac = os.path.join(DEPLOY, "rbac-agent.yaml")
        cm.c.kubectl("apply", "-f", rbac)
        node = "node-a"
        self.assertEqual(cm.agents[node].terminate(), 0, cm.agent_log(node))
        sa_dir = os.path.join(cm.c.base, "serviceaccount")
        os.makedirs(sa_dir)
        old = self.project(sa_dir, 1)
        # Watches are cut every second, so the agent watches again after the rotation too (with
        # the new token), not only its other requests.
        cm.c.emu.set_faults(watch_drop_seconds=1)
        home = temp_dir("ordinal-agent-home-")  # no ~/.kube/config: in-cluster or nothing
        env = {k: v for k, v in cm.c.emu.env.items() if k != "KUBECONFIG"}
        env.update(HOME=home, KUBERNETES_SERVICE_HOST=cm.c.emu.host,
                   KUBERNETES_SERVICE_PORT=str(cm.c.emu.port), ORDINAL_SA_DIR=sa_dir)
        p = Proc([BACKUP, "agent", "--node-name", node, "--root", cm.c.roots[node],
                  "--repo", cm.repo, "--log-level", "debug",
                  "--health-file", cm.health_file(node)],
                 env=env, name=f"agent-{node}-in-cluster", log_dir=cm.c.base)
        cm.agents[node] = p
        cm.agent_logs[node].append(p)
        wait_for(lambda: "serving node" in p.log() or not p.running(), 30, "the agent to start")
        self.assertTrue(p.running(), p.log())
        self.assertIn("VolumeTasks in namespace 'ordinal-system'", p.log())  # from the SA dir

        def backup_all():
            doc = json.loads(cm.backup(*cm.run_args("--json")).stdout)
            self.assertEqual(sorted(v["ordinal"] for v in doc["volumes"]), [0, 1, 2])
            return doc["id"]

        self.assertTrue(any(v["node"] == node for v in cm.vols.values()))
        first = backup_all()
        # Rotation: a new token in the projected directory, and the old one revoked.
        cm.c.kubectl("-n", NS, "delete", "serviceaccount", "ordinal-agent")
        cm.c.kubectl("apply", "-f", rbac)
        status, _ = cm.c.emu.api("GET", TASKS, token=old)
        self.assertEqual(status, 401, "the old token should be refused now")
        self.project(sa_dir, 2)
        watches = cm.c.emu.stats()["requests"]["watch"].get("200", 0)
        second = backup_all()
        wait_for(lambda: cm.c.emu.stats()["requests"]["watch"].get("200", 0) > watches + 2, 30,
                 "watches after the rotation")
        self.assertNotEqual(first, second)
        self.assertTrue(p.running(), p.log())
        for k, v in cm.vols.items():
            if v["node"] == node:
                self.assertIn(f"-{k}-data': backing up ordinal {k}", p.log())
        cm.backup("verify", "--repo", cm.repo, "--backup", second)
        self.assertEqual(cm.refused(), {})

if __name__ == "__main__":
    unittest.main(verbosity=2)
