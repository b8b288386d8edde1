"""`ampbq bench`: how fast and how lean the transform is, measured beside what bounds it.

On one generated upload hour (`ampbq.tools.synthetic`, every field populated as in the real samples,
gzip level 6, cached under .cache/bench), these variants run, each in a fresh process so that
its peak RSS (VmHWM) is its own:

  bare       ISA-L gunzip -> parse -> serialize -> write plain NDJSON, no shaping: the floor for
             any transform built on these libraries; once with orjson, once with msgspec (the
             transform's fast path decodes and encodes with msgspec), and the faster one counts
  transform  ampbq.transform.transform_stream on local files: the code the transform function runs
  naive      stdlib gzip + json + datetime.strptime per timestamp field, as typical scripts do it
  seed       the per-line loop of the script ampbq grew from (ampbq.tools.seed_loop): stdlib json,
             42 columns copied field by field, one dict per property, two output files

It also writes the import object gzip-compressed (to choose the import format on numbers), runs
the transform on copies of the hour where every Nth event has a drifted type (--drift) and on
several hour sizes (peak RSS must stay flat as the hour grows), and on request
unpacks a large export zip through the GCS emulator (--export-gb) and runs the whole demo day
(--e2e). Throughput is in MB = 10^6 bytes of uncompressed NDJSON per second; RSS in MB = 10^6
bytes. The last line is

  bench: events=N transform_vs_bare=X.XX naive_vs_transform=Y.Y transform_peak_mb=M seed_vs_transform=S.S

with transform_vs_bare = transform time / the faster bare loop's time, naive_vs_transform = naive time / transform
time, M the largest peak RSS of any transform run, and seed_vs_transform = the seed loop's time / transform time. Times are the CPU time (user + system) of
the measured section, the best of --repeat runs for the bare loops and the transform; wall times
are printed beside them. On a machine shared with other work, CPU time is the steadier measure.
Every variant's process keeps freed buffers for reuse, as the transform function does
(`ampbq.allocator`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import platform
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

import click
import orjson

from .. import allocator
from .. import transform as core
from ..shaping import RENAMED, Lineage
from . import costs
from .seed_loop import properties_path, seed_loop

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CACHE = REPO / ".cache" / "bench"
BENCH_DAY = date(2024, 1, 31)
BENCH_HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)
SOURCE_OBJECT = "gs://bench/export/2024-01-31/05.json.gz"
MB = 1_000_000
# Amplitude's files are ordinary gzip; level 6 is zlib's default and what ampbq.tools.synthetic writes.
GZIP_LEVEL = 6


def _lineage() -> Lineage:
    return Lineage(BENCH_HOUR, SOURCE_OBJECT, 1)


# ------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class HourFile:
    path: Path
    events: int
    ndjson_bytes: int
    gzip_bytes: int


def generator_tag() -> str:
    """Changes when the generator changes, so cached hour files are rebuilt."""
    from . import synthetic

    return hashlib.sha1(Path(synthetic.__file__).read_bytes()).hexdigest()[:10]


def _hour_path(cache: Path, events: int) -> Path:
    return cache / f"hour-{events}-{generator_tag()}.json.gz"


class _GzipSink:
    """A gzip file written by a thread of its own: zlib releases the GIL while it compresses, so
    compressing overlaps with generating the next events."""

    def __init__(self, path: Path, level: int):
        self.path = path
        self.ndjson_bytes = 0
        self._tmp = path.with_suffix(".partial")
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._file = gzip.GzipFile(self._tmp, "wb", compresslevel=level, mtime=0)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            self._file.write(data)
        self._file.close()

    def write(self, data: bytes) -> None:
        self.ndjson_bytes += len(data)
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        os.replace(self._tmp, self.path)


def hour_files(cache: Path, sizes: list[int], level: int = GZIP_LEVEL, echo: Callable[[str], None] = print) -> dict[int, HourFile]:
    """One gzip NDJSON hour per size, generated once and cached. A smaller hour is the first
    events of a larger one (the generator is seeded per hour), so one pass writes them all."""
    from .synthetic import Dataset

    cache.mkdir(parents=True, exist_ok=True)
    files: dict[int, HourFile] = {}
    missing = []
    for events in sorted(set(sizes)):
        path = _hour_path(cache, events)
        meta = path.with_suffix(".meta.json")
        if path.exists() and meta.exists():
            files[events] = HourFile(path, **json.loads(meta.read_text()))
        else:
            missing.append(events)
    if missing:
        started = time.monotonic()
        echo(f"generating {', '.join(f'{n:,}' for n in missing)} events with ampbq.tools.synthetic (once; cached in {cache}) ...")
        dataset = Dataset(BENCH_HOUR, hours=1, events_per_hour=max(missing))
        sinks = {events: _GzipSink(_hour_path(cache, events), level) for events in missing}
        batch: list[bytes] = []
        written = 0
        for line in dataset.lines(BENCH_HOUR):
            batch.append(line)
            batch.append(b"\n")
            if len(batch) >= 2000:
                written = _feed(sinks, batch, written)
        _feed(sinks, batch, written)
        for events, sink in sinks.items():
            sink.close()
            hour = HourFile(sink.path, events, sink.ndjson_bytes, sink.path.stat().st_size)
            sink.path.with_suffix(".meta.json").write_text(json.dumps({k: v for k, v in asdict(hour).items() if k != "path"}))
            files[events] = hour
        echo(f"generated in {time.monotonic() - started:.0f} s")
    return files


def drifted_hour(hour: HourFile, every: int, folder: Path) -> HourFile:
    """The hour with every `every`-th event drifted the way a project's SDK can drift: `os_version`
    written as a number, and one field the schema does not know. The fast path declines such an
    event; the general path still makes it a row (`os_version` "1", the field in `_extra`)."""
    from isal import igzip

    path = folder / f"{hour.path.name.removesuffix('.json.gz')}-drift{every}.json.gz"
    ndjson_bytes = 0
    with igzip.open(hour.path, "rb") as source, igzip.open(path, "wb", compresslevel=1) as out:
        for number, line in enumerate(source, 1):
            if number % every == 0:
                line = line.replace(b'"os_version":"', b'"os_version":1,"os_version_was":"', 1)
            ndjson_bytes += len(line)
            out.write(line)
    return HourFile(path, hour.events, ndjson_bytes, path.stat().st_size)


def _feed(sinks: dict[int, _GzipSink], batch: list[bytes], written: int) -> int:
    lines = len(batch) // 2
    for events, sink in sinks.items():
        take = min(lines, events - written)
        if take > 0:
            sink.write(b"".join(batch[: 2 * take]))
    batch.clear()
    return written + lines


# ------------------------------------------------------------------------------------ variants
def bare_loop(src: Path, dst: Path) -> int:
    """Decompress, parse each line, serialize it, write: the transform's libraries and I/O, no shaping."""
    loads, dumps, newline = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    events = 0
    tail = b""
    with open(src, "rb") as raw, open(dst, "wb") as out:
        stream = core.open_gzip(raw)
        while chunk := stream.read(core.READ_CHUNK):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            rows = [dumps(loads(line), option=newline) for line in lines if line]
            out.write(b"".join(rows))
            events += len(rows)
        if tail:
            out.write(dumps(loads(tail), option=newline))
            events += 1
    return events


