"""The garbage collector (pkg/controller/garbagecollector), for every kind the API reports.

- attemptToDeleteItem: an object whose ownerReferences all name owners that no longer exist
  (looked up by uid: the owner is absent when no object of that kind and name exists, or one
  exists with another uid) is deleted with background propagation. When some owners remain,
  the dangling references are removed instead. Owners of a kind we cannot resolve count as
  present (never delete on doubt). The cache answers first; absence is confirmed with a live
  GET before anything is deleted, as the real collector does with its "virtual" nodes.
- an owner deleted with propagationPolicy Foreground (finalizer `foregroundDeletion`): its
  dependents are deleted, then the finalizer is removed once none is left.
- propagationPolicy Orphan (finalizer `orphan`): the owner's references are removed from its
  dependents, then the finalizer.
Finalizers of dependents are honoured by the API server: a deleted dependent with finalizers
stays (with deletionTimestamp) until whoever owns the finalizer removes it.
Keys are `resource|namespace/name`.
"""

from . import objects as o
from .runtime import Controller, mutable, object_key, split_key

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

# Kinds whose owners are cluster-scoped; everything else is looked up in the dependent's
# namespace (owners of namespaced objects are in the same namespace or cluster-scoped).
_CLUSTER_KINDS = {
    "Node", "PersistentVolume", "Namespace", "StorageClass", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleBinding", "PriorityClass", "CSIDriver", "CSINode",
    "VolumeAttachment", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}


def kind_to_resource(api_version, kind):
    """The plural, group-qualified resource of a kind (the RESTMapper's guess, which holds for
    the built-in kinds and for CRDs that follow the usual naming)."""
    group = api_version.split("/")[0] if "/" in (api_version or "") else ""
    lower = kind.lower()
    if lower.endswith("y") and not lower.endswith(("ay", "ey", "oy", "uy")):
        plural = lower[:-1] + "ies"
    elif lower.endswith(("s", "x", "ch", "sh")):
        plural = lower + "es"
    else:
        plural = lower + "s"
    if lower == "endpoints":
        plural = "endpoints"
    return f"{plural}.{group}" if group else plural


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 2
    resync_period = 5.0

    def __init__(self, ctx, recorder=None):
        super().__init__(ctx)
        ctx.on("*", self._on_change)

    def _on_change(self, event_type, old, new, resource):
        if resource == "events":
            return
        if new is None:
            # The owner is gone: look at its dependents.
            for dep_resource, dep in self.store.by_global_index("owner", o.uid_of(old)):
                self.enqueue(f"{dep_resource}|{object_key(dep)}")
            return
        if o.owner_refs(new):
            self.enqueue(f"{resource}|{object_key(new)}")
        finalizers = (new.get("metadata") or {}).get("finalizers") or []
        if o.is_deleting(new) and (FOREGROUND in finalizers or ORPHAN in finalizers):
            self.enqueue(f"{resource}|{object_key(new)}")
        if o.is_deleting(new):
            # A dependent going away may unblock its foreground-deleted owner.
            for ref in o.owner_refs(new):
                found = self.store.by_uid(ref.get("uid", ""))
                if found:
                    self.enqueue(f"{found[0]}|{object_key(found[1])}")

    def resync_keys(self):
        keys = []
        for resource in self.store.resources():
            if resource == "events":
                continue
            for obj in self.store.list(resource):
                finalizers = (obj.get("metadata") or {}).get("finalizers") or []
                if o.owner_refs(obj) or FOREGROUND in finalizers or ORPHAN in finalizers:
                    keys.append(f"{resource}|{object_key(obj)}")
        return keys

    def sync(self, key):
        resource, _, obj_key = key.partition("|")
        obj = self.store.get_key(resource, obj_key)
        if obj is None:
            return None
        finalizers = (obj.get("metadata") or {}).get("finalizers") or []
        if o.is_deleting(obj) and ORPHAN in finalizers:
            self._orphan_dependents(resource, obj)
            return None
        if o.is_deleting(obj) and FOREGROUND in finalizers:
            return self._delete_dependents(resource, obj)
        if o.owner_refs(obj):
            self._attempt_to_delete(resource, obj)
        return None

    # -- owners -----------------------------------------------------------------------------

    def _owner_absent(self, ref, namespace, live):
        """True when the owner named by `ref` does not exist; None when we cannot tell."""
        uid = ref.get("uid")
        if not uid or not ref.get("kind") or not ref.get("name"):
            return None
        if self.store.by_uid(uid) is not None:
            return False
        resource = kind_to_resource(ref.get("apiVersion", ""), ref["kind"])
        owner_ns = None if ref["kind"] in _CLUSTER_KINDS else namespace
        if not live:
            cached = self.store.get(resource, owner_ns, ref["name"])
            if cached is not None and o.uid_of(cached) == uid:
                return False
            return resource in self.store.resources()
        try:
            owner = self.api.get(resource, owner_ns, ref["name"])
        except self.api.ApiError:
            return None  # not a resource the server knows: leave it alone
        return owner is None or o.uid_of(owner) != uid

    def _attempt_to_delete(self, resource, obj):
        refs = o.owner_refs(obj)
        namespace = o.namespace_of(obj)
        # Cheap pass on the cache; only suspects are confirmed against the server.
        if not any(self._owner_absent(ref, namespace, live=False) for ref in refs):
            return
        dangling = [ref for ref in refs if self._owner_absent(ref, namespace, live=True)]
        if not dangling:
            return
        name = o.name_of(obj)
        if len(dangling) == len(refs):
            if o.is_deleting(obj):
                return
            try:
                self.api.delete(resource, namespace, name, propagation="Background")
                self.log.info("deleted %s %s: all owners are gone", resource, object_key(obj))
            except self.api.NotFound:
                pass
            return
        gone = {ref.get("uid") for ref in dangling}
        new = mutable(obj)
        new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") not in gone]
        self.ctx.write_through(resource, self.api.update(resource, namespace, new))
        self.log.info("%s %s: removed dangling owner references", resource, object_key(obj))

    # -- owners deleted with a propagation policy ------------------------------------------

    def _remove_finalizer(self, resource, obj, finalizer):
        new = mutable(obj)
        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                         if f != finalizer]
        self.ctx.write_through(resource, self.api.update(resource, o.namespace_of(obj), new))

    def _orphan_dependents(self, resource, obj):
        uid = o.uid_of(obj)
        for dep_resource, dep in self.store.by_global_index("owner", uid):
            new = mutable(dep)
            new["metadata"]["ownerReferences"] = [r for r in o.owner_refs(dep) if r.get("uid") != uid]
            self.ctx.write_through(dep_resource, self.api.update(dep_resource, o.namespace_of(dep), new))
        self._remove_finalizer(resource, obj, ORPHAN)
        self.log.info("%s %s: dependents orphaned", resource, object_key(obj))

    def _delete_dependents(self, resource, obj):
        remaining = self.store.by_global_index("owner", o.uid_of(obj))
        for dep_resource, dep in remaining:
            if not o.is_deleting(dep):
                namespace, name = split_key(object_key(dep))
                try:
                    self.api.delete(dep_resource, namespace, name, propagation="Foreground")
                except self.api.NotFound:
                    pass
        if remaining:
            return 0.5  # dependents' deletions bring us back; poll in case one has finalizers
        self._remove_finalizer(resource, obj, FOREGROUND)
        self.log.info("%s %s: dependents deleted (foreground)", resource, object_key(obj))
        return None
