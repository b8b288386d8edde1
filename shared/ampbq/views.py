"""The events table's views, defined once in SQL files that Terraform reads too."""

from __future__ import annotations

from .schema import SCHEMA_DIR

DEDUP_VIEW_FILE = SCHEMA_DIR / "all_user_events_dedup.sql"
DEDUP_SUFFIX = "_dedup"  # the view is `<table>_dedup`, beside the table and its `<table>_loads`
_PLACEHOLDER = "${events_table}"


def dedup_view_sql(events_table: str) -> str:
    """The deduplicating view's query over `events_table` (`project.dataset.table`), as
    Terraform's templatefile() makes it from the same file."""
    text = DEDUP_VIEW_FILE.read_text()
    # templatefile() would fail on any other ${...}; so does this, rather than differ from it.
    if text.count("${") != text.count(_PLACEHOLDER):
        raise ValueError(f"{DEDUP_VIEW_FILE} has a template expression other than {_PLACEHOLDER}")
    return text.replace(_PLACEHOLDER, events_table)
