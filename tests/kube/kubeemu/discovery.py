"""Discovery (/version, /api, /apis, APIResourceLists) and the OpenAPI v3 documents kubectl
reads to decide that the server validates fields itself (fieldValidation)."""

import hashlib
import json

from . import resources, schema

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "kubeemu",
           "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
           "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group, versions):
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry):
    groups = registry.groups()
    order = [g for g in resources.BUILTIN_GROUPS if g in groups] + \
            sorted(g for g in groups if g not in resources.BUILTIN_GROUPS)
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, groups[g]) for g in order]}


def api_group(registry, group):
    groups = registry.groups()
    if group not in groups:
        return None
    out = _group_entry(group, groups[group])
    out.update({"kind": "APIGroup", "apiVersion": "v1"})
    return out


def resource_list(registry, group, version):
    types = [t for t in registry.all() if t.group == group and t.version == version]
    if not types:
        return None
    out = []
    for t in types:
        entry = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                 "kind": t.kind, "verbs": list(t.verbs),
                 "storageVersionHash": hashlib.sha256(t.key.encode()).hexdigest()[:11]}
        if t.short_names:
            entry["shortNames"] = t.short_names
        if t.categories:
            entry["categories"] = t.categories
        out.append(entry)
        if t.status:
            out.append({"name": f"{t.plural}/status", "singularName": "", "namespaced": t.namespaced,
                        "kind": t.kind, "verbs": ["get", "patch", "update"]})
        if t.scale:
            out.append({"name": f"{t.plural}/scale", "singularName": "", "namespaced": t.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale",
                        "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


# ---- OpenAPI v3 ----

_PKG = {"": "io.k8s.api.core", "apps": "io.k8s.api.apps", "batch": "io.k8s.api.batch",
        "storage.k8s.io": "io.k8s.api.storage", "rbac.authorization.k8s.io": "io.k8s.api.rbac",
        "coordination.k8s.io": "io.k8s.api.coordination",
        "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"}


def definition_name(t):
    if t.group in _PKG:
        return f"{_PKG[t.group]}.{t.version}.{t.kind}"
    return ".".join(reversed(t.group.split("."))) + f".{t.version}.{t.kind}"


def gv_path(group, version):
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _param(name, desc):
    return {"name": name, "in": "query", "description": desc, "schema": {"type": "string", "uniqueItems": True}}


_WRITE_PARAMS = [_param("dryRun", "When present, indicates that modifications should not be persisted."),
                 _param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
                 _param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.")]


def _op(t, action, op_id, body=False):
    gvk = {"group": t.group, "version": t.version, "kind": t.kind}
    ref = {"$ref": f"#/components/schemas/{definition_name(t)}"}
    op = {"operationId": op_id, "tags": [t.group or "core"],
          "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
          "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    if body:
        op["parameters"] = list(_WRITE_PARAMS)
        ctype = "application/merge-patch+json" if action == "patch" else "*/*"
        op["requestBody"] = {"content": {ctype: {"schema": ref}}, "required": True}
    return op


def openapi_document(registry, group, version):
    types = [t for t in registry.all() if t.group == group and t.version == version]
    if not types:
        return None
    paths, schemas = {}, {}
    for t in types:
        if t.virtual:
            continue
        prefix = "/" + gv_path(group, version)
        coll = f"{prefix}/namespaces/{{namespace}}/{t.plural}" if t.namespaced else f"{prefix}/{t.plural}"
        ident = (t.group.split(".")[0].capitalize() if t.group else "Core") + t.version.capitalize() + \
                ("Namespaced" if t.namespaced else "") + t.kind
        paths[coll] = {"get": _op(t, "list", "list" + ident), "post": _op(t, "post", "create" + ident, True)}
        paths[coll + "/{name}"] = {"get": _op(t, "get", "read" + ident),
                                   "put": _op(t, "put", "replace" + ident, True),
                                   "patch": _op(t, "patch", "patch" + ident, True),
                                   "delete": _op(t, "delete", "delete" + ident)}
        if t.crd is not None:
            body = dict(t.schema() or {"type": "object"})
            props = dict(body.get("properties") or {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
            body["properties"] = props
        else:
            body = schema.to_openapi(t.schema())
        body["x-kubernetes-group-version-kind"] = [{"group": t.group, "version": t.version, "kind": t.kind}]
        schemas[definition_name(t)] = body
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_index(registry):
    out = {}
    gvs = {("", "v1")} | {(t.group, t.version) for t in registry.all()}
    for group, version in sorted(gvs):
        doc = openapi_document(registry, group, version)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        path = gv_path(group, version)
        out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": out}
