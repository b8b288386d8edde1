"""`ampbq demo`: a whole day through the local stack, end to end, with a per-hour account.

The number of events exported is counted from the archive the stub serves (the source of
truth), rows loaded are counted in BigQuery, and rejected lines come from the load ledger; the
run fails unless loaded + rejected == exported for every hour.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from .. import bigquery as bq_adapter
from .. import gcs, naming
from ..config import Config
from ..load import project_sql
from ..naming import HourRange, utc_hour
from .stack import REPO, Stack, StackSettings
from .stub import ExportApiStub, ZipSource, events_per_hour
from .synthetic import Dataset, write_export_zip

# `--native-export`: Amplitude's side. The folder set in Amplitude, and how long no new part of
# an hour must arrive before it is assembled (30 minutes in the cloud; the demo's parts all
# arrive within a second or two).
NATIVE_BUCKET = "local-amplitude-native-export"
NATIVE_PREFIX = "amplitude"
NATIVE_QUIET_SECONDS = 8
SCAN_EVERY_SECONDS = 3  # the scheduler's runs, sped up: each looks again at the bucket


@dataclass
class HourReport:
    hour: datetime
    exported: int
    loaded: int = 0
    rejected: int = 0

    @property
    def landed(self) -> bool:
        return self.loaded + self.rejected == self.exported


@dataclass
class DemoReport:
    day: date
    hours: list[HourReport] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False
    conflicts: int | None = None  # transactions BigQuery would have cancelled (the rules layer's count)
    export_error: str | None = None  # why the export gave up on the range, from its dead-letter record
    project: str = ""  # the Amplitude project id of one project's account ("" the whole run)
    projects: list["DemoReport"] = field(default_factory=list)  # `--projects N`: each project's account

    @property
    def events(self) -> int:
        return sum(p.events for p in self.projects) if self.projects else sum(h.exported for h in self.hours)

    @property
    def loaded(self) -> int:
        return sum(p.loaded for p in self.projects) if self.projects else sum(h.loaded for h in self.hours)

    @property
    def rejected(self) -> int:
        return sum(p.rejected for p in self.projects) if self.projects else sum(h.rejected for h in self.hours)

    @property
    def hour_count(self) -> int:
        """Distinct upload hours (the projects share them)."""
        return len({h.hour for p in (self.projects or [self]) for h in p.hours})

    @property
    def ok(self) -> bool:
        if self.projects:
            return not self.timed_out and self.export_error is None and all(p.ok for p in self.projects)
        return not self.timed_out and self.export_error is None and all(h.landed for h in self.hours) and self.loaded + self.rejected == self.events

    def project_lines(self) -> list[str]:
        """`--projects N`: one line per project, e.g. `demo: project=100001 date=… hours=24 events=…`."""
        return [f"demo: project={p.project} date={p.day:%Y-%m-%d} hours={len(p.hours)} events={p.events} "
                f"loaded={p.loaded} rejected={p.rejected}" for p in self.projects]

    def summary_line(self) -> str:
        line = f"demo: date={self.day:%Y-%m-%d} hours={self.hour_count} events={self.events} loaded={self.loaded} rejected={self.rejected}"
        line = line if self.conflicts is None else f"{line} conflicts={self.conflicts}"
        return f"{line} projects={len(self.projects)}" if self.projects else line


def latest_complete_day(min_data_age_hours: float, now: datetime | None = None) -> date:
    """The newest UTC day whose every hour Amplitude has complete: its last hour ended at least
    `min_data_age_hours` ago. Before about 02:00 UTC that is the day before yesterday."""
    newest = naming.latest_complete_hour(now or datetime.now(timezone.utc), min_data_age_hours)
    return (newest + naming.HOUR).date() - timedelta(days=1)  # the last day whose hour 23 is complete


def previous_utc_day(now: datetime | None = None) -> date:
    now = now or datetime.now(timezone.utc)
    return (utc_hour(now) - timedelta(days=1)).date()


def refuse_incomplete(day: date, min_data_age_hours: float, now: datetime | None = None) -> None:
    """Say at once, before anything starts, that a day cannot be exported yet (the export would refuse it)."""
    now = now or datetime.now(timezone.utc)
    last_hour = datetime.combine(day, datetime.min.time(), timezone.utc).replace(hour=23)
    ready_at = naming.complete_at(last_hour, min_data_age_hours)
    if now < ready_at:
        raise ValueError(f"{day} is not complete at Amplitude until {ready_at:%Y-%m-%dT%H:%MZ} "
                         f"(data is final {min_data_age_hours:g} h after each hour); "
                         f"pass --date {latest_complete_day(min_data_age_hours, now)} or earlier")


# `--projects N`: the demo's Amplitude projects, the first one the default (today's names).
DEMO_APPS = (100001, 100002, 100003, 100004)


def project_keys(app: int) -> tuple[str, str]:
    """The stub's keys for a demo project (not secrets: the stub serves generated data)."""
    return f"demo-key-{app}", f"demo-secret-{app}"


