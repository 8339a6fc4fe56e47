"""The kubelets of all nodes, reduced to pod status: nothing runs, so a pod counts as started
once it is bound to a node and every claim it mounts is Bound (the kubelet's volume manager
would otherwise keep it in ContainerCreating). It then gets phase Running, the conditions a
started pod has (PodReadyToStartContainers, Initialized, ContainersReady, Ready,
PodScheduled), container statuses and IPs, which is what the StatefulSet controller's
isRunningAndReady and `kubectl wait --for=condition=Ready` look at.

A pod the API server keeps with a deletionTimestamp (graceful deletion of a pod on a node) is
removed by the kubelet once its containers are "stopped": here at once, by deleting it again.
"""

import hashlib

from . import objects as o
from .runtime import Controller

POD = "pods"
PVC = "persistentvolumeclaims"
COMPONENT = "kubelet"


def _pod_ip(pod):
    digest = hashlib.sha256(o.uid_of(pod).encode()).digest()
    return f"10.244.{digest[0]}.{max(digest[1], 2)}"


class Kubelet(Controller):
    name = "kubelet"
    workers = 2
    resync_period = 3.0

    def __init__(self, ctx, recorder):
        super().__init__(ctx)
        self.recorder = recorder
        ctx.on(POD, self._on_pod)
        ctx.on(PVC, self._on_claim)

    def _on_pod(self, event_type, old, new):
        if new is not None and (new.get("spec") or {}).get("nodeName"):
            self.enqueue(f"{o.namespace_of(new)}/{o.name_of(new)}")

    def _on_claim(self, event_type, old, new):
        claim = new or old
        for pod in self.store.by_index(POD, "claims", f"{o.namespace_of(claim)}/{o.name_of(claim)}"):
            self._on_pod("MODIFIED", None, pod)

    def resync_keys(self):
        return [k for k in self.store.keys(POD)]

    def sync(self, key):
        namespace, _, name = key.partition("/")
        pod = self.store.get(POD, namespace, name)
        if pod is None:
            return None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return None
        if o.is_deleting(pod):
            if not (pod.get("metadata") or {}).get("finalizers"):
                try:
                    self.api.delete(POD, namespace, name)
                except self.api.NotFound:
                    pass
            return None
        if o.pod_is_ready(pod) or o.pod_is_terminated(pod):
            return None
        for claim_name in o.pod_claim_names(pod):
            claim = self.store.get(PVC, namespace, claim_name)
            if claim is None or not o.claim_is_bound(claim):
                return None  # claim events bring us back
        self._start(pod, node_name)
        return None

    def _start(self, pod, node_name):
        now = self.ctx.now()
        node = self.store.get("nodes", None, node_name) or {}
        host_ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), "10.0.0.1")
        pod_ip = _pod_ip(pod)
        conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                "ContainersReady", "PodScheduled")]
        containers = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            containers.append({
                "name": c.get("name", ""),
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"emulated://{o.uid_of(pod)}/{c.get('name', '')}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        status = {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "containerStatuses": containers,
        }
        new = self.api.patch(POD, o.namespace_of(pod), o.name_of(pod), {"status": status},
                             subresource="status")
        self.ctx.write_through(POD, new)
        self.log.info("pod %s/%s running on %s", o.namespace_of(pod), o.name_of(pod), node_name)
        for c in containers:
            self.recorder.event(POD, new, "Normal", "Started", f"Started container {c['name']}",
                                COMPONENT)
