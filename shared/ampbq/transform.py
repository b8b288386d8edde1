"""The transform step's core: gzip NDJSON of one upload hour in, BigQuery-ready NDJSON out.

It works on file objects, so the same code runs on GCS streams in the function and on local
files in `ampbq transform`. Memory stays bounded by the read chunk and its rows; nothing
holds the whole hour. Every non-blank input line is counted, and ends either as a row or as a
reject record (line number, reason, the raw line), so rows + rejected == events always holds.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

import orjson
from isal import isal_zlib

from . import repeated_keys
from .bytescan import opening_brackets, scan_chunk
from .hour_parts import Part, Slice
from .repeated_keys import RepeatedKey, UnrepresentableNumber, colons_match_all
from .shaping import MAX_NESTING, Lineage, RejectedEvent, Shaper

READ_CHUNK = 1 << 20
# The fast path decodes and encodes this many bytes of whole lines (about 15 events) per call:
# few enough that the run's objects stay in the CPU cache (a 1 MiB run is ~25% slower).
RUN_BYTES = 32 << 10
# BigQuery rejects JSON rows over 100 MB; an Amplitude event is a few KB. Anything this long is
# not an event; it is quarantined whole rather than parsed.
MAX_LINE_BYTES = 8 << 20
# "JSON: Maximum row size 100 MB" (cloud.google.com/bigquery/quotas, load jobs): one longer row
# fails the whole load. A fast-path row is its line re-encoded plus the lineage: strings come out
# no longer, a number at most 4.5 times (`1e15` is written `1000000000000000.0`), and only lines
# up to MAX_LINE_BYTES take it, so its rows stay far below. The general path can write a line's
# object as escaped text in a STRING column, so its rows are measured.
MAX_ROW_BYTES = 100 * 1000 * 1000
# Room for the per-part counts in the import object's metadata (8 KiB in all, keys and values).
PART_COUNTS_BUDGET = 4 << 10


@dataclass
class PartCounts:
    part: str
    events: int
    rows: int
    rejected: int


@dataclass
class Counts:
    events: int = 0
    rows: int = 0
    rejected: int = 0
    lines: int = field(default=0, compare=False)  # lines read, blank ones too: where the next part's numbering goes on
    parts: list[PartCounts] = field(default_factory=list, compare=False)  # when the hour's parts are known

    def as_metadata(self) -> dict[str, str]:
        metadata = {"events": str(self.events), "rows": str(self.rows), "rejected": str(self.rejected)}
        if len(self.parts) > 1:
            metadata["part_counts"] = part_counts_text(self.parts)
        return metadata

    def log_fields(self) -> dict:
        fields = {"events": self.events, "rows": self.rows, "rejected": self.rejected}
        if self.parts:
            fields["parts"] = [vars(p) for p in self.parts]
        return fields


def part_counts_text(parts: list[PartCounts]) -> str:
    """`events:rows:rejected` of every part, in the hour object's part order (`70:70:0,51:50:1`).

    An hour of too many parts for PART_COUNTS_BUDGET lists only its parts with rejects, by
    position (`rejected-only;3=51:50:1`), and cut short with `;…` if even that is too long; the
    transform's log line has them all."""
    text = ",".join(f"{p.events}:{p.rows}:{p.rejected}" for p in parts)
    if len(text) <= PART_COUNTS_BUDGET:
        return text
    text = "rejected-only;" + ",".join(f"{i}={p.events}:{p.rows}:{p.rejected}" for i, p in enumerate(parts) if p.rejected)
    if len(text) <= PART_COUNTS_BUDGET:
        return text
    return text[: text.rfind(",", 0, PART_COUNTS_BUDGET - 2)] + ";…"


