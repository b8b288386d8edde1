"""What ships and what stays apart: the modules at the top of shared/ampbq/ are exactly the runtime
that functions/runtime.json lists, and none of them imports anything from ampbq.tools (the command
line, the local stand-ins, the synthetic data, the demo, the benchmark and the packager)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "shared"
PACKAGE = SHARED / "ampbq"
TOOLS = "ampbq.tools"


def shared_files() -> list[str]:
    return json.loads((REPO / "functions" / "runtime.json").read_text())["shared_files"]


def top_level_modules() -> list[Path]:
    """The Python files directly in shared/ampbq/ (the tools subpackage excluded)."""
    return sorted(PACKAGE.glob("*.py"))


def tooling_modules() -> list[Path]:
    return sorted((PACKAGE / "tools").glob("*.py"))


def imported_names(path: Path, package: str) -> set[str]:
    """Every name a file imports, as an absolute dotted name, at any depth: lazy imports inside
    functions and those under `if TYPE_CHECKING:` too, so not even a type hint reaches across.
    `from X import a` gives both X and X.a (a may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def crosses(name: str) -> bool:
    return name == TOOLS or name.startswith(TOOLS + ".")


def test_the_top_of_the_package_is_exactly_the_listed_runtime_modules():
    on_disk = {p.relative_to(SHARED).as_posix() for p in top_level_modules()}
    listed = {entry for entry in shared_files() if entry.endswith(".py")}
    assert on_disk == listed, (f"move to shared/ampbq/tools/ (or list in functions/runtime.json): {sorted(on_disk - listed)}; "
                               f"listed but not a top-level module: {sorted(listed - on_disk)}")


def test_runtime_json_lists_no_tooling_module():
    tooling = {p.relative_to(SHARED).as_posix() for p in tooling_modules()}
    assert tooling, "shared/ampbq/tools/ holds no module"
    assert not [entry for entry in shared_files() if entry.startswith("ampbq/tools/") or entry in tooling]


@pytest.mark.parametrize("path", top_level_modules(), ids=lambda p: p.stem)
def test_runtime_module_imports_nothing_from_the_tools(path):
    package = "ampbq"  # every top-level module, __init__.py too, resolves `.` to ampbq
    crossing = sorted(n for n in imported_names(path, package) if crosses(n))
    assert not crossing, f"{path.relative_to(REPO)} imports tooling: {crossing}"


@pytest.mark.parametrize("name", ["export", "transform", "load"])
def test_handler_imports_nothing_from_the_tools(name):
    path = REPO / "functions" / name / "main.py"
    crossing = sorted(n for n in imported_names(path, "") if crosses(n))
    assert not crossing, f"{path.relative_to(REPO)} imports tooling: {crossing}"


def test_the_check_sees_a_crossing_in_every_form(tmp_path):
    """The walk is not fooled by a relative, a lazy or a TYPE_CHECKING import."""
    forms = {
        "from .tools import cli": "ampbq.tools",
        "from . import tools": "ampbq.tools",
        "import ampbq.tools.stack": "ampbq.tools.stack",
        "def f():\n    from ampbq.tools.stub import ExportApiStub": "ampbq.tools.stub",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .tools.status import HourStatus": "ampbq.tools.status",
    }
    for code, expected in forms.items():
        file = tmp_path / "probe.py"
        file.write_text(code + "\n")
        assert expected in {n for n in imported_names(file, "ampbq") if crosses(n)}, code
    clean = tmp_path / "clean.py"
    clean.write_text("from . import naming\nfrom .toolsmith import x\nimport ampbq.transform\n")
    assert not [n for n in imported_names(clean, "ampbq") if crosses(n)]
