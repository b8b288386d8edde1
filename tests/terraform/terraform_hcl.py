"""Parsing terraform/ without Terraform: python-hcl2 plus a few helpers shared by the tests.

Expressions come back as strings such as "${google_pubsub_topic.daily_runs.id}"; literals come
back as plain values (numbers, booleans, unquoted strings, lists and dicts).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULE = TERRAFORM / "modules" / "pipeline"
ENVS = ("staging", "production")
# The files both environment roots link: everything but each one's own main.tf.
SHARED = TERRAFORM / "envs" / "shared"
FUNCTIONS = ("export", "transform", "load")
ENTRY_POINTS = {"export": "export_day", "transform": "transform_hour", "load": "load_hour"}
SCHEMA_DIR = REPO / "shared" / "ampbq" / "schema"


def parse_hcl(text: str) -> dict:
    """Parse HCL into plain values: unquoted strings and labels, no block markers or comments.

    Expressions keep python-hcl2 8's rendering, e.g. '${merge({A = var.a}, {})}'; version 7
    renders them differently, so these tests need 8 (requirements-dev.txt pins it).
    """
    options_class = getattr(hcl2, "SerializationOptions", None)
    if options_class is None:
        pytest.fail("tests/terraform needs python-hcl2 >= 8 (see requirements-dev.txt)")
    options = options_class(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    return hcl2.loads(text, serialization_options=options)


def tf_files() -> list[Path]:
    """Every .tf file once: the links of the environment roots are read where they point."""
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts and not p.is_symlink())


@cache
def parsed(directory: Path) -> dict[str, list]:
    """Every top-level block of a Terraform directory, all of its .tf files merged."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in parse_hcl(path.read_text()).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def labelled(directory: Path, kind: str) -> dict[tuple[str, str], dict]:
    """resource or data blocks of a directory, keyed by (type, name)."""
    found = {}
    for block in parsed(directory).get(kind, []):
        for type_, named in block.items():
            for name, body in named.items():
                found[(type_, name)] = body
    return found


def resources(type_: str) -> dict[str, dict]:
    return {name: body for (t, name), body in labelled(MODULE, "resource").items() if t == type_}


def resource(type_: str, name: str) -> dict:
    return resources(type_)[name]


def named_blocks(directory: Path, kind: str) -> dict[str, dict]:
    """variable, output or module blocks of a directory, keyed by name."""
    return {name: body for block in parsed(directory).get(kind, []) for name, body in block.items()}


def env_locals(env: str) -> dict:
    """The locals of an environment root: what its own main.tf chooses."""
    return {k: v for block in parsed(TERRAFORM / "envs" / env).get("locals", []) for k, v in block.items()}


def module_locals() -> dict:
    return {k: v for block in parsed(MODULE).get("locals", []) for k, v in block.items()}


def single(blocks: list[dict]) -> dict:
    assert len(blocks) == 1, blocks
    return blocks[0]


def unwrap(value: str) -> str:
    """'${expr}' -> 'expr'; anything else is returned unchanged."""
    match = re.fullmatch(r"\$\{(.*)\}", value, re.S)
    return match.group(1) if match else value


def resolve_template(template: str) -> str:
    """Expand ${path.module} and ${local.name} in a string template of the module."""

    def expand(match: re.Match) -> str:
        ref = match.group(1)
        if ref == "path.module":
            return str(MODULE)
        if ref.startswith("local."):
            return resolve_template(module_locals()[ref.removeprefix("local.")])
        raise AssertionError(f"cannot resolve ${{{ref}}} statically")

    return re.sub(r"\$\{([a-z_.]+)\}", expand, template)


def file_call_path(expression: str) -> Path:
    """The file a `file("...")` expression reads, resolved on disk."""
    match = re.fullmatch(r'file\("(.+)"\)', unwrap(expression))
    assert match, f"not a file() call: {expression}"
    return Path(resolve_template(match.group(1))).resolve()


def quoted_strings(expression: str) -> list[str]:
    return re.findall(r'"([^"]*)"', expression)


def variable_default(name: str):
    return named_blocks(MODULE, "variable")[name].get("default")


def optional_default(variable: str, key: str) -> str:
    """Default of one attribute in an object variable typed with optional(type, default)."""
    type_expr = named_blocks(MODULE, "variable")[variable]["type"]
    match = re.search(rf"{key} = optional\(\w+, ([^)]+)\)", type_expr)
    assert match, f"{variable}.{key} has no optional() default"
    return match.group(1).strip('"')


def all_tf_text() -> str:
    return "\n".join(path.read_text() for path in tf_files())


def terraform_block(directory: Path) -> dict:
    """The directory's terraform blocks as one (an environment root has two: versions, backend)."""
    merged: dict = {}
    for block in parsed(directory)["terraform"]:
        assert not merged.keys() & block.keys(), f"{directory}: {sorted(merged.keys() & block.keys())} set twice"
        merged |= block
    return merged
