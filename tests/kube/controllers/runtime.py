"""The machinery every emulated controller shares: an informer-like store, work queues and a
worker loop.

It mirrors client-go's shape, because the real controllers' behaviour depends on it:
- one shared cache of every object the API server reports (the informers' listers), filled by a
  list at start and then by the `api.subscribe` events, with secondary indexes so that an event
  never costs a scan of all objects (500 claims must flow through in seconds);
- per controller a work queue keyed by object key with client-go's workqueue semantics: a key
  queued twice is processed once, a key re-queued while it is being processed is processed again
  afterwards, never by two workers at once; failures are retried with exponential backoff;
- a periodic resync that re-queues every primary object, so that a missed event or a failed
  write is repaired within a few seconds (level-triggered, like the real controllers).

Writes go straight to the API; the object the API returns is written through to the cache (like
the PV controller's storeClaimUpdate), so a controller does not act twice on a stale copy. Events
can arrive out of order across writers, so the cache never replaces an object by an older
resourceVersion.
"""

import collections
import copy
import heapq
import itertools
import logging
import queue
import threading
import time

log = logging.getLogger("controllers")

# Resources listed at start. Anything else the API reports through subscribe() is cached too
# (the garbage collector needs every object with ownerReferences).
KNOWN_RESOURCES = (
    "nodes",
    "storageclasses.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "pods",
    "statefulsets.apps",
)


def object_key(obj):
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "")
    return f"{namespace}/{name}" if namespace else name


def split_key(key):
    """The inverse of object_key: (namespace or None, name)."""
    if "/" in key:
        namespace, name = key.split("/", 1)
        return namespace, name
    return None, key


def _rv(obj):
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", ""))
    except (TypeError, ValueError):
        return None


