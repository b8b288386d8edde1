"""The load step: one import object → staged in its own table → committed with every other
staged hour by the table's lease holder, in one transaction that replaces each hour exactly once."""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from google.cloud import bigquery, storage

from . import gcs, load, naming
from . import bigquery as bq_adapter
from .config import Config
from .errors import Ignored, PermanentError, TransientError
from .events import StorageObject
from .lease import Lease
from .monitoring import log_hour_loaded, project_field

log = logging.getLogger("ampbq.load")


# Load invocations hand their commits to one lease holder per table (see `load`). The figures are
# for BigQuery, where a transaction takes seconds and an invocation has 540 s.
LOAD_BUDGET_SECONDS = 420.0  # then the invocation stops waiting and leaves its staged hour to the retry
POLL_SECONDS = (0.2, 1.0)  # jittered wait between two looks at the marker and the lease
COMMIT_ATTEMPTS = 5  # a holder's commit cancelled by a conflict (a broken lease) is planned again
GATHER_SECONDS = (0.3, 1.5)  # the holder waits while the waiting list still grows: bigger batches, fewer transactions


@dataclass(frozen=True)
class LoadOutcome:
    hour: datetime
    generation: int
    events: int
    rows: int
    rejected: int
    loaded: int
    project: str = ""  # the project's segment ("" the default project)


def _hour_load(obj: StorageObject, blob: storage.Blob, hour: datetime, project: str = "", app: str = "") -> load.HourLoad:
    meta = blob.metadata or {}
    try:
        return load.HourLoad(
            hour=hour,
            import_object=naming.gs_uri(obj.bucket, obj.name),
            import_generation=obj.generation,
            source_object=meta["source_object"],
            source_generation=int(meta["source_generation"]),
            events=int(meta["events"]),
            rows=int(meta["rows"]),
            rejected=int(meta["rejected"]),
            project=project,
            app=app,
        )
    except (KeyError, ValueError) as missing:
        raise PermanentError(f"{obj.name} was not written by the transform step (metadata {missing} missing)") from None


def _labels(hour: datetime, generation: int, function: str = "load", project: str = "") -> dict[str, str]:
    """Job labels, so every job of an hour can be found in INFORMATION_SCHEMA.JOBS."""
    return {"function": function, "date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}", "generation": str(generation),
            **project_field(project)}


def load_hour(obj: StorageObject, config: Config, bucket: storage.Bucket, bq: bigquery.Client,
              budget: float = LOAD_BUDGET_SECONDS) -> LoadOutcome:
    """Stage the import object (or, for a unit of a big hour, every unit of it once all are
    there), then wait until its hour is committed: by this invocation if it gets the table's
    lease, else by the holder, which commits every staged hour at once."""
    unit = naming.parse_unit_import(obj.name)
    if unit is not None:
        sources, hour_load = _units_load(obj, unit, bucket, config)
        subject = f"{naming.unit_import_prefix(unit.hour, unit.project)}*-of-{unit.units:04d}.json"
    else:
        scoped = naming.scoped_import_object(obj.name)
        if scoped is None:
            raise Ignored(f"not an import hour object: {obj.name}")
        project, hour = scoped
        hour_load = _hour_load(obj, gcs.live(bucket, obj), hour, project, config.app_of(project))
        sources, subject = [obj], obj.name
    hour, project, generation = hour_load.hour, hour_load.project, hour_load.import_generation
    bq_adapter.ensure_tables(bq, config)
    _skip_if_loaded(bq, config, hour_load, subject)
    deadline = time.monotonic() + budget
    try:
        _stage(bq, config, bucket, sources, hour_load, subject)
    except PermanentError:
        # A duplicate delivery of this event may have finished the hour first and dropped the
        # staging table both were using: that is success, not a failure.
        _skip_if_loaded(bq, config, hour_load, subject)
        raise
    _wait_for_commit(bq, config, bucket, hour_load, deadline)
    entry = _ledger_entry(bq, config, hour, project)
    if entry is None or entry["import_generation"] != generation:
        if entry is not None and not hour_load.newer_than(entry["source_generation"], entry["import_generation"]):
            raise Ignored(f"{subject}: a newer generation {entry['import_generation']} is already loaded")
        if any(s.load.key == hour_load.key and s.load.newer_than(hour_load.source_generation, hour_load.import_generation)
               for _, s in _waiting(bucket, config)):
            raise Ignored(f"{subject}: a newer generation of the hour is waiting for its commit")
        raise TransientError(f"{subject}: staged generation {generation} left the waiting list uncommitted")
    outcome = LoadOutcome(hour, generation, hour_load.events, hour_load.rows, hour_load.rejected, entry["loaded"], project)
    if outcome.loaded != outcome.rows or outcome.rows + outcome.rejected != outcome.events:
        raise PermanentError(
            f"{subject}: counts do not reconcile: events={outcome.events} rows={outcome.rows} "
            f"rejected={outcome.rejected} loaded={outcome.loaded}"
        )
    return outcome


