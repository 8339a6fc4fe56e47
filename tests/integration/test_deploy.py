#!/usr/bin/env python3
"""deploy/ against the Kubernetes API emulator, with the real kubectl.

What a user relies on when they install ordinal:
- every manifest in deploy/ (and what `kubectl kustomize deploy/` makes of them, with and
  without the device-backend Component) is accepted by `kubectl create --dry-run=server`;
- the VolumeTask CRD rejects a broken task with the API server's 422 message, and
  `kubectl get volumetasks` shows readable columns;
- RBAC: each ServiceAccount, with its own token, can do what its program does and nothing
  around it (the agent cannot delete PVs, nobody reads Secrets, ...);
- the provisioner, run with the ordinal-provisioner account's token and nothing else, binds the
  example StatefulSet (the docs/install.md sequence), when the program is built;
- the DaemonSet grants the privileges docs/security.md describes, and the pod templates pass
  the server's strict Pod field validation;
- the flags in the manifests are flags the programs have (or are named as pending);
- the Containerfile's runtime stage installs the libraries the built programs link.

The emulator does not validate DaemonSet, Job or CronJob specs beyond their top level, so the
checks the real server would make there (privileged with allowPrivilegeEscalation false, pod
fields) are made here directly. Run: /usr/bin/python3 tests/integration/test_deploy.py
"""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Emulator, Proc, bin_path, source_dir, temp_dir, wait_for  # noqa: E402

SRC = source_dir()
DEPLOY = os.path.join(SRC, "deploy")
NS = "ordinal-system"

# Flags the manifests may pass before the programs have them (none today: every flag they
# pass must be in the program's --help). A flag missing from --help and not listed here is a
# mistake in the manifests.
PENDING_FLAGS = set()

if shutil.which("kubectl") is None:
    print("SKIP: kubectl is not installed", flush=True)
    sys.exit(77)


def deploy_path(*parts):
    return os.path.join(DEPLOY, *parts)


