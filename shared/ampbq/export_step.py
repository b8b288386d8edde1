"""The export step: the Export API's archive for a range of upload hours → the raw zip kept as
a backup → one hour object per upload hour under `export/`, and the range's manifest."""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import requests
from google.cloud import storage

from . import amplitude, gcs, hour_parts, naming, unpack
from .config import AmplitudeProject, Config
from .errors import NoData, PermanentError, TooLarge, TransientError
from .monitoring import hour_fields, log_hour_loaded, project_field
from .naming import HourRange
from .transform import DamagedStream

log = logging.getLogger("ampbq.export")


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
    gcs.put(bucket, naming.manifest_name(hours, project.segment), json.dumps(result.record(run), indent=1), "application/json")
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
            log_hour_loaded("export", hour, events=0, reason="no data at Amplitude", **project_field(project))
            continue
        log.warning("hour emptied", extra={"fields": hour_fields(hour, name) | {"reason":
                    "the latest export of its range has no events for it; its rows will be removed"}})
        metadata = {"upload_hour": f"{hour:%Y-%m-%dT%H}", "parts": "0", "exported_range": str(hours)}
        gcs.put(bucket, name, EMPTY_HOUR, "application/gzip", metadata)
        result.emptied.append(name)
        log.info("hour object written", extra={"fields": hour_fields(hour, name) | {"parts": 0, "reason": "no data at Amplitude"}})


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
                gcs.put(self.bucket, naming.manifest_name(hours, self.project), json.dumps(part.record(self.run)), "application/json")
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
            log.info("no data for range", extra={"fields": {"range": str(hours), "reason": str(why), **project_field(self.project)}})
            return ExportResult(hours, project=self.project)
        except (TooLarge, amplitude.TimedOut) as why:
            if len(hours) == 1:
                raise PermanentError(f"{why}; a single hour cannot be split further") from None
            log.warning("splitting range", extra={"fields": {"range": str(hours), "reason": str(why)}})
            return None
        part = ExportResult(hours, archives=[raw_name], project=self.project)
        unpack_archive(self.bucket, raw_name, hours, part, self.project, self.config.transform_unit_bytes)
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
        gcs.put(self.bucket, name, json.dumps({"run": self.run}), "application/json")
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
    for attempt in amplitude.retrying(config):
        with attempt:
            with gcs.writer(bucket, raw_name, {"range": str(hours)}, "application/zip") as sink:
                size = amplitude.download(session, config, hours, sink)
    log.info("raw archive stored", extra={"fields": {"range": str(hours), "object": raw_name, "bytes": size}})
    return raw_name



def unpack_archive(bucket: storage.Bucket, raw_name: str, hours: HourRange, result: ExportResult, project: str = "",
                   unit_bytes: int = Config.transform_unit_bytes) -> None:
    """Write each upload hour of the raw zip as its hour object; a part over `unit_bytes`, too
    big for one transform invocation, is split at line ends into pieces of about that size."""
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
            metadata = {
                "upload_hour": f"{hour:%Y-%m-%dT%H}",
                "parts": str(len(entries)),
                "source_zip": naming.gs_uri(bucket.name, raw_name),
            }
            copied = None
            split = _parts_to_split(archive, entries, unit_bytes, hour, name)
            if split:
                copied = _write_split_hour(bucket, archive, name, entries, split, unit_bytes, metadata, hour)
            if copied is None:
                # Each part's size is the zip's (file_size), known before the copy: the part index
                # goes into the metadata of the very upload that finalizes the object.
                metadata |= hour_parts.encode([(entry.label, entry.info.file_size) for entry in entries])
                with gcs.writer(bucket, name, metadata, "application/gzip") as out:
                    copied = unpack.copy_hour(archive, entries, out)
            for part in copied:
                if part.error:
                    log.error("zip entry damaged", extra={"fields": hour_fields(hour, name) | {"entry": part.label, "reason": part.error}})
            result.hours[name] = len(entries)
            log.info("hour object written", extra={"fields": hour_fields(hour, name) | {
                "parts": len(entries), "bytes": sum(part.size for part in copied),
                **({"pieces": len(copied)} if len(copied) != len(entries) else {})}})


def _parts_to_split(archive: zipfile.ZipFile, entries: list, unit_bytes: int, hour: datetime, name: str) -> set[int]:
    """The entries (by position) over `unit_bytes` that can be read to their end: only those are
    split; a damaged one is copied as it is, for the transform to count its damage."""
    split = set()
    for index, entry in enumerate(entries):
        if entry.info.file_size > unit_bytes:
            damage = unpack.damage(archive, entry.info)
            if damage:
                log.warning("part not split", extra={"fields": hour_fields(hour, name) | {
                    "entry": entry.label, "reason": f"{damage}; copied whole"}})
            else:
                split.add(index)
    return split


def _write_split_hour(bucket: storage.Bucket, archive: zipfile.ZipFile, name: str, entries: list, split: set[int],
                      unit_bytes: int, metadata: dict[str, str], hour: datetime) -> list[unpack.Copied] | None:
    """The hour object with the entries at positions `split` split (unpack.split_entry); None
    when one of them cannot be read to its end after all (the caller copies the hour as it is).
    The pieces' sizes are known only once written, so it goes to a scratch object first, then
    into place with its part index in the same request (a compose)."""
    scratch = naming.scratch_name(name, 0, secrets.token_hex(4))
    try:
        with gcs.writer(bucket, scratch, content_type="application/gzip") as out:
            copied: list[unpack.Copied] = []
            for index, entry in enumerate(entries):
                if index in split:
                    copied += unpack.split_entry(archive, entry.info, entry.label, unit_bytes, out)
                else:
                    copied += unpack.copy_hour(archive, [entry], out)
    except (DamagedStream, zipfile.BadZipFile, zlib.error, EOFError) as why:
        log.warning("part not split", extra={"fields": hour_fields(hour, name) | {"reason": f"{why}; copied whole"}})
        gcs.delete_if_exists(bucket, scratch)
        return None
    gcs.finalize(bucket, scratch, name, metadata | hour_parts.encode([(part.label, part.size) for part in copied]),
                 "application/gzip")
    return copied
