"""Small helpers over API objects (plain dicts): metadata, owner references, label selectors,
node selectors, quantities, conditions. Semantics follow k8s.io/apimachinery (labels,
metav1.NewControllerRef) and k8s.io/component-helpers (scheduling/corev1/nodeaffinity).
"""

import re

# Annotations and labels the real controllers use (k8s.io/component-helpers/storage/volume,
# k8s.io/api/apps/v1). The provisioner reads and writes the same strings.
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

LABEL_POD_NAME = "statefulset.kubernetes.io/pod-name"
LABEL_POD_INDEX = "apps.kubernetes.io/pod-index"
LABEL_REVISION = "controller-revision-hash"
LABEL_HOSTNAME = "kubernetes.io/hostname"


def meta(obj):
    return obj.setdefault("metadata", {}) if isinstance(obj, dict) else {}


def name_of(obj):
    return (obj.get("metadata") or {}).get("name", "")


def namespace_of(obj):
    return (obj.get("metadata") or {}).get("namespace")


def uid_of(obj):
    return (obj.get("metadata") or {}).get("uid", "")


def labels_of(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations_of(obj):
    return (obj.get("metadata") or {}).get("annotations") or {}


def is_deleting(obj):
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def set_annotation(obj, key, value):
    meta(obj).setdefault("annotations", {})[key] = value


# -- owner references ---------------------------------------------------------------------

def owner_refs(obj):
    return (obj.get("metadata") or {}).get("ownerReferences") or []


def controller_ref(obj):
    for ref in owner_refs(obj):
        if ref.get("controller"):
            return ref
    return None


def new_controller_ref(owner, api_version, kind):
    """metav1.NewControllerRef: controller and blockOwnerDeletion both true."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


# -- label selectors (metav1.LabelSelector) ------------------------------------------------

def selector_matches(selector, labels):
    """metav1.LabelSelectorAsSelector(selector).Matches(labels). A nil selector matches nothing,
    an empty one everything (as in the API)."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# -- node selectors (v1.NodeSelector, as in nodeaffinity.NewNodeSelector) -------------------

def _requirement_matches(expr, values_of):
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present, value = values_of(key)
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            have, want = int(value), int(values[0])
        except (TypeError, ValueError, IndexError):
            return False
        return present and (have > want if op == "Gt" else have < want)
    return False


def node_selector_matches(node_selector, node):
    """True when one of the terms matches the node. Each term's matchExpressions (node labels)
    and matchFields (only metadata.name) must all hold; a term with neither matches nothing."""
    if not node_selector:
        return True
    labels = labels_of(node)
    node_name = name_of(node)

    def label(key):
        return (key in labels), labels.get(key)

    def field(key):
        return (key == "metadata.name"), (node_name if key == "metadata.name" else None)

    for term in node_selector.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue
        if all(_requirement_matches(e, label) for e in exprs) and \
                all(_requirement_matches(f, field) for f in fields):
            return True
    return False


def pv_fits_node(pv, node):
    """The volumebinding plugin's check of a bound PV: its required nodeAffinity must hold."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    return node_selector_matches(required, node) if required else True


def pod_fits_node(pod, node):
    """The pod's own placement rules that matter here: nodeSelector and required node
    affinity (the NodeAffinity filter plugin), and spec.nodeName if preset."""
    spec = pod.get("spec") or {}
    labels = labels_of(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required and not node_selector_matches(required, node):
        return False
    return True


def node_is_ready(node):
    """Schedulable and Ready. A node without any Ready condition counts as Ready: the emulator
    starts nodes Ready, and tests may create bare Node objects."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return True


# -- quantities ----------------------------------------------------------------------------

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "m": 0.001,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value):
    """resource.Quantity value as a number (bytes for storage). Unparseable: 0."""
    if isinstance(value, (int, float)):
        return value
    match = _QUANTITY.match(str(value or "").strip())
    if not match or match.group(2) not in _SUFFIX:
        return 0
    try:
        return float(match.group(1)) * _SUFFIX[match.group(2)]
    except ValueError:
        return 0


def claim_request(claim):
    return quantity((((claim.get("spec") or {}).get("resources") or {}).get("requests") or {})
                    .get("storage"))


def pv_capacity(pv):
    return quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


# -- storage classes -----------------------------------------------------------------------

def claim_class(claim):
    """storagehelpers.GetPersistentVolumeClaimClass: the beta annotation wins, then
    spec.storageClassName; "" means no class."""
    ann = annotations_of(claim)
    if ANN_BETA_CLASS in ann:
        return ann[ANN_BETA_CLASS]
    return (claim.get("spec") or {}).get("storageClassName") or ""


def claim_has_class(claim):
    """storagehelpers.PersistentVolumeClaimHasClass: an explicit "" counts as a class."""
    return ANN_BETA_CLASS in annotations_of(claim) or \
        (claim.get("spec") or {}).get("storageClassName") is not None


def pv_class(pv):
    ann = annotations_of(pv)
    if ANN_BETA_CLASS in ann:
        return ann[ANN_BETA_CLASS]
    return (pv.get("spec") or {}).get("storageClassName") or ""


def is_default_class(sc):
    ann = annotations_of(sc)
    return ann.get(ANN_DEFAULT_CLASS) == "true" or ann.get(ANN_BETA_DEFAULT_CLASS) == "true"


def default_class(store):
    """util.GetDefaultClass: among default classes, the newest (then by name)."""
    defaults = [sc for sc in store.list("storageclasses.storage.k8s.io") if is_default_class(sc)]
    if not defaults:
        return None
    defaults.sort(key=lambda sc: ((sc.get("metadata") or {}).get("creationTimestamp") or "",
                                  name_of(sc)), reverse=True)
    return defaults[0]


def is_wait_for_first_consumer(sc):
    return bool(sc) and sc.get("volumeBindingMode") == "WaitForFirstConsumer"


# -- pods ----------------------------------------------------------------------------------

def pod_claim_names(pod):
    return [v["persistentVolumeClaim"]["claimName"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def pod_is_ready(pod):
    """isRunningAndReady of the StatefulSet controller."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_is_terminated(pod):
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def claim_is_bound(claim):
    return bool((claim.get("spec") or {}).get("volumeName")) and \
        (claim.get("status") or {}).get("phase") == "Bound"
