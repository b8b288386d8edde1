"""Several Amplitude projects (pure parts): names, the configuration, the per-project load SQL."""

from datetime import datetime, timedelta, timezone

import pytest

from ampbq import load, naming
from ampbq.config import Config
from ampbq.errors import PermanentError
from ampbq.naming import HourRange

HOUR = datetime(2024, 1, 31, 5, tzinfo=timezone.utc)
T0 = datetime(2024, 1, 31, 5, 10, tzinfo=timezone.utc)
BASE = {"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p"}


def test_the_default_project_keeps_todays_names_and_another_gets_its_own_tree_under_each_prefix():
    assert naming.hour_object_name(HOUR) == "export/2024-01-31/05.json.gz"
    assert naming.hour_object_name(HOUR, "200") == "export/200/2024-01-31/05.json.gz"
    assert naming.import_object_name(HOUR, "200") == "import/200/2024-01-31/05.json"
    assert naming.rejects_object_name(HOUR, "200") == "rejects/200/2024-01-31/05.json"
    day = HourRange.day(HOUR.date())
    assert naming.raw_zip_name(day) == "export/raw/2024-01-31/20240131T00-20240131T23.zip"
    assert naming.manifest_name(day, "200") == "export/200/raw/2024-01-31/20240131T00-20240131T23.manifest.json"
    assert naming.dead_letter_name("export", naming.export_dead_letter_subject(day, "200")) == \
        "deadletter/export/200/20240131T00..20240131T23.json"
    assert naming.staging_table_name("t", HOUR, 7) == "_stage_t_2024013105_7"
    assert naming.staging_table_name("t", HOUR, 7, "200") == "_stage_t_p200_2024013105_7"
    assert naming.load_job_id(HOUR, 7, 1, "200") == "ampbq_load_p200_2024013105_7_r1"
    with pytest.raises(ValueError):
        naming.hour_object_name(HOUR, "raw")


def test_each_parser_tells_the_project_and_by_default_sees_only_the_default_projects_names():
    other = "export/200/2024-01-31/05.json.gz"
    assert naming.scoped_hour_object(other) == ("200", HOUR)
    assert naming.scoped_hour_object("export/2024-01-31/05.json.gz") == ("", HOUR)
    assert naming.scoped_import_object("import/200/2024-01-31/05.json") == ("200", HOUR)
    assert naming.parse_hour_object(other) is None and naming.parse_hour_object(other, "200") == HOUR
    assert naming.parse_hour_object(other, None) == HOUR
    assert naming.scoped_hour_object("export/raw/2024-01-31/05.json.gz") is None
    raw = "export/200/raw/2024-01-31/20240131T00-20240131T23.zip"
    assert naming.parse_raw_name(raw) is None and naming.parse_raw_name(raw, "200")[1] == "zip"
    assert naming.parse_raw_name("export/raw/2024-01-31/20240131T00-20240131T23.zip")[1] == "zip"
    dead = "deadletter/export/200/20240131T00..20240131T23.json"
    assert naming.parse_export_dead_letter(dead) is None and naming.parse_export_dead_letter(dead, "200") is not None


def test_todays_variables_are_the_one_project_form():
    config = Config.from_env(BASE | {"AMPLITUDE_API_KEY": "k", "AMPLITUDE_SECRET_KEY": "s", "AMPLITUDE_REGION": "EU"})
    (only,) = config.projects
    assert (only.segment, only.app, only.url) == ("", "", "https://analytics.eu.amplitude.com")
    assert config.for_project(only).amplitude_api_key == "k" and config.app_of("") == ""


def test_a_map_of_projects_has_its_keys_and_region_each_and_the_default_one_keeps_the_unsegmented_names():
    env = BASE | {"AMPBQ_AMPLITUDE_PROJECTS": "300:EU, 100", "AMPBQ_DEFAULT_PROJECT": "100",
                  "AMPLITUDE_API_KEY": "k100", "AMPLITUDE_SECRET_KEY": "s100",
                  "AMPLITUDE_API_KEY_300": "k300", "AMPLITUDE_SECRET_KEY_300": "s300"}
    config = Config.from_env(env)
    assert [(p.segment, p.app, p.url) for p in config.projects] == [
        ("", "100", "https://amplitude.com"), ("300", "300", "https://analytics.eu.amplitude.com")]
    other = config.for_project(config.projects[1])
    assert (other.amplitude_api_key, other.amplitude_secret_key, other.amplitude_url) == \
        ("k300", "s300", "https://analytics.eu.amplitude.com")
    assert "k300" not in repr(config) and "s300" not in repr(config.projects)
    assert config.app_of("") == "100" and config.select("300") == (config.projects[1],)
    assert config.select("default") == (config.projects[0],) and config.select(None) == config.projects
    with pytest.raises(PermanentError, match="999"):
        config.select("999")
    without_key = Config.from_env(env | {"AMPLITUDE_SECRET_KEY_300": ""})
    assert without_key.for_project(without_key.projects[1]).unset_amplitude_keys() == ["AMPLITUDE_SECRET_KEY_300"]


