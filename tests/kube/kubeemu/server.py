"""HTTPS front end: authentication, fault injection, routing, the REST verbs, watch streams.

HTTP/1.1 with keep-alive (ThreadingHTTPServer, one thread per connection; the TLS handshake
happens in that thread, so a client that never finishes it blocks nobody). Watches stream
chunked JSON lines and end cleanly at timeoutSeconds, or abruptly when the watch_drop_seconds
fault says so.
"""

import base64
import http.server
import json
import select
import socket
import ssl
import threading
import time
import urllib.parse

from . import auth, discovery, errors, selectors, tables
from .jsonutil import clone, dumps

# The watch cache's bookmark cadence (cacher.go defaultBookmarkFrequency, one minute), changed
# with the emulator's --bookmark-interval for tests that need faster ones.
BOOKMARK_SECONDS = 60.0
WATCH_BATCH = 256       # events at most per write of a watch stream


class EmulatorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, ssl_context, store, faults, token, options):
        self.ssl_context = ssl_context
        self.store = store
        self.faults = faults
        self.authenticator = auth.Authenticator(token)
        self.options = options
        self.stopping = threading.Event()
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        try:
            # Headers and body leave in separate writes: without NODELAY, Nagle plus the
            # client's delayed ACK adds 40 ms to every keep-alive request.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(30)
            conn = self.ssl_context.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that does not trust our CA
        try:
            Handler(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # clients that vanish mid-request are normal in tests


class Headers:
    """Request headers: case-insensitive get/get_all over a dict, instead of http.client's
    email.message.Message, which parses with the email package and scans every header on each
    get() (about 12 lookups per request). Measured: a GET of a claim on a keep-alive connection
    cost the emulator 140 us of CPU with it, 110 us with this."""

    def __init__(self, pairs):
        self._pairs = pairs
        self._map = {}
        for name, value in pairs:
            self._map.setdefault(name.lower(), []).append(value)

    def get(self, name, default=None):
        values = self._map.get(name.lower())
        return values[0] if values else default

    def get_all(self, name, default=None):
        return list(self._map.get(name.lower(), ())) or default

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name):
        return name.lower() in self._map

    def items(self):
        return list(self._pairs)

    def keys(self):
        return [n for n, _ in self._pairs]

    def __str__(self):
        return "".join(f"{n}: {v}\r\n" for n, v in self._pairs) + "\r\n"


_MAX_HEADERS = 100        # as http.client
_MAX_HEADER_LINE = 65536  # as http.client


