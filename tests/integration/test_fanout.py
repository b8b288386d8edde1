"""A big hour fans out: each unit of its parts is transformed by its own invocation, and the
hour is loaded once, from all of them, when the last unit is there. Through the real export,
transform and load, with the transform's unit size made tiny so that every part is a unit."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date

import pytest
from click.testing import CliRunner

from ampbq import forgetting, hour_parts, naming, transform_step
from ampbq.deletions import DeletionJob
from ampbq.errors import Ignored
from ampbq.events import StorageObject
from ampbq.naming import HourRange
from ampbq.tools import backfill, rejects
from ampbq.tools.cli import main
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset, gzip_lines
from factory import event_line, utc
from integration_helpers import function_log, hour_rows, ledger_entry, manifest, wait_for, wait_loaded
from test_forget import ids_in_every_generation

pytestmark = pytest.mark.integration
DAY = date(2022, 8, 23)
PARTS = 4
DATASET = Dataset.for_day(DAY, hours=2, events_per_hour=60, parts_per_hour=PARTS)


@pytest.fixture(scope="module")
def fanned_out(stack, stub, bucket, bq, config):
    """The session stack's transform taking on one part per invocation (any part is over one
    byte); back to its usual unit size afterwards, whatever happens."""
    stack.kill("transform")
    stack.restart("transform", {"AMPBQ_TRANSFORM_UNIT_BYTES": "1"})
    try:
        stub.source.current = DatasetSource(DATASET)
        stack.publish_run({"date": f"{DAY}"})
        wait_for(lambda: manifest(bucket, HourRange.day(DAY)), f"the export manifest of {DAY}", timeout=90)
        entries = {}
        for hour in DATASET.range.hours():
            blob = bucket.get_blob(naming.hour_object_name(hour))
            entries[hour] = wait_loaded(bq, config, hour, blob.generation)
        yield entries
    finally:
        stub.source.current = None
        stack.kill("transform")
        stack.restart("transform")


def units(hour, project: str = "") -> list[naming.Unit]:
    return [naming.Unit(project, hour, index, PARTS) for index in range(PARTS)]


def expected_uuids(hour) -> list[str]:
    return sorted(e["uuid"] for e in DATASET.events(hour))


def test_each_part_is_transformed_on_its_own_and_the_hour_lands_exactly_once(fanned_out, stack, bucket, bq, config):
    for hour, entry in fanned_out.items():
        assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected_uuids(hour)
        assert entry["events"] == entry["rows_written"] == entry["loaded"] == len(expected_uuids(hour))
        assert entry["rejected"] == 0
        # No whole-hour import object: the rows are in one import object per unit.
        assert bucket.get_blob(naming.import_object_name(hour)) is None
        source = bucket.get_blob(naming.hour_object_name(hour))
        unit_imports = [bucket.get_blob(naming.unit_import_name(u)) for u in units(hour)]
        assert all(b is not None and b.metadata["source_generation"] == str(source.generation) for b in unit_imports)
        assert sum(int(b.metadata["events"]) for b in unit_imports) == entry["events"]
        assert entry["import_generation"] == max(b.generation for b in unit_imports)
        # Each task names its own part of that generation of the hour object.
        tasks = [json.loads(bucket.blob(naming.unit_task_name(u)).download_as_bytes()) for u in units(hour)]
        assert {t["generation"] for t in tasks} == {source.generation}
        assert sorted(p[0] for t in tasks for p in t["parts"]) == sorted(name for name, _ in DATASET.hour_parts(hour))
    # `ampbq status` takes a fanned-out hour's units together: loaded, with every event counted.
    result = CliRunner().invoke(main, ["status", "--start", f"{DAY}T00", "--end", f"{DAY}T01", "--json"],
                                env=stack.client_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {h["hour"]: (h["state"], h["events"], h["rows_in_bigquery"]) for h in json.loads(result.stdout)["hours"]} == {
        f"{hour:%Y-%m-%dT%H}": ("loaded", entry["events"], entry["events"]) for hour, entry in fanned_out.items()}
    # One transform invocation per unit, each its own event, and one hour object fanned out per hour.
    log = function_log(stack, "transform")
    started = [line for line in log if line["message"] == "unit started" and line.get("date") == f"{DAY}"]
    assert len(started) == PARTS * len(fanned_out)
    assert len({line["event_id"] for line in started}) == len(started)
    assert len([line for line in log if line["message"] == "hour fanned out" and line.get("date") == f"{DAY}"]) == len(fanned_out)


def test_a_late_fan_out_of_an_older_generation_leaves_the_newer_tasks_alone(fanned_out, bucket):
    hour = min(fanned_out)
    live = bucket.get_blob(naming.hour_object_name(hour))
    task = bucket.get_blob(naming.unit_task_name(units(hour)[0]))
    older = StorageObject(bucket.name, live.name, live.generation - 1)  # an event of an older generation, late
    with pytest.raises(Ignored, match="newer than"):
        transform_step._fan_out(older, bucket, "", hour, [[p] for p in hour_parts.decode(live.metadata, live.size)])
    assert bucket.get_blob(task.name).generation == task.generation
    # The same plan of the live generation again (a duplicate delivery) writes no task.
    again = transform_step._fan_out(StorageObject(bucket.name, live.name, live.generation), bucket, "", hour,
                                    [[p] for p in hour_parts.decode(live.metadata, live.size)])
    assert again.written == 0 and bucket.get_blob(task.name).generation == task.generation


def test_a_bad_line_in_one_unit_is_that_units_reject_and_ampbq_rejects_lists_it(fanned_out, bucket, bq, config):
    hour = utc(2022, 8, 23, 10)
    parts = [[event_line(f"bad-unit-{i}", hour) for i in range(3)],
             [event_line("bad-unit-3", hour), b'{"uuid": "bad-unit-4", "event_type":', event_line("bad-unit-5", hour)]]
    members = [gzip_lines(lines) for lines in parts]
    labels = [f"203138/203138_{DAY}_10#{n}.json.gz" for n in (70, 627)]
    blob = bucket.blob(naming.hour_object_name(hour))
    blob.metadata = {"upload_hour": f"{hour:%Y-%m-%dT%H}", "parts": "2"} | hour_parts.encode(
        [(label, len(member)) for label, member in zip(labels, members)])
    blob.upload_from_string(b"".join(members), "application/gzip")
    entry = wait_loaded(bq, config, hour, blob.generation, timeout=60)
    assert (entry["events"], entry["rows_written"], entry["rejected"], entry["loaded"]) == (6, 5, 1, 5)
    found = rejects.read(bucket, HourRange(hour, hour))
    # Unit 2's lines are numbered from 10^9 + 1: a line is named once in the hour, as in any other.
    line = transform_step.UNIT_LINE_STRIDE + 2
    assert [(r.line, r.raw) for r in found] == [(line, b'{"uuid": "bad-unit-4", "event_type":')]
    record = json.loads(bucket.blob(naming.unit_rejects_name(naming.Unit("", hour, 1, 2))).download_as_bytes())
    assert record["part"] == labels[1] and record["line"] == line
    assert sorted(r["_source_line"] for r in hour_rows(bq, config, hour)) == [1, 2, 3, line - 1, line + 1]


def test_a_unit_task_dropped_again_transforms_that_unit_again_and_reloads_its_hour(fanned_out, bucket, bq, config):
    hour = min(fanned_out)
    before = ledger_entry(bq, config, hour)
    unit = units(hour)[2]
    others = {u.index: bucket.get_blob(naming.unit_import_name(u)).generation for u in units(hour) if u.index != 2}
    task = bucket.blob(naming.unit_task_name(unit))
    task.reload()
    again = bucket.blob(task.name)
    again.metadata = task.metadata
    again.upload_from_string(task.download_as_bytes(), "application/json")

    def reloaded():
        entry = ledger_entry(bq, config, hour)
        return entry if entry["import_generation"] != before["import_generation"] else None

    entry = wait_for(reloaded, "the hour to load again", timeout=60)
    assert entry["source_generation"] == before["source_generation"]
    assert entry["import_generation"] == bucket.get_blob(naming.unit_import_name(unit)).generation
    # Only that unit was transformed again; the hour's rows are still each event once.
    assert {u.index: bucket.get_blob(naming.unit_import_name(u)).generation for u in units(hour) if u.index != 2} == others
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected_uuids(hour)
    assert entry["loaded"] == entry["events"] == before["events"]


def test_reprocess_from_import_of_a_fanned_out_hour_loads_it_again_from_its_units(fanned_out, stack, bq, config):
    hour = min(fanned_out)
    before = ledger_entry(bq, config, hour)
    result = CliRunner().invoke(main, ["reprocess", "--hour", f"{hour:%Y-%m-%dT%H}", "--from", "import", "--poll", "0.3",
                                       "--timeout", "60"], env=stack.client_env() | {"COLUMNS": "250"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = ledger_entry(bq, config, hour)
    assert entry["import_generation"] > before["import_generation"]
    assert entry["source_generation"] == before["source_generation"]
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected_uuids(hour)


def test_an_hour_object_dropped_again_fans_out_anew_and_its_old_tasks_change_nothing(fanned_out, stack, bucket, bq, config):
    hour = max(fanned_out)
    old = bucket.get_blob(naming.hour_object_name(hour))
    old_task = bucket.blob(naming.unit_task_name(units(hour)[0])).download_as_bytes()
    new = bucket.blob(old.name)
    new.metadata = old.metadata
    new.upload_from_string(old.download_as_bytes(), "application/gzip")
    entry = wait_loaded(bq, config, hour, new.generation, timeout=60)
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected_uuids(hour)
    assert entry["loaded"] == entry["events"] == len(expected_uuids(hour))
    assert json.loads(bucket.blob(naming.unit_task_name(units(hour)[0])).download_as_bytes())["generation"] == new.generation
    # A task of the replaced generation, dropped again late, is stale: nothing is loaded again.
    unit_import = bucket.get_blob(naming.unit_import_name(units(hour)[1])).generation
    stale = bucket.blob(naming.unit_task_name(units(hour)[1]))
    stale.upload_from_string(old_task, "application/json")

    def ignored():
        return [line for line in function_log(stack, "transform") if line.get("object") == stale.name
                and line.get("generation") == stale.generation and line["message"].startswith("ignored:")]

    assert "its newer tasks transform it" in wait_for(ignored, "the stale task to be ignored", timeout=30)[0]["message"]
    assert bucket.get_blob(naming.unit_import_name(units(hour)[1])).generation == unit_import
    assert ledger_entry(bq, config, hour)["import_generation"] == entry["import_generation"]


def test_a_local_backfill_transforms_the_units_of_a_big_hour_itself_and_loads_it(fanned_out, bucket, bq, config):
    """`ampbq backfill --local` does the chain's work in its own process, units included (the
    session's functions react to the same objects: whichever side does a step, it is done once)."""
    hour = max(fanned_out)
    old = bucket.get_blob(naming.hour_object_name(hour))
    new = bucket.blob(old.name)
    new.metadata = old.metadata
    new.upload_from_string(old.download_as_bytes(), "application/gzip")
    backfill.chain_hour(new.name, dataclasses.replace(config, transform_unit_bytes=1), bucket, bq)
    entry = ledger_entry(bq, config, hour)
    assert entry["source_generation"] == new.generation  # loaded by the time it returns
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected_uuids(hour)
    assert entry["loaded"] == entry["events"] == len(expected_uuids(hour))


