"""A local stand-in for the Amplitude Export API, speaking its real wire protocol.

It also answers the User Privacy API's deletions list (`GET /api/2/deletions/users?start_day=
YYYY-MM-DD&end_day=YYYY-MM-DD`, same Basic auth) and takes deletion requests (`POST`, JSON
`{"amplitude_ids": [...], "requester": "..."}`, scheduled as a "staging" job). A test deletes
users with `delete_users` (a job that is already "done"), or runs the staged jobs with
`finish_deletions`; once a job is done, no export holds those users' events any more. Each
project (`add_project`) has deletion jobs of its own, listed and applied to its keys only (pass
its `keys` to `delete_users`); the plain attributes are the first project's.

`GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH` with HTTP Basic auth; 401 on wrong keys;
404 when the range has no data; 200 with a zip in Amplitude's layout otherwise. It serves either a
generated `Dataset` or the entries of a given zip file that fall in the requested range. Tests
can queue faults (a status and a body) that the next requests get instead.
"""

from __future__ import annotations

import base64
import hmac
import shutil
import socket
import tempfile
import threading
import time
import warnings
import zipfile
import json
from collections import Counter, deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlparse

from ..deletions import MAX_RANGE_DAYS, drop_in_zip
from ..naming import HourRange, parse_zip_entry
from .synthetic import Dataset, write_export_zip
from ..transform import count_events
from ..unpack import EntryReader

