"""Fixtures for every test: the real sample exports, read from ../shared when present."""

from __future__ import annotations

import pytest

from helpers import SAMPLES_DIR, sample_records


@pytest.fixture(scope="session")
def samples() -> list[tuple[str, int, dict]]:
    records = sample_records()
    if not records:
        pytest.skip(f"no sample exports at {SAMPLES_DIR} (third-party data, not in the repo)")
    return records


def pytest_collection_modifyitems(items):
    """Modules marked `long` run first: `make test` shares whole modules out between two workers,
    and a long module started last would leave one worker running alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
