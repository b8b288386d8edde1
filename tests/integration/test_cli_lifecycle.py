"""`ampbq demo` and `ampbq stack` as a user meets them: real processes, real exit codes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ampbq.tools.synthetic import Dataset, write_export_zip

pytestmark = pytest.mark.integration
AMPBQ = str(Path(sys.executable).parent / "ampbq")
PROCESSES = {"pubsub", "gcs", "bigquery-emulator", "bigquery", "export", "transform", "load"}


def clean_env(**extra) -> dict:
    """The user's shell: no emulator variables from the test session's stack."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST") and not k.startswith("AMPBQ_")}
    return env | extra


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def yesterday_incomplete_age() -> float:
    """A data age (hours) under which yesterday is not complete yet, whatever the time of day now."""
    now = datetime.now(timezone.utc)
    return now.hour + now.minute / 60 + 3


def test_demo_lands_the_newest_complete_day_when_yesterday_is_not_complete(tmp_path):
    age = yesterday_incomplete_age()
    result = subprocess.run([AMPBQ, "demo", "--events-per-hour", "10", "--workdir", str(tmp_path / "stack")],
                            capture_output=True, text=True, timeout=300, env=clean_env(AMPBQ_MIN_DATA_AGE_HOURS=str(age)))
    assert result.returncode == 0, result.stdout + result.stderr
    day = (datetime.now(timezone.utc) - timedelta(hours=age)).date() - timedelta(days=1)
    assert day <= datetime.now(timezone.utc).date() - timedelta(days=2)
    assert result.stdout.strip().splitlines()[-1] == f"demo: date={day} hours=24 events=240 loaded=240 rejected=0 conflicts=0"


def test_demo_of_a_day_not_yet_complete_is_refused_at_once_with_its_reason(tmp_path):
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    started = time.monotonic()
    result = subprocess.run([AMPBQ, "demo", "--date", f"{yesterday}", "--workdir", str(tmp_path / "stack")],
                            capture_output=True, text=True, timeout=60,
                            env=clean_env(AMPBQ_MIN_DATA_AGE_HOURS=str(yesterday_incomplete_age())))
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"{yesterday} is not complete at Amplitude until" in line and "pass --date" in line
    assert time.monotonic() - started < 15  # nothing was started
    assert not (tmp_path / "stack").exists()


def test_an_export_refused_while_the_demo_waits_is_shown_at_once(tmp_path):
    # An archive of yesterday's hours, exported under a data-age rule that refuses them: the
    # export gives up at once, and the demo says why instead of waiting out its timeout.
    archive = tmp_path / "recent.zip"
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    with open(archive, "wb") as sink:
        write_export_zip(Dataset.for_day(yesterday, hours=2, events_per_hour=3), sink)
    started = time.monotonic()
    result = subprocess.run([AMPBQ, "demo", "--zip", str(archive), "--timeout", "300", "--workdir", str(tmp_path / "stack")],
                            capture_output=True, text=True, timeout=300,
                            env=clean_env(AMPBQ_MIN_DATA_AGE_HOURS=str(yesterday_incomplete_age())))
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 120
    assert "Error: the export gave up on " in result.stderr and "is not complete at Amplitude until" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"demo: date={yesterday} hours=2 events=6 loaded=0 rejected=0 conflicts=0"


def test_demo_of_a_file_that_is_not_a_zip_says_so_in_one_line(tmp_path):
    not_zip = tmp_path / "export.zip"
    not_zip.write_text('{"uuid": "not a zip"}\n')
    result = subprocess.run([AMPBQ, "demo", "--zip", str(not_zip), "--workdir", str(tmp_path / "stack")],
                            capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 1
    assert one_error_line(result) == f"Error: {not_zip} is not a readable zip: File is not a zip file"


def test_a_machine_without_java_is_told_what_to_install(tmp_path):
    result = subprocess.run([AMPBQ, "demo", "--date", "2021-04-01", "--workdir", str(tmp_path / "stack")],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in clean_env(PATH=str(tmp_path)).items() if k != "JAVA_HOME"})
    assert result.returncode == 1
    assert "Java is not installed" in one_error_line(result) and "apt install default-jre-headless" in result.stderr


def started_pids(workdir: Path, timeout: float = 120) -> dict[str, int]:
    """The pid of every process of a stack, once all of them have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {p.stem: int(p.read_text()) for p in workdir.glob("*.pid") if p.stem in PROCESSES}
        if set(pids) == PROCESSES:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"the stack in {workdir} did not start: {sorted(p.name for p in workdir.glob('*.pid'))}")


def assert_all_stopped(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):  # each leads its own process group, children included
            os.killpg(pid, 0)


def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path):
    workdir = tmp_path / "stack"
    demo = subprocess.Popen([AMPBQ, "demo", "--date", "2021-04-01", "--events-per-hour", "2000", "--workdir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        pids = started_pids(workdir)
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 143, out + err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "demo: stopped by SIGTERM; everything it started has stopped"
    assert_all_stopped(pids)


def test_stack_prints_its_environment_refuses_a_second_stack_and_stops_everything_on_sigterm(tmp_path):
    workdir = tmp_path / "sandbox"
    first = subprocess.Popen([AMPBQ, "stack", "--workdir", str(workdir)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        pids = started_pids(workdir)
        env_file = workdir / "env.sh"
        deadline = time.monotonic() + 60
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = subprocess.run([AMPBQ, "stack", "--workdir", str(workdir)], capture_output=True, text=True,
                                timeout=60, env=clean_env())
        assert second.returncode == 1
        assert one_error_line(second) == (f"Error: a local stack (pid {first.pid}) is already running in {workdir}; "
                                          f"stop it (kill {first.pid}) or pass another --workdir")
        assert set(started_pids(workdir)) == PROCESSES and env_file.exists()  # the first one's data is untouched
        # A shell that sources the file reaches the running stack: status answers for a quiet old day.
        # A shell that sources the file reaches the running stack: status answers for an old day.
        exports = env_file.read_text()
        shell = subprocess.run(["bash", "-c", f"source {env_file} && {AMPBQ} status --start 2022-02-09T00"],
                               capture_output=True, text=True, timeout=120, env=clean_env())
        assert shell.returncode == 1 and "MISSING" in shell.stdout, shell.stdout + shell.stderr
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0
    assert out == exports and "export STORAGE_EMULATOR_HOST=" in out  # printed, and written for other shells
    assert_all_stopped(pids)
    assert not list(workdir.glob("*.pid")) and not env_file.exists()


def test_a_workdir_holding_other_files_is_refused_and_left_as_it_was(tmp_path):
    precious = tmp_path / "my-project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = subprocess.run([AMPBQ, "demo", "--date", "2021-04-01", "--workdir", str(precious)],
                            capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 1
    assert one_error_line(result) == (f"Error: {precious} is not empty and holds no earlier stack's data; the stack "
                                      "empties its workdir, so pass a new or empty directory as --workdir")
    assert [p.name for p in precious.iterdir()] == ["notes.txt"] and (precious / "notes.txt").read_text() == "keep me"
