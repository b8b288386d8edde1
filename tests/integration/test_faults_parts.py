"""The parts of an hour are independent: a damaged part, a name the zip holds twice, a refused
entry with events, each through the real export, transform and load and `ampbq status`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from ampbq import naming
from ampbq.tools import stub as stub_module
from ampbq.naming import HourRange
from ampbq.tools.stub import ZipSource
from ampbq.tools.synthetic import Dataset
from factory import gzip_lines, zip_archive
from integration_helpers import function_log, hour_rows, manifest, wait_for, wait_loaded
from test_operations import ampbq

pytestmark = pytest.mark.integration
DAY = date(2021, 10, 5)
EVENTS_PER_HOUR = 30  # three parts of 10 per hour


def utc(hour: int) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=timezone.utc)


DATASET = Dataset.for_day(DAY, hours=4, events_per_hour=EVENTS_PER_HOUR, parts_per_hour=3)
DAMAGED_HOUR, TWICE_HOUR, REFUSED_HOUR = utc(1), utc(2), utc(3)
REFUSED_NAME = f"elsewhere/203138_{DAY}_3#9.json.gz"  # not in its project's folder: refused, yet it holds events


def write_zip(path: Path) -> dict:
    """Hours 00-03 in three parts each: hour 01's middle part cut short, hour 02's first two parts
    under one name, hour 03 beside a refused entry holding two events. What each hour holds."""
    held, entries = {}, []
    for hour in DATASET.range.hours():
        parts = DATASET.hour_parts(hour)
        held[hour] = parts
        for index, (name, lines) in enumerate(parts):
            data = gzip_lines(lines)
            if hour == DAMAGED_HOUR and index == 1:
                data = data[: len(data) // 2]
            if hour == TWICE_HOUR and index == 1:
                name = parts[0][0]  # on purpose: one name twice
            entries.append((name, data))
    entries.append((REFUSED_NAME, gzip_lines([b'{"uuid": "refused-1"}', b'{"uuid": "refused-2"}'])))
    zip_archive(entries, path)
    return held


@pytest.fixture(scope="module")
def exported(stack, stub, bucket, bq, config, tmp_path_factory):
    path = tmp_path_factory.mktemp("parts") / "parts.zip"
    held = write_zip(path)
    stub.source.current = ZipSource(path)
    stack.publish_run({"date": f"{DAY}"})
    record = wait_for(lambda: manifest(bucket, HourRange.day(DAY)), f"the export manifest of {DAY}", timeout=90)
    entries = {}
    for hour in DATASET.range.hours():
        blob = bucket.get_blob(naming.hour_object_name(hour))
        entries[hour] = wait_loaded(bq, config, hour, blob.generation)
    yield path, held, record, entries
    stub.source.current = None


def uuids(lines: list[bytes]) -> set[str]:
    return {json.loads(line)["uuid"] for line in lines}


def test_a_damaged_part_costs_only_its_own_events_and_is_one_reject_naming_it(exported, bucket, bq, config, stack):
    path, held, _, entries = exported
    parts = held[DAMAGED_HOUR]
    loaded = {row["uuid"] for row in hour_rows(bq, config, DAMAGED_HOUR)}
    assert uuids(parts[0][1]) | uuids(parts[2][1]) <= loaded  # the intact parts, before and after the damage
    assert not uuids(parts[1][1]) <= loaded
    rejects = [json.loads(line) for line in bucket.blob(naming.rejects_object_name(DAMAGED_HOUR)).download_as_bytes().splitlines()]
    assert len(rejects) == 1 and rejects[0]["part"] == parts[1][0] and "damaged" in rejects[0]["reason"]
    entry = entries[DAMAGED_HOUR]
    assert entry["rejected"] == 1 and entry["loaded"] == len(loaded) == entry["events"] - 1
    # The demo's count of the archive agrees with what the chain recorded.
    assert stub_module.events_per_hour(path)[DAMAGED_HOUR] == entry["events"]
    # Per part: the hour object's index, the import object's counts, the transform's log line.
    hour_object = bucket.get_blob(naming.hour_object_name(DAMAGED_HOUR))
    assert hour_object.metadata["part_index"].count(",") == 2
    counts = bucket.get_blob(naming.import_object_name(DAMAGED_HOUR)).metadata["part_counts"].split(",")
    assert len(counts) == 3 and sum(c.endswith(":1") for c in counts) == 1
    done = [line for line in function_log(stack, "transform")
            if line["message"] == "transform done" and line.get("object") == hour_object.name]
    assert {p["part"] for p in done[-1]["parts"]} == {name for name, _ in parts}


def test_a_name_the_zip_holds_twice_loses_nothing(exported, bq, config):
    _, held, _, entries = exported
    rows = hour_rows(bq, config, TWICE_HOUR)
    assert {row["uuid"] for row in rows} == set().union(*(uuids(lines) for _, lines in held[TWICE_HOUR]))
    assert (entries[TWICE_HOUR]["events"], entries[TWICE_HOUR]["loaded"], len(rows)) == (EVENTS_PER_HOUR,) * 3


def test_a_refused_entry_with_events_fails_its_hour_in_status(exported, stack):
    _, _, record, _ = exported
    refused = [r for r in record["refused"] if r["name"] == REFUSED_NAME]
    assert refused == [{"name": REFUSED_NAME, "size": refused[0]["size"], "hour": f"{REFUSED_HOUR:%Y-%m-%dT%H}",
                        "reason": f"unexpected entry name in export zip: {REFUSED_NAME!r}", "data": True}]
    assert refused[0]["size"] > 0
    result = ampbq(stack, "status", "--start", f"{DAY}T00", "--end", f"{DAY}T03", "--json")
    assert result.exit_code == 1
    hours = {hour["hour"]: hour for hour in json.loads(result.stdout)["hours"]}
    assert [hours[f"{utc(h):%Y-%m-%dT%H}"]["state"] for h in range(4)] == ["loaded", "loaded", "loaded", "failed"]
    assert REFUSED_NAME in hours[f"{REFUSED_HOUR:%Y-%m-%dT%H}"]["reason"]


def test_demo_on_such_a_zip_lands_and_accounts_for_every_event(exported, tmp_path):
    path, held, _, _ = exported
    result = subprocess.run([str(Path(sys.executable).parent / "ampbq"), "demo", "--zip", str(path), "--timeout", "120",
                             "--workdir", str(tmp_path / "stack")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    events = sum(stub_module.events_per_hour(path).values())
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"demo: date={DAY} hours=4 events={events} loaded={events - 1} rejected=1"), last
