"""At-least-once, out-of-order delivery and crashed instances: the table still holds each hour once."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ampbq import load, load_step, naming
from ampbq.errors import Ignored
from ampbq.events import StorageObject
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset
from factory import event_line, utc
from integration_helpers import (day_rows, drop_hour, function_log, hour_rows, ledger_entry, log_lines, post_finalize,
                                 wait_for, wait_loaded)

pytestmark = pytest.mark.integration


def test_the_same_finalize_event_three_times_gives_one_copy(stack, bucket, bq, config):
    hour = utc(2021, 6, 1, 1)
    generation = drop_hour(bucket, hour, [event_line(f"dup-{i}", hour) for i in range(10)])
    wait_loaded(bq, config, hour, generation)
    imported = bucket.get_blob(naming.import_object_name(hour))
    for function, name, gen in [("transform", naming.hour_object_name(hour), generation)] * 3 + [
            ("load", imported.name, imported.generation)] * 3:
        assert post_finalize(stack, function, bucket.name, name, gen) == 200
    assert len(hour_rows(bq, config, hour)) == 10
    assert bucket.get_blob(imported.name).generation == imported.generation  # transform saw it was done
    rows = hour_rows(bq, config, hour)
    assert len(rows) == 10 and len({r["uuid"] for r in rows}) == 10


def test_the_same_load_event_delivered_concurrently_is_loaded_once_without_errors(stack, bucket, bq, config):
    hour = utc(2021, 6, 1, 4)
    name = naming.import_object_name(hour)
    wait_loaded(bq, config, hour, drop_hour(bucket, hour, [event_line(f"conc-{i}", hour) for i in range(6)]))
    # a fresh generation of the same import object, then three copies of its event at once
    bucket.copy_blob(bucket.get_blob(name), bucket, name)
    generation = bucket.get_blob(name).generation
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"concurrent-{generation}-{i}" for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda event_id: post_finalize(stack, "load", bucket.name, name, generation, event_id), ids))
    assert codes == [200, 200, 200]
    wait_for(lambda: ledger_entry(bq, config, hour)["import_generation"] == generation, "the new generation's load")
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == [f"conc-{i}" for i in range(6)]
    severities = [line["severity"] for event_id in ids for line in log_lines(stack, "load", event_id)]
    assert "ERROR" not in severities


def test_generations_delivered_out_of_order_leave_the_newest_and_log_the_stale_ones(stack, bucket, bq, config):
    hour = utc(2021, 6, 1, 2)
    old = drop_hour(bucket, hour, [event_line(f"old-{i}", hour) for i in range(5)])
    wait_loaded(bq, config, hour, old)
    old_import = bucket.get_blob(naming.import_object_name(hour)).generation
    new = drop_hour(bucket, hour, [event_line(f"new-{i}", hour) for i in range(3)])
    wait_loaded(bq, config, hour, new)
    for function, name, gen in [("transform", naming.hour_object_name(hour), old), ("load", naming.import_object_name(hour), old_import)]:
        event_id = f"late-{function}-{gen}"
        assert post_finalize(stack, function, bucket.name, name, gen, event_id) == 200
        assert "stale event" in log_lines(stack, function, event_id)[0]["message"]
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == ["new-0", "new-1", "new-2"]


class _OldBlob:
    def __init__(self, generation: int, metadata: dict):
        self.generation, self.metadata = generation, metadata


def test_an_older_generation_that_slips_past_the_stale_check_cannot_replace_a_newer_one(bucket, bq, config, monkeypatch):
    # The race the stale check cannot close: an old event's load checked the object just before the new
    # generation landed. The transaction compares generations in the ledger, so it changes nothing.
    hour = utc(2021, 6, 1, 3)
    wait_loaded(bq, config, hour, drop_hour(bucket, hour, [event_line(f"first-{i}", hour) for i in range(4)]))
    first = bucket.get_blob(naming.import_object_name(hour))
    wait_loaded(bq, config, hour, drop_hour(bucket, hour, [event_line(f"second-{i}", hour) for i in range(2)]))
    before = ledger_entry(bq, config, hour)
    monkeypatch.setattr(load_step.gcs, "current", lambda bucket_, name: _OldBlob(first.generation, first.metadata))
    monkeypatch.setattr(load_step, "_skip_if_loaded", lambda *args: None)  # it looked before the new one landed
    monkeypatch.setattr(load_step.load, "HourLoad", _rows_as_staged(load_step.load.HourLoad))
    with pytest.raises(Ignored, match="newer generation"):
        load_step.load_hour(StorageObject(bucket.name, first.name, first.generation), config, bucket, bq)
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == ["second-0", "second-1"]
    assert ledger_entry(bq, config, hour) == before


def _rows_as_staged(real):
    """The live object (read by the load job) is the newer one: make the old metadata agree with its row count."""
    def build(**fields):
        fields["rows"], fields["events"] = 2, 2
        return real(**fields)
    return build


def test_killed_functions_mid_day_are_retried_to_exactly_the_same_table(stack, stub, bucket, bq, config):
    day = date(2021, 6, 2)
    per_hour = 20
    stub.source.current = DatasetSource(Dataset.for_day(day, events_per_hour=per_hour, parts_per_hour=2))
    stack.publish_run({"date": f"{day}"})
    # The day's hours stage side by side and commit together: crash once the first one is staged
    # and waiting, so that hours are mid-load, staged, or not started when both functions die.
    waiting = load.waiting_prefix(config.table_id)
    wait_for(lambda: any(True for _ in bucket.list_blobs(prefix=waiting)), "the first staged hour", timeout=60,
             interval=0.05)
    try:
        stack.kill("load")
        stack.kill("transform")
        assert day_rows(bq, config, day)["hours"] < 24, "the crash came too late to test anything"
    finally:  # the stack serves the tests after this one too
        stack.restart("transform")
        stack.restart("load")
    counts = wait_for(lambda: (lambda c: c if c["hours"] == 24 and c["n"] >= 24 * per_hour else None)(day_rows(bq, config, day)),
                      "all 24 hours after the crash", timeout=120)
    assert (counts["n"], counts["uuids"]) == (24 * per_hour, 24 * per_hour)
    for hour in naming.HourRange.day(day).hours():
        entry = ledger_entry(bq, config, hour)
        assert (entry["events"], entry["loaded"], entry["rejected"]) == (per_hour, per_hour, 0)


def test_a_poisoned_object_is_recorded_and_acked_without_blocking_other_hours(stack, bucket, bq, config):
    poisoned = "import/2021-06-03/05.json"
    bucket.blob(poisoned).upload_from_string(b'{"uuid": "no metadata"}\n')  # not written by transform
    generation = bucket.get_blob(poisoned).generation
    good_hour = utc(2021, 6, 3, 6)
    wait_loaded(bq, config, good_hour, drop_hour(bucket, good_hour, [event_line("fine", good_hour)]))
    record = wait_for(lambda: bucket.get_blob(naming.dead_letter_name("load", f"{poisoned}#{generation}")), "the dead letter")
    detail = json.loads(record.download_as_bytes())
    assert detail["step"] == "load" and "not written by the transform step" in detail["error"]
    errors = [line for line in function_log(stack, "load") if line["severity"] == "ERROR" and line.get("object") == poisoned]
    assert len(errors) == 1  # acked once: no retry loop
    assert [r["uuid"] for r in hour_rows(bq, config, good_hour)] == ["fine"]
