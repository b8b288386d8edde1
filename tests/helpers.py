"""Helpers shared by unit and integration tests."""

from __future__ import annotations

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


class RecordingEnv(dict):
    """An environment that remembers every name the code asks it for."""

    def __init__(self, values: dict):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)


def load_function_main(name: str):
    """functions/<name>/main.py imported as the platform imports it (its own module, not `main`)."""
    import importlib.util

    path = REPO / "functions" / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"function_main_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
