"""The whole chain through the emulators and the real handlers under functions-framework."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from ampbq import naming, schema
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset
from factory import event_line, export_entries, utc, zip_archive
from integration_helpers import (drop_hour, function_log, hour_rows, ledger_entry, log_lines, post_finalize, wait_for,
                                 wait_loaded)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_daily_run_message_lands_every_hour_of_the_day(stack, stub, bq, config):
    day = date(2021, 3, 1)
    dataset = Dataset.for_day(day, hours=24, events_per_hour=15, parts_per_hour=2)
    stub.source.current = DatasetSource(dataset)
    stack.publish_run({"date": f"{day}"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = bq.query(f"SELECT COUNT(*) n, COUNT(DISTINCT _upload_hour) h FROM `{config.table_id}` "
                        f"WHERE _upload_hour BETWEEN '{day} 00:00:00' AND '{day} 23:00:00'").result()
        counts = list(rows)[0]
        if counts["n"] == 24 * 15:
            break
        time.sleep(1)
    assert (counts["n"], counts["h"]) == (24 * 15, 24)
    uuids = {r["uuid"] for r in bq.query(f"SELECT uuid FROM `{config.table_id}` WHERE _upload_hour BETWEEN '{day} 00:00:00' AND '{day} 23:00:00'").result()}
    assert uuids == {e["uuid"] for h in dataset.range.hours() for e in dataset.events(h)}


def _expected(column: str, value):
    """What BigQuery should hold for an exported value, derived here independently of the shaping code."""
    kind = {f["name"]: (f["type"], f["mode"]) for f in schema.fields()}[column]
    if kind == ("STRING", "REPEATED"):
        return [] if value is None else value
    if value is None:
        return None
    if kind[0] == "TIMESTAMP":
        if "T" in value:
            return datetime.fromisoformat(value).astimezone(timezone.utc)
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return value


def test_every_field_of_every_sample_arrives_with_its_type_and_value(samples, bucket, bq, config):
    hour = utc(2021, 3, 2, 7)
    generation = drop_hour(bucket, hour, [json.dumps(record).encode() for _, _, record in samples])
    entry = wait_loaded(bq, config, hour, generation)
    assert (entry["events"], entry["loaded"], entry["rejected"]) == (len(samples), len(samples), 0)
    rows = {row["uuid"]: row for row in hour_rows(bq, config, hour)}
    renamed = {"$insert_id": "insert_id", "$insert_key": "insert_key", "$schema": "schema_version"}
    checked = 0
    for name, number, record in samples:
        row = rows[record["uuid"]]
        for field, value in record.items():
            column = renamed.get(field, field)
            assert row[column] == _expected(column, value), f"{name}:{number} {field}"
            checked += 1
        assert row["_extra"] is None and row["_source_line"] == number + sum(1 for s in samples if s[0] < name)
    assert checked >= 31 * 49
    table = bq.get_table(config.table_id)
    assert {f.name: f.field_type for f in table.schema}["event_properties"] == "JSON"
    assert table.time_partitioning.field == "event_time" and table.time_partitioning.type_ == "DAY"


def test_same_hour_loaded_twice_leaves_one_copy(stack, bucket, bq, config):
    hour = utc(2021, 3, 3, 1)
    generation = drop_hour(bucket, hour, [event_line(f"twice-{i}", hour) for i in range(10)])
    wait_loaded(bq, config, hour, generation)
    import_blob = bucket.get_blob(naming.import_object_name(hour))

    def monitoring_lines() -> list[dict]:
        return [line for line in function_log(stack, "load")
                if line["message"] == "hour loaded" and (line["date"], line["hour"]) == ("2021-03-03", "01")]

    wait_for(monitoring_lines, "the load's own hour loaded line", 30)  # written just after the commit
    before = len(monitoring_lines())
    for _ in range(2):  # at-least-once delivery: the same finalize event again
        assert post_finalize(stack, "load", bucket.name, import_blob.name, import_blob.generation) == 200
    rows = hour_rows(bq, config, hour)
    assert len(rows) == 10 and len({r["uuid"] for r in rows}) == 10
    assert ledger_entry(bq, config, hour)["loaded"] == 10
    # An attempt that finds its generation committed (say by the lease holder, after the first
    # attempt gave up waiting) still writes the hour's monitoring line, with the ledger's counts.
    again = monitoring_lines()[before:]
    assert before == 1 and len(again) == 2 and {line["loaded"] for line in again} == {10}


def test_redropped_hour_with_fewer_events_replaces_the_old_rows(bucket, bq, config):
    hour = utc(2021, 3, 3, 2)
    first = drop_hour(bucket, hour, [event_line(f"old-{i}", hour) for i in range(8)])
    wait_loaded(bq, config, hour, first)
    second = drop_hour(bucket, hour, [event_line(f"new-{i}", hour) for i in range(3)])
    entry = wait_loaded(bq, config, hour, second)
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == ["new-0", "new-1", "new-2"]
    assert entry["loaded"] == 3


def test_malformed_lines_go_to_rejects_and_the_rest_of_the_hour_loads(bucket, bq, config):
    hour = utc(2021, 3, 3, 3)
    lines = [event_line("ok-1", hour), b'{"uuid": "broken", ', event_line("ok-2", hour),
             event_line("bad-int", hour, event_id="twelve"), event_line("ok-3", hour)]
    generation = drop_hour(bucket, hour, lines)
    entry = wait_loaded(bq, config, hour, generation)
    assert [r["uuid"] for r in hour_rows(bq, config, hour)] == ["ok-1", "ok-2", "ok-3"]
    assert (entry["events"], entry["loaded"], entry["rejected"]) == (5, 3, 2)
    rejects = [json.loads(line) for line in bucket.blob(naming.rejects_object_name(hour)).download_as_bytes().splitlines()]
    source = f"gs://{bucket.name}/{naming.hour_object_name(hour)}"
    assert [(r["line"], r["source_object"]) for r in rejects] == [(2, source), (4, source)]
    assert "event_id" in rejects[1]["reason"] and rejects[0]["raw"] == '{"uuid": "broken", '


@pytest.mark.parametrize("function, name", [
    ("transform", "export/raw/2021-03-04/20210304T00-20210304T23.zip"),
    ("transform", "import/2021-03-04/05.json"),
    ("transform", "rejects/2021-03-04/05.json"),
    ("transform", "somewhere/else/05.json.gz"),
    ("load", "export/2021-03-04/05.json.gz"),
    ("load", "import/2021-03-04/05.json.partial"),
    ("load", "rejects/2021-03-04/05.json"),
])
def test_objects_outside_a_handlers_prefix_are_ignored(stack, bucket, function, name):
    bucket.blob(name).upload_from_string(b"PK\x03\x04 not for you\n")
    event_id = f"foreign-{function}-{name}"
    assert post_finalize(stack, function, bucket.name, name, bucket.get_blob(name).generation, event_id) == 200
    lines = log_lines(stack, function, event_id)
    assert [line["message"] for line in lines] == [f"ignored: not an {'export' if function == 'transform' else 'import'} hour object: {name}"]
    assert lines[0]["severity"] == "INFO"


def test_stale_generation_event_changes_nothing(stack, bucket, bq, config):
    hour = utc(2021, 3, 3, 4)
    old = drop_hour(bucket, hour, [event_line("gen-old", hour)])
    wait_loaded(bq, config, hour, old)
    new = drop_hour(bucket, hour, [event_line("gen-new", hour)])
    wait_loaded(bq, config, hour, new)
    assert post_finalize(stack, "transform", bucket.name, naming.hour_object_name(hour), old) == 200
    assert [r["uuid"] for r in hour_rows(bq, config, hour)] == ["gen-new"]
    assert bucket.get_blob(naming.import_object_name(hour)).metadata["source_generation"] == str(new)


def _external_stub(tmp_path, extra_entry: bool):
    """Another process's Export API: our stub, serving a zip, reached only by its URL."""
    from ampbq.tools.stub import ExportApiStub, ZipSource
    from ampbq.tools.synthetic import write_export_zip

    archive = tmp_path / "external.zip"
    with open(archive, "wb") as sink:
        write_export_zip(Dataset.for_day(date(2021, 8, 1), hours=3, events_per_hour=7), sink)
    if extra_entry:  # an hour outside the requested day: refused, so the counts cannot reconcile
        stray = utc(2021, 8, 3, 1)
        zip_archive(export_entries(stray, [[event_line("stray", stray)]], partitions=[5]), archive, mode="a")
    return ExportApiStub(ZipSource(archive, whole=True), "ext-key", "ext-secret")


@pytest.mark.parametrize("extra_entry, code, last_line", [
    (False, 0, "demo: date=2021-08-01 hours=3 events=21 loaded=21 rejected=0 conflicts=0"),
    (True, 1, "demo: date=2021-08-01 hours=4 events=22 loaded=21 rejected=0 conflicts=0"),
])
def test_demo_against_an_external_export_api_reconciles_or_fails(tmp_path, extra_entry, code, last_line):
    import os

    with _external_stub(tmp_path, extra_entry) as external:
        env = {**os.environ, "AMPLITUDE_API_KEY": "ext-key", "AMPLITUDE_SECRET_KEY": "ext-secret"}
        for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
            env.pop(name, None)
        result = subprocess.run([str(Path(sys.executable).parent / "ampbq"), "demo", "--amplitude-url", external.url,
                                 "--date", "2021-08-01", "--timeout", "20", "--workdir", str(tmp_path / "stack")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == last_line
    assert "ext-secret" not in result.stdout + result.stderr
