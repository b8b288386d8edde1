"""When an upload hour of Amplitude's own cloud-storage export is complete, and which of its
parts make it (pure; docs/native-export.md).

Amplitude writes an hour as several part objects, best effort, at most hourly, and a backfill on
its side sends hours again, with the same part names or others. No object says an hour is
complete. So:

- An hour is *ready* once Amplitude has it complete (`naming.complete_at`) and no part of it
  was written for `quiet` seconds.
- A *delivery* is the parts of an hour written until it was ready. A part written once the hour
  was ready on the parts before it (Amplitude sent the hour again, after it was assembled)
  starts a new delivery, and the hour is its latest delivery: the new set replaces the earlier
  one whole, and the earlier parts are superseded.
- The set of parts an hour object was made from is recorded in it (`digest`: each part's name,
  size and checksum). When every live part of the hour is exactly that set (nothing new, or a
  part sent again with the same bytes), nothing is written. Any other set writes the hour object
  again, which replaces the hour's rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .naming import NativePart, complete_at

DIGEST_KEY = "native_digest"


@dataclass(frozen=True)
class ListedPart:
    """A live part object as its listing gives it."""

    part: NativePart
    created: datetime  # when this generation was written
    size: int  # bytes (gzip) of the object
    checksum: str = ""  # the object's crc32c (or md5) as GCS reports it
    generation: int = 0

    @property
    def name(self) -> str:
        return self.part.name


@dataclass(frozen=True)
class HourPlan:
    """What to do with one upload hour: `state` is "ready" (assemble `parts`), "current" (the
    live hour object was made from `parts`), "waiting" (not before `ready_at`) or "none" (no part)."""

    hour: datetime
    state: str
    parts: tuple[ListedPart, ...] = ()
    superseded: tuple[ListedPart, ...] = ()
    ready_at: datetime | None = None
    digest: str = ""
    deliveries: int = 0

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def part_order(part: ListedPart) -> tuple:
    """Parts in their partition's order (`#9` before `#10`), the same every time they are listed."""
    return (len(part.part.partition), part.part.partition, part.name)


def deliveries(parts: list[ListedPart], quiet: timedelta, complete: datetime) -> list[list[ListedPart]]:
    """The parts grouped into deliveries, oldest first: a part written when the hour was already
    ready on the parts before it (at or after `complete`, and `quiet` or more after the part
    before it) starts a new one."""
    groups: list[list[ListedPart]] = []
    last: datetime | None = None
    for part in sorted(parts, key=lambda p: (p.created, p.name)):
        if last is None or part.created >= max(complete, last + quiet):
            groups.append([])
        groups[-1].append(part)
        last = part.created
    return groups


def digest(parts: list[ListedPart] | tuple[ListedPart, ...]) -> str:
    """What identifies a set of parts: each part's name, size and checksum (a part written again
    with the same bytes is the same part)."""
    text = "\n".join(f"{p.name}\t{p.size}\t{p.checksum or p.generation}" for p in sorted(parts, key=lambda p: p.name))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_hour(hour: datetime, parts: list[ListedPart], now: datetime, min_data_age_hours: float,
              quiet: timedelta, assembled: str = "") -> HourPlan:
    """Decide one hour from its live parts (all of them, whatever the delivery); `assembled` is
    the digest recorded in its live hour object ("" when there is none)."""
    if not parts:
        return HourPlan(hour, "none")
    if assembled and assembled == digest(parts):
        return HourPlan(hour, "current", tuple(sorted(parts, key=part_order)), digest=assembled, deliveries=1)
    complete = complete_at(hour, min_data_age_hours)
    ready_at = max(complete, max(p.created for p in parts) + quiet)
    groups = deliveries(parts, quiet, complete)
    if now < ready_at:
        return HourPlan(hour, "waiting", ready_at=ready_at, deliveries=len(groups))
    latest = tuple(sorted(groups[-1], key=part_order))
    older = tuple(sorted((p for group in groups[:-1] for p in group), key=part_order))
    state = "current" if assembled == digest(latest) else "ready"
    return HourPlan(hour, state, latest, older, ready_at, digest(latest), len(groups))


@dataclass
class ScanSummary:
    """What one look at Amplitude's bucket found and did, per hour (the manifest's content)."""

    written: dict[str, int] = field(default_factory=dict)  # hour object → parts, written now
    current: dict[str, int] = field(default_factory=dict)  # hour object → parts, already made from this set
    waiting: dict[str, str] = field(default_factory=dict)  # hour (YYYY-MM-DDTHH) → ready at (ISO)
    superseded: list[str] = field(default_factory=list)  # parts of earlier deliveries, not loaded
    ignored: list[str] = field(default_factory=list)  # objects under the prefix that are not parts