def manifest_files():
    """Every manifest under deploy/ (kustomization files and the Component's partial patch
    are not manifests of their own)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(DEPLOY):
        dirnames.sort()
        if os.path.exists(os.path.join(dirpath, "kustomization.yaml")) and dirpath != DEPLOY:
            continue  # a Component: patches, not objects
        for name in sorted(filenames):
            if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml":
                out.append(os.path.join(dirpath, name))
    return out


def split_documents(text):
    """YAML stream -> list of document texts (kustomize output separates with '---' lines)."""
    docs = re.split(r"(?m)^---\s*$", text)
    return [d for d in docs if re.search(r"(?m)^kind:", d)]


def doc_kind(doc):
    return re.search(r"(?m)^kind:\s*(\S+)", doc).group(1)


def parse_json_stream(text):
    """kubectl -o json of several objects prints them one after another."""
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.extend(obj["items"] if obj.get("kind") == "List" else [obj])


def kustomize_with(*components):
    """deploy/ copied with the commented `components:` line and the lines of the given
    Components uncommented, as docs/install.md says."""
    tmp = os.path.join(temp_dir("deploy-components-"), "deploy")
    shutil.copytree(DEPLOY, tmp)
    path = os.path.join(tmp, "kustomization.yaml")
    with open(path) as f:
        text = f.read()
    new = text.replace("\n# components:\n", "\ncomponents:\n")
    for c in components:
        new = re.sub(rf"(?m)^# - {c}\b", f"- {c}", new)
        assert re.search(rf"(?m)^- {c}\b", new), \
            f"deploy/kustomization.yaml lost its commented {c} Component line"
    with open(path, "w") as f:
        f.write(new)
    return tmp


def kustomize_with_device_backend():
    return kustomize_with("device-backend")


def daemonsets(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "DaemonSet"}


def containers(obj):
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return {c["name"]: c for c in spec["template"]["spec"]["containers"]}, spec["template"]["spec"]


class DryRun(unittest.TestCase):
    """kubectl create --dry-run=server on a fresh cluster: nothing may be refused."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(controllers=False)
        # Cluster-scoped objects first, while the cluster is empty, then for real: namespaced
        # objects need their namespace and the VolumeTask example needs the CRD.
        cls.first = [cls.emu.kubectl("create", "--dry-run=server", "-f", deploy_path(f), check=False)
                     for f in ("namespace.yaml", "crd-volumetask.yaml")]
        cls.emu.kubectl("create", "-f", deploy_path("namespace.yaml"),
                        "-f", deploy_path("crd-volumetask.yaml"))

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def dry_run(self, what, text=None, path=None):
        args = ["create", "--dry-run=server", "-f", path or "-"]
        cp = self.emu.kubectl(*args, input=text, check=False)
        self.assertEqual(cp.returncode, 0, f"{what} refused:\n{cp.stdout}{cp.stderr}")
        self.assertNotIn("Warning", cp.stderr, f"{what}: {cp.stderr}")
        return cp

    def test_namespace_and_crd_accepted_on_empty_cluster(self):
        for cp in self.first:
            self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
            self.assertIn("(server dry run)", cp.stdout)

    def test_every_manifest_file(self):
        files = manifest_files()
        names = {os.path.relpath(f, DEPLOY) for f in files}
        for expected in ("daemonset.yaml", "daemonset-agent.yaml", "restore-record.yaml",
                         "rbac-agent.yaml", "examples/backup-cronjob.yaml",
                         "examples/restore-job.yaml", "examples/volumetask.yaml",
                         "examples/storageclass-device.yaml"):
            self.assertIn(expected, names)
        for f in files:
            if os.path.basename(f) in ("namespace.yaml", "crd-volumetask.yaml"):
                continue  # created in setUpClass (a second create is AlreadyExists)
            with self.subTest(file=os.path.relpath(f, SRC)):
                cp = self.dry_run(f, path=f)
                with open(f) as fh:
                    n = len(split_documents(fh.read()))
                self.assertEqual(cp.stdout.count("(server dry run)"), n, cp.stdout)
        # A dry run stores nothing.
        cp = self.emu.kubectl("-n", NS, "get", "daemonset", "ordinal-node", check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("NotFound", cp.stderr)

    def check_kustomization(self, directory):
        out = self.emu.kubectl("kustomize", directory).stdout
        docs = split_documents(out)
        kinds = [doc_kind(d) for d in docs]
        for kind in ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
                     "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "DaemonSet"):
            self.assertIn(kind, kinds)
        self.assertNotIn("Secret", kinds)  # no never-expiring token Secret (issue 12)
        rest = [d for d in docs if doc_kind(d) not in ("Namespace", "CustomResourceDefinition")]
        self.dry_run(f"kubectl kustomize {directory}", text="---\n".join(rest))
        return parse_json_stream(self.emu.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input="---\n".join(rest)).stdout)

    def test_kustomize_install(self):
        objs = self.check_kustomization(DEPLOY)
        ds = daemonsets(objs)
        self.assertEqual(set(ds), {"ordinal-node", "ordinal-agent"})
        cs, _ = containers(ds["ordinal-node"])
        self.assertNotIn("--device-dir=/dev/disk/ordinal", cs["provisioner"]["args"])
        restores = [o for o in objs if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"] == "ordinal-restores"]
        self.assertEqual(len(restores), 1)
        self.assertNotIn("data", restores[0])  # re-applying keeps the records of restores

    def test_kustomize_install_with_device_backend(self):
        objs = self.check_kustomization(kustomize_with_device_backend())
        ds = daemonsets(objs)
        cs, _ = containers(ds["ordinal-node"])
        self.assertIn("--device-dir=/dev/disk/ordinal", cs["provisioner"]["args"])
        for dsname, name in (("ordinal-node", "provisioner"), ("ordinal-agent", "agent")):
            cs, pod = containers(ds[dsname])
            vols = {v["name"]: v for v in pod["volumes"]}
            self.assertEqual(vols["dev"]["hostPath"]["path"], "/dev")
            sc = cs[name]["securityContext"]
            self.assertTrue(sc.get("privileged"), name)
            # The real server refuses privileged together with allowPrivilegeEscalation false
            # (ValidateSecurityContext); the emulator does not check pod templates that deep.
            self.assertNotEqual(sc.get("allowPrivilegeEscalation"), False, name)
            self.assertIn("/dev", [m["mountPath"] for m in cs[name]["volumeMounts"]])

    def test_kustomize_install_with_restore_capabilities(self):
        """The opt-in Component adds MKNOD and SYS_ADMIN to the agent, and only to it; with the
        device backend as well, the agent is privileged and carries no capability list."""
        plain = {"DAC_OVERRIDE", "CHOWN", "FOWNER", "FSETID", "SETFCAP"}
        objs = self.check_kustomization(kustomize_with("restore-capabilities"))
        ds = daemonsets(objs)
        agent, _ = containers(ds["ordinal-agent"])
        sc = agent["agent"]["securityContext"]
        self.assertEqual(set(sc["capabilities"]["add"]), plain | {"MKNOD", "SYS_ADMIN"})
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertNotIn("privileged", sc)
        prov, _ = containers(ds["ordinal-node"])
        self.assertEqual(set(prov["provisioner"]["securityContext"]["capabilities"]["add"]),
                         {"DAC_OVERRIDE", "FOWNER"})
        objs = self.check_kustomization(kustomize_with("restore-capabilities", "device-backend"))
        agent, _ = containers(daemonsets(objs)["ordinal-agent"])
        sc = agent["agent"]["securityContext"]
        self.assertTrue(sc["privileged"])
        self.assertNotIn("capabilities", sc)

    def test_kustomize_install_with_nfs_repository(self):
        """The nfs-repository Component (docs/operations.md, "Sharing a directory
        repository"), with the example CronJob and restore Job in the same kustomization as an
        overlay lists them: one NFS PersistentVolume and its claim, mounted at the path
        ORDINAL_REPO names by the agent and both Jobs, every pod in group 65532."""
        tmp = kustomize_with("nfs-repository")
        path = os.path.join(tmp, "kustomization.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("- daemonset-agent.yaml\n", "- daemonset-agent.yaml\n"
                                 "- examples/backup-cronjob.yaml\n- examples/restore-job.yaml\n"))
        objs = self.check_kustomization(tmp)
        by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
        pv = by[("PersistentVolume", "ordinal-repository")]
        self.assertEqual(set(pv["spec"]["nfs"]), {"server", "path"})
        self.assertEqual(pv["spec"]["accessModes"], ["ReadWriteMany"])
        self.assertEqual(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain")
        self.assertEqual(pv["spec"]["claimRef"], {"namespace": NS, "name": "ordinal-repository"})
        pvc = by[("PersistentVolumeClaim", "ordinal-repository")]
        self.assertEqual(pvc["metadata"]["namespace"], NS)
        self.assertEqual(pvc["spec"]["volumeName"], "ordinal-repository")
        self.assertEqual(pvc["spec"]["storageClassName"], "")
        repo = by[("ConfigMap", "ordinal-backup")]["data"]["ORDINAL_REPO"]
        self.assertEqual(repo, "/srv/ordinal-repository")
        workloads = {("DaemonSet", "ordinal-agent"): "agent",
                     ("CronJob", "ordinal-backup-mysql"): "run",
                     ("Job", "ordinal-restore-mysql"): "restore"}
        for key, cname in workloads.items():
            with self.subTest(workload=key):
                cs, pod = containers(by[key])
                vols = {v["name"]: v for v in pod["volumes"]}
                self.assertEqual(vols["repository"]["persistentVolumeClaim"],
                                 {"claimName": "ordinal-repository"})
                self.assertIn({"name": "repository", "mountPath": repo},
                              cs[cname]["volumeMounts"])
                self.assertIn("--repo=$(ORDINAL_REPO)", cs[cname]["args"])
                sc = pod["securityContext"]
                self.assertEqual(sc["supplementalGroups"], [65532])
                if key[0] == "DaemonSet":
                    self.assertEqual(cs[cname]["securityContext"]["runAsUser"], 0)
                else:
                    self.assertEqual((sc["runAsUser"], sc["runAsGroup"]), (65532, 65532))
        # without the Jobs (deploy/ alone), the Component still builds
        self.check_kustomization(kustomize_with("nfs-repository"))

    def test_kustomization_lists_every_install_file(self):
        with open(deploy_path("kustomization.yaml")) as f:
            listed = set(re.findall(r"(?m)^- (\S+\.yaml)$", f.read()))
        top = {n for n in os.listdir(DEPLOY) if n.endswith(".yaml") and n != "kustomization.yaml"}
        self.assertEqual(listed, top)

    def test_pod_templates_pass_strict_pod_validation(self):
        # The emulator checks a Pod's containers strictly (unknown fields are refused with
        # fieldValidation=Strict), but not the templates inside DaemonSets, Jobs and CronJobs.
        for f in ("daemonset.yaml", "daemonset-agent.yaml", "examples/backup-cronjob.yaml",
                  "examples/restore-job.yaml"):
            obj = parse_json_stream(self.emu.kubectl(
                "create", "--dry-run=client", "-o", "json", "-f", deploy_path(f)).stdout)[0]
            _, pod_spec = containers(obj)
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "template-check", "namespace": NS}, "spec": pod_spec}
            with self.subTest(file=f):
                self.dry_run(f"pod template of {f}", text=json.dumps(pod))
        broken = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": NS},
                  "spec": {"containers": [{"name": "c", "image": "i", "comand": ["x"]}]}}
        cp = self.emu.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(broken),
                              check=False)
        self.assertNotEqual(cp.returncode, 0, "the strict check this test relies on is gone")

    def test_broken_volumetask_is_refused(self):
        with open(deploy_path("examples", "volumetask.yaml")) as f:
            good = f.read()
        cases = [
            ("action: backup", "action: copy",
             'spec.action: Unsupported value: "copy": supported values: "backup", "restore"'),
            ("ordinal: 2", "ordinal: -1",
             "spec.ordinal: Invalid value: -1: spec.ordinal in body should be greater than or equal to 0"),
            ("statefulset: default/mysql", "statefulset: mysql",
             'spec.statefulset: Invalid value: "mysql": spec.statefulset in body should match'),
            ("  pvName: pvc-0b9f5c9e-6f2a-4c1e-9d0a-6a4a3f1f2e11\n", "",
             "spec.pvName: Required value"),
            ("backupId: 20261121T203000Z", "backupId: latest",
             'spec.backupId: Invalid value: "latest"'),
            ("  node: node-a\n", '  node: node-a\n  acceptLostAttributes: "yes"\n',
             # (the real server shows Invalid value: "string", the type; the emulator the value)
             'spec.acceptLostAttributes in body must be of type boolean: "string"'),
        ]
        for old, new, message in cases:
            with self.subTest(change=new or f"without {old.strip()}"):
                self.assertIn(old, good)
                cp = self.emu.kubectl("create", "--dry-run=server", "-f", "-",
                                      input=good.replace(old, new), check=False)
                self.assertEqual(cp.returncode, 1, cp.stdout)
                self.assertIn('The VolumeTask "mysql-20261121t203000z-2-mysql-data" is invalid', cp.stderr)
                self.assertIn(message, cp.stderr)
        self.dry_run("the unchanged example", text=good)
        self.dry_run("a restore that accepts lost attributes",
                     text=good.replace("action: backup", "action: restore")
                     .replace("  node: node-a\n", "  node: node-a\n  acceptLostAttributes: true\n"))


