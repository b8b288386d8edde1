"""Where an upload hour stands, decided from what GCS and BigQuery say about it (pure, no I/O).

`inventory` gathers one `HourEvidence` per hour; `classify` turns it into a state:

- loaded    the ledger records a load of the live import object, which was made from the live
            hour object, and every count agrees (events = rows + rejected, rows in the table =
            rows the load wrote = rows transform wrote).
- no data   the latest export that covered the hour found nothing for it (Amplitude answered
            404, or its archive has no entry for the hour): the hour object is the empty one
            the export writes then (`parts=0`) and its load left no rows, or there is no hour
            object and that export's manifest does not list the hour.
- pending   the chain is working on it: the import object or the ledger entry is for an older
            generation than the live object upstream of it, or an export run is part-way
            through a range that holds the hour (its attempt marker is under export/raw/).
- not over  the hour has not ended yet: nothing can have been exported for it.
- not ready the hour is over, but Amplitude's data for it is complete only `min_data_age_hours`
            (2 h) after it ends, and the export refuses it until then.
- MISSING   no hour object and nothing says the hour had no data: the export never ran for it,
            or it ran but did not write the hour object.
- FAILED    a step gave up on the live generation (a dead-letter record exists for it), or
            the export refused a zip entry holding data for the hour (its events are not loaded).
- MISMATCH  the counts disagree, or BigQuery holds rows nothing accounts for.

An hour whose objects are gone (the bucket's lifecycle rules delete export/ and import/ after a
while) but whose load is in the ledger is judged by the ledger and the table alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum

from .. import naming


class State(str, Enum):
    LOADED = "loaded"
    NO_DATA = "no_data"
    PENDING = "pending"
    NOT_OVER = "not_over"
    NOT_READY = "not_ready"
    MISSING = "missing"
    FAILED = "failed"
    MISMATCH = "mismatch"

    @property
    def label(self) -> str:
        """How a person reads it: problems shout."""
        if self in PROBLEMS:
            return self.value.upper()
        return self.value.replace("_", " ")


PROBLEMS = frozenset({State.MISSING, State.FAILED, State.MISMATCH})
COMPLETE = frozenset({State.LOADED, State.NO_DATA})
# States that will not change until a person (or a new run) acts: what the waits wait for.
SETTLED = COMPLETE | PROBLEMS
# Not a problem yet: the hour is not over, or Amplitude may not have all of it (exit 3, like pending).
TOO_EARLY = frozenset({State.NOT_OVER, State.NOT_READY})
HOUR = naming.HOUR

EXIT_COMPLETE, EXIT_PROBLEM, EXIT_PENDING = 0, 1, 3


@dataclass(frozen=True)
class ObjectInfo:
    """A live GCS object: what its listing entry says."""

    name: str
    generation: int
    size: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    updated: datetime | None = None

    def count(self, key: str) -> int | None:
        try:
            return int(self.metadata[key])
        except (KeyError, ValueError):
            return None


def units_as_import(hour_object: ObjectInfo | None, units: list[tuple[naming.Unit, ObjectInfo]]) -> ObjectInfo | None:
    """A fanned-out hour's unit import objects, taken together as the hour's import object when
    every unit of the live hour object's generation is there (the load takes them as one: its
    import generation is their newest); None otherwise."""
    if hour_object is None:
        return None
    made_from = str(hour_object.generation)
    sets = naming.unit_sets([(unit, info.metadata, info) for unit, info in units], hour_object.generation)
    complete = [found for (count, _), found in sets.items() if len(found) == count]
    if not complete:
        return None
    found = max(complete, key=lambda f: max(i.generation for i in f.values()))
    infos = list(found.values())
    metadata = {"source_generation": made_from, "units": str(len(infos))} | {
        key: str(sum(i.count(key) or 0 for i in infos)) for key in ("events", "rows", "rejected")}
    newest = max(infos, key=lambda i: i.generation)
    return ObjectInfo(newest.name.rsplit("/", 1)[0] + "/", newest.generation, sum(i.size for i in infos), metadata, newest.updated)


@dataclass(frozen=True)
class LedgerEntry:
    """The load ledger's row for an hour (schema/all_user_events_loads.json)."""

    import_generation: int
    source_generation: int
    events: int
    rows_written: int
    rejected: int
    loaded: int
    fingerprint: int | None = None  # BIT_XOR(FARM_FINGERPRINT(uuid)) of the rows loaded; None: not recorded
    loaded_at: datetime | None = None  # when the rows the hour holds now were committed


