"""Configuration, read from the environment once at the edge and passed down as a value."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

from .errors import PermanentError

SCHEDULES = ("daily", "hourly")
# Where the export's data comes from: the Export API, or the bucket Amplitude's own cloud-storage
# export writes to (docs/native-export.md).
SOURCES = ("export_api", "native_export")
AMPLITUDE_URLS = {"US": "https://amplitude.com", "EU": "https://analytics.eu.amplitude.com"}


@dataclass(frozen=True)
class AmplitudeProject:
    """One Amplitude project the deployment exports (docs/projects.md).

    `segment` is what keeps its objects and ledger rows apart: "" for the default project, whose
    names carry no segment (as before there were projects), else its id. `app` is its Amplitude
    project id, the `app` column of its rows: "" only in the one-project form, where the id is not
    configured and an upload hour's rows are all the one project's."""

    segment: str = ""
    app: str = ""
    url: str = AMPLITUDE_URLS["US"]
    api_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        """How a person reads it: its id, or "default" in the one-project form."""
        return self.app or "default"


_PROJECT_ENTRY = re.compile(r"^(\d+)(?::(US|EU))?$")


@dataclass(frozen=True)
class Config:
    bucket: str
    project: str
    dataset: str = "ops"
    table: str = "all_user_events"
    bq_location: str = "US"
    amplitude_url: str = AMPLITUDE_URLS["US"]
    amplitude_api_key: str = field(default="", repr=False)
    amplitude_secret_key: str = field(default="", repr=False)
    bigquery_emulator_host: str = ""
    # Amplitude says data is exportable about 2 hours after the hour ends.
    min_data_age_hours: float = 2.0
    # When the deployment's scheduler starts runs (Terraform's `schedule`): "daily" or "hourly".
    schedule: str = "daily"
    # Export API calls: attempts per range and the backoff multiplier (seconds) between them.
    http_attempts: int = 5
    http_backoff_seconds: float = 2.0
    # Seconds an export invocation works before it stops between two parts and leaves the rest to
    # the platform's retry, well inside the function's 540 s timeout (export_step.ExportRun).
    export_budget_seconds: float = 300.0
    # Seconds after which a load's commit lease that was not renewed is taken to belong to a holder
    # that died (lease.Lease); it is renewed before each commit.
    load_lease_seconds: float = 60.0
    # Compressed bytes of an hour object one transform invocation takes on: a bigger hour fans out
    # into units of its parts, each transformed by its own invocation, and is loaded once all
    # are (docs/transform.md, "Fan-out"). 256 MiB of gzip is about 2.5 GB of NDJSON, some 30 s.
    transform_unit_bytes: int = 256 << 20
    # "export_api" or "native_export" (Terraform's `amplitude_source`).
    source: str = "export_api"
    # native_export: the bucket Amplitude writes to, the folder set in Amplitude ("" for the
    # root), how long no new part of an hour must arrive before it is assembled, and how many
    # hours back a scheduled run looks for hours Amplitude sent (again).
    native_bucket: str = ""
    native_prefix: str = ""
    native_quiet_seconds: float = 1800.0
    native_lookback_hours: int = 72
    # The Amplitude projects exported (AMPBQ_AMPLITUDE_PROJECTS); empty: the one-project form, one
    # project with the url and keys above and no id.
    amplitude_projects: tuple[AmplitudeProject, ...] = ()
    # What the key variables' names end with for the project the keys above are of (for_project).
    key_suffix: str = ""

    @property
    def projects(self) -> tuple[AmplitudeProject, ...]:
        """Every project the deployment exports, the default one (if any) first."""
        if self.amplitude_projects:
            return self.amplitude_projects
        return (AmplitudeProject("", "", self.amplitude_url, self.amplitude_api_key, self.amplitude_secret_key),)

    def amplitude_project(self, segment: str) -> AmplitudeProject:
        """The project whose objects carry `segment` ("" the default one)."""
        for project in self.projects:
            if project.segment == segment:
                return project
        known = ", ".join(p.app or "default" for p in self.projects)
        raise PermanentError(f"Amplitude project {segment or 'default'!r} is not configured (AMPBQ_AMPLITUDE_PROJECTS: {known})")

    def select(self, wanted: str | None) -> tuple[AmplitudeProject, ...]:
        """The projects `--project` names (an id, or "default"); None: all of them."""
        if wanted is None:
            return self.projects
        for project in self.projects:
            if wanted in (project.app, project.segment) or (wanted == "default" and project.segment == ""):
                return (project,)
        known = ", ".join(p.label for p in self.projects)
        raise PermanentError(f"no Amplitude project {wanted!r} in this deployment (it has: {known})")

    def app_of(self, segment: str) -> str:
        """The `app` id of the project with `segment` ("" in the one-project form)."""
        return self.amplitude_project(segment).app

    def for_project(self, project: AmplitudeProject) -> "Config":
        """This configuration with `project`'s Export API url and keys (what amplitude.py reads)."""
        return replace(self, amplitude_url=project.url, amplitude_api_key=project.api_key,
                       amplitude_secret_key=project.secret_key,
                       key_suffix=f"_{project.app}" if project.segment else "")

    def unset_amplitude_keys(self) -> list[str]:
        """The Export API credentials' variables that are empty: an export cannot run without both."""
        return [name + self.key_suffix for name, value in (("AMPLITUDE_API_KEY", self.amplitude_api_key),
                                         ("AMPLITUDE_SECRET_KEY", self.amplitude_secret_key)) if not value]

    def require_amplitude_keys(self) -> None:
        """Refuse to export with a key unset (Amplitude would answer 401, read as refused credentials)."""
        unset = self.unset_amplitude_keys()
        if unset:
            verb = "is" if len(unset) == 1 else "are"
            raise PermanentError(f"{' and '.join(unset)} {verb} not set; the Export API needs the Amplitude "
                                 "project's API key and secret key")

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def ledger_table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}_loads"

    @property
    def forgets_table_id(self) -> str:
        """The ledger of applied user-privacy deletions (ampbq.forgetting)."""
        return f"{self.project}.{self.dataset}.{self.table}_forgets"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        env = os.environ if env is None else env
        bucket = env.get("AMPBQ_BUCKET", "")
        project = env.get("AMPBQ_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT", "")
        if not bucket or not project:
            raise PermanentError("AMPBQ_BUCKET and AMPBQ_PROJECT (or GOOGLE_CLOUD_PROJECT) must be set")
        region = env.get("AMPLITUDE_REGION", "US").upper()
        if region not in AMPLITUDE_URLS:
            raise PermanentError(f"AMPLITUDE_REGION must be US or EU, not {region!r}")
        return cls(
            bucket=bucket,
            project=project,
            dataset=env.get("AMPBQ_DATASET", "ops"),
            table=env.get("AMPBQ_TABLE", "all_user_events"),
            bq_location=env.get("AMPBQ_BQ_LOCATION", "US"),
            amplitude_url=(env.get("AMPLITUDE_URL") or AMPLITUDE_URLS[region]).rstrip("/"),
            amplitude_api_key=env.get("AMPLITUDE_API_KEY", ""),
            amplitude_secret_key=env.get("AMPLITUDE_SECRET_KEY", ""),
            bigquery_emulator_host=env.get("BIGQUERY_EMULATOR_HOST", ""),
            min_data_age_hours=_min_age(env),
            schedule=_schedule(env),
            http_attempts=_number(env, "AMPBQ_HTTP_ATTEMPTS", "5", int),
            http_backoff_seconds=_number(env, "AMPBQ_HTTP_BACKOFF_SECONDS", "2", float),
            export_budget_seconds=_number(env, "AMPBQ_EXPORT_BUDGET_SECONDS", "300", float),
            load_lease_seconds=_number(env, "AMPBQ_LOAD_LEASE_SECONDS", "60", float),
            transform_unit_bytes=_number(env, "AMPBQ_TRANSFORM_UNIT_BYTES", str(256 << 20), int),
            **_native(env),
            amplitude_projects=_projects(env, region, env.get("AMPBQ_SOURCE") or "export_api"),
        )


