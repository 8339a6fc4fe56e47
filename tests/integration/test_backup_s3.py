#!/usr/bin/python3
"""ordinal-backup on s3:// repositories, against s3rver behind the SigV4-verifying proxy
(tests/s3/sigv4_proxy.py recomputes every signature with botocore and refuses mismatches).

Covers: round trip backup -> verify -> restore; a wrong secret and missing credentials (clear
error, nothing written); an object of more than three multipart parts (ORDINAL_S3_PART_SIZE,
a test-only knob, forces 5 MiB parts); a listing of more than 1,000 keys (pagination) and a
prune that removes more than 1,000 objects (multi-object delete batches); faults during a
backup (connection dropped mid-part, 500, 503 SlowDown with Retry-After) that are retried, and
faults that never stop, which fail clearly with no backup.json; HTTPS with a private CA
(--s3-ca-bundle); virtual-hosted addressing (BUCKET.ENDPOINT/KEY, the default) over HTTPS, the
name pinned to loopback with the test-only ORDINAL_S3_RESOLVE; list/prune parity with a
directory repository; restore under kill -9.
Skips (77) when s3rver or botocore is not installed.
"""

import json
import os
import random
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_util import hashes, make_layout, tree_hash, write_volume  # noqa: E402
from harness import Proc, bin_path, temp_dir  # noqa: E402
from s3_harness import S3Peer, require_s3rver  # noqa: E402

MiB = 1 << 20


