"""Turn one exported Amplitude event into one BigQuery-ready row (pure, no I/O).

Every exported field lands in a typed column. Conversions are lossless or the event is rejected
with a reason naming the field: a value is never silently changed or dropped.
- TIMESTAMP: Amplitude's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) passes through; ISO 8601 with an
  offset (as some tools rewrite it) is converted to UTC; "" is NULL.
- INT64 / FLOAT64 / BOOL: native values, or strings that spell one exactly ("42", "true").
- STRING: strings as they are; numbers and booleans as their JSON text (`os_version` 86 → "86");
  objects and arrays as compact JSON text.
- JSON: any value, as exported.
- `amplitude_attribution_ids`: always an array (null → [], "a" → ["a"]).
Top-level fields the schema does not know go, as exported, into the `_extra` JSON column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import orjson

from . import schema

# Exported field names that are not legal BigQuery column names.
RENAMED = {"$insert_id": "insert_id", "$insert_key": "insert_key", "$schema": "schema_version"}
LINEAGE_COLUMNS = ("_extra", "_upload_hour", "_source_object", "_source_generation", "_source_line")
REQUIRED_FIELDS = ("uuid", "event_time", "server_upload_time")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_AMPLITUDE_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
_INT_TEXT = re.compile(r"^-?\d+$")


class RejectedEvent(ValueError):
    """This event cannot be shaped into a row; the message says why."""


def _describe(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(column: str, expected: str, value: Any) -> RejectedEvent:
    return RejectedEvent(f"field {column!r}: expected {expected}, got {_describe(value)}")


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def to_timestamp(column: str, value: Any) -> str | None:
    if type(value) is not str:
        raise _fail(column, "a timestamp string", value)
    if value == "":
        return None
    if len(value) < 19:
        raise _fail(column, "a date and time", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(column, "a timestamp like 2022-11-14 00:57:33.008000", value) from None
    if moment.tzinfo is None:
        # Amplitude's own format is UTC without a zone: keep the text exactly when it is that format.
        return value if _AMPLITUDE_TS.match(value) else format_timestamp(moment.replace(tzinfo=timezone.utc))
    return format_timestamp(moment)


def to_int(column: str, value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        number = value
    elif kind is float and value.is_integer():
        number = int(value)
    elif kind is str and _INT_TEXT.match(value.strip()):
        number = int(value.strip())
    elif kind is str and value == "":
        return None
    else:
        raise _fail(column, "an integer", value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise _fail(column, "an integer within INT64", value)
    return number


def to_float(column: str, value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        if value == "":
            return None
        try:
            number = float(value)
        except ValueError:
            raise _fail(column, "a number", value) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise _fail(column, "a finite number", value)
        return number
    raise _fail(column, "a number", value)


def to_bool(column: str, value: Any) -> bool | None:
    if type(value) is bool:
        return value
    if type(value) is str and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if type(value) is str and value == "":
        return None
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise _fail(column, "a boolean", value)


def to_text(column: str, value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in (int, float):
        return str(value) if type(value) is int else repr(value)
    return orjson.dumps(value).decode()


def to_json(column: str, value: Any) -> Any:
    return value


def to_text_array(column: str, value: Any) -> list[str]:
    if type(value) is list:
        return [to_text(column, item) for item in value if item is not None]
    if value == "":
        return []
    return [to_text(column, value)]


_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "TIMESTAMP": to_timestamp,
    "INT64": to_int,
    "INTEGER": to_int,
    "FLOAT64": to_float,
    "FLOAT": to_float,
    "BOOL": to_bool,
    "BOOLEAN": to_bool,
    "STRING": to_text,
    "JSON": to_json,
}


def _converters() -> dict[str, tuple[str, Callable[[str, Any], Any]]]:
    """Exported field name → (column name, converter), for every non-lineage column."""
    renamed_back = {column: source for source, column in RENAMED.items()}
    table = {}
    for field in schema.fields():
        column = field["name"]
        if column in LINEAGE_COLUMNS:
            continue
        convert = to_text_array if field.get("mode") == "REPEATED" else _CONVERTERS[field["type"]]
        table[renamed_back.get(column, column)] = (column, convert)
    return table


@dataclass(frozen=True)
class Lineage:
    """Where a row came from: the upload hour and the exact object and line."""

    upload_hour: datetime
    source_object: str
    source_generation: int

    @property
    def upload_hour_text(self) -> str:
        return self.upload_hour.strftime("%Y-%m-%d %H:00:00")


class Shaper:
    """Shapes decoded events into rows; build once per hour, call per event."""

    def __init__(self, lineage: Lineage):
        self._converters = _converters()
        self._lineage = {
            "_upload_hour": lineage.upload_hour_text,
            "_source_object": lineage.source_object,
            "_source_generation": lineage.source_generation,
        }

    def shape(self, event: Any, line: int) -> dict:
        if type(event) is not dict:
            raise RejectedEvent(f"line is JSON but not an object ({type(event).__name__})")
        converters = self._converters
        row: dict[str, Any] = {}
        extra = None
        for key, value in event.items():
            target = converters.get(key)
            if target is None:
                if extra is None:
                    extra = {}
                extra[key] = value
            elif value is not None:
                column, convert = target
                converted = convert(column, value)
                if converted is not None:
                    row[column] = converted
        for column in REQUIRED_FIELDS:
            if row.get(column) in (None, ""):
                raise RejectedEvent(f"field {column!r} is missing or empty")
        if type(row["uuid"]) is not str or type(event["uuid"]) is not str:
            raise _fail("uuid", "a string", event["uuid"])
        if extra is not None:
            row["_extra"] = extra
        row.update(self._lineage)
        row["_source_line"] = line
        return row