def _verb_for(method, is_watch, name, collection):
    if is_watch:
        return "watch"
    if method == "GET":
        return "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}.get(method, "other")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeemu"

    def log_message(self, fmt, *args):
        if self.server.options.get("verbose"):
            super().log_message(fmt, *args)

    def parse_request(self):
        """The usual request line "METHOD TARGET HTTP/1.x" and its headers, parsed into
        Headers; anything else goes to the standard library's parser (which has not read
        past the request line either)."""
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = " ".join(words)
        self.command, self.path, self.request_version = words
        self.close_connection = words[2] != "HTTP/1.1"
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        pairs = []
        while True:
            line = self.rfile.readline(_MAX_HEADER_LINE + 1)
            if len(line) > _MAX_HEADER_LINE:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if len(pairs) >= _MAX_HEADERS:
                self.send_error(431, "Too many headers")
                return False
            text = line.decode("iso-8859-1")
            if text[0] in " \t" and pairs:  # obsolete line folding
                pairs[-1] = (pairs[-1][0], pairs[-1][1] + " " + text.strip())
                continue
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip():
                self.send_error(400, "Bad request header")
                return False
            pairs.append((name, value.strip(" \t\r\n")))
        self.headers = Headers(pairs)
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" and words[2] == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    # ---- plumbing ----

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, code, body, headers=None):
        data = dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(id(self)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for w in self._warnings:
            self.send_header("Warning", '299 - ' + json.dumps(w))
        # end_headers() without its flush: headers and body leave in one write, so one system
        # call and one wait to take the GIL back instead of two per answer.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()
        self._code = code

    def _send_error(self, exc):
        self._send_json(exc.code, exc.status, exc.headers)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self):
        self._warnings = []
        self._code = 0
        self._verb = "other"
        url = urllib.parse.urlsplit(self.path)
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        try:
            # Always drain the body, even of a GET, or the next request on this keep-alive
            # connection would start in the middle of it.
            body = self._read_body()
            peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            user = self.server.authenticator.authenticate(self.headers.get("Authorization", ""),
                                                          self.server.store, peer)
            if user is None:
                raise errors.unauthorized()
            self.user = auth.impersonate(user, self.headers)
            if path.startswith("/emulator/"):
                if not self.user.superuser:
                    raise auth.forbidden(self.user, {"verb": self.command.lower(), "path": path})
                return self._emulator(path, body)
            if self._plain(path):
                return
            self._resource(path, body)
        except errors.ApiError as exc:
            self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer like a server would
            import traceback
            traceback.print_exc()
            try:
                self._send_error(errors.internal_error(str(exc)))
            except OSError:
                self.close_connection = True
        finally:
            self.server.faults.count(self._verb, self._code or 0)

    # ---- discovery, openapi, health ----

    def _plain(self, path):
        reg = self.server.store.registry
        self._verb = "discovery"
        parts = path.strip("/").split("/")
        if path == "/version":
            self._send_json(200, discovery.VERSION)
        elif path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
            self._code = 200
        elif path == "/api":
            self._send_json(200, discovery.api_versions(self.server.options["address"]))
        elif path == "/api/v1":
            self._send_json(200, discovery.resource_list(reg, "", "v1"))
        elif path == "/apis":
            self._send_json(200, discovery.api_group_list(reg))
        elif len(parts) == 2 and parts[0] == "apis":
            g = discovery.api_group(reg, parts[1])
            if g is None:
                raise errors.NotFound("the server could not find the requested resource")
            self._send_json(200, g)
        elif len(parts) == 3 and parts[0] == "apis":
            rl = discovery.resource_list(reg, parts[1], parts[2])
            if rl is None:
                raise errors.NotFound("the server could not find the requested resource")
            self._send_json(200, rl)
        elif path == "/openapi/v3":
            self._send_json(200, discovery.openapi_index(reg))
        elif path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/"):].split("/")
            if rest[0] == "api" and len(rest) == 2:
                doc = discovery.openapi_document(reg, "", rest[1])
            elif rest[0] == "apis" and len(rest) == 3:
                doc = discovery.openapi_document(reg, rest[1], rest[2])
            else:
                doc = None
            if doc is None:
                raise errors.NotFound("the server could not find the requested resource")
            self._send_json(200, doc, {"Cache-Control": "public, immutable"})
        elif path.startswith("/openapi/"):
            raise errors.NotFound("the server could not find the requested resource")
        else:
            self._verb = "other"
            return False
        return True

    # ---- /emulator/v1 control endpoints ----

    def _emulator(self, path, body):
        faults, store = self.server.faults, self.server.store
        if path == "/emulator/v1/faults":
            if self.command == "POST":
                try:
                    values = json.loads(body or b"{}")
                    settings = faults.update(values, reset=bool(values.get("reset")))
                except (ValueError, TypeError) as exc:
                    raise errors.BadRequest(str(exc))
                return self._send_json(200, settings)
            return self._send_json(200, faults.snapshot()["faults"])
        if path == "/emulator/v1/stats":
            return self._send_json(200, faults.snapshot())
        if path == "/emulator/v1/compact" and self.command == "POST":
            return self._send_json(200, {"resourceVersion": str(store.compact())})
        raise errors.NotFound("the server could not find the requested resource")

    # ---- resources ----

    def _route(self, path):
        """(rtype, namespace, name, subresource) for an API path, or raise NotFound."""
        reg = self.server.store.registry
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.NotFound("the server could not find the requested resource")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            t = reg.find(group, version, rest[2])
            if t is not None and t.namespaced:
                namespace, rest = rest[1], rest[2:]
        t = reg.find(group, version, rest[0])
        if t is None or len(rest) > 3:
            raise errors.NotFound("the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and not ((sub == "status" and t.status) or (sub == "scale" and t.scale)
                        or (sub == "binding" and t.kind == "Pod")
                        or (sub == "token" and t.kind == "ServiceAccount")):
            raise errors.NotFound("the server could not find the requested resource")
        if t.namespaced and name and namespace is None:
            raise errors.NotFound("the server could not find the requested resource")
        return t, namespace, name, sub

    def _faults(self, is_watch):
        faults = self.server.faults
        latency = faults.get("latency_ms", 0)
        if latency:
            time.sleep(latency / 1000.0)
        if is_watch:
            return
        if faults.roll("throttle_rate"):
            raise errors.too_many_requests(int(faults.get("retry_after", 1)))
        if faults.roll("error_rate"):
            raise errors.internal_error("injected fault (error_rate)")

    def _resource(self, path, body):
        store = self.server.store
        t, namespace, name, sub = self._route(path)
        is_watch = self.command == "GET" and self.query.get("watch") in ("true", "1") and not name
        self._verb = _verb_for(self.command, is_watch, name, not name)
        attrs = {"verb": self._verb, "group": t.group, "resource": t.plural, "subresource": sub,
                 "namespace": namespace, "name": name}
        # Everyone may ask what they may do (the real system:basic-user role).
        allowed = t.kind == "SelfSubjectAccessReview" or auth.authorize(store, self.user, attrs)[0]
        if not allowed:
            raise auth.forbidden(self.user, attrs)
        self._faults(is_watch)
        if t.virtual:
            if self.command != "POST":
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return self._review(t, self._decode(body))
        if self.command == "POST" and sub == "token":
            return self._token_request(t, namespace, name, self._decode(body))
        dry_run = self.query.get("dryRun") == "All"
        if "dryRun" in self.query and self.query["dryRun"] not in ("All", ""):
            raise errors.BadRequest(f'Invalid dry run value: {self.query["dryRun"]}')
        if self.command == "GET":
            if is_watch:
                return self._watch(t, namespace)
            if name is None:
                return self._list(t, namespace)
            obj = store.get(t, namespace, name)
            if sub == "scale":
                return self._send_json(200, _to_scale(t, obj))
            return self._send_object(200, t, obj)
        if self.command == "POST" and sub == "binding":
            return self._bind(t, namespace, name, self._decode(body), dry_run)
        if self.command == "POST":
            if name is not None:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            obj = self._decode(body)
            store.check_body(t, obj, body, self._field_validation(), self._warnings)
            created = store.create(t, namespace, obj, dry_run=dry_run)
            self._name_warning(t, created)
            return self._send_object(201, t, created)
        if name is None and self.command != "DELETE":
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        if self.command == "PUT":
            obj = self._decode(body)
            if sub == "scale":
                return self._send_json(200, self._scale_write(t, namespace, name, obj, None, dry_run))
            store.check_body(t, obj, body, self._field_validation(), self._warnings)
            return self._send_object(200, t, store.update(t, namespace, name, obj, sub, dry_run))
        if self.command == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = {"application/merge-patch+json": "merge",
                     "application/strategic-merge-patch+json": "strategic",
                     "application/json-patch+json": "json"}.get(ctype)
            if ptype is None:
                raise errors.UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json")
            patch = self._decode(body)
            if sub == "scale":
                return self._send_json(200, self._scale_write(t, namespace, name, patch, ptype, dry_run))
            if isinstance(patch, dict) and ptype != "json":
                probe = clone(patch)
                store.check_body(t, probe, body if ptype == "merge" else None,
                                 self._field_validation(), self._warnings)
            return self._send_object(200, t, store.patch(t, namespace, name, ptype, patch, sub, dry_run))
        if self.command == "DELETE":
            opts = self._decode(body) if body.strip() else {}
            if not isinstance(opts, dict):
                raise errors.BadRequest("DeleteOptions must be an object")
            dry_run = dry_run or opts.get("dryRun") == ["All"]
            if name is None:
                return self._delete_collection(t, namespace, dry_run)
            obj = store.delete(t, namespace, name, dry_run=dry_run,
                               preconditions=opts.get("preconditions"),
                               propagation=opts.get("propagationPolicy") or self.query.get("propagationPolicy"))
            if obj["metadata"].get("deletionTimestamp") or t.returns_deleted:
                return self._send_object(200, t, obj)
            details = {"name": name, "kind": t.plural, "uid": obj["metadata"].get("uid")}
            if t.group:
                details["group"] = t.group
            return self._send_json(200, errors.success_status(details))
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    def _name_warning(self, t, obj):
        """Workload names become hostnames: the real server warns when one is no DNS label."""
        from . import validation
        if t.kind in ("Pod", "Deployment", "Job", "CronJob") and t.crd is None:
            msgs = validation.dns_label(obj["metadata"]["name"])
            if msgs:
                self._warnings.append("metadata.name: a DNS label is recommended: [" + ", ".join(msgs) + "]")

    def _decode(self, body):
        if "protobuf" in (self.headers.get("Content-Type") or ""):
            from . import protobuf
            try:
                return protobuf.decode(body)
            except (ValueError, IndexError, UnicodeDecodeError) as exc:
                raise errors.BadRequest(f"cannot decode protobuf body: {exc}")
        try:
            return json.loads(body or b"null")
        except ValueError as exc:
            ctype = self.headers.get("Content-Type", "")
            if "yaml" in ctype:
                raise errors.UnsupportedMediaType("YAML bodies are not supported by the emulator; send JSON")
            raise errors.BadRequest(f"json: {exc}")

    def _field_validation(self):
        fv = self.query.get("fieldValidation", "Warn") or "Warn"
        if fv not in ("Ignore", "Warn", "Strict"):
            raise errors.BadRequest(f"fieldValidation must be one of Ignore, Warn, Strict; got {fv}")
        return fv

    def _accept(self):
        return self.headers.get("Accept", "")

    def _wants(self, as_kind):
        for part in self._accept().split(","):
            params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
            if params.get("as") == as_kind and params.get("g") == "meta.k8s.io":
                return True
        return False

    def _send_object(self, code, t, obj):
        if self._wants("Table"):
            return self._send_json(code, tables.to_table(t, [obj], self.query.get("includeObject", "Metadata"),
                                                         {"resourceVersion": obj["metadata"].get("resourceVersion", "")}))
        if self._wants("PartialObjectMetadata"):
            return self._send_json(code, tables.partial_metadata(obj))
        return self._send_json(code, obj)

    def _selectors(self, t):
        labels = selectors.parse_label_selector(self.query.get("labelSelector", ""))
        fields = selectors.parse_field_selector(self.query.get("fieldSelector", ""), t)
        return labels, fields

    def _list(self, t, namespace):
        labels, fields = self._selectors(t)
        try:
            limit = int(self.query.get("limit") or 0)
        except ValueError:
            raise errors.BadRequest("limit must be an integer")
        start, cont_rv = None, None
        if self.query.get("continue"):
            try:
                token = json.loads(base64.b64decode(self.query["continue"]))
                start, cont_rv = token["start"], token["rv"]
            except (ValueError, KeyError, TypeError):
                raise errors.BadRequest("continue key is not valid: the format of the continue parameter is invalid")
        if cont_rv is not None and cont_rv <= self.server.store.compacted_rv:
            raise errors.Gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter.")
        at_rv = self._list_resource_version(start is not None)
        items, rv, last = self.server.store.list(t, namespace, labels, fields, limit, start, at_rv)
        meta = {"resourceVersion": str(cont_rv or rv)}
        if last is not None:
            meta["continue"] = base64.b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": cont_rv or rv, "start": list(last)}).encode()).decode()
            meta["remainingItemCount"] = 0
        if self._wants("Table"):
            return self._send_json(200, tables.to_table(t, items, self.query.get("includeObject", "Metadata"), meta))
        if self._wants("PartialObjectMetadataList"):
            return self._send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                         "metadata": meta, "items": [tables.partial_metadata(o) for o in items]})
        self._send_json(200, {"kind": t.kind + "List", "apiVersion": t.api_version,
                              "metadata": meta, "items": items})

    def _list_resource_version(self, paging):
        """resourceVersion and resourceVersionMatch of a list. ValidateListOptions
        (apimachinery meta/internalversion/validation): a match needs a resourceVersion, no
        continue, Exact or NotOlderThan, and Exact not with "0" (422 ListOptions). NotOlderThan
        (also an unset match with a version other than "0") waits up to 3 s for a version
        ahead of the server, then answers 504 "Too large resource version" with Retry-After 1
        (the watch cache's waitUntilFreshAndBlock + storage.NewTooLargeResourceVersionError).
        Exact lists the objects as they were then (the store's history), or 410 once that is
        compacted. Returns the version for Exact, else None."""
        store = self.server.store
        rv = self.query.get("resourceVersion") or ""
        match = self.query.get("resourceVersionMatch") or ""
        if match:
            errs = []
            if not rv:
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden unless resourceVersion is provided"))
            if self.query.get("continue"):
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden when continue is provided"))
            if match not in ("Exact", "NotOlderThan"):
                errs.append(errors.not_supported("resourceVersionMatch", match,
                                                 ["Exact", "NotOlderThan", ""]))
            if match == "Exact" and rv == "0":
                errs.append(errors.forbidden("resourceVersionMatch", 'resourceVersionMatch '
                                             '"exact" is forbidden for resourceVersion "0"'))
            if errs:
                raise errors.invalid_error("ListOptions", "meta.k8s.io", "", errs)
        if not rv or rv == "0" or paging:
            return None
        try:
            wanted = int(rv)
        except ValueError:
            raise errors.BadRequest(f"invalid resource version: {rv}")
        if match == "Exact":
            if wanted > store.current_rv():
                raise errors.too_large_resource_version(wanted, store.current_rv())
            return wanted
        deadline = time.monotonic() + 3.0
        while store.current_rv() < wanted:
            if time.monotonic() >= deadline:
                raise errors.too_large_resource_version(wanted, store.current_rv())
            time.sleep(0.05)
        return None

    def _delete_collection(self, t, namespace, dry_run):
        labels, fields = self._selectors(t)
        items, _, _ = self.server.store.list(t, namespace, labels, fields)
        out = []
        for o in items:
            try:
                out.append(self.server.store.delete(t, o["metadata"].get("namespace"), o["metadata"]["name"], dry_run=dry_run))
            except errors.NotFound:
                pass
        self._send_json(200, {"kind": t.kind + "List", "apiVersion": t.api_version,
                              "metadata": {"resourceVersion": str(self.server.store.current_rv())}, "items": out})

    # ---- authorization reviews and service account tokens ----

    def _review(self, t, review):
        """SelfSubjectAccessReview (kubectl auth can-i) and SubjectAccessReview."""
        if not isinstance(review, dict):
            raise errors.BadRequest("the object provided is unrecognized (must be of type map)")
        spec = review.get("spec") or {}
        if t.kind == "SubjectAccessReview":
            name = spec.get("user", "")
            if name.startswith("system:serviceaccount:") and name.count(":") == 3:
                user = auth.service_account_user(*name.split(":")[2:])
            else:
                user = auth.User(name, spec.get("groups") or [])
        else:
            user = self.user
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra is not None:
            attrs = {"verb": ra.get("verb", ""), "group": ra.get("group", ""), "resource": ra.get("resource", ""),
                     "subresource": ra.get("subresource", ""), "namespace": ra.get("namespace", ""),
                     "name": ra.get("name", "")}
        elif nra is not None:
            attrs = {"verb": nra.get("verb", ""), "path": nra.get("path", "")}
        else:
            raise errors.invalid_error(t.kind, t.group, "", [errors.invalid(
                "spec.resourceAttributes", None, "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
        allowed, reason = auth.authorize(self.server.store, user, attrs)
        out = {"kind": t.kind, "apiVersion": t.api_version, "metadata": {"creationTimestamp": None},
               "spec": spec, "status": {"allowed": allowed}}
        if reason:
            out["status"]["reason"] = reason
        self._send_json(201, out)

    def _token_request(self, t, namespace, name, body):
        """TokenRequest: a bearer token for the ServiceAccount (kubectl create token)."""
        from . import store as storemod
        sa = self.server.store.get(t, namespace, name)
        seconds = int(((body or {}).get("spec") or {}).get("expirationSeconds") or 3600)
        token = self.server.authenticator.issue(namespace, name, sa["metadata"]["uid"])
        import datetime
        expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._send_json(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                              "metadata": {"name": name, "namespace": namespace,
                                           "creationTimestamp": storemod.now_rfc3339()},
                              "spec": {"audiences": ["https://kubernetes.default.svc"],
                                       "expirationSeconds": seconds},
                              "status": {"token": token, "expirationTimestamp": expires}})

    # ---- pods/binding (what the scheduler posts) ----

    def _bind(self, t, namespace, name, binding, dry_run):
        store = self.server.store
        target = (binding or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid_error("Binding", "", name, [errors.required("target.name", "")])
        pod = store.get(t, namespace, name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise errors.conflict("pods", "", name, f"pod {name} is already assigned to node \"{current}\"")
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("pods", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
        store.patch(t, namespace, name, "merge", {"spec": {"nodeName": node}}, None, dry_run)
        self._send_json(201, errors.success_status())

    # ---- scale subresource ----

    def _scale_write(self, t, namespace, name, body, ptype, dry_run):
        from . import patch as patchlib
        store = self.server.store
        current = store.get(t, namespace, name)
        scale = _to_scale(t, current)
        if ptype is None:
            new = body
        elif ptype == "json":
            new = patchlib.json_patch(scale, body)
        else:
            new = patchlib.merge_patch(scale, body)
        if not isinstance(new, dict):
            raise errors.BadRequest("invalid Scale")
        replicas = (new.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid_error("Scale", "autoscaling", name,
                                       [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
        rv = (new.get("metadata") or {}).get("resourceVersion")
        path = _scale_paths(t)[0]
        patch_body = _nested_patch(path, replicas)
        if rv:
            patch_body.setdefault("metadata", {})["resourceVersion"] = rv
        updated = store.patch(t, namespace, name, "merge", patch_body, None, dry_run)
        return _to_scale(t, updated)

    # ---- watch ----

    def _watch(self, t, namespace):
        store, faults = self.server.store, self.server.faults
        labels, fields = self._selectors(t)
        try:
            timeout = float(self.query.get("timeoutSeconds") or 1800)
        except ValueError:
            raise errors.BadRequest("timeoutSeconds must be a number")
        bookmarks = self.query.get("allowWatchBookmarks") in ("true", "1")
        initial = self.query.get("sendInitialEvents") in ("true", "1")
        rv = self.query.get("resourceVersion")
        as_table = self._wants("Table")
        self._code = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        watcher = None
        first = [True]

        def emit(etype, obj):
            if as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
                obj = tables.to_table(t, [obj], self.query.get("includeObject", "Metadata"),
                                      {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                      headers=first[0])
                first[0] = False
            emit_line(b'{"type":"%s","object":%s}\n' % (etype.encode(), dumps(obj).encode()))

        # One chunk per event, as before; the chunks of the events that were waiting together
        # leave in one write (fewer system calls, and fewer waits for the GIL after them).
        pending = []

        def emit_line(line):
            pending.append(b"%x\r\n%s\r\n" % (len(line), line))

        def flush():
            if pending:
                data = b"".join(pending)
                pending.clear()
                self.wfile.write(data)
                self.wfile.flush()

        def finish():
            emit_line(b"")  # the last chunk: "0\r\n\r\n"
            flush()

        try:
            if faults.take_gone():
                emit("ERROR", errors.too_old(int(rv) if (rv or "").isdigit() else 0, store.current_rv()).status)
                return finish()
            try:
                watcher = store.watch(t, namespace, None if initial else rv, labels, fields)
            except errors.ApiError as exc:
                emit("ERROR", exc.status)
                return finish()
            start = time.monotonic()
            deadline = start + timeout
            drop = faults.get("watch_drop_seconds", 0)
            # cacheWatcher.nextBookmarkTime: a bookmark every BOOKMARK_SECONDS, and one 2 s
            # before the watch's deadline (timeoutSeconds) so that a client resumes from an
            # up-to-date resourceVersion; none if that moment has already passed.
            def next_bookmark(now):
                when = min(now + BOOKMARK_SECONDS, deadline - 2.0)
                return when if when >= now else None
            bookmark_at = next_bookmark(start)
            last_rv = int(rv) if (rv or "").isdigit() else 0
            initial_pending = initial
            while not self.server.stopping.is_set():
                now = time.monotonic()
                if now >= deadline:
                    return finish()
                if drop and now - start >= drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # abrupt: no final chunk
                    return
                wait = min(deadline - now, 1.0)
                if bookmarks and bookmark_at is not None:
                    wait = max(0.0, min(wait, bookmark_at - now))
                items = watcher.get_batch(wait, WATCH_BATCH)
                if not items:
                    if watcher.closed:
                        return finish()
                    if initial_pending:
                        initial_pending = False
                        emit("BOOKMARK", _bookmark(t, store.current_rv(), initial_end=True))
                    elif bookmarks and bookmark_at is not None and time.monotonic() >= bookmark_at:
                        emit("BOOKMARK", _bookmark(t, store.current_rv()))
                        bookmark_at = next_bookmark(time.monotonic())
                    elif self._client_gone():
                        return
                    flush()
                    continue
                for item in items:
                    if isinstance(item, tuple):
                        out = (item[0], item[1]) if watcher.matches(item[1]) else None
                    else:
                        out = watcher.translate(item)
                        last_rv = item.rv
                        if out and not as_table:
                            # Encoded once per event and type, whichever watcher is first.
                            emit_line(item.line(out[0]))
                            continue
                    if out:
                        emit(out[0], out[1])
                flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            if watcher is not None:
                store.unwatch(watcher)

    def _client_gone(self):
        """A watch with nothing to send notices a vanished client only by looking."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            self.connection.setblocking(False)
            try:
                return self.connection.recv(1) == b""
            finally:
                self.connection.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ValueError):
            return True


def _bookmark(t, rv, initial_end=False):
    meta = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": t.kind, "apiVersion": t.api_version, "metadata": meta}


def _scale_paths(t):
    if t.crd is not None:
        from .resources import crd_version
        sc = (crd_version(t.crd, t.version).get("subresources") or {}).get("scale") or {}
        return (sc.get("specReplicasPath", ".spec.replicas").lstrip("."),
                sc.get("statusReplicasPath", ".status.replicas").lstrip("."),
                (sc.get("labelSelectorPath") or "").lstrip("."))
    return "spec.replicas", "status.replicas", None


def _get_path(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _nested_patch(path, value):
    out = {}
    cur = out
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _to_scale(t, obj):
    spec_path, status_path, sel_path = _scale_paths(t)
    meta = obj["metadata"]
    if sel_path is None:
        ml = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(ml.items()))
    else:
        selector = _get_path(obj, sel_path) if sel_path else ""
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": _get_path(obj, spec_path) or 0},
            "status": {"replicas": _get_path(obj, status_path) or 0, "selector": selector or ""}}
