#!/usr/bin/python3
"""Integration test of the emulated Kubernetes controllers (tests/kube/controllers), driven
through the real kubectl against the emulator, the way a person would drive a cluster.

The test plays the provisioner itself (it creates PVs with a claimRef, as ordinal-provisioner
does), so what is tested is the controllers alone: StatefulSet claims and ordered pods,
WaitForFirstConsumer scheduling with `volume.kubernetes.io/selected-node`, the PV controller's
binding, scaling under both retention policies, cascading deletion, Parallel pod management.
Every wait polls a condition with a deadline (harness.wait_for or kubectl wait).
"""

import json
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Emulator, skip, wait_for  # noqa: E402

PROVISIONER = "ordinal.dev/local"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
HOSTNAMES = {"node-a": "node-a", "node-b": "host-b"}

EMU = None


def setUpModule():
    global EMU
    if shutil.which("kubectl") is None:
        skip("kubectl is not installed")
    EMU = Emulator(nodes=("node-a", "node-b=host-b"), controllers=True)
    EMU.kubectl("apply", "-f", "-", input=storage_class_yaml("local", "WaitForFirstConsumer"))


def tearDownModule():
    if EMU is not None:
        EMU.stop()
        log = EMU.stderr()
        if re.search(r"Traceback| WARNING | ERROR ", log) or os.environ.get("CONTROLLERS_SHOW_LOG"):
            print("emulator log:\n" + log[-20000:], file=sys.stderr)


def storage_class_yaml(name, mode, reclaim="Delete"):
    return f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {name}
provisioner: {PROVISIONER}
volumeBindingMode: {mode}
reclaimPolicy: {reclaim}
"""


def statefulset_yaml(name, replicas, when_scaled="Retain", when_deleted="Retain",
                     policy="OrderedReady", storage_class="local"):
    return f"""
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: {replicas}
  podManagementPolicy: {policy}
  persistentVolumeClaimRetentionPolicy:
    whenScaled: {when_scaled}
    whenDeleted: {when_deleted}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: registry.k8s.io/pause:3.9
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      storageClassName: {storage_class}
      resources:
        requests:
          storage: 1Gi
"""


def kubectl_json(*args):
    return json.loads(EMU.kubectl(*args, "-o", "json").stdout)


def claims(ns):
    return {c["metadata"]["name"]: c for c in kubectl_json("get", "pvc", "-n", ns)["items"]}


def annotations(ns, claim_name):
    """The claim's annotations ({} while it does not exist)."""
    claim = claims(ns).get(claim_name) or {}
    return (claim.get("metadata") or {}).get("annotations") or {}


def pods(ns):
    return {p["metadata"]["name"]: p for p in kubectl_json("get", "pods", "-n", ns)["items"]
            if not p["metadata"].get("deletionTimestamp")}


def create_pv_for(claim, node):
    """What ordinal-provisioner does once it has made the directory: a PV named
    pvc-<claim uid>, with a claimRef carrying the uid and node affinity on the node's
    kubernetes.io/hostname label value."""
    md = claim["metadata"]
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{md['uid']}",
                     "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": claim["spec"]["storageClassName"],
            "hostPath": {"path": f"/var/lib/ordinal/{md['namespace']}/{md['name']}",
                         "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In",
                 "values": [HOSTNAMES[node]]}]}]}},
        },
    }
    status, body = EMU.api("POST", "/api/v1/persistentvolumes", pv)
    assert status in (201, 409), body


def provision(ns):
    """One pass of a provisioner: a PV for every claim announced to us with a selected node.
    Returns the claims as seen."""
    seen = claims(ns)
    for claim in seen.values():
        ann = claim["metadata"].get("annotations") or {}
        if claim["spec"].get("volumeName") or ann.get(ANN_PROVISIONER) != PROVISIONER:
            continue
        if ann.get(ANN_SELECTED_NODE):
            create_pv_for(claim, ann[ANN_SELECTED_NODE])
    return seen


def ready_replicas(ns, name):
    return (kubectl_json("get", "sts", name, "-n", ns).get("status") or {}).get("readyReplicas", 0)


