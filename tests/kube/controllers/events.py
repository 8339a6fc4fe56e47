"""Event recorder: the core/v1 Events the real controllers emit, so that `kubectl describe` and
`kubectl get events` look familiar (SuccessfulCreate, ExternalProvisioning, Scheduled, ...).

Like client-go's record.EventRecorder it is fire-and-forget: events go through a queue to a
writer thread, a failure to write one is logged and dropped, and a repeat of the same
(object, type, reason, message) bumps `count` and `lastTimestamp` of the first one instead of
creating another (the recorder's EventCorrelator does the same aggregation).
"""

import itertools
import logging
import queue
import threading
import time

from . import objects

log = logging.getLogger("controllers.events")

_KINDS = {
    "pods": ("v1", "Pod"),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim"),
    "persistentvolumes": ("v1", "PersistentVolume"),
    "statefulsets.apps": ("apps/v1", "StatefulSet"),
    "nodes": ("v1", "Node"),
}


class Recorder:
    def __init__(self, ctx):
        self.ctx = ctx
        self._queue = queue.SimpleQueue()
        self._seq = itertools.count()
        self._seen = {}  # (uid, type, reason, message) -> [event name, namespace, count]

    def event(self, resource, obj, event_type, reason, message, component):
        """Queues one event about `obj` (a dict of resource `resource`)."""
        self._queue.put((resource, obj, event_type, reason, message, component))

    def start(self):
        thread = threading.Thread(target=self._run, name="controllers-events", daemon=True)
        thread.start()
        return thread

    def _run(self):
        while not self.ctx.stop_event.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._write(*item)
            except Exception as e:  # events are best effort, as in client-go
                log.debug("dropping event: %s", e)

    def _write(self, resource, obj, event_type, reason, message, component):
        api_version, kind = _KINDS.get(resource, (obj.get("apiVersion", "v1"), obj.get("kind", "")))
        md = obj.get("metadata") or {}
        namespace = md.get("namespace") or "default"
        now = self.ctx.now()
        dedup = (md.get("uid"), event_type, reason, message)
        seen = self._seen.get(dedup)
        if seen is not None:
            seen[2] += 1
            try:
                self.ctx.api.patch("events", seen[1], seen[0],
                                   {"count": seen[2], "lastTimestamp": now})
                return
            except self.ctx.api.ApiError:
                pass  # gone (or never made it): create a fresh one below
        name = f"{md.get('name', 'unknown')}.{time.time_ns():x}{next(self._seq) % 1000:03d}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": api_version,
                "kind": kind,
                "name": md.get("name", ""),
                "namespace": md.get("namespace", ""),
                "uid": md.get("uid", ""),
                "resourceVersion": md.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        if not event["involvedObject"]["namespace"]:
            del event["involvedObject"]["namespace"]
        self.ctx.api.create("events", namespace, event)
        if len(self._seen) > 20000:
            self._seen.clear()
        self._seen[dedup] = [name, namespace, 1]


def involved(obj):
    """Short `namespace/name` for log lines."""
    ns = objects.namespace_of(obj)
    return f"{ns}/{objects.name_of(obj)}" if ns else objects.name_of(obj)
