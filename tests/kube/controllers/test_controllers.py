"""Unit tests of the emulated controllers against an in-memory API (fake_api.FakeApi).

Run from tests/kube:  /usr/bin/python3 -m unittest controllers.test_controllers
Every wait polls a condition with a deadline; nothing sleeps to synchronise.
"""

import os
import queue
import sys
import tempfile
import threading
import time
import unittest

from . import PROTECTION_FINALIZERS, start
from . import objects as o
from .fake_api import FakeApi
from .runtime import WorkQueue

PROVISIONER = "ordinal.dev/local"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/kube


def wait_for(what, condition, timeout=10.0):
    """Polls condition() until it returns something truthy; fails the test with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def make_api():
    """The emulator's own in-process client over a fresh store (the real validation, admission
    and finalizer machinery) when tests/kube/kubeemu is importable, else fake_api.FakeApi.
    CONTROLLERS_FAKE_API=1 forces the fake."""
    if os.environ.get("CONTROLLERS_FAKE_API") != "1":
        try:
            from kubeemu import api as apimod, resources, store as storemod
        except ImportError:
            apimod = None
        if apimod is not None:
            store = storemod.Store(resources.Registry())
            store.protection_finalizers = PROTECTION_FINALIZERS
            store.seed(store.registry.by_key("namespaces"), {"metadata": {"name": "default"}})
            return apimod.Api(store)
    return FakeApi()


def when(obj, predicate):
    """obj when it exists and predicate(obj) holds, else None (for wait_for conditions)."""
    return obj if obj is not None and predicate(obj) else None


class FakeProvisioner:
    """Does what ordinal-provisioner does, minus the disk: for a claim announced to it (and for
    WaitForFirstConsumer, with a selected node) it creates PV pvc-<uid> with a claimRef and node
    affinity on the node's hostname label. `fail_on` nodes make it give up: it removes
    selected-node, as the real one does on failure; with `fail_times` only that many times
    (then the node has room again)."""

    def __init__(self, api, fail_on=(), fail_times=None):
        self.api = api
        self.fail_on = set(fail_on)
        self.fail_times = fail_times
        self.failed = []
        self._queue = queue.SimpleQueue()
        self._stop = threading.Event()
        api.subscribe(self._on_event)
        for claim in api.list("persistentvolumeclaims"):   # list, then watch
            self._on_event("ADDED", "persistentvolumeclaims", claim)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _on_event(self, event_type, resource, obj):
        if resource == "persistentvolumeclaims" and event_type != "DELETED":
            self._queue.put((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def _run(self):
        while not self._stop.is_set():
            try:
                namespace, name = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self._handle(namespace, name)
            except self.api.ApiError:
                pass

    def _handle(self, namespace, name):
        claim = self.api.get("persistentvolumeclaims", namespace, name)
        if claim is None or claim["spec"].get("volumeName"):
            return
        ann = o.annotations_of(claim)
        if ann.get(o.ANN_STORAGE_PROVISIONER) != PROVISIONER:
            return
        sc = self.api.get("storageclasses.storage.k8s.io", None, claim["spec"]["storageClassName"])
        node_name = ann.get(o.ANN_SELECTED_NODE)
        if o.is_wait_for_first_consumer(sc) and not node_name:
            return
        node_name = node_name or "node-a"
        if node_name in self.fail_on and (self.fail_times is None or
                                          len(self.failed) < self.fail_times):
            self.failed.append((name, node_name))
            del claim["metadata"]["annotations"][o.ANN_SELECTED_NODE]
            self.api.update("persistentvolumeclaims", namespace, claim)
            return
        node = self.api.get("nodes", None, node_name)
        hostname = o.labels_of(node).get(o.LABEL_HOSTNAME, node_name)
        pv = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{claim['metadata']['uid']}",
                         "annotations": {o.ANN_PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                "accessModes": claim["spec"]["accessModes"],
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "storageClassName": sc["metadata"]["name"],
                "hostPath": {"path": f"/var/lib/ordinal/{namespace}/{name}"},
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                             "namespace": namespace, "name": name,
                             "uid": claim["metadata"]["uid"]},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": o.LABEL_HOSTNAME, "operator": "In", "values": [hostname]}]}]}},
            },
        }
        try:
            self.api.create("persistentvolumes", None, pv)
        except self.api.AlreadyExists:
            pass


class ControllerTest(unittest.TestCase):
    """Starts the controllers on a fresh FakeApi with two nodes (node-b's hostname label is
    host-b) and a WaitForFirstConsumer class `local` of the provisioner."""

    def setUp(self):
        self.api = make_api()
        for name, hostname in (("node-a", "node-a"), ("node-b", "host-b")):
            self.api.create("nodes", None, {
                "metadata": {"name": name, "labels": {o.LABEL_HOSTNAME: hostname}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        self.storage_class("local", "WaitForFirstConsumer")
        self.stop = threading.Event()
        self.threads = start(self.api, self.stop)
        self.provisioner = None

    def tearDown(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        if self.provisioner:
            self.provisioner.stop()

    def start_provisioner(self, fail_on=(), fail_times=None):
        self.provisioner = FakeProvisioner(self.api, fail_on, fail_times)

    def storage_class(self, name, mode, reclaim="Delete", provisioner=PROVISIONER, default=False):
        sc = {"metadata": {"name": name}, "provisioner": provisioner,
              "volumeBindingMode": mode, "reclaimPolicy": reclaim}
        if default:
            sc["metadata"]["annotations"] = {o.ANN_DEFAULT_CLASS: "true"}
        return self.api.create("storageclasses.storage.k8s.io", None, sc)

    def statefulset(self, name="web", replicas=3, policy=None, parallel=False, sc="local",
                    namespace="default"):
        spec = {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        }
        if sc is not None:
            spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] = sc
        if policy:
            spec["persistentVolumeClaimRetentionPolicy"] = policy
        if parallel:
            spec["podManagementPolicy"] = "Parallel"
        return self.api.create("statefulsets.apps", namespace,
                               {"metadata": {"name": name}, "spec": spec})

    def scale(self, name, replicas, namespace="default"):
        self.api.patch("statefulsets.apps", namespace, name, {"spec": {"replicas": replicas}})

    def get(self, resource, name, namespace="default"):
        cluster_scoped = resource in ("persistentvolumes", "nodes")
        return self.api.get(resource, None if cluster_scoped else namespace, name)

    def pod_names(self, namespace="default"):
        return sorted(o.name_of(p) for p in self.api.list("pods", namespace) if not o.is_deleting(p))

    def claim_names(self, namespace="default"):
        return sorted(o.name_of(c) for c in self.api.list("persistentvolumeclaims", namespace))

    def ready_replicas(self, name="web"):
        return (self.get("statefulsets.apps", name).get("status") or {}).get("readyReplicas", 0)


class WorkQueueTest(unittest.TestCase):
    def test_dedup_and_requeue_while_processing(self):
        q = WorkQueue()
        q.add("a")
        q.add("a")
        q.add("b")
        self.assertEqual(q.get(0.1), "a")
        q.add("a")                      # dirty while processing: not handed out twice
        self.assertEqual(q.get(0.1), "b")
        self.assertIsNone(q.get(0.05))
        q.done("a")
        self.assertEqual(q.get(0.1), "a")

    def test_resync_keys_wait_behind_event_keys(self):
        # A resync used to queue every key in the one FIFO, so a claim created just after it
        # waited for up to 2,000 syncs before the PV controller looked at it.
        q = WorkQueue()
        for key in ("r1", "r2", "r3"):
            q.add_resync(key)
        q.add("e1")
        q.add("r2")                     # an event for a key waiting for the resync: now
        q.add_resync("e1")              # already queued: stays in the first lane
        self.assertEqual([q.get(0.1) for _ in range(4)], ["e1", "r2", "r1", "r3"])
        self.assertIsNone(q.get(0.01))
        self.assertEqual(len(q), 0)

    def test_resync_of_key_being_processed(self):
        q = WorkQueue()
        q.add("a")
        self.assertEqual(q.get(0.1), "a")
        q.add_resync("a")               # dirty while processing: once more after done()
        q.add_resync("a")
        self.assertIsNone(q.get(0.01))
        q.add("b")
        q.done("a")
        self.assertEqual(q.get(0.1), "b")
        self.assertEqual(q.get(0.1), "a")
        self.assertIsNone(q.get(0.01))
        q.done("a")
        self.assertIsNone(q.get(0.01))

    def test_add_after(self):
        q = WorkQueue()
        q.add_after("x", 0.05)
        self.assertIsNone(q.get(0.01))
        self.assertEqual(q.get(1.0), "x")


class StatefulSetTest(ControllerTest):
    def test_ordered_creation_claims_labels_and_binding(self):
        self.statefulset(replicas=3)
        claim = wait_for("claim data-web-0", lambda: self.get("persistentvolumeclaims", "data-web-0"))
        self.assertEqual(o.labels_of(claim), {"app": "web"})
        self.assertEqual(o.owner_refs(claim), [])  # Retain/Retain: no owner
        pod = wait_for("pod web-0", lambda: self.get("pods", "web-0"))
        self.assertEqual(o.labels_of(pod)[o.LABEL_POD_NAME], "web-0")
        self.assertEqual(o.labels_of(pod)[o.LABEL_POD_INDEX], "0")
        self.assertEqual(o.controller_ref(pod)["kind"], "StatefulSet")
        self.assertEqual(o.pod_claim_names(pod), ["data-web-0"])
        self.assertEqual(pod["spec"]["hostname"], "web-0")
        self.assertEqual(pod["spec"]["subdomain"], "web")
        # WaitForFirstConsumer: the scheduler picks a node, then the PV controller announces
        # the claim to the provisioner.
        claim = wait_for("selected-node and provisioner annotations", lambda: when(
            self.get("persistentvolumeclaims", "data-web-0"),
            lambda c: o.ANN_STORAGE_PROVISIONER in o.annotations_of(c)))
        self.assertIn(o.annotations_of(claim)[o.ANN_SELECTED_NODE], ("node-a", "node-b"))
        self.assertEqual(o.annotations_of(claim)[o.ANN_BETA_STORAGE_PROVISIONER], PROVISIONER)
        # Ordered: web-1 waits for web-0 to be Running and Ready.
        self.assertEqual(self.pod_names(), ["web-0"])
        self.assertIsNone(self.get("pods", "web-0")["spec"].get("nodeName"))

        self.start_provisioner()
        wait_for("3/3 ready", lambda: self.ready_replicas() == 3)
        nodes = set()
        for i in range(3):
            claim = self.get("persistentvolumeclaims", f"data-web-{i}")
            pv = self.get("persistentvolumes", claim["spec"]["volumeName"])
            self.assertEqual(claim["status"]["phase"], "Bound")
            self.assertEqual(claim["status"]["capacity"], {"storage": "1Gi"})
            self.assertEqual(claim["status"]["accessModes"], ["ReadWriteOnce"])
            self.assertEqual(o.annotations_of(claim)[o.ANN_BIND_COMPLETED], "yes")
            self.assertEqual(o.annotations_of(claim)[o.ANN_BOUND_BY_CONTROLLER], "yes")
            self.assertNotIn(o.ANN_BOUND_BY_CONTROLLER, o.annotations_of(pv))
            self.assertEqual(pv["status"]["phase"], "Bound")
            pod = self.get("pods", f"web-{i}")
            self.assertEqual(pod["spec"]["nodeName"], o.annotations_of(claim)[o.ANN_SELECTED_NODE])
            self.assertTrue(o.pod_is_ready(pod))
            nodes.add(pod["spec"]["nodeName"])
        self.assertEqual(nodes, {"node-a", "node-b"}, "pods spread over both nodes")
        status = self.get("statefulsets.apps", "web")["status"]
        self.assertEqual((status["replicas"], status["currentReplicas"], status["availableReplicas"]),
                         (3, 3, 3))
        self.assertEqual(status["observedGeneration"], 1)
        reasons = {e["reason"] for e in self.api.list("events", "default")}
        self.assertTrue({"SuccessfulCreate", "Scheduled", "ExternalProvisioning"} <= reasons, reasons)

    def test_existing_claim_is_reused(self):
        existing = self.api.create("persistentvolumeclaims", "default", {
            "metadata": {"name": "data-web-0", "labels": {"mine": "yes"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                     "resources": {"requests": {"storage": "1Gi"}}}})
        self.start_provisioner()
        self.statefulset(replicas=1)
        wait_for("1/1 ready", lambda: self.ready_replicas() == 1)
        claim = self.get("persistentvolumeclaims", "data-web-0")
        self.assertEqual(o.uid_of(claim), o.uid_of(existing))
        self.assertEqual(o.labels_of(claim), {"mine": "yes"})

    def test_deleted_pod_comes_back_on_its_volume_node(self):
        self.start_provisioner()
        self.statefulset(replicas=2)
        wait_for("2/2 ready", lambda: self.ready_replicas() == 2)
        before = self.get("pods", "web-1")
        self.api.delete("pods", "default", "web-1")
        after = wait_for("web-1 re-created and ready", lambda: when(
            self.get("pods", "web-1"), lambda p: o.uid_of(p) != o.uid_of(before) and o.pod_is_ready(p)))
        self.assertEqual(after["spec"]["nodeName"], before["spec"]["nodeName"])
        self.assertEqual(len(self.api.list("persistentvolumes")), 2, "no new volume")

    def test_parallel_creates_all_pods_at_once(self):
        self.statefulset(replicas=4, parallel=True)
        wait_for("4 pods before any is ready",
                 lambda: self.pod_names() == ["web-0", "web-1", "web-2", "web-3"])
        self.assertEqual(self.ready_replicas(), 0)
        self.start_provisioner()
        wait_for("4/4 ready", lambda: self.ready_replicas() == 4)

    def _scale_down(self, policy):
        self.start_provisioner()
        self.statefulset(replicas=3, policy=policy)
        wait_for("3/3 ready", lambda: self.ready_replicas() == 3)
        deletions = []
        self.api.subscribe(lambda t, r, obj: deletions.append(o.name_of(obj))
                           if r == "pods" and t == "DELETED" else None)
        self.scale("web", 1)
        wait_for("scaled to 1", lambda: self.pod_names() == ["web-0"])
        wait_for("status 1/1", lambda: (self.get("statefulsets.apps", "web")["status"]["replicas"] == 1
                                        and self.ready_replicas() == 1))
        self.assertEqual(deletions[:2], ["web-2", "web-1"], "highest ordinal first")
        return deletions

    def test_scale_down_when_scaled_retain_keeps_claims(self):
        self._scale_down({"whenScaled": "Retain", "whenDeleted": "Retain"})
        self.assertEqual(self.claim_names(), ["data-web-0", "data-web-1", "data-web-2"])
        # Scaling up again reuses the retained claims.
        uid = o.uid_of(self.get("persistentvolumeclaims", "data-web-2"))
        self.scale("web", 3)
        wait_for("3/3 again", lambda: self.ready_replicas() == 3)
        self.assertEqual(o.uid_of(self.get("persistentvolumeclaims", "data-web-2")), uid)

    def test_scale_down_when_scaled_delete_removes_claims(self):
        self._scale_down({"whenScaled": "Delete", "whenDeleted": "Retain"})
        wait_for("claims of ordinals 1, 2 collected", lambda: self.claim_names() == ["data-web-0"])
        self.assertEqual(o.owner_refs(self.get("persistentvolumeclaims", "data-web-0")), [])
        # Their PVs are Released (the provisioner, not the PV controller, deletes them).
        wait_for("two Released PVs", lambda: sorted(
            (pv.get("status") or {}).get("phase") for pv in self.api.list("persistentvolumes"))
            == ["Bound", "Released", "Released"])
        self.scale("web", 3)
        wait_for("3/3 with fresh claims", lambda: self.ready_replicas() == 3)

    def test_when_deleted_delete_owner_ref_and_cascade(self):
        self.start_provisioner()
        sts = self.statefulset(replicas=2, policy={"whenScaled": "Retain", "whenDeleted": "Delete"})
        wait_for("2/2 ready", lambda: self.ready_replicas() == 2)
        claim = self.get("persistentvolumeclaims", "data-web-1")
        ref = o.owner_refs(claim)[0]
        self.assertEqual((ref["kind"], ref["uid"], ref["controller"]), ("StatefulSet", o.uid_of(sts), True))
        self.api.delete("statefulsets.apps", "default", "web")
        wait_for("pods and claims collected", lambda: not self.pod_names() and not self.claim_names())

    def test_when_deleted_retain_keeps_claims_on_delete(self):
        self.start_provisioner()
        self.statefulset(replicas=2)
        wait_for("2/2 ready", lambda: self.ready_replicas() == 2)
        self.api.delete("statefulsets.apps", "default", "web")
        wait_for("pods collected", lambda: not self.pod_names())
        self.assertEqual(self.claim_names(), ["data-web-0", "data-web-1"])

    def test_default_storage_class_for_templates_without_class(self):
        self.storage_class("fast", "Immediate", default=True)
        self.start_provisioner()
        self.statefulset(replicas=1, sc=None)
        wait_for("1/1 ready", lambda: self.ready_replicas() == 1)
        self.assertEqual(self.get("persistentvolumeclaims", "data-web-0")["spec"]["storageClassName"], "fast")


class SchedulerTest(ControllerTest):
    def _pod(self, name, claims, namespace="default"):
        return self.api.create("pods", namespace, {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}],
                     "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}})

    def _claim(self, name, sc="local", namespace="default"):
        return self.api.create("persistentvolumeclaims", namespace, {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                     "resources": {"requests": {"storage": "1Gi"}}}})

    def test_bound_pv_affinity_matches_hostname_label_not_node_name(self):
        self.storage_class("manual", "WaitForFirstConsumer", provisioner=o.NO_PROVISIONER)
        path = tempfile.mkdtemp(prefix="kubeemu-local-")  # the kubelet mounts only what exists
        self.addCleanup(os.rmdir, path)
        self.api.create("persistentvolumes", None, {
            "metadata": {"name": "pv-b"},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "local": {"path": path},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": o.LABEL_HOSTNAME, "operator": "In", "values": ["host-b"]}]}]}}}})
        self._claim("c1", sc="manual")
        self._pod("p1", ["c1"])
        pod = wait_for("p1 running", lambda: when(self.get("pods", "p1"), o.pod_is_ready))
        self.assertEqual(pod["spec"]["nodeName"], "node-b")
        pv = self.get("persistentvolumes", "pv-b")
        self.assertEqual(o.annotations_of(pv)[o.ANN_BOUND_BY_CONTROLLER], "yes")  # the binder pre-bound it
        self.assertEqual(self.get("persistentvolumeclaims", "c1")["spec"]["volumeName"], "pv-b")

    def _filler_pods(self, node, count):
        for i in range(count):
            self.api.create("pods", "default", {
                "metadata": {"name": f"filler-{node}-{i}"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}})

    def test_selected_node_removed_retries_on_another_node(self):
        """Equal scores: the tie-break moves the next attempt to the other node."""
        self.start_provisioner(fail_on=("node-a",))
        self._claim("c1")
        self._pod("p1", ["c1"])
        pod = wait_for("p1 running", lambda: when(self.get("pods", "p1"), o.pod_is_ready))
        self.assertEqual(pod["spec"]["nodeName"], "node-b")
        claim = self.get("persistentvolumeclaims", "c1")
        self.assertEqual(o.annotations_of(claim)[o.ANN_SELECTED_NODE], "node-b")

    def test_selected_node_removed_scores_afresh_without_memory(self):
        """The real VolumeBinding plugin remembers no failed node: node-a, the less loaded one,
        is picked again after each failure there, and the claim is provisioned there once it
        has room (the third attempt), never on node-b."""
        self._filler_pods("node-b", 2)
        self.start_provisioner(fail_on=("node-a",), fail_times=2)
        self._claim("c1")
        self._pod("p1", ["c1"])
        pod = wait_for("p1 running", lambda: when(self.get("pods", "p1"), o.pod_is_ready),
                       timeout=20)
        self.assertEqual(pod["spec"]["nodeName"], "node-a")
        self.assertEqual(self.provisioner.failed, [("c1", "node-a"), ("c1", "node-a")])

    def test_hostpath_type_directory_waits_for_the_directory(self):
        """The kubelet's hostPath type check (checkTypeInternal): a pod whose type: Directory
        path is missing stays Pending with FailedMount, and starts once the path exists."""
        base = tempfile.mkdtemp(prefix="kubeemu-hostpath-")
        path = os.path.join(base, "vol")
        self.addCleanup(lambda: (os.path.isdir(path) and os.rmdir(path), os.rmdir(base)))
        self.api.create("pods", "default", {
            "metadata": {"name": "hp"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox:1"}],
                     "volumes": [{"name": "data", "hostPath": {"path": path, "type": "Directory"}}]}})
        event = wait_for("FailedMount", lambda: next(
            (e for e in self.api.list("events", "default")
             if e.get("reason") == "FailedMount" and e["involvedObject"]["name"] == "hp"), None))
        self.assertEqual(event["message"], f'MountVolume.SetUp failed for volume "data" : '
                                           f'hostPath type check failed: {path} is not a directory')
        self.assertNotEqual((self.get("pods", "hp").get("status") or {}).get("phase"), "Running")
        os.mkdir(path)
        wait_for("hp running", lambda: when(self.get("pods", "hp"), o.pod_is_ready))

    def test_unbound_immediate_claim_blocks_until_bound(self):
        self.storage_class("imm", "Immediate")
        claim = self._claim("c1", sc="imm")
        self._pod("p1", ["c1"])
        # Immediate: announced to the provisioner at once, without selected-node.
        claim = wait_for("provisioner annotation", lambda: when(
            self.get("persistentvolumeclaims", "c1"),
            lambda c: o.ANN_STORAGE_PROVISIONER in o.annotations_of(c)))
        self.assertNotIn(o.ANN_SELECTED_NODE, o.annotations_of(claim))
        pod = wait_for("FailedScheduling condition", lambda: when(
            self.get("pods", "p1"), lambda p: any(c.get("reason") == "Unschedulable"
                                                  for c in p["status"].get("conditions") or [])))
        self.assertIsNone(pod["spec"].get("nodeName"))
        self.start_provisioner()  # provisions on node-a
        pod = wait_for("p1 running", lambda: when(self.get("pods", "p1"), o.pod_is_ready))
        self.assertEqual(pod["spec"]["nodeName"], "node-a")

    def test_missing_claim_keeps_pod_pending(self):
        self._pod("p1", ["nope"])
        wait_for("Unschedulable", lambda: any(
            "not found" in (c.get("message") or "")
            for c in (self.get("pods", "p1").get("status") or {}).get("conditions") or []))
        self.assertIsNone(self.get("pods", "p1")["spec"].get("nodeName"))


class PersistentVolumeTest(ControllerTest):
    def _claim(self, name, sc, size="1Gi", volume_name=None):
        spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                "resources": {"requests": {"storage": size}}}
        if volume_name:
            spec["volumeName"] = volume_name
        return self.api.create("persistentvolumeclaims", "default", {"metadata": {"name": name}, "spec": spec})

    def _pv(self, name, sc, size="1Gi", claim_ref=None, reclaim="Retain", annotations=None):
        spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": sc, "hostPath": {"path": f"/tmp/{name}"},
                "persistentVolumeReclaimPolicy": reclaim}
        if claim_ref:
            spec["claimRef"] = claim_ref
        return self.api.create("persistentvolumes", None, {
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec})

    def phase(self, resource, name):
        obj = self.get(resource, name)
        return (obj.get("status") or {}).get("phase") if obj else None

    def test_static_pv_smallest_fit_for_immediate_class(self):
        self.storage_class("manual", "Immediate", provisioner=o.NO_PROVISIONER)
        self._pv("big", "manual", "10Gi")
        self._pv("small", "manual", "2Gi")
        self._pv("tiny", "manual", "1Mi")
        # Only Available PVs are candidates (findMatchingVolume), as in the real controller.
        wait_for("PVs Available", lambda: all(self.phase("persistentvolumes", n) == "Available"
                                              for n in ("big", "small", "tiny")))
        self._claim("c1", "manual", "1Gi")
        wait_for("c1 Bound", lambda: self.phase("persistentvolumeclaims", "c1") == "Bound")
        claim = self.get("persistentvolumeclaims", "c1")
        self.assertEqual(claim["spec"]["volumeName"], "small")
        self.assertEqual(claim["status"]["capacity"], {"storage": "2Gi"})
        pv = self.get("persistentvolumes", "small")
        self.assertEqual(pv["spec"]["claimRef"]["uid"], o.uid_of(claim))
        self.assertEqual(o.annotations_of(pv)[o.ANN_BOUND_BY_CONTROLLER], "yes")
        self.assertEqual(self.phase("persistentvolumes", "big"), "Available")

    def test_prebound_pv_without_uid_gets_bound(self):
        self.storage_class("manual", "Immediate", provisioner=o.NO_PROVISIONER)
        self._pv("pv1", "manual", claim_ref={"namespace": "default", "name": "c1"})
        wait_for("pv1 Available", lambda: self.phase("persistentvolumes", "pv1") == "Available")
        claim = self._claim("c1", "manual")
        wait_for("c1 Bound", lambda: self.phase("persistentvolumeclaims", "c1") == "Bound")
        pv = self.get("persistentvolumes", "pv1")
        self.assertEqual(pv["spec"]["claimRef"]["uid"], o.uid_of(claim))
        self.assertNotIn(o.ANN_BOUND_BY_CONTROLLER, o.annotations_of(pv))  # pre-bound by the user

    def test_claimref_with_other_uid_is_not_bound(self):
        self.storage_class("manual", "Immediate", provisioner=o.NO_PROVISIONER)
        self._claim("c1", "manual")
        self._pv("pv1", "manual", claim_ref={"namespace": "default", "name": "c1", "uid": "other"})
        wait_for("pv1 Released", lambda: self.phase("persistentvolumes", "pv1") == "Released")
        self.assertEqual(self.phase("persistentvolumeclaims", "c1"), "Pending")

    def test_claim_deleted_releases_pv_retain_and_external_delete(self):
        self.storage_class("imm", "Immediate", reclaim="Delete")
        self.start_provisioner()
        self._claim("c1", "imm")
        wait_for("c1 Bound", lambda: self.phase("persistentvolumeclaims", "c1") == "Bound")
        pv_name = self.get("persistentvolumeclaims", "c1")["spec"]["volumeName"]
        self.api.delete("persistentvolumeclaims", "default", "c1")
        wait_for("Released", lambda: self.phase("persistentvolumes", pv_name) == "Released")
        # External provisioner: the PV controller leaves the PV to it, with its claimRef.
        pv = self.get("persistentvolumes", pv_name)
        self.assertEqual(pv["spec"]["claimRef"]["name"], "c1")
        self.assertEqual(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete")
        self.assertFalse(o.is_deleting(pv))

    def test_retained_pv_rebinds_to_new_claim_when_provisioner_updates_claimref(self):
        self.storage_class("keep", "Immediate", reclaim="Retain")
        self._pv("pv1", "keep", claim_ref={"namespace": "default", "name": "c1", "uid": "gone"},
                 annotations={o.ANN_PROVISIONED_BY: PROVISIONER})
        wait_for("Released", lambda: self.phase("persistentvolumes", "pv1") == "Released")
        claim = self._claim("c1", "keep")
        pv = self.get("persistentvolumes", "pv1")
        pv["spec"]["claimRef"]["uid"] = o.uid_of(claim)   # what the provisioner does
        self.api.update("persistentvolumes", None, pv)
        wait_for("c1 Bound to pv1", lambda: self.phase("persistentvolumeclaims", "c1") == "Bound")
        self.assertEqual(self.phase("persistentvolumes", "pv1"), "Bound")

    def test_bound_claim_loses_its_pv(self):
        self.storage_class("manual", "Immediate", provisioner=o.NO_PROVISIONER)
        self._pv("pv1", "manual")
        self._claim("c1", "manual")
        wait_for("Bound", lambda: self.phase("persistentvolumeclaims", "c1") == "Bound")
        self.api.delete("persistentvolumes", None, "pv1")
        if PROTECTION_FINALIZERS and not isinstance(self.api, FakeApi):
            # pv-protection keeps a Bound PV while its claim exists; force it out.
            pv = wait_for("pv1 terminating", lambda: self.get("persistentvolumes", "pv1"))
            self.assertTrue(o.is_deleting(pv))
            self.assertEqual(self.phase("persistentvolumeclaims", "c1"), "Bound")
            self.api.patch("persistentvolumes", None, "pv1", {"metadata": {"finalizers": None}})
        wait_for("Lost", lambda: self.phase("persistentvolumeclaims", "c1") == "Lost")

    def test_no_class_no_pv_stays_pending_with_event(self):
        self.api.create("persistentvolumeclaims", "default", {
            "metadata": {"name": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}}})
        wait_for("FailedBinding", lambda: any(e["reason"] == "FailedBinding"
                                              for e in self.api.list("events", "default")))
        self.assertEqual(self.phase("persistentvolumeclaims", "c1"), "Pending")

    def test_burst_of_500_claims(self):
        self.start_provisioner()
        started = time.monotonic()
        for i in range(500):
            self.api.create("persistentvolumeclaims", "default", {
                "metadata": {"name": f"c{i}", "annotations": {o.ANN_SELECTED_NODE: "node-a"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                         "resources": {"requests": {"storage": "1Gi"}}}})
        wait_for("500 Bound", lambda: sum(
            1 for c in self.api.list("persistentvolumeclaims", "default")
            if (c.get("status") or {}).get("phase") == "Bound") == 500, timeout=30)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 15, f"500 claims took {elapsed:.1f}s")
        print(f"\n500 claims bound in {elapsed:.2f}s", end=" ")


class ProtectionTest(ControllerTest):
    def setUp(self):
        super().setUp()
        if isinstance(self.api, FakeApi):
            self.skipTest("the fake API has no admission adding protection finalizers")

    def test_claim_in_use_stays_terminating_until_pod_goes(self):
        self.start_provisioner()
        self.statefulset(replicas=1)
        wait_for("1/1 ready", lambda: self.ready_replicas() == 1)
        claim = self.get("persistentvolumeclaims", "data-web-0")
        self.assertIn("kubernetes.io/pvc-protection", claim["metadata"]["finalizers"])
        self.api.delete("persistentvolumeclaims", "default", "data-web-0")
        claim = self.get("persistentvolumeclaims", "data-web-0")
        self.assertTrue(o.is_deleting(claim))
        # Still mounted: the protection controller keeps it. Deleting the StatefulSet removes
        # the pod, which releases the claim.
        pv_name = claim["spec"]["volumeName"]
        self.assertIsNotNone(self.get("persistentvolumeclaims", "data-web-0"))
        self.api.delete("statefulsets.apps", "default", "web")
        wait_for("claim gone", lambda: self.get("persistentvolumeclaims", "data-web-0") is None)
        wait_for("PV Released", lambda: (self.get("persistentvolumes", pv_name).get("status") or {})
                 .get("phase") == "Released")

    def test_pv_protection_released_when_not_bound(self):
        self.storage_class("manual", "Immediate", provisioner=o.NO_PROVISIONER)
        self.api.create("persistentvolumes", None, {
            "metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": "/tmp/pv1"}}})
        wait_for("Available", lambda: (self.get("persistentvolumes", "pv1").get("status") or {})
                 .get("phase") == "Available")
        self.api.delete("persistentvolumes", None, "pv1")
        wait_for("pv1 gone", lambda: self.get("persistentvolumes", "pv1") is None)


class GarbageCollectorTest(ControllerTest):
    def _cm(self, name, owners=()):
        return self.api.create("configmaps", "default", {
            "metadata": {"name": name, "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": o.name_of(w), "uid": o.uid_of(w)}
                for w in owners]}})

    def test_background_cascade_and_partial_owners(self):
        a, b = self._cm("a"), self._cm("b")
        self._cm("only-a", [a])
        self._cm("both", [a, b])
        self.api.delete("configmaps", "default", "a")
        wait_for("only-a collected", lambda: self.get("configmaps", "only-a") is None)
        both = wait_for("dangling ref removed", lambda: when(
            self.get("configmaps", "both"), lambda c: len(o.owner_refs(c)) == 1))
        self.assertEqual(o.owner_refs(both)[0]["uid"], o.uid_of(b))

    def test_finalizers_of_dependents_are_honoured(self):
        a = self._cm("a")
        dep = self.api.create("configmaps", "default", {"metadata": {
            "name": "dep", "finalizers": ["example.com/keep"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": o.uid_of(a)}]}})
        self.api.delete("configmaps", "default", "a")
        dep = wait_for("dep terminating", lambda: when(self.get("configmaps", "dep"), o.is_deleting))
        self.assertIn("example.com/keep", dep["metadata"]["finalizers"])

    def test_orphan_and_foreground(self):
        a, b = self._cm("a"), self._cm("b")
        self._cm("child-a", [a])
        self._cm("child-b", [b])
        self.api.delete("configmaps", "default", "a", propagation="Orphan")
        wait_for("a gone", lambda: self.get("configmaps", "a") is None)
        self.assertEqual(o.owner_refs(self.get("configmaps", "child-a")), [])
        self.api.delete("configmaps", "default", "b", propagation="Foreground")
        wait_for("b and child-b gone", lambda: self.get("configmaps", "b") is None
                 and self.get("configmaps", "child-b") is None)


if __name__ == "__main__":
    unittest.main()
