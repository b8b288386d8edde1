"""The one line per upload hour that the monitoring counts ("hour loaded"), and the fields
every log line about an hour carries (terraform/modules/pipeline/monitoring.tf reads them)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from . import naming

log = logging.getLogger("ampbq.monitoring")


def hour_loaded_fields(hour: datetime, at: datetime | None = None) -> dict:
    """The fields of every "hour loaded" line, the one line per upload hour the monitoring counts
    (terraform/modules/pipeline/monitoring.tf): the load's for an hour it committed, the export's
    for an hour with no data at Amplitude. `date` and `hour` become the LogEntry labels the
    metrics are keyed by, written the same way by both, so an hour logged twice is one hour;
    `hour_end_unix` (when the upload hour ends, Unix seconds) is what the freshness alert reads;
    `lag_seconds` is from the end of the upload hour to `at` (now)."""
    end = hour + naming.HOUR
    at = at or datetime.now(timezone.utc)
    return hour_fields(hour) | {"hour_end_unix": int(end.timestamp()), "lag_seconds": round((at - end).total_seconds(), 3)}


def log_hour_loaded(step: str, hour: datetime, **fields) -> None:
    """Write the hour's "hour loaded" line: the one place it is written (the monitoring counts it;
    keep the message, the labels and the field names stable)."""
    log.info("hour loaded", extra={"fields": {"step": step, **hour_loaded_fields(hour), **fields}})


def project_field(project: str) -> dict:
    """Log lines of a project other than the default one name it."""
    return {"project": project} if project else {}


def hour_fields(hour: datetime, name: str = "", generation: int | None = None) -> dict:
    fields = {"date": f"{hour:%Y-%m-%d}", "hour": f"{hour:%H}"}
    if name:
        fields["object"] = name
    if generation is not None:
        fields["generation"] = generation
    return fields

