"""The CLI's shared options and plumbing: --bucket/--project, date and hour ranges, waiting, and
library errors turned into clean click errors (the only place that happens)."""

from __future__ import annotations

import functools
import inspect
import os
from datetime import date, datetime, timezone
from functools import cached_property

import click
import requests
import urllib3.exceptions
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from .. import bigquery as bq_adapter
from .. import gcs
from . import calls
from ..config import Config
from ..errors import AmpbqError
from ..naming import HourRange


def keep_examples(text: str | None) -> str | None:
    """Help text whose indented blocks (the examples) click prints as they are, one line each.

    click rewraps every paragraph; a paragraph after a line holding only \\b is left alone. This
    puts that marker before each indented paragraph that has none.
    """
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    for n, paragraph in enumerate(paragraphs):
        if paragraph[:1].isspace() and not paragraph.lstrip(" ").startswith("\b"):
            paragraphs[n] = "\b\n" + paragraph
    return "\n\n".join(paragraphs)


class UsageLine(click.ClickException):
    """Wrong usage, told in one line like every other error (click's own form takes three), exit 2."""

    exit_code = 2

    def __init__(self, error: click.UsageError):
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        super().__init__(error.format_message() + where)


class Group(click.Group):
    """The `ampbq` group: every command added to it prints its examples one per line, and any
    command's wrong usage is one line `Error: …` (exit 2)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.help = keep_examples(cmd.help)
        super().add_command(cmd, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # plain `ampbq`: click prints the help
                raise
            raise UsageLine(error) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise UsageLine(error) from None


class Ops:
    """One invocation's configuration, and its clients, made when first used (so a command
    checks its usage before the environment)."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    @cached_property
    def config(self) -> Config:
        return Config.from_env(self.env)

    @cached_property
    def bucket(self):
        return gcs.client(self.config.project).bucket(self.config.bucket)

    @cached_property
    def bq(self):
        return bq_adapter.client(self.config)


# Errors of the client libraries and their transports: each ends the command with one line.
_LIBRARY_ERRORS = (AmpbqError, GoogleAPIError, GoogleAuthError, requests.RequestException, urllib3.exceptions.HTTPError,
                   OSError)


def cloud_command(function):
    """--bucket/--project over the environment, every call to Cloud Storage, BigQuery and Pub/Sub
    bounded in time (calls.py), and library errors as one clean line (exit 1)."""

    @click.option("--project", help="Google Cloud project [default: $AMPBQ_PROJECT].")
    @click.option("--bucket", help="Data bucket [default: $AMPBQ_BUCKET].")
    @functools.wraps(function)
    def wrapper(bucket, project, **kwargs):
        overrides = {k: v for k, v in (("AMPBQ_BUCKET", bucket), ("AMPBQ_PROJECT", project)) if v}
        env = {**os.environ, **overrides}
        try:
            seconds = calls.seconds_from_env(env)
        except AmpbqError as error:
            raise click.ClickException(str(error)) from None
        with calls.bounded(seconds):  # error_line reads the bound
            try:
                return function(Ops(env), **kwargs)
            except BrokenPipeError:
                raise  # the reader went away (`| head`): click exits quietly
            except _LIBRARY_ERRORS as error:
                raise click.ClickException(error_line(error)) from None

    return wrapper


def error_line(error: BaseException) -> str:
    """One line for a person: the service that could not be reached, or the error's first line."""
    found = calls.unreachable(error)
    if found is not None:
        return str(found)
    text = str(error).strip()
    if isinstance(error, GoogleAPIError) and not text:
        text = type(error).__name__
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= 300 else first[:299] + "…"


class HourOrDay(click.ParamType):
    """YYYY-MM-DD or YYYY-MM-DDTHH, as (first hour, last hour) in UTC."""

    name = "YYYY-MM-DD[THH]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            if "T" in value:
                hour = datetime.strptime(value, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
                return hour, hour
            day = HourRange.day(date.fromisoformat(value))
            return day.start, day.end
        except ValueError:
            self.fail(f"{value!r} is not YYYY-MM-DD or YYYY-MM-DDTHH", param, ctx)


def span(day: datetime | None, start: tuple | None, end: tuple | None) -> HourRange:
    """--date, or --start [--end] (a day means all of its hours), as an hour range."""
    if day is not None and (start or end):
        raise click.UsageError("pass --date, or --start/--end, not both")
    if day is not None:
        return HourRange.day(day.date())
    if start is None:
        raise click.UsageError("pass --date, or --start (and --end)")
    try:
        return HourRange(start[0], (end or start)[1])
    except ValueError as why:
        raise click.UsageError(str(why)) from None


def range_options(function):
    function = click.option("--end", type=HourOrDay(), help="Last day or hour (default: --start).")(function)
    function = click.option("--start", type=HourOrDay(), help="First day or hour, e.g. 2024-01-31 or 2024-01-31T05.")(function)
    return click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="One UTC upload day.")(function)


def amplitude_project_option(text: str):
    """--amplitude-project (or --app): one Amplitude project of the deployment, by its id (or
    `default`). Not --project, which names the Google Cloud project."""
    return click.option("--amplitude-project", "--app", "amplitude_project", metavar="ID", help=text)


def wait_options(default_poll: float):
    def decorate(function):
        function = click.option("--poll", default=default_poll, show_default=True, help="Seconds between checks.")(function)
        function = click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait before giving up.")(function)
        return click.option("--wait/--no-wait", default=True, show_default=True,
                            help="Wait until every hour is settled (loaded, no data, or a problem).")(function)
    return decorate


