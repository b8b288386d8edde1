"""How the CLI shows things to a person: rich tables and progress bars (no logic here)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..naming import HourRange
from .rejects import Reject
from .reprocess import Redrop
from .status import PROBLEMS, HourStatus, State

_STYLES = {State.LOADED: "green", State.NO_DATA: "dim", State.PENDING: "yellow", State.NOT_OVER: "dim",
           State.NOT_READY: "yellow"}


# --wide: a console no table is wider than, so every column shows and no cell wraps.
UNLIMITED = 10_000


def console(stderr: bool = False, wide: bool = False) -> Console:
    """A console; piped output gets a wide fixed width so table rows stay one line each in logs
    (COLUMNS, when set, is the width either way); `wide`: as wide as the widest table."""
    stream = sys.stderr if stderr else sys.stdout
    width = UNLIMITED if wide else None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, soft_wrap=False)


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    drop: int = 0  # on a console too narrow for every column, the highest go first; 0: always shown
    wraps: bool = False  # free text, wrapped to the width left (at least WRAP_MIN); other cells stay whole


WRAP_MIN = 20
_MEASURING = Console(file=io.StringIO(), width=UNLIMITED)


def fitted(title: str, columns: Sequence[Column], rows: list[tuple], width: int | None) -> Table:
    """A table of `rows` no wider than `width`: the columns that drop go, least important first,
    until the rest fit with the free text wrapped; a caption names what --wide would add.
    `width` None: every column."""
    shown = list(columns)
    if width is not None:
        for column in sorted((c for c in columns if c.drop), key=lambda c: -c.drop):
            if _narrowest(_table(title, columns, rows, shown)) <= width:
                break
            shown.remove(column)
    table = _table(title, columns, rows, shown)
    hidden = [c.header for c in columns if c not in shown]
    if hidden:
        table.caption = f"--wide also shows: {', '.join(hidden)}"
    return table


def _table(title: str, columns: Sequence[Column], rows: list[tuple], shown: list[Column]) -> Table:
    table = Table(title=title)
    keep = [columns.index(c) for c in shown]
    for c, n in zip(shown, keep):
        # A cell that does not wrap needs its whole width: as the column's minimum, the table's
        # measure counts it (rich's own minimum is the longest word).
        whole = max([Text(c.header).cell_len, *(Text.from_markup(row[n]).cell_len for row in rows)])
        table.add_column(c.header, justify=c.justify, no_wrap=not c.wraps, overflow="fold" if c.wraps else "ellipsis",
                         min_width=min(WRAP_MIN, whole) if c.wraps else whole)
    for row in rows:
        table.add_row(*(row[n] for n in keep))
    return table


def _narrowest(table: Table) -> int:
    """The width the table needs with its free text wrapped as narrow as allowed."""
    return Measurement.get(_MEASURING, _MEASURING.options, table).minimum


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


def lag(value: timedelta | None) -> str:
    """From an upload hour's end to its load: 2h07m, 3d04h."""
    if value is None:
        return "-"
    minutes = max(0, int(value.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}d{minutes // 60:02d}h" if days else f"{minutes // 60}h{minutes % 60:02d}m"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


STATUS_COLUMNS = (Column("hour"), Column("raw", drop=7), Column("hour object", drop=5), Column("import object", drop=6),
                  Column("events", "right", drop=1), Column("rejected", "right", drop=4),
                  Column("rows in BQ", "right", drop=2), Column("lag", "right", drop=3), Column("state"),
                  Column("why", wraps=True))
REJECTS_COLUMNS = (Column("hour"), Column("line", "right"), Column("reason", wraps=True), Column("raw", drop=1, wraps=True))
REDROP_COLUMNS = (Column("hour"), Column("object", drop=2), Column("old generation", drop=1), Column("new generation"),
                  Column("note", wraps=True))


def status_table(statuses: list[HourStatus], title: str, width: int | None = None) -> Table:
    """One row per hour; `width`: the console's (a narrow one drops raw, the objects, then counts)."""
    rows = []
    for s in statuses:
        e = s.evidence
        source = f"{size(e.hour_object.size)} #{e.hour_object.generation}" if e.hour_object else "-"
        target = f"#{e.import_object.generation}" if e.import_object else "-"
        style = "bold red" if s.state in PROBLEMS else _STYLES.get(s.state, "")
        rows.append((f"{s.hour:%Y-%m-%d %H}:00", "yes" if e.archives else "-", source, target, _number(s.events),
                     _number(s.rejected), _number(e.table_rows), lag(s.lag), f"[{style}]{s.state.label}[/]", escape(s.reason)))
    return fitted(title, STATUS_COLUMNS, rows, width)


def rejects_table(records: list[Reject], limit: int, width: int | None = None) -> Table:
    # Reasons and raw lines are data: escaped, so "[" in them is shown, not read as rich markup.
    rows = [(f"{r.hour:%Y-%m-%d %H}:00", str(r.line), escape(r.reason), escape(r.preview())) for r in records[:limit]]
    if len(records) > limit:
        rows.append(("…", "", f"{len(records) - limit} more (--limit, or --json for all)", ""))
    return fitted(f"rejected lines ({len(records)})", REJECTS_COLUMNS, rows, width)


def redrop_table(redrops: list[Redrop], stage: str, width: int | None = None) -> Table:
    rows = [(f"{r.hour:%Y-%m-%d %H}:00", escape(r.name), _number(r.old_generation), _number(r.new_generation), escape(r.error))
            for r in redrops]
    return fitted(f"re-dropped under {stage}/", REDROP_COLUMNS, rows, width)


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


FORGET_COLUMNS = (Column("job day"), Column("project", drop=3), Column("amplitude ids", "right"), Column("hours", "right", drop=2),
                  Column("rows removed", "right"), Column("objects rewritten", "right", drop=1),
                  Column("generations deleted", "right", drop=4), Column("applied at"))


def forget_table(applied: list[dict], title: str, width: int | None = None) -> Table:
    """The deletion jobs applied (`ampbq forget --status`, and after `ampbq forget`)."""
    rows = [(f"{r['job_day']}", escape(str(r.get("project") or r.get("app") or "")), _number(r.get("amplitude_ids")), _number(r.get("hours")),
             _number(r.get("rows_removed")), _number(r.get("objects_rewritten")), _number(r.get("generations_deleted")),
             f"{r['applied_at']:%Y-%m-%d %H:%M:%S}Z" if r.get("applied_at") else "-") for r in applied]
    return fitted(title, FORGET_COLUMNS, rows, width)
