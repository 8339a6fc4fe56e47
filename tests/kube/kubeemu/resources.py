"""The resource registry: every kind the emulator serves, with what discovery, routing,
validation, defaulting and printing need to know about it. Built-in kinds are fixed; kinds
defined by CustomResourceDefinitions are added and removed as CRDs come and go.
"""

import copy
import threading

from . import quantity, schema

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ResourceType:
    def __init__(self, group, version, kind, plural, namespaced, short_names=(),
                 status=False, scale=False, name_rule="subdomain", generation=False,
                 field_selectors=(), categories=(), singular=None, crd=None, returns_deleted=None,
                 namespace_field=True,
                 verbs=None, virtual=False):
        self.group = group
        self.version = version
        self.kind = kind
        self.plural = plural
        self.singular = singular or kind.lower()
        self.namespaced = namespaced
        self.short_names = list(short_names)
        self.status = status
        self.scale = scale
        self.name_rule = name_rule
        self.generation = generation
        self.field_selectors = {"metadata.name"} | set(field_selectors)
        if namespace_field:
            self.field_selectors.add("metadata.namespace")
        self.categories = list(categories)
        self.crd = crd  # the CRD object for custom resources
        self.verbs = list(verbs or ALL_VERBS)
        self.virtual = virtual  # reviews: answered, never stored
        # The registries that set ReturnDeletedObject answer a delete with the object; the
        # others answer with a Status "Success".
        self.returns_deleted = (crd is not None or kind in (
            "Namespace", "Node", "Pod", "Service", "PersistentVolume", "PersistentVolumeClaim",
            "ServiceAccount", "StorageClass", "CustomResourceDefinition")) \
            if returns_deleted is None else returns_deleted

    @property
    def key(self):
        """'persistentvolumeclaims' or 'statefulsets.apps': how the api client names it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self):
        return self.api_version

    def schema(self):
        if self.crd is not None:
            return crd_version(self.crd, self.version).get("schema", {}).get("openAPIV3Schema", {})
        return schema.schema_for_kind(self.kind)


def crd_version(crd, version):
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            return v
    return {}


def _builtins():
    R = ResourceType
    return [
        R("", "v1", "Namespace", "namespaces", False, ["ns"], status=True, name_rule="label",
          field_selectors=["status.phase"]),
        R("", "v1", "Node", "nodes", False, ["no"], status=True,
          field_selectors=["spec.unschedulable"]),
        R("", "v1", "Pod", "pods", True, ["po"], status=True, categories=["all"],
          field_selectors=["spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                           "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                           "status.podIP", "status.nominatedNodeName"]),
        R("", "v1", "Service", "services", True, ["svc"], status=True, name_rule="dns1035",
          categories=["all"]),
        R("", "v1", "Event", "events", True, ["ev"],
          field_selectors=["involvedObject.kind", "involvedObject.namespace",
                           "involvedObject.name", "involvedObject.uid",
                           "involvedObject.apiVersion", "involvedObject.resourceVersion",
                           "involvedObject.fieldPath", "reason", "reportingComponent",
                           "source", "type"]),
        # PersistentVolumeToSelectableFields / PersistentVolumeClaimToSelectableFields
        # (pkg/registry/core/persistentvolume[claim]/strategy.go): object metadata and the
        # legacy "name" only - status.phase is refused with 400 (and a PV has no namespace).
        R("", "v1", "PersistentVolume", "persistentvolumes", False, ["pv"], status=True,
          field_selectors=["name"], namespace_field=False),
        R("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"],
          status=True, field_selectors=["name"]),
        R("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
        R("", "v1", "Secret", "secrets", True, field_selectors=["type"]),
        R("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
        R("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ["sc"]),
        R("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], status=True, scale=True,
          name_rule="label", generation=True, categories=["all"]),
        R("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"], status=True, generation=True,
          categories=["all"]),
        R("apps", "v1", "Deployment", "deployments", True, ["deploy"], status=True, scale=True,
          generation=True, categories=["all"]),
        R("batch", "v1", "Job", "jobs", True, status=True, generation=True, categories=["all"],
          field_selectors=["status.successful"]),
        R("batch", "v1", "CronJob", "cronjobs", True, ["cj"], status=True, generation=True,
          categories=["all"]),
        R("coordination.k8s.io", "v1", "Lease", "leases", True),
        R("rbac.authorization.k8s.io", "v1", "Role", "roles", True, name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
          name_rule="path"),
        R("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
          False, ["crd", "crds"], status=True, generation=True),
        R("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
          verbs=["create"], virtual=True),
    ]


# Preferred versions of the built-in groups, in the order /apis lists them.
BUILTIN_GROUPS = ["apps", "authorization.k8s.io", "batch", "coordination.k8s.io",
                  "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io"]


class Registry:
    """Thread-safe registry; CRD types are swapped in and out under its own lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._builtin = _builtins()
        self._custom = {}  # crd name -> [ResourceType per served version]

    def all(self):
        with self._lock:
            out = list(self._builtin)
            for types in self._custom.values():
                out.extend(types)
            return out

    def find(self, group, version, plural):
        for t in self.all():
            if t.group == group and t.version == version and t.plural == plural:
                return t
        return None

    def by_key(self, key):
        """'statefulsets.apps' or 'persistentvolumeclaims' (the storage/preferred version)."""
        plural, _, group = key.partition(".")
        candidates = [t for t in self.all() if t.plural == plural and t.group == group]
        if not candidates:
            return None
        for t in candidates:
            if t.crd is None or crd_version(t.crd, t.version).get("storage"):
                return t
        return candidates[0]

    def groups(self):
        """{group: [versions]} for /apis (builtin order first, then CRD groups)."""
        out = {}
        for t in self.all():
            if t.group:
                versions = out.setdefault(t.group, [])
                if t.version not in versions:
                    versions.append(t.version)
        return out

    def set_crd(self, crd):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        types = []
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            subs = v.get("subresources") or {}
            types.append(ResourceType(
                spec.get("group"), v.get("name"), names.get("kind"), names.get("plural"),
                spec.get("scope") == "Namespaced", names.get("shortNames") or [],
                status="status" in subs, scale="scale" in subs, name_rule="subdomain",
                generation=True, categories=names.get("categories") or [],
                singular=names.get("singular") or (names.get("kind") or "").lower(),
                field_selectors=[f.get("jsonPath", "").lstrip(".") for f in v.get("selectableFields") or []],
                crd=copy.deepcopy(crd)))
        with self._lock:
            self._custom[crd["metadata"]["name"]] = types

    def remove_crd(self, name):
        with self._lock:
            self._custom.pop(name, None)