STREAM_CHUNK = 1 << 20
DELETIONS_PATH = "/api/2/deletions/users"


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of the archive.

    `status` and `body` are sent as they are; `truncate` sends a correct Content-Length but
    closes the connection halfway through the real archive; `reset` closes the connection
    before any response; `stall` waits that many seconds before answering (a slow export).
    """

    status: int = 200
    body: bytes = b""
    truncate: bool = False
    reset: bool = False
    stall: float = 0.0


class ZipSource:
    """Serves the entries of an existing export zip that fall in the requested hours
    (or, with `whole=True`, every entry, as a misbehaving API might)."""

    def __init__(self, path: Path, whole: bool = False):
        self.path = Path(path)
        self.whole = whole

    def write(self, hours: HourRange, sink: BinaryIO) -> int:
        count = 0
        with zipfile.ZipFile(self.path) as source, zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as target, \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Duplicate name")  # a name the zip holds twice is served twice
            for info in source.infolist():
                if info.is_dir() or not (self.whole or _in_range(info.filename, hours)):
                    continue
                # As the export step reads it: an entry the zip cannot read is served as far as it
                # reads, then zeros, as a valid entry (the export's part index stays true).
                with EntryReader(source, info) as member, target.open(info.filename, "w") as out:
                    shutil.copyfileobj(member, out, STREAM_CHUNK)
                count += 1
        return count


class DatasetSource:
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def write(self, hours: HourRange, sink: BinaryIO) -> int:
        return write_export_zip(self.dataset, sink, hours)


def _in_range(name: str, hours: HourRange) -> bool:
    """Whether to serve an entry; odd names are served as they are, for the export step to refuse."""
    try:
        return parse_zip_entry(name).hour in hours
    except ValueError:
        return True


def events_per_hour(archive: Path | BinaryIO) -> Counter:
    """Count the events (non-blank lines) per upload hour in an export zip: the source of truth.

    Every entry counts, by its ZipInfo (a name may occur twice). A damaged part counts its lines
    before the damage and the damage as one, as the transform records it (one reject)."""
    counts: Counter = Counter()
    with zipfile.ZipFile(archive) as source:
        for info in source.infolist():
            try:
                hour = parse_zip_entry(info.filename).hour
            except ValueError:
                continue  # not an hour file: the export step refuses it
            with EntryReader(source, info) as member:  # the bytes the export copies, damage and all
                counts[hour] += count_events(member)
    return counts


def _basic(api_key: str, secret_key: str) -> str:
    return "Basic " + base64.b64encode(f"{api_key}:{secret_key}".encode()).decode()


class ExportApiStub:
    """The stub server; start() binds 127.0.0.1 on a free port, stop() shuts it down."""

    def __init__(self, source, api_key: str, secret_key: str, host: str = "127.0.0.1", port: int = 0):
        self.source = source
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, str]] = []
        # Ranges longer than this many hours get 400 ("over 4 GB") or 504 (timed out), as a big
        # project's would; None serves any range.
        self.max_hours: int | None = None
        self.too_long_status = 400
        self.set_credentials(api_key, secret_key)
        self.other_projects: dict[str, object] = {}  # Basic auth header → source (add_project)
        self.other_deletions: dict[str, tuple[list[dict], set[int]]] = {}  # Basic auth header → (jobs, deleted ids)
        # The User Privacy API's deletion jobs, as it lists them, and the users deleted by done jobs.
        self.deletion_jobs: list[dict] = []
        self.deleted_ids: set[int] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._thread = threading.Thread(target=lambda: self._server.serve_forever(poll_interval=0.05), name="amplitude-stub", daemon=True)

    def set_credentials(self, api_key: str, secret_key: str) -> None:
        self.expected_auth = _basic(api_key, secret_key)

    def add_project(self, source, api_key: str, secret_key: str) -> None:
        """Serve another Amplitude project: requests with its keys get `source`'s events (a
        project's keys name the project, as at Amplitude)."""
        self.other_projects[_basic(api_key, secret_key)] = source
        self.other_deletions[_basic(api_key, secret_key)] = ([], set())

    def _deletions_of(self, authorization: str | None) -> tuple[list[dict], set[int]]:
        """(deletion jobs, deleted ids) of the project whose keys are `authorization` (None: the first)."""
        if authorization is not None and authorization in self.other_deletions:
            return self.other_deletions[authorization]
        return self.deletion_jobs, self.deleted_ids

    def _match(self, authorization: str) -> tuple[bool, object]:
        """(whether the keys are a project's, that project's source)."""
        if hmac.compare_digest(authorization, self.expected_auth):
            return True, self.source
        for expected, source in self.other_projects.items():
            if hmac.compare_digest(authorization, expected):
                return True, source
        return False, None

    def authorized(self, authorization: str) -> bool:
        return self._match(authorization)[0]

    def source_for(self, authorization: str):
        """The source of the project whose keys a request carries."""
        return self._match(authorization)[1]

    def delete_users(self, amplitude_ids, day: date | None = None, requester: str = "stub@example.com",
                     status: str = "done", keys: tuple[str, str] | None = None) -> dict:
        """A deletion job for `amplitude_ids` on `day` (default: today, UTC), listed as `status`, of
        the project whose `keys` (api key, secret key) are given (default: the first); a done job
        removes their events from every later export of that project. The job, as the API lists it."""
        day = day or datetime.now(timezone.utc).date()
        job = {"day": f"{day:%Y-%m-%d}", "status": status, "amplitude_ids": [
            {"amplitude_id": int(i), "requester": requester, "requested_on_day": f"{day:%Y-%m-%d}"} for i in amplitude_ids]}
        with self._lock:
            jobs, deleted = self._deletions_of(_basic(*keys) if keys else None)
            jobs.append(job)
            if status == "done":
                deleted.update(int(i) for i in amplitude_ids)
        return job

    def finish_deletions(self) -> None:
        """Run every staged or submitted job now (of every project), as Amplitude does on the job's day."""
        with self._lock:
            for jobs, deleted in [(self.deletion_jobs, self.deleted_ids), *self.other_deletions.values()]:
                for job in jobs:
                    if job["status"] != "done":
                        job["status"] = "done"
                        deleted.update(e["amplitude_id"] for e in job["amplitude_ids"])

    def _request_deletion(self, amplitude_ids: list[int], requester: str, authorization: str | None = None) -> dict:
        """A POST: the users go into the job Amplitude schedules about 10 days out, staging."""
        day = f"{datetime.now(timezone.utc).date() + timedelta(days=10):%Y-%m-%d}"
        entries = [{"amplitude_id": i, "requester": requester, "requested_on_day": f"{datetime.now(timezone.utc):%Y-%m-%d}"}
                   for i in amplitude_ids]
        with self._lock:
            jobs = self._deletions_of(authorization)[0]
            job = next((j for j in jobs if j["day"] == day and j["status"] == "staging"), None)
            if job is None:
                job = {"day": day, "status": "staging", "amplitude_ids": []}
                jobs.append(job)
            job["amplitude_ids"].extend(entries)
            return {"day": day, "status": "staging", "amplitude_ids": entries}

    def _list_deletions(self, start: date, end: date, authorization: str | None = None) -> list[dict]:
        with self._lock:
            jobs = self._deletions_of(authorization)[0]
            return [json.loads(json.dumps(j)) for j in jobs if start <= date.fromisoformat(j["day"]) <= end]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "ExportApiStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ExportApiStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(stub: ExportApiStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test and demo output clean
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if stub.authorized(self.headers.get("Authorization", "")):
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Amplitude"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def do_POST(self) -> None:
            if urlparse(self.path).path != DELETIONS_PATH:
                return self._reply(404, b"not found")
            if not self._authorized():
                return None
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if "json" in self.headers.get("Content-Type", ""):
                    request = json.loads(body)
                    ids, requester = [int(i) for i in request.get("amplitude_ids", [])], str(request.get("requester", ""))
                else:
                    form = parse_qs(body.decode())
                    ids, requester = [int(i) for i in form.get("amplitude_ids", [])], form.get("requester", [""])[0]
            except (ValueError, TypeError, AttributeError) as bad:
                return self._reply(400, f"invalid deletion request: {bad}".encode())
            if not ids or len(ids) > 100:
                return self._reply(400, b"between 1 and 100 amplitude_ids per request")
            self._reply(200, json.dumps(stub._request_deletion(ids, requester, self.headers.get("Authorization"))).encode(),
                        "application/json")

        def _deletions(self, url) -> None:
            query = parse_qs(url.query)
            try:
                start, end = (date.fromisoformat(query[k][0]) for k in ("start_day", "end_day"))
            except (KeyError, ValueError) as bad:
                return self._reply(400, f"start_day and end_day must be YYYY-MM-DD: {bad}".encode())
            if end < start or (end - start).days + 1 > MAX_RANGE_DAYS:
                return self._reply(400, b"the largest permitted time range is six months")
            stub.requests.append((f"deletions {start}", f"{end}"))
            fault = stub.faults.popleft() if stub.faults else Fault()
            if fault.status != 200 or fault.body:
                return self._reply(fault.status, fault.body, "application/json")
            listed = stub._list_deletions(start, end, self.headers.get("Authorization"))
            self._reply(200, json.dumps(listed).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path not in ("/api/2/export", DELETIONS_PATH):
                return self._reply(404, b"not found")
            if not self._authorized():
                return None
            if url.path == DELETIONS_PATH:
                return self._deletions(url)
            query = parse_qs(url.query)
            try:
                hours = HourRange.parse(query["start"][0], query["end"][0])
            except (KeyError, ValueError) as bad:
                return self._reply(400, f"invalid start/end: {bad}".encode())
            stub.requests.append((query["start"][0], query["end"][0]))
            fault = stub.faults.popleft() if stub.faults else Fault()
            time.sleep(fault.stall)
            if fault.reset:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if fault.status != 200 or fault.body:
                return self._reply(fault.status, fault.body)
            if stub.max_hours is not None and len(hours) > stub.max_hours:
                return self._reply(stub.too_long_status, b"The file size of the exported data is too large.")
            authorization = self.headers.get("Authorization", "")
            self._send_archive(hours, fault.truncate, stub.source_for(authorization), stub._deletions_of(authorization)[1])

        def _send_archive(self, hours: HourRange, truncate: bool, source, deleted_ids: set[int]) -> None:
            with tempfile.TemporaryFile() as archive, tempfile.TemporaryFile() as kept:
                if not source.write(hours, archive):
                    return self._reply(404, b"Raw data files were not found.")
                if deleted_ids:  # Amplitude no longer has the deleted users' events
                    archive.seek(0)
                    drop_in_zip(archive, kept, frozenset(deleted_ids))
                    archive = kept
                size = archive.tell()
                archive.seek(0)
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if truncate:
                    self.wfile.write(archive.read(size // 2))
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                shutil.copyfileobj(archive, self.wfile, STREAM_CHUNK)

    return Handler

