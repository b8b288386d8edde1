"""The load step's plan and SQL (pure): batching, guards, partition ranges, ledger records."""

from datetime import date, datetime, timedelta, timezone

from ampbq import load, schema

HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)
LOAD = load.HourLoad(HOUR, "gs://b/import/2024-01-31/05.json", 22, "gs://b/export/2024-01-31/05.json.gz", 11, 10, 9, 1)
T0 = datetime(2024, 1, 30, 23, 59, tzinfo=timezone.utc)


def staged(hour=HOUR, source=11, imported=22, lo=T0, hi=T0 + timedelta(hours=1), partitions=2) -> load.Staged:
    return load.Staged(load.HourLoad(hour, f"gs://b/import/{hour:%H}.json", imported, "gs://b/export/x", source, 10, 9, 1),
                       f"p.ops._stage_{hour:%H}_{imported}", lo, hi, partitions)


def statements(sql: str) -> list[str]:
    return [line for line in sql.strip().splitlines()]


def test_one_transaction_replaces_every_guarded_hour_of_the_batch_in_a_fixed_number_of_statements():
    batch = [staged(HOUR + timedelta(hours=i)) for i in range(168)]
    sql = load.group_commit_script("p.ops.t", "p.ops.t_loads", batch, {}, "tok")
    body = statements(sql)
    assert body[0] == "BEGIN TRANSACTION;" and body[-1] == "COMMIT TRANSACTION;"
    # the lock row first (every pair of commits conflicts), a delete of leftovers within the new
    # rows' days, one insert of the 168 stages, then the ledger's two statements
    assert [line.split(" ", 2)[0] for line in body[1:-1]] == ["UPDATE", "DELETE", "INSERT", "INSERT", "DELETE"]
    assert body[1].startswith("UPDATE `p.ops.t_commit_lock` SET holder = 'tok'")
    assert all(f"`p.ops._stage_{h:02d}_22`" in body[3] for h in (5, 23)) and body[3].count("UNION ALL SELECT `") == 167
    assert all(f"`{column}`" in body[3] for column in schema.column_names())


def test_the_guard_compares_the_source_generation_first_then_the_import_generation_and_the_planned_ledger_state():
    guard = load.guard_sql("p.ops.t_loads", [staged()], {("", HOUR): load.Loaded(20, 10)})
    assert "IFNULL(l.import_generation, -1) = b.expected_generation" in guard and "20 AS expected_generation" in guard
    assert ("l.source_generation < b.source_generation OR (l.source_generation = b.source_generation "
            "AND l.import_generation < b.import_generation)") in guard


def test_an_older_source_generation_is_superseded_even_with_a_newer_import_generation():
    older_source = staged(source=10, imported=99)
    batch, superseded = load.pick_batch([older_source], {("", HOUR): load.Loaded(22, 11)})
    assert batch == [] and superseded == [older_source]
    newer = staged(source=12, imported=23)
    batch, superseded = load.pick_batch([older_source, newer, staged(source=12, imported=5)], {("", HOUR): load.Loaded(22, 11)})
    assert batch == [newer] and len(superseded) == 2


def test_the_delete_is_pruned_to_the_partitions_the_ledger_recorded_or_for_hours_never_loaded_to_the_new_rows_days():
    second = HOUR + timedelta(hours=1)
    ledger = {("", HOUR): load.Loaded(20, 10, datetime(2024, 1, 2, tzinfo=timezone.utc), datetime(2024, 1, 31, 5, tzinfo=timezone.utc))}
    where = load.old_rows_filter([staged(), staged(second)], ledger)
    assert where == ("(_upload_hour = TIMESTAMP '2024-01-31 05:00:00+00' AND DATE(event_time) "
                     "BETWEEN DATE '2024-01-02' AND DATE '2024-01-31') OR "
                     "(_upload_hour = TIMESTAMP '2024-01-31 06:00:00+00' AND DATE(event_time) "
                     "BETWEEN DATE '2024-01-30' AND DATE '2024-01-31')")
    assert load.old_partitions_upper_bound([staged()], ledger) == 30
    assert load.old_partitions_upper_bound([staged()], {("", HOUR): load.Loaded(20, 10)}) is None  # no range: count


def test_statements_are_split_into_ranges_of_at_most_4000_partitions():
    days = [date(2000, 1, 1) + timedelta(days=2 * i) for i in range(9001)]
    ranges = load.date_ranges(days)
    assert [len([d for d in days if lo <= d <= hi]) for lo, hi in ranges] == [4000, 4000, 1001]
    sql = load.group_commit_script("p.ops.t", "p.ops.t_loads", [staged()], {("", HOUR): load.Loaded(20, 10, T0, T0)}, "tok",
                                   delete_ranges=ranges[:2], insert_ranges=ranges)
    kinds = [line.split(" ", 2)[0] for line in statements(sql)[1:-1]]
    assert kinds == ["UPDATE"] + ["DELETE"] * 2 + ["INSERT"] * 3 + ["INSERT", "DELETE"]
    assert f"AND DATE(event_time) BETWEEN DATE '{ranges[2][0]}' AND DATE '{ranges[2][1]}';" in sql


def test_the_ledger_records_range_and_fingerprint_of_the_rows_in_the_table_and_replaces_the_old_entry_by_token():
    sql = load.group_commit_script("p.ops.t", "p.ops.t_loads", [staged()], {}, "tok")
    ledger_insert, ledger_delete = statements(sql)[-3:-1]
    assert "BIT_XOR(FARM_FINGERPRINT(uuid)) AS fp" in ledger_insert and "MIN(event_time) AS lo" in ledger_insert
    assert "DATE(event_time) BETWEEN DATE '2024-01-30' AND DATE '2024-01-31'" in ledger_insert  # pruned count
    key = "CONCAT(IFNULL(project, ''), '|', CAST(upload_hour AS STRING))"
    assert ledger_delete == (f"DELETE FROM `p.ops.t_loads` WHERE {key} IN (SELECT {key} FROM `p.ops.t_loads` "
                             "WHERE commit_batch = 'tok') AND IFNULL(commit_batch, '') != 'tok';")


def test_an_hour_whose_every_line_was_rejected_inserts_nothing_but_is_recorded():
    sql = load.group_commit_script("p.ops.t", "p.ops.t_loads", [staged(lo=None, hi=None, partitions=0)], {}, "tok")
    assert [line.split(" ", 2)[0] for line in statements(sql)[1:-1]] == ["UPDATE", "INSERT", "DELETE"]
    assert "WHERE FALSE GROUP BY" in sql


def test_the_commit_lock_is_seeded_once_and_updated_first_in_every_transaction():
    seed = load.commit_lock_seed_sql("p.ops.t")
    assert seed.startswith("INSERT INTO `p.ops.t_commit_lock`") and "WHERE NOT EXISTS (SELECT 1 FROM `p.ops.t_commit_lock`)" in seed
    for ledger in ({}, {("", HOUR): load.Loaded(20, 10, T0, T0)}):
        assert statements(load.group_commit_script("p.ops.t", "p.ops.t_loads", [staged()], ledger, "tok"))[1].startswith(
            "UPDATE `p.ops.t_commit_lock` SET holder = 'tok'")


def test_waiting_markers_round_trip():
    assert load.Staged.from_json(staged().to_json()) == staged()
    assert load.waiting_name("p.ops.t", HOUR, 22) == "load/waiting/ops.t/2024013105-22.json"
    assert load.lease_name("p.ops.t") == "load/lease/ops.t.json"


def test_literals_are_escaped():
    assert load.literal("gs://b/it's") == "'gs://b/it\\'s'"
