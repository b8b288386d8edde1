"""The alerts and the dashboard's metrics, evaluated on the log lines the functions really write.

Two days go through the local stack, one run after the other:

- the newest complete day, with quiet hours (no data at Amplitude: the export writes no hour
  object for them, and nothing is transformed or loaded), one of them its last hour; then hours
  00-05 again, so that those hours are logged twice;
- an older day whose hour 07 comes in a zip entry the export refuses (it is never loaded:
  FAILED in `ampbq status`), with one line of hour 00 that is not JSON (a reject), after Export
  API errors that the export leaves to the platform's retry.

Each function's lines of each run are read from the stack's logs, turned into the LogEntry Cloud
Logging makes of a Cloud Run service's stdout, and run through the module's log-based metrics,
alert queries and dashboard queries, all read from terraform/modules/pipeline
(tests/monitoring_model.py). The completeness alert is evaluated as if each run had started at
03:00:05 UTC the day after its date, the time the scheduler starts it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from ampbq.tools.cli import main
from ampbq.tools.demo import latest_complete_day
from ampbq.naming import HourRange
from ampbq.tools.stub import Fault
from ampbq.tools.synthetic import Dataset
from factory import gzip_lines, zip_archive
from integration_helpers import function_log, manifest, wait_for
from monitoring_model import Terraform, firing, log_entry, module_metrics, only_value, promql, all_series

pytestmark = pytest.mark.integration

FUNCTIONS = ("export", "transform", "load")
QUIET = frozenset({2, 3, 23})  # hours with no data at Amplitude on the quiet day
AGAIN = (0, 5)  # hours of the quiet day exported a second time
MISSING_DAY = date(2022, 6, 14)
REFUSED_HOUR = 7  # never loaded on MISSING_DAY
BROKEN_HOUR = 0  # one line of it is not JSON on MISSING_DAY
EVENTS_PER_HOUR = 4
HTTP_ATTEMPTS = 5  # the export's attempts per range (Config.http_attempts) before it gives up for now
TF = Terraform({"env": "staging", "project_id": "my-staging-project"})


class DaySource:
    """Export API data for any range: generated events for every hour but the `quiet` ones; the
    `refused` hour's entries in a folder the export does not accept; one line of the `broken`
    hour that is not JSON."""

    def __init__(self, quiet: frozenset[int] = frozenset(), refused: int | None = None, broken: int | None = None):
        self.quiet, self.refused, self.broken = quiet, refused, broken

    def write(self, hours: HourRange, sink) -> int:
        dataset = Dataset(hours.start, len(hours), EVENTS_PER_HOUR, parts_per_hour=1)
        count, entries = 0, []
        for hour in hours.hours():
            if hour.hour in self.quiet:
                continue
            for name, lines in dataset.hour_parts(hour):
                if hour.hour == self.broken:
                    lines = [*lines, b'{"uuid": "not json']
                entries.append((f"exports/{name}" if hour.hour == self.refused else name, gzip_lines(lines)))
                count += len(lines)
        zip_archive(entries, sink)
        return count


@dataclass
class Run:
    started: float
    ended: float
    lines: dict[str, list[dict]]  # function -> its JSON lines written during the run

    def entries(self, shift_seconds: float = 0.0) -> list[dict]:
        """The run's lines as LogEntries of the Cloud Run services Terraform names."""
        names = TF.local("function_names")
        return [log_entry(line, names[function], shift_seconds) for function in FUNCTIONS for line in self.lines[function]]

    @property
    def settled(self) -> float:
        """When the metrics have every point of the run: each minute's point ends after its lines."""
        return self.ended + 2 * 60

    def first_line_at(self) -> float:
        return min(datetime.fromisoformat(line["time"]).timestamp() for lines in self.lines.values() for line in lines)


def load_lines(stack, day: date, message: str = "hour loaded") -> list[dict]:
    return [line for line in function_log(stack, "load") if line.get("message") == message and line.get("date") == f"{day}"]


def collect(stack, started: float) -> Run:
    time.sleep(1.5)  # the lease holder's last lines, written just after the hours it committed
    ended = time.time()

    def during(line: dict) -> bool:
        return started <= datetime.fromisoformat(line["time"]).timestamp() <= ended

    return Run(started, ended, {f: [line for line in function_log(stack, f) if during(line)] for f in FUNCTIONS})


