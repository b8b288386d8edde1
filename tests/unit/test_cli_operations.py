"""The operating commands' edges, checked without any service: options, ranges and clean errors."""

from __future__ import annotations

from datetime import datetime

import click
import pytest
from click.testing import CliRunner

from ampbq.tools.cli import main
from ampbq.tools.cli_options import HourOrDay, cloud_command, span
from factory import utc

ENV = {"AMPBQ_BUCKET": "a-bucket", "AMPBQ_PROJECT": "a-project"}


def test_a_day_means_all_of_its_hours_and_an_hour_means_itself():
    parse = HourOrDay().convert
    whole = span(None, parse("2024-01-30", None, None), parse("2024-01-31", None, None))
    assert (whole.start, whole.end) == (utc(2024, 1, 30), utc(2024, 1, 31, 23))
    some = span(None, parse("2024-01-30T22", None, None), parse("2024-01-31T01", None, None))
    assert len(some) == 4
    assert len(span(datetime(2024, 1, 30), None, None)) == 24


def test_date_and_start_together_are_a_usage_error():
    with pytest.raises(click.UsageError):
        span(datetime(2024, 1, 30), (utc(2024, 1, 30), utc(2024, 1, 30)), None)


def test_status_without_a_range_is_a_usage_error():
    result = CliRunner().invoke(main, ["status"], env=ENV)
    assert result.exit_code == 2 and "--date" in result.output


def test_commands_without_configuration_fail_cleanly():
    result = CliRunner().invoke(main, ["status", "--date", "2024-01-30"], env={"AMPBQ_BUCKET": "", "AMPBQ_PROJECT": "",
                                                                               "GOOGLE_CLOUD_PROJECT": ""})
    assert result.exit_code == 1 and "Error: AMPBQ_BUCKET and AMPBQ_PROJECT" in result.output
    assert "Traceback" not in result.output


def test_backfill_of_days_not_over_is_refused_before_touching_anything():
    result = CliRunner().invoke(main, ["backfill", "--start", "2999-01-01"], env=ENV)
    assert result.exit_code == 2 and "not over yet" in result.output  # wrong usage: nothing was done


def test_backfill_hours_must_be_a_span_of_the_day():
    result = CliRunner().invoke(main, ["backfill", "--start", "2024-01-01", "--hours", "9-3"], env=ENV)
    assert result.exit_code == 2 and "--hours" in result.output


def test_reprocess_needs_hours_or_a_date():
    result = CliRunner().invoke(main, ["reprocess"], env=ENV)
    assert result.exit_code == 2 and "--hour" in result.output


def test_bucket_and_project_options_override_the_environment():
    @click.command()
    @cloud_command
    def show(ops):
        click.echo(f"{ops.config.bucket} {ops.config.project}")

    result = CliRunner().invoke(show, ["--bucket", "x", "--project", "y"], env=ENV)
    assert result.output.strip() == "x y"
    assert CliRunner().invoke(show, [], env=ENV).output.strip() == "a-bucket a-project"
