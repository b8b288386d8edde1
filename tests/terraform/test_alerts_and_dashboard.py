"""The module's alerts, log-based metrics and dashboard, evaluated (tests/monitoring_model.py) on
lines the package's own logging code writes, and on made-up series where a case is too slow to
stage through the local stack. tests/integration/test_monitoring.py does the same on the lines of
real runs through it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shlex
from datetime import datetime, timedelta, timezone

import pytest

from ampbq import entry, export_step, load_step, logs, naming
from ampbq.tools.cli import status as status_command
from ampbq.config import Config
from ampbq.errors import TransientError
from ampbq.naming import HourRange
from monitoring_model import (SEVERITIES, LogFilter, Terraform, all_series, extract, firing, log_entry,
                              module_metrics, only_value, promql)
from terraform_hcl import ENVS, MODULE, TERRAFORM, labelled, named_blocks, optional_default, parsed, resources

pytestmark = pytest.mark.terraform

TF = Terraform({"env": "staging", "project_id": "my-staging-project"})
NAMES = TF.local("function_names")
DAY = datetime(2024, 1, 31, tzinfo=timezone.utc)
RUN_AT = DAY + timedelta(days=1, hours=3, minutes=1)  # the scheduled run, 03:00 UTC the next day


class _NoObjects:
    """A bucket holding no object (what write_empty_hours asks of it)."""

    def get_blob(self, name):
        return None


def written_lines(work) -> list[dict]:
    """The JSON lines the package's logging writes while `work()` runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger("ampbq")
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    try:
        work()
    finally:
        root.removeHandler(handler)
        root.level = level
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def load_line(hour: int, rows: int = 10, rejected: int = 0) -> dict:
    outcome = load_step.LoadOutcome(DAY.replace(hour=hour), 1700000000000000 + hour, rows + rejected, rows, rejected, rows)
    (line,) = [line for line in written_lines(lambda: entry._summary(outcome)) if line["message"] == "hour loaded"]
    return line


def export_no_data_lines(hours: list[int]) -> list[dict]:
    """The export's lines for hours Amplitude has no data for (no hour object to empty)."""
    result = export_step.ExportResult(HourRange.day(DAY), hours={naming.hour_object_name(DAY.replace(hour=h)): 1
                                                           for h in range(24) if h not in hours})
    return [line for line in written_lines(lambda: export_step.write_empty_hours(_NoObjects(), HourRange.day(DAY), result))]


def at(line: dict, moment: datetime) -> dict:
    return line | {"time": moment.isoformat()}


def entries(lines_by_function: list[tuple[str, dict]]) -> list[dict]:
    return [log_entry(line, NAMES[function]) for function, line in lines_by_function]


def a_day(quiet: set[int], missing: set[int] = frozenset(), again: set[int] = frozenset()) -> list[dict]:
    """The run of DAY as the functions log it: the export's lines for the quiet hours, then a
    load line for every other hour not `missing` (those in `again` twice), a few seconds apart."""
    lines = [("export", at(line, RUN_AT)) for line in export_no_data_lines(sorted(quiet))]
    loaded = [h for h in range(24) if h not in quiet and h not in missing]
    for n, hour in enumerate(loaded + sorted(again)):
        lines.append(("load", at(load_line(hour), RUN_AT + timedelta(seconds=20 + 3 * n))))
    return entries(lines)


def evaluations(query: str, day_entries: list[dict]) -> list[str]:
    """HH:MM of the evaluations (every 5 minutes of the day after DAY) at which `query` fires."""
    series = all_series(module_metrics(TF).values(), day_entries)
    start = DAY + timedelta(days=1)
    times = [start + timedelta(minutes=5 * n) for n in range(24 * 12)]
    return [f"{t:%H:%M}" for t in times if firing(promql(query, series, t.timestamp()))]


DEADLINE_HOUR = [f"05:{m:02d}" for m in range(0, 60, 5)]


# --- "hour loaded": the lines and the completeness alert ----------------------------------------


