"""The parts of an hour are independent: each inflated on its own, its damage its own reject."""

import gzip
import io
import json
import zipfile
from datetime import date

import pytest

from ampbq import hour_parts, transform, unpack
from ampbq.tools import stub
from ampbq.naming import HourRange
from ampbq.shaping import Lineage
from ampbq.tools.synthetic import Dataset
from factory import entry_name, gzip_lines, hour_object, utc, zip_archive

HOUR = utc(2020, 11, 24, 9)
LINEAGE = Lineage(HOUR, "gs://b/export/2020-11-24/09.json.gz", 1)
DATASET = Dataset.for_day(date(2020, 11, 24), hours=10, events_per_hour=60, parts_per_hour=3)
PARTS = DATASET.hour_parts(HOUR)  # three parts of 20 events each


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 64]) + data[middle + 64:]


def indexed_hour_object(blobs: list[bytes]) -> tuple[bytes, list[hour_parts.Part]]:
    """The hour object and the parts its metadata records, as the export writes them."""
    labels = [name for name, _ in PARTS]
    metadata = hour_parts.encode(list(zip(labels, map(len, blobs))))
    data = b"".join(blobs)
    return data, hour_parts.decode(metadata, len(data))


def run(data: bytes, parts):
    out, rejects = io.BytesIO(), io.BytesIO()
    counts = transform.transform_parts(io.BytesIO(data), parts, out, rejects, LINEAGE)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    return counts, rows, [json.loads(line) for line in rejects.getvalue().splitlines()]


@pytest.mark.parametrize("damaged", [0, 1, 2])
@pytest.mark.parametrize("damage", [truncated, corrupt, lambda data: b"<html>not gzip</html>\n"])
def test_a_damaged_part_costs_only_its_own_lines(damaged, damage):
    blobs = [gzip_lines(lines) for _, lines in PARTS]
    blobs[damaged] = damage(blobs[damaged])
    counts, rows, rejects = run(*indexed_hour_object(blobs))
    intact = {i for i in range(3) if i != damaged}
    uuids = {row["uuid"] for row in rows}
    for i in intact:  # every event of the intact parts, wherever the damage is
        assert {json.loads(line)["uuid"] for line in PARTS[i][1]} <= uuids
    assert [r["part"] for r in rejects] == [PARTS[damaged][0]]
    assert "damaged" in rejects[0]["reason"] and PARTS[damaged][0] in rejects[0]["reason"]
    assert counts.rejected == 1 and counts.events == counts.rows + 1
    per_part = [(p.part, p.events, p.rows, p.rejected) for p in counts.parts]
    assert [p[0] for p in per_part] == [name for name, _ in PARTS]
    assert all(per_part[i][1:] == (20, 20, 0) for i in intact)
    assert per_part[damaged][3] == 1 and per_part[damaged][1] == per_part[damaged][2] + 1
    assert counts.as_metadata()["part_counts"] == ",".join(f"{e}:{r}:{j}" for _, e, r, j in per_part)
    # The count the demo and the stub make of the part agrees with what the transform recorded.
    assert stub_count(blobs[damaged]) == per_part[damaged][1]


def stub_count(blob: bytes) -> int:
    return transform.count_events(io.BytesIO(blob))


def test_read_as_one_stream_the_same_damage_took_the_later_parts():
    """What the index is for: without it, damage in the first part costs the other two."""
    blobs = [gzip_lines(lines) for _, lines in PARTS]
    blobs[0] = corrupt(blobs[0])
    data, parts = indexed_hour_object(blobs)
    assert run(data, None)[0].rows < 20 < run(data, parts)[0].rows


def test_line_numbers_run_on_across_parts_and_a_part_without_a_final_newline_keeps_its_last_line():
    blobs = [gzip.compress(b"\n".join(lines)) for _, lines in PARTS]  # no newline after each part's last line
    counts, rows, rejects = run(*indexed_hour_object(blobs))
    assert (counts.events, counts.rows, rejects) == (60, 60, [])
    assert [row["_source_line"] for row in rows] == list(range(1, 61))


