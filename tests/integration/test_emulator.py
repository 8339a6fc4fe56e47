#!/usr/bin/python3
"""The Kubernetes API emulator (tests/kube) behaves like the 1.32 API server where our
programs and people depend on it: what kubectl shows and the messages a person reads for
each refusal, watch semantics, fault injection, TLS and authentication.
"""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Emulator, Proc, temp_dir, wait_for  # noqa: E402

PVC = """apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: {size}
"""

STORAGECLASS = """apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ordinal
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: ordinal.dev/local
volumeBindingMode: WaitForFirstConsumer
"""

STATEFULSET = """apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  replicas: 2
  serviceName: {name}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: db, image: "postgres:16"}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"""

CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: volumetasks.ordinal.dev
spec:
  group: ordinal.dev
  scope: Namespaced
  names: {plural: volumetasks, singular: volumetask, kind: VolumeTask, shortNames: [vt]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Action, type: string, jsonPath: .spec.action}
    - {name: Ordinal, type: integer, jsonPath: .spec.ordinal}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [action, ordinal]
            properties:
              action: {type: string, enum: [backup, restore]}
              ordinal: {type: integer, minimum: 0}
          status:
            type: object
            properties:
              phase: {type: string}
"""

PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def pvc_body(name, size="1Gi", labels=None):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def header(output):
    return output.splitlines()[0].split()


class KubectlAgainstEmulator(unittest.TestCase):
    """kubectl's verbs and what it shows, with one emulator for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(nodes=("node-a", "node-b=host-b"))
        cls.emu.kubectl("apply", "-f", "-", input=STORAGECLASS)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def kubectl(self, *args, **kw):
        return self.emu.kubectl(*args, **kw)

    def create_pvc(self, name, size="1Gi", app="test"):
        return self.kubectl("create", "-f", "-", input=PVC.format(name=name, size=size, app=app))

    def fails(self, *args, input=None):
        cp = self.kubectl(*args, check=False, input=input)
        self.assertNotEqual(cp.returncode, 0, f"kubectl {args} should have failed:\n{cp.stdout}")
        return cp.stderr

    # ---- get: nodes, namespaces, tables ----

    def test_nodes_are_ready_with_their_hostname_label(self):
        out = self.kubectl("get", "nodes").stdout
        self.assertEqual(header(out), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"])
        self.assertRegex(out, r"node-a\s+Ready\s+<none>\s+\S+\s+v1\.32")
        self.assertRegex(out, r"node-b\s+Ready")
        label = self.kubectl("get", "node", "node-b", "-o",
                             r"jsonpath={.metadata.labels.kubernetes\.io/hostname}").stdout
        self.assertEqual(label, "host-b")

    def test_default_namespaces_exist(self):
        out = self.kubectl("get", "namespaces").stdout
        self.assertEqual(header(out), ["NAME", "STATUS", "AGE"])
        self.assertRegex(out, r"default\s+Active")
        self.assertRegex(out, r"kube-system\s+Active")

    def test_pvc_table_columns_and_default_storage_class(self):
        self.assertIn("persistentvolumeclaim/table-a created", self.create_pvc("table-a").stdout)
        out = self.kubectl("get", "pvc", "table-a").stdout
        self.assertEqual(header(out), ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES",
                                       "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"])
        self.assertRegex(out, r"table-a\s+Pending\s+ordinal\s+<unset>")
        wide = self.kubectl("get", "pvc", "table-a", "-o", "wide").stdout
        self.assertIn("VOLUMEMODE", header(wide))
        self.assertRegex(wide, r"Filesystem\s*$")

    def test_storageclass_table_marks_the_default(self):
        out = self.kubectl("get", "sc").stdout
        self.assertEqual(header(out), ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                       "ALLOWVOLUMEEXPANSION", "AGE"])
        self.assertRegex(out, r"ordinal \(default\)\s+ordinal.dev/local\s+Delete\s+WaitForFirstConsumer\s+false")

    def test_pv_table_shows_claim_and_capacity(self):
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-table"},
              "spec": {"capacity": {"storage": "2048Mi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                       "hostPath": {"path": "/tmp/pv-table"}, "storageClassName": "ordinal",
                       "claimRef": {"namespace": "default", "name": "somebody"}}}
        self.kubectl("create", "-f", "-", input=json.dumps(pv))
        out = self.kubectl("get", "pv", "pv-table").stdout
        self.assertEqual(header(out)[:3], ["NAME", "CAPACITY", "ACCESS"])
        # 2048Mi is stored in canonical form, as the real server does.
        self.assertRegex(out, r"pv-table\s+2Gi\s+RWO,ROX\s+Retain\s+Pending\s+default/somebody\s+ordinal")

    def test_output_formats(self):
        self.create_pvc("formats-a", size="1.5Gi")
        obj = json.loads(self.kubectl("get", "pvc", "formats-a", "-o", "json").stdout)
        self.assertEqual(obj["spec"]["resources"]["requests"]["storage"], "1536Mi")
        self.assertEqual(obj["spec"]["volumeMode"], "Filesystem")
        self.assertEqual(obj["status"]["phase"], "Pending")
        self.assertRegex(obj["metadata"]["uid"], r"^[0-9a-f-]{36}$")
        self.assertRegex(obj["metadata"]["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIn("storageClassName: ordinal", self.kubectl("get", "pvc", "formats-a", "-o", "yaml").stdout)
        names = self.kubectl("get", "pvc", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
        self.assertIn("formats-a", names)

    # ---- create / apply ----

    def test_apply_creates_then_reports_unchanged(self):
        manifest = PVC.format(name="applied", size="1Gi", app="x")
        self.assertIn("persistentvolumeclaim/applied created", self.kubectl("apply", "-f", "-", input=manifest).stdout)
        self.assertIn("persistentvolumeclaim/applied unchanged", self.kubectl("apply", "-f", "-", input=manifest).stdout)
        ann = self.kubectl("get", "pvc", "applied", "-o",
                           r"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}").stdout
        self.assertEqual(json.loads(ann)["metadata"]["name"], "applied")
        changed = manifest.replace("app: x", "app: web")
        self.assertIn("configured", self.kubectl("apply", "-f", "-", input=changed).stdout)
        self.assertEqual(self.kubectl("get", "pvc", "applied", "-o", "jsonpath={.metadata.labels.app}").stdout, "web")

    def test_create_job_from_cronjob(self):
        # kubectl sends the Job as protobuf: its pod template arrives whole, with its owner.
        cronjob = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "deploy", "examples", "backup-cronjob.yaml")
        self.kubectl("create", "namespace", "jobs-test")
        with open(cronjob) as f:
            text = f.read().replace("namespace: ordinal-system", "namespace: jobs-test")
        self.kubectl("apply", "-f", "-", input=text)
        self.kubectl("-n", "jobs-test", "create", "job", "now", "--from=cronjob/ordinal-backup-mysql")
        cj = json.loads(self.kubectl("-n", "jobs-test", "get", "cronjob", "ordinal-backup-mysql",
                                     "-o", "json").stdout)
        job = json.loads(self.kubectl("-n", "jobs-test", "get", "job", "now", "-o", "json").stdout)
        tmpl = cj["spec"]["jobTemplate"]["spec"]
        self.assertEqual(job["spec"]["template"]["spec"], tmpl["template"]["spec"])
        self.assertEqual(job["spec"]["backoffLimit"], tmpl["backoffLimit"])
        self.assertEqual(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
                         "manual")
        self.assertEqual([(o["kind"], o["name"], o["uid"], o["controller"])
                          for o in job["metadata"]["ownerReferences"]],
                         [("CronJob", "ordinal-backup-mysql", cj["metadata"]["uid"], True)])
        # A field the emulator cannot decode is refused, never dropped: a container's
        # livenessProbe (Container field 10) is not in its table.
        with_probe = text.replace("            imagePullPolicy: IfNotPresent\n",
                                  "            imagePullPolicy: IfNotPresent\n"
                                  "            livenessProbe:\n"
                                  "              exec: {command: [\"true\"]}\n", 1)
        self.assertNotEqual(with_probe, text)
        self.kubectl("apply", "-f", "-", input=with_probe)
        err = self.fails("-n", "jobs-test", "create", "job", "probe",
                         "--from=cronjob/ordinal-backup-mysql")
        self.assertIn("cannot decode field 10 of protobuf Job.JobSpec.PodTemplateSpec.PodSpec."
                      "Container", err)

    def test_create_existing_name_is_already_exists(self):
        self.create_pvc("twice")
        err = self.fails("create", "-f", "-", input=PVC.format(name="twice", size="1Gi", app="x"))
        self.assertIn('Error from server (AlreadyExists): error when creating "STDIN": '
                      'persistentvolumeclaims "twice" already exists', err)

    def test_get_missing_object_is_not_found(self):
        err = self.fails("get", "pvc", "nobody-here")
        self.assertIn('Error from server (NotFound): persistentvolumeclaims "nobody-here" not found', err)

    def test_create_in_missing_namespace_is_not_found(self):
        err = self.fails("create", "-n", "no-such-ns", "-f", "-", input=PVC.format(name="x", size="1Gi", app="x"))
        self.assertIn('namespaces "no-such-ns" not found', err)

    def test_unknown_field_is_rejected_by_strict_field_validation(self):
        bad = PVC.format(name="strict", size="1Gi", app="x").replace("  accessModes:", "  acessModes: [ReadWriteOnce]\n  accessModes:")
        err = self.fails("create", "-f", "-", input=bad)
        self.assertIn('PersistentVolumeClaim in version "v1" cannot be handled as a PersistentVolumeClaim: '
                      'strict decoding error: unknown field "spec.acessModes"', err)
        # --validate=false asks the server to ignore unknown fields, which it then drops.
        self.kubectl("create", "--validate=false", "-f", "-", input=bad)
        obj = json.loads(self.kubectl("get", "pvc", "strict", "-o", "json").stdout)
        self.assertNotIn("acessModes", obj["spec"])

    def test_duplicate_field_is_rejected_when_strict(self):
        raw = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup2"},'
               '"data":{"a":"1"}}')
        status, body = self.emu.api("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", raw)
        self.assertEqual(status, 400)
        self.assertIn('duplicate field "name"', body["message"])

    # ---- 422 Invalid ----

    def test_invalid_names_per_kind(self):
        err = self.fails("create", "-f", "-", input=PVC.format(name="Bad_Name", size="1Gi", app="x"))
        self.assertIn('The PersistentVolumeClaim "Bad_Name" is invalid: metadata.name: Invalid value: '
                      '"Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                      "characters, '-' or '.'", err)
        err = self.fails("create", "namespace", "has.dot")
        self.assertIn('The Namespace "has.dot" is invalid: metadata.name: Invalid value: "has.dot": '
                      "a lowercase RFC 1123 label must consist of", err)
        err = self.fails("create", "service", "clusterip", "9lives", "--tcp=80:80")
        self.assertIn('Service "9lives" is invalid: metadata.name: Invalid value: "9lives": '
                      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                      "start with an alphabetic character", err)

    def test_pvc_without_storage_request(self):
        bad = PVC.format(name="nostorage", size="1Gi", app="x").replace("      storage: 1Gi\n", "      {}\n").replace("requests:\n      {}", "requests: {}")
        err = self.fails("create", "-f", "-", input=bad)
        self.assertIn('The PersistentVolumeClaim "nostorage" is invalid: spec.resources[storage]: Required value', err)
        status, body = self.emu.api("POST", PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                   "metadata": {"name": "nomodes"},
                                                   "spec": {"resources": {"requests": {"storage": "0"}}}})
        self.assertEqual(status, 422)
        self.assertEqual(body["reason"], "Invalid")
        fields = {c["field"]: c["message"] for c in body["details"]["causes"]}
        self.assertEqual(fields["spec.accessModes"], "Required value: at least 1 access mode is required")
        self.assertEqual(fields["spec.resources[storage]"], 'Invalid value: "0": must be greater than zero')
        # A quantity that does not parse is refused by the decoder (400), before validation.
        status, body = self.emu.api("POST", PVCS, pvc_body("garbage", size="10 gigs"))
        self.assertEqual((status, body["reason"]), (400, "BadRequest"))
        self.assertIn("quantities must match the regular expression", body["message"])

    def test_pv_without_capacity_or_volume_source(self):
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-empty"},
              "spec": {"accessModes": ["ReadWriteOnce"]}}
        err = self.fails("create", "-f", "-", input=json.dumps(pv))
        self.assertIn('The PersistentVolume "pv-empty" is invalid:', err)
        self.assertIn("* spec.capacity: Required value", err)
        self.assertIn("* spec: Required value: must specify a volume type", err)
        pv["spec"].update({"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/a"},
                           "local": {"path": "/b"}})
        err = self.fails("create", "-f", "-", input=json.dumps(pv))
        self.assertIn("spec.local: Forbidden: may not specify more than 1 volume type", err)
        del pv["spec"]["hostPath"]
        err = self.fails("create", "-f", "-", input=json.dumps(pv))
        self.assertIn("spec.nodeAffinity: Required value: Local volume requires node affinity", err)
        pv["spec"] = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                      "hostPath": {"path": "/a", "type": "Dir"}}
        status, body = self.emu.api("POST", "/api/v1/persistentvolumes", pv)
        self.assertEqual(status, 422)
        self.assertIn('spec.hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice"', body["message"])

    def test_pvc_spec_is_immutable_except_growing_a_bound_claim(self):
        self.create_pvc("immutable")
        err = self.fails("patch", "pvc", "immutable", "--type=merge", "-p", '{"spec":{"accessModes":["ReadWriteMany"]}}')
        self.assertIn('The PersistentVolumeClaim "immutable" is invalid: spec: Forbidden: spec is immutable '
                      "after creation except resources.requests and volumeAttributesClassName for bound claims", err)
        # Unbound: the storage request cannot change either.
        err = self.fails("patch", "pvc", "immutable", "--type=merge", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}')
        self.assertIn("spec is immutable after creation", err)
        # Bound (as the PV controller would do): growing is allowed, shrinking is not.
        merge = "application/merge-patch+json"
        self.assertEqual(self.emu.api("PATCH", f"{PVCS}/immutable", {"spec": {"volumeName": "pv-x"}}, merge)[0], 200)
        self.assertEqual(self.emu.api("PATCH", f"{PVCS}/immutable/status", {"status": {
            "phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}, merge)[0], 200)
        self.kubectl("patch", "pvc", "immutable", "--type=merge", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}')
        err = self.fails("patch", "pvc", "immutable", "--type=merge", "-p", '{"spec":{"resources":{"requests":{"storage":"512Mi"}}}}')
        self.assertIn("spec.resources.requests.storage: Forbidden: field can not be less than status.capacity", err)
        out = self.kubectl("get", "pvc", "immutable").stdout
        self.assertRegex(out, r"immutable\s+Bound\s+pv-x\s+1Gi\s+RWO\s+ordinal")

    def test_pv_volume_source_is_immutable(self):
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-src"},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                       "hostPath": {"path": "/srv/a"}}}
        self.kubectl("create", "-f", "-", input=json.dumps(pv))
        err = self.fails("patch", "pv", "pv-src", "--type=merge", "-p", '{"spec":{"hostPath":{"path":"/srv/b"}}}')
        self.assertIn('The PersistentVolume "pv-src" is invalid: spec.persistentvolumesource: Forbidden: '
                      "spec.persistentvolumesource is immutable after creation", err)
        # Binding fields may change (the PV controller sets claimRef).
        self.kubectl("patch", "pv", "pv-src", "--type=merge", "-p",
                     '{"spec":{"claimRef":{"namespace":"default","name":"c","uid":"u1"}}}')

    def test_statefulset_spec_update_is_restricted(self):
        self.kubectl("apply", "-f", "-", input=STATEFULSET.format(name="restricted"))
        err = self.fails("patch", "sts", "restricted", "--type=merge", "-p", '{"spec":{"serviceName":"other"}}')
        self.assertIn('The StatefulSet "restricted" is invalid: spec: Forbidden: updates to statefulset spec '
                      "for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                      "'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                      "are forbidden", err)
        bad = STATEFULSET.format(name="mismatch").replace("labels: {app: mismatch}", "labels: {app: other}")
        err = self.fails("create", "-f", "-", input=bad)
        self.assertIn("spec.template.metadata.labels: Invalid value:", err)
        self.assertIn("`selector` does not match template `labels`", err)

    def test_invalid_label_value_via_api(self):
        status, body = self.emu.api("POST", PVCS, pvc_body("badlabel", labels={"app": "has space"}))
        self.assertEqual(status, 422)
        self.assertIn('metadata.labels: Invalid value: "has space": a valid label must be an empty string',
                      body["message"])

    # ---- patch, label, annotate, selectors ----

    def test_patch_label_annotate(self):
        self.create_pvc("patched")
        self.assertIn("patched", self.kubectl("patch", "pvc", "patched", "--type=merge", "-p",
                                              '{"metadata":{"labels":{"tier":"gold"}}}').stdout)
        self.kubectl("label", "pvc", "patched", "owner=team-a")
        self.kubectl("annotate", "pvc", "patched", "note=hello")
        obj = self.emu.api("GET", f"{PVCS}/patched")[1]
        self.assertEqual(obj["metadata"]["labels"], {"app": "test", "tier": "gold", "owner": "team-a"})
        self.assertEqual(obj["metadata"]["annotations"]["note"], "hello")
        self.kubectl("label", "pvc", "patched", "owner-")
        obj = self.emu.api("GET", f"{PVCS}/patched")[1]
        self.assertNotIn("owner", obj["metadata"]["labels"])
        # A patch that changes nothing keeps the resourceVersion (and sends no watch event).
        before = obj["metadata"]["resourceVersion"]
        self.kubectl("patch", "pvc", "patched", "--type=merge", "-p", '{"metadata":{"labels":{"tier":"gold"}}}')
        self.assertEqual(self.emu.api("GET", f"{PVCS}/patched")[1]["metadata"]["resourceVersion"], before)

    def test_label_selectors(self):
        for name, labels in (("sel-1", {"tier": "a", "x": "1"}), ("sel-2", {"tier": "b"}),
                             ("sel-3", {"tier": "c", "x": "2"})):
            self.assertEqual(self.emu.api("POST", PVCS, pvc_body(name, labels=dict(labels, group="sel")))[0], 201)

        def names(selector):
            out = self.kubectl("get", "pvc", "-l", f"group=sel,{selector}", "-o", "jsonpath={.items[*].metadata.name}").stdout
            return sorted(out.split())

        self.assertEqual(names("tier in (a,b)"), ["sel-1", "sel-2"])
        self.assertEqual(names("tier notin (a,b)"), ["sel-3"])
        self.assertEqual(names("x"), ["sel-1", "sel-3"])
        self.assertEqual(names("!x"), ["sel-2"])
        self.assertEqual(names("x!=1"), ["sel-2", "sel-3"])
        self.assertEqual(names("tier==c"), ["sel-3"])

    def test_field_selectors(self):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-a"},
               "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}}
        self.assertEqual(self.emu.api("POST", "/api/v1/namespaces/default/pods", pod)[0], 201)
        pod["metadata"]["name"], pod["spec"]["nodeName"] = "on-b", "node-b"
        self.assertEqual(self.emu.api("POST", "/api/v1/namespaces/default/pods", pod)[0], 201)
        out = self.kubectl("get", "pods", "--field-selector", "spec.nodeName=node-b", "-o", "name").stdout
        self.assertEqual(out.split(), ["pod/on-b"])
        out = self.kubectl("get", "pods", "--field-selector", "metadata.name!=on-b,status.phase=Pending", "-o", "name").stdout
        self.assertIn("pod/on-a", out.split())
        self.assertNotIn("pod/on-b", out.split())
        err = self.fails("get", "pods", "--field-selector", "spec.image=x")
        self.assertIn("field label not supported: spec.image", err)

    # ---- validation the real server does (issue 18, item 3) ----

    def test_node_affinity_requirements_are_validated(self):
        """ValidateNodeSelectorRequirement: In/NotIn need values, Exists takes none, and the
        operator must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt."""
        def pv(name, expr):
            return json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "local": {"path": "/mnt/x"},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [
                             {"matchExpressions": [expr]}]}}}})
        path = "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]"
        err = self.fails("create", "-f", "-", input=pv("aff-novalues", {
            "key": "kubernetes.io/hostname", "operator": "In"}))
        self.assertIn(f"{path}.values: Required value: must be specified when `operator` is "
                      f"'In' or 'NotIn'", err)
        err = self.fails("create", "-f", "-", input=pv("aff-op", {
            "key": "kubernetes.io/hostname", "operator": "Equals", "values": ["node-a"]}))
        self.assertIn(f'{path}.operator: Invalid value: "Equals": not a valid selector operator', err)
        err = self.fails("create", "-f", "-", input=pv("aff-exists", {
            "key": "kubernetes.io/hostname", "operator": "Exists", "values": ["node-a"]}))
        self.assertIn(f"{path}.values: Forbidden: may not be specified when `operator` is "
                      f"'Exists' or 'DoesNotExist'", err)
        self.kubectl("create", "-f", "-", input=pv("aff-ok", {
            "key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}))

    def test_owner_references_are_validated(self):
        """ValidateOwnerReferences: uid required, at most one controller."""
        def cm(name, refs):
            return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "ownerReferences": refs}})
        ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u-1"}
        err = self.fails("create", "-f", "-", input=cm("own-nouid", [dict(ref, uid="")]))
        self.assertIn('metadata.ownerReferences.uid: Invalid value: "": must not be empty', err)
        err = self.fails("create", "-f", "-", input=cm("own-two", [
            dict(ref, controller=True), dict(ref, name="db", uid="u-2", controller=True)]))
        self.assertIn('Only one reference can have Controller set to true. Found "true" in '
                      'references for StatefulSet/web and StatefulSet/db', err)
        self.kubectl("create", "-f", "-", input=cm("own-ok", [dict(ref, controller=True)]))

    def test_event_namespace_rules(self):
        """legacyValidateEvent: an Event about a cluster-scoped object lives in "default" (or,
        with eventTime, "kube-system"); with eventTime the reporting fields are required."""
        def event(name, ns, **extra):
            return json.dumps(dict({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"kind": "Node", "name": "node-a", "apiVersion": "v1"},
                "reason": "Test", "message": "m", "type": "Normal"}, **extra))
        err = self.fails("create", "-f", "-", input=event("ev-ns", "kube-public"))
        self.assertIn('involvedObject.namespace: Invalid value: "": does not match event.namespace', err)
        self.kubectl("create", "-f", "-", input=event("ev-default", "default"))
        err = self.fails("create", "-f", "-", input=event(
            "ev-time", "kube-system", eventTime="2026-12-04T10:00:00.000000Z"))
        self.assertIn("reportingComponent: Required value", err)
        self.assertIn("action: Required value", err)
        self.kubectl("create", "-f", "-", input=event(
            "ev-time-ok", "kube-system", eventTime="2026-12-04T10:00:00.000000Z",
            reportingComponent="ordinal.dev/test", reportingInstance="node-a", action="Testing"))

    def test_storage_class_provisioner_name_format(self):
        """validateProvisioner: a qualified name."""
        err = self.fails("create", "-f", "-", input=STORAGECLASS.replace(
            "name: local", "name: badprov").replace("ordinal.dev/local", "'my provisioner'"))
        self.assertIn('provisioner: Invalid value: "my provisioner"', err)

    def test_field_selectors_of_claims_and_volumes(self):
        """PersistentVolume(Claim)ToSelectableFields: metadata fields and "name" only."""
        self.create_pvc("fsel")
        for kind in ("pvc", "pv"):
            err = self.fails("get", kind, "--field-selector", "status.phase=Bound")
            self.assertIn("field label not supported: status.phase", err)
        out = self.kubectl("get", "pvc", "--field-selector", "name=fsel", "-o", "name").stdout
        self.assertEqual(out.split(), ["persistentvolumeclaim/fsel"])
        err = self.fails("get", "pv", "--field-selector", "metadata.namespace=default")
        self.assertIn("field label not supported: metadata.namespace", err)

    def test_label_selector_syntax(self):
        """labels.Parse: a trailing comma and a space inside a value set are refused; no space
        is needed before '('."""
        self.create_pvc("lsel", app="lsel")
        err = self.fails("get", "pvc", "-l", "app=lsel,")
        self.assertIn("found '', expected: identifier after ','", err)
        err = self.fails("get", "pvc", "-l", "app in (ls el)")
        self.assertIn("unable to parse requirement: found 'el', expected: ',' or ')'", err)
        out = self.kubectl("get", "pvc", "-l", "app in(lsel)", "-o", "name").stdout
        self.assertEqual(out.split(), ["persistentvolumeclaim/lsel"])

    def test_generate_name_is_truncated(self):
        """names.SimpleNameGenerator: the prefix is cut to 58 characters before the 5-character
        suffix, so a long generateName still gives a valid 63-character name."""
        prefix = "g" * 70
        out = self.kubectl("create", "-f", "-", "-o", "jsonpath={.metadata.name}", input=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": prefix}})).stdout
        self.assertEqual(len(out), 63, out)
        self.assertTrue(out.startswith("g" * 58) and not out.startswith("g" * 59), out)

    # ---- events and describe ----

    def test_describe_pvc_shows_its_events(self):
        self.create_pvc("described")
        uid = self.kubectl("get", "pvc", "described", "-o", "jsonpath={.metadata.uid}").stdout
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for i, (etype, reason, msg) in enumerate((("Warning", "ProvisioningFailed", "no space left on node-a"),
                                                  ("Normal", "ExternalProvisioning", "waiting"))):
            ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"described.{i}"},
                  "involvedObject": {"kind": "PersistentVolumeClaim", "namespace": "default",
                                     "name": "described", "uid": uid, "apiVersion": "v1"},
                  "reason": reason, "message": msg, "type": etype,
                  "source": {"component": "ordinal-provisioner"}, "firstTimestamp": now,
                  "lastTimestamp": now, "count": 1}
            self.assertEqual(self.emu.api("POST", "/api/v1/namespaces/default/events", ev)[0], 201)
        out = self.kubectl("describe", "pvc", "described").stdout
        self.assertRegex(out, r"Status:\s+Pending")
        self.assertRegex(out, r"Warning\s+ProvisioningFailed\s+\S+\s+ordinal-provisioner\s+no space left on node-a")
        events = self.kubectl("get", "events", "--field-selector", "involvedObject.name=described,type=Warning").stdout
        self.assertEqual(header(events), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"])
        self.assertIn("persistentvolumeclaim/described", events)
        self.assertNotIn("ExternalProvisioning", events)

    # ---- statefulsets and scale ----

    def test_scale_statefulset_and_wait(self):
        self.kubectl("apply", "-f", "-", input=STATEFULSET.format(name="db"))
        out = self.kubectl("get", "sts", "db").stdout
        self.assertEqual(header(out), ["NAME", "READY", "AGE"])
        self.assertRegex(out, r"db\s+0/2")
        self.assertIn("statefulset.apps/db scaled", self.kubectl("scale", "sts", "db", "--replicas=3").stdout)
        self.kubectl("wait", "--for=jsonpath={.spec.replicas}=3", "sts/db", "--timeout=10s")
        status, scale = self.emu.api("GET", "/apis/apps/v1/namespaces/default/statefulsets/db/scale")
        self.assertEqual((status, scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]),
                         (200, "Scale", 3, "app=db"))
        gen = json.loads(self.kubectl("get", "sts", "db", "-o", "json").stdout)["metadata"]["generation"]
        self.assertEqual(gen, 2)  # the spec change bumped it
        self.kubectl("label", "sts", "db", "x=y")
        gen = json.loads(self.kubectl("get", "sts", "db", "-o", "json").stdout)["metadata"]["generation"]
        self.assertEqual(gen, 2)  # metadata changes do not

    def test_reapply_changed_statefulset_uses_strategic_merge(self):
        manifest = STATEFULSET.format(name="rolling")
        self.kubectl("apply", "-f", "-", input=manifest)
        two = manifest.replace('[{name: db, image: "postgres:16"}]',
                               '[{name: db, image: "postgres:17"}, {name: sidecar, image: "busybox:1"}]')
        self.assertIn("statefulset.apps/rolling configured", self.kubectl("apply", "-f", "-", input=two).stdout)
        images = lambda: self.kubectl("get", "sts", "rolling", "-o",  # noqa: E731
                                      "jsonpath={.spec.template.spec.containers[*].image}").stdout
        self.assertEqual(images(), "postgres:17 busybox:1")
        # Dropping the sidecar from the manifest removes it ($setElementOrder and $patch: delete).
        self.kubectl("apply", "-f", "-", input=manifest.replace("postgres:16", "postgres:17"))
        self.assertEqual(images(), "postgres:17")

    # ---- finalizers, deletion, dry-run ----

    def test_finalizer_keeps_object_until_removed(self):
        self.create_pvc("held")
        self.emu.api("PATCH", f"{PVCS}/held", {"metadata": {"finalizers": ["example.com/hold"]}},
                     "application/merge-patch+json")
        deleter = Proc(["kubectl", "delete", "pvc", "held", "--timeout=30s"], env=self.emu.env, name="kubectl-delete")
        wait_for(lambda: self.kubectl("get", "pvc", "held", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout,
                 10, "deletionTimestamp on the claim")
        self.assertTrue(deleter.running(), "kubectl delete returned while a finalizer holds the claim")
        self.assertRegex(self.kubectl("get", "pvc", "held").stdout, r"held\s+Terminating")
        err = self.fails("patch", "pvc", "held", "--type=merge", "-p",
                         '{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}')
        self.assertIn("no new finalizers can be added if the object is being deleted", err)
        self.kubectl("patch", "pvc", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        self.assertEqual(deleter.wait(timeout=20), 0, deleter.log())
        self.assertIn('persistentvolumeclaim "held" deleted', deleter.log())
        self.fails("get", "pvc", "held")

    def test_wait_for_delete(self):
        self.create_pvc("awaited")
        waiter = Proc(["kubectl", "wait", "--for=delete", "pvc/awaited", "--timeout=20s"], env=self.emu.env, name="kubectl-wait")
        self.kubectl("delete", "pvc", "awaited")
        self.assertEqual(waiter.wait(timeout=20), 0, waiter.log())

    def test_server_dry_run_persists_nothing(self):
        out = self.kubectl("create", "--dry-run=server", "-f", "-", input=PVC.format(name="dry", size="1Gi", app="x")).stdout
        self.assertIn("persistentvolumeclaim/dry created (server dry run)", out)
        self.fails("get", "pvc", "dry")
        err = self.fails("create", "--dry-run=server", "-f", "-", input=PVC.format(name="Dry", size="1Gi", app="x"))
        self.assertIn('The PersistentVolumeClaim "Dry" is invalid', err)
        self.create_pvc("dry-del")
        self.kubectl("delete", "pvc", "dry-del", "--dry-run=server")
        self.kubectl("get", "pvc", "dry-del")

    def test_namespace_deletion_removes_its_objects(self):
        self.kubectl("create", "namespace", "doomed")
        self.kubectl("create", "-n", "doomed", "-f", "-", input=PVC.format(name="inside", size="1Gi", app="x"))
        self.kubectl("delete", "namespace", "doomed", "--timeout=20s")
        self.fails("get", "namespace", "doomed")
        status, _ = self.emu.api("GET", "/api/v1/namespaces/doomed/persistentvolumeclaims/inside")
        self.assertEqual(status, 404)

    def test_namespace_terminates_while_finalizers_hold_its_content(self):
        """The namespace controller (namespaced_resources_deleter, status_condition_utils): a
        deleted namespace stays Terminating, with spec.finalizers [kubernetes] and conditions
        that say what remains, until its content is gone; then it goes too."""
        self.kubectl("create", "namespace", "held")
        self.assertEqual(self.kubectl("get", "namespace", "held", "-o",
                                      "jsonpath={.spec.finalizers}").stdout, '["kubernetes"]')
        self.kubectl("create", "-n", "held", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "kept", "finalizers": ["example.com/hold"]}}))
        self.kubectl("create", "-n", "held", "-f", "-", input=PVC.format(name="free", size="1Gi", app="x"))
        self.kubectl("delete", "namespace", "held", "--wait=false")

        def condition(ctype):
            ns = json.loads(self.kubectl("get", "namespace", "held", "-o", "json").stdout)
            return next((c for c in ns["status"].get("conditions") or [] if c["type"] == ctype), None)
        held = wait_for(lambda: condition("NamespaceFinalizersRemaining"), 20, "deletion conditions")
        self.assertEqual((held["status"], held["reason"], held["message"]),
                         ("True", "SomeFinalizersRemain", "Some content in the namespace has "
                          "finalizers remaining: example.com/hold in 1 resource instances"))
        self.assertEqual(condition("NamespaceContentRemaining")["message"],
                         "Some resources are remaining: configmaps. has 1 resource instances")
        self.assertRegex(self.kubectl("get", "namespace", "held").stdout, r"held\s+Terminating")
        self.fails("get", "pvc", "free", "-n", "held")  # the controller deleted what it could
        self.assertIn("deletionTimestamp", self.kubectl(
            "get", "configmap", "kept", "-n", "held", "-o", "json").stdout)
        err = self.fails("create", "-n", "held", "-f", "-", input=PVC.format(name="late", size="1Gi", app="x"))
        self.assertIn("because it is being terminated", err)
        self.kubectl("patch", "configmap", "kept", "-n", "held", "--type=merge",
                     "-p", '{"metadata":{"finalizers":null}}')
        self.kubectl("wait", "--for=delete", "namespace/held", "--timeout=20s")

    # ---- kubectl get -w ----

    def test_get_watch_prints_changes(self):
        watcher = Proc(["kubectl", "get", "pvc", "-w", "-l", "app=watched"], env=self.emu.env, name="kubectl-watch")
        try:
            self.create_pvc("watched-1", app="watched")
            wait_for(lambda: "watched-1" in watcher.log(), 15, "the new claim in kubectl get -w")
            self.kubectl("delete", "pvc", "watched-1")
            wait_for(lambda: watcher.log().count("watched-1") >= 2, 15, "the deletion in kubectl get -w")
        finally:
            watcher.terminate()

    # ---- CRDs ----

    def test_custom_resources(self):
        self.kubectl("apply", "-f", "-", input=CRD)
        wait_for(lambda: self.kubectl("get", "vt", check=False).returncode == 0, 15, "the CRD to be served")
        task = {"apiVersion": "ordinal.dev/v1alpha1", "kind": "VolumeTask",
                "metadata": {"name": "t1", "labels": {"ordinal.dev/node": "node-a"}},
                "spec": {"action": "backup", "ordinal": 2}, "status": {"phase": "Ignored"}}
        self.kubectl("create", "-f", "-", input=json.dumps(task))
        out = self.kubectl("get", "volumetasks").stdout
        self.assertEqual(header(out), ["NAME", "ACTION", "ORDINAL", "PHASE", "AGE"])
        self.assertRegex(out, r"t1\s+backup\s+2\s+\d+s")  # status is not settable on create
        self.kubectl("patch", "vt", "t1", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Running"}}')
        self.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "vt/t1", "--timeout=10s")
        # The main resource ignores status changes when a status subresource exists.
        self.kubectl("patch", "vt", "t1", "--type=merge", "-p", '{"status":{"phase":"Hacked"},"spec":{"ordinal":3}}')
        obj = json.loads(self.kubectl("get", "vt", "t1", "-o", "json").stdout)
        self.assertEqual((obj["status"]["phase"], obj["spec"]["ordinal"], obj["metadata"]["generation"]), ("Running", 3, 2))
        bad = dict(task, metadata={"name": "t2"}, spec={"action": "explode", "ordinal": -1})
        err = self.fails("create", "-f", "-", input=json.dumps(bad))
        self.assertIn('The VolumeTask "t2" is invalid:', err)
        self.assertIn('spec.action: Unsupported value: "explode": supported values: "backup", "restore"', err)
        self.assertIn("spec.ordinal: Invalid value: -1: spec.ordinal in body should be greater than or equal to 0", err)
        err = self.fails("create", "-f", "-", input=json.dumps(dict(task, metadata={"name": "t3"}, spec={"action": "backup"})))
        self.assertIn("spec.ordinal: Required value", err)
        err = self.fails("create", "-f", "-", input=json.dumps(dict(task, metadata={"name": "t4"},
                                                                   spec={"action": "backup", "ordinal": 1, "bogus": 1})))
        self.assertIn('unknown field "spec.bogus"', err)
        self.assertEqual(self.kubectl("get", "vt", "-l", "ordinal.dev/node=node-a", "-o", "name").stdout.split(),
                         ["volumetask.ordinal.dev/t1"])
        self.kubectl("delete", "crd", "volumetasks.ordinal.dev")
        status, _ = self.emu.api("GET", "/apis/ordinal.dev/v1alpha1/namespaces/default/volumetasks")
        self.assertEqual(status, 404)


