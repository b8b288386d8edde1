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

Nothing in the transform filters by amplitude id: once the backups are re-written there is no
copy left to bring a deleted user back, and Amplitude's own re-exports no longer hold them (it
gives a deleted user who comes back a new amplitude id). Amplitude deletes a user's events up to
when its job ran, so events a user sends after that are kept, as Amplitude keeps them.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime

import requests
from google.api_core import exceptions as gexc
from google.cloud import bigquery, storage

from . import amplitude, deletions, gcs, hour_parts, load, naming
from . import bigquery as bq_adapter
from .config import Config
from .deletions import DeletionJob
from .errors import PermanentError, TransientError

log = logging.getLogger(__name__)
RUNNING = "forget/running.json"  # what an unfinished attempt touched, so its retry cleans it too
FORGET_BUDGET_SECONDS = 420.0  # the export function has 540 s; a retry goes on from RUNNING
POLL_SECONDS = 1.0


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


def forget(config: Config, bucket: storage.Bucket, bq: bigquery.Client, session: requests.Session,
           start_day: date, end_day: date, budget: float = FORGET_BUDGET_SECONDS) -> ForgetResult:
    """Apply the deletion jobs Amplitude lists as done for `start_day`..`end_day` and that are not
    applied yet."""
    from .steps import _http_retrying  # the Export API's retry policy, for the same server

    deletions.check_range(start_day, end_day)
    default = config.projects[0]
    if default.segment:
        raise PermanentError("forget applies deletions to the default Amplitude project (AMPBQ_DEFAULT_PROJECT), "
                             "and this deployment has none; see docs/projects.md")
    config = config.for_project(default)
    for attempt in _http_retrying(config):
        with attempt:
            payload = amplitude.list_deletions(session, config, start_day, end_day)
    jobs = deletions.parse_jobs(payload)
    bq_adapter.ensure_tables(bq, config)
    todo = deletions.to_apply(jobs, applied_jobs(bq, config))
    result = ForgetResult(considered=len(jobs))
    if todo:
        apply(todo, config, bucket, bq, time.monotonic() + budget, result)
    return result


def applied_jobs(bq: bigquery.Client, config: Config) -> set[tuple[date, str]]:
    rows = bq_adapter.query_rows(bq, f"SELECT DISTINCT job_day, IFNULL(app, '') AS app FROM `{config.forgets_table_id}` "
                                     f"WHERE upload_hour IS NULL")
    return {(_day(r["job_day"]), r["app"]) for r in rows}


def _day(value) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def apply(jobs: list[DeletionJob], config: Config, bucket: storage.Bucket, bq: bigquery.Client, deadline: float,
          result: ForgetResult | None = None) -> ForgetResult:
    result = result or ForgetResult()
    ids = deletions.all_ids(jobs)
    per_id = _rows_per_hour_and_id(bq, config, ids)
    before = {hour: sum(counts.values()) for hour, counts in per_id.items()}
    running = gcs.read_json(bucket, RUNNING) or {}
    hours = set(before) | {naming.parse_api_hour(h) for h in running.get("hours", [])}
    bucket.blob(RUNNING).upload_from_string(json.dumps({"jobs": [f"{j.day}" for j in jobs],
                                                        "hours": sorted(naming.api_hour(h) for h in hours)}),
                                            "application/json")
    label = ",".join(sorted({f"{j.day}" for j in jobs}))
    targets = {}  # hour → the hour object generation whose load replaces the hour's rows
    for hour in sorted(hours):
        rewritten_before = len(result.objects_rewritten)
        generation = _rewrite_hour_object(bucket, hour, ids, label, result)
        # Wait for a re-written hour's load too when the table had none of the users' rows in it:
        # its noncurrent generations go only once the chain is done with the hour.
        if generation and (hour in before or len(result.objects_rewritten) > rewritten_before):
            targets[hour] = generation
    zips = _rewrite_zips(bucket, hours, ids, label, result)
    _wait_loaded(bq, config, targets, deadline)
    left = _rows_per_hour_and_id(bq, config, ids)
    if left:
        _delete_in_table(bq, config, bucket, left, deadline)
        for hour in left:
            _clean_hour_outputs(bucket, hour, ids, result)
    names = [name for hour in hours for name in _hour_names(hour)]
    result.generations_deleted += _delete_noncurrent(bucket, names, zips)
    still = _rows_per_hour_and_id(bq, config, ids)
    if still:
        raise TransientError(f"rows of deleted users are still in upload hours {', '.join(map(naming.api_hour, sorted(still)))}; "
                             "the retry applies the deletion again")
    result.jobs, result.hours = jobs, sorted(hours)
    result.rows_removed = sum(before.values())
    _record(bq, config, jobs, per_id, result)
    gcs.delete_if_exists(bucket, RUNNING)
    for noncurrent in bucket.list_blobs(prefix=RUNNING, versions=True):  # it names hours, not users, but goes too
        _delete_generation(bucket, noncurrent.name, noncurrent.generation)
    log.info("deletions applied", extra={"fields": result.log_fields()})
    return result


