"""Amplitude's user-privacy deletions, as values: the deletion jobs Amplitude lists, which of them
to apply here, and the events of the deleted users taken out of export data (pure, no I/O).

The User Privacy API (v1, `GET /api/2/deletions/users?start_day=YYYY-MM-DD&end_day=YYYY-MM-DD`,
HTTP Basic auth with the project's API key and secret key) answers a JSON list of deletion jobs,
one per scheduled day:

    [{"day": "2022-03-03", "status": "done",
      "amplitude_ids": [{"amplitude_id": 356896327775, "requester": "…", "requested_on_day": "2022-02-17"}],
      "app": 187520}]

`status` is "staging" (may still change), "submitted" (running, fixed) or "done" (Amplitude has
deleted the users' events); `app` appears when a job spans projects. Only done jobs are applied
here: until then Amplitude still exports the users' events. A done job cannot change, so a job is
applied once, known by its day and app.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shutil
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import BinaryIO, Iterable, Iterator

from .errors import PermanentError

STATUSES = ("staging", "submitted", "done")
DONE = "done"
# Amplitude's list takes at most six months; the scheduled check looks at the last RECENT_DAYS.
MAX_RANGE_DAYS = 183
RECENT_DAYS = 30


class MalformedDeletions(PermanentError):
    """The deletions list is not what the User Privacy API documents."""


@dataclass(frozen=True)
class DeletionJob:
    day: date
    status: str
    amplitude_ids: tuple[int, ...]
    app: str = ""

    @property
    def key(self) -> tuple[date, str]:
        """What names the job: its day, and the project when Amplitude says."""
        return self.day, self.app

    @property
    def done(self) -> bool:
        return self.status == DONE


def recent_days(today: date, days: int = RECENT_DAYS) -> tuple[date, date]:
    """The default range to ask about: the last `days` days up to today."""
    return today - timedelta(days=days - 1), today


def check_range(start_day: date, end_day: date) -> None:
    if end_day < start_day:
        raise PermanentError(f"deletions range ends ({end_day}) before it starts ({start_day})")
    if (end_day - start_day).days + 1 > MAX_RANGE_DAYS:
        raise PermanentError(f"deletions range {start_day}..{end_day} is longer than Amplitude's six months "
                             f"({MAX_RANGE_DAYS} days); ask for a shorter one")


def parse_jobs(payload: object) -> list[DeletionJob]:
    """The jobs in the deletions list's JSON (already decoded); MalformedDeletions naming the
    first thing that is not as documented."""
    if isinstance(payload, dict) and isinstance(payload.get("deletions"), list):
        payload = payload["deletions"]  # some proxies and SDKs wrap the list; the content is the same
    if not isinstance(payload, list):
        raise MalformedDeletions(f"deletions list: expected a JSON list of jobs, got {type(payload).__name__}")
    return [_job(n, item) for n, item in enumerate(payload)]


def _job(n: int, item: object) -> DeletionJob:
    where = f"deletions list: job {n}"
    if not isinstance(item, dict):
        raise MalformedDeletions(f"{where}: expected an object, got {type(item).__name__}")
    try:
        day = date.fromisoformat(str(item["day"]))
    except KeyError:
        raise MalformedDeletions(f"{where}: no \"day\"") from None
    except ValueError:
        raise MalformedDeletions(f"{where}: \"day\" is not YYYY-MM-DD: {item['day']!r}") from None
    status = item.get("status")
    if status not in STATUSES:
        raise MalformedDeletions(f"{where} ({day}): \"status\" must be one of {', '.join(STATUSES)}, not {status!r}")
    entries = item.get("amplitude_ids", [])
    if not isinstance(entries, list):
        raise MalformedDeletions(f"{where} ({day}): \"amplitude_ids\" is not a list")
    ids = tuple(sorted({_amplitude_id(f"{where} ({day}) amplitude_ids[{k}]", e) for k, e in enumerate(entries)}))
    app = item.get("app")
    return DeletionJob(day, status, ids, "" if app is None else str(app))


def _amplitude_id(where: str, entry: object) -> int:
    value = entry.get("amplitude_id") if isinstance(entry, dict) else entry  # the documented object, or a bare id
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedDeletions(f"{where}: no integer \"amplitude_id\" ({entry!r})")
    try:
        number = int(value)
    except ValueError:
        raise MalformedDeletions(f"{where}: \"amplitude_id\" is not an integer: {value!r}") from None
    if number <= 0 or number >= 1 << 63:
        raise MalformedDeletions(f"{where}: \"amplitude_id\" out of range: {value!r}")
    return number


def to_apply(jobs: Iterable[DeletionJob], applied: Iterable[tuple[date, str]]) -> list[DeletionJob]:
    """The done jobs not applied yet, oldest first (one entry per job key)."""
    seen = set(applied)
    chosen: dict[tuple[date, str], DeletionJob] = {}
    for job in jobs:
        if job.done and job.key not in seen:
            other = chosen.get(job.key)
            ids = tuple(sorted(set(job.amplitude_ids) | set(other.amplitude_ids if other else ())))
            chosen[job.key] = DeletionJob(job.day, job.status, ids, job.app)
    return [chosen[key] for key in sorted(chosen)]


def for_project(jobs: Iterable[DeletionJob], app: str) -> list[DeletionJob]:
    """The jobs a project's keys listed, named by that project's id (`app`), which is whose rows
    and objects they are applied to and what `<table>_forgets` records. In the one-project form
    (`app` "") a job keeps the app Amplitude gave it, if any."""
    return [DeletionJob(j.day, j.status, j.amplitude_ids, app) if app else j for j in jobs]


def applied_keys(recorded: Iterable[tuple[date, str]], app: str, default: bool) -> set[tuple[date, str]]:
    """Of the jobs recorded as applied, (day, app), the keys of one project's jobs (as
    for_project names them). The default project's jobs recorded before its id was configured
    have no app: they are its own."""
    recorded = set(recorded)
    if not app:
        return recorded
    return {(day, app) for day, recorded_app in recorded if recorded_app == app or (default and not recorded_app)}


def all_ids(jobs: Iterable[DeletionJob]) -> frozenset[int]:
    return frozenset(i for job in jobs for i in job.amplitude_ids)


def rows_per_job(jobs: list[DeletionJob], counts: dict[int, int]) -> dict[tuple[date, str], int]:
    """Rows removed per job, from rows per amplitude id (an id in two jobs counts for the first)."""
    result, taken = {}, set()
    for job in jobs:
        mine = [i for i in job.amplitude_ids if i not in taken]
        taken.update(mine)
        result[job.key] = sum(counts.get(i, 0) for i in mine)
    return result


# ---------------------------------------------------------------- events out of export data
_TOP_ID = re.compile(rb'"amplitude_id"\s*:\s*"?(\d+)')


def line_amplitude_id(line: bytes) -> int | None:
    """The event's top-level amplitude_id, or None. A line that is not a JSON object (a line
    the transform rejects) is read by the first `"amplitude_id": N` in it, so a damaged line of
    a deleted user still goes."""
    try:
        event = json.loads(line)
    except ValueError:
        match = _TOP_ID.search(line)
        return int(match.group(1)) if match else None
    if not isinstance(event, dict):
        return None
    value = event.get("amplitude_id")
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- streamed
# An hour object or a raw zip can hold gigabytes: they are read and written a chunk at a time,
# so a run's memory stays a few MiB whatever their size.
STREAM_CHUNK = 1 << 20
_INFLATED_CHUNK = 4 << 20  # at most this much inflated text per step, however well a chunk compresses


def _inflated(source: BinaryIO) -> Iterator[bytes]:
    """The inflated content of the gzip members read from `source`, one after the other; a
    damaged member ends it where the damage starts (as the transform reads a part)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while data := source.read(STREAM_CHUNK):
        while data:
            try:
                out = inflater.decompress(data, _INFLATED_CHUNK)
            except zlib.error:
                return
            if out:
                yield out
            if inflater.eof:
                data = inflater.unused_data
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = inflater.unconsumed_tail


