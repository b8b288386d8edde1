"""Cloud Storage adapter: streaming readers and writers, and object metadata.

Reads and writes are chunked (ranged reads, resumable uploads), so memory stays bounded by
CHUNK whatever the object size. A writer that leaves its `with` block on an exception cancels
the upload: a half-written object is never finalized.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import traceback
import urllib.parse
from datetime import datetime, timezone
from typing import BinaryIO, Iterable, Iterator

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import InvalidResponse

from .errors import Ignored, PermanentError, TransientError

# A multiple of 256 KiB, as resumable uploads require.
CHUNK = 8 << 20


def client(project: str) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


class GenerationChanged(TransientError):
    """A request conditional on an object's generation found another one live (412): the object
    was replaced or deleted meanwhile. A step with its own answer to that catches it; one that
    does not gets what `classify` makes of the 412 (transient, with the same message)."""


@contextlib.contextmanager
def _conditional(condition: dict):
    """Raise a 412 of the requests made under `condition` (if_generation_match=...) as
    GenerationChanged; with no condition, errors go through as they are."""
    try:
        yield
    except gexc.PreconditionFailed as error:
        if not condition:
            raise
        raise GenerationChanged(str(classify(error))) from error


def current(bucket: storage.Bucket, name: str) -> storage.Blob | None:
    """The live object (with its generation and metadata), or None."""
    return bucket.get_blob(name)


def exists(bucket: storage.Bucket, name: str) -> bool:
    """Whether `name` has a live object (a metadata read of its own)."""
    return bucket.get_blob(name) is not None


def version(bucket: storage.Bucket, name: str, generation: int) -> storage.Blob | None:
    """The metadata (size, custom metadata) of that one generation of `name`, or None when it is gone."""
    return bucket.get_blob(name, generation=generation)


def age(bucket: storage.Bucket, name: str) -> tuple[int, float] | None:
    """The live object's generation and the seconds since it was written (0 when the server does
    not say); None when there is no live object."""
    blob = bucket.get_blob(name)
    if blob is None:
        return None
    return blob.generation, (datetime.now(timezone.utc) - blob.updated).total_seconds() if blob.updated else 0


def live(bucket: storage.Bucket, obj) -> storage.Blob:
    """The live object of the event `obj` (an events.StorageObject) when it is still the
    generation the event names; Ignored when a newer one replaced it, or it is gone."""
    blob = current(bucket, obj.name)
    if blob is None or blob.generation != obj.generation:
        now = "gone" if blob is None else f"now generation {blob.generation}"
        raise Ignored(f"stale event for {obj.name} generation {obj.generation} ({now})")
    return blob


@contextlib.contextmanager
def reader(bucket: storage.Bucket, name: str, generation: int | None = None, **options) -> Iterator[BinaryIO]:
    """Read one generation of an object through ranged requests of CHUNK bytes (`options`:
    retry= and timeout= for each request)."""
    blob = bucket.blob(name, generation=generation)
    with blob.open("rb", chunk_size=CHUNK, **options) as stream:
        yield stream


@contextlib.contextmanager
def writer(
    bucket: storage.Bucket,
    name: str,
    metadata: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
    if_generation_match: int | None = None,
) -> Iterator[BinaryIO]:
    """Write an object by resumable upload; it is finalized only if the block succeeds.
    `if_generation_match` (0: only if there is no live object) makes it conditional: 412
    (PreconditionFailed) when the live generation is another."""
    blob = bucket.blob(name)
    blob.metadata = metadata
    condition = {} if if_generation_match is None else {"if_generation_match": if_generation_match}
    with _conditional(condition), blob.open("wb", chunk_size=CHUNK, content_type=content_type, ignore_flush=True,
                                            **condition) as stream:
        yield stream


def put(bucket: storage.Bucket, name: str, data: str | bytes, content_type: str, metadata: dict[str, str] | None = None) -> int:
    """Write a small object in one request, its metadata (when given) with it; its new generation."""
    return _upload(bucket, name, data, content_type, metadata, {})


def put_if_generation(bucket: storage.Bucket, name: str, data: str | bytes, content_type: str, generation: int,
                      metadata: dict[str, str] | None = None) -> int:
    """put, only while `generation` is the live one (0: only if there is no live object); its new
    generation. GenerationChanged when another one is live."""
    return _upload(bucket, name, data, content_type, metadata, {"if_generation_match": generation})


def _upload(bucket: storage.Bucket, name: str, data: str | bytes, content_type: str, metadata: dict[str, str] | None,
            condition: dict) -> int:
    blob = bucket.blob(name)
    if metadata is not None:
        blob.metadata = metadata
    with _conditional(condition):
        blob.upload_from_string(data, content_type, **condition)
    return blob.generation


def read_bytes(bucket: storage.Bucket, name: str, generation: int) -> bytes | None:
    """One generation of a small object, whole; None when that generation is gone."""
    try:
        return bucket.blob(name, generation=generation).download_as_bytes()
    except gexc.NotFound:
        return None


def read_live(blob: storage.Blob) -> bytes:
    """The content of `blob` (a small object as `current` returned it), read only while its
    generation is still the live one (PreconditionFailed, classified like any, when it is not)."""
    return blob.download_as_bytes(if_generation_match=blob.generation)


def copy_generation(bucket: storage.Bucket, name: str, generation: int | None, out: BinaryIO, chunk: int = CHUNK) -> int | None:
    """Append one generation of `name` (None: the live one) to `out`, `chunk` bytes at a time
    (through `reader`); the bytes copied, or None when that generation is gone (404)."""
    copied = 0
    try:
        with reader(bucket, name, generation) as raw:
            while data := raw.read(chunk):
                out.write(data)
                copied += len(data)
    except gexc.NotFound:
        return None
    return copied


def listing(bucket: storage.Bucket, prefix: str) -> list[storage.Blob]:
    """The live objects under `prefix`, with their generations and metadata."""
    return list(bucket.list_blobs(prefix=prefix))


def versions(bucket: storage.Bucket, prefix: str) -> Iterable[storage.Blob]:
    """Every generation, live and noncurrent, of the objects under `prefix` (listed page by page
    as it is iterated)."""
    return bucket.list_blobs(prefix=prefix, versions=True)


def folders(bucket: storage.Bucket, prefix: str) -> set[str]:
    """The "folders" directly under `prefix`: the prefixes, each ending in "/", that a listing
    with the delimiter "/" reports (every page of it read)."""
    pages = bucket.list_blobs(prefix=prefix, delimiter="/")
    for _ in pages.pages:
        pass
    return set(pages.prefixes)


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


def delete_generation(bucket: storage.Bucket, name: str, generation: int) -> bool:
    """Delete that one generation of `name` (live or noncurrent); False when it is already gone."""
    try:
        bucket.blob(name, generation=generation).delete()
        return True
    except gexc.NotFound:
        return False


def delete_if_generation(bucket: storage.Bucket, name: str, generation: int) -> bool:
    """Delete the live `name` only while `generation` is the live one; False when it was replaced
    or deleted meanwhile (412, 404): whoever did it decided."""
    return _delete_conditionally(bucket.blob(name), generation)


def delete_generation_if_live(bucket: storage.Bucket, name: str, generation: int) -> bool:
    """delete_if_generation, with the request naming that generation too."""
    return _delete_conditionally(bucket.blob(name, generation=generation), generation)


def _delete_conditionally(blob: storage.Blob, generation: int) -> bool:
    try:
        blob.delete(if_generation_match=generation)
        return True
    except (gexc.NotFound, gexc.PreconditionFailed):
        return False


def source_generation(blob: storage.Blob | None) -> int:
    """The hour object generation an object written by this pipeline was made from (0: none)."""
    return made_from(blob.metadata if blob is not None else None)[0]


def made_from(metadata: dict[str, str] | None) -> tuple[int, int]:
    """What an object written by this pipeline was made from, in the order newer ones win: the
    hour object's generation, then (for a unit of a big hour) its task object's generation, so a
    task dropped again replaces the unit's rows it made before. (0, 0): nothing known."""
    metadata = metadata or {}
    try:
        return int(metadata.get("source_generation", 0)), int(metadata.get("unit_generation", 0))
    except ValueError:
        return 0, 0