def _ids_sql(ids: frozenset[int]) -> str:
    return ", ".join(str(int(i)) for i in sorted(ids))


def _rows_per_hour_and_id(bq: bigquery.Client, config: Config, ids: frozenset[int]) -> dict[datetime, dict[int, int]]:
    rows = bq_adapter.query_rows(bq, f"SELECT _upload_hour AS h, amplitude_id AS id, COUNT(*) AS n FROM `{config.table_id}` "
                                     f"WHERE amplitude_id IN ({_ids_sql(ids)}){_app_filter(config)} GROUP BY h, id")
    found: dict[datetime, dict[int, int]] = {}
    for row in rows:
        found.setdefault(naming.utc_hour(row["h"]), {})[int(row["id"])] = int(row["n"])
    return found


# ---------------------------------------------------------------- the bucket
def _rewrite_hour_object(bucket: storage.Bucket, hour: datetime, ids: frozenset[int], label: str,
                         result: ForgetResult) -> int | None:
    """Re-write the hour's object under export/ without the users' events; the live generation
    afterwards (None: the hour has no hour object)."""
    name = naming.hour_object_name(hour)
    blob = bucket.get_blob(name)
    if blob is None:
        return None
    data = blob.download_as_bytes(if_generation_match=blob.generation)
    parts = hour_parts.decode(blob.metadata, blob.size) or [hour_parts.Part("", 0, len(data))]
    new_parts, dropped = [], 0
    for part in parts:
        content, n = deletions.drop_in_gzip(data[part.start:part.start + part.size], ids)
        new_parts.append((part.label, content))
        dropped += n
    if not dropped:
        return blob.generation
    metadata = dict(blob.metadata or {}) | {"forgotten": label}
    if hour_parts.INDEX_KEY in metadata:
        metadata |= hour_parts.encode([(part_label, len(content)) for part_label, content in new_parts])
    out = bucket.blob(name)
    out.metadata = metadata
    try:
        out.upload_from_string(b"".join(c for _, c in new_parts), "application/gzip", if_generation_match=blob.generation)
    except gexc.PreconditionFailed:
        raise TransientError(f"{name} was replaced while its deleted users' events were being removed; retrying") from None
    result.objects_rewritten.append(name)
    log.info("hour object rewritten", extra={"fields": {"object": name, "date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}",
                                                         "generation": out.generation, "events_removed": dropped}})
    return out.generation


def _rewrite_zips(bucket: storage.Bucket, hours: set[datetime], ids: frozenset[int], label: str,
                  result: ForgetResult) -> list[str]:
    """Re-write every live raw zip whose range holds one of `hours`; the names of all raw zips
    (live or not) whose range does, whose noncurrent generations go too."""
    names = set()
    for blob in bucket.list_blobs(prefix=naming.RAW_PREFIX, versions=True):
        parsed = naming.parse_raw_name(blob.name)
        if parsed and parsed[1] == "zip" and any(hour in parsed[0] for hour in hours):
            names.add(blob.name)
    for name in sorted(names):
        live = bucket.get_blob(name)
        if live is None:
            continue
        with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as target:
            live.download_to_file(source, if_generation_match=live.generation)
            source.seek(0)
            dropped = deletions.drop_in_zip(source, target, ids)
            if not dropped:
                continue
            target.seek(0)
            out = bucket.blob(name)
            out.metadata = dict(live.metadata or {}) | {"forgotten": label}
            try:
                out.upload_from_file(target, content_type="application/zip", if_generation_match=live.generation)
            except gexc.PreconditionFailed:
                raise TransientError(f"{name} was replaced while its deleted users' events were being removed; retrying") from None
        result.objects_rewritten.append(name)
        log.info("raw archive rewritten", extra={"fields": {"object": name, "events_removed": dropped}})
    return sorted(names)


