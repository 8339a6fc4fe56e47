"""Helpers shared by the test_provisioner_*.py integration tests (standard library only).

A Cluster is the emulator with its controllers (StatefulSet, scheduler, PV controller, garbage
collector) plus one ordinal-provisioner process per node, each with its own root directory
standing for that node's disk. Everything is checked the way a user would: kubectl output,
API objects, files under the roots, the provisioners' logs.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Emulator, Proc, bin_path, skip, temp_dir, wait_for  # noqa: E402

PROVISIONER = "ordinal.dev/local"


def require_tools():
    if not os.path.exists(bin_path("ordinal-provisioner")):
        skip(f"{bin_path('ordinal-provisioner')} is not built")
    if subprocess.run(["which", "kubectl"], capture_output=True).returncode != 0:
        skip("kubectl is not installed")


class Cluster:
    """nodes: 'name' or 'name=hostname' specs, as the emulator takes them."""

    def __init__(self, nodes=("node-a", "node-b=host-b"), faults=None, prov_args=(),
                 roots=None, start=True, node_args=None):
        require_tools()
        self.emu = Emulator(nodes=nodes, faults=faults, controllers=True)
        self.nodes = [n.split("=")[0] for n in nodes]
        self.base = temp_dir("ordinal-prov-")
        self.roots = dict(roots or {})
        for n in self.nodes:
            if n not in self.roots:
                self.roots[n] = os.path.join(self.base, f"root-{n}")
                os.makedirs(self.roots[n])
        self.prov_args = list(prov_args)
        self.node_args = {n: list(a) for n, a in (node_args or {}).items()}
        self.procs = {}
        self.logs = {n: [] for n in self.nodes}
        if start:
            for n in self.nodes:
                self.start(n)

    # ---- provisioner processes ----

    def start(self, node, *extra):
        args = [bin_path("ordinal-provisioner"), "--kubeconfig", self.emu.kubeconfig,
                "--node-name", node, "--root", self.roots[node], "--log-level", "debug",
                *self.prov_args, *self.node_args.get(node, ()), *extra]
        p = Proc(args, env=self.emu.env, name=f"prov-{node}-{len(self.logs[node])}",
                 log_dir=self.base)
        self.procs[node] = p
        self.logs[node].append(p)
        wait_for(lambda: "serving node" in p.log() or not p.running(), 30,
                 f"provisioner of {node} to start")
        if not p.running():
            raise AssertionError(f"provisioner of {node} exited:\n{p.log()}")
        return p

    def log(self, node):
        return "".join(p.log() for p in self.logs[node])

    def all_logs(self):
        return "\n".join(f"--- {n} ---\n{self.log(n)}" for n in self.nodes)

    def stop_all(self):
        codes = {}
        for n, p in self.procs.items():
            codes[n] = p.terminate()
        return codes

    def close(self):
        self.stop_all()
        self.emu.stop()
        keep = os.environ.get("PROV_KEEP_LOGS")
        if keep:
            with open(os.path.join(keep, f"prov-{os.getpid()}-{id(self)}.log"), "w") as f:
                f.write(self.all_logs())

    # ---- API ----

    def kubectl(self, *args, **kw):
        return self.emu.kubectl(*args, **kw)

    def apply(self, text):
        return self.kubectl("apply", "-f", "-", input=text)

    def get(self, kind, name=None, ns="default"):
        args = ["get", kind, "-o", "json"]
        if name:
            args.insert(2, name)
        if ns:
            args += ["-n", ns]
        out = json.loads(self.kubectl(*args).stdout)
        return out if name else out["items"]

    def api(self, method, path, body=None, content_type="application/json"):
        """One request, repeated while the emulator injects 500s or 429s (fault tests)."""
        for _ in range(50):
            status, out = self.emu.api(method, path, body, content_type=content_type)
            if status not in (429, 500, 503, 504):
                return status, out
        return status, out

    def api_list(self, path):
        status, body = self.api("GET", path)
        assert status == 200, body
        return body["items"]

    def claims(self, ns="default"):
        return {c["metadata"]["name"]: c
                for c in self.api_list(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")}

    def pvs(self):
        return {v["metadata"]["name"]: v for v in self.api_list("/api/v1/persistentvolumes")}

    def events(self, ns="default", name=None, reason=None):
        evs = self.api_list(f"/api/v1/namespaces/{ns}/events")
        return [e for e in evs
                if (name is None or e["involvedObject"].get("name") == name)
                and (reason is None or e.get("reason") == reason)]

    def create_claim(self, name, cls, size="1Gi", ns="default", annotations=None,
                     access_modes=("ReadWriteOnce",)):
        body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
                "spec": {"accessModes": list(access_modes), "storageClassName": cls,
                         "resources": {"requests": {"storage": size}}}}
        status, out = self.api("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body)
        assert status == 201, out
        return out

    def wait_bound(self, names, ns="default", timeout=30):
        def ok():
            cs = self.claims(ns)
            return all(n in cs and cs[n].get("status", {}).get("phase") == "Bound"
                       for n in names)
        try:
            wait_for(ok, timeout, f"claims {sorted(names)[:5]}... to be Bound")
        except AssertionError:
            print(self.all_logs()[-6000:], file=sys.stderr)
            raise
        return self.claims(ns)

    def wait_pods_ready(self, sts, n, ns="default", timeout=60):
        def ok():
            pods = self.api_list(f"/api/v1/namespaces/{ns}/pods")
            ready = [p for p in pods if p["metadata"]["name"].startswith(sts + "-")
                     and any(c["type"] == "Ready" and c["status"] == "True"
                             for c in p.get("status", {}).get("conditions", []))]
            return len(ready) == n
        wait_for(ok, timeout, f"{n} ready pods of {sts}")

    # ---- node layout ----

    def entries(self, node):
        """Volume entries (layout leaves) under a node's root, as paths relative to it."""
        root = self.roots[node]
        out = []
        for ns in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            if ns.startswith("."):
                continue
            nsdir = os.path.join(root, ns)
            for sts in sorted(os.listdir(nsdir)):
                sdir = os.path.join(nsdir, sts)
                if sts == "_claims":
                    out += [f"{ns}/_claims/{c}" for c in sorted(os.listdir(sdir))
                            if not c.startswith(".")]
                    continue
                for ordinal in sorted(os.listdir(sdir)):
                    odir = os.path.join(sdir, ordinal)
                    out += [f"{ns}/{sts}/{ordinal}/{t}" for t in sorted(os.listdir(odir))
                            if not t.startswith(".")]
        return out

    def pending(self, node):
        """Leftover .pending-* directories under a node's root."""
        found = []
        for dirpath, dirnames, _ in os.walk(self.roots[node]):
            if ".orphaned" in dirpath:
                continue
            found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(".pending-")]
        return found

    def orphaned(self, node):
        d = os.path.join(self.roots[node], ".orphaned")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def check_consistent(self, ns="default", expect_claims=None):
        """The crash-safety invariants: every claim Bound to pvc-<uid> exactly once, every PV
        of ours has its directory on its node, and every directory has its PV."""
        claims = self.claims(ns)
        pvs = self.pvs()
        if expect_claims is not None:
            assert set(expect_claims) <= set(claims), "claims missing"
        by_claim = {}
        for name, pv in pvs.items():
            ann = pv["metadata"].get("annotations", {})
            if ann.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            ref = pv["spec"].get("claimRef", {})
            by_claim.setdefault(ref.get("uid"), []).append(name)
            node = ann["ordinal.dev/node"]
            path = (pv["spec"].get("hostPath") or pv["spec"].get("local"))["path"]
            assert path.startswith(self.roots[node] + "/"), f"{name}: {path} not on {node}"
            assert os.path.isdir(path), f"PV {name} has no directory {path}"
        for uid, names in by_claim.items():
            assert len(names) == 1, f"claim uid {uid} has PVs {names}"
        for cname, c in claims.items():
            uid = c["metadata"]["uid"]
            assert c.get("status", {}).get("phase") == "Bound", f"{cname} not Bound"
            assert c["spec"].get("volumeName") == f"pvc-{uid}", \
                f"{cname} bound to {c['spec'].get('volumeName')}"
        paths = {(pv["spec"].get("hostPath") or pv["spec"].get("local") or {}).get("path")
                 for pv in pvs.values()}
        for node in self.nodes:
            for e in self.entries(node):
                full = os.path.join(self.roots[node], e)
                assert full in paths, f"directory {full} has no PV"
        return claims, pvs


