import gzip
import io
import json
from datetime import datetime, timezone

import orjson

from ampbq import transform
from ampbq.shaping import Lineage
from helpers import gzip_ndjson

LINEAGE = Lineage(datetime(2024, 1, 31, 5, tzinfo=timezone.utc), "gs://b/export/2024-01-31/05.json.gz", 9)


def good(uuid: str) -> bytes:
    return orjson.dumps({"uuid": uuid, "event_time": "2024-01-31 04:00:00.000000",
                         "server_upload_time": "2024-01-31 05:00:00.000000", "event_type": "x"})


def run(raw: bytes):
    out, rejects = io.BytesIO(), io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(raw)), out, rejects, LINEAGE)
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    rejected = [orjson.loads(line) for line in rejects.getvalue().splitlines()]
    return counts, rows, rejected


def test_good_lines_become_rows_in_order():
    counts, rows, rejected = run(gzip_ndjson([good("a"), good("b")]))
    assert (counts.events, counts.rows, counts.rejected) == (2, 2, 0)
    assert [r["uuid"] for r in rows] == ["a", "b"] and [r["_source_line"] for r in rows] == [1, 2]
    assert rejected == []


def test_bad_lines_are_quarantined_with_line_number_and_reason_and_the_rest_loads():
    lines = [good("a"), b"{not json", b"[1,2]", b'{"uuid":"c"}', b"\xff\xfe garbage", good("d")]
    counts, rows, rejected = run(gzip_ndjson(lines))
    assert (counts.events, counts.rows, counts.rejected) == (6, 2, 4)
    assert [r["uuid"] for r in rows] == ["a", "d"]
    assert [r["line"] for r in rejected] == [2, 3, 4, 5]
    assert "not valid JSON" in rejected[0]["reason"] and rejected[0]["raw"] == "{not json"
    assert "not an object" in rejected[1]["reason"]
    assert "event_time" in rejected[2]["reason"]
    assert "UTF-8" in rejected[3]["reason"] and "raw_base64" in rejected[3]
    assert all(r["source_object"] == LINEAGE.source_object for r in rejected)


def test_blank_lines_and_crlf_are_not_events():
    counts, rows, _ = run(gzip_ndjson([good("a") + b"\r", b"", b"   ", good("b")]))
    assert (counts.events, counts.rows) == (2, 2)
    assert [r["_source_line"] for r in rows] == [1, 4]


def test_concatenated_gzip_members_read_as_one_hour():
    raw = gzip_ndjson([good("a")]) + gzip_ndjson([good("b"), good("c")])
    counts, rows, _ = run(raw)
    assert counts.rows == 3 and [r["_source_line"] for r in rows] == [1, 2, 3]


def test_truncated_gzip_keeps_the_lines_before_the_damage_and_records_it():
    raw = gzip_ndjson([good(str(i)) for i in range(2000)])
    counts, rows, rejected = run(raw[: len(raw) // 2])
    assert 0 < counts.rows < 2000
    assert counts.rejected == 1 and counts.rows + counts.rejected == counts.events
    assert "damaged" in rejected[-1]["reason"]


def test_huge_integer_inside_properties_survives_and_is_exact():
    line = good("a")[:-1] + b',"event_properties":{"big":123456789012345678901234567890}}'
    out = io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(gzip_ndjson([line]))), out, io.BytesIO(), LINEAGE)
    assert counts.rows == 1
    assert json.loads(out.getvalue())["event_properties"]["big"] == 123456789012345678901234567890


def test_line_over_the_limit_is_rejected_whole(monkeypatch):
    monkeypatch.setattr(transform, "MAX_LINE_BYTES", 300)
    long_line = good("a")[:-1] + b',"pad":"' + b"x" * 400 + b'"}'
    counts, rows, rejected = run(gzip_ndjson([long_line, good("b")]))
    assert (counts.rows, counts.rejected) == (1, 1)
    assert "byte limit" in rejected[0]["reason"] and rejected[0]["raw"] == long_line.decode()


def test_lines_split_across_read_chunks_are_reassembled(monkeypatch):
    monkeypatch.setattr(transform, "READ_CHUNK", 7)
    counts, rows, rejected = run(gzip_ndjson([good(str(i)) for i in range(50)]))
    assert (counts.rows, rejected) == (50, [])
    assert [(row["uuid"], row["_source_line"]) for row in rows] == [(str(i), i + 1) for i in range(50)]


def test_gzip_stream_hands_out_at_most_the_size_asked_for():
    data = b"".join(good(str(i)) + b"\n" for i in range(2000))
    stream = transform.open_gzip(io.BytesIO(gzip.compress(data) + gzip.compress(b"second member\n")))
    pieces = iter(lambda: stream.read(1000), b"")
    assert all(len(piece) <= 1000 for piece in pieces)
    stream = transform.open_gzip(io.BytesIO(gzip.compress(data) + gzip.compress(b"second member\n")))
    assert b"".join(iter(lambda: stream.read(1000), b"")) == data + b"second member\n"


def test_lazy_writer_opens_nothing_when_nothing_is_written():
    opened = []
    with transform.LazyWriter(lambda: opened.append(1) or io.BytesIO()):
        pass
    assert opened == []


def test_samples_transform_with_every_record_kept(samples, tmp_path):
    raw = gzip.compress(b"".join(orjson.dumps(record) + b"\n" for _, _, record in samples))
    counts, rows, rejected = run(raw)
    assert (counts.events, counts.rows, counts.rejected) == (len(samples), len(samples), 0)


def test_a_string_column_holding_an_object_with_a_huge_integer_keeps_it_exactly():
    line = good("a")[:-1] + b',"device_model":{"n":123456789012345678901234567890}}'
    out = io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(gzip_ndjson([line]))), out, io.BytesIO(), LINEAGE)
    assert counts.rows == 1
    assert json.loads(out.getvalue())["device_model"] == '{"n":123456789012345678901234567890}'


def test_nesting_deeper_than_the_parsers_allow_is_quarantined_not_fatal():
    line = good("a")[:-1] + b',"event_properties":' + b"[" * 100000 + b"]" * 100000 + b"}"
    counts, rows, rejected = run(gzip_ndjson([line, good("b")]))
    assert (counts.rows, counts.rejected) == (1, 1) and rows[0]["uuid"] == "b"


def test_a_failed_read_of_the_source_is_raised_not_recorded_as_damage():
    class Broken(io.BytesIO):
        def read(self, size=-1):
            raise ConnectionError("network went away")

    import pytest

    with pytest.raises(ConnectionError):
        transform.transform_stream(transform.open_gzip(Broken()), io.BytesIO(), io.BytesIO(), LINEAGE)


def generated_lines(count: int) -> list[bytes]:
    from datetime import date

    from ampbq.synthetic import Dataset

    hour = datetime(2024, 6, 1, 5, tzinfo=timezone.utc)
    return [orjson.dumps(event) for event in Dataset.for_day(date(2024, 6, 1), hours=1, events_per_hour=count).events(hour)]


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
    raw = gzip_ndjson(lines)
    as_runs = run(raw)
    with monkeypatch.context() as patch:
        patch.setattr(transform, "scan_lines", lambda text, end: (text.count(b"\n", 0, end), False))
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
