"""The object store: one lock, a global resourceVersion, per-resource change history for watch
resumption, per-watcher queues, finalizers and deletionTimestamp, namespaces and CRDs.

Every write (HTTP or the in-process api) goes through Store.create/update/patch/delete, so
validation, defaulting, resourceVersions, watch events and controller notifications are the
same whichever way a change comes in. Watch events are appended to the history of their
resource and pushed to the queues of that resource's watchers under the lock (O(watchers of
that resource) per change); serialisation happens in the watchers' own threads, once per event
and encoding (Event.line), shared by all watchers that send it as it is.

A committed object is never modified in place: every write builds a new dict (from a copy of
the caller's body, a patch result or a clone of the old object) and replaces the old one. So
the history, the watcher queues and the events share the stored dicts without copying them;
only what leaves the store for a caller that may modify it (get, list, write results, the
subscribers' notifications) is copied, with jsonutil.clone.
"""

import collections
import datetime
import random
import threading
import uuid

from . import errors, patch as patchlib, resources, schema, selectors, validation
from . import jsonutil
from .jsonutil import clone

_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Event:
    __slots__ = ("rv", "type", "key", "obj", "old", "_json", "_lines")

    def __init__(self, rv, etype, key, obj, old):
        self.rv, self.type, self.key, self.obj, self.old = rv, etype, key, obj, old
        self._json = None
        self._lines = {}

    def line(self, etype):
        """The watch stream line {"type":etype,"object":obj} as bytes. A watcher may see a
        MODIFIED event as ADDED or DELETED (selectors), so lines are kept per type; the object
        is encoded once. Watcher threads race here harmlessly: each result is the same."""
        line = self._lines.get(etype)
        if line is None:
            if self._json is None:
                self._json = jsonutil.dumps(self.obj).encode()
            line = self._lines[etype] = b'{"type":"%s","object":%s}\n' % (etype.encode(), self._json)
        return line


class Watcher:
    """A queue of events for one watch request; filtering happens on the consumer side."""

    def __init__(self, rtype, namespace, label_reqs, field_reqs):
        self.rtype = rtype
        self.namespace = namespace
        self.label_reqs = label_reqs
        self.field_reqs = field_reqs
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.closed = False

    def push(self, item):
        with self.cond:
            self.queue.append(item)
            self.cond.notify()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify()

    def matches(self, obj):
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return (selectors.match_labels(self.label_reqs, meta.get("labels"))
                and selectors.match_fields(self.field_reqs, obj))

    def translate(self, event):
        """(type, obj) as this watcher should see it, or None to skip."""
        if event.type != "MODIFIED":
            return (event.type, event.obj) if self.matches(event.obj) else None
        now, before = self.matches(event.obj), event.old is not None and self.matches(event.old)
        if now and before:
            return "MODIFIED", event.obj
        if now:
            return "ADDED", event.obj
        if before:
            return "DELETED", event.obj
        return None

    def get(self, timeout):
        """Next raw item (Event or ('ADDED', obj) tuple) or None on timeout/close."""
        with self.cond:
            if not self.queue and not self.closed:
                self.cond.wait(timeout)
            if self.queue:
                return self.queue.popleft()
            return None

    def get_batch(self, timeout, limit):
        """Like get(), but every item already waiting (at most `limit`), in order; [] on
        timeout/close."""
        with self.cond:
            if not self.queue and not self.closed:
                self.cond.wait(timeout)
            n = min(len(self.queue), limit)
            return [self.queue.popleft() for _ in range(n)]