class Store:
    """Thread-safe cache of API objects by resource and key, with secondary indexes.

    Objects handed out are the cached dicts themselves: callers must copy before mutating
    (runtime.mutable() does), as with client-go listers.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._objects = collections.defaultdict(dict)      # resource -> key -> obj
        self._indexers = collections.defaultdict(dict)     # resource -> index -> fn(obj) -> [values]
        self._global_indexers = {}                         # index -> fn, for every resource
        self._indices = {}                                 # (resource, index) -> value -> set(keys)
        self._uids = {}                                    # uid -> (resource, key)
        self._tombstones = set()                           # uids of deleted objects
        self._seen_resources = set()

    def add_index(self, resource, index, fn):
        with self._lock:
            self._indexers[resource][index] = fn
            values = collections.defaultdict(set)
            for key, obj in self._objects[resource].items():
                for value in fn(obj) or ():
                    values[value].add(key)
            self._indices[(resource, index)] = values

    def add_global_index(self, index, fn):
        """An index maintained for every resource, present and future (the garbage collector's
        owner-uid index over all kinds)."""
        with self._lock:
            self._global_indexers[index] = fn
            for resource in list(self._objects):
                values = collections.defaultdict(set)
                for key, obj in self._objects[resource].items():
                    for value in fn(obj) or ():
                        values[value].add(key)
                self._indices[(resource, index)] = values

    def _all_indexers(self, resource):
        indexers = self._indexers[resource]
        if not self._global_indexers:
            return indexers.items()
        return list(indexers.items()) + list(self._global_indexers.items())

    def _unindex(self, resource, key, obj):
        for index, fn in self._all_indexers(resource):
            values = self._indices.get((resource, index), {})
            for value in fn(obj) or ():
                keys = values.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del values[value]
        uid = (obj.get("metadata") or {}).get("uid")
        if uid and self._uids.get(uid) == (resource, key):
            del self._uids[uid]

    def _index(self, resource, key, obj):
        for index, fn in self._all_indexers(resource):
            values = self._indices.setdefault((resource, index), {})
            for value in fn(obj) or ():
                values.setdefault(value, set()).add(key)
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self._uids[uid] = (resource, key)

    def apply(self, event_type, resource, obj):
        """Records one change. Returns (old, new) when the cache changed, None when the change
        was older than what the cache holds. `new` is None for a deletion."""
        key = object_key(obj)
        uid = (obj.get("metadata") or {}).get("uid")
        with self._lock:
            self._seen_resources.add(resource)
            if uid and uid in self._tombstones:
                return None  # a late copy of an object already deleted (a write-through race)
            objects = self._objects[resource]
            old = objects.get(key)
            if old is not None:
                old_rv, new_rv = _rv(old), _rv(obj)
                same_uid = (old.get("metadata") or {}).get("uid") == (obj.get("metadata") or {}).get("uid")
                if old_rv is not None and new_rv is not None and new_rv < old_rv:
                    return None
                if old_rv is not None and new_rv is not None and new_rv == old_rv and same_uid \
                        and event_type != "DELETED":
                    return None
            if event_type == "DELETED":
                self._bury(uid)
                if old is None:
                    return None
                if (old.get("metadata") or {}).get("uid") != uid:
                    # A deletion of an earlier incarnation that reached us after the new one.
                    return None
                self._unindex(resource, key, old)
                del objects[key]
                return old, None
            if old is not None:
                self._unindex(resource, key, old)
            objects[key] = obj
            self._index(resource, key, obj)
            return old, obj

    def _bury(self, uid):
        if uid:
            if len(self._tombstones) > 200000:
                self._tombstones.clear()
            self._tombstones.add(uid)

    def get(self, resource, namespace, name):
        with self._lock:
            return self._objects[resource].get(f"{namespace}/{name}" if namespace else name)

    def get_key(self, resource, key):
        with self._lock:
            return self._objects[resource].get(key)

    def list(self, resource, namespace=None):
        with self._lock:
            objs = list(self._objects[resource].values())
        if namespace is not None:
            objs = [o for o in objs if (o.get("metadata") or {}).get("namespace") == namespace]
        return objs

    def keys(self, resource):
        with self._lock:
            return list(self._objects[resource].keys())

    def by_index(self, resource, index, value):
        with self._lock:
            keys = self._indices.get((resource, index), {}).get(value, ())
            objects = self._objects[resource]
            return [objects[k] for k in keys if k in objects]

    def by_global_index(self, index, value):
        """[(resource, obj)] over all resources."""
        with self._lock:
            found = []
            for (resource, name), values in self._indices.items():
                if name != index:
                    continue
                objects = self._objects[resource]
                found.extend((resource, objects[k]) for k in values.get(value, ()) if k in objects)
            return found

    def count_index(self, resource, index, value):
        with self._lock:
            return len(self._indices.get((resource, index), {}).get(value, ()))

    def by_uid(self, uid):
        """(resource, obj) of the cached object with this uid, or None."""
        with self._lock:
            where = self._uids.get(uid)
            if where is None:
                return None
            resource, key = where
            obj = self._objects[resource].get(key)
            return (resource, obj) if obj is not None else None

    def resources(self):
        with self._lock:
            return set(self._seen_resources)


_ATOMIC = frozenset((str, int, float, bool, type(None)))


def mutable(obj):
    """A private deep copy of a cached object, safe to modify and send. Objects are JSON trees,
    which this copies about 4x faster than copy.deepcopy (kubeemu/jsonutil.py's clone; the
    controllers do not import the emulator's modules)."""
    t = type(obj)
    if t is dict:
        return {k: (v if type(v) in _ATOMIC else mutable(v)) for k, v in obj.items()}
    if t is list:
        return [(v if type(v) in _ATOMIC else mutable(v)) for v in obj]
    if t in _ATOMIC:
        return obj
    return copy.deepcopy(obj)


class WorkQueue:
    """client-go's rate-limited work queue, in small.

    A key is in at most one of: queued, processing. add() of a key being processed marks it dirty
    so that it is queued again when done() is called. retry() re-adds after an exponential delay
    (5 ms doubling up to 2 s); forget() resets that delay after a success.

    Keys queued by the periodic resync (add_resync) wait in a second lane that get() serves only
    when no key queued by an event is waiting; an event for a key waiting there moves it to the
    first lane. With 1,000 claims and 1,000 volumes a resync of the PV controller queues 2,000
    keys (12 ms of CPU in-process when all are bound, each waiting for the GIL under load, more
    when some need writes): in one FIFO, a claim created just after a resync waited behind all
    of them. The real controllers have the same FIFO but sync in microseconds on many cores;
    which lane a key waits in changes when, never whether, it is synced.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._resync = collections.deque()   # may hold stale entries: _low says which count
        self._low = set()                    # dirty keys whose next sync is only a resync
        self._dirty = set()
        self._processing = set()
        self._delayed = []          # heap of (when, seq, key)
        self._seq = itertools.count()
        self._failures = {}

    def add(self, key):
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key):
        if key in self._dirty:
            if key in self._low:  # promoted: an event wants it now
                self._low.discard(key)
                if key not in self._processing:
                    self._queue.append(key)
                    self._cond.notify()
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_resync(self, key):
        """Queues a key for the periodic resync, behind every key queued by an event."""
        with self._cond:
            if key in self._dirty:
                return
            self._dirty.add(key)
            self._low.add(key)
            if key not in self._processing:
                self._resync.append(key)
                self._cond.notify()

    def _pop_locked(self):
        if self._queue:
            return self._queue.popleft()
        while self._resync:
            key = self._resync.popleft()
            # Stale entries: promoted to the first lane, or queued again while processing
            # (done() re-queues those).
            if key in self._low and key not in self._processing:
                self._low.discard(key)
                return key
        return None

    def add_after(self, key, delay):
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def retry(self, key):
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        self.add_after(key, min(0.005 * (2 ** failures), 2.0))

    def forget(self, key):
        with self._cond:
            self._failures.pop(key, None)

    def _promote_delayed(self):
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)

    def get(self, timeout):
        """The next key to process, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_delayed()
                key = self._pop_locked()
                if key is not None:
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                wait = deadline - time.monotonic()
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - time.monotonic())
                if deadline - time.monotonic() <= 0:
                    return None
                self._cond.wait(max(wait, 0.001))

    def done(self, key):
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                (self._resync if key in self._low else self._queue).append(key)
                self._cond.notify()

    def __len__(self):
        with self._cond:
            return len(self._queue) + len(self._low)


