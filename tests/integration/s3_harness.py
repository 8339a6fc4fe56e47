"""S3 test peers: s3rver (npm, tests/s3/node_modules) behind tests/s3/sigv4_proxy.py.

    from s3_harness import S3Peer, require_s3rver

- require_s3rver(): the path of s3rver's CLI, or skip(77) with the reason (no node, or
  tests/s3/node_modules missing: scripts/setup.sh installs it from tests/s3/package.json).
- S3Peer(tls=False, faults=None): s3rver on a free loopback port with a fresh data directory
  and the bucket created (--configure-bucket), and the SigV4-verifying proxy in front of it
  (HTTPS with a test CA made by the openssl CLI when tls=True). Attributes: .endpoint (the
  proxy's URL), .bucket, .access_key, .secret_key, .ca_file (tls), .env(**extra) (os.environ
  plus the AWS_* variables), .args() (the --s3-* flags), .url(prefix) ("s3://bucket/prefix").
  Virtual-hosted addressing: .vhost_endpoint ("http(s)://s3.ordinal.test:PORT", a name
  that resolves nowhere: RFC 2606 .test), .vhost_resolve() (the ORDINAL_S3_RESOLVE value
  pinning "<bucket>.s3.ordinal.test:PORT" to 127.0.0.1, a test-only knob of the client),
  .args(vhost=True) (no --s3-path-style); the test CA's certificate names both.
  Methods: .set_faults(rules), .stats(), .reset_stats(), .put_raw(key, data),
  .get_raw(key), .keys(prefix) (direct to s3rver, bypassing the proxy: test set-up and
  inspection only). Stopped at interpreter exit.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET

from harness import Proc, _CLEANUPS, skip, source_dir, temp_dir, wait_for

ACCESS_KEY = "AKIAORDINALTEST00001"
SECRET_KEY = "ordinal/Test+Secret/0123456789abcdefghijklmn"


def require_s3rver():
    cli = os.path.join(source_dir(), "tests", "s3", "node_modules", "s3rver", "bin", "s3rver.js")
    if not shutil.which("node"):
        skip("node is not installed (scripts/setup.sh installs nodejs and s3rver)")
    if not os.path.exists(cli):
        skip("s3rver is not installed in tests/s3/node_modules (run scripts/setup.sh, which runs "
             "npm install in tests/s3)")
    try:
        import botocore  # noqa: F401
    except ImportError:
        skip("python3-botocore is not installed (the SigV4-verifying proxy needs it)")
    return cli


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


VHOST_DOMAIN = "s3.ordinal.test"


def make_test_ca(d, names=()):
    """A CA and a server certificate for 127.0.0.1/localhost and names. Returns (ca, cert, key)."""
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, cert = os.path.join(d, "srv.key"), os.path.join(d, "srv.csr"), os.path.join(d, "srv.pem")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost%s\nbasicConstraints=CA:FALSE\n"
                % "".join(",DNS:" + n for n in names))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=ordinal test S3 CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2", "-extfile", ext)
    return ca, cert, key


class S3Peer:
    def __init__(self, tls=False, faults=None, bucket="ordinal-test"):
        cli = require_s3rver()
        self.bucket = bucket
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        self.dir = temp_dir("s3peer-")
        data = os.path.join(self.dir, "data")
        os.mkdir(data)
        self.s3_port = free_port()
        # s3rver ciphers its continuation tokens with DES, which OpenSSL 3 only has in its
        # legacy provider: without it every listing past 1,000 keys fails with a 500.
        self.s3rver = Proc(["node", "--openssl-legacy-provider", cli, "-d", data, "-a", "127.0.0.1", "-p", str(self.s3_port),
                            "--silent", "--configure-bucket", bucket],
                           name="s3rver", log_dir=self.dir)
        wait_for(self._s3rver_up, 30, "s3rver to listen")
        self.ca_file = None
        cmd = ["/usr/bin/python3", os.path.join(source_dir(), "tests", "s3", "sigv4_proxy.py"),
               "--upstream-port", str(self.s3_port), "--access-key", self.access_key,
               "--secret-key", self.secret_key, "--faults", json.dumps(faults or []),
               "--port-file", os.path.join(self.dir, "proxy.port"), "--host-name", VHOST_DOMAIN]
        if tls:
            self.ca_file, cert, key = make_test_ca(self.dir, (VHOST_DOMAIN,
                                                              bucket + "." + VHOST_DOMAIN))
            cmd += ["--tls-cert", cert, "--tls-key", key]
        self.proxy = Proc(cmd, name="sigv4-proxy", log_dir=self.dir)
        port_file = os.path.join(self.dir, "proxy.port")
        wait_for(lambda: os.path.exists(port_file), 20, "the SigV4 proxy to listen")
        with open(port_file) as f:
            self.port = int(f.read())
        self.tls = tls
        self.endpoint = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.vhost_endpoint = "%s://%s:%d" % ("https" if tls else "http", VHOST_DOMAIN, self.port)

    def vhost_resolve(self):
        return "%s.%s:%d:127.0.0.1" % (self.bucket, VHOST_DOMAIN, self.port)

    def _s3rver_up(self):
        if not self.s3rver.running():
            raise AssertionError("s3rver exited: " + self.s3rver.log())
        with socket.create_connection(("127.0.0.1", self.s3_port), timeout=1):
            return True

    def url(self, prefix="repo"):
        return "s3://%s/%s" % (self.bucket, prefix) if prefix else "s3://%s" % self.bucket

    def env(self, **extra):
        env = dict(os.environ)
        for k in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_CA_BUNDLE"):
            env.pop(k, None)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        env["ORDINAL_S3_RETRY_BASE_MS"] = "50"
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def args(self, vhost=False):
        if vhost:
            a = ["--s3-endpoint", self.vhost_endpoint]
        else:
            a = ["--s3-endpoint", self.endpoint, "--s3-path-style"]
        if self.ca_file:
            a += ["--s3-ca-bundle", self.ca_file]
        return a

    # --- control of the proxy ---
    def _control(self, method, path, body=None):
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=self.ca_file)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=json.dumps(body).encode() if body is not None else None)
            resp = conn.getresponse()
            return json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def set_faults(self, rules):
        self._control("POST", "/__proxy/faults", rules)

    def stats(self):
        return self._control("GET", "/__proxy/stats")

    def reset_stats(self):
        self._control("POST", "/__proxy/reset", {})

    # --- direct access to s3rver (set-up and inspection only) ---
    def _direct(self, method, key="", query="", body=None):
        path = "/%s/%s" % (self.bucket, urllib.parse.quote(key))
        if query:
            path += "?" + query
        for attempt in (1, 2):
            conn = getattr(self, "_conn", None)
            if conn is None:
                conn = self._conn = http.client.HTTPConnection("127.0.0.1", self.s3_port, timeout=60)
            try:
                conn.request(method, path, body=body)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise

    def put_raw(self, key, data):
        status, _ = self._direct("PUT", key, body=data)
        assert status == 200, status

    def get_raw(self, key):
        status, data = self._direct("GET", key)
        return data if status == 200 else None

    def keys(self, prefix=""):
        out, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            status, data = self._direct("GET", "", urllib.parse.urlencode(q))
            assert status == 200, (status, data)
            root = ET.fromstring(data)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            out += [c.find(ns + "Key").text for c in root.findall(ns + "Contents")]
            if root.findtext(ns + "IsTruncated") != "true":
                return out
            token = root.findtext(ns + "NextContinuationToken")
