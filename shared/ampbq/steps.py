"""The three steps of the chain, each taking decoded values and adapters, in one direction:
export (Export API → raw zip → hour objects) → transform (hour object → import object)
→ load (import object → BigQuery). Each step is idempotent on (object, generation).
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests
from google.cloud import bigquery, storage
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from . import amplitude, gcs, load, naming, transform, unpack
from . import bigquery as bq_adapter
from .config import Config
from .errors import Ignored, NoData, PermanentError, TooLarge, TransientError
from .events import StorageObject
from .naming import HourRange
from .shaping import Lineage

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- export
@dataclass
class ExportResult:
    requested: HourRange
    archives: list[str] = field(default_factory=list)
    hours: dict[str, int] = field(default_factory=dict)  # hour object name → parts
    refused: list[str] = field(default_factory=list)


def check_ready(hours: HourRange, config: Config, now: datetime) -> None:
    """Refuse a range whose last hour Amplitude may not have finished (about 2 h after it ends)."""
    ready_at = hours.end + naming.HOUR + timedelta(hours=config.min_data_age_hours)
    if now < ready_at:
        raise PermanentError(f"range {hours} is not complete at Amplitude until {ready_at:%Y-%m-%dT%H:%MZ}; run it after that")


def export_range(
    hours: HourRange, config: Config, bucket: storage.Bucket, session: requests.Session, now: datetime
) -> ExportResult:
    check_ready(hours, config, now)
    result = ExportResult(hours)
    for part, raw_name in fetch_archives(hours, config, bucket, session):
        result.archives.append(raw_name)
        unpack_archive(bucket, raw_name, part, result)
    manifest = {"range": str(hours), "archives": result.archives, "hours": result.hours, "refused": result.refused,
                "finished_at": datetime.now(timezone.utc).isoformat()}
    bucket.blob(naming.manifest_name(hours)).upload_from_string(json.dumps(manifest, indent=1), "application/json")
    for hour in hours.hours():
        if naming.hour_object_name(hour) not in result.hours:
            # Nothing to load, and nothing missing: the completeness alert counts this line too.
            log.info("hour loaded", extra={"fields": _hour_fields(hour) | {"events": 0, "reason": "no data at Amplitude"}})
    return result


def fetch_archives(hours: HourRange, config: Config, bucket, session) -> list[tuple[HourRange, str]]:
    """Download `hours` into raw zip objects, splitting the range when Amplitude finds it too big."""
    raw_name = naming.raw_zip_name(hours)
    try:
        for attempt in _http_retrying(config):
            with attempt:
                with gcs.writer(bucket, raw_name, {"range": str(hours)}, "application/zip") as sink:
                    size = amplitude.download(session, config, hours, sink)
    except NoData as why:
        log.info("no data for range", extra={"fields": {"range": str(hours), "reason": str(why)}})
        return []
    except (TooLarge, amplitude.TimedOut) as why:
        if len(hours) == 1:
            raise PermanentError(f"{why}; a single hour cannot be split further") from None
        first, second = hours.halves()
        log.warning("splitting range", extra={"fields": {"range": str(hours), "reason": str(why)}})
        return fetch_archives(first, config, bucket, session) + fetch_archives(second, config, bucket, session)
    log.info("raw archive stored", extra={"fields": {"range": str(hours), "object": raw_name, "bytes": size}})
    return [(hours, raw_name)]


def _http_retrying(config: Config) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(config.http_attempts),
        wait=wait_random_exponential(multiplier=config.http_backoff_seconds, max=60),
        reraise=True,
    )


def unpack_archive(bucket: storage.Bucket, raw_name: str, hours: HourRange, result: ExportResult) -> None:
    with gcs.reader(bucket, raw_name) as raw:
        try:
            archive = zipfile.ZipFile(raw)
        except zipfile.BadZipFile as why:
            raise TransientError(f"{naming.gs_uri(bucket.name, raw_name)} is not a readable zip: {why}") from None
        plan = unpack.plan(archive.namelist(), hours)
        for reason in plan.refused:
            log.error("zip entry refused", extra={"fields": {"object": raw_name, "reason": reason}})
        result.refused.extend(plan.refused)
        for hour, entries in plan.hours.items():
            name = naming.hour_object_name(hour)
            metadata = {
                "upload_hour": f"{hour:%Y-%m-%dT%H}",
                "parts": str(len(entries)),
                "source_zip": naming.gs_uri(bucket.name, raw_name),
            }
            with gcs.writer(bucket, name, metadata, "application/gzip") as out:
                size = unpack.copy_hour(archive, entries, out)
            result.hours[name] = len(entries)
            log.info("hour object written", extra={"fields": _hour_fields(hour, name) | {"parts": len(entries), "bytes": size}})


def _hour_fields(hour: datetime, name: str = "", generation: int | None = None) -> dict:
    fields = {"date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}"}
    if name:
        fields["object"] = name
    if generation is not None:
        fields["generation"] = generation
    return fields


# ---------------------------------------------------------------- transform
def _live(bucket: storage.Bucket, obj: StorageObject) -> storage.Blob:
    blob = gcs.current(bucket, obj.name)
    if blob is None or blob.generation != obj.generation:
        live = "gone" if blob is None else f"now generation {blob.generation}"
        raise Ignored(f"stale event for {obj.name} generation {obj.generation} ({live})")
    return blob


def transform_hour(obj: StorageObject, bucket: storage.Bucket) -> transform.Counts:
    hour = naming.parse_hour_object(obj.name)
    if hour is None:
        raise Ignored(f"not an export hour object: {obj.name}")
    _live(bucket, obj)
    import_name = naming.import_object_name(hour)
    existing = gcs.current(bucket, import_name)
    if existing is not None and (existing.metadata or {}).get("source_generation") == str(obj.generation):
        raise Ignored(f"{import_name} already holds generation {obj.generation} of {obj.name}")
    lineage = Lineage(hour, naming.gs_uri(bucket.name, obj.name), obj.generation)
    rejects_name = naming.rejects_object_name(hour)
    partial_name = import_name + ".partial"
    rejects_meta = {"source_object": lineage.source_object, "source_generation": str(obj.generation)}
    with gcs.reader(bucket, obj.name, obj.generation) as raw, gcs.writer(
        bucket, partial_name, content_type="application/x-ndjson"
    ) as out, transform.LazyWriter(
        lambda: gcs.writer(bucket, rejects_name, rejects_meta, "application/x-ndjson")
    ) as rejects:
        counts = transform.transform_stream(transform.open_gzip(raw), out, rejects, lineage)
    if not counts.rejected:
        gcs.delete_if_exists(bucket, rejects_name)  # an older generation's rejects no longer apply
    # The counts are known only at the end; composing the finished part into the final name sets
    # them as metadata in the same request that finalizes the object the load step reacts to.
    final = bucket.blob(import_name)
    final.metadata = rejects_meta | counts.as_metadata() | {"upload_hour": f"{hour:%Y-%m-%dT%H}"}
    final.content_type = "application/x-ndjson"
    final.compose([bucket.blob(partial_name)])
    gcs.delete_if_exists(bucket, partial_name)
    return counts


# ---------------------------------------------------------------- load
@dataclass(frozen=True)
class LoadOutcome:
    hour: datetime
    generation: int
    events: int
    rows: int
    rejected: int
    loaded: int


def _hour_load(obj: StorageObject, blob: storage.Blob, hour: datetime) -> load.HourLoad:
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
        )
    except (KeyError, ValueError) as missing:
        raise PermanentError(f"{obj.name} was not written by the transform step (metadata {missing} missing)") from None


def _labels(hour: datetime, generation: int, function: str = "load") -> dict[str, str]:
    """Job labels, so every job of an hour can be found in INFORMATION_SCHEMA.JOBS."""
    return {"function": function, "date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}", "generation": str(generation)}


def load_hour(obj: StorageObject, config: Config, bucket: storage.Bucket, bq: bigquery.Client) -> LoadOutcome:
    hour = naming.parse_import_object(obj.name)
    if hour is None:
        raise Ignored(f"not an import hour object: {obj.name}")
    hour_load = _hour_load(obj, _live(bucket, obj), hour)
    bq_adapter.ensure_tables(bq, config)
    _skip_if_loaded(bq, config, hour, obj)
    try:
        _stage_and_commit(bq, config, obj, hour, hour_load)
    except PermanentError:
        # A duplicate delivery of this event may have finished the hour first and dropped the
        # staging table both were using: that is success, not a failure.
        _skip_if_loaded(bq, config, hour, obj)
        raise
    entry = bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour))[0]
    if entry["import_generation"] != obj.generation:
        raise Ignored(f"{obj.name}: a newer generation {entry['import_generation']} is already loaded")
    outcome = LoadOutcome(hour, obj.generation, hour_load.events, hour_load.rows, hour_load.rejected, entry["loaded"])
    if outcome.loaded != outcome.rows or outcome.rows + outcome.rejected != outcome.events:
        raise PermanentError(
            f"{obj.name}: counts do not reconcile: events={outcome.events} rows={outcome.rows} "
            f"rejected={outcome.rejected} loaded={outcome.loaded}"
        )
    return outcome


def _loaded_generation(bq: bigquery.Client, config: Config, hour: datetime) -> int | None:
    rows = bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour))
    return rows[0]["import_generation"] if rows else None


def _skip_if_loaded(bq: bigquery.Client, config: Config, hour: datetime, obj: StorageObject) -> None:
    loaded = _loaded_generation(bq, config, hour)
    if loaded is not None and loaded > obj.generation:
        raise Ignored(f"{obj.name}: a newer generation {loaded} is already loaded")
    if loaded == obj.generation:
        raise Ignored(f"{obj.name}: generation {obj.generation} is already loaded")


def _stage_and_commit(bq: bigquery.Client, config: Config, obj: StorageObject, hour: datetime, hour_load: load.HourLoad) -> None:
    """Load the import object into a staging table, then replace the hour in one transaction."""
    stage_id = f"{config.project}.{config.dataset}.{naming.staging_table_name(config.table, hour, obj.generation)}"
    stage = bigquery.Table(stage_id, schema=bq_adapter.schema_fields())
    stage.expires = datetime.now(timezone.utc) + timedelta(days=1)  # left behind only by a crash
    bq.create_table(stage, exists_ok=True)
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        schema=bq_adapter.schema_fields(),
        labels=_labels(hour, obj.generation),
    )
    uri = naming.gs_uri(obj.bucket, obj.name)
    bq_adapter.run_job_once(
        bq,
        lambda attempt: naming.load_job_id(hour, obj.generation, attempt),
        lambda job_id: bq.load_table_from_uri(uri, stage_id, job_id=job_id, job_config=job_config),
    )
    staged = bq_adapter.query_rows(bq, load.staged_count_sql(stage_id))[0]["n"]
    if staged != hour_load.rows:
        raise PermanentError(f"{obj.name}: staged {staged} rows but transform wrote {hour_load.rows}")
    _commit(bq, config, stage_id, hour_load)
    bq.delete_table(stage_id, not_found_ok=True)


def _commit(bq: bigquery.Client, config: Config, stage_id: str, hour_load: load.HourLoad) -> None:
    """Run the replace transaction; concurrent transactions on the table abort, so retry those."""
    sql = load.replace_hour_script(config.table_id, config.ledger_table_id, stage_id, hour_load)
    job_config = bigquery.QueryJobConfig(labels=_labels(hour_load.hour, hour_load.import_generation) | {"step": "commit"})
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(8),
        wait=wait_random_exponential(multiplier=0.5, max=20),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            bq_adapter.run_job_once(
                bq,
                lambda n: naming.commit_job_id(hour_load.hour, hour_load.import_generation, n),
                lambda job_id: bq.query(sql, job_config=job_config, job_id=job_id, job_retry=None),
            )
