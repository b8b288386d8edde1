"""The CLI's shared options and plumbing: --bucket/--project, date and hour ranges, waiting, and
library errors turned into clean click errors (the only place that happens)."""

from __future__ import annotations

import functools
import os
from datetime import date, datetime, timezone
from functools import cached_property

import click
from google.api_core.exceptions import GoogleAPICallError
from google.auth.exceptions import DefaultCredentialsError

from . import bigquery as bq_adapter
from . import gcs
from .config import Config
from .errors import AmpbqError
from .naming import HourRange


class Ops:
    """One invocation's configuration, and its clients, made when first used."""

    def __init__(self, config: Config):
        self.config = config

    @cached_property
    def bucket(self):
        return gcs.client(self.config.project).bucket(self.config.bucket)

    @cached_property
    def bq(self):
        return bq_adapter.client(self.config)


def cloud_command(function):
    """--bucket/--project over the environment, and library errors as clean messages (exit 1)."""

    @click.option("--project", help="Google Cloud project [default: $AMPBQ_PROJECT].")
    @click.option("--bucket", help="Data bucket [default: $AMPBQ_BUCKET].")
    @functools.wraps(function)
    def wrapper(bucket, project, **kwargs):
        overrides = {k: v for k, v in (("AMPBQ_BUCKET", bucket), ("AMPBQ_PROJECT", project)) if v}
        try:
            return function(Ops(Config.from_env({**os.environ, **overrides})), **kwargs)
        except (AmpbqError, GoogleAPICallError, DefaultCredentialsError) as error:
            raise click.ClickException(str(error).splitlines()[0]) from None

    return wrapper


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


def wait_options(default_poll: float):
    def decorate(function):
        function = click.option("--poll", default=default_poll, show_default=True, help="Seconds between checks.")(function)
        function = click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait before giving up.")(function)
        return click.option("--wait/--no-wait", default=True, show_default=True,
                            help="Wait until every hour is settled (loaded, no data, or a problem).")(function)
    return decorate


