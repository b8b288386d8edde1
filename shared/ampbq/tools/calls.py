"""How long the command line waits on Cloud Storage, BigQuery and Pub/Sub, and what it says when
one of them does not answer.

The functions keep the client libraries' own retries (two to ten minutes of them): nobody waits
at a terminal, and the platform retries a failed event anyway. The command line sets a bound
with `bounded` (AMPBQ_CONNECT_TIMEOUT_SECONDS, 30 s by default): then each call made with
`storage()`, `query()`, `bigquery()` or `publish()` retries for at most that long in all, each
attempt timing out within it, and `unreachable` turns the error it ends with into one sentence
naming the service, its address and why (connection refused, no answer, unknown host).
Outside `bounded` those helpers give nothing, and the libraries' defaults apply.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
from contextvars import ContextVar
from typing import Iterator, Mapping
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from google.api_core import exceptions as gexc
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud.bigquery import retry as bigquery_retry
from google.cloud.storage import retry as storage_retry

from ..errors import PermanentError, Unreachable

ENV = "AMPBQ_CONNECT_TIMEOUT_SECONDS"
DEFAULT_SECONDS = 30.0
# Backoff between attempts within the bound: short, so the last attempt comes close to it.
_INITIAL, _MAXIMUM = 0.25, 2.0
# Pub/Sub's own publish retry (google.pubsub_v1's transport), with the bound as its deadline.
_PUBLISH_RETRYABLE = (gexc.Aborted, gexc.Cancelled, gexc.DeadlineExceeded, gexc.InternalServerError,
                      gexc.ResourceExhausted, gexc.ServiceUnavailable, gexc.Unknown)

_bound: ContextVar[float | None] = ContextVar("ampbq_call_bound", default=None)


def seconds_from_env(env: Mapping[str, str] | None = None) -> float:
    """AMPBQ_CONNECT_TIMEOUT_SECONDS, or 30; a value that is not a positive number is refused."""
    text = (os.environ if env is None else env).get(ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise PermanentError(f"{ENV} must be a number of seconds above 0, not {text!r}")
    return seconds


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Within the block, the helpers below bound every call to `seconds` in all."""
    token = _bound.set(seconds)
    try:
        yield
    finally:
        _bound.reset(token)


def current() -> float | None:
    """The bound in force, or None (the libraries' defaults)."""
    return _bound.get()


def _within(retry: api_retry.Retry, seconds: float) -> api_retry.Retry:
    return retry.with_timeout(seconds).with_delay(initial=_INITIAL, maximum=min(_MAXIMUM, seconds / 4))


def storage() -> dict:
    """retry= and timeout= for a Cloud Storage call (list, get, download, rewrite)."""
    seconds = _bound.get()
    if seconds is None:
        return {}
    return {"retry": _within(storage_retry.DEFAULT_RETRY, seconds), "timeout": seconds}


def bigquery() -> dict:
    """retry= and timeout= for a BigQuery API call (get_table, get_dataset)."""
    seconds = _bound.get()
    if seconds is None:
        return {}
    return {"retry": _within(bigquery_retry.DEFAULT_RETRY, seconds), "timeout": seconds}


def query() -> dict:
    """Keyword arguments for `Client.query`: as `bigquery()`, and no job retry.

    With a job retry the client wraps the whole insert in a second retry of its own (ten
    minutes, retrying the bounded one's RetryError); the CLI's queries only read, and a query
    that fails is reported rather than run again.
    """
    found = bigquery()
    return found | {"job_retry": None} if found else {}


def query_result() -> dict:
    """retry= for `QueryJob.result` (how long the query itself runs is not bounded)."""
    seconds = _bound.get()
    return {} if seconds is None else {"retry": _within(bigquery_retry.DEFAULT_RETRY, seconds)}


def publish() -> dict:
    """retry= and timeout= for `PublisherClient.publish`."""
    seconds = _bound.get()
    if seconds is None:
        return {}
    retry = api_retry.Retry(predicate=api_retry.if_exception_type(*_PUBLISH_RETRYABLE))
    return {"retry": _within(retry, seconds), "timeout": seconds}