def inflate(data: bytes) -> bytes:
    """The content of gzip members one after the other, whole (for small objects)."""
    return b"".join(_inflated(io.BytesIO(data)))


def inflated_lines(source: BinaryIO) -> Iterator[bytes]:
    """The lines (with their ends) of the gzip members read from `source`."""
    rest = b""
    for out in _inflated(source):
        block = rest + out
        cut = block.rfind(b"\n") + 1
        if cut:
            yield from block[:cut].splitlines(keepends=True)
        rest = block[cut:]
    if rest:
        yield rest


def _deleted(line: bytes, needles: list[bytes], ids: frozenset[int]) -> bool:
    # Most lines hold none of the ids' digits: only those that do are parsed.
    return any(needle in line for needle in needles) and line_amplitude_id(line) in ids


def count_deleted(source: BinaryIO, ids: frozenset[int]) -> int:
    """How many events of `ids` the gzip members read from `source` hold."""
    needles = [str(i).encode() for i in ids]
    return sum(1 for line in inflated_lines(source) if _deleted(line, needles, ids))


def drop_in_gzip_stream(source: BinaryIO, sink: BinaryIO, ids: frozenset[int]) -> int:
    """Write to `sink` one gzip member of the lines read from `source` without the events of
    `ids`; the number dropped. The same input gives the same bytes (no name, no time in the
    header), so a run into a `ByteCounter` tells the size before the real write."""
    needles = [str(i).encode() for i in ids]
    dropped, batch, batched = 0, [], 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=6, mtime=0) as out:
        for line in inflated_lines(source):
            if _deleted(line, needles, ids):
                dropped += 1
                continue
            batch.append(line)
            batched += len(line)
            if batched >= STREAM_CHUNK:
                out.write(b"".join(batch))
                batch, batched = [], 0
        out.write(b"".join(batch))
    return dropped


