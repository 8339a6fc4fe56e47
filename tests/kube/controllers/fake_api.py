"""An in-memory stand-in for the emulator's in-process `api` client, for the controllers' unit
tests (test_controllers.py). It keeps the contract the controllers rely on (README of
tests/kube): deep copies in and out, resourceVersions and 409 on stale updates, uids,
creationTimestamp, generation on spec changes, status subresource, JSON merge patch, initial
status phases, finalizers keeping a deleted object with a deletionTimestamp, and subscribe()
callbacks after the lock is released. It also records every write, for assertions.
"""

import copy
import datetime
import itertools
import threading
import uuid


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


_INITIAL_STATUS = {
    "persistentvolumeclaims": {"phase": "Pending"},
    "persistentvolumes": {"phase": "Pending"},
    "pods": {"phase": "Pending"},
}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selector_matches(selector, labels):
    if not selector:
        return True
    for part in selector.split(","):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in part:
            k, v = part.split("=", 1)
            if labels.get(k.strip()) != v.strip().lstrip("="):
                return False
        elif labels.get(part.strip()) is None:
            return False
    return True


class FakeApi:
    ApiError, NotFound, AlreadyExists, Conflict, Invalid = ApiError, NotFound, AlreadyExists, Conflict, Invalid

    def __init__(self):
        self._lock = threading.RLock()
        self._objects = {}     # (resource, namespace, name) -> obj
        self._rv = itertools.count(1)
        self._subscribers = []
        self.writes = []       # (verb, resource, namespace, name, subresource)

    # -- helpers ------------------------------------------------------------------------

    def now(self):
        return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def subscribe(self, callback):
        self._subscribers.append(callback)

    def _notify(self, events):
        for event_type, resource, obj in events:
            for callback in self._subscribers:
                callback(event_type, resource, copy.deepcopy(obj))

    def _commit(self, resource, obj):
        md = obj["metadata"]
        md["resourceVersion"] = str(next(self._rv))
        self._objects[(resource, md.get("namespace"), md["name"])] = obj

    # -- the client ---------------------------------------------------------------------

    def get(self, resource, namespace, name):
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource, namespace=None, label_selector=None, field_selector=None):
        with self._lock:
            found = [copy.deepcopy(obj) for (res, ns, _), obj in self._objects.items()
                     if res == resource and (namespace is None or ns == namespace)
                     and _selector_matches(label_selector, obj["metadata"].get("labels") or {})]
        if field_selector:
            key, value = field_selector.split("=", 1)
            path = key.split(".")

            def field(obj):
                for p in path:
                    obj = (obj or {}).get(p)
                return obj or ""
            found = [obj for obj in found if field(obj) == value]
        return found

    def create(self, resource, namespace, obj):
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if namespace:
            md["namespace"] = namespace
        if not md.get("name"):
            raise Invalid("metadata.name: Required value")
        with self._lock:
            key = (resource, namespace, md["name"])
            if key in self._objects:
                raise AlreadyExists(f'{resource} "{md["name"]}" already exists')
            if resource == "persistentvolumeclaims" and "storageClassName" not in obj.get("spec", {}):
                # The DefaultStorageClass admission plug-in (the emulator has it too).
                for (res, _, name), sc in self._objects.items():
                    if res == "storageclasses.storage.k8s.io" and (sc["metadata"].get("annotations") or {}).get(
                            "storageclass.kubernetes.io/is-default-class") == "true":
                        obj.setdefault("spec", {})["storageClassName"] = name
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = self.now()
            md["generation"] = 1
            if resource in _INITIAL_STATUS and not (obj.get("status") or {}).get("phase"):
                obj["status"] = dict(_INITIAL_STATUS[resource])
            self._commit(resource, obj)
            self.writes.append(("create", resource, namespace, md["name"], None))
            result = copy.deepcopy(obj)
        self._notify([("ADDED", resource, result)])
        return result

    def update(self, resource, namespace, obj, subresource=None):
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        with self._lock:
            key = (resource, namespace, md["name"])
            old = self._objects.get(key)
            if old is None:
                raise NotFound(f'{resource} "{md["name"]}" not found')
            if md.get("resourceVersion") and md["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on {resource} "{md["name"]}": '
                               f'the object has been modified; please apply your changes to the '
                               f'latest version and try again')
            new = self._apply(old, obj, subresource)
            return self._finish_write("update", resource, namespace, new, subresource)

    def patch(self, resource, namespace, name, merge, subresource=None):
        with self._lock:
            key = (resource, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise NotFound(f'{resource} "{name}" not found')
            patched = merge_patch(copy.deepcopy(old), merge)
            patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            new = self._apply(old, patched, subresource)
            return self._finish_write("patch", resource, namespace, new, subresource)

    def _apply(self, old, obj, subresource):
        new = copy.deepcopy(old)
        if subresource == "status":
            new["status"] = obj.get("status")
        else:
            for field, value in obj.items():
                if field not in ("status", "metadata"):
                    new[field] = value
            if "status" in obj and "status" not in old:
                new["status"] = obj["status"]
            for field in ("labels", "annotations", "ownerReferences", "finalizers"):
                if field in obj["metadata"]:
                    new["metadata"][field] = obj["metadata"][field]
                else:
                    new["metadata"].pop(field, None)
            if new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        return new

    def _finish_write(self, verb, resource, namespace, new, subresource):
        md = new["metadata"]
        key = (resource, namespace, md["name"])
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            del self._objects[key]
            self.writes.append((verb, resource, namespace, md["name"], subresource))
            result = copy.deepcopy(new)
            events = [("DELETED", resource, result)]
        else:
            self._commit(resource, new)
            self.writes.append((verb, resource, namespace, md["name"], subresource))
            result = copy.deepcopy(new)
            events = [("MODIFIED", resource, result)]
        self._lock.release()
        try:
            self._notify(events)
        finally:
            self._lock.acquire()
        return result

    def delete(self, resource, namespace, name, propagation=None):
        with self._lock:
            key = (resource, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise NotFound(f'{resource} "{name}" not found')
            self.writes.append(("delete", resource, namespace, name, propagation))
            if old["metadata"].get("finalizers") or propagation in ("Foreground", "Orphan"):
                new = copy.deepcopy(old)
                if propagation == "Foreground":
                    new["metadata"].setdefault("finalizers", []).append("foregroundDeletion")
                elif propagation == "Orphan":
                    new["metadata"].setdefault("finalizers", []).append("orphan")
                new["metadata"].setdefault("deletionTimestamp", self.now())
                self._commit(resource, new)
                result, event = copy.deepcopy(new), "MODIFIED"
            else:
                del self._objects[key]
                old["metadata"]["resourceVersion"] = str(next(self._rv))
                result, event = None, "DELETED"
            notified = copy.deepcopy(result if result is not None else old)
        self._notify([(event, resource, notified)])
        return result

    # -- test conveniences -----------------------------------------------------------------

    def count_writes(self, verb=None, resource=None):
        return sum(1 for w in self.writes
                   if (verb is None or w[0] == verb) and (resource is None or w[1] == resource))
