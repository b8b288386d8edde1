import io
import json

import orjson

from ampbq import transform
from ampbq.shaping import Lineage
from factory import event_line, generated_events, gzip_lines, hour_object, ndjson, utc

LINEAGE = Lineage(utc(2024, 1, 31, 5), "gs://b/export/2024-01-31/05.json.gz", 9)


def good(uuid: str) -> bytes:
    return event_line(uuid, "2024-01-31 05:00:00.000000", "2024-01-31 04:00:00.000000", event_type="x")


def run(raw: bytes):
    out, rejects = io.BytesIO(), io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(raw)), out, rejects, LINEAGE)
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    rejected = [orjson.loads(line) for line in rejects.getvalue().splitlines()]
    return counts, rows, rejected


def test_good_lines_become_rows_in_order():
    counts, rows, rejected = run(gzip_lines([good("a"), good("b")]))
    assert (counts.events, counts.rows, counts.rejected) == (2, 2, 0)
    assert [r["uuid"] for r in rows] == ["a", "b"] and [r["_source_line"] for r in rows] == [1, 2]
    assert rejected == []


def test_bad_lines_are_quarantined_with_line_number_and_reason_and_the_rest_loads():
    lines = [good("a"), b"{not json", b"[1,2]", b'{"uuid":"c"}', b"\xff\xfe garbage", good("d")]
    counts, rows, rejected = run(gzip_lines(lines))
    assert (counts.events, counts.rows, counts.rejected) == (6, 2, 4)
    assert [r["uuid"] for r in rows] == ["a", "d"]
    assert [r["line"] for r in rejected] == [2, 3, 4, 5]
    assert "not valid JSON" in rejected[0]["reason"] and rejected[0]["raw"] == "{not json"
    assert "not an object" in rejected[1]["reason"]
    assert "event_time" in rejected[2]["reason"]
    assert "UTF-8" in rejected[3]["reason"] and "raw_base64" in rejected[3]
    assert all(r["source_object"] == LINEAGE.source_object for r in rejected)


def test_blank_lines_and_crlf_are_not_events():
    counts, rows, _ = run(gzip_lines([good("a") + b"\r", b"", b"   ", good("b")]))
    assert (counts.events, counts.rows) == (2, 2)
    assert [r["_source_line"] for r in rows] == [1, 4]


def test_concatenated_gzip_members_read_as_one_hour():
    raw = hour_object([good("a")], [good("b"), good("c")])
    counts, rows, _ = run(raw)
    assert counts.rows == 3 and [r["_source_line"] for r in rows] == [1, 2, 3]


def test_truncated_gzip_keeps_the_lines_before_the_damage_and_records_it():
    raw = gzip_lines([good(str(i)) for i in range(2000)])
    counts, rows, rejected = run(raw[: len(raw) // 2])
    assert 0 < counts.rows < 2000
    assert counts.rejected == 1 and counts.rows + counts.rejected == counts.events
    assert "damaged" in rejected[-1]["reason"]


def test_huge_integer_inside_properties_survives_and_is_exact():
    line = good("a")[:-1] + b',"event_properties":{"big":123456789012345678901234567890}}'
    out = io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(gzip_lines([line]))), out, io.BytesIO(), LINEAGE)
    assert counts.rows == 1
    assert json.loads(out.getvalue())["event_properties"]["big"] == 123456789012345678901234567890


def test_line_over_the_limit_is_rejected_whole(monkeypatch):
    monkeypatch.setattr(transform, "MAX_LINE_BYTES", 300)
    long_line = good("a")[:-1] + b',"pad":"' + b"x" * 400 + b'"}'
    counts, rows, rejected = run(gzip_lines([long_line, good("b")]))
    assert (counts.rows, counts.rejected) == (1, 1)
    assert "byte limit" in rejected[0]["reason"] and rejected[0]["raw"] == long_line.decode()


