"""The three Cloud Functions' zips, as Terraform uploads them: `make package` writes them to dist/.

What goes into each zip is defined once, in functions/runtime.json, which
terraform/modules/pipeline/functions.tf reads too: functions/<name>/<file> for each of its
`function_files` at the zip's root, and shared/<file> for each of its `shared_files` (the ampbq
runtime modules and the schema files they read) under ampbq/, next to main.py.

Entries are written in sorted order, as the archive provider writes `source` blocks; deflated,
mode 0644 and one fixed timestamp, so the same sources give the same bytes on every machine.
Tooling only: it is not in the list, so it never ships. Standard library only, so it runs
without the project's virtual environment (`PYTHONPATH=shared python3 -m ampbq.tools.function_zips`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RUNTIME_LIST = Path("functions") / "runtime.json"
TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no build time in the bytes
MODE = 0o644


def runtime(repo: Path = REPO) -> dict:
    """functions/runtime.json: `functions`, `function_files`, `shared_files`."""
    return json.loads((repo / RUNTIME_LIST).read_text())


def sources(name: str, repo: Path = REPO) -> dict[str, Path]:
    """Entry name → the file it is read from, for one function's zip, in the order they are written."""
    listed = runtime(repo)
    if name not in listed["functions"]:
        raise ValueError(f"{name!r} is not one of the functions in {RUNTIME_LIST}: {listed['functions']}")
    entries = {entry: repo / "functions" / name / entry for entry in listed["function_files"]}
    for entry in listed["shared_files"]:
        if entry in entries:
            raise ValueError(f"{entry} is listed twice in {RUNTIME_LIST}")
        entries[entry] = repo / "shared" / entry
    return dict(sorted(entries.items()))


def build(name: str, out: Path, repo: Path = REPO) -> Path:
    """Write one function's zip to `out` (replaced whole: a half-written zip is never left there)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = sources(name, repo)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for entry, path in entries.items():
                info = zipfile.ZipInfo(entry, date_time=TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so the mode below is read
                info.external_attr = (0o100000 | MODE) << 16  # a regular file, rw-r--r--
                archive.writestr(info, path.read_bytes())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def build_all(dist: Path, repo: Path = REPO) -> dict[str, Path]:
    """Every function's zip, as dist/<name>.zip."""
    return {name: build(name, dist / f"{name}.zip", repo) for name in runtime(repo)["functions"]}


def describe(path: Path) -> str:
    """One line for a zip: its path, how many files it holds and its size."""
    with zipfile.ZipFile(path) as archive:
        count = len(archive.infolist())
    size = path.stat().st_size
    return f"{path}  {count} files  {size:,} bytes ({size / 1024:.1f} KiB)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ampbq.tools.function_zips",
                                     description="Write the three Cloud Functions' zips, as Terraform uploads them.")
    parser.add_argument("dist", nargs="?", type=Path, default=REPO / "dist", help="where to write <name>.zip (default: dist/)")
    args = parser.parse_args(argv)
    for path in build_all(args.dist).values():
        print(describe(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
