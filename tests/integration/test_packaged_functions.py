"""The artifact that is deployed, tested as deployed.

Each function's zip, as `make package` writes it (the entries Terraform uploads), is unzipped
into an empty folder and served from there on Python 3.12, the functions' runtime, by the
functions-framework of a fresh virtual environment that holds only that function's
requirements.txt: no ampbq from the work tree, no test or tooling package. A whole generated day
then goes through the three served zips and the local stand-ins, and every event of it must
land, exactly once.

The virtual environments are kept under .cache/function-venvs/, one per requirements file and
interpreter (keyed by their hash), so a rerun only unzips and serves. `pytest -s` shows the
zips' sizes and file counts and how long each part took.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
import zipfile
from datetime import date
from pathlib import Path

import pytest

from ampbq import bigquery as bq_adapter
from ampbq.tools import function_zips
from ampbq.config import Config
from ampbq.tools.stack import FUNCTIONS, Stack, StackSettings
from ampbq.tools.stub import DatasetSource, ExportApiStub
from ampbq.tools.synthetic import Dataset

pytestmark = [pytest.mark.integration, pytest.mark.long]

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / ".cache" / "function-venvs"
API_KEY, SECRET_KEY = "packaged-api-key", "packaged-secret-key"
DAY = date(2021, 4, 1)
EVENTS_PER_HOUR = 15
TOOLING = {"stack", "gcs_rules", "bq_rules", "stub", "sandbox", "synthetic", "bench", "demo", "cli",
           "cli_options", "render", "function_zips"}


# --- Python 3.12 and the functions' virtual environments -------------------------------------

def _find_python312() -> Path | None:
    """The interpreter the Makefile takes as PY312: python3.12 on PATH, else pyenv's 3.12.x."""
    candidates = ["python3.12", *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for candidate in candidates:
        try:
            run = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue  # absent, or a pyenv shim for a version that is not active
        if run.returncode == 0 and run.stdout.strip():
            return Path(run.stdout.strip())
    return None


def python312() -> Path:
    """Python 3.12, installed with pyenv when the machine lacks it; a clear failure when it cannot be."""
    found = _find_python312()
    if found:
        return found
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        why = "pyenv is not installed to install it with"
    else:
        run = subprocess.run([pyenv, "install", "--skip-existing", "3.12"], capture_output=True, text=True, timeout=1800)
        found = _find_python312()
        if run.returncode == 0 and found:
            return found
        why = f"`pyenv install 3.12` failed: {(run.stdout + run.stderr).strip()[-800:]}"
    pytest.fail("Cloud Functions runs these functions on python312 and this test serves their zips on it, but no "
                f"Python 3.12 was found (python3.12 on PATH, ~/.pyenv/versions/3.12*) and none could be installed: "
                f"{why}. Install a Python 3.12 (e.g. `pyenv install 3.12`) and run the test again.")


def function_venv(python: Path, requirements: Path) -> tuple[Path, bool]:
    """A virtual environment on `python` holding exactly `requirements` (pip, from the registry as
    this machine's pip is configured); reused while the file and the interpreter are unchanged.
    Returns (its folder, whether it was made now)."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             check=True).stdout
    key = hashlib.sha256(requirements.read_bytes() + version.encode()).hexdigest()[:16]
    venv = VENVS / f"py312-{key}"
    stamp = venv / ".installed"
    if stamp.is_file():
        return venv, False
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one, from an interrupted run
    VENVS.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", "-r", str(requirements)],
                         capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        pytest.fail(f"pip could not install {requirements} on Python 3.12:\n{(run.stdout + run.stderr)[-3000:]}")
    stamp.write_text(requirements.read_text())
    return venv, True


# Run by the function's venv: import main.py as functions-framework does (its folder appended to
# sys.path), then tell where ampbq came from and which of its modules the import loaded.
PROBE = """
import json, sys
sys.path.append(sys.argv[1])
import main
import ampbq
print(json.dumps({"ampbq": ampbq.__file__, "python": sys.version.split()[0],
                  "modules": sorted(m for m in sys.modules if m == "ampbq" or m.startswith("ampbq."))}))
"""


def clean_env() -> dict[str, str]:
    """This process's environment without what could put the work tree's ampbq on a path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}


# --- the packaged functions, served --------------------------------------------------------

