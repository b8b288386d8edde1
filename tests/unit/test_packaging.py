"""What each deployed function is built from (its entry point; its zip and requirements are in
test_function_zips.py), what the ampbq package is built into (its metadata, licence and data
files), and the documented names the code reads."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {"export": "export_day", "transform": "transform_hour", "load": "load_hour"}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_function_main_hands_the_event_to_its_step_in_ampbq_and_returns_nothing(name, monkeypatch):
    from ampbq import entry
    from helpers import load_function_main

    handed = []
    monkeypatch.setattr(entry, name, handed.append)
    event = object()
    assert getattr(load_function_main(name), ENTRY_POINTS[name])(event) is None
    assert len(handed) == 1 and handed[0] is event


def test_readme_documents_every_environment_variable_the_code_reads():
    from ampbq.config import Config
    from ampbq.tools import calls
    from helpers import RecordingEnv

    env = RecordingEnv({"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p"})
    Config.from_env(env)
    calls.seconds_from_env(env)
    readme = (REPO / "README.md").read_text()
    assert {"AMPBQ_BUCKET", "AMPBQ_LOAD_LEASE_SECONDS", "AMPBQ_SCHEDULE", "AMPBQ_CONNECT_TIMEOUT_SECONDS"} <= env.asked
    assert [name for name in sorted(env.asked) if f"`{name}`" not in readme] == []


# --- the package: metadata, licence, data files ----------------------------------------------

# The Apache License 2.0 as published at apache.org/licenses/LICENSE-2.0.txt, appendix included.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
BUILD = """
import sys
import setuptools.build_meta as backend
out = sys.argv[1]
print("metadata:", backend.prepare_metadata_for_build_wheel(out))
print("wheel:", backend.build_wheel(out))
print("sdist:", backend.build_sdist(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The project's metadata, wheel and sdist, built by setuptools' PEP 517 hooks from a copy of the
    files that make the package (so nothing is written into the work tree), with every warning
    shown. Returns (output directory, everything the build printed, {kind: file name})."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "shared" / "ampbq", source / "shared" / "ampbq",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("out")
    run = subprocess.run([sys.executable, "-W", "always", "-c", BUILD, str(out)], cwd=source,
                         env={**os.environ, "PYTHONWARNINGS": "always"}, capture_output=True, text=True, timeout=300)
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed[-3000:]
    files = dict(re.findall(r"^(metadata|wheel|sdist): (.+)$", run.stdout, re.M))
    return out, printed, files


def test_package_builds_without_deprecation_or_warning_banners(built):
    _, printed, _ = built
    assert "SetuptoolsDeprecationWarning" not in printed
    assert "deprecat" not in printed.lower(), printed[-3000:]
    # setuptools frames each of its warnings between two lines of "!!".
    assert not re.search(r"^!!$", printed, re.M), printed[-3000:]


def test_package_metadata_declares_the_licence_as_an_spdx_expression(built):
    out, _, files = built
    metadata = Parser().parsestr((out / files["metadata"] / "METADATA").read_text())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # the free-text field PEP 639 replaces
    assert metadata["Metadata-Version"] >= "2.4"


def test_wheel_and_sdist_carry_the_licence_the_schema_files_and_the_tools(built):
    out, _, files = built
    licence = (REPO / "LICENSE").read_bytes()
    schema_files = sorted(p.name for p in (REPO / "shared" / "ampbq" / "schema").iterdir() if p.is_file())
    assert schema_files, "shared/ampbq/schema is empty"
    with zipfile.ZipFile(out / files["wheel"]) as wheel:
        names = wheel.namelist()
        assert wheel.read("ampbq-0.1.0.dist-info/licenses/LICENSE") == licence
        packaged = sorted(n.removeprefix("ampbq/schema/") for n in names if n.startswith("ampbq/schema/"))
        entry_points = wheel.read("ampbq-0.1.0.dist-info/entry_points.txt").decode()
    assert packaged == schema_files  # the dedup view's SQL too, which the code reads at run time
    tools = sorted(p.name for p in (REPO / "shared" / "ampbq" / "tools").glob("*.py"))
    assert sorted(n.removeprefix("ampbq/tools/") for n in names if n.startswith("ampbq/tools/")) == tools
    assert "ampbq = ampbq.tools.cli:main" in entry_points
    with tarfile.open(out / files["sdist"]) as sdist:
        assert sdist.extractfile("ampbq-0.1.0/LICENSE").read() == licence


def test_licence_is_the_apache_2_0_text():
    text = (REPO / "LICENSE").read_text()
    assert text.split("\n")[1].strip() == "Apache License"
    assert text.split("\n")[2].strip() == "Version 2.0, January 2004"
    sections = re.findall(r"^\s+(\d)\. ([A-Z][^.]+)\.", text, re.M)
    assert [title for _, title in sections] == [
        "Definitions", "Grant of Copyright License", "Grant of Patent License", "Redistribution",
        "Submission of Contributions", "Trademarks", "Disclaimer of Warranty", "Limitation of Liability",
        "Accepting Warranty or Additional Liability",
    ]
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text
    assert hashlib.sha256(text.encode()).hexdigest() == APACHE_2_0_SHA256, "LICENSE differs from the published text"


def test_build_requirement_and_dev_pin_admit_pep_639():
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (requirement,) = [Requirement(r) for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    assert not requirement.specifier.contains("76.1"), "setuptools before 77 rejects a string licence"
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.M))
    assert requirement.specifier.contains(pins["setuptools"])
    assert pyproject["project"]["license"] == "Apache-2.0" and pyproject["project"]["license-files"] == ["LICENSE"]


def test_changelog_has_an_entry_for_the_package_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(version)}\]?", changelog, re.M), f"CHANGELOG.md has no {version} entry"