class S3Backup:
    """Runs ordinal-backup against a node root and an s3:// repository of peer."""

    def __init__(self, peer, root, prefix="repo", env=None, vhost=False):
        self.peer, self.root, self.vhost = peer, root, vhost
        self.repo = peer.url(prefix)
        self.prefix = prefix
        self.env = peer.env(**(env or {}))
        self.bin = bin_path("ordinal-backup")

    def cmd(self, cmd, *args, sts="default/web", root=True):
        a = [self.bin, cmd, "--repo", self.repo, *self.peer.args(vhost=self.vhost)]
        if root:
            a += ["--root", self.root]
        if sts:
            a += ["--statefulset", sts]
        return a + [str(x) for x in args]

    def run(self, cmd, *args, check=None, sts="default/web", root=True, env=None, timeout=300):
        p = subprocess.run(self.cmd(cmd, *args, sts=sts, root=root), capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           env=env or self.env)
        if check is not None and p.returncode != check:
            raise AssertionError(f"ordinal-backup {cmd} {args}: exit {p.returncode}, expected "
                                 f"{check}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def backup(self, *args, check=0, **kw):
        p = self.run("backup", "--json", *args, check=check, **kw)
        return json.loads(p.stdout) if check == 0 else p

    def restore(self, *args, check=0, **kw):
        p = self.run("restore", "--json", *args, check=check, **kw)
        return json.loads(p.stdout) if check == 0 else p

    def list(self, sts=None):
        p = self.run("list", "--json", check=0, sts=sts, root=False)
        return json.loads(p.stdout)

    def verify(self, *args, check=0):
        return self.run("verify", *args, check=check, sts=None, root=False)

    def keys(self, sub=""):
        return self.peer.keys(self.prefix + "/" + sub)


class S3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_s3rver()
        cls.peer = S3Peer()

    def setUp(self):
        self.dir = temp_dir()
        self.root = os.path.join(self.dir, "root")
        self.prefix = "t-%s-%d" % (self._testMethodName.replace("_", "-"), random.randrange(1 << 30))
        self.b = S3Backup(self.peer, self.root, self.prefix)
        self.peer.set_faults([])
        self.peer.reset_stats()

    def assertClean(self):
        st = self.peer.stats()
        self.assertEqual(st["signature_mismatch"], 0, st)
        self.assertEqual(st["payload_mismatch"], 0, st)
        self.assertEqual(st["bad_digest"], 0, st)
        self.assertEqual(st["chunked"], 0, st)
        self.assertEqual(st["vhost"], 0, st)  # --s3-path-style: the bucket stays in the path

    def test_round_trip(self):
        vols = make_layout(self.root, ordinals=(0, 1, 2), templates=("data", "logs"))
        before = hashes(vols)
        out = self.b.backup()
        self.assertEqual([v["ordinal"] for v in out["volumes"]], [2, 2, 1, 1, 0, 0])
        keys = self.b.keys()
        bj = "%s/backups/default/web/%s/backup.json" % (self.prefix, out["id"])
        self.assertIn(bj, keys)
        self.assertIn(self.prefix + "/ordinal-repo.json", keys)
        listed = self.b.list()
        self.assertEqual([x["id"] for x in listed], [out["id"]])
        self.b.verify(check=0)
        for k, path in vols.items():
            write_volume(path, 999 + k[0])
        self.assertNotEqual(hashes(vols), before)
        res = self.b.restore()
        self.assertEqual(res["id"], out["id"])
        self.assertEqual(hashes(vols), before)
        self.assertClean()

    def test_wrong_secret_writes_nothing(self):
        make_layout(self.root, ordinals=(0,))
        bad = "wrong/" + self.peer.secret_key[6:]
        p = self.b.run("backup", check=1, env=self.peer.env(AWS_SECRET_ACCESS_KEY=bad))
        self.assertIn("signature", p.stderr)
        self.assertIn("AWS_SECRET_ACCESS_KEY", p.stderr)
        self.assertNotIn(bad, p.stdout + p.stderr)
        self.assertNotIn(self.peer.secret_key, p.stdout + p.stderr)
        self.assertEqual(self.b.keys(), [])
        self.assertGreater(self.peer.stats()["signature_mismatch"], 0)
        # an unknown key id, and no credentials at all
        p = self.b.run("backup", check=1, env=self.peer.env(AWS_ACCESS_KEY_ID="AKIANOBODY"))
        self.assertIn("AWS_ACCESS_KEY_ID", p.stderr)
        env = self.peer.env()
        del env["AWS_SECRET_ACCESS_KEY"]
        p = self.b.run("backup", check=1, env=env)
        self.assertIn("AWS_SECRET_ACCESS_KEY is not set", p.stderr)
        self.assertEqual(self.b.keys(), [])

    def test_settings_from_the_environment_and_session_token(self):
        make_layout(self.root, ordinals=(0,))
        env = self.peer.env(AWS_ENDPOINT_URL=self.peer.endpoint + "/", AWS_REGION="eu-west-3",
                            AWS_SESSION_TOKEN="FwoGZXIvYXdzEB0aD+token/with=chars")
        a = [bin_path("ordinal-backup"), "backup", "--repo", self.b.repo, "--root", self.root,
             "--statefulset", "default/web", "--s3-path-style", "--json"]
        p = subprocess.run(a, capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("FwoGZXIvYXdzEB0aD", p.stdout + p.stderr)
        self.assertEqual(len(self.b.list()), 1)
        self.assertClean()

    def test_help_says_how_to_give_credentials(self):
        for cmd in ("backup", "restore", "list", "verify", "prune"):
            p = subprocess.run([bin_path("ordinal-backup"), cmd, "--help"], capture_output=True,
                               text=True)
            self.assertEqual(p.returncode, 0)
            for word in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                         "--s3-endpoint", "--s3-region", "--s3-path-style", "--s3-ca-bundle"):
                self.assertIn(word, p.stdout, cmd)

    def big_layout(self, size=20 * MiB):
        vols = make_layout(self.root, ordinals=(0,), size=64 * 1024)
        with open(os.path.join(vols[(0, "data")], "random.bin"), "wb") as f:
            f.write(random.Random(7).randbytes(size))
        return vols

    def test_multipart_more_than_three_parts(self):
        vols = self.big_layout()
        before = hashes(vols)
        b = S3Backup(self.peer, self.root, self.prefix, env={"ORDINAL_S3_PART_SIZE": 5 * MiB})
        # The first CompleteMultipartUpload answers 200 with an <Error> body: retried.
        self.peer.set_faults([{"action": "error200", "match": "complete", "nth": 1}])
        out = b.backup("--level", "1")
        st = self.peer.stats()
        self.assertEqual(st["faults"], 1, st)
        self.assertGreaterEqual(st["parts"], 4, st)
        self.assertTrue(all(s == 5 * MiB for s in st["part_sizes"][:-1]), st["part_sizes"])
        self.assertEqual(st["completes"], 1, st)  # the forwarded one
        self.assertEqual(sum(st["part_sizes"]), out["volumes"][0]["bytes_stored"])
        b.verify(check=0)
        write_volume(vols[(0, "data")], 5)
        b.restore()
        self.assertEqual(hashes(vols), before)
        self.assertClean()

    def seed_backups(self, doc, sts, ids, extra_keys=0):
        """Complete backups of sts (backup.json only, holding doc's volumes, plus extra_keys
        objects in the last one), written straight into s3rver. The backup.json must parse:
        prune keeps a backup whose backup.json is damaged."""
        for bid in ids:
            t = "%s-%s-%sT%s:%s:%sZ" % (bid[0:4], bid[4:6], bid[6:8], bid[9:11], bid[11:13],
                                        bid[13:15])
            d = dict(doc, id=bid, statefulset=sts, time=t)
            base = "%s/backups/%s/%s" % (self.prefix, sts, bid)
            self.peer.put_raw(base + "/backup.json", json.dumps(d).encode())
        for i in range(extra_keys):
            self.peer.put_raw("%s/ordinal-0/junk-%05d.bin" % (base, i), b"x")

    def test_listing_and_prune_beyond_1000_keys(self):
        make_layout(self.root, ordinals=(0,))
        out = self.b.backup()
        key = "%s/backups/default/web/%s/backup.json" % (self.prefix, out["id"])
        doc = json.loads(self.peer.get_raw(key))
        self.assertEqual(doc["statefulset"], "default/web")
        # Two complete backups of another StatefulSet, the older with 1,050 more objects:
        # listing the repository takes two pages.
        self.seed_backups(doc, "default/bulk", ["20200101T000000Z"], extra_keys=1050)
        self.seed_backups(doc, "default/bulk", ["20200102T000000Z"])
        self.peer.reset_stats()
        listed = self.b.list()
        self.assertGreaterEqual(self.peer.stats()["lists"], 2)  # more than one page
        self.assertEqual([x["id"] for x in listed],
                         ["20200101T000000Z", "20200102T000000Z", out["id"]])
        self.assertEqual([x["id"] for x in self.b.list(sts="default/web")], [out["id"]])
        # prune removes the older: 1,052 objects in multi-object deletes of <= 1,000 keys.
        self.peer.reset_stats()
        p = self.b.run("prune", "--keep-last", "1", "--json", check=0, sts="default/bulk",
                       root=False)
        st = self.peer.stats()
        self.assertEqual(len(json.loads(p.stdout)["removed"]), 1, p.stdout)
        self.assertGreaterEqual(st["multi_deletes"], 2, st)
        self.assertEqual(self.b.keys("backups/default/bulk/20200101T000000Z/"), [])
        self.assertEqual([x["id"] for x in self.b.list(sts="default/bulk")], ["20200102T000000Z"])
        self.b.run("verify", check=0, sts="default/web", root=False)
        self.assertClean()

    def test_faults_are_retried(self):
        vols = self.big_layout(size=14 * MiB)
        before = hashes(vols)
        b = S3Backup(self.peer, self.root, self.prefix, env={"ORDINAL_S3_PART_SIZE": 5 * MiB})
        self.peer.set_faults([
            {"action": "drop", "match": "part", "nth": 2},
            {"action": "500", "match": "part", "nth": 3},
            {"action": "503", "match": "complete", "nth": 1, "retry_after": 1},
            {"action": "lose", "match": "complete", "nth": 2},
            {"action": "503", "match": "put", "nth": 2, "retry_after": 1},
            {"action": "500", "match": "get", "nth": 3},
        ])
        t0 = time.monotonic()
        out = b.backup("--level", "1")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)  # Retry-After was honoured
        st = self.peer.stats()
        self.assertEqual(st["faults"], 6, st)
        self.assertGreaterEqual(st["parts"], 3, st)
        b.verify(check=0)
        write_volume(vols[(0, "data")], 3)
        self.peer.set_faults([{"action": "drop", "match": "get", "nth": 2},
                              {"action": "503", "match": "get", "nth": 4, "retry_after": 1}])
        b.restore()
        self.assertEqual(hashes(vols), before)
        self.assertEqual(self.peer.stats()["faults"], 8)
        self.assertIn(out["id"], [x["id"] for x in b.list()])
        self.assertClean()

    def test_faults_that_persist_fail_clearly(self):
        self.big_layout(size=12 * MiB)
        b = S3Backup(self.peer, self.root, self.prefix,
                     env={"ORDINAL_S3_PART_SIZE": 5 * MiB, "ORDINAL_S3_RETRY_BASE_MS": 1})
        b.backup("--level", "1")  # creates the repository
        self.peer.set_faults([{"action": "500", "match": "part", "nth": 2, "count": 1000}])
        p = b.backup("--level", "1", check=1)
        self.assertIn("HTTP 500", p.stderr)
        self.assertIn("after retries", p.stderr)
        self.assertEqual(len(b.list()), 1)
        bjs = [k for k in b.keys("backups/") if k.endswith("backup.json")]
        self.assertEqual(len(bjs), 1, bjs)
        self.assertGreaterEqual(self.peer.stats()["aborts"], 1)
        # the same with 503 SlowDown on single PUTs (manifests, backup.json)
        self.peer.set_faults([{"action": "503", "match": "put", "nth": 1, "count": 1000,
                               "retry_after": 0}])
        p = b.backup("--level", "1", check=1)
        self.assertIn("SlowDown", p.stderr)
        self.peer.set_faults([])
        bjs = [k for k in b.keys("backups/") if k.endswith("backup.json")]
        self.assertEqual(len(bjs), 1, bjs)

    def test_parity_with_directory_repository(self):
        make_layout(self.root, ordinals=(0, 1))
        dirrepo = os.path.join(self.dir, "dirrepo")
        def run_dir(*a, check=0):
            p = subprocess.run([bin_path("ordinal-backup"), *a], capture_output=True, text=True)
            self.assertEqual(p.returncode, check, p.stderr)
            return p
        for _ in range(3):
            self.b.backup("--ordinals", "1")
            run_dir("backup", "--repo", dirrepo, "--root", self.root, "--statefulset",
                    "default/web", "--ordinals", "1")
        s3_list = self.b.list()
        dir_list = json.loads(run_dir("list", "--repo", dirrepo, "--json").stdout)
        strip = lambda l: [{k: v for k, v in x.items() if k not in ("id", "time", "bytes")} for x in l]
        self.assertEqual(strip(s3_list), strip(dir_list))
        a = json.loads(self.b.run("prune", "--keep-last", "2", "--json", check=0,
                                  root=False).stdout)
        d = json.loads(run_dir("prune", "--repo", dirrepo, "--keep-last", "2", "--json").stdout)
        self.assertEqual((len(a["kept"]), len(a["removed"])), (len(d["kept"]), len(d["removed"])))
        self.assertEqual(len(self.b.list()), 2)
        # an interrupted backup (objects, no backup.json) is invisible on both
        self.assertEqual(len(self.b.list()), len(json.loads(
            run_dir("list", "--repo", dirrepo, "--json").stdout)))
        self.assertClean()

    def test_restore_under_kill9(self):
        vols = self.big_layout(size=24 * MiB)
        old_hash = tree_hash(vols[(0, "data")])
        self.b.backup("--level", "1")
        for trial in range(4):
            write_volume(vols[(0, "data")], 100 + trial)
            with open(os.path.join(vols[(0, "data")], "random.bin"), "wb") as f:
                f.write(random.Random(trial).randbytes(3 * MiB))
            new_hash = tree_hash(vols[(0, "data")])
            proc = Proc(self.b.cmd("restore"), env=self.b.env, log_dir=self.dir,
                        name="restore-%d" % trial)
            time.sleep(0.15 + 0.25 * trial)
            proc.kill9()
            got = tree_hash(vols[(0, "data")])
            self.assertIn(got, (old_hash, new_hash), "trial %d: a mixed volume" % trial)
        self.b.restore()
        self.assertEqual(tree_hash(vols[(0, "data")]), old_hash)


