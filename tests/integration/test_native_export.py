"""Amplitude's own cloud-storage export as the source: parts written in any order, some twice,
then an hour sent again with other parts, land exactly once per upload hour through the real
export (native_export mode), transform and load."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest
from click.testing import CliRunner

from ampbq import gcs, naming
from ampbq.naming import HourRange
from ampbq.tools.cli import main
from ampbq.tools.demo import drop_order
from ampbq.tools.synthetic import Dataset, gzip_lines
from integration_helpers import hour_rows, ledger_entry, wait_for

pytestmark = pytest.mark.integration
DAY = date(2021, 6, 14)
NATIVE_BUCKET = "it-amplitude-native-export"
PREFIX = "events"
QUIET_SECONDS = 2
DATASET = Dataset.for_day(DAY, hours=3, events_per_hour=5, parts_per_hour=3)
RANGE = DATASET.range
MESSAGE = {"start": f"{RANGE.start:%Y%m%dT%H}", "end": f"{RANGE.end:%Y%m%dT%H}"}


@pytest.fixture(scope="module")
def native(stack):
    """The session stack's export function in native_export mode, reading a bucket that stands
    for Amplitude's; back in its usual mode afterwards, whatever happens."""
    stack.create_bucket(NATIVE_BUCKET, versioned=False)
    stack.kill("export")
    stack.restart("export", {"AMPBQ_SOURCE": "native_export", "AMPBQ_NATIVE_BUCKET": NATIVE_BUCKET,
                             "AMPBQ_NATIVE_PREFIX": PREFIX, "AMPBQ_NATIVE_QUIET_SECONDS": str(QUIET_SECONDS)})
    try:
        yield gcs.client(stack.settings.project).bucket(NATIVE_BUCKET)
    finally:
        stack.kill("export")
        stack.restart("export")


def drop(source, parts: list[tuple[str, list[bytes]]]) -> None:
    for name, lines in parts:
        source.blob(f"{PREFIX}/{name}").upload_from_string(gzip_lines(lines), content_type="application/gzip")


def landed(stack, bq, config, expected: dict, previous: dict | None = None, timeout: float = 60) -> dict:
    """Publish scans (as the schedule would, sped up) until every hour's ledger entry is for a
    hour object other than `previous` had and its rows are `expected`'s uuids."""
    last = [0.0]

    def done():
        if time.monotonic() - last[0] > 1:
            stack.publish_run(MESSAGE)
            last[0] = time.monotonic()
        entries = {}
        for hour, uuids in expected.items():
            entry = ledger_entry(bq, config, hour)
            if entry is None or (previous and entry["source_generation"] == previous[hour]["source_generation"]):
                return None
            if sorted(r["uuid"] for r in hour_rows(bq, config, hour)) != sorted(uuids):
                return None
            entries[hour] = entry
        return entries

    return wait_for(done, "the native parts to land", timeout, interval=0.5)


def statuses(stack) -> dict[str, tuple[str, int]]:
    result = CliRunner().invoke(main, ["status", "--start", f"{DAY}T00", "--end", f"{DAY}T02", "--json"],
                                env=stack.client_env(), catch_exceptions=False)
    return {h["hour"]: (h["state"], h["rows_in_bigquery"]) for h in json.loads(result.stdout)["hours"]}


def test_parts_out_of_order_and_twice_then_an_hour_sent_again_land_exactly_once(stack, native, bucket, bq, config):
    parts = [part for hour in RANGE.hours() for part in DATASET.hour_parts(hour)]
    drop(native, drop_order(parts))  # shuffled, every third part twice
    expected = {hour: [e["uuid"] for e in DATASET.events(hour)] for hour in RANGE.hours()}
    first = landed(stack, bq, config, expected)
    assert {hour: (e["events"], e["loaded"]) for hour, e in first.items()} == {hour: (5, 5) for hour in RANGE.hours()}
    assert statuses(stack) == {f"{hour:%Y-%m-%dT%H}": ("loaded", 5) for hour in RANGE.hours()}

    # Amplitude sends hour 01 again, after it was loaded: two parts under names it used before
    # (#627, #70) with other events; the earlier delivery's third part (#3) stays in the bucket
    # and must not come back.
    again = naming.parse_api_hour(f"{DAY:%Y%m%d}T01")
    resent = Dataset.for_day(DAY, hours=3, events_per_hour=4, parts_per_hour=2, seed=8)
    drop(native, resent.hour_parts(again))
    expected_again = {again: [e["uuid"] for e in resent.events(again)]}
    second = landed(stack, bq, config, expected_again, previous=first)
    assert (second[again]["events"], second[again]["loaded"]) == (4, 4)
    hour_object = bucket.get_blob(naming.hour_object_name(again))
    assert hour_object.metadata["parts"] == "2"

    # Nothing new: another look writes nothing, and the other hours kept their first load.
    asked = time.time()
    stack.publish_run(MESSAGE)
    name = naming.manifest_name(HourRange.parse(MESSAGE["start"], MESSAGE["end"]))
    wait_for(lambda: (lambda b: b is not None and b.updated.timestamp() > asked)(bucket.get_blob(name)), "the scan's manifest")
    manifest = gcs.read_json(bucket, name)
    assert manifest["written"] == [] and manifest["superseded"] == [f"{PREFIX}/203138/203138_{DAY}_1#3.json.gz"]
    for hour in RANGE.hours():
        entry = ledger_entry(bq, config, hour)
        assert entry["source_generation"] == (second if hour == again else first)[hour]["source_generation"]
    assert statuses(stack) == {f"{hour:%Y-%m-%dT%H}": ("loaded", 4 if hour == again else 5) for hour in RANGE.hours()}