def test_lines_split_across_read_chunks_are_reassembled(monkeypatch):
    monkeypatch.setattr(transform, "READ_CHUNK", 7)
    counts, rows, rejected = run(gzip_lines([good(str(i)) for i in range(50)]))
    assert (counts.rows, rejected) == (50, [])
    assert [(row["uuid"], row["_source_line"]) for row in rows] == [(str(i), i + 1) for i in range(50)]


def test_gzip_stream_hands_out_at_most_the_size_asked_for():
    lines = [good(str(i)) for i in range(2000)]
    data = ndjson(lines)
    stream = transform.open_gzip(io.BytesIO(hour_object(lines, [b"second member"])))
    pieces = iter(lambda: stream.read(1000), b"")
    assert all(len(piece) <= 1000 for piece in pieces)
    stream = transform.open_gzip(io.BytesIO(hour_object(lines, [b"second member"])))
    assert b"".join(iter(lambda: stream.read(1000), b"")) == data + b"second member\n"


def test_lazy_writer_opens_nothing_when_nothing_is_written():
    opened = []
    with transform.LazyWriter(lambda: opened.append(1) or io.BytesIO()):
        pass
    assert opened == []


def test_samples_transform_with_every_record_kept(samples, tmp_path):
    raw = gzip_lines(orjson.dumps(record) for _, _, record in samples)
    counts, rows, rejected = run(raw)
    assert (counts.events, counts.rows, counts.rejected) == (len(samples), len(samples), 0)


def test_a_string_column_holding_an_object_with_a_huge_integer_keeps_it_exactly():
    line = good("a")[:-1] + b',"device_model":{"n":123456789012345678901234567890}}'
    out = io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(gzip_lines([line]))), out, io.BytesIO(), LINEAGE)
    assert counts.rows == 1
    assert json.loads(out.getvalue())["device_model"] == '{"n":123456789012345678901234567890}'


def test_nesting_deeper_than_the_parsers_allow_is_quarantined_not_fatal():
    line = good("a")[:-1] + b',"event_properties":' + b"[" * 100000 + b"]" * 100000 + b"}"
    counts, rows, rejected = run(gzip_lines([line, good("b")]))
    assert (counts.rows, counts.rejected) == (1, 1) and rows[0]["uuid"] == "b"


def test_a_failed_read_of_the_source_is_raised_not_recorded_as_damage():
    class Broken(io.BytesIO):
        def read(self, size=-1):
            raise ConnectionError("network went away")

    import pytest

    with pytest.raises(ConnectionError):
        transform.transform_stream(transform.open_gzip(Broken()), io.BytesIO(), io.BytesIO(), LINEAGE)


def generated_lines(count: int) -> list[bytes]:
    return [orjson.dumps(event) for event in generated_events(count, utc(2024, 6, 1, 5))]


def test_scan_lines_counts_lines_and_tells_whether_each_is_one_brace_pair():
    from ampbq.bytescan import scan_lines

    assert scan_lines(b'{"a":1}\n{"b":{}}\n{"c', 17) == (2, True)
    assert scan_lines(b"", 0) == (0, True)
    for text in (b'{"a":1}\n\n{"b":2}\n', b'{"a":1}\n {"b":2}\n', b'{"a":1}\r\n', b'{"a":\n1}\n', b'[1]\n', b'{"a":1} \n'):
        assert scan_lines(text, len(text)) == (text.count(b"\n"), False), text


def shaped_both_ways(monkeypatch, lines: list[bytes]):
    """The hour shaped as the transform does it (runs of lines where it can), and line by line only."""
    monkeypatch.setattr(transform, "READ_CHUNK", 20_000)  # many chunks, and a chunk with few runs
    monkeypatch.setattr(transform, "RUN_BYTES", 6_000)
    raw = gzip_lines(lines)
    as_runs = run(raw)
    with monkeypatch.context() as patch:
        patch.setattr(transform, "scan_chunk", lambda text, end, most: (text.count(b"\n", 0, end), False, False))
        one_by_one = run(raw)
    return as_runs, one_by_one


