"""The local stack for integration tests: started once per session on 127.0.0.1, stopped at the end.

Tests reach the emulators with the official clients and the functions over HTTP; each test uses
its own upload hours so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import pytest
from google.cloud import storage

from ampbq import bigquery as bq_adapter
from ampbq import gcs
from ampbq.config import Config
from ampbq.tools.stack import Stack, StackSettings
from ampbq.tools.stub import ExportApiStub

API_KEY, SECRET_KEY = "it-api-key", "it-secret-key"


class SwitchableSource:
    """The stub's data source, which a test may swap for its own."""

    def __init__(self):
        self.current = None

    def write(self, hours, sink) -> int:
        return self.current.write(hours, sink) if self.current else 0


@pytest.fixture(scope="session")
def stub():
    with ExportApiStub(SwitchableSource(), API_KEY, SECRET_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def stack(tmp_path_factory, stub):
    # Shorter backoffs, and a killed load's commit lease going stale after 15 s instead of 60 s.
    fast = {"AMPBQ_HTTP_BACKOFF_SECONDS": "0.1", "AMPBQ_LOAD_LEASE_SECONDS": "15"}
    settings = StackSettings(workdir=tmp_path_factory.mktemp("stack"), amplitude_url=stub.url, api_key=API_KEY,
                             secret_key=SECRET_KEY, extra_env=fast)
    saved = dict(os.environ)
    with Stack(settings) as running:
        os.environ.update(running.client_env())
        yield running
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def config(stack) -> Config:
    return Config.from_env(stack.function_env())


@pytest.fixture(scope="session")
def bucket(stack, config) -> storage.Bucket:
    return gcs.client(config.project).bucket(config.bucket)


@pytest.fixture(scope="session")
def bq(stack, config):
    client = bq_adapter.client(config)
    bq_adapter.ensure_tables(client, config)
    return client
