"""The runbooks of docs/ run as written (issue 17 part 4: docs that cannot drift).

A runbook block is a fenced ```sh block directly after a line `<!-- runbook: NAME -->` in a
docs/*.md file. The blocks of one NAME are run in document order, in one `bash -euo pipefail`
session, exactly as they are written, in an environment where:

- `ordinal-backup` and `kubectl` are on PATH (the built program, the real kubectl);
- kubectl and `--kubeconfig ~/.kube/config` talk to the emulated cluster (HOME is the test's,
  its ~/.kube/config the emulator's admin kubeconfig; KUBECONFIG is not set);
- ROOT is the node directory and REPO the repository: the variables docs/operations.md names.

Between runbooks the test prepares what a person would find (volumes with data, damaged data)
and checks what a person would see afterwards (the data back, the StatefulSet scaled back,
the backups listed). The emulator runs no containers, so this test plays the Job controller
and the kubelet for Jobs: it runs each Job's container command (with its envFrom ConfigMap and
Secret, `$(VAR)` expanded, the coordinator's account) and writes the Job's status.

test_0 fails when a runbook in docs/ is run by no test (add it to RUNBOOKS, or to
RUN_ELSEWHERE with the test that runs it).

Failed before: docs/operations.md had no runnable block (its commands used fixed paths, some
did not exist as written), and `kubectl create job --from=cronjob/…` was documented nowhere.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import tree_hash, write_volume  # noqa: E402
from harness import bin_path, skip, source_dir, temp_dir, wait_for  # noqa: E402
from prov_cluster import Cluster, statefulset, storage_class  # noqa: E402

DOCS = os.path.join(source_dir(), "docs")
DEPLOY = os.path.join(source_dir(), "deploy")
BACKUP = bin_path("ordinal-backup")
NS = "ordinal-system"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"

# Runbooks this file runs, and runbooks other tests run (name -> test).
RUNBOOKS = {"one-node-backup", "one-node-restore", "one-node-retention", "install",
            "cluster-backup-now", "cluster-backup", "cluster-restore", "cluster-restore-job"}
RUN_ELSEWHERE = {}

MARKER = re.compile(r"^\s*<!-- runbook: ([a-z0-9-]+) -->\s*$")
FENCE = re.compile(r"^(\s*)```sh\s*$")


def runbooks():
    """{name: [(file, line, code), ...]} over docs/*.md, in document order."""
    found = {}
    for path in sorted(glob.glob(os.path.join(DOCS, "*.md"))):
        rel = os.path.relpath(path, source_dir())
        with open(path) as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            m = MARKER.match(line)
            if not m:
                continue
            fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if not fence:
                raise AssertionError(f"{rel}:{i + 1}: '{line.strip()}' is not followed by a "
                                     "```sh block")
            indent = fence.group(1)
            end = i + 2
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise AssertionError(f"{rel}:{i + 2}: the ```sh block never ends")
            code = "\n".join(l[len(indent):] if l.startswith(indent) else l
                             for l in lines[i + 2:end])
            found.setdefault(m.group(1), []).append((rel, i + 3, code))
    return found


def run_runbook(name, env, cwd, timeout=600):
    """Runs every block of runbook `name`, in order, in one bash session; fails the test with
    the output when a command fails. Returns the CompletedProcess."""
    blocks = runbooks().get(name)
    assert blocks, f"no runbook '{name}' in docs/"
    parts = ["set -euo pipefail"]
    for rel, line, code in blocks:
        parts.append(f"echo '### {rel}:{line}' >&2")
        parts.append("set -x")
        parts.append(code)
        parts.append("{ set +x; } 2>/dev/null")
    cp = subprocess.run(["bash", "-c", "\n".join(parts)], env=env, cwd=cwd, capture_output=True,
                        text=True, timeout=timeout)
    assert "Sanitizer" not in cp.stderr, cp.stderr
    if cp.returncode != 0:
        raise AssertionError(f"runbook '{name}' failed (exit {cp.returncode}):\n"
                             f"{cp.stdout}\n{cp.stderr}")
    return cp


def doc_env(emu, **variables):
    """The shell of a person at the cluster: kubectl and ~/.kube/config reach the emulator."""
    home = os.path.join(emu.dir, "doc-home")
    os.makedirs(os.path.join(home, ".kube"), exist_ok=True)
    shutil.copy(emu.kubeconfig, os.path.join(home, ".kube", "config"))
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    env["HOME"] = home
    env["PATH"] = os.path.dirname(BACKUP) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(variables)
    return env


def require():
    if not os.path.exists(BACKUP):
        skip(f"{BACKUP} is not built")
    if shutil.which("kubectl") is None:
        skip("kubectl is not installed")


class TestRunbooksAreRun(unittest.TestCase):
    def test_0_every_runbook_is_run(self):
        names = set(runbooks())
        self.assertEqual(names - RUNBOOKS - set(RUN_ELSEWHERE), set(),
                         "runbooks in docs/ that no test runs")
        self.assertEqual(RUNBOOKS - names, set(), "runbooks this test expects, gone from docs/")


class TestOneNode(unittest.TestCase):
    """docs/operations.md, "Backup and restore on one node": a node whose root holds every
    volume of default/web, its provisioner, and the emulated cluster for kubectl."""

    @classmethod
    def setUpClass(cls):
        require()
        cls.c = Cluster(nodes=("node-a",))
        cls.c.apply(storage_class("ordinal"))
        cls.c.apply(statefulset("web", "ordinal", replicas=3))
        cls.c.wait_pods_ready("web", 3)
        cls.paths = {}
        for k in range(3):
            claim = cls.c.claims()[f"data-web-{k}"]
            pv = cls.c.pvs()[claim["spec"]["volumeName"]]
            cls.paths[k] = pv["spec"]["hostPath"]["path"]
        cls.repo = os.path.join(temp_dir("ordinal-doc-repo-"), "backups")
        cls.env = doc_env(cls.c.emu, ROOT=cls.c.roots["node-a"], REPO=cls.repo)
        cls.cwd = temp_dir("ordinal-doc-cwd-")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def backups(self):
        cp = subprocess.run([BACKUP, "list", "--repo", self.repo, "--json"], capture_output=True,
                            text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout)

    def test_backup_restore_retention(self):
        for k, path in self.paths.items():
            write_volume(path, seed=500 + k)
        before = {k: tree_hash(p) for k, p in self.paths.items()}

        run_runbook("one-node-backup", self.env, self.cwd)
        listed = self.backups()
        self.assertEqual([sorted(b["ordinals"]) for b in listed], [[0, 1, 2]], listed)

        # 3 a.m.: every volume damaged.
        for k, path in self.paths.items():
            write_volume(path, seed=900 + k)
            self.assertNotEqual(tree_hash(path), before[k])
        cp = run_runbook("one-node-restore", self.env, self.cwd)
        self.assertEqual({k: tree_hash(p) for k, p in self.paths.items()}, before,
                         cp.stderr)
        self.c.wait_pods_ready("web", 3)
        self.assertEqual(self.c.get("statefulset", "web")["spec"]["replicas"], 3)

        # A second backup; the first is then the older of each volume's two.
        run_runbook("one-node-backup", self.env, self.cwd)
        listed = self.backups()
        self.assertEqual(len(listed), 2, listed)
        cp = run_runbook("one-node-retention", self.env, self.cwd)
        # --keep-daily 1 keeps the newest of today only
        self.assertEqual(self.backups(), listed[1:], cp.stdout + cp.stderr)


class JobRunner:
    """Plays the Job controller and the kubelet for Jobs in ordinal-system: runs each new Job's
    container command as a process (envFrom ConfigMaps and Secrets, $(VAR) expanded, with the
    coordinator's kubeconfig for its in-cluster account) and writes the Job's status."""

    def __init__(self, cm):
        self.cm = cm
        self.logs = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=600)

    def _get(self, path):
        status, body = self.cm.c.emu.api("GET", path)
        return body if status == 200 else None

    def _loop(self):
        while not self.stop.wait(0.1):
            jobs = (self._get(JOBS) or {}).get("items", [])
            for job in jobs:
                name = job["metadata"]["name"]
                if name in self.logs or (job.get("status") or {}).get("conditions"):
                    continue
                self.logs[name] = "(running)"
                self._run(job)

    def _run(self, job):
        name = job["metadata"]["name"]
        c = job["spec"]["template"]["spec"]["containers"][0]
        # What a pod of the Job gets: the API's address, and its account (here a kubeconfig
        # holding a token of the coordinator's ServiceAccount).
        emu = self.cm.c.emu
        env = {"HOME": temp_dir("ordinal-job-home-"), "PATH": os.environ.get("PATH", ""),
               "KUBERNETES_SERVICE_HOST": emu.host, "KUBERNETES_SERVICE_PORT": str(emu.port),
               "KUBECONFIG": self.cm.coord_kubeconfig}
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                cmap = self._get(f"/api/v1/namespaces/{NS}/configmaps/"
                                 f"{src['configMapRef']['name']}")
                env.update((cmap or {}).get("data") or {})
            if "secretRef" in src:
                sec = self._get(f"/api/v1/namespaces/{NS}/secrets/{src['secretRef']['name']}")
                if sec is None and not src["secretRef"].get("optional"):
                    raise AssertionError(f"job {name}: secret missing")
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        args = [*c.get("command", []), *c.get("args", [])]
        args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                for a in args]
        if args[0] == "ordinal-backup":
            args[0] = BACKUP
        cp = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        self.logs[name] = cp.stdout + cp.stderr
        ok = cp.returncode == 0
        cond = {"type": "Complete" if ok else "Failed", "status": "True"}
        status = {"conditions": [cond], "succeeded" if ok else "failed": 1}
        code, body = self.cm.c.emu.api("PATCH", f"{JOBS}/{name}/status", {"status": status},
                                       content_type="application/merge-patch+json")
        assert code == 200, body


class TestClusterRunbooks(unittest.TestCase):
    """docs/install.md (install through an overlay) and docs/operations.md, "Cluster mode":
    back up now from the CronJob, a backup and a restore by hand."""

    @classmethod
    def setUpClass(cls):
        require()
        from test_cluster import ClusterMode  # noqa: E402 (skips when not built)
        cls.cm = ClusterMode()
        cls.jobs = JobRunner(cls.cm)
        c = cls.cm.c
        c.kubectl("apply", "-f", os.path.join(DEPLOY, "examples", "storageclass-directory.yaml"),
                  "-f", os.path.join(DEPLOY, "examples", "mysql-statefulset.yaml"))
        c.wait_pods_ready("mysql", 3)
        cls.site = temp_dir("ordinal-doc-site-")
        cls.env = doc_env(c.emu, REPO=cls.cm.repo)

    @classmethod
    def tearDownClass(cls):
        cls.jobs.close()
        cls.cm.close()

    def job_condition(self, name):
        status, body = self.cm.c.emu.api("GET", f"{JOBS}/{name}")
        conds = (body.get("status") or {}).get("conditions") or [] if status == 200 else []
        return next((c["type"] for c in conds if c.get("status") == "True"), None)

    def backups(self, sts):
        cp = subprocess.run([BACKUP, "list", "--repo", self.cm.repo, "--statefulset", sts,
                             "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout)

    def test_1_placeholder_refused_then_install_through_overlay(self):
        c = self.cm.c
        # deploy/ as it is: the CronJob's run refuses the placeholder repository.
        c.kubectl("apply", "-f", os.path.join(DEPLOY, "backup-config.yaml"),
                  "-f", os.path.join(DEPLOY, "examples", "backup-cronjob.yaml"))
        c.kubectl("-n", NS, "create", "job", "first-try", "--from=cronjob/ordinal-backup-mysql")
        wait_for(lambda: self.job_condition("first-try"), 120, "the first Job to finish")
        self.assertEqual(self.job_condition("first-try"), "Failed", self.jobs.logs)
        self.assertIn("is the placeholder of deploy/backup-config.yaml, not a repository: set "
                      "ORDINAL_REPO", self.jobs.logs["first-try"])
        self.assertFalse(os.path.exists(self.cm.repo))
        c.kubectl("-n", NS, "delete", "job", "first-try")

        # The person's overlay (docs/examples/overlay, copied beside the checkout and edited):
        # its repository and a relative path to deploy/; then install.md's command.
        mine = os.path.join(self.site, "my-ordinal")
        shutil.copytree(os.path.join(DOCS, "examples", "overlay"), mine)
        with open(os.path.join(mine, "kustomization.yaml")) as f:
            text = f.read()
        text, n = re.subn(r"^- \.\./\.\./\.\./deploy$", "- " + os.path.relpath(DEPLOY, mine),
                          text, flags=re.M)
        self.assertEqual(n, 1, text)
        with open(os.path.join(mine, "kustomization.yaml"), "w") as f:
            f.write(text)
        with open(os.path.join(mine, "backup-config.yaml")) as f:
            text = f.read()
        text, n = re.subn(r'ORDINAL_REPO: "[^"]*"', f'ORDINAL_REPO: "{self.cm.repo}"', text)
        self.assertEqual(n, 1, text)
        with open(os.path.join(mine, "backup-config.yaml"), "w") as f:
            f.write(text)
        run_runbook("install", self.env, self.site)
        out = c.kubectl("-n", NS, "get", "configmap", "ordinal-backup",
                        "-o", "jsonpath={.data.ORDINAL_REPO}").stdout
        self.assertEqual(out, self.cm.repo)

    def test_2_back_up_now(self):
        for k, path in self.mysql_paths().items():
            write_volume(path, seed=700 + k)
        type(self).mysql_before = {k: tree_hash(p) for k, p in self.mysql_paths().items()}
        cp = run_runbook("cluster-backup-now", self.env, self.site)
        listed = self.backups("default/mysql")
        self.assertEqual(len(listed), 1, cp.stderr)
        self.assertEqual(sorted(listed[0]["ordinals"]), [0, 1, 2])
        self.assertIn(listed[0]["id"], cp.stdout)
        # the Job ran and is gone
        names = [n for n in self.jobs.logs if n.startswith("ordinal-backup-mysql-now-")]
        self.assertEqual(len(names), 1, self.jobs.logs)
        self.assertIsNone(self.job_condition(names[0]))

    def mysql_paths(self):
        out = {}
        for k in range(3):
            claim = self.cm.c.claims()[f"mysql-data-mysql-{k}"]
            out[k] = self.cm.c.pvs()[claim["spec"]["volumeName"]]["spec"]["hostPath"]["path"]
        return out

    def test_4_restore_job(self):
        # The Job restores default/mysql from its newest backup: the one of test_2.
        paths = self.mysql_paths()
        for k, path in paths.items():
            write_volume(path, seed=1100 + k)
        cp = run_runbook("cluster-restore-job", self.env, source_dir())
        self.assertEqual({k: tree_hash(p) for k, p in paths.items()}, self.mysql_before,
                         cp.stderr + self.jobs.logs.get("ordinal-restore-mysql", ""))
        self.assertIn("restored; scaled back to 3", self.jobs.logs["ordinal-restore-mysql"])
        self.cm.c.wait_pods_ready("mysql", 3)
        self.assertIsNone(self.job_condition("ordinal-restore-mysql"))

    def test_3_backup_then_restore_by_hand(self):
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=800 + k)
        before = {k: tree_hash(v["path"]) for k, v in cm.vols.items()}
        cp = run_runbook("cluster-backup", self.env, self.site)
        bid = json.loads(cp.stdout.split("\n[", 1)[0])["id"]
        self.assertEqual([b["id"] for b in self.backups("default/web")], [bid])

        for k, v in cm.vols.items():
            write_volume(v["path"], seed=1000 + k)
        cp = run_runbook("cluster-restore", self.env, self.site)
        self.assertEqual(json.loads(cp.stdout)["id"], bid)
        self.assertEqual({k: tree_hash(v["path"]) for k, v in cm.vols.items()}, before)
        cm.c.wait_pods_ready("web", 3)
        self.assertEqual(cm.c.get("statefulset", "web")["spec"]["replicas"], 3)
        self.assertIsNone((cm.record() or {}).get("default.web"))


if __name__ == "__main__":
    unittest.main()
