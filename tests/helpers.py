"""Helpers shared by unit and integration tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO.parent / "shared" / "samples"


def sample_records() -> list[tuple[str, int, dict]]:
    """(file name, line number, event) for every real exported event in ../shared/samples/."""
    records = []
    for path in sorted(SAMPLES_DIR.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                records.append((path.name, number, json.loads(line)))
    return records


def gzip_ndjson(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))
