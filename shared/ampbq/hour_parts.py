"""Where each zip entry ("part") sits inside an hour object, kept in the object's metadata (pure).

An hour object is its parts' gzip bytes one after the other. Knowing each part's byte range, the
transform inflates every part on its own, so one damaged part costs only its own lines.

Encoding (metadata key `part_index`), compact because GCS allows 8 KiB of custom metadata per
object, keys and values together: the entry names' common prefix and suffix once, then each
part's middle and compressed size, in the object's order:

    203138/203138_2020-11-24_9#|.json.gz|70:48211,627:51002

Names are %-quoted, so `|`, `,`, `:` and `+` never occur in them. When the index of every part
would not fit in INDEX_BUDGET (an hour of many hundreds of parts), adjacent parts are grouped, as
few per group as fits: `70+2:150000` is the part `…#70…` and the 2 parts after it, 150000 bytes
together. A group is inflated as one stream, so damage in it costs the rest of that group, never
another group's lines.

An hour object without the key, or with an index that does not add up to the object's size
(written by an older version, or dropped by hand), is read as one part.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, unquote

INDEX_KEY = "part_index"
# Leaves about 2 KiB of the 8 KiB for the object's other metadata (upload_hour, parts, source_zip).
INDEX_BUDGET = 6 << 10
_SAFE = "/#~._-"


@dataclass(frozen=True)
class Part:
    """A part's byte range in the hour object and how rejects and logs name it."""

    label: str
    start: int
    size: int


def _middles(labels: list[str]) -> tuple[str, str, list[str]]:
    prefix = os.path.commonprefix(labels)
    rest = [label[len(prefix):] for label in labels]
    suffix = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    return prefix, suffix, [r[: len(r) - len(suffix)] for r in rest]


def encode(parts: list[tuple[str, int]]) -> dict[str, str]:
    """The metadata recording `parts` ((label, compressed size), in the object's order)."""
    if not parts:
        return {}
    labels = [quote(label, safe=_SAFE) for label, _ in parts]
    prefix, suffix, middles = _middles(labels)
    sizes = [size for _, size in parts]
    per_group = 1
    while True:
        entries = []
        for first in range(0, len(parts), per_group):
            more = min(per_group, len(parts) - first) - 1
            group = f"{middles[first]}+{more}" if more else middles[first]
            entries.append(f"{group}:{sum(sizes[first:first + more + 1])}")
        value = f"{prefix}|{suffix}|{','.join(entries)}"
        if len(value) + len(INDEX_KEY) <= INDEX_BUDGET:
            return {INDEX_KEY: value}
        if per_group >= len(parts):
            return {}  # not even one group fits (names that long are not Amplitude's): read as one part
        # Grow the groups just enough for the next try to be about within budget.
        per_group = min(len(parts), max(per_group + 1, per_group * len(value) // INDEX_BUDGET))


def decode(metadata: dict[str, str] | None, object_size: int | None) -> list[Part] | None:
    """The parts recorded in an hour object's metadata; None when it records none it can trust."""
    value = (metadata or {}).get(INDEX_KEY)
    if not value:
        return None
    try:
        prefix, suffix, listing = value.split("|")
        parts, start = [], 0
        for entry in listing.split(","):
            middle, size_text = entry.rsplit(":", 1)
            middle, _, more = middle.partition("+")
            label = unquote(prefix + middle + suffix)
            if more:
                label = f"{label} and the {int(more)} parts after it"
            size = int(size_text)
            if size < 0:
                return None
            parts.append(Part(label, start, size))
            start += size
    except ValueError:
        return None
    if object_size is not None and start != object_size:
        return None  # the bytes are not the ones indexed: reading it whole is the safe way
    return parts


class Slice:
    """A read-only view of `size` bytes of `source` from `start`: one part of an hour object.

    Reads go straight through to `source` (a GCS BlobReader or a local file), seeking only when
    the previous part was left unfinished (damaged), so consecutive parts stream as one read.
    """

    def __init__(self, source: BinaryIO, start: int, size: int):
        self._source, self._position, self._left = source, start, size

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if self._source.tell() != self._position:
            self._source.seek(self._position)
        data = self._source.read(self._left if size is None or size < 0 else min(size, self._left))
        self._position += len(data)
        self._left -= len(data)
        return data


# Unit names carry 4 digits, and one BigQuery load job takes at most 10,000 source URIs.
MAX_UNITS = 9999


def units(parts: list[Part], limit: int) -> list[list[Part]]:
    """The hour's parts cut into units of consecutive parts of at most `limit` compressed bytes
    each (a part bigger than that is a unit of its own), for one transform invocation each; at
    most MAX_UNITS of them (a limit that small is raised as far as it must be)."""
    limit = max(limit, -(-sum(p.size for p in parts) // MAX_UNITS))
    planned = _cut(parts, limit)
    while len(planned) > MAX_UNITS:
        limit *= 2
        planned = _cut(parts, limit)
    return planned


def plan_id(planned: list[list[Part]]) -> str:
    """What names one cutting of an hour object into units: two fan-outs of the same generation
    with another unit size are two plans, whose units are never loaded together."""
    text = "|".join(",".join(f"{p.start}+{p.size}" for p in unit) for unit in planned)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cut(parts: list[Part], limit: int) -> list[list[Part]]:
    planned: list[list[Part]] = []
    size = 0
    for part in parts:
        if planned and size + part.size <= limit:
            planned[-1].append(part)
            size += part.size
        else:
            planned.append([part])
            size = part.size
    return planned


def unit_task(hour_object: str, generation: int, parts: list[Part]) -> str:
    """The body of a unit's task object: which generation of which hour object, which parts."""
    return json.dumps({"hour_object": hour_object, "generation": generation,
                       "parts": [[p.label, p.start, p.size] for p in parts]})


def parse_unit_task(text: bytes | str) -> tuple[str, int, list[Part]]:
    """(hour object name, its generation, the unit's parts) of a task body; ValueError when it is
    not one."""
    try:
        record = json.loads(text)
        parts = [Part(str(label), int(start), int(size)) for label, start, size in record["parts"]]
        return str(record["hour_object"]), int(record["generation"]), parts
    except (KeyError, TypeError, ValueError) as why:
        raise ValueError(f"not a unit task ({why})") from None
