"""Two Amplitude projects in one deployment, through the real handlers and the local stand-ins:
the same upload hours of both land side by side in the one table, each project's hours exactly;
re-dropping one project's hour reloads that project's hour only; status reads each project."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest
from click.testing import CliRunner

from ampbq import bigquery as bq_adapter
from ampbq import gcs, load, naming
from ampbq.config import Config
from ampbq.naming import HourRange
from ampbq.tools.cli import main
from ampbq.tools.sandbox import GeneratedSource
from ampbq.tools.stack import Stack, StackSettings
from ampbq.tools.stub import ExportApiStub
from integration_helpers import wait_for

pytestmark = pytest.mark.integration
DAY = date(2021, 11, 17)
RANGE = HourRange.parse(f"{DAY:%Y%m%d}T00", f"{DAY:%Y%m%d}T02")
DEFAULT, OTHER = "100", "200"  # the default project keeps today's names; the other gets export/200/…
EVENTS = {DEFAULT: 5, OTHER: 3}
PROJECT_ENV = {"AMPBQ_AMPLITUDE_PROJECTS": f"{DEFAULT},{OTHER}:EU", "AMPBQ_DEFAULT_PROJECT": DEFAULT,
               "AMPLITUDE_API_KEY_200": "key-200", "AMPLITUDE_SECRET_KEY_200": "secret-200"}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """A stack of its own (the session's has one project), its stub serving each project's
    events to that project's keys only."""
    source = GeneratedSource(events_per_hour=EVENTS[DEFAULT], parts_per_hour=1, app=int(DEFAULT))
    with ExportApiStub(source, "key-100", "secret-100") as stub:
        stub.add_project(GeneratedSource(events_per_hour=EVENTS[OTHER], parts_per_hour=1, app=int(OTHER)),
                         "key-200", "secret-200")
        settings = StackSettings(workdir=tmp_path_factory.mktemp("projects"), amplitude_url=stub.url, api_key="key-100",
                                 secret_key="secret-100", extra_env={**PROJECT_ENV, "AMPBQ_HTTP_BACKOFF_SECONDS": "0.1"})
        saved = dict(os.environ)
        with Stack(settings) as running:
            os.environ.update(running.client_env())  # the clients made here talk to this stack
            try:
                yield running, stub
            finally:
                os.environ.clear()
                os.environ.update(saved)


def status(stack: Stack, *args: str) -> dict:
    result = CliRunner().invoke(main, ["status", "--start", f"{DAY}T00", "--end", f"{DAY}T02", "--json", *args],
                                env=stack.client_env(), catch_exceptions=False)
    assert result.stdout.startswith("{"), (result.output, result.stderr)
    return json.loads(result.stdout)


def by_project(document: dict) -> dict[str, dict[str, tuple[str, int]]]:
    return {p["project"]: {h["hour"]: (h["state"], h["rows_in_bigquery"]) for h in p["hours"]} for p in document["projects"]}


def table_rows(bq, config: Config) -> dict[tuple[int, str], int]:
    rows = bq_adapter.query_rows(bq, f"SELECT app, _upload_hour AS h, COUNT(*) AS n FROM `{config.table_id}` "
                                     f"WHERE DATE(_upload_hour) = DATE '{DAY}' GROUP BY app, h")
    return {(r["app"], f"{naming.utc_hour(r['h']):%H}"): r["n"] for r in rows}


def test_two_projects_land_the_same_hours_side_by_side_and_one_projects_hour_reloads_alone(two):
    stack, stub = two
    config = Config.from_env(stack.function_env())
    bucket = gcs.client(config.project).bucket(config.bucket)
    bq = bq_adapter.client(config)
    bq_adapter.ensure_tables(bq, config)  # as Terraform does: status reads them while the first loads run
    stack.publish_run({"start": naming.api_hour(RANGE.start), "end": naming.api_hour(RANGE.end)})
    expected = {p: {f"{DAY}T{h:02d}": ("loaded", n) for h in range(3)} for p, n in EVENTS.items()}
    wait_for(lambda: by_project(status(stack)) == expected, f"both projects' hours to read {expected}", timeout=120)
    assert table_rows(bq, config) == {(int(p), f"{h:02d}"): n for p, n in EVENTS.items() for h in range(3)}

    # One request per project, each answered with that project's events (the rows' app says
    # whose keys asked); the other project's objects sit under export/200/.
    assert stub.requests.count((naming.api_hour(RANGE.start), naming.api_hour(RANGE.end))) == 2
    hour = RANGE.start + naming.HOUR
    assert bucket.get_blob(naming.hour_object_name(hour)) is not None  # the default project: today's names
    assert bucket.get_blob(f"export/{OTHER}/{DAY}/01.json.gz") is not None
    assert bucket.get_blob(f"import/{OTHER}/{DAY}/01.json") is not None
    ledger = bq_adapter.query_rows(bq, f"SELECT IFNULL(project, 'NULL') AS p, COUNT(*) AS n FROM `{config.ledger_table_id}` "
                                       f"WHERE DATE(upload_hour) = DATE '{DAY}' GROUP BY p")
    assert {r["p"]: r["n"] for r in ledger} == {"NULL": 3, OTHER: 3}  # the default project's rows: project NULL

    def committed(project: str) -> dict:
        return bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour, project)
                                     .replace("SELECT ", "SELECT loaded_at, ", 1))[0]
    before = {p: committed(p) for p in ("", OTHER)}

    # Re-drop the other project's hour 01 from export/: only (200, 01) is loaded again.
    result = CliRunner().invoke(main, ["reprocess", "--hour", f"{DAY}T01", "--amplitude-project", OTHER],
                                env=stack.client_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    after = {p: committed(p) for p in ("", OTHER)}
    assert after[""] == before[""] and after[OTHER]["import_generation"] > before[OTHER]["import_generation"]
    assert table_rows(bq, config) == {(int(p), f"{h:02d}"): n for p, n in EVENTS.items() for h in range(3)}

    one = status(stack, "--amplitude-project", OTHER)  # one project: its own document
    assert one["project"] == OTHER and one["exit_code"] == 0 and [h["rows_in_bigquery"] for h in one["hours"]] == [3, 3, 3]
    listed = CliRunner().invoke(main, ["rejects", "--date", f"{DAY}"], env=stack.client_env())  # a summary line each
    assert listed.exit_code == 0 and [line.split()[2] for line in listed.stdout.splitlines() if line.startswith("rejects:")] \
        == [f"project={DEFAULT}", f"project={OTHER}"]
    several = CliRunner().invoke(main, ["reprocess", "--hour", f"{DAY}T01"], env=stack.client_env())
    assert several.exit_code == 2 and "--amplitude-project" in several.output
    unknown = CliRunner().invoke(main, ["status", "--date", f"{DAY}", "--amplitude-project", "999"], env=stack.client_env())
    assert unknown.exit_code == 2 and "999" in unknown.output


def test_a_ledger_made_before_projects_gets_the_project_column_and_its_rows_read_as_the_default_projects(two):
    from dataclasses import replace

    from google.cloud import bigquery

    from ampbq import schema

    stack, _ = two
    config = replace(Config.from_env(stack.function_env()), table="before_projects")
    bq = bq_adapter.client(config)
    old = [f for f in bq_adapter.schema_fields(schema.LEDGER_SCHEMA_FILE) if f.name != "project"]
    bq.create_table(bigquery.Table(config.ledger_table_id, schema=old), exists_ok=True)
    bq_adapter.query_rows(bq, f"INSERT INTO `{config.ledger_table_id}` (upload_hour, import_object, import_generation, "
                              f"source_object, source_generation, events, rows_written, rejected, loaded, loaded_at) "
                              f"VALUES (TIMESTAMP '{DAY} 05:00:00+00', 'gs://b/import/x', 2, 'gs://b/export/x', 1, 4, 4, 0, 4, "
                              f"CURRENT_TIMESTAMP())")
    with pytest.raises(Exception, match="project"):  # reads of the default project's rows need the column
        bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, naming.parse_api_hour(f"{DAY:%Y%m%d}T05")))
    bq_adapter._add_ledger_columns(bq, config)
    hour = naming.parse_api_hour(f"{DAY:%Y%m%d}T05")
    assert bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour))[0]["loaded"] == 4
    assert bq_adapter.query_rows(bq, load.ledger_entry_sql(config.ledger_table_id, hour, OTHER)) == []


