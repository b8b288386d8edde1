"""What an installation sets, and where: every module input from terraform.tfvars, and the names
the module derives when it is not told (the data and source buckets, the CLI's environment).

Parsed with python-hcl2 (see terraform_hcl.py). Where a Terraform binary is on PATH, the
expressions are also evaluated by `terraform console` (it needs no providers or network for
locals and built-in functions); elsewhere those cross-checks are skipped and the Python model
of the same expressions, checked against Cloud Storage's naming rules, still runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from terraform_hcl import ENVS, MODULE, TERRAFORM, env_locals, module_locals, named_blocks, parse_hcl

pytestmark = pytest.mark.terraform

# Inputs an environment fixes itself: its name. Every other module input is the adopter's to set.
FIXED = {"env"}
# Inputs each environment chooses for itself in main.tf: a null variable keeps its choice.
CHOSEN = {"export_retention_days", "export_nearline_after_days", "import_retention_days", "rejects_retention_days"}
CHOSEN_VALUES = {
    "staging": {"export_retention_days": 30, "export_nearline_after_days": 0, "import_retention_days": 3, "rejects_retention_days": 30},
    "production": {"export_retention_days": 365, "export_nearline_after_days": 30, "import_retention_days": 7, "rejects_retention_days": 90},
}
TERRAFORM_BIN = shutil.which("terraform")
GCS_MAX = 63
# Project ids: 6-30 characters, a lowercase letter first, no trailing hyphen; domain-scoped ids
# (legacy) put "<domain>:" before that and can be much longer.
PROJECT_IDS = (
    "my-project",
    "analytics-prod-123456",
    "a" + "b1-" * 9 + "z9",  # 30 characters, the longest plain project id
    "example.com:analytics",
    "subsidiary.example-company.co.uk:amplitude-analytics-production-001",
    "Upper-Case-Project",
)
ENV_NAMES = ENVS + ("abcdefghijkl",)  # the longest env name the module accepts (12)


def env_dir(env: str) -> Path:
    return TERRAFORM / "envs" / env


def module_variables() -> dict[str, dict]:
    return named_blocks(MODULE, "variable")


def env_variables(env: str) -> dict[str, dict]:
    return named_blocks(env_dir(env), "variable")


def module_call(env: str) -> dict:
    return named_blocks(env_dir(env), "module")["pipeline"]


def optional_defaults(type_expr: str) -> dict:
    """{attribute: default} of an object type written with optional(type, default) attributes."""
    return {key: json.loads(value) for key, value in re.findall(r"(\w+) = optional\(\w+, ([^)]+)\)", type_expr)}


def effective_default(env: str, name: str):
    """What the module receives for `name` when terraform.tfvars leaves it out."""
    if name in CHOSEN:
        return CHOSEN_VALUES[env][name]
    variable = module_variables()[name]
    if variable.get("default") == {} and "optional(" in variable["type"] and variable["type"].startswith("${object("):
        return optional_defaults(variable["type"])
    return variable.get("default")


# --- every input settable from terraform.tfvars -------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_env_declares_every_module_input_but_its_name(env):
    assert set(env_variables(env)) == set(module_variables()) - FIXED


@pytest.mark.parametrize("env", ENVS)
def test_env_passes_every_variable_to_the_module(env):
    call = module_call(env)
    assert set(call) - {"source"} == set(module_variables())
    assert call["env"] == "${local.env}" and env_locals(env)["env"] == env
    for name in env_variables(env):
        if name in CHOSEN:
            expected = f"${{coalesce(var.{name}, local.retention.{name})}}"
        else:
            expected = f"${{var.{name}}}"
        assert call[name] == expected, name


@pytest.mark.parametrize("env", ENVS)
def test_env_chooses_its_own_retention_in_main_tf(env):
    assert env_locals(env)["retention"] == CHOSEN_VALUES[env]


@pytest.mark.parametrize("env", ENVS)
def test_env_variables_have_the_module_type_description_and_default(env):
    module = module_variables()
    for name, variable in env_variables(env).items():
        wanted = module[name]
        assert variable["type"] == wanted["type"], name
        if name in CHOSEN:
            # null keeps the environment's choice; the module's default does not apply here.
            assert variable["default"] is None, name
            assert variable["description"].startswith(wanted["description"]), name
            continue
        assert variable["description"] == wanted["description"], name
        assert ("default" in variable) == ("default" in wanted), f"{name}: required in one, optional in the other"
        assert variable.get("default") == wanted.get("default"), name


@pytest.mark.parametrize("env", ENVS)
def test_env_choices_pass_the_module_validation(env):
    chosen = CHOSEN_VALUES[env]
    assert chosen["export_retention_days"] >= 1
    assert chosen["export_nearline_after_days"] >= 0
    assert chosen["import_retention_days"] >= 1 and chosen["rejects_retention_days"] >= 1
    assert chosen["export_nearline_after_days"] < chosen["export_retention_days"]


def tfvars_example(env: str) -> str:
    return (env_dir(env) / "terraform.tfvars.example").read_text()


def uncommented(text: str) -> str:
    """The example with every commented-out setting (`# name = value`) switched on."""
    return re.sub(r"^#\s*(?=[a-z_][a-z0-9_]*\s*=)", "", text, flags=re.M)


@pytest.mark.parametrize("env", ENVS)
def test_tfvars_example_lists_every_input_with_its_default(env):
    text = tfvars_example(env)
    active = parse_hcl(text)
    assert set(active) == {"project_id"}, "only the required input is set; the rest stay commented"
    listed = parse_hcl(uncommented(text))
    assert set(listed) == set(env_variables(env))
    for name, value in listed.items():
        if name != "project_id":
            assert value == effective_default(env, name), name


def terraform_console(workdir: Path, expression: str, variables: dict[str, str] | None = None):
    """Evaluate one expression in `workdir` with `terraform console`; return it as a Python value."""
    if TERRAFORM_BIN is None:
        pytest.skip("no terraform binary on PATH; the Python model of the expression is checked instead")
    command = [TERRAFORM_BIN, "console", *(f"-var={k}={v}" for k, v in (variables or {}).items())]
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    run = subprocess.run(command, input=f"jsonencode({expression})\n", cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    # The console prints the JSON text as a quoted HCL string.
    return json.loads(json.loads(run.stdout.strip()))


@pytest.mark.parametrize("env", ENVS)
def test_tfvars_example_uncommented_is_accepted_by_the_env_variables(env, tmp_path):
    shutil.copy(env_dir(env) / "variables.tf", tmp_path / "variables.tf")
    (tmp_path / "terraform.tfvars").write_text(uncommented(tfvars_example(env)))
    names = sorted(env_variables(env))
    values = terraform_console(tmp_path, "{" + ", ".join(f"{n} = var.{n}" for n in names) + "}")
    assert values == {n: effective_default(env, n) for n in names} | {"project_id": f"my-{env}-project"}


# --- bucket names ------------------------------------------------------------------------------


def bucket_names(project_id: str, env: str, bucket_name: str | None = None,
                 source_bucket_name: str | None = None) -> tuple[str, str]:
    """The module's bucket_name and source_bucket_name locals, in Python (see main.tf)."""
    suffix = f"-{env}-amplitude"
    project = re.sub(r"[^a-z0-9-]+", "-", project_id.lower())[: 59 - len(suffix)].strip("-")
    data = bucket_name if bucket_name is not None else project + suffix
    source = source_bucket_name if source_bucket_name is not None else data[:59].strip("-.") + "-src"
    return data, source


