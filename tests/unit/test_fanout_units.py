"""A big hour's units: how its parts are cut, how units are named and recognised, what a task
holds, and which of two objects made from a source is the newer (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ampbq import gcs, hour_parts, naming
from ampbq.hour_parts import Part

HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)


def parts(*sizes: int) -> list[Part]:
    start, made = 0, []
    for index, size in enumerate(sizes):
        made.append(Part(f"p{index}", start, size))
        start += size
    return made


@pytest.mark.parametrize("sizes, limit, cut", [
    ((10, 10, 10, 10), 20, [[0, 1], [2, 3]]),
    ((10, 10, 10, 10), 25, [[0, 1], [2, 3]]),
    ((10, 10, 10, 10), 40, [[0, 1, 2, 3]]),
    ((10, 50, 10), 20, [[0], [1], [2]]),  # a part over the limit is a unit of its own
    ((5, 5, 50, 5, 5), 10, [[0, 1], [2], [3, 4]]),
    ((7,), 1, [[0]]),
    ((3, 3, 3), 1, [[0], [1], [2]]),
])
def test_units_are_runs_of_consecutive_parts_within_the_limit(sizes, limit, cut):
    planned = hour_parts.units(parts(*sizes), limit)
    assert [[int(p.label[1:]) for p in unit] for unit in planned] == cut
    assert [p for unit in planned for p in unit] == parts(*sizes)  # every part once, in order


def test_no_parts_is_no_units():
    assert hour_parts.units([], 10) == []


def test_a_unit_task_names_the_generation_and_the_byte_ranges_of_its_parts():
    unit = parts(3, 4, 5)[1:]
    body = hour_parts.unit_task("export/2024-01-31/05.json.gz", 17, unit)
    assert hour_parts.parse_unit_task(body) == ("export/2024-01-31/05.json.gz", 17, unit)
    assert hour_parts.parse_unit_task(body.encode()) == ("export/2024-01-31/05.json.gz", 17, unit)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"hour_object": "x"}', b'{"hour_object": "x", "generation": "g", "parts": []}',
                                  b'{"hour_object": "x", "generation": 1, "parts": [["a", 1]]}'])
def test_anything_else_is_not_a_unit_task(body):
    with pytest.raises(ValueError, match="not a unit task"):
        hour_parts.parse_unit_task(body)


@pytest.mark.parametrize("project", ["", "100002"])
def test_unit_names_round_trip_and_are_not_hour_or_import_objects(project):
    unit = naming.Unit(project, HOUR, 2, 8)
    task, rows = naming.unit_task_name(unit), naming.unit_import_name(unit)
    assert task == f"export/{project + '/' if project else ''}2024-01-31/05/unit-0002-of-0008.json"
    assert naming.parse_unit_task(task) == unit and naming.parse_unit_import(rows) == unit
    assert naming.parse_unit_import(task) is None and naming.parse_unit_task(rows) is None
    assert naming.scoped_hour_object(task) is None and naming.scoped_import_object(rows) is None
    assert rows.startswith(naming.unit_import_prefix(HOUR, project))
    assert naming.unit_rejects_name(unit).startswith("rejects/")
    assert unit.label == "unit 3 of 8"


@pytest.mark.parametrize("name", ["export/2024-01-31/05/unit-0008-of-0008.json", "export/2024-01-31/24/unit-0000-of-0002.json",
                                  "export/2024-01-31/05/unit-1-of-2.json", "import/2024-01-31/05/unit-0000-of-0002.json.gz"])
def test_what_is_not_a_unit_name(name):
    assert naming.parse_unit_task(name) is None and naming.parse_unit_import(name) is None


def test_newer_is_the_hour_objects_generation_first_then_the_tasks():
    assert gcs.made_from({"source_generation": "5"}) == (5, 0)
    assert gcs.made_from({"source_generation": "5", "unit_generation": "9"}) == (5, 9)
    assert gcs.made_from(None) == gcs.made_from({"source_generation": "x"}) == (0, 0)
    assert gcs.made_from({"source_generation": "6"}) > gcs.made_from({"source_generation": "5", "unit_generation": "9"})
    assert gcs.made_from({"source_generation": "5", "unit_generation": "10"}) > gcs.made_from({"source_generation": "5", "unit_generation": "9"})


def unit_info(index: int, units: int, source: int, generation: int, events: int, rejected: int = 0):
    from ampbq.tools.status import ObjectInfo
    unit = naming.Unit("", HOUR, index, units)
    return unit, ObjectInfo(naming.unit_import_name(unit), generation, 100, {
        "source_generation": str(source), "events": str(events), "rows": str(events - rejected), "rejected": str(rejected)})


def test_status_takes_a_fanned_out_hours_units_together_only_when_all_of_the_live_generation_are_there():
    from ampbq.tools.status import ObjectInfo, units_as_import
    hour_object = ObjectInfo(naming.hour_object_name(HOUR), 7)
    units = [unit_info(0, 3, 7, 101, 10), unit_info(1, 3, 7, 105, 20, 2), unit_info(2, 3, 7, 103, 30)]
    combined = units_as_import(hour_object, units)
    assert combined.generation == 105 and combined.name == "import/2024-01-31/05/"
    assert (combined.count("events"), combined.count("rows"), combined.count("rejected")) == (60, 58, 2)
    assert combined.metadata["source_generation"] == "7"
    assert units_as_import(hour_object, units[:2]) is None  # one unit not transformed yet
    assert units_as_import(ObjectInfo(hour_object.name, 8), units) is None  # made from an older generation
    assert units_as_import(None, units) is None
    # Beside an older fan-out of the same generation into two units, the complete newest set counts.
    older = [unit_info(0, 2, 7, 50, 1), unit_info(1, 2, 7, 51, 1)]
    assert units_as_import(hour_object, older + units).generation == 105
    assert units_as_import(hour_object, older + units[:2]).count("events") == 2


def test_a_part_split_at_line_ends_keeps_every_line_once_in_order():
    import gzip
    import io
    import os
    import zipfile

    from ampbq import unpack
    lines = b"".join(b'{"uuid": "%d", "x": "%s"}\n' % (i, os.urandom(24).hex().encode()) for i in range(30000))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # two gzip members in one part, as Amplitude's can be
        archive.writestr("1/1_2024-01-31_5#7.json.gz", gzip.compress(lines[:len(lines) // 3]) + gzip.compress(lines[len(lines) // 3:]))
    archive = zipfile.ZipFile(buffer)
    out = io.BytesIO()
    pieces = unpack.split_entry(archive, archive.infolist()[0], "p", 200_000, out)
    assert len(pieces) > 2 and out.tell() == sum(p.size for p in pieces)
    data, start, joined, line = out.getvalue(), 0, b"", 1
    for piece in pieces:
        assert piece.label == f"p from line {line}"
        content = gzip.decompress(data[start:start + piece.size])
        assert content.endswith(b"\n")
        joined += content
        line += content.count(b"\n")
        start += piece.size
    assert joined == lines


def test_a_damaged_part_is_not_split():
    import gzip
    import io
    import zipfile

    from ampbq import unpack
    from ampbq.transform import DamagedStream
    whole = gzip.compress(b'{"uuid": "a"}\n' * 10000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("1/1_2024-01-31_5#7.json.gz", whole[: len(whole) // 2])
    archive = zipfile.ZipFile(buffer)
    with pytest.raises(DamagedStream):
        unpack.split_entry(archive, archive.infolist()[0], "p", 10, io.BytesIO())


def test_never_more_units_than_names_and_one_load_job_allow():
    many = parts(*([10] * 30000))
    planned = hour_parts.units(many, 1)
    assert len(planned) <= hour_parts.MAX_UNITS
    assert [p for unit in planned for p in unit] == many


def test_a_plan_is_named_by_how_it_cuts_the_hour():
    four = parts(10, 10, 10, 10)
    assert hour_parts.plan_id(hour_parts.units(four, 20)) == hour_parts.plan_id(hour_parts.units(four, 25))
    assert hour_parts.plan_id(hour_parts.units(four, 20)) != hour_parts.plan_id(hour_parts.units(four, 10))
    assert hour_parts.plan_id(hour_parts.units(four, 20)) != hour_parts.plan_id(hour_parts.units(parts(10, 10, 10, 11), 21))


def test_only_a_part_readable_to_its_end_is_told_fit_to_split():
    import gzip
    import io
    import zipfile

    from ampbq import unpack
    whole = gzip.compress(b'{"uuid": "a"}\n' * 1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good.json.gz", whole)
        archive.writestr("cut.json.gz", whole[: len(whole) // 2])
    archive = zipfile.ZipFile(buffer)
    assert unpack.damage(archive, archive.getinfo("good.json.gz")) == ""
    assert "DamagedStream" in unpack.damage(archive, archive.getinfo("cut.json.gz"))


def test_unit_sets_group_a_generations_units_by_fan_out():
    def unit(index, units, source, plan="a"):
        return naming.Unit("", HOUR, index, units), {"source_generation": str(source), "plan": plan}, f"{index}/{units}{plan}@{source}"
    sets = naming.unit_sets([unit(0, 2, 7), unit(1, 2, 7), unit(0, 2, 7, "b"), unit(0, 3, 7), unit(1, 2, 6),
                             (naming.Unit("", HOUR, 2, 3), None, "no metadata")], 7)
    assert sets == {(2, "a"): {0: "0/2a@7", 1: "1/2a@7"}, (2, "b"): {0: "0/2b@7"}, (3, "a"): {0: "0/3a@7"}}
