"""The SQL that changes the table and its ledger, and the load step's plan, built as plain values
and strings (pure, tested without a server): the load's replace of an hour, and forget's delete
of deleted users' rows (at the end).

An upload hour is replaced atomically, and the commits of many hours are grouped:

1. Each load invocation loads its import object into its own staging table (load jobs are free
   and never conflict), then leaves a *waiting marker* in the bucket describing what it staged.
2. BigQuery cancels a transaction that mutates a table while another one does, so the commits of
   one table are serialised through a *lease* object in the bucket (created only if absent; one
   older than its time to live is taken to belong to a crashed holder and may be broken).
3. The lease holder commits every hour that is staged and waiting, up to `MAX_BATCH_HOURS`, in one
   transaction with a fixed number of statements (not a statement per hour: in BigQuery each
   statement of a script is a child job taking seconds). A day's 24 hours, or a backfill's 168
   published at once, need a handful of transactions; every waiter then finds its hour committed.

The transaction guards each hour with the ledger: an hour is replaced only if the ledger still
holds what the holder read when planning (so the delete's partition ranges are the right ones)
and the staged generation is newer than the loaded one, comparing the hour object's (source)
generation first and the import object's generation second. So out-of-order events, duplicate
deliveries, or a second holder after a broken lease can never bring older rows back.

Cost and limits: the delete of an hour's old rows is pruned to the day partitions the ledger says
they are in (their min/max `event_time`), and no statement modifies more than
`MAX_PARTITIONS_PER_STATEMENT` day partitions: an hour (or batch) spanning more is split into date
ranges. The ledger records, per hour, the min/max `event_time` and a fingerprint (count plus
BIT_XOR(FARM_FINGERPRINT(uuid))) of the rows loaded, and the batch's bytes billed when BigQuery
reports them. Values are inlined as literals because they come only from our own parsed names
and integers (and the emulator does not take parameters in scripts).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime

from . import schema

MAX_PARTITIONS_PER_STATEMENT = 4000  # BigQuery: partitions modified per job (each script statement is one)
MAX_BATCH_HOURS = 336  # two weeks of hours per transaction: a few statements, seconds in BigQuery
LEDGER_COLUMNS = ("upload_hour", "import_object", "import_generation", "source_object", "source_generation",
                  "events", "rows_written", "rejected", "loaded", "loaded_at", "min_event_time", "max_event_time",
                  "fingerprint", "commit_batch", "project")
LOAD_PREFIX = "load/"


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp_literal(hour: datetime) -> str:
    return f"TIMESTAMP '{hour:%Y-%m-%d %H:%M:%S}+00'"


def _ts(value: datetime) -> str:
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S.%f}+00'"


def _date(value: date) -> str:
    return f"DATE '{value:%Y-%m-%d}'"


@dataclass(frozen=True)
class HourLoad:
    """What is being loaded: the hour, its import object, and the counts transform recorded."""

    hour: datetime
    import_object: str
    import_generation: int
    source_object: str
    source_generation: int
    events: int
    rows: int
    rejected: int
    # The project (docs/projects.md): `project` is its segment, "" for the default project (its
    # ledger rows have project NULL); `app` its Amplitude id, the `app` of its rows, "" in the
    # one-project form (the hour's rows are all its own).
    project: str = ""
    app: str = ""

    @property
    def key(self) -> tuple[str, datetime]:
        """What is replaced exactly once: (project, upload hour)."""
        return self.project, self.hour

    def newer_than(self, source_generation: int, import_generation: int) -> bool:
        """Source (hour object) generation first, then import generation."""
        return (self.source_generation, self.import_generation) > (source_generation, import_generation)


@dataclass(frozen=True)
class Staged:
    """An hour loaded into its staging table and waiting for its commit (the waiting marker)."""

    load: HourLoad
    stage_id: str
    min_event_time: datetime | None  # None when every line was rejected: nothing to insert
    max_event_time: datetime | None
    partitions: int  # distinct day partitions of the staged rows

    def to_json(self) -> str:
        record = asdict(self)
        record["load"]["hour"] = self.load.hour.isoformat()
        for key in ("min_event_time", "max_event_time"):
            record[key] = record[key].isoformat() if record[key] else None
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Staged":
        record = json.loads(text)
        hour_load = HourLoad(**{**record["load"], "hour": datetime.fromisoformat(record["load"]["hour"])})
        bounds = [datetime.fromisoformat(record[k]) if record[k] else None for k in ("min_event_time", "max_event_time")]
        return cls(hour_load, record["stage_id"], bounds[0], bounds[1], int(record["partitions"]))


@dataclass(frozen=True)
class Loaded:
    """The ledger's entry for an hour, as the lease holder read it before planning."""

    import_generation: int
    source_generation: int
    min_event_time: datetime | None = None  # None: loaded before the ledger recorded ranges
    max_event_time: datetime | None = None