def provision_until_ready(ns, name, replicas, timeout=60):
    """Plays the provisioner until the StatefulSet reports `replicas` ready pods."""
    wait_for(lambda: provision(ns) is not None and ready_replicas(ns, name) == replicas,
             timeout=timeout, what=f"{ns}/{name} {replicas} ready replicas")


class ControllersTest(unittest.TestCase):
    def namespace(self):
        ns = self.id().rsplit(".", 1)[-1].replace("_", "-")[:60].strip("-").lower()
        EMU.kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
        return ns

    def test_wait_for_first_consumer_statefulset(self):
        ns = self.namespace()
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("web", 3))
        claim = wait_for(lambda: ANN_PROVISIONER in annotations(ns, "data-web-0")
                         and claims(ns)["data-web-0"], timeout=20,
                         what="data-web-0 announced to the provisioner")
        ann = claim["metadata"]["annotations"]
        self.assertIn(ann[ANN_SELECTED_NODE], HOSTNAMES)
        self.assertEqual(ann[ANN_BETA_PROVISIONER], PROVISIONER)
        self.assertEqual(claim["metadata"]["labels"], {"app": "web"})
        self.assertEqual(claim["status"]["phase"], "Pending")
        # OrderedReady: web-1 is not created while web-0 is not Ready, and web-0 is not bound
        # to a node before its claim is Bound.
        self.assertEqual(sorted(pods(ns)), ["web-0"])
        self.assertFalse(pods(ns)["web-0"]["spec"].get("nodeName"))
        out = EMU.kubectl("get", "pvc", "data-web-0", "-n", ns).stdout
        self.assertRegex(out, r"data-web-0\s+Pending")

        create_pv_for(claim, ann[ANN_SELECTED_NODE])
        EMU.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Bound", "pvc/data-web-0",
                    "--timeout=20s")
        EMU.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/web-0", "--timeout=20s")
        claim = claims(ns)["data-web-0"]
        self.assertEqual(claim["spec"]["volumeName"], f"pvc-{claim['metadata']['uid']}")
        self.assertEqual(claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"], "yes")
        self.assertEqual(claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"], "yes")
        self.assertEqual(claim["status"]["capacity"], {"storage": "1Gi"})
        pv = kubectl_json("get", "pv", claim["spec"]["volumeName"])
        self.assertEqual(pv["status"]["phase"], "Bound")
        self.assertEqual(pods(ns)["web-0"]["spec"]["nodeName"], ann[ANN_SELECTED_NODE])

        provision_until_ready(ns, "web", 3)
        out = EMU.kubectl("get", "sts", "web", "-n", ns).stdout
        self.assertRegex(out, r"web\s+3/3")
        EMU.kubectl("rollout", "status", "-n", ns, "sts/web", "--timeout=20s")
        out = EMU.kubectl("describe", "sts", "web", "-n", ns).stdout
        self.assertRegex(out, r"Pods Status:\s+3 Running / 0 Waiting")
        out = EMU.kubectl("get", "pvc", "-n", ns).stdout
        self.assertEqual(len(re.findall(r"data-web-\d\s+Bound\s+pvc-", out)), 3, out)
        placed = {p["spec"]["nodeName"] for p in pods(ns).values()}
        self.assertEqual(placed, {"node-a", "node-b"}, "pods spread over the nodes")
        for name, claim in claims(ns).items():
            pod = pods(ns)["web-" + name.rsplit("-", 1)[1]]
            pv = kubectl_json("get", "pv", claim["spec"]["volumeName"])
            host = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
            self.assertEqual(HOSTNAMES[pod["spec"]["nodeName"]], host, f"{name}: pod on the PV's node")
        events = EMU.kubectl("get", "events", "-n", ns).stdout
        self.assertIn("create Pod web-2 in StatefulSet web successful", events)
        self.assertIn("create Claim data-web-2 Pod web-2 in StatefulSet web success", events)
        self.assertIn("Successfully assigned", events)

    def test_selected_node_removed_is_scored_afresh(self):
        """The real VolumeBinding plugin keeps no memory of the node where provisioning failed
        (volumebinding binder checkBindings: "provisioning failed for PVC"; the pod is
        forgotten, backed off and scored afresh): node-a, which carries fewer pods, is selected
        again after the provisioner gives up there. The old emulator avoided it."""
        ns = self.namespace()
        # node-b gets two pods more than node-a carries, whatever earlier tests left there.
        placed = [p["spec"].get("nodeName") for p in kubectl_json("get", "pods", "-A")["items"]
                  if p["status"].get("phase") not in ("Succeeded", "Failed")]
        for i in range(max(0, placed.count("node-a") - placed.count("node-b")) + 2):
            EMU.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"filler-{i}"},
                "spec": {"nodeName": "node-b",
                         "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}))
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("db", 1))
        first = wait_for(lambda: annotations(ns, "data-db-0").get(ANN_SELECTED_NODE), timeout=20,
                         what="selected node")
        self.assertEqual(first, "node-a", "the less loaded node")
        # What a provisioner does when it cannot provision there (rescheduleProvisioning).
        EMU.kubectl("annotate", "-n", ns, "pvc", "data-db-0", f"{ANN_SELECTED_NODE}-")
        second = wait_for(lambda: annotations(ns, "data-db-0").get(ANN_SELECTED_NODE), timeout=30,
                          what="a new selected node")
        self.assertEqual(second, "node-a", "no memory of the failed node")
        events = EMU.kubectl("get", "events", "-n", ns,
                             "--field-selector", "involvedObject.name=db-0").stdout
        self.assertIn('binding volumes: provisioning failed for PVC "data-db-0"', events)
        provision_until_ready(ns, "db", 1)
        self.assertEqual(pods(ns)["db-0"]["spec"]["nodeName"], "node-a")

    def test_prebound_pv_must_satisfy_the_claim(self):
        """findByClaim / FindMatchingVolume: a PV pre-bound to a claim (claimRef by name) is
        bound only if its capacity covers the request and its access modes include the
        claim's; otherwise the claim stays Pending ("no persistent volumes available ...")."""
        ns = self.namespace()

        def pv(name, claim, size, modes):
            return json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-{name}"},
                "spec": {"capacity": {"storage": size}, "accessModes": modes,
                         "storageClassName": "", "hostPath": {"path": f"/srv/{ns}/{name}"},
                         "claimRef": {"namespace": ns, "name": claim}}})

        def claim(name, size, modes):
            return json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                "spec": {"accessModes": modes, "storageClassName": "",
                         "resources": {"requests": {"storage": size}}}})

        for name, size, want, have, want_modes in (
                ("small", "1Gi", "2Gi", ["ReadWriteOnce"], ["ReadWriteOnce"]),
                ("modes", "5Gi", "1Gi", ["ReadWriteOnce"], ["ReadWriteOnce", "ReadOnlyMany"]),
                ("fits", "2Gi", "1Gi", ["ReadWriteOnce", "ReadOnlyMany"], ["ReadWriteOnce"])):
            EMU.kubectl("apply", "-f", "-", input=pv(name, name, size, have))
            EMU.kubectl("apply", "-n", ns, "-f", "-", input=claim(name, want, want_modes))
        EMU.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Bound", "pvc/fits",
                    "--timeout=20s")
        for name in ("small", "modes"):
            wait_for(lambda: "no persistent volumes available for this claim" in EMU.kubectl(
                "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}").stdout,
                timeout=20, what=f"FailedBinding for {name}")
            self.assertEqual(claims(ns)[name]["status"]["phase"], "Pending", name)
            self.assertEqual(kubectl_json("get", "pv", f"{ns}-{name}")["status"]["phase"],
                             "Available", name)

    def test_hostpath_directory_mount_waits_for_the_path(self):
        """The kubelet checks a hostPath PV's type (hostpath checkTypeInternal): with
        type: Directory and no directory the pod stays Pending with FailedMount, and starts once
        the directory exists (the crash window ordinal-provisioner's PVs guard)."""
        ns = self.namespace()
        base = tempfile.mkdtemp(prefix="emu-hostpath-")
        self.addCleanup(shutil.rmtree, base, True)
        path = os.path.join(base, "data")
        EMU.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-hp"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "", "hostPath": {"path": path, "type": "Directory"},
                     "claimRef": {"namespace": ns, "name": "hp"}}}))
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "hp"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "hp"}}]}}))
        wait_for(lambda: "FailedMount" in EMU.kubectl(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=hp").stdout,
            timeout=20, what="FailedMount")
        out = EMU.kubectl("describe", "pod", "hp", "-n", ns).stdout
        self.assertIn(f'MountVolume.SetUp failed for volume "{ns}-hp" : hostPath type check '
                      f'failed: {path} is not a directory', out)
        self.assertEqual(pods(ns)["hp"]["status"]["phase"], "Pending")
        os.mkdir(path)
        EMU.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/hp", "--timeout=20s")

    def _scale_3_5_2(self, when_scaled):
        ns = self.namespace()
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("web", 3, when_scaled=when_scaled))
        provision_until_ready(ns, "web", 3)
        EMU.kubectl("scale", "-n", ns, "sts/web", "--replicas=5")
        provision_until_ready(ns, "web", 5)
        self.assertEqual(sorted(pods(ns)), [f"web-{i}" for i in range(5)])
        uids = {n: c["metadata"]["uid"] for n, c in claims(ns).items()}
        EMU.kubectl("scale", "-n", ns, "sts/web", "--replicas=2")
        wait_for(lambda: sorted(pods(ns)) == ["web-0", "web-1"], timeout=30, what="scaled down to 2")
        EMU.kubectl("wait", "-n", ns, "--for=jsonpath={.status.replicas}=2", "sts/web", "--timeout=20s")
        self.assertEqual(ready_replicas(ns, "web"), 2)
        kept = claims(ns)
        self.assertEqual(kept["data-web-0"]["metadata"]["uid"], uids["data-web-0"])
        self.assertEqual(kept["data-web-1"]["metadata"]["uid"], uids["data-web-1"])
        return ns, uids

    def test_scale_3_5_2_when_scaled_retain(self):
        ns, uids = self._scale_3_5_2("Retain")
        self.assertEqual({n: c["metadata"]["uid"] for n, c in claims(ns).items()}, uids,
                         "every claim kept")
        # Scaling up again reuses the retained claims (and their data).
        EMU.kubectl("scale", "-n", ns, "sts/web", "--replicas=4")
        provision_until_ready(ns, "web", 4)
        self.assertEqual({n: c["metadata"]["uid"] for n, c in claims(ns).items()}, uids)

    def test_scale_3_5_2_when_scaled_delete(self):
        ns, uids = self._scale_3_5_2("Delete")
        wait_for(lambda: sorted(claims(ns)) == ["data-web-0", "data-web-1"], timeout=30,
                 what="claims of ordinals 2-4 deleted")
        released = wait_for(lambda: [pv for pv in kubectl_json("get", "pv")["items"]
                                     if pv["spec"]["claimRef"]["namespace"] == ns
                                     and pv["status"]["phase"] == "Released"],
                            timeout=20, what="their PVs Released")
        self.assertEqual(sorted(pv["spec"]["claimRef"]["name"] for pv in released),
                         ["data-web-2", "data-web-3", "data-web-4"])

    def test_delete_statefulset_when_deleted_delete(self):
        ns = self.namespace()
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("gone", 2, when_deleted="Delete"))
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("kept", 2))
        provision_until_ready(ns, "gone", 2)
        provision_until_ready(ns, "kept", 2)
        owner = claims(ns)["data-gone-0"]["metadata"]["ownerReferences"][0]
        self.assertEqual((owner["kind"], owner["name"], owner["controller"]), ("StatefulSet", "gone", True))
        self.assertNotIn("ownerReferences", claims(ns)["data-kept-0"]["metadata"])
        EMU.kubectl("delete", "-n", ns, "sts", "gone", "kept")
        wait_for(lambda: not pods(ns), timeout=30, what="pods deleted")
        wait_for(lambda: sorted(claims(ns)) == ["data-kept-0", "data-kept-1"], timeout=30,
                 what="only the Retain set's claims left")

    def test_parallel_pod_management(self):
        ns = self.namespace()
        EMU.kubectl("apply", "-n", ns, "-f", "-", input=statefulset_yaml("par", 3, policy="Parallel"))
        wait_for(lambda: sorted(pods(ns)) == ["par-0", "par-1", "par-2"], timeout=20,
                 what="all pods created at once")
        self.assertEqual(ready_replicas(ns, "par"), 0, "none could be ready: no volume yet")
        provision_until_ready(ns, "par", 3)


if __name__ == "__main__":
    unittest.main()
