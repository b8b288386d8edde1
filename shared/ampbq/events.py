"""Decode CloudEvents at the boundary into small frozen values; nothing further in sees dicts."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from .errors import PermanentError
from .naming import HourRange, latest_complete_hour, utc_hour


@dataclass(frozen=True)
class StorageObject:
    """A finalized GCS object, as the event names it."""

    bucket: str
    name: str
    generation: int
    event_id: str = ""


def storage_object(cloud_event) -> StorageObject:
    data = cloud_event.data or {}
    try:
        return StorageObject(
            bucket=data["bucket"],
            name=data["name"],
            generation=int(data["generation"]),
            event_id=str(cloud_event["id"]),
        )
    except (KeyError, TypeError, ValueError) as bad:
        raise PermanentError(f"not a Cloud Storage object event: {bad!r}") from None


def event_time(cloud_event) -> datetime:
    """The time the event was published (so a retried event still means the same day)."""
    try:
        value = cloud_event["time"]
    except KeyError:
        value = None
    if not value:
        return datetime.now(timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def run_request(cloud_event, min_data_age_hours: float = 2.0) -> HourRange:
    """The hour range a `daily-runs` message asks for.

    The message data is JSON: `{}` (the UTC day before the message was published),
    `{"hour": "latest"}` (the newest upload hour Amplitude had complete when the message was
    published: what the hourly schedule sends), `{"date": "YYYY-MM-DD"}`, or
    `{"start": "YYYYMMDDTHH", "end": "YYYYMMDDTHH"}`.
    """
    message = (cloud_event.data or {}).get("message", {})
    try:
        raw = base64.b64decode(message.get("data") or b"")
        body = json.loads(raw) if raw.strip() else {}
        return parse_run_request(body, event_time(cloud_event), min_data_age_hours)
    except (binascii.Error, UnicodeDecodeError, KeyError, ValueError, TypeError) as bad:
        raise PermanentError(f"daily-runs message is not a valid run request: {bad}") from None


def scan_request(cloud_event, min_data_age_hours: float, lookback_hours: int) -> HourRange:
    """The upload hours a `daily-runs` message asks to look for in the bucket Amplitude's own
    export writes to: a scheduled message (`{}` or `{"hour": "latest"}`) looks back
    `lookback_hours` from the newest hour Amplitude has complete (so hours it sent late, or sent
    again, are found); a date or a range (a backfill) is looked at as given."""
    message = (cloud_event.data or {}).get("message", {})
    try:
        raw = base64.b64decode(message.get("data") or b"")
        body = json.loads(raw) if raw.strip() else {}
        if isinstance(body, dict) and (not body or body == {"hour": "latest"}):
            newest = latest_complete_hour(event_time(cloud_event), min_data_age_hours)
            return HourRange(newest - (lookback_hours - 1) * timedelta(hours=1), newest)
        return parse_run_request(body, event_time(cloud_event), min_data_age_hours)
    except (binascii.Error, UnicodeDecodeError, KeyError, ValueError, TypeError) as bad:
        raise PermanentError(f"daily-runs message is not a valid run request: {bad}") from None


def run_project(cloud_event) -> str | None:
    """The Amplitude project a `daily-runs` message asks for (`"project": "<id>"`, what
    `ampbq backfill --amplitude-project` sends), or None: every project of the deployment."""
    try:
        body = json.loads(base64.b64decode((cloud_event.data or {}).get("message", {}).get("data") or b"") or b"{}")
    except (binascii.Error, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return None
    project = body.get("project") if isinstance(body, dict) else None
    return str(project) if project is not None else None


def run_id(cloud_event) -> str:
    """The id of a daily-runs event, the same on every retry of it ("" when it has none)."""
    try:
        return str(cloud_event["id"] or "")
    except (KeyError, TypeError):
        return ""


def parse_run_request(body: dict, published: datetime, min_data_age_hours: float = 2.0) -> HourRange:
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    if "hour" in body:
        if body["hour"] != "latest":
            raise ValueError(f'"hour" must be "latest", not {body["hour"]!r}')
        hour = latest_complete_hour(published, min_data_age_hours)
        return HourRange(hour, hour)
    if "start" in body or "end" in body:
        return HourRange.parse(body["start"], body["end"])
    if body.get("date"):
        return HourRange.day(date.fromisoformat(body["date"]))
    return HourRange.day((utc_hour(published) - timedelta(days=1)).date())


def asks_to_forget(cloud_event) -> bool:
    """Whether a `daily-runs` message is a deletions check (`{"forget": ...}`), not an export."""
    try:
        body = json.loads(base64.b64decode((cloud_event.data or {}).get("message", {}).get("data") or b"") or b"{}")
    except (binascii.Error, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return False
    return isinstance(body, dict) and "forget" in body


def forget_request(cloud_event, today: date | None = None) -> tuple[date, date] | None:
    """The deletion-job days a `daily-runs` message asks to apply, or None when it asks for an
    export: `{"forget": "recent"}` (the last `deletions.RECENT_DAYS` days up to the day it was
    published: what the deletions schedule sends) or
    `{"forget": {"start_day": "YYYY-MM-DD", "end_day": "YYYY-MM-DD"}}`."""
    from .deletions import recent_days

    message = (cloud_event.data or {}).get("message", {})
    try:
        raw = base64.b64decode(message.get("data") or b"")
        body = json.loads(raw) if raw.strip() else {}
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None  # run_request says what is wrong with it
    if not isinstance(body, dict) or "forget" not in body:
        return None
    wanted = body["forget"]
    if wanted == "recent":
        return recent_days(today or event_time(cloud_event).date())
    try:
        return date.fromisoformat(wanted["start_day"]), date.fromisoformat(wanted["end_day"])
    except (KeyError, TypeError, ValueError) as bad:
        raise PermanentError(f'daily-runs message is not a valid forget request (want "recent" or '
                             f'{{"start_day": ..., "end_day": ...}}): {bad!r}') from None