def is_gcs_bucket_name(name: str) -> bool:
    """Cloud Storage's rules for a bucket name without dots (dotted names need a verified domain)."""
    return (
        3 <= len(name) <= GCS_MAX
        and re.fullmatch(r"[a-z0-9][a-z0-9_-]*[a-z0-9]", name) is not None
        and not name.startswith("goog")
        and "google" not in name
    )


def test_bucket_name_locals_are_the_modelled_expressions():
    found = module_locals()
    assert found["bucket_suffix"] == "-${var.env}-amplitude"
    assert found["bucket_project"] == (
        '${trim(substr(replace(lower(var.project_id), "/[^a-z0-9-]+/", "-"), 0, 59 - length(local.bucket_suffix)), "-")}'
    )
    assert found["bucket_name"] == '${var.bucket_name != null ? var.bucket_name : "${local.bucket_project}${local.bucket_suffix}"}'
    assert found["source_bucket_name"] == (
        '${var.source_bucket_name != null ? var.source_bucket_name : "${trim(substr(local.bucket_name, 0, 59), "-.")}-src"}'
    )
    assert module_variables()["bucket_name"]["default"] is None
    assert module_variables()["source_bucket_name"]["default"] is None
    for env in ENVS:
        assert env_variables(env)["bucket_name"]["default"] is None
        assert module_call(env)["bucket_name"] == "${var.bucket_name}"


