"""What each function's zip holds (functions/runtime.json, read by Terraform and by the packager)
is what its handler imports, transitively, and the files those modules read; its requirements are
what that code imports; and the packager writes those entries, the same bytes every time."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import zipfile
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ampbq.tools import function_zips

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "shared"
PACKAGE = SHARED / "ampbq"
FUNCTIONS = ("export", "transform", "load")
# Modules that must never ship: everything in the tools subpackage (the command line, the local
# stand-ins, the synthetic data, the demo, the benchmark and the packager itself).
TOOLS = PACKAGE / "tools"


# --- the import graph, read from the source --------------------------------------------------

def module_file(name: str) -> Path | None:
    """The file under shared/ that module `name` is, or None (not an ampbq module)."""
    base = SHARED.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every import in a file, at any depth (a function's lazy import runs too when called), but
    not under `if TYPE_CHECKING:`. `from X import a` is recorded as X.a: the caller takes the
    longest prefix that is a module."""

    def __init__(self, package: str):
        self.package = package
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".") if self.package else []
            base = ".".join(parts[: len(parts) - node.level + 1])
            assert base, f"relative import above the top package in {self.package}"
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module
        self.names.update(f"{source}.{alias.name}" for alias in node.names)


def imports_of(path: Path, package: str) -> set[str]:
    visitor = _Imports(package)
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.names


def _ampbq_module(name: str) -> str | None:
    """The ampbq module an imported name is (or is in): its longest prefix that is a module."""
    parts = name.split(".")
    if parts[0] != "ampbq":
        return None
    for end in range(len(parts), 0, -1):
        if module_file(".".join(parts[:end])):
            return ".".join(parts[:end])
    raise AssertionError(f"{name} names no module under {SHARED}")


@cache
def closure(function: str) -> tuple[frozenset[str], frozenset[str]]:
    """(the ampbq modules, the other imported names) that functions/<function>/main.py runs."""
    modules: set[str] = set()
    others: set[str] = set()
    todo = [(REPO / "functions" / function / "main.py", "")]
    while todo:
        path, package = todo.pop()
        for name in imports_of(path, package):
            module = _ampbq_module(name)
            if module is None:
                others.add(name)
                continue
            parts = module.split(".")
            for end in range(1, len(parts) + 1):  # importing ampbq.x runs ampbq/__init__.py first
                parent = ".".join(parts[:end])
                if parent not in modules:
                    modules.add(parent)
                    file = module_file(parent)
                    todo.append((file, parent if file.name == "__init__.py" else parent.rpartition(".")[0]))
    return frozenset(modules), frozenset(others)


def runtime_modules() -> set[str]:
    return set().union(*(closure(name)[0] for name in FUNCTIONS))


def entry_of(module: str) -> str:
    """A module's entry in the zip (its path under shared/)."""
    return module_file(module).relative_to(SHARED).as_posix()


def data_files_read(modules: set[str]) -> set[str]:
    """Files of the package that are not Python and whose names appear as string constants in
    these modules (schema.py names the JSON schemas, views.py the dedup view's SQL)."""
    constants = set()
    for module in modules:
        tree = ast.parse(module_file(module).read_text())
        constants.update(node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str))
    found = set()
    for path in PACKAGE.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            if path.name in constants:
                found.add(path.relative_to(SHARED).as_posix())
    return found


def listed() -> dict:
    return function_zips.runtime()


# --- what ships ------------------------------------------------------------------------------

def test_shared_files_are_the_handlers_import_closure_and_the_files_it_reads():
    modules = runtime_modules()
    assert {"ampbq", "ampbq.entry", "ampbq.export_step", "ampbq.transform_step", "ampbq.load_step", "ampbq.allocator"} <= modules
    expected = {entry_of(m) for m in modules} | data_files_read(modules)
    assert {"ampbq/schema/all_user_events.json", "ampbq/schema/all_user_events_loads.json",
            "ampbq/schema/all_user_events_dedup.sql"} <= expected
    shipped = set(listed()["shared_files"])
    assert shipped == expected, (f"add to functions/runtime.json: {sorted(expected - shipped)}; "
                                 f"remove from it: {sorted(shipped - expected)}")
    assert listed()["shared_files"] == sorted(shipped), "keep functions/runtime.json sorted"


def test_no_tooling_module_ships_or_is_imported_by_the_runtime():
    tooling = {"ampbq.tools." + p.stem if p.name != "__init__.py" else "ampbq.tools" for p in TOOLS.glob("*.py")}
    assert {"ampbq.tools.cli", "ampbq.tools.stack", "ampbq.tools.bench", "ampbq.tools.function_zips",
            "ampbq.tools.status", "ampbq.tools.calls"} <= tooling
    assert not tooling & runtime_modules()
    assert not {entry_of(m) for m in tooling} & set(listed()["shared_files"])
    assert not [entry for entry in listed()["shared_files"] if entry.startswith("ampbq/tools/")]