def result_seconds(default: float) -> float:
    """How long to wait on a future whose calls are bounded: a little over the bound."""
    seconds = _bound.get()
    return default if seconds is None else seconds + 5


# ------------------------------------------------------------------ what could not be reached
def pubsub_endpoint() -> str:
    return os.environ.get("PUBSUB_EMULATOR_HOST") or "pubsub.googleapis.com"


def unreachable(error: BaseException) -> Unreachable | None:
    """The service that did not answer, if that is what `error` says; None for any other error.

    The service and its address come from the failed request's URL (Cloud Storage, BigQuery,
    Google's sign-in). A gRPC error carries no URL: it is Pub/Sub's, the one gRPC client here.
    """
    chain = list(_chain(error))
    if not any(_is_connection_failure(e) for e in chain):
        return None
    url = next((e.request.url for e in chain if isinstance(getattr(e, "request", None), requests.PreparedRequest)
                and e.request.url), None)
    if url:
        service, endpoint = _service_of(url)
    elif any(_from_grpc(e) for e in chain):
        service, endpoint = "Pub/Sub", pubsub_endpoint()
    else:
        return None
    timed_out = any(isinstance(e, (gexc.RetryError, concurrent.futures.TimeoutError)) for e in chain)
    return Unreachable(service, endpoint, _reason(chain), _bound.get() if timed_out else None)


def _from_grpc(error: BaseException) -> bool:
    import grpc  # only the Pub/Sub client brings it; loaded when such an error is at hand

    return isinstance(error, gexc.GoogleAPICallError) and isinstance(error.response, grpc.RpcError)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps: causes, contexts, RetryError.cause, urllib3's reason, args."""
    seen, stack = set(), [error]
    while stack:
        current_error = stack.pop(0)
        if current_error is None or id(current_error) in seen:
            continue
        seen.add(id(current_error))
        yield current_error
        wrapped = [getattr(current_error, "cause", None), getattr(current_error, "reason", None),
                   current_error.__cause__, current_error.__context__, *current_error.args]
        stack.extend(e for e in wrapped if isinstance(e, BaseException))


_CONNECTION_FAILURES = (ConnectionError, socket.gaierror, TimeoutError, requests.ConnectionError, requests.Timeout,
                        urllib3.exceptions.NewConnectionError, urllib3.exceptions.MaxRetryError,
                        urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError, auth_exceptions.TransportError,
                        gexc.ServiceUnavailable, gexc.DeadlineExceeded)


def _is_connection_failure(error: BaseException) -> bool:
    if isinstance(error, gexc.ServiceUnavailable) and "connect" not in str(error).lower():
        return False  # a 503 from a service that answered: not a reachability problem
    return isinstance(error, _CONNECTION_FAILURES)


def _service_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.netloc}"
    path, host = parts.path, parts.hostname or ""
    if path.startswith(("/storage/", "/upload/storage/", "/download/storage/")) or host == "storage.googleapis.com":
        return "Cloud Storage", endpoint
    if path.startswith("/bigquery/") or host.startswith("bigquery."):
        return "BigQuery", endpoint
    if host.startswith(("oauth2.", "sts.", "iamcredentials.")) or host in ("metadata.google.internal", "169.254.169.254"):
        return "Google's sign-in service (for credentials)", endpoint
    return "the service", endpoint


def _reason(chain: list[BaseException]) -> str:
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
            marker in text for marker in ("name or service not known", "nodename nor servname", "dns resolution failed",
                                          "failed to resolve", "temporary failure in name resolution")):
        return "host name not found"
    if any(isinstance(e, (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError, gexc.DeadlineExceeded))
           for e in chain) or "timed out" in text:
        return "no answer"
    if "connection reset" in text or "remotedisconnected" in text or "connection aborted" in text:
        return "connection reset"
    return "no connection"