# ---------------------------------------------------------------- names in the bucket
def table_key(table_id: str) -> str:
    """`dataset.table`: one lease and one waiting list per table."""
    return ".".join(table_id.split(".")[-2:])


def lease_name(table_id: str) -> str:
    return f"{LOAD_PREFIX}lease/{table_key(table_id)}.json"


def waiting_prefix(table_id: str) -> str:
    return f"{LOAD_PREFIX}waiting/{table_key(table_id)}/"


def waiting_name(table_id: str, hour: datetime, import_generation: int, project: str = "") -> str:
    segment = f"p{project}-" if project else ""
    return f"{waiting_prefix(table_id)}{segment}{hour:%Y%m%d%H}-{import_generation}.json"


# ---------------------------------------------------------------- one project's rows of an hour
def key_literal(h: HourLoad) -> str:
    """The (project, hour) key as the transaction's SQL compares it."""
    return literal(f"{h.project}|{h.hour:%Y%m%d%H}")


def scope_term(h: HourLoad) -> str:
    """The rows of the table that are this project's rows of this upload hour."""
    term = f"_upload_hour = {timestamp_literal(h.hour)}"
    return term + (f" AND app = {int(h.app)}" if h.app else "")


def scope_key_sql(batch: list["Staged"]) -> str:
    """A row's (project, hour) key among the batch's, NULL for a row of none of them. A project
    without an id (the one-project form) takes every row of its hour, so it is tried last."""
    ordered = sorted(batch, key=lambda s: not s.load.app)
    whens = " ".join(f"WHEN {scope_term(s.load)} THEN {key_literal(s.load)}" for s in ordered)
    return f"(CASE {whens} END)" if whens else "CAST(NULL AS STRING)"


LedgerKey = tuple[str, datetime]


# ---------------------------------------------------------------- planning
def pick_batch(waiting: list[Staged], ledger: dict[LedgerKey, Loaded], limit: int = MAX_BATCH_HOURS
               ) -> tuple[list[Staged], list[Staged]]:
    """(what to commit now: the newest staged generation per (project, hour), if newer than the
    ledger's, oldest hours first, at most `limit`; what is superseded and can be dropped)."""
    newest: dict[LedgerKey, Staged] = {}
    superseded = []
    for staged in waiting:
        other = newest.get(staged.load.key)
        if other is None or staged.load.newer_than(other.load.source_generation, other.load.import_generation):
            if other is not None:
                superseded.append(other)
            newest[staged.load.key] = staged
        else:
            superseded.append(staged)
    batch = []
    for key in sorted(newest, key=lambda k: (k[1], k[0])):
        staged, loaded = newest[key], ledger.get(key)
        if loaded is not None and not staged.load.newer_than(loaded.source_generation, loaded.import_generation):
            superseded.append(staged)
        else:
            batch.append(staged)
    return batch[:limit], superseded


def days_between(low: datetime, high: datetime) -> int:
    return (high.date() - low.date()).days + 1


def date_ranges(dates: list[date], limit: int = MAX_PARTITIONS_PER_STATEMENT) -> list[tuple[date, date]]:
    """Consecutive runs of at most `limit` of the sorted distinct `dates`, as (first, last)."""
    dates = sorted(set(dates))
    return [(dates[i], dates[min(i + limit, len(dates)) - 1]) for i in range(0, len(dates), limit)]