class ApiSemantics(unittest.TestCase):
    """resourceVersions, conflicts, status subresource, paging and watch, over HTTP."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(extra_args=["--history", "20"])

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def test_stale_update_is_a_conflict(self):
        api = self.emu.api
        self.assertEqual(api("POST", PVCS, pvc_body("conflict"))[0], 201)
        _, obj = api("GET", f"{PVCS}/conflict")
        obj["metadata"]["labels"] = {"a": "1"}
        status, first = api("PUT", f"{PVCS}/conflict", obj)
        self.assertEqual(status, 200)
        self.assertGreater(int(first["metadata"]["resourceVersion"]), int(obj["metadata"]["resourceVersion"]))
        obj["metadata"]["labels"] = {"a": "2"}
        status, body = api("PUT", f"{PVCS}/conflict", obj)
        self.assertEqual((status, body["reason"]), (409, "Conflict"))
        self.assertEqual(body["message"], 'Operation cannot be fulfilled on persistentvolumeclaims "conflict": '
                                          "the object has been modified; please apply your changes to the "
                                          "latest version and try again")

    def test_delete_answers_like_the_real_registries(self):
        api = self.emu.api
        api("POST", PVCS, pvc_body("gone-claim"))
        status, body = api("DELETE", f"{PVCS}/gone-claim")
        self.assertEqual((status, body["kind"]), (200, "PersistentVolumeClaim"))  # ReturnDeletedObject
        api("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "gone-cm"}})
        status, body = api("DELETE", "/api/v1/namespaces/default/configmaps/gone-cm")
        self.assertEqual((status, body["kind"], body["status"], body["details"]["name"]),
                         (200, "Status", "Success", "gone-cm"))
        status, body = api("DELETE", "/api/v1/namespaces/default/configmaps/gone-cm")
        self.assertEqual((status, body["message"]), (404, 'configmaps "gone-cm" not found'))

    def test_status_subresource_is_separate(self):
        api = self.emu.api
        api("POST", PVCS, pvc_body("status-sub"))
        _, obj = api("GET", f"{PVCS}/status-sub")
        obj["status"] = {"phase": "Bound"}
        _, after = api("PUT", f"{PVCS}/status-sub", obj)
        self.assertEqual(after["status"]["phase"], "Pending")  # main resource ignores status
        after["status"] = {"phase": "Lost"}
        after["metadata"]["labels"] = {"ignored": "yes"}
        status, st = api("PUT", f"{PVCS}/status-sub/status", after)
        self.assertEqual((status, st["status"]["phase"]), (200, "Lost"))
        self.assertNotIn("ignored", st["metadata"].get("labels") or {})

    def test_generate_name(self):
        body = pvc_body("")
        body["metadata"] = {"generateName": "gen-"}
        status, obj = self.emu.api("POST", PVCS, body)
        self.assertEqual(status, 201)
        self.assertRegex(obj["metadata"]["name"], r"^gen-[a-z0-9]{5}$")

    def test_list_paging(self):
        for i in range(5):
            self.emu.api("POST", "/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": f"page-{i}", "labels": {"paged": "yes"}}, "data": {}})
        names, cont = [], ""
        for _ in range(5):
            _, page = self.emu.api("GET", "/api/v1/namespaces/default/configmaps?labelSelector=paged%3Dyes"
                                          f"&limit=2&continue={urllib.parse.quote(cont)}")
            self.assertLessEqual(len(page["items"]), 2)
            names += [o["metadata"]["name"] for o in page["items"]]
            cont = page["metadata"].get("continue", "")
            if not cont:
                break
        self.assertEqual(names, [f"page-{i}" for i in range(5)])
        # After a compaction an old continue token is refused, as etcd's compaction does.
        _, page = self.emu.api("GET", "/api/v1/namespaces/default/configmaps?labelSelector=paged%3Dyes&limit=2")
        self.emu.api("POST", "/emulator/v1/compact")
        status, body = self.emu.api("GET", "/api/v1/namespaces/default/configmaps?labelSelector=paged%3Dyes"
                                           f"&limit=2&continue={urllib.parse.quote(page['metadata']['continue'])}")
        self.assertEqual((status, body["reason"]), (410, "Expired"))
        self.assertIn("The provided continue parameter is too old", body["message"])

    def test_watch_resumes_and_sends_bookmarks(self):
        api = self.emu.api
        _, lst = api("GET", PVCS)
        rv = lst["metadata"]["resourceVersion"]
        api("POST", PVCS, pvc_body("watched", labels={"w": "1"}))
        resp, events = self.emu.watch(f"{PVCS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
                                      "&labelSelector=w%3D1&timeoutSeconds=5")
        try:
            first = next(events)
            self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "watched"))
            # Leaving the selector looks like a deletion to this watcher.
            api("PATCH", f"{PVCS}/watched", {"metadata": {"labels": {"w": "2"}}}, "application/merge-patch+json")
            second = next(events)
            self.assertEqual(second["type"], "DELETED")
            bookmark = next(e for e in events if e["type"] == "BOOKMARK")
            self.assertEqual(bookmark["object"]["kind"], "PersistentVolumeClaim")
            self.assertGreaterEqual(int(bookmark["object"]["metadata"]["resourceVersion"]),
                                    int(second["object"]["metadata"]["resourceVersion"]))
        finally:
            resp.close()

    def test_resource_version_match(self):
        """ValidateListOptions and the list paths of the storage: a match without a version is
        422, Exact lists the state at that version (410 once compacted), NotOlderThan ahead of
        the server is 504 with Retry-After."""
        api, cms = self.emu.api, "/api/v1/namespaces/default/configmaps"
        status, body = api("GET", f"{cms}?resourceVersionMatch=NotOlderThan")
        self.assertEqual((status, body["reason"]), (422, "Invalid"), body)
        self.assertIn("resourceVersionMatch is forbidden unless resourceVersion is provided",
                      body["message"])
        status, body = api("GET", f"{cms}?resourceVersionMatch=Exact&resourceVersion=0")
        self.assertEqual(status, 422, body)
        self.assertEqual(api("POST", cms, {"metadata": {"name": "rvm", "labels": {"rvm": "1"}}})[0], 201)
        _, before = api("GET", f"{cms}?labelSelector=rvm")
        api("DELETE", f"{cms}/rvm")
        rv = before["metadata"]["resourceVersion"]
        status, body = api("GET", f"{cms}?labelSelector=rvm&resourceVersion={rv}&resourceVersionMatch=Exact")
        self.assertEqual(status, 200, body)
        self.assertEqual([o["metadata"]["name"] for o in body["items"]], ["rvm"])
        self.assertEqual(body["metadata"]["resourceVersion"], rv)
        status, body = api("GET", f"{cms}?labelSelector=rvm&resourceVersion={rv}&resourceVersionMatch=NotOlderThan")
        self.assertEqual((status, body["items"]), (200, []))
        ahead = int(self.emu.api("GET", cms)[1]["metadata"]["resourceVersion"]) + 1000
        status, body = api("GET", f"{cms}?resourceVersion={ahead}&resourceVersionMatch=NotOlderThan")
        self.assertEqual((status, body["reason"]), (504, "Timeout"), body)
        self.assertIn(f"Too large resource version: {ahead}", body["message"])
        api("POST", "/emulator/v1/compact")
        status, body = api("GET", f"{cms}?resourceVersion={rv}&resourceVersionMatch=Exact")
        self.assertEqual((status, body["reason"]), (410, "Expired"), body)
        self.assertEqual(body["message"], "The resourceVersion for the provided list is too old.")

    def _quiet_watch_events(self, emu, seconds):
        """Every event of a bookmark-asking watch on a resource nobody writes, until the
        server ends it after `seconds`."""
        _, lst = emu.api("GET", "/api/v1/namespaces/default/serviceaccounts")
        rv = lst["metadata"]["resourceVersion"]
        resp, events = emu.watch(f"/api/v1/namespaces/default/secrets?watch=true&resourceVersion={rv}"
                                 f"&allowWatchBookmarks=true&timeoutSeconds={seconds}",
                                 timeout=seconds + 30)
        try:
            return list(events)
        finally:
            resp.close()

    def test_bookmarks_at_the_watch_cache_cadence(self):
        """cacheWatcher.nextBookmarkTime: one bookmark a minute, and one 2 s before the
        watch's deadline. A 6 s watch with nothing happening gets exactly that last one (the
        old emulator sent one every second)."""
        events = self._quiet_watch_events(self.emu, 6)
        self.assertEqual([e["type"] for e in events], ["BOOKMARK"], events)
        self.assertEqual(events[0]["object"]["kind"], "Secret")

    def test_faster_bookmarks_on_request(self):
        """--bookmark-interval 1: the explicit option for tests that need frequent ones."""
        emu = Emulator(extra_args=["--bookmark-interval", "1"])
        try:
            events = self._quiet_watch_events(emu, 6)
        finally:
            emu.stop()
        self.assertGreaterEqual(len(events), 2, events)
        self.assertEqual({e["type"] for e in events}, {"BOOKMARK"})

    def test_watch_from_outside_history_is_gone(self):
        api = self.emu.api
        _, lst = api("GET", "/api/v1/namespaces/default/configmaps")
        old_rv = lst["metadata"]["resourceVersion"]
        for i in range(25):  # more than --history 20
            api("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"churn-{i}"}})
        resp, events = self.emu.watch(f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}")
        with resp:
            got = list(events)
        self.assertEqual(resp.status, 200)
        self.assertEqual(len(got), 1)
        self.assertEqual((got[0]["type"], got[0]["object"]["code"], got[0]["object"]["reason"]), ("ERROR", 410, "Expired"))
        self.assertRegex(got[0]["object"]["message"], rf"^too old resource version: {old_rv} \(\d+\)$")

    def test_table_for_custom_accept(self):
        self.emu.api("POST", PVCS, pvc_body("tabled"))
        status, table = self.emu.api("GET", f"{PVCS}/tabled", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
        self.assertEqual((status, table["kind"]), (200, "Table"))
        self.assertEqual([c["name"] for c in table["columnDefinitions"]],
                         ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
                          "VolumeAttributesClass", "Age", "VolumeMode"])
        self.assertEqual(table["rows"][0]["object"]["kind"], "PartialObjectMetadata")


class Faults(unittest.TestCase):
    """Fault injection, set at start and at run time."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(faults="latency_ms=0,seed=7")

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def tearDown(self):
        self.emu.set_faults(reset=True)

    def test_error_rate(self):
        self.emu.set_faults(error_rate=1.0)
        status, body = self.emu.api("GET", PVCS)
        self.assertEqual((status, body["reason"]), (500, "InternalError"))
        cp = self.emu.kubectl("get", "pvc", check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("Error from server (InternalError): Internal error occurred: injected fault", cp.stderr)
        self.assertEqual(self.emu.api("GET", "/version")[0], 200)  # discovery is never faulted
        self.emu.set_faults(error_rate=0.5)
        codes = {self.emu.api("GET", PVCS)[0] for _ in range(40)}
        self.assertEqual(codes, {200, 500})
        stats = self.emu.stats()
        self.assertGreater(stats["requests"]["list"]["500"], 1)

    def test_throttle_with_retry_after(self):
        self.emu.set_faults(throttle_rate=1.0, retry_after=3)
        status, body = self.emu.api("GET", PVCS)
        self.assertEqual((status, body["reason"], body["details"]["retryAfterSeconds"]), (429, "TooManyRequests", 3))
        self.assertEqual(self.emu.last_headers.get("Retry-After"), "3")

    def test_latency(self):
        self.emu.set_faults(latency_ms=300)
        start = time.monotonic()
        self.emu.api("GET", PVCS)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

    def test_forced_gone_on_next_watch(self):
        self.emu.set_faults(gone_next_watch=1)
        resp, events = self.emu.watch(f"{PVCS}?watch=true&resourceVersion=1")
        with resp:
            got = list(events)
        self.assertEqual((got[0]["type"], got[0]["object"]["code"]), ("ERROR", 410))
        resp, events = self.emu.watch(f"{PVCS}?watch=true&timeoutSeconds=1")
        with resp:
            self.assertEqual([e for e in events if e["type"] == "ERROR"], [])

    def test_watch_drop_cuts_the_stream(self):
        self.emu.set_faults(watch_drop_seconds=1)
        start = time.monotonic()
        raw = self.raw_get(f"{PVCS}?watch=true&resourceVersion=0&timeoutSeconds=30")
        self.assertLess(time.monotonic() - start, 10)
        self.assertIn(b"200 OK", raw.split(b"\r\n")[0])
        self.assertFalse(raw.endswith(b"0\r\n\r\n"), "a dropped watch must not end with the last chunk")
        self.emu.set_faults(reset=True)
        raw = self.raw_get(f"{PVCS}?watch=true&resourceVersion=0&timeoutSeconds=1")
        self.assertTrue(raw.endswith(b"0\r\n\r\n"), "a watch that times out ends cleanly")

    def raw_get(self, path):
        """The bytes of one response, read until the server closes or ends the stream."""
        with socket.create_connection((self.emu.host, self.emu.port), timeout=20) as s:
            with self.emu.ssl_context.wrap_socket(s, server_hostname="localhost") as tls:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {self.emu.token}"
                            "\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    try:
                        chunk = tls.recv(65536)
                    except (ssl.SSLError, OSError):
                        break
                    if not chunk:
                        break
                    data += chunk
                    if data.endswith(b"0\r\n\r\n"):
                        break
                return data

    def test_kubectl_survives_a_throttle_burst(self):
        # client-go retries 429 answers that carry Retry-After.
        self.emu.set_faults(throttle_rate=0.5, retry_after=0, seed=3)
        self.emu.kubectl("get", "nodes")


class InProcessApi(unittest.TestCase):
    """The client the emulated controllers use (tests/kube/README.md), without HTTP."""

    def setUp(self):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kube"))
        from kubeemu import api, resources, store
        self.store = store.Store(resources.Registry())
        self.api = api.Api(self.store)
        self.api.create("namespaces", None, {"metadata": {"name": "default"}})

    def test_contract(self):
        api, seen = self.api, []
        api.subscribe(lambda etype, resource, obj: seen.append((etype, resource, obj["metadata"]["name"])))
        pvc = api.create("persistentvolumeclaims", "default", pvc_body("c1"))
        self.assertEqual(pvc["status"]["phase"], "Pending")
        self.assertEqual(seen, [("ADDED", "persistentvolumeclaims", "c1")])
        self.assertIsNone(api.get("persistentvolumeclaims", "default", "nope"))
        stale = dict(pvc)
        api.patch("persistentvolumeclaims", "default", "c1", {"metadata": {"labels": {"a": "b"}}})
        with self.assertRaises(api.Conflict) as ctx:
            api.update("persistentvolumeclaims", "default", stale)
        self.assertEqual((ctx.exception.code, ctx.exception.reason), (409, "Conflict"))
        self.assertIsInstance(ctx.exception, api.ApiError)
        with self.assertRaises(api.AlreadyExists):
            api.create("persistentvolumeclaims", "default", pvc_body("c1"))
        with self.assertRaises(api.Invalid) as ctx:
            api.create("persistentvolumes", None, {"metadata": {"name": "pv"}, "spec": {}})
        self.assertEqual(ctx.exception.code, 422)
        with self.assertRaises(api.NotFound):
            api.delete("persistentvolumeclaims", "default", "nope")
        cur = api.get("persistentvolumeclaims", "default", "c1")
        cur["status"] = {"phase": "Bound"}
        self.assertEqual(api.update("persistentvolumeclaims", "default", cur, subresource="status")["status"]["phase"], "Bound")
        self.assertEqual(api.list("persistentvolumeclaims", "default", label_selector="a=b",
                                  field_selector="metadata.name=c1")[0]["status"]["phase"], "Bound")
        with self.assertRaises(api.ApiError) as ctx:  # not a selectable field of claims
            api.list("persistentvolumeclaims", "default", field_selector="status.phase=Bound")
        self.assertEqual(ctx.exception.code, 400)
        api.patch("persistentvolumeclaims", "default", "c1", {"metadata": {"finalizers": ["x.io/y"]}})
        held = api.delete("persistentvolumeclaims", "default", "c1")
        self.assertIn("deletionTimestamp", held["metadata"])
        api.patch("persistentvolumeclaims", "default", "c1", {"metadata": {"finalizers": None}})
        self.assertIsNone(api.get("persistentvolumeclaims", "default", "c1"))
        self.assertEqual(seen[-1], ("DELETED", "persistentvolumeclaims", "c1"))
        self.assertRegex(api.now(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        sts = yaml_free_statefulset("web")
        created = api.create("statefulsets.apps", "default", sts)
        self.assertEqual(created["metadata"]["generation"], 1)


def yaml_free_statefulset(name):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "serviceName": name,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


class TlsAndAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(nodes=("node-a",))

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def kubeconfig_variant(self, name, old, new):
        with open(self.emu.kubeconfig) as f:
            text = f.read()
        path = os.path.join(self.emu.dir, name)
        with open(path, "w") as f:
            f.write(text.replace(old, new))
        return path

    def test_wrong_token(self):
        status, body = self.emu.api("GET", "/api/v1/namespaces", token="not-the-token")
        self.assertEqual((status, body["reason"], body["message"]), (401, "Unauthorized", "Unauthorized"))
        bad = self.kubeconfig_variant("bad-token", self.emu.token, "x" * len(self.emu.token))
        cp = self.emu.kubectl("--kubeconfig", bad, "get", "pods", check=False)
        # kubectl 1.32's discovery client words a 401 this way against a real server too.
        self.assertIn("error: You must be logged in to the server", cp.stderr)

    def test_wrong_ca(self):
        other = os.path.join(self.emu.dir, "other-ca")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", other + ".key", "-out", other + ".crt", "-days", "1",
                        "-subj", "/CN=someone-else"], check=True, capture_output=True)
        with open(self.emu.kubeconfig) as f:
            good_ca = re.search(r"certificate-authority-data: (\S+)", f.read()).group(1)
        with open(other + ".crt", "rb") as f:
            other_ca = base64.b64encode(f.read()).decode()
        bad = self.kubeconfig_variant("bad-ca", good_ca, other_ca)
        cp = self.emu.kubectl("--kubeconfig", bad, "get", "pods", check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("x509: certificate signed by unknown authority", cp.stderr)
        self.emu.kubectl("get", "pods")  # the server is still fine

    def test_service_account_token_is_held_to_rbac(self):
        rbac = """apiVersion: v1
kind: ServiceAccount
metadata: {name: prov, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: prov}
rules:
- {apiGroups: [""], resources: [persistentvolumeclaims], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [persistentvolumeclaims/status], verbs: [patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prov}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prov}
subjects: [{kind: ServiceAccount, name: prov, namespace: default}]
"""
        self.emu.kubectl("apply", "-f", "-", input=rbac)
        sa = "--as=system:serviceaccount:default:prov"
        can = lambda *a: self.emu.kubectl("auth", "can-i", *a, sa, check=False).stdout.strip()  # noqa: E731
        self.assertEqual(can("list", "pvc"), "yes")
        self.assertEqual(can("patch", "pvc", "--subresource=status"), "yes")
        self.assertEqual(can("delete", "pvc"), "no")
        token = self.emu.kubectl("create", "token", "prov").stdout.strip()
        self.emu.kubectl("--token", token, "get", "pvc")
        cp = self.emu.kubectl("--token", token, "get", "pv", check=False)
        self.assertIn('Error from server (Forbidden): persistentvolumes is forbidden: User '
                      '"system:serviceaccount:default:prov" cannot list resource "persistentvolumes" '
                      'in API group "" at the cluster scope', cp.stderr)
        status, body = self.emu.api("GET", "/emulator/v1/stats", token=token)
        self.assertEqual(status, 403)
        self.emu.kubectl("delete", "serviceaccount", "prov")
        status, _ = self.emu.api("GET", "/api/v1/namespaces/default/persistentvolumeclaims", token=token)
        self.assertEqual(status, 401)  # the token died with its ServiceAccount

    def test_client_certificate_authenticates(self):
        out = self.emu.kubectl("--kubeconfig", self.emu.cert_kubeconfig, "get", "nodes").stdout
        self.assertRegex(out, r"node-a\s+Ready")
        with open(self.emu.cert_kubeconfig) as f:
            self.assertNotIn("token:", f.read())

    def test_plain_http_is_refused(self):
        with socket.create_connection((self.emu.host, self.emu.port), timeout=5) as s:
            s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                data = s.recv(100)
            except (ConnectionResetError, socket.timeout):
                data = b""
        self.assertNotIn(b"gitVersion", data)

    def test_sigterm_exits_cleanly(self):
        emu = Emulator(nodes=("node-z",))
        self.assertTrue(os.path.exists(emu.kubeconfig))
        self.assertEqual(emu.stop(), 0)


if __name__ == "__main__":
    if subprocess.run(["which", "kubectl"], capture_output=True).returncode != 0:
        from harness import skip
        skip("kubectl is not installed")
    temp_dir()
    unittest.main(verbosity=2)