def _projects(env: Mapping[str, str], default_region: str, source: str = "export_api") -> tuple[AmplitudeProject, ...]:
    """AMPBQ_AMPLITUDE_PROJECTS: `id[:REGION],…` (Terraform's amplitude_projects). Each project's
    keys are AMPLITUDE_API_KEY_<id> and AMPLITUDE_SECRET_KEY_<id>; the default project's
    (AMPBQ_DEFAULT_PROJECT, which keeps the unsegmented names) may be AMPLITUDE_API_KEY and
    AMPLITUDE_SECRET_KEY instead. AMPLITUDE_URL, when set, is every project's base URL."""
    listed = [item.strip() for item in env.get("AMPBQ_AMPLITUDE_PROJECTS", "").split(",") if item.strip()]
    default = env.get("AMPBQ_DEFAULT_PROJECT", "").strip()
    if not listed:
        if default:
            raise PermanentError("AMPBQ_DEFAULT_PROJECT is set but AMPBQ_AMPLITUDE_PROJECTS is empty")
        return ()
    if source != "export_api":
        raise PermanentError("AMPBQ_AMPLITUDE_PROJECTS takes the Export API (AMPBQ_SOURCE=export_api); "
                             "the native export takes one project")
    projects = []
    for item in listed:
        match = _PROJECT_ENTRY.match(item.upper())
        if not match:
            raise PermanentError(f"AMPBQ_AMPLITUDE_PROJECTS holds {item!r}; want an Amplitude project id, "
                                 "optionally with :US or :EU, e.g. 123456:EU")
        app, region = match.group(1), match.group(2) or default_region
        if any(p.app == app for p in projects):
            raise PermanentError(f"AMPBQ_AMPLITUDE_PROJECTS names project {app} twice")
        is_default = app == default
        projects.append(AmplitudeProject(
            segment="" if is_default else app, app=app,
            url=(env.get("AMPLITUDE_URL") or AMPLITUDE_URLS[region]).rstrip("/"),
            api_key=env.get(f"AMPLITUDE_API_KEY_{app}") or (env.get("AMPLITUDE_API_KEY", "") if is_default else ""),
            secret_key=env.get(f"AMPLITUDE_SECRET_KEY_{app}") or (env.get("AMPLITUDE_SECRET_KEY", "") if is_default else "")))
    if default and not any(p.app == default for p in projects):
        raise PermanentError(f"AMPBQ_DEFAULT_PROJECT {default} is not in AMPBQ_AMPLITUDE_PROJECTS")
    return tuple(sorted(projects, key=lambda p: (p.segment != "", p.segment)))