def bare_loop_msgspec(src: Path, dst: Path) -> int:
    """The bare loop with msgspec, the library of the transform's fast path (generic decode/encode)."""
    import msgspec

    loads, dumps = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
    events = 0
    tail = b""
    with open(src, "rb") as raw, open(dst, "wb") as out:
        stream = core.open_gzip(raw)
        while chunk := stream.read(core.READ_CHUNK):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            rows = [dumps(loads(line)) + b"\n" for line in lines if line]
            out.write(b"".join(rows))
            events += len(rows)
        if tail:
            out.write(dumps(loads(tail)) + b"\n")
            events += 1
    return events


def _transform_into(src: Path, out, dst: Path) -> int:
    rejects_path = dst.with_name(dst.name + ".rejects")
    with open(src, "rb") as raw, core.LazyWriter(lambda: open(rejects_path, "wb")) as rejects:
        counts = core.transform_stream(core.open_gzip(raw), out, rejects, _lineage())
    if counts.rejected:
        raise RuntimeError(f"{counts.rejected} generated events were rejected; see {rejects_path}")
    return counts.events


def real_transform(src: Path, dst: Path) -> int:
    """ampbq.transform.transform_stream, writing the plain NDJSON import object the load step reads."""
    with open(dst, "wb") as out:
        return _transform_into(src, out, dst)


def transform_gzip_isal(src: Path, dst: Path) -> int:
    """The transform writing a gzip import object with ISA-L (level 1, its fast default)."""
    from isal import igzip

    with igzip.open(dst, "wb", compresslevel=1) as out:
        return _transform_into(src, out, dst)


def transform_gzip_zlib(src: Path, dst: Path) -> int:
    """The transform writing a gzip import object with zlib level 6 (smaller, slower)."""
    with gzip.open(dst, "wb", compresslevel=6) as out:
        return _transform_into(src, out, dst)


_NAIVE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def naive_transform(src: Path, dst: Path) -> int:
    """What a typical script does: stdlib gzip and json, and strptime for every timestamp field."""
    from .. import schema

    timestamps = {f["name"] for f in schema.fields() if f["type"] == "TIMESTAMP"}
    lineage = _lineage()
    events = 0
    with gzip.open(src, "rt", encoding="utf-8") as lines, open(dst, "w", encoding="utf-8") as out:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            event = json.loads(line)
            row = {}
            for key, value in event.items():
                if value is None:
                    continue
                if key in timestamps and value != "":
                    value = datetime.strptime(value, _NAIVE_FORMAT).strftime(_NAIVE_FORMAT)
                row[RENAMED.get(key, key)] = value
            row["_upload_hour"] = lineage.upload_hour_text
            row["_source_object"] = lineage.source_object
            row["_source_generation"] = lineage.source_generation
            row["_source_line"] = number
            out.write(json.dumps(row) + "\n")
            events += 1
    return events


VARIANTS: dict[str, tuple[str, Callable[[Path, Path], int]]] = {
    "bare": ("bare loop (isal + orjson)", bare_loop),
    "bare-msgspec": ("bare loop (isal + msgspec)", bare_loop_msgspec),
    "transform": ("transform (plain NDJSON out)", real_transform),
    "naive": ("naive (gzip + json + strptime)", naive_transform),
    "seed": ("seed script loop (stdlib json, dicts)", seed_loop),
    "transform-gzip-isal": ("transform, gzip out (ISA-L level 1)", transform_gzip_isal),
    "transform-gzip-zlib": ("transform, gzip out (zlib level 6)", transform_gzip_zlib),
}


# ------------------------------------------------------------------------------------ child processes
def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@dataclass
class Run:
    variant: str
    events: int
    seconds: float
    peak_rss: int
    bytes_out: int = 0
    extra: dict | None = None
    cpu_seconds: float = 0.0  # user + system CPU time of the measured section

    @property
    def busy(self) -> float:
        """The time the figures use: CPU time, which other processes on a shared machine disturb
        far less than wall time (each variant runs on one thread, so the two agree on an idle one)."""
        return self.cpu_seconds or self.seconds

    def events_per_s(self) -> float:
        return self.events / self.busy