def test_export_and_load_write_hour_loaded_with_the_same_labels_and_fields():
    export_line = export_no_data_lines([5])[0]
    loaded = load_line(5, rows=8, rejected=2)
    for line in (export_line, loaded):
        assert line["message"] == "hour loaded"
        assert {k: line["logging.googleapis.com/labels"][k] for k in ("date", "hour")} == {"date": "2024-01-31", "hour": "05"}
        assert line["hour_end_unix"] == int(datetime(2024, 1, 31, 6, tzinfo=timezone.utc).timestamp())
        assert line["lag_seconds"] > 0
    assert (loaded["rows"], loaded["rejected"], loaded["events"], loaded["step"]) == (8, 2, 10, "load")
    assert loaded["generation"] == 1700000000000005  # the fields the line had keep their names
    assert export_line["step"] == "export" and export_line["reason"] == "no data at Amplitude"


def test_the_metric_counts_the_export_no_data_lines_and_the_load_lines():
    metric = module_metrics(TF)["hours_loaded"]
    day = a_day(quiet={2, 3})
    services = {e["resource"]["labels"]["service_name"] for e in metric.matching(day)}
    assert services == {NAMES["export"], NAMES["load"]}
    assert len(metric.matching(day)) == 24
    transform_line = log_entry(at(load_line(1), RUN_AT), NAMES["transform"])
    assert not metric.matching([transform_line])


def test_a_day_with_quiet_hours_does_not_fire():
    assert evaluations(TF.local("completeness_query"), a_day(quiet={1, 2, 3, 4, 22, 23})) == []


def test_a_day_with_a_missing_hour_fires_throughout_the_deadline_hour_only():
    assert evaluations(TF.local("completeness_query"), a_day(quiet={2, 3}, missing={7})) == DEADLINE_HOUR


def test_an_hour_logged_twice_is_one_hour():
    # Hours 00-05 loaded again (a re-run of part of the day) do not make up for a missing hour.
    day = a_day(quiet=set(), missing={7}, again={0, 1, 2, 3, 4, 5})
    assert len(module_metrics(TF)["hours_loaded"].matching(day)) == 29
    assert evaluations(TF.local("completeness_query"), day) == DEADLINE_HOUR
    both = a_day(quiet={5}) + entries([("load", at(load_line(5), RUN_AT))])  # a no-data hour loaded too
    assert evaluations(TF.local("completeness_query"), both) == []


def test_a_run_that_did_nothing_fires():
    assert evaluations(TF.local("completeness_query"), []) == DEADLINE_HOUR


def shifted(day_entries: list[dict], days: int) -> list[dict]:
    """The same lines for the upload day `days` later (hour_end_unix moved), logged at the same times."""
    return [e | {"jsonPayload": e["jsonPayload"] | {"hour_end_unix": e["jsonPayload"]["hour_end_unix"] + days * 86400},
                 "labels": e["labels"] | {"date": f"{DAY + timedelta(days=days):%Y-%m-%d}"}} for e in day_entries]


def test_a_backfill_of_another_day_does_not_hide_a_missing_hour_of_yesterday():
    yesterday = a_day(quiet={2}, missing={7})
    backfill = shifted(a_day(quiet=set()), -30)  # a whole older day, loaded in the same window
    assert evaluations(TF.local("completeness_query"), yesterday + backfill) == DEADLINE_HOUR
    assert evaluations(TF.local("completeness_query"), backfill) == DEADLINE_HOUR


def test_hours_done_through_the_day_by_hourly_runs_make_a_complete_day():
    lines = []
    for hour in range(24):  # each hour loaded at minute 5, two hours after it ends
        done = DAY + timedelta(hours=hour + 3, minutes=5)
        function = "export" if hour in (3, 4) else "load"
        line = export_no_data_lines([hour])[0] if function == "export" else load_line(hour)
        lines.append((function, at(line, done)))
    assert evaluations(TF.local("completeness_query"), entries(lines)) == []
    assert evaluations(TF.local("completeness_query"), entries(lines[1:])) == DEADLINE_HOUR  # hour 00 missing


# --- freshness ----------------------------------------------------------------------------------


def age_hours(day_entries: list[dict], moment: datetime) -> float:
    series = all_series(module_metrics(TF).values(), day_entries)
    query = TF.local("freshness_query").rsplit(">", 1)[0]
    return only_value(promql(query, series, moment.timestamp())) / 3600


