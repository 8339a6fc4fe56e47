"""The scheduler, reduced to what storage depends on: the NodeAffinity filter and the
VolumeBinding plugin (pkg/scheduler/framework/plugins/volumebinding and its binder).

For each pod without spec.nodeName (schedulerName default-scheduler):
- every claim must exist and not be terminating; a claim of an Immediate class must already be
  Bound ("pod has unbound immediate PersistentVolumeClaims"), the pod waits until it is;
- candidate nodes: Ready and schedulable, matching the pod's nodeSelector and required node
  affinity, and the required nodeAffinity of every PV already bound to its claims (so the
  `kubernetes.io/hostname` label value counts, not the node name);
- a WaitForFirstConsumer claim that already carries `volume.kubernetes.io/selected-node` pins
  the pod to that node (the binder's "claimsToProvision" path);
- an unbound WaitForFirstConsumer claim needs, on the chosen node, either an Available PV of its
  class that fits and whose affinity allows the node (the binder pre-binds it: claimRef plus
  `pv.kubernetes.io/bound-by-controller`, and the PV controller finishes), or a class whose
  provisioner is not `kubernetes.io/no-provisioner` (the binder sets selected-node);
- among candidates the least-loaded node wins (bound pods plus pods waiting for volumes there),
  ties broken round-robin, so a StatefulSet's pods spread over the nodes;
- the pod is bound (spec.nodeName, condition PodScheduled) only once all its claims are Bound,
  like BindPodVolumes, which waits for the PV controller and the provisioner;
- when a provisioner removes selected-node from an unbound claim (provisioning failed there),
  the binding cycle fails as in volumebinding's BindPodVolumes/checkBindings ("selectedNode
  annotation reset for PVC"): the assumed pod is forgotten (it no longer counts on that node)
  and the pod goes to the backoff queue (scheduler defaults podInitialBackoffSeconds 1,
  podMaxBackoffSeconds 10, doubling per failed attempt). It is then scored afresh with no memory
  of the failed node - the real VolumeBinding plugin keeps none; only CSIStorageCapacity,
  not emulated, lets a real scheduler avoid a full node - so it can pick the same node again.
A pod that cannot be scheduled gets condition PodScheduled=False/Unschedulable and a
FailedScheduling event, and is retried on every relevant change and every second.
"""

import itertools
import time

from . import objects as o
from .persistentvolume import is_volume_bound_to_claim
from .runtime import Controller, mutable

COMPONENT = "default-scheduler"
POD = "pods"
PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
SC = "storageclasses.storage.k8s.io"
NODE = "nodes"


class Unschedulable(Exception):
    pass