def _child(spec_json: str) -> None:
    """Entry point of a measuring child process: run one variant, print its Run as JSON."""
    spec = json.loads(spec_json)
    # Every variant runs with the allocator the transform function sets (allocator.py): a fair
    # comparison, and the bare loop gains as much from it as the transform.
    allocator.keep_freed_buffers()
    if spec["variant"] == "profile":
        _profile_child(spec)
        return
    if spec["variant"] == "export":
        run = _export_child(spec)
    else:
        src, dst = Path(spec["src"]), Path(spec["dst"])
        _, work = VARIANTS[spec["variant"]]
        started, cpu_started = time.perf_counter(), time.process_time()
        events = work(src, dst)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        run = Run(spec["variant"], events, seconds, peak_rss_bytes(), dst.stat().st_size, cpu_seconds=cpu_seconds)
    print(json.dumps(asdict(run)))


_CHILD = "import sys; from ampbq.tools.bench import _child; _child(sys.argv[1])"


def run_child(spec: dict, env: dict | None = None) -> Run:
    """Run one measurement in a fresh interpreter, so its peak RSS is its own."""
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise click.ClickException(f"{spec['variant']} failed:\n{done.stderr[-3000:]}")
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


def measure(variant: str, hour: HourFile, scratch: Path) -> Run:
    dst = scratch / f"{variant}-{hour.events}.out"
    try:
        return run_child({"variant": variant, "src": str(hour.path), "dst": str(dst)})
    finally:
        dst.unlink(missing_ok=True)
        dst.with_name(dst.name + ".rejects").unlink(missing_ok=True)
        properties_path(dst).unlink(missing_ok=True)


def _profile_child(spec: dict) -> None:
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    real_transform(Path(spec["src"]), Path(spec["dst"]))
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(spec.get("top", 12))
    Path(spec["dst"]).unlink(missing_ok=True)
    print(json.dumps({"profile": text.getvalue()}))


