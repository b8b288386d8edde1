"""The BigQuery table schemas, read from the JSON files that Terraform reads too."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schema"
EVENTS_SCHEMA_FILE = SCHEMA_DIR / "all_user_events.json"
LEDGER_SCHEMA_FILE = SCHEMA_DIR / "all_user_events_loads.json"
FORGETS_SCHEMA_FILE = SCHEMA_DIR / "all_user_events_forgets.json"  # applied user-privacy deletions

# How the table is laid out; Terraform declares the same (tests check both agree).
PARTITION_FIELD = "event_time"
CLUSTERING_FIELDS = ("_upload_hour", "event_type", "user_id")


@lru_cache(maxsize=None)
def fields(path: Path = EVENTS_SCHEMA_FILE) -> tuple[dict, ...]:
    return tuple(json.loads(path.read_text()))


def column_names(path: Path = EVENTS_SCHEMA_FILE) -> tuple[str, ...]:
    return tuple(f["name"] for f in fields(path))
