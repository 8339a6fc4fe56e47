"""Field schemas: strict field validation (fieldValidation=Strict) and the OpenAPI v3 documents.

The built-in kinds are described here compactly, deep enough to catch the mistakes people make
in manifests (a misspelt field of a PVC, PV, StorageClass, StatefulSet, Pod container, ...).
Where a subtree is not described it is ANY and accepted as it is. The same descriptions give
kubectl its OpenAPI v3 documents.

Notation: "string" | "integer" | "boolean" | "number" | "quantity" (int-or-string) | ANY,
{"field": schema, ...} an object with known fields, [schema] a list, ("map", schema) a map.
"""

import json

ANY = "any"
S, I, B, Q = "string", "integer", "boolean", "quantity"
MAP_S = ("map", S)

OBJECT_META = {
    "name": S, "generateName": S, "namespace": S, "selfLink": S, "uid": S,
    "resourceVersion": S, "generation": I, "creationTimestamp": S, "deletionTimestamp": S,
    "deletionGracePeriodSeconds": I, "labels": MAP_S, "annotations": MAP_S,
    "ownerReferences": [{"apiVersion": S, "kind": S, "name": S, "uid": S,
                         "controller": B, "blockOwnerDeletion": B}],
    "finalizers": [S], "managedFields": [ANY],
}

LABEL_SELECTOR = {"matchLabels": MAP_S,
                  "matchExpressions": [{"key": S, "operator": S, "values": [S]}]}

CONTAINER = {k: ANY for k in (
    "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe",
    "startupProbe", "lifecycle", "securityContext")}
CONTAINER.update({"name": S, "image": S, "imagePullPolicy": S, "restartPolicy": S,
                  "terminationMessagePath": S, "terminationMessagePolicy": S,
                  "stdin": B, "stdinOnce": B, "tty": B})

POD_SPEC = {k: ANY for k in (
    "volumes", "ephemeralContainers", "securityContext", "imagePullSecrets", "affinity",
    "tolerations", "hostAliases", "dnsConfig", "readinessGates", "overhead",
    "topologySpreadConstraints", "os", "schedulingGates", "resourceClaims", "resources")}
POD_SPEC.update({
    "containers": [CONTAINER], "initContainers": [CONTAINER], "restartPolicy": S,
    "terminationGracePeriodSeconds": I, "activeDeadlineSeconds": I, "dnsPolicy": S,
    "nodeSelector": MAP_S, "serviceAccountName": S, "serviceAccount": S,
    "automountServiceAccountToken": B, "nodeName": S, "hostNetwork": B, "hostPID": B,
    "hostIPC": B, "shareProcessNamespace": B, "hostname": S, "subdomain": S,
    "schedulerName": S, "priorityClassName": S, "priority": I, "runtimeClassName": S,
    "enableServiceLinks": B, "preemptionPolicy": S, "setHostnameAsFQDN": B, "hostUsers": B})

POD_TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}

PVC_SPEC = {"accessModes": [S], "selector": LABEL_SELECTOR,
            "resources": {"limits": ("map", Q), "requests": ("map", Q)},
            "volumeName": S, "storageClassName": S, "volumeMode": S,
            "dataSource": ANY, "dataSourceRef": ANY, "volumeAttributesClassName": S}

PV_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "nfs", "rbd", "iscsi",
              "cinder", "cephfs", "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume",
              "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO",
              "storageos", "csi", "hostPath", "local")

PV_SPEC = {k: ANY for k in PV_SOURCES}
PV_SPEC.update({
    "hostPath": {"path": S, "type": S}, "local": {"path": S, "fsType": S},
    "capacity": ("map", Q), "accessModes": [S],
    "claimRef": {"kind": S, "namespace": S, "name": S, "uid": S, "apiVersion": S,
                 "resourceVersion": S, "fieldPath": S},
    "persistentVolumeReclaimPolicy": S, "storageClassName": S, "mountOptions": [S],
    "volumeMode": S, "nodeAffinity": ANY, "volumeAttributesClassName": S})

STS_SPEC = {
    "replicas": I, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE,
    "volumeClaimTemplates": [{"apiVersion": S, "kind": S, "metadata": OBJECT_META,
                              "spec": PVC_SPEC, "status": ANY}],
    "serviceName": S, "podManagementPolicy": S, "updateStrategy": ANY,
    "revisionHistoryLimit": I, "minReadySeconds": I,
    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": S, "whenScaled": S},
    "ordinals": {"start": I}}


def kind_schema(fields):
    """Top-level object: apiVersion, kind, metadata plus the kind's own fields."""
    out = {"apiVersion": S, "kind": S, "metadata": OBJECT_META}
    out.update(fields)
    return out


