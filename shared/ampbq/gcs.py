"""Cloud Storage adapter: streaming readers and writers, and object metadata.

Reads and writes are chunked (ranged reads, resumable uploads), so memory stays bounded by
CHUNK whatever the object size. A writer that leaves its `with` block on an exception cancels
the upload: a half-written object is never finalized.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import BinaryIO, Iterator

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from .errors import TransientError

# A multiple of 256 KiB, as resumable uploads require.
CHUNK = 8 << 20


def client(project: str) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def current(bucket: storage.Bucket, name: str) -> storage.Blob | None:
    """The live object (with its generation and metadata), or None."""
    return bucket.get_blob(name)


@contextlib.contextmanager
def reader(bucket: storage.Bucket, name: str, generation: int | None = None) -> Iterator[BinaryIO]:
    """Read one generation of an object through ranged requests of CHUNK bytes."""
    blob = bucket.blob(name, generation=generation)
    with blob.open("rb", chunk_size=CHUNK) as stream:
        yield stream


@contextlib.contextmanager
def writer(
    bucket: storage.Bucket,
    name: str,
    metadata: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> Iterator[BinaryIO]:
    """Write an object by resumable upload; it is finalized only if the block succeeds."""
    blob = bucket.blob(name)
    blob.metadata = metadata
    with blob.open("wb", chunk_size=CHUNK, content_type=content_type, ignore_flush=True) as stream:
        yield stream


def read_json(bucket: storage.Bucket, name: str):
    """A small JSON object's content, or None when there is no such object."""
    try:
        return json.loads(bucket.blob(name).download_as_bytes())
    except gexc.NotFound:
        return None


def delete_if_exists(bucket: storage.Bucket, name: str) -> bool:
    try:
        bucket.blob(name).delete()
        return True
    except gexc.NotFound:
        return False


def classify(error: Exception) -> Exception:
    """Map a Cloud Storage error to the package's taxonomy (transient ones are retried)."""
    if isinstance(error, (gexc.TooManyRequests, gexc.ServerError, gexc.ServiceUnavailable)):
        return TransientError(f"Cloud Storage: {error}")
    return error