class Store:
    def __init__(self, registry, history=1000):
        self.registry = registry
        self.lock = threading.RLock()
        self.rv = 0
        self.objects = collections.defaultdict(dict)   # key -> {(ns, name): obj}
        self.history_size = history
        self.history = collections.defaultdict(lambda: collections.deque(maxlen=self.history_size))
        self.dropped = collections.defaultdict(int)    # key -> newest rv no longer in history
        self.watchers = collections.defaultdict(set)   # key -> {Watcher}
        self.subscribers = []
        self.protection_finalizers = False
        self.compacted_rv = 0  # continue tokens from before an explicit compaction expire
        self._namespace_controller = None  # started at the first namespace deletion
        self._svc_ip = 10

    # ---- helpers ----

    def _not_found(self, rtype, name):
        return errors.not_found(rtype.plural, rtype.group, name)

    def _commit(self, rtype, etype, obj, old, events):
        """Assign the next resourceVersion and record the change. Caller holds the lock."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = rtype.key
        meta = obj["metadata"]
        if etype == "DELETED":
            self.objects[key].pop((meta.get("namespace"), meta["name"]), None)
        else:
            self.objects[key][(meta.get("namespace"), meta["name"])] = obj
        ev = Event(self.rv, etype, key, obj, old)
        hist = self.history[key]
        if len(hist) == hist.maxlen:
            self.dropped[key] = hist[0].rv
        hist.append(ev)
        for w in self.watchers[key]:
            w.push(ev)
        events.append(ev)
        return obj

    def _notify(self, events):
        for ev in events:
            for cb in list(self.subscribers):
                try:
                    cb(ev.type, ev.key, clone(ev.obj))
                except Exception:  # a controller bug must not break the writer
                    import traceback
                    traceback.print_exc()

    def current_rv(self):
        with self.lock:
            return self.rv

    # ---- reads ----

    def get(self, rtype, namespace, name):
        with self.lock:
            obj = self.objects[rtype.key].get((namespace if rtype.namespaced else None, name))
            if obj is None:
                raise self._not_found(rtype, name)
            return clone(obj)

    def list(self, rtype, namespace=None, label_reqs=(), field_reqs=(), limit=0, start_after=None,
             at_rv=None):
        """Returns (items sorted by namespace/name, resourceVersion, continue key or None).
        at_rv: the objects as they were at that resourceVersion (resourceVersionMatch=Exact),
        rebuilt from the watch history; Gone when the history no longer reaches back there."""
        with self.lock:
            rv = self.rv
            objects = self.objects[rtype.key]
            if at_rv is not None and at_rv < rv:
                if at_rv < max(self.dropped[rtype.key], self.compacted_rv):
                    # etcd3 store interpretListError on ErrCompacted: errors.NewResourceExpired
                    raise errors.Gone("The resourceVersion for the provided list is too old.")
                objects = dict(objects)
                for ev in reversed(self.history[rtype.key]):
                    if ev.rv <= at_rv:
                        break
                    k = (ev.obj["metadata"].get("namespace"), ev.obj["metadata"]["name"])
                    if ev.type == "ADDED":
                        objects.pop(k, None)
                    else:
                        objects[k] = ev.old
                rv = at_rv
            keys = sorted(objects, key=lambda k: (k[0] or "", k[1]))
            out, last = [], None
            for k in keys:
                if start_after is not None and (k[0] or "", k[1]) <= tuple(start_after):
                    continue
                if namespace and k[0] != namespace:
                    continue
                obj = objects[k]
                if not selectors.match_labels(label_reqs, obj["metadata"].get("labels")):
                    continue
                if field_reqs and not selectors.match_fields(field_reqs, obj):
                    continue
                if limit and len(out) == limit:
                    return out, rv, last
                out.append(clone(obj))
                last = (k[0] or "", k[1])
            return out, rv, None

    # ---- watch ----

    def watch(self, rtype, namespace, rv, label_reqs, field_reqs):
        """Register a watcher. rv None/'0' replays current state as ADDED; a number resumes
        after it, or raises Gone when that part of the history is no longer kept."""
        w = Watcher(rtype, namespace, label_reqs, field_reqs)
        with self.lock:
            key = rtype.key
            if rv in (None, "", "0"):
                for obj in sorted(self.objects[key].values(),
                                  key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])):
                    w.push(("ADDED", clone(obj)))
            else:
                try:
                    since = int(rv)
                except ValueError:
                    raise errors.BadRequest(f"invalid resource version: {rv}")
                if since < self.dropped[key]:
                    hist = self.history[key]
                    raise errors.too_old(since, hist[0].rv - 1 if hist else self.rv)
                for ev in self.history[key]:
                    if ev.rv > since:
                        w.push(ev)
            self.watchers[key].add(w)
        return w

    def unwatch(self, w):
        with self.lock:
            self.watchers[w.rtype.key].discard(w)
        w.close()

    def compact(self):
        """Forget all history: every watch resuming from an older resourceVersion gets 410."""
        with self.lock:
            for key in list(self.history):
                self.history[key].clear()
            for t in self.registry.all():
                self.dropped[t.key] = self.rv
            self.compacted_rv = self.rv
            return self.rv

    def close_all_watchers(self):
        with self.lock:
            ws = [w for s in self.watchers.values() for w in s]
        for w in ws:
            w.close()

    # ---- decoding and validation ----

    def check_body(self, rtype, obj, raw=None, field_validation="Ignore", warnings=None):
        """What the decoder does: type/kind/apiVersion checks, strict unknown/duplicate fields."""
        if not isinstance(obj, dict):
            raise errors.BadRequest("the object provided is unrecognized (must be of type map)")
        where = f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}'
        if obj.get("apiVersion") not in (None, rtype.api_version):
            raise errors.BadRequest(f"the API version in the data ({obj.get('apiVersion')}) does not "
                                    f"match the expected API version ({rtype.api_version})")
        if obj.get("kind") not in (None, rtype.kind):
            raise errors.BadRequest(f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({rtype.kind})")
        if rtype.crd is None:
            bad = schema.type_errors(obj, rtype.schema())
            if bad and bad[1] == "quantity-format":
                raise errors.BadRequest(f"{where}: {bad[2]}")
            if bad:
                path, gotype, jtype = bad
                raise errors.BadRequest(f"{where}: json: cannot unmarshal {jtype} into Go struct "
                                        f"field {path} of type {gotype}")
            unknown = schema.unknown_fields(obj, rtype.schema())
        else:
            unknown = schema.crd_unknown_fields(obj, rtype.schema())
        dups = schema.duplicate_fields(raw) if raw else []
        if field_validation == "Strict" and (unknown or dups):
            msgs = [f'unknown field "{u}"' for u in unknown] + [f'json: duplicate field "{d}"' for d in dups]
            raise errors.BadRequest(f"{where}: strict decoding error: " + ", ".join(msgs))
        if field_validation == "Warn" and warnings is not None:
            warnings.extend(f'unknown field "{u}"' for u in unknown)
            warnings.extend(f'duplicate field "{d}"' for d in dups)

    @staticmethod
    def _prune(rtype, obj):
        if rtype.crd is not None:
            schema.prune(obj, rtype.schema())
        else:
            schema.prune_builtin(obj, rtype.schema())

    def _validate(self, rtype, obj, old, subresource=None):
        meta = obj.get("metadata") or {}
        if subresource == "status":
            errs = validation.validate_meta_update(meta, old["metadata"])
            fn = validation.STATUS_VALIDATORS.get(rtype.kind)
            if fn:
                errs += fn(obj, old)
        else:
            errs = validation.validate_meta(meta, rtype, old is None)
            if old is not None:
                errs += validation.validate_meta_update(meta, old["metadata"])
            fn = validation.KIND_VALIDATORS.get(rtype.kind)
            if fn:
                errs += fn(obj, old)
            if rtype.crd is not None:
                errs += schema.crd_validate(obj, rtype.schema())
        if errs:
            raise errors.invalid_error(rtype.kind, rtype.group, meta.get("name") or meta.get("generateName", ""), errs)

    # ---- admission (what the real server's admission plugins do) ----

    def _admit_create(self, rtype, obj):
        meta = obj["metadata"]
        if rtype.namespaced and meta.get("namespace"):  # a missing one is a validation error
            ns = self.objects["namespaces"].get((None, meta["namespace"]))
            if ns is None:
                raise errors.not_found("namespaces", "", meta["namespace"])
            if ns["metadata"].get("deletionTimestamp"):
                raise errors.Forbidden(
                    f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                    f'unable to create new content in namespace {meta["namespace"]} because it is being terminated',
                    details={"name": meta.get("name", ""), "kind": rtype.plural,
                             "causes": [{"reason": "NamespaceTerminating",
                                         "message": f"namespace {meta['namespace']} is being terminated",
                                         "field": "metadata.namespace"}]})
        if rtype.kind == "PersistentVolumeClaim":
            spec = obj["spec"]
            if "storageClassName" not in spec and "volume.beta.kubernetes.io/storage-class" not in (meta.get("annotations") or {}):
                default = self._default_storage_class()
                if default:
                    spec["storageClassName"] = default
            if self.protection_finalizers:
                self._add_finalizer(meta, "kubernetes.io/pvc-protection")
        if rtype.kind == "PersistentVolume" and self.protection_finalizers:
            self._add_finalizer(meta, "kubernetes.io/pv-protection")
        if rtype.kind == "Service":
            spec = obj.setdefault("spec", {})
            if not spec.get("clusterIP"):
                self._svc_ip += 1
                spec["clusterIP"] = f"10.96.{self._svc_ip // 250}.{self._svc_ip % 250 + 1}"
                spec["clusterIPs"] = [spec["clusterIP"]]

    def _default_service_account(self, namespace, events):
        """The service account controller gives every new namespace a 'default' account."""
        sa_t = self.registry.by_key("serviceaccounts")
        if (namespace, "default") in self.objects[sa_t.key]:
            return
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "default", "namespace": namespace, "uid": str(uuid.uuid4()),
                           "creationTimestamp": now_rfc3339()}}
        self._commit(sa_t, "ADDED", sa, None, events)

    @staticmethod
    def _add_finalizer(meta, fin):
        fins = meta.setdefault("finalizers", [])
        if fin not in fins:
            fins.append(fin)

    def _default_storage_class(self):
        best = None
        for sc in self.objects["storageclasses.storage.k8s.io"].values():
            ann = sc["metadata"].get("annotations") or {}
            if ann.get("storageclass.kubernetes.io/is-default-class") == "true":
                if best is None or sc["metadata"]["creationTimestamp"] >= best["metadata"]["creationTimestamp"]:
                    best = sc
        return best["metadata"]["name"] if best else None

    # ---- writes ----

    def create(self, rtype, namespace, obj, dry_run=False):
        obj = clone(obj)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rtype.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace or meta.get("namespace")
        else:
            meta.pop("namespace", None)
        for f in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "selfLink"):
            meta.pop(f, None)
        resources.apply_defaults(rtype, obj)
        status = obj.get("status")
        if rtype.status or rtype.crd is None:
            resources.initial_status(rtype, obj)
        if rtype.crd is not None and not rtype.status and status is not None:
            obj["status"] = status
        self._prune(rtype, obj)
        events = []
        with self.lock:
            # As BeforeCreate: the name is generated first, so messages show it.
            if not meta.get("name") and isinstance(meta.get("generateName"), str) and meta["generateName"]:
                # names.SimpleNameGenerator: the prefix is cut to 58 characters (63 - 5) first.
                base = meta["generateName"][:58]
                for _ in range(10):
                    cand = base + "".join(random.choice(_GEN_CHARS) for _ in range(5))
                    if (meta.get("namespace"), cand) not in self.objects[rtype.key]:
                        break
                meta["name"] = cand
            self._admit_create(rtype, obj)
            self._validate(rtype, obj, None)
            if (meta.get("namespace"), meta["name"]) in self.objects[rtype.key]:
                raise errors.already_exists(rtype.plural, rtype.group, meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rtype.generation:
                meta["generation"] = 1
            if dry_run:
                return clone(obj)
            if rtype.kind == "PersistentVolume":
                obj["status"]["lastPhaseTransitionTime"] = meta["creationTimestamp"]
            self._commit(rtype, "ADDED", obj, None, events)
            if rtype.kind == "CustomResourceDefinition":
                self.registry.set_crd(obj)
            if rtype.kind == "Namespace":
                self._default_service_account(meta["name"], events)
            result = clone(obj)
        self._notify(events)
        return result

    def update(self, rtype, namespace, name, obj, subresource=None, dry_run=False, _events=None):
        """PUT semantics. Checks resourceVersion if the body carries one."""
        events = [] if _events is None else _events
        with self.lock:
            result = self._update_locked(rtype, namespace, name, clone(obj), subresource, dry_run, events)
        if _events is None:
            self._notify(events)
        return result

    def _update_locked(self, rtype, namespace, name, obj, subresource, dry_run, events):
        key = (namespace if rtype.namespaced else None, name)
        old = self.objects[rtype.key].get(key)
        if not isinstance(obj, dict):
            raise errors.BadRequest("the object provided is unrecognized (must be of type map)")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if meta.get("name") and meta["name"] != name:
            raise errors.BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if old is None:
            raise self._not_found(rtype, name)
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, rtype.group, name)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        # Fields the server owns.
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "selfLink"):
            if f in old["metadata"]:
                meta[f] = old["metadata"][f]
            else:
                meta.pop(f, None)
        if subresource == "status":
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            obj = new
        else:
            if rtype.status:
                if "status" in old:
                    obj["status"] = clone(old["status"])
                else:
                    obj.pop("status", None)
            resources.apply_defaults(rtype, obj)
            self._prune(rtype, obj)
            if rtype.kind == "Namespace":
                # namespaceStrategy.PrepareForUpdate: only the finalize subresource (here the
                # namespace controller) changes spec.finalizers.
                obj.setdefault("spec", {})["finalizers"] = clone(
                    (old.get("spec") or {}).get("finalizers") or [])
        self._validate(rtype, obj, old, subresource)
        if rtype.kind == "PersistentVolume":
            new_phase = (obj.get("status") or {}).get("phase")
            if new_phase != (old.get("status") or {}).get("phase"):
                obj.setdefault("status", {})["lastPhaseTransitionTime"] = now_rfc3339()
        if rtype.generation and subresource != "status":
            changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")} != \
                      {k: v for k, v in old.items() if k not in ("metadata", "status")}
            if changed:
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if obj == old:
            return clone(old)  # no-op updates do not bump resourceVersion
        if dry_run:
            return clone(obj)
        if old["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers") \
                and not (rtype.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")):
            obj["metadata"].pop("finalizers", None)
            self._commit(rtype, "DELETED", obj, old, events)
            self._after_delete(rtype, obj, events)
            return clone(obj)
        self._commit(rtype, "MODIFIED", obj, old, events)
        if rtype.kind == "CustomResourceDefinition":
            self.registry.set_crd(obj)
        return clone(obj)

    def patch(self, rtype, namespace, name, patch_type, body, subresource=None, dry_run=False):
        events = []
        with self.lock:
            key = (namespace if rtype.namespaced else None, name)
            old = self.objects[rtype.key].get(key)
            if old is None:
                raise self._not_found(rtype, name)
            if patch_type == "merge":
                if not isinstance(body, dict):
                    raise errors.BadRequest("patch body must be a JSON object")
                new = patchlib.merge_patch(old, body)
            elif patch_type == "strategic":
                if rtype.crd is not None:
                    raise errors.UnsupportedMediaType(
                        "the body of the request was in an unknown format - accepted media types include: "
                        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
                if not isinstance(body, dict):
                    raise errors.BadRequest("patch body must be a JSON object")
                new = patchlib.strategic_merge_patch(old, body)
            elif patch_type == "json":
                new = patchlib.json_patch(old, body)
            else:
                raise errors.UnsupportedMediaType(f"unsupported patch type {patch_type}")
            if not isinstance(new, dict):
                raise errors.BadRequest("patch produced a non-object")
            new.setdefault("metadata", {})
            # A patch is unconditional unless it names a resourceVersion itself.
            if not ((body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None):
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            result = self._update_locked(rtype, namespace, name, new, subresource, dry_run, events)
        self._notify(events)
        return result

    def delete(self, rtype, namespace, name, dry_run=False, preconditions=None, propagation=None):
        events = []
        with self.lock:
            result = self._delete_locked(rtype, namespace, name, dry_run, preconditions, events, propagation)
        self._notify(events)
        return result

    def _delete_locked(self, rtype, namespace, name, dry_run, preconditions, events, propagation=None):
        key = (namespace if rtype.namespaced else None, name)
        old = self.objects[rtype.key].get(key)
        if old is None:
            raise self._not_found(rtype, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise errors.conflict(rtype.plural, rtype.group, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {old['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, rtype.group, name,
                                  f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                  f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}")
        obj = clone(old)
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise errors.invalid_error("DeleteOptions", "", "", [errors.not_supported(
                "propagationPolicy", propagation, ["Foreground", "Background", "Orphan", "nil"])])
        # The garbage collector's finalizers: it removes them once dependents are handled.
        if propagation in ("Foreground", "Orphan") and not obj["metadata"].get("deletionTimestamp"):
            self._add_finalizer(obj["metadata"], "foregroundDeletion" if propagation == "Foreground" else "orphan")
        if dry_run:
            if obj["metadata"].get("finalizers"):
                obj["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            return obj
        held_by_spec = rtype.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")
        if held_by_spec or obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj  # already being deleted
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            if rtype.generation:
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            if rtype.kind == "Namespace":
                obj.setdefault("status", {})["phase"] = "Terminating"
                self._wake_namespace_controller()
            self._commit(rtype, "MODIFIED", obj, old, events)
            return clone(self.objects[rtype.key].get(key, obj))
        self._commit(rtype, "DELETED", obj, old, events)
        self._after_delete(rtype, obj, events)
        return clone(obj)

    def _after_delete(self, rtype, obj, events):
        meta = obj["metadata"]
        if rtype.kind == "CustomResourceDefinition":
            for t in self.registry.all():
                if t.crd is not None and t.crd["metadata"]["name"] == meta["name"]:
                    for o in list(self.objects[t.key].values()):
                        o2 = clone(o)
                        self._commit(t, "DELETED", o2, o, events)
            self.registry.remove_crd(meta["name"])
        ns = meta.get("namespace")
        if ns:
            nsobj = self.objects["namespaces"].get((None, ns))
            if nsobj is not None and nsobj["metadata"].get("deletionTimestamp"):
                self._wake_namespace_controller()

    # ---- the namespace controller's half (kubeemu/namespaces.py runs it) ----

    def _wake_namespace_controller(self):
        if self._namespace_controller is None:
            from .namespaces import NamespaceController
            self._namespace_controller = NamespaceController(self)
        self._namespace_controller.wake()

    def terminating_namespaces(self):
        with self.lock:
            return [k[1] for k, o in self.objects["namespaces"].items()
                    if o["metadata"].get("deletionTimestamp")]

    def namespace_deletion_pass(self, ns):
        """One syncNamespace of the namespace controller (NamespacedResourcesDeleter.Delete):
        delete the content, record what remains in the status conditions, and finalize and
        delete the namespace once it is empty."""
        events = []
        with self.lock:
            nstype = self.registry.by_key("namespaces")
            nsobj = self.objects["namespaces"].get((None, ns))
            if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
                return
            remaining, finalizers = {}, {}
            if (nsobj.get("spec") or {}).get("finalizers"):
                for t in self.registry.all():
                    if not t.namespaced or t.virtual:
                        continue
                    for (ons, oname), o in list(self.objects[t.key].items()):
                        if ons == ns and not o["metadata"].get("deletionTimestamp"):
                            self._delete_locked(t, ns, oname, False, None, events)
                    for (ons, _), o in self.objects[t.key].items():
                        if ons != ns:
                            continue
                        resource = f"{t.plural}.{t.group}"
                        remaining[resource] = remaining.get(resource, 0) + 1
                        for fin in o["metadata"].get("finalizers") or []:
                            finalizers[fin] = finalizers.get(fin, 0) + 1
            nsobj = self._namespace_conditions(nstype, nsobj, remaining, finalizers, events)
            if not remaining:
                if (nsobj.get("spec") or {}).get("finalizers"):
                    new = clone(nsobj)
                    new["spec"]["finalizers"] = [f for f in new["spec"]["finalizers"]
                                                 if f != "kubernetes"]
                    nsobj = self._commit(nstype, "MODIFIED", new, nsobj, events)
                if not nsobj["spec"].get("finalizers") and not nsobj["metadata"].get("finalizers"):
                    self._commit(nstype, "DELETED", clone(nsobj), nsobj, events)
        self._notify(events)

    _NS_OK = (("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered",
               "All resources successfully discovered"),
              ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions",
               "All legacy kube types successfully parsed"),
              ("NamespaceDeletionContentFailure", "ContentDeleted",
               "All content successfully deleted, may be waiting on finalization"),
              ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
              ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers",
               "All content-preserving finalizers finished"))

    def _namespace_conditions(self, nstype, nsobj, remaining, finalizers, events):
        """namespaceConditionUpdater.ProcessContentTotals + updateConditions: each condition
        in its ok variant (False) unless content or finalizers remain (True, with counts)."""
        wanted = {}
        for ctype, reason, message in self._NS_OK:
            wanted[ctype] = ("False", reason, message)
        if remaining:
            wanted["NamespaceContentRemaining"] = ("True", "SomeResourcesRemain",
                "Some resources are remaining: " + ", ".join(sorted(
                    f"{r} has {n} resource instances" for r, n in remaining.items())))
        if finalizers:
            wanted["NamespaceFinalizersRemaining"] = ("True", "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: " + ", ".join(sorted(
                    f"{f} in {n} resource instances" for f, n in finalizers.items())))
        new = clone(nsobj)
        conditions = new.setdefault("status", {}).setdefault("conditions", [])
        now = now_rfc3339()
        for ctype, _, _ in self._NS_OK:
            status, reason, message = wanted[ctype]
            cur = next((c for c in conditions if c.get("type") == ctype), None)
            if cur is None:
                conditions.append({"type": ctype, "status": status, "lastTransitionTime": now,
                                   "reason": reason, "message": message})
            elif (cur.get("status"), cur.get("reason"), cur.get("message")) != (status, reason, message):
                if cur.get("status") != status:
                    cur["lastTransitionTime"] = now
                cur.update(status=status, reason=reason, message=message)
        if new == nsobj:
            return nsobj
        return self._commit(nstype, "MODIFIED", new, nsobj, events)

    # ---- bootstrap ----

    def seed(self, rtype, obj):
        """Create an object at start-up, bypassing admission."""
        return self.create(rtype, (obj.get("metadata") or {}).get("namespace"), obj)