def _native(env: Mapping[str, str]) -> dict:
    source = env.get("AMPBQ_SOURCE") or "export_api"
    if source not in SOURCES:
        raise PermanentError(f"AMPBQ_SOURCE must be export_api or native_export, not {source!r}")
    bucket = env.get("AMPBQ_NATIVE_BUCKET", "")
    if source == "native_export" and not bucket:
        raise PermanentError("AMPBQ_SOURCE is native_export but AMPBQ_NATIVE_BUCKET (the bucket Amplitude exports to) is not set")
    quiet = _number(env, "AMPBQ_NATIVE_QUIET_SECONDS", "1800", float)
    lookback = _number(env, "AMPBQ_NATIVE_LOOKBACK_HOURS", "72", int)
    if not 0 <= quiet < float("inf") or lookback < 1:
        raise PermanentError("AMPBQ_NATIVE_QUIET_SECONDS must be 0 or more and AMPBQ_NATIVE_LOOKBACK_HOURS at least 1")
    return {"source": source, "native_bucket": bucket, "native_prefix": env.get("AMPBQ_NATIVE_PREFIX", ""),
            "native_quiet_seconds": quiet, "native_lookback_hours": lookback}


def _min_age(env: Mapping[str, str]) -> float:
    hours = _number(env, "AMPBQ_MIN_DATA_AGE_HOURS", "2", float)
    if not 0 <= hours < float("inf"):  # NaN fails this too
        raise PermanentError(f"AMPBQ_MIN_DATA_AGE_HOURS must be a number of hours, 0 or more, not {env.get('AMPBQ_MIN_DATA_AGE_HOURS')!r}")
    return hours


def _schedule(env: Mapping[str, str]) -> str:
    schedule = env.get("AMPBQ_SCHEDULE") or "daily"
    if schedule not in SCHEDULES:
        raise PermanentError(f"AMPBQ_SCHEDULE must be daily or hourly, not {schedule!r}")
    return schedule


def _number(env: Mapping[str, str], name: str, default: str, kind: type):
    text = env.get(name) or default
    try:
        return kind(text)
    except ValueError:
        raise PermanentError(f"{name} must be {'a whole number' if kind is int else 'a number'}, not {text!r}") from None
