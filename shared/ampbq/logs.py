"""Structured logging: one JSON line per record on stdout, the shape Cloud Logging reads.

Cloud Logging lifts `severity`, `message` and `logging.googleapis.com/labels` out of a JSON line
written to stdout. The invocation's context (step, object, generation, date, hour, event id,
trace) is bound once by the entry (`invocation`, then `bind` as it is learnt) and is on every line
logged while it runs, in whichever module; it lives in a context variable, so the requests the
functions serve on several threads at once never see each other's. A line's own fields go in
`extra={"fields": {...}}` and win over the context's. Never log event payloads or secrets.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from contextvars import ContextVar
from datetime import datetime, timezone

import orjson

LABEL_KEYS = ("step", "date", "hour", "object", "generation")
# W3C trace context: version-traceid-parentid-flags (what Eventarc puts in the `traceparent` extension).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def trace_fields(traceparent: str | None, project: str) -> dict:
    """Cloud Logging's trace fields for a W3C `traceparent`, so an invocation's lines group under
    its trace in Logs Explorer (and link to Cloud Trace); {} when there is nothing valid to link."""
    match = _TRACEPARENT.match((traceparent or "").strip().lower())
    if not match or not project or set(match.group(1)) == {"0"}:
        return {}
    trace_id, span_id, flags = match.groups()
    return {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}",
        "logging.googleapis.com/spanId": span_id,
        "logging.googleapis.com/trace_sampled": bool(int(flags, 16) & 1),
    }


_CONTEXT: ContextVar[dict | None] = ContextVar("ampbq_invocation", default=None)


@contextlib.contextmanager
def invocation(**fields):
    """Bind `fields` as the context of every line logged until the block ends (in this thread, and
    in any context copied from it); the previous context comes back after."""
    token = _CONTEXT.set(dict(fields))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields) -> None:
    """Add to the running invocation's context (nothing outside an invocation)."""
    bound = _CONTEXT.get()
    if bound is not None:
        bound.update(fields)


def context() -> dict:
    """A copy of the running invocation's context ({} outside one)."""
    return dict(_CONTEXT.get() or {})


class ContextFilter(logging.Filter):
    """Puts the invocation's context on each record where it is emitted (in the emitting thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = context()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        bound = record.context if hasattr(record, "context") else context()
        fields = bound | dict(getattr(record, "fields", {}) or {})
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            **fields,
        }
        labels = {k: str(fields[k]) for k in LABEL_KEYS if k in fields}
        if labels:
            entry["logging.googleapis.com/labels"] = labels
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


_SETUP_LOCK = threading.Lock()


def setup(level: int = logging.INFO) -> None:
    """Route the package's loggers to stdout as JSON lines (idempotent)."""
    root = logging.getLogger("ampbq")
    root.setLevel(level)
    root.propagate = False
    # The functions serve requests on several threads: two first requests at once must not both
    # add a handler (every line would then be written twice).
    with _SETUP_LOCK:
        if any(getattr(h, "ampbq_stdout", False) for h in root.handlers):
            return
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ContextFilter())
        handler.ampbq_stdout = True
        root.addHandler(handler)
