"""The three steps of the chain, each taking decoded values and adapters, in one direction:
export (Export API → raw zip → hour objects) → transform (hour object → import object)
→ load (import object → BigQuery). Each step is idempotent on (object, generation).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import secrets
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import requests
from google.api_core import exceptions as gexc
from google.cloud import bigquery, storage
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from . import amplitude, gcs, hour_parts, load, naming, transform, unpack
from . import bigquery as bq_adapter
from .config import AmplitudeProject, Config
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
    resumed: list[str] = field(default_factory=list)  # parts an earlier attempt of the same run finished
    emptied: list[str] = field(default_factory=list)  # hour objects written empty: no data for the hour now
    project: str = ""  # the project's segment ("" the default project)

    def record(self, run: str) -> dict:
        """The manifest: what the run wrote for this range (`inventory` reads its `hours`)."""
        return {"range": str(self.requested), "run": run, **({"project": self.project} if self.project else {}), "archives": self.archives, "hours": self.hours,
                "refused": self.refused, "resumed": self.resumed, "emptied": self.emptied, "finished_at": datetime.now(timezone.utc).isoformat()}

    def add(self, part: "ExportResult") -> None:
        self.archives += part.archives
        self.hours.update(part.hours)
        self.refused += part.refused
        self.resumed += part.resumed


def check_ready(hours: HourRange, config: Config, now: datetime) -> None:
    """Refuse a range whose last hour Amplitude may not have finished (about 2 h after it ends)."""
    ready_at = naming.complete_at(hours.end, config.min_data_age_hours)
    if now < ready_at:
        raise PermanentError(f"range {hours} is not complete at Amplitude until {ready_at:%Y-%m-%dT%H:%MZ}; run it after that")


def export_range(
    hours: HourRange, config: Config, bucket: storage.Bucket, session: requests.Session, now: datetime, run: str = "",
    project: AmplitudeProject | None = None,
) -> ExportResult:
    """Export `hours` of `project` (the first configured one when None: the only one in the
    one-project form) into its hour objects and write its manifest, with the project's own keys
    and region. `run` identifies the run across the platform's retries of one event (its id);
    with it, a retry goes on where an attempt stopped."""
    check_ready(hours, config, now)
    project = project or config.projects[0]
    result = ExportResult(hours, project=project.segment)
    export = ExportRun(config.for_project(project), bucket, session, run, hours, project.segment)
    for part in export.parts(hours):
        result.add(part)
    write_empty_hours(bucket, hours, result, project.segment)
    bucket.blob(naming.manifest_name(hours, project.segment)).upload_from_string(
        json.dumps(result.record(run), indent=1), "application/json")
    export.clean_up()
    return result


# An empty gzip member: an hour object with no lines that every reader opens like any other.
EMPTY_HOUR = gzip.compress(b"", mtime=0)


def write_empty_hours(bucket: storage.Bucket, hours: HourRange, result: ExportResult, project: str = "") -> None:
    """Empty the hour object of every hour of the range that has one and the export found no
    data for now.

    The latest finished export of a range decides every hour in it: an hour that had events in
    an earlier export and has none now (a user-privacy deletion at Amplitude, say) must end with
    no rows. An empty hour object runs the hour through transform and load like any other, and
    its load replaces whatever the hour held with nothing. `parts=0` is what tells `status` the
    hour had no data. An hour with no hour object has nothing to empty (its rows, if any, came
    from an object the lifecycle rule deleted after `export_retention_days`; `status` judges it
    by the ledger): it gets no object, and no transform or load runs for it.
    """
    # A refused entry that held data may hold an hour's events: such an hour is not known to be
    # empty (status shows it FAILED), and an entry whose name tells no hour may hold any of them.
    doubtful = {r.get("hour") for r in result.refused if isinstance(r, dict) and r.get("data")}
    if None in doubtful:
        log.warning("no hour emptied", extra={"fields": {"reason":
                    "a refused zip entry with data names no hour; its events may belong to any hour of the range"}})
        return
    for hour in hours.hours():
        name = naming.hour_object_name(hour, project)
        if name in result.hours or f"{hour:%Y-%m-%dT%H}" in doubtful:
            continue
        live = gcs.current(bucket, name)
        if live is None or (live.metadata or {}).get("parts") == "0":
            # Nothing to load, and nothing missing: the completeness and freshness alerts count
            # this line as the hour's "hour loaded", as they count the load's for an hour with data.
            log_hour_loaded("export", hour, events=0, reason="no data at Amplitude", **_project_field(project))
            continue
        log.warning("hour emptied", extra={"fields": _hour_fields(hour, name) | {"reason":
                    "the latest export of its range has no events for it; its rows will be removed"}})
        metadata = {"upload_hour": f"{hour:%Y-%m-%dT%H}", "parts": "0", "exported_range": str(hours)}
        blob = bucket.blob(name)
        blob.metadata = metadata
        blob.upload_from_string(EMPTY_HOUR, "application/gzip")
        result.emptied.append(name)
        log.info("hour object written", extra={"fields": _hour_fields(hour, name) | {"parts": 0, "reason": "no data at Amplitude"}})


class ExportRun:
    """One run's walk over the parts of a range, each downloaded and unpacked before the next.

    A big day must not die at the function's 540 s timeout and then fail the same way on every
    retry. So the walk can be resumed: each finished part leaves its manifest, tagged with the run,
    and each range being worked on an attempt marker. A retry of the same run skips the finished
    parts, splits a range whose earlier attempt died on it (too slow for one invocation), and after
    `export_budget_seconds` stops itself between two parts (TransientError), leaving the rest to
    the next retry. Without a run id (a local backfill, no time limit) none of this applies.
    """

    def __init__(self, config: Config, bucket: storage.Bucket, session: requests.Session, run: str, requested: HourRange,
                 project: str = ""):
        self.config, self.bucket, self.session, self.run, self.requested = config, bucket, session, run, requested
        self.project = project
        self._started = time.monotonic()
        self._finished_here = 0
        self._split: set[str] = set()  # attempt markers of split ranges, removed by clean_up

    def parts(self, hours: HourRange) -> Iterator[ExportResult]:
        if self.run:
            earlier = self._finished_earlier(hours)
            if earlier is not None:
                yield earlier
                return
            attempt = self._attempt(hours)
            if attempt == "split":  # by an earlier attempt: split again without asking Amplitude
                self._split.add(naming.attempt_name(hours, "split", self.project))
                yield from self._halves(hours)
                return
            if attempt == "started" and len(hours) > 1:
                log.warning("splitting range", extra={"fields": {"range": str(hours), "reason":
                            "an earlier attempt of this run stopped while exporting it; the halves may each fit"}})
                yield from self._split_into_halves(hours)
                return
            self._check_budget(hours)
            self._mark(hours, "started")
        try:
            part = self._export(hours)
        except BaseException:
            self._unmark(hours)  # it failed, it did not die: the retry tries it whole again
            raise
        if part is None:
            yield from self._split_into_halves(hours)
            return
        if self.run:
            if hours != self.requested:  # the whole range's manifest is written once, by export_range
                self.bucket.blob(naming.manifest_name(hours, self.project)).upload_from_string(json.dumps(part.record(self.run)), "application/json")
            self._unmark(hours)
        self._finished_here += 1
        yield part

    def clean_up(self) -> None:
        for name in self._split:
            gcs.delete_if_exists(self.bucket, name)

    def _export(self, hours: HourRange) -> ExportResult | None:
        """One range downloaded and unpacked; None when Amplitude says it must be split."""
        try:
            raw_name = fetch_archive(hours, self.config, self.bucket, self.session, self.project)
        except NoData as why:
            log.info("no data for range", extra={"fields": {"range": str(hours), "reason": str(why), **_project_field(self.project)}})
            return ExportResult(hours, project=self.project)
        except (TooLarge, amplitude.TimedOut) as why:
            if len(hours) == 1:
                raise PermanentError(f"{why}; a single hour cannot be split further") from None
            log.warning("splitting range", extra={"fields": {"range": str(hours), "reason": str(why)}})
            return None
        part = ExportResult(hours, archives=[raw_name], project=self.project)
        unpack_archive(self.bucket, raw_name, hours, part, self.project)
        return part

    def _split_into_halves(self, hours: HourRange) -> Iterator[ExportResult]:
        if self.run:
            self._mark(hours, "split")
            self._unmark(hours)
        yield from self._halves(hours)

    def _halves(self, hours: HourRange) -> Iterator[ExportResult]:
        for half in hours.halves():
            yield from self.parts(half)

    def _check_budget(self, hours: HourRange) -> None:
        spent = time.monotonic() - self._started
        if self._finished_here and spent > self.config.export_budget_seconds:
            raise TransientError(
                f"stopped after {spent:.0f} s and {self._finished_here} parts, to stay within the function's time limit; "
                f"the retry of this run goes on with {hours}")

    def _finished_earlier(self, hours: HourRange) -> ExportResult | None:
        record = gcs.read_json(self.bucket, naming.manifest_name(hours, self.project))
        if record is None or record.get("run") != self.run:
            return None
        return ExportResult(hours, record["archives"], record["hours"], record["refused"], resumed=[str(hours)], project=self.project)

    def _attempt(self, hours: HourRange) -> str | None:
        """"split" or "started" when this run left that mark on the range, else None."""
        for state in ("split", "started"):
            record = gcs.read_json(self.bucket, naming.attempt_name(hours, state, self.project))
            if record is not None and record.get("run") == self.run:
                return state
        return None

    def _mark(self, hours: HourRange, state: str) -> None:
        name = naming.attempt_name(hours, state, self.project)
        self.bucket.blob(name).upload_from_string(json.dumps({"run": self.run}), "application/json")
        if state == "split":
            self._split.add(name)

    def _unmark(self, hours: HourRange) -> None:
        """The range is no longer being worked on (finished, failed or split)."""
        if self.run:
            gcs.delete_if_exists(self.bucket, naming.attempt_name(hours, "started", self.project))


def fetch_archive(hours: HourRange, config: Config, bucket, session, project: str = "") -> str:
    """Download `hours` into its raw zip object (retrying transient failures); its name. `config`
    carries the project's url and keys (Config.for_project)."""
    raw_name = naming.raw_zip_name(hours, project)
    for attempt in _http_retrying(config):
        with attempt:
            with gcs.writer(bucket, raw_name, {"range": str(hours)}, "application/zip") as sink:
                size = amplitude.download(session, config, hours, sink)
    log.info("raw archive stored", extra={"fields": {"range": str(hours), "object": raw_name, "bytes": size}})
    return raw_name