def stale(day_entries: list[dict], moment: datetime) -> bool:
    return firing(promql(TF.local("freshness_query"), all_series(module_metrics(TF).values(), day_entries),
                         moment.timestamp()))


def test_freshness_threshold_follows_the_schedule_unless_set():
    assert TF.vars["freshness_threshold_hours"] is None and TF.vars["schedule"] == "daily"
    assert TF.local("freshness_threshold_hours") == 30
    hourly = Terraform({"env": "staging", "project_id": "my-staging-project", "schedule": "hourly"})
    assert hourly.local("freshness_threshold_hours") == 4 and "hourly run" in hourly.local("data_stale_doc")
    chosen = Terraform({"env": "staging", "project_id": "my-staging-project", "schedule": "hourly",
                        "freshness_threshold_hours": 6})
    assert chosen.local("freshness_threshold_hours") == 6
    condition = named_blocks(MODULE, "variable")["freshness_threshold_hours"]["validation"][0]["condition"]
    assert condition == ("${coalesce(var.freshness_threshold_hours, 30) >= 4 && "
                         "floor(coalesce(var.freshness_threshold_hours, 30)) == coalesce(var.freshness_threshold_hours, 30)}")


def test_freshness_follows_the_newest_hour_done_across_a_day():
    day = a_day(quiet={23})  # the last hour had no data: the export's line is the newest
    midnight = DAY + timedelta(days=1)  # when hour 23 ends
    assert age_hours(day, RUN_AT + timedelta(minutes=5)) == pytest.approx(3 + 6 / 60)
    for hours_after_midnight, fires in ((3.2, False), (26.9, False), (29.9, False), (30.1, True), (40, True)):
        assert stale(day, midnight + timedelta(hours=hours_after_midnight)) is fires, hours_after_midnight
    assert age_hours(day, midnight + timedelta(hours=30.1)) == pytest.approx(30.1)


def test_freshness_fires_on_old_hours_only_and_on_silence():
    recent = a_day(quiet=set())
    old = [e | {"jsonPayload": e["jsonPayload"] | {"hour_end_unix": e["jsonPayload"]["hour_end_unix"] - 40 * 3600}}
           for e in recent]  # the same lines, for hours 40 h older (a backfill of an old day)
    moment = RUN_AT + timedelta(minutes=10)
    assert not stale(recent, moment)
    assert stale(old, moment) and age_hours(old, moment) == pytest.approx(40 + 3 + 11 / 60)
    assert not stale(recent + old, moment)  # the newest counts
    assert stale([], moment)


# --- errors, retries ----------------------------------------------------------------------------


def test_error_metric_and_alert_match_errors_of_every_function_but_429():
    metric = module_metrics(TF)["function_errors"]
    alert_filter = TF.resource("google_monitoring_alert_policy", "function_errors", "conditions")["conditions"][0]
    alert_filter = LogFilter(alert_filter["condition_matched_log"][0]["filter"])
    error = {"severity": "ERROR", "message": "load failed permanently: x", "time": RUN_AT.isoformat()}
    for function in NAMES:
        assert metric.matching(entries([(function, error)])) and alert_filter.matches(entries([(function, error)])[0])
    for severity in ("CRITICAL", "EMERGENCY"):
        assert metric.matching(entries([("load", error | {"severity": severity})]))
    assert not metric.matching(entries([("load", error | {"severity": "WARNING"})]))
    busy = error | {"httpRequest": {"status": 429}}
    assert not metric.matching(entries([("load", busy)])) and not alert_filter.matches(entries([("load", busy)])[0])
    crash = error | {"httpRequest": {"status": 500}}
    assert metric.matching(entries([("load", crash)]))
    other_service = log_entry(error, "someone-elses-service")
    assert not metric.matching([other_service])