def export(stack, bucket, hours: HourRange, message: dict) -> None:
    before = manifest(bucket, hours)
    stack.publish_run(message)
    wait_for(lambda: (lambda m: m and m != before)(manifest(bucket, hours)), f"the manifest of {hours}", timeout=120)


def states(stack, day: date) -> dict[str, int]:
    result = CliRunner().invoke(main, ["status", "--date", f"{day}", "--json"], env=stack.client_env(), catch_exceptions=False)
    assert result.stdout.startswith("{"), result.output
    return json.loads(result.stdout)["summary"]


@pytest.fixture(scope="module")
def quiet_day(stack, stub, bucket) -> tuple[date, Run]:
    day = latest_complete_day(2.0)
    data_hours = 24 - len(QUIET)
    again = [h for h in range(AGAIN[0], AGAIN[1] + 1) if h not in QUIET]
    stub.source.current = DaySource(quiet=QUIET)
    started = time.time()
    export(stack, bucket, HourRange.day(day), {"date": f"{day}"})
    wait_for(lambda: len(load_lines(stack, day)) >= data_hours, f"{data_hours} hours of {day} loaded", timeout=120)
    first, last = (datetime(day.year, day.month, day.day, h, tzinfo=timezone.utc) for h in AGAIN)
    export(stack, bucket, HourRange(first, last), {"start": f"{first:%Y%m%dT%H}", "end": f"{last:%Y%m%dT%H}"})
    wait_for(lambda: len(load_lines(stack, day)) >= data_hours + len(again), f"hours {AGAIN} of {day} loaded again", timeout=120)
    return day, collect(stack, started)


@pytest.fixture(scope="module")
def missing_day(stack, stub, bucket, quiet_day) -> Run:
    stub.source.current = DaySource(refused=REFUSED_HOUR, broken=BROKEN_HOUR)
    stub.faults.extend([Fault(502, b"Bad Gateway")] * HTTP_ATTEMPTS)  # the first invocation gives up: a retry
    started = time.time()
    try:
        export(stack, bucket, HourRange.day(MISSING_DAY), {"date": f"{MISSING_DAY}"})
    finally:
        stub.faults.clear()
    wait_for(lambda: len(load_lines(stack, MISSING_DAY)) >= 23, f"23 hours of {MISSING_DAY} loaded", timeout=120)
    return collect(stack, started)


def at_run_time(run: Run, day: date) -> tuple[list[dict], datetime]:
    """The run's entries moved so that it starts at 03:00:05 UTC the day after `day`, as the
    scheduled run does; and that day's midnight."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    shift = (midnight + timedelta(hours=3, seconds=5)).timestamp() - run.first_line_at()
    return run.entries(shift), midnight


def every_evaluation(query: str, series, midnight: datetime) -> dict[str, bool]:
    """The condition at each of the day's 5-minute evaluations (evaluation_interval = 300s)."""
    times = [midnight + timedelta(minutes=5 * n) for n in range(24 * 12)]
    return {f"{t:%H:%M}": firing(promql(query, series, t.timestamp())) for t in times}


def hours_counted(series, at: datetime) -> float:
    """Yesterday's distinct hours done at `at`, as the completeness condition counts them."""
    return only_value(promql(TF.local("completeness_count"), series, at.timestamp()))


def deadline() -> int:
    return TF.vars["completeness_deadline_hour_utc"]


def test_a_day_with_quiet_hours_is_complete_and_the_alert_does_not_fire(stack, quiet_day):
    day, run = quiet_day
    assert states(stack, day) == {"loaded": 24 - len(QUIET), "no_data": len(QUIET)}
    entries, midnight = at_run_time(run, day)
    metrics = module_metrics(TF)
    series = all_series(metrics.values(), entries)
    at = midnight + timedelta(hours=deadline())

    # The quiet day's own lines (a late line of an earlier test's hours may share the window).
    quiet_lines = [e for e in metrics["hours_loaded"].matching(entries)
                   if e["labels"].get("date") == f"{day}" and e["labels"]["hour"] in {f"{h:02d}" for h in QUIET}]
    assert {e["resource"]["labels"]["service_name"] for e in quiet_lines} == {TF.local("function_names")["export"]}
    matched = metrics["hours_loaded"].matching(entries)
    assert len(matched) > 24  # hours 00-05 are logged twice (and 02, 03 by the export each time)
    assert hours_counted(series, at) == 24
    load_only = [e for e in entries if e["resource"]["labels"]["service_name"] == TF.local("function_names")["load"]]
    assert hours_counted(all_series([metrics["loaded_hour_end"]], load_only), at) == 24 - len(QUIET)

    evaluations = every_evaluation(TF.local("completeness_query"), series, midnight)
    assert not any(evaluations.values()), [t for t, on in evaluations.items() if on]