def test_runs_of_lines_give_exactly_the_rows_and_rejects_of_line_by_line(monkeypatch):
    from ampbq import shaping

    runs_taken = []
    original = shaping._FastPath.rows_unscreened
    monkeypatch.setattr(shaping._FastPath, "rows_unscreened",
                        lambda self, lines, first: runs_taken.append(r) or r if (r := original(self, lines, first)) else r)
    lines = generated_lines(400)
    odd = {
        # Two events on one line, and one event over two lines, in one run: a run decoder would
        # find two values on the first line and one on the other two, so the totals would balance.
        37: lines[37] + lines[38],
        39: lines[39].replace(b',"', b',\n"', 1),
        90: b"", 91: b"   ", 120: b" " + lines[120], 150: lines[150] + b"\r",
        200: lines[200].replace(b'"os_version":"', b'"os_version":1,"x":"', 1),  # takes the general path
        250: lines[250][:-1] + b',"event_type":"twice"}',  # a repeated key
        300: b"{not json}", 350: lines[350][:-1],
    }
    # Drifted types in a stretch of lines: runs in a row decline, and chunks end line by line.
    odd |= {at: lines[at].replace(b'"os_version":"', b'"os_version":2,"y":"', 1) for at in range(270, 290, 2)}
    for at, line in odd.items():
        lines[at] = line
    (counts, rows, rejected), (counts_1, rows_1, rejected_1) = shaped_both_ways(monkeypatch, lines)
    assert (counts.events, counts.rows, counts.rejected) == (counts_1.events, counts_1.rows, counts_1.rejected)
    assert rows == rows_1 and rejected == rejected_1
    assert sum(count for _, count in runs_taken) > 250  # most lines did go through runs
    # Numbered as lines of the file: the split event adds one from line 41 on.
    assert [r["line"] for r in rejected] == [38, 40, 41, 252, 302, 352]
    assert counts.events == 400 + 1 - 2  # the split line is two lines; the blank ones are not events
    assert counts.rows + counts.rejected == counts.events


def test_runs_keep_line_numbers_across_chunks_and_runs(monkeypatch):
    lines = generated_lines(300)
    (counts, rows, rejected), (_, rows_1, _) = shaped_both_ways(monkeypatch, lines)
    assert (counts.rows, rejected) == (300, [])
    assert [row["_source_line"] for row in rows] == list(range(1, 301)) and rows == rows_1


def test_glibc_takes_the_allocator_thresholds():
    import platform

    import pytest

    from ampbq import allocator

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert allocator.keep_freed_buffers()


# What BigQuery refuses never reaches a load, and nothing is silently changed: each limit below is
# checked among ordinary generated lines, so the fast path's runs and scans see it too.

