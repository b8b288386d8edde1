"""A generator of realistic Amplitude export data: the project's own fixtures.

Events follow the shapes of real exports (see ../shared/samples/ when present): two eras of
fields (2020 exports lack `$insert_key`, `data_type`, `global_user_properties`, `partner_id`,
`plan`, `source_id`), nulls where real exports have them, the type drift seen across years
(`$schema` int or null, `amplitude_attribution_ids` null or an array, `os_version` as text,
`paying`/`is_attribution_event` null or bool, `plan` empty or filled), nested properties with
arrays, numbers, booleans and non-ASCII text, and late events whose `event_time` is days before
the upload hour. Archives use Amplitude's layout: `{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`,
unpadded hours and opaque partition ids, several parts per hour.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import uuid as uuidlib
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import orjson

from ..naming import HOUR, HourRange

PARTITION_IDS = (627, 70, 3, 1021, 12, 455)
EVENT_TYPES = ("session_start", "session_end", "page_view", "button_clicked", "purchase", "Property Drop Purchased",
               "segment.segment.definition.permission_paywall.load", "user_duplicated", "[Amplitude] Start Session")
LIBRARIES = ("amplitude-js/5.2.2", "amplitude-ts/2.16.1", "amplitude-flutter/4.3.2_amplitude-swift/1.13.6", "http/2.0",
             "segment", "google_ads")
PLACES = (("Canada", "Newfoundland and Labrador", "St. John's"), ("Philippines", "Province of Cavite", "Dasmariñas"),
          ("Germany", "Bayern", "München"), ("United States", "California", "San José"), ("Japan", "Tokyo", "東京"))
DEVICES = (("Web", "Chrome Mobile", "107", "Android", "Android"), ("iOS", "ios", "18.5", "Apple iPhone", "iPhone"),
           ("Web", "Safari", "16.1", "Mac OS", "Mac OS"), ("Android", "android", "14", "Samsung Galaxy", "SM-G991B"))


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True)
class Dataset:
    """A deterministic day (or range) of generated events: same arguments, same bytes."""

    start: datetime
    hours: int = 24
    events_per_hour: int = 100
    parts_per_hour: int = 2
    app: int = 203138
    seed: int = 7
    # Events only in every `hour_step`-th hour of the range (the others have none): a sparse day,
    # for tests of how a range is requested and split, that does not load every hour.
    hour_step: int = 1

    @classmethod
    def for_day(cls, day: date, **kwargs) -> "Dataset":
        return cls(datetime(day.year, day.month, day.day, tzinfo=timezone.utc), **kwargs)

    @property
    def range(self) -> HourRange:
        return HourRange(self.start, self.start + (self.hours - 1) * HOUR)

    def events(self, hour: datetime) -> Iterator[dict]:
        if (hour - self.start) // HOUR % self.hour_step:
            return
        rng = random.Random(f"{self.seed}-{self.app}-{hour:%Y%m%d%H}")
        for index in range(self.events_per_hour):
            yield make_event(rng, self.app, hour, index)

    def lines(self, hour: datetime) -> Iterator[bytes]:
        for event in self.events(hour):
            yield orjson.dumps(event)

    def hour_parts(self, hour: datetime) -> list[tuple[str, list[bytes]]]:
        """The hour's lines split over `parts_per_hour` files, with Amplitude's entry names."""
        lines = list(self.lines(hour))
        parts = max(1, self.parts_per_hour)
        names = [entry_name(self.app, hour, PARTITION_IDS[i % len(PARTITION_IDS)] + 1000 * (i // len(PARTITION_IDS)))
                 for i in range(parts)]
        return [(names[i], lines[i::parts]) for i in range(parts) if lines[i::parts]]


def entry_name(app: int, hour: datetime, partition: int) -> str:
    return f"{app}/{app}_{hour:%Y-%m-%d}_{hour.hour}#{partition}.json.gz"


def make_event(rng: random.Random, app: int, hour: datetime, index: int) -> dict:
    modern = hour.year >= 2021 or rng.random() < 0.5
    upload = hour + timedelta(seconds=rng.uniform(0, 3599.999))
    late = rng.random() < 0.1
    event_moment = upload - (timedelta(days=rng.randint(1, 3), seconds=rng.uniform(0, 86399)) if late
                             else timedelta(seconds=rng.uniform(0.5, 30)))
    platform, os_name, os_version, family, model = rng.choice(DEVICES)
    country, region, city = rng.choice(PLACES)
    user = rng.randint(1, 5000)
    event_type = rng.choice(EVENT_TYPES)
    device_id = f"{uuidlib.UUID(int=rng.getrandbits(128))}R"
    event = {
        "$insert_id": f"ajs-{rng.getrandbits(64):016x}:{index}" if rng.random() < 0.5 else str(uuidlib.UUID(int=rng.getrandbits(128))),
        "$schema": rng.choice((12, 13, None)),
        "adid": None,
        "amplitude_attribution_ids": [f"{rng.getrandbits(128):032x}"] if rng.random() < 0.2 else None,
        "amplitude_event_type": None,
        "amplitude_id": rng.randint(10**11, 2 * 10**12),
        "app": app,
        "city": city,
        "client_event_time": _ts(event_moment - timedelta(milliseconds=rng.randint(0, 3000))),
        "client_upload_time": _ts(upload - timedelta(milliseconds=rng.randint(5, 900))),
        "country": country,
        "data": {"group_ids": {"3124": [rng.randint(10**9, 10**10)]} if rng.random() < 0.3 else {}, "group_first_event": {},
                 "path": rng.choice(("/2/httpapi", "/batch"))} | ({"first_event": True} if rng.random() < 0.05 else {}),
        "device_brand": None,
        "device_carrier": rng.choice((None, "Globe Telecom", "T-Mobile")),
        "device_family": family,
        "device_id": device_id,
        "device_manufacturer": None,
        "device_model": model,
        "device_type": rng.choice((family, None)),
        "dma": rng.choice((None, "SAN FRANCISCO-OAKLAND-SAN JOSE, CA")),
        "event_id": rng.randint(1, 5000),
        "event_properties": _event_properties(rng, event_type),
        "event_time": _ts(event_moment),
        "event_type": event_type,
        "group_properties": {"[Segment] Group": {f"{uuidlib.UUID(int=rng.getrandbits(128))}": {}}} if rng.random() < 0.3 else {},
        "groups": {"[Segment] Group": [str(uuidlib.UUID(int=rng.getrandbits(128)))]} if rng.random() < 0.3 else {},
        "idfa": None,
        "ip_address": f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0",
        "is_attribution_event": rng.choice((False, None)),
        "language": rng.choice(("English", "German", "Japanese", None)),
        "library": rng.choice(LIBRARIES),
        "location_lat": round(rng.uniform(-60, 60), 6) if rng.random() < 0.1 else None,
        "location_lng": round(rng.uniform(-170, 170), 6) if rng.random() < 0.1 else None,
        "os_name": os_name,
        "os_version": os_version,
        "paying": rng.choice((None, None, True, False)),
        "platform": platform,
        "processed_time": _ts(upload + timedelta(seconds=rng.uniform(1, 5))),
        "region": region,
        "sample_rate": None,
        "server_received_time": _ts(upload - timedelta(milliseconds=rng.randint(1, 20))),
        "server_upload_time": _ts(upload),
        "session_id": rng.choice((-1, int(event_moment.timestamp() * 1000) - rng.randint(0, 10**6))),
        "start_version": rng.choice((None, "1.0.3")),
        "user_creation_time": _ts(event_moment - timedelta(days=rng.randint(1, 900))) if rng.random() < 0.6 else None,
        "user_id": str(user) if rng.random() < 0.8 else None,
        "user_properties": _user_properties(rng, user),
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128))),
        "version_name": rng.choice((None, "2.4.1", "3.0.0-beta")),
    }
    if modern:
        event.update({
            "$insert_key": f"{rng.getrandbits(136):034x}#{rng.randint(1, 999)}" if rng.random() < 0.7 else None,
            "data_type": "event",
            "global_user_properties": rng.choice(({}, None, {"plan": "pro", "experiments": ["a", "b"]})),
            "partner_id": None,
            "plan": {"branch": "main", "source": "web", "version": str(rng.randint(1, 40))} if rng.random() < 0.3 else {},
            "source_id": None,
        })
    # Amplitude writes an event's keys sorted ("$insert_id", "$insert_key", "$schema", "adid", ...),
    # as every sample taken straight from an export shows.
    return dict(sorted(event.items()))


def _event_properties(rng: random.Random, event_type: str) -> dict:
    props = {
        "eventTypeId": event_type,
        "event_source": rng.choice(("new-brwr-frontend", "checkout", "ios-app")),
        "timestamp": f"{datetime(2024, 1, 1) + timedelta(seconds=rng.randint(0, 10**7)):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z",
        "split": [{"account": str(uuidlib.UUID(int=rng.getrandbits(128)))}],
        "value": rng.choice((rng.randint(0, 10**6), round(rng.uniform(0, 999), 2), "größe", True, None)),
        "items": [{"sku": f"SKU-{rng.randint(1, 999)}", "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 200), 2)}
                  for _ in range(rng.randint(0, 2))],
        "page": {"path": rng.choice(("/", "/pricing", "/docs/ünïcödé")), "referrer": "https://example.com/?q=a%20b",
                 "title": "Welcome — “quoted”"},
    }
    for i in range(rng.randint(0, 3)):
        props[f"custom_{i}"] = rng.choice((f"v{rng.randint(0, 99)}", rng.randint(-5, 10**9), rng.random(), False))
    return props


def _user_properties(rng: random.Random, user: int) -> dict:
    props = {
        "organizationId": str(uuidlib.UUID(int=rng.getrandbits(128))),
        "organizationPlanType": rng.choice(("FREE", "PRO", "ENTERPRISE")),
        "role": rng.choice(("Member", "Admin")),
        "email_verified": rng.choice((True, False)),
        "utm_source": rng.choice(("customer.io", "google", None)),
        "referrer": "https://savii.io/",
        "net_salary": 0,
        "cohorts": [rng.randint(1, 50) for _ in range(rng.randint(0, 5))],
        "user_id": str(user),
        "[Segment] Group": str(uuidlib.UUID(int=rng.getrandbits(128))),
    }
    for i in range(rng.randint(0, 4)):
        props[f"trait_{i}"] = rng.choice((f"t{rng.randint(0, 999)}", rng.randint(0, 10**6), None, ["a", "b"], {"k": i}))
    return props


def gzip_lines(lines: Iterable[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines), compresslevel=6)


def write_export_zip(dataset: Dataset, sink: BinaryIO, hours: HourRange | None = None) -> int:
    """Write the Export API zip for `hours` (default: the whole dataset); return the number of events."""
    count = 0
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for hour in dataset.range.hours():
            if hours is not None and hour not in hours:
                continue
            for name, lines in dataset.hour_parts(hour):
                archive.writestr(name, gzip_lines(lines))
                count += len(lines)
    return count


def write_native_export(dataset: Dataset, directory: Path, hours: HourRange | None = None) -> int:
    """Write the part files Amplitude's own cloud-storage export would write for `hours` (default:
    the whole dataset) under `directory`, as `{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz` (the layout
    under the folder set in Amplitude); return the number of events."""
    count = 0
    for hour in dataset.range.hours():
        if hours is not None and hour not in hours:
            continue
        for name, lines in dataset.hour_parts(hour):
            path = Path(directory) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip_lines(lines))
            count += len(lines)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ampbq.tools.synthetic", description=(
        "Write generated events as Amplitude's own cloud-storage export writes them, for "
        "`ampbq demo --native-export DIR`."))
    commands = parser.add_subparsers(dest="command", required=True)
    native = commands.add_parser("native-export", help="part files {app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz under DIR")
    native.add_argument("directory", type=Path, metavar="DIR")
    native.add_argument("--date", type=date.fromisoformat, default=date(2024, 1, 31), help="upload day (default: 2024-01-31)")
    native.add_argument("--hours", type=int, default=24, help="hours of the day, from 00 (default: 24)")
    native.add_argument("--events-per-hour", type=int, default=100, help="default: 100")
    native.add_argument("--parts-per-hour", type=int, default=3, help="#n files per hour (default: 3)")
    args = parser.parse_args(argv)
    if not 1 <= args.hours <= 24:
        parser.error("--hours must be 1 to 24")
    dataset = Dataset.for_day(args.date, hours=args.hours, events_per_hour=args.events_per_hour, parts_per_hour=args.parts_per_hour)
    events = write_native_export(dataset, args.directory)
    print(f"native export: dir={args.directory} date={args.date} hours={args.hours} events={events}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
