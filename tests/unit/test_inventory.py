"""ExportCoverage's judgement of export-run markers, on ObjectInfo values (no server needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ampbq.inventory import ExportCoverage
from ampbq.naming import HourRange
from ampbq.status import ObjectInfo

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