@pytest.mark.parametrize("env, message", [
    ({"AMPBQ_AMPLITUDE_PROJECTS": "web"}, "project id"),
    ({"AMPBQ_AMPLITUDE_PROJECTS": "100,100"}, "twice"),
    ({"AMPBQ_AMPLITUDE_PROJECTS": "100:APAC"}, "project id"),
    ({"AMPBQ_AMPLITUDE_PROJECTS": "100", "AMPBQ_DEFAULT_PROJECT": "200"}, "not in"),
    ({"AMPBQ_DEFAULT_PROJECT": "200"}, "empty"),
])
def test_a_malformed_map_is_refused_naming_what_is_wrong(env, message):
    with pytest.raises(PermanentError, match=message):
        Config.from_env(BASE | env)


def staged(project: str, app: str, hour=HOUR, generation=22) -> load.Staged:
    h = load.HourLoad(hour, f"gs://b/import/{project}/x.json", generation, "gs://b/export/x", 11, 3, 3, 0, project, app)
    return load.Staged(h, f"p.ops._stage_{project}_{generation}", T0, T0, 1)


def test_the_same_hour_of_two_projects_is_two_keys_each_guarded_against_its_own_ledger_entry():
    one, two = staged("", "100"), staged("200", "200")
    ledger = {("", HOUR): load.Loaded(30, 20), ("200", HOUR): load.Loaded(5, 4)}
    batch, superseded = load.pick_batch([one, two], ledger)
    assert batch == [two] and superseded == [one]  # only the default project's entry is newer than its staged hour
    guard = load.guard_sql("p.ops.t_loads", [one, two], {})
    assert "AND IFNULL(l.project, '') = b.project" in guard
    assert "'' AS project, '|2024013105' AS k" in guard and "'200' AS project, '200|2024013105' AS k" in guard


def test_a_projects_replace_deletes_and_counts_only_its_own_rows_of_the_hour():
    sql = load.group_commit_script("p.ops.t", "p.ops.t_loads", [staged("", "100"), staged("200", "200")],
                                   {("200", HOUR): load.Loaded(5, 4, T0, T0)}, "tok")
    delete = next(line for line in sql.splitlines() if line.startswith("DELETE FROM `p.ops.t`"))
    assert "(_upload_hour = TIMESTAMP '2024-01-31 05:00:00+00' AND app = 200 AND DATE(event_time)" in delete
    assert ("CASE WHEN _upload_hour = TIMESTAMP '2024-01-31 05:00:00+00' AND app = 100 THEN '|2024013105' "
            "WHEN _upload_hour = TIMESTAMP '2024-01-31 05:00:00+00' AND app = 200 THEN '200|2024013105' END") in delete
    ledger_insert = next(line for line in sql.splitlines() if line.startswith("INSERT INTO `p.ops.t_loads`"))
    assert "project)" in ledger_insert.split("SELECT")[0] and "NULLIF(g.project, '')" in ledger_insert
    assert "GROUP BY k) AS c ON c.k = g.k" in ledger_insert


def test_the_one_project_form_replaces_the_whole_hour_as_before_and_is_tried_last():
    assert load.scope_term(staged("", "").load) == "_upload_hour = TIMESTAMP '2024-01-31 05:00:00+00'"
    key = load.scope_key_sql([staged("", ""), staged("200", "200")])
    assert key.index("app = 200") < key.index("THEN '|2024013105'")


