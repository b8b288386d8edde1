"""A thin layer in front of fake-gcs-server that enforces Cloud Storage's generation preconditions.

Cloud Storage applies `ifGenerationMatch` to every request that writes or deletes an object:
uploads, compose, copy/rewrite, metadata patches and deletes ("Request preconditions",
https://cloud.google.com/storage/docs/request-preconditions; 0 means "only if no live object
exists"), answering 412 `conditionNotMet` when the live generation differs. fake-gcs-server
enforces it on uploads only and ignores it on compose, copy, rewrite, patch and delete, so code
that relies on those preconditions would pass here and race in the cloud. Everything else is
forwarded unchanged, streamed in both directions.

It also corrects one fake-gcs-server fault that generation-based code cannot live with: its
in-memory backend composes onto an existing object *in place*, keeping the old generation number
for the new content. In Cloud Storage every compose creates a new generation. So a compose onto a
live object is preceded here by a delete of that object (in a versioned bucket the old generation
stays readable), and the compose then creates a new generation as in the cloud.

And one fault that would let deleted data live on: fake-gcs-server ignores `generation` on a
delete and removes the live object instead, so a noncurrent generation can never be deleted.
In Cloud Storage a delete naming a generation deletes exactly that generation, for good
("Object Versioning": https://cloud.google.com/storage/docs/object-versioning, "Delete
noncurrent object versions": https://cloud.google.com/storage/docs/using-versioned-objects).
Here such a delete is recorded and answered as Cloud Storage answers it; from then on that
generation is not found, by metadata, by download or in a listing with `versions=true`. A delete
naming the live generation also removes the live object, as it should. Listings with
`versions=True` (as the Python client spells it) reach fake-gcs-server as `versions=true`, the
only spelling it takes, so that noncurrent generations are listed as Cloud Storage lists them.

A check and the request it guards run under one lock per object name, so two guarded requests
on one object cannot interleave here. Resumable upload chunks carry no object name and are not
serialised with them; fake-gcs-server checks their precondition itself when they finalize.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_COPY_CHUNK = 1 << 20
_NOT_FOUND = json.dumps({"error": {"code": 404, "message": "No such object.",
                                   "errors": [{"domain": "global", "reason": "notFound", "message": "No such object."}]}}).encode()
_CONDITION_NOT_MET = json.dumps({"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                                           "errors": [{"domain": "global", "reason": "conditionNotMet",
                                                       "message": "At least one of the pre-conditions you specified did not hold."}]}}).encode()


def compose_destination(method: str, path: str) -> tuple[str, str] | None:
    """(bucket, object) a compose request writes, or None for any other request."""
    parts = path.split("/")
    if method == "POST" and len(parts) == 8 and parts[:4] == ["", "storage", "v1", "b"] and parts[5] == "o" and parts[7] == "compose":
        return parts[4], unquote(parts[6])
    return None


def guarded_object(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str] | None:
    """(bucket, object) whose live generation a request's `ifGenerationMatch` is about, when it
    is a request fake-gcs-server would not check itself; None otherwise."""
    if "ifGenerationMatch" not in query:
        return None
    parts = path.split("/")
    # /storage/v1/b/{bucket}/o/{object}[/compose | /rewriteTo/b/{b}/o/{o} | /copyTo/b/{b}/o/{o}]
    if parts[:4] != ["", "storage", "v1", "b"] or len(parts) < 7 or parts[5] != "o":
        return None
    bucket, name, rest = parts[4], unquote(parts[6]), parts[7:]
    if not rest and method in ("DELETE", "PATCH", "PUT"):
        return bucket, name
    if rest == ["compose"] and method == "POST":
        return bucket, name
    if len(rest) == 5 and rest[0] in ("rewriteTo", "copyTo") and rest[1] == "b" and rest[3] == "o" and method == "POST":
        return rest[2], unquote(rest[4])  # the precondition is on the destination
    return None


def generation_target(path: str, query: dict[str, list[str]]) -> tuple[str, str, int] | None:
    """(bucket, object, generation) a request names with `?generation=`, on an object's metadata
    or media path; None for any other request (listings included)."""
    if "generation" not in query:
        return None
    parts = path.removeprefix("/download").split("/")  # media downloads: /download/storage/v1/...
    if len(parts) != 7 or parts[:4] != ["", "storage", "v1", "b"] or parts[5] != "o":
        return None
    try:
        return parts[4], unquote(parts[6]), int(query["generation"][0])
    except ValueError:
        return None


def listing_bucket(method: str, path: str) -> str | None:
    """The bucket an object listing reads, or None for any other request."""
    parts = path.split("/")
    if method == "GET" and len(parts) == 6 and parts[:4] == ["", "storage", "v1", "b"] and parts[5] == "o":
        return parts[4]
    return None


def holds(expected: str, live_generation: int) -> bool:
    """Whether `ifGenerationMatch=expected` holds for an object whose live generation is
    `live_generation` (0: no live object)."""
    try:
        return int(expected) == live_generation
    except ValueError:
        return False


class GcsRules:
    """Start with `with GcsRules(upstream_port) as rules:`; `rules.port` is where clients connect."""

    def __init__(self, upstream_port: int, port: int = 0):
        self.upstream_port = upstream_port
        self.refused = 0  # requests answered 412 here that fake-gcs-server would have carried out
        self.gone: set[tuple[str, str, int]] = set()  # generations deleted by a delete naming them
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "GcsRules":
        self._thread = threading.Thread(target=self._server.serve_forever, name="gcs-rules", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "GcsRules":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def delete(self, bucket: str, name: str, generation: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            connection.request("DELETE", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status not in (200, 204, 404):
            raise RuntimeError(f"fake-gcs-server answered {response.status} deleting {bucket}/{name}#{generation}")

    def fetch(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def exists(self, bucket: str, name: str, generation: int) -> bool:
        status, _ = self.fetch(f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?generation={generation}")
        return status == 200

    def live_generation(self, bucket: str, name: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            connection.request("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status == 404:
            return 0
        if response.status != 200:
            raise RuntimeError(f"fake-gcs-server answered {response.status} for {bucket}/{name}")
        return int(json.loads(body)["generation"])


def _handler(rules: GcsRules):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # fake-gcs-server logs requests itself
            pass

        def _any(self) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            target = generation_target(split.path, query) if self.command in ("GET", "HEAD", "DELETE") else None
            if target is not None:
                self._by_generation(target, query)
                return
            listed = listing_bucket(self.command, split.path)
            if listed is not None and query.get("versions", [""])[0].lower() == "true":
                self._listing_of_versions(listed, split.query)
                return
            guarded = guarded_object(self.command, split.path, query)
            composed = compose_destination(self.command, split.path)
            key = guarded or composed
            if key is None:
                self._forward()
                return
            with rules.lock(key):
                live = rules.live_generation(*key)
                if guarded is not None and not holds(query["ifGenerationMatch"][0], live):
                    self._drain_body()
                    rules.refused += 1
                    self._reply(412, _CONDITION_NOT_MET)
                    return
                if composed is not None and live:
                    rules.delete(*composed, live)
                self._forward()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        def _by_generation(self, target: tuple[str, str, int], query: dict[str, list[str]]) -> None:
            bucket, name, generation = target
            with rules.lock((bucket, name)):
                if target in rules.gone:
                    self._drain_body()
                    self._reply(404, _NOT_FOUND)
                    return
                if self.command != "DELETE":
                    self._forward()
                    return
                self._drain_body()
                live = rules.live_generation(bucket, name)
                if "ifGenerationMatch" in query and not holds(query["ifGenerationMatch"][0], live):
                    rules.refused += 1  # the precondition is on the live generation, whichever one is named
                    self._reply(412, _CONDITION_NOT_MET)
                    return
                if generation != live and not rules.exists(bucket, name, generation):
                    self._reply(404, _NOT_FOUND)
                    return
                if generation == live:
                    rules.delete(bucket, name, live)
                rules.gone.add(target)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def _listing_of_versions(self, bucket: str, query: str) -> None:
            # A listing page is small JSON: read whole, the deleted generations taken out.
            pairs = [(k, "true" if k == "versions" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
            status, body = rules.fetch(f"/storage/v1/b/{quote(bucket, safe='')}/o?{urlencode(pairs)}")
            if status == 200:
                page = json.loads(body)
                page["items"] = [item for item in page.get("items", [])
                                 if (bucket, item.get("name"), int(item.get("generation", 0))) not in rules.gone]
                body = json.dumps(page).encode()
            self._reply(status, body)

        def _body_length(self) -> int:
            return int(self.headers.get("Content-Length") or 0)

        def _drain_body(self) -> None:
            remaining = self._body_length()
            while remaining > 0:
                remaining -= len(self.rfile.read(min(remaining, _COPY_CHUNK)))

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            upstream = http.client.HTTPConnection("127.0.0.1", rules.upstream_port, timeout=900)
            try:
                body = None
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in _HOP_BY_HOP and not (body is not None and key.lower() == "content-length"):
                        upstream.putheader(key, value)
                if body is not None:
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders()
                if body is not None:
                    upstream.send(body)
                else:
                    remaining = self._body_length()
                    while remaining > 0:
                        piece = self.rfile.read(min(remaining, _COPY_CHUNK))
                        if not piece:
                            break
                        upstream.send(piece)
                        remaining -= len(piece)
                response = upstream.getresponse()
                self._relay(response)
            finally:
                upstream.close()

        def _read_chunked(self) -> bytes:
            pieces = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline()

        def _relay(self, response: http.client.HTTPResponse) -> None:
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            bodiless = self.command == "HEAD" or response.status in (204, 304)
            if length is None and not bodiless:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if bodiless:
                return
            while True:
                piece = response.read(_COPY_CHUNK)
                if not piece:
                    break
                if length is None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
            if length is None:
                self.wfile.write(b"0\r\n\r\n")

    return Handler
