"""The StatefulSet controller (pkg/controller/statefulset, Kubernetes 1.32).

Per StatefulSet, each sync does what defaultStatefulSetControl.updateStatefulSet does:
- pods are the set's children (controller ownerReference to the set, name `<set>-<ordinal>`);
  ordinals in [start, start+replicas) are replicas, the others are condemned;
- replicas in ascending order: a Failed/Succeeded pod is deleted (and re-created next time); a
  missing pod gets its claims first (createPersistentVolumeClaims: `<template>-<set>-<ordinal>`,
  labels = template labels + the selector's matchLabels; an existing claim is reused, never
  re-created, and a claim being deleted blocks) and is then created; a Pending pod gets its
  missing claims; with podManagementPolicy OrderedReady ("monotonic") the sync stops at the first
  pod created, terminating, or not Running and Ready; with Parallel it goes on;
- claims' ownerReferences follow persistentVolumeClaimRetentionPolicy
  (isClaimOwnerUpToDate / updateClaimOwnerRefForSetAndPod): whenDeleted=Delete -> controller
  reference to the set while the pod is in range; whenScaled=Delete -> controller reference to
  the pod once its ordinal is condemned (the set reference is then dropped), so the garbage
  collector removes the claim when the condemned pod is gone. A claim still owned by a deleted
  incarnation of its pod is stale and blocks re-creation of that pod (PodClaimIsStale) until
  the garbage collector has removed it;
- condemned pods in descending ordinal order: claims fixed for the retention policy, then
  deleted; monotonic: one at a time, only when every other pod is healthy, and only after the
  terminating one is gone;
- status (replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  observedGeneration, revisions) is written through the status subresource when it changes.
Pods carry `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
`controller-revision-hash`, spec.hostname/subdomain, and volumes for the claims. Events:
SuccessfulCreate / SuccessfulDelete / FailedCreate on the set, as recordPodEvent and
recordClaimEvent word them.

Not emulated: ControllerRevision objects and rolling updates (a template change does not
replace pods; it shows as updateRevision != currentRevision), adoption of orphan pods,
minReadySeconds beyond the Ready condition's age.
"""

import copy
import json
import re

from . import objects as o
from .runtime import Controller, mutable

COMPONENT = "statefulset-controller"
STS = "statefulsets.apps"
POD = "pods"
PVC = "persistentvolumeclaims"

_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")
_SAFE = "bcdfghjklmnpqrstvwxz2456789"   # rand.SafeEncodeString's alphabet


def parent_and_ordinal(name):
    """getParentNameAndOrdinal."""
    match = _ORDINAL.match(name or "")
    if not match:
        return "", -1
    return match.group(1), int(match.group(2))


def revision_name(sts):
    """`<set>-<hash>`: fnv-32a of the pod template, encoded as controller.ComputeHash does."""
    data = json.dumps((sts.get("spec") or {}).get("template") or {}, sort_keys=True).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    encoded = "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))
    return f"{o.name_of(sts)}-{encoded}"


def retention_policy(sts):
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def claim_name(template, sts, ordinal):
    return f"{o.name_of(template)}-{o.name_of(sts)}-{ordinal}"


def _ordinal_range(sts):
    spec = sts.get("spec") or {}
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else int(replicas)
    start = int(((spec.get("ordinals") or {}).get("start")) or 0)
    return start, start + replicas - 1


def _healthy(pod):
    return pod is not None and o.pod_is_ready(pod) and not o.is_deleting(pod)


# -- ownerReferences per retention policy (stateful_set_utils.go) --------------------------

SET_KIND = ("apps/v1", "StatefulSet")
POD_KIND = ("v1", "Pod")


def _matches_ref(ref, obj, kind):
    return ref.get("apiVersion") == kind[0] and ref.get("kind") == kind[1] \
        and ref.get("name") == o.name_of(obj)


def _has_owner_ref(target, owner):
    return any(ref.get("uid") == o.uid_of(owner) for ref in o.owner_refs(target))