def test_the_ledger_reads_of_the_default_project_take_the_rows_recorded_before_there_were_projects():
    assert "AND IFNULL(project, '') = ''" in load.ledger_entry_sql("p.ops.t_loads", HOUR)
    assert "AND IFNULL(project, '') = '200'" in load.ledger_entry_sql("p.ops.t_loads", HOUR, "200")
    assert "COUNTIF(app IS NULL OR app != 200) AS foreign_rows" in load.staged_summary_sql("s", "200")
    assert "0 AS foreign_rows" in load.staged_summary_sql("s")
    assert load.waiting_name("p.ops.t", HOUR, 22) == "load/waiting/ops.t/2024013105-22.json"
    assert load.waiting_name("p.ops.t", HOUR, 22, "200") == "load/waiting/ops.t/p200-2024013105-22.json"
    old = staged("", "").to_json().replace(', "project": ""', "").replace(', "app": ""', "")
    assert '"project"' not in old and load.Staged.from_json(old).load.key == ("", HOUR)  # a marker left by an older version


def test_markers_round_trip_with_their_project():
    marker = staged("200", "200", HOUR + timedelta(hours=1))
    assert load.Staged.from_json(marker.to_json()) == marker


def test_the_stub_serves_each_project_its_own_events_to_its_own_keys_only():
    import io
    import zipfile

    import requests

    from ampbq.tools.sandbox import GeneratedSource
    from ampbq.tools.stub import ExportApiStub

    with ExportApiStub(GeneratedSource(2, 1, app=100), "k100", "s100") as stub:
        stub.add_project(GeneratedSource(3, 1, app=200), "k200", "s200")

        def entries(auth) -> tuple[int, list[str]]:
            got = requests.get(f"{stub.url}/api/2/export", params={"start": "20240131T05", "end": "20240131T05"},
                               auth=auth, timeout=10)
            return got.status_code, (zipfile.ZipFile(io.BytesIO(got.content)).namelist() if got.status_code == 200 else [])
        for app in ("100", "200"):
            status, names = entries((f"k{app}", f"s{app}"))
            assert status == 200 and names and all(n.startswith(f"{app}/{app}_2024-01-31_5#") for n in names)
        assert entries(("k100", "s200"))[0] == 401  # one project's key with the other's secret


def test_the_demo_prints_a_line_per_project_before_the_whole_runs_line():
    from ampbq.tools.demo import DemoReport, HourReport

    day = HOUR.date()
    one = DemoReport(day, [HourReport(HOUR, 5, 5), HourReport(HOUR + timedelta(hours=1), 4, 3, 1)], project="100001")
    two = DemoReport(day, [HourReport(HOUR, 2, 2), HourReport(HOUR + timedelta(hours=1), 1, 1)], project="100002")
    report = DemoReport(day, projects=[one, two], conflicts=0)
    assert report.project_lines() == ["demo: project=100001 date=2024-01-31 hours=2 events=9 loaded=8 rejected=1",
                                      "demo: project=100002 date=2024-01-31 hours=2 events=3 loaded=3 rejected=0"]
    assert report.summary_line() == "demo: date=2024-01-31 hours=2 events=12 loaded=11 rejected=1 conflicts=0 projects=2"
    assert report.ok
    two.hours[1].loaded = 0  # one hour of one project short: the run fails
    assert not report.ok
    single = DemoReport(day, [HourReport(HOUR, 5, 5)])
    assert single.summary_line() == "demo: date=2024-01-31 hours=1 events=5 loaded=5 rejected=0" and single.project_lines() == []


def test_a_ledger_made_before_projects_gets_the_project_column_added_in_place():
    from google.cloud import bigquery

    from ampbq import bigquery as bq_adapter
    from ampbq import schema

    config = Config.from_env(BASE)
    old = [f for f in bq_adapter.schema_fields(schema.LEDGER_SCHEMA_FILE) if f.name != "project"]

    class Client:
        def __init__(self, fields):
            self.table, self.updates = bigquery.Table(config.ledger_table_id, schema=fields), []

        def get_table(self, table_id):
            return self.table

        def query(self, sql, job_config=None):
            self.updates.append(sql)
            return type("Job", (), {"result": lambda job: []})()

    upgraded = Client(old)
    bq_adapter._add_ledger_columns(upgraded, config)
    assert upgraded.updates == [f"ALTER TABLE `{config.ledger_table_id}` ADD COLUMN IF NOT EXISTS `project` STRING"]
    current = Client(bq_adapter.schema_fields(schema.LEDGER_SCHEMA_FILE))
    bq_adapter._add_ledger_columns(current, config)
    assert current.updates == []