def test_retries_metric_matches_what_a_transient_failure_logs():
    def transient():
        with pytest.raises(TransientError):
            entry._run("load", None, lambda: (_ for _ in ()).throw(TransientError("BigQuery: backendError")))

    def unexpected():
        with pytest.raises(ZeroDivisionError):
            entry._run("transform", None, lambda: 1 / 0)

    retried = written_lines(transient) + written_lines(unexpected)
    metric = module_metrics(TF)["retries"]
    assert len(metric.matching(entries([("load", retried[0]), ("transform", retried[1])]))) == 2
    done = written_lines(lambda: entry._run("load", None, lambda: None))
    assert not metric.matching(entries([("load", line) for line in done]))


# --- the query language, as the model reads it --------------------------------------------------


def test_filter_language_precedence_missing_fields_and_operators():
    line = log_entry({"severity": "WARNING", "message": "Export failed, WILL be retried", "time": RUN_AT.isoformat()}, "svc")
    assert LogFilter('jsonPayload.message:"will be retried"').matches(line)  # has: substring, any case
    assert not LogFilter('jsonPayload.message="will be retried"').matches(line)
    assert LogFilter("NOT httpRequest.status=429").matches(line)  # a missing field compares false
    assert LogFilter("severity>=WARNING AND severity<ERROR").matches(line)
    assert [s for s in SEVERITIES if LogFilter(f"severity>={s}").matches(line)] == list(SEVERITIES[:5])
    # OR binds tighter than AND in Cloud Logging's query language.
    assert not LogFilter('severity=WARNING OR severity=ERROR AND resource.type="gce_instance"').matches(line)
    assert LogFilter('resource.labels.service_name=("x" OR "svc") resource.type="cloud_run_revision"').matches(line)


# --- documentation: what to run first ----------------------------------------------------------


