"""The events table's views, defined once in SQL files that Terraform reads too.

Each view is `<table><suffix>`, beside the table and its `<table>_loads`; its query is the
SQL file with `${events_table}` filled in, as Terraform's templatefile() makes it. The texts
are BigQuery's and run unchanged on the local stand-in (the files say where a form was chosen
for that).
"""

from __future__ import annotations

from pathlib import Path

from .schema import SCHEMA_DIR

DEDUP_VIEW_FILE = SCHEMA_DIR / "all_user_events_dedup.sql"
DEDUP_SUFFIX = "_dedup"  # one row per uuid and event_time
PROPERTIES_VIEW_FILE = SCHEMA_DIR / "all_user_events_properties.sql"
PROPERTIES_SUFFIX = "_properties"  # one row per event, property scope and key
USERS_VIEW_FILE = SCHEMA_DIR / "all_user_events_users.sql"
USERS_SUFFIX = "_users"  # one row per amplitude_id
NATIVE_VIEW_FILE = SCHEMA_DIR / "all_user_events_native.sql"
NATIVE_SUFFIX = "_native"  # Amplitude's own BigQuery export's columns
_PLACEHOLDER = "${events_table}"


def view_files() -> dict[str, Path]:
    """Each view's suffix and SQL file (read when called, so a test may replace a file)."""
    return {DEDUP_SUFFIX: DEDUP_VIEW_FILE, PROPERTIES_SUFFIX: PROPERTIES_VIEW_FILE,
            USERS_SUFFIX: USERS_VIEW_FILE, NATIVE_SUFFIX: NATIVE_VIEW_FILE}


def view_sql(path: Path, events_table: str) -> str:
    """The view's query in `path` over `events_table` (`project.dataset.table`), as Terraform's
    templatefile() makes it from the same file."""
    text = path.read_text()
    # templatefile() would fail on any other ${...}; so does this, rather than differ from it.
    if text.count("${") != text.count(_PLACEHOLDER):
        raise ValueError(f"{path} has a template expression other than {_PLACEHOLDER}")
    return text.replace(_PLACEHOLDER, events_table)


def dedup_view_sql(events_table: str) -> str:
    return view_sql(DEDUP_VIEW_FILE, events_table)


def all_view_sql(events_table: str) -> dict[str, str]:
    """Each view's id (`<events_table><suffix>`) and query."""
    return {events_table + suffix: view_sql(path, events_table) for suffix, path in view_files().items()}
