"""What the three Cloud Function entry points call: decode the event, run one step, and map its
outcome to the platform's retry policy (raise = retry, return = ack)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable

import requests

from . import bigquery as bq_adapter
from . import assemble, events, export_step, forgetting, gcs, load_step, logs, monitoring, naming, transform_step
from .config import Config
from .errors import Ignored, PermanentError, TransientError

log = logging.getLogger("ampbq.entry")


@lru_cache(maxsize=4)
def _clients(config: Config):
    """One set of clients per warm instance (creating them costs more than most events)."""
    storage_client = gcs.client(config.project)
    return storage_client.bucket(config.bucket), bq_adapter.client(config), requests.Session()


def _run(step: str, cloud_event, work: Callable[[], object]) -> object:
    """Run `work()` as one invocation: its context (step, event id, trace; then what `work` binds:
    object, generation, date...) is on every line logged meanwhile."""
    started, cpu_started = time.monotonic(), time.thread_time()
    with logs.invocation(step=step, **_event_fields(cloud_event)):
        def duration() -> dict:
            # cpu_s: this invocation's own CPU (its thread's; an instance serves several at once).
            return {"duration_s": round(time.monotonic() - started, 3), "cpu_s": round(time.thread_time() - cpu_started, 3)}

        try:
            with _classified():
                result = work()
        except Ignored as why:
            log.info(f"ignored: {why}", extra={"fields": duration()})
            return None
        except PermanentError as why:
            # Acked on purpose: retrying cannot fix it, and one bad input must not spin for 24 hours.
            log.error(f"{step} failed permanently: {why}", extra={"fields": duration()})
            _record_dead_letter(step, why)
            return None
        except TransientError as why:
            log.warning(f"{step} failed, will be retried: {why}", extra={"fields": duration()})
            raise
        except Exception:
            log.exception(f"{step} failed unexpectedly, will be retried", extra={"fields": duration()})
            raise
        log.info(f"{step} done", extra={"fields": duration() | _summary(result)})
        return result


@contextlib.contextmanager
def _classified():
    """A Cloud Storage or BigQuery error the step did not handle, mapped by the adapter of the
    library that raised it (gcs.classify, bigquery.classify) into the taxonomy of ampbq.errors."""
    try:
        yield
    except Exception as error:
        for adapter in (gcs, bq_adapter):
            if adapter.owns(error):
                raise adapter.classify(error) from error
        raise


def _event_fields(cloud_event) -> dict:
    """The event's id, and the trace Eventarc sets in the W3C `traceparent` extension."""
    project = os.environ.get("AMPBQ_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    try:
        event_id, traceparent = cloud_event["id"], cloud_event.get("traceparent")
    except (AttributeError, KeyError, TypeError):  # not a CloudEvent (a test double): nothing to link
        return {}
    return ({"event_id": str(event_id)} if event_id else {}) | logs.trace_fields(traceparent, project)


def _record_dead_letter(step: str, error: Exception) -> None:
    """Keep a record of what was acked without being done, for `ampbq status` and a human."""
    context = logs.context()
    subject = f"{context['object']}#{context['generation']}" if "object" in context else context.get("range", "unknown")
    record = {"step": step, "error": str(error), "at": datetime.now(timezone.utc).isoformat(), **context}
    try:
        bucket = _clients(Config.from_env())[0]
        bucket.blob(naming.dead_letter_name(step, subject)).upload_from_string(json.dumps(record, default=str), "application/json")
    except Exception:  # the ERROR line above is the record of last resort
        log.exception("could not write the dead-letter record")


def _summary(result: object) -> dict:
    if isinstance(result, export_step.ExportResult):
        return {"range": str(result.requested), "hours": len(result.hours), "archives": result.archives,
                "refused": len(result.refused), "resumed": result.resumed}
    if isinstance(result, load_step.LoadOutcome):
        counts = {"events": result.events, "rows": result.rows, "rejected": result.rejected, "loaded": result.loaded}
        monitoring.log_hour_loaded("load", result.hour, generation=result.generation, **counts,
                              **({"project": result.project} if result.project else {}))
        return counts
    if result is not None and hasattr(result, "log_fields"):  # transform's counts (per part too), forget's
        return result.log_fields()
    return {}


def _object(cloud_event) -> events.StorageObject:
    obj = events.storage_object(cloud_event)
    logs.bind(object=obj.name, generation=obj.generation, event_id=obj.event_id)
    unit = naming.parse_unit_task(obj.name) or naming.parse_unit_import(obj.name)
    scoped = naming.scoped_hour_object(obj.name) or naming.scoped_import_object(obj.name) or (
        (unit.project, unit.hour) if unit else None)
    if unit is not None:
        logs.bind(unit=unit.label)
    if scoped is not None:  # every line of an hour's work carries its date and hour (and labels)
        project, hour = scoped
        logs.bind(date=f"{hour:%Y-%m-%d}", hour=f"{hour:%H}", **({"project": project} if project else {}))
    return obj


def export(cloud_event) -> None:
    logs.setup()
    if events.asks_to_forget(cloud_event):
        return forget(cloud_event)  # a deletions check: {"forget": ...} on the same topic

    def work():
        config = Config.from_env()
        bucket, _, session = _clients(config)
        if config.source == "native_export":  # Amplitude writes the parts itself (docs/native-export.md)
            hours = events.scan_request(cloud_event, config.min_data_age_hours, config.native_lookback_hours)
            logs.bind(range=str(hours), date=f"{hours.start:%Y-%m-%d}", source=config.source)
            return assemble.scan_range(hours, config, bucket, bucket.client.bucket(config.native_bucket),
                                       datetime.now(timezone.utc), run=events.run_id(cloud_event))
        hours = events.run_request(cloud_event, config.min_data_age_hours)
        logs.bind(range=str(hours), date=f"{hours.start:%Y-%m-%d}")
        projects = config.select(events.run_project(cloud_event))
        if len(config.projects) > 1:
            return _export_projects(hours, config, projects, bucket, session, events.run_id(cloud_event))
        # The event's id stays the same on the platform's retries: a retry resumes the same run.
        return export_step.export_range(hours, config, bucket, session, datetime.now(timezone.utc), run=events.run_id(cloud_event))

    _run("export", cloud_event, work)


def _export_projects(hours, config: Config, projects, bucket, session, run: str) -> export_step.ExportResult:
    """Every project's export of `hours`, each with its own keys and region. A project that fails
    permanently gets its own dead letter (`deadletter/export/<project>/…`, the default project's
    where it always was) and does not stop the others; a transient failure is raised once the
    others are done, and the platform's retry (the same run id) resumes the finished ones from
    their manifests without asking Amplitude again."""
    results, transient = [], None
    for project in projects:
        try:
            results.append(export_step.export_range(hours, config, bucket, session, datetime.now(timezone.utc), run=run,
                                              project=project))
        except PermanentError as why:
            log.error(f"export of Amplitude project {project.label} failed permanently: {why}",
                      extra={"fields": {"project": project.label}})
            subject = naming.export_dead_letter_subject(hours, project.segment)
            record = {"step": "export", "error": str(why), "at": datetime.now(timezone.utc).isoformat(),
                      **logs.context(), "project": project.label}
            bucket.blob(naming.dead_letter_name("export", subject)).upload_from_string(
                json.dumps(record, default=str), "application/json")
        except TransientError as why:
            log.warning(f"export of Amplitude project {project.label} failed, will be retried: {why}",
                        extra={"fields": {"project": project.label}})
            transient = transient or why
    if transient is not None:
        raise transient
    return export_step.ExportResult(hours, archives=[a for r in results for a in r.archives],
                              hours={k: v for r in results for k, v in r.hours.items()},
                              refused=[x for r in results for x in r.refused], resumed=[x for r in results for x in r.resumed])


def forget(cloud_event) -> None:
    """Apply the user-privacy deletions Amplitude reports done (ampbq.forgetting)."""

    def work():
        config = Config.from_env()
        bucket, bq, session = _clients(config)
        start_day, end_day = events.forget_request(cloud_event)
        logs.bind(range=f"{start_day}..{end_day}")
        run = forgetting.forget(config, bucket, bq, session, start_day, end_day)
        if len(config.projects) == 1 and run.failed:
            raise run.failed[0].error  # the one project: _run logs it, and dead-letters a permanent error
        return _forget_outcomes(run, bucket, f"{start_day}..{end_day}")

    _run("forget", cloud_event, work)


def _forget_outcomes(run: forgetting.ForgetRun, bucket, span: str) -> forgetting.ForgetRun:
    """Several projects: each project that failed permanently gets an ERROR line and a dead letter
    of its own (`deadletter/forget/<project>/<days>.json`, the default project's
    `deadletter/forget/<days>.json`); the others' deletions are applied all the same. A transient
    failure is raised once every project had its turn, for the platform's retry (the projects done
    already have nothing left to apply)."""
    transient = None
    for outcome in run.failed:
        project, why = outcome.project, outcome.error
        if isinstance(why, TransientError):
            transient = transient or why
            continue
        log.error(f"forget of Amplitude project {project.label} failed permanently: {why}",
                  extra={"fields": {"project": project.label}})
        subject = f"{project.segment}/{span}" if project.segment else span
        record = {"step": "forget", "error": str(why), "at": datetime.now(timezone.utc).isoformat(), **logs.context(),
                  "project": project.label}
        bucket.blob(naming.dead_letter_name("forget", subject)).upload_from_string(json.dumps(record, default=str),
                                                                                  "application/json")
    if transient is not None:
        raise transient
    return run


def transform(cloud_event) -> None:
    logs.setup()

    def work():
        obj = _object(cloud_event)
        config = Config.from_env()
        bucket, _, _ = _clients(config)
        return transform_step.transform_object(obj, bucket, config)

    _run("transform", cloud_event, work)


def load(cloud_event) -> None:
    logs.setup()

    def work():
        obj = _object(cloud_event)
        config = Config.from_env()
        bucket, bq, _ = _clients(config)
        return load_step.load_hour(obj, config, bucket, bq)

    _run("load", cloud_event, work)
