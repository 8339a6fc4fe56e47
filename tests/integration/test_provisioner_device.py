"""ordinal-provisioner device backend, on loop devices over sparse files.

Best fit among devices of different sizes; Block and Filesystem volumes (PV fields, the node
layout's symlink); devices with an ext4 filesystem, a GPT partition table or a mount are never
used, and the ProvisioningFailed Event says why for each; Delete wipes (blkid finds nothing) and
the device is reused; a Filesystem volume's device with a foreign signature is not wiped;
kill -9 during provisioning and during wipes; two nodes with their own devices; a device that
disappears while free is reported.

Each test builds its own cluster and devices (loop devices are detached at exit, whatever
happens; see prov_cluster.LoopDevices). Skipped (77) when loop devices cannot be created.
"""

import os
import random
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import (PROVISIONER, Cluster, LoopDevices, blkid_types,  # noqa: E402
                          device_dir, mkfs_ext4, statefulset, storage_class, write_gpt)
from harness import wait_for  # noqa: E402

MiB = 1024 * 1024
LOOPS = LoopDevices()


def claim_body(name, cls, size, mode="Filesystem", ns="default"):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "volumeMode": mode, "resources": {"requests": {"storage": size}}}}


class DeviceCase(unittest.TestCase):
    """One single-node (node-a) cluster per test unless the test makes its own."""

    def make(self, devices, nodes=("node-a",), extra=None, classes=None):
        """devices: {node: {name: MiB}}; returns the cluster; attributes devs/dirs per node."""
        self.devs, self.dirs, node_args = {}, {}, {}
        for node, spec in devices.items():
            self.devs[node] = {name: LOOPS.add(f"{node}-{name}-{random.randrange(1 << 30)}", mib)
                               for name, mib in spec.items()}
            self.dirs[node] = device_dir(self.devs[node])
            node_args[node] = ["--device-dir", self.dirs[node]]
        c = Cluster(nodes=nodes, node_args=node_args, prov_args=list(extra or ()))
        self.addCleanup(c.close)
        for name, kw in (classes or {"dev": {}}).items():
            params = {"backend": "device"}
            params.update(kw.pop("params", {}))
            c.apply(storage_class(name, binding=kw.pop("binding", "Immediate"), params=params,
                                  **kw))
        self.c = c
        return c

    def claim(self, name, size, mode="Filesystem", cls="dev"):
        status, out = self.c.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                                 claim_body(name, cls, size, mode))
        self.assertEqual(status, 201, out)
        return out

    def pv_of(self, claim):
        cs = self.c.wait_bound([claim])
        return self.c.pvs()[cs[claim]["spec"]["volumeName"]]

    def failed_message(self, claim, contains, timeout=20):
        def find():
            for e in self.c.events(name=claim, reason="ProvisioningFailed"):
                if contains in e["message"]:
                    return e["message"]
            return None
        try:
            return wait_for(find, timeout, f"ProvisioningFailed on {claim} with {contains!r}")
        except AssertionError:
            print([e["message"] for e in self.c.events(name=claim)], file=sys.stderr)
            print(self.c.all_logs()[-4000:], file=sys.stderr)
            raise

    def delete_claim(self, name):
        self.c.kubectl("delete", "pvc", name, "--wait=false")

    def wait_pv_gone(self, pv_name, timeout=30):
        try:
            wait_for(lambda: pv_name not in self.c.pvs(), timeout, f"PV {pv_name} to be deleted")
        except AssertionError:
            print(self.c.all_logs()[-4000:], file=sys.stderr)
            raise

    def check_devices(self, ns="default", unbound=()):
        """Invariants: each claim Bound to its own PV, each PV of ours on its own device of its
        node's device dir, every layout symlink has its PV, no pending entries."""
        c = self.c
        claims, pvs = c.claims(ns), c.pvs()
        seen = {}
        for name, pv in pvs.items():
            ann = pv["metadata"].get("annotations", {})
            if ann.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            node, dev = ann["ordinal.dev/node"], ann["ordinal.dev/device"]
            self.assertEqual(os.path.dirname(dev), self.dirs[node], name)
            self.assertNotIn(os.path.realpath(dev), seen, f"{name} and {seen.get(dev)} share it")
            seen[os.path.realpath(dev)] = name
            path = pv["spec"]["local"]["path"]
            self.assertTrue(os.path.islink(path), f"{name}: {path} is not a symlink")
            self.assertEqual(os.readlink(path), dev)
        for cname, cl in claims.items():
            if cname in unbound:
                continue
            self.assertEqual(cl.get("status", {}).get("phase"), "Bound", cname)
            self.assertEqual(cl["spec"]["volumeName"], f"pvc-{cl['metadata']['uid']}")
        paths = {pv["spec"].get("local", {}).get("path") for pv in pvs.values()}
        for node in c.nodes:
            for e in c.entries(node):
                self.assertIn(os.path.join(c.roots[node], e), paths, f"{e} has no PV")
            self.assertEqual(c.pending(node), [])
            pend = [os.path.join(dp, f) for dp, _, fs in os.walk(c.roots[node])
                    for f in fs if f.startswith(".pending-")]
            self.assertEqual(pend, [], "pending symlinks left")
        return claims, pvs