class Scheduler(Controller):
    name = "scheduler"
    resync_period = 2.0

    def __init__(self, ctx, recorder):
        super().__init__(ctx)
        self.recorder = recorder
        self._rr = itertools.count()
        self._backoff = {}    # pod uid -> (failed attempts, monotonic time of next attempt)
        self._waiting = {}    # pod uid -> (node, owner uid): assumed there, waiting for volumes
        self._last_failure = {}  # pod uid -> last Unschedulable message written
        ctx.on(POD, self._on_pod)
        ctx.on(PVC, self._on_claim)
        ctx.on(PV, self._on_volume)
        ctx.on(NODE, self._on_cluster_change)
        ctx.on(SC, self._on_cluster_change)

    # -- events -------------------------------------------------------------------------

    def _on_pod(self, event_type, old, new):
        if new is None:
            self._waiting.pop(o.uid_of(old), None)
            self._last_failure.pop(o.uid_of(old), None)
            self._backoff.pop(o.uid_of(old), None)
            return
        if not (new.get("spec") or {}).get("nodeName"):
            self.enqueue(f"{o.namespace_of(new)}/{o.name_of(new)}")
        else:
            self._waiting.pop(o.uid_of(new), None)

    def _enqueue_users(self, namespace, claim_name):
        for pod in self.store.by_index(POD, "claims", f"{namespace}/{claim_name}"):
            if not (pod.get("spec") or {}).get("nodeName"):
                self.enqueue(f"{o.namespace_of(pod)}/{o.name_of(pod)}")

    def _on_claim(self, event_type, old, new):
        if old is not None and new is not None:
            before = o.annotations_of(old).get(o.ANN_SELECTED_NODE)
            after = o.annotations_of(new).get(o.ANN_SELECTED_NODE)
            if before and before != after and not (new.get("spec") or {}).get("volumeName"):
                # The provisioner gave up on that node (rescheduleProvisioning): the binding
                # cycle of its pods fails; they are forgotten and backed off, nothing more.
                self._binding_failed(o.namespace_of(new), o.name_of(new))
                self.log.info("claim %s/%s: selected node %s was reset, rescheduling",
                              o.namespace_of(new), o.name_of(new), before)
        claim = new or old
        self._enqueue_users(o.namespace_of(claim), o.name_of(claim))

    def _binding_failed(self, namespace, claim_name):
        """ForgetPod + the backoff queue for every unbound pod of the claim: the next attempt
        comes after 1 s, 2 s, 4 s, ... at most 10 s (per pod, as the scheduling queue's
        calculateBackoffDuration)."""
        now = time.monotonic()
        for pod in self.store.by_index(POD, "claims", f"{namespace}/{claim_name}"):
            if (pod.get("spec") or {}).get("nodeName"):
                continue
            uid = o.uid_of(pod)
            self._waiting.pop(uid, None)
            self._last_failure.pop(uid, None)
            self.recorder.event(POD, pod, "Warning", "FailedScheduling",
                                f'running PreBind plugin "VolumeBinding": binding volumes: '
                                f'provisioning failed for PVC "{claim_name}"', COMPONENT)
            attempts = self._backoff.get(uid, (0, 0.0))[0] + 1
            self._backoff[uid] = (attempts, now + min(10.0, 2.0 ** (attempts - 1)))

    def _on_volume(self, event_type, old, new):
        ref = ((new or old).get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self._enqueue_users(ref.get("namespace", ""), ref["name"])

    def _on_cluster_change(self, event_type, old, new):
        for key in self.resync_keys():
            self.enqueue(key)

    def resync_keys(self):
        return [f"{o.namespace_of(p)}/{o.name_of(p)}" for p in self.store.by_index(POD, "node", "")]

    # -- scheduling -----------------------------------------------------------------------

    def sync(self, key):
        namespace, _, name = key.partition("/")
        pod = self.store.get(POD, namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or o.is_deleting(pod) \
                or o.pod_is_terminated(pod):
            return None
        if (pod.get("spec") or {}).get("schedulerName", "default-scheduler") != "default-scheduler":
            return None
        _, not_before = self._backoff.get(o.uid_of(pod), (0, 0.0))
        wait = not_before - time.monotonic()
        if wait > 0:
            return wait  # still in the backoff queue
        try:
            return self.schedule(pod)
        except Unschedulable as e:
            self._unschedulable(pod, str(e))
            return 1.0

    def _load(self, node_name):
        waiting = sum(1 for n, _ in list(self._waiting.values()) if n == node_name)
        return self.store.count_index(POD, "node", node_name) + waiting

    def _siblings(self, node_name, owner_uid):
        """Pods of the same controller on the node (bound or waiting for volumes there): the
        default PodTopologySpread constraint on kubernetes.io/hostname scores by this."""
        if not owner_uid:
            return 0
        bound = sum(1 for p in self.store.by_index(POD, "owner", owner_uid)
                    if (p.get("spec") or {}).get("nodeName") == node_name and not o.pod_is_terminated(p))
        waiting = sum(1 for n, owner in list(self._waiting.values())
                      if n == node_name and owner == owner_uid)
        return bound + waiting

    def _static_match(self, claim, node):
        """findMatchingVolume with a node: the smallest Available unclaimed PV of the claim's
        class that fits the claim and whose node affinity allows `node`."""
        want = o.claim_request(claim)
        modes = (claim.get("spec") or {}).get("accessModes") or []
        mode = (claim.get("spec") or {}).get("volumeMode") or "Filesystem"
        selector = (claim.get("spec") or {}).get("selector")
        best = None
        for pv in self.store.by_index(PV, "unbound-class", o.claim_class(claim)):
            spec = pv.get("spec") or {}
            if o.is_deleting(pv) or (pv.get("status") or {}).get("phase") != "Available":
                continue
            if o.pv_capacity(pv) < want or not all(m in (spec.get("accessModes") or []) for m in modes):
                continue
            if (spec.get("volumeMode") or "Filesystem") != mode or not o.pv_fits_node(pv, node):
                continue
            if selector is not None and not o.selector_matches(selector, o.labels_of(pv)):
                continue
            if best is None or o.pv_capacity(pv) < o.pv_capacity(best):
                best = pv
        return best

    def schedule(self, pod):
        namespace = o.namespace_of(pod)
        affinity_pvs = []   # PVs bound or pre-bound to the pod's claims: their affinity counts
        immediate, to_place, pinned = [], [], set()
        all_bound = True
        for claim_name in o.pod_claim_names(pod):
            claim = self.store.get(PVC, namespace, claim_name)
            if claim is None:
                raise Unschedulable(f'persistentvolumeclaim "{claim_name}" not found')
            if o.is_deleting(claim):
                raise Unschedulable(f'persistentvolumeclaim "{claim_name}" is being deleted')
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                pv = self.store.get(PV, None, volume_name)
                if pv is None:
                    raise Unschedulable("pvc(s) bound to non-existent pv(s)")
                affinity_pvs.append(pv)
                if not o.claim_is_bound(claim):
                    all_bound = False
                continue
            all_bound = False
            sc = self.store.get(SC, None, o.claim_class(claim)) if o.claim_class(claim) else None
            if not o.is_wait_for_first_consumer(sc):
                immediate.append(claim)
                continue
            # FindMatchingVolume with a node: a PV pre-bound to the claim counts only if it is
            # large enough and of the claim's volumeMode (else the claim is provisioned).
            prebound = [pv for pv in self.store.by_index(PV, "claimref", f"{namespace}/{claim_name}")
                        if is_volume_bound_to_claim(pv, claim) and not o.is_deleting(pv)
                        and o.pv_capacity(pv) >= o.claim_request(claim)
                        and ((pv.get("spec") or {}).get("volumeMode") or "Filesystem")
                        == ((claim.get("spec") or {}).get("volumeMode") or "Filesystem")]
            if prebound:
                affinity_pvs.append(prebound[0])   # the PV controller is finishing the bind
            elif o.ANN_SELECTED_NODE in o.annotations_of(claim):
                pinned.add(o.annotations_of(claim)[o.ANN_SELECTED_NODE])
            else:
                to_place.append((claim, sc))
        if immediate:
            raise Unschedulable("pod has unbound immediate PersistentVolumeClaims")

        nodes = [n for n in self.store.list(NODE) if o.node_is_ready(n)]
        if not nodes:
            raise Unschedulable("no nodes available to schedule pods")
        candidates = [n for n in nodes if o.pod_fits_node(pod, n)]
        if not candidates:
            raise Unschedulable(f"0/{len(nodes)} nodes are available: "
                                f"{len(nodes)} node(s) didn't match Pod's node affinity/selector.")
        fits = [n for n in candidates if all(o.pv_fits_node(pv, n) for pv in affinity_pvs)]
        if not fits:
            raise Unschedulable(f"0/{len(nodes)} nodes are available: {len(candidates)} "
                                f"node(s) had volume node affinity conflict.")
        candidates = fits
        if len(pinned) > 1:
            raise Unschedulable("pod's claims were provisioned for different nodes: "
                                + ", ".join(sorted(pinned)))
        if pinned:
            pinned_node = next(iter(pinned))
            candidates = [n for n in candidates if o.name_of(n) == pinned_node]
            if not candidates:
                raise Unschedulable(f"0/{len(nodes)} nodes are available: node {pinned_node} "
                                    f"selected for the pod's claims is not available.")

        if to_place:
            def placeable(node):
                return all(self._static_match(c, node) is not None or
                           (sc is not None and sc.get("provisioner") not in (None, "", o.NO_PROVISIONER))
                           for c, sc in to_place)
            placeable_nodes = [n for n in candidates if placeable(n)]
            if not placeable_nodes:
                raise Unschedulable(f"0/{len(nodes)} nodes are available: {len(candidates)} "
                                    f"node(s) didn't find available persistent volumes to bind.")
            node = self._choose(pod, placeable_nodes, [c for c, _ in to_place])
            self._assume_volumes(pod, node, to_place)
            return None
        if not all_bound:
            # BindPodVolumes: wait for the provisioner and the PV controller; claim and PV
            # events bring the pod back here.
            if len(candidates) == 1:
                self._waiting[o.uid_of(pod)] = (o.name_of(candidates[0]),
                                                (o.controller_ref(pod) or {}).get("uid", ""))
            return None
        node = self._choose(pod, candidates, [])
        self._bind(pod, node)
        return None

    def _choose(self, pod, candidates, claims):
        """The node with the fewest pods of the same controller (spreading a StatefulSet over
        the nodes), then the least-loaded one, ties broken round-robin (the real selectHost
        picks at random among the best scores). No memory of where provisioning failed."""
        preferred = sorted(candidates, key=o.name_of)
        start = next(self._rr) % len(preferred)
        rotated = preferred[start:] + preferred[:start]
        owner = (o.controller_ref(pod) or {}).get("uid", "")
        return min(rotated, key=lambda n: (self._siblings(o.name_of(n), owner), self._load(o.name_of(n))))

    def _assume_volumes(self, pod, node, to_place):
        """AssumePodVolumes + the API half of BindPodVolumes: pre-bind static PVs, set
        selected-node on claims to provision."""
        node_name = o.name_of(node)
        self._waiting[o.uid_of(pod)] = (node_name, (o.controller_ref(pod) or {}).get("uid", ""))
        for claim, _ in to_place:
            pv = self._static_match(claim, node)
            if pv is not None:
                new = mutable(pv)
                new["spec"]["claimRef"] = {
                    "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                    "namespace": o.namespace_of(claim), "name": o.name_of(claim),
                    "uid": o.uid_of(claim),
                    "resourceVersion": (claim.get("metadata") or {}).get("resourceVersion", ""),
                }
                o.set_annotation(new, o.ANN_BOUND_BY_CONTROLLER, "yes")
                self.ctx.write_through(PV, self.api.update(PV, None, new))
                self.log.info("pod %s/%s: pre-bound volume %s to claim %s on node %s",
                              o.namespace_of(pod), o.name_of(pod), o.name_of(pv),
                              o.name_of(claim), node_name)
            else:
                new = self.api.patch(PVC, o.namespace_of(claim), o.name_of(claim),
                                     {"metadata": {"annotations": {o.ANN_SELECTED_NODE: node_name}}})
                self.ctx.write_through(PVC, new)
                self.log.info("pod %s/%s: claim %s selected node %s", o.namespace_of(pod),
                              o.name_of(pod), o.name_of(claim), node_name)

    def _bind(self, pod, node):
        """The Binding subresource's effect: spec.nodeName, then condition PodScheduled."""
        node_name = o.name_of(node)
        namespace, name = o.namespace_of(pod), o.name_of(pod)
        try:
            new = self.api.patch(POD, namespace, name, {"spec": {"nodeName": node_name}})
        except self.api.Invalid:
            fresh = mutable(pod)
            fresh["spec"]["nodeName"] = node_name
            new = self.api.update(POD, namespace, fresh)
        self.ctx.write_through(POD, new)
        conditions = [c for c in (new.get("status") or {}).get("conditions") or []
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True",
                           "lastTransitionTime": self.ctx.now(), "lastProbeTime": None})
        try:
            self.ctx.write_through(POD, self.api.patch(POD, namespace, name,
                                                       {"status": {"conditions": conditions}},
                                                       subresource="status"))
        except self.api.ApiError as e:
            self.log.debug("pod %s/%s: PodScheduled condition: %s", namespace, name, e)
        self._waiting.pop(o.uid_of(pod), None)
        self._last_failure.pop(o.uid_of(pod), None)
        self._backoff.pop(o.uid_of(pod), None)
        self.log.info("pod %s/%s bound to node %s", namespace, name, node_name)
        self.recorder.event(POD, new, "Normal", "Scheduled",
                            f"Successfully assigned {namespace}/{name} to {node_name}", COMPONENT)

    def _unschedulable(self, pod, message):
        uid = o.uid_of(pod)
        if self._last_failure.get(uid) == message:
            return
        self._last_failure[uid] = message
        self.log.info("pod %s/%s unschedulable: %s", o.namespace_of(pod), o.name_of(pod), message)
        self.recorder.event(POD, pod, "Warning", "FailedScheduling", message, COMPONENT)
        conditions = [c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": message, "lastTransitionTime": self.ctx.now(),
                           "lastProbeTime": None})
        try:
            self.ctx.write_through(POD, self.api.patch(
                POD, o.namespace_of(pod), o.name_of(pod),
                {"status": {"phase": "Pending", "conditions": conditions}}, subresource="status"))
        except self.api.ApiError as e:
            self.log.debug("pod %s: condition update failed: %s", o.name_of(pod), e)