def _http_retrying(config: Config) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(config.http_attempts),
        wait=wait_random_exponential(multiplier=config.http_backoff_seconds, max=60),
        reraise=True,
    )


def unpack_archive(bucket: storage.Bucket, raw_name: str, hours: HourRange, result: ExportResult, project: str = "") -> None:
    with gcs.reader(bucket, raw_name) as raw:
        try:
            archive = zipfile.ZipFile(raw)
        except zipfile.BadZipFile as why:
            raise TransientError(f"{naming.gs_uri(bucket.name, raw_name)} is not a readable zip: {why}") from None
        # By ZipInfo, not by name: a name the zip holds twice is two entries, both kept.
        plan = unpack.plan(archive.infolist(), hours)
        for refusal in plan.refusals:
            # The manifest keeps what `ampbq status` needs to fail the hour the entry was for.
            record = refusal.record(unpack.holds_data(archive, refusal.info))
            log.error("zip entry refused", extra={"fields": {"object": raw_name, "reason": refusal.reason, "entry": refusal.name,
                                                             "bytes": refusal.size, "data": record["data"]}})
            result.refused.append(record)
        for hour, entries in plan.hours.items():
            name = naming.hour_object_name(hour, project)
            # Each part's size is the zip's (file_size), known before the copy: the part index
            # goes into the metadata of the very upload that finalizes the object.
            metadata = {
                "upload_hour": f"{hour:%Y-%m-%dT%H}",
                "parts": str(len(entries)),
                "source_zip": naming.gs_uri(bucket.name, raw_name),
            } | hour_parts.encode([(entry.label, entry.info.file_size) for entry in entries])
            with gcs.writer(bucket, name, metadata, "application/gzip") as out:
                copied = unpack.copy_hour(archive, entries, out)
            for part in copied:
                if part.error:
                    log.error("zip entry damaged", extra={"fields": _hour_fields(hour, name) | {"entry": part.label, "reason": part.error}})
            result.hours[name] = len(entries)
            log.info("hour object written", extra={"fields": _hour_fields(hour, name) | {
                "parts": len(entries), "bytes": sum(part.size for part in copied)}})