def _clean_hour_outputs(bucket: storage.Bucket, hour: datetime, ids: frozenset[int], result: ForgetResult) -> None:
    """An hour whose rows were deleted in the table directly: its import object (already loaded)
    goes, and its rejects object is re-written without the users' lines."""
    gcs.delete_if_exists(bucket, naming.import_object_name(hour))
    name = naming.rejects_object_name(hour)
    blob = bucket.get_blob(name)
    if blob is None:
        return
    kept, dropped = deletions.drop_in_rejects(blob.download_as_bytes(if_generation_match=blob.generation), ids)
    if dropped:
        out = bucket.blob(name)
        out.metadata = blob.metadata
        out.upload_from_string(kept, "application/x-ndjson", if_generation_match=blob.generation)
        result.objects_rewritten.append(name)


def _hour_names(hour: datetime) -> tuple[str, str, str]:
    return naming.hour_object_name(hour), naming.import_object_name(hour), naming.rejects_object_name(hour)


def _delete_noncurrent(bucket: storage.Bucket, names: list[str], zips: list[str]) -> int:
    """Delete every noncurrent generation of `names` (and of the objects whose names start with
    them: the transform's scratch objects) and of `zips`, as a listing of versions shows them;
    how many."""
    deleted = 0
    for prefix in sorted(set(names) | set(zips)):
        versions = [(v.name, v.generation) for v in bucket.list_blobs(prefix=prefix, versions=True)]
        live = {}
        for name in {name for name, _ in versions}:
            blob = bucket.get_blob(name)
            live[name] = blob.generation if blob is not None else None
        for name, generation in versions:
            scratch = name.endswith(".partial")  # a transform's, finished or left by a crash: never needed now
            if (name == prefix and generation != live[name]) or scratch:
                deleted += _delete_generation(bucket, name, generation)
    return deleted


def _delete_generation(bucket: storage.Bucket, name: str, generation: int) -> int:
    try:
        bucket.blob(name, generation=generation).delete()
        return 1
    except gexc.NotFound:
        return 0


# ---------------------------------------------------------------- BigQuery
def _wait_loaded(bq: bigquery.Client, config: Config, targets: dict[datetime, int], deadline: float) -> None:
    """Until the ledger records, for each hour, a load of that hour object generation or a newer one."""
    waiting = dict(targets)
    while waiting:
        rows = bq_adapter.query_rows(bq, load.ledger_state_sql(config.ledger_table_id, list(waiting), project=""))
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
                     left: dict[datetime, dict[int, int]], deadline: float) -> None:
    """Delete the users' rows left in the table, and take them out of the ledger's counts and
    fingerprint, in one transaction under the load's commit lease (no commit runs meanwhile)."""
    from .steps import _Lease

    lease = _Lease(bucket, load.lease_name(config.table_id), config.load_lease_seconds)
    while not lease.acquire():
        if time.monotonic() > deadline:
            raise TransientError("the load's commit lease stayed taken; the retry deletes the rows")
        time.sleep(POLL_SECONDS)
    try:
        ids = frozenset(i for counts in left.values() for i in counts)
        hours = ", ".join(load.timestamp_literal(h) for h in sorted(left))
        gone = bq_adapter.query_rows(bq, f"SELECT _upload_hour AS h, COUNT(*) AS n, BIT_XOR(FARM_FINGERPRINT(uuid)) AS fp "
                                         f"FROM `{config.table_id}` WHERE _upload_hour IN ({hours}) "
                                         f"AND amplitude_id IN ({_ids_sql(ids)}){_app_filter(config)} GROUP BY h")
        bq_adapter.query_rows(bq, delete_script(config.table_id, config.ledger_table_id, ids,
                                                {naming.utc_hour(r["h"]): (int(r["n"]), int(r["fp"])) for r in gone},
                                                secrets.token_hex(8), config.projects[0].app))
    finally:
        lease.release()


