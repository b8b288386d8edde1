"""Backfill: ask for a range of days, one `daily-runs` message per day, and wait for them to land.

Publishing lets the deployed chain do the days in parallel (one export instance per day, then
one transform and one load per hour). `run_locally` does the same work in this process, for when
no chain is deployed or to debug one day. Either way a day has landed when its export finished
(its manifest is new) and every hour it covers is settled (see `status.SETTLED`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import requests
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery, storage

from .. import bigquery as bq_adapter
from .. import export_step, gcs, load, load_step, naming, transform_step
from . import calls, inventory
from ..config import AmplitudeProject, Config
from ..errors import AmpbqError, Ignored, PermanentError
from ..events import StorageObject
from ..naming import HOUR, HourRange
from .status import COMPLETE, SETTLED, HourStatus, classify, summary


@dataclass(frozen=True)
class Plan:
    ranges: list[HourRange]
    whole_days: bool
    warnings: list[str] = field(default_factory=list)

    def bodies(self, project: str | None = None) -> list[dict]:
        """The `daily-runs` message of each range (see events.parse_run_request): every project's,
        or with `project` (an Amplitude project id) that project's only."""
        only = {"project": project} if project else {}
        if self.whole_days:
            return [{"date": f"{r.start:%Y-%m-%d}"} | only for r in self.ranges]
        return [{"start": naming.api_hour(r.start), "end": naming.api_hour(r.end)} | only for r in self.ranges]


def parse_hours(text: str) -> tuple[int, int]:
    """`HH` or `HH-HH` (inclusive) → (first, last) hour of the day."""
    first, _, last = text.partition("-")
    try:
        span = (int(first), int(last or first))
    except ValueError:
        raise ValueError(f"--hours must be HH or HH-HH, not {text!r}") from None
    if not 0 <= span[0] <= span[1] <= 23:
        raise ValueError(f"--hours must be within 00-23 and in order, not {text!r}")
    return span


def plan(first: date, last: date, hours: tuple[int, int] | None, now: datetime, min_age_hours: float) -> Plan:
    """One range per day; refuse hours that are not over yet, warn about those Amplitude may lack."""
    if last < first:
        raise PermanentError(f"--end {last} is before --start {first}")
    ranges = []
    for n in range((last - first).days + 1):
        day = HourRange.day(first + timedelta(days=n))
        ranges.append(day if hours is None else HourRange(day.start + hours[0] * HOUR, day.start + hours[1] * HOUR))
    current = naming.utc_hour(now)
    future = [r for r in ranges if r.end >= current]
    if future:
        raise PermanentError(f"{future[0]} includes hours that are not over yet (it is {now:%Y-%m-%dT%H:%MZ}); "
                             "end the backfill earlier or pass --hours")
    warnings = []
    for r in ranges:
        ready_at = naming.complete_at(r.end, min_age_hours)
        if now < ready_at:
            warnings.append(f"{r} ended less than {min_age_hours:g} h ago: Amplitude may not have all of it yet, and "
                            f"the export step refuses it until {ready_at:%Y-%m-%dT%H:%MZ}")
    return Plan(ranges, hours is None, warnings)


# ---------------------------------------------------------------- publish
def publish(project: str, topic: str, bodies: list[dict]) -> list[str]:
    """Publish each body to the run topic; return the message ids (raises if any publish fails)."""
    from google.cloud import pubsub_v1  # the functions never publish: keep it out of their imports

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    futures = [publisher.publish(path, json.dumps(body).encode(), **calls.publish()) for body in bodies]
    return [future.result(timeout=calls.result_seconds(60)) for future in futures]


def _generation(bucket: storage.Bucket, name: str) -> int | None:
    blob = bucket.get_blob(name, **calls.storage())
    return blob.generation if blob else None


@dataclass
class Run:
    """One requested range, and what its export had written before it was requested."""

    hours: HourRange
    manifest_before: int | None = None
    dead_letter_before: int | None = None
    statuses: list[HourStatus] = field(default_factory=list)
    error: str = ""
    done: bool = False
    project: AmplitudeProject = field(default_factory=AmplitudeProject)
    named: bool = False  # the line names the project (a deployment of several)

    @property
    def ok(self) -> bool:
        return self.done and not self.error and all(s.state in COMPLETE for s in self.statuses)

    def line(self) -> str:
        """One line per run for the person who started it, e.g. `20240131T00..20240131T23  landed  loaded=24`."""
        verdict = "landed" if self.ok else "PROBLEM" if self.done else "running"
        counts = summary(self.statuses)
        project = f"project={self.project.label}  " if self.named else ""
        return f"{self.hours}  {project}{verdict}  " + (self.error or " ".join(f"{s.value}={n}" for s, n in counts.items()))


def summary_line(runs: list[Run]) -> str:
    failed = sum(run.done and not run.ok for run in runs)
    return (f"backfill: days={len(runs)} landed={sum(run.ok for run in runs)} failed={failed} "
            f"running={sum(not run.done for run in runs)}")


def snapshot(bucket: storage.Bucket, ranges: list[HourRange], projects: tuple[AmplitudeProject, ...] = (AmplitudeProject(),),
             named: bool = False) -> list[Run]:
    """Note each range's manifest and export dead letter of each project as they are, so a new
    one can be told apart: one run per range and project."""
    return [Run(r, _generation(bucket, naming.manifest_name(r, p.segment)),
                _generation(bucket, _export_dead_letter(r, p.segment)), project=p, named=named)
            for r in ranges for p in projects]


