"""A part too big for one transform invocation is split by the export, at line ends, into
pieces that are units of their own; the hour still lands exactly once."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ampbq import hour_parts, naming
from ampbq.naming import HourRange
from ampbq.tools.stub import DatasetSource
from ampbq.tools.synthetic import Dataset
from integration_helpers import function_log, hour_rows, manifest, wait_for, wait_loaded

pytestmark = pytest.mark.integration
DAY = date(2022, 8, 24)
UNIT_BYTES = 64 << 10
DATASET = Dataset.for_day(DAY, hours=1, events_per_hour=6000, parts_per_hour=2)


@pytest.fixture(scope="module")
def split_hour(stack, stub, bucket, bq, config):
    """The session stack's export and transform with units of 64 KiB; as before afterwards."""
    settings = {"AMPBQ_TRANSFORM_UNIT_BYTES": str(UNIT_BYTES)}
    for function in ("export", "transform"):
        stack.kill(function)
        stack.restart(function, settings)
    try:
        stub.source.current = DatasetSource(DATASET)
        stack.publish_run({"date": f"{DAY}"})
        wait_for(lambda: manifest(bucket, HourRange.day(DAY)), f"the export manifest of {DAY}", timeout=90)
        hour = DATASET.range.start
        source = bucket.get_blob(naming.hour_object_name(hour))
        yield hour, source, wait_loaded(bq, config, hour, source.generation, timeout=120)
    finally:
        stub.source.current = None
        for function in ("export", "transform"):
            stack.kill(function)
            stack.restart(function)


def test_a_part_over_the_unit_size_is_split_at_line_ends_and_each_piece_is_a_unit(split_hour, stack, bucket, bq, config):
    hour, source, entry = split_hour
    expected = sorted(e["uuid"] for e in DATASET.events(hour))
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == expected
    assert entry["events"] == entry["loaded"] == len(expected) and entry["rejected"] == 0
    names = [name for name, _ in DATASET.hour_parts(hour)]
    pieces = hour_parts.decode(source.metadata, source.size)
    assert len(pieces) > len(names)  # both parts were over the unit size
    assert source.metadata["parts"] == str(len(names))
    starts: dict[str, list[int]] = {}
    for piece in pieces:
        name, _, line = piece.label.partition(" from line ")
        starts.setdefault(name, []).append(int(line))
    assert set(starts) == set(names)
    assert all(lines[0] == 1 and lines == sorted(set(lines)) for lines in starts.values())
    assert sum(len(lines) for lines in starts.values()) == len(pieces)
    # Each piece is a unit of its own.
    tasks = [json.loads(blob.download_as_bytes())
             for blob in bucket.list_blobs(prefix=naming.unit_prefix(naming.EXPORT_PREFIX, hour))
             if json.loads(blob.download_as_bytes())["generation"] == source.generation]
    assert sorted(label for t in tasks for label, _, _ in t["parts"]) == sorted(p.label for p in pieces)
    assert all(len(t["parts"]) == 1 for t in tasks)
    written = [line for line in function_log(stack, "export") if line["message"] == "hour object written"
               and line.get("object") == source.name]
    assert written and written[-1]["pieces"] == len(pieces)