class S3TlsTest(unittest.TestCase):
    def test_https_with_a_private_ca(self):
        require_s3rver()
        peer = S3Peer(tls=True)
        root = os.path.join(temp_dir(), "root")
        vols = make_layout(root, ordinals=(0,))
        before = hashes(vols)
        b = S3Backup(peer, root, "tls")
        b.backup()
        b.verify(check=0)
        write_volume(vols[(0, "data")], 42)
        b.restore()
        self.assertEqual(hashes(vols), before)
        # without the CA bundle: a clear refusal naming the option
        a = [x for x in b.cmd("list", sts=None, root=False) if x]
        i = a.index("--s3-ca-bundle")
        del a[i:i + 2]
        p = subprocess.run(a, capture_output=True, text=True, env=b.env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--s3-ca-bundle", p.stderr)
        # the bundle from the environment
        env = dict(b.env, AWS_CA_BUNDLE=peer.ca_file)
        p = subprocess.run(a, capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)


class S3VhostTest(unittest.TestCase):
    def test_virtual_hosted_round_trip(self):
        """No --s3-path-style: every request goes to https://ordinal-test.s3.ordinal.test:PORT/KEY
        (a name that resolves nowhere, pinned to 127.0.0.1 by ORDINAL_S3_RESOLVE), signed with
        that Host and the bucket-less path; the proxy re-verifies it and forwards path-style."""
        require_s3rver()
        peer = S3Peer(tls=True)
        root = os.path.join(temp_dir(), "root")
        vols = make_layout(root, ordinals=(0, 1), templates=("data", "logs"))
        # Incompressible, over 64 KiB parts: the multipart calls (?uploads=, ?partNumber=&
        # uploadId=, Complete) go virtual-hosted too.
        with open(os.path.join(vols[(0, "data")], "random.bin"), "wb") as f:
            f.write(random.Random(11).randbytes(300 * 1024))
        before = hashes(vols)
        b = S3Backup(peer, root, "vhost", vhost=True,
                     env={"ORDINAL_S3_RESOLVE": peer.vhost_resolve(),
                          "ORDINAL_S3_PART_SIZE": 64 * 1024})
        self.assertNotIn("--s3-path-style", b.cmd("backup"))
        out = b.backup()
        self.assertEqual([x["id"] for x in b.list()], [out["id"]])
        b.verify(check=0)
        for k, path in vols.items():
            write_volume(path, 777 + k[0])
        self.assertNotEqual(hashes(vols), before)
        self.assertEqual(b.restore()["id"], out["id"])
        self.assertEqual(hashes(vols), before)
        st = peer.stats()
        self.assertGreater(st["vhost"], 0, st)
        self.assertEqual(st["path_style"], 0, st)
        self.assertEqual(st["vhost"], st["requests"], st)
        self.assertGreater(st["lists"], 0, st)
        self.assertGreaterEqual(st["parts"], 4, st)
        self.assertGreaterEqual(st["completes"], 1, st)
        self.assertGreater(st["gets"], 0, st)
        for k in ("signature_mismatch", "payload_mismatch", "bad_digest", "chunked", "bad_key"):
            self.assertEqual(st[k], 0, (k, st))
        # The objects landed in the bucket where path style finds them.
        keys = peer.keys("vhost/")
        self.assertIn("vhost/backups/default/web/%s/backup.json" % out["id"], keys)
        self.assertEqual([x["id"] for x in S3Backup(peer, root, "vhost").list()], [out["id"]])
        # Without the pin the name does not resolve: the test really went through the pin.
        env = dict(b.env, ORDINAL_S3_RETRY_BASE_MS="1")
        del env["ORDINAL_S3_RESOLVE"]
        p = b.run("list", "--json", sts=None, root=False, env=env, check=1)
        self.assertIn(peer.bucket + ".s3.ordinal.test", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
