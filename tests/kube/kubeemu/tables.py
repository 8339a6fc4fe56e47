"""Server-side Table output (meta.k8s.io/v1 Table), the columns `kubectl get` shows.

Column sets and cell formats follow pkg/printers/internalversion/printers.go of 1.32; custom
resources use their CRD's additionalPrinterColumns (default: Age), as the apiextensions server.
"""

import datetime

from . import quantity

AGE = ("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.")


def parse_time(ts):
    if not ts:
        return None
    try:
        return datetime.datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            return datetime.datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return None


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    days = hours // 24
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y" if days % 365 == 0 else f"{days // 365}y{days % 365}d"
    return f"{days // 365}y"


def age(ts):
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    now = datetime.datetime.now(datetime.timezone.utc)
    return human_duration((now - t).total_seconds())


_MODE_ABBR = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
              ("ReadWriteOncePod", "RWOP")]


def access_modes(modes):
    modes = modes or []
    return ",".join(abbr for full, abbr in _MODE_ABBR if full in modes)


def _meta(o):
    return o.get("metadata") or {}


def _g(o, *path, default=None):
    cur = o
    for p in path:
        if not isinstance(cur, dict):
            return default
        cur = cur.get(p)
    return default if cur is None else cur


def pvc_row(o):
    phase = _g(o, "status", "phase", default="")
    if _meta(o).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = modes = ""
    if _g(o, "spec", "volumeName"):
        modes = access_modes(_g(o, "status", "accessModes"))
        capacity = quantity.human(_g(o, "status", "capacity", "storage", default="")) if _g(o, "status", "capacity", "storage") else ""
    sc = _g(o, "spec", "storageClassName") or _meta(o).get("annotations", {}).get("volume.beta.kubernetes.io/storage-class", "")
    return [_meta(o).get("name"), phase, _g(o, "spec", "volumeName", default=""), capacity, modes,
            sc, _g(o, "spec", "volumeAttributesClassName", default="<unset>"),
            age(_meta(o).get("creationTimestamp")), _g(o, "spec", "volumeMode", default="<unset>")]


def pv_row(o):
    phase = _g(o, "status", "phase", default="")
    if _meta(o).get("deletionTimestamp"):
        phase = "Terminating"
    ref = _g(o, "spec", "claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    return [_meta(o).get("name"), quantity.human(_g(o, "spec", "capacity", "storage", default="")),
            access_modes(_g(o, "spec", "accessModes")),
            _g(o, "spec", "persistentVolumeReclaimPolicy", default=""), phase, claim,
            _g(o, "spec", "storageClassName", default=""),
            _g(o, "spec", "volumeAttributesClassName", default="<unset>"),
            _g(o, "status", "reason", default=""), age(_meta(o).get("creationTimestamp")),
            _g(o, "spec", "volumeMode", default="<unset>")]


def pod_row(o):
    statuses = _g(o, "status", "containerStatuses", default=[])
    total = len(_g(o, "spec", "containers", default=[]))
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = _g(o, "status", "reason") or _g(o, "status", "phase", default="")
    for s in statuses:
        waiting = _g(s, "state", "waiting", "reason")
        if waiting:
            reason = waiting
    if _meta(o).get("deletionTimestamp"):
        reason = "Terminating"
    return [_meta(o).get("name"), f"{ready}/{total}", reason, restarts,
            age(_meta(o).get("creationTimestamp")), _g(o, "status", "podIP", default="<none>"),
            _g(o, "spec", "nodeName", default="<none>"),
            _g(o, "status", "nominatedNodeName", default="<none>"), "<none>"]


