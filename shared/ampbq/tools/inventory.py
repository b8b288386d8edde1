"""Read what GCS and BigQuery say about a range of upload hours, as `status.HourEvidence`.

Object listings (one per day and prefix) carry generations and metadata, so no object is read
except small JSON records (export manifests, dead letters) and, for an archive without a
manifest, the zip's central directory. BigQuery is asked one query per range: the ledger joined
with COUNT(*) per `_upload_hour` (the table is clustered on it, so the count prunes blocks).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from google.api_core import exceptions as gexc
from google.cloud import bigquery, storage

from .. import bigquery as bq_adapter
from .. import gcs, naming
from . import calls
from ..config import AmplitudeProject, Config
from ..load import project_sql, timestamp_literal
from ..naming import HourRange
from ..errors import PermanentError
from .status import HourEvidence, LedgerEntry, ObjectInfo, units_as_import

# Cloud Functions retries a failing event for up to 24 hours.
RETRY_WINDOW = timedelta(hours=24)


@dataclass
class Inventory:
    hours: list[HourEvidence]
    warnings: list[str] = field(default_factory=list)
    project: AmplitudeProject | None = None


def days_of(hours: HourRange) -> list[date]:
    first, last = hours.start.date(), hours.end.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def object_info(blob: storage.Blob) -> ObjectInfo:
    return ObjectInfo(blob.name, int(blob.generation), int(blob.size or 0), dict(blob.metadata or {}), blob.updated)


def read(bucket: storage.Bucket, bq: bigquery.Client, config: Config, hours: HourRange, counts: bool = True,
         project: AmplitudeProject | None = None) -> Inventory:
    """The evidence for every hour of `hours` of one Amplitude project (the default or only one
    when None); `counts=False` skips COUNT(*) (the ledger is enough)."""
    project = project or config.projects[0]
    segment = project.segment
    warnings: list[str] = []
    days = days_of(hours)
    exported = _listing(bucket, [f"{naming.export_prefix(segment)}{d}/" for d in days])
    sources = {hour: info for info in exported if (hour := naming.parse_hour_object(info.name, segment)) is not None}
    listed = _listing(bucket, [f"{naming.import_prefix(segment)}{d}/" for d in days])
    imports = {hour: info for info in listed if (hour := naming.parse_import_object(info.name, segment)) is not None}
    units: dict[datetime, list[tuple[naming.Unit, ObjectInfo]]] = {}
    for info in listed:
        unit = naming.parse_unit_import(info.name)
        if unit is not None and unit.project == segment:
            units.setdefault(unit.hour, []).append((unit, info))
    for hour, found in units.items():  # a fanned-out hour: its units taken together, once all are there
        combined = units_as_import(sources.get(hour), found)
        whole = imports.get(hour)
        if combined is not None and (whole is None or whole.metadata.get("source_generation") != combined.metadata["source_generation"]):
            imports[hour] = combined  # made from the live hour object, unlike a whole-hour import left from before
    coverage = ExportCoverage.read(bucket, hours, needed=[h for h in hours.hours() if h not in sources], project=segment)
    # A fanned-out hour's tasks and unit imports of its live hour object: a dead letter of any
    # of them fails the hour.
    unit_objects = {}
    for info, unit in [(i, naming.parse_unit_task(i.name)) for i in exported] + [(i, u) for found in units.values() for u, i in found]:
        source = sources.get(unit.hour) if unit is not None and unit.project == segment else None
        if source is not None and info.metadata.get("source_generation") == str(source.generation):
            unit_objects[(info.name, info.generation)] = unit.hour
    failures = _step_failures(bucket, days, sources, imports, segment, unit_objects)
    ledger, table_rows, fingerprints = _bigquery(bq, config, hours, counts, warnings, waiting=bool(imports), project=project)
    evidence = []
    now = datetime.now(timezone.utc)
    for hour in hours.hours():
        failed = failures.get(hour, ()) or (() if hour in sources else coverage.failures(hour))
        evidence.append(HourEvidence(
            hour=hour, hour_object=sources.get(hour), import_object=imports.get(hour), ledger=ledger.get(hour),
            table_rows=table_rows.get(hour, 0) if counts else None, table_fingerprint=fingerprints.get(hour),
            archives=coverage.archives(hour),
            exported=True if hour in sources else coverage.exported(hour), failures=failed,
            exporting=coverage.exporting(hour, now), refused=coverage.refused(hour),
            now=now, min_data_age_hours=config.min_data_age_hours, schedule=config.schedule,
        ))
    return Inventory(evidence, warnings, project)


def _listing(bucket: storage.Bucket, prefixes: list[str]) -> list[ObjectInfo]:
    return [object_info(blob) for prefix in prefixes for blob in bucket.list_blobs(prefix=prefix, **calls.storage())]


@dataclass
class ExportCoverage:
    """What the export runs around a range wrote: raw archives, manifests, dead letters."""

    bucket: storage.Bucket
    archives_by_range: dict[HourRange, ObjectInfo] = field(default_factory=dict)
    manifests: list[tuple[HourRange, ObjectInfo, frozenset]] = field(default_factory=list)
    dead: list[tuple[HourRange, ObjectInfo, str]] = field(default_factory=list)
    attempts: list[tuple[HourRange, ObjectInfo]] = field(default_factory=list)  # export runs' markers
    refusals: list[tuple[HourRange, ObjectInfo, list[dict]]] = field(default_factory=list)  # per manifest
    _entries: dict[str, frozenset] = field(default_factory=dict)
    project: str = ""  # the project's segment ("" the default project)

    @classmethod
    def read(cls, bucket: storage.Bucket, hours: HourRange, needed: list[datetime], project: str = "") -> "ExportCoverage":
        coverage = cls(bucket, project=project)
        # A run's archives sit under its first day; a range may start the day before.
        for day in [hours.start.date() - timedelta(days=1), *days_of(hours)]:
            for blob in bucket.list_blobs(prefix=f"{naming.raw_prefix(project)}{day}/", **calls.storage()):
                coverage._add_raw(blob, hours)
        if needed:
            for day in [hours.start.date() - timedelta(days=1), *days_of(hours)]:
                for blob in bucket.list_blobs(prefix=f"{naming.export_dead_letter_prefix(project)}{day:%Y%m%d}",
                                               **calls.storage()):
                    coverage._add_dead_letter(blob, hours)
        return coverage

    def _add_raw(self, blob: storage.Blob, hours: HourRange) -> None:
        parsed = naming.parse_raw_name(blob.name, self.project)
        if parsed is None:
            return
        span, kind = parsed
        if not span.overlaps(hours):
            return
        if kind == "zip":
            self.archives_by_range[span] = object_info(blob)
            return
        if kind in ("started.json", "split.json"):
            self.attempts.append((span, object_info(blob)))
            return
        record = json.loads(blob.download_as_bytes(**calls.storage()))
        written = record.get("hours", {})
        with_data = frozenset(h for h in (naming.parse_hour_object(n, self.project) for n in written) if h is not None)
        self.manifests.append((span, object_info(blob), with_data))
        # Older manifests list refused entries as bare reasons: what those held is not known.
        held = [r for r in record.get("refused", []) if isinstance(r, dict) and r.get("data")]
        self.refusals.append((span, object_info(blob), held))

    def _add_dead_letter(self, blob: storage.Blob, hours: HourRange) -> None:
        span = naming.parse_export_dead_letter(blob.name, self.project)
        if span is not None and span.overlaps(hours):
            self.dead.append((span, object_info(blob), error_text(blob)))

    def archives(self, hour: datetime) -> tuple[str, ...]:
        return tuple(sorted(info.name for span, info in self.archives_by_range.items() if hour in span))

    def _latest_manifest(self, hour: datetime):
        covering = [m for m in self.manifests if hour in m[0]]
        return max(covering, key=lambda m: m[1].updated or datetime.min.replace(tzinfo=timezone.utc), default=None)

    def exported(self, hour: datetime) -> bool | None:
        """Whether a finished export found data for the hour (None: no finished export says)."""
        manifest = self._latest_manifest(hour)
        if manifest is not None:
            return hour in manifest[2]
        archives = [info for span, info in self.archives_by_range.items() if hour in span]
        if not archives:
            return None
        return any(hour in self._zip_hours(info.name) for info in archives)

    def _last_finished(self, hour: datetime) -> datetime | None:
        """When the last finished export of a range holding the hour wrote its manifest."""
        manifest = self._latest_manifest(hour)
        return manifest[1].updated if manifest else None

    def exporting(self, hour: datetime, now: datetime) -> bool:
        """Whether an export run left a marker on a range holding the hour, newer than the last
        finished export of it and recent enough for the platform to be still retrying (24 h).
        A run removes its markers when it finishes; one that gave up leaves them, and ages out."""
        after = self._last_finished(hour)
        return any(hour in span and info.updated and now - info.updated < RETRY_WINDOW and (after is None or info.updated > after)
                   for span, info in self.attempts)

    def refused(self, hour: datetime) -> tuple[str, ...]:
        """The refused zip entries with data that leave the hour incomplete, in words.

        An entry counts while its manifest is the latest finished export of the hour (a later
        export of the range decides again). An entry whose name tells no hour counts for every
        hour of its archive's range: its events may belong to any of them, and nothing else would
        say that hour is incomplete. An entry for an hour outside its archive's range counts for
        that hour (when a status range takes in both): no other record says what it held."""
        latest = self._latest_manifest(hour)
        found = {}
        for span, info, held in self.refusals:
            is_latest = latest is not None and latest[1].name == info.name
            for entry in held:
                named = _hour_of(entry.get("hour"))
                if named is None:
                    applies, why = is_latest, f"its name tells no hour, so any hour of {span} may miss its events"
                else:
                    applies, why = (is_latest if named in span else True) and named == hour, "its events are not loaded"
                if applies:
                    found[f"export refused zip entry {entry.get('name')!r} ({entry.get('size')} bytes) of {info.name}: "
                          f"{entry.get('reason')}; {why}"] = None
        return tuple(found)

    def failures(self, hour: datetime) -> tuple[str, ...]:
        """Export dead letters for the hour's range newer than the last finished export of it."""
        after = self._last_finished(hour)
        return tuple(f"export: {error}" for span, info, error in self.dead
                     if hour in span and (after is None or (info.updated and info.updated > after)))

    def _zip_hours(self, name: str) -> frozenset:
        """The hours an archive has entries for (its central directory only; ranged reads)."""
        if name not in self._entries:
            hours = set()
            with gcs.reader(self.bucket, name, **calls.storage()) as raw:
                for entry in zipfile.ZipFile(raw).namelist():
                    try:
                        hours.add(naming.parse_zip_entry(entry).hour)
                    except ValueError:
                        continue  # refused by the export step; not an hour's data
            self._entries[name] = frozenset(hours)
        return self._entries[name]


