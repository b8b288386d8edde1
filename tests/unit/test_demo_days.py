"""Which day `ampbq demo` runs by default: the newest one Amplitude has complete."""

from datetime import date, datetime, timezone

import pytest

from ampbq.tools.demo import latest_complete_day, refuse_incomplete


@pytest.mark.parametrize("now, age, day", [
    ("2026-12-01T00:00", 2, date(2026, 11, 29)),   # yesterday's last hour is final at 02:00
    ("2026-12-01T01:59", 2, date(2026, 11, 29)),
    ("2026-12-01T02:00", 2, date(2026, 11, 30)),
    ("2026-12-01T23:59", 2, date(2026, 11, 30)),
    ("2026-12-01T00:00", 0, date(2026, 11, 30)),
    ("2026-12-01T03:00", 27.5, date(2026, 11, 28)),
])
def test_the_default_day_is_the_newest_complete_one(now, age, day):
    moment = datetime.fromisoformat(now).replace(tzinfo=timezone.utc)
    assert latest_complete_day(age, moment) == day
    refuse_incomplete(day, age, moment)  # it is never refused


def test_a_day_not_complete_is_refused_with_when_it_will_be_and_what_to_pass():
    with pytest.raises(ValueError) as refused:
        refuse_incomplete(date(2026, 11, 30), 2, datetime(2026, 12, 1, 1, 30, tzinfo=timezone.utc))
    assert str(refused.value) == ("2026-11-30 is not complete at Amplitude until 2026-12-01T02:00Z "
                                  "(data is final 2 h after each hour); pass --date 2026-11-29 or earlier")
