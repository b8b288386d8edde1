"""What a day costs in dollars, from the bench's measured figures and Google's list prices (pure).

Prices are Google Cloud list prices in USD, looked up on PRICES_CHECKED:

- Cloud Run functions (Cloud Functions 2nd gen) are billed as Cloud Run services
  (cloud.google.com/run/pricing), request-based billing (CPU allocated only while a request is
  handled, which is how functions run) in a Tier 1 region: $0.000024 per vCPU-second,
  $0.0000025 per GiB-second, $0.40 per million requests, each request's time rounded up to
  100 ms. The monthly free tier (180,000 vCPU-seconds, 360,000 GiB-seconds, 2 M requests per
  billing account) is not subtracted.
- BigQuery (cloud.google.com/bigquery/pricing), US multi-region: load jobs free; on-demand
  queries and DML $6.25 per TiB scanned (the first 1 TiB a month free, not subtracted); active
  logical storage $0.02 per GiB-month ($0.01 once a partition is 90 days unmodified).

The BigQuery bytes follow the load step's model in docs/guarantees.md: a day's INSERTs read the
staged rows once, the ledger's count reads three of their columns, and statements cost at least
10 MB per table they reference (about 0.5 GB a day); a first load deletes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

PRICES_CHECKED = "2026-12-01"
VCPU_SECOND = 0.000024
GIB_SECOND = 0.0000025
PER_REQUEST = 0.40 / 1e6
BILLING_GRANULARITY_S = 0.1
QUERY_PER_TIB = 6.25
STORAGE_PER_GIB_MONTH = 0.02
TIB = 2**40
GIB = 2**30
GB = 1e9
# docs/guarantees.md: the per-statement minimums of a day's commits, about 0.5 GB whatever its size.
STATEMENT_MINIMUMS_PER_DAY = 0.5e9
# The ledger's per-hour count and fingerprint read these columns of the staged rows.
LEDGER_COLUMNS = ("uuid", "event_time", "_upload_hour")
# docs/deploy.md: every object written to the bucket wakes both storage-triggered functions; a
# day is 24 export objects, 24 import objects and a few rejects objects: about 100 invocations.
INVOCATIONS_PER_DAY = 100
HOURS_PER_DAY = 24

# BigQuery's logical size of a value by column type (cloud.google.com/bigquery/pricing#data_size_calculation):
# fixed sizes, STRING 2 bytes + its UTF-8 length, JSON its UTF-8 text; NULL 0.
FIXED_BYTES = {"INT64": 8, "INTEGER": 8, "FLOAT64": 8, "FLOAT": 8, "BOOL": 1, "BOOLEAN": 1, "DATE": 8,
               "DATETIME": 8, "TIME": 8, "TIMESTAMP": 8, "NUMERIC": 16, "BIGNUMERIC": 32}


def value_bytes(kind: str, value) -> int:
    """BigQuery's logical bytes of one value of column type `kind` as the import object writes it."""
    if value is None:
        return 0
    if kind == "JSON":
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if isinstance(value, list):  # REPEATED: the sum of its elements
        return sum(value_bytes(kind, item) for item in value)
    if kind in FIXED_BYTES:
        return FIXED_BYTES[kind]
    return 2 + len(str(value).encode())  # STRING (and BYTES, near enough)


def row_bytes(row: dict, types: dict[str, str], columns=None) -> int:
    """Logical bytes of one row (or of `columns` of it) in a table of column `types`."""
    return sum(value_bytes(types.get(column, "STRING"), value) for column, value in row.items()
               if columns is None or column in columns)


@dataclass(frozen=True)
class Step:
    """A function's measured work: CPU seconds per GB of NDJSON, and the instance it runs on."""
    name: str
    cpu_s_per_gb: float
    vcpu: float
    memory_gib: float
    invocations_per_day: int


