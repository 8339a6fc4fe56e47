#!/usr/bin/python3
"""A SigV4-verifying S3 proxy for the tests, in front of s3rver (which does not check V4
signatures).

For every request it recomputes the AWS Signature Version 4 with botocore (Debian's
python3-botocore) from the request as received: the method, the path, the query string
decoded and re-encoded the way S3 canonicalises it (sorted, fully percent-encoded, "uploads"
as "uploads="), and the headers named in SignedHeaders. A signature that differs, an unknown
access key, a payload whose SHA-256 differs from x-amz-content-sha256, a Content-MD5 that
differs, or a body without a Content-Length is answered like S3 would (403
SignatureDoesNotMatch, 403 InvalidAccessKeyId, 400 XAmzContentSHA256Mismatch, 400 BadDigest,
411 MissingContentLength), and never forwarded. Good requests go to s3rver with the
Authorization header removed (s3rver serves anonymous requests).

Both addressings are accepted. Path style: Host is anything, the path is /<bucket>/<key>.
Virtual-hosted: Host is <bucket>.<name>[:port] where <name> is one of the proxy's own names
(127.0.0.1, localhost and each --host-name) and the port, when given, is the one it listens
on; the path is /<key>. The signature is checked against what the client signed (that Host
and the bucket-less path), and the request goes to s3rver path-style (/<bucket>/<key>).
GET /__proxy/stats counts both ("vhost", "path_style").

Fault injection, given at start (--faults JSON) or at run time (POST /__proxy/faults with a
JSON list; GET /__proxy/stats returns counters): each rule is
  {"action": "drop"|"lose"|"error200"|"500"|"503", "match": "part"|"put"|"get"|"complete"|"any",
   "nth": N, "count": C, "retry_after": S}
and fires on the Nth matching request from when it was installed, C times in a row (default 1).
"drop" reads half of the body and closes the connection without an answer; "lose" forwards
the request and then closes the connection without an answer; "503" answers SlowDown with
Retry-After: S.

  sigv4_proxy.py --listen-port P --upstream-port U --access-key AK --secret-key SK
                 [--tls-cert F --tls-key F] [--faults JSON] [--port-file F]
                 [--host-name NAME]...
"""

import argparse
import hashlib
import base64
import http.client
import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "authorization", "host",
              "x-amz-security-token"}

STATE = {
    "lock": threading.Lock(),
    "rules": [],
    "stats": {"requests": 0, "forwarded": 0, "signature_mismatch": 0, "bad_key": 0,
              "payload_mismatch": 0, "bad_digest": 0, "faults": 0, "parts": 0,
              "part_sizes": [], "single_puts": 0, "completes": 0, "aborts": 0,
              "lists": 0, "multi_deletes": 0, "deletes": 0, "gets": 0, "chunked": 0,
              "vhost": 0, "path_style": 0},
}


def classify(method, query):
    q = dict(query)
    if method == "PUT" and "partNumber" in q:
        return "part"
    if method == "POST" and "uploadId" in q:
        return "complete"
    if method == "POST" and "uploads" in q:
        return "create"
    if method == "DELETE" and "uploadId" in q:
        return "abort"
    if method == "POST" and "delete" in q:
        return "multi_delete"
    if method == "GET" and q.get("list-type") == "2":
        return "list"
    if method == "PUT":
        return "put"
    if method == "GET":
        return "get"
    if method == "DELETE":
        return "delete"
    return "other"


def rule_matches(rule, kind):
    m = rule.get("match", "any")
    return m == "any" or m == kind or (m == "put" and kind in ("put", "part"))


def pick_fault(kind):
    """Every matching rule counts the request; the first one due fires."""
    chosen = None
    with STATE["lock"]:
        for rule in STATE["rules"]:
            if not rule_matches(rule, kind):
                continue
            rule["seen"] = rule.get("seen", 0) + 1
            if (chosen is None and rule["seen"] >= rule.get("nth", 1)
                    and rule.get("fired", 0) < rule.get("count", 1)):
                rule["fired"] = rule.get("fired", 0) + 1
                STATE["stats"]["faults"] += 1
                chosen = rule
    return chosen


