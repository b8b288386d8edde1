import io
import zipfile
from datetime import date

from ampbq import schema
from ampbq.shaping import RENAMED
from ampbq.tools.stub import events_per_hour
from ampbq.tools.synthetic import Dataset, write_export_zip


def test_generated_events_cover_every_exported_column_with_a_value():
    dataset = Dataset.for_day(date(2024, 1, 1), hours=1, events_per_hour=300)
    seen = set()
    for event in dataset.events(dataset.start):
        seen |= {RENAMED.get(k, k) for k, v in event.items() if v not in (None, {}, [])}
    always_null = {"adid", "idfa", "device_brand", "device_manufacturer", "amplitude_event_type", "partner_id",
                   "source_id", "sample_rate"}  # null in every real sample too
    exported = {f["name"] for f in schema.fields() if not f["name"].startswith("_")}
    assert exported - always_null <= seen


def test_generated_events_show_the_type_drift_of_real_exports():
    events = list(Dataset.for_day(date(2020, 6, 1), hours=1, events_per_hour=400).events(Dataset.for_day(date(2020, 6, 1)).start))
    assert {type(e["$schema"]) for e in events} == {int, type(None)}
    assert {len(e) for e in events} == {49, 55}  # 2020-era and modern field sets
    assert {type(e["amplitude_attribution_ids"]) for e in events} == {list, type(None)}


def test_zip_has_amplitude_layout_with_unpadded_hours_and_several_parts():
    buffer = io.BytesIO()
    dataset = Dataset.for_day(date(2024, 1, 1), hours=12, events_per_hour=10, parts_per_hour=2)
    assert write_export_zip(dataset, buffer) == 120
    names = zipfile.ZipFile(buffer).namelist()
    assert "203138/203138_2024-01-01_9#627.json.gz" in names and "203138/203138_2024-01-01_9#70.json.gz" in names
    assert sum(events_per_hour(buffer).values()) == 120


def test_same_dataset_gives_same_bytes():
    dataset = Dataset.for_day(date(2024, 1, 1), hours=1, events_per_hour=5)
    assert list(dataset.lines(dataset.start)) == list(dataset.lines(dataset.start))


def test_a_sparse_day_has_events_only_in_every_nth_hour():
    from ampbq.tools.synthetic import Dataset
    day = Dataset.for_day(date(2021, 5, 3), events_per_hour=2, hour_step=3)
    with_events = [h.hour for h in day.range.hours() if list(day.events(h))]
    assert with_events == list(range(0, 24, 3))
    assert list(Dataset.for_day(date(2021, 5, 3), events_per_hour=2).events(day.start.replace(hour=1)))
