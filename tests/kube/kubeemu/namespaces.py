"""The namespace controller of kube-controller-manager (pkg/controller/namespace, its
deletion/namespaced_resources_deleter.go and status_condition_utils.go), run by the emulator
itself: without it no namespace could ever go, and tests started with --no-controllers delete
namespaces too.

A deleted namespace only gets its deletionTimestamp and phase Terminating from the API server
(pkg/registry/core/namespace/storage: it is removed at once only when neither spec.finalizers
nor metadata.finalizers hold it, and every namespace is created with spec.finalizers
["kubernetes"]). This thread then does what the controller's syncNamespace does, a moment
later and not inside the DELETE request: deleteAllContent (every object of every namespaced
kind in the namespace is deleted; finalizers keep theirs, terminating), the five deletion
conditions on the namespace status (NamespaceDeletionDiscoveryFailure, ...GVParsingFailure,
...ContentFailure, NamespaceContentRemaining "Some resources are remaining: pods. has 2 resource
instances", NamespaceFinalizersRemaining "Some content in the namespace has finalizers
remaining: x.io/y in 1 resource instances", or their "ok" variants), and once nothing is left
finalizeNamespace (drops "kubernetes" from spec.finalizers) and the final delete, which leaves
the namespace to metadata.finalizers if it has any. A namespace with content left is looked at
again on every change of an object in it and every second.
"""

import threading


class NamespaceController:
    def __init__(self, store):
        self.store = store
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="namespace-controller", daemon=True)
        self._thread.start()

    def wake(self):
        self._wake.set()

    def _run(self):
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            for ns in self.store.terminating_namespaces():
                try:
                    self.store.namespace_deletion_pass(ns)
                except Exception:  # a bug here must not stop namespace deletion for good
                    import traceback
                    traceback.print_exc()
