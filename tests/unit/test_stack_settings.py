"""Where the local stack serves each function from: the work tree by default, or given folders
(an unzipped function zip) under a given functions-framework."""

import sys
from pathlib import Path

import pytest

from ampbq.tools.stack import FUNCTIONS, REPO, StackError, StackSettings


def test_functions_are_served_from_the_work_tree_with_this_venv_by_default(tmp_path):
    settings = StackSettings(workdir=tmp_path, amplitude_url="")
    for name in FUNCTIONS:
        assert settings.function_source(name) == (REPO / "functions" / name, Path(sys.executable).parent / "functions-framework")


def test_a_function_source_given_replaces_only_that_function(tmp_path):
    given = {"load": (str(tmp_path / "load"), str(tmp_path / "venv" / "bin" / "functions-framework"))}
    settings = StackSettings(workdir=tmp_path, amplitude_url="", function_sources=given)
    assert settings.function_source("load") == (tmp_path / "load", tmp_path / "venv" / "bin" / "functions-framework")
    assert settings.function_source("export")[0] == REPO / "functions" / "export"


def test_an_unknown_function_source_is_refused(tmp_path):
    with pytest.raises(StackError, match="no such function: loads"):
        StackSettings(workdir=tmp_path, amplitude_url="", function_sources={"loads": (tmp_path, tmp_path)})