PUBLISH_ATTEMPTS = 10


def publish_if_newer(bucket: storage.Bucket, scratch: str, name: str, metadata: dict[str, str], content_type: str) -> bool:
    """Make the finished `scratch` object the live `name`, unless `name` already holds rows of the
    same or a newer source generation (`metadata["source_generation"]`, then "unit_generation":
    made_from); False when it does.

    The bucket is versioned and steps can finish in any order, so a step working on an older
    generation may finish last. Each attempt is a compare-and-swap: compose with
    `if_generation_match` on the live generation just read (0: none), so a writer that got there
    in between makes this attempt fail with 412 and the next one decide again. Composing sets the
    metadata in the same request that finalizes the object (the counts are known only at the end).
    """
    ours = made_from(metadata)
    try:
        for _ in range(PUBLISH_ATTEMPTS):
            live = bucket.get_blob(name)
            if made_from(live.metadata if live is not None else None) >= ours:
                return False
            final = bucket.blob(name)
            final.metadata = metadata
            final.content_type = content_type
            try:
                final.compose([bucket.blob(scratch)], if_generation_match=live.generation if live else 0)
                return True
            except gexc.PreconditionFailed:
                continue
        raise TransientError(f"{name} kept changing while generation {ours[0]} was being published; retrying")
    finally:
        delete_if_exists(bucket, scratch)


def finalize(bucket: storage.Bucket, scratch: str, name: str, metadata: dict[str, str], content_type: str) -> None:
    """Make the finished `scratch` object `name`, with `metadata` set in the same request that
    finalizes it (for metadata known only once the content is written), and remove `scratch`."""
    final = bucket.blob(name)
    final.metadata = metadata
    final.content_type = content_type
    try:
        final.compose([bucket.blob(scratch)])
    finally:
        delete_if_exists(bucket, scratch)