def decode(line: bytes):
    """Parse one line on the general path, exactly: the stdlib parser keeps integers beyond 64 bits
    whole (orjson would round them to floats) and refuses an object that repeats a key."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedEvent("line is not valid UTF-8") from None
    try:
        return repeated_keys.loads(text)
    except RepeatedKey as repeated:
        raise RejectedEvent(f"line is JSON but its {repeated}") from None
    except UnrepresentableNumber as number:
        raise RejectedEvent(f"line is JSON but {number}: no column or JSON value can hold it exactly") from None
    except RecursionError:
        raise RejectedEvent(f"line is nested too deep to parse, far beyond BigQuery's JSON limit of {MAX_NESTING} levels") from None
    except ValueError as error:
        raise RejectedEvent(f"line is not valid JSON: {error}") from None


def encode(row: dict) -> bytes:
    """The row as one line of JSON, without its newline."""
    try:
        return orjson.dumps(row)
    except TypeError:  # an integer beyond 64 bits inside a JSON column
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()


def reject_record(line_number: int, reason: str, raw: bytes, source_object: str, part: str = "") -> bytes:
    record = {"line": line_number, "reason": reason, "source_object": source_object}
    if part:
        record["part"] = part  # the zip entry the line came from
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode()
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def transform_stream(lines: BinaryIO, out: BinaryIO, rejects: BinaryIO, lineage: Lineage, first_line: int = 0,
                     part: str = "", shaper: Shaper | None = None) -> Counts:
    """Shape every line of the decompressed `lines` stream into `out`; bad lines go to `rejects`.

    Lines are numbered from `first_line + 1` (a later part of an hour goes on from the earlier
    ones); `part` names the zip entry in reject records, and `shaper` may be shared across parts.

    Lines take the fast path when their event has the common shape: a run of about RUN_BYTES of
    whole lines at a time (`Shaper.shape_lines_unscreened`), or, in a run it declines, line by line
    (`Shaper.shape_line_unscreened`). The others take the general path (`decode`, `Shaper.shape`,
    `encode`). The fast path's repeated-key screen runs once per chunk of lines (one count over
    all of them); a chunk that fails it is shaped again with the screen line by line. Each
    chunk's rows are written at once (~1 MiB).
    """
    chunks = _ChunkShaper(shaper or Shaper(lineage), lineage.source_object, part)
    counts = Counts()
    number = first_line
    try:
        for block in _blocks(lines):
            chunk = chunks.shape(block, number)
            number += block.line_count
            _write(chunk, counts, out, rejects)
    except DamagedStream as broken:
        number = _record_damage(broken, number, counts, rejects, lineage.source_object, part)
    counts.lines = number
    return counts


class _Block(NamedTuple):
    """One read chunk's whole lines, and what one numpy pass over them found."""
    text: bytes  # the lines, then the start of the next line (`tail`)
    end: int  # text[:end] is whole lines, each ending in a newline
    tail: bytes  # text[end:]: the part of a line that waits for the next chunk
    line_count: int  # lines in text[:end], blank ones too
    objects_only: bool  # every line is one `{…}`, so a run decoder cannot shift a line number
    deep: bool  # some line may nest deeper than MAX_NESTING

    def lines(self) -> list[bytes]:
        return self.text[:self.end].split(b"\n")[:self.line_count]


def _blocks(lines: BinaryIO):
    """The stream as _Blocks of whole lines, READ_CHUNK of inflated text at a time: memory stays
    bounded by one chunk, and a line cut by the chunk's end waits for the next one."""
    tail = b""
    while True:
        chunk_bytes = lines.read(READ_CHUNK)
        if chunk_bytes:
            text = tail + chunk_bytes
            end = text.rfind(b"\n") + 1
            tail = text[end:]
            line_count, objects_only, deep = scan_chunk(text, end, MAX_NESTING)
            yield _Block(text, end, tail, line_count, objects_only, deep)
        elif tail:
            # The last line, without a newline: shaped on its own, not in a run.
            yield _Block(tail, len(tail), b"", 1, False, opening_brackets(tail) > MAX_NESTING)
            return
        else:
            return


def _write(chunk: "_Chunk", counts: Counts, out: BinaryIO, rejects: BinaryIO) -> None:
    """Count a final chunk and write it: its rejects, then its rows in one write."""
    counts.events += chunk.events
    counts.rows += chunk.events - len(chunk.rejects)
    counts.rejected += len(chunk.rejects)
    for record in chunk.rejects:
        rejects.write(record)
    if chunk.joined:
        out.write(chunk.joined)


def _record_damage(broken: DamagedStream, number: int, counts: Counts, rejects: BinaryIO, source_object: str,
                   part: str) -> int:
    """A truncated or corrupt gzip: the lines before the damage are kept; what follows it cannot
    be read, so the damage itself is one rejected line (rows + rejected == events still holds).
    Returns the line number it took."""
    counts.events += 1
    counts.rejected += 1
    where = f"part {part} is damaged" if part else "compressed stream is damaged"
    reason = f"{where} after line {number}: {broken}"
    number += 1
    rejects.write(reject_record(number, reason, b"", source_object, part))
    return number