def among_ordinary_lines(monkeypatch, odd: list[bytes]):
    """`odd` lines spread among 200 generated ones, in chunks of a few runs; (counts, rows,
    rejected, rows of the odd lines by line number)."""
    monkeypatch.setattr(transform, "READ_CHUNK", 40_000)
    monkeypatch.setattr(transform, "RUN_BYTES", 6_000)
    lines = generated_lines(200)
    at = {}
    for i, line in enumerate(odd):
        position = 7 + i * (190 // max(len(odd), 1))
        lines.insert(position, line)
        at[position + 1] = line
    counts, rows, rejected = run(gzip_lines(lines))
    assert counts.events == len(lines) and counts.rows + counts.rejected == counts.events
    assert len(rows) == counts.rows and len(rejected) == counts.rejected
    odd_rows = {row["_source_line"]: row for row in rows if row["_source_line"] in at}
    assert all(record["line"] in at for record in rejected)  # no ordinary line was rejected
    return counts, rows, rejected, odd_rows


def with_fields(uuid: str, fields: bytes) -> bytes:
    return good(uuid)[:-1] + b"," + fields + b"}"


def test_numbers_beyond_float64_are_rejected_on_every_path_and_the_largest_kept(monkeypatch):
    too_big = [b"1e400", b"-1e400", b"1e309", b"-1E+309", b"1.5e99999"]
    odd = [with_fields(f"p{i}", b'"event_properties":{"v":' + n + b"}") for i, n in enumerate(too_big)]
    odd += [with_fields("lat", b'"location_lat":1e400'), with_fields("os", b'"os_version":1e309'),
            with_fields("extra", b'"not_in_schema":[1,-1e400]'), with_fields("id", b'"event_id":1e400'),
            with_fields("edge", b'"event_properties":{"v":1e308,"w":-1.7976931348623157e308},"location_lat":1e308')]
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, odd)
    reasons = [r["reason"] for r in rejected]
    assert len(reasons) == 9 and all(reason.endswith(
        "is beyond FLOAT64's range (about ±1.8e308): no column or JSON value can hold it exactly") for reason in reasons)
    assert reasons[0] == ("line is JSON but the number 1e400 is beyond FLOAT64's range (about ±1.8e308): "
                          "no column or JSON value can hold it exactly")
    (edge,) = odd_rows.values()
    assert edge["event_properties"] == {"v": 1e308, "w": -1.7976931348623157e308} and edge["location_lat"] == 1e308


def test_integers_beyond_int64_are_rejected_and_its_edges_kept(monkeypatch):
    odd = [with_fields("over", b'"event_id":9223372036854775808'),
           with_fields("under", b'"session_id":-9223372036854775809'),
           with_fields("max", b'"event_id":9223372036854775807,"session_id":-9223372036854775808')]
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, odd)
    assert [r["reason"] for r in rejected] == [
        "field 'event_id': expected an integer within INT64, got 9223372036854775808",
        "field 'session_id': expected an integer within INT64, got -9223372036854775809"]
    (edge,) = odd_rows.values()
    assert (edge["event_id"], edge["session_id"]) == (2**63 - 1, -(2**63))


def test_integers_a_float64_cannot_hold_are_rejected_from_float_columns(monkeypatch):
    # msgspec's float would take 2**53 + 1 as 2**53; 2**60 is a float exactly.
    odd = [with_fields("odd", b'"location_lat":9007199254740993'), with_fields("huge", b'"sample_rate":' + b"9" * 400),
           with_fields("ok", b'"location_lat":9007199254740992,"location_lng":1152921504606846976,"sample_rate":-3')]
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, odd)
    assert [r["reason"].split(", got")[0] for r in rejected] == [
        "field 'location_lat': expected a number FLOAT64 holds exactly",
        "field 'sample_rate': expected a number FLOAT64 holds exactly"]
    (edge,) = odd_rows.values()
    assert (edge["location_lat"], edge["location_lng"], edge["sample_rate"]) == (2.0**53, 2.0**60, -3.0)


def nested(depth: int) -> bytes:
    return b"[" * (depth - 1) + b"{}" + b"]" * (depth - 1)  # `depth` levels: the innermost is {}