# --- docs/local-stack.md: querying the local BigQuery stand-in -----------------------------

ENV_NAME = re.compile(r"\b(?:AMPBQ|AMPLITUDE|GOOGLE_CLOUD)_[A-Z_]+\b|\b[A-Z]+_EMULATOR_HOST\b")


LOCAL_STACK_DOC = REPO / "docs" / "local-stack.md"


def doc_section(title: str) -> str:
    text = LOCAL_STACK_DOC.read_text()
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/local-stack.md has no section {title!r}"
    return match.group(1)


def names_config_reads() -> set[str]:
    from ampbq.config import Config

    asked = set()

    class Recording(dict):
        def get(self, key, default=None):
            asked.add(key)
            return super().get(key, default)

    Config.from_env(Recording(AMPBQ_BUCKET="b", AMPBQ_PROJECT="p"))
    return asked


def local_stack_env(tmp_path) -> dict[str, str]:
    """What `ampbq stack` prints for a stack on made-up ports (nothing is started)."""
    from ampbq.tools.stack import Stack, StackSettings

    stack = Stack(StackSettings(workdir=tmp_path, amplitude_url="http://127.0.0.1:9"))
    stack.ports.update({"gcs": 40001, "bigquery": 40002, "pubsub": 40003})
    return stack.client_env()


def test_local_query_section_names_only_what_config_reads_and_the_stack_prints(tmp_path):
    section = doc_section("Querying the local BigQuery stand-in")
    names = set(ENV_NAME.findall(section))
    assert {"BIGQUERY_EMULATOR_HOST", "AMPBQ_PROJECT"} <= names
    assert names <= names_config_reads(), names - names_config_reads()
    assert names <= local_stack_env(tmp_path).keys()


def test_local_query_curl_is_a_query_the_bigquery_stand_in_runs(tmp_path):
    from ampbq.tools import bq_rules
    from ampbq.tools.stack import StackSettings

    section = doc_section("Querying the local BigQuery stand-in")
    curl = re.search(r'curl -s -X POST "([^"]+)".*?-d \'([^\']+)\'', section, re.S)
    assert curl, "no curl jobs.query call in the section"
    env = local_stack_env(tmp_path)
    url = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], curl.group(1))
    assert url.startswith(env["BIGQUERY_EMULATOR_HOST"] + "/bigquery/v2/")
    path = bq_rules._JOB_PATH.search(url)
    assert path and path.groups() == ("ampbq-local", "queries")
    sql = bq_rules._query_of(curl.group(2).encode(), "queries")
    settings = StackSettings(workdir=tmp_path, amplitude_url="")
    assert f"`{settings.project}.{settings.dataset}.{settings.table}`" in sql
    assert '"useLegacySql": false' in curl.group(2)


def test_local_query_python_snippet_queries_the_stand_in_with_the_project_client(tmp_path, monkeypatch, capsys):
    from google.cloud import bigquery as google_bigquery

    section = doc_section("Querying the local BigQuery stand-in")
    snippet = re.search(r"python - <<'EOF'\n(.*?)^EOF$", section, re.M | re.S).group(1)
    env = local_stack_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    made = {}

    class FakeClient:
        def __init__(self, project=None, credentials=None, client_options=None, **kwargs):
            made.update(project=project, credentials=type(credentials).__name__, endpoint=client_options.api_endpoint)

        def query(self, sql):
            made["sql"] = sql
            return type("Job", (), {"result": lambda self: [{"_upload_hour": "2024-01-30 05:00:00", "events": 20}]})()

    monkeypatch.setattr(google_bigquery, "Client", FakeClient)
    exec(compile(snippet, "docs/local-stack.md", "exec"), {})
    assert made["endpoint"] == env["BIGQUERY_EMULATOR_HOST"]
    assert made["credentials"] == "AnonymousCredentials" and made["project"] == env["AMPBQ_PROJECT"]
    assert f"`{env['AMPBQ_PROJECT']}.{env['AMPBQ_DATASET']}.{env['AMPBQ_TABLE']}`" in made["sql"]
    assert capsys.readouterr().out == "2024-01-30 05:00:00 20\n"