class _ChunkShaper:
    """Shapes one _Block at a time into a _Chunk, choosing the path for each line: runs of lines,
    line by line, or the general path; and re-shapes a chunk the repeated-key screen doubts."""

    def __init__(self, shaper: Shaper, source_object: str, part: str):
        self.shaper = shaper
        self.source_object = source_object
        self.part = part

    def shape(self, block: _Block, number: int) -> "_Chunk":
        """The block's lines after line `number`, shaped, rows joined (`_Chunk.joined`)."""
        shaper = self.shaper
        fast_line, screened_line = shaper.shape_line_unscreened, shaper.shape_line
        if block.deep:
            # Some line may nest deeper than BigQuery's JSON allows, which msgspec would take:
            # the chunk goes line by line, and lines with that many brackets take the general path.
            fast_line, screened_line = _shallow_only(fast_line), _shallow_only(screened_line)
        chunk = None
        # Runs need every line to be one `{…}` (scan_chunk), none over the limit and none deep.
        if block.objects_only and not block.deep and block.end <= MAX_LINE_BYTES:
            chunk = self.shape_runs(block.text, block.end, number, block.line_count)
        if chunk is None:
            chunk = self.shape_each(block.lines(), number, fast_line, _Chunk())
        chunk.joined = b"".join(chunk.rows)
        # One colon count over the whole text against one over the rows; the tail and the lines
        # the general path took have no fast row, so they are counted apart.
        if chunk.fast and not colons_match_all(
                block.text, chunk.joined, chunk.fast, shaper.colons_added,
                lines_apart=[block.tail, *chunk.lines_apart], rows_apart=chunk.rows_apart):
            # Some line may repeat a key: shape the chunk again, screening line by line;
            # the doubtful lines go through the general path, which parses them exactly.
            chunk = self.shape_each(block.lines(), number, screened_line, _Chunk())
            chunk.joined = b"".join(chunk.rows)
        return chunk

    def shape_runs(self, text: bytes, end: int, number: int, line_count: int) -> "_Chunk | None":
        """Shape the `line_count` whole lines of `text[:end]`, each one `{…}`, after line `number`,
        a run at a time. None when some line held more than one JSON value, which the run decoder
        would have taken as more than one event."""
        shape_run, shape_line = self.shaper.shape_lines_unscreened, self.shaper.shape_line_unscreened
        chunk = _Chunk()
        view = memoryview(text)
        position = 0
        numbered = number
        declined_before = False
        while position < end:
            stop = text.find(b"\n", position + RUN_BYTES, end) + 1 or end
            run = shape_run(view[position:stop], numbered + 1)
            if run is None:
                if declined_before:
                    # Two runs in a row held a line the fast path declines: such lines are common
                    # here, and runs would mostly be decoded twice, so the chunk ends line by line.
                    stop = end
                pieces = text[position:stop - 1].split(b"\n")
                self.shape_each(pieces, numbered, shape_line, chunk)
                numbered += len(pieces)
            else:
                chunk.rows.append(run[0])
                chunk.fast += run[1]
                numbered += run[1]
            declined_before = run is None
            position = stop
        return chunk if numbered - number == line_count else None

    def shape_each(self, pieces: list[bytes], number: int, shape_fast, chunk: "_Chunk") -> "_Chunk":
        """Shape the lines after line `number` one by one into `chunk`: `shape_fast` where it
        takes the line, the general path where it declines (None)."""
        fast = 0
        add = chunk.rows.append
        for raw in pieces:
            number += 1
            if not raw.strip():
                continue
            raw = raw.rstrip(b"\r")
            if len(raw) <= MAX_LINE_BYTES and (row := shape_fast(raw, number)) is not None:
                add(row)
                add(b"\n")
                fast += 1
            else:
                chunk.lines_apart.append(raw)
                self.general_path(raw, number, chunk)
        chunk.fast += fast
        return chunk

    def general_path(self, raw: bytes, number: int, chunk: "_Chunk") -> None:
        """The exact path, the definition both paths must agree with: parse with the stdlib,
        shape, encode; any failure becomes the line's reject record, never a failed hour."""
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise RejectedEvent(f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES} byte limit")
            fields = self.shaper.shape(decode(raw), number)
            row = encode(fields)
            if len(row) > MAX_ROW_BYTES:
                raise RejectedEvent(oversized_row(row, fields))
        except RejectedEvent as why:
            reason = str(why)
        except (RecursionError, TypeError, ValueError) as why:
            # Input no rule foresaw (nesting too deep for the parsers...): quarantine the line
            # rather than fail the hour on every retry.
            reason = f"cannot shape the line: {type(why).__name__}: {why}"
        else:
            chunk.rows_apart.append(row)
            chunk.rows += (row, b"\n")
            return
        chunk.rejects.append(reject_record(number, reason, raw, self.source_object, self.part))


