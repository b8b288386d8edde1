"""Builders of what the tests feed the code: Amplitude events and their NDJSON lines, hour objects
(gzip NDJSON, one member per part), zips in the Export API's layout, and the CloudEvents the
functions receive. Generated realistic data comes from ampbq.tools.synthetic; these build the
small, hand-written cases around it.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
import zipfile
from datetime import datetime, timezone
from os import PathLike
from typing import BinaryIO, Iterable

import orjson
from cloudevents.http import CloudEvent

from ampbq.tools.synthetic import PARTITION_IDS, Dataset, entry_name, gzip_lines

__all__ = ["utc", "timestamp", "event", "event_line", "ndjson", "gzip_lines", "hour_object", "generated_events",
           "export_entries", "zip_archive", "entry_name", "storage_event", "pubsub_event"]

APP = 203138  # the project id of generated data


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def timestamp(moment: datetime | str) -> str:
    """A time as Amplitude exports it (`2024-01-31 05:00:00.000000`); text is taken as it is."""
    return moment if isinstance(moment, str) else moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def event(uuid: str, upload: datetime | str | None = None, event_time: datetime | str | None = None, *,
          event_type: str | None = "t", **fields) -> dict:
    """An exported event with the fields the pipeline needs, in this order: `uuid`, `event_time`
    (default: `upload`), `server_upload_time` (`upload`), `event_type`, then `fields`.
    No `upload` leaves out both times; `event_type=None` leaves out the event type."""
    record: dict = {"uuid": uuid}
    if upload is not None:
        record["event_time"] = timestamp(upload if event_time is None else event_time)
        record["server_upload_time"] = timestamp(upload)
    if event_type is not None:
        record["event_type"] = event_type
    return record | fields


def event_line(uuid: str, upload: datetime | str | None = None, event_time: datetime | str | None = None, *,
               event_type: str | None = "t", **fields) -> bytes:
    """The event's NDJSON line as the export writes it (compact JSON, no newline)."""
    return orjson.dumps(event(uuid, upload, event_time, event_type=event_type, **fields))


def ndjson(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def hour_object(*parts: Iterable[bytes]) -> bytes:
    """An hour object as the export writes it: each part's lines its own gzip member, one after another."""
    return b"".join(gzip_lines(lines) for lines in parts)


def generated_events(count: int, hour: datetime = utc(2024, 6, 1)) -> list[dict]:
    """`count` realistic events of one upload hour, from the package's generator."""
    return list(Dataset(hour, hours=1, events_per_hour=count).events(hour))


def export_entries(hour: datetime, parts: Iterable[Iterable[bytes]], app: int = APP,
                   partitions: Iterable[int] = PARTITION_IDS) -> list[tuple[str, bytes]]:
    """The zip entries of one hour in Amplitude's layout, `{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`
    (H not zero-padded): one gzip NDJSON entry per part, named by the next partition id."""
    return [(entry_name(app, hour, partition), gzip_lines(lines)) for lines, partition in zip(parts, partitions)]


def zip_archive(entries: Iterable[tuple[str, bytes]], sink: BinaryIO | str | PathLike | None = None, mode: str = "w"):
    """A zip holding `entries` in order, stored (not deflated) as the Export API's are; a name may
    come twice, as in a real export. Written to `sink` (a path or a file, which may not seek;
    mode "a" adds to a zip there) and `sink` returned; with no sink, an io.BytesIO read from its start."""
    target = io.BytesIO() if sink is None else sink
    with zipfile.ZipFile(target, mode) as archive, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name")
        for name, data in entries:
            archive.writestr(name, data)
    if sink is None:
        target.seek(0)
    return target


def storage_event(name: str, generation: str | None = "7", *, bucket: str = "b", event_id: str | None = None,
                  source: str = "//storage", traceparent: str | None = None) -> CloudEvent:
    """The CloudEvent of a finalized Cloud Storage object; None leaves out the generation, the id
    (the CloudEvent then makes one up) or the trace header."""
    attributes = {"type": "google.cloud.storage.object.v1.finalized", "source": source}
    if event_id is not None:
        attributes["id"] = event_id
    if traceparent is not None:
        attributes["traceparent"] = traceparent
    data = {"bucket": bucket, "name": name}
    if generation is not None:
        data["generation"] = generation
    return CloudEvent(attributes, data)


def pubsub_event(body: dict | list | bytes, time: str = "2024-02-01T03:00:00Z") -> CloudEvent:
    """The CloudEvent of a Pub/Sub message published at `time`: `body` as JSON, or bytes as they are."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    data = {"message": {"data": base64.b64encode(raw).decode(), "messageId": "1"}}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "time": time}, data)