def test_an_hour_object_without_an_index_or_with_a_wrong_one_is_one_part():
    data = hour_object(*(lines for _, lines in PARTS))
    assert hour_parts.decode({}, len(data)) is None
    metadata = hour_parts.encode([(name, 10) for name, _ in PARTS])
    assert hour_parts.decode(metadata, len(data)) is None  # sizes do not add up to the object
    counts, rows, _ = run(data, None)
    assert (counts.events, counts.rows, counts.parts) == (60, 60, [])


def test_the_index_round_trips_compactly():
    parts = [(entry_name(203138, HOUR, n), 40_000 + n) for n in (70, 627, 3)] + [(entry_name(203138, HOUR, 3) + "~2", 7)]
    metadata = hour_parts.encode(parts)
    # The common prefix once; no common suffix here, as the repeated name's label ends in ~2.
    assert metadata == {"part_index": "203138/203138_2020-11-24_9#||70.json.gz:40070,627.json.gz:40627,3.json.gz:40003,3.json.gz~2:7"}
    assert hour_parts.encode(parts[:3])["part_index"] == "203138/203138_2020-11-24_9#|.json.gz|70:40070,627:40627,3:40003"
    decoded = hour_parts.decode(metadata, sum(size for _, size in parts))
    assert [(p.label, p.size) for p in decoded] == parts
    assert [p.start for p in decoded] == [0, 40_070, 80_697, 120_700]
    odd = [("odd,na:me|+x", 7), ("", 0), ("ünï", 3)]  # any label survives: the separators are quoted
    assert [(p.label, p.size) for p in hour_parts.decode(hour_parts.encode(odd), 10)] == odd


def test_an_hour_of_very_many_parts_is_indexed_in_groups_within_the_budget():
    parts = [(entry_name(203138, HOUR, n), 1_000_000 + n) for n in range(3000)]
    metadata = hour_parts.encode(parts)
    assert len(metadata["part_index"]) <= hour_parts.INDEX_BUDGET
    decoded = hour_parts.decode(metadata, sum(size for _, size in parts))
    assert 1 < len(decoded) < 3000
    assert decoded[0].label.startswith(parts[0][0] + " and the ")
    assert sum(p.size for p in decoded) == sum(size for _, size in parts)
    # Groups are of consecutive parts: each starts where a part starts.
    starts, position = set(), 0
    for _, size in parts:
        starts.add(position)
        position += size
    assert all(p.start in starts for p in decoded)


def test_per_part_counts_of_many_parts_fall_back_to_the_parts_with_rejects():
    many = [transform.PartCounts(f"p{i}", 1000, 1000, 0) for i in range(2000)]
    many[7] = transform.PartCounts("p7", 1000, 998, 2)
    assert transform.part_counts_text(many) == "rejected-only;7=1000:998:2"
    assert len(transform.part_counts_text([transform.PartCounts("p", 9, 8, 1)] * 2000)) <= transform.PART_COUNTS_BUDGET


def test_a_name_the_zip_holds_twice_loses_nothing():
    name = PARTS[0][0]
    first, second = gzip_lines(PARTS[0][1]), gzip_lines(PARTS[1][1])
    archive = zipfile.ZipFile(zip_archive([(name, first), (name, second)]))  # one name twice, on purpose
    assert len(archive.infolist()) == 2 and archive.namelist() == [name, name]
    plan = unpack.plan(archive.infolist(), HourRange.day(HOUR.date()))
    members = plan.hours[HOUR]
    assert [m.label for m in members] == [name, f"{name}~2"]
    out = io.BytesIO()
    copied = unpack.copy_hour(archive, members, out)
    assert [c.size for c in copied] == [len(first), len(second)]
    metadata = hour_parts.encode([(m.label, m.info.file_size) for m in members])
    counts, rows, _ = run(out.getvalue(), hour_parts.decode(metadata, len(out.getvalue())))
    assert (counts.events, counts.rows) == (40, 40)
    assert stub.events_per_hour(zip_archive([(name, first), (name, second)]))[HOUR] == 40