def transform_parts(raw: BinaryIO, parts: list[Part] | None, out: BinaryIO, rejects: BinaryIO, lineage: Lineage,
                    whole: bool = True, first_line: int = 0) -> Counts:
    """Transform an hour object of `parts` (hour_parts.decode; None: unknown, one part), each
    part inflated on its own: damage in one ends only that part, and the next starts clean at
    its own first byte. Line numbers run on across the parts, as in the hour object. `whole`:
    `parts` are all of `raw`'s (False for a unit of a big hour: some of them, read by range);
    lines are numbered from `first_line + 1`."""
    if not parts or (len(parts) == 1 and whole):
        # The whole object is the one part: read it straight, without a Slice in between.
        counts = transform_stream(open_gzip(raw), out, rejects, lineage, first_line=first_line,
                                  part=parts[0].label if parts else "")
        if parts:
            counts.parts = [PartCounts(parts[0].label, counts.events, counts.rows, counts.rejected)]
        return counts
    shaper = Shaper(lineage)
    total = Counts(lines=first_line)
    for part in parts:
        counts = transform_stream(open_gzip(Slice(raw, part.start, part.size)), out, rejects, lineage,
                                  first_line=total.lines, part=part.label, shaper=shaper)
        total.events += counts.events
        total.rows += counts.rows
        total.rejected += counts.rejected
        total.lines = counts.lines
        total.parts.append(PartCounts(part.label, counts.events, counts.rows, counts.rejected))
    return total


def count_events(compressed: BinaryIO) -> int:
    """The events `transform_stream` counts in one gzip part: its non-blank lines, the damage
    (if any) counting as one, the partial line before it not at all. Reads as the transform does
    (READ_CHUNK at a time), so a damaged part counts exactly as the transform will."""
    stream = open_gzip(compressed)
    events, tail = 0, b""
    try:
        while chunk := stream.read(READ_CHUNK):
            text = tail + chunk
            end = text.rfind(b"\n") + 1
            events += sum(1 for line in text[:end].split(b"\n") if line.strip())
            tail = text[end:]
    except DamagedStream:
        return events + 1
    return events + (1 if tail.strip() else 0)


def _shallow_only(shape_line):
    """`shape_line` for lines of at most MAX_NESTING opening brackets (so nested no deeper);
    None (the general path, which measures the nesting) for the others."""
    def shape(raw: bytes, number: int) -> bytes | None:
        return None if opening_brackets(raw) > MAX_NESTING else shape_line(raw, number)
    return shape


def oversized_row(row: bytes, fields: dict) -> str:
    """Why a row over MAX_ROW_BYTES is rejected, naming its largest field."""
    largest = max(fields, key=lambda column: len(encode({column: fields[column]})))
    return (f"its row would be {len(row)} bytes, over BigQuery's {MAX_ROW_BYTES} byte limit for a JSON row "
            f"(the largest field is {largest!r})")


@dataclass
class _Chunk:
    """One chunk of lines, shaped: its rows, and what the repeated-key screen and counts need."""
    rows: list = field(default_factory=list)  # encoded rows and their newlines, in line order
    fast: int = 0  # rows from the fast path
    lines_apart: list = field(default_factory=list)  # lines the general path took
    rows_apart: list = field(default_factory=list)  # the rows it made of them
    rejects: list = field(default_factory=list)  # reject records, written once the chunk is final
    joined: bytes = b""  # the rows joined, once the chunk is final: one write

    @property
    def events(self) -> int:
        return self.fast + len(self.lines_apart)  # every non-blank line took one path or the other


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
                # At most `size` bytes out (0: no limit); the input it did not reach waits in
                # unconsumed_tail, so memory stays bounded by the size asked for.
                data = self._inflater.decompress(compressed, max(size, 0))
            except (zlib.error, isal_zlib.error) as error:
                raise DamagedStream(f"not a valid gzip stream: {error}") from None
            self._pending = self._inflater.unconsumed_tail
            self._inside_member = not self._inflater.eof
            if self._inflater.eof:  # a member ended: the next one starts in unused_data
                self._pending = self._inflater.unused_data
                self._inflater = isal_zlib.decompressobj(31)
            if data:
                return data


def open_gzip(fileobj: BinaryIO) -> GzipStream:
    return GzipStream(fileobj)


GZIP_MAGIC = b"\x1f\x8b"


def open_local(fileobj: io.BufferedReader) -> BinaryIO:
    """A local file's lines: decompressed if it is gzip (it starts with 1f 8b), else as they are
    (plain NDJSON, as samples usually come). The hour objects in GCS are always gzip."""
    return open_gzip(fileobj) if fileobj.peek(2)[:2] == GZIP_MAGIC else fileobj


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
