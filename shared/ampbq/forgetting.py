"""Forgetting the users Amplitude deleted: the deletion jobs it reports done are applied to the
table (and so to every view on it) and to every object in the bucket that holds their events.

How, for the done jobs not applied yet (their amplitude ids together):

1. The upload hours the table holds their rows in (plus those of an earlier attempt that did not
   finish, kept in `forget/running.json`).
2. Each such hour's object under export/ is re-written without their events. The new generation
   runs through transform and load like any re-dropped hour, so the load replaces the hour's rows
   and the load ledger records counts that reconcile (events = rows + rejected, as for any load).
3. Every raw zip under export/raw/ whose range holds such an hour is re-written without them too,
   so a later reprocess or re-unpack of a backup cannot bring them back.
4. Once the ledger shows each hour's new generation loaded, rows still left (an hour whose hour
   object is gone, deleted by the lifecycle rule after `export_retention_days`) are deleted in
   one transaction under the load's commit lease that also takes them out of the ledger's counts
   and fingerprint, so `ampbq status` still reconciles the hour; such an hour's import/ and
   rejects/ objects are re-written or removed as well.
5. The bucket is versioned: a replaced or deleted object stays readable as a noncurrent
   generation until the lifecycle rule removes it (`noncurrent_version_retention_days`). So every
   noncurrent generation of the hours' export/, import/ (with the transform's scratch objects) and
   rejects/ objects and of the raw zips is deleted, by generation. "Object Versioning": in a
   versioned bucket, deleting or replacing the live version makes it noncurrent, and a
   noncurrent version is deleted only by a request naming its generation
   (https://cloud.google.com/storage/docs/object-versioning,
   https://cloud.google.com/storage/docs/using-versioned-objects#delete).
6. The jobs are recorded in `<table>_forgets`: a row per job (upload_hour NULL) and a row per
   (job, upload hour) with the rows removed. A job recorded there is not applied again.

Every Amplitude project of the deployment (docs/projects.md) is its own: its deletion jobs are
listed with its own keys from its own region, and applied to its rows only (`app` = its id; in
the one-project form every row is the one project's) and to its objects only (its export/,
import/ and rejects/ names, its raw zips), its ledger rows and its own `forget/` marker. A job is
recorded under the project's id (`app`; none in the one-project form). One project whose list
cannot be read or whose jobs fail does not stop the others: `forget` reports each project's
outcome.

Nothing in the transform filters by amplitude id: once the backups are re-written there is no
copy left to bring a deleted user back, and Amplitude's own re-exports no longer hold them (it
gives a deleted user who comes back a new amplitude id). Amplitude deletes a user's events up to
when its job ran, so events a user sends after that are kept, as Amplitude keeps them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime

import requests
from google.cloud import bigquery, storage

from . import amplitude, deletions, gcs, hour_parts, load, naming
from . import bigquery as bq_adapter
from .config import AmplitudeProject, Config
from .deletions import DeletionJob
from .errors import PermanentError, TransientError
from .lease import Lease

log = logging.getLogger(__name__)
RUNNING = "forget/running.json"  # what an unfinished attempt touched, so its retry cleans it too
FORGET_BUDGET_SECONDS = 420.0  # the export function has 540 s; a retry goes on from RUNNING
POLL_SECONDS = 1.0


def running_name(project: str = "") -> str:
    """The default project's marker is RUNNING; another project's is forget/<id>/running.json."""
    return f"forget/{naming.check_project(project)}/running.json" if project else RUNNING


@dataclass
class ForgetResult:
    considered: int = 0  # jobs Amplitude listed
    jobs: list[DeletionJob] = field(default_factory=list)  # applied by this run
    hours: list[datetime] = field(default_factory=list)
    rows_removed: int = 0
    objects_rewritten: list[str] = field(default_factory=list)
    generations_deleted: int = 0

    def log_fields(self) -> dict:
        return {"jobs_listed": self.considered, "jobs_applied": len(self.jobs),
                "job_days": [f"{j.day}" for j in self.jobs], "amplitude_ids": len(deletions.all_ids(self.jobs)),
                "hours": len(self.hours), "rows_removed": self.rows_removed,
                "objects_rewritten": len(self.objects_rewritten), "generations_deleted": self.generations_deleted}


@dataclass
class ProjectOutcome:
    """One project's part of a run: what it applied, or the error that stopped it."""

    project: AmplitudeProject
    result: ForgetResult | None = None
    error: Exception | None = None

    def log_fields(self) -> dict:
        named = {"project": self.project.label}
        if self.error is not None:
            return named | {"error": str(self.error), "error_kind": "transient" if isinstance(self.error, TransientError)
                            else "permanent"}
        return named | self.result.log_fields()


