from datetime import date

import pytest

from ampbq import events
from ampbq.errors import PermanentError
from ampbq.naming import HourRange
from factory import pubsub_event, storage_event


def test_empty_message_means_the_utc_day_before_it_was_published():
    assert events.run_request(pubsub_event({})) == HourRange.day(date(2024, 1, 31))
    assert events.run_request(pubsub_event(b"")) == HourRange.day(date(2024, 1, 31))


def test_message_can_name_a_date_or_an_hour_range():
    assert events.run_request(pubsub_event({"date": "2023-05-06"})) == HourRange.day(date(2023, 5, 6))
    assert events.run_request(pubsub_event({"start": "20230506T05", "end": "20230506T07"})) == HourRange.parse("20230506T05", "20230506T07")


@pytest.mark.parametrize("published, min_age, hour", [
    ("2024-02-01T10:05:00Z", 2, "20240201T07"),  # 07:00-08:00 is complete from 10:00
    ("2024-02-01T09:59:59Z", 2, "20240201T06"),  # not 07 yet: it is complete one second later
    ("2024-02-01T01:05:00Z", 2, "20240131T22"),  # across midnight
    ("2024-02-01T10:05:00Z", 0, "20240201T09"),
])
def test_the_hourly_message_means_the_newest_hour_complete_when_it_was_published(published, min_age, hour):
    assert events.run_request(pubsub_event({"hour": "latest"}, time=published), min_age) == HourRange.parse(hour, hour)


@pytest.mark.parametrize("body", [b"not json", {"date": "2023-13-01"}, {"start": "20230506T05"}, [1],
                                  {"start": "20230506T07", "end": "20230506T05"}, {"hour": "20230506T05"}])
def test_bad_run_request_is_a_permanent_error(body):
    with pytest.raises(PermanentError):
        events.run_request(pubsub_event(body))


def test_storage_event_decodes_to_bucket_name_and_generation():
    event = storage_event("export/2024-01-31/05.json.gz", "1700000000000001", event_id="e-1")
    assert events.storage_object(event) == events.StorageObject("b", "export/2024-01-31/05.json.gz", 1700000000000001, "e-1")


def test_storage_event_without_generation_is_permanent():
    event = storage_event("x", None)
    with pytest.raises(PermanentError):
        events.storage_object(event)
