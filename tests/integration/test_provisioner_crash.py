"""kill -9 of provisioners at random points during a burst of 200 claims (and during the
reclaim of half of them), then restart: every claim Bound exactly once, no PV without its
directory, no directory without its PV (except under .orphaned/), nothing left pending.

Three provisioner processes race for Immediate claims (the PV name decides the winner) and
serve WaitForFirstConsumer claims pinned to them. The kill points are chosen by a seeded random
generator (printed, so a failure can be replayed with PROV_CRASH_SEED) and reached by polling
the number of PVs created, never by sleeping.
"""

import os
import random
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import Cluster, storage_class  # noqa: E402
from harness import wait_for  # noqa: E402

N_CLAIMS = 200
SELECTED = "volume.kubernetes.io/selected-node"


class Crash(unittest.TestCase):
    def setUp(self):
        self.seed = int(os.environ.get("PROV_CRASH_SEED", random.randrange(1 << 30)))
        print(f"PROV_CRASH_SEED={self.seed}", flush=True)
        self.rng = random.Random(self.seed)
        # A little latency widens the windows between an API write and its answer, where a
        # kill leaves the most to repair.
        self.c = Cluster(nodes=("node-a", "node-b", "node-c=host-c"), faults="latency_ms=2")
        self.c.apply(storage_class("race", binding="Immediate", reclaim="Delete"))
        self.c.apply(storage_class("pinned", binding="WaitForFirstConsumer", reclaim="Delete"))

    def tearDown(self):
        self.c.close()

    def burst(self, names):
        """Creates the claims from a thread, half Immediate, half pinned to a node."""
        def run():
            for i, n in enumerate(names):
                if i % 2:
                    self.c.create_claim(n, "race", size="1Mi")
                else:
                    node = self.c.nodes[i % 3]
                    self.c.create_claim(n, "pinned", size="1Mi", annotations={SELECTED: node})
        t = threading.Thread(target=run)
        t.start()
        return t

    def ours(self):
        return [v for v in self.c.pvs().values()
                if v["metadata"].get("annotations", {}).get("ordinal.dev/node")]

    def chaos(self, progress, total, kills):
        """kill -9 a random provisioner each time progress() passes a random threshold, and
        restart it at once."""
        points = sorted(self.rng.sample(range(5, total - 5), kills))
        for p in points:
            wait_for(lambda: progress() >= p, 120, f"progress {p}")
            node = self.rng.choice(self.c.nodes)
            self.assertEqual(self.c.procs[node].kill9(), -9)
            self.c.start(node)

    def converge(self, names):
        c = self.c
        c.wait_bound(names, timeout=120)

        def consistent():
            for n in c.nodes:
                if c.pending(n):
                    return False
            c.check_consistent(expect_claims=names)
            return True
        try:
            wait_for(consistent, 60, "consistent state")
        except AssertionError:
            c.check_consistent(expect_claims=names)  # raise the precise complaint
            raise

    def test_kill9_during_burst_and_reclaim(self):
        c = self.c
        names = [f"burst-{i}" for i in range(N_CLAIMS)]
        t = self.burst(names)
        self.chaos(lambda: len(self.ours()), N_CLAIMS, kills=6)
        t.join()
        self.converge(names)
        claims, pvs = c.check_consistent(expect_claims=names)
        self.assertEqual(len([v for v in pvs.values()
                              if v["metadata"]["annotations"].get("ordinal.dev/node")]), N_CLAIMS)
        for n in c.nodes:
            self.assertEqual(c.orphaned(n), [], "no data was ever found without its PV")
        # every claim's directory exists exactly once, on the node its PV names
        entries = [e for n in c.nodes for e in c.entries(n)]
        self.assertEqual(sorted(entries), sorted(f"default/_claims/{n}" for n in names))

        # now reclaim half of them while killing again
        gone = names[::2]
        deleter = threading.Thread(
            target=lambda: c.kubectl("delete", "pvc", *gone, "--wait=false", timeout=120))
        deleter.start()
        total = N_CLAIMS
        self.chaos(lambda: total - len(self.ours()), len(gone), kills=3)
        deleter.join()
        kept = names[1::2]
        wait_for(lambda: len(self.ours()) == len(kept), 120, "the released PVs to be deleted")
        self.converge(kept)
        entries = [e for n in c.nodes for e in c.entries(n)]
        self.assertEqual(sorted(entries), sorted(f"default/_claims/{n}" for n in kept))
        logs = c.all_logs()
        print("repairs seen: %d interrupted creates finished, %d pending directories removed, "
              "%d races lost" % (logs.count("finishing an interrupted create"),
                                 logs.count("left by an interrupted create"),
                                 logs.count("created pvc-") ), flush=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
