"""Emulated Kubernetes controllers that live beside the emulated API server.

The emulator (tests/kube/emulator) imports this package at start and calls
start(api, stop_event). Nothing really runs: pods are objects whose status the emulated kubelet
sets. Each controller mirrors the real one it is named after (see each module's docstring):

  statefulset       pkg/controller/statefulset             claims, ordered pods, scale, retention
  scheduler         pkg/scheduler (VolumeBinding, NodeAffinity)   selected-node, pod binding
  kubelet           (pod status only)                      Running/Ready once volumes are Bound
  persistentvolume  pkg/controller/volume/persistentvolume provisioner annotations, binding,
                                                           Released/Lost phases
  garbagecollector  pkg/controller/garbagecollector        ownerReferences, propagation policies
  protection        pkg/controller/volume/pvcprotection, pvprotection   in-use finalizers

Shared machinery (cache, work queues, worker loop) is in runtime.py, secondary indexes in
indexes.py, object helpers in objects.py, the Event recorder in events.py.
"""

import logging
import os
import sys

from . import indexes
from .events import Recorder
from .garbagecollector import GarbageCollector
from .kubelet import Kubelet
from .persistentvolume import PersistentVolumeController
from .protection import ProtectionController
from .runtime import Context
from .scheduler import Scheduler
from .statefulset import StatefulSetController

log = logging.getLogger("controllers")

CONTROLLERS = (StatefulSetController, Scheduler, Kubelet, PersistentVolumeController,
               GarbageCollector, ProtectionController)

# Read by the emulator at start: its admission then adds kubernetes.io/pvc-protection and
# kubernetes.io/pv-protection on create (StorageObjectInUseProtection), which
# protection.ProtectionController removes when the object is no longer in use.
PROTECTION_FINALIZERS = True


def _setup_logging():
    """One line per decision on stderr (the emulator's log), at the level named by
    $KUBEEMU_CONTROLLERS_LOG (default WARNING: only problems; INFO: every decision)."""
    logger = logging.getLogger("controllers")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("KUBEEMU_CONTROLLERS_LOG", "WARNING").upper())
    logger.propagate = False


def start(api, stop_event):
    """Starts every controller on the in-process client `api`; they stop when `stop_event` is
    set. Returns the threads (the emulator joins them at shutdown)."""
    _setup_logging()
    ctx = Context(api, stop_event)
    indexes.register(ctx.store)
    recorder = Recorder(ctx)
    controllers = [cls(ctx, recorder) for cls in CONTROLLERS]
    threads = [ctx.start_dispatcher(), recorder.start()]
    for controller in controllers:
        threads.extend(controller.start())
    log.info("started controllers: %s", ", ".join(c.name for c in controllers))
    return threads