def _export_dead_letter(hours: HourRange, project: str = "") -> str:
    return naming.dead_letter_name("export", naming.export_dead_letter_subject(hours, project))


def wait(runs: list[Run], bucket: storage.Bucket, bq: bigquery.Client, config: Config, timeout: float,
         poll: float = 5.0, progress: Callable[[int, int], None] | None = None) -> bool:
    """Poll until every run is done (exported and settled); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for run in runs:
            if not run.done:
                check(run, bucket, bq, config)
        finished = sum(run.done for run in runs)
        if progress:
            progress(finished, len(runs))
        if finished == len(runs):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)


def check(run: Run, bucket: storage.Bucket, bq: bigquery.Client, config: Config) -> None:
    segment = run.project.segment
    if _generation(bucket, naming.manifest_name(run.hours, segment)) in (None, run.manifest_before):
        dead = bucket.get_blob(_export_dead_letter(run.hours, segment), **calls.storage())
        if dead is not None and dead.generation != run.dead_letter_before:
            run.error = "export failed: " + inventory.error_text(dead)
            run.done = True
        return
    found = inventory.read(bucket, bq, config, run.hours, counts=False, project=config.amplitude_project(segment))
    run.statuses = [classify(evidence) for evidence in found.hours]
    run.done = all(s.state in SETTLED for s in run.statuses)


# ---------------------------------------------------------------- in this process
def run_locally(run: Run, config: Config, bucket: storage.Bucket, bq: bigquery.Client) -> None:
    """Export the range, then transform and load each hour object it wrote, here and now.

    A failure is recorded on the run (no dead letter is written here: the person is watching).
    """
    try:
        result = export_step.export_range(run.hours, config, bucket, requests.Session(), datetime.now(timezone.utc),
                                    project=config.amplitude_project(run.project.segment))
    except AmpbqError as why:
        run.error, run.done = f"export failed: {why}", True
        return
    failed = []
    for name in sorted([*result.hours, *result.emptied]):
        try:
            chain_hour(name, config, bucket, bq)
        except _STEP_FAILURES as why:
            failed.append(f"{name}: {str(why).splitlines()[0]}")
    if failed:
        run.error, run.done = f"{len(failed)} hour(s) failed here: " + "; ".join(failed), True


def chain_hour(name: str, config: Config, bucket: storage.Bucket, bq: bigquery.Client) -> None:
    """Transform and load one hour object.

    The deployed functions react to the same objects, so they may do a step at the same time
    (the same staging table, the same commit); a step that fails while the other side
    finished it is not an error. The wait after the run checks the outcome either way.
    """
    source = bucket.get_blob(name)
    if source is None:
        raise PermanentError(f"{name} vanished before it could be transformed")
    project, hour = naming.scoped_hour_object(name)
    try:
        transform_step.transform_hour(StorageObject(bucket.name, name, source.generation, "ampbq-cli"), bucket,
                                      config.transform_unit_bytes)
    except Ignored:
        pass  # already transformed
    except _STEP_FAILURES:
        if _import_source(bucket, hour, project) != str(source.generation):
            raise
    target = bucket.get_blob(naming.import_object_name(hour, project))
    if target is None or (target.metadata or {}).get("source_generation") != str(source.generation):
        target = _transform_units(bucket, source.generation, hour, project)
    if target is None:
        return  # another worker is writing it; its load will follow
    try:
        load_step.load_hour(StorageObject(bucket.name, target.name, target.generation, "ampbq-cli"), config, bucket, bq)
    except Ignored:
        pass  # a newer generation is loaded, or this one was loaded meanwhile
    except _STEP_FAILURES:
        entry = bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour, project))
        if not entry or entry[0]["import_generation"] < target.generation:
            raise


def _transform_units(bucket: storage.Bucket, generation: int, hour: datetime, project: str):
    """A big hour fanned out into units: transform each of generation `generation`'s units here
    (one the functions did already is skipped), and return one unit's import object, whose load
    loads them all; None when the hour did not fan out."""
    tasks = [(blob, unit) for blob in gcs.listing(bucket, naming.unit_prefix(naming.EXPORT_PREFIX, hour, project))
             if gcs.source_generation(blob) == generation and (unit := naming.parse_unit_task(blob.name))]
    if not tasks:
        return None
    for task, unit in tasks:
        try:
            transform_step.transform_unit(StorageObject(bucket.name, task.name, task.generation, "ampbq-cli"), unit, bucket)
        except Ignored:
            pass  # transformed already, by the functions or an earlier run
    return bucket.get_blob(naming.unit_import_name(tasks[-1][1]))


# Any failure of a step (ours, or a Google API's), a race with the deployed functions or not:
# chain_hour tells the two apart by the outcome, run_locally reports what is left.
_STEP_FAILURES = (AmpbqError, GoogleAPICallError)


def _import_source(bucket: storage.Bucket, hour: datetime, project: str = "") -> str | None:
    target = bucket.get_blob(naming.import_object_name(hour, project))
    return (target.metadata or {}).get("source_generation") if target else None
