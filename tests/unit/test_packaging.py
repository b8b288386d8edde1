"""What each deployed function is built from: the same pins and entry points the tests use."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {"export": "export_day", "transform": "transform_hour", "load": "load_hour"}


def test_each_function_pins_exactly_the_runtime_requirements():
    runtime = (REPO / "requirements.txt").read_text()
    for name in ENTRY_POINTS:
        assert (REPO / "functions" / name / "requirements.txt").read_text() == runtime, name


def test_each_function_main_defines_its_entry_point_and_only_delegates():
    for name, target in ENTRY_POINTS.items():
        tree = ast.parse((REPO / "functions" / name / "main.py").read_text())
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert [f.name for f in functions] == [target]
        assert len(functions[0].body) == 1, f"{name}: the handler should only call into ampbq"


def test_readme_documents_every_environment_variable_the_code_reads():
    readme = (REPO / "README.md").read_text()
    code = (REPO / "shared" / "ampbq" / "config.py").read_text()
    names = {part.split('"')[0] for part in code.split('env.get("')[1:]}
    assert names and all(f"`{name}`" in readme for name in names), names