def spec_status(spec=ANY):
    return kind_schema({"spec": spec, "status": ANY})


# kind -> schema of the whole object (apps/batch kinds not listed here are spec/status ANY)
BUILTIN = {
    "Namespace": spec_status(),
    "Node": spec_status(),
    "Pod": spec_status(POD_SPEC),
    "Service": spec_status(),
    "Event": kind_schema({k: ANY for k in (
        "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
        "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
        "reportingInstance")}),
    "PersistentVolume": spec_status(PV_SPEC),
    "PersistentVolumeClaim": spec_status(PVC_SPEC),
    "ConfigMap": kind_schema({"data": MAP_S, "binaryData": MAP_S, "immutable": B}),
    "Secret": kind_schema({"data": MAP_S, "stringData": MAP_S, "type": S, "immutable": B}),
    "ServiceAccount": kind_schema({"secrets": ANY, "imagePullSecrets": ANY,
                                   "automountServiceAccountToken": B}),
    "StorageClass": kind_schema({"provisioner": S, "parameters": MAP_S, "reclaimPolicy": S,
                                 "mountOptions": [S], "allowVolumeExpansion": B,
                                 "volumeBindingMode": S, "allowedTopologies": ANY}),
    "StatefulSet": spec_status(STS_SPEC),
    "Lease": kind_schema({"spec": ANY}),
    "Role": kind_schema({"rules": ANY}),
    "ClusterRole": kind_schema({"rules": ANY, "aggregationRule": ANY}),
    "RoleBinding": kind_schema({"subjects": ANY, "roleRef": ANY}),
    "ClusterRoleBinding": kind_schema({"subjects": ANY, "roleRef": ANY}),
}


def schema_for_kind(kind):
    return BUILTIN.get(kind, spec_status())


# ---- strict field checking ----

def unknown_fields(obj, schema, path=""):
    """Paths of fields that the schema does not know, e.g. ['spec.foo']."""
    found = []
    if schema == ANY or obj is None:
        return found
    if isinstance(schema, dict) and isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else key
            if key.startswith("$"):
                continue  # strategic merge patch directives ($patch, $setElementOrder/...)
            if key not in schema:
                found.append(sub)
            else:
                found.extend(unknown_fields(value, schema[key], sub))
    elif isinstance(schema, list) and isinstance(obj, list):
        for i, item in enumerate(obj):
            found.extend(unknown_fields(item, schema[0], f"{path}[{i}]"))
    elif isinstance(schema, tuple) and isinstance(obj, dict):
        for key, value in obj.items():
            if not key.startswith("$"):
                found.extend(unknown_fields(value, schema[1], f"{path}.{key}" if path else key))
    return found


_PY_TYPES = {S: (str,), I: (int,), B: (bool,), "number": (int, float), Q: (str, int, float)}
_GO_TYPES = {S: "string", I: "int64", B: "bool", "number": "float64", Q: "resource.Quantity"}


def type_errors(obj, schema, path=""):
    """First JSON type mismatch as (path, expected go type, json type) or None."""
    if schema == ANY or obj is None:
        return None
    if isinstance(schema, str):
        ok = isinstance(obj, _PY_TYPES[schema])
        if schema in (I, "number") and isinstance(obj, bool):
            ok = False
        if not ok:
            return path, _GO_TYPES[schema], _json_type(obj)
        if schema == Q and isinstance(obj, str):
            from . import quantity
            try:
                quantity.parse(obj)
            except quantity.QuantityError:
                return path, "quantity-format", quantity.MSG  # the decoder refuses it (400)
        return None
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            return path, "object", _json_type(obj)
        for key, value in obj.items():
            if key in schema and not key.startswith("$"):
                err = type_errors(value, schema[key], f"{path}.{key}" if path else key)
                if err:
                    return err
        return None
    if isinstance(schema, list):
        if not isinstance(obj, list):
            return path, "array", _json_type(obj)
        for item in obj:
            if isinstance(item, dict) and "$patch" in item:
                continue
            err = type_errors(item, schema[0], path)
            if err:
                return err
        return None
    if isinstance(schema, tuple):
        if not isinstance(obj, dict):
            return path, "map", _json_type(obj)
        for key, value in obj.items():
            if key.startswith("$"):
                continue
            err = type_errors(value, schema[1], f"{path}.{key}" if path else key)
            if err:
                return err
    return None


