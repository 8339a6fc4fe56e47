"""The in-process client handed to the emulated controllers (tests/kube/controllers).

Its methods and exceptions are a stable interface documented in tests/kube/README.md. Every
write goes through the same Store methods as HTTP requests.
"""

from . import errors, selectors, store as storemod

ApiError = errors.ApiError
Conflict = errors.Conflict
NotFound = errors.NotFound
AlreadyExists = errors.AlreadyExists
Invalid = errors.Invalid


class Api:
    ApiError = errors.ApiError
    Conflict = errors.Conflict
    NotFound = errors.NotFound
    AlreadyExists = errors.AlreadyExists
    Invalid = errors.Invalid

    def __init__(self, store):
        self._store = store

    def _type(self, resource):
        t = self._store.registry.by_key(resource)
        if t is None:
            raise errors.NotFound(f'the server could not find the requested resource ({resource})')
        return t

    @staticmethod
    def _ns(t, namespace):
        return namespace if t.namespaced else None

    def get(self, resource, namespace, name):
        t = self._type(resource)
        try:
            return self._store.get(t, self._ns(t, namespace), name)
        except errors.NotFound:
            return None

    def list(self, resource, namespace=None, label_selector=None, field_selector=None):
        t = self._type(resource)
        labels = selectors.parse_label_selector(label_selector) if label_selector else []
        fields = selectors.parse_field_selector(field_selector, t) if field_selector else []
        items, _, _ = self._store.list(t, self._ns(t, namespace), labels, fields)
        return items

    def create(self, resource, namespace, obj):
        t = self._type(resource)
        return self._store.create(t, self._ns(t, namespace), obj)

    def update(self, resource, namespace, obj, subresource=None):
        t = self._type(resource)
        name = (obj.get("metadata") or {}).get("name")
        return self._store.update(t, self._ns(t, namespace), name, obj, subresource=subresource)

    def patch(self, resource, namespace, name, merge_patch, subresource=None):
        t = self._type(resource)
        return self._store.patch(t, self._ns(t, namespace), name, "merge", merge_patch, subresource=subresource)

    def delete(self, resource, namespace, name, propagation=None):
        t = self._type(resource)
        obj = self._store.delete(t, self._ns(t, namespace), name, propagation=propagation)
        if not (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None  # gone
        return obj

    def subscribe(self, callback):
        self._store.subscribers.append(callback)

    def now(self):
        return storemod.now_rfc3339()