def hour_loaded_fields(hour: datetime, at: datetime | None = None) -> dict:
    """The fields of every "hour loaded" line, the one line per upload hour the monitoring counts
    (terraform/modules/pipeline/monitoring.tf): the load's for an hour it committed, the export's
    for an hour with no data at Amplitude. `date` and `hour` become the LogEntry labels the
    metrics are keyed by, written the same way by both, so an hour logged twice is one hour;
    `hour_end_unix` (when the upload hour ends, Unix seconds) is what the freshness alert reads;
    `lag_seconds` is from the end of the upload hour to `at` (now)."""
    end = hour + naming.HOUR
    at = at or datetime.now(timezone.utc)
    return _hour_fields(hour) | {"hour_end_unix": int(end.timestamp()), "lag_seconds": round((at - end).total_seconds(), 3)}


def log_hour_loaded(step: str, hour: datetime, **fields) -> None:
    """Write the hour's "hour loaded" line: the one place it is written (the monitoring counts it;
    keep the message, the labels and the field names stable)."""
    log.info("hour loaded", extra={"fields": {"step": step, **hour_loaded_fields(hour), **fields}})


def _project_field(project: str) -> dict:
    """Log lines of a project other than the default one name it."""
    return {"project": project} if project else {}


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
    scoped = naming.scoped_hour_object(obj.name)
    if scoped is None:
        raise Ignored(f"not an export hour object: {obj.name}")
    project, hour = scoped
    _live(bucket, obj)
    import_name = naming.import_object_name(hour, project)
    _skip_if_written(bucket, import_name, obj)
    lineage = Lineage(hour, naming.gs_uri(bucket.name, obj.name), obj.generation)
    rejects_name = naming.rejects_object_name(hour, project)
    token = secrets.token_hex(4)
    scratch, rejects_scratch = (naming.scratch_name(n, obj.generation, token) for n in (import_name, rejects_name))
    rejects_meta = {"source_object": lineage.source_object, "source_generation": str(obj.generation)}
    with gcs.reader(bucket, obj.name, obj.generation) as raw, gcs.writer(
        bucket, scratch, content_type="application/x-ndjson"
    ) as out, transform.LazyWriter(
        lambda: gcs.writer(bucket, rejects_scratch, content_type="application/x-ndjson")
    ) as rejects:
        counts = transform.transform_parts(raw, _parts(bucket, obj), out, rejects, lineage)
    # Publish in the order a crash can resume: the rejects first, then the import object, whose
    # finalize starts the load. Each is published only over an older source generation's object,
    # so a transform of an older generation that finishes last changes nothing.
    if rejects.opened:
        gcs.publish_if_newer(bucket, rejects_scratch, rejects_name, rejects_meta, "application/x-ndjson")
    else:
        gcs.delete_if_older(bucket, rejects_name, obj.generation)  # an older generation's rejects no longer apply
    metadata = rejects_meta | counts.as_metadata() | {"upload_hour": f"{hour:%Y-%m-%dT%H}"}
    if not gcs.publish_if_newer(bucket, scratch, import_name, metadata, "application/x-ndjson"):
        # A newer generation's import object won; rejects this invocation published are not its.
        if rejects.opened:
            gcs.delete_if_source(bucket, rejects_name, obj.generation)
        raise Ignored(f"{import_name} already holds generation {obj.generation} of {obj.name} or a newer one")
    return counts