@pytest.mark.parametrize("env", ENV_NAMES)
@pytest.mark.parametrize("project_id", PROJECT_IDS)
def test_default_bucket_names_follow_cloud_storage_rules(project_id, env):
    data, source = bucket_names(project_id, env)
    assert is_gcs_bucket_name(data), data
    assert is_gcs_bucket_name(source), source
    assert data.endswith(f"-{env}-amplitude") and source == f"{data}-src"
    assert len(data) <= 59


def test_default_bucket_name_is_the_project_and_env():
    assert bucket_names("my-project", "staging") == ("my-project-staging-amplitude", "my-project-staging-amplitude-src")
    assert bucket_names("example.com:analytics", "production")[0] == "example-com-analytics-production-amplitude"


def test_default_bucket_names_differ_between_projects_and_envs():
    names = {bucket_names(p, e)[0] for p in PROJECT_IDS[:4] for e in ENVS}
    assert len(names) == 4 * len(ENVS)


def test_long_project_id_is_cut_without_a_trailing_hyphen():
    project_id = "subsidiary.example-company.co.uk:amplitude-analytics-production-001"
    data, _ = bucket_names(project_id, "production")
    assert len(data) == 59
    assert data == "subsidiary-example-company-co-uk-ampli-production-amplitude"
    # A cut that would end on "-" drops it rather than leaving "--" before the env.
    data, _ = bucket_names("a" * 40 + "-tail", "staging")
    assert data == "a" * 40 + "-staging-amplitude"


def test_set_bucket_names_are_kept_and_a_long_one_still_fits_its_source_bucket():
    assert bucket_names("p", "staging", "my-bucket") == ("my-bucket", "my-bucket-src")
    assert bucket_names("p", "staging", "my-bucket", "my-src") == ("my-bucket", "my-src")
    long_name = "b" * 63
    _, source = bucket_names("p", "staging", long_name)
    assert len(source) == GCS_MAX and source == "b" * 59 + "-src"


def module_locals_source(names: tuple[str, ...]) -> str:
    """The named locals of the module's main.tf, as written (one line each)."""
    text = (MODULE / "main.tf").read_text()
    lines = []
    for name in names:
        match = re.search(rf"^\s*{name}\s*=\s*(.+)$", text, re.M)
        assert match, f"local {name} is not one line in main.tf"
        lines.append(f"  {name} = {match.group(1)}")
    return "locals {\n" + "\n".join(lines) + "\n}\n"


BUCKET_LOCALS = ("bucket_suffix", "bucket_project", "bucket_name", "source_bucket_name")
CONSOLE_CASES = [
    ("my-project", "staging", None),
    ("subsidiary.example-company.co.uk:amplitude-analytics-production-001", "production", None),
    ("Upper-Case-Project", "abcdefghijkl", None),
    ("a" * 40 + "-tail", "staging", None),
    ("my-project", "staging", "b" * 63),
]


@pytest.mark.parametrize("project_id, env, bucket_name", CONSOLE_CASES)
def test_terraform_evaluates_bucket_names_as_the_model(project_id, env, bucket_name, tmp_path):
    (tmp_path / "main.tf").write_text(
        'variable "env" {\n  type = string\n}\n'
        'variable "project_id" {\n  type = string\n}\n'
        'variable "bucket_name" {\n  type    = string\n  default = null\n}\n'
        'variable "source_bucket_name" {\n  type    = string\n  default = null\n}\n'
        + module_locals_source(BUCKET_LOCALS)
    )
    variables = {"env": env, "project_id": project_id} | ({"bucket_name": bucket_name} if bucket_name else {})
    result = terraform_console(tmp_path, "[local.bucket_name, local.source_bucket_name]", variables)
    assert tuple(result) == bucket_names(project_id, env, bucket_name)


# --- the CLI's environment -------------------------------------------------------------------


def names_the_cli_reads() -> set[str]:
    """Environment variables Config.from_env asks for, plus those the CLI's options fall back to."""
    from ampbq.tools import cli
    from ampbq.config import Config

    class Recording(dict):
        asked: set[str] = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

    Config.from_env(Recording(AMPBQ_BUCKET="b", AMPBQ_PROJECT="p"))
    names = set(Recording.asked)
    for command in cli.main.commands.values():
        for param in command.params:
            envvars = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
            names |= {e for e in envvars if e}
    return names


