"""Rejects: the lines transform quarantined (`rejects/YYYY-MM-DD/HH.json`; another Amplitude
project's `rejects/<id>/YYYY-MM-DD/HH.json`), and how to replay them.

Replaying means reprocessing the whole hour from its export object, not re-feeding the rejected
lines: the load replaces an upload hour as a unit, so loading only the fixed lines would delete
the hour's good rows. Re-running the hour with the fixed code reads every line again, loads the
lines it can now shape together with the rest, and rewrites (or deletes) the rejects object.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from google.cloud import storage

from .. import gcs, naming
from . import calls
from ..naming import HourRange
from .reprocess import Redrop, reprocess

_REJECTS_HOUR = naming.parse_import_object  # same YYYY-MM-DD/HH layout, different prefix and suffix


@dataclass(frozen=True)
class Reject:
    hour: datetime
    line: int
    reason: str
    source_object: str
    raw: bytes
    source_generation: str = ""

    def preview(self, width: int = 60) -> str:
        """The raw line as a person can read it in a table: printable, one line, cut at `width`."""
        try:
            text = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(self.raw)} bytes, not UTF-8>"
        text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
        return text if len(text) <= width else text[: width - 1] + "…"

    def as_json(self) -> dict:
        record = {"hour": f"{self.hour:%Y-%m-%dT%H}", "line": self.line, "reason": self.reason,
                  "source_object": self.source_object, "source_generation": self.source_generation}
        try:
            record["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(self.raw).decode()
        return record


def parse_hour(name: str, project: str = "") -> datetime | None:
    """The hour of a `rejects/[<project>/]YYYY-MM-DD/HH.json` object of `project` ("" the
    default project), or None."""
    if not name.startswith(naming.REJECTS_PREFIX):
        return None
    return _REJECTS_HOUR(naming.IMPORT_PREFIX + name.removeprefix(naming.REJECTS_PREFIX), project)


def parse_records(hour: datetime, data: bytes, source_generation: str = "") -> list[Reject]:
    """The NDJSON reject records transform writes (transform.reject_record)."""
    found = []
    for line in data.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        raw = base64.b64decode(record["raw_base64"]) if "raw_base64" in record else record.get("raw", "").encode()
        found.append(Reject(hour, int(record["line"]), record["reason"], record.get("source_object", ""), raw,
                            source_generation))
    return found


def read(bucket: storage.Bucket, hours: HourRange, project: str = "") -> list[Reject]:
    """Every reject record of the range's hours of `project` (its segment, "" the default one),
    in hour and line order."""
    found, units = [], {}
    for day in sorted({h.date() for h in hours.hours()}):
        for blob in bucket.list_blobs(prefix=f"{naming.rejects_prefix(project)}{day}/", **calls.storage()):
            unit = _unit(blob.name, project)
            if unit is not None and unit.hour in hours:
                units.setdefault(unit.hour, []).append(blob)
            hour = parse_hour(blob.name, project)
            if hour is None or hour not in hours:
                continue
            generation = (blob.metadata or {}).get("source_generation", "")
            found.extend(parse_records(hour, blob.download_as_bytes(**calls.storage()), generation))
    for hour, blobs in units.items():  # a fanned-out hour: its newest fan-out's units' rejects
        newest = max(gcs.source_generation(blob) for blob in blobs)
        for blob in blobs:
            if gcs.source_generation(blob) == newest:
                found.extend(parse_records(hour, blob.download_as_bytes(**calls.storage()), str(newest)))
    return sorted(found, key=lambda r: (r.hour, r.source_object, r.line))


def _unit(name: str, project: str) -> naming.Unit | None:
    """The unit of a fanned-out hour's `rejects/…/HH/unit-KKKK-of-PPPP.json`, or None."""
    if not name.startswith(naming.REJECTS_PREFIX):
        return None
    unit = naming.parse_unit_import(naming.IMPORT_PREFIX + name.removeprefix(naming.REJECTS_PREFIX))
    return unit if unit is not None and unit.project == project else None


def reason_kind(reason: str) -> str:
    """A reason without its particulars, to count alike reasons together."""
    head = reason.split(":", 1)[0]
    return head if len(head) <= 60 else head[:59] + "…"


def by_kind(records: list[Reject]) -> Counter:
    return Counter(reason_kind(r.reason) for r in records)


def replay(bucket: storage.Bucket, records: list[Reject], project: str = "") -> list[Redrop]:
    """Reprocess, from the project's export/ objects, every hour that has rejects (see the
    module's docstring for why)."""
    return reprocess(bucket, sorted({r.hour for r in records}), "export", project)
