"""Static wiring checks of terraform/: scheduler, functions, triggers, secrets and IAM.

The Terraform CLI and its providers cannot be downloaded where these tests run, so the .tf files
are parsed with python-hcl2 (see terraform_hcl.py) and the parsed blocks are asserted on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from terraform_hcl import (
    ENTRY_POINTS,
    FUNCTIONS,
    MODULE,
    REPO,
    all_tf_text,
    labelled,
    module_locals,
    optional_default,
    quoted_strings,
    resolve_template,
    resource,
    resources,
    single,
    unwrap,
    variable_default,
)

pytestmark = pytest.mark.terraform

CODE_ENV_VARS = (
    "AMPBQ_BUCKET",
    "AMPBQ_PROJECT",
    "AMPBQ_DATASET",
    "AMPBQ_TABLE",
    "AMPBQ_BQ_LOCATION",
    "AMPLITUDE_REGION",
    "AMPLITUDE_URL",
)
SECRET_ENV_VARS = ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY")
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"

# Who gets which role on what: (resource type, role, principal). Principals are the module's
# service accounts, plus the project's Cloud Storage service agent ("gcs-agent").
EXPECTED_GRANTS = {
    ("google_storage_bucket_iam_member", "roles/storage.objectUser", "export"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "export"),  # native_export only: Amplitude's bucket
    ("google_storage_bucket_iam_member", "roles/storage.objectUser", "transform"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer", "load"),
    ("google_storage_bucket_iam_member", "roles/storage.objectCreator", "load"),
    ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor", "export"),
    ("google_project_iam_member", "roles/bigquery.jobUser", "load"),
    ("google_project_iam_member", "roles/bigquery.jobUser", "export"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor", "export"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor", "load"),
    ("google_project_iam_member", "roles/pubsub.publisher", "gcs-agent"),
    ("google_project_iam_member", "roles/eventarc.eventReceiver", "trigger"),
    ("google_cloud_run_v2_service_iam_member", "roles/run.invoker", "trigger"),
    ("google_project_iam_member", "roles/logging.logWriter", "build"),
    ("google_project_iam_member", "roles/artifactregistry.writer", "build"),
    ("google_project_iam_member", "roles/storage.objectViewer", "build"),
}
IAM_MEMBER_TYPES = {grant[0] for grant in EXPECTED_GRANTS}


def function(name: str) -> dict:
    return resource("google_cloudfunctions2_function", name)


def service_config(name: str) -> dict:
    return single(function(name)["service_config"])


def event_trigger(name: str) -> dict:
    return single(function(name)["event_trigger"])


def service_account_of(member: str) -> str:
    if "google_storage_project_service_account.gcs" in member:
        return "gcs-agent"
    match = re.fullmatch(r"serviceAccount:\$\{google_service_account\.(\w+)\.email\}", member)
    assert match, f"unexpected IAM member {member!r}"
    return match.group(1)


def iam_grants() -> set[tuple[str, str, str]]:
    grants = set()
    for (type_, _), body in labelled(MODULE, "resource").items():
        if type_ not in IAM_MEMBER_TYPES:
            continue
        roles = [body["role"]]
        if body["role"] == "${each.key}":
            roles = quoted_strings(body["for_each"])
        grants |= {(type_, role, service_account_of(body["member"])) for role in roles}
    return grants


# --- scheduler and topic --------------------------------------------------------------------


def test_scheduler_job_publishes_the_chosen_schedules_message_in_utc():
    # What each schedule publishes, and when: tests/terraform/test_schedule.py.
    job = resource("google_cloud_scheduler_job", "daily")
    assert job["schedule"] == "${local.schedule.cron}"
    assert job["time_zone"] == "Etc/UTC"
    assert job["name"] == "${var.scheduler_job_name}"
    assert variable_default("scheduler_job_name") == "fire-amplitude-to-big-query-sync"
    assert variable_default("schedule") == "daily"
    target = single(job["pubsub_target"])
    assert target["topic_name"] == "${google_pubsub_topic.daily_runs.id}"
    assert unwrap(target["data"]) == "base64encode(local.schedule.body)"


def test_topic_default_name_is_daily_runs():
    assert resource("google_pubsub_topic", "daily_runs")["name"] == "${var.topic_name}"
    assert variable_default("topic_name") == "daily-runs"


# --- functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_build_uses_python312_and_code_entry_point(name):
    build = single(function(name)["build_config"])
    assert build["runtime"] == "python312"
    assert build["entry_point"] == ENTRY_POINTS[name]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_retries_on_with_event_timeout_at_most_540(name):
    assert event_trigger(name)["retry_policy"] == "RETRY_POLICY_RETRY"
    timeout = service_config(name)["timeout_seconds"]
    assert isinstance(timeout, int) and 0 < timeout <= 540


def test_export_trigger_pubsub_daily_runs_message_published():
    trigger = event_trigger("export")
    assert trigger["event_type"] == PUBSUB_PUBLISHED
    assert trigger["pubsub_topic"] == "${google_pubsub_topic.daily_runs.id}"
    assert "event_filters" not in trigger


@pytest.mark.parametrize("name", ["transform", "load"])
def test_storage_trigger_object_finalized_on_data_bucket(name):
    trigger = event_trigger(name)
    assert trigger["event_type"] == GCS_FINALIZED
    assert single(trigger["event_filters"]) == {
        "attribute": "bucket",
        "value": "${google_storage_bucket.data.name}",
    }
    assert trigger["trigger_region"] == "${lower(google_storage_bucket.data.location)}"
    assert "pubsub_topic" not in trigger


def test_functions_each_run_as_own_service_account():
    runtime = [service_config(name)["service_account_email"] for name in FUNCTIONS]
    assert runtime == [f"${{google_service_account.{name}.email}}" for name in FUNCTIONS]
    triggers = {event_trigger(name)["service_account_email"] for name in FUNCTIONS}
    assert triggers == {"${google_service_account.trigger.email}"}
    builds = {single(function(name)["build_config"])["service_account"] for name in FUNCTIONS}
    assert builds == {"${google_service_account.build.id}"}
    assert set(resources("google_service_account")) == {*FUNCTIONS, "trigger", "build"}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_sized_and_limited_by_variables(name):
    config = service_config(name)
    assert config["available_memory"] == f"${{var.memory.{name}}}"
    assert config["max_instance_count"] == f"${{var.max_instances.{name}}}"
    assert config["max_instance_request_concurrency"] == 1
    assert config["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_function_sizes_default_to_issue_values():
    assert {f: optional_default("memory", f) for f in FUNCTIONS} == {
        "export": "1Gi",
        "transform": "2Gi",
        "load": "512Mi",
    }
    assert {f: optional_default("max_instances", f) for f in FUNCTIONS} == {
        "export": "10",
        "transform": "24",
        "load": "8",
    }
    assert float(optional_default("cpu", "transform")) >= 1


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_source_object_named_by_zip_hash(name):
    source = single(single(single(function(name)["build_config"])["source"])["storage_source"])
    assert source["bucket"] == "${google_storage_bucket.source.name}"
    assert source["object"] == f'${{google_storage_bucket_object.function_source["{name}"].name}}'
    zip_object = resource("google_storage_bucket_object", "function_source")
    assert "data.archive_file.function[each.key].output_md5" in zip_object["name"]
    assert zip_object["source"] == "${data.archive_file.function[each.key].output_path}"


def test_archive_packs_the_listed_function_files_and_shared_files_at_ampbq():
    archive = labelled(MODULE, "data")[("archive_file", "function")]
    sources = [single(list(block.values())) for block in archive["dynamic"]]
    # The one list of what ships (functions/runtime.json); test_function_archive.py checks the
    # zips `make package` writes hold the same entries.
    assert unwrap(module_locals()["runtime"]) == 'jsondecode(file("${local.repo_root}/functions/runtime.json"))'
    assert unwrap(module_locals()["functions"]) == "toset(local.runtime.functions)"
    assert [unwrap(s["for_each"]) for s in sources] == ["local.runtime.function_files", "local.runtime.shared_files"]
    contents = [single(s["content"]) for s in sources]
    assert [c["filename"] for c in contents] == ["${source.value}", "${source.value}"]
    assert contents[0]["content"] == '${file("${local.repo_root}/functions/${each.key}/${source.value}")}'
    assert contents[1]["content"] == '${file("${local.repo_root}/shared/${source.value}")}'
    assert Path(resolve_template(module_locals()["repo_root"])).resolve() == REPO
    assert archive["output_file_mode"] == "0644"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_folder_has_main_with_entry_point_and_requirements(name):
    from helpers import load_function_main

    folder = REPO / "functions" / name
    assert (folder / "requirements.txt").is_file(), f"{folder}/requirements.txt is missing"
    assert callable(getattr(load_function_main(name), ENTRY_POINTS[name], None)), f"{folder}/main.py has no {ENTRY_POINTS[name]}"


def test_shared_package_is_importable_from_zip_root():
    assert (REPO / "shared" / "ampbq" / "__init__.py").is_file()


def test_function_env_sets_every_variable_the_code_reads():
    env_expr = module_locals()["function_env"]
    for name in CODE_ENV_VARS:
        assert re.search(rf"\b{name} = ", env_expr), f"{name} is not set for the functions"
    assert "AMPBQ_BUCKET = google_storage_bucket.data.name" in env_expr
    assert "AMPBQ_DATASET = google_bigquery_dataset.ops.dataset_id" in env_expr
    assert "AMPBQ_TABLE = google_bigquery_table.events.table_id" in env_expr
    assert variable_default("dataset_id") == "ops"
    assert variable_default("table_id") == "all_user_events"
    for name in FUNCTIONS:
        assert service_config(name)["environment_variables"] == "${local.function_env}"


def test_function_env_names_are_the_ones_the_code_reads():
    from ampbq.config import Config
    from helpers import RecordingEnv

    env = RecordingEnv({"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p"})
    Config.from_env(env)
    assert [name for name in CODE_ENV_VARS + SECRET_ENV_VARS if name not in env.asked] == []


# --- secrets --------------------------------------------------------------------------------


def test_secrets_mounted_only_on_export():
    # One mount per secret of secrets.tf (the two keys, and each other project's two with
    # amplitude_projects: tests/terraform/test_projects.py evaluates the map).
    (mounts,) = service_config("export")["dynamic"]
    mount = mounts["secret_environment_variables"]
    assert mount["for_each"] == "${local.amplitude_secrets}"
    (content,) = mount["content"]
    assert content["key"] == "${secret_environment_variables.key}"
    assert content["secret"] == "${google_secret_manager_secret.amplitude[secret_environment_variables.key].secret_id}"
    assert "AMPLITUDE_API_KEY    = var.secret_ids.api_key" in (MODULE / "secrets.tf").read_text()
    for name in ("transform", "load"):
        assert "secret_environment_variables" not in service_config(name)
    for key in SECRET_ENV_VARS:  # never a plain environment variable, which all three share
        assert key not in module_locals()["function_env"]


def test_secrets_created_without_versions_and_default_ids():
    assert set(resources("google_secret_manager_secret")) == {"amplitude"}
    assert "google_secret_manager_secret_version" not in all_tf_text()
    assert optional_default("secret_ids", "api_key") == "amplitude-api-key"
    assert optional_default("secret_ids", "secret_key") == "amplitude-secret-key"


def test_secret_accessor_granted_to_export_only():
    holders = {p for (_, role, p) in iam_grants() if role == "roles/secretmanager.secretAccessor"}
    assert holders == {"export"}
    for body in resources("google_project_iam_member").values():
        assert "secretmanager" not in json.dumps(body)


# --- IAM ------------------------------------------------------------------------------------


def test_iam_grants_are_exactly_the_documented_table():
    assert iam_grants() == EXPECTED_GRANTS


def test_iam_no_primitive_roles_anywhere():
    assert not re.search(r"roles/(owner|editor|viewer)\b", all_tf_text())


def test_iam_no_public_principals_anywhere():
    text = all_tf_text()
    assert "allUsers" not in text
    assert "allAuthenticatedUsers" not in text


def test_iam_run_invoker_scoped_to_each_function_service():
    invoker = resource("google_cloud_run_v2_service_iam_member", "trigger_invokes")
    targets = invoker["for_each"]
    assert targets == {name: f"${{google_cloudfunctions2_function.{name}.name}}" for name in FUNCTIONS}
    assert invoker["name"] == "${each.value}"
