"""Structured logging: one JSON line per record on stdout, the shape Cloud Logging reads.

Cloud Logging lifts `severity`, `message` and `logging.googleapis.com/labels` out of a JSON line
written to stdout. Callers pass context as `extra={"fields": {...}}`; never pass event payloads or
secrets.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}) or {})
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
        handler.ampbq_stdout = True
        root.addHandler(handler)