def _units_load(obj: StorageObject, unit: naming.Unit, bucket: storage.Bucket, config: Config
                ) -> tuple[list[StorageObject], load.HourLoad]:
    """Every unit import object of the hour object generation `obj` was made from, and the
    hour's load from all of them; Ignored while some unit is not transformed yet (the load of
    the last one to be published finds them all: each publishes before its load lists).

    The hour's import generation is the newest of its units' generations: a unit transformed or
    dropped again makes the hour newer, so it is loaded again; two loads that find the same
    units stage the same thing under the same names."""
    live = gcs.live(bucket, obj)
    made_from, plan = gcs.source_generation(live), (live.metadata or {}).get("plan", "")
    listed = [(naming.parse_unit_import(blob.name), blob.metadata, blob)
              for blob in gcs.listing(bucket, naming.unit_import_prefix(unit.hour, unit.project))]
    # Units of the same plan of the same generation only: another cutting of the hour into as
    # many units holds other lines under the same names.
    found = naming.unit_sets([u for u in listed if u[0] is not None], made_from).get((unit.units, plan), {})
    if len(found) < unit.units:
        raise Ignored(f"{len(found)} of the {unit.units} units of generation {made_from} of the hour are transformed; "
                      f"the load of the last one loads the hour")
    blobs = [found[index] for index in range(unit.units)]
    loads = [_hour_load(StorageObject(bucket.name, b.name, b.generation), b, unit.hour, unit.project,
                        config.app_of(unit.project)) for b in blobs]
    first = loads[0]
    hour_load = load.HourLoad(
        hour=unit.hour,
        import_object=naming.gs_uri(bucket.name, naming.unit_import_prefix(unit.hour, unit.project)),
        import_generation=max(b.generation for b in blobs),
        source_object=first.source_object,
        source_generation=made_from,
        events=sum(h.events for h in loads),
        rows=sum(h.rows for h in loads),
        rejected=sum(h.rejected for h in loads),
        project=unit.project,
        app=first.app,
    )
    return [StorageObject(bucket.name, b.name, b.generation) for b in blobs], hour_load


def _ledger_entry(bq: bigquery.Client, config: Config, hour: datetime, project: str = "") -> dict | None:
    rows = bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour, project))
    return rows[0] if rows else None


def _skip_if_loaded(bq: bigquery.Client, config: Config, hour_load: load.HourLoad, subject: str) -> None:
    entry = _ledger_entry(bq, config, hour_load.hour, hour_load.project)
    if entry is None:
        return
    generation = hour_load.import_generation
    if entry["import_generation"] == generation:
        # Committed by a lease holder after an earlier attempt of this event gave up waiting: this
        # attempt is the one that reports the hour, so the monitoring still sees it loaded.
        log_hour_loaded("load", hour_load.hour, generation=generation, events=entry["events"],
                        rows=entry["rows_written"], rejected=entry["rejected"], loaded=entry["loaded"],
                        **project_field(hour_load.project))
        raise Ignored(f"{subject}: generation {generation} is already loaded")
    if not hour_load.newer_than(entry["source_generation"], entry["import_generation"]):
        raise Ignored(f"{subject}: a newer generation {entry['import_generation']} "
                      f"(hour object generation {entry['source_generation']}) is already loaded")


