"""The zips `make package` writes (ampbq.tools.function_zips) hold what Terraform's archive_file puts in
the zips it uploads: the same entries, in the same order, with the same bytes.

Terraform's side is evaluated twice: by reading functions.tf's expressions in Python, and, where a
terraform binary is on PATH, by `terraform console` (offline: functions only, no provider) over
a tiny configuration made of those same expressions. The archive provider writes `source`
entries sorted by name (its ArchiveMultiple), so both sides are compared in that order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ampbq.tools import function_zips
from terraform_hcl import FUNCTIONS, MODULE, REPO, labelled, module_locals, resolve_template, single, unwrap

pytestmark = pytest.mark.terraform

TERRAFORM_BIN = shutil.which("terraform")


def archive_sources() -> list[dict]:
    """The archive's dynamic "source" blocks: {for_each, filename, content} expressions."""
    archive = labelled(MODULE, "data")[("archive_file", "function")]
    blocks = [single(list(block.values())) for block in archive["dynamic"]]
    return [{"for_each": unwrap(b["for_each"]), "filename": unwrap(single(b["content"])["filename"]),
             "content": unwrap(single(b["content"])["content"])} for b in blocks]


def runtime_from_terraform() -> dict:
    """functions/runtime.json, found the way functions.tf's `runtime` local finds it."""
    match = re.fullmatch(r'jsondecode\(file\("(.+)"\)\)', unwrap(module_locals()["runtime"]))
    assert match, module_locals()["runtime"]
    return json.loads(Path(resolve_template(match.group(1))).read_text())


def python_model(name: str) -> list[tuple[str, str]]:
    """(entry name, sha256 of its bytes) of Terraform's zip for one function, from functions.tf read in Python."""
    runtime = runtime_from_terraform()
    assert unwrap(module_locals()["functions"]) == "toset(local.runtime.functions)"
    assert name in runtime["functions"]
    entries = {}
    for source in archive_sources():
        listing = re.fullmatch(r"local\.runtime\.(\w+)", source["for_each"])
        assert listing, f"for_each is not a list of functions/runtime.json: {source['for_each']}"
        assert source["filename"] == "source.value"
        path = re.fullmatch(r'file\("(.+)"\)', source["content"])
        assert path, source["content"]
        for value in runtime[listing.group(1)]:
            assert value not in entries, f"{value} is in two source blocks"
            file = resolve_template(path.group(1).replace("${each.key}", name).replace("${source.value}", value))
            entries[value] = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return sorted(entries.items())


def terraform_model(workdir: Path) -> dict[str, list[tuple[str, str]]]:
    """The same, evaluated by Terraform itself from functions.tf's own expressions."""
    locals_ = module_locals()
    lists = []
    for source in archive_sources():
        item = lambda expression: expression.replace("each.key", "name").replace("source.value", "f")  # noqa: E731
        lists.append(f'[for f in {item(source["for_each"])} : [{item(source["filename"])}, sha256({item(source["content"])})]]')
    (workdir / "main.tf").write_text(
        "locals {\n"
        f'  repo_root = "{REPO}"\n'
        f"  runtime   = {unwrap(locals_['runtime'])}\n"
        f"  functions = {unwrap(locals_['functions'])}\n"
        "}\n")
    expression = "{for name in local.functions : name => concat(" + ", ".join(lists) + ")}"
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    run = subprocess.run([TERRAFORM_BIN, "console"], input=f"jsonencode({expression})\n", cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    evaluated = json.loads(json.loads(run.stdout.strip()))  # the JSON text, printed as a quoted HCL string
    return {name: sorted((entry, digest) for entry, digest in pairs) for name, pairs in evaluated.items()}


def packaged(name: str, directory: Path) -> list[tuple[str, str]]:
    """(entry name, sha256 of its bytes) of the zip `make package` writes, in the zip's order."""
    with zipfile.ZipFile(function_zips.build(name, directory / f"{name}.zip")) as archive:
        return [(info.filename, hashlib.sha256(archive.read(info)).hexdigest()) for info in archive.infolist()]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_packaged_zip_holds_what_the_terraform_archive_holds(name, tmp_path):
    model = python_model(name)
    assert packaged(name, tmp_path) == model
    names = [entry for entry, _ in model]
    assert "main.py" in names and "requirements.txt" in names and "ampbq/entry.py" in names
    assert not any(n.endswith(".pyc") or "__pycache__" in n or n.startswith("ampbq/tools/") for n in names)


def test_terraform_evaluates_the_same_entries(tmp_path):
    if TERRAFORM_BIN is None:
        pytest.skip("no terraform binary on PATH; the Python reading of functions.tf is checked above")
    evaluated = terraform_model(tmp_path)
    assert sorted(evaluated) == sorted(FUNCTIONS)
    for name in FUNCTIONS:
        assert evaluated[name] == packaged(name, tmp_path), name
