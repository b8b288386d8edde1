"""ExportCoverage's judgement of export-run markers, on ObjectInfo values (no server needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ampbq.tools.inventory import ExportCoverage
from ampbq.naming import HourRange
from ampbq.tools.status import ObjectInfo

DAY = HourRange.parse("20220210T00", "20220210T23")
HOUR = datetime(2022, 2, 10, 5, tzinfo=timezone.utc)
MARKED = datetime(2022, 2, 11, 3, 10, tzinfo=timezone.utc)


def info(name: str, updated: datetime) -> ObjectInfo:
    return ObjectInfo(name, 1, 10, {}, updated)


def coverage(*manifest_times: datetime) -> ExportCoverage:
    found = ExportCoverage(bucket=None)
    found.attempts.append((DAY, info("export/raw/2022-02-10/20220210T00-20220210T23.split.json", MARKED)))
    for updated in manifest_times:
        found.manifests.append((DAY, info("export/raw/2022-02-10/20220210T00-20220210T23.manifest.json", updated), frozenset()))
    return found


def test_a_recent_marker_means_the_run_is_still_going():
    assert coverage().exporting(HOUR, MARKED + timedelta(hours=1))
    assert not coverage().exporting(HOUR + timedelta(days=1), MARKED + timedelta(hours=1))  # not its range


def test_a_marker_older_than_the_platforms_retries_means_nothing():
    assert not coverage().exporting(HOUR, MARKED + timedelta(hours=25))


def test_a_later_finished_export_of_the_range_outranks_a_marker():
    assert coverage(MARKED - timedelta(days=1)).exporting(HOUR, MARKED + timedelta(hours=1))
    assert not coverage(MARKED + timedelta(minutes=5)).exporting(HOUR, MARKED + timedelta(hours=1))


MANIFEST = "export/raw/2022-02-10/20220210T00-20220210T23.manifest.json"


def refusing(*entries: dict, updated: datetime = MARKED) -> ExportCoverage:
    found = ExportCoverage(bucket=None)
    found.manifests.append((DAY, info(MANIFEST, updated), frozenset({HOUR})))
    found.refusals.append((DAY, info(MANIFEST, updated), list(entries)))
    return found


def entry(name: str, hour: str | None, data: bool = True) -> dict:
    return {"name": name, "size": 52, "hour": hour, "reason": f"entry {name!r} is odd", "data": data}


def test_a_refused_entry_with_data_fails_the_hour_it_names_only():
    found = refusing(entry("evil/203138_2022-02-10_5#1.json.gz", "2022-02-10T05"))
    assert found.refused(HOUR) and "'evil/203138_2022-02-10_5#1.json.gz' (52 bytes)" in found.refused(HOUR)[0]
    assert found.refused(HOUR + timedelta(hours=1)) == ()


def test_a_refused_entry_whose_name_tells_no_hour_fails_every_hour_of_its_range():
    found = refusing(entry("203138/notes.txt", None))
    assert all(found.refused(hour) for hour in DAY.hours())
    assert found.refused(HOUR + timedelta(days=1)) == ()


def test_an_entry_for_an_hour_outside_its_range_fails_that_hour():
    later = HOUR + timedelta(days=2)
    found = refusing(entry("203138/203138_2022-02-12_5#1.json.gz", f"{later:%Y-%m-%dT%H}"))
    assert found.refused(later) and found.refused(HOUR) == ()


def test_a_later_export_of_the_hour_decides_again():
    found = refusing(entry("203138/notes.txt", None))
    newer = "export/raw/2022-02-10/20220210T05-20220210T05.manifest.json"
    found.manifests.append((HourRange(HOUR, HOUR), info(newer, MARKED + timedelta(hours=1)), frozenset({HOUR})))
    assert found.refused(HOUR) == () and found.refused(HOUR + timedelta(hours=1))