def old_rows_filter(batch: list[Staged], ledger: dict[LedgerKey, Loaded]) -> str:
    """Where the old rows of the batch's hours are: each hour pruned to the day partitions the ledger
    recorded for it (an entry without a range, from before ranges were recorded, is not pruned)."""
    terms = []
    for staged in batch:
        loaded = ledger.get(staged.load.key)
        hour = scope_term(staged.load)
        if loaded is None:
            # Rows and ledger entry are committed together, so there should be none. Rows left
            # without an entry (status: MISMATCH) are most likely these same events loaded
            # before: delete within the new rows' days, which costs no more than the insert.
            if staged.min_event_time and staged.max_event_time:
                terms.append(f"({hour} AND DATE(event_time) BETWEEN {_date(staged.min_event_time.date())} "
                             f"AND {_date(staged.max_event_time.date())})")
            continue
        if loaded.min_event_time and loaded.max_event_time:
            hour += (f" AND DATE(event_time) BETWEEN {_date(loaded.min_event_time.date())} "
                     f"AND {_date(loaded.max_event_time.date())}")
        terms.append(f"({hour})")
    return " OR ".join(terms)


def old_partitions_upper_bound(batch: list[Staged], ledger: dict[LedgerKey, Loaded]) -> int | None:
    """How many day partitions the old rows can span at most; None when a range is unknown."""
    total = 0
    for staged in batch:
        loaded = ledger.get(staged.load.key)
        if loaded is None:
            total += staged.partitions  # old_rows_filter looks for leftovers within the new rows' days
            continue
        if not (loaded.min_event_time and loaded.max_event_time):
            return None
        total += days_between(loaded.min_event_time, loaded.max_event_time)
    return total


def new_rows_filter(batch: list[Staged]) -> str:
    """Where the batch's new rows are, once inserted (each hour pruned to its staged range)."""
    terms = [f"({scope_term(s.load)} AND DATE(event_time) BETWEEN "
             f"{_date(s.min_event_time.date())} AND {_date(s.max_event_time.date())})"
             for s in batch if s.min_event_time and s.max_event_time]
    return " OR ".join(terms) or "FALSE"


def staged_union(batch: list[Staged]) -> str:
    columns = ", ".join(f"`{name}`" for name in schema.column_names())
    return " UNION ALL ".join(f"SELECT {columns} FROM `{s.stage_id}`" for s in batch)


def distinct_dates_sql(source: str, where: str = "") -> str:
    """The distinct day partitions of `source` (a table id or a subquery), to split statements."""
    source = source if source.lstrip().startswith("(") else f"`{source}`"
    return (f"SELECT DISTINCT DATE(event_time) AS d FROM {source}" + (f" WHERE {where}" if where else "")
            + " ORDER BY d")


# ---------------------------------------------------------------- the transaction
def guard_sql(ledger_id: str, batch: list[Staged], ledger: dict[LedgerKey, Loaded]) -> str:
    """The batch's (project, hour)s that may be replaced now: the ledger still holds what the plan
    read, and the staged generation is newer (source generation first, then import generation)."""
    rows = []
    for staged in batch:
        h, loaded = staged.load, ledger.get(staged.load.key)
        expected = loaded.import_generation if loaded else -1
        rows.append(f"SELECT {timestamp_literal(h.hour)} AS upload_hour, {literal(h.import_object)} AS import_object, "
                    f"{h.import_generation} AS import_generation, {literal(h.source_object)} AS source_object, "
                    f"{h.source_generation} AS source_generation, {h.events} AS events, {h.rows} AS rows_written, "
                    f"{h.rejected} AS rejected, {expected} AS expected_generation, {literal(h.project)} AS project, "
                    f"{key_literal(h)} AS k")
    return (f"SELECT b.* FROM ({' UNION ALL '.join(rows)}) AS b LEFT JOIN `{ledger_id}` AS l ON l.upload_hour = b.upload_hour "
            f"AND IFNULL(l.project, '') = b.project "
            f"WHERE IFNULL(l.import_generation, -1) = b.expected_generation AND (l.upload_hour IS NULL "
            f"OR l.source_generation < b.source_generation "
            f"OR (l.source_generation = b.source_generation AND l.import_generation < b.import_generation))")