def node_row(o):
    conds = {c.get("type"): c.get("status") for c in _g(o, "status", "conditions", default=[])}
    status = "Ready" if conds.get("Ready") == "True" else ("NotReady" if "Ready" in conds else "Unknown")
    if _g(o, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (_meta(o).get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    addrs = {a.get("type"): a.get("address") for a in _g(o, "status", "addresses", default=[])}
    info = _g(o, "status", "nodeInfo", default={})
    return [_meta(o).get("name"), status, ",".join(roles) or "<none>",
            age(_meta(o).get("creationTimestamp")), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def _containers(o):
    cs = _g(o, "spec", "template", "spec", "containers", default=[])
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def sts_row(o):
    names, images = _containers(o)
    return [_meta(o).get("name"),
            f"{_g(o, 'status', 'readyReplicas', default=0)}/{_g(o, 'spec', 'replicas', default=1)}",
            age(_meta(o).get("creationTimestamp")), names, images]


def deploy_row(o):
    names, images = _containers(o)
    sel = _g(o, "spec", "selector", "matchLabels", default={})
    return [_meta(o).get("name"),
            f"{_g(o, 'status', 'readyReplicas', default=0)}/{_g(o, 'spec', 'replicas', default=1)}",
            _g(o, "status", "updatedReplicas", default=0), _g(o, "status", "availableReplicas", default=0),
            age(_meta(o).get("creationTimestamp")), names, images,
            ",".join(f"{k}={v}" for k, v in sel.items())]


def ds_row(o):
    names, images = _containers(o)
    st = o.get("status") or {}
    ns = _g(o, "spec", "template", "spec", "nodeSelector", default={})
    sel = _g(o, "spec", "selector", "matchLabels", default={})
    return [_meta(o).get("name"), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            ",".join(f"{k}={v}" for k, v in ns.items()) or "<none>",
            age(_meta(o).get("creationTimestamp")), names, images,
            ",".join(f"{k}={v}" for k, v in sel.items())]


def job_row(o):
    names, images = _containers(o)
    conds = {c.get("type"): c.get("status") for c in _g(o, "status", "conditions", default=[])}
    status = "Complete" if conds.get("Complete") == "True" else (
        "Failed" if conds.get("Failed") == "True" else "Running")
    return [_meta(o).get("name"), status,
            f"{_g(o, 'status', 'succeeded', default=0)}/{_g(o, 'spec', 'completions', default=1)}",
            "", age(_meta(o).get("creationTimestamp")), names, images, ""]


def cronjob_row(o):
    last = _g(o, "status", "lastScheduleTime")
    return [_meta(o).get("name"), _g(o, "spec", "schedule", default=""),
            _g(o, "spec", "timeZone", default="<none>"),
            "True" if _g(o, "spec", "suspend") else "False",
            len(_g(o, "status", "active", default=[])), age(last) if last else "<none>",
            age(_meta(o).get("creationTimestamp")), "", "", ""]


def sc_row(o):
    name = _meta(o).get("name")
    if (_meta(o).get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy", "Delete"),
            o.get("volumeBindingMode", "Immediate"),
            "true" if o.get("allowVolumeExpansion") else "false",
            age(_meta(o).get("creationTimestamp"))]


def event_row(o):
    last = o.get("lastTimestamp") or o.get("eventTime") or _meta(o).get("creationTimestamp")
    first = o.get("firstTimestamp") or o.get("eventTime") or _meta(o).get("creationTimestamp")
    count = o.get("count") or 1
    last_seen = age(last)
    if count > 1:
        last_seen = f"{age(last)} (x{count} over {age(first)})"
    io = o.get("involvedObject") or {}
    src = o.get("source") or {}
    source = src.get("component", "") + (", " + src["host"] if src.get("host") else "")
    if not source:
        source = o.get("reportingComponent", "")
    return [last_seen, o.get("type", ""), o.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}", io.get("fieldPath", ""),
            source, (o.get("message") or "").strip(), age(first), count, _meta(o).get("name")]


def ns_row(o):
    phase = _g(o, "status", "phase", default="Active")
    return [_meta(o).get("name"), phase, age(_meta(o).get("creationTimestamp"))]


def svc_row(o):
    spec = o.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    sel = spec.get("selector") or {}
    return [_meta(o).get("name"), spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"),
            ",".join(spec.get("externalIPs") or []) or "<none>", ports or "<none>",
            age(_meta(o).get("creationTimestamp")),
            ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>"]


def created_at(o):
    return [_meta(o).get("name"), _meta(o).get("creationTimestamp", "")]


def binding_row(o):
    ref = o.get("roleRef") or {}
    subjects = o.get("subjects") or []
    pick = lambda kind: ",".join(  # noqa: E731
        (f"{s.get('namespace', '')}/{s.get('name')}" if kind == "ServiceAccount" else s.get("name", ""))
        for s in subjects if s.get("kind") == kind)
    return [_meta(o).get("name"), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            age(_meta(o).get("creationTimestamp")), pick("User"), pick("Group"), pick("ServiceAccount")]


def _col(name, typ="string", priority=0, fmt="", desc=""):
    c = {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}
    return c


NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE_COL = _col("Age", desc=AGE[2])

PRINTERS = {
    "PersistentVolumeClaim": ([NAME, _col("Status"), _col("Volume"), _col("Capacity"),
                               _col("Access Modes"), _col("StorageClass"),
                               _col("VolumeAttributesClass"), AGE_COL,
                               _col("VolumeMode", priority=1)], pvc_row),
    "PersistentVolume": ([NAME, _col("Capacity"), _col("Access Modes"), _col("Reclaim Policy"),
                          _col("Status"), _col("Claim"), _col("StorageClass"),
                          _col("VolumeAttributesClass"), _col("Reason"), AGE_COL,
                          _col("VolumeMode", priority=1)], pv_row),
    "Pod": ([NAME, _col("Ready"), _col("Status"), _col("Restarts", "integer"), AGE_COL,
             _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
             _col("Readiness Gates", priority=1)], pod_row),
    "Node": ([NAME, _col("Status"), _col("Roles"), AGE_COL, _col("Version"),
              _col("Internal-IP", priority=1), _col("External-IP", priority=1),
              _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)], node_row),
    "StatefulSet": ([NAME, _col("Ready"), AGE_COL, _col("Containers", priority=1),
                     _col("Images", priority=1)], sts_row),
    "Deployment": ([NAME, _col("Ready"), _col("Up-to-date"), _col("Available"), AGE_COL,
                    _col("Containers", priority=1), _col("Images", priority=1),
                    _col("Selector", priority=1)], deploy_row),
    "DaemonSet": ([NAME, _col("Desired", "integer"), _col("Current", "integer"),
                   _col("Ready", "integer"), _col("Up-to-date", "integer"),
                   _col("Available", "integer"), _col("Node Selector"), AGE_COL,
                   _col("Containers", priority=1), _col("Images", priority=1),
                   _col("Selector", priority=1)], ds_row),
    "Job": ([NAME, _col("Status"), _col("Completions"), _col("Duration"), AGE_COL,
             _col("Containers", priority=1), _col("Images", priority=1),
             _col("Selector", priority=1)], job_row),
    "CronJob": ([NAME, _col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                 _col("Active", "integer"), _col("Last Schedule"), AGE_COL,
                 _col("Containers", priority=1), _col("Images", priority=1),
                 _col("Selector", priority=1)], cronjob_row),
    "StorageClass": ([NAME, _col("Provisioner"), _col("ReclaimPolicy"), _col("VolumeBindingMode"),
                      _col("AllowVolumeExpansion"), AGE_COL], sc_row),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
               _col("Subobject", priority=1), _col("Source", priority=1), _col("Message"),
               _col("First Seen", priority=1), _col("Count", priority=1),
               _col("Name", priority=1, fmt="name")], event_row),
    "Namespace": ([NAME, _col("Status"), AGE_COL], ns_row),
    "Service": ([NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                 AGE_COL, _col("Selector", priority=1)], svc_row),
    "ConfigMap": ([NAME, _col("Data"), AGE_COL],
                  lambda o: [_meta(o).get("name"), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                             age(_meta(o).get("creationTimestamp"))]),
    "Secret": ([NAME, _col("Type"), _col("Data"), AGE_COL],
               lambda o: [_meta(o).get("name"), o.get("type", "Opaque"), len(o.get("data") or {}),
                          age(_meta(o).get("creationTimestamp"))]),
    "ServiceAccount": ([NAME, _col("Secrets"), AGE_COL],
                       lambda o: [_meta(o).get("name"), len(o.get("secrets") or []),
                                  age(_meta(o).get("creationTimestamp"))]),
    "Lease": ([NAME, _col("Holder"), AGE_COL],
              lambda o: [_meta(o).get("name"), _g(o, "spec", "holderIdentity", default=""),
                         age(_meta(o).get("creationTimestamp"))]),
    "Role": ([NAME, _col("Created At", fmt="date-time")], created_at),
    "ClusterRole": ([NAME, _col("Created At", fmt="date-time")], created_at),
    "RoleBinding": ([NAME, _col("Role"), AGE_COL, _col("Users", priority=1),
                     _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], binding_row),
    "ClusterRoleBinding": ([NAME, _col("Role"), AGE_COL, _col("Users", priority=1),
                            _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], binding_row),
    "CustomResourceDefinition": ([NAME, _col("Created At", fmt="date-time")], created_at),
}


