"""Split an Export API zip into one gzip stream per upload hour (pure; works on a ZipFile).

Amplitude writes `{project}/{project}_{YYYY-MM-DD}_{H}#{n}.json.gz`, several `#n` parts per hour.
Concatenated gzip members are a valid gzip stream, so an hour's parts are copied byte for byte,
one after the other, without decompressing.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Iterable

from .naming import HourRange, ZipEntry, parse_zip_entry

log = logging.getLogger(__name__)
COPY_CHUNK = 1 << 20


@dataclass
class Plan:
    hours: dict[datetime, list[ZipEntry]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "name: reason", never written


def plan(names: Iterable[str], requested: HourRange) -> Plan:
    """Group entry names by upload hour; refuse odd names and hours outside the request."""
    hours: dict[datetime, list[ZipEntry]] = defaultdict(list)
    refused = []
    for name in names:
        if name.endswith("/"):
            continue  # a folder entry carries no data
        try:
            entry = parse_zip_entry(name)
        except ValueError as why:
            refused.append(str(why))
            continue
        if entry.hour not in requested:
            refused.append(f"entry {name!r} is for hour {entry.hour:%Y-%m-%dT%H}, outside {requested}")
            continue
        hours[entry.hour].append(entry)
    ordered = {hour: sorted(parts, key=lambda e: (len(e.partition), e.partition)) for hour, parts in sorted(hours.items())}
    return Plan(ordered, refused)


def copy_hour(archive: zipfile.ZipFile, entries: list[ZipEntry], out: BinaryIO) -> int:
    """Append each entry's gzip bytes to `out`; return the number of compressed bytes copied."""
    copied = 0
    for entry in entries:
        with archive.open(entry.name) as member:
            shutil.copyfileobj(member, out, COPY_CHUNK)
        copied += archive.getinfo(entry.name).file_size
    return copied
