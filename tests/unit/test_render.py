"""The status, rejects and re-drop tables on consoles of a given width: they fit, or --wide shows all."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from ampbq.tools import render
from ampbq.tools.rejects import Reject
from ampbq.tools.reprocess import Redrop
from ampbq.tools.status import HourEvidence, LedgerEntry, ObjectInfo, classify

HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)


def statuses():
    source = ObjectInfo("export/2024-01-31/05.json.gz", 1706745600123456, 12_345_678, {"parts": "2"})
    imported = ObjectInfo("import/2024-01-31/05.json", 1706745600654321, 4096,
                        {"source_generation": str(source.generation), "events": "1200", "rows": "1199", "rejected": "1"})
    loaded = HourEvidence(HOUR, source, imported, LedgerEntry(imported.generation, source.generation, 1200, 1199, 1, 1199),
                          table_rows=1199, archives=("export/raw/2024-01-31/20240131T00-20240131T23.zip",), exported=True)
    mismatch = HourEvidence(HOUR + timedelta(hours=1), source, imported,
                            LedgerEntry(imported.generation, source.generation, 1200, 1199, 1, 1199), table_rows=1000)
    recent = HourEvidence(HOUR + timedelta(hours=2), table_rows=0, now=HOUR + timedelta(hours=2, minutes=5))
    failed = HourEvidence(HOUR + timedelta(hours=3), table_rows=0,
                          failures=("export: Export API 20240131T00..20240131T23: credentials refused (401); check the "
                                    "API key and secret key",))
    return [classify(e) for e in (loaded, mismatch, recent, failed)]


def printed(table, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, soft_wrap=False)
    console.print(table)
    return console.file.getvalue().splitlines()


def tables(width):
    rejects = [Reject(HOUR, 2, "line is not valid JSON: unexpected end of data at line 1 column 20", "export/…", b'{"uuid": "broken", ' * 4),
               Reject(HOUR, 7, "field 'event_id': 'twelve' is not an INT64", "export/…", b'{"uuid": "r-bad", "event_id": "twelve"}')]
    redrops = [Redrop(HOUR, "export/2024-01-31/05.json.gz", 1706745600123456, 1706745699999999),
               Redrop(HOUR + timedelta(hours=5), "export/2024-01-31/10.json.gz", None,
                      error="no hour object: re-export it with `ampbq backfill --start 2024-01-31 --hours 10`")]
    return {"status": render.status_table(statuses(), "upload hours 2024-01-31 05:00–08:00 UTC", width),
            "rejects": render.rejects_table(rejects, 50, width),
            "re-drop": render.redrop_table(redrops, "export", width)}


@pytest.mark.parametrize("width", [80, 100])
def test_every_table_fits_a_narrow_console(width):
    for name, table in tables(width).items():
        lines = printed(table, width)
        assert max(len(line) for line in lines) <= width, (name, "\n".join(lines))


def test_a_narrow_status_table_keeps_the_hour_state_and_why_and_names_what_it_left_out():
    text = "\n".join(printed(tables(80)["status"], 80))
    for kept in ("hour", "state", "why", "MISMATCH", "not over", "FAILED", "credentials"):
        assert kept in text
    assert "hour object" not in text.split("--wide")[0]
    assert "--wide also shows: raw, hour object, import object" in text.replace("\n", " ")


def test_wide_shows_every_column_each_row_on_one_line():
    table = render.status_table(statuses(), "upload hours", render.UNLIMITED)
    lines = printed(table, render.UNLIMITED)
    header = next(line for line in lines if "hour object" in line)
    for column in ("raw", "hour object", "import object", "events", "rejected", "rows in BQ", "state", "why"):
        assert column in header
    assert "11.8 MiB #1706745600123456" in "\n".join(lines) and "--wide" not in "\n".join(lines)
    assert sum("2024-01-31 0" in line for line in lines) == 4  # one line per hour: nothing wrapped


@pytest.mark.parametrize("value, shown", [
    (None, "-"), (timedelta(minutes=5), "0h05m"), (timedelta(hours=2, minutes=7, seconds=59), "2h07m"),
    (timedelta(days=3, hours=4, minutes=30), "3d04h"), (timedelta(seconds=-30), "0h00m"),
])
def test_lag_reads_in_hours_and_minutes_then_days(value, shown):
    assert render.lag(value) == shown


def test_square_brackets_in_reasons_and_raw_lines_are_shown_not_read_as_markup():
    failed = classify(HourEvidence(HOUR, table_rows=0, failures=("load: bad [/bold] value [red]x[/red]",)))
    rejects = [Reject(HOUR, 3, "field 'tags' [0]: not a STRING", "export/…", b'{"tags": [1, "[/x]"]}')]
    redrops = [Redrop(HOUR, "export/2024-01-31/05.json.gz", None, error="gone [/]")]
    status = "\n".join(printed(render.status_table([failed], "t", None), 250))
    listed = "\n".join(printed(render.rejects_table(rejects, 50, None), 250))
    dropped = "\n".join(printed(render.redrop_table(redrops, "export", None), 250))
    assert "bad [/bold] value [red]x[/red]" in status
    assert "field 'tags' [0]: not a STRING" in listed and '[1, "[/x]"]' in listed
    assert "gone [/]" in dropped