def _hour_of(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc) if text else None
    except ValueError:
        return None


def error_text(blob: storage.Blob) -> str:
    """The `error` of a dead-letter record (entry._record_dead_letter writes them)."""
    try:
        return str(json.loads(blob.download_as_bytes(**calls.storage())).get("error", "see the dead-letter record"))
    except (ValueError, gexc.NotFound):
        return f"see {blob.name}"


def _step_failures(bucket, days, sources: dict, imports: dict, project: str = "",
                   unit_objects: dict | None = None) -> dict[datetime, tuple[str, ...]]:
    """Dead letters of transform/load for exactly the live generation of an hour's object (or
    of one of its units: `unit_objects`, (name, generation) → hour)."""
    live = {(o.name, o.generation): hour for objects in (sources, imports) for hour, o in objects.items()} | (unit_objects or {})
    found: dict[datetime, tuple[str, ...]] = {}
    for step, prefix in (("transform", naming.export_prefix(project)), ("load", naming.import_prefix(project))):
        for day in days:
            for blob in bucket.list_blobs(prefix=f"{naming.DEAD_LETTER_PREFIX}{step}/{prefix}{day}/", **calls.storage()):
                parsed = naming.parse_object_dead_letter(blob.name)
                hour = live.get(parsed[1:]) if parsed else None
                if hour is not None:
                    found[hour] = found.get(hour, ()) + (f"{step}: {error_text(blob)}",)
    return found