@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """{name: (unzipped folder, its venv's functions-framework)}, each venv's python probed."""
    started = time.monotonic()
    python = python312()
    root = tmp_path_factory.mktemp("packaged")
    sources = {}
    for name in FUNCTIONS:
        zip_path = function_zips.build(name, root / "dist" / f"{name}.zip")
        with zipfile.ZipFile(zip_path) as archive:
            entries = archive.namelist()
            folder = root / name
            folder.mkdir()  # empty: only the zip's files are in it
            archive.extractall(folder)
        print(f"\n{name}: {function_zips.describe(zip_path)}", end="")
        made_at = time.monotonic()
        venv, made = function_venv(python, folder / "requirements.txt")
        print(f"; venv {'made' if made else 'cached'} in {time.monotonic() - made_at:.1f} s ({venv.name})", end="")
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE, str(folder)], cwd=root, env=clean_env(),
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, f"{name}'s zip does not import on its requirements:\n{probe.stderr[-3000:]}"
        seen = json.loads(probe.stdout.strip().splitlines()[-1])
        assert seen["python"].startswith("3.12."), seen
        assert Path(seen["ampbq"]) == folder / "ampbq" / "__init__.py", f"{name} imported ampbq from {seen['ampbq']}"
        shipped = {e.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for e in entries if e.endswith(".py")}
        assert set(seen["modules"]) <= shipped, set(seen["modules"]) - shipped
        assert not {f"ampbq.{t}" for t in TOOLING} & set(seen["modules"])
        sources[name] = (folder, venv / "bin" / "functions-framework")
    print(f"\nzips unpacked, venvs ready and probed in {time.monotonic() - started:.1f} s")
    return sources


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset.for_day(DAY, hours=24, events_per_hour=EVENTS_PER_HOUR, parts_per_hour=2)


@pytest.fixture(scope="module")
def stack(packaged, dataset, tmp_path_factory):
    """A stack of its own (not the session's), serving the three unzipped functions."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean_env())  # the functions' processes inherit it
    started = time.monotonic()
    try:
        with ExportApiStub(DatasetSource(dataset), API_KEY, SECRET_KEY) as stub:
            fast = {"AMPBQ_HTTP_BACKOFF_SECONDS": "0.1", "AMPBQ_LOAD_LEASE_SECONDS": "15"}
            settings = StackSettings(workdir=tmp_path_factory.mktemp("stack"), amplitude_url=stub.url, api_key=API_KEY,
                                     secret_key=SECRET_KEY, extra_env=fast, function_sources=packaged)
            with Stack(settings) as running:
                print(f"\nstack with the packaged functions started in {time.monotonic() - started:.1f} s")
                yield running
    finally:
        os.environ.clear()
        os.environ.update(saved)


def function_logs(stack: Stack) -> str:
    return "\n".join(f"--- {name}.log\n" + (stack.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                     for name in FUNCTIONS)


def test_a_day_lands_exactly_once_through_the_packaged_functions(stack, packaged, dataset):
    for name in FUNCTIONS:  # served by the venv's Python 3.12, from the unzipped folder
        command = (Path("/proc") / str(stack.processes[name].pid) / "cmdline").read_bytes().split(b"\0")
        assert str(packaged[name][1]).encode() in command and str(packaged[name][0] / "main.py").encode() in command, command
        assert "python3.12" in os.path.realpath(f"/proc/{stack.processes[name].pid}/exe")
    config = Config.from_env(stack.function_env())
    bq = bq_adapter.client(config)
    bq_adapter.ensure_tables(bq, config)  # Terraform's job in the cloud
    started = time.monotonic()
    stack.publish_run({"date": f"{DAY}"})
    expected = {e["uuid"] for hour in dataset.range.hours() for e in dataset.events(hour)}
    assert len(expected) == 24 * EVENTS_PER_HOUR
    where = f"_upload_hour BETWEEN '{DAY} 00:00:00' AND '{DAY} 23:00:00'"
    counts = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = bq_adapter.query_rows(bq, f"SELECT COUNT(*) n, COUNT(DISTINCT uuid) u, COUNT(DISTINCT _upload_hour) h "
                                           f"FROM `{config.table_id}` WHERE {where}")[0]
        if counts["n"] >= len(expected):
            break
        for name in FUNCTIONS:
            assert stack.processes[name].poll() is None, f"{name} exited\n{function_logs(stack)}"
        time.sleep(1)
    took = time.monotonic() - started
    assert counts.get("n") == len(expected), f"{counts} after {took:.0f} s\n{function_logs(stack)}"
    uuids = [r["uuid"] for r in bq_adapter.query_rows(bq, f"SELECT uuid FROM `{config.table_id}` WHERE {where}")]
    assert len(uuids) == len(set(uuids)) == len(expected), "an event landed twice"
    assert set(uuids) == expected
    assert counts["h"] == 24
    ledger = bq_adapter.query_rows(bq, f"SELECT COUNT(*) n, COUNT(DISTINCT upload_hour) hours, SUM(loaded) loaded FROM "
                                       f"`{config.ledger_table_id}` WHERE upload_hour BETWEEN '{DAY} 00:00:00' AND '{DAY} 23:00:00'")[0]
    assert (ledger["n"], ledger["hours"], ledger["loaded"]) == (24, 24, len(expected))
    print(f"\nthe day ({len(expected)} events, 24 hours) landed through the packaged functions in {took:.1f} s")
