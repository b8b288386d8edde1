"""The command line as a person meets it when something is wrong: each command run as a process,
its exit status and its stderr checked. No traceback, no long wait: one line `Error: …`, and
exit 0 complete, 1 a problem or an error, 2 wrong usage, 3 not yet.

Tests without the `stack` fixture need no service (they point the clients at closed ports);
the others use the local stack the integration tests share. Upload days are in 2023 so no other test meets them.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ampbq import naming
from ampbq.tools.cli import main
from factory import event, utc
from integration_helpers import drop_hour, wait_loaded

pytestmark = pytest.mark.integration
AMPBQ = str(Path(sys.executable).parent / "ampbq")
BOUND = 2  # AMPBQ_CONNECT_TIMEOUT_SECONDS in these tests
# Python and the client libraries take a second or two to start on a busy machine.
STARTUP_ALLOWANCE = 8


def closed_port() -> int:
    """A port nothing listens on (bound for a moment to pick it, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_env(port: int, **extra: str) -> dict[str, str]:
    """Every service at a closed port of 127.0.0.1, as with a stopped local stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPBQ_", "AMPLITUDE_")) and not k.endswith("_EMULATOR_HOST")}
    return env | {"AMPBQ_BUCKET": "a-bucket", "AMPBQ_PROJECT": "a-project", "AMPBQ_CONNECT_TIMEOUT_SECONDS": str(BOUND),
                  "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{port}",
                  "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"} | extra


def ampbq(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([AMPBQ, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------ services that do not answer
@pytest.mark.parametrize("args", [
    ("status", "--date", "2023-03-01"),
    ("rejects", "--date", "2023-03-01"),
    ("reprocess", "--hour", "2023-03-01T05", "--no-wait"),
    ("backfill", "--start", "2023-03-01", "--no-wait"),
])
def test_a_stopped_stack_is_named_in_one_line_within_the_bound(args):
    port = closed_port()
    result, seconds = ampbq(*args, env=offline_env(port))
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: cannot reach Cloud Storage at http://127.0.0.1:{port} (connection refused) after {BOUND} s"
    assert seconds < BOUND + STARTUP_ALLOWANCE


def test_a_service_that_accepts_but_never_answers_is_no_answer_within_the_bound():
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        result, seconds = ampbq("status", "--date", "2023-03-01", env=offline_env(port))
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: cannot reach Cloud Storage at http://127.0.0.1:{port} (no answer) after {BOUND} s"
    assert seconds < 2 * BOUND + STARTUP_ALLOWANCE  # the last attempt may start just before the bound


def test_bigquery_that_does_not_answer_is_named(stack):
    port = closed_port()
    env = {**os.environ, **stack.client_env(), "AMPBQ_CONNECT_TIMEOUT_SECONDS": str(BOUND),
           "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    result, seconds = ampbq("status", "--start", "2023-03-02T00", env=env)
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: cannot reach BigQuery at http://127.0.0.1:{port} (connection refused) after {BOUND} s"
    assert seconds < BOUND + STARTUP_ALLOWANCE


def test_pubsub_that_does_not_answer_is_named(stack):
    port = closed_port()
    env = {**os.environ, **stack.client_env(), "AMPBQ_CONNECT_TIMEOUT_SECONDS": str(BOUND),
           "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}
    result, seconds = ampbq("backfill", "--start", "2023-03-02", "--no-wait", env=env)
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: cannot reach Pub/Sub at 127.0.0.1:{port} (connection refused) after {BOUND} s"
    assert seconds < BOUND + STARTUP_ALLOWANCE


def test_a_bound_that_is_not_a_number_is_an_error_line():
    result, _ = ampbq("status", "--date", "2023-03-01", env=offline_env(closed_port(), AMPBQ_CONNECT_TIMEOUT_SECONDS="soon"))
    assert result.returncode == 1
    assert one_error_line(result) == "Error: AMPBQ_CONNECT_TIMEOUT_SECONDS must be a number of seconds above 0, not 'soon'"


@pytest.mark.parametrize("command", ["status", "rejects", "reprocess", "backfill"])
def test_the_help_of_each_command_that_calls_the_services_states_the_bound(command):
    result, _ = ampbq(command, "--help", env={**os.environ, "COLUMNS": "80"})
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and "Waits at most 30 s in all" in text and "AMPBQ_CONNECT_TIMEOUT_SECONDS" in text


# ------------------------------------------------------------------ states that must not mislead a gate
def hour_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H}"


def test_hours_not_over_yet_read_not_over_and_exit_3(stack):
    env = {**os.environ, **stack.client_env()}
    now = datetime.now(timezone.utc)
    result, _ = ampbq("status", "--start", hour_text(now + timedelta(hours=1)), "--end", hour_text(now + timedelta(hours=2)),
                      "--json", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert {hour["state"] for hour in json.loads(result.stdout)["hours"]} == {"not_over"}
    future, _ = ampbq("status", "--date", "2999-01-01", env=env)
    assert future.returncode == 3 and "not over" in future.stdout and "MISSING" not in future.stdout


def test_hours_over_but_not_yet_exportable_read_not_ready_and_exit_3(stack):
    env = {**os.environ, **stack.client_env(), "AMPBQ_MIN_DATA_AGE_HOURS": "100"}
    now = datetime.now(timezone.utc)
    start, end = hour_text(now - timedelta(hours=6)), hour_text(now + timedelta(hours=1))
    result, _ = ampbq("status", "--start", start, "--end", end, "--json", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    found = [hour["state"] for hour in json.loads(result.stdout)["hours"]]
    assert set(found) == {"not_ready", "not_over"} and found[0] == "not_ready" and found[-1] == "not_over"
    table, _ = ampbq("status", "--start", start, "--end", start, env={**env, "COLUMNS": "200"})
    assert table.returncode == 3 and "not ready" in table.stdout and "Amplitude has all of it 100 h after its end" in table.stdout


@pytest.fixture(scope="module")
def waiting_import_object(stack, bucket, bq):
    """An hour whose import object waits for the load (the load refuses this one; it stays)."""
    hour = utc(2023, 3, 3, 4)
    bucket.blob(naming.import_object_name(hour)).upload_from_string(b"{}\n", content_type="application/x-ndjson")
    return hour


def test_a_mistyped_dataset_is_an_error_not_pending_for_ever(stack, config, waiting_import_object):
    env = {**os.environ, **stack.client_env(), "AMPBQ_DATASET": "opps"}
    result, _ = ampbq("status", "--start", hour_text(waiting_import_object), env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"Error: BigQuery dataset {config.project}.opps (AMPBQ_DATASET=opps) does not exist"), line
    table, _ = ampbq("status", "--start", hour_text(waiting_import_object),
                     env={**os.environ, **stack.client_env(), "AMPBQ_TABLE": "all_user_evnts"})
    assert table.returncode == 1
    assert f"Error: BigQuery table {config.project}.{config.dataset}.all_user_evnts_loads does not exist" in one_error_line(table)


@pytest.mark.parametrize("unset, named", [
    ({"AMPLITUDE_API_KEY": ""}, "AMPLITUDE_API_KEY is not set"),
    ({"AMPLITUDE_SECRET_KEY": ""}, "AMPLITUDE_SECRET_KEY is not set"),
    ({"AMPLITUDE_API_KEY": "", "AMPLITUDE_SECRET_KEY": ""}, "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY are not set"),
])
def test_backfill_here_with_an_unset_amplitude_key_names_it(unset, named):
    env = offline_env(closed_port(), AMPLITUDE_API_KEY="a-key", AMPLITUDE_SECRET_KEY="a-secret") | unset
    result, seconds = ampbq("backfill", "--start", "2023-03-01", "--local", env=env)
    assert result.returncode == 1 and seconds < STARTUP_ALLOWANCE  # before any call
    line = one_error_line(result)
    assert line.startswith(f"Error: {named};") and "credentials refused" not in line


# ------------------------------------------------------------------ wrong usage: exit 2 everywhere
WRONG_USAGE = {
    "transform": [("transform", "{tmp}/events.json", "{tmp}/rows.json")],  # no hour in the name, no --hour
    "backfill": [("backfill", "--start", "2023-03-01", "--hours", "9-3"),
                 ("backfill", "--start", "2023-03-05", "--end", "2023-03-01"),
                 ("backfill", "--start", "2999-01-01")],
    "reprocess": [("reprocess",), ("reprocess", "--hour", "2023-03-01T05", "--date", "2023-03-01")],
    "status": [("status",), ("status", "--date", "2023-03-01", "--start", "2023-03-01"),
               ("status", "--start", "2023-03-02", "--end", "2023-03-01"), ("status", "--start", "2023-03-01T25")],
    "rejects": [("rejects", "--date", "2023-03-01", "--start", "2023-03-01"), ("rejects", "--limit", "many")],
    "demo": [("demo", "--events-per-hour", "many")],
    "stack": [("stack", "--events-per-hour", "many")],
    "bench": [("bench", "--events", "many")],
    "forget": [("forget", "--start-day", "2023-03-05", "--end-day", "2023-03-01"), ("forget", "--timeout", "soon")],
}
CASES = [args for cases in WRONG_USAGE.values() for args in cases]


def test_every_command_has_a_wrong_usage_case():
    assert set(WRONG_USAGE) == set(main.commands)


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) for a in CASES])
def test_wrong_usage_exits_2_with_one_error_line(args, tmp_path):
    (tmp_path / "events.json").write_text("{}\n")
    result, _ = ampbq(*(a.format(tmp=tmp_path) for a in args), env=offline_env(closed_port()))
    assert result.returncode == 2, result.stderr
    one_error_line(result)


@pytest.mark.parametrize("args", [("--bogus",), ("statuz", "--date", "2023-03-01")])
def test_wrong_usage_of_ampbq_itself_exits_2_with_one_error_line(args):
    result, _ = ampbq(*args, env=offline_env(closed_port()))
    assert result.returncode == 2
    assert "(see 'ampbq --help')" in one_error_line(result)


# ------------------------------------------------------------------ transform on local files
EVENT = event("a", "2020-11-24 09:00:01.000000", "2020-11-24 09:00:00.000000", event_type=None)
LINES = json.dumps(EVENT).encode() + b"\n" + json.dumps(EVENT | {"uuid": "b"}).encode() + b"\n"


# mtime=0 and ids: the two test workers must collect the same parameters.
@pytest.mark.parametrize("name, content", [("203138_2020-11-24_9#627.json", LINES),
                                           ("203138_2020-11-24_9#627.json.gz", gzip.compress(LINES, mtime=0))],
                         ids=["ndjson", "gzip"])
def test_transform_reads_plain_ndjson_and_gzip_alike(tmp_path, name, content):
    src = tmp_path / name
    src.write_bytes(content)
    result, _ = ampbq("transform", str(src), str(tmp_path / "rows.json"), env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "transform: events=2 rows=2 rejected=0"
    assert [json.loads(line)["uuid"] for line in (tmp_path / "rows.json").read_text().splitlines()] == ["a", "b"]


def spellings(tmp_path: Path, src: Path) -> list[str]:
    (tmp_path / "link.json").symlink_to(src)
    os.link(src, tmp_path / "hard.json")
    (tmp_path / "sub").mkdir()
    return [str(src), f"{tmp_path}/./{src.name}", f"{tmp_path}/sub/../{src.name}", str(tmp_path / "link.json"),
            str(tmp_path / "hard.json")]


def test_transform_refuses_to_write_over_its_source_however_it_is_spelled(tmp_path):
    src = tmp_path / "sample.json"
    src.write_bytes(LINES)
    for dst in spellings(tmp_path, src):
        result, _ = ampbq("transform", str(src), dst, "--hour", "2020-11-24T09", env=dict(os.environ))
        assert result.returncode == 2, (dst, result.stderr)
        assert "is the same file as SRC" in one_error_line(result)
        assert src.read_bytes() == LINES
    rejects_over_src = tmp_path / "out.rejects.json"
    rejects_over_src.write_bytes(LINES)
    result, _ = ampbq("transform", str(rejects_over_src), str(tmp_path / "out.json"), "--hour", "2020-11-24T09",
                      env=dict(os.environ))
    assert result.returncode == 2 and rejects_over_src.read_bytes() == LINES
    assert not (tmp_path / "out.json").exists()


def test_transform_into_a_missing_directory_is_one_error_line(tmp_path):
    src = tmp_path / "sample.json"
    src.write_bytes(LINES)
    result, _ = ampbq("transform", str(src), str(tmp_path / "nowhere" / "rows.json"), "--hour", "2020-11-24T09",
                      env=dict(os.environ))
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: cannot write {tmp_path}/nowhere/rows.json: directory {tmp_path}/nowhere does not exist"


# ------------------------------------------------------------------ help and tables on a narrow terminal
def examples(command) -> list[str]:
    """The `ampbq …` lines of a command's docstring examples."""
    text = inspect.cleandoc(command.callback.__doc__ or command.help or "")
    return [line.strip() for line in text.splitlines() if line.startswith(" ") and "ampbq " in line]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_help_shows_each_example_on_its_own_line(name):
    wanted = examples(main.commands[name])
    assert wanted, f"{name} has no examples"
    result, _ = ampbq(name, "--help", env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    shown = [line.strip() for line in result.stdout.splitlines()]
    for example in wanted:
        assert example in shown, (example, result.stdout)


@pytest.fixture(scope="module")
def loaded_hour_with_rejects(stack, bucket, bq, config):
    hour = utc(2023, 3, 4, 5)
    line = lambda uuid, **extra: json.dumps(event(uuid, hour, event_type=None, **extra)).encode()  # noqa: E731 (spaced JSON)
    good = [line(f"w-{n}") for n in range(3)]
    bad = [b'{"uuid": "broken", "event_type": "a line cut short by something upstream of the export ',
           line("w-bad", event_id="twelve")]
    wait_loaded(bq, config, hour, drop_hour(bucket, hour, good + bad))
    return hour


def table_lines(stdout: str, width: int) -> list[str]:
    lines = stdout.splitlines()
    assert lines, stdout
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, "\n".join(too_long)
    return lines


@pytest.mark.parametrize("width", [80, 100])
def test_tables_fit_the_terminal_and_wide_shows_every_column(stack, loaded_hour_with_rejects, width):
    env = {**os.environ, **stack.client_env(), "COLUMNS": str(width)}
    hour, day = hour_text(loaded_hour_with_rejects), f"{loaded_hour_with_rejects:%Y-%m-%d}"
    status, _ = ampbq("status", "--start", hour, "--end", hour_text(loaded_hour_with_rejects + timedelta(hours=2)), env=env)
    assert status.returncode == 1, status.stderr  # the two hours after it were never exported: MISSING
    lines = status.stdout.splitlines()
    table_lines("\n".join(lines[:-1]), width)  # the last line is the one-line summary, whole for scripts
    assert lines[-1].startswith("status: 20230304T05..20230304T07 hours=3 loaded=1 missing=2")
    assert "hour object" not in status.stdout.split("--wide")[0] and "--wide also shows:" in status.stdout

    wide, _ = ampbq("status", "--start", hour, "--wide", env=env)
    header = next(line for line in wide.stdout.splitlines() if "hour object" in line)
    assert all(column in header for column in ("raw", "hour object", "import object", "rejected", "rows in BQ", "why"))

    rejects, _ = ampbq("rejects", "--date", day, env=env)
    assert rejects.returncode == 0, rejects.stderr
    text = "\n".join(table_lines(rejects.stdout, width))
    assert "line is not valid JSON" in " ".join(text.split()) and "w-bad" in text

    redrop, _ = ampbq("reprocess", "--hour", f"{day}T10", "--no-wait", env=env)
    assert redrop.returncode == 1  # no hour object to re-drop
    text = " ".join(" ".join(table_lines(redrop.stdout, width)).split())
    assert "re-export it with" in text and "--wide also shows: object" in text
    wide_redrop, _ = ampbq("reprocess", "--hour", f"{day}T10", "--no-wait", "--wide", env=env)
    assert "old generation" in wide_redrop.stdout and f"export/{day}/10.json.gz" in wide_redrop.stdout
