"""The schedule setting: what each choice makes Cloud Scheduler publish, and when, read by the
export's own parser. The `schedules` local is evaluated by `terraform console` (offline: no
provider is needed for locals), so the test meets Terraform's expression rules, not a copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ampbq import events, naming
from terraform_hcl import MODULE

pytestmark = pytest.mark.terraform
TERRAFORM_BIN = shutil.which("terraform")


def schedules(tmp_path: Path, schedule: str) -> dict:
    """The module's `schedule` local for this choice of `var.schedule`."""
    if TERRAFORM_BIN is None:
        pytest.fail("no terraform binary on PATH: install Terraform to evaluate the module's locals")
    text = (MODULE / "pubsub.tf").read_text()
    block = re.search(r"^locals \{\n.*?^\}\n", text, re.M | re.S).group(0)
    (tmp_path / "schedule.tf").write_text(block + 'variable "schedule" {\n  type = string\n}\n')
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    run = subprocess.run([TERRAFORM_BIN, "console", f"-var=schedule={schedule}"], input="jsonencode(local.schedule)\n",
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(json.loads(run.stdout.strip()))


def cron_minute_hour(cron: str) -> tuple[str, str]:
    minute, hour, *rest = cron.split()
    assert rest == ["*", "*", "*"], cron
    return minute, hour


def test_daily_publishes_the_empty_message_at_0300_utc_for_the_previous_day(tmp_path):
    found = schedules(tmp_path, "daily")
    assert cron_minute_hour(found["cron"]) == ("0", "3")
    fired = datetime(2024, 2, 1, 3, 0, 4, tzinfo=timezone.utc)
    hours = events.parse_run_request(json.loads(found["body"]), fired)
    assert hours == naming.HourRange.day(datetime(2024, 1, 31).date())
    # Amplitude has the whole day by then (its last hour ended 3 h earlier).
    assert fired >= hours.end + naming.HOUR + timedelta(hours=2)


def test_hourly_publishes_the_latest_hour_message_each_hour_and_lands_it_within_2h15(tmp_path):
    found = schedules(tmp_path, "hourly")
    minute, hour = cron_minute_hour(found["cron"])
    assert hour == "*"
    for fired_hour in range(24):
        fired = datetime(2024, 2, 1, fired_hour, int(minute), 0, tzinfo=timezone.utc)
        hours = events.parse_run_request(json.loads(found["body"]), fired, min_data_age_hours=2)
        assert hours.start == hours.end  # one hour a run
        ended = hours.end + naming.HOUR
        assert fired >= ended + timedelta(hours=2)  # complete at Amplitude: the export accepts it
        assert fired - ended <= timedelta(hours=2, minutes=15)  # leaves the chain its minutes
    # Consecutive runs take consecutive hours: none skipped, none twice.
    taken = [events.parse_run_request({"hour": "latest"}, datetime(2024, 2, 1, h, int(minute), tzinfo=timezone.utc)).start
             for h in range(24)]
    assert all(b - a == naming.HOUR for a, b in zip(taken, taken[1:]))


def test_a_schedule_the_module_does_not_know_is_refused(tmp_path):
    if TERRAFORM_BIN is None:
        pytest.fail("no terraform binary on PATH")
    text = (MODULE / "variables.tf").read_text()
    block = re.search(r'^variable "schedule" \{\n.*?^\}\n', text, re.M | re.S).group(0)
    (tmp_path / "variables.tf").write_text(block)
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    run = subprocess.run([TERRAFORM_BIN, "console", "-var=schedule=weekly"], input="var.schedule\n",
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    said = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)  # the console colours its errors
    assert "Invalid value for variable" in said and 'schedule must be "daily" or "hourly".' in said
