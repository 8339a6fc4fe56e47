"""The PersistentVolume controller (kube-controller-manager's persistentvolume-binder).

Mirrors pkg/controller/volume/persistentvolume/pv_controller.go (Kubernetes 1.32):
- syncClaim: a claim without `pv.kubernetes.io/bind-completed` is unbound. It is bound to a PV
  pre-bound to it (the PV's claimRef names its namespace and name, and its uid or no uid), or,
  for an Immediate class, to the smallest Available PV of its class that fits. Without a match
  the claim gets the default StorageClass if it has none (assignDefaultStorageClass), and then:
  WaitForFirstConsumer without `volume.kubernetes.io/selected-node` -> event
  WaitForFirstConsumer and wait; a class with an external provisioner -> the
  `volume.kubernetes.io/storage-provisioner` and `volume.beta.kubernetes.io/storage-provisioner`
  annotations (setClaimProvisioner) and an ExternalProvisioning event; no class -> FailedBinding.
- bind(): PV claimRef (+ `pv.kubernetes.io/bound-by-controller` when the controller set it), PV
  phase Bound, claim spec.volumeName (+ bound-by-controller when the controller set it) and
  `pv.kubernetes.io/bind-completed: "yes"`, claim phase Bound with status.capacity and
  status.accessModes from the PV. Four writes, in that order, each retried on conflict.
- syncBoundClaim: a bound claim whose PV is gone, or whose PV is bound elsewhere, is Lost.
- syncVolume: no claimRef or a claimRef without uid -> Available; claim gone (or re-created with
  another uid) -> Released, then the reclaim policy: Retain does nothing; Delete with an external
  provisioner (`pv.kubernetes.io/provisioned-by` not an in-tree plugin) does nothing either - the
  provisioner deletes the volume and the PV; Delete of a PV nobody provisioned -> Failed (no
  in-tree deleter here), as with the real controller's VolumeFailedDelete.
The real controller has two queues (claims, volumes); here one queue carries both kinds of keys
(`claim:ns/name`, `volume:name`), processed by a few workers. Concurrent binds of one PV are
resolved the real way: the loser's update is stale and gets a 409, and is retried.
"""

from . import objects as o
from .runtime import Controller, mutable

COMPONENT = "persistentvolume-controller"
PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
SC = "storageclasses.storage.k8s.io"


def claim_key(claim):
    return f"claim:{o.namespace_of(claim)}/{o.name_of(claim)}"