def error_xml(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>sigv4-proxy</RequestId></Error>' % (code, message)).encode()


def vhost_bucket(host, names, port):
    """The bucket of a virtual-hosted Host header ("<bucket>.<name>[:port]"), else None."""
    name, sep, p = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not sep or not p.isdigit():
        name, p = host, ""
    if p and int(p) != port:
        return None
    name = name.lower()
    for own in names:
        if name.endswith("." + own) and len(name) > len(own) + 1:
            return name[:-len(own) - 1]
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sigv4-proxy"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=None, ctype="application/xml", length=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        # A HEAD answer announces the length of the body it does not send.
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def s3_error(self, status, code, message, headers=None):
        self.reply(status, error_xml(code, message), headers)

    def control(self, split, body):
        if split.path == "/__proxy/stats":
            with STATE["lock"]:
                data = json.dumps(STATE["stats"]).encode()
            return self.reply(200, data, ctype="application/json")
        if split.path == "/__proxy/faults" and self.command == "POST":
            rules = json.loads(body or b"[]")
            with STATE["lock"]:
                STATE["rules"] = rules
            return self.reply(200, b"{}", ctype="application/json")
        if split.path == "/__proxy/reset" and self.command == "POST":
            with STATE["lock"]:
                for k, v in STATE["stats"].items():
                    STATE["stats"][k] = [] if isinstance(v, list) else 0
            return self.reply(200, b"{}", ctype="application/json")
        return self.reply(404, b"{}", ctype="application/json")

    def verify(self, split, query, body):
        """Returns None when the request is good, else (status, code, message). split.path is
        the path the client sent and signed: bucket-less in virtual-hosted addressing, where
        the bucket is in the (signed) Host header."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return (403, "AccessDenied", "Anonymous requests are refused by the test proxy")
        parts = {}
        for item in auth[len("AWS4-HMAC-SHA256 "):].split(","):
            k, _, v = item.strip().partition("=")
            parts[k] = v
        try:
            access_key, date, region, service, term = parts["Credential"].split("/")
            signed = parts["SignedHeaders"].split(";")
            given = parts["Signature"]
        except (KeyError, ValueError):
            return (400, "AuthorizationHeaderMalformed", "The authorization header is malformed")
        if access_key != self.server.access_key:
            with STATE["lock"]:
                STATE["stats"]["bad_key"] += 1
            return (403, "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.")
        needs = ["host", "x-amz-content-sha256", "x-amz-date"]
        if self.headers.get("x-amz-security-token") is not None:
            needs.append("x-amz-security-token")
        for need in needs:
            if need not in signed:
                return (403, "SignatureDoesNotMatch", "%s is not signed" % need)
        payload = self.headers.get("x-amz-content-sha256", "")
        if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
            with STATE["lock"]:
                STATE["stats"]["payload_mismatch"] += 1
            return (400, "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.")
        md5 = self.headers.get("Content-MD5")
        if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
            with STATE["lock"]:
                STATE["stats"]["bad_digest"] += 1
            return (400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        headers = {}
        for name in signed:
            value = self.headers.get(name)
            if value is None:
                return (403, "SignatureDoesNotMatch", "signed header %s is missing" % name)
            headers[name] = value
        # S3 canonicalises the query it received: decode, re-encode fully, sort. The URL is the
        # one the client addressed: its Host (with the bucket, virtual-hosted) and its path.
        request = AWSRequest(method=self.command,
                             url="http://%s%s" % (headers["host"], split.path),
                             headers=headers, data=body)
        request.params = dict(query)
        request.context["timestamp"] = headers["x-amz-date"]
        creds = Credentials(access_key, self.server.secret_key,
                            self.headers.get("x-amz-security-token"))
        signer = S3SigV4Auth(creds, service, region)
        canonical = signer.canonical_request(request)
        sts = signer.string_to_sign(request, canonical)
        expected = signer.signature(sts, request)
        if expected != given:
            with STATE["lock"]:
                STATE["stats"]["signature_mismatch"] += 1
            return (403, "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.")
        return None

    def handle_any(self):
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            with STATE["lock"]:
                STATE["stats"]["chunked"] += 1
            self.close_connection = True
            return self.s3_error(411, "MissingContentLength",
                                 "You must provide the Content-Length HTTP header.")
        length = int(self.headers.get("Content-Length", "0") or 0)
        kind = classify(self.command, query)
        bucket = vhost_bucket(self.headers.get("Host", ""), self.server.names,
                              self.server.server_address[1])
        if bucket is None and split.path.startswith("/__proxy/"):
            return self.control(split, self.rfile.read(length) if length else b"")
        # s3rver gets path style either way.
        self.upstream_path = self.path
        if bucket is not None:
            self.upstream_path = "/" + bucket + (split.path if split.path != "/" else "")
            if split.query:
                self.upstream_path += "?" + split.query
        with STATE["lock"]:
            STATE["stats"]["requests"] += 1
            STATE["stats"]["vhost" if bucket is not None else "path_style"] += 1
        fault = pick_fault(kind)
        if fault and fault["action"] == "drop":
            # Read part of the body, then drop the connection without an answer.
            self.rfile.read(length // 2)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body = self.rfile.read(length) if length else b""
        if fault and fault["action"] == "error200":
            # S3 can answer CompleteMultipartUpload with 200 and an <Error> body.
            return self.reply(200, error_xml("InternalError", "We encountered an internal "
                                             "error. Please try again."))
        if fault and fault["action"] == "500":
            return self.s3_error(500, "InternalError",
                                 "We encountered an internal error. Please try again.")
        if fault and fault["action"] == "503":
            return self.s3_error(503, "SlowDown", "Please reduce your request rate.",
                                 {"Retry-After": str(fault.get("retry_after", 1))})
        bad = self.verify(split, query, body)
        if bad:
            return self.s3_error(*bad)
        with STATE["lock"]:
            st = STATE["stats"]
            st["forwarded"] += 1
            if kind == "part":
                st["parts"] += 1
                st["part_sizes"].append(len(body))
            elif kind == "put":
                st["single_puts"] += 1
            elif kind in ("complete", "multi_delete", "delete", "get"):
                st[kind + "s"] += 1
            elif kind == "abort":
                st["aborts"] += 1
            elif kind == "list":
                st["lists"] += 1
        if fault and fault["action"] == "lose":
            # Let the request take effect, then lose the answer: the client must retry and
            # cope with a retry that finds the work already done.
            self.forward(body, reply=False)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.forward(body)

    def forward(self, body, reply=True):
        conn = getattr(self, "_upstream", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
            self._upstream = conn
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = "127.0.0.1:%d" % self.server.upstream_port
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.upstream_path, body=body if body or self.command in
                         ("PUT", "POST") else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._upstream = None
            conn.close()
            return self.s3_error(502, "InternalError", "upstream failed") if reply else None
        if not reply:
            return
        out = {k: v for k, v in resp.getheaders()
               if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "content-type")}
        self.reply(resp.status, data, out, resp.getheader("Content-Type", "application/xml"),
                   resp.getheader("Content-Length") if self.command == "HEAD" else None)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--faults", default="[]")
    ap.add_argument("--port-file")
    ap.add_argument("--host-name", action="append", default=[],
                    help="a name of this endpoint, for virtual-hosted requests (<bucket>.NAME)")
    args = ap.parse_args()
    STATE["rules"] = json.loads(args.faults)
    srv = Server(("127.0.0.1", args.listen_port), Handler)
    srv.upstream_port = args.upstream_port
    srv.access_key = args.access_key
    srv.secret_key = args.secret_key
    srv.names = ["127.0.0.1", "localhost"] + [n.lower() for n in args.host_name]
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