def missing_table(bq, config: Config) -> str | None:
    """Which of the dataset, the ledger and the events table does not exist, in words (None: all do)."""
    try:
        bq.get_dataset(f"{config.project}.{config.dataset}", **calls.bigquery())
    except gexc.NotFound:
        return f"dataset {config.project}.{config.dataset} (AMPBQ_DATASET={config.dataset})"
    for table in (config.ledger_table_id, config.table_id):
        try:
            bq.get_table(table, **calls.bigquery())
        except gexc.NotFound:
            return f"table {table}"
    return None


def ledger_sql(config: Config, hours: HourRange, counts: bool, project: AmplitudeProject | None = None) -> str:
    """The project's ledger rows of the range (project NULL: the default project's) and, with
    `counts`, its rows in the table per hour (`app` = its id; every row in the one-project form)."""
    project = project or config.projects[0]
    bounds = f"BETWEEN {timestamp_literal(hours.start)} AND {timestamp_literal(hours.end)}"
    ledger = (f"SELECT upload_hour, import_generation, source_generation, events, rows_written, rejected, loaded, fingerprint, loaded_at "
              f"FROM `{config.ledger_table_id}` WHERE upload_hour {bounds} AND {project_sql(project.segment)}")
    app = f" AND app = {int(project.app)}" if project.app else ""
    if not counts:
        return ledger + " ORDER BY upload_hour"
    return f"""
WITH ledger AS ({ledger}),
counts AS (SELECT _upload_hour AS upload_hour, COUNT(*) AS table_rows,
                  BIT_XOR(FARM_FINGERPRINT(uuid)) AS table_fingerprint FROM `{config.table_id}`
           WHERE _upload_hour {bounds}{app} GROUP BY _upload_hour)
SELECT COALESCE(l.upload_hour, c.upload_hour) AS hour, c.table_rows, c.table_fingerprint, l.import_generation,
       l.source_generation, l.events, l.rows_written, l.rejected, l.loaded, l.fingerprint, l.loaded_at
FROM ledger AS l FULL OUTER JOIN counts AS c ON l.upload_hour = c.upload_hour
ORDER BY hour"""


