"""The export step against a misbehaving Export API: every day still lands exactly, or fails clearly."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta, timezone

import pytest

from ampbq import naming
from ampbq.naming import HourRange
from ampbq.tools.stub import DatasetSource, Fault, ZipSource
from ampbq.tools.synthetic import Dataset
from factory import entry_name, export_entries, gzip_lines, zip_archive
from integration_helpers import day_rows, function_log, manifest, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.long]
EVENTS_PER_HOUR = 5
# The days here have events in every third hour: each range the export splits a day into (down to
# 3 hours) still holds data, and only 8 hours a day go on to transform and load.
HOUR_STEP = 3
DATA_HOURS = 24 // HOUR_STEP
DAY_EVENTS = DATA_HOURS * EVENTS_PER_HOUR


def sparse_day(day: date) -> Dataset:
    return Dataset.for_day(day, events_per_hour=EVENTS_PER_HOUR, parts_per_hour=2, hour_step=HOUR_STEP)


@pytest.fixture
def fresh_stub(stub):
    """Leave the shared stub as it was found: no faults, no size limit, the right credentials."""
    yield stub
    stub.faults.clear()
    stub.max_hours = None
    stub.too_long_status = 400
    from integration.conftest import API_KEY, SECRET_KEY

    stub.set_credentials(API_KEY, SECRET_KEY)


def run_day(stack, stub, bucket, day: date, dataset: Dataset | None = None) -> dict:
    dataset = dataset or sparse_day(day)
    stub.source.current = DatasetSource(dataset)
    stack.publish_run({"date": f"{day}"})
    return wait_for(lambda: manifest(bucket, HourRange.day(day)), f"the export manifest of {day}", timeout=90)


def wait_day_loaded(bq, config, day: date, expected_rows: int) -> dict:
    return wait_for(lambda: (lambda c: c if c["n"] >= expected_rows and c["hours"] == DATA_HOURS else None)(day_rows(bq, config, day)),
                    f"{expected_rows} rows of {day}", timeout=90)


def requests_for(stub, day: date) -> list[tuple[str, str]]:
    return [r for r in stub.requests if r[0].startswith(f"{day:%Y%m%d}")]


def test_no_data_is_a_successful_run_with_zero_hours(stack, fresh_stub, bucket):
    day = date(2021, 5, 1)
    fresh_stub.source.current = DatasetSource(Dataset.for_day(date(2021, 5, 2), hours=1))
    stack.publish_run({"date": f"{day}"})
    record = wait_for(lambda: manifest(bucket, HourRange.day(day)), "the manifest of an empty day")
    assert (record["hours"], record["archives"]) == ({}, [])
    # Hours that never had an hour object have nothing to empty (see test_emptied_hours).
    assert list(bucket.list_blobs(prefix=f"export/{day}/")) == [] and record["emptied"] == []
    assert len(requests_for(fresh_stub, day)) == 1  # acked, not retried


def test_day_over_4_gb_is_split_until_every_part_fits(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 3)
    fresh_stub.max_hours = 5
    record = run_day(stack, fresh_stub, bucket, day)
    assert len(record["archives"]) == 8  # 24 → 12 → 6 → 3 hours per request
    assert {len(HourRange.parse(*r)) for r in requests_for(fresh_stub, day)} == {24, 12, 6, 3}
    counts = wait_day_loaded(bq, config, day, DAY_EVENTS)
    assert (counts["n"], counts["uuids"]) == (DAY_EVENTS, DAY_EVENTS)


def test_timeouts_are_retried_with_backoff_then_split(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 4)
    fresh_stub.max_hours, fresh_stub.too_long_status = 12, 504
    record = run_day(stack, fresh_stub, bucket, day)
    sizes = [len(HourRange.parse(*r)) for r in requests_for(fresh_stub, day)]
    assert sizes == [24] * 5 + [12, 12]  # five attempts at the whole day, then halves
    assert len(record["archives"]) == 2
    assert wait_day_loaded(bq, config, day, DAY_EVENTS)["n"] == DAY_EVENTS


def test_flaky_responses_are_retried_and_a_broken_download_is_never_unpacked(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 5)
    fresh_stub.faults.extend([Fault(429), Fault(503, b"Service Unavailable"), Fault(reset=True), Fault(truncate=True)])
    record = run_day(stack, fresh_stub, bucket, day)
    assert len(requests_for(fresh_stub, day)) == 5
    assert record["archives"] == [naming.raw_zip_name(HourRange.day(day))]
    raw = bucket.blob(record["archives"][0]).download_as_bytes()
    assert zipfile.ZipFile(io.BytesIO(raw)).testzip() is None  # the stored archive is the whole one
    counts = wait_day_loaded(bq, config, day, DAY_EVENTS)
    assert (counts["n"], counts["uuids"]) == (DAY_EVENTS, DAY_EVENTS)


def test_ok_status_with_a_body_that_is_not_a_zip_is_retried(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 6)
    fresh_stub.faults.extend([Fault(200, b"<html>Too many requests</html>")])
    run_day(stack, fresh_stub, bucket, day)
    assert len(requests_for(fresh_stub, day)) == 2
    assert wait_day_loaded(bq, config, day, DAY_EVENTS)["n"] == DAY_EVENTS


def test_persistent_errors_fail_the_run_naming_the_range_and_the_platform_retries_it(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 7)
    fresh_stub.faults.extend([Fault(502)] * 5)  # every attempt of the first run
    run_day(stack, fresh_stub, bucket, day)
    warnings = [line["message"] for line in function_log(stack, "export") if line["severity"] == "WARNING"]
    assert f"export failed, will be retried: Export API {day:%Y%m%d}T00..{day:%Y%m%d}T23: HTTP 502" in warnings
    assert len(requests_for(fresh_stub, day)) == 6  # 5 attempts, then the redelivered event succeeds
    assert wait_day_loaded(bq, config, day, DAY_EVENTS)["n"] == DAY_EVENTS


def test_range_that_amplitude_has_not_finished_is_refused(stack, fresh_stub, bucket):
    today = datetime.now(timezone.utc).date()
    stack.publish_run({"date": f"{today}"})
    refusal = f"range {today:%Y%m%d}T00..{today:%Y%m%d}T23 is not complete at Amplitude"
    wait_for(lambda: any(refusal in line["message"] for line in function_log(stack, "export") if line["severity"] == "ERROR"),
             "the refusal")
    assert requests_for(fresh_stub, today) == []


def test_unexpected_zip_entries_are_refused_and_never_written(stack, fresh_stub, bucket, bq, config, tmp_path):
    day = date(2021, 5, 8)
    hour = datetime(2021, 5, 8, 3, tzinfo=timezone.utc)
    dataset = Dataset.for_day(day, hours=24, events_per_hour=3)
    archive = tmp_path / "odd.zip"
    odd = ["../evil.json.gz", "/etc/passwd.json.gz", "203138/notes.txt", entry_name(203138, hour + timedelta(days=2), 1)]
    zip_archive([*export_entries(hour, [dataset.lines(hour)], partitions=[627]),
                 *((name, gzip_lines([b'{"uuid": "x"}'])) for name in odd)], archive)
    fresh_stub.source.current = ZipSource(archive, whole=True)
    stack.publish_run({"date": f"{day}"})
    record = wait_for(lambda: manifest(bucket, HourRange.day(day)), "the manifest")
    assert list(record["hours"]) == [naming.hour_object_name(hour)]
    assert len(record["refused"]) == len(odd)
    errors = [line for line in function_log(stack, "export") if line["message"] == "zip entry refused"]
    assert sum(1 for line in errors if day.isoformat() in line["object"]) == len(odd)
    names = [blob.name for blob in bucket.list_blobs()]
    assert not any("evil" in name or "passwd" in name or "notes" in name for name in names)
    assert not any(name.startswith(f"export/{day + timedelta(days=2)}") for name in names)


def test_wrong_credentials_fail_once_and_the_secret_never_reaches_a_log(stack, fresh_stub, bucket):
    day = date(2021, 5, 9)
    fresh_stub.set_credentials("someone-else", "another-secret")
    stack.publish_run({"date": f"{day}"})
    wait_for(lambda: any("credentials refused (401)" in line["message"] for line in function_log(stack, "export")),
             "the credentials error")
    assert len(requests_for(fresh_stub, day)) == 0  # 401 before the range is read: one request, no storm
    secret = stack.settings.secret_key
    for log in (stack.workdir / "logs").glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log.name


@pytest.fixture
def export_restarted(stack):
    """Restart the export function with other settings for one test; the usual ones after it."""
    def restart(**env: str) -> None:
        stack.kill("export")
        stack.restart("export", extra_env=env)

    yield restart
    stack.kill("export")
    stack.restart("export")


def attempt_markers(bucket, day: date) -> list[str]:
    return [blob.name for blob in bucket.list_blobs(prefix=f"{naming.RAW_PREFIX}{day}/") if blob.name.endswith((".started.json", ".split.json"))]


def test_a_day_too_big_for_one_invocation_goes_on_across_retries(stack, fresh_stub, bucket, bq, config, export_restarted):
    # A budget of 0 s: every invocation finishes one part, then stops and leaves the rest to the
    # platform's retry, as an invocation near the 540 s timeout does with a big day.
    export_restarted(AMPBQ_EXPORT_BUDGET_SECONDS="0")
    day = date(2021, 5, 11)
    fresh_stub.max_hours = 5
    record = run_day(stack, fresh_stub, bucket, day)
    assert len(record["archives"]) == 8 and len(record["resumed"]) == 7
    # Nothing asked twice: each split is remembered, each finished part skipped on the retries.
    sizes = sorted((len(HourRange.parse(*r)) for r in requests_for(fresh_stub, day)), reverse=True)
    assert sizes == [24, 12, 12, 6, 6, 6, 6] + [3] * 8
    stops = [line for line in function_log(stack, "export")
             if line["severity"] == "WARNING" and "to stay within the function's time limit" in line["message"]
             and line.get("date") == f"{day}"]
    assert len(stops) == 7
    counts = wait_day_loaded(bq, config, day, DAY_EVENTS)
    assert (counts["n"], counts["uuids"]) == (DAY_EVENTS, DAY_EVENTS)
    assert attempt_markers(bucket, day) == []


def test_a_range_an_invocation_died_on_is_split_by_the_retry(stack, fresh_stub, bucket, bq, config):
    day = date(2021, 5, 10)
    fresh_stub.faults.append(Fault(stall=60))  # the whole day downloads too slowly to finish
    fresh_stub.source.current = DatasetSource(sparse_day(day))
    stack.publish_run({"date": f"{day}"})
    wait_for(lambda: requests_for(fresh_stub, day), "the first request of the day")
    stack.kill("export")  # the platform's timeout: the instance dies mid-download, nothing cleans up
    assert len(attempt_markers(bucket, day)) == 1
    stack.restart("export")
    record = wait_for(lambda: manifest(bucket, HourRange.day(day)), f"the export manifest of {day}", timeout=90)
    assert [len(HourRange.parse(*r)) for r in requests_for(fresh_stub, day)] == [24, 12, 12]
    assert len(record["archives"]) == 2
    assert any(line["message"] == "splitting range" and "an earlier attempt of this run stopped" in line.get("reason", "")
               for line in function_log(stack, "export"))
    counts = wait_day_loaded(bq, config, day, DAY_EVENTS)
    assert (counts["n"], counts["uuids"]) == (DAY_EVENTS, DAY_EVENTS)
    assert attempt_markers(bucket, day) == []
