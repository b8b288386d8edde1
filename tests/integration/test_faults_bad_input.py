"""Bad input never takes down good data: each bad line is quarantined with its reason and line number."""

from __future__ import annotations

import json

import orjson
import pytest

from ampbq import naming
from factory import event_line, gzip_lines, utc
from integration_helpers import hour_rows, wait_loaded

pytestmark = pytest.mark.integration


def rejects_of(bucket, hour) -> list[dict]:
    return [json.loads(line) for line in bucket.blob(naming.rejects_object_name(hour)).download_as_bytes().splitlines()]


def test_every_kind_of_bad_line_is_quarantined_and_the_good_lines_load(bucket, bq, config):
    hour = utc(2021, 7, 1, 9)
    good = lambda uuid, **extra: event_line(uuid, hour, **extra)  # noqa: E731
    lines = [
        good("g1"),
        b"\xff\xfe not utf-8",                                                          # 2
        good("g2", event_properties={"pad": "x" * (9 << 20)}),                          # 3: a line over 8 MiB
        b'["an", "array"]',                                                             # 4
        orjson.dumps({"event_time": "2021-07-01 09:00:00.000000", "server_upload_time": "2021-07-01 09:00:00.000000"}),  # 5
        orjson.dumps({"uuid": "no-times"}),                                             # 6
        good("g3", client_event_time="2021-07-01T11:00:00+02:00"),                      # 7: ISO with offset is fine
        good("epoch", client_event_time="1625130000"),                                  # 8
        good("overflow", amplitude_id=2**63),                                           # 9
        b'{"uuid": "cut',                                                               # 10
        good("g4", brand_new_field={"kept": True}),                                     # 11: unknown field, kept
        good("dup-top")[:-1] + b',"event_type":"again"}',                              # 12: a repeated key
        good("dup-nested", event_properties={"plan": "a"}).replace(b'{"plan"', b'{"plan":null,"plan"'),  # 13
        good("g5", event_properties={"a:b": 1}).replace(b'"a:b"', b'"a\\u003ab"'),    # 14: escaped colon, no repeat
    ]
    generation = bucket.blob(naming.hour_object_name(hour))
    generation.upload_from_string(gzip_lines(lines))
    entry = wait_loaded(bq, config, hour, generation.generation)
    rows = hour_rows(bq, config, hour)
    assert [r["uuid"] for r in rows] == ["g1", "g3", "g4", "g5"]
    assert rows[3]["event_properties"] == {"a:b": 1}
    assert rows[1]["client_event_time"] == utc(2021, 7, 1, 9)
    assert rows[2]["_extra"] == {"brand_new_field": {"kept": True}}
    rejects = rejects_of(bucket, hour)
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [
        (2, "line is not valid UTF-8"),
        (3, f"line is {len(lines[2])} bytes, over the {8 << 20} byte limit"),
        (4, "line is JSON but not an object (list)"),
        (5, "field 'uuid' is missing or empty"),
        (6, "field 'event_time' is missing or empty"),
        (8, "field 'client_event_time'"),
        (9, "field 'amplitude_id'"),
        (10, "line is not valid JSON"),
        (12, "line is JSON but its object repeats the key 'event_type'"),
        (13, "line is JSON but its object repeats the key 'plan'"),
    ]
    assert (entry["events"], entry["loaded"], entry["rejected"]) == (14, 4, 10)


def test_a_truncated_hour_keeps_its_readable_lines_and_records_the_damage(bucket, bq, config):
    hour = utc(2021, 7, 1, 10)
    whole = gzip_lines(event_line(f"t{i}", hour) for i in range(3000))
    blob = bucket.blob(naming.hour_object_name(hour))
    blob.upload_from_string(whole[: len(whole) * 2 // 3])
    entry = wait_loaded(bq, config, hour, blob.generation)
    assert 0 < entry["loaded"] < 3000 and entry["rejected"] == 1
    assert entry["loaded"] + entry["rejected"] == entry["events"]
    assert "damaged" in rejects_of(bucket, hour)[-1]["reason"]


def test_an_hour_object_that_is_not_gzip_is_quarantined_whole(bucket, bq, config):
    hour = utc(2021, 7, 1, 11)
    blob = bucket.blob(naming.hour_object_name(hour))
    blob.upload_from_string(b"this is not gzip at all\n")
    entry = wait_loaded(bq, config, hour, blob.generation)
    assert (entry["events"], entry["loaded"], entry["rejected"]) == (1, 0, 1)
