"""amplitude_source: the Export API (default) or the bucket Amplitude's own cloud-storage export
writes to; what each choice gives the functions, the grant on Amplitude's bucket, the choices
the module refuses (evaluated by `terraform console`, offline)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ampbq.config import Config
from helpers import RecordingEnv
from terraform_hcl import ENVS, MODULE, TERRAFORM, module_locals, named_blocks, resource, variable_default

pytestmark = pytest.mark.terraform
TERRAFORM_BIN = shutil.which("terraform")
NATIVE_ENV = ("AMPBQ_SOURCE", "AMPBQ_NATIVE_BUCKET", "AMPBQ_NATIVE_PREFIX", "AMPBQ_NATIVE_QUIET_SECONDS")
NATIVE_VARS = ("amplitude_source", "native_export_bucket", "native_export_prefix", "native_export_quiet_minutes")


def console(tmp_path: Path, variables: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    """Evaluate `expression` over the module's native variables and its function_env local."""
    if TERRAFORM_BIN is None:
        pytest.fail("no terraform binary on PATH: install Terraform to evaluate the module's variables")
    text = (MODULE / "variables.tf").read_text()
    blocks = [re.search(rf'^variable "{name}" \{{\n.*?^\}}\n', text, re.M | re.S).group(0) for name in NATIVE_VARS]
    env = re.search(r"^  function_env = merge\(\n.*?^  \)\n", (MODULE / "functions.tf").read_text(), re.M | re.S).group(0)
    stand_ins = {"google_storage_bucket.data.name": '"data"', "var.project_id": '"p"', "google_bigquery_dataset.ops.dataset_id": '"ops"',
                 "google_bigquery_table.events.table_id": '"t"', "var.bq_location": '"US"', "var.schedule": '"hourly"',
                 "var.amplitude_region": '"US"', "var.amplitude_url": '""', "local.amplitude_project_list": '""',
                 "var.amplitude_default_project": '""', "var.transform_unit_mb": "256"}
    for reference, value in stand_ins.items():
        env = env.replace(reference, value)
    (tmp_path / "main.tf").write_text("\n".join(blocks) + "\nlocals {\n" + env + "}\n")
    args = [f"-var={k}={v}" for k, v in variables.items()]
    environ = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    return subprocess.run([TERRAFORM_BIN, "console", *args], input=expression + "\n", cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_the_export_api_stays_the_default_and_sets_no_native_variable(tmp_path):
    assert variable_default("amplitude_source") == "export_api"
    run = console(tmp_path, {}, "jsonencode(local.function_env)")
    assert run.returncode == 0, run.stderr[-2000:]
    assert not any(name in run.stdout for name in NATIVE_ENV)


def test_native_export_gives_the_functions_the_bucket_the_prefix_and_the_quiet_period_the_code_reads(tmp_path):
    import json

    run = console(tmp_path, {"amplitude_source": "native_export", "native_export_bucket": "amp-export",
                             "native_export_prefix": "events", "native_export_quiet_minutes": "45"}, "jsonencode(local.function_env)")
    assert run.returncode == 0, run.stderr[-2000:]
    env = RecordingEnv(json.loads(json.loads(run.stdout.strip())))
    config = Config.from_env(env)
    assert (config.source, config.native_bucket, config.native_prefix, config.native_quiet_seconds) == (
        "native_export", "amp-export", "events", 2700)
    assert set(NATIVE_ENV) <= env.asked


@pytest.mark.parametrize("variables, said", [
    ({"amplitude_source": "s3"}, 'amplitude_source must be "export_api" or "native_export".'),
    ({"native_export_quiet_minutes": "0"}, "native_export_quiet_minutes must be a whole number of minutes"),
])
def test_choices_the_module_does_not_know_are_refused(tmp_path, variables, said):
    run = console(tmp_path, variables, "var.amplitude_source")
    text = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    assert "Invalid value for variable" in text and said in re.sub(r"\s+", " ", text)


def test_the_export_function_may_read_amplitudes_bucket_only_with_native_export_and_needs_it_named():
    grant = resource("google_storage_bucket_iam_member", "export_reads_native")
    assert grant["count"] == '${var.amplitude_source == "native_export" ? 1 : 0}'
    assert grant["bucket"] == "${var.native_export_bucket}"
    assert grant["role"] == "roles/storage.objectViewer"
    assert grant["member"] == "serviceAccount:${google_service_account.export.email}"
    export = resource("google_cloudfunctions2_function", "export")
    condition = export["lifecycle"][0]["precondition"][0]["condition"]
    assert 'var.amplitude_source != "native_export" || var.native_export_bucket != ""' in condition


@pytest.mark.parametrize("env", ENVS)
def test_each_environment_passes_the_source_through(env):
    module = named_blocks(TERRAFORM / "envs" / env, "module")["pipeline"]
    for name in NATIVE_VARS:
        assert module[name] == f"${{var.{name}}}"
    example = (TERRAFORM / "envs" / env / "terraform.tfvars.example").read_text()
    assert '# amplitude_source            = "export_api"' in example
