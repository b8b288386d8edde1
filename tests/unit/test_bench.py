"""The bench's pieces at tiny sizes (no timing asserts), and the transform's fast path checked
against the general path it must agree with."""

import gzip
import json
import random
import re
import zipfile
from datetime import datetime, timezone

import orjson
import pytest
from click.testing import CliRunner

from ampbq import transform, unpack
from ampbq.tools import bench, costs
from ampbq.naming import HourRange
from ampbq.shaping import Lineage, RejectedEvent, Shaper, are_amplitude_timestamps, is_amplitude_timestamp, to_timestamp
from factory import generated_events, utc

SUMMARY = re.compile(r"^bench: events=\d+ transform_vs_bare=\d+\.\d\d naive_vs_transform=\d+\.\d transform_peak_mb=\d+ "
                     r"seed_vs_transform=\d+\.\d( usd_day_1m=\d+\.\d\d usd_day_100m=\d+\.\d\d usd_day_1b=\d+\.\d\d)?$")


@pytest.fixture(scope="module")
def hours(tmp_path_factory):
    return bench.hour_files(tmp_path_factory.mktemp("bench-cache"), [60, 150], echo=lambda _: None)


def read_rows(path):
    """The rows of an import object; a null column is left out (the fast path writes it as null,
    the others leave it out: both load as NULL)."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [{column: value for column, value in row.items() if value is not None} for row in rows]


def test_summary_line_has_the_agreed_format():
    line = bench.summary_line(200000, transform_s=7.0, bare_s=6.0, naive_s=70.0, transform_peak=61_400_000, seed_s=84.0)
    assert SUMMARY.match(line)
    assert line == ("bench: events=200000 transform_vs_bare=1.17 naive_vs_transform=10.0 transform_peak_mb=61 "
                    "seed_vs_transform=12.0")


def test_summary_line_ends_with_the_cost_of_a_day_of_each_size():
    line = bench.summary_line(200000, 7.0, 6.0, 70.0, 61_400_000, 84.0,
                              {"usd_day_1m": 0.011, "usd_day_100m": 0.864, "usd_day_1b": 8.5612})
    assert SUMMARY.match(line)
    assert line.endswith(" seed_vs_transform=12.0 usd_day_1m=0.01 usd_day_100m=0.86 usd_day_1b=8.56")


def test_smaller_hours_are_the_first_events_of_larger_ones(hours):
    small, large = hours[60], hours[150]
    assert (small.events, large.events) == (60, 150)
    small_lines = gzip.decompress(small.path.read_bytes()).splitlines()
    large_lines = gzip.decompress(large.path.read_bytes()).splitlines()
    assert len(small_lines) == 60 and small_lines == large_lines[:60]
    assert small.ndjson_bytes == sum(len(line) + 1 for line in small_lines)
    assert small.gzip_bytes == small.path.stat().st_size


def test_cached_hours_are_reused(hours, tmp_path_factory):
    cache = hours[60].path.parent
    before = hours[60].path.stat().st_mtime_ns
    again = bench.hour_files(cache, [60], echo=lambda _: pytest.fail("regenerated a cached hour"))
    assert again[60] == hours[60] and again[60].path.stat().st_mtime_ns == before


@pytest.mark.parametrize("variant", sorted(bench.VARIANTS))
def test_every_variant_counts_every_event(hours, tmp_path, variant):
    _, work = bench.VARIANTS[variant]
    dst = tmp_path / "out"
    assert work(hours[150].path, dst) == 150
    data = dst.read_bytes()
    lines = (gzip.decompress(data) if variant.startswith("transform-gzip") else data).splitlines()
    assert len(lines) == 150


def test_transform_and_naive_write_the_same_rows_for_generated_events(hours, tmp_path):
    bench.real_transform(hours[150].path, tmp_path / "t")
    bench.naive_transform(hours[150].path, tmp_path / "n")
    assert read_rows(tmp_path / "t") == read_rows(tmp_path / "n")


def test_a_child_process_reports_its_run_with_its_peak_rss(hours, tmp_path):
    run = bench.measure("transform", hours[60], tmp_path)
    assert (run.variant, run.events) == ("transform", 60)
    assert run.seconds > 0 and run.peak_rss > 10_000_000 and run.bytes_out > 0
    assert list(tmp_path.iterdir()) == []


def test_step_durations_come_from_the_done_lines(tmp_path):
    (tmp_path / "transform.log").write_text("\n".join([
        json.dumps({"message": "transform done", "duration_s": 1.5}),
        "some framework line",
        json.dumps({"message": "hour object written", "duration_s": 9}),
        json.dumps({"message": "transform done", "duration_s": 0.25}),
    ]))
    (tmp_path / "load.log").write_text(json.dumps({"message": "load done", "duration_s": 3}) + "\n")
    assert bench.step_durations(tmp_path) == {"transform": [1.5, 0.25], "load": [3.0]}


def test_export_zip_has_amplitude_layout_for_every_hour_of_the_day(hours, tmp_path):
    path, parts = bench.export_zip(tmp_path, hours[60].gzip_bytes * 24 * 1.5 / 1e9, hours[60], echo=lambda _: None)
    assert parts == 2
    with zipfile.ZipFile(path) as archive:
        plan = unpack.plan(archive.namelist(), HourRange.day(bench.BENCH_DAY))
        assert plan.refused == [] and len(plan.hours) == 24
        assert all(len(entries) == 2 for entries in plan.hours.values())
        first = archive.read(archive.namelist()[0])
    assert first == hours[60].path.read_bytes()


def test_bench_command_ends_with_the_summary_line(tmp_path):
    result = CliRunner().invoke(bench.bench, ["--events", "120", "--sizes", "60,120", "--repeat", "1", "--no-formats",
                                              "--export-gb", "0", "--cache", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert SUMMARY.match(lines[-1]) and lines[-1].startswith("bench: events=120 ")
    assert any("naive" in line for line in lines) and any("peak RSS" in line for line in lines)
    assert any("the seed script loop's" in line for line in lines)
    assert any(line.strip().startswith("1,000,000,000 ") for line in lines)  # the cost table's last day
    assert any("every 10th event drifted" in line for line in lines)


def test_seed_loop_writes_the_seed_scripts_events_and_properties(hours, tmp_path):
    from ampbq.tools import seed_loop

    dst = tmp_path / "events.json"
    assert seed_loop.seed_loop(hours[60].path, dst) == 60
    raw = dst.read_bytes()
    assert raw.count(b"\r\n") == 60
    rows = [json.loads(line) for line in raw.splitlines()]
    first = json.loads(gzip.decompress(hours[60].path.read_bytes()).splitlines()[0])
    assert len(rows[0]) == 42 and rows[0]["insert_id"] == first["$insert_id"] and rows[0]["uuid"] == first["uuid"]
    assert rows[0]["paying"] == (False if first["paying"] is None else first["paying"])
    properties = [json.loads(line) for line in seed_loop.properties_path(dst).read_bytes().splitlines()]
    scopes = seed_loop.PROPERTY_SCOPES
    assert len(properties) == sum(len(json.loads(line)[scope]) for line in gzip.decompress(hours[60].path.read_bytes()).splitlines()
                                  for scope in scopes)
    assert {record["property_type"] for record in properties} <= set(scopes)
    assert not any(record["value"] is True or record["value"] is False for record in properties)


def test_a_function_day_bills_its_cpu_time_rounded_up_per_invocation():
    step = costs.Step("transform", cpu_s_per_gb=10.0, vcpu=1, memory_gib=2, invocations_per_day=24)
    day = costs.function_day(step, ndjson_gb=2.4)  # 24 s in all, 1 s per invocation
    assert day["seconds"] == pytest.approx(24) and day["billed_s"] == pytest.approx(24)
    assert day["cpu"] == pytest.approx(24 * 0.000024) and day["memory"] == pytest.approx(24 * 2 * 0.0000025)
    assert day["total"] == pytest.approx(day["cpu"] + day["memory"])
    tiny = costs.function_day(step, ndjson_gb=0.0024)  # 1 ms per invocation is billed as 100 ms
    assert tiny["billed_s"] == pytest.approx(2.4)


def test_bigquery_day_follows_the_load_steps_bytes_model():
    day = costs.bigquery_day(100_000_000, row_logical_bytes=1000, ledger_logical_bytes=50)
    assert day["scanned_bytes"] == pytest.approx(100e6 * 1050 + 0.5e9)
    assert day["query"] == pytest.approx(day["scanned_bytes"] / 2**40 * 6.25)
    assert day["stored_bytes"] == 100e9 and day["storage_month"] == pytest.approx(100e9 / 2**30 * 0.02)


def test_day_costs_add_up_and_scale_with_the_events():
    steps = [costs.Step("transform", 10.0, 1, 2, 24), costs.Step("export", 2.0, 1, 1, 1)]
    seed = costs.Step("seed", 100.0, 1, 2, 24)
    small, big = (costs.day_costs(n, 2000, steps, seed, 1000, 50) for n in (1_000_000, 1_000_000_000))
    assert small["ndjson_gb"] == pytest.approx(2.0) and big["ndjson_gb"] == pytest.approx(2000)
    for day in (small, big):
        assert day["ampbq_day"] == pytest.approx(sum(f["total"] for f in day["functions"].values()) + day["requests"]
                                                 + day["bigquery"]["query"])
    assert big["seed"]["total"] == pytest.approx(10 * big["functions"]["transform"]["total"], rel=1e-3)
    assert big["functions"]["export"]["per_invocation_s"] == pytest.approx(4000)


def test_logical_bytes_follow_bigquerys_sizes_by_type():
    types = {"uuid": "STRING", "event_time": "TIMESTAMP", "n": "INT64", "ok": "BOOL", "props": "JSON", "ids": "STRING"}
    row = {"uuid": "abc", "event_time": "2024-01-31 05:00:00.000000", "n": 7, "ok": True, "props": {"a": [1]},
           "ids": ["x", "yz"], "gone": None}
    assert costs.row_bytes(row, types) == 5 + 8 + 8 + 1 + len('{"a":[1]}') + (3 + 4)
    assert costs.row_bytes(row, types, ("uuid", "event_time")) == 13
    assert costs.value_bytes("JSON", ["a"]) == len('["a"]')  # a JSON array is one value, not a repeated column


def test_cost_lines_print_a_day_per_size(hours):
    row, ledger = bench.sample_row_bytes(hours[60])
    assert 500 < row < 3000 and 40 < ledger < 80
    lines = bench.cost_lines(2000, [costs.Step("transform", 10.0, 1, 2, 24)], costs.Step("seed", 100.0, 1, 2, 24), row, ledger)
    assert costs.PRICES_CHECKED in lines[0]
    assert [line.split()[0] for line in lines[3:6]] == ["1,000,000", "100,000,000", "1,000,000,000"]


def test_a_drifted_hour_declines_the_fast_path_every_nth_event_and_still_loads_whole(hours, tmp_path):
    drifted = bench.drifted_hour(hours[150], 10, tmp_path)
    dst = tmp_path / "rows.json"
    assert bench.real_transform(drifted.path, dst) == 150  # no rejects (it raises on any)
    rows = read_rows(dst)
    moved = [row for row in rows if "_extra" in row]
    assert [row["_source_line"] for row in moved] == list(range(10, 151, 10))
    assert all(row["os_version"] == "1" and set(row["_extra"]) == {"os_version_was"} for row in moved)


# ---------------------------------------------------------------- the transform's fast path
LINEAGE = Lineage(utc(2024, 1, 31, 5), "gs://b/export/2024-01-31/05.json.gz", 3)
ODD_VALUES = [
    None, "", " ", "42", "-7", "4.5", "true", "TRUE", 0, 1, -1, 2, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30,
    1.0, 129.0, 1.5, -0.0, 1e16, 1e300, True, False, [], ["a"], ["a", None], [1, "b"], {}, {"k": 10**25}, {"a": [1, {"b": None}]},
    "2024-01-31 04:59:01.008000", "2024-01-31T04:59:01.008000", "2024-01-31 04:59:01", "2024-01-31 04:59:01.008",
    "2023-08-24T09:00:00+02:00", "2024-01-31 04:59:01.008000Z", "2022-13-45 00:00:00.000000", "2023-02-29 10:00:00.000000",
    "2024-01-31 24:00:00.000000", "2024-W05-3 04:59:01.008000", "2024-01-31 04:59:01.0080000", "x" * 26, "ü", "\u0660" * 4,
    "2024-01-31 04:59:01,008000", "2024-01-31 04:59:01.00800+0",
]


def general_path(shaper, raw, number):
    try:
        return orjson.loads(transform.encode(shaper.shape(transform.decode(raw), number)))
    except RejectedEvent:
        return None


def typed(value) -> str:
    return json.dumps(value, sort_keys=True)  # 1 and 1.0 differ here, as they do in the rows


def test_fast_path_gives_the_general_paths_row_or_declines():
    rng = random.Random(5)
    shaper = Shaper(LINEAGE)
    events = [*generated_events(150, utc(2020, 6, 1)), *generated_events(150, utc(2024, 6, 1))]
    taken = 0
    for number in range(4000):
        event = dict(rng.choice(events))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            key = rng.choice([*event, "brand_new", "uuid", "event_time"])
            if rng.random() < 0.85:
                event[key] = rng.choice(ODD_VALUES)
            else:
                event.pop(key, None)
        try:
            raw = orjson.dumps(event)
        except TypeError:  # an integer beyond 64 bits
            raw = json.dumps(event).encode()
        cut = rng.random()
        if cut < 0.03:
            raw = raw[:-1] + b',"uuid":"duplicate"}'
        elif cut < 0.05:
            raw = raw[: rng.randrange(len(raw))]
        elif cut < 0.06:
            raw = b"\xef\xbb\xbf" + raw
        fast = shaper.shape_line(raw, number)
        if fast is None:
            continue
        taken += 1
        expected = general_path(shaper, raw, number)
        assert expected is not None, raw
        # The fast row keeps a null field as null; the general row leaves it out. Both are NULL.
        assert typed({k: v for k, v in orjson.loads(fast).items() if v is not None}) == typed(expected), raw
    assert 1000 < taken < 4000  # both paths were exercised


def test_fast_timestamp_check_accepts_only_what_passes_through_unchanged():
    rng = random.Random(11)
    chars = "0123456789-: .T+Z,W\n\u0660\uff10x\"\\t"
    seen = {True: 0, False: 0}
    for _ in range(20000):
        value = list(rng.choice(["2024-01-31 04:59:01.008000", "2024-02-29 23:59:59.999999", "0001-01-01 00:00:00.000000",
                                 "2023-04-30 12:00:00.000000", "9999-12-31 23:59:59.999999"]))
        for _ in range(rng.randint(1, 3)):
            value[rng.randrange(len(value))] = rng.choice(chars)
        text = "".join(value)
        accepted = is_amplitude_timestamp(text)
        if accepted:
            assert to_timestamp("event_time", text) == text
        # The batch check (the fast path's, for strings of 26 characters) says the same of each.
        assert are_amplitude_timestamps([text]) == accepted, text
        assert are_amplitude_timestamps(["2024-01-31 04:59:01.008000", text, "2024-01-31 04:59:01.008000"]) == accepted, text
        seen[accepted] += 1
    assert min(seen.values()) > 1000  # both answers were exercised
    assert not is_amplitude_timestamp("2022-13-45 00:00:00.000000")
    assert not is_amplitude_timestamp("2023-02-29 00:00:00.000000")
    assert are_amplitude_timestamps([]) and are_amplitude_timestamps(["2024-02-29 23:59:59.999999"] * 500)
    for bad in ("2023-02-29 00:00:00.000000", "2024-01-31T04:59:01.008000", "2024-01-31 04:59:01.00800Z",
                "2024-01-31 24:00:00.000000", "0000-01-01 00:00:00.000000", '2024-01-31 04:5","2024-01-'):
        assert not are_amplitude_timestamps(["2024-01-31 04:59:01.008000"] * 40 + [bad] + ["2024-01-31 04:59:01.008000"])


def test_the_big_hour_zip_is_one_hour_in_parts_with_the_last_holding_the_part_twice(hours, tmp_path):
    part = hours[60]
    path, entries, copies = bench.big_hour_zip(tmp_path, part.ndjson_bytes * 4.5 / 1e9, part, echo=lambda _: None)
    assert (entries, copies) == (4, 5)
    with zipfile.ZipFile(path) as archive:
        plan = unpack.plan(archive.infolist(), HourRange(bench.BIG_HOUR, bench.BIG_HOUR))
        assert plan.refusals == [] and list(plan.hours) == [bench.BIG_HOUR] and len(plan.hours[bench.BIG_HOUR]) == 4
        sizes = sorted(info.file_size for info in archive.infolist())
        events = sum(len(gzip.decompress(archive.read(info)).splitlines()) for info in archive.infolist())
    assert sizes == [part.gzip_bytes] * 3 + [2 * part.gzip_bytes] and events == copies * part.events


def test_an_hour_projects_onto_units_running_at_once():
    hour = costs.project_hour(50_000_000, 2000, 5.0, 256 << 20, transform_cpu_s_per_gb=10.0, export_s_per_gzip_gb=10.0)
    assert hour.ndjson_gb == 100.0 and hour.gzip_gb == 20.0
    assert hour.units == 75  # 20 GB of gzip in 256 MiB units
    assert hour.unit_s == pytest.approx(10.0 * 100 / 75)
    assert hour.export_s == 200.0 and hour.wall_s == pytest.approx(200.0 + 10.0 * 100 / 75)
    assert hour.invocations == 2 + 2 * 75 and hour.fits
    assert not costs.project_hour(50_000_000, 2000, 5.0, 256 << 20, 10.0, 30.0).fits  # a 600 s export


def test_the_big_hour_ends_with_its_bighour_line(hours):
    from ampbq.tools.demo import DemoReport, HourReport
    part = hours[60]
    report = DemoReport(bench.BENCH_DAY, hours=[HourReport(bench.BIG_HOUR, 300, 299, 1)])
    result = {"report": report, "wall_s": 12.34, "entries": 4, "copies": 5, "events": 300, "ndjson_bytes": 5 * part.ndjson_bytes,
              "units": [{"unit": "unit 1 of 2", "duration_s": 2.0, "cpu_s": 1.5}, {"unit": "unit 2 of 2", "duration_s": 3.0, "cpu_s": 1.0}],
              "loads": [{"duration_s": 4.0, "loaded": 299}], "export": [{"duration_s": 5.0}]}
    lines = bench.big_hour_lines(result, part)
    assert lines[-1] == f"bighour: gb={5 * part.ndjson_bytes / 1e9:.2f} parts=4 events=300 loaded=299 rejected=1 wall_s=12.3"
    assert "  per unit, wall/CPU s: 1: 2/1.5, 2: 3/1.0" in lines
    assert not any(line.startswith("  phases") for line in lines)  # no times in the lines: no phases
    timed = dict(result, published=datetime(2024, 1, 31, 5, 0, 0, tzinfo=timezone.utc),
                 export=[{"duration_s": 5.0, "time": "2024-01-31T05:00:05+00:00"}],
                 units=[dict(u, time=f"2024-01-31T05:00:0{7 + n}+00:00") for n, u in enumerate(result["units"])])
    assert "  phases after publishing: export 5 s, transform of every unit 3 s, load and commit 4 s" in bench.big_hour_lines(timed, part)
    assert any("2 transform invocations" in line for line in lines)
    assert any("50,000,000 events" in line and "invocations" in line for line in lines)
