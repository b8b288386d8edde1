"""The documentation: a short README, one file per topic under docs/, every `ampbq` command
documented in both, and no relative link that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ampbq.tools.cli import main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
COMMANDS = sorted(main.commands)

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def prose(path: Path) -> str:
    """The file without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return FENCE.sub("", path.read_text())


def command_table(readme: str) -> str:
    match = re.search(r"^## Command line\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has no 'Command line' section"
    return match.group(1)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, … as on GitHub."""
    found, counts = set(), {}
    for heading in HEADING.findall(prose(path)):
        base = slug(heading)
        n = counts.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        counts[base] = n + 1
    return found


def test_the_cli_has_commands_to_document():
    assert {"status", "backfill", "reprocess", "rejects", "stack", "demo", "transform", "bench"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme_command_table(command):
    rows = re.findall(r"^\| `ampbq (\w+)", command_table(README.read_text()), re.M)
    assert command in rows, f"`ampbq {command}` has no row in README.md's command table"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_section_in_docs(command):
    sections = [(doc.name, heading) for doc in DOCS for heading in HEADING.findall(prose(doc))
                if re.search(rf"`ampbq {re.escape(command)}\b", heading)]
    assert sections, f"no heading in docs/*.md names `ampbq {command}`"


def test_readme_is_a_front_door_of_at_most_250_lines():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move the detail to docs/"


def test_readme_links_every_doc():
    linked = {target.split("#")[0] for target in LINK.findall(prose(README))}
    assert {f"docs/{doc.name}" for doc in DOCS} <= linked


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_files_that_exist(path):
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


def layout_tree() -> dict[str, list[str]]:
    """docs/layout.md's tree: each package folder under shared/ → the module names listed under it."""
    block = re.search(r"^```\n(.*?)^```", (REPO / "docs" / "layout.md").read_text(), re.M | re.S).group(1)
    tree: dict[str, list[str]] = {}
    folder = None
    for line in block.splitlines():
        if line.startswith("shared/"):
            folder = line.split()[0]
            tree[folder] = []
        elif line.startswith("  ") and folder:
            tree[folder].append(line.split()[0])
        else:
            folder = None
    return tree


@pytest.mark.parametrize("folder", ["shared/ampbq/", "shared/ampbq/tools/"])
def test_layout_lists_every_module_of_each_package_once(folder):
    listed = layout_tree()[folder]
    on_disk = sorted(p.stem for p in (REPO / folder).glob("*.py"))
    assert len(listed) == len(set(listed)), f"docs/layout.md lists a module twice under {folder}"
    assert sorted(n for n in listed if not n.endswith("/")) == on_disk, f"docs/layout.md's {folder} is not the tree"
