#!/usr/bin/python3
"""Benchmark: `ordinal-backup backup` to S3 (s3rver behind the SigV4-verifying proxy, as in the
integration tests) against the same backup to a directory repository, on the same data, in one
run. Prints both wall times, the ratio (s3 / directory), the stored sizes, the peak RSS of each
run and the proxy's request counts. Not run by CTest.

    tests/bench/s3.py [--size 256M] [--level 3] [--runs 2] [--build DIR] [--no-proxy]

--no-proxy points ordinal-backup straight at s3rver, to separate the cost of the Python proxy
(which re-hashes and re-signs every byte) from the client's. The data: half compressible text
pages, half random bytes, in files of 1-16 MiB, under <tmp>/root/bench/db/0/data.
"""
import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

from s3_harness import S3Peer  # noqa: E402


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("IB")
    return int(float(s[:-1]) * mult[s[-1]]) if s and s[-1] in mult else int(s)


def make_data(path, size):
    rng = random.Random(1)
    os.makedirs(path)
    done, i = 0, 0
    while done < size:
        n = min(size - done, rng.randint(1, 16) << 20)
        with open(os.path.join(path, "f%04d" % i), "wb") as f:
            if i % 2:
                f.write(rng.randbytes(n))
            else:
                line = b"".join(b"row %08d value %s\n" % (k, str(rng.random()).encode())
                                for k in range(2048))
                f.write((line * (n // len(line) + 1))[:n])
        done += n
        i += 1


def timed(cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, max(rss, before) / 1024.0, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256M")
    ap.add_argument("--level", default="3")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--build", default=os.environ.get("ORDINAL_BIN_DIR",
                                                      os.path.join(SRC, "build", "bin")))
    ap.add_argument("--no-proxy", action="store_true")
    args = ap.parse_args()
    binary = os.path.join(args.build, "ordinal-backup")
    work = tempfile.mkdtemp(prefix="ordinal-bench-s3-", dir="/var/tmp")
    try:
        root = os.path.join(work, "root")
        make_data(os.path.join(root, "bench", "db", "0", "data"), parse_size(args.size))
        peer = S3Peer()
        endpoint = ("http://127.0.0.1:%d" % peer.s3_port) if args.no_proxy else peer.endpoint
        env = peer.env()
        env.pop("ORDINAL_S3_RETRY_BASE_MS", None)
        if args.no_proxy:
            env["AWS_ACCESS_KEY_ID"] = "S3RVER"  # s3rver's own key; it does not check V4
        best = {"dir": None, "s3": None}
        for run in range(args.runs):
            dirrepo = os.path.join(work, "repo-%d" % run)
            common = ["--root", root, "--statefulset", "bench/db", "--level", args.level, "--json"]
            d = timed([binary, "backup", "--repo", dirrepo, *common], env)
            s = timed([binary, "backup", "--repo", peer.url("bench-%d" % run),
                       "--s3-endpoint", endpoint, "--s3-path-style", *common], env)
            for k, v in (("dir", d), ("s3", s)):
                if best[k] is None or v[0] < best[k][0]:
                    best[k] = v
            shutil.rmtree(dirrepo, ignore_errors=True)
        import json
        stored = json.loads(best["s3"][2])["volumes"][0]["bytes_stored"]
        print("data: %s, level %s, best of %d runs%s" % (args.size, args.level, args.runs,
                                                         " (no proxy)" if args.no_proxy else ""))
        print("directory repository: %.2f s" % best["dir"][0])
        print("s3 repository:        %.2f s  (stored %.1f MiB)" % (best["s3"][0], stored / 2**20))
        print("ratio s3/directory:   %.2fx" % (best["s3"][0] / best["dir"][0]))
        print("peak RSS of the runs: %.0f MiB" % max(best["dir"][1], best["s3"][1]))
        if not args.no_proxy:
            st = peer.stats()
            print("proxy: %d requests, %d parts, %d signature mismatches" %
                  (st["requests"], st["parts"], st["signature_mismatch"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