def _jsonpath(obj, path):
    """The subset of JSONPath CRD printer columns use: .a.b, .a[0].b, .a['x.y']."""
    import re
    cur = obj
    for tok in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\['([^']+)'\]", path or ""):
        key = tok[0] or tok[2]
        if tok[1]:
            if not isinstance(cur, list) or int(tok[1]) >= len(cur):
                return None
            cur = cur[int(tok[1])]
        else:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
    return cur


def custom_columns(rtype):
    from .resources import crd_version
    version = crd_version(rtype.crd, rtype.version)
    cols = version.get("additionalPrinterColumns")
    if cols is None:
        cols = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return cols


def definitions(rtype):
    if rtype.crd is not None:
        defs = [NAME]
        for c in custom_columns(rtype):
            defs.append(_col(c.get("name"), "string" if c.get("type") == "date" else c.get("type", "string"),
                             c.get("priority", 0), c.get("format", ""), c.get("description", "")))
        return defs
    if rtype.kind in PRINTERS:
        return PRINTERS[rtype.kind][0]
    return [NAME, _col("Created At", fmt="date-time")]


def row_cells(rtype, obj):
    if rtype.crd is not None:
        cells = [_meta(obj).get("name")]
        for c in custom_columns(rtype):
            v = _jsonpath(obj, c.get("jsonPath"))
            if c.get("type") == "date":
                v = age(v) if v else "<unknown>"
            elif v is None:
                v = None
            cells.append(v)
        return cells
    if rtype.kind in PRINTERS:
        return PRINTERS[rtype.kind][1](obj)
    return created_at(obj)


def partial_metadata(obj):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def to_table(rtype, objs, include_object="Metadata", list_meta=None, headers=True):
    rows = []
    for o in objs:
        row = {"cells": row_cells(rtype, o)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = partial_metadata(o)
        rows.append(row)
    table = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
             "columnDefinitions": definitions(rtype) if headers else [], "rows": rows}
    return table