def run_demo(day: date | None = None, zip_path: Path | None = None, events_per_hour: int = 100,
             parts_per_hour: int = 2, timeout: float = 600, workdir: Path | None = None, progress=None,
             amplitude_url: str | None = None, projects: int = 1) -> DemoReport:
    """Start the stack, publish one daily-runs message, wait for every hour, and account for it."""
    workdir = Path(workdir or REPO / ".stack" / "demo")
    # The functions inherit this process's environment, so they apply the same data-age rule.
    min_age = float(os.environ.get("AMPBQ_MIN_DATA_AGE_HOURS", Config.min_data_age_hours))
    if day is not None:
        refuse_incomplete(day, min_age)
    if projects > 1:
        if zip_path is not None or amplitude_url:
            raise ValueError("--projects generates each project's data; it does not go with --zip or --amplitude-url")
        if projects > len(DEMO_APPS):
            raise ValueError(f"--projects takes 1 to {len(DEMO_APPS)}")
        return run_projects_demo(day or latest_complete_day(min_age), projects, events_per_hour, parts_per_hour,
                                 timeout, workdir, progress, explicit=day is not None)
    if amplitude_url:
        return run_external(amplitude_url, day or latest_complete_day(min_age), timeout, workdir, progress)
    # The scheduler's message is empty (the export takes the previous UTC day); send the same
    # unless the day to run is another one.
    explicit = day is not None or zip_path is not None or latest_complete_day(min_age) != previous_utc_day()
    with tempfile.TemporaryDirectory(prefix="ampbq-demo-") as scratch:
        if zip_path is None:
            dataset = Dataset.for_day(day or latest_complete_day(min_age), events_per_hour=events_per_hour, parts_per_hour=parts_per_hour)
            zip_path = Path(scratch) / "served.zip"
            with open(zip_path, "wb") as sink:
                write_export_zip(dataset, sink)
        expected = events_per_hour_in(zip_path)
        first, last = min(expected), max(expected)
        message = {"start": f"{first:%Y%m%dT%H}", "end": f"{last:%Y%m%dT%H}"} if first.date() != last.date() else (
            {"date": f"{first:%Y-%m-%d}"} if explicit else {})
        with ExportApiStub(ZipSource(zip_path), "demo-key", "demo-secret") as stub:
            settings = StackSettings(workdir=workdir, amplitude_url=stub.url, api_key="demo-key", secret_key="demo-secret",
                                     extra_env={"AMPBQ_HTTP_BACKOFF_SECONDS": "0.5"})
            with Stack(settings) as stack:
                started = time.monotonic()
                stack.publish_run(message)
                report = wait_for_hours(stack, first.date(), expected, timeout, progress)
                report.seconds = time.monotonic() - started
                report.conflicts = stack.bigquery_rules_stats()["conflicts"]
    return report


