"""API server trouble during a burst: 5% of requests answer 500, 5% answer 429 with
Retry-After, watches are cut every few seconds, the watch history is compacted (every resuming
watch gets 410 Gone and the informers relist) and 410s are forced on the next watches. The
outcome must be the same as without faults: every claim Bound exactly once, every PV with its
directory, every directory with its PV, nothing pending.
"""

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prov_cluster import Cluster, storage_class  # noqa: E402
from harness import wait_for  # noqa: E402

N_CLAIMS = 200
SELECTED = "volume.kubernetes.io/selected-node"
FAULTS = "error_rate=0.05,throttle_rate=0.05,retry_after=1,watch_drop_seconds=3,seed=7"


class Faults(unittest.TestCase):
    def test_burst_under_faults(self):
        c = Cluster(nodes=("node-a", "node-b", "node-c"), faults=FAULTS)
        self.addCleanup(c.close)
        c.apply(storage_class("race", binding="Immediate"))
        c.apply(storage_class("pinned"))
        names = [f"f-{i}" for i in range(N_CLAIMS)]

        def run():
            for i, n in enumerate(names):
                if i % 2:
                    c.create_claim(n, "race", size="1Mi")
                else:
                    c.create_claim(n, "pinned", size="1Mi",
                                   annotations={SELECTED: c.nodes[i % 3]})
        t = threading.Thread(target=run)
        t.start()
        ours = lambda: len([v for v in c.pvs().values()  # noqa: E731
                            if v["metadata"].get("annotations", {}).get("ordinal.dev/node")])
        wait_for(lambda: ours() >= N_CLAIMS // 4, 120, "a quarter of the PVs")
        status, _ = c.api("POST", "/emulator/v1/compact", {})
        self.assertEqual(status, 200)
        wait_for(lambda: ours() >= N_CLAIMS // 2, 120, "half of the PVs")
        c.emu.set_faults(gone_next_watch=3)
        t.join()
        c.wait_bound(names, timeout=180)

        def consistent():
            if any(c.pending(n) for n in c.nodes):
                return False
            c.check_consistent(expect_claims=names)
            return True
        wait_for(consistent, 60, "consistent state")
        c.check_consistent(expect_claims=names)
        self.assertEqual(ours(), N_CLAIMS)
        stats = c.emu.stats()["requests"]
        # the faults really happened, and were survived
        self.assertTrue(any("500" in v for v in stats.values()), stats)
        self.assertTrue(any("429" in v for v in stats.values()), stats)
        # a 410 reaches a watch as an ERROR event inside a 200 stream: the informers say so
        informer = [line for line in c.all_logs().splitlines() if "informer:" in line]
        self.assertTrue(any("410" in line for line in informer), "\n".join(informer[:20]))
        self.assertTrue(any("lost" in line for line in informer), "dropped watches")
        for n in c.nodes:
            self.assertEqual(c.orphaned(n), [])
            self.assertTrue(c.procs[n].running(), c.log(n))
        # provisioners still react after the storm (watches are alive)
        c.emu.set_faults(reset=True)
        c.create_claim("after", "pinned", size="1Mi", annotations={SELECTED: "node-c"})
        c.wait_bound(["after"], timeout=30)


if __name__ == "__main__":
    unittest.main(verbosity=2)