@dataclass(frozen=True)
class HourEvidence:
    hour: datetime
    hour_object: ObjectInfo | None = None
    import_object: ObjectInfo | None = None
    ledger: LedgerEntry | None = None
    table_rows: int | None = None  # rows with this _upload_hour; None when not counted
    table_fingerprint: int | None = None  # BIT_XOR(FARM_FINGERPRINT(uuid)) of those rows (None: none, or not counted)
    archives: tuple[str, ...] = ()  # raw archives whose range holds the hour
    exported: bool | None = None  # did a finished export find data for the hour? None: unknown
    failures: tuple[str, ...] = ()  # dead-letter errors for the live generations (or the export)
    exporting: bool = False  # an export run is part-way through a range that holds the hour
    refused: tuple[str, ...] = ()  # zip entries with data for the hour that the export refused
    now: datetime | None = None  # when the evidence was read (None: long after the hour)
    min_data_age_hours: float = 2.0  # how long after its end Amplitude has all of an hour (config)
    schedule: str = "daily"  # when the deployment's runs start (config), so when an hour is due


@dataclass(frozen=True)
class HourStatus:
    evidence: HourEvidence
    state: State
    reason: str = ""

    @property
    def hour(self) -> datetime:
        return self.evidence.hour

    @property
    def events(self) -> int | None:
        imp, led = self.evidence.import_object, self.evidence.ledger
        return imp.count("events") if imp else (led.events if led else None)

    @property
    def rejected(self) -> int | None:
        imp, led = self.evidence.import_object, self.evidence.ledger
        return imp.count("rejected") if imp else (led.rejected if led else None)

    @property
    def lag(self) -> timedelta | None:
        """From the end of the upload hour to the commit of the rows it holds now (a reload
        starts it again); None unless the hour is loaded."""
        entry = self.evidence.ledger
        if self.state is not State.LOADED or entry is None or entry.loaded_at is None:
            return None
        loaded_at = entry.loaded_at if entry.loaded_at.tzinfo else entry.loaded_at.replace(tzinfo=timezone.utc)
        return loaded_at - (self.hour + HOUR)

    def as_json(self) -> dict:
        e = self.evidence
        return {
            "hour": f"{e.hour:%Y-%m-%dT%H}",
            "state": self.state.value,
            "reason": self.reason,
            "raw_archives": list(e.archives),
            "hour_object": _object_json(e.hour_object),
            "import_object": _object_json(e.import_object),
            "events": self.events,
            "rejected": self.rejected,
            "rows_in_bigquery": e.table_rows,
            "lag_seconds": round(self.lag.total_seconds()) if self.lag is not None else None,
            "ledger": vars(e.ledger) if e.ledger else None,
        }


def _object_json(obj: ObjectInfo | None) -> dict | None:
    if obj is None:
        return None
    return {"name": obj.name, "generation": obj.generation, "size": obj.size, "metadata": dict(obj.metadata)}


def classify(evidence: HourEvidence) -> HourStatus:
    state, reason = _decide(evidence)
    return HourStatus(evidence, state, reason)


def _decide(e: HourEvidence) -> tuple[State, str]:
    src, imp, led = e.hour_object, e.import_object, e.ledger
    if e.refused:  # whatever else landed, those events did not: a person must look at the archive
        return State.FAILED, e.refused[0]
    if src is None:
        return _without_hour_object(e)
    if led is None and e.table_rows:
        # Rows and their ledger entry are committed in one transaction: rows without one are unaccounted for.
        return State.MISMATCH, f"{e.table_rows} rows in BigQuery but no load recorded"
    if imp is None and led is not None and led.source_generation == src.generation:
        # The import object is gone (lifecycle rules delete import/ after a few days) after its
        # load of the live hour object was recorded: the ledger and the table say the rest.
        problems = count_problems(led, e.table_rows, None, e.table_fingerprint)
        return (State.MISMATCH, "; ".join(problems)) if problems else _loaded(src, led)
    if imp is None or imp.metadata.get("source_generation") != str(src.generation):
        if e.failures:
            return State.FAILED, e.failures[0]
        return State.PENDING, f"transform has not written generation {src.generation} yet"
    if led is None or led.import_generation < imp.generation:
        if e.failures:
            return State.FAILED, e.failures[0]
        return State.PENDING, f"load of import generation {imp.generation} not recorded yet"
    if led.import_generation > imp.generation:
        return State.MISMATCH, f"the ledger records import generation {led.import_generation}, newer than the live {imp.generation}"
    problems = count_problems(led, e.table_rows, imp, e.table_fingerprint)
    if problems:
        return State.MISMATCH, "; ".join(problems)
    return _loaded(src, led)


def _loaded(src: ObjectInfo, led: LedgerEntry) -> tuple[State, str]:
    if src.metadata.get("parts") == "0" and led.events == 0:
        return State.NO_DATA, "the export found no events for this hour"
    return State.LOADED, ""


