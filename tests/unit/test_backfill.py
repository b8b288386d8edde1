"""Planning a backfill: one run request per day, refusing hours that are not over."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from ampbq.tools.backfill import Run, parse_hours, plan, summary_line
from ampbq.errors import PermanentError
from ampbq.naming import HourRange
from ampbq.tools.status import HourEvidence, HourStatus, State

NOW = datetime(2024, 3, 10, 12, 30, tzinfo=timezone.utc)


def test_one_run_request_per_day_asks_for_the_whole_day():
    planned = plan(date(2024, 1, 30), date(2024, 2, 1), None, NOW, 2)
    assert planned.bodies() == [{"date": "2024-01-30"}, {"date": "2024-01-31"}, {"date": "2024-02-01"}]
    assert planned.warnings == []


def test_hours_option_asks_for_those_hours_of_each_day():
    planned = plan(date(2024, 1, 30), date(2024, 1, 31), parse_hours("05-07"), NOW, 2)
    assert planned.bodies() == [{"start": "20240130T05", "end": "20240130T07"},
                                {"start": "20240131T05", "end": "20240131T07"}]


@pytest.mark.parametrize("text, span", [("7", (7, 7)), ("00-23", (0, 23)), ("05-07", (5, 7))])
def test_hours_option_reads_one_hour_or_an_inclusive_span(text, span):
    assert parse_hours(text) == span


@pytest.mark.parametrize("text", ["7-5", "24", "a-b", "-1", ""])
def test_hours_option_refuses_what_is_not_a_span_of_the_day(text):
    with pytest.raises(ValueError):
        parse_hours(text)


def test_day_that_is_not_over_is_refused():
    with pytest.raises(PermanentError, match="not over yet"):
        plan(date(2024, 3, 9), date(2024, 3, 10), None, NOW, 2)


def test_earlier_hours_of_today_are_allowed_but_the_current_hour_is_not():
    assert plan(date(2024, 3, 10), date(2024, 3, 10), (0, 9), NOW, 2).warnings == []
    with pytest.raises(PermanentError):
        plan(date(2024, 3, 10), date(2024, 3, 10), (0, 12), NOW, 2)


def test_range_ending_within_the_minimum_data_age_is_warned_about():
    planned = plan(date(2024, 3, 10), date(2024, 3, 10), (0, 10), NOW, 2)
    assert len(planned.warnings) == 1 and "refuses it until 2024-03-10T13:00Z" in planned.warnings[0]


def test_end_before_start_is_refused():
    with pytest.raises(PermanentError, match="before"):
        plan(date(2024, 1, 2), date(2024, 1, 1), None, NOW, 2)


def test_run_lines_say_which_days_landed():
    day = HourRange.day(date(2024, 1, 30))
    landed = Run(day, statuses=[HourStatus(HourEvidence(day.start), State.LOADED)] * 23
                 + [HourStatus(HourEvidence(day.end), State.NO_DATA)], done=True)
    broken = Run(day, error="export failed: 401", done=True)
    waiting = Run(day)
    assert landed.line() == "20240130T00..20240130T23  landed  loaded=23 no_data=1"
    assert broken.line() == "20240130T00..20240130T23  PROBLEM  export failed: 401"
    assert summary_line([landed, broken, waiting]) == "backfill: days=3 landed=1 failed=1 running=1"
