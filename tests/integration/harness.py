"""Shared helpers for the integration tests (Python standard library only).

    from harness import Emulator, Proc, bin_path, skip, temp_dir, wait_for

- source_dir(), bin_path(name): where the sources and the built programs are
  (ORDINAL_SOURCE_DIR / ORDINAL_BIN_DIR, which CTest sets; otherwise derived from this file).
- skip(reason): print the reason and exit 77, which CTest reports as "skipped".
- temp_dir(): a fresh directory, removed when the test process exits.
- wait_for(predicate, timeout, what): poll a condition until it returns a truthy value; fail
  with `what` at the deadline. Poll conditions; never sleep to synchronise.
- Emulator: the Kubernetes API emulator (tests/kube/emulator) on a free port, with its own
  HOME (so kubectl's discovery cache is fresh) and kubeconfig; .kubectl(...), .api(...),
  .watch(...), .set_faults(...), .stats(), .stop(). Use it as a context manager.
  Attributes: .url, .host, .port, .kubeconfig, .cert_kubeconfig (the admin authenticated by a
  client certificate), .token (admin), .ca_file, .home, .dir, and .env
  (os.environ plus HOME and KUBECONFIG, for programs that talk to it). tests/kube/README.md
  documents the emulator (faults, control endpoints, RBAC tokens, what it emulates).
- Proc: a program under test with stdout/stderr in log files; .kill9(), .terminate(), .log().

Everything started here is stopped at interpreter exit, even when a test fails.
"""

import atexit
import base64
import http.client
import json
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

_CLEANUPS = []


def _cleanup_all():
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception:  # cleanup must go on whatever failed
            pass


atexit.register(_cleanup_all)


def source_dir():
    """The project's source directory."""
    env = os.environ.get("ORDINAL_SOURCE_DIR")
    if env:
        return env
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bin_path(name):
    """Path of a built program, e.g. bin_path('ordinal-provisioner')."""
    bindir = os.environ.get("ORDINAL_BIN_DIR") or os.path.join(source_dir(), "build", "bin")
    return os.path.join(bindir, name)


def skip(reason):
    """Skip the whole test program (CTest SKIP_RETURN_CODE 77)."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(77)


def temp_dir(prefix="ordinal-test-"):
    """A new temporary directory, removed at exit."""
    path = tempfile.mkdtemp(prefix=prefix)
    _CLEANUPS.append(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def wait_for(predicate, timeout=10.0, what="condition", interval=0.05):
    """Poll predicate() until it returns something truthy; return that value.

    Raises AssertionError naming `what` (and the last exception, if the predicate raised)
    when the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as exc:  # the condition may not be reachable yet
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