def test_cli_env_output_names_only_what_the_cli_reads_and_matches_the_functions():
    cli_env = named_blocks(MODULE, "output")["cli_env"]["value"]
    assert set(cli_env) <= names_the_cli_reads()
    assert set(cli_env) == {"AMPBQ_PROJECT", "AMPBQ_BUCKET", "AMPBQ_DATASET", "AMPBQ_TABLE", "AMPBQ_BQ_LOCATION",
                            "AMPBQ_SCHEDULE", "AMPBQ_AMPLITUDE_PROJECTS", "AMPBQ_DEFAULT_PROJECT", "AMPBQ_RUNS_TOPIC"}
    function_env = module_locals()["function_env"]
    shared = [name for name in cli_env if re.search(rf"\b{name} = ", function_env)]
    assert shared == ["AMPBQ_PROJECT", "AMPBQ_BUCKET", "AMPBQ_DATASET", "AMPBQ_TABLE", "AMPBQ_BQ_LOCATION", "AMPBQ_SCHEDULE",
                      "AMPBQ_AMPLITUDE_PROJECTS", "AMPBQ_DEFAULT_PROJECT"]
    for name in shared:  # the CLI points at exactly what the functions use
        value = re.fullmatch(r"\$\{(.+)\}", cli_env[name]).group(1)
        assert re.search(rf"\b{name} = {re.escape(value)}[,}}]", function_env), name
    assert cli_env["AMPBQ_RUNS_TOPIC"] == "${google_pubsub_topic.daily_runs.name}"


def env_cli_env_expression(env: str) -> str:
    """The env's cli_env output expression, as written in outputs.tf."""
    text = (env_dir(env) / "outputs.tf").read_text()
    match = re.search(r'output "cli_env" \{.*?^\s*value\s*=\s*(.+?)$', text, re.M | re.S)
    assert match, "outputs.tf has no cli_env value"
    return match.group(1)


@pytest.mark.parametrize("env", ENVS)
def test_env_cli_env_output_evals_into_the_cli_configuration(env, tmp_path):
    outputs = named_blocks(env_dir(env), "output")
    assert "module.pipeline.cli_env" in outputs["cli_env"]["value"]
    values = {"AMPBQ_PROJECT": "my-project", "AMPBQ_BUCKET": "my-project-staging-amplitude", "AMPBQ_DATASET": "ops",
              "AMPBQ_TABLE": "all_user_events", "AMPBQ_BQ_LOCATION": "EU", "AMPBQ_RUNS_TOPIC": "daily-runs"}
    (tmp_path / "main.tf").write_text(
        "locals {\n  cli_env = {\n" + "".join(f'    {k} = "{v}"\n' for k, v in values.items()) + "  }\n}\n"
    )
    lines = terraform_console(tmp_path, env_cli_env_expression(env).replace("module.pipeline.cli_env", "local.cli_env"))
    shell = subprocess.run(["bash", "-c", 'eval "$LINES" && env -0'], env={"LINES": lines, "PATH": os.environ["PATH"]},
                           capture_output=True, text=True, timeout=30, check=True)
    exported = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    assert {k: exported.get(k) for k in values} == values

    from ampbq.config import Config

    config = Config.from_env(exported)
    assert (config.project, config.bucket, config.dataset, config.table, config.bq_location) == (
        "my-project", "my-project-staging-amplitude", "ops", "all_user_events", "EU")


def test_operations_doc_points_the_cli_at_an_environment_with_outputs_that_exist():
    operations = (TERRAFORM.parent / "docs" / "operations.md").read_text()
    match = re.search(r"^#+ Pointing the CLI at a deployed environment\n(.*?)(?=^## |\Z)", operations, re.M | re.S)
    assert match, "docs/operations.md has no section on pointing the CLI at a deployed environment"
    section = match.group(1)
    used = set(re.findall(r"terraform output -raw (\w+)", section))
    assert "cli_env" in used
    for env in ENVS:
        assert used <= named_blocks(env_dir(env), "output").keys(), env
    names = set(re.findall(r"\b(?:AMPBQ|AMPLITUDE)_[A-Z_]*[A-Z]\b|\b[A-Z]+_EMULATOR_HOST\b", section))
    cli_env = named_blocks(MODULE, "output")["cli_env"]["value"]
    assert set(cli_env) <= names
    # The emulator hosts are only unset here; the client libraries (and Config) honour them.
    assert names - {"STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} <= names_the_cli_reads()
