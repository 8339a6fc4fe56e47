"""Just enough Kubernetes protobuf decoding for kubectl's typed `create` generators.

`kubectl create namespace|configmap|secret|serviceaccount|service|token ...`,
`kubectl create job NAME --from=cronjob/CRONJOB` and `kubectl auth can-i` send
application/vnd.kubernetes.protobuf bodies (the "k8s\\0" envelope around a runtime.Unknown).
The emulator answers in JSON (kubectl accepts it) and decodes request bodies of these kinds
with the field numbers of k8s.io/api's generated.proto. Other kinds get 415 with a hint.
"""

from . import errors

MAGIC = b"k8s\x00"


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf):
    """[(number, value)] where value is int (varint) or bytes (length-delimited)."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError("unsupported wire type")
        out.append((num, v))
    return out


def _s(b):
    return b.decode("utf-8")


def _map(entries, value=_s):
    out = {}
    for raw in entries:
        kv = dict(fields(raw))
        out[_s(kv.get(1, b""))] = value(kv.get(2, b""))
    return out


def _meta(buf):
    meta, labels, annotations, finalizers = {}, [], [], []
    for num, v in fields(buf):
        if num in (1, 2, 3) and v:
            meta[{1: "name", 2: "generateName", 3: "namespace"}[num]] = _s(v)
        elif num == 11:
            labels.append(v)
        elif num == 12:
            annotations.append(v)
        elif num == 14:
            finalizers.append(_s(v))
    if labels:
        meta["labels"] = _map(labels)
    if annotations:
        meta["annotations"] = _map(annotations)
    if finalizers:
        meta["finalizers"] = finalizers
    return meta


def _b64(b):
    import base64
    return base64.b64encode(b).decode()


def _int_or_string(buf):
    f = dict(fields(buf))
    return _s(f.get(3, b"")) if f.get(1) == 1 else f.get(2, 0)


def _service_spec(buf):
    spec, ports, selector, ips = {}, [], [], []
    for num, v in fields(buf):
        if num == 1:
            p = {}
            for pn, pv in fields(v):
                if pn == 1:
                    p["name"] = _s(pv)
                elif pn == 2:
                    p["protocol"] = _s(pv)
                elif pn == 3:
                    p["port"] = pv
                elif pn == 4:
                    p["targetPort"] = _int_or_string(pv)
                elif pn == 5:
                    p["nodePort"] = pv
            ports.append(p)
        elif num == 2:
            selector.append(v)
        elif num == 3:
            spec["clusterIP"] = _s(v)
        elif num == 4:
            spec["type"] = _s(v)
        elif num == 5:
            ips.append(_s(v))
        elif num == 11:
            spec["externalName"] = _s(v)
    if ports:
        spec["ports"] = ports
    if selector:
        spec["selector"] = _map(selector)
    if ips:
        spec["externalIPs"] = ips
    return spec


# Jobs (`kubectl create job NAME --from=cronjob/CRONJOB`): decoded by a table of the
# k8s.io/api generated.proto field numbers of what a Job built from a CronJob's template holds.
# type: "str", "int" (also int64, two's complement), "bool", "qty" (resource.Quantity), a
# message name of _TYPES, "skip" (server-set), or [type] for repeated and {type} for a map of
# string to type. Strings are omitted when empty (omitempty); ints and bools only travel when
# set (pointers) or are left out of the table (non-pointer fields, zero unless set). A field
# not in the table that carries a value is refused (415): never dropped silently.
_TYPES = {
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "skip")},
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
                   4: ("selfLink", "skip"), 5: ("uid", "skip"), 6: ("resourceVersion", "str"),
                   7: ("generation", "skip"), 8: ("creationTimestamp", "skip"),
                   11: ("labels", {"str"}), 12: ("annotations", {"str"}),
                   13: ("ownerReferences", ["OwnerReference"]), 14: ("finalizers", ["str"])},
    "OwnerReference": {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                       5: ("apiVersion", "str"), 6: ("controller", "bool"),
                       7: ("blockOwnerDeletion", "bool")},
    "JobSpec": {1: ("parallelism", "int"), 2: ("completions", "int"),
                3: ("activeDeadlineSeconds", "int"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "int"), 8: ("ttlSecondsAfterFinished", "int"),
                9: ("completionMode", "str"), 10: ("suspend", "bool")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", ["Container"]), 3: ("restartPolicy", "str"),
                4: ("terminationGracePeriodSeconds", "int"), 6: ("dnsPolicy", "str"),
                7: ("nodeSelector", {"str"}), 8: ("serviceAccountName", "str"),
                9: ("serviceAccount", "str"), 10: ("nodeName", "str"),
                14: ("securityContext", "PodSecurityContext"), 16: ("hostname", "str"),
                17: ("subdomain", "str"), 19: ("schedulerName", "str"),
                21: ("automountServiceAccountToken", "bool"), 24: ("priorityClassName", "str"),
                30: ("enableServiceLinks", "bool")},
    "Container": {1: ("name", "str"), 2: ("image", "str"), 3: ("command", ["str"]),
                  4: ("args", ["str"]), 5: ("workingDir", "str"), 7: ("env", ["EnvVar"]),
                  8: ("resources", "ResourceRequirements"),
                  13: ("terminationMessagePath", "str"), 14: ("imagePullPolicy", "str"),
                  15: ("securityContext", "SecurityContext"), 19: ("envFrom", ["EnvFromSource"]),
                  20: ("terminationMessagePolicy", "str")},
    "EnvVar": {1: ("name", "str"), 2: ("value", "str")},
    "EnvFromSource": {1: ("prefix", "str"), 2: ("configMapRef", "EnvSource"),
                      3: ("secretRef", "EnvSource")},
    "EnvSource": {1: (None, "LocalObjectReference"), 2: ("optional", "bool")},
    "LocalObjectReference": {1: ("name", "str")},
    "ResourceRequirements": {1: ("limits", {"qty"}), 2: ("requests", {"qty"})},
    "SecurityContext": {1: ("capabilities", "Capabilities"), 2: ("privileged", "bool"),
                        4: ("runAsUser", "int"), 5: ("runAsNonRoot", "bool"),
                        6: ("readOnlyRootFilesystem", "bool"),
                        7: ("allowPrivilegeEscalation", "bool"), 8: ("runAsGroup", "int"),
                        11: ("seccompProfile", "SeccompProfile")},
    "Capabilities": {1: ("add", ["str"]), 2: ("drop", ["str"])},
    "PodSecurityContext": {2: ("runAsUser", "int"), 3: ("runAsNonRoot", "bool"),
                           4: ("supplementalGroups", ["int"]), 5: ("fsGroup", "int"),
                           6: ("runAsGroup", "int"), 10: ("seccompProfile", "SeccompProfile")},
    "SeccompProfile": {1: ("type", "str"), 2: ("localhostProfile", "str")},
}


def _value(kind, v, where):
    if kind == "str":
        return _s(v)
    if kind == "int":
        return v - (1 << 64) if v >= 1 << 63 else v
    if kind == "bool":
        return bool(v)
    if kind == "qty":
        return _s(dict(fields(v)).get(1, b""))
    return _typed(v, kind, where)


def _typed(buf, name, where=""):
    out = {}
    where = f"{where}.{name}" if where else name
    for num, v in fields(buf):
        entry = _TYPES[name].get(num)
        if entry is None:
            if v in (0, b""):
                continue  # a non-pointer field at its zero value: what JSON omits
            raise errors.UnsupportedMediaType(
                f"the emulator cannot decode field {num} of protobuf {where}; create it from a "
                f"manifest (kubectl create -f) instead")
        key, kind = entry
        if kind == "skip":
            continue
        if isinstance(kind, list):
            out.setdefault(key, []).append(_value(kind[0], v, where))
        elif isinstance(kind, set):
            kv = dict(fields(v))
            out.setdefault(key, {})[_s(kv.get(1, b""))] = _value(next(iter(kind)),
                                                                kv.get(2, b""), where)
        elif key is None:
            out.update(_value(kind, v, where))  # an embedded struct (LocalObjectReference)
        elif kind == "str" and not v:
            continue
        else:
            out[key] = _value(kind, v, where)
    return out


def decode(body):
    """A JSON-style dict from a protobuf request body."""
    if not body.startswith(MAGIC):
        raise errors.BadRequest("protobuf body without the k8s envelope")
    env = dict(fields(body[len(MAGIC):]))
    tm = dict(fields(env.get(1, b"")))
    api_version, kind = _s(tm.get(1, b"")), _s(tm.get(2, b""))
    raw = env.get(2, b"")
    obj = {"apiVersion": api_version, "kind": kind}
    groups = {}
    for num, v in fields(raw):
        groups.setdefault(num, []).append(v)
    first = lambda n: groups.get(n, [None])[0]  # noqa: E731
    if first(1) is not None:
        obj["metadata"] = _meta(first(1))
    if kind == "Namespace":
        if first(2) is not None:
            fins = [_s(v) for n, v in fields(first(2)) if n == 1]
            obj["spec"] = {"finalizers": fins} if fins else {}
    elif kind == "ConfigMap":
        if 2 in groups:
            obj["data"] = _map(groups[2])
        if 3 in groups:
            obj["binaryData"] = _map(groups[3], _b64)
        if first(4) is not None:
            obj["immutable"] = bool(first(4))
    elif kind == "Secret":
        if 2 in groups:
            obj["data"] = _map(groups[2], _b64)
        if first(3) is not None:
            obj["type"] = _s(first(3))
        if 4 in groups:
            obj["stringData"] = _map(groups[4])
    elif kind == "ServiceAccount":
        if first(4) is not None:
            obj["automountServiceAccountToken"] = bool(first(4))
    elif kind == "Service":
        if first(2) is not None:
            obj["spec"] = _service_spec(first(2))
    elif kind == "TokenRequest":
        spec = {}
        for num, v in fields(first(2) or b""):
            if num == 1:
                spec.setdefault("audiences", []).append(_s(v))
            elif num == 4:
                spec["expirationSeconds"] = v
        obj["spec"] = spec
    elif kind == "Job":
        obj.update(_typed(raw, "Job"))
    elif kind in ("SelfSubjectAccessReview", "SubjectAccessReview"):
        spec = {}
        for num, v in fields(first(2) or b""):
            if num == 1:
                names = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource",
                         6: "subresource", 7: "name"}
                spec["resourceAttributes"] = {names[n]: _s(x) for n, x in fields(v) if n in names}
            elif num == 2:
                spec["nonResourceAttributes"] = {{1: "path", 2: "verb"}[n]: _s(x) for n, x in fields(v) if n in (1, 2)}
            elif num == 3 and kind == "SubjectAccessReview":
                spec["user"] = _s(v)
            elif num == 4 and kind == "SubjectAccessReview":
                spec.setdefault("groups", []).append(_s(v))
        obj["spec"] = spec
    else:
        raise errors.UnsupportedMediaType(
            f"the emulator cannot decode protobuf {kind} bodies; create it from a manifest "
            f"(kubectl create -f) instead")
    return obj