def _has_stale_owner_ref(target, obj, kind):
    for ref in o.owner_refs(target):
        if _matches_ref(ref, obj, kind):
            return ref.get("uid") != o.uid_of(obj)
    return False


def _has_unexpected_controller(claim, sts, pod):
    when_deleted, when_scaled = retention_policy(sts)
    if when_deleted == "Retain" and when_scaled == "Retain":
        return False
    for ref in o.owner_refs(claim):
        if _matches_ref(ref, sts, SET_KIND):
            if ref.get("uid") != o.uid_of(sts):
                return True
            continue
        if _matches_ref(ref, pod, POD_KIND):
            if ref.get("uid") != o.uid_of(pod):
                return True
            continue
        if ref.get("controller"):
            return True
    return False


def _has_non_controller_owner(claim, sts, pod):
    for ref in o.owner_refs(claim):
        if ref.get("uid") in (o.uid_of(sts), o.uid_of(pod)) and not ref.get("controller"):
            return True
    return False


def _scaled_down(pod, sts):
    start, end = _ordinal_range(sts)
    _, ordinal = parent_and_ordinal(o.name_of(pod))
    return not (start <= ordinal <= end)


def claim_owner_up_to_date(claim, sts, pod):
    """isClaimOwnerUpToDate."""
    if _has_stale_owner_ref(claim, sts, SET_KIND) or _has_stale_owner_ref(claim, pod, POD_KIND):
        return True  # owned by an earlier incarnation: not ours to touch
    if _has_unexpected_controller(claim, sts, pod):
        return not (_has_owner_ref(claim, sts) or _has_owner_ref(claim, pod))
    if _has_non_controller_owner(claim, sts, pod):
        return False
    when_deleted, when_scaled = retention_policy(sts)
    set_ref, pod_ref = _has_owner_ref(claim, sts), _has_owner_ref(claim, pod)
    scaled_down = _scaled_down(pod, sts)
    if when_scaled == "Delete" and when_deleted == "Delete":
        return scaled_down != set_ref and scaled_down == pod_ref
    if when_scaled == "Delete":
        return not set_ref and scaled_down == pod_ref
    if when_deleted == "Delete":
        return set_ref and not pod_ref
    return not set_ref and not pod_ref


def updated_claim_owner_refs(claim, sts, pod):
    """updateClaimOwnerRefForSetAndPod: the claim's ownerReferences for the policy."""
    unexpected = _has_unexpected_controller(claim, sts, pod)
    refs = [ref for ref in o.owner_refs(claim)
            if not (_matches_ref(ref, sts, SET_KIND) or _matches_ref(ref, pod, POD_KIND))]
    if unexpected:
        return refs
    when_deleted, when_scaled = retention_policy(sts)
    scaled_down = _scaled_down(pod, sts)

    def add(owner, kind):
        if not any(ref.get("uid") == o.uid_of(owner) for ref in refs):
            refs.append(o.new_controller_ref(owner, *kind))

    if when_scaled == "Delete" and scaled_down:
        add(pod, POD_KIND)
    if when_deleted == "Delete" and not (when_scaled == "Delete" and scaled_down):
        add(sts, SET_KIND)
    return refs


class Blocked(Exception):
    """The sync cannot go further now (a claim being deleted, a stale claim)."""