class Context:
    """What every controller gets: the API client, the shared store, the clock, the stop flag."""

    def __init__(self, api, stop_event):
        self.api = api
        self.store = Store()
        self.stop_event = stop_event
        self.synced = threading.Event()
        self._handlers = collections.defaultdict(list)
        self._events = queue.SimpleQueue()

    def now(self):
        return self.api.now()

    def on(self, resource, handler):
        """Registers handler(event_type, old, new) for changes of `resource` (new is None for a
        deletion; old is None for a creation). Handlers only enqueue keys. Resource "*" gets
        every resource's changes, as handler(event_type, old, new, resource)."""
        self._handlers[resource].append(handler)

    def write_through(self, resource, obj):
        """Records an object the API returned after our own write and notifies the handlers as
        the watch event would (the later event is then recognised as not newer). An object
        returned with a deletionTimestamp and no finalizers left is gone."""
        if isinstance(obj, dict) and obj.get("metadata"):
            md = obj["metadata"]
            gone = md.get("deletionTimestamp") and not md.get("finalizers")
            self._dispatch("DELETED" if gone else "MODIFIED", resource, obj)

    def _dispatch(self, event_type, resource, obj):
        change = self.store.apply(event_type, resource, obj)
        if change is None:
            return
        old, new = change
        try:
            for handler in self._handlers.get(resource, ()):
                handler(event_type, old, new)
            for handler in self._handlers.get("*", ()):
                handler(event_type, old, new, resource)
        except Exception:  # a handler bug must not stop the dispatcher
            log.exception("event handler for %s failed", resource)

    # -- the event pump -----------------------------------------------------------------

    def _on_api_event(self, event_type, resource, obj):
        """subscribe() callback: runs on the writer's thread, so it only queues."""
        self._events.put((str(event_type).upper(), resource, obj))

    def start_dispatcher(self):
        self.api.subscribe(self._on_api_event)
        thread = threading.Thread(target=self._run_dispatcher, name="controllers-dispatcher",
                                  daemon=True)
        thread.start()
        return thread

    def _initial_list(self):
        for resource in KNOWN_RESOURCES:
            while not self.stop_event.is_set():
                try:
                    objs = self.api.list(resource)
                    break
                except Exception as e:  # the server may still be starting
                    log.debug("initial list of %s failed: %s", resource, e)
                    self.stop_event.wait(0.1)
            else:
                return
            for obj in objs:
                self._dispatch("ADDED", resource, obj)

    def _run_dispatcher(self):
        self._initial_list()
        self.synced.set()
        while not self.stop_event.is_set():
            try:
                event_type, resource, obj = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event_type not in ("ADDED", "MODIFIED", "DELETED"):
                event_type = "MODIFIED"
            if isinstance(obj, dict):
                self._dispatch(event_type, resource, obj)


