"""Names of everything the pipeline writes, and the parsers that recognise them.

The upload hour is the unit of work everywhere: one hour object under `export/`, one import
object under `import/`, one load. Names are zero-padded so they sort; Amplitude's own zip entry
names are not (`_9#` sorts after `_10#`), so those are parsed, never sorted as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator, TypeVar

EXPORT_PREFIX = "export/"
IMPORT_PREFIX = "import/"
REJECTS_PREFIX = "rejects/"
RAW_PREFIX = "export/raw/"
DEAD_LETTER_PREFIX = "deadletter/"

# An Amplitude project other than the default one has its own tree under each prefix:
# export/<project id>/…, import/<project id>/…, rejects/<project id>/… (docs/projects.md). The
# default project's names carry no segment, as before there were projects.
_HOUR_OBJECT = re.compile(r"^export/(?:(\d+)/)?(\d{4}-\d{2}-\d{2})/(\d{2})\.json\.gz$")
_IMPORT_OBJECT = re.compile(r"^import/(?:(\d+)/)?(\d{4}-\d{2}-\d{2})/(\d{2})\.json$")
# A big hour's units (docs/transform.md, "Fan-out"): export/…/HH/unit-KKKK-of-PPPP.json is the task
# of unit K of P of hour HH's hour object, import/…/HH/unit-KKKK-of-PPPP.json its rows, and
# rejects/…/HH/unit-KKKK-of-PPPP.json its rejects.
_UNIT = r"(?:(\d+)/)?(\d{4}-\d{2}-\d{2})/(\d{2})/unit-(\d{4})-of-(\d{4})\.json$"
_UNIT_TASK = re.compile(r"^export/" + _UNIT)
_UNIT_IMPORT = re.compile(r"^import/" + _UNIT)
_PROJECT_ID = re.compile(r"^\d+$")
# {project_id}/{project_id}_{YYYY-MM-DD}_{H}#{n}.json.gz, H not zero-padded, n an opaque partition id.
_ZIP_ENTRY = re.compile(r"^(\d+)/(\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz$")
_API_HOUR = re.compile(r"^(\d{8})T(\d{2})$")
# Amplitude's own cloud-storage export (docs/native-export.md): {prefix}{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz.
_NATIVE_PART = re.compile(r"^(\d+)/(\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz$")

HOUR = timedelta(hours=1)
T = TypeVar("T")


def utc_hour(value: datetime) -> datetime:
    """The start of the UTC hour containing `value` (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def complete_at(hour: datetime, min_data_age_hours: float) -> datetime:
    """When Amplitude has all of upload hour `hour`: `min_data_age_hours` after it ends."""
    return hour + HOUR + timedelta(hours=min_data_age_hours)


def latest_complete_hour(now: datetime, min_data_age_hours: float) -> datetime:
    """The newest upload hour Amplitude has complete at `now`: it ended `min_data_age_hours` ago."""
    return utc_hour(now - timedelta(hours=min_data_age_hours)) - HOUR


def scheduled_run(hour: datetime, schedule: str, min_data_age_hours: float) -> datetime:
    """The first scheduled run that exports `hour`: the daily one at 03:00 UTC, or the hourly one
    at minute 5, once Amplitude has the hour complete (Terraform: pubsub.tf)."""
    ready = complete_at(hour, min_data_age_hours)
    if schedule == "hourly":
        run = ready.replace(minute=5, second=0, microsecond=0)
        return run if run >= ready else run + HOUR
    run = (hour + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    while run < ready:
        run += timedelta(days=1)
    return run


@dataclass(frozen=True)
class HourRange:
    """An inclusive range of upload hours, as the Export API takes it."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start != utc_hour(self.start) or self.end != utc_hour(self.end):
            raise ValueError("range bounds must be whole UTC hours")
        if self.end < self.start:
            raise ValueError(f"range ends before it starts: {self}")

    @classmethod
    def day(cls, day: date) -> "HourRange":
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        return cls(start, start + 23 * HOUR)

    @classmethod
    def parse(cls, start: str, end: str) -> "HourRange":
        return cls(parse_api_hour(start), parse_api_hour(end))

    def hours(self) -> Iterator[datetime]:
        hour = self.start
        while hour <= self.end:
            yield hour
            hour += HOUR

    def __len__(self) -> int:
        return int((self.end - self.start) / HOUR) + 1

    def __contains__(self, hour: object) -> bool:
        return isinstance(hour, datetime) and self.start <= hour <= self.end

    def overlaps(self, other: "HourRange") -> bool:
        return self.start <= other.end and other.start <= self.end

    def halves(self) -> tuple["HourRange", "HourRange"]:
        mid = self.start + (len(self) // 2 - 1) * HOUR
        return HourRange(self.start, mid), HourRange(mid + HOUR, self.end)

    def __str__(self) -> str:
        return f"{api_hour(self.start)}..{api_hour(self.end)}"


def api_hour(hour: datetime) -> str:
    """The Export API's hour format, e.g. 20240131T05."""
    return hour.strftime("%Y%m%dT%H")


def parse_api_hour(text: str) -> datetime:
    match = _API_HOUR.match(text)
    if not match:
        raise ValueError(f"not an hour of the form YYYYMMDDTHH: {text!r}")
    day = datetime.strptime(match.group(1), "%Y%m%d")
    return day.replace(hour=int(match.group(2)), tzinfo=timezone.utc)


def _hour_path(hour: datetime) -> str:
    return f"{hour:%Y-%m-%d}/{hour:%H}"


def check_project(project: str) -> str:
    """A project segment: "" (the default project) or an Amplitude project id (digits)."""
    if project and not _PROJECT_ID.match(project):
        raise ValueError(f"an Amplitude project id is a number, not {project!r}")
    return project


def _segment(project: str) -> str:
    return f"{check_project(project)}/" if project else ""


def export_prefix(project: str = "") -> str:
    """export/ for the default project, export/<project id>/ for any other."""
    return f"{EXPORT_PREFIX}{_segment(project)}"


def import_prefix(project: str = "") -> str:
    return f"{IMPORT_PREFIX}{_segment(project)}"


def rejects_prefix(project: str = "") -> str:
    return f"{REJECTS_PREFIX}{_segment(project)}"


def raw_prefix(project: str = "") -> str:
    """export/raw/ for the default project, export/<project id>/raw/ for any other."""
    return f"{export_prefix(project)}raw/"


def raw_zip_name(hours: HourRange, project: str = "") -> str:
    return f"{raw_prefix(project)}{hours.start:%Y-%m-%d}/{api_hour(hours.start)}-{api_hour(hours.end)}.zip"


def manifest_name(hours: HourRange, project: str = "") -> str:
    """What one export run wrote (archives, hours, refused entries); written last."""
    return raw_zip_name(hours, project).removesuffix(".zip") + ".manifest.json"


def attempt_name(hours: HourRange, state: str, project: str = "") -> str:
    """Marks a range an export run is working on (`started`) or has split (`split`); removed when
    that is over. One object per state: GCS allows about one write a second to one object name."""
    return raw_zip_name(hours, project).removesuffix(".zip") + f".{state}.json"


def dead_letter_name(step: str, subject: str) -> str:
    return f"{DEAD_LETTER_PREFIX}{step}/{subject}.json"


def export_dead_letter_subject(hours: HourRange, project: str = "") -> str:
    """What an export dead letter is named by: its range, after the project's segment."""
    return f"{_segment(project)}{hours}"


def export_dead_letter_prefix(project: str = "") -> str:
    return f"{DEAD_LETTER_PREFIX}export/{_segment(project)}"


_RAW_OBJECT = re.compile(r"^export/(?:(\d+)/)?raw/\d{4}-\d{2}-\d{2}/(\d{8}T\d{2})-(\d{8}T\d{2})\.(zip|manifest\.json|started\.json|split\.json)$")
_OBJECT_DEAD_LETTER = re.compile(r"^deadletter/(transform|load)/(.+)#(\d+)\.json$")
_EXPORT_DEAD_LETTER = re.compile(r"^deadletter/export/(?:(\d+)/)?(\d{8}T\d{2})\.\.(\d{8}T\d{2})\.json$")


def parse_raw_name(name: str, project: str | None = "") -> tuple[HourRange, str] | None:
    """(range, kind) for a raw archive ("zip"), its manifest ("manifest.json") or an export run's
    attempt marker ("started.json", "split.json") of `project` ("" the default one, None any);
    None for any other name."""
    match = _RAW_OBJECT.match(name)
    if not match or (project is not None and (match.group(1) or "") != project):
        return None
    return HourRange.parse(match.group(2), match.group(3)), match.group(4)


def parse_object_dead_letter(name: str) -> tuple[str, str, int] | None:
    """(step, object name, generation) of a transform/load dead letter, or None."""
    match = _OBJECT_DEAD_LETTER.match(name)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


def parse_export_dead_letter(name: str, project: str | None = "") -> HourRange | None:
    """The range of an export dead letter of `project` ("" the default one, None any), or None."""
    match = _EXPORT_DEAD_LETTER.match(name)
    if not match or (project is not None and (match.group(1) or "") != project):
        return None
    return HourRange.parse(match.group(2), match.group(3))


def hour_object_name(hour: datetime, project: str = "") -> str:
    return f"{export_prefix(project)}{_hour_path(hour)}.json.gz"


def import_object_name(hour: datetime, project: str = "") -> str:
    return f"{import_prefix(project)}{_hour_path(hour)}.json"


def rejects_object_name(hour: datetime, project: str = "") -> str:
    return f"{rejects_prefix(project)}{_hour_path(hour)}.json"


@dataclass(frozen=True)
class Unit:
    """Unit `index` (from 0) of the `units` an hour's transform fans out into."""

    project: str
    hour: datetime
    index: int
    units: int

    @property
    def label(self) -> str:
        return f"unit {self.index + 1} of {self.units}"


def _unit_path(unit: Unit) -> str:
    return f"{_segment(unit.project)}{_hour_path(unit.hour)}/unit-{unit.index:04d}-of-{unit.units:04d}.json"


def unit_task_name(unit: Unit) -> str:
    return f"{EXPORT_PREFIX}{_unit_path(unit)}"


def unit_import_name(unit: Unit) -> str:
    return f"{IMPORT_PREFIX}{_unit_path(unit)}"


def unit_rejects_name(unit: Unit) -> str:
    return f"{REJECTS_PREFIX}{_unit_path(unit)}"


def unit_prefix(root: str, hour: datetime, project: str = "") -> str:
    """Where every unit of the hour is (of any fan-out of it) under `root`: EXPORT_PREFIX for
    their tasks, IMPORT_PREFIX for their rows, REJECTS_PREFIX for their rejects."""
    return f"{root}{_segment(project)}{_hour_path(hour)}/unit-"


def unit_import_prefix(hour: datetime, project: str = "") -> str:
    return unit_prefix(IMPORT_PREFIX, hour, project)


def _parse_unit(pattern: re.Pattern, name: str) -> Unit | None:
    match = pattern.match(name)
    scoped = _scoped(match) if match else None
    if scoped is None or not 0 <= int(match.group(4)) < int(match.group(5)):
        return None
    return Unit(scoped[0], scoped[1], int(match.group(4)), int(match.group(5)))


def unit_sets(units: Iterable[tuple[Unit, dict[str, str] | None, T]], source_generation: int
              ) -> dict[tuple[int, str], dict[int, T]]:
    """The units made from generation `source_generation` of their hour object, grouped by
    fan-out ((how many units, plan): two cuttings of one generation are two sets) and keyed by
    index; each unit comes with its object's metadata and whatever stands for the object. A set
    is complete when it holds as many units as it counts."""
    sets: dict[tuple[int, str], dict[int, T]] = {}
    for unit, metadata, item in units:
        metadata = metadata or {}
        if metadata.get("source_generation") == str(source_generation):
            sets.setdefault((unit.units, metadata.get("plan", "")), {})[unit.index] = item
    return sets


def parse_unit_task(name: str) -> Unit | None:
    """The unit an `export/[<project>/]YYYY-MM-DD/HH/unit-KKKK-of-PPPP.json` task names, or None."""
    return _parse_unit(_UNIT_TASK, name)


def parse_unit_import(name: str) -> Unit | None:
    """The unit an `import/[<project>/]YYYY-MM-DD/HH/unit-KKKK-of-PPPP.json` object holds, or None."""
    return _parse_unit(_UNIT_IMPORT, name)


def scratch_name(name: str, source_generation: int, token: str) -> str:
    """Where one transform invocation writes `name`'s content before publishing it: unique per
    source generation and invocation, so concurrent transforms never share a half-written object.
    Left behind only by a crash, and then removed by the prefix's lifecycle rule."""
    return f"{name}.{source_generation}-{token}.partial"


def _parse_scoped(pattern: re.Pattern, name: str) -> tuple[str, datetime] | None:
    match = pattern.match(name)
    return _scoped(match) if match else None


def _scoped(match: re.Match) -> tuple[str, datetime] | None:
    """(project segment, upload hour) of a name matched as `(project)?/(date)/(hour)…`."""
    day = datetime.strptime(match.group(2), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    hour = int(match.group(3))
    return (match.group(1) or "", day.replace(hour=hour)) if hour < 24 else None


def _parse_hour(pattern: re.Pattern, name: str, project: str | None) -> datetime | None:
    scoped = _parse_scoped(pattern, name)
    if scoped is None or (project is not None and scoped[0] != project):
        return None
    return scoped[1]


def parse_hour_object(name: str, project: str | None = "") -> datetime | None:
    """The upload hour of an `export/[<project>/]YYYY-MM-DD/HH.json.gz` object of `project`
    ("" the default project, None any project), or None for anything else."""
    return _parse_hour(_HOUR_OBJECT, name, project)


def parse_import_object(name: str, project: str | None = "") -> datetime | None:
    """The upload hour of an `import/[<project>/]YYYY-MM-DD/HH.json` object, as parse_hour_object."""
    return _parse_hour(_IMPORT_OBJECT, name, project)


def scoped_hour_object(name: str) -> tuple[str, datetime] | None:
    """(project segment, upload hour) of any project's hour object, or None."""
    return _parse_scoped(_HOUR_OBJECT, name)


def scoped_import_object(name: str) -> tuple[str, datetime] | None:
    """(project segment, upload hour) of any project's import object, or None."""
    return _parse_scoped(_IMPORT_OBJECT, name)


@dataclass(frozen=True)
class ZipEntry:
    name: str
    project_id: str
    hour: datetime
    partition: str


def parse_zip_entry(name: str) -> ZipEntry:
    """Parse an Export API zip entry name; raise ValueError for anything unexpected."""
    match = _ZIP_ENTRY.match(name)
    if not match:
        raise ValueError(f"unexpected entry name in export zip: {name!r}")
    folder, project_id, day, hour, partition = match.groups()
    if folder != project_id:
        raise ValueError(f"entry {name!r} is not in its project's folder")
    if int(hour) > 23:
        raise ValueError(f"entry {name!r} names hour {hour}")
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return ZipEntry(name, project_id, start.replace(hour=int(hour)), partition)


@dataclass(frozen=True)
class NativePart:
    """A part object Amplitude's cloud-storage export wrote: its full object name, its project
    (app) id, its upload hour and its opaque partition id."""

    name: str
    app: str
    hour: datetime
    partition: str


def parse_native_part(name: str, prefix: str = "") -> NativePart | None:
    """A part of Amplitude's cloud-storage export under `prefix` (the folder set in Amplitude,
    "" for the bucket's root), or None for any other name (merged-id files `-{org}/…`, Amplitude's
    test upload, anything else). The hour is not zero-padded, the partition id is opaque."""
    folder = native_folder(prefix)
    if not name.startswith(folder):
        return None
    match = _NATIVE_PART.match(name[len(folder):])
    if not match:
        return None
    app, file_app, day, hour, partition = match.groups()
    if app != file_app or int(hour) > 23:
        return None
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return NativePart(name, app, start.replace(hour=int(hour)), partition)


def native_folder(prefix: str) -> str:
    """The folder holding the app folders: the prefix set in Amplitude, with one trailing slash."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def gs_uri(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


def hour_key(hour: datetime) -> str:
    """YYYYMMDDHH: the hour as it appears in job ids and table names."""
    return hour.strftime("%Y%m%d%H")


def _id_segment(project: str) -> str:
    return f"p{check_project(project)}_" if project else ""


def load_job_id(hour: datetime, generation: int, attempt: int = 0, project: str = "") -> str:
    suffix = f"_r{attempt}" if attempt else ""
    return f"ampbq_load_{_id_segment(project)}{hour_key(hour)}_{generation}{suffix}"


def staging_table_name(table: str, hour: datetime, generation: int, project: str = "") -> str:
    return f"_stage_{table}_{_id_segment(project)}{hour_key(hour)}_{generation}"