class StatefulSetController(Controller):
    name = "statefulset"
    resource = STS
    workers = 2
    resync_period = 3.0

    def __init__(self, ctx, recorder):
        super().__init__(ctx)
        self.recorder = recorder
        ctx.on(STS, self._on_set)
        ctx.on(POD, self._on_pod)
        ctx.on(PVC, self._on_claim)

    # -- events -------------------------------------------------------------------------

    def _on_set(self, event_type, old, new):
        if new is not None:
            self.enqueue(f"{o.namespace_of(new)}/{o.name_of(new)}")

    def _on_pod(self, event_type, old, new):
        pod = new or old
        ref = o.controller_ref(pod)
        if ref and ref.get("kind") == "StatefulSet":
            self.enqueue(f"{o.namespace_of(pod)}/{ref.get('name')}")

    def _on_claim(self, event_type, old, new):
        claim = new or old
        namespace = o.namespace_of(claim)
        name = o.name_of(claim)
        for sts in self.store.list(STS, namespace):
            for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
                prefix = f"{o.name_of(template)}-{o.name_of(sts)}-"
                if name.startswith(prefix) and name[len(prefix):].isdigit():
                    self.enqueue(f"{namespace}/{o.name_of(sts)}")

    # -- helpers ----------------------------------------------------------------------------

    def _pods_of(self, sts):
        found = []
        for pod in self.store.by_index(POD, "owner", o.uid_of(sts)):
            ref = o.controller_ref(pod)
            if not ref or ref.get("uid") != o.uid_of(sts):
                continue
            parent, ordinal = parent_and_ordinal(o.name_of(pod))
            if parent == o.name_of(sts) and ordinal >= 0:
                found.append(pod)
        return found

    def _event(self, sts, event_type, reason, message):
        self.recorder.event(STS, sts, event_type, reason, message, COMPONENT)

    def _new_claim(self, sts, template, ordinal):
        """getPersistentVolumeClaims for one template. A template without storageClassName gets
        the default class from the API server's DefaultStorageClass admission, as in a real
        cluster (the emulator does it)."""
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update((((sts.get("spec") or {}).get("selector")) or {}).get("matchLabels") or {})
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(template, sts, ordinal),
                         "namespace": o.namespace_of(sts), "labels": labels},
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if tmeta.get("annotations"):
            claim["metadata"]["annotations"] = dict(tmeta["annotations"])
        return claim

    def _new_pod(self, sts, ordinal, revision):
        """newStatefulSetPod: template + identity + storage + controller reference."""
        spec = sts.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        name = f"{o.name_of(sts)}-{ordinal}"
        labels = dict(tmeta.get("labels") or {})
        labels[o.LABEL_POD_NAME] = name
        labels[o.LABEL_POD_INDEX] = str(ordinal)
        labels[o.LABEL_REVISION] = revision
        metadata = {
            "name": name,
            "generateName": f"{o.name_of(sts)}-",
            "namespace": o.namespace_of(sts),
            "labels": labels,
            "ownerReferences": [o.new_controller_ref(sts, *SET_KIND)],
        }
        if tmeta.get("annotations"):
            metadata["annotations"] = dict(tmeta["annotations"])
        if tmeta.get("finalizers"):
            metadata["finalizers"] = list(tmeta["finalizers"])
        pod_spec = copy.deepcopy(template.get("spec") or {})
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        templates = spec.get("volumeClaimTemplates") or []
        template_names = {o.name_of(t) for t in templates}
        volumes = [{"name": o.name_of(t),
                    "persistentVolumeClaim": {"claimName": claim_name(t, sts, ordinal)}}
                   for t in templates]
        volumes += [v for v in pod_spec.get("volumes") or [] if v.get("name") not in template_names]
        if volumes:
            pod_spec["volumes"] = volumes
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}

    def _get_claim(self, namespace, name):
        return self.store.get(PVC, namespace, name)

    def _create_claims(self, sts, ordinal, pod_name):
        """createPersistentVolumeClaims: every missing claim of the pod; an existing one is
        reused as it is; one being deleted blocks (the pod must not start on a dying claim)."""
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            name = claim_name(template, sts, ordinal)
            claim = self._get_claim(o.namespace_of(sts), name)
            if claim is None:
                new = self._new_claim(sts, template, ordinal)
                when_deleted, _ = retention_policy(sts)
                if when_deleted == "Delete":
                    # What UpdatePodClaimForRetentionPolicy adds right after creation, saved in
                    # the same write.
                    new["metadata"]["ownerReferences"] = [o.new_controller_ref(sts, *SET_KIND)]
                try:
                    claim = self.api.create(PVC, o.namespace_of(sts), new)
                except self.api.AlreadyExists:
                    claim = self.api.get(PVC, o.namespace_of(sts), name)
                    if claim is None:
                        raise Blocked(f"claim {name} vanished")
                except self.api.ApiError as e:
                    self._event(sts, "Warning", "FailedCreate",
                                f"create Claim {name} for Pod {pod_name} in StatefulSet "
                                f"{o.name_of(sts)} failed error: {e}")
                    raise
                else:
                    self._event(sts, "Normal", "SuccessfulCreate",
                                f"create Claim {name} Pod {pod_name} in StatefulSet "
                                f"{o.name_of(sts)} success")
                    self.log.info("created claim %s/%s", o.namespace_of(sts), name)
                self.ctx.write_through(PVC, claim)
            if o.is_deleting(claim):
                raise Blocked(f"pvc {name} is being deleted")

    def _claim_is_stale(self, sts, ordinal, pod_name):
        """PodClaimIsStale: with whenScaled=Delete, a claim still owned by a previous pod of
        this name must be garbage collected before the pod is re-created."""
        _, when_scaled = retention_policy(sts)
        if when_scaled == "Retain":
            return False
        ghost = {"metadata": {"name": pod_name, "uid": ""}}
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            claim = self._get_claim(o.namespace_of(sts), claim_name(template, sts, ordinal))
            if claim is not None and _has_stale_owner_ref(claim, ghost, POD_KIND):
                return True
        return False

    def _fix_claim_owners(self, sts, pod):
        """UpdatePodClaimForRetentionPolicy."""
        _, ordinal = parent_and_ordinal(o.name_of(pod))
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            claim = self._get_claim(o.namespace_of(sts), claim_name(template, sts, ordinal))
            if claim is None or claim_owner_up_to_date(claim, sts, pod):
                continue
            new = mutable(claim)
            refs = updated_claim_owner_refs(claim, sts, pod)
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.ctx.write_through(PVC, self.api.update(PVC, o.namespace_of(claim), new))
            self.log.info("claim %s/%s owners set for retention policy", o.namespace_of(claim),
                          o.name_of(claim))

    def _delete_pod(self, sts, pod):
        try:
            self.api.delete(POD, o.namespace_of(pod), o.name_of(pod))
        except self.api.NotFound:
            return
        self._event(sts, "Normal", "SuccessfulDelete",
                    f"delete Pod {o.name_of(pod)} in StatefulSet {o.name_of(sts)} successful")
        self.log.info("deleted pod %s/%s", o.namespace_of(pod), o.name_of(pod))

    # -- the sync -------------------------------------------------------------------------

    def sync(self, key):
        namespace, _, name = key.partition("/")
        sts = self.store.get(STS, namespace, name)
        if sts is None:
            return None
        revision = revision_name(sts)
        try:
            if not o.is_deleting(sts):
                self._update_set(sts, revision)
        finally:
            self._update_status(sts, revision)
        return None

    def _update_set(self, sts, revision):
        start, end = _ordinal_range(sts)
        replicas, condemned = {}, []
        for pod in self._pods_of(sts):
            _, ordinal = parent_and_ordinal(o.name_of(pod))
            if start <= ordinal <= end:
                replicas[ordinal] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: parent_and_ordinal(o.name_of(p))[1], reverse=True)
        monotonic = (sts.get("spec") or {}).get("podManagementPolicy") != "Parallel"

        first_unhealthy = None
        for ordinal in range(start, end + 1):
            if not _healthy(replicas.get(ordinal)):
                first_unhealthy = ("replica", ordinal)
                break
        if first_unhealthy is None:
            for pod in reversed(condemned):
                if not _healthy(pod):
                    first_unhealthy = ("condemned", o.name_of(pod))
                    break

        for ordinal in range(start, end + 1):
            if not self._process_replica(sts, revision, ordinal, replicas.get(ordinal), monotonic) \
                    and monotonic:
                return

        for pod in condemned:
            self._fix_claim_owners(sts, pod)

        for pod in condemned:
            if o.is_deleting(pod):
                if monotonic:
                    return
                continue
            if monotonic and not _healthy(pod) and first_unhealthy != ("condemned", o.name_of(pod)):
                return
            self._delete_pod(sts, pod)
            if monotonic:
                return

    def _process_replica(self, sts, revision, ordinal, pod, monotonic):
        """processReplica. Returns False when a monotonic sync must stop here."""
        pod_name = f"{o.name_of(sts)}-{ordinal}"
        try:
            if pod is not None and o.pod_is_terminated(pod):
                if not o.is_deleting(pod):
                    self._delete_pod(sts, pod)
                return False
            if pod is None:
                if self._claim_is_stale(sts, ordinal, pod_name):
                    return False
                self._create_claims(sts, ordinal, pod_name)
                new = self._new_pod(sts, ordinal, revision)
                try:
                    created = self.api.create(POD, o.namespace_of(sts), new)
                except self.api.AlreadyExists:
                    return False
                except self.api.ApiError as e:
                    self._event(sts, "Warning", "FailedCreate",
                                f"create Pod {pod_name} in StatefulSet {o.name_of(sts)} failed "
                                f"error: {e}")
                    raise
                self.ctx.write_through(POD, created)
                self.log.info("created pod %s/%s", o.namespace_of(sts), pod_name)
                self._fix_claim_owners(sts, created)
                self._event(sts, "Normal", "SuccessfulCreate",
                            f"create Pod {pod_name} in StatefulSet {o.name_of(sts)} successful")
                return not monotonic
            if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                self._create_claims(sts, ordinal, pod_name)
            if o.is_deleting(pod) or not o.pod_is_ready(pod):
                return not monotonic
            self._fix_claim_owners(sts, pod)
            return True
        except Blocked as e:
            self.log.info("statefulset %s/%s: %s", o.namespace_of(sts), o.name_of(sts), e)
            return False

    def _update_status(self, sts, revision):
        now = self.ctx.now()
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        status = sts.get("status") or {}
        current_revision = status.get("currentRevision") or revision
        pods = self._pods_of(sts)
        if not any((p.get("metadata") or {}).get("labels", {}).get(o.LABEL_REVISION) == current_revision
                   for p in pods if not o.is_deleting(p)):
            current_revision = revision
        counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                  "currentReplicas": 0, "updatedReplicas": 0}
        for pod in pods:
            counts["replicas"] += 1
            if o.pod_is_ready(pod):
                counts["readyReplicas"] += 1
                if min_ready <= 0 or _ready_for(pod, now) >= min_ready:
                    counts["availableReplicas"] += 1
            if not o.is_deleting(pod):
                label = o.labels_of(pod).get(o.LABEL_REVISION)
                counts["currentReplicas"] += label == current_revision
                counts["updatedReplicas"] += label == revision
        wanted = dict(counts)
        wanted["observedGeneration"] = (sts.get("metadata") or {}).get("generation", 1)
        wanted["currentRevision"] = current_revision
        wanted["updateRevision"] = revision
        wanted["collisionCount"] = status.get("collisionCount", 0)
        if all(status.get(k) == v for k, v in wanted.items()):
            return
        try:
            new = self.api.patch(STS, o.namespace_of(sts), o.name_of(sts), {"status": wanted},
                                 subresource="status")
            self.ctx.write_through(STS, new)
        except self.api.NotFound:
            pass


def _ready_for(pod, now):
    """Seconds the pod has been Ready (RFC 3339 timestamps, second precision)."""
    import datetime

    def parse(ts):
        return datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")

    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            try:
                return (parse(now) - parse(cond.get("lastTransitionTime") or now)).total_seconds()
            except ValueError:
                return 0
    return 0