def run_projects_demo(day: date, count: int, events_per_hour: int, parts_per_hour: int, timeout: float, workdir: Path,
                      progress=None, explicit: bool = False) -> DemoReport:
    """Several Amplitude projects in one deployment (docs/projects.md): the stub serves each its
    own generated day (a different size each) to its own keys; the first is the default project,
    the others land under export/<id>/…; each project's hours are accounted for on their own
    (rows by `app`, rejects from its ledger rows)."""
    apps = DEMO_APPS[:count]
    sizes = {app: max(1, events_per_hour * (10 - 3 * n) // 10) for n, app in enumerate(apps)}
    env = {"AMPBQ_HTTP_BACKOFF_SECONDS": "0.5", "AMPBQ_AMPLITUDE_PROJECTS": ",".join(map(str, apps)),
           "AMPBQ_DEFAULT_PROJECT": str(apps[0])}
    with tempfile.TemporaryDirectory(prefix="ampbq-demo-") as scratch:
        expected: dict[int, Counter] = {}
        sources = {}
        for app in apps:
            path = Path(scratch) / f"served-{app}.zip"
            with open(path, "wb") as sink:
                write_export_zip(Dataset.for_day(day, events_per_hour=sizes[app], parts_per_hour=parts_per_hour, app=app), sink)
            expected[app], sources[app] = events_per_hour_in(path), ZipSource(path)
        for app in apps[1:]:
            key, secret = project_keys(app)
            env |= {f"AMPLITUDE_API_KEY_{app}": key, f"AMPLITUDE_SECRET_KEY_{app}": secret}
        with ExportApiStub(sources[apps[0]], *project_keys(apps[0])) as stub:
            for app in apps[1:]:
                stub.add_project(sources[app], *project_keys(app))
            settings = StackSettings(workdir=workdir, amplitude_url=stub.url, api_key=project_keys(apps[0])[0],
                                     secret_key=project_keys(apps[0])[1], extra_env=env)
            with Stack(settings) as stack:
                started = time.monotonic()
                stack.publish_run({"date": f"{day}"} if explicit or day != previous_utc_day() else {})
                config = stack_config(stack)
                report = DemoReport(day)
                total, earlier = sum(len(c) for c in expected.values()), [0]

                def landed(done: int, _: int) -> None:  # the hours of every project, one bar
                    if progress:
                        progress(earlier[0] + done, total)
                for project in config.projects:
                    one = wait_for_hours(stack, day, expected[int(project.app)], timeout, landed, project=project)
                    one.project = project.app
                    report.projects.append(one)
                    earlier[0] += len(one.hours)
                    report.timed_out |= one.timed_out
                    report.export_error = report.export_error or one.export_error
                report.seconds = time.monotonic() - started
                report.conflicts = stack.bigquery_rules_stats()["conflicts"]
    return report


def run_external(amplitude_url: str, day: date, timeout: float, workdir: Path, progress=None) -> DemoReport:
    """The local stack against another Export API server (a real one, or a test double of it).

    The keys come from AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY, as in the cloud. What was exported
    is counted from the raw archives the export step stored, so the check does not trust the
    pipeline's own counts.
    """
    api_key, secret_key = os.environ.get("AMPLITUDE_API_KEY", ""), os.environ.get("AMPLITUDE_SECRET_KEY", "")
    if not api_key or not secret_key:
        raise ValueError("--amplitude-url needs AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY in the environment")
    settings = StackSettings(workdir=workdir, amplitude_url=amplitude_url, api_key=api_key, secret_key=secret_key)
    with Stack(settings) as stack:
        started = time.monotonic()
        stack.publish_run({"date": f"{day}"})
        os.environ["STORAGE_EMULATOR_HOST"] = stack.storage_host
        config = stack_config(stack)
        bucket = gcs.client(config.project).bucket(config.bucket)
        record, export_error = wait_for_manifest(bucket, HourRange.day(day), timeout)
        if record is None:
            return DemoReport(day, timed_out=export_error is None, export_error=export_error, seconds=time.monotonic() - started)
        expected: Counter = Counter()
        for archive in record["archives"]:
            with gcs.reader(bucket, archive) as raw:
                expected.update(events_per_hour(raw))
        report = wait_for_hours(stack, day, expected, timeout, progress) if expected else DemoReport(day)
        report.seconds = time.monotonic() - started
        report.conflicts = stack.bigquery_rules_stats()["conflicts"]
    return report


def wait_for_manifest(bucket, hours: HourRange, timeout: float) -> tuple[dict | None, str | None]:
    """The export run's manifest, or why the export gave up on the range; (None, None) at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blob = bucket.get_blob(naming.manifest_name(hours))
        if blob is not None:
            return json.loads(blob.download_as_bytes()), None
        failed = export_failure(bucket)
        if failed:
            return None, failed
        time.sleep(0.5)
    return None, None


def events_per_hour_in(zip_path: Path) -> Counter:
    try:
        counts = events_per_hour(zip_path)
    except zipfile.BadZipFile as why:  # the archive itself, not one of its parts: nothing to serve
        raise ValueError(f"{zip_path} is not a readable zip: {why}") from None
    if not counts:
        raise ValueError(f"{zip_path} holds no events")
    return counts


def stack_config(stack: Stack) -> Config:
    return Config.from_env(stack.function_env())


def export_failure(bucket) -> str | None:
    """Why the export gave up for good on a range (of any project), from the dead-letter record it writes then."""
    for blob in bucket.list_blobs(prefix=naming.export_dead_letter_prefix()):
        record = json.loads(blob.download_as_bytes())
        return f"{record.get('range', blob.name)}: {record.get('error', 'see the export log')}"
    return None


def wait_for_hours(stack: Stack, day: date, expected: Counter, timeout: float, progress=None, project=None) -> DemoReport:
    config = stack_config(stack)
    bq = bq_adapter.client(config)
    os.environ["STORAGE_EMULATOR_HOST"] = stack.storage_host
    bucket = gcs.client(config.project).bucket(config.bucket)
    deadline = time.monotonic() + timeout
    report = DemoReport(day)
    while True:
        report.export_error = export_failure(bucket)
        report.hours = account(bq, config, expected, project)
        if report.export_error:
            return report
        landed = sum(1 for h in report.hours if h.landed)
        if progress:
            progress(landed, len(report.hours))
        if landed == len(report.hours):
            return report
        if time.monotonic() > deadline:
            report.timed_out = True
            return report
        time.sleep(1)


def account(bq, config: Config, expected: Counter, project=None) -> list[HourReport]:
    """Rows in BigQuery and rejected lines in the ledger, per expected upload hour (of one
    Amplitude project: its rows by `app`, its ledger rows by `project`; None: the only one)."""
    if not expected:
        return []
    first, last = min(expected), max(expected)
    bounds = f"TIMESTAMP '{first:%Y-%m-%d %H}:00:00+00' AND TIMESTAMP '{last:%Y-%m-%d %H}:00:00+00'"
    rows_of = f" AND app = {int(project.app)}" if project is not None and project.app else ""
    ledger_of = f" AND {project_sql(project.segment)}" if project is not None else ""
    try:
        loaded = {r["h"]: r["n"] for r in bq_adapter.query_rows(
            bq, f"SELECT _upload_hour AS h, COUNT(*) AS n FROM `{config.table_id}` WHERE _upload_hour BETWEEN {bounds}{rows_of} GROUP BY h")}
        rejected = {r["h"]: r["rejected"] for r in bq_adapter.query_rows(
            bq, f"SELECT upload_hour AS h, rejected FROM `{config.ledger_table_id}` WHERE upload_hour BETWEEN {bounds}{ledger_of}")}
    except Exception:  # the tables appear with the first load
        loaded, rejected = {}, {}
    return [HourReport(hour, expected[hour], loaded.get(hour, 0), rejected.get(hour, 0)) for hour in sorted(expected)]


def native_parts_in(directory: Path) -> list[tuple[Path, naming.NativePart, int]]:
    """The part files of Amplitude's cloud-storage export found under `directory` (any depth:
    each file's last two path components are `{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`), with
    the events (lines) each holds."""
    found = []
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        part = naming.parse_native_part("/".join(path.parts[-2:]))
        if part is None:
            continue
        try:
            with gzip.open(path, "rb") as lines:
                events = sum(1 for line in lines if line.strip())
        except (OSError, EOFError) as why:
            raise ValueError(f"{path} is not a readable gzip part: {why}") from None
        found.append((path, part, events))
    if not found:
        raise ValueError(f"{directory} holds no parts of Amplitude's export ({{app}}/{{app}}_YYYY-MM-DD_H#n.json.gz); "
                         f"make some with: python -m ampbq.tools.synthetic native-export {directory}")
    return found


def drop_order(parts: list, seed: int = 11) -> list:
    """The parts in the order the demo writes them, as Amplitude might: shuffled, and every
    third one written a second time (the same bytes) among the others."""
    rng = random.Random(seed)
    order = list(parts) + list(parts[::3])
    rng.shuffle(order)
    return order


def run_native_demo(directory: Path, timeout: float = 600, workdir: Path | None = None, progress=None) -> DemoReport:
    """Start the stack with a bucket standing for the one Amplitude's own export writes to, write
    the parts found in `directory` into it (in any order, some twice), run the export in its
    native mode as the schedule would until every hour has landed, and account for it."""
    workdir = Path(workdir or REPO / ".stack" / "demo")
    parts = native_parts_in(directory)
    min_age = float(os.environ.get("AMPBQ_MIN_DATA_AGE_HOURS", Config.min_data_age_hours))
    now = datetime.now(timezone.utc)
    expected: Counter = Counter()
    for _, part, events in parts:
        ready_at = naming.complete_at(part.hour, min_age)
        if now < ready_at:
            raise ValueError(f"{part.name}: hour {part.hour:%Y-%m-%dT%H} is not complete at Amplitude until "
                             f"{ready_at:%Y-%m-%dT%H:%MZ}; use parts of older hours")
        expected[part.hour] += events
    first, last = min(expected), max(expected)
    message = {"start": f"{first:%Y%m%dT%H}", "end": f"{last:%Y%m%dT%H}"}
    settings = StackSettings(workdir=workdir, amplitude_url="http://127.0.0.1:9", native_bucket=NATIVE_BUCKET,
                             native_prefix=NATIVE_PREFIX, extra_env={"AMPBQ_NATIVE_QUIET_SECONDS": str(NATIVE_QUIET_SECONDS)})
    with Stack(settings) as stack:
        os.environ["STORAGE_EMULATOR_HOST"] = stack.storage_host
        source = gcs.client(settings.project).bucket(NATIVE_BUCKET)
        started = time.monotonic()
        for path, part, _ in drop_order(parts):
            source.blob(f"{NATIVE_PREFIX}/{part.name}").upload_from_filename(str(path), content_type="application/gzip")
        last_scan = [0.0]

        def scan_and_report(done: int, total: int) -> None:
            if done < total and time.monotonic() - last_scan[0] >= SCAN_EVERY_SECONDS:
                stack.publish_run(message)
                last_scan[0] = time.monotonic()
            if progress:
                progress(done, total)

        report = wait_for_hours(stack, first.date(), expected, timeout, scan_and_report)
        report.seconds = time.monotonic() - started
        report.conflicts = stack.bigquery_rules_stats()["conflicts"]
    return report
