"""The `ampbq` command line: a thin click layer over the same code the functions run."""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import click

from . import naming, transform as core
from .shaping import Lineage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Keep a complete, exact copy of Amplitude events in BigQuery."""


@main.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Upload day to run (default: the previous UTC day).")
@click.option("--zip", "zip_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve this Export API archive instead of generated data.")
@click.option("--events-per-hour", default=100, show_default=True, help="Generated events per hour.")
@click.option("--parts-per-hour", default=2, show_default=True, help="Generated files (#n parts) per hour.")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for every hour to land.")
def demo(day, zip_path, events_per_hour, parts_per_hour, timeout) -> None:
    """Run a whole day end to end on the local stack and print what landed.

    Starts the emulators, a stub Export API and the three functions on 127.0.0.1, publishes a
    daily-runs message, waits until every hour is in BigQuery, and stops everything it started.
    Exits non-zero unless loaded + rejected equals the events exported.

    Example:

        ampbq demo --date 2024-01-31 --events-per-hour 500
    """
    from rich.console import Console
    from rich.table import Table

    from .demo import run_demo

    console = Console(stderr=True)
    with console.status("starting the local stack…") as status:
        report = run_demo(day.date() if day else None, zip_path, events_per_hour, parts_per_hour, timeout,
                          progress=lambda done, total: status.update(f"hours landed: {done}/{total}"))
    table = Table(title=f"upload hours of {report.day:%Y-%m-%d}")
    for column in ("hour", "events exported", "rows loaded", "rejected", "state"):
        table.add_column(column, justify="right" if column != "state" else "left")
    for hour in report.hours:
        table.add_row(f"{hour.hour:%Y-%m-%d %H}:00", str(hour.exported), str(hour.loaded), str(hour.rejected),
                      "ok" if hour.landed else "MISSING")
    Console().print(table)
    click.echo(f"wall time after publishing: {report.seconds:.1f} s" + (" (timed out)" if report.timed_out else ""))
    click.echo(report.summary_line())
    sys.exit(0 if report.ok else 1)


_AMPLITUDE_FILE = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})#\d+\.json\.gz$")


def hour_from_name(path: Path) -> datetime | None:
    """The upload hour in an export object name (…/YYYY-MM-DD/HH.json.gz) or an Amplitude file name."""
    as_object = naming.parse_hour_object("export/" + "/".join(path.parts[-2:]))
    if as_object:
        return as_object
    match = _AMPLITUDE_FILE.search(path.name)
    if match:
        return datetime.strptime(match.group(1), "%Y-%m-%d").replace(hour=int(match.group(2)), tzinfo=timezone.utc)
    return None


@main.command("transform")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hour", type=click.DateTime(["%Y-%m-%dT%H"]), help="Upload hour, if SRC's name does not say it.")
def transform_command(src: Path, dst: Path, hour) -> None:
    """Run the transform step on local files: gzip NDJSON in, BigQuery-ready NDJSON out.

    Rejected lines go beside DST, as DST with the suffix .rejects.json.

    Example:

        ampbq transform 203138_2020-11-24_9#627.json.gz rows.json
    """
    upload_hour = hour.replace(tzinfo=timezone.utc) if hour else hour_from_name(src)
    if upload_hour is None:
        raise click.UsageError(f"cannot tell the upload hour from {src.name}; pass --hour YYYY-MM-DDTHH")
    rejects_path = dst.with_name(dst.name.removesuffix(".json") + ".rejects.json")
    lineage = Lineage(upload_hour, src.resolve().as_uri(), 0)
    with open(src, "rb") as raw, open(dst, "wb") as out, core.LazyWriter(lambda: open(rejects_path, "wb")) as rejects:
        counts = core.transform_stream(core.open_gzip(raw), out, rejects, lineage)
    if not counts.rejected:
        rejects_path.unlink(missing_ok=True)
    else:
        click.echo(f"rejected lines: {rejects_path}", err=True)
    click.echo(f"transform: events={counts.events} rows={counts.rows} rejected={counts.rejected}")
