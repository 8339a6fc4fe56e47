"""The kubelets of all nodes, reduced to pod status: nothing runs, so a pod counts as started
once it is bound to a node and every claim it mounts is Bound (the kubelet's volume manager
would otherwise keep it in ContainerCreating). It then gets phase Running, the conditions a
started pod has (PodReadyToStartContainers, Initialized, ContainersReady, Ready,
PodScheduled), container statuses and IPs, which is what the StatefulSet controller's
isRunningAndReady and `kubectl wait --for=condition=Ready` look at.

Before starting a pod the volume manager mounts its volumes, and a mount can fail: a hostPath
volume (inline or a PV's) is checked against its `type` as pkg/volume/hostpath's
checkTypeInternal does (Directory: must be a directory, File: a file, Socket, CharDevice,
BlockDevice; "" is not checked; DirectoryOrCreate/FileOrCreate pass, the stand-in creates
nothing), and a `local` PV's path must exist (pkg/volume/local: "path ... does not exist").
All nodes share this machine's filesystem, so the paths are checked here. A failed mount leaves
the pod Pending with a `FailedMount` Warning ("MountVolume.SetUp failed for volume ...") and is
retried with the volume manager's backoff (0.5 s doubling, here at most 4 s), so the pod starts
once the path appears.

A pod the API server keeps with a deletionTimestamp (graceful deletion of a pod on a node) is
removed by the kubelet once its containers are "stopped": here at once, by deleting it again.
"""

import hashlib
import os
import stat

from . import objects as o
from .runtime import Controller

POD = "pods"
PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
COMPONENT = "kubelet"

# checkTypeInternal: what each hostPath type requires of the path, and its error.
_HOSTPATH_CHECKS = {
    "Directory": (stat.S_ISDIR, "is not a directory"),
    "File": (stat.S_ISREG, "is not a file"),
    "Socket": (stat.S_ISSOCK, "is not a socket file"),
    "CharDevice": (stat.S_ISCHR, "is not a character device"),
    "BlockDevice": (stat.S_ISBLK, "is not a block device"),
}


def mount_error(volume_source, kind):
    """Why mounting this hostPath or local source fails on this machine, or None."""
    path = (volume_source or {}).get("path") or ""
    if kind == "local":
        return None if os.path.exists(path) else f'path "{path}" does not exist'
    htype = (volume_source or {}).get("type") or ""
    check = _HOSTPATH_CHECKS.get(htype)
    if check is None:
        return None  # "", DirectoryOrCreate, FileOrCreate
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    return None if check[0](mode) else f"hostPath type check failed: {path} {check[1]}"


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
        self._mount_failures = {}  # pod uid -> failed attempts (for the retry backoff)
        ctx.on(POD, self._on_pod)
        ctx.on(PVC, self._on_claim)

    def _on_pod(self, event_type, old, new):
        if new is None:
            self._mount_failures.pop(o.uid_of(old), None)
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
        failure = self._mount(pod)
        if failure:
            uid = o.uid_of(pod)
            attempts = self._mount_failures.get(uid, 0) + 1
            self._mount_failures[uid] = attempts
            self.recorder.event(POD, pod, "Warning", "FailedMount", failure, COMPONENT)
            return min(4.0, 0.5 * 2 ** (attempts - 1))
        self._mount_failures.pop(o.uid_of(pod), None)
        self._start(pod, node_name)
        return None

    def _mount(self, pod):
        """The first volume that cannot be mounted, as the FailedMount message, or None."""
        namespace = o.namespace_of(pod)
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if volume.get("hostPath") is not None:
                name, source, kind = volume.get("name", ""), volume["hostPath"], "hostPath"
            elif (volume.get("persistentVolumeClaim") or {}).get("claimName"):
                claim = self.store.get(PVC, namespace, volume["persistentVolumeClaim"]["claimName"])
                pv = self.store.get(PV, None, ((claim or {}).get("spec") or {}).get("volumeName") or "")
                spec = (pv or {}).get("spec") or {}
                name = o.name_of(pv) if pv else ""
                if spec.get("hostPath") is not None:
                    source, kind = spec["hostPath"], "hostPath"
                elif spec.get("local") is not None:
                    source, kind = spec["local"], "local"
                else:
                    continue
            else:
                continue
            why = mount_error(source, kind)
            if why:
                return f'MountVolume.SetUp failed for volume "{name}" : {why}'
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
