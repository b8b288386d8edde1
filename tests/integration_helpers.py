"""Helpers for integration tests: drop objects, deliver events, read the table and the ledger."""

from __future__ import annotations

import json
import time
from datetime import datetime

import requests
from google.cloud import storage

from ampbq import bigquery as bq_adapter
from ampbq import naming
from ampbq.config import Config
from ampbq.naming import HourRange
from ampbq.tools.stack import Stack, storage_cloud_event
from ampbq.tools.synthetic import Dataset
from factory import gzip_lines


def drop_hour(bucket: storage.Bucket, hour: datetime, lines: list[bytes]) -> int:
    """Put an hour object under export/ (as the export step would) and return its generation."""
    blob = bucket.blob(naming.hour_object_name(hour))
    blob.upload_from_string(gzip_lines(lines), content_type="application/gzip")
    return blob.generation


def ledger_entry(bq, config: Config, hour: datetime) -> dict | None:
    sql = f"SELECT * FROM `{config.ledger_table_id}` WHERE upload_hour = TIMESTAMP '{hour:%Y-%m-%d %H}:00:00+00'"
    rows = bq_adapter.query_rows(bq, sql)
    return rows[0] if rows else None


def wait_loaded(bq, config: Config, hour: datetime, source_generation: int, timeout: float = 90) -> dict:
    """Wait until the ledger says this generation of the hour object is loaded."""
    def entry_for_generation():
        entry = ledger_entry(bq, config, hour)
        return entry if entry and entry["source_generation"] == source_generation else None

    return wait_for(entry_for_generation, f"hour {hour:%Y-%m-%dT%H} generation {source_generation} to load", timeout)


def hour_rows(bq, config: Config, hour: datetime) -> list[dict]:
    sql = f"SELECT * FROM `{config.table_id}` WHERE _upload_hour = TIMESTAMP '{hour:%Y-%m-%d %H}:00:00+00' ORDER BY _source_line"
    return bq_adapter.query_rows(bq, sql)


def post_finalize(stack: Stack, function: str, bucket: str, name: str, generation: int, event_id: str = "") -> int:
    """Deliver one finalize event straight to a function, as Eventarc does (e.g. a duplicate)."""
    body = {"bucket": bucket, "name": name, "generation": str(generation)}
    event_id = event_id or f"manual-{time.time_ns()}"
    headers, data = storage_cloud_event({"objectId": name, "bucketId": bucket}, json.dumps(body).encode(), event_id, bucket)
    return requests.post(stack.function_url(function), headers=headers, data=data, timeout=120).status_code


def log_lines(stack: Stack, function: str, event_id: str) -> list[dict]:
    """The JSON log lines a function wrote while handling one event."""
    lines = []
    for text in (stack.workdir / "logs" / f"{function}.log").read_text().splitlines():
        if text.startswith("{") and f'"{event_id}"' in text:
            lines.append(json.loads(text))
    return lines


def wait_for(predicate, what: str, timeout: float = 60, interval: float = 0.3):
    """Poll until `predicate()` returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def manifest(bucket: storage.Bucket, hours: naming.HourRange) -> dict | None:
    blob = bucket.get_blob(naming.manifest_name(hours))
    return json.loads(blob.download_as_bytes()) if blob else None


def day_rows(bq, config: Config, day) -> dict:
    """Rows, distinct uuids and distinct upload hours in the table for one upload day."""
    sql = (f"SELECT COUNT(*) AS n, COUNT(DISTINCT uuid) AS uuids, COUNT(DISTINCT _upload_hour) AS hours "
           f"FROM `{config.table_id}` WHERE _upload_hour BETWEEN TIMESTAMP '{day} 00:00:00+00' AND TIMESTAMP '{day} 23:00:00+00'")
    return bq_adapter.query_rows(bq, sql)[0]


def function_log(stack: Stack, function: str) -> list[dict]:
    lines = []
    for text in (stack.workdir / "logs" / f"{function}.log").read_text().splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def land(stack, bq, config, hours: HourRange, dataset: Dataset, messages: list[dict], timeout: float):
    """Publish `messages` at once and wait until every hour of `hours` is in the ledger and the table."""
    before = stack.bigquery_rules_stats()
    started = time.monotonic()
    for message in messages:
        stack.publish_run(message)
    expected = {e["uuid"] for h in hours.hours() for e in dataset.events(h)}
    bounds = f"BETWEEN TIMESTAMP '{hours.start:%Y-%m-%d %H}:00:00+00' AND TIMESTAMP '{hours.end:%Y-%m-%d %H}:00:00+00'"

    def landed():
        rows = list(bq.query(f"SELECT COUNT(*) AS n FROM `{config.ledger_table_id}` WHERE upload_hour {bounds}").result())
        return rows[0]["n"] == len(hours)

    wait_for(landed, f"{len(hours)} hours to land", timeout, interval=1)
    seconds = time.monotonic() - started
    uuids = [r["uuid"] for r in bq.query(f"SELECT uuid FROM `{config.table_id}` WHERE _upload_hour {bounds}").result()]
    batches = list(bq.query(f"SELECT COUNT(DISTINCT commit_batch) AS n, SUM(loaded) AS loaded FROM `{config.ledger_table_id}` "
                            f"WHERE upload_hour {bounds}").result())[0]
    after = stack.bigquery_rules_stats()
    return {"seconds": seconds, "uuids": uuids, "expected": expected, "transactions": batches["n"],
            "loaded": batches["loaded"], "conflicts": after["conflicts"] - before["conflicts"]}


def load_failures(stack, hours: HourRange) -> list:
    """Load invocations for these hours' import objects that did not answer 2xx (the platform would retry them)."""
    names = {naming.import_object_name(h) for h in hours.hours()}
    return [d for d in stack._relay.delivered if d[0] == stack.function_url("load") and d[1] in names and not 200 <= d[2] < 300]