def _within(ranges: list[tuple[date, date]] | None) -> list[str]:
    if not ranges:
        return [""]
    return [f" AND DATE(event_time) BETWEEN {_date(low)} AND {_date(high)}" for low, high in ranges]


def commit_lock_id(table_id: str) -> str:
    """A one-row table every commit transaction updates first.

    BigQuery cancels a transaction that mutates (updates or deletes rows of) a table another
    running transaction mutates, but transactions that only insert may run side by side. A first
    load of an hour deletes nothing, so two overlapping commits (a lease broken while its holder's
    job still ran) could both insert. Updating this row makes every pair of commits conflict, so
    BigQuery itself lets only one of them through.
    """
    return f"{table_id}_commit_lock"


def commit_lock_seed_sql(table_id: str) -> str:
    """Give the lock table its row if it has none (run outside the transaction; a second row is harmless)."""
    lock = commit_lock_id(table_id)
    return (f"INSERT INTO `{lock}` (holder, locked_at) SELECT 'none', CURRENT_TIMESTAMP() FROM (SELECT 1 AS one) AS seed "
            f"WHERE NOT EXISTS (SELECT 1 FROM `{lock}`)")


def group_commit_script(table_id: str, ledger_id: str, batch: list[Staged], ledger: dict[LedgerKey, Loaded], token: str,
                        delete_ranges: list[tuple[date, date]] | None = None,
                        insert_ranges: list[tuple[date, date]] | None = None) -> str:
    """One transaction replacing every guarded hour of `batch` and recording it in the ledger.

    `delete_ranges` / `insert_ranges` split the delete and the insert into statements of at most
    4,000 day partitions each (None: one statement is within the limit). The ledger is written
    last: the new entries first (the guard still sees the old ledger), then the entries they
    replace, found by this batch's `token`.
    """
    columns = ", ".join(f"`{name}`" for name in schema.column_names())
    guard = guard_sql(ledger_id, batch, ledger)
    scope_key = scope_key_sql(batch)
    guarded = f"{scope_key} IN (SELECT k FROM ({guard}))"
    statements = ["BEGIN TRANSACTION;",
                  f"UPDATE `{commit_lock_id(table_id)}` SET holder = {literal(token)}, locked_at = CURRENT_TIMESTAMP() WHERE TRUE;"]
    old = old_rows_filter(batch, ledger)
    if old:
        for within in _within(delete_ranges):
            statements.append(f"DELETE FROM `{table_id}` WHERE {guarded} AND ({old}){within};")
    if any(s.min_event_time for s in batch):
        for within in _within(insert_ranges):
            statements.append(f"INSERT INTO `{table_id}` ({columns}) SELECT {columns} FROM ({staged_union(batch)}) "
                              f"WHERE {guarded}{within};")
    ledger_columns = ", ".join(LEDGER_COLUMNS)
    statements.append(
        f"INSERT INTO `{ledger_id}` ({ledger_columns}) "
        f"SELECT g.upload_hour, g.import_object, g.import_generation, g.source_object, g.source_generation, g.events, "
        f"g.rows_written, g.rejected, IFNULL(c.n, 0), CURRENT_TIMESTAMP(), c.lo, c.hi, IFNULL(c.fp, 0), {literal(token)}, "
        f"NULLIF(g.project, '') "
        f"FROM ({guard}) AS g LEFT JOIN (SELECT {scope_key} AS k, COUNT(*) AS n, MIN(event_time) AS lo, "
        f"MAX(event_time) AS hi, BIT_XOR(FARM_FINGERPRINT(uuid)) AS fp FROM `{table_id}` "
        f"WHERE {new_rows_filter(batch)} GROUP BY k) AS c ON c.k = g.k;")
    entry_key = "CONCAT(IFNULL(project, ''), '|', CAST(upload_hour AS STRING))"
    statements.append(
        f"DELETE FROM `{ledger_id}` WHERE {entry_key} IN (SELECT {entry_key} FROM `{ledger_id}` "
        f"WHERE commit_batch = {literal(token)}) AND IFNULL(commit_batch, '') != {literal(token)};")
    statements.append("COMMIT TRANSACTION;")
    return "\n".join(statements) + "\n"