def test_refused_entries_record_name_size_hour_and_whether_they_hold_data():
    good = gzip_lines(PARTS[0][1])
    later = entry_name(203138, utc(2020, 11, 26, 3), 1)
    archive = zipfile.ZipFile(zip_archive([(PARTS[0][0], good), ("../evil.json.gz", gzip_lines([b'{"uuid": "x"}'])),
                                        (later, gzip_lines([b'{"uuid": "y"}'])), ("203138/empty.json.gz", gzip.compress(b"\n")),
                                        ("203138/notes.txt", b"")]))
    plan = unpack.plan(archive.infolist(), HourRange.day(HOUR.date()))
    records = {r.name: r.record(unpack.holds_data(archive, r.info)) for r in plan.refusals}
    assert records["../evil.json.gz"]["data"] and records["../evil.json.gz"]["hour"] is None
    assert records[later]["hour"] == "2020-11-26T03" and records[later]["data"]
    assert records[later]["size"] == archive.getinfo(later).file_size
    assert not records["203138/empty.json.gz"]["data"] and not records["203138/notes.txt"]["data"]
    assert len(plan.refused) == 4


def test_an_entry_the_zip_cannot_read_is_padded_to_its_size_and_rejected_alone(tmp_path):
    blobs = [gzip_lines(lines) for _, lines in PARTS]
    raw = bytearray(zip_archive([(name, blob) for (name, _), blob in zip(PARTS, blobs)]).getvalue())  # stored
    at = raw.find(blobs[1]) + len(blobs[1]) // 2
    raw[at] ^= 0xFF  # the middle part's bytes no longer match its CRC
    archive = zipfile.ZipFile(io.BytesIO(bytes(raw)))
    with pytest.raises(zipfile.BadZipFile):
        archive.read(PARTS[1][0])
    members = unpack.plan(archive.infolist(), HourRange.day(HOUR.date())).hours[HOUR]
    out = io.BytesIO()
    copied = unpack.copy_hour(archive, members, out)
    assert [bool(c.error) for c in copied] == [m.name == PARTS[1][0] for m in members]
    assert [c.size for c in copied] == [m.info.file_size for m in members]
    metadata = hour_parts.encode([(m.label, m.info.file_size) for m in members])
    counts, rows, rejects = run(out.getvalue(), hour_parts.decode(metadata, len(out.getvalue())))
    assert counts.rows >= 40 and [r["part"] for r in rejects] == [PARTS[1][0]]
    # The stub serves, and the demo counts, the very bytes the export copied.
    assert stub.events_per_hour(io.BytesIO(bytes(raw)))[HOUR] == counts.events
    (tmp_path / "damaged.zip").write_bytes(raw)
    served = io.BytesIO()
    stub.ZipSource(tmp_path / "damaged.zip").write(HourRange.day(HOUR.date()), served)
    with zipfile.ZipFile(served) as again:
        assert again.testzip() is None  # a valid zip now, holding the same bytes
        assert b"".join(again.read(m.name) for m in members) == out.getvalue()


def test_the_slice_reads_only_its_range_and_seeks_past_an_unfinished_part():
    source = io.BytesIO(b"aaaabbbbcccc")
    first, second = hour_parts.Slice(source, 0, 4), hour_parts.Slice(source, 8, 4)
    assert first.read(2) == b"aa"
    assert second.read() == b"cccc" and second.read() == b""
    assert first.read(100) == b"aa"


def test_demo_on_a_file_that_is_not_a_zip_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from ampbq.tools.cli import main

    path = tmp_path / "export.zip"
    path.write_bytes(b"<html>Too many requests</html>")
    result = CliRunner().invoke(main, ["demo", "--zip", str(path), "--workdir", str(tmp_path / "stack")])
    assert result.exit_code == 1 and f"Error: {path} is not a readable zip" in result.output
    assert "Traceback" not in result.output
