"""The storage-object-in-use protection controllers (pkg/controller/volume/pvcprotection and
pvprotection). The emulator's admission adds their finalizers on create when this package sets
PROTECTION_FINALIZERS, as the real StorageObjectInUseProtection admission plug-in does:

- `kubernetes.io/pvc-protection`: a deleted claim stays Terminating while a pod that is
  scheduled to a node and not terminated (Succeeded/Failed) mounts it; the finalizer is removed
  once none does. As the real controller, the cache's answer "unused" is confirmed against the
  server before the finalizer goes.
- `kubernetes.io/pv-protection`: a deleted PV stays Terminating while it is Bound; the finalizer
  is removed once its phase is anything else (Released, Available, Failed).
Keys are `pvc:namespace/name` and `pv:name`.
"""

from . import objects as o
from .runtime import Controller, mutable

PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
POD = "pods"
PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def _uses(pod, claim_name):
    return bool((pod.get("spec") or {}).get("nodeName")) and not o.pod_is_terminated(pod) \
        and claim_name in o.pod_claim_names(pod)


class ProtectionController(Controller):
    name = "protection"
    workers = 2
    resync_period = 3.0

    def __init__(self, ctx, recorder=None):
        super().__init__(ctx)
        ctx.on(PVC, self._on_claim)
        ctx.on(PV, self._on_volume)
        ctx.on(POD, self._on_pod)

    def _on_claim(self, event_type, old, new):
        if new is not None and o.is_deleting(new):
            self.enqueue(f"pvc:{o.namespace_of(new)}/{o.name_of(new)}")

    def _on_volume(self, event_type, old, new):
        if new is not None and o.is_deleting(new):
            self.enqueue(f"pv:{o.name_of(new)}")

    def _on_pod(self, event_type, old, new):
        pod = new or old
        for claim_name in o.pod_claim_names(pod):
            self.enqueue(f"pvc:{o.namespace_of(pod)}/{claim_name}")

    def resync_keys(self):
        keys = [f"pvc:{o.namespace_of(c)}/{o.name_of(c)}" for c in self.store.list(PVC) if o.is_deleting(c)]
        keys += [f"pv:{o.name_of(v)}" for v in self.store.list(PV) if o.is_deleting(v)]
        return keys

    def sync(self, key):
        kind, _, rest = key.partition(":")
        if kind == "pvc":
            namespace, _, name = rest.partition("/")
            claim = self.store.get(PVC, namespace, name)
            if claim is None or not o.is_deleting(claim) or \
                    PVC_FINALIZER not in (claim["metadata"].get("finalizers") or []):
                return None
            if any(_uses(p, name) for p in self.store.by_index(POD, "claims", f"{namespace}/{name}")):
                return None
            if any(_uses(p, name) for p in self.api.list(POD, namespace)):
                return None  # the cache lagged behind a new pod
            self._remove(PVC, claim, PVC_FINALIZER)
        elif kind == "pv":
            pv = self.store.get(PV, None, rest)
            if pv is None or not o.is_deleting(pv) or \
                    PV_FINALIZER not in (pv["metadata"].get("finalizers") or []):
                return None
            if (pv.get("status") or {}).get("phase") == "Bound":
                return None
            self._remove(PV, pv, PV_FINALIZER)
        return None

    def _remove(self, resource, obj, finalizer):
        new = mutable(obj)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != finalizer]
        self.ctx.write_through(resource, self.api.update(resource, o.namespace_of(obj), new))
        self.log.info("%s %s: removed %s", resource, o.name_of(obj), finalizer)