# ------------------------------------------------------------------------------------ export unpack
def export_zip(cache: Path, gigabytes: float, part: HourFile, echo: Callable[[str], None] = print) -> tuple[Path, int]:
    """An Export API zip of about `gigabytes` GB for BENCH_DAY: 24 hours, each of several `#n` parts.
    The unpack copies parts without decompressing them, so every part reuses one generated gzip
    hour (real gzip NDJSON, the bytes are just repeated)."""
    from .synthetic import PARTITION_IDS, entry_name

    parts_per_hour = max(1, math.ceil(gigabytes * 1e9 / (24 * part.gzip_bytes)))  # at least the size asked for
    path = cache / f"export-{parts_per_hour}x{part.events}-{generator_tag()}.zip"
    if not path.exists():
        echo(f"writing a {24 * parts_per_hour * part.gzip_bytes / 1e9:.2f} GB export zip (once; cached) ...")
        tmp = path.with_suffix(".partial")
        app = 203138
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for hour in range(24):
                moment = datetime(BENCH_DAY.year, BENCH_DAY.month, BENCH_DAY.day, hour, tzinfo=timezone.utc)
                for index in range(parts_per_hour):
                    partition = PARTITION_IDS[index % len(PARTITION_IDS)] + 1000 * (index // len(PARTITION_IDS))
                    with open(part.path, "rb") as source, archive.open(entry_name(app, moment, partition), "w") as member:
                        shutil.copyfileobj(source, member, 8 << 20)
        os.replace(tmp, path)
    return path, parts_per_hour


def _export_child(spec: dict) -> Run:
    from .. import export_step, gcs
    from ..naming import HourRange

    bucket = gcs.client("ampbq-bench").bucket(spec["bucket"])
    result = export_step.ExportResult(HourRange.day(date.fromisoformat(spec["day"])))
    started, cpu_started = time.perf_counter(), time.process_time()
    export_step.unpack_archive(bucket, spec["raw"], result.requested, result)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return Run("export", sum(result.hours.values()), seconds, peak_rss_bytes(), 0,
               {"hour_objects": len(result.hours), "refused": len(result.refused)}, cpu_seconds=cpu_seconds)


def bench_export(cache: Path, gigabytes: float, part: HourFile, echo: Callable[[str], None] = print) -> tuple[Run, dict]:
    """export_step.unpack_archive (the export step's unpack) on a large zip held by fake-gcs-server."""
    import requests

    from .stack import _stop_process, fake_gcs_binary, free_port, wait_for_port

    zip_path, parts_per_hour = export_zip(cache, gigabytes, part, echo)
    zip_bytes = zip_path.stat().st_size
    bucket, raw = "ampbq-bench", "export/raw/20240131T00-20240131T23.zip"
    with tempfile.TemporaryDirectory(prefix="ampbq-bench-gcs-", dir=cache) as scratch:
        root, temp = Path(scratch) / "gcs", Path(scratch) / "tmp"
        temp.mkdir()
        port = free_port()
        host = f"http://127.0.0.1:{port}"
        with open(Path(scratch) / "fake-gcs.log", "wb") as log:
            server = subprocess.Popen(
                [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "filesystem",
                 "-filesystem-root", str(root), "-external-url", host, "-log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(port, "fake-gcs-server", process=server)
            requests.post(f"{host}/storage/v1/b", params={"project": "ampbq-bench"}, json={"name": bucket}, timeout=30).raise_for_status()
            echo(f"uploading the {zip_bytes / 1e9:.2f} GB zip to fake-gcs-server ...")
            with open(zip_path, "rb") as body:  # one streamed media upload: the raw archive as the export step leaves it
                requests.post(f"{host}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": raw},
                              data=body, headers={"Content-Type": "application/zip"}, timeout=3600).raise_for_status()
            biggest_temp = [0]
            stop = threading.Event()

            def watch_temp() -> None:
                while not stop.wait(0.1):
                    for entry in os.scandir(temp):
                        try:
                            biggest_temp[0] = max(biggest_temp[0], entry.stat().st_size)
                        except OSError:
                            pass

            watcher = threading.Thread(target=watch_temp, daemon=True)
            watcher.start()
            try:
                run = run_child({"variant": "export", "bucket": bucket, "raw": raw, "day": BENCH_DAY.isoformat()},
                                env={"STORAGE_EMULATOR_HOST": host, "TMPDIR": str(temp)})
            finally:
                stop.set()
                watcher.join()
            emulator_peak = _vm_hwm(server.pid)
        finally:
            _stop_process(server)
    from ..gcs import CHUNK

    return run, {"zip_bytes": zip_bytes, "parts_per_hour": parts_per_hour, "biggest_temp_file": biggest_temp[0],
                 "chunk": CHUNK, "emulator_peak_rss": emulator_peak}


# ------------------------------------------------------------------------------------ one big hour
BIG_HOUR = datetime(BENCH_DAY.year, BENCH_DAY.month, BENCH_DAY.day, 5, tzinfo=timezone.utc)
BIG_HOUR_PART_EVENTS = 100_000  # events of one generated part of the big hour (about 230 MB of NDJSON)


def big_hour_zip(cache: Path, gigabytes: float, part: HourFile, echo: Callable[[str], None] = print) -> tuple[Path, int, int]:
    """An Export API zip of one upload hour of about `gigabytes` GB of NDJSON in Amplitude's `#n`
    parts, each the generated part's gzip (real gzip NDJSON; the bytes are repeated, so each uuid
    is there once per copy), the last part holding it twice (two gzip members): bigger than one
    unit, for the export to split. Its path, its entries, and the copies of the part it holds."""
    from .synthetic import PARTITION_IDS, entry_name

    copies = max(3, math.ceil(gigabytes * 1e9 / part.ndjson_bytes))
    entries = copies - 1
    path = cache / f"bighour-{copies}x{part.events}-{generator_tag()}.zip"
    if not path.exists():
        echo(f"writing a {copies * part.gzip_bytes / 1e9:.2f} GB zip of one hour in {entries} parts (once; cached) ...")
        tmp = path.with_suffix(".partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for index in range(entries):
                partition = PARTITION_IDS[index % len(PARTITION_IDS)] + 1000 * (index // len(PARTITION_IDS))
                with archive.open(entry_name(203138, BIG_HOUR, partition), "w", force_zip64=True) as member:
                    for _ in range(2 if index == entries - 1 else 1):
                        with open(part.path, "rb") as source:
                            shutil.copyfileobj(source, member, 8 << 20)
        os.replace(tmp, path)
    return path, entries, copies


def _unit_lines(logs_dir: Path) -> dict[str, list[dict]]:
    """The functions' "<step> done" lines, by step."""
    found: dict[str, list[dict]] = {}
    for step in ("export", "transform", "load"):
        path = logs_dir / f"{step}.log"
        for line in (path.read_text(errors="replace").splitlines() if path.exists() else []):
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("message") == f"{step} done":
                    found.setdefault(step, []).append(record)
    return found


def bench_big_hour(cache: Path, gigabytes: float, part: HourFile, timeout: float, echo: Callable[[str], None] = print) -> dict:
    """One upload hour of about `gigabytes` GB through the local stack, fanned out: every
    generated part is one unit (the transform's unit size is set to its gzip size), the doubled
    last part is split by the export. Waits until the hour is loaded."""
    from collections import Counter

    from .demo import wait_for_hours
    from .stack import Stack, StackSettings
    from .stub import ExportApiStub, ZipSource

    zip_path, entries, copies = big_hour_zip(cache, gigabytes, part, echo)
    events = copies * part.events
    workdir = (cache / "bighour-stack").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    env = {"AMPBQ_TRANSFORM_UNIT_BYTES": str(part.gzip_bytes), "AMPBQ_HTTP_BACKOFF_SECONDS": "0.5"}
    echo(f"one hour, {copies * part.ndjson_bytes / 1e9:.2f} GB NDJSON, {events:,} events in {entries} parts, "
         f"through the local stack (units of {part.gzip_bytes / MB:.1f} MB of gzip) ...")
    with ExportApiStub(ZipSource(zip_path), "bench-key", "bench-secret") as stub:
        # Not versioned: fake-gcs-server keeps every generation in memory, and an hour of many GB
        # writes each unit twice (scratch, then the import object).
        settings = StackSettings(workdir=workdir, amplitude_url=stub.url, api_key="bench-key", secret_key="bench-secret",
                                 extra_env=env, versioned=False)
        with Stack(settings) as stack:
            started, published = time.monotonic(), datetime.now(timezone.utc)
            stack.publish_run({"start": f"{BIG_HOUR:%Y%m%dT%H}", "end": f"{BIG_HOUR:%Y%m%dT%H}"})
            report = wait_for_hours(stack, BENCH_DAY, Counter({BIG_HOUR: events}), timeout)
            wall = time.monotonic() - started
            done = _unit_lines(workdir / "logs")
            for _ in range(60):  # the load that committed logs its done line a moment after the rows are in
                if any("loaded" in line for line in done.get("load", [])):
                    break
                time.sleep(0.5)
                done = _unit_lines(workdir / "logs")
    units = [line for line in done.get("transform", []) if line.get("unit")]
    fan_out = [line for line in done.get("transform", []) if "units" in line]
    loads = [line for line in done.get("load", []) if "loaded" in line]
    return {"report": report, "wall_s": wall, "published": published, "entries": entries, "copies": copies, "events": events,
            "ndjson_bytes": copies * part.ndjson_bytes, "units": units, "fan_out": fan_out, "loads": loads,
            "export": done.get("export", []), "unit_bytes": part.gzip_bytes}


def big_hour_lines(result: dict, part: HourFile, unit_bytes: int = 256 << 20) -> list[str]:
    """The big hour's per-unit and whole-hour times, the projection for 50 M events, and the
    `bighour:` line."""
    report, units = result["report"], result["units"]
    hour = report.hours[0] if report.hours else None
    lines = [f"  export: {sum(l['duration_s'] for l in result['export']):.1f} s (download, unpack, split)"]
    if units:
        walls, cpus = [u["duration_s"] for u in units], [u["cpu_s"] for u in units]
        lines.append(f"  units: {len(units)} transform invocations, each {min(walls):.1f}-{max(walls):.1f} s wall, "
                     f"{min(cpus):.1f}-{max(cpus):.1f} CPU s (the stack's one transform process serves them side by side)")
        ordered = sorted(units, key=lambda u: int(u["unit"].split()[1]))
        lines.append("  per unit, wall/CPU s: " + ", ".join(f"{u['unit'].split()[1]}: {u['duration_s']:.0f}/{u['cpu_s']:.1f}"
                                                            for u in ordered))
    for load in result["loads"]:
        lines.append(f"  load of the whole hour: {load['duration_s']:.1f} s, {load.get('loaded', 0):,} rows")
    phases = _phases(result)
    if phases:
        lines.append("  phases after publishing: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases))
    lines.append(f"  whole hour, publish to loaded: {result['wall_s']:.1f} s")
    cpu_per_gb = (sum(u["cpu_s"] for u in units) / (result["ndjson_bytes"] / 1e9)) if units else float("nan")
    lines.append(f"  transform CPU per GB of NDJSON, summed over the units: {cpu_per_gb:.1f} s")
    projection = costs.project_hour(50_000_000, part.ndjson_bytes / part.events, part.ndjson_bytes / part.gzip_bytes,
                                    unit_bytes, cpu_per_gb, costs.ASSUMED_COPY_S_PER_GB)
    lines.append(f"  projected on Cloud Functions for an hour of 50,000,000 events ({projection.ndjson_gb:,.0f} GB NDJSON, "
                 f"{projection.gzip_gb:,.1f} GB gzip; over the Export API's 4 GB, so through Amplitude's own export): "
                 f"{projection.units} units of {unit_bytes >> 20} MiB, {projection.invocations} invocations; "
                 f"the export copying its parts {projection.export_s:.0f} s (at an assumed {1 / costs.ASSUMED_COPY_S_PER_GB * 1e3:.0f} MB/s), "
                 f"then every unit at once, {projection.unit_s:.0f} s each on one vCPU: {projection.wall_s:.0f} s "
                 f"before BigQuery's load job" + ("" if projection.fits else f" (a step over the {costs.FUNCTION_TIMEOUT_S} s limit)"))
    loaded = hour.loaded if hour else 0
    rejected = hour.rejected if hour else 0
    lines.append(f"bighour: gb={result['ndjson_bytes'] / 1e9:.2f} parts={result['entries']} events={result['events']} "
                 f"loaded={loaded} rejected={rejected} wall_s={result['wall_s']:.1f}")
    return lines


def _phases(result: dict) -> list[tuple[str, float]]:
    """How long after publishing the export finished, then the last unit, then the hour was in
    BigQuery (from the done lines' times)."""
    published = result.get("published")
    times = {step: [datetime.fromisoformat(line["time"]) for line in result[key] if "time" in line]
             for step, key in (("export", "export"), ("units", "units"))}
    if published is None or not times["export"] or not times["units"]:
        return []
    exported, transformed = max(times["export"]), max(times["units"])
    return [("export", (exported - published).total_seconds()), ("transform of every unit", (transformed - exported).total_seconds()),
            ("load and commit", result["wall_s"] - (transformed - published).total_seconds())]


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------------------------ end to end
def step_durations(logs_dir: Path) -> dict[str, list[float]]:
    """`duration_s` of every "<step> done" line in the functions' JSON logs."""
    found: dict[str, list[float]] = {}
    for step in ("export", "transform", "load"):
        path = logs_dir / f"{step}.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == f"{step} done" and "duration_s" in record:
                found.setdefault(step, []).append(float(record["duration_s"]))
    return found


def _function_peaks(workdir: Path, peaks: dict[str, int]) -> None:
    """Peak RSS of the stack's function processes (found by their working directory)."""
    from .stack import FUNCTIONS

    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/cwd") != str(workdir):
                continue
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for name, target in FUNCTIONS.items():
            if target.encode() in cmdline:
                peaks[name] = max(peaks.get(name, 0), _vm_hwm(int(entry.name)))


def bench_e2e(cache: Path, events_per_hour: int, timeout: float, echo: Callable[[str], None] = print) -> dict:
    from .demo import run_demo

    workdir = (cache / "e2e-stack").resolve()
    peaks: dict[str, int] = {}
    started = time.monotonic()
    echo(f"running the demo day: 24 hours x {events_per_hour:,} events through the local stack ...")
    report = run_demo(BENCH_DAY, events_per_hour=events_per_hour, timeout=timeout, workdir=workdir,
                      progress=lambda done, total: _function_peaks(workdir, peaks))
    return {"report": report, "total_s": time.monotonic() - started, "durations": step_durations(workdir / "logs"),
            "peaks": peaks}


# ------------------------------------------------------------------------------------ report
def _scratch_parent(cache: Path, room: int) -> Path:
    """Where the variants write their output: memory (/dev/shm) when it has room, as the function's
    upload buffer is memory; a disk's writeback throttling would add seconds of noise to the figures."""
    shm = Path("/dev/shm")
    try:
        if shutil.disk_usage(shm).free > room:
            return shm
    except OSError:
        pass
    return cache


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import isal
    import msgspec
    import numpy

    return (f"{os.cpu_count()} CPUs ({model}), {ram / 2**30:.1f} GiB RAM, Python {platform.python_version()}, "
            f"orjson {orjson.__version__}, msgspec {msgspec.__version__}, isal {isal.__version__}, numpy {numpy.__version__}; "
            f"glibc malloc thresholds: mmap {allocator.MMAP_THRESHOLD >> 20} MiB, trim {allocator.TRIM_THRESHOLD >> 20} MiB "
            f"(ampbq.allocator, in every variant)")


# The days whose cost the `bench:` line carries, by the key it gives each.
COST_DAYS = {"usd_day_1m": 1_000_000, "usd_day_100m": 100_000_000, "usd_day_1b": 1_000_000_000}


def summary_line(events: int, transform_s: float, bare_s: float, naive_s: float, transform_peak: int,
                 seed_s: float = float("nan"), day_usd: dict[str, float] | None = None) -> str:
    """The last line: every ratio, the transform's peak memory, and (`day_usd`, by COST_DAYS key)
    what a day of that many events costs on Cloud Functions and BigQuery."""
    return (f"bench: events={events} transform_vs_bare={transform_s / bare_s:.2f} "
            f"naive_vs_transform={naive_s / transform_s:.1f} transform_peak_mb={round(transform_peak / MB)} "
            f"seed_vs_transform={seed_s / transform_s:.1f}"
            + "".join(f" {key}={day_usd[key]:.2f}" for key in COST_DAYS if day_usd and key in day_usd))


def _row(label: str, run: Run, hour: HourFile) -> str:
    return (f"  {label:<38} {run.seconds:7.2f} {run.busy:7.2f} {run.events_per_s():>10,.0f} {hour.ndjson_bytes / MB / run.busy:7.1f}"
            f" {run.peak_rss / MB:11.1f} {run.bytes_out / MB:8.1f}")


_HEADER = (f"  {'variant':<38} {'wall s':>7} {'CPU s':>7} {'events/s':>10} {'MB/s':>7} {'peak RSS MB':>11} {'out MB':>8}"
           "\n  (events/s and MB/s per CPU second; MB = 10^6 bytes of uncompressed NDJSON in)")


def sample_row_bytes(hour: HourFile, lines: int = 2000) -> tuple[float, float]:
    """BigQuery's logical bytes per row of the transform's rows for the hour's first `lines`
    events, whole and in the ledger's columns (costs.LEDGER_COLUMNS)."""
    import io

    from isal import igzip

    from .. import schema

    types = {field["name"]: field["type"] for field in schema.fields()}
    with igzip.open(hour.path, "rb") as source:
        head = b"".join(line for _, line in zip(range(lines), source))
    out = io.BytesIO()
    core.transform_stream(io.BytesIO(head), out, io.BytesIO(), _lineage())
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    whole = sum(costs.row_bytes(row, types) for row in rows) / len(rows)
    ledger = sum(costs.row_bytes(row, types, costs.LEDGER_COLUMNS) for row in rows) / len(rows)
    return whole, ledger


def per_gb_lines(hour: HourFile, runs: dict[str, tuple[Run, float]]) -> list[str]:
    """CPU seconds and peak RSS per GB of NDJSON, for each (run, NDJSON bytes it handled)."""
    lines = [f"  {'step':<38} {'CPU s / GB NDJSON':>17} {'peak RSS MB':>11}"]
    for label, (run, ndjson_bytes) in runs.items():
        lines.append(f"  {label:<38} {run.busy / (ndjson_bytes / 1e9):17.2f} {run.peak_rss / MB:11.1f}")
    return lines


def cost_lines(per_event: float, steps: list, seed, row_bytes: float, ledger_bytes: float,
               days=(1_000_000, 100_000_000, 1_000_000_000)) -> list[str]:
    """The cost table: a day of each size on Cloud Run functions and BigQuery, and the seed loop's compute."""
    out = [f"  list prices of {costs.PRICES_CHECKED} (USD): Cloud Run request-based ${costs.VCPU_SECOND:.6f}/vCPU-s, "
           f"${costs.GIB_SECOND:.7f}/GiB-s, ${costs.PER_REQUEST * 1e6:.2f}/M requests; BigQuery on-demand "
           f"${costs.QUERY_PER_TIB}/TiB, storage ${costs.STORAGE_PER_GIB_MONTH}/GiB-month, load jobs free; free tiers not subtracted",
           f"  rows: {row_bytes:,.0f} logical bytes each in BigQuery ({ledger_bytes:,.0f} in the ledger's columns), "
           f"{per_event:,.0f} bytes of NDJSON per event; functions: "
           + ", ".join(f"{step.name} {step.vcpu:g} vCPU {step.memory_gib:g} GiB x{step.invocations_per_day}/day" for step in steps),
           f"  {'events/day':>13} {'NDJSON GB':>9} " + " ".join(f"{step.name + ' $':>11}" for step in steps)
           + f" {'requests $':>10} {'BQ scan GB':>10} {'BQ query $':>10} {'ampbq $/day':>11} {'storage $/mo':>12}"
           + (f" {'seed CPU $':>10} {'seed s/hour':>11}" if seed else "")]
    for events in days:
        day = costs.day_costs(events, per_event, steps, seed, row_bytes, ledger_bytes)
        bq = day["bigquery"]
        line = (f"  {events:>13,} {day['ndjson_gb']:9,.1f} " + " ".join(f"{day['functions'][s.name]['total']:11.4f}" for s in steps)
                + f" {day['requests']:10.5f} {bq['scanned_bytes'] / 1e9:10,.1f} {bq['query']:10.2f} {day['ampbq_day']:11.2f}"
                  f" {bq['storage_month']:12.2f}")
        if seed:
            line += f" {day['seed']['total']:10.4f} {day['seed']['per_invocation_s']:11,.0f}"
        out.append(line)
    biggest = costs.day_costs(days[-1], per_event, steps, seed, row_bytes, ledger_bytes)["functions"]
    out.append(f"  (storage $/mo: each day's rows, per month kept. CPU s per invocation at {days[-1]:,} events a day: "
               + ", ".join(f"{name} {day['per_invocation_s']:,.0f}" for name, day in biggest.items())
               + "; a transform's is its whole hour's, which its fan-out spreads over units of 256 MiB of gzip, "
               "each an invocation of its own within the 540 s timeout.)")
    return out


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--events", default=200_000, show_default=True, help="Events in the hour the variants are compared on.")
@click.option("--sizes", default="100000,200000,400000", show_default=True,
              help="Hour sizes for the transform's peak-RSS scaling, comma separated ('' to skip).")
@click.option("--repeat", default=3, show_default=True, help="Runs of the bare loops and the transform; the best counts.")
@click.option("--naive/--no-naive", default=True, show_default=True, help="Run the naive reference (the slowest part).")
@click.option("--seed/--no-seed", default=True, show_default=True,
              help="Run the seed script's per-line loop (ampbq.tools.seed_loop), as slow as the naive reference.")
@click.option("--formats/--no-formats", default=True, show_default=True, help="Also write the import object gzip-compressed.")
@click.option("--profile", is_flag=True, help="Print the transform's top functions (cProfile, tottime).")
@click.option("--drift", default="100,10", show_default=True,
              help="Also run the transform with every Nth event drifted (declined by the fast path), for each N; '' to skip.")
@click.option("--export-gb", default=0.15, show_default=True,
              help="Unpack an export zip of at least this many GB through fake-gcs-server (0 to skip).")
@click.option("--export-part-events", default=20_000, show_default=True,
              help="Events in each part of the export zip (every part is the same generated hour).")
@click.option("--hour-gb", default=0.0, show_default=True,
              help="Also run one upload hour of this many GB of NDJSON, fanned out over its parts, through the local stack.")
@click.option("--hour-timeout", default=3600, show_default=True, help="Seconds to wait for the --hour-gb hour to land.")
@click.option("--costs/--no-costs", "show_costs", default=True, show_default=True,
              help="Print CPU and memory per GB and the cost of a day in dollars.")
@click.option("--e2e", is_flag=True, help="Also run the demo day end to end on the local stack.")
@click.option("--e2e-events-per-hour", default=20_000, show_default=True, help="Events per hour of the --e2e day.")
@click.option("--e2e-timeout", default=3600, show_default=True, help="Seconds to wait for the --e2e day to land.")
@click.option("--cache", "cache", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE, show_default=True,
              help="Where generated hours and zips are kept between runs.")
def bench(events, sizes, repeat, naive, seed, formats, drift, profile, export_gb, export_part_events, hour_gb, hour_timeout,
          show_costs, e2e, e2e_events_per_hour, e2e_timeout, cache) -> None:
    """Measure the transform against a bare parse/serialize loop and a naive script, on one generated hour.

    Each variant runs in a fresh process; it prints events/s, MB/s and peak RSS for each, the
    ratios, the import format's cost, and the transform's peak RSS as the hour grows. Ends with
    `bench: events=N transform_vs_bare=X.XX naive_vs_transform=Y.Y transform_peak_mb=M seed_vs_transform=S.S`.

    Example:

        ampbq bench --events 200000 --sizes 100000,200000,400000 --export-gb 2
    """
    echo = click.echo
    scaling = _sizes(sizes)
    cache = cache.resolve()
    part_events = export_part_events
    files = hour_files(cache, sorted({events, *scaling, *([part_events] if export_gb else []),
                                      *([BIG_HOUR_PART_EVENTS] if hour_gb else [])}), echo=echo)
    hour = files[events]
    echo(f"machine: {machine()}")
    echo(f"hour: {hour.events:,} events, {hour.ndjson_bytes / MB:.1f} MB NDJSON ({hour.ndjson_bytes / hour.events:,.0f} B/event), "
         f"{hour.gzip_bytes / MB:.1f} MB gzip level {GZIP_LEVEL}; generated by ampbq.tools.synthetic")
    with tempfile.TemporaryDirectory(prefix="ampbq-bench-", dir=_scratch_parent(cache, 4 * hour.ndjson_bytes)) as tmp:
        scratch = Path(tmp)
        best: dict[str, Run] = {}
        transform_peak = 0
        for _ in range(max(1, repeat)):
            for variant in ("bare", "bare-msgspec", "transform"):
                run = measure(variant, hour, scratch)
                if variant not in best or run.busy < best[variant].busy:
                    best[variant] = run
                if variant == "transform":
                    transform_peak = max(transform_peak, run.peak_rss)
        if naive:
            best["naive"] = measure("naive", hour, scratch)
        if seed:
            best["seed"] = measure("seed", hour, scratch)
        counts = {variant: run.events for variant, run in best.items()}
        if len(set(counts.values())) != 1 or hour.events not in counts.values():
            raise click.ClickException(f"the variants counted different events: {counts} (hour has {hour.events})")

        echo(f"\nvariants, each in a fresh process (bare loops and transform: best of {max(1, repeat)}):")
        echo(_HEADER)
        for variant, run in best.items():
            echo(_row(VARIANTS[variant][0], run, hour))
        # The transform decodes and encodes with msgspec (orjson on its general path); it is held
        # to the faster of the two bare loops.
        bare = min(best["bare"], best["bare-msgspec"], key=lambda run: run.busy)
        transform = best["transform"]
        echo(f"  transform throughput = {bare.busy / transform.busy:.2f}x the faster bare loop's, "
             f"{VARIANTS[bare.variant][0]} (time ratio {transform.busy / bare.busy:.2f})")
        if naive:
            echo(f"  transform throughput = {best['naive'].busy / transform.busy:.1f}x the naive reference's")
        if seed:
            echo(f"  transform throughput = {best['seed'].busy / transform.busy:.1f}x the seed script loop's")
        if naive and seed:
            echo(f"  seed script loop throughput = {best['naive'].busy / best['seed'].busy:.2f}x the naive reference's")

        if formats:
            echo("\nimport format (BigQuery reads plain NDJSON in parallel, a gzip file serially; GCS bytes cost money):")
            echo(_HEADER)
            echo(_row("plain NDJSON (the current choice)", transform, hour))
            for variant in ("transform-gzip-isal", "transform-gzip-zlib"):
                run = measure(variant, hour, scratch)
                transform_peak = max(transform_peak, run.peak_rss)
                echo(_row(VARIANTS[variant][0], run, hour))

        if drift_every := _sizes(drift):
            echo("\nwhen the fast path declines events (every Nth event drifted: os_version a number, plus an unknown field):")
            echo(_HEADER)
            echo(_row("no event drifted", transform, hour))
            for every in drift_every:
                drifted = drifted_hour(hour, every, scratch)
                run = measure("transform", drifted, scratch)
                drifted.path.unlink()
                transform_peak = max(transform_peak, run.peak_rss)
                echo(_row(f"every {every:,}th event drifted", run, drifted))

        if scaling:
            echo("\ntransform peak RSS as the hour grows:")
            echo(f"  {'events':>9} {'NDJSON MB':>10} {'wall s':>7} {'CPU s':>7} {'events/s':>10} {'peak RSS MB':>11}")
            for size in scaling:
                run = transform if size == events else measure("transform", files[size], scratch)
                transform_peak = max(transform_peak, run.peak_rss)
                echo(f"  {size:>9,} {files[size].ndjson_bytes / MB:>10.1f} {run.seconds:7.2f} {run.busy:7.2f} {run.events_per_s():>10,.0f}"
                     f" {run.peak_rss / MB:11.1f}")

        if profile:
            dst = scratch / "profile.out"
            done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({"variant": "profile", "src": str(hour.path), "dst": str(dst)})],
                                  capture_output=True, text=True, check=True)
            echo("\ntransform profile (cProfile adds overhead to every call; top functions by own time):")
            echo(json.loads(done.stdout.strip().splitlines()[-1])["profile"])

    export_run = None
    if export_gb:
        try:
            run, info = bench_export(cache, export_gb, files[part_events], echo)
        except Exception as error:  # fake-gcs-server missing or failing: the rest of the figures still stand
            echo(f"\nexport unpack not measured: {type(error).__name__}: {error}")
            export_gb = 0
    if export_gb:
        export_run = (run, info["zip_bytes"] * files[part_events].ndjson_bytes / files[part_events].gzip_bytes)
        echo(f"\nexport unpack (ampbq.export_step.unpack_archive, the export step's own code, against fake-gcs-server; "
             f"the zip is read through GCS ranged reads of {info['chunk'] >> 20} MiB, hour objects written by resumable upload):")
        echo(f"  zip {info['zip_bytes'] / 1e9:.2f} GB, {run.extra['hour_objects']} hour objects of {info['parts_per_hour']} parts: "
             f"{run.seconds:.1f} s ({info['zip_bytes'] / MB / run.seconds:.0f} MB/s), {run.busy:.1f} CPU s, peak RSS {run.peak_rss / MB:.0f} MB"
             f"; biggest temp file {info['biggest_temp_file']} bytes (limit: one chunk, {info['chunk']} bytes)")
        echo(f"  (fake-gcs-server itself peaked at {info['emulator_peak_rss'] / MB:,.0f} MB: it buffers uploads in RAM; not part of the step)")

    if e2e:
        result = bench_e2e(cache, e2e_events_per_hour, e2e_timeout, echo)
        report, durations, peaks = result["report"], result["durations"], result["peaks"]
        echo(f"\nend to end: the demo day, 24 hours x {e2e_events_per_hour:,} events, through the emulators")
        echo(f"  {report.summary_line()}{' (TIMED OUT)' if report.timed_out else ''}")
        echo(f"  wall time after publishing: {report.seconds:.1f} s (with generating the day and starting the stack: {result['total_s']:.0f} s)")
        for step in ("export", "transform", "load"):
            values = durations.get(step, [])
            if values:
                echo(f"  {step:<9} runs={len(values):<3} slowest={max(values):7.2f} s  total={sum(values):8.2f} s"
                     f"  peak RSS {peaks.get(step, 0) / MB:6.0f} MB")

    big_hour = None
    if hour_gb:
        big_hour = bench_big_hour(cache, hour_gb, files[BIG_HOUR_PART_EVENTS], hour_timeout, echo)

    if show_costs:
        per_gb = {"transform": (transform, hour.ndjson_bytes)}
        if export_run:
            per_gb["export (unpack, zip of gzip parts)"] = export_run
        if seed:
            per_gb["seed script's loop"] = (best["seed"], hour.ndjson_bytes)
        echo("\nper GB of NDJSON (CPU seconds on one thread"
             + (f"; the export copies gzip parts, here {files[part_events].ndjson_bytes / files[part_events].gzip_bytes:.1f}x "
                "smaller than their NDJSON" if export_run else "; export not measured (--export-gb 0)") + "):")
        for line in per_gb_lines(hour, per_gb):
            echo(line)
        row_bytes, ledger_bytes = sample_row_bytes(hour)
        steps = [costs.Step("transform", transform.busy / (hour.ndjson_bytes / 1e9), 1, 2, costs.HOURS_PER_DAY)]
        if export_run:
            steps.append(costs.Step("export", export_run[0].busy / (export_run[1] / 1e9), 1, 1, 1))
        seed_step = costs.Step("seed", best["seed"].busy / (hour.ndjson_bytes / 1e9), 1, 2, costs.HOURS_PER_DAY) if seed else None
        echo("\ncost of a day (Cloud Run functions billed for their CPU time; the load function's wait on BigQuery not "
             "counted; the seed loop on the transform's instance):")
        for line in cost_lines(hour.ndjson_bytes / hour.events, steps, seed_step, row_bytes, ledger_bytes):
            echo(line)
        day_usd = {key: costs.day_costs(n, hour.ndjson_bytes / hour.events, steps, seed_step, row_bytes, ledger_bytes)["ampbq_day"]
                   for key, n in COST_DAYS.items()}
    else:
        day_usd = None

    echo(summary_line(events, transform.busy, bare.busy, best["naive"].busy if naive else float("nan"), transform_peak,
                      best["seed"].busy if seed else float("nan"), day_usd))
    if big_hour:
        echo("\none big hour, fanned out over its parts, through the local stack:")
        for line in big_hour_lines(big_hour, files[BIG_HOUR_PART_EVENTS]):
            echo(line)


if __name__ == "__main__":
    bench()