def _parts(bucket: storage.Bucket, obj: StorageObject) -> list[hour_parts.Part] | None:
    """The part index of exactly the generation the transform reads (None: read it as one part).
    Its own small read, so the index always belongs to the bytes being read."""
    blob = bucket.get_blob(obj.name, generation=obj.generation)
    return hour_parts.decode(blob.metadata, blob.size) if blob is not None else None


def _skip_if_written(bucket: storage.Bucket, import_name: str, obj: StorageObject) -> None:
    written = gcs.source_generation(gcs.current(bucket, import_name))
    if written == obj.generation:
        raise Ignored(f"{import_name} already holds generation {obj.generation} of {obj.name}")
    if written > obj.generation:
        raise Ignored(f"{import_name} already holds generation {written} of {obj.name}, newer than {obj.generation}")


# ---------------------------------------------------------------- load
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
            **_project_field(project)}


def load_hour(obj: StorageObject, config: Config, bucket: storage.Bucket, bq: bigquery.Client,
              budget: float = LOAD_BUDGET_SECONDS) -> LoadOutcome:
    """Stage the import object, then wait until its hour is committed: by this invocation if it
    gets the table's lease, else by the holder, which commits every staged hour at once."""
    scoped = naming.scoped_import_object(obj.name)
    if scoped is None:
        raise Ignored(f"not an import hour object: {obj.name}")
    project, hour = scoped
    hour_load = _hour_load(obj, _live(bucket, obj), hour, project, config.app_of(project))
    bq_adapter.ensure_tables(bq, config)
    _skip_if_loaded(bq, config, hour_load, obj)
    deadline = time.monotonic() + budget
    try:
        _stage(bq, config, bucket, obj, hour_load)
    except PermanentError:
        # A duplicate delivery of this event may have finished the hour first and dropped the
        # staging table both were using: that is success, not a failure.
        _skip_if_loaded(bq, config, hour_load, obj)
        raise
    _wait_for_commit(bq, config, bucket, hour_load, deadline)
    entry = _ledger_entry(bq, config, hour, project)
    if entry is None or entry["import_generation"] != obj.generation:
        if entry is not None and not hour_load.newer_than(entry["source_generation"], entry["import_generation"]):
            raise Ignored(f"{obj.name}: a newer generation {entry['import_generation']} is already loaded")
        if any(s.load.key == hour_load.key and s.load.newer_than(hour_load.source_generation, hour_load.import_generation)
               for _, s in _waiting(bucket, config)):
            raise Ignored(f"{obj.name}: a newer generation of the hour is waiting for its commit")
        raise TransientError(f"{obj.name}: staged generation {obj.generation} left the waiting list uncommitted")
    outcome = LoadOutcome(hour, obj.generation, hour_load.events, hour_load.rows, hour_load.rejected, entry["loaded"], project)
    if outcome.loaded != outcome.rows or outcome.rows + outcome.rejected != outcome.events:
        raise PermanentError(
            f"{obj.name}: counts do not reconcile: events={outcome.events} rows={outcome.rows} "
            f"rejected={outcome.rejected} loaded={outcome.loaded}"
        )
    return outcome


