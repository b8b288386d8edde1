"""Static checks of terraform/: environments, providers, buckets, BigQuery, monitoring and CI.

Parsed with python-hcl2 (see terraform_hcl.py); no Terraform CLI, providers or credentials.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from terraform_hcl import (
    ENVS,
    MODULE,
    REPO,
    SCHEMA_DIR,
    SHARED,
    TERRAFORM,
    all_tf_text,
    env_locals,
    file_call_path,
    named_blocks,
    parse_hcl,
    parsed,
    quoted_strings,
    resource,
    resources,
    single,
    terraform_block,
    tf_files,
    variable_default,
)

pytestmark = pytest.mark.terraform


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_tf_file_parses_as_hcl2(path):
    assert parse_hcl(path.read_text())


def test_layout_module_and_both_envs_present():
    assert (MODULE / "variables.tf").is_file()
    for env in ENVS:
        assert (TERRAFORM / "envs" / env / "main.tf").is_file()


@pytest.mark.parametrize("env", ENVS)
def test_env_module_call_uses_shared_module_and_own_name(env):
    env_dir = TERRAFORM / "envs" / env
    call = named_blocks(env_dir, "module")["pipeline"]
    assert call["source"] == "../../modules/pipeline"
    assert (env_dir / call["source"]).resolve() == MODULE.resolve()
    assert call["env"] == "${local.env}"
    assert env_locals(env)["env"] == env


@pytest.mark.parametrize("env", ENVS)
def test_env_root_is_its_own_main_tf_and_links_to_the_shared_files(env):
    env_dir = TERRAFORM / "envs" / env
    own = {p.name for p in env_dir.glob("*.tf") if not p.is_symlink()}
    assert own == {"main.tf"}, "every .tf file of an environment but main.tf is a link to envs/shared"
    linked = {p.name: p for p in env_dir.glob("*.tf") if p.is_symlink()}
    assert set(linked) == {p.name for p in SHARED.glob("*.tf")}
    for name, link in linked.items():
        # Relative, so that it resolves in any checkout.
        assert link.readlink() == Path("..") / "shared" / name, name
        assert link.resolve() == (SHARED / name).resolve(), name


@pytest.mark.parametrize("env", ENVS)
def test_env_main_tf_holds_only_what_differs_between_environments(env):
    own = parse_hcl((TERRAFORM / "envs" / env / "main.tf").read_text())
    assert set(own) == {"locals", "terraform"}
    assert set(single(own["locals"])) == {"env", "retention"}
    assert list(single(own["terraform"])) == ["backend"]
    # The shared files are one configuration: what they use of the environment is main.tf's.
    shared_text = "\n".join(p.read_text() for p in sorted(SHARED.glob("*.tf")))
    assert set(re.findall(r"\blocal\.(\w+)", shared_text)) == {"env", "retention"}
    assert set(parse_hcl(shared_text)) == {"terraform", "provider", "module", "variable", "output"}


def test_envs_differ_only_in_their_main_tf():
    staging, production = (TERRAFORM / "envs" / env for env in ENVS)
    for env_dir in (staging, production):
        assert set(parsed(env_dir)) == {"terraform", "provider", "module", "variable", "output", "locals"}
        assert list(named_blocks(env_dir, "module")) == ["pipeline"]
    mains = [(d / "main.tf").read_text() for d in (staging, production)]
    shapes = [re.sub(r"= \d+$", "= N", m, flags=re.M).replace(env, "ENV") for m, env in zip(mains, ENVS)]
    # Alike but for the name, the retention numbers and the comments.
    strip = lambda text: [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert strip(shapes[0]) == strip(shapes[1])


@pytest.mark.parametrize("env", ENVS)
def test_env_backend_gcs_uses_its_own_prefix(env):
    backend = single(terraform_block(TERRAFORM / "envs" / env)["backend"])
    assert list(backend) == ["gcs"]
    assert backend["gcs"]["prefix"] == f"ampbq/{env}"


def test_terraform_workspaces_not_used():
    assert "terraform.workspace" not in all_tf_text()


@pytest.mark.parametrize("directory", [MODULE] + [TERRAFORM / "envs" / e for e in ENVS], ids=lambda d: d.name)
def test_providers_google_8_and_archive_pinned(directory):
    providers = single(terraform_block(directory)["required_providers"])
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 8\.\d+|>= 8\.\d+, < 9\.0", providers["google"]["version"])
    assert providers["archive"]["source"] == "hashicorp/archive"
    assert re.fullmatch(r"~> 2\.\d+|>= 2\.\d+, < 3\.0", providers["archive"]["version"])


# --- BigQuery -------------------------------------------------------------------------------


def load_schema(path: Path) -> list[dict]:
    assert path.is_file(), f"{path} is missing"
    fields = json.loads(path.read_text())
    assert isinstance(fields, list) and fields
    for field in fields:
        assert {"name", "type"} <= field.keys(), field
    return fields


def test_events_table_schema_is_the_file_the_code_uses():
    path = file_call_path(resource("google_bigquery_table", "events")["schema"])
    assert path == (SCHEMA_DIR / "all_user_events.json").resolve()
    columns = {f["name"]: f for f in load_schema(path)}
    assert columns["event_time"]["type"] == "TIMESTAMP"
    for name in ("_upload_hour", "event_type", "user_id"):
        assert name in columns, f"clustering column {name} is not in the schema"


def test_loads_table_schema_is_the_ledger_file():
    table = resource("google_bigquery_table", "loads")
    assert file_call_path(table["schema"]) == (SCHEMA_DIR / "all_user_events_loads.json").resolve()
    load_schema(SCHEMA_DIR / "all_user_events_loads.json")
    assert table["table_id"] == "${var.table_id}_loads"


def test_events_table_partitioned_by_event_day_and_clustered():
    table = resource("google_bigquery_table", "events")
    assert single(table["time_partitioning"]) == {"type": "DAY", "field": "event_time"}
    assert table["clustering"] == ["_upload_hour", "event_type", "user_id"]
    assert table["require_partition_filter"] is False


def test_events_table_layout_matches_code_constants():
    from ampbq import schema

    table = resource("google_bigquery_table", "events")
    assert schema.PARTITION_FIELD == single(table["time_partitioning"])["field"]
    assert list(schema.CLUSTERING_FIELDS) == table["clustering"]


def test_tables_deletion_protected_in_every_env():
    for name in ("events", "loads"):
        assert resource("google_bigquery_table", name)["deletion_protection"] == "${var.deletion_protection}"
    assert variable_default("deletion_protection") is True
    for env in ENVS:
        # Passed through from terraform.tfvars, where it is true unless set false to tear down.
        assert named_blocks(TERRAFORM / "envs" / env, "module")["pipeline"]["deletion_protection"] == "${var.deletion_protection}"
        assert named_blocks(TERRAFORM / "envs" / env, "variable")["deletion_protection"]["default"] is True


def test_dataset_default_is_ops_in_configured_location():
    dataset = resource("google_bigquery_dataset", "ops")
    assert dataset["dataset_id"] == "${var.dataset_id}"
    assert dataset["location"] == "${var.bq_location}"


# --- buckets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data", "source"])
def test_bucket_uniform_access_public_prevention_versioning(name):
    bucket = resource("google_storage_bucket", name)
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert single(bucket["versioning"]) == {"enabled": True}


def test_data_bucket_lifecycle_expires_each_prefix_by_variable():
    rules = resource("google_storage_bucket", "data")["lifecycle_rule"]
    deletes = {}
    for rule in rules:
        condition, action = single(rule["condition"]), single(rule["action"])
        if action["type"] == "Delete" and "matches_prefix" in condition:
            deletes[tuple(condition["matches_prefix"])] = condition["age"]
    assert deletes == {
        ("export/",): "${var.export_retention_days}",
        ("import/",): "${var.import_retention_days}",
        ("rejects/",): "${var.rejects_retention_days}",
    }
    conditions = [single(rule["condition"]) for rule in rules]
    noncurrent = [c for c in conditions if "days_since_noncurrent_time" in c]
    assert noncurrent == [
        {"days_since_noncurrent_time": "${var.noncurrent_version_retention_days}", "with_state": "ARCHIVED"}
    ]


# --- APIs, monitoring, outputs, CI ------------------------------------------------------------


def test_project_services_enable_every_api_used():
    services = set(quoted_strings(resource("google_project_service", "this")["for_each"]))
    expected = {
        f"{api}.googleapis.com"
        for api in (
            "cloudfunctions", "run", "eventarc", "pubsub", "cloudscheduler", "cloudbuild",
            "artifactregistry", "secretmanager", "bigquery", "storage", "logging", "monitoring", "iam",
        )
    }
    assert expected <= services
    assert resource("google_project_service", "this")["disable_on_destroy"] is False


# The alerts, their log-based metrics and the dashboard are evaluated in test_alerts_and_dashboard.py.


def test_every_alert_notifies_the_channels_and_the_deadline_defaults():
    for name, policy in resources("google_monitoring_alert_policy").items():
        assert policy["notification_channels"] == "${var.notification_channels}", name
    assert variable_default("completeness_deadline_hour_utc") == 5
    assert variable_default("completeness_expected_hours") == 24


def test_notification_channels_variable_is_a_list_of_ids():
    assert named_blocks(MODULE, "variable")["notification_channels"]["type"] == "${list(string)}"
    assert variable_default("notification_channels") == []


def test_outputs_expose_names_a_user_needs():
    outputs = named_blocks(MODULE, "output")
    wanted = {
        "bucket_name", "topic_name", "scheduler_job_name", "function_names", "function_uris",
        "events_table_id", "loads_table_id", "service_account_emails", "secret_ids",
    }
    assert wanted <= outputs.keys()
    for env in ENVS:
        assert wanted <= named_blocks(TERRAFORM / "envs" / env, "output").keys()


def test_ci_workflow_runs_fmt_init_validate_for_both_envs():
    workflow = (REPO / ".github" / "workflows" / "terraform.yml").read_text()
    assert "terraform fmt -check -recursive" in workflow
    assert "init -backend=false" in workflow
    assert "validate" in workflow
    for env in ENVS:
        assert env in workflow



def test_dedup_view_is_the_sql_file_the_local_stack_uses_over_the_events_table():
    from ampbq import views
    from terraform_hcl import resolve_template, unwrap

    view = resource("google_bigquery_table", "events_dedup")
    assert view["table_id"] == "${var.table_id}" + views.DEDUP_SUFFIX
    assert view["deletion_protection"] == "${var.deletion_protection}"
    block = single(view["view"])
    assert block["use_legacy_sql"] is False
    match = re.fullmatch(r'templatefile\("(.+?)", \{events_table = "(.+)"\}\)', unwrap(block["query"]))
    assert match, block["query"]
    assert Path(resolve_template(match.group(1))).resolve() == views.DEDUP_VIEW_FILE.resolve()
    # The one name views.dedup_view_sql fills in too, set to the events table's full id.
    assert match.group(2) == "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    assert "${events_table}" in views.DEDUP_VIEW_FILE.read_text()


@pytest.mark.parametrize("name", ["events_properties", "events_users", "events_native"])
def test_query_view_is_the_sql_file_the_local_stack_uses_over_the_events_table(name):
    from ampbq import views
    from terraform_hcl import resolve_template, unwrap

    suffix = "_" + name.removeprefix("events_")
    view = resource("google_bigquery_table", name)
    assert view["table_id"] == "${var.table_id}" + suffix
    assert view["deletion_protection"] == "${var.deletion_protection}"
    assert "schema" not in view  # BigQuery takes a view's columns from its query
    block = single(view["view"])
    assert block["use_legacy_sql"] is False
    match = re.fullmatch(r'templatefile\("(.+?)", \{events_table = "(.+)"\}\)', unwrap(block["query"]))
    assert match, block["query"]
    assert Path(resolve_template(match.group(1))).resolve() == views.view_files()[suffix].resolve()
    assert match.group(2) == "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"


def test_every_view_of_ampbq_views_is_a_terraform_view():
    from ampbq import views

    in_terraform = set()
    for path in MODULE.glob("*.tf"):
        in_terraform.update(re.findall(r'templatefile\("\$\{local\.schema_dir\}/([\w.]+\.sql)"', path.read_text()))
    assert in_terraform == {path.name for path in views.view_files().values()}
