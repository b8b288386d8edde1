"""The query views of docs/queries.md (properties key by key, users, Amplitude's export columns),
on two upload hours loaded through the real handlers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from ampbq import bigquery as bq_adapter
from ampbq import views
from factory import event as exported_event, utc
from integration_helpers import drop_hour, wait_loaded

pytestmark = pytest.mark.integration
P = "query-views-"  # this test's uuids
USER_A, USER_B = 880000000001, 880000000002  # this test's amplitude_ids
FIRST, SECOND = utc(2018, 6, 9, 7), utc(2018, 6, 9, 8)
SCOPES = ("event_properties", "user_properties", "group_properties", "data")


def event(uuid: str, event_time: str, upload: datetime, **fields) -> dict:
    return exported_event(P + uuid, upload + timedelta(minutes=30), event_time, event_type="view test", **fields)


# Hour 07: three events of two users; hour 08: a later event of USER_A and "second" exported again.
IN_FIRST = [
    event("first", "2018-06-09 06:10:00.000000", FIRST, amplitude_id=USER_A, user_id=None, device_id="device-a",
          event_properties={"plan": "free", "count": 3, "ratio": 0.5, "flag": False, "missing": None,
                            "nested": {"x": [1, 2]}, "[Amplitude] Page Title": "Home", "dotted.key": "d"},
          user_properties={"tier": "t1"}, group_properties={"org": ["acme"]}, data={"first_event": True},
          followed_an_identify=True, paying=False, session_id=1528524600000, sample_rate=0.25, app=123456),
    event("second", "2018-06-09 06:50:00.000000", FIRST, amplitude_id=USER_A, user_id="user-a", device_id=None,
          event_properties={}, user_properties={"tier": "t2"}),
    event("other-day", "2018-06-08 23:59:00.000000", FIRST, amplitude_id=USER_B, user_id="user-b", device_id="device-b",
          event_properties={"k": "v"}, user_properties=None),
]
IN_SECOND = [
    event("latest", "2018-06-09 07:20:00.000000", SECOND, amplitude_id=USER_A, user_id=None, device_id="device-c",
          event_properties={"plan": "pro"}),
    {**IN_FIRST[1], "server_upload_time": "2018-06-09 08:30:00.000000"},
]


@pytest.fixture(scope="module")
def loaded(bucket, bq, config):
    for hour, events in ((FIRST, IN_FIRST), (SECOND, IN_SECOND)):
        wait_loaded(bq, config, hour, drop_hour(bucket, hour, [orjson.dumps(e) for e in events]))
    return config


def rows(bq, sql: str) -> list[dict]:
    return bq_adapter.query_rows(bq, sql)


def as_text(value) -> str | None:
    """The view's value_text of a JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))  # true/false, numbers, objects and arrays as JSON


def expected_property_rows(hour: datetime, events: list[dict]) -> set[tuple]:
    return {(e["uuid"], hour, scope, key, json.dumps(value, sort_keys=True), as_text(value))
            for e in events for scope in SCOPES for key, value in (e.get(scope) or {}).items()}


def property_rows(bq, sql: str) -> set[tuple]:
    found = rows(bq, sql)
    shaped = [(r["uuid"], r["_upload_hour"], r["scope"], r["key"], json.dumps(r["value"], sort_keys=True), r["value_text"])
              for r in found]
    assert len(shaped) == len(set(shaped)), "a key listed twice for one event row"
    return set(shaped)


def test_properties_view_has_one_row_per_key_of_each_scope_of_each_event_row(bq, loaded):
    view = f"`{loaded.table_id}{views.PROPERTIES_SUFFIX}`"
    window = "event_time >= TIMESTAMP '2018-06-08' AND event_time < TIMESTAMP '2018-06-10'"
    assert property_rows(bq, f"SELECT * FROM {view} WHERE {window} AND STARTS_WITH(uuid, '{P}')") == (
        expected_property_rows(FIRST, IN_FIRST) | expected_property_rows(SECOND, IN_SECOND))
    # A filter on event_time or _upload_hour selects as it does on the table.
    one_day = property_rows(bq, f"""SELECT * FROM {view} WHERE DATE(event_time) = '2018-06-09' AND STARTS_WITH(uuid, '{P}')""")
    assert one_day == expected_property_rows(FIRST, IN_FIRST[:2]) | expected_property_rows(SECOND, IN_SECOND)
    one_hour = property_rows(bq, f"""SELECT * FROM {view} WHERE _upload_hour = TIMESTAMP '2018-06-09 08:00:00+00'
                                     AND {window} AND STARTS_WITH(uuid, '{P}')""")
    assert one_hour == expected_property_rows(SECOND, IN_SECOND)
    # The documented example: one key's values, as text.
    plans = rows(bq, f"""SELECT uuid, value_text FROM {view} WHERE {window} AND scope = 'event_properties'
                         AND key = 'plan' AND STARTS_WITH(uuid, '{P}') ORDER BY event_time""")
    assert plans == [{"uuid": P + "first", "value_text": "free"}, {"uuid": P + "latest", "value_text": "pro"}]