# ---- defaulting (what the real server fills in on create/update) ----

def _canonical_quantities(mapping):
    if isinstance(mapping, dict):
        for k, v in list(mapping.items()):
            try:
                mapping[k] = quantity.canonical(v)
            except quantity.QuantityError:
                pass  # validation reports it


def _default_pvc_spec(spec):
    spec.setdefault("volumeMode", "Filesystem")
    res = spec.setdefault("resources", {})
    _canonical_quantities(res.get("requests"))
    _default_quantity_limits(res)


def _default_quantity_limits(res):
    _canonical_quantities(res.get("limits"))


def _default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = c.get("image") or ""
            c.setdefault("imagePullPolicy",
                         "Always" if image.endswith(":latest") or ":" not in image.split("/")[-1] else "IfNotPresent")
            c.setdefault("resources", {})


def apply_defaults(rtype, obj, store=None):
    """Defaulting done by the real server's registry strategies and admission plugins."""
    kind = rtype.kind
    spec = obj.get("spec")
    if kind == "PersistentVolumeClaim":
        spec = obj.setdefault("spec", {})
        _default_pvc_spec(spec)
    elif kind == "PersistentVolume":
        spec = obj.setdefault("spec", {})
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        _canonical_quantities(spec.get("capacity"))
        if isinstance(spec.get("hostPath"), dict):
            spec["hostPath"].setdefault("type", "")
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "StatefulSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy",
                        {"whenDeleted": "Retain", "whenScaled": "Retain"})
        tmpl = spec.setdefault("template", {})
        if isinstance(tmpl.get("spec"), dict):
            _default_pod_spec(tmpl["spec"])
        for t in spec.get("volumeClaimTemplates") or []:
            if isinstance(t, dict):
                _default_pvc_spec(t.setdefault("spec", {}))
    elif kind == "Pod":
        spec = obj.setdefault("spec", {})
        _default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
    elif kind == "Secret":
        if not obj.get("type"):
            obj["type"] = "Opaque"
        string_data = obj.pop("stringData", None)
        if string_data:
            import base64
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind == "Namespace":
        spec = obj.setdefault("spec", {})
        spec.setdefault("finalizers", ["kubernetes"])
        name = (obj.get("metadata") or {}).get("name")
        if name:  # the server keeps this label equal to the name
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    elif kind == "CustomResourceDefinition":
        spec = obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})
    elif kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
    elif kind == "Job":
        spec = obj.setdefault("spec", {})
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
    return obj


def initial_status(rtype, obj):
    """Status the strategies set on create (PrepareForCreate)."""
    kind = rtype.kind
    if kind == "PersistentVolumeClaim":
        obj["status"] = {"phase": "Pending"}
    elif kind == "PersistentVolume":
        obj["status"] = {"phase": "Pending"}
    elif kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == "StatefulSet":
        obj["status"] = {"replicas": 0, "availableReplicas": 0}
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    elif kind == "Node":
        obj.setdefault("status", {})  # kubelets register nodes with their status
    elif kind == "CustomResourceDefinition":
        spec = obj.get("spec") or {}
        obj["status"] = {
            "acceptedNames": copy.deepcopy(spec.get("names") or {}),
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"}]}
    elif rtype.status:
        obj.pop("status", None) if rtype.crd is not None else obj.setdefault("status", {})
    return obj
