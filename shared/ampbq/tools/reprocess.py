"""Reprocess: re-drop an hour's object so the chain runs again from that step, for that hour only.

Re-dropping rewrites the object onto itself: GCS makes a new generation and sends a finalize
event, and the steps are idempotent per (object, generation), so the new generation is processed
once and replaces the hour. A rewrite with a request body takes its editable metadata from the
body only, so the body repeats the object's metadata (plus `reprocessed_at`, which also makes the
rewrite a real change). The precondition on the generation keeps a concurrent writer's newer
object from being overwritten with an older copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from google.api_core import exceptions as gexc
from google.cloud import bigquery, storage

from .. import gcs, naming
from . import calls, inventory
from ..config import Config
from ..errors import PermanentError
from ..naming import HourRange
from .status import SETTLED, HourStatus, classify

STAGES = {"export": naming.hour_object_name, "import": naming.import_object_name}
# The editable properties a hour or import object can carry (see gcs.writer and transform_step.transform_hour).
_KEPT = ("content_type", "content_encoding", "content_disposition", "content_language", "cache_control")


@dataclass(frozen=True)
class Redrop:
    hour: datetime
    name: str
    old_generation: int | None
    new_generation: int | None = None
    error: str = ""


def redrop(bucket: storage.Bucket, name: str, now: datetime | None = None) -> tuple[int, int]:
    """Rewrite `name` onto itself; return (old generation, new generation)."""
    source = bucket.get_blob(name, **calls.storage())
    if source is None:
        raise PermanentError(f"gs://{bucket.name}/{name} does not exist")
    target = bucket.blob(name)
    for attribute in _KEPT:
        setattr(target, attribute, getattr(source, attribute))
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    target.metadata = dict(source.metadata or {}) | {"reprocessed_at": stamp}
    token = None
    try:
        while True:  # large objects may take several calls; same location and class is one
            token, _, _ = target.rewrite(source, token=token, if_generation_match=source.generation, **calls.storage())
            if token is None:
                break
    except (gexc.PreconditionFailed, gexc.NotFound):
        raise PermanentError(f"{name} changed while it was being re-dropped; run the command again") from None
    except gexc.GoogleAPICallError as error:
        raise gcs.classify(error) from error
    return source.generation, target.generation


def reprocess(bucket: storage.Bucket, hours: list[datetime], stage: str, project: str = "") -> list[Redrop]:
    """Re-drop each hour's object of `stage` of one project (its segment, "" the default one);
    hours without one are reported, not failed over."""
    done = []
    for hour in hours:
        name = STAGES[stage](hour, project)
        if stage == "import" and bucket.get_blob(name, **calls.storage()) is None:
            name = _unit_import(bucket, hour, project) or name
        if bucket.get_blob(name, **calls.storage()) is None:
            done.append(Redrop(hour, name, None, error=_MISSING_HINT[stage].format(hour=hour)))
            continue
        try:
            old, new = redrop(bucket, name)
            done.append(Redrop(hour, name, old, new))
        except PermanentError as why:
            done.append(Redrop(hour, name, None, error=str(why)))
    return done


def _unit_import(bucket: storage.Bucket, hour: datetime, project: str = "") -> str | None:
    """A fanned-out hour's unit import object made from its live hour object: dropping any one
    of them again loads the hour again from all of them (docs/transform.md#fan-out)."""
    source = bucket.get_blob(naming.hour_object_name(hour, project), **calls.storage())
    if source is None:
        return None
    for blob in bucket.list_blobs(prefix=naming.unit_import_prefix(hour, project), **calls.storage()):
        if naming.parse_unit_import(blob.name) is not None and gcs.source_generation(blob) == source.generation:
            return blob.name
    return None


_MISSING_HINT = {
    "export": "no hour object: re-export it with `ampbq backfill --start {hour:%Y-%m-%d} --hours {hour:%H}`",
    "import": "no import object: reprocess it --from export",
}


def existing_hours(bucket: storage.Bucket, hours: HourRange, stage: str, project: str = "") -> list[datetime]:
    """The hours of the range that have an object for `stage` (a day may have fewer than 24)."""
    parse = naming.parse_hour_object if stage == "export" else naming.parse_import_object
    prefix = naming.export_prefix(project) if stage == "export" else naming.import_prefix(project)
    found = set()
    for day in inventory.days_of(hours):
        for blob in bucket.list_blobs(prefix=f"{prefix}{day}/", **calls.storage()):
            hour = parse(blob.name, project)
            unit = naming.parse_unit_import(blob.name) if stage == "import" else None
            if unit is not None and unit.project == project:
                hour = unit.hour  # a fanned-out hour
            if hour is not None and hour in hours:
                found.add(hour)
    return sorted(found)


def wait(hours: list[datetime], bucket: storage.Bucket, bq: bigquery.Client, config: Config, timeout: float,
         poll: float = 2.0, progress: Callable[[int, int], None] | None = None, project: str = "") -> list[HourStatus] | None:
    """Poll until each hour is settled; the statuses, or None on timeout."""
    if not hours:
        return []
    span = HourRange(min(hours), max(hours))
    deadline = time.monotonic() + timeout
    while True:
        found = inventory.read(bucket, bq, config, span, counts=False, project=config.amplitude_project(project)).hours
        statuses = [classify(e) for e in found if e.hour in hours]
        settled = sum(s.state in SETTLED for s in statuses)
        if progress:
            progress(settled, len(statuses))
        if settled == len(statuses):
            return statuses
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)