def _bigquery(bq, config: Config, hours: HourRange, counts: bool, warnings: list[str], waiting: bool,
              project: AmplitudeProject | None = None):
    """The ledger and the table's counts. A table that does not exist is an error when import
    objects of the range wait to be loaded into it (a mistyped dataset would otherwise leave
    those hours pending for ever); before anything was loaded (the local stack's load step makes
    the tables on its first load) it is a warning."""
    try:
        job = bq.query(ledger_sql(config, hours, counts, project), **calls.query())
        rows = [dict(row) for row in job.result(**calls.query_result())]
    except gexc.NotFound as missing:
        what = missing_table(bq, config) or f"table ({str(missing.message).splitlines()[0]})"
        if waiting:
            raise PermanentError(f"BigQuery {what} does not exist, though {hours} has import objects for it to hold; "
                                 "check AMPBQ_PROJECT, AMPBQ_DATASET and AMPBQ_TABLE") from None
        warnings.append(f"BigQuery {what} does not exist; nothing has been loaded into it")
        return {}, {}, {}
    except gexc.GoogleAPICallError as error:
        raise bq_adapter.classify(error) from error
    ledger, table_rows, fingerprints = {}, {}, {}
    for row in rows:
        hour = naming.utc_hour(row.get("hour") or row["upload_hour"])
        if row.get("import_generation") is not None:
            ledger[hour] = LedgerEntry(*(int(row[k]) for k in (
                "import_generation", "source_generation", "events", "rows_written", "rejected", "loaded")),
                fingerprint=row.get("fingerprint"), loaded_at=row.get("loaded_at"))
        table_rows[hour] = int(row.get("table_rows") or 0)
        fingerprints[hour] = row.get("table_fingerprint")
    return ledger, table_rows, fingerprints