def bytes_billed_sql(ledger_id: str, token: str, bytes_billed: int) -> str:
    return f"UPDATE `{ledger_id}` SET commit_bytes_billed = {int(bytes_billed)} WHERE commit_batch = {literal(token)}"


# ---------------------------------------------------------------- reads
def project_sql(project: str) -> str:
    """The ledger's rows of a project: project NULL is the default project's (and every row
    written before there were projects)."""
    return f"IFNULL(project, '') = {literal(project)}"


def add_column_sql(table_id: str, name: str, field_type: str) -> str:
    """A NULLABLE column added to a table in place (an older ledger, upgraded)."""
    return f"ALTER TABLE `{table_id}` ADD COLUMN IF NOT EXISTS `{name}` {field_type}"


def ledger_entry_sql(ledger_id: str, hour: datetime, project: str = "") -> str:
    return (
        f"SELECT import_generation, source_generation, events, rows_written, rejected, loaded FROM `{ledger_id}` "
        f"WHERE upload_hour = {timestamp_literal(hour)} AND {project_sql(project)}"
    )


def ledger_state_sql(ledger_id: str, hours: list[datetime], project: str | None = None) -> str:
    """The ledger's state of `hours`, of every project (None) or of one; rows carry `project`
    ("" for the default one), so the caller keys them by (project, hour)."""
    listed = ", ".join(timestamp_literal(hour) for hour in sorted(set(hours))) or "NULL"
    only = f" AND {project_sql(project)}" if project is not None else ""
    return (f"SELECT upload_hour, IFNULL(project, '') AS project, import_generation, source_generation, min_event_time, "
            f"max_event_time FROM `{ledger_id}` WHERE upload_hour IN ({listed}){only}")


def staged_summary_sql(stage_id: str, app: str = "") -> str:
    """The staged rows' count and event_time range; `foreign`: rows not of project `app` (a
    project's hour must hold only its own rows, or its replace would leave them behind)."""
    foreign = f"COUNTIF(app IS NULL OR app != {int(app)})" if app else "0"
    return (f"SELECT COUNT(*) AS n, MIN(event_time) AS lo, MAX(event_time) AS hi, "
            f"COUNT(DISTINCT DATE(event_time)) AS days, {foreign} AS foreign_rows FROM `{stage_id}`")


# ---------------------------------------------------------------- forgetting users (forgetting.py)
def applied_jobs_sql(forgets_id: str) -> str:
    """The (job day, project id) of every deletion job applied so far."""
    return f"SELECT DISTINCT job_day, IFNULL(app, '') AS app FROM `{forgets_id}` WHERE upload_hour IS NULL"


def rows_per_hour_and_id_sql(table_id: str, ids: frozenset[int], app: str) -> str:
    """How many rows each of the users `ids` has in each upload hour (of project `app`)."""
    return (f"SELECT _upload_hour AS h, amplitude_id AS id, COUNT(*) AS n FROM `{table_id}` "
            f"WHERE amplitude_id IN ({ids_sql(ids)}){app_filter(app)} GROUP BY h, id")


def users_rows_sql(table_id: str, hours: list[datetime], ids: frozenset[int], app: str) -> str:
    """Per upload hour of `hours`: how many rows of the users `ids` (of project `app`), and their
    uuid fingerprint, which the ledger entry gives up with them."""
    listed = ", ".join(timestamp_literal(h) for h in sorted(hours))
    return (f"SELECT _upload_hour AS h, COUNT(*) AS n, BIT_XOR(FARM_FINGERPRINT(uuid)) AS fp FROM `{table_id}` "
            f"WHERE _upload_hour IN ({listed}) AND amplitude_id IN ({ids_sql(ids)}){app_filter(app)} GROUP BY h")


