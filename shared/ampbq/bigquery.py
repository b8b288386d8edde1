"""BigQuery adapter: client, tables, and jobs with deterministic ids.

A load job's id is derived from the hour and the object generation, so a redelivered event asks
BigQuery for a job that already exists (409) instead of running a second one; a commit's id from
its batch's token (one transaction commits many hours). A job id that failed can never be
reused, so a retry after a failure gets the next attempt suffix. A transaction BigQuery cancelled
for a concurrent update is transient: the lease holder plans its batch again.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime
from typing import Callable

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from . import load, schema, views
from .config import Config
from .errors import PermanentError, TransientError

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20


def client(config: Config) -> bigquery.Client:
    if config.bigquery_emulator_host:
        return bigquery.Client(
            project=config.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=config.bigquery_emulator_host),
        )
    return bigquery.Client(project=config.project, location=config.bq_location)


def schema_fields(path=schema.EVENTS_SCHEMA_FILE) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField.from_api_repr(field) for field in schema.fields(path)]


_READY: set[tuple[str, str]] = set()  # (BigQuery endpoint, table id): a test process may talk to two stacks


def ensure_tables(bq: bigquery.Client, config: Config) -> None:
    """Create the dataset, the events table, the load ledger, the ledger of applied deletions and the views if missing (Terraform does in the cloud).

    Existence is checked with reads first: the load function's service account may read and
    write tables but not create datasets, and BigQuery answers a create without that right with
    403 even when the dataset exists. Checked once per warm instance.
    """
    if (config.bigquery_emulator_host, config.table_id) in _READY:
        return
    try:
        bq.get_table(config.table_id)
        bq.get_table(config.ledger_table_id)
        bq.get_table(config.forgets_table_id)
        bq.get_table(load.commit_lock_id(config.table_id))
        for view_id in views.all_view_sql(config.table_id):
            bq.get_table(view_id)
    except gexc.NotFound:
        _create_tables(bq, config)
    _add_ledger_columns(bq, config)
    query_rows(bq, load.commit_lock_seed_sql(config.table_id))
    _READY.add((config.bigquery_emulator_host, config.table_id))


def _add_ledger_columns(bq: bigquery.Client, config: Config) -> None:
    """Give a ledger made before a column of its schema existed (`project`) that column: NULLABLE
    columns are added in place, and the rows already there read NULL (the default project)."""
    ledger = bq.get_table(config.ledger_table_id)
    have = {f.name for f in ledger.schema}
    missing = [f for f in schema_fields(schema.LEDGER_SCHEMA_FILE) if f.name not in have and f.mode != "REQUIRED"]
    if missing:
        # DDL rather than a schema patch: the local stand-in changes its storage only for DDL.
        for column in missing:
            query_rows(bq, load.add_column_sql(config.ledger_table_id, column.name, column.field_type))
        log.warning("ledger columns added", extra={"fields": {"table": config.ledger_table_id,
                                                              "columns": [f.name for f in missing]}})


def _create_tables(bq: bigquery.Client, config: Config) -> None:
    dataset = bigquery.Dataset(f"{config.project}.{config.dataset}")
    dataset.location = config.bq_location
    bq.create_dataset(dataset, exists_ok=True)
    events = bigquery.Table(config.table_id, schema=schema_fields())
    events.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=schema.PARTITION_FIELD)
    events.clustering_fields = list(schema.CLUSTERING_FIELDS)
    bq.create_table(events, exists_ok=True)
    bq.create_table(bigquery.Table(config.ledger_table_id, schema=schema_fields(schema.LEDGER_SCHEMA_FILE)), exists_ok=True)
    bq.create_table(bigquery.Table(config.forgets_table_id, schema=schema_fields(schema.FORGETS_SCHEMA_FILE)), exists_ok=True)
    lock = bigquery.Table(load.commit_lock_id(config.table_id), schema=[
        bigquery.SchemaField("holder", "STRING"), bigquery.SchemaField("locked_at", "TIMESTAMP")])
    bq.create_table(lock, exists_ok=True)
    for view_id, sql in views.all_view_sql(config.table_id).items():  # Terraform makes the same views from the same files
        view = bigquery.Table(view_id)
        view.view_query = sql
        bq.create_table(view, exists_ok=True)


# By reason (the `reason` of the error's first entry, https://cloud.google.com/bigquery/docs/error-messages),
# then by status code. 403 is both "not allowed" (accessDenied, billingNotEnabled) and "not now"
# (rateLimitExceeded, quotaExceeded): the reason tells which.
_TRANSIENT_REASONS = frozenset({"backendError", "internalError", "jobBackendError", "jobInternalError",
                                "rateLimitExceeded", "jobRateLimitExceeded", "quotaExceeded"})
_TERMINAL_REASONS = frozenset({"accessDenied", "billingNotEnabled", "invalid", "invalidQuery", "notFound",
                               "resourcesExceeded", "responseTooLarge"})
_TERMINAL_CODES = frozenset({400, 403, 404})
# BigQuery cancels a transaction that conflicts with another with a 400 (reason invalidQuery) and
# no reason of its own; its documented message is all that tells it from a query that can never run.
_CANCELLED_TRANSACTION = ("transaction is aborted due to concurrent update", "could not serialize access")


def classify(error: Exception) -> Exception:
    """Map a BigQuery error to the package's taxonomy, in this one place: by reason, else by status
    (400, 403 and 404 permanent; 429, 5xx and the rest transient). Anything that is not a Google
    API error is returned as it is."""
    if not isinstance(error, gexc.GoogleAPICallError):
        return error
    reason = reason_of(error)
    if error.code == 400 and _cancelled_transaction(error):
        return TransientError(f"BigQuery transaction conflict: {_one_line(error)}")
    if reason in _TRANSIENT_REASONS:
        return TransientError(f"BigQuery: {_one_line(error)}")
    if reason in _TERMINAL_REASONS or error.code in _TERMINAL_CODES:
        return PermanentError(f"BigQuery: {_one_line(error)}")
    return TransientError(f"BigQuery: {_one_line(error)}")


def reason_of(error: gexc.GoogleAPICallError) -> str:
    """The reason BigQuery gave ("accessDenied", "rateLimitExceeded", ...; "" when none)."""
    for detail in error.errors or ():
        if isinstance(detail, dict) and detail.get("reason"):
            return str(detail["reason"])
    return error.reason or ""


def _cancelled_transaction(error: gexc.GoogleAPICallError) -> bool:
    texts = [error.message or ""] + [str(d.get("message", "")) for d in error.errors or () if isinstance(d, dict)]
    return any(marker in text.lower() for text in texts for marker in _CANCELLED_TRANSACTION)


def _one_line(error: gexc.GoogleAPICallError) -> str:
    return " ".join(str(error).split())


def run_job_once(bq: bigquery.Client, job_id: Callable[[int], str], submit: Callable[[str], bigquery.job._AsyncJob]):
    """Run the job under its deterministic id, reusing a finished run of the same id.

    Raises the classified error of the job when it fails.
    """
    for attempt in range(MAX_ATTEMPTS):
        this_id = job_id(attempt)
        try:
            job = submit(this_id)
        except gexc.Conflict:
            job = bq.get_job(this_id)
            log.info("job already exists", extra={"fields": {"job_id": this_id, "state": job.state}})
            if job.state == "DONE" and job.error_result:
                continue  # a failed id can never run again: take the next attempt's id
        try:
            job.result()
        except gexc.GoogleAPICallError as error:
            raise classify(error) from error
        return job
    raise PermanentError(f"job {job_id(0)} failed {MAX_ATTEMPTS} times")


def run_script(bq: bigquery.Client, sql: str, labels: dict[str, str], job_id: Callable[[int], str]) -> bigquery.QueryJob:
    """Run a query or a script (a transaction) with `labels`, once (run_job_once, with
    `job_id(attempt)`). The client does not retry the job itself: a failed id is never run again."""
    job_config = bigquery.QueryJobConfig(labels=labels)
    return run_job_once(bq, job_id, lambda name: bq.query(sql, job_config=job_config, job_id=name, job_retry=None))


def table_exists(bq: bigquery.Client, table_id: str) -> bool:
    try:
        bq.get_table(table_id)
        return True
    except gexc.NotFound:
        return False


def drop_table(bq: bigquery.Client, table_id: str) -> None:
    """Delete the table; one already gone is no error."""
    bq.delete_table(table_id, not_found_ok=True)


def create_stage(bq: bigquery.Client, table_id: str, expires: datetime) -> None:
    """A staging table of the events schema, dropped by BigQuery at `expires` if no one does."""
    stage = bigquery.Table(table_id, schema=schema_fields())
    stage.expires = expires
    bq.create_table(stage, exists_ok=True)


def load_ndjson(bq: bigquery.Client, uris: list[str], table_id: str, labels: dict[str, str],
                job_id: Callable[[int], str]) -> bigquery.LoadJob:
    """Replace `table_id`'s rows with the NDJSON objects at `uris`, in one load job run once
    (run_job_once, with `job_id(attempt)`)."""
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        schema=schema_fields(),
        labels=labels,
    )
    return run_job_once(bq, job_id, lambda name: bq.load_table_from_uri(uris, table_id, job_id=name, job_config=job_config))


def query_rows(bq: bigquery.Client, sql: str, params: list | None = None) -> list[dict]:
    config = bigquery.QueryJobConfig(query_parameters=params or [])
    try:
        return [dict(row) for row in bq.query(sql, job_config=config).result()]
    except gexc.GoogleAPICallError as error:
        raise classify(error) from error


def owns(error: BaseException) -> bool:
    """Whether `error` came out of the BigQuery client library (its frames are in the traceback),
    so that `classify` is the one to map it."""
    if not isinstance(error, gexc.GoogleAPICallError):
        return False
    return any(frame.f_globals.get("__name__", "").startswith("google.cloud.bigquery")
               for frame, _ in traceback.walk_tb(error.__traceback__))