class Controller:
    """A level-triggered controller: a work queue of keys, one worker thread, periodic resync.

    Subclasses set `name` and `resource` (the primary resource resynced) and implement
    sync(key). sync() may return a delay in seconds to look at the key again later (polling
    for a condition no event announces). Exceptions are retried with backoff: API conflicts and
    not-found races are expected and logged at debug level only.
    """

    name = "controller"
    resource = None
    resync_period = 3.0
    workers = 1

    def __init__(self, ctx):
        self.ctx = ctx
        self.api = ctx.api
        self.store = ctx.store
        self.queue = WorkQueue()
        self.log = logging.getLogger(f"controllers.{self.name}")

    def enqueue(self, key):
        if key:
            self.queue.add(key)

    def resync_keys(self):
        return self.store.keys(self.resource) if self.resource else ()

    def sync(self, key):
        raise NotImplementedError

    def run(self, worker=0):
        self.ctx.synced.wait()
        if worker == 0:
            for key in self.resync_keys():
                self.enqueue(key)
        next_resync = time.monotonic() + self.resync_period
        while not self.ctx.stop_event.is_set():
            if worker == 0 and time.monotonic() >= next_resync:
                for key in self.resync_keys():
                    if key:
                        self.queue.add_resync(key)
                next_resync = time.monotonic() + self.resync_period
            key = self.queue.get(timeout=0.2)
            if key is None:
                continue
            try:
                delay = self.sync(key)
                self.queue.forget(key)
                if delay:
                    self.queue.add_after(key, delay)
            except self.api.ApiError as e:
                # Conflicts and races with deletions are part of normal operation; a 422 means
                # this emulation writes something the real controller would not.
                code = getattr(e, "code", 0)
                level = logging.DEBUG if code in (404, 409) else \
                    logging.WARNING if code == 422 else logging.INFO
                self.log.log(level, "sync %s: %s (retrying)", key, e)
                self.queue.retry(key)
            except Exception:
                self.log.exception("sync %s failed (retrying)", key)
                self.queue.retry(key)
            finally:
                self.queue.done(key)

    def start(self):
        """Starts `workers` threads on the queue (the queue guarantees a key is never processed
        by two of them at once). Returns the threads."""
        threads = []
        for worker in range(self.workers):
            thread = threading.Thread(target=self.run, args=(worker,),
                                      name=f"controller-{self.name}-{worker}", daemon=True)
            thread.start()
            threads.append(thread)
        return threads
