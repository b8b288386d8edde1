"""Split an Export API zip into one object per upload hour (pure; works on a ZipFile).

Amplitude writes `{project}/{project}_{YYYY-MM-DD}_{H}#{n}.json.gz`, several `#n` parts per hour.
An hour's parts are copied byte for byte, one after the other, without decompressing; where each
part starts and ends goes into the hour object's metadata (hour_parts), so the transform can
inflate each part on its own and one damaged part costs only its own lines.

Entries are taken by their ZipInfo, never by name: a zip may hold the same name twice, and
opening by name would read the last of them twice and lose the first.
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Iterable

from isal import isal_zlib

from .naming import HourRange, ZipEntry, parse_zip_entry
from .transform import DamagedStream, open_gzip

log = logging.getLogger(__name__)
COPY_CHUNK = 1 << 20
# The hour in a name that is not quite Amplitude's (another folder, another suffix): enough to
# say which hour a refused entry's events belonged to.
_NAMED_HOUR = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})(?:#\d+)?\.json(?:\.gz)?$")


@dataclass(frozen=True)
class Member(ZipEntry):
    """A zip entry of an hour: its parsed name, its ZipInfo and how rejects and logs name it
    (`label`: the entry name; the second entry of a name the zip holds twice is `name~2`)."""

    info: zipfile.ZipInfo | None = field(default=None, compare=False, repr=False)
    label: str = ""


@dataclass(frozen=True)
class Refusal:
    """An entry the export does not write: its name, size (uncompressed bytes in the zip), the
    hour its name gives when it gives one, and why."""

    name: str
    size: int
    hour: datetime | None
    reason: str
    info: zipfile.ZipInfo | None = field(default=None, compare=False, repr=False)

    def record(self, data: bool) -> dict:
        """What the manifest keeps; `data`: whether the entry held anything (holds_data)."""
        return {"name": self.name, "size": self.size, "hour": f"{self.hour:%Y-%m-%dT%H}" if self.hour else None,
                "reason": self.reason, "data": data}


@dataclass
class Plan:
    hours: dict[datetime, list[Member]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)  # never written

    @property
    def refused(self) -> list[str]:
        return [r.reason for r in self.refusals]


def named_hour(name: str) -> datetime | None:
    match = _NAMED_HOUR.search(name)
    if not match or int(match.group(2)) > 23:
        return None
    try:
        day = datetime.strptime(match.group(1), "%Y-%m-%d")
    except ValueError:
        return None
    return day.replace(hour=int(match.group(2)), tzinfo=timezone.utc)


def plan(entries: Iterable[zipfile.ZipInfo | str], requested: HourRange) -> Plan:
    """Group entries (ZipInfos, or bare names) by upload hour; refuse odd names and hours outside
    the request. Entries of one name are all kept, told apart in their labels."""
    hours: dict[datetime, list[Member]] = defaultdict(list)
    refusals = []
    seen: Counter = Counter()
    for item in entries:
        info = item if isinstance(item, zipfile.ZipInfo) else None
        name = info.filename if info else item
        if name.endswith("/"):
            continue  # a folder entry carries no data
        size = info.file_size if info else 0
        try:
            entry = parse_zip_entry(name)
        except ValueError as why:
            refusals.append(Refusal(name, size, named_hour(name), str(why), info))
            continue
        if entry.hour not in requested:
            reason = f"entry {name!r} is for hour {entry.hour:%Y-%m-%dT%H}, outside {requested}"
            refusals.append(Refusal(name, size, entry.hour, reason, info))
            continue
        seen[name] += 1
        label = name if seen[name] == 1 else f"{name}~{seen[name]}"
        hours[entry.hour].append(Member(name, entry.project_id, entry.hour, entry.partition, info, label))
    # Stable: entries of one name stay in the zip's order.
    ordered = {hour: sorted(parts, key=lambda e: (len(e.partition), e.partition)) for hour, parts in sorted(hours.items())}
    return Plan(ordered, refusals)


@dataclass(frozen=True)
class Copied:
    label: str
    size: int  # compressed bytes written for the part
    error: str = ""  # the zip's complaint while reading it (a bad CRC...), if any


class EntryReader:
    """A zip entry's bytes as the export copies them: read by its ZipInfo, and when the zip cannot
    read it to its end (a bad CRC, a broken deflate stream, a bad local header), the bytes read
    before the damage, then zeros up to the size the zip declares.

    The size stays the one the part index was written with (from the ZipInfos, before the copy);
    the zeros are not gzip, so the transform rejects that part, and that part only. The stub and
    the demo's count read entries through this too, so all of them see the same bytes."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
        self._archive, self._info = archive, info
        self._member = None
        self.size = 0  # bytes handed out so far
        self.error = ""  # the zip's complaint, if any

    def read(self, size: int = COPY_CHUNK) -> bytes:
        size = COPY_CHUNK if size is None or size < 0 else size
        if not self.error:
            try:
                if self._member is None:
                    self._member = self._archive.open(self._info)
                data = self._member.read(size)
            except (zipfile.BadZipFile, zlib.error, EOFError) as why:
                self.error = f"{type(why).__name__}: {why}"
            else:
                self.size += len(data)
                return data
        pad = max(0, min(size, self._info.file_size - self.size))
        self.size += pad
        return bytes(pad)

    def close(self) -> None:
        if self._member is not None:
            self._member.close()

    def __enter__(self) -> "EntryReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def copy_hour(archive: zipfile.ZipFile, entries: list[ZipEntry], out: BinaryIO) -> list[Copied]:
    """Append each entry's gzip bytes (EntryReader) to `out`, one after the other; what was
    written per entry."""
    copied = []
    for entry in entries:
        info = getattr(entry, "info", None) or archive.getinfo(entry.name)
        with EntryReader(archive, info) as member:
            while chunk := member.read(COPY_CHUNK):
                out.write(chunk)
        copied.append(Copied(getattr(entry, "label", "") or entry.name, member.size, member.error))
    return copied


