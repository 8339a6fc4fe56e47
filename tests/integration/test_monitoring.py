"""deploy/monitoring/ (issue 16): the alert rules pass `promtool check rules`, and promtool's unit
tests (tests/monitoring/rules_test.yaml) see each alert fire, resolve, and stay quiet where it
should; every metric the rules use is one the programs export and docs/operations.md
documents; the kustomize Component turns the endpoint on in both DaemonSets with flags the
programs accept.

promtool comes from Debian's `prometheus` package, which scripts/setup.sh installs: its absence
is a failure here, not a skip.
"""

import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import bin_path, source_dir, temp_dir  # noqa: E402

SRC = source_dir()
MONITORING = os.path.join(SRC, "deploy", "monitoring")
RULE = os.path.join(MONITORING, "prometheusrule.yaml")
RULES_TEST = os.path.join(SRC, "tests", "monitoring", "rules_test.yaml")
PROMTOOL = shutil.which("promtool")
KUBECTL = shutil.which("kubectl")
PAGED_ON = {"OrdinalBackupTooOld", "OrdinalBackupFailing", "OrdinalProvisioningFailing"}


def rules_file(directory):
    """The PrometheusRule's spec as a plain rules file in directory; returns its groups."""
    with open(RULE) as f:
        doc = yaml.safe_load(f)
    assert doc["kind"] == "PrometheusRule", doc["kind"]
    with open(os.path.join(directory, "rules.yaml"), "w") as f:
        yaml.safe_dump(doc["spec"], f, sort_keys=False)
    return doc["spec"]["groups"]


def promtool(*args, cwd):
    assert PROMTOOL, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


class TestRules(unittest.TestCase):

    def setUp(self):
        self.dir = temp_dir("ordinal-rules-")
        self.groups = rules_file(self.dir)

    def test_check_rules(self):
        cp = promtool("check", "rules", "rules.yaml", cwd=self.dir)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        alerts = {r["alert"] for g in self.groups for r in g["rules"]}
        self.assertIn(f"SUCCESS: {len(alerts)} rules found", cp.stdout)
        self.assertLessEqual(PAGED_ON, alerts)

    def test_alerts_fire_and_resolve(self):
        shutil.copy(RULES_TEST, self.dir)
        cp = promtool("test", "rules", os.path.basename(RULES_TEST), cwd=self.dir)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("SUCCESS", cp.stdout)
        # every alert has a test that sees it fire
        with open(RULES_TEST) as f:
            tests = yaml.safe_load(f)["tests"]
        fired = {t["alertname"] for case in tests for t in case["alert_rule_test"]
                 if t["exp_alerts"]}
        self.assertEqual(fired, {r["alert"] for g in self.groups for r in g["rules"]})

    def test_rules_use_exported_documented_metrics(self):
        with open(os.path.join(SRC, "docs", "operations.md")) as f:
            docs = f.read()
        sources = ""
        for d in ("common", "provisioner", "backup"):
            for name in os.listdir(os.path.join(SRC, d)):
                if name.endswith(".c"):
                    with open(os.path.join(SRC, d, name)) as f:
                        sources += f.read()
        for g in self.groups:
            for r in g["rules"]:
                for metric in set(re.findall(r"\bordinal_[a-z_]+", r["expr"])):
                    self.assertIn(f'"{metric}"', sources, f"{r['alert']}: {metric} not exported")
                    self.assertIn(f"`{metric}`", docs, f"{r['alert']}: {metric} not documented")


@unittest.skipIf(KUBECTL is None, "kubectl is not installed")
class TestComponent(unittest.TestCase):

    def test_kustomize_with_monitoring(self):
        tmp = os.path.join(temp_dir("deploy-monitoring-"), "deploy")
        shutil.copytree(os.path.join(SRC, "deploy"), tmp)
        path = os.path.join(tmp, "kustomization.yaml")
        with open(path) as f:
            text = f.read()
        self.assertIn("\n# components:\n", text)
        with open(path, "w") as f:
            f.write(text.replace("\n# components:\n", "\ncomponents:\n- monitoring\n", 1))
        cp = subprocess.run([KUBECTL, "kustomize", tmp], capture_output=True, text=True,
                            timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        objs = list(yaml.safe_load_all(cp.stdout))
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
        self.assertIn(("PodMonitor", "ordinal"), kinds)
        self.assertIn(("PrometheusRule", "ordinal"), kinds)
        ds = {o["metadata"]["name"]: o for o in objs if o["kind"] == "DaemonSet"}
        for name, prog, port in (("ordinal-node", ["ordinal-provisioner"], 9101),
                                 ("ordinal-agent", ["ordinal-backup", "agent"], 9102)):
            (c,) = ds[name]["spec"]["template"]["spec"]["containers"]
            self.assertIn(f"--metrics-address=:{port}", c["args"], name)
            self.assertEqual(c["ports"], [{"name": "metrics", "containerPort": port,
                                           "protocol": "TCP"}])
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
            self.assertEqual(c["startupProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
            # the program's --help knows the flag the Component gives it
            exe = bin_path(prog[0])
            if os.path.exists(exe):
                out = subprocess.run([exe, *prog[1:], "--help"], capture_output=True, text=True,
                                     timeout=30).stdout
                self.assertIn("--metrics-address", out)
        pm = next(o for o in objs if o["kind"] == "PodMonitor")
        self.assertEqual(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics")
        selected = set(pm["spec"]["selector"]["matchExpressions"][0]["values"])
        self.assertEqual(selected, {d["spec"]["template"]["metadata"]["labels"]
                                    ["app.kubernetes.io/name"] for d in ds.values()})


if __name__ == "__main__":
    unittest.main(verbosity=2)