def storage_class(name, binding="WaitForFirstConsumer", reclaim="Delete", params=None,
                  provisioner=PROVISIONER):
    doc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": name}, "provisioner": provisioner,
           "volumeBindingMode": binding, "reclaimPolicy": reclaim}
    if params:
        doc["parameters"] = params
    return json.dumps(doc)


def statefulset(name, cls, replicas=3, templates=("data",), size="1Gi", when_deleted=None,
                when_scaled=None, parallel=True):
    spec = {"serviceName": name, "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            "volumeClaimTemplates": [
                {"metadata": {"name": t},
                 "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                          "resources": {"requests": {"storage": size}}}} for t in templates]}
    if parallel:
        spec["podManagementPolicy"] = "Parallel"
    if when_deleted or when_scaled:
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": when_deleted or "Retain", "whenScaled": when_scaled or "Retain"}
    return json.dumps({"apiVersion": "apps/v1", "kind": "StatefulSet",
                       "metadata": {"name": name}, "spec": spec})


# ---- block devices (device backend tests) ----

class LoopDevices:
    """Loop devices over sparse files, always detached when the test process exits (also when
    a test fails: the detach is registered with the harness's cleanups right after losetup).
    Skips the test (exit 77) when loop devices cannot be created here."""

    def __init__(self):
        if os.geteuid() != 0:
            skip("loop devices need root")
        if subprocess.run(["which", "losetup"], capture_output=True).returncode != 0:
            skip("losetup is not installed")
        self.dir = temp_dir("ordinal-loop-")
        self.devs = {}

    def add(self, name, mib):
        img = os.path.join(self.dir, f"{name}.img")
        with open(img, "wb") as f:
            f.truncate(mib * 1024 * 1024)
        cp = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
        if cp.returncode != 0:
            skip(f"cannot create a loop device: {cp.stderr.strip()}")
        dev = cp.stdout.strip()
        harness._CLEANUPS.append(lambda: self.detach(dev))
        self.devs[name] = dev
        return dev

    @staticmethod
    def detach(dev):
        subprocess.run(["losetup", "-d", dev], capture_output=True)

    def mount(self, dev):
        """Mounts dev's filesystem on a temp dir; unmounted at exit before the detach."""
        mnt = temp_dir("ordinal-mnt-")
        subprocess.run(["mount", dev, mnt], check=True, capture_output=True)
        harness._CLEANUPS.append(lambda: subprocess.run(["umount", "-l", mnt],
                                                        capture_output=True))
        return mnt


def device_dir(devices):
    """A --device-dir: a temp dir of symlinks name -> /dev/loopN."""
    d = temp_dir("ordinal-devdir-")
    for name, dev in devices.items():
        os.symlink(dev, os.path.join(d, name))
    return d


def mkfs_ext4(dev):
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)


def write_gpt(dev):
    """An empty GPT (protective MBR, primary and backup headers) like `sfdisk` writes, for
    machines without sfdisk/sgdisk/parted."""
    import struct
    import uuid
    import zlib
    with open(dev, "r+b") as f:
        size = f.seek(0, 2)
        n = size // 512
        entries = b"\0" * (128 * 128)
        ecrc = zlib.crc32(entries)
        guid = uuid.uuid4().bytes

        def header(cur, backup, elba):
            h = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x00010000, 92, 0, 0, cur,
                            backup, 34, n - 34, guid, elba, 128, 128, ecrc)
            h = h[:16] + struct.pack("<I", zlib.crc32(h)) + h[20:]
            return h + b"\0" * (512 - 92)
        pmbr = bytearray(512)
        pmbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                                    min(n - 1, 0xFFFFFFFF))
        pmbr[510:512] = b"\x55\xaa"
        for off, data in ((0, bytes(pmbr)), (512, header(1, n - 1, 2)), (1024, entries),
                          ((n - 33) * 512, entries), ((n - 1) * 512, header(n - 1, 1, n - 33))):
            f.seek(off)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def blkid_types(dev):
    """What `blkid -p` finds on dev ({} when nothing: exit 2)."""
    cp = subprocess.run(["blkid", "-p", "-o", "export", dev], capture_output=True, text=True)
    if cp.returncode == 2:
        return {}
    out = dict(l.split("=", 1) for l in cp.stdout.splitlines() if "=" in l)
    return {k: v for k, v in out.items() if k in ("TYPE", "PTTYPE", "USAGE")}
