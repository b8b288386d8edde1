from datetime import date

import pytest

from ampbq import naming
from ampbq.naming import HourRange
from factory import utc


def test_zip_entry_with_unpadded_hour_parses_to_that_hour():
    entry = naming.parse_zip_entry("203138/203138_2020-11-24_9#627.json.gz")
    assert (entry.project_id, entry.hour, entry.partition) == ("203138", utc(2020, 11, 24, 9), "627")


def test_zip_entry_hours_are_parsed_not_sorted_as_strings():
    names = ["1/1_2020-11-24_10#70.json.gz", "1/1_2020-11-24_9#627.json.gz"]
    assert sorted(naming.parse_zip_entry(n).hour.hour for n in names) == [9, 10]


@pytest.mark.parametrize("name", [
    "../203138_2020-11-24_9#627.json.gz",
    "/abs/203138_2020-11-24_9#627.json.gz",
    "203138/../203138_2020-11-24_9#627.json.gz",
    "203138/999_2020-11-24_9#627.json.gz",
    "203138/203138_2020-11-24_24#1.json.gz",
    "203138/203138_2020-11-24_9.json.gz",
    "203138/203138_2020-11-24_9#1.json",
])
def test_zip_entry_with_unexpected_name_is_refused(name):
    with pytest.raises(ValueError):
        naming.parse_zip_entry(name)


def test_hour_object_names_round_trip():
    hour = utc(2024, 1, 31, 5)
    assert naming.hour_object_name(hour) == "export/2024-01-31/05.json.gz"
    assert naming.parse_hour_object(naming.hour_object_name(hour)) == hour
    assert naming.parse_import_object(naming.import_object_name(hour)) == hour


@pytest.mark.parametrize("name", [
    "export/raw/2024-01-31/20240131T00-20240131T23.zip",
    "import/2024-01-31/05.json",
    "rejects/2024-01-31/05.json",
    "export/2024-01-31/05.json.gz.partial",
    "export/2024-01-31/24.json.gz",
])
def test_transform_does_not_claim_other_objects(name):
    assert naming.parse_hour_object(name) is None


@pytest.mark.parametrize("name", ["import/2024-01-31/05.json.partial", "export/2024-01-31/05.json.gz",
                                  "rejects/2024-01-31/05.json", "import/2024-01-31/05.rejects.json"])
def test_load_does_not_claim_other_objects(name):
    assert naming.parse_import_object(name) is None


def test_day_range_covers_24_inclusive_hours():
    day = HourRange.day(date(2024, 2, 29))
    assert len(day) == 24 and str(day) == "20240229T00..20240229T23"
    assert list(day.hours())[-1] == utc(2024, 2, 29, 23)


def test_halves_split_a_range_without_gap_or_overlap():
    first, second = HourRange.day(date(2024, 1, 1)).halves()
    assert (len(first), len(second)) == (12, 12)
    assert second.start - first.end == naming.HOUR
    odd_first, odd_second = HourRange.parse("20240101T00", "20240101T02").halves()
    assert len(odd_first) + len(odd_second) == 3


def test_api_hour_rejects_malformed_text():
    with pytest.raises(ValueError):
        naming.parse_api_hour("2024-01-01T05")


def test_job_ids_are_deterministic_and_attempts_differ():
    hour = utc(2024, 1, 31, 5)
    assert naming.load_job_id(hour, 17) == naming.load_job_id(hour, 17) == "ampbq_load_2024013105_17"
    assert naming.load_job_id(hour, 17, 1) != naming.load_job_id(hour, 17)


def test_raw_archive_and_manifest_names_parse_back_to_their_range():
    hours = HourRange.parse("20240131T00", "20240131T11")
    assert naming.parse_raw_name(naming.raw_zip_name(hours)) == (hours, "zip")
    assert naming.parse_raw_name(naming.manifest_name(hours)) == (hours, "manifest.json")
    assert naming.parse_raw_name(naming.attempt_name(hours, "split")) == (hours, "split.json")
    assert naming.parse_raw_name(naming.attempt_name(hours, "started")) == (hours, "started.json")
    assert naming.parse_raw_name("export/2024-01-31/05.json.gz") is None


def test_dead_letter_names_parse_back_to_their_subject():
    name = naming.dead_letter_name("load", "import/2024-01-31/05.json#17")
    assert naming.parse_object_dead_letter(name) == ("load", "import/2024-01-31/05.json", 17)
    day = HourRange.day(date(2024, 1, 31))
    assert naming.parse_export_dead_letter(naming.dead_letter_name("export", str(day))) == day
    assert naming.parse_export_dead_letter(name) is None


def test_ranges_overlap_only_when_they_share_an_hour():
    day = HourRange.day(date(2024, 1, 31))
    assert day.overlaps(HourRange.parse("20240131T23", "20240201T02"))
    assert not day.overlaps(HourRange.parse("20240201T00", "20240201T02"))
