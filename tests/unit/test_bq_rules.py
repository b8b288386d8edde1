"""The BigQuery rules layer's decisions and statement shapes (pure: no server)."""

from __future__ import annotations

import threading
import time

from ampbq.tools import bq_rules
from ampbq.tools.bq_rules import Rules, TableState, decide, job_shape, partition_probe, split_statements

P = "proj"
TXN = "BEGIN TRANSACTION;\nIF NOT EXISTS (SELECT 1 FROM `proj.ops.t_loads`) THEN\n  DELETE FROM `proj.ops.t` WHERE x = 'a;b';\nEND IF;\nCOMMIT TRANSACTION;"


def test_a_script_is_split_on_semicolons_outside_quotes_and_its_mutated_tables_found():
    assert split_statements("SELECT 'a;b'; SELECT `c;d`;") == ["SELECT 'a;b'", "SELECT `c;d`"]
    shape = job_shape(TXN, P)
    assert shape.transaction and shape.mutated == {"proj.ops.t"}
    assert job_shape("INSERT INTO ops.t (a) SELECT 1", P).mutated == frozenset()  # INSERT is not mutating DML
    assert job_shape("UPDATE `proj:ops.t_loads` SET a = 1 WHERE TRUE", P).mutated == {"proj.ops.t_loads"}


def test_a_transaction_arriving_while_another_mutates_its_table_is_cancelled_with_bigquerys_error():
    shape = job_shape(TXN, P)
    assert decide({}, shape).action == "run"
    busy = {"proj.ops.t": TableState(transactions=1)}
    decision = decide(busy, shape)
    assert decision.action == "fail"
    assert decision.message == "Transaction is aborted due to concurrent update against table proj:ops.t"
    assert decide({"proj.ops.t": TableState(dml=1)}, shape).action == "fail"
    assert decide({"proj.ops.other": TableState(transactions=1)}, shape).action == "run"


def test_two_mutating_dml_statements_run_per_table_twenty_wait_and_the_next_fails():
    dml = job_shape("DELETE FROM `proj.ops.t` WHERE TRUE", P)
    assert decide({"proj.ops.t": TableState(dml=1)}, dml).action == "run"
    assert decide({"proj.ops.t": TableState(dml=2, queued=19)}, dml).action == "wait"
    assert decide({"proj.ops.t": TableState(transactions=1)}, dml).action == "wait"  # DML queues behind a transaction
    refused = decide({"proj.ops.t": TableState(dml=2, queued=20)}, dml)
    assert refused.action == "fail" and "Too many DML statements outstanding against table proj:ops.t, limit is 20" in refused.message


def test_rules_count_cancelled_transactions_and_release_waiting_dml_when_a_statement_finishes():
    rules = Rules()
    txn, dml = job_shape(TXN, P), job_shape("DELETE FROM `proj.ops.t` WHERE TRUE", P)
    assert rules.admit(txn).action == "run"
    assert rules.admit(txn).action == "fail" and rules.stats.conflicts == 1
    admitted = []
    waiter = threading.Thread(target=lambda: admitted.append(rules.admit(dml).action))
    waiter.start()
    time.sleep(0.2)
    assert admitted == [] and rules.tables["proj.ops.t"].queued == 1  # waits while the transaction runs
    rules.finish(txn)
    waiter.join(5)
    assert admitted == ["run"] and rules.stats.queued == 1 and rules.tables["proj.ops.t"].queued == 0


def test_partition_counts_are_asked_for_the_delete_and_insert_select_shapes_of_the_load_step():
    fields = {"proj.ops.t": "event_time"}.get
    delete = partition_probe("DELETE FROM `proj.ops.t` WHERE _upload_hour = TIMESTAMP '2024-01-01 00:00:00+00'", P, fields)
    assert delete == ("proj.ops.t", "SELECT COUNT(DISTINCT DATE(event_time)) AS n FROM `proj.ops.t` "
                                    "WHERE _upload_hour = TIMESTAMP '2024-01-01 00:00:00+00'")
    insert = partition_probe("INSERT INTO `proj.ops.t` (`uuid`, `event_time`) SELECT `uuid`, `event_time` FROM `s`", P, fields)
    assert insert == ("proj.ops.t", "SELECT COUNT(DISTINCT DATE(event_time)) AS n FROM (SELECT `uuid`, `event_time` FROM `s`)")
    assert partition_probe("DELETE FROM `proj.ops.t_loads` WHERE TRUE", P, fields) is None  # not partitioned
    assert partition_probe("INSERT INTO `proj.ops.t` (`uuid`) VALUES ('a')", P, fields) is None  # not a recognised shape


def test_refusal_messages_are_bigquerys():
    assert bq_rules.partitions_message(4001) == (
        "Too many partitions produced by query, allowed 4000, query produces at least 4001 partitions")