def is_volume_bound_to_claim(pv, claim):
    """storagehelpers.IsVolumeBoundToClaim: claimRef names the claim; its uid, if any, matches."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    if ref.get("name") != o.name_of(claim) or ref.get("namespace") != o.namespace_of(claim):
        return False
    return not ref.get("uid") or ref.get("uid") == o.uid_of(claim)


def _volume_mode(obj):
    return (obj.get("spec") or {}).get("volumeMode") or "Filesystem"


def _access_modes_ok(claim, pv):
    have = set((pv.get("spec") or {}).get("accessModes") or [])
    return all(m in have for m in (claim.get("spec") or {}).get("accessModes") or [])


class PersistentVolumeController(Controller):
    name = "persistentvolume"
    workers = 4
    resync_period = 3.0

    def __init__(self, ctx, recorder):
        super().__init__(ctx)
        self.recorder = recorder
        self._announced = set()  # (claim uid, reason): events the real controller repeats per sync
        self._no_default = set()  # claims whose class the server refused to default
        ctx.on(PVC, self._on_claim)
        ctx.on(PV, self._on_volume)
        ctx.on(SC, self._on_class)

    # -- events -------------------------------------------------------------------------

    def _on_claim(self, event_type, old, new):
        claim = new or old
        key = f"{o.namespace_of(claim)}/{o.name_of(claim)}"
        if new is not None:
            self.enqueue("claim:" + key)
        # A claim's change may release or complete the binding of its PVs (the real
        # controller's deleteClaim enqueues the claim's volume).
        for pv in self.store.by_index(PV, "claimref", key):
            self.enqueue("volume:" + o.name_of(pv))
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.enqueue("volume:" + volume)

    def _on_volume(self, event_type, old, new):
        pv = new or old
        if new is not None:
            self.enqueue("volume:" + o.name_of(pv))
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.enqueue(f"claim:{ref.get('namespace', '')}/{ref['name']}")

    def _on_class(self, event_type, old, new):
        # A class appearing (or becoming default) lets waiting claims proceed. Rare: scan.
        for claim in self.store.list(PVC):
            if not (claim.get("spec") or {}).get("volumeName"):
                self.enqueue(claim_key(claim))

    def resync_keys(self):
        return ["claim:" + k for k in self.store.keys(PVC)] + \
               ["volume:" + k for k in self.store.keys(PV)]

    def sync(self, key):
        kind, _, rest = key.partition(":")
        if kind == "claim":
            namespace, _, name = rest.partition("/")
            claim = self.store.get(PVC, namespace, name)
            if claim is not None:
                self.sync_claim(claim)
        elif kind == "volume":
            pv = self.store.get(PV, None, rest)
            if pv is not None:
                self.sync_volume(pv)

    # -- writes ---------------------------------------------------------------------------

    def _update(self, resource, obj, subresource=None):
        namespace = o.namespace_of(obj)
        new = self.api.update(resource, namespace, obj, subresource=subresource)
        self.ctx.write_through(resource, new)
        return new

    def _event(self, resource, obj, event_type, reason, message, once=True):
        if once:
            mark = (o.uid_of(obj), reason, message)
            if mark in self._announced:
                return
            if len(self._announced) > 50000:
                self._announced.clear()
            self._announced.add(mark)
        self.recorder.event(resource, obj, event_type, reason, message, COMPONENT)

    def update_claim_phase(self, claim, phase, pv=None):
        """updateClaimStatus: phase, and with a PV its access modes and (when the phase
        changes) its capacity; without a PV both are cleared."""
        status = claim.get("status") or {}
        if status.get("phase") == phase and (
                (pv is None and "accessModes" not in status and "capacity" not in status) or
                (pv is not None and status.get("accessModes") == (pv.get("spec") or {}).get("accessModes"))):
            return claim
        dirty = status.get("phase") != phase
        new = mutable(claim)
        new_status = new.setdefault("status", {})
        new_status["phase"] = phase
        if pv is None:
            for field in ("accessModes", "capacity"):
                if field in new_status:
                    del new_status[field]
                    dirty = True
        else:
            modes = (pv.get("spec") or {}).get("accessModes")
            if status.get("accessModes") != modes:
                new_status["accessModes"] = modes
                dirty = True
            if status.get("phase") != phase:
                capacity = (pv.get("spec") or {}).get("capacity")
                if status.get("capacity") != capacity:
                    new_status["capacity"] = capacity
                    dirty = True
        if not dirty:
            return claim
        return self._update(PVC, new, subresource="status")

    def update_volume_phase(self, pv, phase, message=""):
        if (pv.get("status") or {}).get("phase") == phase:
            return pv
        new = mutable(pv)
        new.setdefault("status", {})["phase"] = phase
        if message:
            new["status"]["message"] = message
        else:
            new["status"].pop("message", None)
        pv = self._update(PV, new, subresource="status")
        self.log.info("volume %s entered phase %s", o.name_of(pv), phase)
        return pv

    # -- claims ---------------------------------------------------------------------------

    def sync_claim(self, claim):
        if o.ANN_BIND_COMPLETED not in o.annotations_of(claim):
            self.sync_unbound_claim(claim)
        else:
            self.sync_bound_claim(claim)

    def _class(self, claim):
        name = o.claim_class(claim)
        return self.store.get(SC, None, name) if name else None

    def find_best_match(self, claim, delay_binding):
        """persistentVolumeOrderedIndex.findByClaim (index.go) + FindMatchingVolume
        (component-helpers/storage/volume/pv_helpers.go) without a node. findByClaim only looks
        at PVs whose access modes include all of the claim's (the "accessmodes" index and
        allPossibleMatchingAccessModes); FindMatchingVolume then skips PVs smaller than the
        request, of another volumeMode, or being deleted - a pre-bound PV included. So a PV
        pre-bound to the claim wins only if it satisfies it; one that does not leaves the claim
        Pending (no event: the real controller just finds no match). Otherwise (not for
        delayed binding, the scheduler binds those) the smallest Available unclaimed PV of the
        claim's class that satisfies it."""
        key = f"{o.namespace_of(claim)}/{o.name_of(claim)}"
        want = o.claim_request(claim)
        for pv in self.store.by_index(PV, "claimref", key):
            if o.is_deleting(pv) or not _access_modes_ok(claim, pv):
                continue
            if o.pv_capacity(pv) < want or _volume_mode(pv) != _volume_mode(claim):
                continue
            if is_volume_bound_to_claim(pv, claim):
                return pv
        if delay_binding:
            return None
        selector = (claim.get("spec") or {}).get("selector")
        best = None
        for pv in self.store.by_index(PV, "unbound-class", o.claim_class(claim)):
            if o.is_deleting(pv) or (pv.get("status") or {}).get("phase") != "Available":
                continue
            if o.pv_capacity(pv) < want or not _access_modes_ok(claim, pv):
                continue
            if _volume_mode(pv) != _volume_mode(claim):
                continue
            if selector is not None and not o.selector_matches(selector, o.labels_of(pv)):
                continue
            if best is None or o.pv_capacity(pv) < o.pv_capacity(best):
                best = pv
        return best

    def sync_unbound_claim(self, claim):
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            sc = self._class(claim)
            delay = o.is_wait_for_first_consumer(sc)
            pv = self.find_best_match(claim, delay)
            if pv is not None:
                self.bind(pv, claim)
                return
            if self.assign_default_class(claim):
                return
            if delay and o.ANN_SELECTED_NODE not in o.annotations_of(claim):
                self._emit_wait_for_consumer(claim)
            elif o.claim_class(claim):
                self.provision_claim(claim, sc)
                return
            else:
                self._event(PVC, claim, "Normal", "FailedBinding",
                            "no persistent volumes available for this claim and no storage class is set")
            self.update_claim_phase(claim, "Pending")
            return
        pv = self.store.get(PV, None, volume_name)
        if pv is None:
            self.update_claim_phase(claim, "Pending")
        elif not (pv.get("spec") or {}).get("claimRef"):
            problem = self._unsatisfied(pv, claim)
            if problem:
                self._event(PVC, claim, "Warning", "VolumeMismatch",
                            f'Cannot bind to requested volume "{volume_name}": {problem}')
                self.update_claim_phase(claim, "Pending")
            else:
                self.bind(pv, claim)
        elif is_volume_bound_to_claim(pv, claim):
            self.bind(pv, claim)
        else:
            self._event(PVC, claim, "Warning", "FailedBinding",
                        f'volume "{volume_name}" already bound to a different claim.')
            self.update_claim_phase(claim, "Pending")

    def _emit_wait_for_consumer(self, claim):
        """emitEventForUnboundDelayBindingClaim: which pod, if any, the claim waits for."""
        waiting = sorted(o.name_of(p) for p in self.store.by_index(
            "pods", "claims", f"{o.namespace_of(claim)}/{o.name_of(claim)}")
            if not (p.get("spec") or {}).get("nodeName") and not o.pod_is_terminated(p))
        if not waiting:
            self._event(PVC, claim, "Normal", "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding")
        elif len(waiting) == 1:
            self._event(PVC, claim, "Normal", "WaitForPodScheduled",
                        f"waiting for pod {waiting[0]} to be scheduled")
        else:
            self._event(PVC, claim, "Normal", "WaitForPodScheduled",
                        f"waiting for pods {','.join(waiting)} to be scheduled")

    @staticmethod
    def _unsatisfied(pv, claim):
        """checkVolumeSatisfyClaim."""
        if o.is_deleting(pv):
            return f'the volume is marked for deletion "{o.name_of(pv)}"'
        if o.pv_capacity(pv) < o.claim_request(claim):
            return "requested PV is too small"
        if o.pv_class(pv) != o.claim_class(claim):
            return "storageClassName does not match"
        if _volume_mode(pv) != _volume_mode(claim):
            return "incompatible volumeMode"
        if not _access_modes_ok(claim, pv):
            return "incompatible accessMode"
        return None

    def assign_default_class(self, claim):
        """assignDefaultStorageClass (retroactive default class, GA in 1.28): a claim created
        without any class gets the default one. Returns True when the claim was updated."""
        if o.claim_has_class(claim) or o.uid_of(claim) in self._no_default:
            return False
        sc = o.default_class(self.store)
        if sc is None:
            return False
        new = mutable(claim)
        new.setdefault("spec", {})["storageClassName"] = o.name_of(sc)
        try:
            self._update(PVC, new)
        except self.api.Invalid as e:
            self.log.info("cannot assign default class to %s: %s", claim_key(claim), e)
            self._no_default.add(o.uid_of(claim))
            return False
        return True

    def provision_claim(self, claim, sc):
        """provisionClaim for an external provisioner: announce it on the claim and wait."""
        if sc is None:
            self._event(PVC, claim, "Warning", "ProvisioningFailed",
                        f'storageclass.storage.k8s.io "{o.claim_class(claim)}" not found')
            return
        provisioner = sc.get("provisioner", "")
        if provisioner == o.NO_PROVISIONER or provisioner.startswith("kubernetes.io/"):
            # No in-tree plugins here: the real controller reports the lookup failure.
            self._event(PVC, claim, "Warning", "ProvisioningFailed",
                        f"no volume plugin matched name: {provisioner}")
            return
        ann = o.annotations_of(claim)
        if ann.get(o.ANN_STORAGE_PROVISIONER) != provisioner or \
                ann.get(o.ANN_BETA_STORAGE_PROVISIONER) != provisioner:
            new = mutable(claim)
            o.set_annotation(new, o.ANN_BETA_STORAGE_PROVISIONER, provisioner)
            o.set_annotation(new, o.ANN_STORAGE_PROVISIONER, provisioner)
            claim = self._update(PVC, new)
        self._event(PVC, claim, "Normal", "ExternalProvisioning",
                    f"Waiting for a volume to be created either by the external provisioner "
                    f"'{provisioner}' or manually by the system administrator. If volume creation "
                    f"is delayed, please verify that the provisioner is running and correctly "
                    f"registered.")

    def sync_bound_claim(self, claim):
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            self._lose(claim, "ClaimLost",
                       "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            return
        pv = self.store.get(PV, None, volume_name)
        if pv is None:
            pv = self.api.get(PV, None, volume_name)  # the cache may lag a fresh PV
        if pv is None:
            self._lose(claim, "ClaimLost",
                       "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") == o.uid_of(claim):
            self.bind(pv, claim)
        else:
            self._lose(claim, "ClaimMisbound",
                       "Two claims are bound to the same volume, this one is bound incorrectly")

    def _lose(self, claim, reason, message):
        if (claim.get("status") or {}).get("phase") == "Lost":
            return
        claim = self.update_claim_phase(claim, "Lost")
        self._event(PVC, claim, "Warning", reason, message, once=False)

    def bind(self, pv, claim):
        """bind(): volume first (claimRef, then phase), then the claim (volumeName and
        annotations, then phase). Each step is skipped when already done."""
        set_bound_by = not is_volume_bound_to_claim(pv, claim) and \
            o.ANN_BOUND_BY_CONTROLLER not in o.annotations_of(pv)
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        set_ref = ref.get("name") != o.name_of(claim) or ref.get("namespace") != o.namespace_of(claim) \
            or ref.get("uid") != o.uid_of(claim)
        if set_bound_by or set_ref:
            new = mutable(pv)
            if set_bound_by:
                o.set_annotation(new, o.ANN_BOUND_BY_CONTROLLER, "yes")
            if set_ref:
                new.setdefault("spec", {})["claimRef"] = {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": o.namespace_of(claim),
                    "name": o.name_of(claim),
                    "uid": o.uid_of(claim),
                    "resourceVersion": (claim.get("metadata") or {}).get("resourceVersion", ""),
                }
            pv = self._update(PV, new)
        pv = self.update_volume_phase(pv, "Bound")

        set_volume = (claim.get("spec") or {}).get("volumeName") != o.name_of(pv)
        set_completed = o.ANN_BIND_COMPLETED not in o.annotations_of(claim)
        if set_volume or set_completed:
            new = mutable(claim)
            if set_volume:
                new.setdefault("spec", {})["volumeName"] = o.name_of(pv)
                if o.ANN_BOUND_BY_CONTROLLER not in o.annotations_of(claim):
                    o.set_annotation(new, o.ANN_BOUND_BY_CONTROLLER, "yes")
            if set_completed:
                o.set_annotation(new, o.ANN_BIND_COMPLETED, "yes")
            claim = self._update(PVC, new)
            self.log.info("claim %s/%s bound to volume %s", o.namespace_of(claim),
                          o.name_of(claim), o.name_of(pv))
        self.update_claim_phase(claim, "Bound", pv)

    # -- volumes --------------------------------------------------------------------------

    def sync_volume(self, pv):
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            # Unused, or pre-bound to a claim whose sync will finish the binding.
            self.update_volume_phase(pv, "Available")
            return
        phase = (pv.get("status") or {}).get("phase")
        namespace, name = ref.get("namespace", ""), ref.get("name", "")
        claim = self.store.get(PVC, namespace, name)
        if claim is None and phase not in ("Released", "Failed"):
            # The cache may not have seen a fresh claim yet: ask the server before releasing.
            claim = self.api.get(PVC, namespace, name)
        if claim is not None and o.uid_of(claim) != ref.get("uid"):
            fresh = self.api.get(PVC, namespace, name)
            claim = fresh if fresh is not None and o.uid_of(fresh) == ref.get("uid") else None
        if claim is None:
            if phase not in ("Released", "Failed"):
                pv = self.update_volume_phase(pv, "Released")
            self.reclaim(pv)
            return
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            if _volume_mode(pv) != _volume_mode(claim):
                self._event(PV, pv, "Warning", "VolumeMismatch",
                            f'Cannot bind PersistentVolume to requested PersistentVolumeClaim '
                            f'"{name}" due to incompatible volumeMode.')
                return
            # Bound on the PV side only (e.g. a PV the provisioner just created): the claim's
            # sync completes the binding.
            self.enqueue(claim_key(claim))
        elif volume_name == o.name_of(pv):
            self.update_volume_phase(pv, "Bound")
        elif o.ANN_PROVISIONED_BY in o.annotations_of(pv) and \
                (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
            if phase not in ("Released", "Failed"):
                pv = self.update_volume_phase(pv, "Released")
            self.reclaim(pv)
        else:
            self.unbind(pv)

    def unbind(self, pv):
        """unbindVolume: a binding the controller made is removed; a user's pre-binding only
        loses its uid."""
        new = mutable(pv)
        if o.ANN_BOUND_BY_CONTROLLER in o.annotations_of(pv):
            new["spec"].pop("claimRef", None)
            del new["metadata"]["annotations"][o.ANN_BOUND_BY_CONTROLLER]
        else:
            new["spec"]["claimRef"].pop("uid", None)
        pv = self._update(PV, new)
        self.update_volume_phase(pv, "Available")

    def reclaim(self, pv):
        """reclaimVolume. Retain: nothing. Delete: only in-tree plugins delete here; a PV from an
        external provisioner waits for that provisioner, which deletes it."""
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        if policy == "Delete":
            provisioned_by = o.annotations_of(pv).get(o.ANN_PROVISIONED_BY, "")
            if provisioned_by and not provisioned_by.startswith("kubernetes.io/"):
                return  # "External deleter for volume requested, ignoring"
            message = (f'error getting deleter volume plugin for volume "{o.name_of(pv)}": '
                       f"no deletable volume plugin matched")
            reason = "VolumeFailedDelete"
        elif policy == "Recycle":
            message, reason = "No recycler plugin found for the volume!", "VolumeFailedRecycle"
        else:
            message = "Volume has unrecognized PersistentVolumeReclaimPolicy"
            reason = "VolumeUnknownReclaimPolicy"
        if (pv.get("status") or {}).get("phase") != "Failed":
            pv = self.update_volume_phase(pv, "Failed", message)
            self._event(PV, pv, "Warning", reason, message)
