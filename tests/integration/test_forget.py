"""Deletions honoured: a user deleted at Amplitude (the stub) leaves the table, every view and
every object generation under export/ and import/, and every hour still reconciles."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date

import pytest
from google.api_core.exceptions import NotFound
from click.testing import CliRunner

from ampbq import deletions, naming
from ampbq.naming import HourRange
from ampbq.tools.cli import main
from ampbq.tools.sandbox import GeneratedSource
from integration_helpers import manifest, wait_for

pytestmark = pytest.mark.integration
DAY = date(2022, 5, 17)
RANGE = {"start": f"{DAY:%Y%m%d}T00", "end": f"{DAY:%Y%m%d}T02"}
HOURS = HourRange.parse(RANGE["start"], RANGE["end"])
WHERE = f"_upload_hour BETWEEN TIMESTAMP '{DAY} 00:00:00+00' AND TIMESTAMP '{DAY} 02:00:00+00'"


def cli(stack, *args):
    return CliRunner().invoke(main, list(args), env=stack.client_env(), catch_exceptions=False)


def statuses(stack) -> dict[str, tuple]:
    result = cli(stack, "status", "--start", f"{DAY}T00", "--end", f"{DAY}T02", "--json")
    assert result.stdout.startswith("{"), result.output
    return {h["hour"]: (h["state"], h["rows_in_bigquery"], h["events"], h["rejected"]) for h in json.loads(result.stdout)["hours"]}


def export_and_settle(stack, bucket, bq, config) -> dict:
    before = manifest(bucket, HOURS)
    stack.publish_run(RANGE)
    wait_for(lambda: (lambda m: m and m != before)(manifest(bucket, HOURS)), "the range's new manifest")

    def settled():
        s = statuses(stack)
        live = {h: bucket.get_blob(naming.hour_object_name(h)).generation for h in HOURS.hours()}
        ledger = {naming.utc_hour(r["upload_hour"]): r["source_generation"] for r in
                  bq.query(f"SELECT upload_hour, source_generation FROM `{config.ledger_table_id}` "
                           f"WHERE upload_hour BETWEEN TIMESTAMP '{DAY} 00:00:00+00' AND TIMESTAMP '{DAY} 02:00:00+00'")}
        return s if all(v[0] == "loaded" for v in s.values()) and ledger == live else None

    return wait_for(settled, "every hour loaded from its live hour object", timeout=120)


def rows(bq, config, source: str, columns: str = "uuid, amplitude_id") -> list[dict]:
    return [dict(r) for r in bq.query(f"SELECT {columns} FROM `{source}` WHERE {WHERE}").result()]


def ids_in(data: bytes) -> set[int]:
    return {deletions.line_amplitude_id(line) for line in data.splitlines() if line.strip()}


def ids_in_object(name: str, data: bytes) -> set[int]:
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return set().union(*(ids_in(deletions.inflate(archive.read(info))) for info in archive.infolist()))
    if name.endswith(".gz"):
        return ids_in(deletions.inflate(data))
    return ids_in(data) if "/raw/" not in name else set()


def ids_in_every_generation(bucket, prefixes: list[str]) -> tuple[set[int], int]:
    """Every amplitude id in every generation of every object under `prefixes`, and how many generations."""
    found, generations = set(), 0
    for prefix in prefixes:
        for version in bucket.list_blobs(prefix=prefix, versions=True):
            found |= ids_in_object(version.name, bucket.blob(version.name, generation=version.generation).download_as_bytes())
            generations += 1
    return found, generations


@pytest.fixture(scope="module")
def deleted_stub(stub):
    stub.source.current = GeneratedSource(events_per_hour=6, parts_per_hour=2)
    yield stub
    stub.deleted_ids.clear()  # the stub serves the other modules of the session as before
    stub.deletion_jobs.clear()


def test_a_user_deleted_at_amplitude_leaves_the_table_every_view_and_every_object_generation(stack, deleted_stub, bucket, bq, config):
    stub = deleted_stub
    export_and_settle(stack, bucket, bq, config)
    first = export_and_settle(stack, bucket, bq, config)  # a second export: older generations of every object
    table = rows(bq, config, config.table_id, "uuid, amplitude_id, _upload_hour")
    by_hour = {naming.utc_hour(r["_upload_hour"]): r["amplitude_id"] for r in table}
    victims = sorted({by_hour[min(by_hour)], by_hour[max(by_hour)]})  # users of the first and the last hour
    gone = {r["uuid"] for r in table if r["amplitude_id"] in victims}
    kept = sorted(r["uuid"] for r in table if r["amplitude_id"] not in victims)
    prefixes = [f"export/{DAY}/", f"import/{DAY}/", f"rejects/{DAY}/", f"{naming.RAW_PREFIX}{DAY}/"]
    live = {(b.name, b.generation) for prefix in prefixes for b in bucket.list_blobs(prefix=prefix)}
    noncurrent = {(b.name, b.generation) for prefix in prefixes for b in bucket.list_blobs(prefix=prefix, versions=True)} - live
    assert noncurrent  # the first export's generations: readable still, as in a versioned bucket
    assert set(victims) <= ids_in_every_generation(bucket, prefixes)[0]  # the checks below can fail

    # The last hour's hour object is gone (as the lifecycle rule deletes it after export_retention_days):
    # its rows are deleted in the table, and its ledger entry still reconciles.
    bucket.blob(naming.hour_object_name(HOURS.end)).delete()
    stub.delete_users(victims, requester="privacy@example.com")
    stub.delete_users([123], status="staging")  # not done yet: nothing of it is applied
    result = cli(stack, "forget")
    assert result.exit_code == 0, result.output
    assert f"applied=1 amplitude_ids={len(victims)}" in result.stdout and f"rows_removed={len(gone)}" in result.stdout

    assert not [r for r in rows(bq, config, config.table_id) if r["amplitude_id"] in victims]
    assert sorted(r["uuid"] for r in rows(bq, config, config.table_id)) == kept  # every other row intact
    listed = ", ".join(map(str, victims))
    for suffix in ("_dedup", "_native", "_users"):  # every view on the table, whole
        left = list(bq.query(f"SELECT COUNT(*) AS n FROM `{config.table_id}{suffix}` WHERE amplitude_id IN ({listed})").result())
        assert left[0]["n"] == 0, suffix
    assert not {r["uuid"] for r in rows(bq, config, config.table_id + "_properties", "uuid")} & gone
    found, generations = ids_in_every_generation(bucket, prefixes)  # every generation, noncurrent ones too
    assert not found & set(victims) and generations > 0
    for name, generation in sorted(noncurrent):  # not only unlisted: not readable either
        blob = bucket.blob(name, generation=generation)
        try:
            data = blob.download_as_bytes()
        except NotFound:
            continue
        assert not ids_in_object(name, data) & set(victims), (name, generation)

    after = statuses(stack)  # every hour reconciles: loaded, events = rows + rejected, rows as the table holds
    for hour in HOURS.hours():
        key = f"{hour:%Y-%m-%dT%H}"
        removed = sum(1 for r in table if r["amplitude_id"] in victims and naming.utc_hour(r["_upload_hour"]) == hour)
        assert after[key][0] == "loaded", after
        assert after[key][1] == first[key][1] - removed and after[key][2] == first[key][2] - removed

    shown = cli(stack, "forget", "--status", "--json")
    applied = json.loads(shown.stdout)["applied"]
    assert [(a["amplitude_ids"], a["rows_removed"]) for a in applied] == [(len(victims), len(gone))]
    assert cli(stack, "forget").stdout.count("applied=0") == 1  # a done job is applied once

    export_and_settle(stack, bucket, bq, config)  # a re-export after the deletion does not bring them back
    assert sorted(r["uuid"] for r in rows(bq, config, config.table_id)) == kept

