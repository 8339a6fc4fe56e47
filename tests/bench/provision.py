#!/usr/bin/python3
"""Benchmark of ordinal-provisioner against the API emulator (not run by CTest).

    tests/bench/provision.py [--claims 500] [--hold 1000] [--workers 4] [--bin DIR]

One node, one provisioner. N claims of a WaitForFirstConsumer class are created (by 8 client
threads) already carrying volume.kubernetes.io/selected-node for the node, which is the moment
the scheduler hands a claim to the provisioner. A watch on claims and PVs, opened before the
burst, timestamps each claim's ADDED event and its PV's ADDED event on one clock; the
difference is the provisioning latency (selected-node set -> PV created). Then more claims are
added until the provisioner holds --hold PVs, and its peak RSS (VmHWM) is read from /proc.

Prints claims per second (first create to last claim Bound), p50/p99 latency, time to bind all,
and VmHWM/VmRSS, next to the DESIGN §7 targets: 500 claims bound within 10 s, p99 <= 100 ms,
RSS <= 16 MiB holding 1,000 PVs.
"""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Emulator, Proc, bin_path, temp_dir, wait_for  # noqa: E402

SELECTED = "volume.kubernetes.io/selected-node"


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


class Watcher(threading.Thread):
    """Timestamps ADDED claims and PVs, and claims turning Bound."""

    def __init__(self, emu, path):
        super().__init__(daemon=True)
        self.emu, self.path = emu, path
        self.added, self.bound = {}, {}
        self.pv_added = {}
        self.wall = {}
        self.lock = threading.Lock()

    def run(self):
        resp, events = self.emu.watch(self.path + "?watch=1&allowWatchBookmarks=false",
                                      timeout=3600)
        for ev in events:
            now = time.monotonic()
            wall = time.time()
            obj = ev.get("object", {})
            meta = obj.get("metadata", {})
            with self.lock:
                if obj.get("kind") == "PersistentVolume" and ev["type"] == "ADDED":
                    self.pv_added[meta["name"]] = now
                elif obj.get("kind") == "PersistentVolumeClaim":
                    if ev["type"] == "ADDED":
                        self.added.setdefault(meta["uid"], now)
                        self.wall.setdefault(meta["name"], wall)
                    if obj.get("status", {}).get("phase") == "Bound":
                        self.bound.setdefault(meta["uid"], now)


def create_claims(emu, names, node, threads=8, rate=0.0):
    """rate > 0: each thread paces its creates so that all of them together offer `rate`
    claims per second (load generation, not synchronisation)."""
    def run(part):
        start = time.monotonic()
        for i, n in enumerate(part):
            if rate > 0:
                due = start + i * threads / rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": n, "annotations": {SELECTED: node}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "bench",
                             "resources": {"requests": {"storage": "1Mi"}}}}
            status, out = emu.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                                  body)
            assert status == 201, out
    ts = [threading.Thread(target=run, args=(names[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=500)
    ap.add_argument("--hold", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offered claims per second (default: as fast as the emulator takes)")
    ap.add_argument("--bin", default=None, help="directory of ordinal-provisioner")
    args = ap.parse_args()
    if args.bin:
        os.environ["ORDINAL_BIN_DIR"] = args.bin

    emu = Emulator(nodes=("node-a",), controllers=True)
    root = temp_dir("bench-root-")
    emu.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "bench"}, "provisioner": "ordinal.dev/local",
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}))
    prov = Proc([bin_path("ordinal-provisioner"), "--kubeconfig", emu.kubeconfig, "--node-name",
                 "node-a", "--root", root, "--workers", str(args.workers), "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warn")],
                env=emu.env, name="bench-provisioner")
    wait_for(lambda: prov.running() and os.path.exists(f"/proc/{prov.pid}/status"), 10, "start")
    claims_w = Watcher(emu, "/api/v1/namespaces/default/persistentvolumeclaims")
    pvs_w = Watcher(emu, "/api/v1/persistentvolumes")
    claims_w.start()
    pvs_w.start()
    # let the provisioner's informers sync before the clock starts
    wait_for(lambda: emu.api("GET", "/api/v1/persistentvolumes")[0] == 200, 10, "API")
    time.sleep(0.5)  # not synchronisation: keep start-up work out of the measurement

    idle_hwm = status_kb(prov.pid, "VmHWM")
    names = [f"bench-{i}" for i in range(args.claims)]
    t0 = time.monotonic()
    create_claims(emu, names, "node-a", rate=args.rate)
    t_created = time.monotonic()
    wait_for(lambda: len(claims_w.bound) >= args.claims, 300, "all claims Bound", interval=0.01)
    t_bound = max(claims_w.bound.values())

    lat = []
    status, body = emu.api("GET", "/api/v1/namespaces/default/persistentvolumeclaims")
    for c in body["items"]:
        uid = c["metadata"]["uid"]
        pv = f"pvc-{uid}"
        if uid in claims_w.added and pv in pvs_w.pv_added:
            lat.append((pvs_w.pv_added[pv] - claims_w.added[uid]) * 1000.0)
    elapsed = t_bound - t0
    if os.environ.get("BENCH_DUMP"):
        with open(os.environ["BENCH_DUMP"], "w") as f:
            for c in body["items"]:
                uid = c["metadata"]["uid"]
                pv = f"pvc-{uid}"
                if uid in claims_w.added and pv in pvs_w.pv_added:
                    f.write(f"{c['metadata']['name']} {claims_w.wall[c['metadata']['name']]:.3f} "
                            f"{(pvs_w.pv_added[pv] - claims_w.added[uid]) * 1000:.1f}\n")
            f.write(prov.log())

    print(f"claims:                {args.claims} on one node, {args.workers} workers")
    print(f"created in:            {t_created - t0:.2f} s (8 client threads)")
    print(f"all Bound after:       {elapsed:.2f} s   (target: 500 within 10 s)")
    print(f"claims per second:     {args.claims / elapsed:.1f}")
    print(f"selected-node -> PV:   p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
          f"max {max(lat):.1f} ms   (target p99 <= 100 ms; n={len(lat)})")

    more = [f"hold-{i}" for i in range(max(0, args.hold - args.claims))]
    if more:
        create_claims(emu, more, "node-a")
        wait_for(lambda: len(claims_w.bound) >= args.hold, 600, "hold claims Bound",
                 interval=0.05)
    n_pv = len(emu.api("GET", "/api/v1/persistentvolumes")[1]["items"])
    hwm, rss = status_kb(prov.pid, "VmHWM"), status_kb(prov.pid, "VmRSS")
    with open(f"/proc/{prov.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    print(f"provisioner:           {cpu:.2f} s CPU in all; VmHWM {idle_hwm / 1024:.1f} MiB idle")
    print(f"holding {n_pv} PVs:      VmHWM {hwm / 1024:.1f} MiB, VmRSS {rss / 1024:.1f} MiB   "
          f"(target <= 16 MiB)")
    code = prov.terminate()
    print(f"provisioner exit:      {code}")
    emu.stop()


if __name__ == "__main__":
    main()
