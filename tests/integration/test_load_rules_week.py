"""A week's backfill (168 hours) published at once lands exactly under BigQuery's rules, with no
transaction cancelled and no load left to the platform's retry. In a module of its own: it is the
longest integration test, and test workers share out whole modules.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ampbq.naming import HourRange
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset
from factory import utc
from integration_helpers import land, load_failures

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_a_week_backfill_of_168_hours_published_at_once_lands_exactly(stack, stub, bq, config):
    first = date(2021, 7, 1)
    week = HourRange(utc(2021, 7, 1, 0), utc(2021, 7, 7, 23))
    dataset = Dataset(week.start, hours=168, events_per_hour=5, parts_per_hour=1)
    stub.source.current = DatasetSource(dataset)
    messages = [{"date": f"{first + timedelta(days=i)}"} for i in range(7)]  # what `ampbq backfill` publishes
    got = land(stack, bq, config, week, dataset, messages, timeout=480)
    print(f"backfill: hours=168 events={len(got['expected'])} transactions={got['transactions']} "
           f"conflicts={got['conflicts']} seconds={got['seconds']:.1f}")
    assert sorted(got["uuids"]) == sorted(got["expected"]) and got["loaded"] == 168 * 5
    assert got["conflicts"] == 0 and got["transactions"] < 168 // 2
    assert load_failures(stack, week) == []
