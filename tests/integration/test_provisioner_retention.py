"""ordinal-provisioner and StatefulSet retention: scale 3 -> 5 -> 2 under both
persistentVolumeClaimRetentionPolicy settings, and delete + re-create a StatefulSet with a
Retain class (every ordinal gets its own data back) and with a Delete class (fresh, empty
directories).
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import Cluster, statefulset, storage_class  # noqa: E402
from harness import wait_for  # noqa: E402


def pv_path(pv):
    return (pv["spec"].get("hostPath") or pv["spec"].get("local"))["path"]


class Retention(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.c.apply(storage_class("keep", reclaim="Retain"))
        cls.c.apply(storage_class("drop", reclaim="Delete"))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def scale(self, name, n):
        self.c.kubectl("scale", f"statefulset/{name}", f"--replicas={n}")

    def claim_paths(self, sts, ordinals):
        claims, pvs = self.c.claims(), self.c.pvs()
        return {i: pv_path(pvs[claims[f"data-{sts}-{i}"]["spec"]["volumeName"]])
                for i in ordinals}

    def test_retained_volume_with_other_access_modes_is_not_handed_over(self):
        """The PV controller binds a pre-bound PV only if its access modes include the
        claim's (findByClaim): a retained PV handed to a claim that asks for more would leave
        it Pending for ever. The provisioner says so instead, and hands the PV over to a claim
        that fits."""
        c = self.c
        sel = {"volume.kubernetes.io/selected-node": "node-a"}
        c.create_claim("modes", "keep", annotations=sel)
        pv_name = c.wait_bound(["modes"])["modes"]["spec"]["volumeName"]
        with open(os.path.join(pv_path(c.pvs()[pv_name]), "marker"), "w") as f:
            f.write("kept\n")
        c.api("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/modes")
        wait_for(lambda: "modes" not in c.claims()
                 and c.pvs()[pv_name]["status"].get("phase") == "Released", 30, "PV Released")
        c.create_claim("modes", "keep", annotations=sel,
                       access_modes=("ReadWriteOnce", "ReadOnlyMany"))
        wait_for(lambda: c.events(name="modes", reason="ProvisioningFailed"), 30,
                 "ProvisioningFailed for the access modes")
        msg = c.events(name="modes", reason="ProvisioningFailed")[0]["message"]
        self.assertIn(f"retained volume {pv_name} holds this claim's data but offers "
                      f"ReadWriteOnce (volumeMode Filesystem) and the claim asks for "
                      f"ReadWriteOnce,ReadOnlyMany (volumeMode Filesystem)", msg)
        self.assertEqual(c.pvs()[pv_name]["status"]["phase"], "Released", "not handed over")
        self.assertNotEqual(c.claims()["modes"]["status"].get("phase"), "Bound")
        c.api("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/modes")
        wait_for(lambda: "modes" not in c.claims(), 30, "claim deleted")
        c.create_claim("modes", "keep", annotations=sel)
        claims = c.wait_bound(["modes"])
        self.assertEqual(claims["modes"]["spec"]["volumeName"], pv_name)
        with open(os.path.join(pv_path(c.pvs()[pv_name]), "marker")) as f:
            self.assertEqual(f.read(), "kept\n")

    def test_scale_when_scaled_delete(self):
        c = self.c
        c.apply(statefulset("sd", "drop", replicas=3, when_scaled="Delete"))
        c.wait_bound([f"data-sd-{i}" for i in range(3)])
        self.scale("sd", 5)
        c.wait_bound([f"data-sd-{i}" for i in range(5)])
        c.wait_pods_ready("sd", 5)
        paths = self.claim_paths("sd", range(5))
        for i, p in paths.items():
            self.assertTrue(p.endswith(f"/default/sd/{i}/data"), p)
            with open(os.path.join(p, "marker"), "w") as f:
                f.write(str(i))
        self.scale("sd", 2)
        # claims 2..4 go (pod-owned once condemned), their PVs are Released and reclaimed
        wait_for(lambda: not any(f"data-sd-{i}" in c.claims() for i in (2, 3, 4)), 60,
                 "claims of condemned ordinals to be deleted")
        gone = {i: paths[i] for i in (2, 3, 4)}
        wait_for(lambda: not any(os.path.exists(p) for p in gone.values()), 30,
                 "directories of ordinals 2..4 to be removed")
        # the provisioner removes a directory, then deletes its PV: wait for that second step
        wait_for(lambda: not {f"data-sd-{i}" for i in (2, 3, 4)} &
                 {v["spec"]["claimRef"]["name"] for v in c.pvs().values()}, 30,
                 "PVs of ordinals 2..4 to be deleted")
        for i in (0, 1):
            self.assertTrue(os.path.exists(os.path.join(paths[i], "marker")))
        self.assertIn("deleted the PV", c.all_logs())
        # scaling up again gives ordinal 2 a fresh, empty directory
        self.scale("sd", 3)
        c.wait_bound(["data-sd-2"])
        p2 = self.claim_paths("sd", [2])[2]
        self.assertEqual(os.listdir(p2), [])

    def test_scale_when_scaled_retain(self):
        c = self.c
        c.apply(statefulset("sr", "drop", replicas=3, when_scaled="Retain"))
        c.wait_bound([f"data-sr-{i}" for i in range(3)])
        self.scale("sr", 5)
        c.wait_bound([f"data-sr-{i}" for i in range(5)])
        paths = self.claim_paths("sr", range(5))
        for i, p in paths.items():
            with open(os.path.join(p, "marker"), "w") as f:
                f.write(str(i))
        self.scale("sr", 2)
        wait_for(lambda: len([p for p in c.api_list("/api/v1/namespaces/default/pods")
                              if p["metadata"]["name"].startswith("sr-")]) == 2, 60,
                 "scale down to 2 pods")
        # the claims stay Bound, and so do their directories and data
        claims = c.claims()
        for i in range(5):
            self.assertEqual(claims[f"data-sr-{i}"]["status"]["phase"], "Bound")
            with open(os.path.join(paths[i], "marker")) as f:
                self.assertEqual(f.read(), str(i))
        # scale up again: the same claims, the same data
        self.scale("sr", 4)
        c.wait_pods_ready("sr", 4)
        self.assertEqual(self.claim_paths("sr", range(4)), {i: paths[i] for i in range(4)})

    def recreate(self, name, cls):
        c = self.c
        c.apply(statefulset(name, cls, replicas=3, when_deleted="Delete"))
        names = [f"data-{name}-{i}" for i in range(3)]
        claims = c.wait_bound(names)
        c.wait_pods_ready(name, 3)
        old = {n: claims[n]["spec"]["volumeName"] for n in names}
        paths = self.claim_paths(name, range(3))
        for i, p in paths.items():
            with open(os.path.join(p, "data.txt"), "w") as f:
                f.write(f"ordinal {i} of {name}\n")
        c.kubectl("delete", "statefulset", name)
        wait_for(lambda: not any(n in c.claims() for n in names), 60,
                 "the garbage collector to delete the claims")
        old_uids = {n: claims[n]["metadata"]["uid"] for n in names}
        c.apply(statefulset(name, cls, replicas=3, when_deleted="Delete"))
        wait_for(lambda: all(n in c.claims() and c.claims()[n]["metadata"]["uid"] != old_uids[n]
                             for n in names), 60, "new claims")
        claims = c.wait_bound(names, timeout=60)
        c.wait_pods_ready(name, 3)
        return old, paths, claims

    def test_recreate_with_retain_class_gets_data_back(self):
        c = self.c
        old, paths, claims = self.recreate("keeper", "keep")
        pvs = c.pvs()
        for i in range(3):
            n = f"data-keeper-{i}"
            self.assertEqual(claims[n]["spec"]["volumeName"], old[n], "same PV handed back")
            pv = pvs[old[n]]
            self.assertEqual(pv["spec"]["claimRef"]["uid"], claims[n]["metadata"]["uid"])
            with open(os.path.join(pv_path(pv), "data.txt")) as f:
                self.assertEqual(f.read(), f"ordinal {i} of keeper\n")
            # the pod runs on the node that holds its data
            pod = json.loads(c.kubectl("get", "pod", f"keeper-{i}", "-o", "json").stdout)
            self.assertEqual(pod["spec"]["nodeName"], pv["metadata"]["annotations"]["ordinal.dev/node"])
        self.assertIn("handed retained volume", c.all_logs())
        self.assertTrue(c.events(name="data-keeper-0", reason="ProvisioningSucceeded"))
        for n in c.nodes:
            self.assertEqual(c.orphaned(n), [])

    def test_recreate_with_delete_class_gets_fresh_directories(self):
        c = self.c
        old, paths, claims = self.recreate("fresh", "drop")
        pvs = c.pvs()
        for i in range(3):
            n = f"data-fresh-{i}"
            self.assertNotEqual(claims[n]["spec"]["volumeName"], old[n])
            self.assertNotIn(old[n], pvs)
            p = pv_path(pvs[claims[n]["spec"]["volumeName"]])
            self.assertEqual(os.listdir(p), [], f"{p} should be empty")
        for n in c.nodes:
            self.assertEqual(c.orphaned(n), [])

    def test_plain_claim_with_retain_class_gets_data_back(self):
        """A plain claim deleted and made again (same namespace and name) gets its retained
        volume back, from the node that holds it, even when the scheduler picked another."""
        c = self.c
        sel = "volume.kubernetes.io/selected-node"
        c.create_claim("notes", "keep", annotations={sel: "node-b"})
        claims = c.wait_bound(["notes"])
        pv_name = claims["notes"]["spec"]["volumeName"]
        path = pv_path(c.pvs()[pv_name])
        self.assertTrue(path.startswith(c.roots["node-b"] + "/default/_claims/notes"), path)
        with open(os.path.join(path, "n.txt"), "w") as f:
            f.write("keep me\n")
        c.kubectl("delete", "pvc", "notes")
        wait_for(lambda: c.pvs()[pv_name]["status"].get("phase") == "Released", 30,
                 "the PV to be Released")
        c.create_claim("notes", "keep", annotations={sel: "node-a"})
        claims = c.wait_bound(["notes"])
        self.assertEqual(claims["notes"]["spec"]["volumeName"], pv_name)
        with open(os.path.join(path, "n.txt")) as f:
            self.assertEqual(f.read(), "keep me\n")
        self.assertFalse(os.path.exists(os.path.join(c.roots["node-a"], "default/_claims/notes")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