class Installed(unittest.TestCase):
    """`kubectl apply -k deploy/` for real, then what each account may do."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(controllers=True)
        cls.emu.kubectl("apply", "-k", DEPLOY)
        cls.tokens = {sa: cls.emu.kubectl("-n", NS, "create", "token", sa).stdout.strip()
                      for sa in ("ordinal-provisioner", "ordinal-agent", "ordinal-coordinator")}
        cls.ds = json.loads(cls.emu.kubectl("-n", NS, "get", "daemonset", "ordinal-node",
                                            "-o", "json").stdout)
        cls.agent_ds = json.loads(cls.emu.kubectl("-n", NS, "get", "daemonset", "ordinal-agent",
                                                  "-o", "json").stdout)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def can_i(self, sa, verb, resource, namespace=None, subresource=None):
        args = ["auth", "can-i", verb, resource, "--token", self.tokens[sa]]
        if namespace:
            args += ["-n", namespace]
        if subresource:
            args += ["--subresource", subresource]
        cp = self.emu.kubectl(*args, check=False)
        answer = cp.stdout.strip()
        self.assertIn(answer, ("yes", "no"), cp.stdout + cp.stderr)
        return answer == "yes"

    def check_table(self, sa, allowed, denied):
        # One kubectl per question, a few at a time.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            yes = list(pool.map(lambda q: self.can_i(sa, *q), allowed))
            no = list(pool.map(lambda q: self.can_i(sa, *q), denied))
        for (verb, resource, ns, sub), answer in zip(allowed, yes):
            with self.subTest(sa=sa, can=f"{verb} {resource}{'/' + sub if sub else ''} in {ns}"):
                self.assertTrue(answer)
        for (verb, resource, ns, sub), answer in zip(denied, no):
            with self.subTest(sa=sa, cannot=f"{verb} {resource}{'/' + sub if sub else ''} in {ns}"):
                self.assertFalse(answer)

    def test_provisioner_rbac(self):
        allowed = [(v, "persistentvolumeclaims", "default", None) for v in ("get", "list", "watch", "patch")]
        allowed += [(v, "persistentvolumes", None, None)
                    for v in ("get", "list", "watch", "create", "patch", "delete")]
        allowed += [(v, r, ns, None) for v in ("get", "list", "watch")
                    for r, ns in (("storageclasses.storage.k8s.io", None),
                                  ("statefulsets.apps", "default"), ("nodes", None))]
        allowed += [("create", "events", "default", None), ("patch", "events", "default", None)]
        denied = [("get", "secrets", "default", None), ("list", "secrets", NS, None),
                  ("create", "persistentvolumeclaims", "default", None),
                  ("delete", "persistentvolumeclaims", "default", None),
                  ("update", "persistentvolumeclaims", "default", None),
                  ("patch", "statefulsets.apps", "default", None),
                  ("create", "pods", "default", None), ("list", "pods", "default", None),
                  ("patch", "nodes", None, None),
                  ("create", "storageclasses.storage.k8s.io", None, None),
                  ("list", "volumetasks.ordinal.dev", NS, None),
                  ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, None)]
        self.check_table("ordinal-provisioner", allowed, denied)

    def test_agent_rbac(self):
        allowed = [(v, "volumetasks.ordinal.dev", NS, None) for v in ("get", "list", "watch")]
        allowed += [("patch", "volumetasks.ordinal.dev", NS, "status"),
                    ("get", "persistentvolumes", None, None)]
        denied = [("delete", "persistentvolumes", None, None),
                  ("create", "persistentvolumes", None, None),
                  ("patch", "persistentvolumes", None, None),
                  ("list", "persistentvolumes", None, None),
                  ("get", "persistentvolumeclaims", "default", None),
                  ("create", "volumetasks.ordinal.dev", NS, None),
                  ("delete", "volumetasks.ordinal.dev", NS, None),
                  ("update", "volumetasks.ordinal.dev", NS, None),
                  ("patch", "volumetasks.ordinal.dev", NS, None),
                  ("list", "volumetasks.ordinal.dev", "default", None),
                  ("get", "secrets", NS, None), ("get", "secrets", "default", None),
                  ("update", "volumetasks.ordinal.dev", NS, "status"),
                  ("get", "nodes", None, None),
                  ("create", "events", "default", None)]
        self.check_table("ordinal-agent", allowed, denied)

    def test_coordinator_rbac(self):
        # StatefulSets: read, and scale through the scale subresource; nothing else (issue 12)
        # but create: restore --create/--to make a missing one from the backup's copy, with its
        # Service (issue 17), which a backup reads.
        allowed = [(v, "statefulsets.apps", "default", None) for v in ("get", "create")]
        allowed += [(v, "services", "default", None) for v in ("get", "create")]
        allowed += [(v, "statefulsets.apps", "default", "scale") for v in ("get", "update", "patch")]
        allowed += [("create", "events", "default", None)]
        allowed += [(v, "configmaps/ordinal-restores", NS, None) for v in ("get", "patch")]
        allowed += [(v, "persistentvolumeclaims", "default", None) for v in ("get", "create")]
        allowed += [("list", "pods", "default", None), ("list", "pods", NS, None)]
        allowed += [("get", "persistentvolumes", None, None), ("get", "nodes", None, None)]
        allowed += [(v, "volumetasks.ordinal.dev", NS, None)
                    for v in ("create", "get", "list", "watch", "delete")]
        denied = [("delete", "statefulsets.apps", "default", None),
                  ("patch", "statefulsets.apps", "default", None),
                  ("delete", "services", "default", None),
                  ("update", "services", "default", None),
                  ("patch", "services", "default", None),
                  ("list", "services", "default", None),
                  ("update", "statefulsets.apps", "default", None),
                  ("list", "statefulsets.apps", "default", None),
                  ("watch", "statefulsets.apps", "default", None),
                  ("patch", "statefulsets.apps", "default", "status"),
                  # the repository settings the agents read are out of reach
                  ("patch", "configmaps/ordinal-backup", NS, None),
                  ("update", "configmaps/ordinal-backup", NS, None),
                  ("delete", "configmaps/ordinal-backup", NS, None),
                  ("delete", "configmaps/ordinal-restores", NS, None),
                  ("create", "configmaps", NS, None),
                  ("get", "configmaps/ordinal-restores", "default", None),
                  ("patch", "events", "default", None),
                  # only the verbs the programs use (issue 12)
                  ("list", "persistentvolumeclaims", "default", None),
                  ("watch", "persistentvolumeclaims", "default", None),
                  ("watch", "pods", "default", None), ("get", "pods", "default", None),
                  ("list", "persistentvolumes", None, None), ("list", "nodes", None, None),
                  ("delete", "persistentvolumeclaims", "default", None),
                  ("update", "persistentvolumeclaims", "default", None),
                  ("delete", "persistentvolumes", None, None),
                  ("create", "persistentvolumes", None, None),
                  ("delete", "pods", "default", None), ("create", "pods", "default", None),
                  ("patch", "volumetasks.ordinal.dev", NS, "status"),
                  ("create", "volumetasks.ordinal.dev", "default", None),
                  ("get", "secrets", NS, None), ("get", "secrets", "default", None)]
        self.check_table("ordinal-coordinator", allowed, denied)

    def test_forbidden_request_gets_the_real_403(self):
        cp = self.emu.kubectl("delete", "pv", "pvc-anything", "--token", self.tokens["ordinal-agent"],
                              check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn('persistentvolumes "pvc-anything" is forbidden: User '
                      '"system:serviceaccount:ordinal-system:ordinal-agent" cannot delete resource '
                      '"persistentvolumes" in API group "" at the cluster scope', cp.stderr)
        cp = self.emu.kubectl("-n", NS, "get", "secret", "ordinal-s3-credentials",
                              "--token", self.tokens["ordinal-provisioner"], check=False)
        self.assertIn("forbidden", cp.stderr)

    def test_each_container_has_its_own_account(self):
        """Each DaemonSet runs as its own account and mounts that account's projected, expiring
        token (no never-expiring Secret token, issue 12)."""
        sa_path = "/var/run/secrets/kubernetes.io/serviceaccount"
        for ds, sa, container in ((self.ds, "ordinal-provisioner", "provisioner"),
                                  (self.agent_ds, "ordinal-agent", "agent")):
            cs, pod = containers(ds)
            with self.subTest(daemonset=ds["metadata"]["name"]):
                self.assertEqual(set(cs), {container})
                self.assertEqual(pod["serviceAccountName"], sa)
                self.assertIs(pod["automountServiceAccountToken"], False)
                vols = {v["name"]: v for v in pod["volumes"]}
                mounts = [m["name"] for m in cs[container]["volumeMounts"]
                          if m["mountPath"] == sa_path]
                self.assertEqual(len(mounts), 1)
                sources = vols[mounts[0]]["projected"]["sources"]
                tok = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
                self.assertEqual(len(tok), 1)
                self.assertEqual(tok[0]["path"], "token")
                self.assertLessEqual(tok[0]["expirationSeconds"], 3607)
                self.assertNotIn("secret", vols[mounts[0]])
        # No token Secret of any kind is installed.
        secrets = json.loads(self.emu.kubectl("-n", NS, "get", "secrets", "-o", "json").stdout)["items"]
        self.assertEqual([s["metadata"]["name"] for s in secrets
                          if s.get("type") == "kubernetes.io/service-account-token"], [])

    def test_daemonset_privileges_and_resources(self):
        cs, pod = containers(self.ds)
        acs, apod = containers(self.agent_ds)
        self.assertEqual(set(cs), {"provisioner"})
        self.assertEqual(set(acs), {"agent"})
        cs.update(acs)
        caps = {"provisioner": {"DAC_OVERRIDE", "FOWNER"},
                "agent": {"DAC_OVERRIDE", "CHOWN", "FOWNER", "FSETID", "SETFCAP"}}
        for name, c in cs.items():
            sc = c["securityContext"]
            with self.subTest(container=name):
                self.assertNotIn("privileged", sc)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                self.assertEqual(set(sc["capabilities"]["add"]), caps[name])
                env = {e["name"]: e for e in c.get("env", [])}
                self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
                self.assertEqual(env["GNUTLS_NO_IMPLICIT_INIT"]["value"], "1")  # RSS, see the yaml
                self.assertIn("--node-name=$(NODE_NAME)", c["args"])
                root = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/ordinal"][0]
                self.assertEqual(root["mountPropagation"], "HostToContainer")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    cmd = " ".join(c[probe]["exec"]["command"])
                    self.assertIn(f"/run/ordinal/{name}.health", cmd)
                    self.assertIn("-mmin -1", cmd)
                self.assertIn(f"--health-file=/run/ordinal/{name}.health", c["args"])
        for p in (pod, apod):
            vols = {v["name"]: v for v in p["volumes"]}
            self.assertEqual(vols["root"]["hostPath"]["path"], "/var/lib/ordinal")
            self.assertNotIn("dev", vols)  # only with the device-backend Component
        # DESIGN §7: provisioner RSS <= 16 MiB, backup peak <= 64 MiB: requests cover the
        # targets, limits leave headroom.
        mib = {"Mi": 1, "Gi": 1024}

        def q(v):
            m = re.fullmatch(r"(\d+)(Mi|Gi)", v)
            return int(m.group(1)) * mib[m.group(2)]

        p, a = cs["provisioner"]["resources"], cs["agent"]["resources"]
        self.assertGreaterEqual(q(p["requests"]["memory"]), 16)
        self.assertGreaterEqual(q(p["limits"]["memory"]), 2 * 16)
        self.assertGreaterEqual(q(a["requests"]["memory"]), 64)
        self.assertGreaterEqual(q(a["limits"]["memory"]), 2 * 64)
        self.assertEqual(cs["agent"]["args"][0], "agent")
        self.assertIn("--repo=$(ORDINAL_REPO)", cs["agent"]["args"])

    def test_get_volumetasks_shows_columns(self):
        self.emu.kubectl("apply", "-f", deploy_path("examples", "volumetask.yaml"))
        name = "mysql-20261121t203000z-2-mysql-data"
        self.emu.kubectl("-n", NS, "patch", "volumetask", name, "--subresource=status",
                         "--type=merge", "-p", json.dumps({"status": {"phase": "Running",
                                                                      "progressBytes": 1048576}}))
        out = self.emu.kubectl("-n", NS, "get", "volumetasks").stdout
        header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
        self.assertEqual(header, ["NAME", "STATEFULSET", "ORDINAL", "ACTION", "NODE", "PHASE", "AGE"])
        self.assertEqual(row[:6], [name, "default/mysql", "2", "backup", "node-a", "Running"])
        out = self.emu.kubectl("-n", NS, "get", "vt", "-l", "ordinal.dev/node=node-a", "-o", "wide").stdout
        self.assertIn("TEMPLATE", out.splitlines()[0])
        self.assertIn("20261121T203000Z", out)
        # A write of the main resource cannot change status (status subresource).
        self.emu.kubectl("-n", NS, "patch", "volumetask", name, "--type=merge",
                         "-p", '{"status":{"phase":"Failed"}}')
        phase = self.emu.kubectl("-n", NS, "get", "vt", name, "-o", "jsonpath={.status.phase}").stdout
        self.assertEqual(phase, "Running")


class InstallGuide(unittest.TestCase):
    """docs/install.md from install to uninstall, command by command, with the real provisioner
    authenticated as ordinal-provisioner (no admin rights)."""

    def test_install_bind_uninstall(self):
        prov = bin_path("ordinal-provisioner")
        if not os.path.exists(prov):
            self.skipTest(f"{prov} is not built")
        emu = Emulator(controllers=True)
        self.addCleanup(emu.stop)
        k = emu.kubectl
        k("apply", "-k", DEPLOY)
        k("-n", NS, "create", "secret", "generic", "ordinal-s3-credentials",
          "--from-literal=AWS_ACCESS_KEY_ID=...", "--from-literal=AWS_SECRET_ACCESS_KEY=...")
        k("apply", "-f", deploy_path("examples", "storageclass-directory.yaml"))
        self.assertIn("ordinal-node", k("-n", NS, "get", "daemonset", "ordinal-node").stdout)
        token = k("-n", NS, "create", "token", "ordinal-provisioner").stdout.strip()
        kc = os.path.join(emu.dir, "kubeconfig-provisioner")
        with open(emu.kubeconfig) as f:
            text = f.read()
        with open(kc, "w") as f:
            f.write(re.sub(r"token: \S+", "token: " + token, text))
        os.chmod(kc, 0o600)

        def refused():
            return {verb: codes.get("403", 0)
                    for verb, codes in emu.stats()["requests"].items() if codes.get("403")}

        work = temp_dir("deploy-nodes-")
        procs, roots = [], []
        for node in ("node-a", "node-b"):
            root = os.path.join(work, node)
            os.makedirs(root)
            roots.append(root)
            procs.append(Proc([prov, "--node-name", node, "--root", root],
                              env=dict(emu.env, KUBECONFIG=kc), name=f"provisioner-{node}"))
        for p in procs:
            self.addCleanup(p.terminate)

        def settled(check):
            def pred():
                if any(not p.running() for p in procs):
                    return "exited"
                if refused():
                    return "refused"
                return check()
            state = wait_for(pred, 60, check.__doc__)
            self.assertEqual(refused(), {}, f"requests the provisioner's RBAC refused, waiting for {check.__doc__}")
            if state == "exited":
                p = [p for p in procs if not p.running()][0]
                if "not built yet" in p.log():  # an old skeleton build
                    self.skipTest(f"{prov}: {p.log().strip()}")
                self.fail(f"{p.name} exited ({p.returncode}):\n{p.log()}")

        k("apply", "-f", deploy_path("examples", "mysql-statefulset.yaml"))

        def bound():
            """3 bound claims of mysql"""
            items = json.loads(k("get", "pvc", "-o", "json").stdout)["items"]
            return len(items) == 3 and all(i["status"].get("phase") == "Bound" for i in items)

        settled(bound)
        out = k("get", "pvc").stdout
        self.assertEqual(len(re.findall(r"mysql-data-mysql-\d\s+Bound\s+pvc-\S+\s+1Gi\s+RWO\s+ordinal-local", out)),
                         3, out)
        dirs = [os.path.join(r, "default", "mysql", str(i), "mysql-data")
                for r in roots for i in range(3)]
        self.assertEqual(sum(os.path.isdir(d) for d in dirs), 3, dirs)
        self.assertIn("No resources found", k("-n", NS, "get", "volumetasks").stderr)
        self.assertEqual(refused(), {}, "requests the provisioner's RBAC refused")

        # Uninstall, in the guide's order.
        k("delete", "-f", deploy_path("examples", "mysql-statefulset.yaml"))
        k("delete", "pvc", "-l", "app=mysql")

        def volumes_removed():
            """the Delete-class PVs and their directories removed"""
            pvs = json.loads(k("get", "pv", "-o", "json").stdout)["items"]
            return not pvs and not any(os.path.exists(d) for d in dirs)

        settled(volumes_removed)
        self.assertEqual(refused(), {}, "requests the provisioner's RBAC refused")
        k("delete", "-k", DEPLOY, "--ignore-not-found")
        for p in procs:
            p.terminate()
        wait_for(lambda: k("get", "namespace", NS, check=False).returncode != 0, 30,
                 "the namespace to go")
        self.assertNotEqual(k("get", "crd", "volumetasks.ordinal.dev", check=False).returncode, 0)
        self.assertNotEqual(k("get", "clusterrole", "ordinal-provisioner", check=False).returncode, 0)


class Programs(unittest.TestCase):
    """The manifests against the programs and the image recipe."""

    def help_flags(self, *args):
        exe = bin_path(args[0])
        if not os.path.exists(exe):
            return None
        cp = subprocess.run([exe, *args[1:], "--help"], capture_output=True, text=True, timeout=30)
        if cp.returncode != 0:
            return None  # e.g. "agent: not available in this build yet"
        return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)", cp.stdout))

    def args_of(self, path, container):
        objs = []
        with open(path) as f:
            text = f.read()
        for doc in split_documents(text):
            objs.append(doc)
        block = text.split(f"- name: {container}\n", 1)[1]
        args = re.search(r"(?m)^ +args:\n((?: +- .*\n)+)", block).group(1)
        return [a.strip()[2:] for a in args.splitlines()]

    def check_flags(self, what, args, program):
        have = self.help_flags(*program)
        if have is None:
            return f"{' '.join(program)} is not built"
        for a in args:
            if not a.startswith("--"):
                continue
            flag = a.split("=", 1)[0]
            with self.subTest(manifest=what, flag=flag):
                self.assertTrue(flag in have or flag in PENDING_FLAGS,
                                f"{what} passes {flag}, which '{' '.join(program)} --help' does not list")
        return None

    def test_flags_exist(self):
        skipped = []
        ds = deploy_path("daemonset.yaml")
        checks = [
            ("daemonset provisioner", self.args_of(ds, "provisioner"), ("ordinal-provisioner",)),
            ("device-backend provisioner",
             self.args_of(deploy_path("device-backend", "daemonset-device.yaml"), "provisioner"),
             ("ordinal-provisioner",)),
            ("daemonset agent", self.args_of(deploy_path("daemonset-agent.yaml"), "agent")[1:],
             ("ordinal-backup", "agent")),
            ("backup cronjob", self.args_of(deploy_path("examples", "backup-cronjob.yaml"), "run")[1:],
             ("ordinal-backup", "run")),
            ("restore job", self.args_of(deploy_path("examples", "restore-job.yaml"), "restore")[1:],
             ("ordinal-backup", "restore")),
        ]
        for what, args, program in checks:
            self.assertTrue(args, what)
            why = self.check_flags(what, args, program)
            if why:
                skipped.append(f"{what}: {why}")
        if skipped:
            print("\n  not checked: " + "; ".join(skipped), file=sys.stderr)

    def test_containerfile_runtime_libraries(self):
        with open(deploy_path("Containerfile")) as f:
            text = f.read()
        stages = re.findall(r"(?m)^FROM (\S+)", text)
        self.assertEqual(len(stages), 2, "multi-stage: build, then runtime")
        self.assertTrue(all(re.search(r"debian:12", s) for s in stages), stages)
        build, runtime = text.split("\nFROM ", 2)[1:]
        self.assertRegex(runtime, r"(?m)^USER 65532")

        def apt(stage):
            joined = stage.replace("\\\n", " ")
            m = re.search(r"apt-get install -y --no-install-recommends ([^&\n]*)", joined)
            return set(m.group(1).split())

        build_pkgs, run_pkgs = apt(build), apt(runtime)
        self.assertFalse({p for p in run_pkgs if p.endswith("-dev")}, "no -dev package at run time")
        # The build stage has every library -dev package the set-up script installs for the build.
        with open(os.path.join(SRC, "scripts", "setup.sh")) as f:
            setup = f.read()
        wanted = set(re.findall(r"\b(lib[a-z0-9.+-]+-dev)\b", setup)) - {"libcmocka-dev", "libclang-rt-14-dev"}
        self.assertTrue(wanted)
        self.assertLessEqual(wanted, build_pkgs)
        # Every shared library the built programs link comes from a runtime package.
        for prog in ("ordinal-provisioner", "ordinal-backup"):
            exe = bin_path(prog)
            if not os.path.exists(exe):
                self.skipTest(f"{exe} is not built")
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                                subprocess.run(["readelf", "-d", exe], capture_output=True, text=True).stdout)
            for lib in needed:
                # the sanitizer build's runtimes never go into the image
                if lib.startswith(("libc.so", "libm.so", "ld-linux", "libpthread", "libasan",
                                   "libubsan")):
                    continue
                path = re.search(rf"{re.escape(lib)} \(libc6,x86-64[^)]*\) => (\S+)",
                                 subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout)
                self.assertIsNotNone(path, lib)
                real = os.path.realpath(path.group(1))
                owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
                if owner.returncode != 0:
                    owner = subprocess.run(["dpkg", "-S", path.group(1)], capture_output=True, text=True)
                pkg = owner.stdout.split(":")[0]
                with self.subTest(program=prog, library=lib):
                    self.assertIn(pkg, run_pkgs, f"{lib} comes from {pkg}, not installed at run time")


if __name__ == "__main__":
    unittest.main(verbosity=2)
