"""The load step under BigQuery's rules, which the local stack enforces in front of bqemulator:
conflicting transactions cancelled, at most 4,000 partitions per statement. Whole days and a
week's backfill published at once must land exactly, with no transaction cancelled and no load
left to the platform's retry.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta

import pytest
from click.testing import CliRunner

from ampbq.tools import bq_rules
from ampbq.tools.cli import main
from ampbq.naming import HourRange
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset
from factory import event_line, utc
from integration_helpers import drop_hour, hour_rows, land, ledger_entry, load_failures, wait_loaded

pytestmark = pytest.mark.integration


def ts(hour: datetime) -> str:
    return f"TIMESTAMP '{hour:%Y-%m-%d %H}:00:00+00'"


def test_a_transaction_arriving_while_another_mutates_its_table_is_cancelled_by_the_rules_layer(stack, bq, config):
    table = f"{config.project}.{config.dataset}._rules_conflict"
    bq.query(f"CREATE TABLE `{table}` (uuid STRING)").result()
    before = stack.bigquery_rules_stats()["conflicts"]
    # The first transaction stays busy for a few seconds after its DELETE; the second arrives meanwhile.
    slow = (f"BEGIN TRANSACTION; DELETE FROM `{table}` WHERE uuid = 'a'; "
            f"SELECT COUNT(*) FROM UNNEST(GENERATE_ARRAY(1, 8000000)) AS x; COMMIT TRANSACTION;")
    outcome = {}

    def first():
        try:
            bq.query(slow, job_retry=None).result()
            outcome["first"] = "done"
        except Exception as error:  # noqa: BLE001 (what happened is the assertion)
            outcome["first"] = str(error)

    runner = threading.Thread(target=first)
    runner.start()
    time.sleep(1.0)  # the first is running (it needs seconds) when the second arrives
    second = bq.query(f"BEGIN TRANSACTION; DELETE FROM `{table}` WHERE uuid = 'b'; COMMIT TRANSACTION;",
                      job_id=f"rules_conflict_{time.time_ns()}", job_retry=None)
    with pytest.raises(Exception, match="Transaction is aborted due to concurrent update against table"):
        second.result()
    runner.join(60)
    assert outcome == {"first": "done"}
    assert bq.get_job(second.job_id).error_result["message"].endswith(bq_rules.conflict_message(table))
    assert stack.bigquery_rules_stats()["conflicts"] == before + 1
    bq.query(f"BEGIN TRANSACTION; DELETE FROM `{table}` WHERE uuid = 'b'; COMMIT TRANSACTION;").result()  # alone: runs
    assert stack.bigquery_rules_stats()["conflicts"] == before + 1


def test_a_day_of_24_hours_published_at_once_lands_exactly_in_a_few_transactions(stack, stub, bq, config):
    day = date(2021, 6, 1)
    dataset = Dataset.for_day(day, hours=24, events_per_hour=20, parts_per_hour=2)
    stub.source.current = DatasetSource(dataset)
    hours = HourRange.day(day)
    got = land(stack, bq, config, hours, dataset, [{"date": f"{day}"}], timeout=240)
    print(f"day: hours=24 events={len(got['expected'])} transactions={got['transactions']} "
           f"conflicts={got['conflicts']} seconds={got['seconds']:.1f}")
    assert sorted(got["uuids"]) == sorted(got["expected"]) and got["loaded"] == 24 * 20
    assert got["conflicts"] == 0 and got["transactions"] < 24
    assert load_failures(stack, hours) == []


def test_an_hour_whose_events_span_more_than_4000_day_partitions_lands_and_is_replaced(stack, bucket, bq, config):
    hour = utc(2021, 8, 1, 4)
    spread = 4100  # events one day apart: 4,100 partitions, more than one statement may modify
    first = drop_hour(bucket, hour, [event_line(f"wide-{i}", hour, hour - timedelta(days=i)) for i in range(spread)])
    entry = wait_loaded(bq, config, hour, first, timeout=240)
    assert entry["loaded"] == spread and entry["min_event_time"] == hour - timedelta(days=spread - 1)
    refused = stack.bigquery_rules_stats()["partition_refusals"]
    # Unsplit, the same replace is refused by the rules layer, as BigQuery refuses it.
    whole = f"BEGIN TRANSACTION; DELETE FROM `{config.table_id}` WHERE _upload_hour = {ts(hour)}; ROLLBACK TRANSACTION;"
    with pytest.raises(Exception, match="Too many partitions produced by query, allowed 4000"):
        bq.query(whole, job_retry=None).result()
    assert stack.bigquery_rules_stats()["partition_refusals"] == refused + 1
    # A new generation replaces all 4,100 old rows (deletes split too) with rows spanning as many days.
    second = drop_hour(bucket, hour, [event_line(f"wider-{i}", hour, hour - timedelta(days=2 * i)) for i in range(spread)])
    entry = wait_loaded(bq, config, hour, second, timeout=240)
    rows = hour_rows(bq, config, hour)
    assert len(rows) == spread and {r["uuid"] for r in rows} == {f"wider-{i}" for i in range(spread)}
    assert entry["loaded"] == spread and stack.bigquery_rules_stats()["partition_refusals"] == refused + 1


def ampbq_status(stack, hour: datetime):
    result = CliRunner().invoke(main, ["status", "--start", f"{hour:%Y-%m-%dT%H}", "--json"], env=stack.client_env(),
                                catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)["hours"][0]


def test_rows_replaced_by_as_many_other_rows_or_left_without_their_ledger_entry_read_mismatch(stack, bucket, bq, config):
    hour = utc(2021, 8, 2, 6)
    generation = drop_hour(bucket, hour, [event_line(f"print-{i}", hour, hour) for i in range(10)])
    wait_loaded(bq, config, hour, generation)
    assert ampbq_status(stack, hour)[1]["state"] == "loaded"
    # 3 rows deleted, 3 others duplicated: still 10 rows, not the 10 rows the load wrote.
    bq.query(f"DELETE FROM `{config.table_id}` WHERE _upload_hour = {ts(hour)} AND uuid IN ('print-0', 'print-1', 'print-2')").result()
    bq.query(f"INSERT INTO `{config.table_id}` SELECT * FROM `{config.table_id}` "
             f"WHERE _upload_hour = {ts(hour)} AND uuid IN ('print-3', 'print-4', 'print-5')").result()
    assert len(hour_rows(bq, config, hour)) == 10
    code, status = ampbq_status(stack, hour)
    assert (code, status["state"]) == (1, "mismatch") and "fingerprint" in status["reason"]
    # The ledger entry vanished while the rows remain: nothing accounts for them.
    bq.query(f"DELETE FROM `{config.ledger_table_id}` WHERE upload_hour = {ts(hour)}").result()
    assert ledger_entry(bq, config, hour) is None
    code, status = ampbq_status(stack, hour)
    assert (code, status["state"]) == (1, "mismatch") and "no load recorded" in status["reason"]


def test_the_commit_lease_is_exclusive_until_its_holder_stops_renewing_it(bucket, monkeypatch):
    from ampbq.lease import Lease

    name = "load/lease/ops._lease_test.json"
    holder, waiter = Lease(bucket, name), Lease(bucket, name)
    assert holder.acquire() and not waiter.acquire()  # created only if absent, in the GCS stand-in too
    assert holder.renew() and not waiter.acquire()
    waiter.stale_after = 0.0  # the holder died: its lease is now stale
    assert waiter.acquire()
    assert not holder.renew()  # the old holder learns it lost the lease and commits nothing more
    holder.release()
    assert bucket.get_blob(name) is not None  # releasing a lost lease leaves the new holder's alone
    waiter.release()
    assert bucket.get_blob(name) is None


def test_a_waiting_hour_whose_staging_table_is_gone_does_not_block_the_others(stack, bucket, bq, config):
    from ampbq import load

    lost_hour, hour = utc(2021, 8, 4, 1), utc(2021, 8, 4, 2)
    lost = load.Staged(load.HourLoad(lost_hour, "gs://b/import/lost.json", 7, "gs://b/export/lost.json.gz", 7, 1, 1, 0),
                       f"{config.project}.{config.dataset}._stage_gone", lost_hour, lost_hour, 1)
    marker = bucket.blob(load.waiting_name(config.table_id, lost_hour, 7))
    marker.metadata = {"staged": lost.to_json()}
    marker.upload_from_string(lost.to_json(), "application/json")  # as if its table expired meanwhile
    generation = drop_hour(bucket, hour, [event_line(f"after-lost-{i}", hour, hour) for i in range(4)])
    assert wait_loaded(bq, config, hour, generation)["loaded"] == 4
    assert bucket.get_blob(marker.name) is None and ledger_entry(bq, config, lost_hour) is None
