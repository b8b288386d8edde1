"""checkov over terraform/: no failed check, and every skip is explained in code and in docs/deploy.md.

checkov lives in its own virtualenv (.venv-checkov, built by the Makefile from
requirements-checkov.txt) because it pins libraries that clash with the Google clients.
Set CHECKOV_BIN to use another binary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.terraform

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
DEFAULT_BIN = REPO / ".venv-checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)")


def checkov_bin() -> Path:
    path = Path(os.environ.get("CHECKOV_BIN") or DEFAULT_BIN)
    if not path.is_file():
        pytest.fail(
            f"checkov not found at {path}: run `make venv` (it builds .venv-checkov from "
            "requirements-checkov.txt) or point CHECKOV_BIN at a checkov binary"
        )
    return path


@cache
def checkov_report() -> dict:
    command = [
        str(checkov_bin()),
        "--directory", "terraform",
        "--framework", "terraform",
        "--output", "json",
        "--compact",
        "--skip-download",  # local modules only; never reach for a registry
    ]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    # Exit code 1 means "checks failed"; anything else non-zero is checkov itself failing.
    assert run.returncode in (0, 1), f"checkov exited {run.returncode}:\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    assert isinstance(report, dict), "expected one report for the terraform framework"
    return report


def skip_comments() -> dict[str, list[str]]:
    """checkov ids skipped in the .tf files, with their written reasons."""
    found: dict[str, list[str]] = {}
    for path in sorted(TERRAFORM.rglob("*.tf")):
        for check_id, reason in SKIP_COMMENT.findall(path.read_text()):
            found.setdefault(check_id, []).append(reason.strip())
    return found


def test_checkov_terraform_reports_no_failed_checks():
    report = checkov_report()
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "checkov failures:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0, "checkov scanned nothing"


def test_checkov_skips_only_what_the_code_explains():
    skipped = checkov_report()["results"]["skipped_checks"]
    assert skipped, "expected the documented skips to be reported as skipped"
    for check in skipped:
        assert check["check_result"].get("suppress_comment"), f"{check['check_id']} skipped without a reason"
    assert {c["check_id"] for c in skipped} == set(skip_comments())


def test_checkov_skip_comments_listed_in_deploy_doc():
    deploy = (TERRAFORM.parent / "docs" / "deploy.md").read_text()
    for check_id, reasons in skip_comments().items():
        assert all(len(reason) > 20 for reason in reasons), f"{check_id}: give a real reason"
        assert check_id in deploy, f"{check_id} is skipped in code but not listed in docs/deploy.md"