def _json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def duplicate_fields(raw_bytes):
    """Duplicate keys of a JSON document, as paths ('metadata.name')."""
    dups = []

    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                dups.append(k)
            seen.add(k)
        return dict(pairs)

    try:
        json.loads(raw_bytes, object_pairs_hook=hook)
    except ValueError:
        pass
    return dups


def prune_builtin(obj, schema):
    """Drop fields the schema does not know, as decoding into the Go types does."""
    if schema == ANY or obj is None:
        return obj
    if isinstance(schema, dict) and isinstance(obj, dict):
        for key in list(obj):
            if key not in schema:
                del obj[key]
            else:
                prune_builtin(obj[key], schema[key])
    elif isinstance(schema, list) and isinstance(obj, list):
        for item in obj:
            prune_builtin(item, schema[0])
    elif isinstance(schema, tuple) and isinstance(obj, dict):
        for value in obj.values():
            prune_builtin(value, schema[1])
    return obj


# ---- OpenAPI v3 rendering ----

def to_openapi(schema):
    if schema == ANY:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if schema == Q:
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    if isinstance(schema, str):
        return {"type": schema}
    if isinstance(schema, list):
        return {"type": "array", "items": to_openapi(schema[0])}
    if isinstance(schema, tuple):
        return {"type": "object", "additionalProperties": to_openapi(schema[1])}
    return {"type": "object", "properties": {k: to_openapi(v) for k, v in schema.items()}}


# ---- CRD structural schemas (openAPIV3Schema) ----

def crd_unknown_fields(obj, schema, path=""):
    """Fields a CRD schema does not declare (these are pruned, or rejected when Strict)."""
    found = []
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else key
            if (not path and key in ("apiVersion", "kind", "metadata")) or key.startswith("$"):
                continue
            if props is not None and key in props:
                found.extend(crd_unknown_fields(value, props[key], sub))
            elif isinstance(addl, dict):
                found.extend(crd_unknown_fields(value, addl, sub))
            elif addl is True:
                continue
            elif props is not None or schema.get("type") == "object":
                found.append(sub)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found.extend(crd_unknown_fields(item, schema["items"], f"{path}[{i}]"))
    return found


def prune(obj, schema, top=True):
    """Drop undeclared fields in place, as the real server does for structural schemas."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for key in list(obj):
            if top and key in ("apiVersion", "kind", "metadata"):
                continue
            if props is not None and key in props:
                prune(obj[key], props[key], False)
            elif isinstance(addl, dict):
                prune(obj[key], addl, False)
            elif addl is True:
                continue
            elif props is not None or schema.get("type") == "object":
                del obj[key]
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            prune(item, schema["items"], False)
    return obj


def crd_validate(obj, schema, path=""):
    """Type, enum, required, minimum/maximum checks; returns field errors."""
    from . import errors  # local: errors does not depend on schema

    errs = []
    if not isinstance(schema, dict) or obj is None:
        return errs
    t = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    wrong = False
    if t == "integer":
        wrong = not isinstance(obj, int) or isinstance(obj, bool)
    elif t == "number":
        wrong = not isinstance(obj, (int, float)) or isinstance(obj, bool)
    elif t in checks:
        wrong = not isinstance(obj, checks[t])
    if schema.get("x-kubernetes-int-or-string") and isinstance(obj, (int, str)):
        wrong = False
    if wrong:
        errs.append(errors.FieldError("Invalid", path or "<root>", obj,
                                      f"{path or 'body'} in body must be of type {t}: {json.dumps(_json_type(obj))}"))
        return errs
    if "enum" in schema and obj not in schema["enum"]:
        errs.append(errors.not_supported(path, obj, schema["enum"]))
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if "minimum" in schema and obj < schema["minimum"]:
            errs.append(errors.invalid(path, obj, f"{path} in body should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and obj > schema["maximum"]:
            errs.append(errors.invalid(path, obj, f"{path} in body should be less than or equal to {schema['maximum']}"))
    if isinstance(obj, str) and "pattern" in schema:
        import re
        if not re.search(schema["pattern"], obj):
            errs.append(errors.invalid(path, obj, f"{path} in body should match '{schema['pattern']}'"))
    if isinstance(obj, dict):
        for req in schema.get("required", []) or []:
            if req not in obj:
                errs.append(errors.required(f"{path}.{req}" if path else req))
        props = schema.get("properties") or {}
        for key, value in obj.items():
            if not path and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = f"{path}.{key}" if path else key
            if key in props:
                errs.extend(crd_validate(value, props[key], sub))
            elif isinstance(schema.get("additionalProperties"), dict):
                errs.extend(crd_validate(value, schema["additionalProperties"], sub))
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            errs.extend(crd_validate(item, schema["items"], f"{path}[{i}]"))
    return errs
