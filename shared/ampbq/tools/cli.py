"""The `ampbq` command line: a thin click layer over the same code the functions run."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from .. import allocator
from .. import bigquery as bq_adapter
from . import backfill as backfills
from .. import naming
from . import inventory, rejects as quarantine, render, reprocess as redrops, status as states
from .. import transform as core
from .cli_options import Group, Ops, amplitude_project_option, cloud_command, range_options, span, wait_options
from ..errors import PermanentError
from ..naming import HourRange
from ..shaping import Lineage


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ampbq", message="%(prog)s %(version)s")
def main() -> None:
    """Keep a complete, exact copy of Amplitude events in BigQuery."""


@main.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Upload day to run (default: the previous UTC day).")
@click.option("--zip", "zip_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve this Export API archive instead of generated data.")
@click.option("--events-per-hour", default=100, show_default=True, help="Generated events per hour.")
@click.option("--parts-per-hour", default=2, show_default=True, help="Generated files (#n parts) per hour.")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for every hour to land.")
@click.option("--amplitude-url", help="Use this Export API server instead of the built-in stub "
              "(keys from AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the stack keeps its data and logs (default: .stack/demo; emptied at start).")
@click.option("--native-export", "native_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Write the part files in this folder into a bucket standing for the one Amplitude's own "
              "export writes to, and take them from there (make one: python -m ampbq.tools.synthetic native-export DIR).")
@click.option("--projects", default=1, show_default=True, type=click.IntRange(1, 4),
              help="Amplitude projects in the deployment, each with its own keys and data (docs/projects.md).")
def demo(day, zip_path, events_per_hour, parts_per_hour, timeout, amplitude_url, workdir, native_dir, projects) -> None:
    """Run a whole day end to end on the local stack and print what landed.

    Starts the emulators, a stub Export API and the three functions on 127.0.0.1, publishes a
    daily-runs message, waits until every hour is in BigQuery, and stops everything it started.
    Exits non-zero unless loaded + rejected equals the events exported.

    Example:

        ampbq demo --date 2024-01-31 --events-per-hour 500

        AMPLITUDE_API_KEY=… AMPLITUDE_SECRET_KEY=… ampbq demo --amplitude-url http://127.0.0.1:8080

        python -m ampbq.tools.synthetic native-export parts/ && ampbq demo --native-export parts/

        ampbq demo --projects 2
    """
    from rich.console import Console
    from rich.table import Table

    from .demo import run_demo, run_native_demo
    from ..errors import AmpbqError
    from .stack import Terminated, raise_on_sigterm

    console = Console(stderr=True)
    raise_on_sigterm()
    with console.status("starting the local stack…") as status:
        try:
            landed = lambda done, total: status.update(f"hours landed: {done}/{total}")  # noqa: E731
            if native_dir is not None:
                if day or zip_path or amplitude_url or projects > 1:
                    raise click.UsageError("--native-export takes its hours from the parts; it does not go with --date, --zip, "
                                           "--amplitude-url or --projects")
                report = run_native_demo(native_dir, timeout, workdir, progress=landed)
            else:
                if projects > 1 and (zip_path or amplitude_url):
                    raise click.UsageError("--projects generates each project's data; it does not go with --zip or --amplitude-url")
                report = run_demo(day.date() if day else None, zip_path, events_per_hour, parts_per_hour, timeout,
                                  workdir, progress=landed, amplitude_url=amplitude_url, projects=projects)
        except (ValueError, AmpbqError) as why:
            raise click.ClickException(str(why)) from None
        except Terminated:
            status.stop()
            click.echo("demo: stopped by SIGTERM; everything it started has stopped", err=True)
            sys.exit(143)
    if report.export_error:
        click.echo(f"Error: the export gave up on {report.export_error}", err=True)
    for one in report.projects or [report]:
        title = f"upload hours of {one.day:%Y-%m-%d}" + (f", Amplitude project {one.project}" if one.project else "")
        table = Table(title=title)
        for column in ("hour", "events exported", "rows loaded", "rejected", "state"):
            table.add_column(column, justify="right" if column != "state" else "left")
        for hour in one.hours:
            table.add_row(f"{hour.hour:%Y-%m-%d %H}:00", str(hour.exported), str(hour.loaded), str(hour.rejected),
                          "ok" if hour.landed else "MISSING")
        Console().print(table)
    click.echo(f"wall time after publishing: {report.seconds:.1f} s" + (" (timed out)" if report.timed_out else ""))
    for line in report.project_lines():
        click.echo(line)
    click.echo(report.summary_line())
    sys.exit(0 if report.ok else 1)


_AMPLITUDE_FILE = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})#\d+\.json(\.gz)?$")


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
    """Run the transform step on local files: NDJSON in (gzip or plain), BigQuery-ready NDJSON out.

    Rejected lines go beside DST, as DST with the suffix .rejects.json. SRC is only read: a DST
    (or rejects file) that is SRC is refused.

    Example:

        ampbq transform 203138_2020-11-24_9#627.json.gz rows.json
        ampbq transform sample.json rows.json --hour 2024-01-31T05
    """
    upload_hour = hour.replace(tzinfo=timezone.utc) if hour else hour_from_name(src)
    if upload_hour is None:
        raise click.UsageError(f"cannot tell the upload hour from {src.name}; pass --hour YYYY-MM-DDTHH")
    rejects_path = dst.with_name(dst.name.removesuffix(".json") + ".rejects.json")
    for written in (dst, rejects_path):
        if _same_file(src, written):
            raise click.UsageError(f"{written} is the same file as SRC {src}; the transform would overwrite its "
                                   "input: choose another DST")
    if not dst.parent.is_dir():
        raise click.ClickException(f"cannot write {dst}: directory {dst.parent} does not exist")
    lineage = Lineage(upload_hour, src.resolve().as_uri(), 0)
    allocator.keep_freed_buffers()
    try:
        with open(src, "rb") as raw, open(dst, "wb") as out, core.LazyWriter(lambda: open(rejects_path, "wb")) as rejects:
            counts = core.transform_stream(core.open_local(raw), out, rejects, lineage)
    except OSError as error:
        raise click.ClickException(f"{error.filename or dst}: {error.strerror or error}") from None
    if not counts.rejected:
        rejects_path.unlink(missing_ok=True)
    else:
        click.echo(f"rejected lines: {rejects_path}", err=True)
    click.echo(f"transform: events={counts.events} rows={counts.rows} rejected={counts.rejected}")


def _same_file(src: Path, other: Path) -> bool:
    """Whether `other` is `src` under another spelling (a symlink, .., a hard link)."""
    try:
        return other.exists() and os.path.samefile(src, other)
    except OSError:
        return False


# ------------------------------------------------------------------ operating it
# These commands work against the cloud (application default credentials) and the local stack
# alike: the clients honour STORAGE_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST, PUBSUB_EMULATOR_HOST.
def show_statuses(ops: Ops, hours: HourRange, only: set | None = None, wide: bool = False,
                  projects: tuple | None = None) -> int:
    """Print the status table of `hours` (or of the `only` hours among them) of each project
    (every project when None), one table and summary line each; return the exit code."""
    projects = ops.config.projects if projects is None else projects
    named = len(ops.config.projects) > 1
    every = []
    for project in projects:
        found = inventory.read(ops.bucket, ops.bq, ops.config, hours, project=project)
        statuses = [states.classify(e) for e in found.hours if only is None or e.hour in only]
        console = render.console(wide=wide)
        title = render.span_label(hours) + (f", Amplitude project {project.label}" if named else "")
        console.print(render.status_table(statuses, title, console.width))
        for warning in found.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(states.summary_line(statuses, str(hours), project.label if named else None))
        every += statuses
    return states.exit_code(every)


def after_redrop(ops: Ops, done: list, stage: str, wait: bool, timeout: float, poll: float, stderr: bool = False,
                 wide: bool = False, project=None) -> int:
    """Show what was re-dropped, wait for those hours to settle, show them; return the exit code."""
    console = render.console(stderr=stderr, wide=wide)
    console.print(render.redrop_table(done, stage, console.width))
    dropped = [r.hour for r in done if not r.error]
    code = states.EXIT_PROBLEM if len(dropped) < len(done) else states.EXIT_COMPLETE
    if wait and dropped:
        with render.progress("hours settled") as update:
            settled = redrops.wait(dropped, ops.bucket, ops.bq, ops.config, timeout, poll, update,
                                   project.segment if project else "")
        shown = show_statuses(ops, HourRange(min(dropped), max(dropped)), set(dropped), wide,
                              (project,) if project else None)
        code = max(code, shown if settled is not None else states.EXIT_PENDING)
    return code


def _select(ops: Ops, wanted: str | None) -> tuple:
    """The projects --amplitude-project names (all when None); one that the deployment does not
    have is wrong usage (exit 2), a configuration that does not parse is not (exit 1)."""
    config = ops.config
    try:
        return config.select(wanted)
    except PermanentError as why:
        raise click.BadParameter(str(why), param_hint="--amplitude-project") from None


@main.command()
@cloud_command
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC upload day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC upload day (default: --start).")
@click.option("--hours", help="Only these hours of each day: HH or HH-HH (inclusive).")
@click.option("--local", is_flag=True, help="Run export, transform and load in this process instead of publishing.")
@click.option("--topic", default="daily-runs", show_default=True, envvar="AMPBQ_RUNS_TOPIC", help="The run topic.")
@amplitude_project_option("Only this Amplitude project (its id) [default: every project of the deployment].")
@wait_options(5.0)
def backfill(ops: Ops, start, end, hours, local, topic, amplitude_project, wait, timeout, poll) -> None:
    """Export a range of days from Amplitude into BigQuery: one run request per day.

    Publishes {"date": ...} (or, with --hours, {"start": ..., "end": ...}) per day to the run
    topic, so the deployed chain does the days in parallel, then shows a progress bar until
    every day has landed. Refuses hours that are not over yet (exit 2). With --local it exports
    here, and needs AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY. Exit status: 0 all landed,
    1 a day or hour failed, 2 wrong usage, 3 still running at --timeout.

    Waits at most 30 s in all for Cloud Storage, BigQuery or Pub/Sub to answer a call, then
    says which could not be reached (AMPBQ_CONNECT_TIMEOUT_SECONDS sets another bound).

    Example:

        ampbq backfill --start 2024-01-01 --end 2024-01-31
        ampbq backfill --start 2024-02-01 --hours 05-07 --local
        ampbq backfill --start 2024-01-31 --amplitude-project 123456
    """
    try:
        span_hours = backfills.parse_hours(hours) if hours else None
    except ValueError as why:
        raise click.BadParameter(str(why), param_hint="--hours") from None
    min_age = ops.config.min_data_age_hours  # a configuration error is exit 1, not wrong usage
    try:
        plan = backfills.plan(start.date(), (end or start).date(), span_hours, datetime.now(timezone.utc), min_age)
    except PermanentError as why:  # a range that ends before it starts, or is not over yet
        raise click.UsageError(str(why)) from None
    projects = _select(ops, amplitude_project)
    if local:
        for project in projects:
            ops.config.for_project(project).require_amplitude_keys()
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    runs = backfills.snapshot(ops.bucket, plan.ranges, projects, named=len(ops.config.projects) > 1)
    if local:
        with render.progress("days run here") as update:
            for n, run in enumerate(runs, 1):
                backfills.run_locally(run, ops.config, ops.bucket, ops.bq)
                update(n, len(runs))
    else:
        only = projects[0].app if amplitude_project is not None and len(ops.config.projects) > 1 else None
        ids = backfills.publish(ops.config.project, topic, plan.bodies(only))
        click.echo(f"published {len(ids)} run request(s) to {topic}: {', '.join(map(str, plan.ranges))}")
    if not wait:
        return
    with render.progress("days landed") as update:
        finished = backfills.wait(runs, ops.bucket, ops.bq, ops.config, timeout, poll, update)
    click.echo("\n".join(run.line() for run in runs))
    click.echo(backfills.summary_line(runs))
    failed = any(run.done and not run.ok for run in runs)
    if failed or not finished:
        click.echo("see `ampbq status --start ... --end ...` for each hour", err=True)
        sys.exit(states.EXIT_PROBLEM if failed else states.EXIT_PENDING)


@main.command()
@cloud_command
@click.option("--hour", "hour_list", multiple=True, type=click.DateTime(["%Y-%m-%dT%H"]), help="An upload hour (repeatable).")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Every hour of this UTC day that has an object.")
@click.option("--from", "stage", type=click.Choice(sorted(redrops.STAGES)), default="export", show_default=True,
              help="export: transform and load again; import: load again.")
@click.option("--wide", is_flag=True, help="Every column of the table, however wide; a narrower terminal gets the main ones.")
@amplitude_project_option("The Amplitude project (its id) whose hours to run again; needed when the deployment has several.")
@wait_options(2.0)
def reprocess(ops: Ops, hour_list, day, stage, wide, amplitude_project, wait, timeout, poll) -> None:
    """Run the chain again for exactly these hours, replacing their rows.

    Rewrites each hour's object under export/ (or import/) onto itself: a new generation, which
    the chain processes like a new object. An hour without an object under export/ cannot be
    reprocessed: re-export it with `ampbq backfill --hours`. Exit status as `ampbq status`.

    Waits at most 30 s in all for Cloud Storage, BigQuery or Pub/Sub to answer a call, then
    says which could not be reached (AMPBQ_CONNECT_TIMEOUT_SECONDS sets another bound).

    Example:

        ampbq reprocess --hour 2024-01-31T05
        ampbq reprocess --date 2024-01-31 --from import
        ampbq reprocess --hour 2024-01-31T05 --amplitude-project 123456
    """
    if bool(hour_list) == bool(day):
        raise click.UsageError("pass --hour (one or more) or --date")
    if amplitude_project is None and len(ops.config.projects) > 1:
        known = ", ".join(p.label for p in ops.config.projects)
        raise click.UsageError(f"this deployment has several Amplitude projects ({known}); pass --amplitude-project")
    project = _select(ops, amplitude_project)[0]
    if day:
        hours = redrops.existing_hours(ops.bucket, HourRange.day(day.date()), stage, project.segment)
        if not hours:
            prefix = naming.export_prefix(project.segment) if stage == "export" else naming.import_prefix(project.segment)
            raise click.ClickException(f"no objects under {prefix}{day:%Y-%m-%d}/; re-export the day with ampbq backfill")
    else:
        hours = sorted({h.replace(tzinfo=timezone.utc) for h in hour_list})
    done = redrops.reprocess(ops.bucket, hours, stage, project.segment)
    sys.exit(after_redrop(ops, done, stage, wait, timeout, poll, wide=wide, project=project))


@main.command()
@cloud_command
@range_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every hour and the summary.")
@click.option("--wide", is_flag=True, help="Every column of the table, however wide; a narrower terminal gets the main ones.")
@amplitude_project_option("Only this Amplitude project (its id) [default: every project, a table each].")
def status(ops: Ops, day, start, end, as_json, wide, amplitude_project) -> None:
    """Show, per upload hour, what is in GCS and BigQuery and whether the hour is complete.

    States: loaded, no data (Amplitude had nothing for the hour), pending (the chain is on it),
    not over (the hour has not ended), not ready (over, but Amplitude has all of an hour only
    AMPBQ_MIN_DATA_AGE_HOURS, 2 h, after it ends), MISSING, FAILED (a step gave up; see
    deadletter/), MISMATCH (counts disagree).

    Exit codes: 0 every hour loaded or no data; 1 any MISSING, FAILED or MISMATCH, or an error;
    2 wrong usage; 3 the rest are pending, not over or not ready (ask again later).

    Waits at most 30 s in all for Cloud Storage, BigQuery or Pub/Sub to answer a call, then
    says which could not be reached (AMPBQ_CONNECT_TIMEOUT_SECONDS sets another bound).

    Example:

        ampbq status --date 2024-01-31
        ampbq status --start 2024-01-01 --end 2024-01-31 --json
        ampbq status --date 2024-01-31 --amplitude-project 123456
    """
    hours = span(day, start, end)
    projects = _select(ops, amplitude_project)
    if not as_json:
        sys.exit(show_statuses(ops, hours, wide=wide, projects=projects))
    documents, every = [], []
    for project in projects:
        found = inventory.read(ops.bucket, ops.bq, ops.config, hours, project=project)
        statuses = [states.classify(e) for e in found.hours]
        documents.append(states.document(str(hours), statuses, found.warnings))
        if project.app:
            documents[-1] = {"project": project.app, **documents[-1]}
        every += statuses
    if len(projects) == 1:  # the one project, or the one --amplitude-project names
        document = documents[0]
    else:  # one document per project
        document = {"range": str(hours), "exit_code": states.exit_code(every), "projects": documents}
    click.echo(json.dumps(document, indent=1, default=str))
    sys.exit(states.exit_code(every))


@main.command()
@cloud_command
@range_options
@click.option("--json", "as_json", is_flag=True, help="Every record as one JSON line.")
@click.option("--limit", default=50, show_default=True, help="Lines to show in the table.")
@click.option("--replay", is_flag=True, help="Reprocess the hours that have rejects, from export/, with the code deployed now.")
@click.option("--wide", is_flag=True, help="Every column of the table, however wide; a narrower terminal gets the main ones.")
@amplitude_project_option("Only this Amplitude project (its id) [default: every project, a table each].")
@wait_options(2.0)
def rejects(ops: Ops, day, start, end, as_json, limit, replay, wide, amplitude_project, wait, timeout, poll) -> None:
    """List the lines transform quarantined, with the reason for each; replay them after a fix.

    Replay reprocesses each hour that has rejects from its export object: the load replaces
    an hour as a whole, so re-feeding only the rejected lines would drop the hour's good rows.
    Deploy the fix first; lines the new code still refuses stay in rejects/. Every Amplitude
    project of the deployment is shown, a table and a summary line each (each record says its
    project in --json), or the one --amplitude-project names.

    Waits at most 30 s in all for Cloud Storage, BigQuery or Pub/Sub to answer a call, then
    says which could not be reached (AMPBQ_CONNECT_TIMEOUT_SECONDS sets another bound).

    Example:

        ampbq rejects --date 2024-01-31
        ampbq rejects --date 2024-01-31 --replay
        ampbq rejects --date 2024-01-31 --amplitude-project 123456
    """
    hours = span(day, start, end)
    projects = _select(ops, amplitude_project)
    named = len(ops.config.projects) > 1
    found = [(project, quarantine.read(ops.bucket, hours, project.segment)) for project in projects]
    for project, records in found:
        label = f" project={project.label}" if named else ""
        if as_json:
            for record in records:
                click.echo(json.dumps(({"project": project.label} if named else {}) | record.as_json()))
        else:
            console = render.console(wide=wide)
            table = render.rejects_table(records, limit, console.width)
            if named:
                table.title = f"{table.title}, Amplitude project {project.label}"
            console.print(table)
            for kind, n in quarantine.by_kind(records).most_common():
                click.echo(f"{n:>8}  {kind}")
        click.echo(f"rejects: {hours}{label} hours={len({r.hour for r in records})} lines={len(records)}", err=as_json)
    if replay:
        codes = [after_redrop(ops, quarantine.replay(ops.bucket, records, project.segment), "export", wait, timeout, poll,
                              stderr=as_json, wide=wide, project=project if named else None)
                 for project, records in found if records]
        if codes:
            sys.exit(max(codes, key=lambda c: (c == states.EXIT_PROBLEM, c)))


@main.command()
@cloud_command
@click.option("--start-day", type=click.DateTime(["%Y-%m-%d"]), help="First deletion-job day [default: 29 days before --end-day].")
@click.option("--end-day", type=click.DateTime(["%Y-%m-%d"]), help="Last deletion-job day [default: today, UTC].")
@click.option("--status", "show_status", is_flag=True, help="Show the deletion jobs applied so far; apply nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the table.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds to wait for the re-written hours to load.")
@click.option("--wide", is_flag=True, help="Every column of the table, however wide; a narrower terminal gets the main ones.")
@amplitude_project_option("Only this Amplitude project (its id) [default: every project of the deployment].")
def forget(ops: Ops, start_day, end_day, show_status, as_json, timeout, wide, amplitude_project) -> None:
    """Make BigQuery and the bucket forget the users Amplitude deleted (User Privacy API).

    For each Amplitude project of the deployment (or the one --amplitude-project names), reads
    the deletion jobs its User Privacy API lists, with its own keys, for the job days
    --start-day..--end-day (default: the last 30 days), and applies each job that is done and
    not applied yet to that project's rows and objects: its users' rows leave the table (and
    every view), their events leave the hour objects and raw zips under export/ (re-written,
    then reloaded, so every hour still reconciles) and import/, and every older generation of
    those objects is deleted. Needs each project's API key and secret key (AMPLITUDE_API_KEY and
    AMPLITUDE_SECRET_KEY; AMPLITUDE_API_KEY_<id> and AMPLITUDE_SECRET_KEY_<id> for the others).
    A project that fails does not stop the others. --status shows what was applied: job day,
    project, ids, hours, rows removed, objects rewritten, when. Exit status: 0 done (or nothing
    to apply), 1 an error (of any project), 2 wrong usage, 3 the re-written hours were not
    loaded within --timeout, or Amplitude could not be asked now (run it again).

    Example:

        ampbq forget
        ampbq forget --start-day 2024-01-01 --end-day 2024-03-31
        ampbq forget --amplitude-project 123456
        ampbq forget --status
    """
    from .. import deletions, forgetting, load
    from ..errors import TransientError

    def chosen() -> tuple | None:  # after the usage checks that need no configuration
        return _select(ops, amplitude_project) if amplitude_project is not None else None

    def show(title: str, projects: tuple | None) -> None:
        applied = bq_adapter.query_rows(ops.bq, load.applied_sql(ops.config.forgets_table_id))
        applied = forgetting.applied_of(applied, ops.config.projects, projects)
        if as_json:
            click.echo(json.dumps({"applied": applied}, indent=1, default=str))
            return
        console = render.console(wide=wide)
        console.print(render.forget_table(applied, title, console.width))

    if show_status:
        if start_day or end_day:
            raise click.UsageError("--status shows every applied job; it takes no --start-day or --end-day")
        projects = chosen()
        bq_adapter.ensure_tables(ops.bq, ops.config)
        show("deletion jobs applied", projects)
        return
    end = (end_day.date() if end_day else datetime.now(timezone.utc).date())
    start = start_day.date() if start_day else deletions.recent_days(end)[0]
    try:
        deletions.check_range(start, end)
    except PermanentError as why:
        raise click.UsageError(str(why)) from None
    projects = chosen()
    named = len(ops.config.projects) > 1
    if not named:
        ops.config.require_amplitude_keys()  # the one project: no keys is an error before anything is read
    import requests

    run = forgetting.forget(ops.config, ops.bucket, ops.bq, requests.Session(), start, end, budget=timeout,
                            projects=projects)
    documents = []
    for outcome in run.outcomes:
        label = f" project={outcome.project.label}" if named else ""
        if outcome.error is not None:
            transient = isinstance(outcome.error, TransientError)
            which = f"Amplitude project {outcome.project.label}: " if named else ""
            click.echo(f"{'not yet' if transient else 'Error'}: {which}{outcome.error}", err=True)
        elif not as_json:
            fields = outcome.result.log_fields()
            click.echo(f"forget:{label} days={start}..{end} jobs_listed={fields['jobs_listed']} "
                       f"applied={fields['jobs_applied']} amplitude_ids={fields['amplitude_ids']} hours={fields['hours']} "
                       f"rows_removed={fields['rows_removed']} objects_rewritten={fields['objects_rewritten']} "
                       f"generations_deleted={fields['generations_deleted']}")
        documents.append(outcome.log_fields() if named else (outcome.result.log_fields() if outcome.result else
                                                             {"error": str(outcome.error)}))
    code = forgetting.exit_code(run)
    if as_json:
        document = documents[0] if len(documents) == 1 else {"days": f"{start}..{end}", "exit_code": code,
                                                             "projects": documents}
        click.echo(json.dumps(document, indent=1, default=str))
    sys.exit(code)


@main.command()
@click.option("--events-per-hour", default=20, show_default=True, help="Events the stub project has per hour.")
@click.option("--quiet-hours", default="", help="Hours of the day with no data, e.g. 03,04.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Where the emulators keep their data.")
def stack(events_per_hour, quiet_hours, workdir) -> None:
    """Start the local stack with a stub Amplitude project and keep it running until Ctrl-C.

    Prints the environment that points `ampbq` at it, and writes the same lines to env.sh in
    its workdir (default .stack/sandbox), so any other shell can load them while it runs and try
    backfill, status, reprocess and rejects. Everything it started stops when it stops (Ctrl-C
    or SIGTERM). A second stack in the same workdir is refused.

    \b
    Example:
        ampbq stack --quiet-hours 03,04
        # in another shell, once it says "local stack up":
        source .stack/sandbox/env.sh
        ampbq backfill --start 2024-01-30
    """
    from . import sandbox
    from .stack import StackError

    def announce(running) -> None:
        click.echo("\n".join(sandbox.exports(running)))
        click.echo(f"# local stack up (logs in {running.workdir / 'logs'}); in another shell: "
                   f"source {running.workdir / sandbox.ENV_FILE}; Ctrl-C stops it", err=True)

    try:
        quiet = frozenset(int(h) for h in quiet_hours.split(",") if h.strip())
    except ValueError:
        raise click.BadParameter(f"{quiet_hours!r} is not hours like 03,04", param_hint="--quiet-hours") from None
    with render.console(stderr=True).status("starting the local stack…") as spinner:
        try:
            sandbox.serve(sandbox.GeneratedSource(events_per_hour, quiet_hours=quiet), workdir, announce, spinner.stop)
        except StackError as why:
            spinner.stop()
            raise click.ClickException(str(why)) from None


def _register_bench() -> None:
    from .bench import bench

    main.add_command(bench, "bench")


_register_bench()