def delete_if_older(bucket: storage.Bucket, name: str, source_generation_now: int, unit_generation: int = 0) -> None:
    """Delete `name` if it was made from an older source than (`source_generation_now`,
    `unit_generation`) (made_from; a newer one's object stays)."""
    _delete_if(bucket, name, lambda source: source < (source_generation_now, unit_generation))


def delete_if_source(bucket: storage.Bucket, name: str, source_generation_then: int, unit_generation: int = 0) -> None:
    """Delete `name` if it is still the object made from exactly that source (made_from)."""
    _delete_if(bucket, name, lambda source: source == (source_generation_then, unit_generation))


def _delete_if(bucket: storage.Bucket, name: str, made_from_matches) -> None:
    """Delete the live `name` if its source generation matches; conditional on the generation
    just read, so an object replaced meanwhile is left to whoever replaced it."""
    live = bucket.get_blob(name)
    if live is None or not made_from_matches(made_from(live.metadata)):
        return
    delete_if_generation(bucket, name, live.generation)  # False: replaced or deleted meanwhile


# By status code. 403 is Cloud Storage's answer for a missing IAM role (reason "forbidden" or
# "insufficientPermissions"): the same request fails the same way on every retry. A 404 or 412 in
# the middle of a step is an object replaced or deleted meanwhile; the retry looks again (and
# finds the event stale). Cloud Storage signals rate limits with 429, but a 403 carrying one of
# the rate reasons is taken as one too.
_TERMINAL_CODES = frozenset({400, 403})
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
_PERMISSION = re.compile(r"\bstorage\.(?:objects|buckets|managedFolders|multipartUploads)\.[a-zA-Z]+\b")
_OBJECT_PATH = re.compile(r"/b/([^/?]+)/o/([^/?]+)")


def status_of(error: Exception) -> int | None:
    """The HTTP status of a Cloud Storage error: a JSON API call's, or a chunked transfer's."""
    if isinstance(error, gexc.GoogleAPICallError):
        return error.code
    if isinstance(error, InvalidResponse):
        return getattr(error.response, "status_code", None)
    return None


def classify(error: Exception) -> Exception:
    """Map a Cloud Storage error to the package's taxonomy, by status code (and reason), in this
    one place: 400 and 403 are permanent, every other status is transient. Anything that is not
    a Cloud Storage error is returned as it is."""
    status = status_of(error)
    if status is None:
        return error
    reason = _reason(error)
    if status in _TERMINAL_CODES and reason not in _RATE_REASONS:
        return PermanentError(_one_line(error, status, reason, denied=status == 403))
    return TransientError(_one_line(error, status, reason))


def owns(error: BaseException) -> bool:
    """Whether `error` came out of the Cloud Storage client library (its frames are in the
    traceback), so that `classify` is the one to map it."""
    if not isinstance(error, (gexc.GoogleAPICallError, InvalidResponse)):
        return False
    frames = traceback.walk_tb(error.__traceback__)
    return any(frame.f_globals.get("__name__", "").startswith(_LIBRARIES) for frame, _ in frames)


_LIBRARIES = ("google.cloud.storage", "google.resumable_media")


def _reason(error: Exception) -> str:
    details = list(getattr(error, "errors", None) or ())
    if not details:  # a media request's error: the reason is in the JSON body
        try:
            details = json.loads(getattr(_response(error), "text", "") or "{}").get("error", {}).get("errors", [])
        except (ValueError, AttributeError):
            details = []
    first = details[0] if details and isinstance(details[0], dict) else {}
    return str(first.get("reason", ""))


def _response(error: Exception):
    return getattr(error, "response", None)


def _one_line(error: Exception, status: int, reason: str, denied: bool = False) -> str:
    """"Cloud Storage 403 (forbidden) on gs://b/o: permission storage.objects.get denied" and the
    like: which object (from the request), and which permission when the API names it."""
    text = getattr(error, "message", None) or str(error)
    response = _response(error)
    subject = _subject(getattr(getattr(response, "request", None), "url", None) or getattr(response, "url", "") or "")
    what = f"Cloud Storage {status}" + (f" ({reason})" if reason else "") + (f" on {subject}" if subject else "")
    if denied:
        permission = _PERMISSION.search(text)
        missing = f"permission {permission.group(0)} denied" if permission else "permission denied"
        return f"{what}: {missing} (the caller's service account lacks an IAM role that grants it)"
    return f"{what}: {' '.join(text.split())[:300]}"


def _subject(url: str) -> str:
    """gs://bucket/name from a JSON API or upload URL ("" when it names neither)."""
    parsed = urllib.parse.urlsplit(url)
    match = _OBJECT_PATH.search(parsed.path)
    if match:
        return f"gs://{urllib.parse.unquote(match.group(1))}/{urllib.parse.unquote(match.group(2))}"
    bucket = re.search(r"/b/([^/?]+)", parsed.path)
    name = urllib.parse.parse_qs(parsed.query).get("name", [""])[0]
    if bucket:
        return f"gs://{urllib.parse.unquote(bucket.group(1))}" + (f"/{name}" if name else "")
    return ""
