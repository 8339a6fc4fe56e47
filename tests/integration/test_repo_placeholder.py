"""The install refuses the placeholder repository (issue 17 part 4).

deploy/backup-config.yaml ships ORDINAL_REPO as a placeholder. An install that never set it
(no overlay, docs/install.md) must not start backing up: every command that takes --repo, and
the agent at start, refuses it with a message that says where to set it. The placeholder is
read from deploy/backup-config.yaml itself, so the test follows the file. (The coordinator `run`
refusing it inside a CronJob's Job is part of tests/integration/test_doc_runbooks.py.)

Failed before: the commands tried the placeholder bucket (an S3 error) or started serving.
"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Emulator, bin_path, skip, source_dir, temp_dir  # noqa: E402

BACKUP = bin_path("ordinal-backup")
CONFIG = os.path.join(source_dir(), "deploy", "backup-config.yaml")


def placeholder():
    with open(CONFIG) as f:
        m = re.search(r'^\s*ORDINAL_REPO:\s*"?([^"\s]+)"?', f.read(), re.M)
    assert m, f"no ORDINAL_REPO in {CONFIG}"
    return m.group(1)


class TestPlaceholder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BACKUP):
            skip(f"{BACKUP} is not built")
        cls.url = placeholder()
        cls.root = temp_dir("ordinal-placeholder-root-")

    def assert_refused(self, cp):
        out = cp.stdout + cp.stderr
        self.assertEqual(cp.returncode, 1, out)
        self.assertIn(f"repository '{self.url}' is the placeholder of deploy/backup-config.yaml",
                      out)
        self.assertIn("set ORDINAL_REPO", out)
        self.assertIn("kustomize overlay (docs/examples/overlay/", out)
        self.assertNotIn("Sanitizer", out)

    def test_commands_refuse(self):
        # No network is reached: the same refusal with an S3 endpoint nothing listens on.
        env = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x",
                   AWS_SECRET_ACCESS_KEY="y")
        for args in (["backup", "--root", self.root, "--statefulset", "default/web"],
                     ["restore", "--root", self.root, "--statefulset", "default/web"],
                     ["list"], ["verify"], ["prune", "--keep-last", "1"]):
            with self.subTest(command=args[0]):
                cp = subprocess.run([BACKUP, *args, "--repo", self.url], env=env,
                                    capture_output=True, text=True, timeout=60)
                self.assert_refused(cp)
                # from the ConfigMap's variable as well
                cp = subprocess.run([BACKUP, *args], env=dict(env, ORDINAL_REPO=self.url),
                                    capture_output=True, text=True, timeout=60)
                self.assert_refused(cp)

    def test_agent_refuses_at_start(self):
        if subprocess.run(["which", "kubectl"], capture_output=True).returncode != 0:
            skip("kubectl is not installed")
        with Emulator(nodes=("node-a",)) as emu:
            cp = subprocess.run([BACKUP, "agent", "--kubeconfig", emu.kubeconfig,
                                 "--node-name", "node-a", "--root", self.root,
                                 "--repo", self.url, "--namespace", "default"],
                                env=emu.env, capture_output=True, text=True, timeout=60)
        self.assert_refused(cp)

    def test_example_overlay_sets_the_repository(self):
        # docs/examples/overlay: the install of deploy/ with ORDINAL_REPO set, the tree untouched.
        if subprocess.run(["which", "kubectl"], capture_output=True).returncode != 0:
            skip("kubectl is not installed")
        overlay = os.path.join(source_dir(), "docs", "examples", "overlay")
        cp = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True,
                            timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        repos = re.findall(r"^  ORDINAL_REPO: (\S+)$", cp.stdout, re.M)
        self.assertEqual(len(repos), 1, cp.stdout)
        self.assertNotEqual(repos[0].strip('"'), self.url)
        self.assertNotIn("CHANGE-ME", cp.stdout)
        self.assertIn("kind: DaemonSet", cp.stdout)

    def test_a_real_url_with_another_word_is_accepted(self):
        # Only the placeholder is refused: a repository named like it otherwise is fine.
        repo = os.path.join(temp_dir("ordinal-placeholder-repo-"), "CHANGE-bucket")
        os.makedirs(os.path.join(self.root, "default", "web", "0", "data"))
        cp = subprocess.run([BACKUP, "backup", "--root", self.root, "--repo", repo,
                             "--statefulset", "default/web"], capture_output=True, text=True,
                            timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)


if __name__ == "__main__":
    unittest.main()