def test_json_nested_beyond_bigquerys_limit_is_rejected_and_499_levels_kept(monkeypatch):
    from ampbq.shaping import MAX_NESTING

    assert MAX_NESTING == 500  # the row is level 1, so a JSON column's value may have 499
    odd = [with_fields("deep", b'"event_properties":' + nested(500)),
           with_fields("deeper", b'"user_properties":{"a":' + nested(700) + b"}"),
           with_fields("unparseable", b'"groups":' + nested(50_000)),
           with_fields("extra", b'"not_in_schema":' + nested(499)),  # `_extra` adds a level
           with_fields("edge", b'"event_properties":' + nested(499)),
           with_fields("brackets", b'"platform":"' + b"[" * 800 + b'","device_model":' + nested(700))]
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, odd)
    reasons = {r["raw"][:200].split('"uuid":"')[1].split('"')[0]: r["reason"] for r in rejected}
    limit = "nested deeper than BigQuery's JSON limit of 500 levels (counting the row as the first)"
    assert reasons == {"deep": f"field 'event_properties' is {limit}", "deeper": f"field 'user_properties' is {limit}",
                       "unparseable": "line is nested too deep to parse, far beyond BigQuery's JSON limit of 500 levels",
                       "extra": f"field '_extra' is {limit}"}
    edge, text_column = sorted(odd_rows.values(), key=lambda row: row["uuid"])[::-1]
    assert edge["uuid"] == "edge" and edge["event_properties"] == orjson.loads(nested(499))
    # Brackets inside strings are not nesting, and a STRING column holds the value as text.
    assert text_column["platform"] == "[" * 800 and text_column["device_model"] == nested(700).decode()


def test_a_row_over_bigquerys_row_limit_is_rejected_naming_its_largest_field(monkeypatch):
    # The fast path's rows are never measured: they are at most 4.5 times their line (`1e15` is
    # written out in full), and lines over MAX_LINE_BYTES are rejected before.
    assert transform.MAX_ROW_BYTES == 100_000_000 and 4.5 * transform.MAX_LINE_BYTES + 10_000 < transform.MAX_ROW_BYTES
    monkeypatch.setattr(transform, "MAX_ROW_BYTES", 6_000)
    # An object in a STRING column becomes escaped text: the row is longer than its line.
    quotes = b'{"q":[' + b",".join([b'"\\\\\\""'] * 600) + b"]}"
    long_row = with_fields("long", b'"device_model":' + quotes)
    assert len(long_row) < 6_000 < len(transform.encode({"device_model": quotes.decode()})) * 1.5
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, [long_row, with_fields("short", b'"device_model":{"q":1}')])
    (record,) = rejected
    assert record["reason"].startswith("its row would be ") and record["reason"].endswith(
        "bytes, over BigQuery's 6000 byte limit for a JSON row (the largest field is 'device_model')")
    assert [row["device_model"] for row in odd_rows.values()] == ['{"q":1}']


def test_timestamps_outside_bigquerys_range_are_rejected_and_its_edges_kept(monkeypatch):
    def at(uuid, event_time):
        return good(uuid).replace(b'"2024-01-31 04:00:00.000000"', b'"' + event_time + b'"')

    odd = [at("before", b"0001-01-01T00:30:00+01:00"), at("after", b"9999-12-31T23:30:00-01:00"),
           at("year0", b"0000-12-31 23:59:59.999999"), at("year10000", b"10000-01-01 00:00:00.000000"),
           with_fields("client", b'"client_event_time":"9999-12-31T23:59:59.999999-00:01"'),
           at("first", b"0001-01-01 00:00:00.000000"), at("last", b"9999-12-31 23:59:59.999999"),
           at("first_iso", b"0001-01-01T01:00:00+01:00"), at("last_iso", b"9999-12-31T22:59:59.999999-01:00")]
    counts, rows, rejected, odd_rows = among_ordinary_lines(monkeypatch, odd)
    in_range = "expected a timestamp within BigQuery's range (0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC)"
    assert [r["reason"].split(", got")[0] for r in rejected] == [f"field 'event_time': {in_range}"] * 4 + [
        f"field 'client_event_time': {in_range}"]
    kept = {row["uuid"]: row["event_time"] for row in odd_rows.values()}
    # Year 1 keeps its four digits (strftime would write "1-01-01", which BigQuery refuses).
    assert kept == {"first": "0001-01-01 00:00:00.000000", "last": "9999-12-31 23:59:59.999999",
                    "first_iso": "0001-01-01 00:00:00.000000", "last_iso": "9999-12-31 23:59:59.999999"}
