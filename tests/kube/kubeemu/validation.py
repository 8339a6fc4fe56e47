"""422 rules of the real API server (pkg/apis/core/validation, pkg/apis/apps/validation,
pkg/apis/storage/validation, apimachinery ObjectMeta validation), for the kinds the project
touches. Each validator returns a list of errors.FieldError; the store turns a non-empty list
into a 422 Invalid Status whose message matches the real one.
"""

import json
import re

from . import errors, quantity
from .jsonutil import clone
from .errors import forbidden, invalid, not_supported, required

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"

MSG_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
MSG_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
MSG_1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def dns_subdomain(name, prefix=False):
    msgs = []
    if prefix:
        name = name[:-1] if name.endswith("-") else name
    if len(name) > 253:
        msgs.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, name):
        msgs.append(MSG_SUBDOMAIN)
    return msgs


def dns_label(name, prefix=False):
    msgs = []
    if prefix:
        name = name[:-1] if name.endswith("-") else name
    if len(name) > 63:
        msgs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, name):
        msgs.append(MSG_LABEL)
    return msgs


def dns1035_label(name, prefix=False):
    msgs = []
    if prefix:
        name = name[:-1] if name.endswith("-") else name
    if len(name) > 63:
        msgs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_LABEL, name):
        msgs.append(MSG_1035)
    return msgs


def path_segment(name, prefix=False):
    if name in (".", "..") and not prefix:
        return [f"may not be '{name}'"]
    msgs = []
    for bad in ("/", "%"):
        if bad in name:
            msgs.append(f"may not contain '{bad}'")
    return msgs


NAME_RULES = {"subdomain": dns_subdomain, "label": dns_label, "dns1035": dns1035_label,
              "path": path_segment}

_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
MSG_LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                   "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
MSG_QUALIFIED = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                 "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                 "or '123-abc', regex used for validation is "
                 "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def qualified_name(key):
    msgs = []
    parts = key.split("/")
    if len(parts) > 2:
        return [MSG_QUALIFIED]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            msgs.append("prefix part must be non-empty")
        else:
            msgs.extend("prefix part " + m for m in dns_subdomain(prefix))
    if not name:
        msgs.append("name part must be non-empty")
    elif len(name) > 63:
        msgs.append("name part must be no more than 63 characters")
    elif not re.fullmatch(_QUALIFIED, name):
        msgs.append(MSG_QUALIFIED)
    return msgs


def validate_labels(labels, path):
    errs = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map")]
    for k, v in labels.items():
        for msg in qualified_name(k):
            errs.append(invalid(path, k, msg))
        if not isinstance(v, str):
            errs.append(invalid(f"{path}", v, "must be a string"))
            continue
        if len(v) > 63:
            errs.append(invalid(path, v, "must be no more than 63 characters"))
        if v and not re.fullmatch(_QUALIFIED, v):
            errs.append(invalid(path, v, MSG_LABEL_VALUE))
    return errs


def validate_annotations(annotations, path):
    errs = []
    if annotations is None:
        return errs
    total = 0
    for k, v in annotations.items():
        for msg in qualified_name(k):
            errs.append(invalid(path, k, msg))
        total += len(k) + len(v or "")
    if total > 256 * 1024:
        errs.append(errors.FieldError("TooLong", path, detail="may not be more than 262144 bytes"))
    return errs


