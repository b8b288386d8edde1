"""The transform step's core: gzip NDJSON of one upload hour in, BigQuery-ready NDJSON out.

It works on file objects, so the same code runs on GCS streams in the function and on local
files in `ampbq transform`. Memory stays bounded by the read chunk and the write batch; nothing
holds the whole hour. Every non-blank input line is counted, and ends either as a row or as a
reject record (line number, reason, the raw line), so rows + rejected == events always holds.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import orjson
from isal import isal_zlib

from .shaping import Lineage, RejectedEvent, Shaper

READ_CHUNK = 1 << 20
WRITE_BATCH_BYTES = 4 << 20
# BigQuery rejects JSON rows over 100 MB; an Amplitude event is a few KB. Anything this long is
# not an event; it is quarantined whole rather than parsed.
MAX_LINE_BYTES = 8 << 20


@dataclass
class Counts:
    events: int = 0
    rows: int = 0
    rejected: int = 0

    def as_metadata(self) -> dict[str, str]:
        return {"events": str(self.events), "rows": str(self.rows), "rejected": str(self.rejected)}


def iter_lines(stream: BinaryIO, chunk_size: int = READ_CHUNK) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without its newline) for every non-blank line."""
    number = 0
    tail = b""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for line in lines:
            number += 1
            if line.strip():
                yield number, line.rstrip(b"\r")
    if tail.strip():
        yield number + 1, tail.rstrip(b"\r")


def _strict_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# orjson reads integers beyond 64 bits as floats, silently losing digits; a line with a run of 20
# digits may hold one, so it takes the exact (slower) stdlib path. The run is found by mapping every
# digit to "0" and everything else to "x" and searching for twenty "0"s: a C loop over the bytes,
# ten times faster than the regular expression \d{20}.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_TWENTY_DIGITS = b"0" * 20


def has_long_number(line: bytes) -> bool:
    return _TWENTY_DIGITS in line.translate(_DIGITS_AS_ZERO)


def decode(line: bytes):
    """Parse one line; orjson first, the stdlib where JSON allows more than orjson keeps exactly."""
    try:
        if has_long_number(line):
            raise orjson.JSONDecodeError("may hold an integer beyond 64 bits", "", 0)
        return orjson.loads(line)
    except orjson.JSONDecodeError as first:
        try:
            return json.loads(line.decode("utf-8"), parse_constant=_strict_constant)
        except UnicodeDecodeError:
            raise RejectedEvent("line is not valid UTF-8") from None
        except ValueError:
            raise RejectedEvent(f"line is not valid JSON: {first}") from None


def encode(row: dict) -> bytes:
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer beyond 64 bits inside a JSON column
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def reject_record(line_number: int, reason: str, raw: bytes, source_object: str) -> bytes:
    record = {"line": line_number, "reason": reason, "source_object": source_object}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode()
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def transform_stream(lines: BinaryIO, out: BinaryIO, rejects: BinaryIO, lineage: Lineage) -> Counts:
    """Shape every line of the decompressed `lines` stream into `out`; bad lines go to `rejects`.

    Each line takes the fast path (`Shaper.shape_line`) when its event has the common shape, and
    the general one (`decode`, `Shaper.shape`, `encode`) otherwise; rows are written in batches
    of about WRITE_BATCH_BYTES.
    """
    shaper = Shaper(lineage)
    shape_line, shape = shaper.shape_line, shaper.shape
    events = rows = rejected = 0
    batch = bytearray()
    number = last_line = 0
    tail = b""
    try:
        # iter_lines, inlined: a generator's resume per line costs more than the split itself.
        while True:
            chunk = lines.read(READ_CHUNK)
            if chunk:
                pieces = (tail + chunk).split(b"\n")
                tail = pieces.pop()
            elif tail:
                pieces, tail = [tail], b""
            else:
                break
            for raw in pieces:
                number += 1
                if not raw.strip():
                    continue
                raw = raw.rstrip(b"\r")
                last_line = number
                events += 1
                try:
                    if len(raw) > MAX_LINE_BYTES:
                        raise RejectedEvent(f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES} byte limit")
                    row = shape_line(raw, number)
                    if row is None:
                        batch += encode(shape(decode(raw), number))
                    else:
                        batch += row
                        batch += b"\n"
                except RejectedEvent as why:
                    rejected += 1
                    rejects.write(reject_record(number, str(why), raw, lineage.source_object))
                    continue
                except (RecursionError, TypeError, ValueError) as why:
                    # Input no rule foresaw (nesting too deep for the parsers...): quarantine the
                    # line rather than fail the hour on every retry.
                    rejected += 1
                    reason = f"cannot shape the line: {type(why).__name__}: {why}"
                    rejects.write(reject_record(number, reason, raw, lineage.source_object))
                    continue
                rows += 1
            if len(batch) >= WRITE_BATCH_BYTES:
                out.write(batch)
                batch = bytearray()
    except DamagedStream as broken:
        # A truncated or corrupt gzip: the lines before the damage are kept; what follows it
        # cannot be read, so the damage itself is recorded as one rejected line.
        events += 1
        rejected += 1
        reason = f"compressed stream is damaged after line {last_line}: {broken}"
        rejects.write(reject_record(last_line + 1, reason, b"", lineage.source_object))
    if batch:
        out.write(batch)
    return Counts(events, rows, rejected)


class DamagedStream(Exception):
    """The compressed data itself is truncated or corrupt (not a failed read: those propagate)."""


class GzipStream:
    """Decompress a gzip stream of one or more members, chunk by chunk, with ISA-L's zlib.

    Unlike gzip.GzipFile it hands out everything that decompresses before a truncation, then
    raises EOFError, so the lines before the damage are kept.
    """

    def __init__(self, fileobj: BinaryIO, chunk_size: int = READ_CHUNK):
        self._source = fileobj
        self._chunk_size = chunk_size
        self._inflater = isal_zlib.decompressobj(31)
        self._pending = b""
        self._inside_member = False

    def read(self, size: int = -1) -> bytes:
        while True:
            compressed, self._pending = self._pending or self._source.read(self._chunk_size), b""
            if not compressed:
                if self._inside_member:
                    raise DamagedStream("gzip stream ends in the middle of a member (truncated)")
                return b""
            try:
                data = self._inflater.decompress(compressed)
            except (zlib.error, isal_zlib.error) as error:
                raise DamagedStream(f"not a valid gzip stream: {error}") from None
            self._inside_member = not self._inflater.eof
            if self._inflater.eof:  # a member ended: the next one starts in unused_data
                self._pending = self._inflater.unused_data
                self._inflater = isal_zlib.decompressobj(31)
            if data:
                return data


def open_gzip(fileobj: BinaryIO) -> GzipStream:
    return GzipStream(fileobj)


class LazyWriter:
    """A write-only file that opens its target on the first write, so no empty rejects objects."""

    def __init__(self, opener):
        self._opener = opener
        self._file = None
        self._context = None

    @property
    def opened(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> int:
        if self._file is None:
            self._context = self._opener()
            self._file = self._context.__enter__()
        return self._file.write(data)

    def __enter__(self) -> "LazyWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)
