"""Amplitude's own cloud-storage export: its object names, and when an hour is complete and which
parts make it (ampbq.naming, ampbq.native, the scan range, the settings)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ampbq import events, naming, native
from ampbq.config import Config
from ampbq.errors import PermanentError
from ampbq.naming import HourRange
from factory import pubsub_event

H5 = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)
QUIET = timedelta(minutes=30)
COMPLETE = naming.complete_at(H5, 2)  # 08:00


@pytest.mark.parametrize("name, prefix, hour, partition", [
    ("187520/187520_2020-01-25_17#1.json.gz", "", datetime(2020, 1, 25, 17), "1"),
    ("events/187520/187520_2020-01-25_9#627.json.gz", "events", datetime(2020, 1, 25, 9), "627"),
    ("a/b/203138/203138_2024-01-31_0#70.json.gz", "/a/b/", datetime(2024, 1, 31, 0), "70"),
])
def test_parts_are_recognised_with_unpadded_hours_and_opaque_partitions(name, prefix, hour, partition):
    part = naming.parse_native_part(name, prefix)
    assert part == naming.NativePart(name, name.split("/")[-2], hour.replace(tzinfo=timezone.utc), partition)


@pytest.mark.parametrize("name, prefix", [
    ("merged/-189524/-189524_2020-01-25_17.json.gz", "merged"),  # merged Amplitude ids, not events
    ("187520/187520_2020-01-25_17#1.json.gz", "events"),  # outside the prefix
    ("events/187520/187520_2020-01-25_17#1.json.gz", ""),  # a folder deeper than the prefix says
    ("187520/187521_2020-01-25_17#1.json.gz", ""),  # another project's file in this one's folder
    ("187520/187520_2020-01-25_24#1.json.gz", ""),
    ("187520/187520_2020-02-30_1#1.json.gz", ""),
    ("187520/187520_2020-01-25_05.json.gz", ""),  # no partition
    ("187520/187520_2020-01-25_5#1.json", ""),
    ("187520/amplitude-test-upload.txt", ""),
])
def test_anything_else_is_not_a_part(name, prefix):
    assert naming.parse_native_part(name, prefix) is None


def part(partition: str, minutes_after_complete: float, checksum: str = "c", size: int = 10) -> native.ListedPart:
    name = f"203138/203138_2024-01-31_5#{partition}.json.gz"
    return native.ListedPart(naming.NativePart(name, "203138", H5, partition),
                             COMPLETE + timedelta(minutes=minutes_after_complete), size, checksum + partition)


def plan(parts, now_after_complete: float, assembled: str = "") -> native.HourPlan:
    return native.plan_hour(H5, parts, COMPLETE + timedelta(minutes=now_after_complete), 2, QUIET, assembled)


def test_an_hour_without_parts_has_nothing_to_do():
    assert plan([], 600).state == "none"


def test_an_hour_waits_for_amplitude_to_have_it_complete_and_then_for_the_quiet_period():
    early = [part("1", -90), part("2", -80)]  # written at 06:30 and 06:40
    assert plan(early, -1).state == "waiting" and plan(early, -1).ready_at == COMPLETE
    ready = plan(early, 0)
    assert ready.state == "ready" and [p.part.partition for p in ready.parts] == ["1", "2"]
    late = [part("1", -5), part("2", 10)]  # the last part 10 min after the hour was complete
    assert plan(late, 39).state == "waiting" and plan(late, 39).ready_at == COMPLETE + timedelta(minutes=40)
    assert plan(late, 40).state == "ready"


def test_parts_are_in_partition_order_whatever_order_they_arrived_in():
    ready = plan([part("10", 1), part("9", 2), part("627", 0), part("3", 3)], 60)
    assert [p.part.partition for p in ready.parts] == ["3", "9", "10", "627"]


def test_a_part_written_after_the_hour_was_ready_starts_a_new_delivery_that_replaces_the_earlier_set():
    first = [part("1", 0), part("2", 1), part("3", 2)]
    resent = [part("7", 300, "x"), part("8", 301, "x")]  # hours later, other parts
    decided = plan(first + resent, 400)
    assert decided.state == "ready" and decided.deliveries == 2
    assert [p.part.partition for p in decided.parts] == ["7", "8"]
    assert [p.part.partition for p in decided.superseded] == ["1", "2", "3"]
    assert decided.digest == native.digest(resent)


def test_gaps_before_the_hour_is_complete_never_split_a_delivery():
    parts = [part("1", -170), part("2", -100), part("3", -40)]  # an hour apart, all before 08:00
    decided = plan(parts, 60)
    assert decided.deliveries == 1 and len(decided.parts) == 3


def test_the_same_parts_found_again_are_current_and_a_part_sent_again_with_its_bytes_changes_nothing():
    first = [part("1", 0), part("2", 1)]
    assembled = plan(first, 60).digest
    assert plan(first, 60, assembled).state == "current"
    again = [part("1", 0), part("2", 500)]  # #2 written again later, the same bytes
    assert plan(again, 501, assembled).state == "current"  # not even waiting: nothing changed
    changed = [part("1", 0), part("2", 500, checksum="other")]
    assert plan(changed, 501, assembled).state == "waiting"
    assert plan(changed, 530, assembled).state == "ready"


def test_the_digest_names_each_part_its_size_and_its_checksum():
    a = [part("1", 0), part("2", 1)]
    assert native.digest(a) == native.digest(list(reversed(a)))
    assert native.digest(a) != native.digest([part("1", 0), part("2", 1, size=11)])
    assert native.digest(a) != native.digest([part("1", 0), part("2", 1, checksum="d")])
    assert native.digest(a) != native.digest(a[:1])


def message(body: dict | None, published: str = "2024-02-01T10:05:00Z"):
    return pubsub_event(b"" if body is None else body, time=published)


@pytest.mark.parametrize("body", [None, {}, {"hour": "latest"}])
def test_a_scheduled_run_looks_back_from_the_newest_complete_hour(body):
    hours = events.scan_request(message(body), 2, 72)
    newest = datetime(2024, 2, 1, 7, tzinfo=timezone.utc)  # 10:05 - 2 h, the hour before that
    assert hours == HourRange(newest - 71 * naming.HOUR, newest)


def test_a_backfill_looks_at_the_hours_it_names():
    assert events.scan_request(message({"date": "2024-01-20"}), 2, 72) == HourRange.day(datetime(2024, 1, 20).date())
    assert events.scan_request(message({"start": "20240120T03", "end": "20240120T05"}), 2, 72) == HourRange.parse(
        "20240120T03", "20240120T05")
    with pytest.raises(PermanentError):
        events.scan_request(message({"hour": "soon"}), 2, 72)


def test_settings_of_the_native_source():
    base = {"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p"}
    assert Config.from_env(base).source == "export_api"
    config = Config.from_env(base | {"AMPBQ_SOURCE": "native_export", "AMPBQ_NATIVE_BUCKET": "amp", "AMPBQ_NATIVE_PREFIX": "events",
                                     "AMPBQ_NATIVE_QUIET_SECONDS": "600", "AMPBQ_NATIVE_LOOKBACK_HOURS": "24"})
    assert (config.source, config.native_bucket, config.native_prefix, config.native_quiet_seconds,
            config.native_lookback_hours) == ("native_export", "amp", "events", 600, 24)
    with pytest.raises(PermanentError, match="AMPBQ_NATIVE_BUCKET"):
        Config.from_env(base | {"AMPBQ_SOURCE": "native_export"})
    with pytest.raises(PermanentError, match="AMPBQ_SOURCE"):
        Config.from_env(base | {"AMPBQ_SOURCE": "s3"})
    with pytest.raises(PermanentError):
        Config.from_env(base | {"AMPBQ_NATIVE_LOOKBACK_HOURS": "0"})


def test_generated_parts_are_what_the_demo_drops_and_a_folder_without_parts_is_refused_in_one_line(tmp_path):
    from ampbq.tools.demo import drop_order, native_parts_in
    from ampbq.tools.synthetic import Dataset, write_native_export

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a part")
    with pytest.raises(ValueError, match="holds no parts") as refused:
        native_parts_in(tmp_path / "empty")
    assert "\n" not in str(refused.value)
    dataset = Dataset.for_day(datetime(2024, 1, 31).date(), hours=2, events_per_hour=7, parts_per_hour=3)
    assert write_native_export(dataset, tmp_path / "parts") == 14
    found = native_parts_in(tmp_path / "parts")
    assert len(found) == 6 and sum(events for _, _, events in found) == 14
    assert {p.hour for _, p, _ in found} == set(dataset.range.hours())
    order = drop_order(found)
    assert len(order) == 8 and order != found + found[::3]  # shuffled, two of them twice