def test_a_day_with_a_missing_hour_fires_the_alert_in_the_deadline_hour(stack, missing_day):
    summary = states(stack, MISSING_DAY)
    assert summary == {"loaded": 23, "failed": 1}, summary
    entries, midnight = at_run_time(missing_day, MISSING_DAY)
    series = all_series(module_metrics(TF).values(), entries)
    assert hours_counted(series, midnight + timedelta(hours=deadline())) == 23

    evaluations = every_evaluation(TF.local("completeness_query"), series, midnight)
    assert [t for t, on in evaluations.items() if on] == [f"{deadline():02d}:{m:02d}" for m in range(0, 60, 5)]


def newest_hour_age(series, at: float) -> float:
    """What the freshness condition compares with the threshold: seconds since the newest hour ended."""
    query = TF.local("freshness_query").rsplit(">", 1)[0]
    return only_value(promql(query, series, at))


def test_freshness_fires_only_when_the_newest_hour_done_is_older_than_the_threshold(quiet_day, missing_day):
    day, run = quiet_day
    query, threshold = TF.local("freshness_query"), TF.local("freshness_threshold_hours") * 3600
    series = all_series(module_metrics(TF).values(), run.entries())
    newest_end = (datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)).timestamp()

    # Just after the run: its newest hour (23, which had no data: the export's line) ended today.
    assert newest_hour_age(series, run.settled) == pytest.approx(run.settled - newest_end)
    assert run.settled - newest_end < threshold and not firing(promql(query, series, run.settled))
    # The same lines a day and a bit later, with no run since.
    later = newest_end + threshold + 3600
    assert newest_hour_age(series, later) == pytest.approx(threshold + 3600)
    assert firing(promql(query, series, later))
    # Later still the run's lines are out of the window: nothing done in it is as stale as can be.
    assert firing(promql(query, series, run.settled + threshold))

    # The older day's run, on its own: its newest hour ended years ago.
    old = all_series(module_metrics(TF).values(), missing_day.entries())
    old_end = (datetime(MISSING_DAY.year, MISSING_DAY.month, MISSING_DAY.day, tzinfo=timezone.utc) + timedelta(days=1)).timestamp()
    assert newest_hour_age(old, missing_day.settled) == pytest.approx(missing_day.settled - old_end)
    assert firing(promql(query, old, missing_day.settled))


def test_every_metric_of_the_module_matches_lines_the_functions_write(quiet_day, missing_day):
    entries = quiet_day[1].entries() + missing_day.entries()
    for name, metric in module_metrics(TF).items():
        matched = metric.matching(entries)
        assert matched, f"no line matches the filter of google_logging_metric.{name}: {metric.filter.text}"
        if metric.value_extractor:
            assert all(isinstance(metric_value(metric, e), (int, float)) for e in matched), name
    # The quiet day's own loads (a late line of an earlier test's old hours may share the window).
    lag = [e["jsonPayload"]["lag_seconds"] for e in module_metrics(TF)["load_lag"].matching(quiet_day[1].entries())
           if e["jsonPayload"].get("date") == f"{quiet_day[0]}"]
    assert 0 < min(lag) and max(lag) < 3 * 86400
    assert {e["jsonPayload"]["rejected"] for e in module_metrics(TF)["rejected_per_hour"].matching(missing_day.entries())} == {0, 1}


def metric_value(metric, entry):
    from monitoring_model import extract

    return extract(metric.value_extractor, entry)


def test_every_dashboard_query_has_data_after_the_runs(quiet_day, missing_day):
    entries = quiet_day[1].entries() + missing_day.entries()
    series = all_series(module_metrics(TF).values(), entries)
    at = missing_day.settled
    for tile in TF.local("dashboard")["mosaicLayout"]["tiles"]:
        for data_set in tile["widget"]["xyChart"]["dataSets"]:
            result = promql(data_set["timeSeriesQuery"]["prometheusQuery"], series, at)
            assert firing(result), f"{tile['widget']['title']}: no data for {data_set['legendTemplate']}"