def _stage(bq: bigquery.Client, config: Config, bucket: storage.Bucket, sources: list[StorageObject],
           hour_load: load.HourLoad, subject: str) -> None:
    """Load the hour's import object(s) into its staging table, check it, and put it on the
    waiting list."""
    hour, project, generation = hour_load.hour, hour_load.project, hour_load.import_generation
    stage_id = f"{config.project}.{config.dataset}.{naming.staging_table_name(config.table, hour, generation, project)}"
    bq_adapter.create_stage(bq, stage_id, expires=datetime.now(timezone.utc) + timedelta(days=1))  # left behind only by a crash
    uris = [naming.gs_uri(source.bucket, source.name) for source in sources]
    for again in ("", "_again"):
        # "_again": the staging table was dropped after the job of the first id had filled it
        # (a holder found it gone), so that finished job's id no longer stands for its rows.
        bq_adapter.load_ndjson(bq, uris, stage_id, _labels(hour, generation, project=project),
                               lambda attempt: naming.load_job_id(hour, generation, attempt, project) + again)
        # A load job reads the live object behind each URI, not a generation. If that is still the
        # same generation after the job, it was throughout (generations only grow): the rows are its.
        for source in sources:
            live = gcs.current(bucket, source.name)
            if live is None or live.generation != source.generation:
                raise Ignored(f"{source.name} was replaced while generation {source.generation} was loading; "
                              f"the newer generation's event loads it")
        summary = bq_adapter.query_rows(bq, load.staged_summary_sql(stage_id, hour_load.app))[0]
        if summary["n"] == hour_load.rows:
            break
    if summary["n"] != hour_load.rows:
        raise PermanentError(f"{subject}: staged {summary['n']} rows but transform wrote {hour_load.rows}")
    if summary.get("foreign_rows"):
        raise PermanentError(f"{subject}: {summary['foreign_rows']} of its {summary['n']} rows are not of Amplitude project "
                             f"{hour_load.app} (their app differs); a project's hour may hold only its own rows")
    staged = load.Staged(hour_load, stage_id, summary["lo"], summary["hi"], int(summary["days"]))
    gcs.put(bucket, load.waiting_name(config.table_id, hour, generation, project), staged.to_json(), "application/json",
            {"staged": staged.to_json()})


def _wait_for_commit(bq: bigquery.Client, config: Config, bucket: storage.Bucket, hour_load: load.HourLoad,
                     deadline: float) -> None:
    """Until the hour's marker is gone (committed, or superseded by a newer generation): take the
    lease when it is free and commit everything waiting, else wait for the holder."""
    marker = load.waiting_name(config.table_id, hour_load.hour, hour_load.import_generation, hour_load.project)
    while gcs.exists(bucket, marker):
        if time.monotonic() > deadline:
            raise TransientError(f"hour {hour_load.hour:%Y-%m-%dT%H} is staged but not committed within the "
                                 f"invocation's budget; the retry waits for it again")
        lease = Lease(bucket, load.lease_name(config.table_id), config.load_lease_seconds)
        if lease.acquire():
            try:
                _commit_waiting(bq, config, bucket, lease, deadline)
            finally:
                lease.release()
            continue
        time.sleep(random.uniform(*POLL_SECONDS))


def _waiting(bucket: storage.Bucket, config: Config) -> list[tuple[storage.Blob, load.Staged]]:
    found = []
    for blob in gcs.listing(bucket, load.waiting_prefix(config.table_id)):
        record = (blob.metadata or {}).get("staged")
        if record:
            found.append((blob, load.Staged.from_json(record)))
    return found


def _gather(bucket: storage.Bucket, config: Config) -> list[tuple[storage.Blob, load.Staged]]:
    """The waiting list once it stops growing (hours of the same day or backfill stage at about the
    same time; a transaction costs seconds in BigQuery, so waiting a moment for them pays)."""
    waiting = _waiting(bucket, config)
    step, longest = GATHER_SECONDS
    until = time.monotonic() + longest
    while waiting and time.monotonic() < until:
        time.sleep(step)
        again = _waiting(bucket, config)
        if len(again) <= len(waiting):
            return again
        waiting = again
    return waiting


def _ledger_state(bq: bigquery.Client, config: Config, hours: list[datetime]) -> dict[load.LedgerKey, load.Loaded]:
    rows = bq_adapter.query_rows(bq, load.ledger_state_sql(config.ledger_table_id, hours))
    return {(r["project"] or "", naming.utc_hour(r["upload_hour"])): load.Loaded(r["import_generation"], r["source_generation"],
                                                          r["min_event_time"], r["max_event_time"]) for r in rows}