def test_a_deleted_user_leaves_every_unit_and_every_generation_of_a_fanned_out_hour(fanned_out, stack, bucket, bq, config):
    hour = min(fanned_out)
    victim = next(iter(DATASET.events(hour)))["amplitude_id"]
    prefixes = [f"export/{DAY}/", f"import/{DAY}/", f"rejects/{DAY}/"]
    assert victim in ids_in_every_generation(bucket, prefixes)[0]  # the check below can fail
    kept = sorted(e["uuid"] for h in fanned_out for e in DATASET.events(h) if e["amplitude_id"] != victim)
    # Units of about half the hour now: its re-written hour object fans out into fewer units than
    # before, so the old units are not replaced by name and must be deleted as well.
    half = bucket.get_blob(naming.hour_object_name(hour)).size // 2 + 1
    stack.kill("transform")
    stack.restart("transform", {"AMPBQ_TRANSFORM_UNIT_BYTES": str(half)})
    try:
        result = forgetting.apply([DeletionJob(DAY, "done", (victim,))], config, bucket, bq, time.monotonic() + 120)
    finally:  # the job's record is this module's own: the forget tests of the session read the table whole
        bq.query(f"DELETE FROM `{config.forgets_table_id}` WHERE job_day = DATE '{DAY}'").result()
    left = {naming.parse_unit_import(b.name).units for b in bucket.list_blobs(prefix=naming.unit_import_prefix(hour))}
    assert len(left) == 1 and 1 < left.pop() < PARTS
    assert result.rows_removed == sum(1 for h in fanned_out for e in DATASET.events(h) if e["amplitude_id"] == victim)
    assert sorted(r["uuid"] for h in fanned_out for r in hour_rows(bq, config, h)) == kept
    found, generations = ids_in_every_generation(bucket, prefixes)
    assert victim not in found and generations > 0
    for h in fanned_out:
        entry = ledger_entry(bq, config, h)
        assert entry["loaded"] == entry["events"] == sum(1 for u in kept if u in {e["uuid"] for e in DATASET.events(h)})