class ByteCounter:
    """A sink that counts what is written to it, and passes it on to `sink` when there is one."""

    def __init__(self, sink: BinaryIO | None = None):
        self.sink, self.size = sink, 0

    def write(self, data) -> int:
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class Window(io.RawIOBase):
    """At most `size` bytes of `stream`, from where it stands."""

    def __init__(self, stream: BinaryIO, size: int):
        self.stream, self.left = stream, size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(self.left if size is None or size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


def drop_in_zip(source: BinaryIO, target: BinaryIO, ids: frozenset[int]) -> int:
    """Copy an Export API zip from `source` (seekable) to `target` (a stream; need not seek)
    without the events of `ids`, entry by entry in the same order and under the same names; the
    number of events dropped. Entries that are not gzip NDJSON (`.json.gz`) are copied as they
    are. Each entry is streamed."""
    dropped = 0
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out, \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name")  # a name held twice stays twice
        for info in archive.infolist():
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type = info.compress_type
            copy.external_attr = info.external_attr
            with archive.open(info) as member, out.open(copy, "w", force_zip64=True) as entry:
                if info.filename.endswith(".json.gz"):
                    dropped += drop_in_gzip_stream(member, entry, ids)
                else:
                    shutil.copyfileobj(member, entry, STREAM_CHUNK)
    return dropped


def count_in_zip(source: BinaryIO, ids: frozenset[int]) -> int:
    """How many events of `ids` the `.json.gz` entries of an Export API zip hold."""
    with zipfile.ZipFile(source) as archive:
        total = 0
        for info in archive.infolist():
            if info.filename.endswith(".json.gz"):
                with archive.open(info) as member:
                    total += count_deleted(member, ids)
        return total


def drop_in_rejects(data: bytes, ids: frozenset[int]) -> tuple[bytes, int]:
    """A rejects object (one JSON record per line, the raw line in `raw` or `raw_base64`)
    without the records of `ids`' lines."""
    kept, dropped = [], 0
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
            raw = record["raw"].encode() if "raw" in record else base64.b64decode(record.get("raw_base64", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            raw = line
        if line_amplitude_id(raw) in ids:
            dropped += 1
            continue
        kept.append(line)
    return b"".join(kept), dropped