def test_listed_functions_and_their_own_files_are_every_file_in_their_folders():
    assert listed()["functions"] == list(FUNCTIONS)
    for name in FUNCTIONS:
        folder = REPO / "functions" / name
        present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                         if p.is_file() and "__pycache__" not in p.parts)
        assert present == sorted(listed()["function_files"]), f"{folder} holds a file that would not ship"


# --- requirements ----------------------------------------------------------------------------

def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path}: {line} is not pinned"
            found[canonicalize_name(requirement.name)] = spec.version
    return found


@cache
def module_owners() -> dict[str, str]:
    """Dotted module name → the installed distribution whose files hold it."""
    owners: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0] == ".." or "__pycache__" in parts or any(p.endswith((".dist-info", ".data")) for p in parts):
                continue
            last = parts[-1]
            if last.endswith(".py"):
                stem = last[:-3]
            elif last.endswith(".so"):
                stem = last.split(".")[0]
            else:
                continue
            module = (*parts[:-1], stem) if stem != "__init__" else parts[:-1]
            if module:
                owners.setdefault(".".join(module), name)
    return owners


def owner(name: str) -> str:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        found = module_owners().get(".".join(parts[:end]))
        if found:
            return found
    raise AssertionError(f"no installed distribution provides {name}")


def third_party_imports(function: str) -> set[str]:
    _, others = closure(function)
    return {n for n in others if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "__future__"}


def with_dependencies(names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_requires_what_its_code_imports_with_the_root_pins(name):
    required = pins(REPO / "functions" / name / "requirements.txt")
    imported = {owner(module) for module in third_party_imports(name)}
    assert {"functions-framework", "google-cloud-storage", "google-cloud-bigquery"} <= imported
    assert not set(required) - imported, f"{name} requires what its code never imports: {sorted(set(required) - imported)}"
    unprovided = imported - with_dependencies(set(required))
    assert not unprovided, f"{name} imports what its requirements do not install: {sorted(unprovided)}"
    root = pins(REPO / "requirements.txt")
    assert {n: root.get(n) for n in required} == required, f"{name} pins differ from requirements.txt"


def test_the_functions_do_not_import_what_only_the_cli_and_tests_use():
    imported = set().union(*({owner(m) for m in third_party_imports(name)} for name in FUNCTIONS))
    assert not imported & {"google-cloud-pubsub", "click", "rich", "cloudevents", "duckdb", "bqemulator"}


# --- the packager ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCTIONS)
def test_packager_writes_the_listed_entries_sorted_with_fixed_mode_and_time(name, tmp_path):
    first = function_zips.build(name, tmp_path / "a" / f"{name}.zip")
    again = function_zips.build(name, tmp_path / "b" / f"{name}.zip")
    assert first.read_bytes() == again.read_bytes()
    expected = sorted(listed()["function_files"] + listed()["shared_files"])
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == expected
        for info in infos:
            source = (REPO / "functions" / name / info.filename if info.filename in listed()["function_files"]
                      else SHARED / info.filename)
            assert archive.read(info) == source.read_bytes(), info.filename
            assert info.external_attr >> 16 == 0o100644 and info.create_system == 3
            assert info.date_time == function_zips.TIMESTAMP and info.compress_type == zipfile.ZIP_DEFLATED


def test_packager_command_writes_every_zip_and_prints_its_size_and_count(tmp_path, capsys):
    assert function_zips.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    count = len(listed()["function_files"]) + len(listed()["shared_files"])
    assert len(lines) == len(FUNCTIONS)
    for name, line in zip(FUNCTIONS, lines):
        size = (tmp_path / f"{name}.zip").stat().st_size
        assert re.fullmatch(rf"{re.escape(str(tmp_path / name))}\.zip  {count} files  {size:,} bytes \(\d+\.\d KiB\)", line), line


def test_packager_refuses_an_unknown_function_and_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not one of the functions"):
        function_zips.sources("backfill")
    fake = tmp_path / "repo"
    (fake / "functions" / "export").mkdir(parents=True)
    (fake / "functions" / "runtime.json").write_text(
        '{"functions": ["export"], "function_files": ["main.py"], "shared_files": ["ampbq/__init__.py"]}')
    (fake / "functions" / "export" / "main.py").write_text("")
    with pytest.raises(FileNotFoundError):
        function_zips.build("export", tmp_path / "export.zip", repo=fake)
    assert not list(tmp_path.glob("*export.zip*")), "a half-written zip was left"

