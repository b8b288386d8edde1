"""The load step's SQL, built as plain strings (pure, tested without a server).

One upload hour is replaced atomically: the hour's rows are loaded into a staging table, then
one transaction deletes that hour from the events table, inserts the staged rows, and records
the load in the ledger. The ledger also orders generations: a transaction whose import object
is older than the one already loaded changes nothing, so out-of-order events cannot bring old
rows back. Values are inlined as literals because they come only from our own parsed names and
integers (and the emulator does not take parameters in scripts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import schema


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp_literal(hour: datetime) -> str:
    return f"TIMESTAMP '{hour:%Y-%m-%d %H:%M:%S}+00'"


@dataclass(frozen=True)
class HourLoad:
    """What is being loaded: the hour, its import object, and the counts transform recorded."""

    hour: datetime
    import_object: str
    import_generation: int
    source_object: str
    source_generation: int
    events: int
    rows: int
    rejected: int


def replace_hour_script(table_id: str, ledger_id: str, stage_id: str, load: HourLoad) -> str:
    columns = ", ".join(f"`{name}`" for name in schema.column_names())
    hour = timestamp_literal(load.hour)
    return f"""
BEGIN TRANSACTION;
IF NOT EXISTS (SELECT 1 FROM `{ledger_id}` WHERE upload_hour = {hour} AND import_generation > {load.import_generation}) THEN
  DELETE FROM `{table_id}` WHERE _upload_hour = {hour};
  INSERT INTO `{table_id}` ({columns}) SELECT {columns} FROM `{stage_id}`;
  DELETE FROM `{ledger_id}` WHERE upload_hour = {hour};
  INSERT INTO `{ledger_id}` (upload_hour, import_object, import_generation, source_object, source_generation,
                             events, rows_written, rejected, loaded, loaded_at)
  SELECT {hour}, {literal(load.import_object)}, {load.import_generation}, {literal(load.source_object)},
         {load.source_generation}, {load.events}, {load.rows}, {load.rejected},
         (SELECT COUNT(*) FROM `{table_id}` WHERE _upload_hour = {hour}), CURRENT_TIMESTAMP();
END IF;
COMMIT TRANSACTION;
"""


def ledger_entry_sql(ledger_id: str, hour: datetime) -> str:
    return (
        f"SELECT import_generation, events, rows_written, rejected, loaded FROM `{ledger_id}` "
        f"WHERE upload_hour = {timestamp_literal(hour)}"
    )


def staged_count_sql(stage_id: str) -> str:
    return f"SELECT COUNT(*) AS n FROM `{stage_id}`"
