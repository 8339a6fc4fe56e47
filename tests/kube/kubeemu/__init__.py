"""kubeemu: an emulator of the Kubernetes 1.32 API server for integration tests.

Modules, one concern each:
  errors      ApiError and the metav1.Status bodies the real server answers with
  quantity    resource.Quantity parsing, comparison and canonical formatting
  selectors   label and field selectors
  patch       JSON merge patch, strategic merge patch (subset), JSON patch
  schema      field schemas of the built-in kinds: strict field validation, OpenAPI v3
  validation  422 rules (names, PV, PVC, StatefulSet, StorageClass, ...)
  resources   the resource registry: kinds, discovery data, defaulting, CRD-defined kinds
  tables      server-side Table output (kubectl get columns)
  store       the object store: resourceVersions, history, watchers, finalizers
  api         the in-process client the emulated controllers use
  auth        bearer tokens, impersonation, RBAC authorization
  discovery   /version, /api, /apis, APIResourceLists, OpenAPI v3
  protobuf    decoding of the protobuf bodies kubectl's typed `create` commands send
  faults      fault injection and request statistics
  tls         CA, server certificate and kubeconfig generation with the openssl CLI
  server      HTTP(S) front end: routing, auth, watch streaming
"""