def _ledger_entry(bq: bigquery.Client, config: Config, hour: datetime, project: str = "") -> dict | None:
    rows = bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour, project))
    return rows[0] if rows else None


def _skip_if_loaded(bq: bigquery.Client, config: Config, hour_load: load.HourLoad, obj: StorageObject) -> None:
    entry = _ledger_entry(bq, config, hour_load.hour, hour_load.project)
    if entry is None:
        return
    if entry["import_generation"] == obj.generation:
        # Committed by a lease holder after an earlier attempt of this event gave up waiting: this
        # attempt is the one that reports the hour, so the monitoring still sees it loaded.
        log_hour_loaded("load", hour_load.hour, generation=obj.generation, events=entry["events"],
                        rows=entry["rows_written"], rejected=entry["rejected"], loaded=entry["loaded"],
                        **_project_field(hour_load.project))
        raise Ignored(f"{obj.name}: generation {obj.generation} is already loaded")
    if not hour_load.newer_than(entry["source_generation"], entry["import_generation"]):
        raise Ignored(f"{obj.name}: a newer generation {entry['import_generation']} "
                      f"(hour object generation {entry['source_generation']}) is already loaded")


def _stage(bq: bigquery.Client, config: Config, bucket: storage.Bucket, obj: StorageObject, hour_load: load.HourLoad) -> None:
    """Load the import object into its staging table, check it, and put it on the waiting list."""
    hour, project = hour_load.hour, hour_load.project
    stage_id = f"{config.project}.{config.dataset}.{naming.staging_table_name(config.table, hour, obj.generation, project)}"
    stage = bigquery.Table(stage_id, schema=bq_adapter.schema_fields())
    stage.expires = datetime.now(timezone.utc) + timedelta(days=1)  # left behind only by a crash
    bq.create_table(stage, exists_ok=True)
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        schema=bq_adapter.schema_fields(),
        labels=_labels(hour, obj.generation, project=project),
    )
    uri = naming.gs_uri(obj.bucket, obj.name)
    for again in ("", "_again"):
        # "_again": the staging table was dropped after the job of the first id had filled it
        # (a holder found it gone), so that finished job's id no longer stands for its rows.
        bq_adapter.run_job_once(
            bq,
            lambda attempt: naming.load_job_id(hour, obj.generation, attempt, project) + again,
            lambda job_id: bq.load_table_from_uri(uri, stage_id, job_id=job_id, job_config=job_config),
        )
        # A load job reads the live object behind its URI, not a generation. If that is still this
        # generation after the job, it was throughout (generations only grow): the staged rows are its.
        live = gcs.current(bucket, obj.name)
        if live is None or live.generation != obj.generation:
            raise Ignored(f"{obj.name} was replaced while generation {obj.generation} was loading; "
                          f"the newer generation's event loads it")
        summary = bq_adapter.query_rows(bq, load.staged_summary_sql(stage_id, hour_load.app))[0]
        if summary["n"] == hour_load.rows:
            break
    if summary["n"] != hour_load.rows:
        raise PermanentError(f"{obj.name}: staged {summary['n']} rows but transform wrote {hour_load.rows}")
    if summary.get("foreign_rows"):
        raise PermanentError(f"{obj.name}: {summary['foreign_rows']} of its {summary['n']} rows are not of Amplitude project "
                             f"{hour_load.app} (their app differs); a project's hour may hold only its own rows")
    staged = load.Staged(hour_load, stage_id, summary["lo"], summary["hi"], int(summary["days"]))
    marker = bucket.blob(load.waiting_name(config.table_id, hour, obj.generation, project))
    marker.metadata = {"staged": staged.to_json()}
    marker.upload_from_string(staged.to_json(), "application/json")


