"""Amplitude Export API adapter: stream one hour range's zip into a writable file.

Status codes, as documented and as peers meet them:
200 + zip → data; 404 → no data for the range (not an error); 400 → over 4 GB (split the range);
504 → timed out on volume (retry, then split); 401/403 → wrong credentials (never retried);
429, 5xx, resets, and 200 bodies that are not a zip → transient, retried with backoff.
The secret is only ever handed to requests' auth; it is never formatted into a message.
"""

from __future__ import annotations

from typing import BinaryIO

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .config import Config
from .errors import NoData, PermanentError, TooLarge, TransientError
from .naming import HourRange, api_hour

CHUNK = 1 << 20
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
CONNECT_TIMEOUT = 30
# Between two bytes of the body, not for the whole export: large days are slow but steady.
READ_TIMEOUT = 300


class TimedOut(TransientError):
    """The Export API gave up on the volume (504) or the connection timed out."""


def retrying(config: Config) -> Retrying:
    """The retry policy of every call to Amplitude's APIs: transient failures only, with
    jittered exponential backoff, `config.http_attempts` tries in all."""
    return Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(config.http_attempts),
        wait=wait_random_exponential(multiplier=config.http_backoff_seconds, max=60),
        reraise=True,
    )


def export_url(config: Config) -> str:
    return f"{config.amplitude_url}/api/2/export"


def download(session: requests.Session, config: Config, hours: HourRange, sink: BinaryIO) -> int:
    """Stream the export zip for `hours` into `sink`; return the number of bytes written."""
    config.require_amplitude_keys()
    params = {"start": api_hour(hours.start), "end": api_hour(hours.end)}
    auth = (config.amplitude_api_key, config.amplitude_secret_key)
    try:
        response = session.get(
            export_url(config), params=params, auth=auth, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
        )
    except requests.Timeout as error:
        raise TimedOut(f"Export API {hours}: {type(error).__name__}") from None
    except requests.RequestException as error:
        raise TransientError(f"Export API {hours}: {type(error).__name__}: {error}") from None
    with response:
        _check_status(response.status_code, hours)
        return _stream_zip(response, hours, sink)


def _check_status(status: int, hours: HourRange) -> None:
    if status == 200:
        return
    if status == 404:
        raise NoData(f"Export API {hours}: no data for the range (404)")
    if status == 400:
        raise TooLarge(f"Export API {hours}: export over 4 GB (400)")
    if status == 504:
        raise TimedOut(f"Export API {hours}: timed out on volume (504)")
    if status in (401, 403):
        raise PermanentError(f"Export API {hours}: credentials refused ({status}); check the API key and secret key")
    if status == 429 or status >= 500:
        raise TransientError(f"Export API {hours}: HTTP {status}")
    raise PermanentError(f"Export API {hours}: unexpected HTTP {status}")


def _stream_zip(response: requests.Response, hours: HourRange, sink: BinaryIO) -> int:
    written = 0
    try:
        for chunk in response.iter_content(CHUNK):
            if written == 0 and not chunk.startswith(ZIP_MAGIC):
                if chunk.startswith(EMPTY_ZIP_MAGIC):
                    raise NoData(f"Export API {hours}: empty archive")
                raise TransientError(f"Export API {hours}: 200 response is not a zip (starts {chunk[:16]!r})")
            sink.write(chunk)
            written += len(chunk)
    except requests.RequestException as error:
        raise TransientError(f"Export API {hours}: download broke after {written} bytes: {type(error).__name__}") from None
    if written == 0:
        raise TransientError(f"Export API {hours}: 200 response with an empty body")
    expected = response.headers.get("Content-Length")
    if expected is not None and int(expected) != written:
        raise TransientError(f"Export API {hours}: got {written} of {expected} bytes")
    return written


# ---------------------------------------------------------------- User Privacy API (v1)
def deletions_url(config: Config) -> str:
    return f"{config.amplitude_url}/api/2/deletions/users"


def list_deletions(session: requests.Session, config: Config, start_day, end_day) -> object:
    """The deletion jobs scheduled from `start_day` to `end_day` (dates), as the decoded JSON.

    Same keys and Basic auth as the Export API; 401/403 is never retried, 429/5xx and
    connection errors are transient (the caller's retry policy decides), and a 200 whose body
    is not JSON fails permanently, naming what came back."""
    config.require_amplitude_keys()
    span = f"{start_day:%Y-%m-%d}..{end_day:%Y-%m-%d}"
    params = {"start_day": f"{start_day:%Y-%m-%d}", "end_day": f"{end_day:%Y-%m-%d}"}
    auth = (config.amplitude_api_key, config.amplitude_secret_key)
    try:
        response = session.get(deletions_url(config), params=params, auth=auth, timeout=(CONNECT_TIMEOUT, 120))
    except requests.RequestException as error:
        raise TransientError(f"User Privacy API {span}: {type(error).__name__}: {error}") from None
    status = response.status_code
    if status in (401, 403):
        raise PermanentError(f"User Privacy API {span}: credentials refused ({status}); check the API key and secret key")
    if status == 429 or status >= 500:
        raise TransientError(f"User Privacy API {span}: HTTP {status}")
    if status != 200:
        raise PermanentError(f"User Privacy API {span}: unexpected HTTP {status}: {response.text[:120]!r}")
    try:
        return response.json()
    except ValueError:
        raise PermanentError(f"User Privacy API {span}: the deletions list is not JSON "
                             f"(starts {response.content[:40]!r})") from None
