import gzip
import io
import zipfile
from datetime import date, datetime, timezone

from ampbq import unpack
from ampbq.naming import HourRange
from ampbq.tools.synthetic import Dataset, write_export_zip

DAY = HourRange.day(date(2020, 11, 24))


def test_plan_groups_parts_by_hour_and_refuses_the_rest():
    names = ["203138/", "203138/203138_2020-11-24_9#627.json.gz", "203138/203138_2020-11-24_9#70.json.gz",
             "203138/203138_2020-11-24_10#627.json.gz", "203138/203138_2020-11-25_0#1.json.gz",
             "../evil.json.gz", "203138/notes.txt"]
    plan = unpack.plan(names, DAY)
    hours = {hour.hour: [e.partition for e in entries] for hour, entries in plan.hours.items()}
    assert hours == {9: ["70", "627"], 10: ["627"]}
    assert len(plan.refused) == 3
    assert any("outside" in reason for reason in plan.refused)


def test_copy_hour_concatenates_parts_into_one_readable_gzip():
    dataset = Dataset.for_day(date(2020, 11, 24), hours=2, events_per_hour=30, parts_per_hour=3)
    buffer = io.BytesIO()
    write_export_zip(dataset, buffer)
    with zipfile.ZipFile(buffer) as archive:
        plan = unpack.plan(archive.namelist(), DAY)
        out = io.BytesIO()
        hour = datetime(2020, 11, 24, 1, tzinfo=timezone.utc)
        unpack.copy_hour(archive, plan.hours[hour], out)
    lines = gzip.decompress(out.getvalue()).splitlines()
    assert sorted(lines) == sorted(dataset.lines(hour))
