"""Structured logging: one JSON line per record on stdout, the shape Cloud Logging reads.

Cloud Logging lifts `severity`, `message` and `logging.googleapis.com/labels` out of a JSON line
written to stdout. Callers pass context as `extra={"fields": {...}}`; never pass event payloads or
secrets.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

import orjson

LABEL_KEYS = ("step", "date", "hour", "object", "generation")


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


def setup(level: int = logging.INFO) -> None:
    """Route the package's loggers to stdout as JSON lines (idempotent)."""
    root = logging.getLogger("ampbq")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
