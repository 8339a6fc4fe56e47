"""Refusals a person must act on: a StorageClass root outside the allowed roots, an unknown
backend or pvType, relative and '..' roots, a request larger than the free space (a small tmpfs
root on node-a). Each gives a ProvisioningFailed Warning Event with an actionable message, and
with WaitForFirstConsumer the claim is rescheduled (selected-node removed, another node tried).
Also: data found at an entry without a PV is moved to .orphaned and reported, never handed over.
"""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import Cluster, statefulset, storage_class  # noqa: E402
from harness import skip, temp_dir, wait_for  # noqa: E402

SELECTED = "volume.kubernetes.io/selected-node"


def pod(name, claim, node_selector=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    import json
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": spec})


class Failures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            skip("needs root to mount a small tmpfs")
        base = temp_dir("prov-fail-")
        small = os.path.join(base, "small-root")
        os.makedirs(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small],
                           capture_output=True, text=True)
        if r.returncode != 0:
            skip(f"cannot mount tmpfs: {r.stderr}")
        cls.small = small
        cls.c = Cluster(roots={"node-a": small})
        cls.outside = os.path.join(base, "outside")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        subprocess.run(["umount", cls.small], capture_output=True)

    def failed_events(self, claim, ns="default"):
        return self.c.events(ns=ns, name=claim, reason="ProvisioningFailed")

    def assert_rescheduled_everywhere(self, claim, needle):
        """Both nodes refused with the message, so the claim went from one to the other."""
        c = self.c

        def both():
            hosts = {e["source"].get("host") for e in self.failed_events(claim)
                     if needle in e["message"]}
            return hosts >= {"node-a", "node-b"}
        wait_for(both, 30, f"ProvisioningFailed from both nodes for {claim}")
        for e in self.failed_events(claim):
            self.assertEqual(e["type"], "Warning")
        self.assertIn("scheduler picks another node", c.all_logs())
        self.assertNotEqual(c.claims()[claim]["status"].get("phase"), "Bound")
        sts = claim.split("-")[1]
        for n in c.nodes:
            self.assertEqual([e for e in c.entries(n) if f"/{sts}/" in e], [])

    def test_root_outside_allowed_roots(self):
        c = self.c
        c.apply(storage_class("outside", params={"root": self.outside}))
        c.apply(statefulset("out", "outside", replicas=1))
        self.assert_rescheduled_everywhere("data-out-0", "is not under an allowed root")
        msgs = {e["source"]["host"]: e["message"] for e in self.failed_events("data-out-0")}
        self.assertEqual(
            msgs["node-b"],
            f"root '{self.outside}' is not under an allowed root ({c.roots['node-b']}); add "
            f"--allowed-root {self.outside} to the provisioner or fix the StorageClass 'outside'")
        self.assertFalse(os.path.exists(self.outside))

    def test_unknown_backend(self):
        c = self.c
        c.apply(storage_class("lvm", params={"backend": "lvm"}))
        c.apply(statefulset("lv", "lvm", replicas=1))
        self.assert_rescheduled_everywhere(
            "data-lv-0", "StorageClass 'lvm': unknown backend 'lvm'; use 'directory' or 'device'")

    def test_unknown_pv_type(self):
        c = self.c
        c.apply(storage_class("nfs", params={"pvType": "nfs"}))
        c.apply(statefulset("nf", "nfs", replicas=1))
        self.assert_rescheduled_everywhere(
            "data-nf-0", "StorageClass 'nfs': unknown pvType 'nfs'; use 'hostPath' or 'local'")

    def test_relative_and_dotdot_roots(self):
        c = self.c
        for name, root in (("rel", "var/lib/x"), ("dotdot", c.roots["node-b"] + "/../escape")):
            c.apply(storage_class(name, params={"root": root}))
            c.create_claim(f"claim-{name}", name, annotations={SELECTED: "node-b"})
            wait_for(lambda: self.failed_events(f"claim-{name}"), 20, f"Event for {name}")
            msg = self.failed_events(f"claim-{name}")[0]["message"]
            self.assertIn(f"parameter root '{root}' must be an absolute path without '.' or "
                          f"'..' components", msg)
            # the annotation was removed so that a scheduler can choose again
            wait_for(lambda: SELECTED not in c.claims()[f"claim-{name}"]["metadata"].get(
                "annotations", {}), 20, "selected-node removed")
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(c.roots["node-b"]),
                                                     "escape")))

    def test_request_larger_than_free_space_goes_to_another_node(self):
        c = self.c
        c.apply(storage_class("space"))
        # pinned to node-a first (as the scheduler would), with a pod that uses the claim
        c.create_claim("big", "space", size="100Mi", annotations={SELECTED: "node-a"})
        c.apply(pod("big-user", "big"))
        claims = c.wait_bound(["big"], timeout=60)
        pv = c.pvs()[claims["big"]["spec"]["volumeName"]]
        self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/node"], "node-b")
        evs = [e for e in self.failed_events("big") if e["source"]["host"] == "node-a"]
        self.assertTrue(evs, "node-a refused")
        msg = evs[0]["message"]
        self.assertIn("requested 100Mi but only", msg)
        self.assertIn(f"available in '{self.small}'", msg)
        self.assertIn("let the claim go to another node", msg)
        self.assertEqual(c.entries("node-a"), [])
        self.assertEqual(c.pending("node-a"), [])
        self.assertTrue(c.events(name="big", reason="ProvisioningSucceeded"))
        # a request that fits the tmpfs is served there, and the promise counts afterwards:
        c.create_claim("fits-1", "space", size="10Mi", annotations={SELECTED: "node-a"})
        c.wait_bound(["fits-1"])
        c.create_claim("fits-2", "space", size="10Mi", annotations={SELECTED: "node-a"})
        wait_for(lambda: self.failed_events("fits-2"), 20, "the second 10Mi to be refused")
        self.assertIn("promised to 1 volume", self.failed_events("fits-2")[0]["message"])

    def test_data_without_pv_is_moved_to_orphaned(self):
        c = self.c
        c.apply(storage_class("orph"))
        stale = os.path.join(c.roots["node-b"], "default/_claims/found")
        os.makedirs(stale)
        with open(os.path.join(stale, "old-data"), "w") as f:
            f.write("from before\n")
        c.create_claim("found", "orph", annotations={SELECTED: "node-b"})
        claims = c.wait_bound(["found"])
        path = c.pvs()[claims["found"]["spec"]["volumeName"]]["spec"]["hostPath"]["path"]
        self.assertEqual(path, stale)
        self.assertEqual(os.listdir(path), [], "the claim got a fresh directory")
        orph = c.orphaned("node-b")
        self.assertEqual(len(orph), 1)
        self.assertTrue(orph[0].startswith("default__claims_found_"), orph)
        with open(os.path.join(c.roots["node-b"], ".orphaned", orph[0], "old-data")) as f:
            self.assertEqual(f.read(), "from before\n")
        ev = c.events(name="found", reason="OrphanedDataMoved")
        self.assertTrue(ev)
        self.assertIn(".orphaned/" + orph[0], ev[0]["message"])

    def test_full_node_chosen_again_until_it_has_room(self):
        """The real scheduler keeps no memory of a node where provisioning failed (issue 18):
        a pod that can only go to node-a brings its claim back to node-a after every refusal.
        The provisioner refuses each time (one aggregated Warning, its count growing), removes
        selected-node each time, and provisions there once the filesystem has room."""
        c = self.c
        root = os.path.join(self.small, "grow")
        os.makedirs(root)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", root],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(subprocess.run, ["umount", "-l", root], capture_output=True)
        c.apply(storage_class("grow", params={"root": root}))

        def remove_volume():
            """Before the umount: a PV left on a gone tmpfs would count against the next
            tmpfs that gets its device number (test_reservation_... mounts one)."""
            c.api("DELETE", "/api/v1/namespaces/default/pods/grow-user")
            c.api("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/grow")
            wait_for(lambda: not [n for n, pv in c.pvs().items()
                                  if (pv["spec"].get("claimRef") or {}).get("name") == "grow"],
                     60, "the volume of claim 'grow' deleted")
        self.addCleanup(remove_volume)
        c.create_claim("grow", "grow", size="8Mi")
        c.kubectl("apply", "-f", "-", input=pod("grow-user", "grow",
                                                node_selector={"kubernetes.io/hostname": "node-a"}))

        def refusals():
            return sum(e.get("count", 1) for e in self.failed_events("grow")
                       if e["source"].get("host") == "node-a" and "requested 8Mi" in e["message"])
        wait_for(lambda: refusals() >= 3, 60, "node-a selected and refusing three times")
        self.assertEqual({e["source"].get("host") for e in self.failed_events("grow")}, {"node-a"})
        r = subprocess.run(["mount", "-o", "remount,size=32m", root], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        claims = c.wait_bound(["grow"], timeout=60)
        pv = c.pvs()[claims["grow"]["spec"]["volumeName"]]
        self.assertEqual(pv["metadata"]["annotations"]["ordinal.dev/node"], "node-a")

    def test_reservation_of_a_deleted_claim_is_released(self):
        """A claim whose PV create failed transiently, then deleted, gives its capacity back
        without a restart of the provisioner (the reservation used to stay until one)."""
        c = self.c
        # a tmpfs of its own under node-a's root: a budget no other test promises anything on
        root = os.path.join(self.small, "spill")
        os.makedirs(root)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", root],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(subprocess.run, ["umount", "-l", root], capture_output=True)
        ns = "spill"
        status, out = c.api("POST", "/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.assertEqual(status, 201, out)
        c.apply(storage_class("spill", params={"root": root}))

        def faults(**kw):
            status, out = c.emu.api("POST", "/emulator/v1/faults", kw)
            self.assertEqual(status, 200, out)
        self.addCleanup(faults, reset=True)

        def failures(pv):
            return c.log("node-a").count(f"cannot create {pv} yet")

        # 6Mi of 8Mi: a second claim of 6Mi fits only once the first one's promise is gone.
        # The latency holds the provisioner's PV create in the server until after the errors
        # are switched on (the claim itself is written before they are).
        faults(latency_ms=1000)
        first = c.create_claim("first", "spill", size="6Mi", ns=ns,
                               annotations={SELECTED: "node-a"})
        faults(error_rate=1.0, latency_ms=0)
        pv = "pvc-" + first["metadata"]["uid"]
        # After its third failed attempt the claim waits 2 s before the next one (backoff
        # 0.5, 1, 2 s): the claim is deleted in that pause, so no create can succeed after.
        wait_for(lambda: failures(pv) >= 3, 90, f"three failed creates of {pv}")
        faults(reset=True)
        status, out = c.api("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/first")
        self.assertIn(status, (200, 202), out)
        wait_for(lambda: "first" not in c.claims(ns), 20, "claim 'first' gone")
        self.assertNotIn(pv, c.pvs())

        c.create_claim("second", "spill", size="6Mi", ns=ns)
        c.kubectl("apply", "-n", ns, "-f", "-",
                  input=pod("second-user", "second",
                            node_selector={"kubernetes.io/hostname": "node-a"}))

        def bound():
            claim = c.claims(ns)["second"]
            return claim["status"].get("phase") == "Bound"
        try:
            wait_for(bound, 30, "claim 'second' bound")
        except AssertionError:
            refusals = [e["message"] for e in self.failed_events("second", ns=ns)]
            raise AssertionError(f"node-a still refuses 6Mi after 'first' was deleted: "
                                 f"{refusals[:1]}")
        vol = c.pvs()[c.claims(ns)["second"]["spec"]["volumeName"]]
        self.assertEqual(vol["metadata"]["annotations"]["ordinal.dev/node"], "node-a")
        self.assertNotIn(f"provisioned {pv}", c.log("node-a"), "the first create never succeeded")
        # the provisioner was never restarted
        self.assertEqual(len(c.logs["node-a"]), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
