"""The per-hour state: what GCS and BigQuery say about an hour, decided without any server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ampbq.config import Config
from ampbq.tools.inventory import ledger_sql
from ampbq.naming import HourRange
from ampbq.tools.status import (EXIT_COMPLETE, EXIT_PENDING, EXIT_PROBLEM, HourEvidence, LedgerEntry, ObjectInfo, State,
                          classify, document, exit_code, summary_line)

HOUR = datetime(2022, 1, 5, 7, tzinfo=timezone.utc)
SRC_GEN, IMP_GEN = 111, 222


def source(generation: int = SRC_GEN) -> ObjectInfo:
    return ObjectInfo("export/2022-01-05/07.json.gz", generation, 2048, {"parts": "2"})


def target(generation: int = IMP_GEN, source_generation: int = SRC_GEN, events=10, rows=9, rejected=1) -> ObjectInfo:
    meta = {"source_generation": str(source_generation), "events": str(events), "rows": str(rows), "rejected": str(rejected)}
    return ObjectInfo("import/2022-01-05/07.json", generation, 4096, meta)


def ledger(import_generation: int = IMP_GEN, events=10, rows=9, rejected=1, loaded=9) -> LedgerEntry:
    return LedgerEntry(import_generation, SRC_GEN, events, rows, rejected, loaded)


def loaded_hour(**changes) -> HourEvidence:
    values = dict(hour=HOUR, hour_object=source(), import_object=target(), ledger=ledger(), table_rows=9,
                  archives=("export/raw/2022-01-05/20220105T00-20220105T23.zip",), exported=True)
    return HourEvidence(**(values | changes))


def test_hour_whose_counts_all_agree_is_loaded():
    status = classify(loaded_hour())
    assert (status.state, status.reason, status.events, status.rejected) == (State.LOADED, "", 10, 1)


def test_hour_loaded_when_rows_were_not_counted_is_judged_by_the_ledger():
    assert classify(loaded_hour(table_rows=None)).state is State.LOADED


def test_import_object_of_an_older_hour_object_generation_is_pending():
    status = classify(loaded_hour(hour_object=source(SRC_GEN + 1)))
    assert status.state is State.PENDING and "transform" in status.reason


def test_ledger_entry_of_an_older_import_generation_is_pending():
    status = classify(loaded_hour(ledger=ledger(IMP_GEN - 1)))
    assert status.state is State.PENDING and "load" in status.reason


def test_hour_with_no_import_object_yet_is_pending():
    assert classify(loaded_hour(import_object=None, ledger=None, table_rows=0)).state is State.PENDING


def test_dead_letter_for_the_live_generation_makes_a_waiting_hour_failed():
    status = classify(loaded_hour(ledger=None, table_rows=0, failures=("load: BigQuery: bad row",)))
    assert (status.state, status.reason) == (State.FAILED, "load: BigQuery: bad row")


def test_loaded_hour_stays_loaded_despite_an_old_dead_letter():
    assert classify(loaded_hour(failures=("load: timed out",))).state is State.LOADED


def test_fewer_rows_in_bigquery_than_the_load_recorded_is_a_mismatch():
    status = classify(loaded_hour(table_rows=6))
    assert status.state is State.MISMATCH and "BigQuery holds 6 rows, the load recorded 9" in status.reason


def test_as_many_rows_but_not_the_rows_loaded_is_a_mismatch():
    """3 rows deleted and 3 others duplicated: the count agrees, the uuid fingerprint does not."""
    recorded = LedgerEntry(IMP_GEN, SRC_GEN, 10, 9, 1, 9, fingerprint=12345)
    assert classify(loaded_hour(ledger=recorded, table_fingerprint=12345)).state is State.LOADED
    status = classify(loaded_hour(ledger=recorded, table_fingerprint=54321))
    assert status.state is State.MISMATCH and "fingerprint" in status.reason


def test_rows_whose_ledger_entry_vanished_are_a_mismatch_not_pending():
    status = classify(loaded_hour(ledger=None, table_rows=9))
    assert status.state is State.MISMATCH and "no load recorded" in status.reason


def test_events_not_equal_to_rows_plus_rejected_is_a_mismatch():
    status = classify(loaded_hour(import_object=target(events=11), ledger=ledger(events=11)))
    assert status.state is State.MISMATCH and "events 11 != rows 9 + rejected 1" in status.reason


def test_import_metadata_disagreeing_with_the_ledger_is_a_mismatch():
    status = classify(loaded_hour(import_object=target(rows=8, rejected=2)))
    assert status.state is State.MISMATCH and "import object says rows=8, the ledger 9" in status.reason


def test_ledger_newer_than_the_live_import_object_is_a_mismatch():
    assert classify(loaded_hour(ledger=ledger(IMP_GEN + 5))).state is State.MISMATCH


def test_hour_the_export_found_no_data_for_is_no_data():
    status = classify(HourEvidence(HOUR, table_rows=0, archives=("export/raw/x.zip",), exported=False))
    assert status.state is State.NO_DATA and status.state.label == "no data"


def test_hour_in_the_archive_without_an_hour_object_is_missing():
    status = classify(HourEvidence(HOUR, table_rows=0, exported=True))
    assert status.state is State.MISSING and "raw archive has this hour" in status.reason


def test_hour_no_export_covers_is_missing():
    status = classify(HourEvidence(HOUR, table_rows=0))
    assert (status.state, status.state.label) == (State.MISSING, "MISSING")
    assert "no finished export" in status.reason


def test_hour_an_export_run_is_part_way_through_is_pending_not_missing():
    status = classify(HourEvidence(HOUR, table_rows=0, exporting=True))
    assert status.state is State.PENDING and "part-way" in status.reason
    assert classify(HourEvidence(HOUR, table_rows=0, exporting=True, exported=False)).state is State.NO_DATA
    assert classify(HourEvidence(HOUR, table_rows=0, exporting=True, failures=("export: 401",))).state is State.FAILED


def test_hour_whose_export_failed_is_failed():
    status = classify(HourEvidence(HOUR, table_rows=0, failures=("export: 401 from Amplitude",)))
    assert status.state is State.FAILED


def test_hour_whose_objects_expired_is_judged_by_the_ledger_alone():
    status = classify(HourEvidence(HOUR, ledger=ledger(), table_rows=9))
    assert status.state is State.LOADED and "lifecycle" in status.reason
    assert classify(HourEvidence(HOUR, ledger=ledger(), table_rows=3)).state is State.MISMATCH


def test_rows_without_an_hour_object_or_a_load_are_a_mismatch():
    status = classify(HourEvidence(HOUR, table_rows=4, exported=False))
    assert status.state is State.MISMATCH and "4 rows in BigQuery" in status.reason


def test_hour_not_over_yet_is_not_over_rather_than_missing():
    status = classify(HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(minutes=20)))
    assert (status.state, status.state.label) == (State.NOT_OVER, "not over")
    assert status.reason == "ends at 2022-01-05 08:00 UTC; exportable from 2022-01-05 10:00 UTC"
    assert classify(HourEvidence(HOUR, table_rows=0, now=HOUR - timedelta(days=3))).state is State.NOT_OVER  # a future day


def test_hour_over_but_within_the_data_age_is_not_ready():
    status = classify(HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(hours=2, minutes=59)))
    assert (status.state, status.state.label) == (State.NOT_READY, "not ready")
    assert "exportable from 2022-01-05 10:00 UTC" in status.reason
    later = HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(hours=6), min_data_age_hours=8)
    assert classify(later).state is State.NOT_READY and "8 h after its end" in classify(later).reason
    # The export refuses a range that is not ready: its dead letter does not make the hour FAILED.
    refused = HourEvidence(HOUR, table_rows=0, failures=("export: not ready",), now=HOUR + timedelta(hours=2))
    assert classify(refused).state is State.NOT_READY


def test_a_complete_hour_is_not_ready_until_its_scheduled_run_had_time_then_missing():
    # 07:00-08:00 is complete at 10:00; the daily run exports it at 03:00 the next day (grace 2 h).
    waiting = classify(HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(hours=3)))
    assert waiting.state is State.NOT_READY
    assert waiting.reason == "complete at Amplitude; the daily run at 2022-01-06 03:00 UTC exports it (due by 05:00 UTC)"
    assert classify(HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(hours=21, minutes=59))).state is State.NOT_READY
    assert classify(HourEvidence(HOUR, table_rows=0, now=HOUR + timedelta(hours=22))).state is State.MISSING
    # Hourly: the run at 10:05 exports it (grace 30 min).
    hourly = dict(table_rows=0, schedule="hourly")
    assert classify(HourEvidence(HOUR, now=HOUR + timedelta(hours=3, minutes=34), **hourly)).state is State.NOT_READY
    assert classify(HourEvidence(HOUR, now=HOUR + timedelta(hours=3, minutes=35), **hourly)).state is State.MISSING
    # A run that exported the hour's range without writing its hour object is a problem at once.
    lost = HourEvidence(HOUR, table_rows=0, exported=True, now=HOUR + timedelta(hours=3))
    assert classify(lost).state is State.MISSING


def test_evidence_of_a_recent_hour_still_decides_over_its_age():
    now = HOUR + timedelta(minutes=30)
    assert classify(loaded_hour(now=now)).state is State.LOADED
    assert classify(HourEvidence(HOUR, table_rows=0, exported=False, now=now)).state is State.NO_DATA
    assert classify(HourEvidence(HOUR, table_rows=4, now=now)).state is State.MISMATCH


@pytest.mark.parametrize("states, code", [
    ([State.LOADED, State.NO_DATA], EXIT_COMPLETE),
    ([State.LOADED, State.PENDING], EXIT_PENDING),
    ([State.PENDING, State.MISSING], EXIT_PROBLEM),
    ([State.LOADED, State.MISMATCH], EXIT_PROBLEM),
    ([State.FAILED], EXIT_PROBLEM),
    ([State.LOADED, State.NOT_OVER], EXIT_PENDING),
    ([State.NOT_READY, State.NOT_OVER], EXIT_PENDING),
    ([State.NOT_READY, State.MISSING], EXIT_PROBLEM),
])
def test_exit_code_gates_on_the_worst_state(states, code):
    from ampbq.tools.status import HourStatus

    assert exit_code([HourStatus(HourEvidence(HOUR), state) for state in states]) == code


def test_summary_line_and_json_document_count_the_states():
    statuses = [classify(loaded_hour()), classify(HourEvidence(HOUR, table_rows=0, exported=False))]
    assert summary_line(statuses, "day") == "status: day hours=2 loaded=1 no_data=1 events=10 rejected=1 rows=9"
    doc = document("day", statuses, [])
    assert doc["summary"] == {"loaded": 1, "no_data": 1} and doc["exit_code"] == EXIT_COMPLETE
    first = doc["hours"][0]
    assert (first["hour"], first["state"], first["hour_object"]["generation"], first["ledger"]["loaded"]) == (
        "2022-01-05T07", "loaded", SRC_GEN, 9)


def test_status_query_joins_the_ledger_with_row_counts_of_the_range_only():
    config = Config(bucket="b", project="p")
    sql = ledger_sql(config, HourRange(HOUR, HOUR), counts=True)
    assert "FULL OUTER JOIN" in sql and "`p.ops.all_user_events_loads`" in sql and "`p.ops.all_user_events`" in sql
    assert sql.count("BETWEEN TIMESTAMP '2022-01-05 07:00:00+00' AND TIMESTAMP '2022-01-05 07:00:00+00'") == 2
    assert "all_user_events`" not in ledger_sql(config, HourRange(HOUR, HOUR), counts=False).replace("_loads`", "")


def test_a_loaded_hour_whose_import_object_the_lifecycle_deleted_still_reads_loaded():
    status = classify(loaded_hour(import_object=None))
    assert status.state is State.LOADED


def test_an_import_object_gone_before_the_live_hour_object_was_loaded_is_still_pending():
    status = classify(loaded_hour(import_object=None, hour_object=source(SRC_GEN + 1)))
    assert status.state is State.PENDING


def test_an_import_object_gone_with_rows_that_disagree_is_a_mismatch():
    assert classify(loaded_hour(import_object=None, table_rows=7)).state is State.MISMATCH


def test_an_hour_the_latest_export_emptied_reads_no_data_once_its_rows_are_gone():
    empty = ObjectInfo("export/2022-01-05/07.json.gz", SRC_GEN, 20, {"parts": "0"})
    evidence = loaded_hour(hour_object=empty, import_object=target(events=0, rows=0, rejected=0),
                           ledger=ledger(events=0, rows=0, rejected=0, loaded=0), table_rows=0)
    assert classify(evidence).state is State.NO_DATA
    still_there = loaded_hour(hour_object=empty, import_object=target(events=0, rows=0, rejected=0),
                              ledger=ledger(events=0, rows=0, rejected=0, loaded=0), table_rows=3)
    assert classify(still_there).state is State.MISMATCH


def test_a_loaded_hour_with_a_refused_entry_holding_its_events_is_failed():
    status = classify(loaded_hour(refused=("export refused zip entry '203138/x.json.gz' (52 bytes) of …",)))
    assert (status.state, status.reason) == (State.FAILED, "export refused zip entry '203138/x.json.gz' (52 bytes) of …")
    assert exit_code([status]) == EXIT_PROBLEM


def test_a_loaded_hours_lag_runs_from_its_end_to_the_commit_of_its_rows():
    entry = LedgerEntry(IMP_GEN, SRC_GEN, 10, 9, 1, 9, loaded_at=HOUR + timedelta(hours=3, minutes=7))
    status = classify(loaded_hour(ledger=entry))
    assert status.lag == timedelta(hours=2, minutes=7)
    assert status.as_json()["lag_seconds"] == 2 * 3600 + 7 * 60
    naive = LedgerEntry(IMP_GEN, SRC_GEN, 10, 9, 1, 9, loaded_at=(HOUR + timedelta(hours=2)).replace(tzinfo=None))
    assert classify(loaded_hour(ledger=naive)).lag == timedelta(hours=1)


def test_an_hour_not_loaded_has_no_lag():
    entry = LedgerEntry(IMP_GEN, SRC_GEN, 10, 9, 1, 9, loaded_at=HOUR + timedelta(hours=3))
    pending = classify(loaded_hour(ledger=entry, table_rows=3))  # counts disagree: not loaded
    assert pending.state is not State.LOADED and pending.lag is None and pending.as_json()["lag_seconds"] is None