def _commit_waiting(bq: bigquery.Client, config: Config, bucket: storage.Bucket, lease: Lease, deadline: float) -> None:
    """As the lease holder: commit what is waiting, batch after batch, until nothing is (or the
    invocation's time is up: a waiter takes over the lease once it is released)."""
    conflicts = 0
    while time.monotonic() < deadline:
        waiting = _gather(bucket, config)
        if not waiting:
            return
        markers = {(s.load.key, s.load.import_generation): blob for blob, s in waiting}
        ledger = _ledger_state(bq, config, [s.load.hour for _, s in waiting])
        batch, superseded = load.pick_batch([s for _, s in waiting], ledger)
        for staged in superseded:
            _drop_staged(bq, bucket, markers, staged)
        if not batch:
            continue
        if not lease.renew():  # a commit takes seconds; the lease must outlive it
            return
        try:
            committed, billed = _commit_batch(bq, config, batch, ledger)
        except TransientError:
            conflicts += 1  # a waiter broke the lease and committed: plan again from the ledger
            if conflicts >= COMMIT_ATTEMPTS:
                raise
            time.sleep(random.uniform(*POLL_SECONDS))
            continue
        except PermanentError:
            # A staging table gone (expired after a day, or dropped with a duplicate's marker
            # left behind) must not block every other hour: drop those, whose loads re-stage on
            # their retry, and plan again. Any other permanent failure is the holder's to report.
            gone = [staged for staged in batch if not bq_adapter.table_exists(bq, staged.stage_id)]
            if not gone:
                raise
            for staged in gone:
                log.warning("staging table gone", extra={"fields": {"table": staged.stage_id}})
                _drop_staged(bq, bucket, markers, staged)
            continue
        now = _ledger_state(bq, config, [s.load.hour for s in batch])
        for staged in batch:
            entry = now.get(staged.load.key)
            if entry is not None and entry.import_generation == staged.load.import_generation:
                _drop_staged(bq, bucket, markers, staged)
        # bytes_billed: what BigQuery billed for the batch's transaction (0 when it does not say).
        log.info("hours committed", extra={"fields": {"batch": committed, "hours": len(batch),
                 "waiting": len(waiting), "bytes_billed": billed or 0}})


def _drop_staged(bq: bigquery.Client, bucket: storage.Bucket, markers: dict, staged: load.Staged) -> None:
    """The hour is committed (or superseded): its waiter may go, its staging table is done."""
    blob = markers.get((staged.load.key, staged.load.import_generation))
    if blob is not None:
        gcs.delete_if_exists(bucket, blob.name)
    bq_adapter.drop_table(bq, staged.stage_id)


def _commit_batch(bq: bigquery.Client, config: Config, batch: list[load.Staged],
                  ledger: dict[load.LedgerKey, load.Loaded]) -> tuple[str, int | None]:
    """Run the batch's transaction (split into statements of ≤ 4,000 partitions); its token and
    the bytes BigQuery billed for it (None when the job does not say)."""
    token = secrets.token_hex(8)
    delete_ranges = insert_ranges = None
    bound = load.old_partitions_upper_bound(batch, ledger)
    if bound is None or bound > load.MAX_PARTITIONS_PER_STATEMENT:
        where = load.old_rows_filter(batch, ledger)
        if where:
            dates = [r["d"] for r in bq_adapter.query_rows(bq, load.distinct_dates_sql(config.table_id, where))]
            delete_ranges = load.date_ranges(dates) if len(dates) > load.MAX_PARTITIONS_PER_STATEMENT else None
    if sum(s.partitions for s in batch) > load.MAX_PARTITIONS_PER_STATEMENT:
        union = f"({load.staged_union([s for s in batch if s.min_event_time])})"
        dates = [r["d"] for r in bq_adapter.query_rows(bq, load.distinct_dates_sql(union))]
        insert_ranges = load.date_ranges(dates) if len(dates) > load.MAX_PARTITIONS_PER_STATEMENT else None
    sql = load.group_commit_script(config.table_id, config.ledger_table_id, batch, ledger, token, delete_ranges, insert_ranges)
    first = batch[0].load
    labels = _labels(first.hour, first.import_generation) | {"step": "commit", "hours": str(len(batch))}
    job = bq_adapter.run_script(bq, sql, labels, lambda n: f"ampbq_commit_{token}" + (f"_r{n}" if n else ""))
    billed = getattr(job, "total_bytes_billed", None)
    if billed is not None:
        # Still under the lease: no transaction of ours can run on the ledger meanwhile.
        bq_adapter.query_rows(bq, load.bytes_billed_sql(config.ledger_table_id, token, billed))
    return token, billed