def _app_filter(config: Config) -> str:
    """The default project's rows only, when its id is known (a deployment of several projects)."""
    app = config.projects[0].app
    return f" AND app = {int(app)}" if app else ""


def delete_script(table_id: str, ledger_id: str, ids: frozenset[int], gone: dict[datetime, tuple[int, int]],
                  token: str, app: str = "") -> str:
    """One transaction: the users' rows out of the table, and (rows, fingerprint) of each hour
    out of its ledger entry (events = rows + rejected and loaded = rows keep holding)."""
    statements = ["BEGIN TRANSACTION;",
                  f"UPDATE `{load.commit_lock_id(table_id)}` SET holder = {load.literal(token)}, "
                  f"locked_at = CURRENT_TIMESTAMP() WHERE TRUE;"]
    hours = ", ".join(load.timestamp_literal(h) for h in sorted(gone))
    only_app = f" AND app = {int(app)}" if app else ""
    statements.append(f"DELETE FROM `{table_id}` WHERE _upload_hour IN ({hours}) AND amplitude_id IN ({_ids_sql(ids)}){only_app};")
    for hour, (n, fp) in sorted(gone.items()):
        statements.append(f"UPDATE `{ledger_id}` SET events = events - {n}, rows_written = rows_written - {n}, "
                          f"loaded = loaded - {n}, fingerprint = IFNULL(fingerprint, 0) ^ {fp} "
                          f"WHERE upload_hour = {load.timestamp_literal(hour)} AND {load.project_sql('')};")
    statements.append("COMMIT TRANSACTION;")
    return "\n".join(statements) + "\n"


def _record(bq: bigquery.Client, config: Config, jobs: list[DeletionJob], per_id: dict[datetime, dict[int, int]],
            result: ForgetResult) -> None:
    rows = record_rows(jobs, per_id, len(result.objects_rewritten), result.generations_deleted)
    if rows:
        bq_adapter.query_rows(bq, record_sql(config.forgets_table_id, rows))


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


FORGETS_COLUMNS = ("job_day", "app", "upload_hour", "amplitude_ids", "rows_removed", "objects_rewritten",
                   "generations_deleted", "applied_at")


def record_sql(forgets_id: str, rows: list[dict]) -> str:
    def value(v) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, datetime):
            return load.timestamp_literal(v)
        if isinstance(v, date):
            return f"DATE '{v:%Y-%m-%d}'"
        if isinstance(v, int):
            return str(v)
        return load.literal(str(v))

    selects = [", ".join([f"{value(r['job_day'])} AS job_day", f"{value(r['app'] or None)} AS app",
                          f"{value(r['upload_hour'])} AS upload_hour", f"{value(r['amplitude_ids'])} AS amplitude_ids",
                          f"{value(r['rows_removed'])} AS rows_removed", f"{value(r['objects_rewritten'])} AS objects_rewritten",
                          f"{value(r['generations_deleted'])} AS generations_deleted"]) for r in rows]
    union = " UNION ALL ".join(f"SELECT {s}" for s in selects)
    return (f"INSERT INTO `{forgets_id}` ({', '.join(FORGETS_COLUMNS)}) SELECT job_day, CAST(app AS STRING), "
            f"CAST(upload_hour AS TIMESTAMP), CAST(amplitude_ids AS INT64), rows_removed, CAST(objects_rewritten AS INT64), "
            f"CAST(generations_deleted AS INT64), CURRENT_TIMESTAMP() FROM ({union})")


def applied_sql(forgets_id: str) -> str:
    """What `ampbq forget --status` shows: one row per applied job."""
    return (f"SELECT job_day, IFNULL(app, '') AS app, amplitude_ids, rows_removed, objects_rewritten, generations_deleted, "
            f"applied_at, (SELECT COUNT(*) FROM `{forgets_id}` AS h WHERE h.job_day = j.job_day "
            f"AND IFNULL(h.app, '') = IFNULL(j.app, '') AND h.upload_hour IS NOT NULL) AS hours "
            f"FROM `{forgets_id}` AS j WHERE upload_hour IS NULL ORDER BY job_day, app")
