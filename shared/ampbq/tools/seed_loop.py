"""The seed script's per-line loop, as a peer of the transform in `ampbq bench`.

Where it comes from: `process_line_json` in amplitude-bigquery.py of
github.com/MartijnSch/amplitude-bigquery (commit 145edeea9e9c51c5b16a20d8d91c5fe7f55a20d9),
MIT License, Copyright (c) 2018 Martijn Scheijbeler, and the loop in that script that writes what
it returns. Per line, that code:

- parses the line with the stdlib `json.loads`;
- fills a new dict of 42 columns: 41 copied from named fields, each through a helper that turns
  the string 'null' into None (`paying` through one that turns None into False; `$insert_id` and
  `$schema` lose their `$`), and `processed_time`, stamped with `str(datetime.utcnow())`;
- makes one dict per key of `event_properties`, `data`, `groups`, `group_properties` and
  `user_properties` (type, insert_id, key, value; True and False as the strings 'True' and 'False');
- writes the event with `json.dumps` to the events file and every property dict with
  `json.dumps` to a properties file, each line ending in CRLF.

This module re-implements that work; it does not copy the code. The same calls happen, with the
same libraries: one helper call per field, one dict per property, one
`json.dumps` per output line. The 42 one-line assignments are a loop over the same (column, key)
pairs, which costs about a microsecond a line against the loop's ~100 µs.

What porting it to Python 3 changed: `dict.iteritems()` is `dict.items()`, and the files are
opened in text mode with UTF-8 (the Python 2 script wrote `str` bytes). Not part of the loop, so
not measured: the script inflates each hour whole into memory and writes it to disk, then reads it
back whole with `readlines()` before this loop, and loads the files with schema autodetection and
`max_bad_records = 25`. Here the lines stream from `gzip.open`, so the peak RSS is the loop's own;
the script's would grow with the hour.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

# (column in the events file, key in the exported event), in the seed script's order.
FIELDS = (
    ("client_event_time", "client_event_time"), ("ip_address", "ip_address"), ("library", "library"), ("dma", "dma"),
    ("user_creation_time", "user_creation_time"), ("insert_id", "$insert_id"), ("schema", "$schema"),
    ("client_upload_time", "client_upload_time"), ("app", "app"), ("user_id", "user_id"), ("city", "city"),
    ("event_type", "event_type"), ("device_carrier", "device_carrier"), ("location_lat", "location_lat"),
    ("event_time", "event_time"), ("platform", "platform"), ("is_attribution_event", "is_attribution_event"),
    ("os_version", "os_version"), ("amplitude_id", "amplitude_id"), ("device_type", "device_type"),
    ("sample_rate", "sample_rate"), ("device_manufacturer", "device_manufacturer"), ("start_version", "start_version"),
    ("uuid", "uuid"), ("version_name", "version_name"), ("location_lng", "location_lng"),
    ("server_upload_time", "server_upload_time"), ("event_id", "event_id"), ("device_id", "device_id"),
    ("device_family", "device_family"), ("os_name", "os_name"), ("adid", "adid"),
    ("amplitude_event_type", "amplitude_event_type"), ("device_brand", "device_brand"), ("country", "country"),
    ("device_model", "device_model"), ("language", "language"), ("region", "region"), ("session_id", "session_id"),
    ("idfa", "idfa"),
)
# processed_time and paying are the other two of the 42, set apart as the script sets them.
PROPERTY_SCOPES = ("event_properties", "data", "groups", "group_properties", "user_properties")


def null_to_none(value):
    return None if value == "null" else value


def none_to_false(value):
    return False if value is None else value


def process_line(line: str) -> tuple[str, list[dict]]:
    """One exported line: the events file's line (JSON text) and the properties file's records."""
    parsed = json.loads(line)
    data: dict = {}
    properties: list[dict] = []
    if parsed:
        for column, key in FIELDS:
            data[column] = null_to_none(parsed[key])
        data["processed_time"] = "{d}".format(d=datetime.utcnow())
        data["paying"] = none_to_false(parsed["paying"])
        for scope in PROPERTY_SCOPES:
            for key, value in parsed[scope].items():
                value = "True" if value is True else value
                value = "False" if value is False else value
                properties.append({"property_type": scope, "insert_id": null_to_none(parsed["$insert_id"]),
                                   "key": null_to_none(key), "value": value})
    return json.dumps(data), properties


def properties_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".properties")


def seed_loop(src: Path, dst: Path) -> int:
    """The seed script's loop over one gzip hour: events to `dst`, properties beside it."""
    events = 0
    with gzip.open(src, "rt", encoding="utf-8") as lines, open(dst, "w", encoding="utf-8") as events_file, \
            open(properties_path(dst), "w", encoding="utf-8") as properties_file:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            event_line, property_lines = process_line(line)
            events_file.write(event_line + "\r\n")
            for record in property_lines:
                properties_file.write(json.dumps(record) + "\r\n")
            events += 1
    return events