def validate_meta(meta, rtype, is_create):
    """ObjectMeta rules: name (per kind), generateName, labels, annotations, finalizers."""
    errs = []
    rule = NAME_RULES[rtype.name_rule]
    name, gen = meta.get("name", ""), meta.get("generateName", "")
    if is_create:
        if not name and not gen:
            errs.append(required("metadata.name", "name or generateName is required"))
        if gen:
            for msg in rule(gen, True):
                errs.append(invalid("metadata.generateName", gen, msg))
    if name:
        for msg in rule(name, False):
            errs.append(invalid("metadata.name", name, msg))
    if rtype.namespaced and not meta.get("namespace"):
        errs.append(required("metadata.namespace", ""))
    if not rtype.namespaced and meta.get("namespace"):
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), "metadata.annotations"))
    errs.extend(validate_owner_references(meta.get("ownerReferences")))
    for i, fin in enumerate(meta.get("finalizers") or []):
        for msg in qualified_name(fin):
            errs.append(invalid(f"metadata.finalizers[{i}]", fin, msg))
        if "/" not in fin and fin not in ("kubernetes", "orphan", "foregroundDeletion"):
            errs.append(invalid(f"metadata.finalizers[{i}]", fin,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


# apimachinery/pkg/api/validation/objectmeta.go BannedOwners: events cannot own anything.
_BANNED_OWNERS = {("v1", "Event"), ("events.k8s.io/v1", "Event")}


def validate_owner_references(refs):
    """ValidateOwnerReferences + validateOwnerReference (apimachinery objectmeta.go): version,
    kind, name and uid must not be empty, events may not own, and at most one reference may
    have controller: true. The field path is metadata.ownerReferences, unindexed, as there."""
    path = "metadata.ownerReferences"
    errs, first_controller = [], ""
    for ref in refs or []:
        if not isinstance(ref, dict):
            continue
        api_version = ref.get("apiVersion") or ""
        version = api_version.rsplit("/", 1)[-1]
        if not version:
            errs.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        for field in ("kind", "name", "uid"):
            if not ref.get(field):
                errs.append(invalid(f"{path}.{field}", ref.get(field) or "", "must not be empty"))
        if (api_version, ref.get("kind")) in _BANNED_OWNERS:
            group, _, ver = api_version.rpartition("/")
            gvk = f"{group + '/' if group else '/'}{ver}, Kind={ref.get('kind')}"
            errs.append(invalid(path, ref, f"{gvk} is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if first_controller:
                errs.append(invalid(path, refs,
                                    f'Only one reference can have Controller set to true. Found '
                                    f'"true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return errs


def validate_node_selector(selector, path):
    """ValidateNodeSelector / ValidateNodeSelectorTerm / ValidateNodeSelectorRequirement
    (pkg/apis/core/validation/validation.go): at least one term; In and NotIn need values,
    Exists and DoesNotExist take none, Gt and Lt exactly one; any other operator is invalid;
    keys are label names. matchFields may only select metadata.name with In/NotIn and one
    value."""
    errs = []
    terms = (selector or {}).get("nodeSelectorTerms") or []
    if not terms:
        return [required(f"{path}.nodeSelectorTerms", "must have at least one node selector term")]
    for i, term in enumerate(terms):
        tpath = f"{path}.nodeSelectorTerms[{i}]"
        for j, req in enumerate((term or {}).get("matchExpressions") or []):
            rpath = f"{tpath}.matchExpressions[{j}]"
            op, values = req.get("operator"), req.get("values") or []
            if op in ("In", "NotIn"):
                if not values:
                    errs.append(required(f"{rpath}.values",
                                         "must be specified when `operator` is 'In' or 'NotIn'"))
            elif op in ("Exists", "DoesNotExist"):
                if values:
                    errs.append(forbidden(f"{rpath}.values", "may not be specified when `operator` "
                                          "is 'Exists' or 'DoesNotExist'"))
            elif op in ("Gt", "Lt"):
                if len(values) != 1:
                    errs.append(required(f"{rpath}.values", "must be specified single value when "
                                         "`operator` is 'Lt' or 'Gt'"))
            else:
                errs.append(invalid(f"{rpath}.operator", op or "", "not a valid selector operator"))
            for msg in qualified_name(req.get("key") or ""):
                errs.append(invalid(f"{rpath}.key", req.get("key") or "", msg))
        for j, req in enumerate((term or {}).get("matchFields") or []):
            rpath = f"{tpath}.matchFields[{j}]"
            if req.get("key") != "metadata.name":
                errs.append(invalid(f"{rpath}.key", req.get("key") or "", "not a valid field selector key"))
            if req.get("operator") not in ("In", "NotIn"):
                errs.append(invalid(f"{rpath}.operator", req.get("operator") or "",
                                    "not a valid selector operator"))
            if len(req.get("values") or []) != 1:
                errs.append(required(f"{rpath}.values",
                                     "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
    return errs


def validate_meta_update(new, old):
    errs = []
    for field in ("name", "namespace", "uid", "creationTimestamp"):
        if new.get(field) != old.get(field) and new.get(field) is not None:
            errs.append(invalid(f"metadata.{field}", new.get(field), "field is immutable"))
    if old.get("deletionTimestamp") and new.get("finalizers"):
        added = set(new.get("finalizers") or []) - set(old.get("finalizers") or [])
        if added:
            errs.append(forbidden("metadata.finalizers",
                                  f"no new finalizers can be added if the object is being deleted, found new finalizers {json.dumps(sorted(added))}"))
    return errs


# ---- per-kind rules ----

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
VOLUME_MODES = ["Block", "Filesystem"]
RECLAIM = ["Delete", "Recycle", "Retain"]
HOSTPATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                  "FileOrCreate", "Socket"]


def _access_modes(modes, path, detail=""):
    errs = []
    if not modes:
        errs.append(required(path, detail))
    for m in modes or []:
        if m not in ACCESS_MODES:
            errs.append(not_supported(path, m, ACCESS_MODES))
    if "ReadWriteOncePod" in (modes or []) and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _positive_quantity(value, path):
    try:
        v = quantity.value(value)
    except quantity.QuantityError as exc:
        return [invalid(path, value, str(exc))]
    if v <= 0:
        return [invalid(path, quantity.human(value), "must be greater than zero")]
    return []


def pvc_spec(spec, path="spec"):
    errs = _access_modes(spec.get("accessModes"), f"{path}.accessModes", "at least 1 access mode is required")
    requests = ((spec.get("resources") or {}).get("requests") or {})
    if "storage" not in requests:
        errs.append(required(f"{path}.resources[storage]", ""))
    else:
        errs.extend(_positive_quantity(requests["storage"], f"{path}.resources[storage]"))
    sc = spec.get("storageClassName")
    if sc:
        for msg in dns_subdomain(sc):
            errs.append(invalid(f"{path}.storageClassName", sc, msg))
    vm = spec.get("volumeMode")
    if vm is not None and vm not in VOLUME_MODES:
        errs.append(not_supported(f"{path}.volumeMode", vm, VOLUME_MODES))
    return errs


def validate_pvc(obj, old):
    errs = pvc_spec(obj.get("spec") or {})
    if old is None:
        return errs
    new_spec = clone(obj.get("spec") or {})
    old_spec = clone(old.get("spec") or {})
    # The PV controller sets volumeName once (binding).
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
        if old_spec["volumeName"] is None:
            old_spec.pop("volumeName")
    # Retroactive default StorageClass (GA in 1.28): a claim without a class may get one, once.
    ann = ((old.get("metadata") or {}).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    if "storageClassName" not in old_spec and new_spec.get("storageClassName") and ann in (None, new_spec["storageClassName"]):
        old_spec["storageClassName"] = new_spec["storageClassName"]
    bound = (obj.get("status") or {}).get("phase") == "Bound"
    new_req = (new_spec.get("resources") or {}).get("requests") or {}
    old_req = (old_spec.get("resources") or {}).get("requests") or {}
    if bound and "storage" in new_req:
        new_req["storage"] = old_req.get("storage")
    if bound:
        new_spec.pop("volumeAttributesClassName", None)
        old_spec.pop("volumeAttributesClassName", None)
    if _canon(new_spec) != _canon(old_spec):
        errs.append(forbidden("spec", "spec is immutable after creation except resources.requests "
                              "and volumeAttributesClassName for bound claims\n" + _diff(old_spec, new_spec)))
    try:
        new_size = quantity.value(((obj.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))
        old_size = quantity.value(((old.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))
        if new_size < old_size:
            cap = (old.get("status") or {}).get("capacity", {}).get("storage")
            if cap is None or new_size <= quantity.value(cap):
                errs.append(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"))
    except quantity.QuantityError:
        pass
    return errs


def _canon(v):
    """Normalise quantities so that '1Gi' and '1024Mi' compare equal, like Semantic.DeepEqual."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def _diff(old, new):
    """A short human diff (the real one is a go-cmp diff; people read the field names)."""
    lines = []
    keys = sorted(set(old) | set(new))
    for k in keys:
        if old.get(k) != new.get(k):
            lines.append(f"-  {k}: {json.dumps(old.get(k), sort_keys=True)}")
            lines.append(f"+  {k}: {json.dumps(new.get(k), sort_keys=True)}")
    return "\n".join(lines)


def pv_sources(spec):
    from .schema import PV_SOURCES
    return [s for s in PV_SOURCES if spec.get(s) is not None]


def validate_pv(obj, old):
    spec = obj.get("spec") or {}
    errs = _access_modes(spec.get("accessModes"), "spec.accessModes")
    cap = spec.get("capacity") or {}
    if not cap:
        errs.append(required("spec.capacity", ""))
    if "storage" not in cap or len(cap) > 1:
        raw = "core.ResourceList(nil)" if not cap else "core.ResourceList{" + ", ".join(
            f'"{k}":resource.Quantity{{{quantity.human(v)}}}' for k, v in cap.items()) + "}"
        errs.append(not_supported("spec.capacity", cap, ["storage"], raw_value=raw))
    for k, v in cap.items():
        errs.extend(_positive_quantity(v, f"spec.capacity[{k}]"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in RECLAIM:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM))
    sources = pv_sources(spec)
    for extra in sources[1:]:
        errs.append(forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    if spec.get("hostPath") is not None:
        htype = (spec["hostPath"] or {}).get("type")
        if htype not in (None, *HOSTPATH_TYPES):
            errs.append(not_supported("spec.hostPath.type", htype, HOSTPATH_TYPES))
        if not (spec["hostPath"] or {}).get("path"):
            errs.append(required("spec.hostPath.path", ""))
        elif ".." in spec["hostPath"]["path"].split("/"):
            errs.append(invalid("spec.hostPath.path", spec["hostPath"]["path"], "must not contain '..'"))
    if spec.get("local") is not None:
        if not (spec["local"] or {}).get("path"):
            errs.append(required("spec.local.path", ""))
        if not spec.get("nodeAffinity"):
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    na = spec.get("nodeAffinity")
    if na is not None:
        # validateVolumeNodeAffinity: required node constraints, validated as a NodeSelector.
        if not na.get("required"):
            errs.append(required("spec.nodeAffinity.required", "must specify required node constraints"))
        else:
            errs.extend(validate_node_selector(na["required"], "spec.nodeAffinity.required"))
    vm = spec.get("volumeMode")
    if vm is not None and vm not in VOLUME_MODES:
        errs.append(not_supported("spec.volumeMode", vm, VOLUME_MODES))
    sc = spec.get("storageClassName")
    if sc:
        for msg in dns_subdomain(sc):
            errs.append(invalid("spec.storageClassName", sc, msg))
    if old is not None:
        old_spec = old.get("spec") or {}
        new_src = {s: spec[s] for s in pv_sources(spec)}
        old_src = {s: old_spec[s] for s in pv_sources(old_spec)}
        if new_src != old_src:
            errs.append(forbidden("spec.persistentvolumesource",
                                  "spec.persistentvolumesource is immutable after creation\n" + _diff(old_src, new_src)))
        if spec.get("volumeMode") != old_spec.get("volumeMode"):
            errs.append(invalid("volumeMode", spec.get("volumeMode"), "field is immutable"))
        if old_spec.get("nodeAffinity") is not None and spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
            errs.append(invalid("nodeAffinity", spec.get("nodeAffinity"), "field is immutable"))
    return errs


def validate_storageclass(obj, old):
    errs = []
    if not obj.get("provisioner"):
        errs.append(required("provisioner", ""))
    else:
        # validateProvisioner (pkg/apis/storage/validation): a qualified name, lower-cased.
        for msg in qualified_name(obj["provisioner"].lower()):
            errs.append(invalid("provisioner", obj["provisioner"], msg))
    policy = obj.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode and mode not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(not_supported("volumeBindingMode", mode, ["Immediate", "WaitForFirstConsumer"]))
    params = obj.get("parameters") or {}
    if len(params) > 512:
        errs.append(errors.FieldError("TooLong", "parameters", detail="must have at most 512 parameters"))
    if old is not None:
        if obj.get("parameters") != old.get("parameters"):
            errs.append(forbidden("parameters", "updates to parameters are forbidden."))
        if obj.get("provisioner") != old.get("provisioner"):
            errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
        if obj.get("reclaimPolicy") != old.get("reclaimPolicy"):
            errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        if obj.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(invalid("volumeBindingMode", obj.get("volumeBindingMode"), "field is immutable"))
    return errs


def validate_statefulset(obj, old):
    from . import selectors
    spec = obj.get("spec") or {}
    errs = []
    pmp = spec.get("podManagementPolicy")
    if pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'"))
    for key in ("whenDeleted", "whenScaled"):
        v = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get(key, "Retain")
        if v not in ("Retain", "Delete"):
            errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", v, ["Retain", "Delete"]))
    for key in ("replicas", "minReadySeconds"):
        v = spec.get(key)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"spec.{key}", v, "must be greater than or equal to 0"))
    sel = spec.get("selector")
    template = spec.get("template") or {}
    tlabels = (template.get("metadata") or {}).get("labels") or {}
    if sel is None:
        errs.append(required("spec.selector", ""))
    elif not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(invalid("spec.selector", sel, "empty selector is invalid for statefulset"))
    elif not selectors.match_labels(selectors.label_selector_from_object(sel), tlabels):
        errs.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    tspec = template.get("spec") or {}
    if not tspec.get("containers"):
        errs.append(required("spec.template.spec.containers", ""))
    for i, c in enumerate(tspec.get("containers") or []):
        if not c.get("name"):
            errs.append(required(f"spec.template.spec.containers[{i}].name", ""))
        if not c.get("image"):
            errs.append(required(f"spec.template.spec.containers[{i}].image", ""))
    if tspec.get("restartPolicy", "Always") != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", tspec.get("restartPolicy"), ["Always"]))
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        tname = (t.get("metadata") or {}).get("name", "")
        if not tname:
            errs.append(required(f"spec.volumeClaimTemplates[{i}].metadata.name", ""))
        errs.extend(pvc_spec(t.get("spec") or {}, f"spec.volumeClaimTemplates[{i}].spec"))
    if old is not None:
        mutable = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                   "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
        a = {k: v for k, v in spec.items() if k not in mutable}
        b = {k: v for k, v in (old.get("spec") or {}).items() if k not in mutable}
        if a != b:
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                  "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                                  "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errs


def validate_statefulset_status(obj, old):
    st = obj.get("status") or {}
    errs = []
    for key in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"):
        v = st.get(key)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"status.{key}", v, "must be greater than or equal to 0"))
    reps = st.get("replicas", 0) or 0
    for key in ("readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"):
        if (st.get(key) or 0) > reps:
            errs.append(invalid(f"status.{key}", st.get(key), "cannot be greater than status.replicas"))
    return errs


def validate_pod(obj, old):
    spec = obj.get("spec") or {}
    errs = []
    if not spec.get("containers"):
        errs.append(required("spec.containers", ""))
    for i, c in enumerate(spec.get("containers") or []):
        if not c.get("name"):
            errs.append(required(f"spec.containers[{i}].name", ""))
        if not c.get("image"):
            errs.append(required(f"spec.containers[{i}].image", ""))
    if old is not None:
        # Setting nodeName once is what the pods/binding subresource does; the emulated
        # scheduler may do it with a patch. Any other spec change is refused, as for real pods.
        o = dict(old.get("spec") or {})
        n = dict(spec)
        if not o.get("nodeName"):
            o.pop("nodeName", None)
            n.pop("nodeName", None)
        for mutable in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            o.pop(mutable, None)
            n.pop(mutable, None)
        strip = lambda cs: [{k: v for k, v in c.items() if k != "image"} for c in cs or []]  # noqa: E731
        for key in ("containers", "initContainers"):
            o[key], n[key] = strip(o.get(key)), strip(n.get(key))
        if o != n:
            errs.append(forbidden("spec", "pod updates may not change fields other than "
                                  "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                                  "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                                  "to existing tolerations),`spec.terminationGracePeriodSeconds` "
                                  "(allow it to be set to 1 if it was previously negative)"))
    return errs


def validate_event(obj, old):
    """legacyValidateEvent (pkg/apis/core/validation/events.go), for core/v1 Events: without
    eventTime the event's namespace must equal the involved object's, or, for a cluster-scoped
    object, be "default" (or empty); with eventTime a cluster-scoped object's event lives in
    "default" or "kube-system", and reportingComponent, reportingInstance, action and reason
    are required (with their length limits)."""
    errs = []
    io = obj.get("involvedObject") or {}
    ns = (obj.get("metadata") or {}).get("namespace") or ""
    io_ns = io.get("namespace") or ""
    if not obj.get("eventTime"):
        if not io_ns:
            if ns not in ("", "default"):
                errs.append(invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
        elif ns != io_ns:
            errs.append(invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
    else:
        if not io_ns and ns not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
        component = obj.get("reportingComponent") or ""
        if not component:
            errs.append(required("reportingComponent", ""))
        for msg in qualified_name(component):
            errs.append(invalid("reportingComponent", component, msg))
        for field, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            value = obj.get(field) or ""
            if not value:
                errs.append(required(field, ""))
            if len(value) > limit:
                errs.append(invalid(field, "", f"can have at most {limit} characters"))
        if len(obj.get("message") or "") > 1024:
            errs.append(invalid("message", "", "can have at most 1024 characters"))
    t = obj.get("type")
    if t and t not in ("Normal", "Warning"):
        errs.append(not_supported("type", t, ["Normal", "Warning"]))
    return errs


def validate_crd(obj, old):
    spec = obj.get("spec") or {}
    errs = []
    names = spec.get("names") or {}
    group = spec.get("group", "")
    name = (obj.get("metadata") or {}).get("name", "")
    if not group:
        errs.append(required("spec.group", ""))
    if not names.get("plural"):
        errs.append(required("spec.names.plural", ""))
    if not names.get("kind"):
        errs.append(required("spec.names.kind", ""))
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        errs.append(invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(not_supported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(required("spec.versions", "must have exactly one version marked as storage version"))
    if versions and sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    if old is not None:
        if spec.get("group") != (old.get("spec") or {}).get("group"):
            errs.append(invalid("spec.group", spec.get("group"), "field is immutable"))
        if (spec.get("names") or {}).get("plural") != ((old.get("spec") or {}).get("names") or {}).get("plural"):
            errs.append(invalid("spec.names.plural", (spec.get("names") or {}).get("plural"), "field is immutable"))
    return errs


def validate_namespace(obj, old):
    return []


KIND_VALIDATORS = {
    "PersistentVolumeClaim": validate_pvc,
    "PersistentVolume": validate_pv,
    "StorageClass": validate_storageclass,
    "StatefulSet": validate_statefulset,
    "Pod": validate_pod,
    "Event": validate_event,
    "CustomResourceDefinition": validate_crd,
}

STATUS_VALIDATORS = {
    "StatefulSet": validate_statefulset_status,
}
