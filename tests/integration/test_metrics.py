"""The /metrics, /healthz and /readyz endpoint of ordinal-provisioner and `ordinal-backup agent`
(issue 16), through the real endpoint of the real programs against the emulator.

Every scrape is parsed by a strict parser of the Prometheus text format 0.0.4 written here
(parse_exposition): HELP/TYPE before a family's samples and once each, a family's samples
together, label names and escapes as the format allows, numbers as Go's ParseFloat reads them,
no series twice, histograms with increasing le ending in +Inf equal to _count, and _sum. Beyond
the format, the house rules of docs/operations.md: ordinal_ families use only the documented
labels, counters end in _total.

What is checked is what an operator relies on: the provisioning outcomes and latency, capacity
per class, API request metrics; after a successful and after a failed backup the agents'
per-volume gauges and counters; "last success" survives an agent restart (rebuilt from the
repository); and bad requests (unknown paths, other methods, huge headers, slow clients that
hold connections) are refused without disturbing the program.
"""

import functools
import http.client
import math
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_cluster  # noqa: E402
from backup_util import write_volume  # noqa: E402
from harness import wait_for  # noqa: E402
from prov_cluster import Cluster, storage_class  # noqa: E402

ADDRESS = ["--metrics-address", "127.0.0.1:0"]
SERVING = re.compile(r"serving /metrics, /healthz and /readyz on http://([0-9.]+):(\d+)")
ALLOWED_LABELS = {"namespace", "statefulset", "ordinal", "template", "node", "storageclass",
                  "result", "reason", "verb"}
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat, as Prometheus reads sample values
FLOAT = re.compile(r"[+-]?(Inf|inf|NaN|nan|(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(AssertionError):
    pass


def _unescape(s, quote, where):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                raise FormatError(f"{where}: dangling backslash")
            n = s[i + 1]
            if n == "\\":
                out.append("\\")
            elif n == "n":
                out.append("\n")
            elif n == '"' and quote:
                out.append('"')
            else:
                raise FormatError(f"{where}: invalid escape \\{n}")
            i += 2
            continue
        if c == "\n" or (quote and c == '"'):
            raise FormatError(f"{where}: unescaped {c!r}")
        out.append(c)
        i += 1
    return "".join(out)


def _parse_labels(s, i, where):
    """s[i] is '{'. Returns (labels dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i >= len(s):
            raise FormatError(f"{where}: unterminated label set")
        if s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(s, i)
        if not m:
            raise FormatError(f"{where}: bad label name at {s[i:]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError(f"{where}: expected =\" after {name}")
        i += 2
        j = i
        while j < len(s) and s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise FormatError(f"{where}: unterminated value of {name}")
        if name in labels:
            raise FormatError(f"{where}: label {name} twice")
        labels[name] = _unescape(s[i:j], True, where)
        i = j + 1
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] != "}":
            raise FormatError(f"{where}: expected , or }} after the value of {name}")


def _float(text, where):
    if not FLOAT.fullmatch(text):
        raise FormatError(f"{where}: {text!r} is not a number")
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def parse_exposition(text):
    """Strict parser of the text format 0.0.4. Returns {family: {"type", "help", "samples":
    [(name, labels, value)]}}; raises FormatError naming the line at the first violation."""
    if text and not text.endswith("\n"):
        raise FormatError("the last line does not end with a newline")
    fams, current, done, series = {}, None, set(), set()

    def family_of(name):
        if name in fams:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and fams.get(base, {}).get("type") in ("histogram", "summary"):
                return base
        return name

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if not line:
            raise FormatError(f"{where}: empty line")
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.*)", line)
            if not m:
                raise FormatError(f"{where}: a comment that is neither HELP nor TYPE")
            kind, name, rest = m.groups()
            if not METRIC_NAME.fullmatch(name):
                raise FormatError(f"{where}: bad metric name")
            if name in done:
                raise FormatError(f"{where}: family {name} continues after another began")
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            if current not in (None, name):
                done.add(current)
            current = name
            if kind == "HELP":
                if fam["help"] is not None:
                    raise FormatError(f"{where}: second HELP")
                fam["help"] = _unescape(rest, False, where)
            else:
                if fam["type"] is not None:
                    raise FormatError(f"{where}: second TYPE")
                if fam["samples"]:
                    raise FormatError(f"{where}: TYPE after samples")
                if rest not in TYPES:
                    raise FormatError(f"{where}: unknown type {rest!r}")
                fam["type"] = rest
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise FormatError(f"{where}: bad metric name")
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise FormatError(f"{where}: expected one space before the value")
        parts = line[i + 1:].split(" ")
        if len(parts) not in (1, 2) or "" in parts:
            raise FormatError(f"{where}: expected 'value [timestamp]'")
        value = _float(parts[0], where)
        if len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1]):
            raise FormatError(f"{where}: bad timestamp")
        fam_name = family_of(name)
        if fam_name in done or (current is not None and fam_name != current):
            raise FormatError(f"{where}: sample of {fam_name} outside its family's block")
        fam = fams.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise FormatError(f"{where}: series twice")
        series.add(key)
        fam["samples"].append((name, labels, value))
    for name, fam in fams.items():
        if fam["type"] == "histogram":
            _check_histogram(name, fam["samples"])
    return fams


def _check_histogram(name, samples):
    groups = {}
    for sname, labels, value in samples:
        if sname == name + "_bucket":
            if "le" not in labels:
                raise FormatError(f"{name}: bucket without le")
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            groups[rest]["buckets"].append((_float(labels["le"], name), value))
        elif sname in (name + "_sum", name + "_count"):
            g = groups.setdefault(tuple(sorted(labels.items())),
                                  {"buckets": [], "sum": None, "count": None})
            g["sum" if sname.endswith("_sum") else "count"] = value
        else:
            raise FormatError(f"{name}: sample {sname} in a histogram")
    for rest, g in groups.items():
        les = [le for le, _ in g["buckets"]]
        counts = [c for _, c in g["buckets"]]
        if not les or les[-1] != math.inf:
            raise FormatError(f"{name}{dict(rest)}: no le=\"+Inf\" bucket last")
        if les != sorted(les) or len(set(les)) != len(les):
            raise FormatError(f"{name}{dict(rest)}: le not increasing")
        if counts != sorted(counts):
            raise FormatError(f"{name}{dict(rest)}: buckets not cumulative")
        if g["count"] is None or g["sum"] is None:
            raise FormatError(f"{name}{dict(rest)}: _sum or _count missing")
        if g["count"] != counts[-1]:
            raise FormatError(f"{name}{dict(rest)}: _count {g['count']} != +Inf {counts[-1]}")


def check_house_rules(fams):
    for name, fam in fams.items():
        if fam["type"] is None or fam["help"] is None:
            raise FormatError(f"{name}: HELP or TYPE missing")
        if fam["type"] == "counter" and not name.endswith("_total"):
            raise FormatError(f"counter {name} does not end in _total")
        if name.startswith("ordinal_"):
            for _, labels, value in fam["samples"]:
                extra = set(labels) - ALLOWED_LABELS - {"le"}
                if extra:
                    raise FormatError(f"{name}: undocumented labels {extra}")
                if fam["type"] == "counter" and value < 0:
                    raise FormatError(f"{name}: negative counter")


def value(fams, name, **labels):
    """Sum of the samples `name` whose labels include `labels`; None when there is none."""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    fam = fams.get(name) or fams.get(base)
    found = [v for n, ls, v in (fam or {}).get("samples", ())
             if n == name and all(ls.get(k) == str(w) for k, w in labels.items())]
    return sum(found) if found else None


class Endpoint:
    def __init__(self, proc):
        m = wait_for(lambda: SERVING.search(proc.log()), 30, "the metrics endpoint in the log")
        self.proc = proc
        self.host, self.port = m.group(1), int(m.group(2))

    def get(self, path, method="GET", headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            conn.close()

    def scrape(self):
        status, headers, body = self.get("/metrics")
        assert status == 200, (status, body)
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        fams = parse_exposition(body)
        check_house_rules(fams)
        return fams


class TestExpositionParser(unittest.TestCase):
    """The parser itself refuses what the format forbids (else the other tests prove little)."""

    def test_refusals(self):
        good = ('# HELP a_total A \\\\ b\\n.\n# TYPE a_total counter\na_total{x="1\\"\\n"} 3\n'
                '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\n'
                'h_count 2\n')
        fams = parse_exposition(good)
        self.assertEqual(fams["a_total"]["samples"][0][1], {"x": '1"\n'})
        self.assertEqual(fams["a_total"]["help"], "A \\ b\n.")
        bad = [
            "a 1",                                             # no final newline
            'a{x="\\t"} 1\n',                                  # unknown escape
            'a{x="a"b"} 1\n',                                  # unescaped quote
            "a 1\na 1\n",                                      # series twice
            "a  1\n",                                          # two spaces
            "a one\n",                                         # not a number
            "a 1\n# TYPE a counter\n",                         # TYPE after samples
            "# TYPE a counter\n# TYPE a counter\n",            # TYPE twice
            "# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na 2\n",  # family split
            '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',     # no +Inf
            '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\n'
            'h_count 1\n',                                     # not cumulative
            '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',  # count != +Inf
            '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n',           # no _sum
            "# comment\n",                                     # neither HELP nor TYPE
        ]
        for text in bad:
            with self.assertRaises(FormatError, msg=repr(text)):
                parse_exposition(text)
        with self.assertRaises(FormatError):
            check_house_rules(parse_exposition("# HELP ordinal_x_total X.\n# TYPE ordinal_x_total "
                                               "counter\nordinal_x_total{path=\"/a\"} 1\n"))


class TestMetrics(unittest.TestCase):
    """One cluster: two nodes, provisioners and agents with --metrics-address 127.0.0.1:0."""

    @classmethod
    def setUpClass(cls):
        # ClusterMode builds its Cluster itself: give that Cluster the provisioners' flag.
        saved = test_cluster.Cluster
        test_cluster.Cluster = functools.partial(Cluster, prov_args=ADDRESS)
        try:
            cls.cm = test_cluster.ClusterMode(agent_args=ADDRESS)
        finally:
            test_cluster.Cluster = saved
        cls.prov = {n: Endpoint(p) for n, p in cls.cm.c.procs.items()}
        cls.agent = {n: Endpoint(p) for n, p in cls.cm.agents.items()}

    @classmethod
    def tearDownClass(cls):
        cls.cm.close()  # checks the agents' exit codes and sanitizer output
        for n, p in cls.cm.c.procs.items():
            assert p.returncode == 0, f"provisioner of {n} exited {p.returncode}"
        assert "Sanitizer" not in cls.cm.c.all_logs(), cls.cm.c.all_logs()[-6000:]

    def nodes_of(self, ordinals):
        return {self.cm.vols[k]["node"] for k in ordinals}

    def test_1_provisioner(self):
        cm = self.cm
        scrapes = {n: e.scrape() for n, e in self.prov.items()}
        # The three claims of web were provisioned, each by the node the scheduler picked.
        created = sum(value(f, "ordinal_provision_total", storageclass="ordinal",
                            result="success", reason="created") or 0 for f in scrapes.values())
        self.assertEqual(created, 3)
        for n, f in scrapes.items():
            mine = sum(1 for v in cm.vols.values() if v["node"] == n)
            self.assertEqual(value(f, "ordinal_provision_latency_seconds_count",
                                   storageclass="ordinal") or 0, mine, n)
            cap = value(f, "ordinal_storage_capacity_bytes", storageclass="ordinal", node=n)
            free = value(f, "ordinal_storage_free_bytes", storageclass="ordinal", node=n)
            promised = value(f, "ordinal_storage_promised_bytes", storageclass="ordinal", node=n)
            self.assertGreater(cap, 0)
            self.assertLessEqual(free, cap)
            self.assertEqual(promised, mine * 1024 ** 3, n)  # 1Gi per claim of this node
            # API requests: the lists of the informers at least, and a POST per PV created
            self.assertGreater(value(f, "ordinal_kube_api_request_duration_seconds_count",
                                     verb="GET"), 0)
            if mine:
                self.assertGreaterEqual(value(f, "ordinal_kube_api_request_duration_seconds_count",
                                              verb="POST"), mine)
            self.assertGreater(value(f, "process_resident_memory_bytes"), 1024 * 1024)
            self.assertGreater(value(f, "process_open_fds"), 2)
            # CPU time comes in clock ticks: an idle provisioner may not have used one yet
            self.assertGreaterEqual(value(f, "process_cpu_seconds_total"), 0)
        for n, e in self.prov.items():
            self.assertEqual(e.get("/healthz")[0], 200)
            self.assertEqual(e.get("/readyz")[0], 200)

        # A class every node refuses: each provisioner counts the failure with its reason.
        cm.c.apply(storage_class("broken", binding="Immediate", params={"backend": "tape"}))
        cm.c.create_claim("broken-claim", "broken")

        def failed(e):
            return value(e.scrape(), "ordinal_provision_total", storageclass="broken",
                         result="failure", reason="invalid")
        for n, e in self.prov.items():
            self.assertGreaterEqual(wait_for(lambda: failed(e), 30, f"the failure on {n}"), 1)

    def test_2_backup_success_then_failure(self):
        cm = self.cm
        for k, v in cm.vols.items():
            write_volume(v["path"], seed=300 + k)
        t0 = self.__class__.run_started = time.time()
        cm.backup(*cm.run_args())
        t1 = time.time()
        for n, e in self.agent.items():
            f = e.scrape()
            for k, v in cm.vols.items():
                ls = dict(namespace="default", statefulset="web", ordinal=k, template="data")
                last = value(f, "ordinal_backup_last_success_timestamp_seconds", **ls)
                if v["node"] != n:
                    self.assertIsNone(last, f"{n} reports ordinal {k} of another node")
                    continue
                self.assertTrue(t0 <= last <= t1, (t0, last, t1))
                self.assertGreater(value(f, "ordinal_backup_read_bytes_total", **ls), 0)
                self.assertGreater(value(f, "ordinal_backup_stored_bytes_total", **ls), 0)
                self.assertIsNone(value(f, "ordinal_backup_failures_total", **ls))
            mine = sum(1 for v in cm.vols.values() if v["node"] == n)
            self.assertEqual(value(f, "ordinal_backup_duration_seconds_count", namespace="default",
                                   statefulset="web") or 0, mine)
            self.assertEqual(value(f, "ordinal_repository_up"), 1)
            self.assertEqual(e.get("/readyz")[0], 200)
            self.assertGreater(value(f, "ordinal_kube_api_request_duration_seconds_count",
                                     verb="PATCH"), 0)
        self.__class__.first_success = {
            n: e.scrape() for n, e in self.agent.items()}

        # A failed backup: a task for ordinal 1 that names ordinal 0's PV is refused.
        v0 = cm.vols[0]
        bid = cm.list_backups()[-1]["id"]
        t2 = time.time()
        cm.create_task("wrong-pv", "backup", bid, 1, v0["pv"], v0["node"])
        self.assertEqual(cm.wait_task_final("wrong-pv")["status"]["phase"], "Failed")
        f = self.agent[v0["node"]].scrape()
        ls = dict(namespace="default", statefulset="web", ordinal=1, template="data")
        self.assertEqual(value(f, "ordinal_backup_failures_total", reason="permission_denied",
                               **ls), 1)
        self.assertGreaterEqual(value(f, "ordinal_backup_last_failure_timestamp_seconds", **ls), t2)
        # the volume that did back up keeps its success; failures do not touch it
        ls0 = dict(ls, ordinal=0)
        self.assertEqual(value(f, "ordinal_backup_last_success_timestamp_seconds", **ls0),
                         value(self.first_success[v0["node"]],
                               "ordinal_backup_last_success_timestamp_seconds", **ls0))
        self.assertIsNone(value(f, "ordinal_backup_failures_total", **ls0))

    def test_3_restart_keeps_last_success(self):
        """A restarted agent reads the last successful backups back from the repository: the
        value is the manifest's finish time, no later than what the agent reported when the
        task ended, and not before the run began."""
        cm = self.cm
        node = cm.vols[2]["node"]
        before = self.first_success[node]
        self.assertEqual(cm.agents[node].terminate(), 0)
        p = cm.start_agent(node, *ADDRESS)
        e = self.agent[node] = Endpoint(p)
        wait_for(lambda: "last successful backups of" in p.log(), 30, "the catalog rebuild")
        f = e.scrape()
        for k, v in cm.vols.items():
            if v["node"] != node:
                continue
            ls = dict(namespace="default", statefulset="web", ordinal=k, template="data")
            old = value(before, "ordinal_backup_last_success_timestamp_seconds", **ls)
            new = value(f, "ordinal_backup_last_success_timestamp_seconds", **ls)
            self.assertIsNotNone(new, f"ordinal {k} lost its last success in the restart")
            self.assertLessEqual(new, old)
            self.assertGreaterEqual(new, self.run_started)
            # counters start again; failures and restores are not in the repository
            self.assertIsNone(value(f, "ordinal_backup_read_bytes_total", **ls))
        self.assertEqual(e.get("/readyz")[0], 200)

    def test_4_bad_requests(self):
        """Unknown paths, other methods, huge headers and slow clients are refused or wait,
        and a scrape in the middle of them is answered."""
        for e in (self.prov["node-a"], self.agent["node-b"]):
            self.assertEqual(e.get("/nope")[0], 404)
            self.assertEqual(e.get("/metrics/x")[0], 404)
            self.assertEqual(e.get("/metrics", method="POST")[0], 405)
            self.assertEqual(e.get("/metrics", method="DELETE")[0], 405)
            # slow clients: connections that send half a request and keep quiet
            slow = []
            for _ in range(8):
                s = socket.create_connection((e.host, e.port), timeout=30)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            # huge headers: refused (431) or the connection closed, nothing more
            try:
                status = e.get("/metrics", headers={"X-Big": "a" * (256 * 1024)})[0]
                self.assertIn(status, (400, 413, 431))
            except (ConnectionError, http.client.HTTPException, OSError):
                pass
            # a huge request line
            try:
                status = e.get("/" + "b" * (256 * 1024))[0]
                self.assertIn(status, (400, 404, 414, 431))
            except (ConnectionError, http.client.HTTPException, OSError):
                pass
            # while the slow ones hold their connections, scrapes and probes are answered
            e.scrape()
            self.assertEqual(e.get("/healthz")[0], 200)
            # a slow client that finally completes its request gets its answer
            slow[0].sendall(b"\r\n")
            self.assertTrue(slow[0].recv(64).startswith(b"HTTP/1.1 200"))
            for s in slow:
                s.close()
            self.assertTrue(e.proc.running())
            e.scrape()
        self.assertNotIn("Sanitizer", self.cm.c.all_logs() + self.cm.logs())


if __name__ == "__main__":
    unittest.main(verbosity=2)
