"""The latest finished export of a range decides every hour in it, also the hours it no longer has."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner

from ampbq import naming
from ampbq.tools.cli import main
from ampbq.naming import HourRange
from ampbq.tools.sandbox import GeneratedSource
from integration_helpers import day_rows, manifest, wait_for

pytestmark = pytest.mark.integration
DAY = date(2022, 3, 9)
RANGE = {"start": f"{DAY:%Y%m%d}T00", "end": f"{DAY:%Y%m%d}T02"}


def statuses(stack) -> dict[str, tuple[str, int]]:
    result = CliRunner().invoke(main, ["status", "--start", f"{DAY}T00", "--end", f"{DAY}T02", "--json"],
                                env=stack.client_env(), catch_exceptions=False)
    assert result.stdout.startswith("{"), result.output
    return {h["hour"]: (h["state"], h["rows_in_bigquery"]) for h in json.loads(result.stdout)["hours"]}


def export(stack, stub, bucket, quiet_hours: frozenset[int]) -> None:
    before = manifest(bucket, HourRange.parse(RANGE["start"], RANGE["end"]))
    stub.source.current = GeneratedSource(events_per_hour=4, parts_per_hour=1, quiet_hours=quiet_hours)
    stack.publish_run(RANGE)
    wait_for(lambda: (lambda m: m and m != before)(manifest(bucket, HourRange.parse(RANGE["start"], RANGE["end"]))),
             "the range's new manifest")


def settled(stack, expected: dict[str, tuple[str, int]]):
    return wait_for(lambda: (lambda s: s if s == expected else None)(statuses(stack)),
                    f"the hours to read {expected}", timeout=90)


def test_an_hour_a_later_export_no_longer_has_ends_with_no_rows_and_reads_no_data(stack, stub, bucket, bq, config):
    h = [f"{DAY}T{n:02d}" for n in range(3)]
    export(stack, stub, bucket, frozenset())
    settled(stack, {h[0]: ("loaded", 4), h[1]: ("loaded", 4), h[2]: ("loaded", 4)})

    export(stack, stub, bucket, frozenset({1}))  # e.g. a user-privacy deletion emptied hour 01 at Amplitude
    settled(stack, {h[0]: ("loaded", 4), h[1]: ("no_data", 0), h[2]: ("loaded", 4)})
    emptied = bucket.get_blob(naming.hour_object_name(naming.parse_api_hour(f"{DAY:%Y%m%d}T01")))
    assert emptied.metadata["parts"] == "0"

    export(stack, stub, bucket, frozenset({0, 1, 2}))  # Amplitude answers 404 for the whole range now
    settled(stack, {h[0]: ("no_data", 0), h[1]: ("no_data", 0), h[2]: ("no_data", 0)})
    assert day_rows(bq, config, DAY)["n"] == 0