class Proc:
    """A program under test. stdout/stderr go to files in log_dir (or a temp dir)."""

    def __init__(self, args, env=None, cwd=None, name=None, log_dir=None):
        self.args = [str(a) for a in args]
        self.name = name or os.path.basename(self.args[0])
        log_dir = log_dir or temp_dir(f"{self.name}-")
        self.stdout_path = os.path.join(log_dir, f"{self.name}.stdout")
        self.stderr_path = os.path.join(log_dir, f"{self.name}.stderr")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(self.args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=self._out, stderr=self._err, start_new_session=True)
        _CLEANUPS.append(self._reap)

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    def running(self):
        return self.popen.poll() is None

    def kill9(self):
        """SIGKILL, as a crash would; returns the exit status."""
        if self.running():
            self.popen.send_signal(signal.SIGKILL)
        return self.popen.wait(timeout=10)

    def terminate(self, timeout=10.0):
        """SIGTERM and wait for exit (SIGKILL after timeout); returns the exit status."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=10)

    def wait(self, timeout=None):
        return self.popen.wait(timeout=timeout)

    def log(self):
        """stdout and stderr so far, for assertions and failure messages."""
        self._out.flush()
        self._err.flush()
        with open(self.stdout_path, errors="replace") as f:
            out = f.read()
        with open(self.stderr_path, errors="replace") as f:
            err = f.read()
        return out + err

    def _reap(self):
        if self.running():
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._out.close()
        self._err.close()


class Emulator:
    """The API server emulator on a free loopback port.

    nodes: node names (or 'name=hostname'); faults: a --faults spec string;
    controllers: start tests/kube/controllers (the emulated StatefulSet/PV controllers, ...).
    """

    def __init__(self, nodes=("node-a", "node-b"), faults=None, controllers=False, extra_args=()):
        self.dir = temp_dir("kubeemu-test-")
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        # The same admin, authenticated by a client certificate instead of the token.
        self.cert_kubeconfig = os.path.join(self.dir, "kubeconfig-client-cert")
        args = [sys.executable, os.path.join(source_dir(), "tests", "kube", "emulator"),
                "--listen", "127.0.0.1:0", "--nodes", ",".join(nodes),
                "--kubeconfig-out", self.kubeconfig,
                "--client-cert-kubeconfig-out", self.cert_kubeconfig, *extra_args]
        if faults:
            args += ["--faults", faults]
        if not controllers:
            args.append("--no-controllers")
        self.stderr_path = os.path.join(self.dir, "emulator.stderr")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._err,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        _CLEANUPS.append(self._reap)
        self.url = self._await_ready(30.0)
        self.host, self.port = re.match(r"https://([^:]+):(\d+)", self.url).groups()
        self.port = int(self.port)
        with open(self.kubeconfig) as f:
            text = f.read()
        self.token = re.search(r"token: (\S+)", text).group(1)
        ca = base64.b64decode(re.search(r"certificate-authority-data: (\S+)", text).group(1))
        self.ca_file = os.path.join(self.dir, "ca.crt")
        with open(self.ca_file, "wb") as f:
            f.write(ca)
        self.ssl_context = ssl.create_default_context(cafile=self.ca_file)

    def _await_ready(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.popen.stdout], [], [], 0.2)
            if r:
                line = self.popen.stdout.readline()
                if line.startswith(b"ready"):
                    return line.decode().split()[1]
                if not line:
                    break
            if self.popen.poll() is not None:
                break
        raise RuntimeError(f"emulator did not become ready: {line!r}\n{self.stderr()}")

    def stderr(self):
        self._err.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    @property
    def env(self):
        """Environment for programs that talk to the emulator (HOME, KUBECONFIG)."""
        env = dict(os.environ)
        env.update({"HOME": self.home, "KUBECONFIG": self.kubeconfig})
        return env

    def kubectl(self, *args, check=True, input=None, timeout=60):
        """Run kubectl against the emulator; returns CompletedProcess with text output."""
        cp = subprocess.run(["kubectl", *args], env=self.env, input=input, text=True,
                            capture_output=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}")
        return cp

    def _connection(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl_context, timeout=timeout)

    def api(self, method, path, body=None, content_type="application/json", headers=None, token=None):
        """One request; returns (status, parsed JSON body, or text if not JSON)."""
        hdrs = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/json"}
        hdrs.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs["Content-Type"] = content_type
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            self.last_headers = dict(resp.getheaders())
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def watch(self, path, timeout=10.0):
        """Open a watch; returns (response, iterator of events). Close the response when done.

        The iterator yields parsed events and ends when the server ends the stream;
        a connection cut abruptly raises http.client.IncompleteRead or an OSError."""
        conn = self._connection(timeout=timeout)
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        resp = conn.getresponse()
        response_close = resp.close

        def close():  # closing the response also closes its connection
            response_close()
            conn.close()

        resp.close = close

        def events():
            while True:
                line = resp.readline()
                if not line:
                    return
                yield json.loads(line)

        return resp, events()

    def set_faults(self, reset=False, **faults):
        status, body = self.api("POST", "/emulator/v1/faults", dict(faults, reset=reset))
        assert status == 200, body
        return body

    def stats(self):
        return self.api("GET", "/emulator/v1/stats")[1]

    def stop(self):
        """SIGTERM; returns the emulator's exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=10)

    def _reap(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.popen.stdout.close()
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