FORGET_DAY = date(2021, 11, 18)
FORGET_RANGE = HourRange.parse(f"{FORGET_DAY:%Y%m%d}T00", f"{FORGET_DAY:%Y%m%d}T01")


def ids_in_every_generation(bucket, prefixes: list[str]) -> tuple[set[int], int]:
    """Every amplitude id in every generation of every object under `prefixes`, and how many generations."""
    import io
    import zipfile

    from ampbq import deletions

    def ids(data: bytes) -> set[int]:
        return {deletions.line_amplitude_id(line) for line in data.splitlines() if line.strip()}

    found, generations = set(), 0
    for prefix in prefixes:
        for version in bucket.list_blobs(prefix=prefix, versions=True):
            data = bucket.blob(version.name, generation=version.generation).download_as_bytes()
            if version.name.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    found |= set().union(*(ids(deletions.inflate(archive.read(i))) for i in archive.infolist()))
            elif version.name.endswith(".gz"):
                found |= ids(deletions.inflate(data))
            elif "/raw/" not in version.name:
                found |= ids(data)
            generations += 1
    return found, generations


def test_a_user_deleted_in_the_other_project_leaves_its_rows_and_objects_and_the_default_projects_stay(two):
    stack, stub = two
    config = Config.from_env(stack.function_env())
    bucket = gcs.client(config.project).bucket(config.bucket)
    bq = bq_adapter.client(config)
    bq_adapter.ensure_tables(bq, config)
    where = f"DATE(_upload_hour) = DATE '{FORGET_DAY}'"

    def settled() -> bool:  # both projects' hours loaded from their live hour objects
        for segment in ("", OTHER):
            live = {h: getattr(bucket.get_blob(naming.hour_object_name(h, segment)), "generation", None)
                    for h in FORGET_RANGE.hours()}
            ledger = {naming.utc_hour(r["upload_hour"]): r["source_generation"] for r in bq_adapter.query_rows(
                bq, load.ledger_state_sql(config.ledger_table_id, list(FORGET_RANGE.hours()), segment))}
            if ledger != live:
                return False
        return True

    stack.publish_run({"start": naming.api_hour(FORGET_RANGE.start), "end": naming.api_hour(FORGET_RANGE.end)})
    wait_for(lambda: all(bucket.get_blob(naming.manifest_name(FORGET_RANGE, s)) for s in ("", OTHER)), "both manifests")
    wait_for(settled, "both projects' hours loaded from their live hour objects", timeout=90)

    def rows(app: str) -> list[dict]:
        return bq_adapter.query_rows(bq, f"SELECT uuid, amplitude_id, _upload_hour AS h FROM `{config.table_id}` "
                                         f"WHERE {where} AND app = {app} ORDER BY uuid")
    other, default = rows(OTHER), rows(DEFAULT)
    victims = sorted({min(other, key=lambda r: r["h"])["amplitude_id"], max(other, key=lambda r: r["h"])["amplitude_id"]})
    # A row of the default project with a victim's amplitude id (ids are per project): it stays.
    twin = default[0]["uuid"]
    bq_adapter.query_rows(bq, f"UPDATE `{config.table_id}` SET amplitude_id = {victims[0]} WHERE uuid = '{twin}' AND {where}")
    prefixes = [f"export/{OTHER}/{FORGET_DAY}/", f"import/{OTHER}/{FORGET_DAY}/", f"rejects/{OTHER}/{FORGET_DAY}/",
                f"{naming.raw_prefix(OTHER)}{FORGET_DAY}/"]
    assert set(victims) <= ids_in_every_generation(bucket, prefixes)[0]  # the check below can fail
    default_objects = {(b.name, b.generation) for b in bucket.list_blobs(prefix=f"export/{FORGET_DAY}/", versions=True)}
    # The other project's last hour object is gone (the lifecycle rule): its rows go in the table.
    # Its generation stays, noncurrent, as the re-written objects' first generations do: forget deletes them all.
    bucket.blob(naming.hour_object_name(FORGET_RANGE.end, OTHER)).delete()

    stub.delete_users(victims, keys=("key-200", "secret-200"))  # a job of project 200 only
    result = CliRunner().invoke(main, ["forget"], env=stack.client_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"forget: project={DEFAULT} " in result.stdout and "applied=0" in result.stdout
    line = next(line for line in result.stdout.splitlines() if f"project={OTHER} " in line)
    assert f"applied=1 amplitude_ids={len(victims)}" in line and "generations_deleted=0" not in line

    assert [r["uuid"] for r in rows(OTHER)] == [r["uuid"] for r in other if r["amplitude_id"] not in victims]
    assert [(r["uuid"], r["amplitude_id"]) for r in rows(DEFAULT)] == [
        (r["uuid"], victims[0] if r["uuid"] == twin else r["amplitude_id"]) for r in default]
    found, generations = ids_in_every_generation(bucket, prefixes)
    assert generations and not found & set(victims)
    assert {(b.name, b.generation) for b in bucket.list_blobs(prefix=f"export/{FORGET_DAY}/", versions=True)} == default_objects
    shown = CliRunner().invoke(main, ["status", "--start", f"{FORGET_DAY}T00", "--end", f"{FORGET_DAY}T01", "--json",
                                      "--app", OTHER], env=stack.client_env())
    assert [h["state"] for h in json.loads(shown.stdout)["hours"]] == ["loaded", "loaded"]  # the ledger still reconciles

    shown = CliRunner().invoke(main, ["forget", "--status", "--json", "--app", OTHER], env=stack.client_env())
    assert [(a["project"], a["amplitude_ids"]) for a in json.loads(shown.stdout)["applied"]] == [(OTHER, len(victims))]
    again = CliRunner().invoke(main, ["forget", "--amplitude-project", OTHER], env=stack.client_env())
    assert again.exit_code == 0 and "applied=0" in again.stdout and DEFAULT not in again.stdout.split("project=")[1][:4]
