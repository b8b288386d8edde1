from datetime import datetime, timezone

from ampbq import load, schema

HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)
LOAD = load.HourLoad(HOUR, "gs://b/import/2024-01-31/05.json", 22, "gs://b/export/2024-01-31/05.json.gz", 11, 10, 9, 1)


def test_replace_script_deletes_the_hour_inserts_the_stage_and_records_the_ledger_in_one_transaction():
    sql = load.replace_hour_script("p.ops.t", "p.ops.t_loads", "p.ops._stage", LOAD)
    body = [line.strip() for line in sql.strip().splitlines()]
    assert body[0] == "BEGIN TRANSACTION;" and body[-1] == "COMMIT TRANSACTION;"
    assert "DELETE FROM `p.ops.t` WHERE _upload_hour = TIMESTAMP '2024-01-31 05:00:00+00';" in body
    assert any(line.startswith("INSERT INTO `p.ops.t` (") and line.endswith("FROM `p.ops._stage`;") for line in body)
    assert "import_generation > 22" in sql  # an older generation never overwrites a newer one
    assert all(f"`{column}`" in sql for column in schema.column_names())


def test_literals_are_escaped():
    assert load.literal("gs://b/it's") == "'gs://b/it\\'s'"