class BestFitAndModes(DeviceCase):
    def test_best_fit_among_three(self):
        c = self.make({"node-a": {"small": 100, "medium": 200, "large": 300}})
        d = self.devs["node-a"]
        self.claim("c150", "150Mi")
        pv = self.pv_of("c150")
        self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/device"],
                         os.path.join(self.dirs["node-a"], "medium"))
        self.assertEqual(pv["spec"]["capacity"]["storage"], "200Mi")  # the device's real size
        self.claim("c50", "50Mi")
        self.assertTrue(self.pv_of("c50")["metadata"]["annotations"]["ordinal.dev/device"]
                        .endswith("/small"))
        self.claim("c10", "10Mi")  # only "large" is left: too big is fine, taken is not
        self.assertTrue(self.pv_of("c10")["metadata"]["annotations"]["ordinal.dev/device"]
                        .endswith("/large"))
        self.claim("c-more", "1Mi")
        msg = self.failed_message("c-more", "no free device")
        for name in ("small", "medium", "large"):
            self.assertIn(f"{self.dirs['node-a']}/{name} ({d[name]}): in use by volume pvc-", msg)
        self.check_devices(unbound=("c-more",))

    def test_block_and_filesystem_modes(self):
        c = self.make({"node-a": {"b": 64, "f": 96, "x": 128}},
                      classes={"dev": {}, "dev-xfs": {"params": {"fsType": "xfs"}}})
        self.claim("raw", "60Mi", mode="Block")
        self.claim("fs", "90Mi")
        self.claim("fsx", "100Mi", cls="dev-xfs")
        raw, fs, fsx = self.pv_of("raw"), self.pv_of("fs"), self.pv_of("fsx")
        entry = os.path.join(c.roots["node-a"], "default/_claims/raw")
        self.assertEqual(raw["spec"]["volumeMode"], "Block")
        self.assertEqual(raw["spec"]["local"], {"path": entry})
        self.assertEqual(raw["spec"]["capacity"]["storage"], "64Mi")
        self.assertEqual(os.readlink(entry), os.path.join(self.dirs["node-a"], "b"))
        self.assertEqual(os.path.realpath(entry), self.devs["node-a"]["b"])
        ann = raw["metadata"]["annotations"]
        st = os.stat(self.devs["node-a"]["b"])
        self.assertEqual(ann["ordinal.dev/device-id"],
                         f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        self.assertEqual(fs["spec"]["volumeMode"], "Filesystem")
        self.assertEqual(fs["spec"]["local"]["fsType"], "ext4")
        self.assertEqual(fs["spec"]["capacity"]["storage"], "96Mi")
        self.assertEqual(fsx["spec"]["local"]["fsType"], "xfs")
        terms = fs["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        self.assertEqual(terms[0]["matchExpressions"][0]["values"], ["node-a"])
        out = c.kubectl("describe", "pvc", "raw").stdout
        self.assertIn("ProvisioningSucceeded", out)
        self.check_devices()


    def test_statefulset_wait_for_first_consumer(self):
        c = self.make({"node-a": {"d0": 64, "d1": 64, "spare": 32}},
                      classes={"wffc": {"binding": "WaitForFirstConsumer"}})
        c.apply(statefulset("db", "wffc", replicas=2, size="50Mi"))
        claims = c.wait_bound(["data-db-0", "data-db-1"])
        c.wait_pods_ready("db", 2)
        pvs = c.pvs()
        for i in range(2):
            pv = pvs[claims[f"data-db-{i}"]["spec"]["volumeName"]]
            ann = pv["metadata"]["annotations"]
            self.assertEqual((ann["ordinal.dev/statefulset"], ann["ordinal.dev/ordinal"],
                              ann["ordinal.dev/template"]), ("db", str(i), "data"))
            entry = os.path.join(c.roots["node-a"], f"default/db/{i}/data")
            self.assertEqual(pv["spec"]["local"]["path"], entry)
            self.assertEqual(os.readlink(entry), ann["ordinal.dev/device"])
            self.assertNotEqual(os.path.basename(ann["ordinal.dev/device"]), "spare")
        self.check_devices()


class Refusals(DeviceCase):
    def test_signatures_and_mounts_are_never_used(self):
        c = self.make({"node-a": {"ext4": 200, "gpt": 200, "mnt": 200, "tiny": 20}},
                      classes={"dev": {}, "bad": {"params": {"deviceDir": "/nonexistent"}},
                               "wffc": {"binding": "WaitForFirstConsumer"}})
        d = self.devs["node-a"]
        mkfs_ext4(d["ext4"])
        write_gpt(d["gpt"])
        mkfs_ext4(d["mnt"])
        mnt = LOOPS.mount(d["mnt"])
        self.claim("want", "50Mi")
        msg = self.failed_message("want", "no free device")
        dd = self.dirs["node-a"]
        self.assertIn(f"{dd}/ext4 ({d['ext4']}): has an ext4 filesystem", msg)
        self.assertIn(f"{dd}/gpt ({d['gpt']}): has a gpt partition table", msg)
        self.assertIn(f"{dd}/mnt ({d['mnt']}): mounted at {mnt}", msg)
        self.assertIn(f"{dd}/tiny ({d['tiny']}, 20Mi): too small for 50Mi", msg)
        # nothing was written to the refused devices
        self.assertEqual(blkid_types(d["gpt"]).get("PTTYPE"), "gpt")
        self.assertEqual(blkid_types(d["ext4"]).get("TYPE"), "ext4")
        self.assertEqual(c.entries("node-a"), [])
        # unknown deviceDir: an actionable message
        self.claim("baddir", "1Mi", cls="bad")
        self.failed_message("baddir", "deviceDir '/nonexistent' is not one of the "
                                      "provisioner's --device-dir")
        # WaitForFirstConsumer: the claim goes back to the scheduler (selected-node removed)
        body = claim_body("wf", "wffc", "50Mi")
        body["metadata"]["annotations"] = {"volume.kubernetes.io/selected-node": "node-a"}
        self.assertEqual(c.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                               body)[0], 201)
        self.failed_message("wf", "no free device")
        wait_for(lambda: "removed volume.kubernetes.io/selected-node" in c.log("node-a"), 10,
                 "the rescheduling log line")
        # a device freed by hand becomes usable: the claim binds on retry
        subprocess.run(["wipefs", "-a", d["ext4"]], check=True, capture_output=True)
        pv = self.pv_of("want")
        self.assertTrue(pv["metadata"]["annotations"]["ordinal.dev/device"].endswith("/ext4"))


class Release(DeviceCase):
    def test_delete_wipes_and_device_is_reused(self):
        c = self.make({"node-a": {"one": 128}})
        dev = self.devs["node-a"]["one"]
        self.claim("first", "100Mi")
        pv = self.pv_of("first")
        entry = pv["spec"]["local"]["path"]
        mkfs_ext4(dev)  # what kubelet does on first use of a Filesystem volume: its own data
        self.assertEqual(blkid_types(dev).get("TYPE"), "ext4")
        self.delete_claim("first")
        self.wait_pv_gone(pv["metadata"]["name"])
        self.assertEqual(blkid_types(dev), {})
        out = subprocess.run(["wipefs", dev], capture_output=True, text=True).stdout
        self.assertEqual(out.strip(), "")
        self.assertFalse(os.path.lexists(entry))
        self.assertIn("wiped device", c.log("node-a"))
        # the same device serves the next claim
        self.claim("second", "120Mi", mode="Block")
        pv2 = self.pv_of("second")
        self.assertEqual(os.path.realpath(pv2["spec"]["local"]["path"]), dev)
        # a Block volume's device may carry anything the application wrote: all of it goes
        write_gpt(dev)
        self.delete_claim("second")
        self.wait_pv_gone(pv2["metadata"]["name"])
        self.assertEqual(blkid_types(dev), {})
        self.check_devices()

    def test_foreign_signature_and_mount_are_not_wiped(self):
        c = self.make({"node-a": {"fs": 128, "m": 128}})
        d = self.devs["node-a"]
        self.claim("foreign", "100Mi")
        pv = self.pv_of("foreign")
        write_gpt(d[os.path.basename(pv["metadata"]["annotations"]["ordinal.dev/device"])])
        self.claim("mounted", "100Mi")
        pvm = self.pv_of("mounted")
        mdev = d[os.path.basename(pvm["metadata"]["annotations"]["ordinal.dev/device"])]
        mkfs_ext4(mdev)
        LOOPS.mount(mdev)
        self.delete_claim("foreign")
        self.delete_claim("mounted")
        for p, why in ((pv, "which its ext4 volume does not explain"), (pvm, "is mounted at")):
            name = p["metadata"]["name"]
            wait_for(lambda: any(why in e["message"] for e in
                                 c.events(reason="VolumeFailedDelete")
                                 if e["involvedObject"]["name"] == name), 20,
                     f"VolumeFailedDelete on {name}")
            self.assertIn(name, c.pvs())
        fdev = d[os.path.basename(pv["metadata"]["annotations"]["ordinal.dev/device"])]
        self.assertEqual(blkid_types(fdev).get("PTTYPE"), "gpt")
        self.assertEqual(blkid_types(mdev).get("TYPE"), "ext4")


class RetainAndOrphans(DeviceCase):
    def test_retained_device_is_rebound_and_orphans_stay_taken(self):
        c = self.make({"node-a": {"r": 64, "o": 64}},
                      classes={"keep": {"reclaim": "Retain"}, "dev": {}})
        self.claim("db", "50Mi", cls="keep")
        pv = self.pv_of("db")
        dev = os.path.realpath(pv["spec"]["local"]["path"])
        mkfs_ext4(dev)  # the database's data
        self.delete_claim("db")
        wait_for(lambda: c.pvs()[pv["metadata"]["name"]].get("status", {}).get("phase")
                 == "Released", 20, "the PV to be Released")
        self.assertEqual(blkid_types(dev).get("TYPE"), "ext4")  # Retain: untouched
        wait_for(lambda: "db" not in c.claims(), 20, "the claim to go")
        self.claim("db", "50Mi", cls="keep")
        self.assertEqual(self.pv_of("db")["metadata"]["name"], pv["metadata"]["name"])
        self.assertEqual(blkid_types(dev).get("TYPE"), "ext4")  # the data is back

        # A PV deleted by hand leaves its entry: the symlink goes to .orphaned, and its device
        # (raw data needs no signature) is never handed to anyone else.
        self.claim("orph", "50Mi")
        opv = self.pv_of("orph")
        c.kubectl("delete", "pv", opv["metadata"]["name"], "--wait=false")
        self.delete_claim("orph")
        self.wait_pv_gone(opv["metadata"]["name"])
        wait_for(lambda: "orph" not in c.claims(), 20, "the claim to go")
        self.claim("orph", "50Mi")
        msg = self.failed_message("orph", "no free device")
        self.assertIn("in use by node entry .orphaned/default__claims_orph_", msg)
        self.assertEqual(len(c.orphaned("node-a")), 1)
        self.assertTrue(c.events(name="orph", reason="OrphanedDataMoved"))


class Crashes(DeviceCase):
    def test_kill9_during_provisioning_and_wipe(self):
        n = 8
        c = self.make({"node-a": {f"d{i}": 32 + 8 * i for i in range(n)}})
        interrupted = {"provisioning": 0, "wipe": 0}
        for round_ in range(3):
            names = [f"k{round_}-{i}" for i in range(n)]
            for i, nm in enumerate(names):
                self.claim(nm, f"{20 + 8 * i}Mi")
            # kill once the first volume exists: the others are being provisioned
            wait_for(lambda: any(p["metadata"]["annotations"].get("ordinal.dev/device")
                                 for p in c.pvs().values()), 30, "a first PV")
            time.sleep(random.uniform(0, 0.1))
            if len(c.pvs()) < n:
                interrupted["provisioning"] += 1
            c.procs["node-a"].kill9()
            c.start("node-a")
            c.wait_bound(names, timeout=60)
            self.check_devices()
            claims, pvs = c.claims(), c.pvs()
            vpvs = [claims[nm]["spec"]["volumeName"] for nm in names]
            for v in vpvs:  # what kubelet does on first use
                mkfs_ext4(os.path.realpath(pvs[v]["spec"]["local"]["path"]))
            proc = c.procs["node-a"]
            for nm in names:
                self.delete_claim(nm)
            # kill once the first device was wiped: the others are being wiped
            wait_for(lambda: "wiped device" in proc.log(), 30, "a first wipe", interval=0.002)
            if proc.log().count("wiped device") < n:
                interrupted["wipe"] += 1
            proc.kill9()
            c.start("node-a")
            for v in vpvs:
                self.wait_pv_gone(v, timeout=60)
            for dev in self.devs["node-a"].values():
                self.assertEqual(blkid_types(dev), {}, dev)
            self.assertEqual(c.entries("node-a"), [])
            self.check_devices()
        print(f"kill -9 interrupted work in flight: {interrupted}", file=sys.stderr)
        self.assertGreater(interrupted["provisioning"] + interrupted["wipe"], 0)


class TwoNodesAndRemoval(DeviceCase):
    def test_two_nodes_with_their_own_devices(self):
        c = self.make({"node-a": {"a1": 64, "a2": 64}, "node-b": {"b1": 64, "b2": 64}},
                      nodes=("node-a", "node-b=host-b"))
        names = [f"two-{i}" for i in range(4)]
        for nm in names:
            self.claim(nm, "50Mi")
        c.wait_bound(names)
        claims, pvs = self.check_devices()
        per_node = {}
        for nm in names:
            pv = pvs[claims[nm]["spec"]["volumeName"]]
            node = pv["metadata"]["annotations"]["ordinal.dev/node"]
            per_node.setdefault(node, []).append(nm)
            host = {"node-a": "node-a", "node-b": "host-b"}[node]
            self.assertEqual(pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
                             ["matchExpressions"][0]["values"], [host])
        self.assertEqual(sorted(len(v) for v in per_node.values()), [2, 2])

    def test_device_removed_while_free_is_reported(self):
        c = self.make({"node-a": {"keep": 64, "gone": 64}})
        LOOPS.detach(self.devs["node-a"]["gone"])
        ev = wait_for(lambda: [e for e in c.events(reason="DeviceMissing")
                               if e["involvedObject"]["kind"] == "Node"], 30,
                      "a DeviceMissing Event on the Node")
        self.assertIn(f"{self.dirs['node-a']}/gone", ev[0]["message"])
        self.assertIn("it was free", ev[0]["message"])
        self.assertIn("/gone", c.log("node-a"))
        # what is left still serves claims, and the gone one is named in a refusal
        self.claim("k", "10Mi")
        self.assertTrue(self.pv_of("k")["metadata"]["annotations"]["ordinal.dev/device"]
                        .endswith("/keep"))
        self.claim("k2", "10Mi")
        msg = self.failed_message("k2", "no free device")
        self.assertIn("/gone", msg)
        self.assertIn("size 0", msg)


if __name__ == "__main__":
    unittest.main(verbosity=2)
