"""Retention, latest and restore advice per volume, with one-node backups made on two nodes.

A StatefulSet spread over two nodes, backed up by `ordinal-backup backup` on each node (the
one-node runbook): node-a holds ordinals 0 and 2, node-b ordinal 1, so each node's backups
hold only its own ordinals. Two nodes are two --root directories with different node names
(NODE_NAME, which backup and restore both read) over one repository. What must hold:

- prune counts per volume: `--keep-last 2` never removes the only backup of ordinal 1 because
  node-a made more backups, and --dry-run says what it keeps and why;
- list shows the node that made each backup;
- restore without --backup takes each volume from the newest backup that holds it, so each
  node restores its own ordinals whichever node backed up last;
- restore never advises `mkdir -p` for a volume that lives on another node: it names that node;
- a backup whose backup.json is damaged is kept by prune and stops latest, both saying so.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import bin_path, skip, temp_dir  # noqa: E402
from backup_util import hashes, make_layout, write_volume  # noqa: E402

if not os.path.exists(bin_path("ordinal-backup")):
    skip("ordinal-backup is not built")

STS = "default/web"


class Node:
    """ordinal-backup run as on one node: its own --root and node name, the shared repository."""

    def __init__(self, name, root, repo, ordinals):
        self.name, self.root, self.repo = name, root, repo
        self.vols = make_layout(root, ordinals=ordinals)

    def run(self, *args, check=0):
        env = dict(os.environ, NODE_NAME=self.name)
        p = subprocess.run([bin_path("ordinal-backup"), *map(str, args)], capture_output=True,
                           text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        if check is not None and p.returncode != check:
            raise AssertionError(f"[{self.name}] ordinal-backup {' '.join(map(str, args))}: exit "
                                 f"{p.returncode}, expected {check}\nstdout: {p.stdout}\n"
                                 f"stderr: {p.stderr}")
        return p

    def backup(self):
        p = self.run("backup", "--root", self.root, "--repo", self.repo, "--statefulset", STS,
                     "--json")
        return json.loads(p.stdout)["id"]

    def restore(self, *extra, check=0):
        return self.run("restore", "--root", self.root, "--repo", self.repo, "--statefulset", STS,
                        *extra, check=check)

    def change(self, seed):
        for (k, _), path in self.vols.items():
            write_volume(path, seed * 100 + k)


class TwoNodes(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir("backup-retention-")
        self.repo = os.path.join(self.dir, "repo")
        self.a = Node("node-a", os.path.join(self.dir, "root-a"), self.repo, (0, 2))
        self.b = Node("node-b", os.path.join(self.dir, "root-b"), self.repo, (1,))

    def listed(self):
        return json.loads(self.a.run("list", "--repo", self.repo, "--json").stdout)

    def prune(self, *args, check=0):
        return self.a.run("prune", "--repo", self.repo, *args, check=check)

    def test_keep_last_is_per_volume(self):
        """Node-a backs up three times, node-b once: `--keep-last 2` per StatefulSet removed
        node-b's only backup, the only copy of ordinal 1."""
        a1 = self.a.backup()
        b1 = self.b.backup()
        a2 = self.a.backup()
        a3 = self.a.backup()

        doc = json.loads(self.prune("--keep-last", "2", "--dry-run", "--json").stdout)
        self.assertTrue(doc["dry_run"])
        kept = {x["id"]: x for x in doc["kept"]}
        self.assertEqual(sorted(kept), sorted([b1, a2, a3]))
        self.assertEqual([(x["id"], x["reason"]) for x in doc["removed"]], [(a1, "policy")])
        self.assertIn("newest backup of ordinal 1 'data'", kept[b1]["reason"])
        self.assertEqual(kept[b1]["node"], "node-b")
        self.assertEqual(kept[b1]["newest_of"], [{"ordinal": 1, "template": "data"}])
        self.assertIn("--keep-last 2", kept[a2]["reason"])
        self.assertNotIn("newest", kept[a2]["reason"])  # a3 holds the newest of 0 and 2
        self.assertEqual(kept[a2]["newest_of"], [])
        self.assertIn("newest backup of ordinal 0 'data', ordinal 2 'data'", kept[a3]["reason"])

        text = self.prune("--keep-last", "2", "--dry-run").stdout
        self.assertIn(f"{b1} from node 'node-b' (kept: newest backup of ordinal 1 'data'", text)
        self.assertIn(f"{a2} from node 'node-a' (kept: --keep-last 2)", text)
        self.assertIn(f"would remove default/web {a1} from node 'node-a'", text)
        self.assertIn("1 backup(s) would be removed", text)
        self.assertEqual(len(self.listed()), 4)  # a dry run removes nothing

        self.assertIn("1 backup(s) removed", self.prune("--keep-last", "2").stdout)
        self.assertEqual([x["id"] for x in self.listed()], [b1, a2, a3])
        # whatever the policy, the newest backup of every volume stays
        self.prune("--keep-last", "1", "--statefulset", STS)
        self.assertEqual([x["id"] for x in self.listed()], [b1, a3])

        # and node-b can still bring ordinal 1 back from it
        before = hashes(self.b.vols)
        self.b.change(seed=5)
        self.assertNotEqual(hashes(self.b.vols), before)
        out = json.loads(self.b.restore("--json").stdout)
        self.assertEqual([(v["ordinal"], v["template"]) for v in out["volumes"]], [(1, "data")])
        self.assertEqual(out["id"], b1)
        self.assertEqual(hashes(self.b.vols), before)

    def test_damaged_backup_is_kept_and_named(self):
        """A backup.json that does not parse: which volumes it holds is unknown, so prune keeps
        it (and says so) and latest refuses rather than guess."""
        a1 = self.a.backup()
        self.b.backup()
        self.a.backup()
        path = os.path.join(self.repo, "backups", "default", "web", a1, "backup.json")
        with open(path, "w") as f:
            f.write("{ not json")
        p = self.prune("--keep-last", "1", "--json")
        doc = json.loads(p.stdout)
        self.assertIn(a1, [x["id"] for x in doc["kept"]])
        self.assertEqual(doc["removed"], [])
        self.assertIn(f"backup '{a1}' of default/web is damaged", p.stderr)
        self.assertIn("it is kept", p.stderr)
        p = self.a.restore(check=1)
        self.assertIn(f"backup '{a1}' of default/web is damaged", p.stderr)
        self.assertIn("--backup", p.stderr)

    def test_list_shows_the_node(self):
        a1 = self.a.backup()
        b1 = self.b.backup()
        self.assertEqual([(x["id"], x["node"], x["ordinals"]) for x in self.listed()],
                         [(a1, "node-a", [2, 0]), (b1, "node-b", [1])])
        text = self.a.run("list", "--repo", self.repo).stdout.splitlines()
        self.assertIn("NODE", text[0].split())
        row = {line.split()[0]: line.split() for line in text[1:]}
        self.assertIn("node-a", row[a1])
        self.assertIn("node-b", row[b1])

    def test_latest_is_per_volume(self):
        """The newest backup of the StatefulSet is the other node's: restore without --backup
        picked it, found none of this node's ordinals in it and refused (advising mkdir -p on
        the wrong node)."""
        a1 = self.a.backup()
        before_a = hashes(self.a.vols)
        b1 = self.b.backup()  # newer than a1
        before_b = hashes(self.b.vols)
        self.a.change(seed=3)
        self.b.change(seed=4)

        # node-a: ordinals 0 and 2 from a1; ordinal 1 belongs to node-b and is left out
        p = self.a.restore("--json")
        out = json.loads(p.stdout)
        self.assertEqual([(v["ordinal"], v["backup"]) for v in out["volumes"]], [(0, a1), (2, a1)])
        self.assertEqual(out["left_out"], [{"ordinal": 1, "template": "data", "backup": b1,
                                            "node": "node-b"}])
        self.assertIn("ordinal 1 volume 'data' was left out", p.stderr)
        self.assertIn("node 'node-b'", p.stderr)
        self.assertNotIn("mkdir", p.stderr)
        self.assertEqual(hashes(self.a.vols), before_a)
        self.assertFalse(os.path.exists(os.path.join(self.a.root, "default/web/1")))

        # node-a backs up again (now the newest): node-b still finds ordinal 1 in b1
        self.a.backup()
        p = self.b.restore()
        self.assertIn(f"restored backup {b1} of default/web", p.stdout)
        self.assertIn("ordinal 0 volume 'data' was left out", p.stderr)
        self.assertEqual(hashes(self.b.vols), before_b)
        self.assertFalse(os.path.exists(os.path.join(self.b.root, "default/web/0")))

    def test_latest_mixes_backups_of_one_node(self):
        """Node-a's newest backup holds ordinal 0 only: asked for ordinals 0 and 2, latest takes
        ordinal 2 from the backup before it (the newest that holds it)."""
        def backup(ordinals):
            p = self.a.run("backup", "--root", self.a.root, "--repo", self.repo, "--statefulset",
                           STS, "--ordinals", ordinals, "--json")
            return json.loads(p.stdout)["id"]

        a1 = backup("0,2")
        before = hashes(self.a.vols)
        a2 = backup("0")
        self.a.change(seed=9)
        out = json.loads(self.a.restore("--json", "--ordinals", "0,2").stdout)
        self.assertEqual([(v["ordinal"], v["backup"]) for v in out["volumes"]], [(0, a2), (2, a1)])
        self.assertEqual(out["id"], a2)
        self.assertEqual(hashes(self.a.vols), before)
        # text: one block per backup
        self.a.change(seed=10)
        p = self.a.restore("--ordinals", "0,2", "--order", "reverse")
        self.assertIn(f"restored backup {a1} of default/web", p.stdout)
        self.assertIn(f"restored backup {a2} of default/web", p.stdout)
        self.assertEqual(hashes(self.a.vols), before)

    def test_wrong_node_advice(self):
        """A volume of the other node: the message names that node and says to restore there
        or in cluster mode; it never advises creating the entry here."""
        self.a.backup()
        b1 = self.b.backup()
        before = hashes(self.a.vols)
        for args in (("--ordinals", "1"), ("--backup", b1)):
            p = self.a.restore(*args, check=1)
            self.assertTrue(p.stderr.startswith("ordinal-backup restore: "), p.stderr)
            self.assertIn("ordinal 1 volume 'data'", p.stderr)
            self.assertIn(f"backup '{b1}' made on node 'node-b'", p.stderr)
            self.assertIn("this node is 'node-a'", p.stderr)
            self.assertIn("run this restore on node 'node-b'", p.stderr)
            self.assertIn("--kubeconfig", p.stderr)
            self.assertNotIn("mkdir", p.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.a.root, "default/web/1")))
            self.assertEqual(hashes(self.a.vols), before)
        # --node-name says which node this is, like backup's
        p = self.a.run("restore", "--root", self.a.root, "--repo", self.repo, "--statefulset",
                       STS, "--ordinals", "1", "--node-name", "node-c", check=1)
        self.assertIn("this node is 'node-c'", p.stderr)
        # a volume of this node whose entry is missing still gets the mkdir advice
        subprocess.run(["rm", "-rf", "--", self.a.vols[(2, "data")]], check=True)
        p = self.a.restore(check=1)
        self.assertIn("mkdir -p", p.stderr)
        self.assertIn("default/web/2/data", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