def function_day(step: Step, ndjson_gb: float) -> dict:
    """A day's Cloud Run bill for `step` on `ndjson_gb` GB of NDJSON: billed seconds (its CPU time,
    on one thread, spread over its invocations and rounded up to 100 ms each), vCPU and memory
    dollars, request dollars, and the total."""
    seconds = step.cpu_s_per_gb * ndjson_gb
    per_call = seconds / step.invocations_per_day
    billed = math.ceil(per_call / BILLING_GRANULARITY_S - 1e-9) * BILLING_GRANULARITY_S * step.invocations_per_day
    cpu = billed * step.vcpu * VCPU_SECOND
    memory = billed * step.memory_gib * GIB_SECOND
    return {"seconds": seconds, "per_invocation_s": per_call, "billed_s": billed, "cpu": cpu, "memory": memory,
            "total": cpu + memory}


def requests_day(invocations: int = INVOCATIONS_PER_DAY) -> float:
    return invocations * PER_REQUEST


def bigquery_day(events: int, row_logical_bytes: float, ledger_logical_bytes: float) -> dict:
    """A day's BigQuery bill for `events` rows: bytes scanned by the commits (INSERT of the staged
    rows, the ledger's count, the per-statement minimums) at the on-demand price, and a month's
    storage of the day's rows (the load jobs themselves are free)."""
    scanned = events * (row_logical_bytes + ledger_logical_bytes) + STATEMENT_MINIMUMS_PER_DAY
    stored = events * row_logical_bytes
    return {"scanned_bytes": scanned, "query": scanned / TIB * QUERY_PER_TIB, "stored_bytes": stored,
            "storage_month": stored / GIB * STORAGE_PER_GIB_MONTH}


def day_costs(events: int, ndjson_bytes_per_event: float, steps: list[Step], seed: Step | None,
              row_logical_bytes: float, ledger_logical_bytes: float) -> dict:
    """Everything the cost table prints for a day of `events`."""
    gb = events * ndjson_bytes_per_event / GB
    functions = {step.name: function_day(step, gb) for step in steps}
    requests = requests_day()
    bq = bigquery_day(events, row_logical_bytes, ledger_logical_bytes)
    result = {"events": events, "ndjson_gb": gb, "functions": functions, "requests": requests, "bigquery": bq,
              "ampbq_day": sum(f["total"] for f in functions.values()) + requests + bq["query"]}
    if seed is not None:
        result["seed"] = function_day(seed, gb)
    return result


# Cloud Run functions' request timeout for the storage-triggered steps (terraform: timeout_seconds).
FUNCTION_TIMEOUT_S = 540
# An assumption, not a measurement: one invocation streams Cloud Storage to Cloud Storage at about
# 100 MB/s (the local stand-in, a Python proxy in front of fake-gcs-server, is far slower).
ASSUMED_COPY_S_PER_GB = 10.0


@dataclass(frozen=True)
class HourProjection:
    """One upload hour of `events` on Cloud Functions, from figures measured locally."""

    events: int
    ndjson_gb: float
    gzip_gb: float
    units: int
    unit_s: float  # one unit's transform on one vCPU
    export_s: float  # the export writing the hour object (copying its parts), one invocation
    wall_s: float  # export, then the units side by side; BigQuery's load job not included
    invocations: int

    @property
    def fits(self) -> bool:
        return self.unit_s < FUNCTION_TIMEOUT_S and self.export_s < FUNCTION_TIMEOUT_S


def project_hour(events: int, ndjson_bytes_per_event: float, gzip_ratio: float, unit_bytes: int,
                 transform_cpu_s_per_gb: float, export_s_per_gzip_gb: float) -> HourProjection:
    """An hour fanned out as the transform does (units of `unit_bytes` of gzip, each its own
    invocation on its own instance): the export's time for its gzip bytes, then one unit's time,
    as every unit runs at once; invocations: export, the hour object's transform, each unit's
    transform and load."""
    ndjson_gb = events * ndjson_bytes_per_event / GB
    gzip_gb = ndjson_gb / gzip_ratio
    units = max(1, math.ceil(gzip_gb * GB / unit_bytes))
    unit_s = transform_cpu_s_per_gb * ndjson_gb / units
    export_s = export_s_per_gzip_gb * gzip_gb
    return HourProjection(events, ndjson_gb, gzip_gb, units, unit_s, export_s, export_s + unit_s, 2 + 2 * units)
