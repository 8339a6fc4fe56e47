"""The C Kubernetes client (common/kube_*.c) against the API emulator, through tests/tools/kube_probe.

What a user of the programs depends on: list, watch (events arrive), relist after a forced 410,
update conflicts with the server's message, Retry-After honoured on 429, a few percent of server
errors survived, TLS with the right CA (inline or a file relative to the kubeconfig), and the
error a person reads for a wrong CA, a wrong token and a server that is not there.

kube_probe prints one JSON document per result on stdout (watch: one line per event) and, on
failure, "kube_probe: MESSAGE" on stderr plus {"errno", "error", "message"} on stdout, exit 1.
"""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Emulator, Proc, skip, temp_dir, wait_for  # noqa: E402


def probe_path():
    build = os.environ.get("ORDINAL_BUILD_DIR")
    if not build:
        build = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "build")
    return os.path.join(build, "tests", "kube_probe")


PROBE = probe_path()


def pod(name, labels=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "probe"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


class KubeClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(PROBE, os.X_OK):
            skip(f"{PROBE} is not built")
        cls.emu = Emulator()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.set_faults(reset=True)
        self.ns = f"t-{self._testMethodName.replace('_', '-')[:40]}"
        status, body = self.emu.api("POST", "/api/v1/namespaces",
                                    {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": self.ns}})
        self.assertIn(status, (200, 201), body)

    # -- helpers --

    def probe(self, *args, kubeconfig=None, check=None, timeout=60):
        """Runs kube_probe; returns (exit code, list of stdout JSON documents, stderr)."""
        cmd = [PROBE, "--kubeconfig", kubeconfig or self.emu.kubeconfig, *args]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=self.emu.env)
        docs = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
        if check is not None:
            self.assertEqual(cp.returncode, check,
                             f"{' '.join(cmd)}\nstdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp.returncode, docs, cp.stderr

    def watch_proc(self, n, *extra):
        return Proc([PROBE, "--kubeconfig", self.emu.kubeconfig, "--timeout", "60", *extra,
                     "watch", "pods", self.ns, str(n)], env=self.emu.env)

    @staticmethod
    def lines(proc):
        with open(proc.stdout_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def create_pod(self, name):
        status, body = self.emu.api("POST", f"/api/v1/namespaces/{self.ns}/pods", pod(name))
        self.assertEqual(status, 201, body)
        return body

    def kubeconfig_variant(self, transform):
        """A copy of the emulator's kubeconfig with transform(text) applied."""
        with open(self.emu.kubeconfig) as f:
            text = f.read()
        d = temp_dir("kc-variant-")
        path = os.path.join(d, "config")
        with open(path, "w") as f:
            f.write(transform(text, d))
        return path

    def stat_count(self, verb, code):
        return self.emu.stats()["requests"].get(verb, {}).get(str(code), 0)

    # -- tests --

    def test_list(self):
        for i in range(3):
            self.create_pod(f"p{i}")
        _, docs, _ = self.probe("--limit", "2", "list", "pods", self.ns, check=0)
        lst = docs[0]
        self.assertEqual(sorted(i["metadata"]["name"] for i in lst["items"]), ["p0", "p1", "p2"])
        self.assertTrue(lst["metadata"]["resourceVersion"])
        self.assertNotIn("continue", lst["metadata"])
        # A label selector reaches the server.
        self.emu.api("POST", f"/api/v1/namespaces/{self.ns}/pods", pod("other", {"app": "x"}))
        _, docs, _ = self.probe("--label-selector", "app=x", "list", "pods", self.ns, check=0)
        self.assertEqual([i["metadata"]["name"] for i in docs[0]["items"]], ["other"])
        # Cluster-scoped: the emulator's nodes.
        _, docs, _ = self.probe("list", "nodes", "-", check=0)
        self.assertEqual(sorted(i["metadata"]["name"] for i in docs[0]["items"]),
                         ["node-a", "node-b"])

    def test_get_create_patch_delete(self):
        _, docs, _ = self.probe("create", "pods", self.ns, json.dumps(pod("a")), check=0)
        self.assertTrue(docs[0]["metadata"]["uid"])
        rc, docs, err = self.probe("create", "pods", self.ns, json.dumps(pod("a")), check=1)
        self.assertEqual(docs[-1]["error"], "EEXIST")
        self.assertIn('pods "a" already exists', err)
        _, docs, _ = self.probe("patch", "pods", self.ns, "a",
                                '{"metadata":{"labels":{"patched":"yes"}}}', check=0)
        self.assertEqual(docs[0]["metadata"]["labels"]["patched"], "yes")
        _, docs, _ = self.probe("get", "pods", self.ns, "a", check=0)
        self.assertEqual(docs[0]["metadata"]["labels"]["patched"], "yes")
        self.probe("delete", "pods", self.ns, "a", check=0)
        rc, docs, err = self.probe("get", "pods", self.ns, "a", check=1)
        self.assertEqual(docs[-1]["error"], "ENOENT")
        self.assertIn(f"GET /api/v1/namespaces/{self.ns}/pods/a: 404 NotFound: pods \"a\" not found",
                      err)

    def test_update_conflict(self):
        created = self.create_pod("c")
        stale = json.loads(json.dumps(created))
        # Someone else changes it first.
        status, _ = self.emu.api("PATCH", f"/api/v1/namespaces/{self.ns}/pods/c",
                                 {"metadata": {"labels": {"by": "other"}}},
                                 content_type="application/merge-patch+json")
        self.assertEqual(status, 200)
        stale["metadata"].setdefault("labels", {})["by"] = "me"
        rc, docs, err = self.probe("update", "pods", self.ns, json.dumps(stale), check=1)
        self.assertEqual(docs[-1]["error"], "ESTALE")
        self.assertIn("409 Conflict: Operation cannot be fulfilled on pods \"c\": the object has "
                      "been modified; please apply your changes to the latest version and try "
                      "again", err)
        # With the fresh resourceVersion it goes through.
        _, docs, _ = self.probe("get", "pods", self.ns, "c", check=0)
        fresh = docs[0]
        fresh["metadata"]["labels"]["by"] = "me"
        _, docs, _ = self.probe("update", "pods", self.ns, json.dumps(fresh), check=0)
        self.assertEqual(docs[0]["metadata"]["labels"]["by"], "me")

    def test_watch_events_arrive(self):
        self.create_pod("before")
        w = self.watch_proc(3)
        wait_for(lambda: any(l["type"] == "LIST" for l in self.lines(w)), 20, "the initial list")
        self.assertEqual(self.lines(w)[0]["names"], ["before"])
        self.create_pod("w1")
        self.emu.api("PATCH", f"/api/v1/namespaces/{self.ns}/pods/w1",
                     {"metadata": {"labels": {"step": "2"}}},
                     content_type="application/merge-patch+json")
        self.emu.api("DELETE", f"/api/v1/namespaces/{self.ns}/pods/w1")
        self.assertEqual(w.wait(timeout=60), 0, w.log())
        events = [(l["type"], l.get("name")) for l in self.lines(w) if l["type"] != "LIST"]
        self.assertEqual(events, [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")])
        # Resource versions only grow.
        rvs = [int(l["resourceVersion"]) for l in self.lines(w)]
        self.assertEqual(rvs, sorted(rvs))
        # The watch asked for bookmarks.
        self.assertGreaterEqual(self.stat_count("watch", 200), 1)

    def test_relist_after_forced_410(self):
        self.create_pod("old")
        lists_before = self.stat_count("list", 200)
        self.emu.set_faults(gone_next_watch=1)
        w = self.watch_proc(1)
        # First list, a 410 on the watch, a second list, then live events again.
        wait_for(lambda: sum(l["type"] == "LIST" for l in self.lines(w)) >= 2, 30,
                 "a relist after the 410")
        self.create_pod("after")
        self.assertEqual(w.wait(timeout=60), 0, w.log())
        kinds = [l["type"] for l in self.lines(w)]
        self.assertEqual(kinds, ["LIST", "RECOVERED", "LIST", "ADDED"], w.log())
        recovered = self.lines(w)[1]
        self.assertEqual(recovered["error"], "EKEYEXPIRED")
        self.assertIn("410", recovered["message"])
        self.assertEqual(self.lines(w)[-1]["name"], "after")
        self.assertGreaterEqual(self.stat_count("list", 200) - lists_before, 2)

    def test_watch_survives_drops(self):
        # Watches cut every second: the probe re-watches from its resourceVersion and sees
        # every event exactly once.
        w = self.watch_proc(4)
        wait_for(lambda: any(l["type"] == "LIST" for l in self.lines(w)), 20, "the initial list")
        self.emu.set_faults(watch_drop_seconds=1)
        for i in range(4):
            self.create_pod(f"d{i}")
            wait_for(lambda: any(l.get("name") == f"d{i}" for l in self.lines(w)), 30,
                     f"event for d{i}")
        self.assertEqual(w.wait(timeout=60), 0, w.log())
        added = [l["name"] for l in self.lines(w) if l["type"] == "ADDED"]
        self.assertEqual(added, ["d0", "d1", "d2", "d3"])

    def test_retry_after_honoured_on_429(self):
        self.create_pod("r")
        self.emu.set_faults(throttle_rate=0.5, retry_after=1, seed=11)
        throttled_before = self.stat_count("list", 429)
        retried = None
        for _ in range(12):
            rc, docs, err = self.probe("--debug", "--backoff-ms", "1", "request", "GET",
                                       f"/api/v1/namespaces/{self.ns}/pods")
            self.assertEqual(rc, 0, err)
            self.assertEqual(docs[0]["status"], 200)
            if docs[0]["attempts"] > 1:
                retried = err
                break
        self.assertIsNotNone(retried, "no request was throttled at a 50% rate")
        # The wait between attempts is the server's Retry-After (1 s), not the client's own
        # backoff (at most 8 ms with --backoff-ms 1).
        self.assertIn("429 TooManyRequests", retried)
        self.assertIn("retrying in 1000 ms", retried)
        self.assertGreater(self.stat_count("list", 429), throttled_before)

    def test_server_errors_survived(self):
        for i in range(3):
            self.create_pod(f"e{i}")
        errors_before = self.stat_count("list", 500) + self.stat_count("get", 500)
        self.emu.set_faults(error_rate=0.05, seed=5)
        for i in range(40):
            if i % 2:
                _, docs, _ = self.probe("--backoff-ms", "5", "list", "pods", self.ns, check=0)
                self.assertEqual(len(docs[0]["items"]), 3)
            else:
                _, docs, _ = self.probe("--backoff-ms", "5", "get", "pods", self.ns,
                                        f"e{i % 3}", check=0)
        errors = self.stat_count("list", 500) + self.stat_count("get", 500) - errors_before
        self.assertGreater(errors, 0, "the 5% error rate never hit: the test proves nothing")

    def test_informer_under_faults(self):
        for i in range(5):
            self.create_pod(f"i{i}")
        self.emu.set_faults(error_rate=0.05, watch_drop_seconds=1, seed=9)
        inf = Proc([PROBE, "--kubeconfig", self.emu.kubeconfig, "--timeout", "60",
                    "--backoff-ms", "5", "informer", "pods", self.ns, "7"], env=self.emu.env)
        wait_for(lambda: any(l["type"] == "synced" for l in self.lines(inf)), 30, "informer sync")
        self.emu.api("DELETE", f"/api/v1/namespaces/{self.ns}/pods/i0")
        self.create_pod("i5")
        self.assertEqual(inf.wait(timeout=60), 0, inf.log())
        lines = self.lines(inf)
        adds = sorted(l["name"] for l in lines if l["type"] == "add")
        self.assertEqual(adds, ["i0", "i1", "i2", "i3", "i4", "i5"])
        self.assertIn(("delete", "i0"), [(l["type"], l.get("name")) for l in lines])
        self.assertEqual(lines[-1]["type"], "cache")
        self.assertEqual(lines[-1]["count"], 5)

    def test_tls_ca_file_relative_to_kubeconfig(self):
        def use_file(text, d):
            m = re.search(r"certificate-authority-data: (\S+)", text)
            with open(os.path.join(d, "emu-ca.crt"), "wb") as f:
                f.write(base64.b64decode(m.group(1)))
            return text.replace(m.group(0), "certificate-authority: emu-ca.crt")
        kc = self.kubeconfig_variant(use_file)
        _, docs, _ = self.probe("get", "nodes", "-", "node-a", kubeconfig=kc, check=0)
        self.assertEqual(docs[0]["metadata"]["name"], "node-a")

    def test_tls_wrong_ca(self):
        d = temp_dir("other-ca-")
        key, crt = os.path.join(d, "k.pem"), os.path.join(d, "ca.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", crt, "-subj", "/CN=not-the-emulator", "-days", "1"],
                       check=True, capture_output=True)
        with open(crt, "rb") as f:
            other = base64.b64encode(f.read()).decode()
        kc = self.kubeconfig_variant(lambda t, _d: re.sub(
            r"certificate-authority-data: \S+", f"certificate-authority-data: {other}", t))
        rc, docs, err = self.probe("get", "nodes", "-", "node-a", kubeconfig=kc, check=1)
        self.assertEqual(docs[-1]["error"], "EKEYREJECTED")
        self.assertIn(f"TLS certificate of https://127.0.0.1:{self.emu.port} is not signed by the "
                      f"configured CA (certificate-authority-data in {kc})", err)

    def test_wrong_token(self):
        kc = self.kubeconfig_variant(lambda t, _d: re.sub(r"token: \S+", "token: not-the-token", t))
        rc, docs, err = self.probe("get", "nodes", "-", "node-a", kubeconfig=kc, check=1)
        self.assertEqual(docs[-1]["error"], "EACCES")
        self.assertIn("401 Unauthorized: the API server at "
                      f"https://127.0.0.1:{self.emu.port} rejected the credentials from "
                      f"kubeconfig {kc}", err)
        self.assertNotIn("not-the-token", err)  # secrets never reach a message

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        kc = self.kubeconfig_variant(lambda t, _d: re.sub(
            r"server: https://127.0.0.1:\d+", f"server: https://127.0.0.1:{port}", t))
        rc, docs, err = self.probe("--max-attempts", "2", "--backoff-ms", "1", "get", "nodes",
                                   "-", "node-a", kubeconfig=kc, check=1)
        self.assertEqual(docs[-1]["error"], "ECONNREFUSED")
        self.assertIn(f"connection refused to https://127.0.0.1:{port}", err)
        self.assertIn("after 2 attempts", err)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ClientCertificateTest(unittest.TestCase):
    """Client certificates (files relative to the kubeconfig, and -data) against a TLS server
    that requires them: `openssl s_server -Verify 1 -verify_return_error -WWW`, serving a JSON
    file. The emulator only takes bearer tokens, so this part needs a server of its own."""

    @classmethod
    def setUpClass(cls):
        if not os.access(PROBE, os.X_OK):
            skip(f"{PROBE} is not built")
        cls.dir = temp_dir("mtls-")

        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=cls.dir, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.pem", "-subj", "/CN=test-ca", "-days", "1")
        with open(os.path.join(cls.dir, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for name, ext in (("srv", ["-extfile", "san.ext"]), ("cli", [])):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                    f"{name}.csr", "-subj", f"/CN={name}")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", *ext)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
                "other.pem", "-subj", "/CN=intruder", "-days", "1")
        with open(os.path.join(cls.dir, "version.json"), "w") as f:
            f.write('{"major":"1","minor":"32"}')
        cls.port = free_port()
        cls.server = Proc(["openssl", "s_server", "-accept", f"127.0.0.1:{cls.port}", "-cert",
                           "srv.pem", "-key", "srv.key", "-CAfile", "ca.pem", "-Verify", "1",
                           "-verify_return_error", "-WWW", "-quiet"], cwd=cls.dir)

        def listening():
            with socket.create_connection(("127.0.0.1", cls.port), timeout=1):
                return True
        wait_for(listening, 20, "openssl s_server to listen")

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()

    def kubeconfig(self, name, user):
        with open(os.path.join(self.dir, "ca.pem"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("current-context: c\n"
                    f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{self.port}', "
                    f"certificate-authority-data: {ca}}}}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    f"users: [{{name: u, user: {user}}}]\n")
        return path

    def data(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return base64.b64encode(f.read()).decode()

    def get(self, kubeconfig):
        cp = subprocess.run([PROBE, "--kubeconfig", kubeconfig, "--max-attempts", "1", "request",
                             "GET", "/version.json"], capture_output=True, text=True, timeout=60)
        docs = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
        return cp.returncode, docs, cp.stderr

    def test_files_relative_to_kubeconfig(self):
        kc = self.kubeconfig("kc-files", "{client-certificate: cli.pem, client-key: cli.key}")
        rc, docs, err = self.get(kc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(docs[0]["body"], {"major": "1", "minor": "32"})

    def test_data(self):
        kc = self.kubeconfig("kc-data", f"{{client-certificate-data: {self.data('cli.pem')}, "
                                        f"client-key-data: {self.data('cli.key')}}}")
        rc, docs, err = self.get(kc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(docs[0]["status"], 200)

    def test_no_certificate(self):
        kc = self.kubeconfig("kc-none", "{}")
        rc, docs, err = self.get(kc)
        self.assertEqual(rc, 1)
        self.assertEqual(docs[-1]["error"], "EKEYREJECTED")
        self.assertIn(f"the server at https://127.0.0.1:{self.port} requires a TLS client "
                      "certificate and none is configured", err)

    def test_certificate_of_another_ca(self):
        kc = self.kubeconfig("kc-other", "{client-certificate: other.pem, client-key: other.key}")
        rc, docs, err = self.get(kc)
        self.assertEqual(rc, 1)
        self.assertEqual(docs[-1]["error"], "EKEYREJECTED")
        self.assertIn(f"the server at https://127.0.0.1:{self.port} rejected the TLS client "
                      "certificate", err)

    def test_key_not_matching(self):
        kc = self.kubeconfig("kc-mismatch", "{client-certificate: cli.pem, client-key: other.key}")
        rc, docs, err = self.get(kc)
        self.assertEqual(rc, 1)
        self.assertEqual(docs[-1]["error"], "EINVAL")
        self.assertIn("cannot use the client certificate", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
