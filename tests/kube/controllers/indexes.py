"""Secondary indexes of the shared store (client-go's Indexers), registered once for all
controllers, so that an event is mapped to the objects it concerns without scanning:

  pods                    "claims"         namespace/claim for each claim the pod mounts
  pods                    "node"           spec.nodeName ("" while unscheduled); terminated pods
                                           are left out, they no longer load a node
  persistentvolumes       "claimref"       namespace/name of spec.claimRef
  persistentvolumes       "unbound-class"  storage class of PVs without claimRef (static PVs)
  every cached resource   "owner"          uid of each ownerReference (garbage collector)
"""

from . import objects as o


def pod_claims(pod):
    namespace = o.namespace_of(pod)
    return [f"{namespace}/{name}" for name in o.pod_claim_names(pod)]


def pod_node(pod):
    if o.pod_is_terminated(pod):
        return []
    return [(pod.get("spec") or {}).get("nodeName") or ""]


def pv_claimref(pv):
    ref = (pv.get("spec") or {}).get("claimRef")
    if ref and ref.get("name"):
        return [f"{ref.get('namespace', '')}/{ref['name']}"]
    return []


def pv_unbound_class(pv):
    if (pv.get("spec") or {}).get("claimRef"):
        return []
    return [o.pv_class(pv)]


def owner_uids(obj):
    return [ref["uid"] for ref in o.owner_refs(obj) if ref.get("uid")]


def register(store):
    store.add_index("pods", "claims", pod_claims)
    store.add_index("pods", "node", pod_node)
    store.add_index("persistentvolumes", "claimref", pv_claimref)
    store.add_index("persistentvolumes", "unbound-class", pv_unbound_class)
    store.add_global_index("owner", owner_uids)