def _without_hour_object(e: HourEvidence) -> tuple[State, str]:
    if e.ledger is not None:
        problems = count_problems(e.ledger, e.table_rows, e.import_object, e.table_fingerprint)
        if problems:
            return State.MISMATCH, "; ".join(problems)
        return State.LOADED, "hour object gone (lifecycle?); judged by the ledger"
    if e.table_rows:
        return State.MISMATCH, f"{e.table_rows} rows in BigQuery but no hour object and no load recorded"
    if e.exported is False:
        return State.NO_DATA, "the export found no events for this hour"
    early = _too_early(e)
    if early is not None:
        return early
    if e.failures:
        return State.FAILED, e.failures[0]
    if e.exporting:
        return State.PENDING, "an export run is part-way through this range; the platform's retry goes on with it"
    due = _not_due(e) if not e.exported else None
    if due is not None:
        return due
    if e.exported:
        return State.MISSING, "the raw archive has this hour but no hour object was written"
    return State.MISSING, "no finished export covers this hour"


def _too_early(e: HourEvidence) -> tuple[State, str] | None:
    """NOT_OVER or NOT_READY for an hour nothing was exported for yet, because it is too recent."""
    if e.now is None:
        return None
    ends = e.hour + HOUR
    ready = naming.complete_at(e.hour, e.min_data_age_hours)
    if e.now < ends:
        return State.NOT_OVER, f"ends at {ends:%Y-%m-%d %H:%M} UTC; exportable from {ready:%Y-%m-%d %H:%M} UTC"
    if e.now < ready:
        return State.NOT_READY, (f"over; Amplitude has all of it {e.min_data_age_hours:g} h after its end: "
                                 f"exportable from {ready:%Y-%m-%d %H:%M} UTC")
    return None


# How long after its scheduled run an hour may take to land before it counts as MISSING.
SCHEDULE_GRACE = {"daily": timedelta(hours=2), "hourly": timedelta(minutes=30)}


def _not_due(e: HourEvidence) -> tuple[State, str] | None:
    """NOT_READY for a complete hour whose scheduled run has not had time to export it yet."""
    if e.now is None:
        return None
    run = naming.scheduled_run(e.hour, e.schedule, e.min_data_age_hours)
    due = run + SCHEDULE_GRACE[e.schedule]
    if e.now >= due:
        return None
    return State.NOT_READY, (f"complete at Amplitude; the {e.schedule} run at {run:%Y-%m-%d %H:%M} UTC exports it "
                             f"(due by {due:%H:%M} UTC)")


def count_problems(led: LedgerEntry, table_rows: int | None, imp: ObjectInfo | None = None,
                   table_fingerprint: int | None = None) -> list[str]:
    """Every way the counts of a loaded hour disagree, in words (empty when they all agree)."""
    problems = []
    if imp is not None and imp.metadata.get("source_generation") == str(led.source_generation):
        for key, recorded in (("events", led.events), ("rows", led.rows_written), ("rejected", led.rejected)):
            if imp.count(key) != recorded:
                problems.append(f"import object says {key}={imp.count(key)}, the ledger {recorded}")
    if led.events != led.rows_written + led.rejected:
        problems.append(f"events {led.events} != rows {led.rows_written} + rejected {led.rejected}")
    if led.loaded != led.rows_written:
        problems.append(f"the load counted {led.loaded} rows after writing {led.rows_written}")
    if table_rows is not None and table_rows != led.loaded:
        problems.append(f"BigQuery holds {table_rows} rows, the load recorded {led.loaded}")
    elif table_rows is not None and led.fingerprint is not None and (table_fingerprint or 0) != led.fingerprint:
        # Same count, other rows (some deleted, as many duplicated): the uuids' fingerprint differs.
        problems.append(f"BigQuery holds {table_rows} rows as recorded, but not the rows the load wrote (uuid fingerprint differs)")
    return problems


def summary(statuses: list[HourStatus]) -> Counter:
    return Counter(s.state for s in statuses)


def exit_code(statuses: list[HourStatus]) -> int:
    """0: every hour complete; 1: a person must act; 3: only work in progress, or hours too
    recent to export (not over, not ready), remain."""
    states = {s.state for s in statuses}
    if states & PROBLEMS:
        return EXIT_PROBLEM
    return EXIT_COMPLETE if states <= COMPLETE else EXIT_PENDING


def document(label: str, statuses: list[HourStatus], warnings: list[str]) -> dict:
    """What `ampbq status --json` prints."""
    return {"range": label, "summary": {s.value: n for s, n in summary(statuses).items()},
            "exit_code": exit_code(statuses), "warnings": warnings, "hours": [s.as_json() for s in statuses]}


def summary_line(statuses: list[HourStatus], label: str, project: str | None = None) -> str:
    """e.g. `status: 20240131T00..20240131T23 hours=24 loaded=23 no_data=1 events=2300 rejected=0 rows=2300`
    (with `project=123456` after the range in a deployment of several Amplitude projects)."""
    counts = summary(statuses)
    states = " ".join(f"{state.value}={counts[state]}" for state in State if counts[state])
    events = sum(s.events or 0 for s in statuses)
    rejected = sum(s.rejected or 0 for s in statuses)
    rows = sum(s.evidence.table_rows or 0 for s in statuses)
    label = f"{label} project={project}" if project else label
    return f"status: {label} hours={len(statuses)} {states} events={events} rejected={rejected} rows={rows}"
