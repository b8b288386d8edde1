"""The deduplicating view over the events table, on hours loaded through the real handlers."""

from __future__ import annotations

from collections import Counter

import pytest

from ampbq import bigquery as bq_adapter
from ampbq import views
from factory import event_line, utc
from integration_helpers import drop_hour, wait_loaded

pytestmark = pytest.mark.integration
P = "dedup-view-"  # this test's uuids


def line(uuid: str, event_time: str, event_type: str) -> bytes:
    return event_line(P + uuid, "2019-07-14 03:30:00.000000", event_time, event_type=event_type)


def test_the_dedup_view_holds_one_row_per_exported_event_and_the_table_every_line(bucket, bq, config):
    first, second = utc(2019, 7, 14, 3), utc(2019, 7, 14, 4)
    at = "2019-07-14 02:59:00.000000"
    # The same line twice in one hour object, an event exported again in a later upload hour,
    # and one uuid on two different events (another event_time): those are not copies.
    wait_loaded(bq, config, first, drop_hour(bucket, first, [
        line("twice", at, "a"), line("once", at, "a"), line("twice", at, "a"),
        line("again", at, "first export"), line("two-events", at, "a")]))
    wait_loaded(bq, config, second, drop_hour(bucket, second, [
        line("again", at, "second export"), line("two-events", "2019-07-15 00:00:01.000000", "b")]))

    def rows(relation: str) -> list[dict]:
        return bq_adapter.query_rows(bq, f"""
            SELECT uuid, event_type, _upload_hour, _source_line FROM `{relation}`
            WHERE DATE(event_time) BETWEEN '2019-07-14' AND '2019-07-15' AND STARTS_WITH(uuid, '{P}')""")

    in_table = Counter(row["uuid"].removeprefix(P) for row in rows(config.table_id))
    assert in_table == {"twice": 2, "once": 1, "again": 2, "two-events": 2}
    view_rows = rows(config.table_id + views.DEDUP_SUFFIX)
    in_view = {(row["uuid"].removeprefix(P), row["event_type"]): row for row in view_rows}
    assert len(view_rows) == len(in_view) and sorted(in_view) == [("again", "second export"), ("once", "a"), ("twice", "a"), ("two-events", "a"), ("two-events", "b")]
    # Of copies in one hour, the later line; across hours, the latest upload hour.
    assert in_view["twice", "a"]["_source_line"] == 3 and in_view["again", "second export"]["_upload_hour"] == second
    # A filter on event_time outside the view selects as it does on the table.
    one_day = bq_adapter.query_rows(bq, f"""
        SELECT uuid FROM `{config.table_id}{views.DEDUP_SUFFIX}`
        WHERE event_time >= TIMESTAMP '2019-07-15' AND event_time < TIMESTAMP '2019-07-16' AND STARTS_WITH(uuid, '{P}')""")
    assert one_day == [{"uuid": P + "two-events"}]