def _wait_for_commit(bq: bigquery.Client, config: Config, bucket: storage.Bucket, hour_load: load.HourLoad,
                     deadline: float) -> None:
    """Until the hour's marker is gone (committed, or superseded by a newer generation): take the
    lease when it is free and commit everything waiting, else wait for the holder."""
    marker = load.waiting_name(config.table_id, hour_load.hour, hour_load.import_generation, hour_load.project)
    while bucket.get_blob(marker) is not None:
        if time.monotonic() > deadline:
            raise TransientError(f"hour {hour_load.hour:%Y-%m-%dT%H} is staged but not committed within the "
                                 f"invocation's budget; the retry waits for it again")
        lease = _Lease(bucket, load.lease_name(config.table_id), config.load_lease_seconds)
        if lease.acquire():
            try:
                _commit_waiting(bq, config, bucket, lease, deadline)
            finally:
                lease.release()
            continue
        time.sleep(random.uniform(*POLL_SECONDS))


class _Lease:
    """The table's commit lease: an object created only if absent (`if_generation_match=0`).

    It only serialises commits so that BigQuery never has to cancel one; correctness does not rest
    on it (the transaction's ledger guard does), so breaking a lease that was not renewed for
    `stale_after` seconds, whose holder died, is safe even if that holder was merely slow.
    """

    def __init__(self, bucket: storage.Bucket, name: str, stale_after: float = 60.0):
        self.bucket, self.name, self.generation, self.stale_after = bucket, name, None, stale_after

    def acquire(self) -> bool:
        held = self.bucket.get_blob(self.name)
        if held is not None:
            age = (datetime.now(timezone.utc) - held.updated).total_seconds() if held.updated else 0
            if age < self.stale_after:
                return False
            log.warning("breaking a stale lease", extra={"fields": {"object": self.name, "age_seconds": round(age)}})
            try:
                held.delete(if_generation_match=held.generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                return False  # someone else broke or renewed it first
        return self._write(0)

    def renew(self) -> bool:
        """False when a waiter broke it meanwhile: it is theirs now."""
        if self.generation is not None and self._write(self.generation):
            return True
        self.generation = None
        return False

    def release(self) -> None:
        if self.generation is not None:
            try:
                self.bucket.blob(self.name).delete(if_generation_match=self.generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                pass  # broken by a waiter meanwhile: the lease is theirs now
            self.generation = None

    def _write(self, expected: int) -> bool:
        blob = self.bucket.blob(self.name)
        try:
            blob.upload_from_string(json.dumps({"at": datetime.now(timezone.utc).isoformat()}), "application/json",
                                    if_generation_match=expected)
        except gexc.PreconditionFailed:
            return False
        self.generation = blob.generation
        return True


def _waiting(bucket: storage.Bucket, config: Config) -> list[tuple[storage.Blob, load.Staged]]:
    found = []
    for blob in bucket.list_blobs(prefix=load.waiting_prefix(config.table_id)):
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


def _commit_waiting(bq: bigquery.Client, config: Config, bucket: storage.Bucket, lease: _Lease, deadline: float) -> None:
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
            gone = [staged for staged in batch if not _stage_exists(bq, staged)]
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


def _stage_exists(bq: bigquery.Client, staged: load.Staged) -> bool:
    try:
        bq.get_table(staged.stage_id)
        return True
    except gexc.NotFound:
        return False


def _drop_staged(bq: bigquery.Client, bucket: storage.Bucket, markers: dict, staged: load.Staged) -> None:
    """The hour is committed (or superseded): its waiter may go, its staging table is done."""
    blob = markers.get((staged.load.key, staged.load.import_generation))
    if blob is not None:
        gcs.delete_if_exists(bucket, blob.name)
    bq.delete_table(staged.stage_id, not_found_ok=True)


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
    job_config = bigquery.QueryJobConfig(labels=_labels(first.hour, first.import_generation) | {"step": "commit", "hours": str(len(batch))})
    job = bq_adapter.run_job_once(
        bq,
        lambda n: f"ampbq_commit_{token}" + (f"_r{n}" if n else ""),
        lambda job_id: bq.query(sql, job_config=job_config, job_id=job_id, job_retry=None),
    )
    billed = getattr(job, "total_bytes_billed", None)
    if billed is not None:
        # Still under the lease: no transaction of ours can run on the ledger meanwhile.
        bq_adapter.query_rows(bq, load.bytes_billed_sql(config.ledger_table_id, token, billed))
    return token, billed