@dataclass
class ForgetRun:
    """A run over the projects: each project's outcome, in the deployment's order."""

    outcomes: list[ProjectOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ProjectOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def results(self) -> list[ForgetResult]:
        return [o.result for o in self.outcomes if o.result is not None]

    def log_fields(self) -> dict:
        done = self.results
        total = {"jobs_listed": sum(r.considered for r in done), "jobs_applied": sum(len(r.jobs) for r in done),
                 "rows_removed": sum(r.rows_removed for r in done),
                 "objects_rewritten": sum(len(r.objects_rewritten) for r in done),
                 "generations_deleted": sum(r.generations_deleted for r in done)}
        return total | {"projects": [o.log_fields() for o in self.outcomes], "projects_failed": len(self.failed)}


def forget(config: Config, bucket: storage.Bucket, bq: bigquery.Client, session: requests.Session,
           start_day: date, end_day: date, budget: float = FORGET_BUDGET_SECONDS,
           projects: tuple[AmplitudeProject, ...] | None = None) -> ForgetRun:
    """Apply, for each project (every project of the deployment when None), the deletion jobs its
    User Privacy API lists as done for `start_day`..`end_day` and that are not applied yet. A
    project that fails (its list, or its jobs) is reported in its outcome; the others go on. All
    the projects share the one `budget`."""
    deletions.check_range(start_day, end_day)
    deadline = time.monotonic() + budget
    bq_adapter.ensure_tables(bq, config)
    run = ForgetRun()
    for project in config.projects if projects is None else projects:
        try:
            run.outcomes.append(ProjectOutcome(project, forget_project(config, project, bucket, bq, session, start_day,
                                                                       end_day, deadline)))
        except Exception as error:
            why = _classified(error)
            log.warning(f"deletions of Amplitude project {project.label} not applied: {why}",
                        extra={"fields": {"project": project.label}})
            run.outcomes.append(ProjectOutcome(project, error=why))
    return run


def _classified(error: Exception) -> PermanentError | TransientError:
    """A project's failure in the taxonomy of ampbq.errors (a Cloud Storage or BigQuery error by
    its adapter); anything else is not a project's failure, and is raised."""
    if isinstance(error, (PermanentError, TransientError)):
        return error
    for adapter in (gcs, bq_adapter):
        if adapter.owns(error):
            mapped = adapter.classify(error)
            if isinstance(mapped, (PermanentError, TransientError)):
                mapped.__cause__ = error
                return mapped
    raise error


def forget_project(config: Config, project: AmplitudeProject, bucket: storage.Bucket, bq: bigquery.Client,
                   session: requests.Session, start_day: date, end_day: date, deadline: float) -> ForgetResult:
    """One project's deletions: listed with its keys from its region, applied to its rows and objects."""

    config = config.for_project(project)
    config.require_amplitude_keys()
    for attempt in amplitude.retrying(config):
        with attempt:
            payload = amplitude.list_deletions(session, config, start_day, end_day)
    jobs = deletions.for_project(deletions.parse_jobs(payload), project.app)
    todo = deletions.to_apply(jobs, applied_jobs(bq, config, project))
    result = ForgetResult(considered=len(jobs))
    if todo:
        apply(todo, config, bucket, bq, deadline, result, project)
    return result


def applied_jobs(bq: bigquery.Client, config: Config, project: AmplitudeProject | None = None) -> set[tuple[date, str]]:
    """The keys of the jobs applied so far (of `project`, by its `app`, when given)."""
    rows = bq_adapter.query_rows(bq, load.applied_jobs_sql(config.forgets_table_id))
    found = [(_day(r["job_day"]), r["app"]) for r in rows]
    return deletions.applied_keys(found, project.app, project.segment == "") if project else set(found)


def _day(value) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def apply(jobs: list[DeletionJob], config: Config, bucket: storage.Bucket, bq: bigquery.Client, deadline: float,
          result: ForgetResult | None = None, project: AmplitudeProject | None = None) -> ForgetResult:
    """Apply `jobs` to `project`'s rows and objects (the first project of `config` when None)."""
    result = result or ForgetResult()
    project = project or config.projects[0]
    segment = project.segment
    ids = deletions.all_ids(jobs)
    per_id = _rows_per_hour_and_id(bq, config, ids, project.app)
    before = {hour: sum(counts.values()) for hour, counts in per_id.items()}
    marker = running_name(segment)
    running = gcs.read_json(bucket, marker) or {}
    hours = set(before) | {naming.parse_api_hour(h) for h in running.get("hours", [])}
    gcs.put(bucket, marker, json.dumps({"jobs": [f"{j.day}" for j in jobs], "hours": sorted(naming.api_hour(h) for h in hours)}),
            "application/json")
    label = ",".join(sorted({f"{j.day}" for j in jobs}))
    targets = {}  # hour → the hour object generation whose load replaces the hour's rows
    for hour in sorted(hours):
        rewritten_before = len(result.objects_rewritten)
        generation = _rewrite_hour_object(bucket, hour, ids, label, result, segment)
        # Wait for a re-written hour's load too when the table had none of the users' rows in it:
        # its noncurrent generations go only once the chain is done with the hour.
        if generation and (hour in before or len(result.objects_rewritten) > rewritten_before):
            targets[hour] = generation
    zips = _rewrite_zips(bucket, hours, ids, label, result, segment)
    _wait_loaded(bq, config, targets, deadline, segment)
    left = _rows_per_hour_and_id(bq, config, ids, project.app)
    if left:
        _delete_in_table(bq, config, bucket, left, deadline, project)
        for hour in left:
            _clean_hour_outputs(bucket, hour, ids, result, segment)
    names = [name for hour in hours for name in _hour_names(hour, segment)]
    result.generations_deleted += _delete_noncurrent(bucket, names, zips)
    result.generations_deleted += sum(_delete_stale_units(bucket, hour, segment) for hour in sorted(hours))
    still = _rows_per_hour_and_id(bq, config, ids, project.app)
    if still:
        raise TransientError(f"rows of deleted users are still in upload hours {', '.join(map(naming.api_hour, sorted(still)))}; "
                             "the retry applies the deletion again")
    result.jobs, result.hours = jobs, sorted(hours)
    result.rows_removed = sum(before.values())
    _record(bq, config, jobs, per_id, result)
    gcs.delete_if_exists(bucket, marker)
    for noncurrent in gcs.versions(bucket, marker):  # it names hours, not users, but goes too
        gcs.delete_generation(bucket, noncurrent.name, noncurrent.generation)
    log.info("deletions applied", extra={"fields": result.log_fields() | ({"project": project.app} if segment else {})})
    return result


def _rows_per_hour_and_id(bq: bigquery.Client, config: Config, ids: frozenset[int], app: str) -> dict[datetime, dict[int, int]]:
    rows = bq_adapter.query_rows(bq, load.rows_per_hour_and_id_sql(config.table_id, ids, app))
    found: dict[datetime, dict[int, int]] = {}
    for row in rows:
        found.setdefault(naming.utc_hour(row["h"]), {})[int(row["id"])] = int(row["n"])
    return found


# ---------------------------------------------------------------- the bucket
def _rewrite_hour_object(bucket: storage.Bucket, hour: datetime, ids: frozenset[int], label: str,
                         result: ForgetResult, segment: str = "") -> int | None:
    """Re-write the project's hour object under export/ without the users' events; the live
    generation afterwards (None: the hour has no hour object).

    Streamed, part by part, in two passes over the object: the first finds which parts held the
    users and how big each re-written part is (its index goes in the new object's metadata,
    which is set when the upload starts), the second writes them; a part the users were not in
    is copied as it is."""
    name = naming.hour_object_name(hour, segment)
    blob = gcs.current(bucket, name)
    if blob is None:
        return None
    parts = hour_parts.decode(blob.metadata, blob.size) or [hour_parts.Part("", 0, int(blob.size or 0))]
    planned = []  # (part, events dropped, its size once re-written)
    for part in parts:
        sized = deletions.ByteCounter()
        with _part_of(bucket, blob, part) as source:
            dropped = deletions.count_deleted(source, ids)
        if dropped:
            with _part_of(bucket, blob, part) as source:
                deletions.drop_in_gzip_stream(source, sized, ids)
        planned.append((part, dropped, sized.size if dropped else part.size))
    dropped = sum(n for _, n, _ in planned)
    if not dropped:
        return blob.generation
    metadata = dict(blob.metadata or {}) | {"forgotten": label}
    if hour_parts.INDEX_KEY in metadata:
        metadata |= hour_parts.encode([(part.label, size) for part, _, size in planned])
    try:
        with gcs.writer(bucket, name, metadata, "application/gzip", if_generation_match=blob.generation) as out:
            for part, n, size in planned:
                written = deletions.ByteCounter(out)
                with _part_of(bucket, blob, part) as source:
                    if n:
                        deletions.drop_in_gzip_stream(source, written, ids)
                    else:
                        shutil.copyfileobj(source, written, deletions.STREAM_CHUNK)
                if written.size != size:  # the index would lie: leave the upload unfinished
                    raise TransientError(f"{name}: part {part.label or 0} came out {written.size} bytes, "
                                         f"not the {size} measured; retrying")
    except gcs.GenerationChanged:
        raise TransientError(f"{name} was replaced while its deleted users' events were being removed; retrying") from None
    live = gcs.current(bucket, name)
    result.objects_rewritten.append(name)
    log.info("hour object rewritten", extra={"fields": {"object": name, "date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}",
                                                         "generation": live.generation if live else None,
                                                         "events_removed": dropped}})
    return live.generation if live else None


@contextlib.contextmanager
def _part_of(bucket: storage.Bucket, blob: storage.Blob, part: hour_parts.Part):
    """One part of one generation of an hour object, read a chunk at a time."""
    with gcs.reader(bucket, blob.name, blob.generation) as stream:
        stream.seek(part.start)
        yield deletions.Window(stream, part.size)


def _rewrite_zips(bucket: storage.Bucket, hours: set[datetime], ids: frozenset[int], label: str,
                  result: ForgetResult, segment: str = "") -> list[str]:
    """Re-write every live raw zip of the project whose range holds one of `hours`; the names of
    all its raw zips (live or not) whose range does, whose noncurrent generations go too. Each
    is streamed from its live generation into the new one (a first pass finds whether it holds
    the users at all)."""
    names = set()
    for blob in gcs.versions(bucket, naming.raw_prefix(segment)):
        parsed = naming.parse_raw_name(blob.name, segment)
        if parsed and parsed[1] == "zip" and any(hour in parsed[0] for hour in hours):
            names.add(blob.name)
    for name in sorted(names):
        live = gcs.current(bucket, name)
        if live is None:
            continue
        with gcs.reader(bucket, name, live.generation) as source:
            if not deletions.count_in_zip(source, ids):
                continue
        metadata = dict(live.metadata or {}) | {"forgotten": label}
        try:
            with gcs.reader(bucket, name, live.generation) as source, \
                    gcs.writer(bucket, name, metadata, "application/zip", if_generation_match=live.generation) as target:
                dropped = deletions.drop_in_zip(source, target, ids)
        except gcs.GenerationChanged:
            raise TransientError(f"{name} was replaced while its deleted users' events were being removed; retrying") from None
        result.objects_rewritten.append(name)
        log.info("raw archive rewritten", extra={"fields": {"object": name, "events_removed": dropped}})
    return sorted(names)


def _clean_hour_outputs(bucket: storage.Bucket, hour: datetime, ids: frozenset[int], result: ForgetResult,
                        segment: str = "") -> None:
    """An hour whose rows were deleted in the table directly: the project's import object (already
    loaded) goes, and its rejects object is re-written without the users' lines."""
    gcs.delete_if_exists(bucket, naming.import_object_name(hour, segment))
    for unit in gcs.listing(bucket, naming.unit_import_prefix(hour, segment)):
        gcs.delete_if_exists(bucket, unit.name)
    rejects = [naming.rejects_object_name(hour, segment)] + [
        blob.name for blob in gcs.listing(bucket, naming.unit_prefix(naming.REJECTS_PREFIX, hour, segment))]
    for name in rejects:
        blob = gcs.current(bucket, name)
        if blob is None:
            continue
        kept, dropped = deletions.drop_in_rejects(gcs.read_live(blob), ids)
        if dropped:
            gcs.put_if_generation(bucket, name, kept, "application/x-ndjson", blob.generation, blob.metadata)
            result.objects_rewritten.append(name)


def _delete_stale_units(bucket: storage.Bucket, hour: datetime, segment: str = "") -> int:
    """Every generation of a big hour's units that is not the live one, and every live unit (or
    whole-hour import and rejects object) made from another generation of the hour object than
    the live one (a fan-out into another number of units leaves its units beside the new ones):
    each may hold the users' events. How many."""
    source = gcs.current(bucket, naming.hour_object_name(hour, segment))
    deleted = 0
    for prefix in (naming.EXPORT_PREFIX, naming.IMPORT_PREFIX, naming.REJECTS_PREFIX):
        live = {blob.name: blob for blob in gcs.listing(bucket, naming.unit_prefix(prefix, hour, segment))}
        for version in gcs.versions(bucket, naming.unit_prefix(prefix, hour, segment)):
            blob = live.get(version.name)
            current = blob is not None and blob.generation == version.generation
            stale = current and source is not None and gcs.source_generation(blob) != source.generation
            if not current or stale:
                deleted += gcs.delete_generation(bucket, version.name, version.generation)
    # The hour's whole-hour import and rejects objects, when made from another generation than the
    # live one (left from before the hour fanned out): they may hold the users' events too.
    for name in (naming.import_object_name(hour, segment), naming.rejects_object_name(hour, segment)):
        whole = gcs.current(bucket, name)
        if source is not None and whole is not None and gcs.source_generation(whole) != source.generation:
            deleted += gcs.delete_generation(bucket, name, whole.generation)
    return deleted


def _hour_names(hour: datetime, segment: str = "") -> tuple[str, str, str]:
    return (naming.hour_object_name(hour, segment), naming.import_object_name(hour, segment),
            naming.rejects_object_name(hour, segment))


def _delete_noncurrent(bucket: storage.Bucket, names: list[str], zips: list[str]) -> int:
    """Delete every noncurrent generation of `names` (and of the objects whose names start with
    them: the transform's scratch objects) and of `zips`, as a listing of versions shows them;
    how many."""
    deleted = 0
    for prefix in sorted(set(names) | set(zips)):
        versions = [(v.name, v.generation) for v in gcs.versions(bucket, prefix)]
        live = {}
        for name in {name for name, _ in versions}:
            blob = gcs.current(bucket, name)
            live[name] = blob.generation if blob is not None else None
        for name, generation in versions:
            scratch = name.endswith(".partial")  # a transform's, finished or left by a crash: never needed now
            if (name == prefix and generation != live[name]) or scratch:
                deleted += gcs.delete_generation(bucket, name, generation)
    return deleted


# ---------------------------------------------------------------- BigQuery
def _wait_loaded(bq: bigquery.Client, config: Config, targets: dict[datetime, int], deadline: float,
                 segment: str = "") -> None:
    """Until the ledger records, for each of the project's hours, a load of that hour object
    generation or a newer one."""
    waiting = dict(targets)
    while waiting:
        rows = bq_adapter.query_rows(bq, load.ledger_state_sql(config.ledger_table_id, list(waiting), project=segment))
        for row in rows:
            hour = naming.utc_hour(row["upload_hour"])
            if hour in waiting and row["source_generation"] >= waiting[hour]:
                del waiting[hour]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TransientError(f"the re-written hours {', '.join(map(naming.api_hour, sorted(waiting)))} are not loaded "
                                 "within the invocation's budget; the retry waits for them again")
        time.sleep(POLL_SECONDS)


def _delete_in_table(bq: bigquery.Client, config: Config, bucket: storage.Bucket,
                     left: dict[datetime, dict[int, int]], deadline: float, project: AmplitudeProject) -> None:
    """Delete the users' rows left in the table, and take them out of the ledger's counts and
    fingerprint, in one transaction under the load's commit lease (no commit runs meanwhile)."""

    lease = Lease(bucket, load.lease_name(config.table_id), config.load_lease_seconds)
    while not lease.acquire():
        if time.monotonic() > deadline:
            raise TransientError("the load's commit lease stayed taken; the retry deletes the rows")
        time.sleep(POLL_SECONDS)
    try:
        ids = frozenset(i for counts in left.values() for i in counts)
        gone = bq_adapter.query_rows(bq, load.users_rows_sql(config.table_id, sorted(left), ids, project.app))
        bq_adapter.query_rows(bq, load.delete_users_script(config.table_id, config.ledger_table_id, ids,
                                                {naming.utc_hour(r["h"]): (int(r["n"]), int(r["fp"])) for r in gone},
                                                secrets.token_hex(8), project.app, project.segment))
    finally:
        lease.release()


def _record(bq: bigquery.Client, config: Config, jobs: list[DeletionJob], per_id: dict[datetime, dict[int, int]],
            result: ForgetResult) -> None:
    rows = record_rows(jobs, per_id, len(result.objects_rewritten), result.generations_deleted)
    if rows:
        bq_adapter.query_rows(bq, load.forgets_insert_sql(config.forgets_table_id, rows))


def record_rows(jobs: list[DeletionJob], per_id: dict[datetime, dict[int, int]], objects_rewritten: int,
                generations_deleted: int) -> list[dict]:
    """The ledger rows of a run: one per job, and one per (job, upload hour) it removed rows from."""
    rows = []
    totals: dict = {}
    for hour, counts in sorted(per_id.items()):
        for key, n in deletions.rows_per_job(jobs, counts).items():
            if n:
                totals[key] = totals.get(key, 0) + n
                rows.append({"job_day": key[0], "app": key[1], "upload_hour": hour, "amplitude_ids": None,
                             "rows_removed": n, "objects_rewritten": None, "generations_deleted": None})
    for job in jobs:
        rows.append({"job_day": job.day, "app": job.app, "upload_hour": None, "amplitude_ids": len(job.amplitude_ids),
                     "rows_removed": totals.get(job.key, 0), "objects_rewritten": objects_rewritten,
                     "generations_deleted": generations_deleted})
    return rows


def exit_code(run: ForgetRun) -> int:
    """The command's exit status: 1 a project failed permanently, 3 one failed for now only
    (Amplitude not answering, the re-written hours not loaded in time), else 0."""
    if any(not isinstance(o.error, TransientError) for o in run.failed):
        return 1
    return 3 if run.failed else 0


def owner(app: str, configured: tuple[AmplitudeProject, ...]) -> AmplitudeProject | None:
    """The project a job recorded with `app` is of: in the one-project form the one project; the
    project with that id; a job recorded without one is the default project's (if there is one)."""
    if len(configured) == 1 and not configured[0].app:
        return configured[0]
    for project in configured:
        if project.app == app or (not app and project.segment == ""):
            return project
    return None


def applied_of(rows: list[dict], configured: tuple[AmplitudeProject, ...],
               chosen: tuple[AmplitudeProject, ...] | None = None) -> list[dict]:
    """load.applied_sql's rows, each with the `project` (its label) whose job it is; only those of the
    `chosen` projects when given."""
    shown = []
    for row in rows:
        project = owner(row.get("app") or "", configured)
        if chosen is not None and project not in chosen:
            continue
        shown.append({"project": project.label if project else row.get("app") or "", **row})
    return shown