# ISA-L's fastest level: re-compressing is the export's whole cost for a part it splits.
SPLIT_LEVEL = 1


def split_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limit: int, out: BinaryIO) -> list[Copied]:
    """Append the entry's lines to `out` as gzip members of about `limit` compressed bytes each,
    each cut after a whole line (a member ends at the first line end once it holds `limit`
    bytes); the pieces written, each labelled with the line it starts at.

    For a part too big for one transform invocation: each piece becomes a unit of its own.
    The deflater holds back some output, so a piece can run that much past `limit`. Raises
    DamagedStream (or the zip's error) when the entry cannot be read to its end; the caller then
    copies it whole, so the transform counts the damage as it would unsplit."""
    pieces: list[Copied] = []
    state = {"deflater": None, "size": 0, "line": 1}

    def start() -> None:
        state["deflater"] = isal_zlib.compressobj(SPLIT_LEVEL, isal_zlib.DEFLATED, 31)
        state["size"] = 0
        pieces.append(Copied(f"{label} from line {state['line']}", 0))

    def feed(data: bytes) -> None:
        if state["deflater"] is None:
            start()
        written = state["deflater"].compress(data)
        out.write(written)
        state["size"] += len(written)
        state["line"] += data.count(b"\n")

    def finish() -> None:
        if state["deflater"] is not None:
            tail = state["deflater"].flush()
            out.write(tail)
            pieces[-1] = Copied(pieces[-1].label, state["size"] + len(tail))
            state["deflater"], state["size"] = None, 0

    with archive.open(info) as member:
        source = open_gzip(member)
        while data := source.read(COPY_CHUNK):
            while data:
                end = data.find(b"\n") + 1 if state["size"] >= limit else 0
                if not end:
                    feed(data)
                    break
                feed(data[:end])  # the line that crosses the limit ends this piece
                finish()
                data = data[end:]
    finish()
    return pieces


def damage(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """Why the entry cannot be read to its end as gzip ("" when it can): an inflate-only pass,
    so that only a readable part is split (split_entry) and a damaged one is copied as it is."""
    try:
        with archive.open(info) as member:
            source = open_gzip(member)
            while source.read(COPY_CHUNK):
                pass
    except (DamagedStream, zipfile.BadZipFile, zlib.error, EOFError) as why:
        return f"{type(why).__name__}: {why}"
    return ""


def holds_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo | None) -> bool:
    """Whether a refused entry holds anything but whitespace, inflated (with the transform's own
    reader) when it is gzip; reading stops at the first byte that is not. One the zip or gzip
    cannot read counts as data: what it held is not known, and not loaded."""
    if info is None:
        return True
    if info.file_size == 0:
        return False
    try:
        with archive.open(info) as member:
            gzipped = member.read(2) == b"\x1f\x8b"
        with archive.open(info) as member:
            source = open_gzip(member) if gzipped else member
            while chunk := source.read(COPY_CHUNK):
                if chunk.strip():
                    return True
        return False
    except (zipfile.BadZipFile, zlib.error, EOFError, DamagedStream):
        return True
