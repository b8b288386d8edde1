"""How the CLI shows things to a person: rich tables and progress bars (no logic here)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .naming import HourRange
from .rejects import Reject
from .reprocess import Redrop
from .status import PROBLEMS, HourStatus, State

_STYLES = {State.LOADED: "green", State.NO_DATA: "dim", State.PENDING: "yellow"}


def console(stderr: bool = False) -> Console:
    """A console; piped output gets a wide fixed width so table rows stay one line each in logs."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, soft_wrap=False)


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def span_label(hours: HourRange) -> str:
    """e.g. `upload hours 2024-01-31 00:00–23:00 UTC`."""
    if hours.start == hours.end:
        return f"upload hour {hours.start:%Y-%m-%d %H:00} UTC"
    if hours.start.date() == hours.end.date():
        return f"upload hours {hours.start:%Y-%m-%d %H:00}–{hours.end:%H:00} UTC"
    return f"upload hours {hours.start:%Y-%m-%d %H:00} – {hours.end:%Y-%m-%d %H:00} UTC"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def status_table(statuses: list[HourStatus], title: str) -> Table:
    table = Table(title=title)
    for column in ("hour", "raw", "hour object", "import object", "events", "rejected", "rows in BQ", "state", "why"):
        table.add_column(column, justify="right" if column in ("events", "rejected", "rows in BQ") else "left")
    for s in statuses:
        e = s.evidence
        source = f"{size(e.hour_object.size)} #{e.hour_object.generation}" if e.hour_object else "-"
        target = f"#{e.import_object.generation}" if e.import_object else "-"
        style = "bold red" if s.state in PROBLEMS else _STYLES.get(s.state, "")
        table.add_row(f"{s.hour:%Y-%m-%d %H}:00", "yes" if e.archives else "-", source, target, _number(s.events),
                      _number(s.rejected), _number(e.table_rows), f"[{style}]{s.state.label}[/]", s.reason)
    return table


def rejects_table(records: list[Reject], limit: int) -> Table:
    table = Table(title=f"rejected lines ({len(records)})")
    for column in ("hour", "line", "reason", "raw"):
        table.add_column(column, justify="right" if column == "line" else "left", overflow="fold")
    for r in records[:limit]:
        table.add_row(f"{r.hour:%Y-%m-%d %H}:00", str(r.line), r.reason, r.preview())
    if len(records) > limit:
        table.add_row("…", "", f"{len(records) - limit} more (--limit, or --json for all)", "")
    return table


def redrop_table(redrops: list[Redrop], stage: str) -> Table:
    table = Table(title=f"re-dropped under {stage}/")
    for column in ("hour", "object", "old generation", "new generation", "note"):
        table.add_column(column)
    for r in redrops:
        table.add_row(f"{r.hour:%Y-%m-%d %H}:00", r.name, _number(r.old_generation), _number(r.new_generation), r.error)
    return table


@contextlib.contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields `update(done, total)`."""
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console(stderr=True),
                   transient=False)
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
