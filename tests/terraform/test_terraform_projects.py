"""amplitude_projects: several Amplitude projects in one deployment. What the map gives the
functions and which secrets it makes (evaluated by `terraform console`, offline), that the
one-project form is unchanged, and that both environments pass the map through."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ampbq.config import Config
from helpers import RecordingEnv
from terraform_hcl import ENVS, MODULE, TERRAFORM

pytestmark = pytest.mark.terraform
TERRAFORM_BIN = shutil.which("terraform")
VARIABLES = ("amplitude_projects", "amplitude_default_project", "secret_ids", "amplitude_source", "native_export_bucket",
             "native_export_prefix", "native_export_quiet_minutes", "transform_unit_mb")
STAND_INS = {"google_storage_bucket.data.name": '"data"', "var.project_id": '"p"', "google_bigquery_dataset.ops.dataset_id": '"ops"',
             "google_bigquery_table.events.table_id": '"t"', "var.bq_location": '"US"', "var.schedule": '"daily"',
             "var.amplitude_region": '"US"', "var.amplitude_url": '""'}


def evaluate(tmp_path: Path, tfvars: str, expression: str):
    """`expression` over the module's project variables, its secrets locals and function_env."""
    if TERRAFORM_BIN is None:
        pytest.fail("no terraform binary on PATH: install Terraform to evaluate the module's variables")
    text = (MODULE / "variables.tf").read_text()
    blocks = [re.search(rf'^variable "{name}" \{{\n.*?^\}}\n', text, re.M | re.S).group(0) for name in VARIABLES]
    secrets = re.search(r"^locals \{\n.*?^\}\n", (MODULE / "secrets.tf").read_text(), re.M | re.S).group(0)
    functions = (MODULE / "functions.tf").read_text()
    env = re.search(r"^  function_env = merge\(\n.*?^  \)\n", functions, re.M | re.S).group(0)
    env = re.search(r"^  amplitude_project_list = .*\n", functions, re.M).group(0) + env
    for reference, value in STAND_INS.items():
        env = env.replace(reference, value)
    (tmp_path / "main.tf").write_text("\n".join(blocks) + "\n" + secrets + "\nlocals {\n" + env + "}\n")
    (tmp_path / "terraform.tfvars").write_text(tfvars)
    environ = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    run = subprocess.run([TERRAFORM_BIN, "console"], input=f"jsonencode({expression})\n", cwd=tmp_path, env=environ,
                         capture_output=True, text=True, timeout=120)
    return run, (json.loads(json.loads(run.stdout.strip())) if run.returncode == 0 else None)


def test_without_a_map_the_one_project_form_is_unchanged(tmp_path):
    run, value = evaluate(tmp_path, "", "{ env = local.function_env, secrets = local.amplitude_secrets }")
    assert run.returncode == 0, run.stderr[-2000:]
    assert value["secrets"] == {"AMPLITUDE_API_KEY": "amplitude-api-key", "AMPLITUDE_SECRET_KEY": "amplitude-secret-key"}
    assert value["env"]["AMPBQ_AMPLITUDE_PROJECTS"] == value["env"]["AMPBQ_DEFAULT_PROJECT"] == ""
    assert Config.from_env(RecordingEnv(value["env"])).projects[0].segment == ""


