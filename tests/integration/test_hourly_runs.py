"""The hourly schedule: each run exports the newest upload hour Amplitude has complete, and hourly
runs and daily backfills of the same hours hold every event once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from ampbq.tools.cli import main
from ampbq.naming import HOUR, HourRange, latest_complete_hour
from ampbq.tools.sandbox import GeneratedSource
from ampbq.tools.synthetic import Dataset
from integration_helpers import hour_rows, ledger_entry, wait_for

pytestmark = pytest.mark.integration
EVENTS_PER_HOUR = 4


def uuids_of(hours: HourRange) -> Counter:
    dataset = Dataset(hours.start, len(hours), EVENTS_PER_HOUR)
    return Counter(e["uuid"] for h in hours.hours() for e in dataset.events(h))


def table_uuids(bq, config, hours: HourRange) -> Counter:
    return Counter(r["uuid"] for h in hours.hours() for r in hour_rows(bq, config, h))


def wait_committed(bq, config, hour: datetime, after: datetime | None = None, timeout: float = 120) -> dict:
    """The hour's ledger entry once it is there (and committed after `after`, when given)."""
    def entry():
        found = ledger_entry(bq, config, hour)
        return found if found and (after is None or found["loaded_at"] > after) else None

    return wait_for(entry, f"hour {hour:%Y-%m-%dT%H} to be committed", timeout)


def test_the_hourly_message_lands_the_newest_complete_hour_and_status_shows_its_lag(stack, stub, bq, config):
    stub.source.current = GeneratedSource(EVENTS_PER_HOUR, parts_per_hour=2)
    while True:  # not across the turn of an hour, when the newest complete hour changes
        before = datetime.now(timezone.utc)
        stack.publish_run({"hour": "latest"})
        hour = latest_complete_hour(before, config.min_data_age_hours)
        if hour == latest_complete_hour(datetime.now(timezone.utc), config.min_data_age_hours):
            break
    entry = wait_committed(bq, config, hour)
    landed = datetime.now(timezone.utc)
    assert table_uuids(bq, config, HourRange(hour, hour)) == uuids_of(HourRange(hour, hour))
    assert entry["loaded"] == EVENTS_PER_HOUR
    lag = entry["loaded_at"] - (hour + HOUR)
    # Amplitude's data age, plus how far into the hour the run was published, plus the chain's own time.
    chain = (landed - before).total_seconds()
    print(f"hourly: hour={hour:%Y-%m-%dT%H} lag={lag} published_to_loaded_s={chain:.1f}")
    assert timedelta(hours=config.min_data_age_hours) <= lag <= timedelta(hours=config.min_data_age_hours + 1, minutes=5)
    result = CliRunner().invoke(main, ["status", "--start", f"{hour:%Y-%m-%dT%H}", "--json"], env=stack.client_env())
    shown = json.loads(result.stdout)["hours"][0]
    assert result.exit_code == 0 and shown["state"] == "loaded" and shown["lag_seconds"] == round(lag.total_seconds())
    table = CliRunner().invoke(main, ["status", "--start", f"{hour:%Y-%m-%dT%H}"], env=stack.client_env() | {"COLUMNS": "200"})
    hours_shown, minutes = divmod(int(lag.total_seconds() // 60), 60)
    assert f"{hours_shown}h{minutes:02d}m" in table.stdout


def test_hourly_runs_and_a_daily_backfill_of_the_same_day_hold_each_event_once(stack, stub, bq, config):
    stub.source.current = GeneratedSource(EVENTS_PER_HOUR, parts_per_hour=2)
    day = HourRange.day(date(2021, 9, 1))
    early, late = day.start + 5 * HOUR, day.start + 6 * HOUR
    for hour in (early, late):  # what the hourly schedule sent for these hours, as each became complete
        stack.publish_run({"start": f"{hour:%Y%m%dT%H}", "end": f"{hour:%Y%m%dT%H}"})
    first = {hour: wait_committed(bq, config, hour) for hour in (early, late)}
    stack.publish_run({"date": f"{day.start:%Y-%m-%d}"})  # then a daily backfill of the whole day
    wait_committed(bq, config, early, after=first[early]["loaded_at"])
    wait_committed(bq, config, late, after=first[late]["loaded_at"])
    wait_for(lambda: all(ledger_entry(bq, config, h) for h in day.hours()), "the whole day to be committed", 120)
    assert table_uuids(bq, config, day) == uuids_of(day)  # every event of the day, each once
    # The hourly run of an hour already in the backfill (a late or repeated schedule) changes nothing either.
    again = ledger_entry(bq, config, late)["loaded_at"]
    stack.publish_run({"start": f"{late:%Y%m%dT%H}", "end": f"{late:%Y%m%dT%H}"})
    wait_committed(bq, config, late, after=again)
    assert table_uuids(bq, config, day) == uuids_of(day)
    assert sum(ledger_entry(bq, config, h)["loaded"] for h in day.hours()) == 24 * EVENTS_PER_HOUR
