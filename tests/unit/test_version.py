"""`ampbq --version` says which release is installed, the one the package metadata and changelog name."""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version_and_the_changelog_has_it():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run([str(Path(sys.executable).parent / "ampbq"), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"ampbq {version}"
    assert f"## {version}" in (REPO / "CHANGELOG.md").read_text()