def ids_sql(ids: frozenset[int]) -> str:
    """Amplitude ids as a list of SQL integers."""
    return ", ".join(str(int(i)) for i in sorted(ids))


def app_filter(app: str) -> str:
    """The project's rows only, when its id is known (every row in the one-project form)."""
    return f" AND app = {int(app)}" if app else ""


def delete_users_script(table_id: str, ledger_id: str, ids: frozenset[int], gone: dict[datetime, tuple[int, int]],
                        token: str, app: str = "", segment: str = "") -> str:
    """One transaction: the users' rows of project `app` out of the table, and (rows,
    fingerprint) of each hour out of the project's (`segment`) ledger entry (events = rows +
    rejected and loaded = rows keep holding)."""
    statements = ["BEGIN TRANSACTION;",
                  f"UPDATE `{commit_lock_id(table_id)}` SET holder = {literal(token)}, "
                  f"locked_at = CURRENT_TIMESTAMP() WHERE TRUE;"]
    hours = ", ".join(timestamp_literal(h) for h in sorted(gone))
    statements.append(f"DELETE FROM `{table_id}` WHERE _upload_hour IN ({hours}) AND amplitude_id IN ({ids_sql(ids)})"
                      f"{app_filter(app)};")
    for hour, (n, fp) in sorted(gone.items()):
        statements.append(f"UPDATE `{ledger_id}` SET events = events - {n}, rows_written = rows_written - {n}, "
                          f"loaded = loaded - {n}, fingerprint = IFNULL(fingerprint, 0) ^ {fp} "
                          f"WHERE upload_hour = {timestamp_literal(hour)} AND {project_sql(segment)};")
    statements.append("COMMIT TRANSACTION;")
    return "\n".join(statements) + "\n"


FORGETS_COLUMNS = ("job_day", "app", "upload_hour", "amplitude_ids", "rows_removed", "objects_rewritten",
                   "generations_deleted", "applied_at")


def forgets_insert_sql(forgets_id: str, rows: list[dict]) -> str:
    def value(v) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, datetime):
            return timestamp_literal(v)
        if isinstance(v, date):
            return f"DATE '{v:%Y-%m-%d}'"
        if isinstance(v, int):
            return str(v)
        return literal(str(v))

    selects = [", ".join([f"{value(r['job_day'])} AS job_day", f"{value(r['app'] or None)} AS app",
                          f"{value(r['upload_hour'])} AS upload_hour", f"{value(r['amplitude_ids'])} AS amplitude_ids",
                          f"{value(r['rows_removed'])} AS rows_removed", f"{value(r['objects_rewritten'])} AS objects_rewritten",
                          f"{value(r['generations_deleted'])} AS generations_deleted"]) for r in rows]
    union = " UNION ALL ".join(f"SELECT {s}" for s in selects)
    return (f"INSERT INTO `{forgets_id}` ({', '.join(FORGETS_COLUMNS)}) SELECT job_day, CAST(app AS STRING), "
            f"CAST(upload_hour AS TIMESTAMP), CAST(amplitude_ids AS INT64), rows_removed, CAST(objects_rewritten AS INT64), "
            f"CAST(generations_deleted AS INT64), CURRENT_TIMESTAMP() FROM ({union})")


def applied_sql(forgets_id: str) -> str:
    """What `ampbq forget --status` shows: one row per applied job."""
    return (f"SELECT job_day, IFNULL(app, '') AS app, amplitude_ids, rows_removed, objects_rewritten, generations_deleted, "
            f"applied_at, (SELECT COUNT(*) FROM `{forgets_id}` AS h WHERE h.job_day = j.job_day "
            f"AND IFNULL(h.app, '') = IFNULL(j.app, '') AND h.upload_hour IS NOT NULL) AS hours "
            f"FROM `{forgets_id}` AS j WHERE upload_hour IS NULL ORDER BY job_day, app")
