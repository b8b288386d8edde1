"""The operating commands (backfill, status, reprocess, rejects, stack) against the local stack.

Each command runs in-process through click's CliRunner with the stack's client environment, as a
person's shell would run it. Upload days are in 2022 so these rows never meet other tests' rows.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from click.testing import CliRunner

from ampbq import naming
from ampbq.tools.cli import main
from ampbq.tools.sandbox import GeneratedSource
from factory import event_line, utc
from integration_helpers import drop_hour, hour_rows, ledger_entry, wait_loaded

pytestmark = pytest.mark.integration
DAY = "2022-02-03"  # backfilled once for the module: hours 00-05, hour 02 has no data at "Amplitude"


def ampbq(stack, *args: str):
    # A wide terminal: these tests read what the tables say (how they fit 80 columns is tested apart).
    return CliRunner().invoke(main, list(args), env=stack.client_env() | {"COLUMNS": "250"}, catch_exceptions=False)


def states(stack, start: str, end: str) -> dict[str, str]:
    result = ampbq(stack, "status", "--start", start, "--end", end, "--json")
    return {hour["hour"]: hour["state"] for hour in json.loads(result.stdout)["hours"]}


def delete_hour_rows(bq, config, hour: datetime, where: str = "TRUE") -> None:
    bq.query(f"DELETE FROM `{config.table_id}` WHERE _upload_hour = {_ts(hour)} AND {where}").result()


def _ts(hour: datetime) -> str:
    return f"TIMESTAMP '{hour:%Y-%m-%d %H}:00:00+00'"


@pytest.fixture(scope="module")
def day_backfilled(stack, stub, bq):
    stub.source.current = GeneratedSource(events_per_hour=5, parts_per_hour=1, quiet_hours=frozenset({2}))
    result = ampbq(stack, "backfill", "--start", DAY, "--hours", "00-05", "--local", "--poll", "0.3", "--timeout", "60")
    assert result.exit_code == 0, result.output
    return result


def test_backfill_local_runs_the_chain_here_and_reports_the_day(day_backfilled):
    assert "20220203T00..20220203T05  landed  loaded=5 no_data=1" in day_backfilled.stdout
    assert day_backfilled.stdout.strip().splitlines()[-1] == "backfill: days=1 landed=1 failed=0 running=0"


def test_backfill_publishes_one_run_per_day_and_waits_until_each_has_landed(stack, stub, bq, config):
    stub.source.current = GeneratedSource(events_per_hour=4, parts_per_hour=1)
    result = ampbq(stack, "backfill", "--start", "2022-02-01", "--end", "2022-02-02", "--hours", "00-02",
                   "--poll", "0.3", "--timeout", "90")
    assert result.exit_code == 0, result.output
    assert "published 2 run request(s) to daily-runs: 20220201T00..20220201T02, 20220202T00..20220202T02" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "backfill: days=2 landed=2 failed=0 running=0"
    for day in (1, 2):
        for hour in range(3):
            entry = ledger_entry(bq, config, utc(2022, 2, day, hour))
            assert (entry["events"], entry["loaded"]) == (4, 4)


def test_status_of_a_complete_range_exits_zero_and_tells_no_data_from_missing(stack, day_backfilled):
    result = ampbq(stack, "status", "--start", f"{DAY}T00", "--end", f"{DAY}T05")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "2022-02-03 02:00" in line)
    assert "no data" in row and "the export found no events for this hour" in row
    assert result.stdout.strip().splitlines()[-1] == (
        "status: 20220203T00..20220203T05 hours=6 loaded=5 no_data=1 events=25 rejected=0 rows=25")


def test_status_flags_a_mismatched_hour_and_reprocess_from_import_repairs_it(stack, day_backfilled, bq, config):
    hour = utc(2022, 2, 3, 1)
    delete_hour_rows(bq, config, hour, "_source_line <= 2")
    result = ampbq(stack, "status", "--date", DAY)
    assert result.exit_code == 1, result.output
    row = next(line for line in result.stdout.splitlines() if "2022-02-03 01:00" in line)
    assert "MISMATCH" in row and "BigQuery holds 3 rows, the load recorded 5" in row
    found = states(stack, DAY, DAY)
    assert found[f"{DAY}T01"] == "mismatch" and found[f"{DAY}T06"] == found[f"{DAY}T23"] == "missing"

    repaired = ampbq(stack, "reprocess", "--hour", f"{DAY}T01", "--from", "import", "--poll", "0.3", "--timeout", "60")
    assert repaired.exit_code == 0, repaired.output
    assert len(hour_rows(bq, config, hour)) == 5
    assert states(stack, f"{DAY}T01", f"{DAY}T01") == {f"{DAY}T01": "loaded"}


def test_missing_hour_of_an_archive_is_reported_and_backfilling_that_hour_restores_it(stack, day_backfilled, bucket, bq, config):
    hour = utc(2022, 2, 3, 4)
    for name in (naming.hour_object_name(hour), naming.import_object_name(hour)):
        bucket.blob(name).delete()
    delete_hour_rows(bq, config, hour)
    bq.query(f"DELETE FROM `{config.ledger_table_id}` WHERE upload_hour = {_ts(hour)}").result()
    result = ampbq(stack, "status", "--start", f"{DAY}T04")
    assert result.exit_code == 1 and "the raw archive has this hour but no hour object" in result.stdout

    restored = ampbq(stack, "backfill", "--start", DAY, "--hours", "04", "--local", "--poll", "0.3", "--timeout", "60")
    assert restored.exit_code == 0, restored.output
    assert states(stack, f"{DAY}T04", f"{DAY}T04") == {f"{DAY}T04": "loaded"}


def test_reprocess_from_export_makes_a_new_generation_that_keeps_its_metadata(stack, day_backfilled, bucket, bq, config):
    hour = utc(2022, 2, 3, 3)
    before = bucket.get_blob(naming.hour_object_name(hour))
    result = ampbq(stack, "reprocess", "--hour", f"{DAY}T03", "--poll", "0.3", "--timeout", "60")
    assert result.exit_code == 0, result.output
    after = bucket.get_blob(naming.hour_object_name(hour))
    assert after.generation != before.generation and after.content_type == before.content_type
    assert after.metadata.items() > before.metadata.items() and "reprocessed_at" in after.metadata
    assert ledger_entry(bq, config, hour)["source_generation"] == after.generation
    assert len(hour_rows(bq, config, hour)) == 5


def test_reprocess_of_an_hour_without_an_object_says_how_to_re_export_it(stack, day_backfilled):
    result = ampbq(stack, "reprocess", "--hour", f"{DAY}T10", "--no-wait")
    assert result.exit_code == 1
    assert "ampbq backfill --start 2022-02-03 --hours 10" in result.stdout


def test_rejects_lists_each_quarantined_line_and_replay_reprocesses_its_whole_hour(stack, bucket, bq, config):
    hour = utc(2022, 2, 7, 5)
    line = lambda uuid, **extra: event_line(uuid, hour, event_type=None, **extra)  # noqa: E731
    lines = [line("r-1"), b'{"uuid": "broken", ', line("r-2"), line("r-bad", event_id="twelve"), line("r-3")]
    first = drop_hour(bucket, hour, lines)
    wait_loaded(bq, config, hour, first)
    listed = ampbq(stack, "rejects", "--date", "2022-02-07")
    assert listed.exit_code == 0, listed.output
    assert "line is not valid JSON" in listed.stdout and "field 'event_id'" in listed.stdout
    assert listed.stdout.strip().splitlines()[-1] == "rejects: 20220207T00..20220207T23 hours=1 lines=2"
    records = [json.loads(line) for line in ampbq(stack, "rejects", "--date", "2022-02-07", "--json").stdout.splitlines()]
    assert [(r["line"], r["raw"]) for r in records][0] == (2, '{"uuid": "broken", ')

    replayed = ampbq(stack, "rejects", "--date", "2022-02-07", "--replay", "--poll", "0.3", "--timeout", "60")
    assert replayed.exit_code == 0, replayed.output
    entry = ledger_entry(bq, config, hour)
    assert entry["source_generation"] != first and (entry["events"], entry["loaded"], entry["rejected"]) == (5, 3, 2)
    assert [r["uuid"] for r in hour_rows(bq, config, hour)] == ["r-1", "r-2", "r-3"]


def test_status_reports_an_hour_a_step_gave_up_on_as_failed(stack, bucket):
    hour = utc(2022, 2, 8, 1)  # an import object transform did not write: the load refuses it for good
    bucket.blob(naming.import_object_name(hour)).upload_from_string(b"{}\n", content_type="application/x-ndjson")
    deadline = time.monotonic() + 30
    while states(stack, "2022-02-08T01", "2022-02-08T01")["2022-02-08T01"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.3)
    result = ampbq(stack, "status", "--start", "2022-02-08T01")
    assert result.exit_code == 1 and "FAILED" in result.stdout and "was not written by the transform step" in result.stdout


def test_status_says_pending_while_an_export_run_is_part_way_through_a_range(stack, bucket):
    # The marker an export run leaves on a range it split, between two of its invocations.
    day = naming.HourRange.parse("20220210T00", "20220210T23")
    assert "MISSING" in ampbq(stack, "status", "--start", "2022-02-10T05").stdout
    bucket.blob(naming.attempt_name(day, "split")).upload_from_string(json.dumps({"run": "123"}), "application/json")
    result = ampbq(stack, "status", "--start", "2022-02-10T05")
    assert result.exit_code == 3 and "part-way through this range" in result.stdout  # 3: pending