def run_first(content: str) -> list[list[str]]:
    """The `ampbq status` command lines in an alert's documentation, split as a shell would."""
    blocks = re.findall(r"```sh\n(.*?)```", content, re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            if "ampbq status" in command:
                commands.append(shlex.split(re.sub(r'"\$\(date [^)]*\)"', "2024-01-31", command)))
    return commands


def alert_documentation() -> dict[str, str]:
    """Each alert policy's documentation, by address in the module: a for_each block gives one
    policy per key of its map, whose `doc` the block's documentation is (see the test below)."""
    docs = {}
    for name, body in resources("google_monitoring_alert_policy").items():
        if "for_each" not in body:
            docs[name] = TF.resource("google_monitoring_alert_policy", name, "documentation")["documentation"][0]["content"]
            continue
        assert body["documentation"][0]["content"] == "${each.value.doc}", name
        docs |= {f'{name}["{key}"]': each["doc"] for key, each in TF.value(body["for_each"]).items()}
    return docs


def test_the_three_alerts_and_the_two_that_share_one_block():
    assert set(alert_documentation()) == {"function_errors", 'hours_done["day_incomplete"]', 'hours_done["data_stale"]'}
    body = resources("google_monitoring_alert_policy")["hours_done"]
    assert body["for_each"] == "${local.hours_done_alerts}"
    assert body["display_name"] == "${each.value.display_name}"
    (condition,) = body["conditions"]
    assert condition["display_name"] == "${each.value.condition}"
    assert condition["condition_prometheus_query_language"][0]["query"] == "${each.value.query}"
    alerts = TF.local("hours_done_alerts")
    # The conditions the tests above evaluate are the ones the policies hold.
    assert alerts["day_incomplete"]["query"] == TF.local("completeness_query")
    assert alerts["data_stale"]["query"] == TF.local("freshness_query")
    assert alerts["day_incomplete"]["display_name"] == "ampbq staging: yesterday not fully loaded by 05:00 UTC"
    assert alerts["data_stale"]["display_name"] == "ampbq staging: newest loaded upload hour older than 30 h"
    # The two policies keep their state under the addresses they had as two blocks.
    moved = {m["from"]: m["to"] for m in parsed(MODULE)["moved"]}
    assert moved == {
        "${google_monitoring_alert_policy.day_incomplete}": '${google_monitoring_alert_policy.hours_done["day_incomplete"]}',
        "${google_monitoring_alert_policy.data_stale}": '${google_monitoring_alert_policy.hours_done["data_stale"]}',
    }


@pytest.mark.parametrize("policy", sorted(alert_documentation()))
def test_every_alert_says_which_status_command_to_run_first(policy):
    content = alert_documentation()[policy]
    assert "**Run first**" in content
    (command,) = run_first(content)
    assignments = dict(word.split("=", 1) for word in command if re.fullmatch(r"[A-Z_]+=.*", word))
    args = command[len(assignments):]
    assert args[:2] == ["ampbq", "status"]
    config = Config.from_env(assignments | {"AMPBQ_PROJECT": args[args.index("--project") + 1],
                                            "AMPBQ_BUCKET": args[args.index("--bucket") + 1]})
    assert (config.project, config.bucket) == ("my-staging-project", "my-staging-project-staging-amplitude")
    assert (config.dataset, config.table, config.bq_location) == ("ops", "all_user_events", "US")
    assert "--date" in args or {"--start", "--end"} <= set(args)
    status_command.make_context("status", args[2:])  # options the command has, with valid values


# --- dashboard ----------------------------------------------------------------------------------

_METRIC_NAME = re.compile(r"logging_googleapis_com:user_(\w+)")


def dashboard_queries() -> list[tuple[str, str]]:
    return [(tile["widget"]["title"], data_set["timeSeriesQuery"]["prometheusQuery"])
            for tile in TF.local("dashboard")["mosaicLayout"]["tiles"]
            for data_set in tile["widget"]["xyChart"]["dataSets"]]


def test_dashboard_is_the_encoded_local_and_its_tiles_fit_the_grid():
    assert resources("google_monitoring_dashboard")["pipeline"]["dashboard_json"] == "${jsonencode(local.dashboard)}"
    layout = TF.local("dashboard")["mosaicLayout"]
    cells = set()
    for tile in layout["tiles"]:
        assert tile["xPos"] + tile["width"] <= layout["columns"]
        covered = {(x, y) for x in range(tile["xPos"], tile["xPos"] + tile["width"])
                   for y in range(tile["yPos"], tile["yPos"] + tile["height"])}
        assert not covered & cells, tile["widget"]["title"]
        cells |= covered


def test_dashboard_charts_what_an_operator_needs():
    titles = " | ".join(title.lower() for title, _ in dashboard_queries())
    for subject in ("hours done per date", "rows", "rejected", "lag", "errors", "retries", "bytes billed"):
        assert subject in titles


def test_dashboard_names_only_metrics_of_the_module_with_their_kind():
    metrics = {m.name: m for m in module_metrics(TF).values()}
    used = set()
    for title, query in dashboard_queries():
        for name in _METRIC_NAME.findall(query):
            base = re.sub(r"_(sum|count|bucket)$", "", name)
            metric = metrics.get(base) if base != name and metrics.get(base) and metrics[base].distribution else metrics.get(name)
            assert metric is not None, f"{title}: {name} is no google_logging_metric of the module"
            assert metric.distribution == (base != name), f"{title}: {name} and the metric's value type"
            used.add(metric.resource_name)
        promql(query, [], DAY.timestamp())  # parses, and runs on no data
    alerts = TF.local("completeness_query") + TF.local("freshness_query")
    used |= {m.resource_name for m in metrics.values() if m.promql_name in alerts}
    assert used == set(resources("google_logging_metric")), "a metric nothing reads"


def test_every_value_metric_reads_a_number_the_hour_loaded_lines_carry():
    lines = entries([("load", at(load_line(3, rows=5, rejected=1), RUN_AT)),
                     ("export", at(export_no_data_lines([4])[0], RUN_AT))])
    values = {}
    for name, metric in module_metrics(TF).items():
        if metric.value_extractor and name != "commit_bytes_billed":  # that one reads "hours committed"
            values[name] = sorted(extract(metric.value_extractor, e) for e in metric.matching(lines))
    assert values.pop("loaded_hour_end") == [int(DAY.replace(hour=4).timestamp()), int(DAY.replace(hour=5).timestamp())]
    assert (values.pop("rows_per_hour"), values.pop("rejected_per_hour")) == ([5], [1])
    (lag,) = values.pop("load_lag")
    assert lag == pytest.approx((RUN_AT - DAY.replace(hour=4)).total_seconds(), abs=86400 * 10000)
    assert values == {}


# --- the model against Terraform itself -------------------------------------------------------

CROSS_CHECKED = ("function_log_filter", "error_log_filter", "retry_log_filter", "hour_loaded_filter",
                 "hour_committed_filter", "commit_filter", "hour_ends", "completeness_count", "completeness_query",
                 "newest_hour_end", "freshness_query", "status_command",
                 "function_errors_doc", "day_incomplete_doc", "data_stale_doc", "hours_done_alerts", "dashboard")


def test_the_model_evaluates_the_module_as_terraform_does(tmp_path):
    from test_terraform_inputs import terraform_console

    (tmp_path / "variables.tf").write_text((MODULE / "variables.tf").read_text())
    blocks = []
    for name in ("main.tf", "monitoring.tf", "dashboard.tf"):
        blocks += re.findall(r"^locals \{\n.*?^\}\n", (MODULE / name).read_text(), re.M | re.S)
    (tmp_path / "locals.tf").write_text("\n".join(blocks))
    expression = "{" + ", ".join(f"{name} = local.{name}" for name in CROSS_CHECKED) + "}"
    for env in ENVS:
        model = Terraform({"env": env, "project_id": f"my-{env}-project"})
        evaluated = terraform_console(tmp_path, expression, {"env": env, "project_id": f"my-{env}-project"})
        assert evaluated == {name: model.local(name) for name in CROSS_CHECKED}


# --- the deploy guide ---------------------------------------------------------------------------

# The APIs a resource (or data source) of each type needs on the project.
APIS = {
    "google_project_service": {"serviceusage"},
    "google_project_iam_member": {"cloudresourcemanager"},
    "google_service_account": {"iam"},
    "google_storage_bucket": {"storage"},
    "google_storage_bucket_object": {"storage"},
    "google_storage_bucket_iam_member": {"storage"},
    "google_storage_project_service_account": {"storage"},
    "google_pubsub_topic": {"pubsub"},
    "google_cloud_scheduler_job": {"cloudscheduler"},
    # 2nd gen: built by Cloud Build into Artifact Registry, served by Cloud Run, triggered through Eventarc.
    "google_cloudfunctions2_function": {"cloudfunctions", "cloudbuild", "artifactregistry", "run", "eventarc"},
    "google_cloud_run_v2_service_iam_member": {"run"},
    "google_secret_manager_secret": {"secretmanager"},
    "google_secret_manager_secret_iam_member": {"secretmanager"},
    "google_bigquery_dataset": {"bigquery"},
    "google_bigquery_dataset_iam_member": {"bigquery"},
    "google_bigquery_table": {"bigquery"},
    "google_logging_metric": {"logging"},
    "google_monitoring_alert_policy": {"monitoring"},
    "google_monitoring_dashboard": {"monitoring"},
    "archive_file": set(),  # local: zips the functions' source
}


def needed_apis() -> set[str]:
    types = {type_ for kind in ("resource", "data") for type_, _ in labelled(MODULE, kind)}
    unknown = types - APIS.keys()
    assert not unknown, f"say which APIs these resource types need: {sorted(unknown)}"
    return {f"{api}.googleapis.com" for type_ in types for api in APIS[type_]}


def guide_enables() -> set[str]:
    text = (TERRAFORM / "README.md").read_text().replace("\\\n", " ")
    commands = [line for line in text.splitlines() if line.strip().startswith("gcloud services enable")]
    assert commands, "terraform/README.md has no `gcloud services enable` command"
    return {word for command in commands for word in command.split() if word.endswith(".googleapis.com")}


def test_deploy_guide_enables_every_api_the_resources_need():
    missing = needed_apis() - guide_enables()
    assert not missing, f"terraform/README.md does not enable {sorted(missing)}"


def test_module_enables_every_api_its_resources_need_but_service_usage():
    enabled = set(resources("google_project_service")["this"]["for_each"].replace('"', " ").split())
    assert needed_apis() - {"serviceusage.googleapis.com"} <= enabled


def test_deploy_guide_names_the_secrets_the_module_creates():
    guide = (TERRAFORM / "README.md").read_text()
    for key in ("api_key", "secret_key"):
        assert f"gcloud secrets versions add {optional_default('secret_ids', key)}" in guide
