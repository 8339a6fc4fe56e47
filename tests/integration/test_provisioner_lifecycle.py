"""ordinal-provisioner lifecycle: WaitForFirstConsumer and Immediate classes, hostPath and local
PVs, StatefulSet and plain claims, PV fields, Events, restart idempotence, clean shutdown.

Two provisioner processes stand for nodes node-a and node-b (whose kubernetes.io/hostname label
is host-b, to check that nodeAffinity uses the label, not the name).
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import PROVISIONER, Cluster, statefulset, storage_class  # noqa: E402
from harness import wait_for  # noqa: E402

HOSTNAMES = {"node-a": "node-a", "node-b": "host-b"}


class Lifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def check_pv(self, pv, claim, node, pv_type, reclaim, cls_name, entry):
        c = self.c
        meta, spec = pv["metadata"], pv["spec"]
        ann = meta["annotations"]
        self.assertEqual(meta["name"], f"pvc-{claim['metadata']['uid']}")
        self.assertEqual(ann["pv.kubernetes.io/provisioned-by"], PROVISIONER)
        self.assertEqual(ann["ordinal.dev/node"], node)
        self.assertEqual(ann["ordinal.dev/root"], c.roots[node])
        ref = spec["claimRef"]
        self.assertEqual((ref["kind"], ref["namespace"], ref["name"], ref["uid"]),
                         ("PersistentVolumeClaim", claim["metadata"]["namespace"],
                          claim["metadata"]["name"],
                          claim["metadata"]["uid"]))
        self.assertEqual(spec["capacity"]["storage"],
                         claim["spec"]["resources"]["requests"]["storage"])
        self.assertEqual(spec["accessModes"], claim["spec"]["accessModes"])
        self.assertEqual(spec["volumeMode"], "Filesystem")
        self.assertEqual(spec["persistentVolumeReclaimPolicy"], reclaim)
        self.assertEqual(spec["storageClassName"], cls_name)
        path = os.path.join(c.roots[node], entry)
        if pv_type == "hostPath":
            self.assertEqual(spec["hostPath"], {"path": path, "type": "Directory"})
        else:
            self.assertEqual(spec["local"]["path"], path)
        terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
        self.assertEqual(terms, [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [HOSTNAMES[node]]}]}])
        self.assertTrue(os.path.isdir(path), path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o777)

    def test_wffc_statefulset_hostpath(self):
        c = self.c
        c.apply(storage_class("wffc"))
        c.apply(statefulset("web", "wffc", replicas=3, templates=("data", "logs")))
        names = [f"{t}-web-{i}" for t in ("data", "logs") for i in range(3)]
        claims = c.wait_bound(names)
        c.wait_pods_ready("web", 3)
        pvs = c.pvs()
        pods = {p["metadata"]["name"]: p for p in c.api_list("/api/v1/namespaces/default/pods")}
        for i in range(3):
            node = pods[f"web-{i}"]["spec"]["nodeName"]
            for t in ("data", "logs"):
                claim = claims[f"{t}-web-{i}"]
                pv = pvs[claim["spec"]["volumeName"]]
                self.check_pv(pv, claim, node, "hostPath", "Delete", "wffc",
                              f"default/web/{i}/{t}")
                ann = pv["metadata"]["annotations"]
                self.assertEqual((ann["ordinal.dev/namespace"], ann["ordinal.dev/statefulset"],
                                  ann["ordinal.dev/ordinal"], ann["ordinal.dev/template"]),
                                 ("default", "web", str(i), t))
                # only the selected node made a directory
                other = [n for n in c.nodes if n != node][0]
                self.assertFalse(os.path.exists(os.path.join(c.roots[other], "default/web", str(i))))
        self.assertEqual({p["spec"]["nodeName"] for p in pods.values()
                          if p["metadata"]["name"].startswith("web-")}, {"node-a", "node-b"})
        # Events a person sees with kubectl describe
        out = c.kubectl("describe", "pvc", "data-web-1").stdout
        self.assertIn("ProvisioningSucceeded", out)
        self.assertIn("Successfully provisioned volume", out)
        self.assertEqual(len(c.events(name="data-web-1", reason="ProvisioningSucceeded")), 1)
        c.check_consistent()

    def test_immediate_plain_local(self):
        c = self.c
        c.apply(storage_class("imm-local", binding="Immediate", reclaim="Retain",
                              params={"pvType": "local"}))
        c.kubectl("create", "namespace", "plain")
        for i in range(4):
            c.create_claim(f"cache-{i}", "imm-local", size="500Mi", ns="plain")
        c.create_claim("scratch", "imm-local", size="2Gi", ns="plain")
        names = [f"cache-{i}" for i in range(4)] + ["scratch"]
        claims = c.wait_bound(names, ns="plain")
        pvs = c.pvs()
        winners = set()
        for n in names:
            pv = pvs[claims[n]["spec"]["volumeName"]]
            node = pv["metadata"]["annotations"]["ordinal.dev/node"]
            winners.add(node)
            self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/claim"], n)
            self.check_pv(pv, claims[n], node, "local", "Retain", "imm-local",
                          f"plain/_claims/{n}")
            # the race losers removed what they made
            for other in c.nodes:
                if other != node:
                    wait_for(lambda: not os.path.exists(
                        os.path.join(c.roots[other], "plain/_claims", n)), 10,
                        f"no directory for {n} on {other}")
        for n in c.nodes:
            wait_for(lambda: not c.pending(n), 10, f"no pending directory on {n}")
        c.check_consistent(ns="plain")

    def test_restart_is_idempotent_and_sigterm_exits_0(self):
        c = self.c
        c.apply(storage_class("restart"))
        c.apply(statefulset("re", "restart", replicas=2))
        c.wait_bound(["data-re-0", "data-re-1"])
        before = c.pvs()
        codes = c.stop_all()
        self.assertEqual(codes, {n: 0 for n in c.nodes}, c.all_logs())
        for n in c.nodes:
            self.assertIn("shutting down", c.procs[n].log())
            c.start(n)
        # every restarted provisioner looked at all volumes and claims again
        for n in c.nodes:
            wait_for(lambda: "serving node" in c.procs[n].log(), 10, "restart")
        c.create_claim("after-restart", "restart", annotations={
            "volume.kubernetes.io/selected-node": "node-b"})
        c.wait_bound(["after-restart"])
        after = c.pvs()
        self.assertEqual(set(after) - set(before),
                         {f"pvc-{c.claims()['after-restart']['metadata']['uid']}"})
        for name in before:
            self.assertEqual(before[name]["metadata"]["uid"], after[name]["metadata"]["uid"])
        self.assertTrue(os.path.isdir(os.path.join(c.roots["node-b"], "default/_claims/after-restart")))

    def test_health_file_for_probes(self):
        """--health-file exists (fresh) once the caches are synced and is removed at exit."""
        c = self.c
        health = os.path.join(c.base, "prov.health")
        c.procs["node-a"].terminate()
        p = c.start("node-a", "--health-file", health)
        stamp = int(wait_for(lambda: os.path.exists(health) and open(health).read(), 10,
                             "the health file"))
        self.assertLessEqual(abs(stamp - int(time.time())), 60)
        self.assertEqual(p.terminate(), 0, p.log())
        self.assertFalse(os.path.exists(health), "health file left behind after SIGTERM")
        c.start("node-a")

    def test_help_and_bad_flags(self):
        from harness import bin_path
        import subprocess
        out = subprocess.run([bin_path("ordinal-provisioner"), "--help"], capture_output=True,
                             text=True)
        self.assertEqual(out.returncode, 0)
        for flag in ("--kubeconfig", "--node-name", "--provisioner-name", "--root",
                     "--allowed-root", "--device-dir", "--log-format", "--log-level"):
            self.assertIn(flag, out.stdout)
        bad = subprocess.run([bin_path("ordinal-provisioner"), "--node-name", "x",
                              "--log-level", "loud"], capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("loud", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
