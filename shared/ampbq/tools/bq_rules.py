"""BigQuery's concurrency and partition rules, in front of the local BigQuery stand-in.

bqemulator runs every job synchronously inside the request that creates it (`jobs.insert`,
`jobs.query`: the response is already DONE) and serialises writes on one DuckDB connection, so
locally nothing ever conflicts, queues or hits a partition limit. BigQuery does all three. This
module is a thin HTTP reverse proxy on 127.0.0.1 that forwards every request to the emulator and,
for query jobs, first applies these documented rules (a job counts as running while its
`jobs.insert` / `jobs.query` request is in flight, which is exactly when the emulator runs it):

- Multi-statement transactions, "Transaction concurrency"
  (https://cloud.google.com/bigquery/docs/transactions): when a transaction mutates (updates or
  deletes rows of) a table, other transactions or DML statements that mutate the same table cannot
  run concurrently; conflicting transactions are cancelled, conflicting DML outside a transaction
  is queued. Here a transaction that deletes, updates or merges into table T while another
  transaction or mutating DML statement on T runs fails with BigQuery's error
  "Transaction is aborted due to concurrent update against table P:D.T" and is counted.
- Mutating DML, "UPDATE, DELETE, MERGE DML concurrency"
  (https://cloud.google.com/bigquery/docs/data-manipulation-language): at most 2 mutating DML
  statements run concurrently per table, up to 20 more wait as PENDING, beyond that the job fails
  with "Resources exceeded during query execution: Too many DML statements outstanding against
  table P:D.T, limit is 20". A DML statement also waits while a transaction mutates its table.
- Partitioned tables, "Maximum number of partitions modified per job: 4,000"
  (https://cloud.google.com/bigquery/quotas#partitioned_tables). A script runs each statement as
  a child job, so the limit applies per statement. Before forwarding, the proxy asks the emulator
  how many distinct partitions (DATE of the table's time-partitioning column) a statement of a
  recognised shape touches, and fails the job with BigQuery's "Too many partitions produced by
  query, allowed 4000, query produces at least N partitions" when it is more than 4,000. Shapes
  recognised (all our load step uses; anything else is forwarded unchecked):
    * `DELETE FROM T [AS a] WHERE …` on a DAY-partitioned table: counts the rows WHERE selects;
    * `INSERT INTO T (…) SELECT …` whose SELECT outputs the partition column under its own name:
      counts the rows the SELECT produces.
  The count sees the tables as they are before the script runs, so a statement whose input an
  earlier statement of the same script changes is counted on the old state.

A refused job is still a job: the proxy forwards `SELECT ERROR('<BigQuery's message>')` under the
same job id, so the emulator records it as DONE with that error, `jobs.get` finds it, and the id
can never be reused, as in BigQuery. `GET /_rules/stats` answers the counters as JSON.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests

MAX_RUNNING_DML = 2
MAX_QUEUED_DML = 20
MAX_PARTITIONS_PER_STATEMENT = 4000

_JOB_PATH = re.compile(r"/projects/([^/]+)/(jobs|queries)/?$")
_TABLE = r"`?([A-Za-z0-9_.:\-]+)`?"
_MUTATION = re.compile(r"^\s*(?:DELETE\s+(?:FROM\s+)?|UPDATE\s+|MERGE\s+(?:INTO\s+)?|TRUNCATE\s+TABLE\s+)" + _TABLE, re.I)
_DELETE = re.compile(r"^\s*DELETE\s+(?:FROM\s+)?" + _TABLE + r"(\s+(?:AS\s+)?[A-Za-z_]\w*)?\s+WHERE\s+(.*)$", re.I | re.S)
_INSERT_SELECT = re.compile(r"^\s*INSERT\s+(?:INTO\s+)?" + _TABLE + r"\s*\(([^)]*)\)\s*(SELECT\b.*)$", re.I | re.S)
_BEGIN = re.compile(r"^\s*BEGIN\s+TRANSACTION\b", re.I)
_CONTROL = re.compile(r"^\s*(?:IF\b[^;]*?\bTHEN|ELSE|END\s+IF|BEGIN\s+TRANSACTION|COMMIT(?:\s+TRANSACTION)?|ROLLBACK(?:\s+TRANSACTION)?)\s*", re.I)


def split_statements(sql: str) -> list[str]:
    """The statements of a script, split on `;` outside quotes and backticks (comments are not ours)."""
    statements, current, quote, i = [], [], "", 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < len(sql):
                current.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
            current.append(ch)
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _strip_control(statement: str) -> str:
    """`IF … THEN DELETE …` → `DELETE …`: the procedural wrapper does not change what a statement does."""
    while True:
        match = _CONTROL.match(statement)
        if not match or not match.group(0).strip():
            return statement
        statement = statement[match.end():]


def table_key(name: str, project: str) -> str:
    """`p.d.t`, `p:d.t` and `d.t` (in project p) are one table."""
    parts = name.replace(":", ".").split(".")
    if len(parts) == 2:
        parts = [project, *parts]
    return ".".join(parts)


@dataclass(frozen=True)
class JobShape:
    """What the rules need to know about a query job."""

    transaction: bool
    mutated: frozenset[str]  # tables the job deletes, updates or merges into (table keys)
    statements: tuple[str, ...]


def job_shape(sql: str, project: str) -> JobShape:
    statements = tuple(_strip_control(s) for s in split_statements(sql))
    mutated = set()
    for statement in statements:
        match = _MUTATION.match(statement)
        if match:
            mutated.add(table_key(match.group(1), project))
    return JobShape(bool(_BEGIN.match(sql)), frozenset(mutated), statements)


def partition_probe(statement: str, project: str, partition_field: Callable[[str], str | None]) -> tuple[str, str] | None:
    """(table, SQL counting the distinct partitions `statement` modifies), or None for other shapes."""
    delete = _DELETE.match(statement)
    if delete:
        table, alias, where = delete.groups()
        column = partition_field(table_key(table, project))
        if column is None:
            return None
        return table_key(table, project), (
            f"SELECT COUNT(DISTINCT DATE({column})) AS n FROM `{table}`{alias or ''} WHERE {where}")
    insert = _INSERT_SELECT.match(statement)
    if insert:
        table, columns, select = insert.groups()
        column = partition_field(table_key(table, project))
        names = {c.strip().strip("`").lower() for c in columns.split(",")}
        if column is None or column.lower() not in names:
            return None
        return table_key(table, project), f"SELECT COUNT(DISTINCT DATE({column})) AS n FROM ({select})"
    return None


def conflict_message(table: str) -> str:
    return f"Transaction is aborted due to concurrent update against table {_display(table)}"


def queue_full_message(table: str) -> str:
    return (f"Resources exceeded during query execution: Too many DML statements outstanding against table "
            f"{_display(table)}, limit is {MAX_QUEUED_DML}")


def partitions_message(count: int) -> str:
    return (f"Too many partitions produced by query, allowed {MAX_PARTITIONS_PER_STATEMENT}, "
            f"query produces at least {count} partitions")


def _display(table: str) -> str:
    project, _, rest = table.partition(".")
    return f"{project}:{rest}"


@dataclass
class TableState:
    transactions: int = 0  # transactions mutating the table, running
    dml: int = 0  # mutating DML statements outside a transaction, running
    queued: int = 0  # mutating DML statements waiting


@dataclass
class Stats:
    conflicts: int = 0  # transactions cancelled because another mutation of their table ran
    queued: int = 0  # DML statements that had to wait
    queue_full: int = 0  # DML statements refused because 20 already waited
    partition_refusals: int = 0  # statements refused for modifying more than 4,000 partitions
    max_queue: int = 0

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Decision:
    action: str  # "run", "wait" or "fail"
    message: str = ""


def decide(tables: dict[str, TableState], shape: JobShape) -> Decision:
    """The rule for a job arriving now, given what runs and waits per table (pure)."""
    for table in sorted(shape.mutated):
        state = tables.get(table, TableState())
        if shape.transaction and (state.transactions or state.dml):
            return Decision("fail", conflict_message(table))
    if shape.transaction or not shape.mutated:
        return Decision("run")
    for table in sorted(shape.mutated):
        state = tables.get(table, TableState())
        if state.transactions or state.dml >= MAX_RUNNING_DML:
            if state.queued >= MAX_QUEUED_DML:
                return Decision("fail", queue_full_message(table))
            return Decision("wait")
    return Decision("run")


@dataclass
class Rules:
    """The shared state of the rules: what runs and waits per table, and the counters."""

    tables: dict[str, TableState] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def admit(self, shape: JobShape) -> Decision:
        """Block while the job must wait; then "run" (call `finish` after) or "fail"."""
        with self._lock:
            waited = False
            while True:
                decision = decide(self.tables, shape)
                if decision.action == "fail":
                    if shape.transaction:
                        self.stats.conflicts += 1
                    else:
                        self.stats.queue_full += 1
                    self._unqueue(shape, waited)
                    return decision
                if decision.action == "run":
                    self._unqueue(shape, waited)
                    for table in shape.mutated:
                        state = self.tables.setdefault(table, TableState())
                        if shape.transaction:
                            state.transactions += 1
                        else:
                            state.dml += 1
                    return decision
                if not waited:
                    waited = True
                    self.stats.queued += 1
                    for table in shape.mutated:
                        self.tables.setdefault(table, TableState()).queued += 1
                    self.stats.max_queue = max(self.stats.max_queue, *(self.tables[t].queued for t in shape.mutated))
                self._lock.wait()

    def finish(self, shape: JobShape) -> None:
        with self._lock:
            for table in shape.mutated:
                state = self.tables[table]
                if shape.transaction:
                    state.transactions -= 1
                else:
                    state.dml -= 1
            self._lock.notify_all()

    def _unqueue(self, shape: JobShape, waited: bool) -> None:
        if waited:
            for table in shape.mutated:
                self.tables[table].queued -= 1

    def refused_partitions(self) -> None:
        with self._lock:
            self.stats.partition_refusals += 1


class RulesProxy:
    """The reverse proxy: `with RulesProxy(upstream, port) as proxy:` serves on 127.0.0.1:port."""

    def __init__(self, upstream: str, port: int = 0):
        self.upstream = upstream.rstrip("/")
        self.rules = Rules()
        self.session = requests.Session()
        self._partition_fields: dict[str, str | None] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="bq-rules", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RulesProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------- rules
    def partition_field(self, table: str) -> str | None:
        """The DAY/HOUR/MONTH partitioning column of a table, from the emulator (cached)."""
        if table not in self._partition_fields:
            project, dataset, name = table.split(".", 2)
            response = self.session.get(f"{self.upstream}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{name}", timeout=30)
            if response.status_code != 200:
                return None  # not created yet: nothing to count, and the job will fail on its own
            self._partition_fields[table] = (response.json().get("timePartitioning") or {}).get("field")
        return self._partition_fields[table]

    def partitions(self, project: str, sql: str) -> int:
        response = self.session.post(f"{self.upstream}/bigquery/v2/projects/{project}/queries",
                                     json={"query": sql, "useLegacySql": False}, timeout=600)
        if response.status_code != 200:
            return 0  # the statement itself is wrong: the emulator will say so when it runs
        rows = response.json().get("rows") or [{"f": [{"v": "0"}]}]
        return int(rows[0]["f"][0]["v"] or 0)

    def too_many_partitions(self, project: str, shape: JobShape) -> str:
        for statement in shape.statements:
            probe = partition_probe(statement, project, self.partition_field)
            if probe is None:
                continue
            count = self.partitions(project, probe[1])
            if count > MAX_PARTITIONS_PER_STATEMENT:
                self.rules.refused_partitions()
                return partitions_message(count)
        return ""

    # -------------------------------------------------------------- HTTP
    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the emulator logs the requests
                pass

            def do_GET(self):
                if self.path.startswith("/_rules/stats"):
                    body = json.dumps(proxy.rules.stats.as_json()).encode()
                    self._reply(200, {"Content-Type": "application/json"}, body)
                    return
                self._forward()

            def do_POST(self):
                self._forward()

            def do_PUT(self):
                self._forward()

            def do_PATCH(self):
                self._forward()

            def do_DELETE(self):
                self._forward()

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                match = _JOB_PATH.search(path) if self.command == "POST" else None
                query = _query_of(body, match.group(2)) if match else None
                if query is None:
                    self._send(body)
                    return
                project = match.group(1)
                shape = job_shape(query, project)
                # Admission first: a conflict is decided when the job arrives, and the partition
                # count (a query the emulator runs after whatever it is running) must not delay it.
                decision = proxy.rules.admit(shape)
                if decision.action == "fail":
                    self._send(_failing(body, match.group(2), decision.message))
                    return
                try:
                    message = proxy.too_many_partitions(project, shape)
                    self._send(_failing(body, match.group(2), message) if message else body)
                finally:
                    proxy.rules.finish(shape)

            def _send(self, body: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    response = proxy.session.request(self.command, proxy.upstream + self.path, headers=headers,
                                                     data=body, timeout=900, allow_redirects=False)
                except requests.RequestException as error:
                    self._reply(502, {"Content-Type": "text/plain"}, f"bigquery rules proxy: {error}".encode())
                    return
                keep = {k: v for k, v in response.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
                self._reply(response.status_code, keep, response.content)

            def _reply(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _query_of(body: bytes, kind: str) -> str | None:
    """The SQL of a jobs.insert query job or a jobs.query request, else None."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return None
    if kind == "queries":
        return request.get("query") if not request.get("dryRun") else None
    configuration = request.get("configuration") or {}
    if configuration.get("dryRun") or "query" not in configuration:
        return None
    return (configuration["query"] or {}).get("query")


def _failing(body: bytes, kind: str, message: str) -> bytes:
    """The same request, with a query that fails with `message`, so the job exists and failed."""
    request = json.loads(body)
    failing = "SELECT ERROR('" + message.replace("\\", "\\\\").replace("'", "\\'") + "')"
    if kind == "queries":
        request["query"] = failing
    else:
        request["configuration"]["query"]["query"] = failing
    return json.dumps(request).encode()


def serve(upstream: str, port: int) -> None:
    """Run the proxy in the foreground (the local stack starts it as its own process)."""
    with RulesProxy(upstream, port) as proxy:
        proxy._thread.join()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m ampbq.tools.bq_rules UPSTREAM_URL PORT")
    serve(sys.argv[1], int(sys.argv[2]))