def test_a_map_gives_each_other_project_its_secrets_and_every_function_the_list_the_code_reads(tmp_path):
    tfvars = ('amplitude_projects = {\n  "123456" = { region = "US" }\n  "654321" = { region = "EU" }\n'
              '  "777" = { api_key_secret = "k7", secret_key_secret = "s7" }\n}\namplitude_default_project = "123456"\n')
    run, value = evaluate(tmp_path, tfvars, "{ env = local.function_env, secrets = local.amplitude_secrets }")
    assert run.returncode == 0, run.stderr[-2000:]
    # The default project keeps the secrets (and resource addresses) of the one-project form.
    assert value["secrets"] == {"AMPLITUDE_API_KEY": "amplitude-api-key", "AMPLITUDE_SECRET_KEY": "amplitude-secret-key",
                                "AMPLITUDE_API_KEY_654321": "amplitude-654321-api-key",
                                "AMPLITUDE_SECRET_KEY_654321": "amplitude-654321-secret-key",
                                "AMPLITUDE_API_KEY_777": "k7", "AMPLITUDE_SECRET_KEY_777": "s7"}
    env = {**value["env"], **{name: "x" for name in value["secrets"]}}
    config = Config.from_env(RecordingEnv(env))
    assert [(p.segment, p.app, p.url) for p in config.projects] == [
        ("", "123456", "https://amplitude.com"), ("654321", "654321", "https://analytics.eu.amplitude.com"),
        ("777", "777", "https://amplitude.com")]
    assert all(config.for_project(p).unset_amplitude_keys() == [] for p in config.projects)


def test_a_map_without_a_default_project_makes_no_unsegmented_secrets(tmp_path):
    run, value = evaluate(tmp_path, 'amplitude_projects = { "42" = {} }\n', "local.amplitude_secrets")
    assert run.returncode == 0, run.stderr[-2000:]
    assert value == {"AMPLITUDE_API_KEY_42": "amplitude-42-api-key", "AMPLITUDE_SECRET_KEY_42": "amplitude-42-secret-key"}


@pytest.mark.parametrize("tfvars", ['amplitude_projects = { "web" = {} }\n', 'amplitude_projects = { "1" = { region = "APAC" } }\n'])
def test_a_key_that_is_no_project_id_or_a_region_other_than_us_or_eu_is_refused(tmp_path, tfvars):
    run, _ = evaluate(tmp_path, tfvars, "local.amplitude_secrets")
    assert run.returncode != 0 and "amplitude_projects is keyed by Amplitude project id" in run.stderr


def test_the_export_function_reads_every_secret_of_the_map_and_refuses_a_default_outside_it():
    text = (MODULE / "functions.tf").read_text()
    assert 'dynamic "secret_environment_variables"' in text and "for_each = local.amplitude_secrets" in text
    assert "contains(keys(var.amplitude_projects), var.amplitude_default_project)" in text
    assert "for_each = local.amplitude_secrets" in (MODULE / "secrets.tf").read_text()  # secrets and their IAM
    assert re.search(r"AMPBQ_AMPLITUDE_PROJECTS\s+= local.amplitude_project_list", (MODULE / "outputs.tf").read_text())


@pytest.mark.parametrize("name", ENVS)
def test_both_environments_pass_the_map_and_the_default_project_through(name):
    env = TERRAFORM / "envs" / name
    main = (env / "pipeline.tf").read_text()
    assert re.search(r"^  amplitude_projects\s+= var\.amplitude_projects$", main, re.M)
    assert re.search(r"^  amplitude_default_project\s+= var\.amplitude_default_project$", main, re.M)
    variables = (env / "variables.tf").read_text()
    assert 'variable "amplitude_projects"' in variables and 'variable "amplitude_default_project"' in variables
    example = (env / "terraform.tfvars.example").read_text()
    assert "# amplitude_projects        = {}" in example and "# amplitude_default_project" in example


@pytest.mark.parametrize("tfvars, expected", [("", Config.transform_unit_bytes), ("transform_unit_mb = 64\n", 64 << 20)])
def test_the_transform_unit_size_reaches_every_function_as_the_code_reads_it(tmp_path, tfvars, expected):
    run, value = evaluate(tmp_path, tfvars, "local.function_env")
    assert run.returncode == 0, run.stderr[-2000:]
    assert Config.from_env(RecordingEnv(value)).transform_unit_bytes == expected


def test_a_unit_size_that_is_not_a_whole_mib_is_refused(tmp_path):
    run, _ = evaluate(tmp_path, "transform_unit_mb = 0.5\n", "local.function_env")
    assert run.returncode != 0 and "transform_unit_mb must be a whole number of MiB" in run.stderr
