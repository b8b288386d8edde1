"""The export step when Amplitude's own cloud-storage export is the source: its part objects,
in the bucket Amplitude writes to, into the same hour objects the Export API path writes
(`export/YYYY-MM-DD/HH.json.gz`, the parts' gzip bytes one after the other, with a part index),
so the same transform and load land them. Which hours, and which parts, `native` decides.

A run looks at a range of upload hours (a scheduled run: the last `native_lookback_hours`), lists
each day's parts once per app folder, and writes the hour object of every ready hour whose parts
differ from the ones its live hour object was made from. Writing is conditional on the live
generation just read, so two runs at once never both replace an hour.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from google.cloud import storage

from . import gcs, hour_parts, naming, native
from .config import Config
from .errors import TransientError
from .naming import HourRange
from .export_step import ExportResult
from .monitoring import hour_fields

log = logging.getLogger(__name__)
COPY_CHUNK = 1 << 20


def app_folders(source: storage.Bucket, prefix: str) -> list[str]:
    """The project (app) ids with a folder under the prefix; merged-id folders (`-{org}/`) and
    anything else that is not a number are not projects."""
    folder = naming.native_folder(prefix)
    apps = [p[len(folder):].rstrip("/") for p in gcs.folders(source, folder)]
    return sorted(a for a in apps if a.isdigit())


def list_parts(source: storage.Bucket, prefix: str, hours: HourRange, summary: native.ScanSummary) -> dict[datetime, list[native.ListedPart]]:
    """Every live part of every hour of `hours`, by hour (one listing per app and day)."""
    found: dict[datetime, list[native.ListedPart]] = defaultdict(list)
    days = sorted({h.date() for h in hours.hours()})
    for app in app_folders(source, prefix):
        for day in days:
            day_prefix = f"{naming.native_folder(prefix)}{app}/{app}_{day:%Y-%m-%d}_"
            for blob in gcs.listing(source, day_prefix):
                part = naming.parse_native_part(blob.name, prefix)
                if part is None:
                    summary.ignored.append(blob.name)
                    continue
                if part.hour in hours:
                    found[part.hour].append(listed(part, blob))
    return found


def listed(part: naming.NativePart, blob: storage.Blob) -> native.ListedPart:
    created = blob.time_created or blob.updated or datetime.now(timezone.utc)
    return native.ListedPart(part, created, int(blob.size or 0), blob.crc32c or blob.md5_hash or "", int(blob.generation or 0))


def scan_range(hours: HourRange, config: Config, bucket: storage.Bucket, source: storage.Bucket, now: datetime,
               run: str = "") -> ExportResult:
    """Look at `hours` in Amplitude's bucket; write the hour objects that are ready and changed,
    then the run's manifest. Stops between two hours after `export_budget_seconds` (the retry of
    the same event goes on: hours already written are current then)."""
    started = time.monotonic()
    summary = native.ScanSummary()
    quiet = timedelta(seconds=config.native_quiet_seconds)
    parts = list_parts(source, config.native_prefix, hours, summary)
    for name in summary.ignored:
        log.warning("native export object ignored", extra={"fields": {"object": naming.gs_uri(source.name, name),
                    "reason": "not named as a part of Amplitude's event export"}})
    for hour in hours.hours():
        if hour not in parts:
            continue
        name = naming.hour_object_name(hour)
        live = gcs.current(bucket, name)
        assembled = (live.metadata or {}).get(native.DIGEST_KEY, "") if live is not None else ""
        plan = native.plan_hour(hour, parts[hour], now, config.min_data_age_hours, quiet, assembled)
        if plan.state == "current":
            summary.current[name] = len(plan.parts)
            summary.superseded += [p.name for p in plan.superseded]
            continue
        if plan.state == "waiting":
            summary.waiting[f"{hour:%Y-%m-%dT%H}"] = plan.ready_at.isoformat()
            log.info("hour waiting for Amplitude", extra={"fields": hour_fields(hour, name) | {
                "parts": len(parts[hour]), "ready_at": plan.ready_at.isoformat(),
                "reason": "no part may arrive for the quiet period after Amplitude has the hour complete"}})
            continue
        if summary.written and time.monotonic() - started > config.export_budget_seconds:
            raise TransientError(f"stopped after {time.monotonic() - started:.0f} s and {len(summary.written)} hours, to stay "
                                 f"within the function's time limit; the retry of this run goes on from {hour:%Y-%m-%dT%H}")
        if plan.superseded:
            summary.superseded += [p.name for p in plan.superseded]
            log.warning("parts superseded", extra={"fields": hour_fields(hour, name) | {
                "parts": [p.name for p in plan.superseded], "deliveries": plan.deliveries,
                "reason": "Amplitude sent the hour again; its latest delivery replaces the earlier parts"}})
        if write_hour(bucket, source, config, plan, live):
            summary.written[name] = len(plan.parts)
        else:
            summary.current[name] = len(plan.parts)
    result = ExportResult(hours, hours={**summary.current, **summary.written})
    record = result.record(run) | {"source": naming.gs_uri(source.name, naming.native_folder(config.native_prefix)),
                                   "written": sorted(summary.written), "waiting": summary.waiting,
                                   "superseded": summary.superseded, "ignored": summary.ignored}
    gcs.put(bucket, naming.manifest_name(hours), json.dumps(record, indent=1), "application/json")
    return result


def write_hour(bucket: storage.Bucket, source: storage.Bucket, config: Config, plan: native.HourPlan,
               live: storage.Blob | None) -> bool:
    """Write the hour object from the plan's parts over `live` (the hour object the plan was made
    against); True when written. The write is conditional on that generation, so a concurrent
    run that wrote it first wins (and this one compares its parts again on its next look)."""
    hour, name = plan.hour, naming.hour_object_name(plan.hour)
    metadata = {
        "upload_hour": f"{hour:%Y-%m-%dT%H}",
        "parts": str(len(plan.parts)),
        "source_native": naming.gs_uri(source.name, naming.native_folder(config.native_prefix)),
        native.DIGEST_KEY: plan.digest,
    } | hour_parts.encode([(p.name, p.size) for p in plan.parts])
    try:
        with gcs.writer(bucket, name, metadata, "application/gzip", if_generation_match=live.generation if live else 0) as out:
            for part in plan.parts:
                copy_part(source, part, out)
    except gcs.GenerationChanged:
        log.info("hour object written meanwhile", extra={"fields": hour_fields(hour, name) | {
            "reason": "another run replaced it first; the next look compares its parts again"}})
        return False
    log.info("hour object written", extra={"fields": hour_fields(hour, name) | {
        "parts": len(plan.parts), "bytes": plan.size, "replaced": live is not None, "source": "native_export"}})
    return True


def copy_part(source: storage.Bucket, part: native.ListedPart, out) -> None:
    """Append exactly the listed generation of a part; a part gone or changed meanwhile is retried."""
    copied = gcs.copy_generation(source, part.name, part.generation or None, out, COPY_CHUNK)
    if copied is None:
        raise TransientError(f"{naming.gs_uri(source.name, part.name)} generation {part.generation} is gone; "
                             "the retry lists the hour's parts again")
    if copied != part.size:
        raise TransientError(f"{naming.gs_uri(source.name, part.name)}: read {copied} bytes, listed {part.size}")