def test_users_view_has_each_amplitude_id_with_its_latest_ids_and_properties(bq, loaded):
    found = rows(bq, f"""SELECT * FROM `{loaded.table_id}{views.USERS_SUFFIX}`
                         WHERE amplitude_id IN ({USER_A}, {USER_B}) ORDER BY amplitude_id""")
    at = lambda text: datetime.fromisoformat(text).replace(tzinfo=timezone.utc)  # noqa: E731
    assert found == [
        # user_id from "second" (the latest event's is null), device_id from "latest", user_properties
        # from "second" ("latest" has none); "second" exported twice counts once.
        {"amplitude_id": USER_A, "user_id": "user-a", "device_id": "device-c", "first_event_time": at("2018-06-09 06:10"),
         "last_event_time": at("2018-06-09 07:20"), "user_properties": {"tier": "t2"}, "events": 3},
        {"amplitude_id": USER_B, "user_id": "user-b", "device_id": "device-b", "first_event_time": at("2018-06-08 23:59"),
         "last_event_time": at("2018-06-08 23:59"), "user_properties": None, "events": 1},
    ]


# The columns of Amplitude's own BigQuery export and their types, as the BigQuery client names
# them (INTEGER is INT64, FLOAT is FLOAT64, BOOLEAN is BOOL).
NATIVE_TYPES = {
    "adid": "STRING", "amplitude_event_type": "STRING", "amplitude_id": "BIGNUMERIC", "app": "INTEGER", "city": "STRING",
    "client_event_time": "TIMESTAMP", "client_upload_time": "TIMESTAMP", "country": "STRING", "data": "JSON",
    "device_brand": "STRING", "device_carrier": "STRING", "device_family": "STRING", "device_id": "STRING",
    "device_manufacturer": "STRING", "device_model": "STRING", "device_type": "STRING", "dma": "STRING",
    "event_id": "INTEGER", "event_properties": "JSON", "event_time": "TIMESTAMP", "event_type": "STRING",
    "followed_an_identify": "BOOLEAN", "group_properties": "JSON", "groups": "JSON", "idfa": "STRING",
    "ip_address": "STRING", "is_attribution_event": "BOOLEAN", "language": "STRING", "library": "STRING",
    "location_lat": "FLOAT", "location_lng": "FLOAT", "os_name": "STRING", "os_version": "STRING", "paying": "STRING",
    "platform": "STRING", "processed_time": "TIMESTAMP", "region": "STRING", "sample_rate": "BIGNUMERIC",
    "server_received_time": "TIMESTAMP", "server_upload_time": "TIMESTAMP", "session_id": "BIGNUMERIC",
    "start_version": "STRING", "user_creation_time": "TIMESTAMP", "user_id": "STRING", "user_properties": "JSON",
    "uuid": "STRING", "version_name": "STRING",
}
# The stand-in (DuckDB) has no BIGNUMERIC: a cast to it comes back as NUMERIC.
LOCAL_TYPES = {name: "NUMERIC" if kind == "BIGNUMERIC" else kind for name, kind in NATIVE_TYPES.items()}


def test_native_view_has_amplitude_exports_columns_and_types_and_every_row(bq, loaded):
    view = f"`{loaded.table_id}{views.NATIVE_SUFFIX}`"
    window = "event_time >= TIMESTAMP '2018-06-08' AND event_time < TIMESTAMP '2018-06-10'"
    result = bq.query(f"SELECT * FROM {view} WHERE {window} AND STARTS_WITH(uuid, '{P}') ORDER BY event_time, uuid").result()
    assert [(f.name, f.field_type) for f in result.schema] == list(LOCAL_TYPES.items())
    found = [dict(row) for row in result]
    in_table = rows(bq, f"SELECT uuid FROM `{loaded.table_id}` WHERE {window} AND STARTS_WITH(uuid, '{P}') ORDER BY event_time, uuid")
    assert [r["uuid"] for r in found] == [r["uuid"] for r in in_table]  # one row per table row, the copy too
    first = next(r for r in found if r["uuid"] == P + "first")
    assert first["amplitude_id"] == USER_A and isinstance(first["amplitude_id"], Decimal)
    assert first["session_id"] == 1528524600000 and first["sample_rate"] == Decimal("0.25") and first["app"] == 123456
    assert first["followed_an_identify"] is True and first["paying"] == "false"  # from _extra; BOOL as text
    assert first["event_properties"] == IN_FIRST[0]["event_properties"] and first["data"] == {"first_event": True}
    assert all(r["followed_an_identify"] is None and r["paying"] is None for r in found if r["uuid"] != P + "first")
    # A query written for Amplitude's export: JSON_VALUE on event_properties, a filter on event_time.
    plans = rows(bq, f"""SELECT JSON_VALUE(event_properties, '$.plan') AS plan, COUNT(*) AS n FROM {view}
                         WHERE DATE(event_time) = '2018-06-09' AND STARTS_WITH(uuid, '{P}')
                         AND JSON_VALUE(event_properties, '$.plan') IS NOT NULL GROUP BY plan ORDER BY plan""")
    assert plans == [{"plan": "free", "n": 1}, {"plan": "pro", "n": 1}]
