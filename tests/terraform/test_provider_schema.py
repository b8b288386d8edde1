"""Every google_* resource, data source and provider block under terraform/ against the Google
provider's real schema, offline (what `terraform validate` would say about arguments and blocks).

The schema comes from the prebuilt CDK Terrain bindings on PyPI; `make venv` downloads them and
extracts .cache/provider-schema/google.json (see provider_schema.py and the Makefile). Set
GOOGLE_PROVIDER_SCHEMA to check against another extracted schema.

The first half tests the checker on small HCL snippets against a hand-written schema, so it
needs no download; the second half runs it on the real module and both environments.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from provider_schema import (
    DEFAULT_SCHEMA,
    META_ATTRIBUTES,
    META_BLOCKS,
    REPO,
    TERRAFORM,
    camel_to_snake,
    check_directory,
    check_text,
    constraint_admits,
    extract,
    load_schema,
    read_assembly,
)
from terraform_hcl import ENVS, MODULE, single, terraform_block

pytestmark = pytest.mark.terraform

OPTIONAL = {"required": False}
REQUIRED = {"required": True}

# A provider of one resource shaped like google_storage_bucket, one data source and a provider
# block: enough for every kind of mistake, at every depth.
SMALL_SCHEMA = {
    "provider": {"source": "hashicorp/google", "version": "9.9.9"},
    "bindings": {"package": "hand-written", "version": "0"},
    "provider_config": "provider",
    "resources": {"google_thing": "thing"},
    "data_sources": {"google_info": "info"},
    "structs": {
        "provider": {"attributes": {"project": OPTIONAL, "region": OPTIONAL}, "blocks": {}},
        "info": {"attributes": {"project": OPTIONAL, "id": OPTIONAL}, "blocks": {}},
        "thing": {
            "attributes": {"name": REQUIRED, "location": OPTIONAL, "labels": OPTIONAL},
            "blocks": {
                "versioning": {"required": False, "max_one": True, "struct": "versioning"},
                "rule": {"required": False, "max_one": False, "struct": "rule"},
            },
        },
        "versioning": {"attributes": {"enabled": REQUIRED}, "blocks": {}},
        "rule": {
            "attributes": {},
            "blocks": {
                "condition": {"required": True, "max_one": True, "struct": "condition"},
                "action": {"required": True, "max_one": True, "struct": "action"},
            },
        },
        "condition": {
            "attributes": {"age": OPTIONAL, "matches_prefix": OPTIONAL},
            "blocks": {"window": {"required": False, "max_one": True, "struct": "window"}},
        },
        "window": {"attributes": {"start": REQUIRED, "count": OPTIONAL}, "blocks": {}},
        "action": {"attributes": {"type": REQUIRED, "storage_class": OPTIONAL}, "blocks": {}},
    },
}

VALID = """
provider "google" {
  project = "p"
  region  = "r"
}

data "google_info" "this" {
  project = "p"
}

resource "google_thing" "this" {
  count      = 1
  provider   = google
  depends_on = [data.google_info.this]
  name       = "n"
  labels     = { app = "x" }

  versioning {
    enabled = true
  }

  rule {
    condition {
      age = 3
      window {
        start = "00:00"
        count = 2
      }
    }
    action {
      type = "Delete"
    }
  }

  dynamic "rule" {
    for_each = var.ages
    iterator = age
    content {
      condition {
        age = age.value
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }

  lifecycle {
    prevent_destroy = true
  }

  provisioner "local-exec" {
    command = "true"
  }

  connection {
    host = "h"
  }
}

resource "random_id" "not_google" {
  byte_length = 4
  anything    = "goes, the Google schema does not cover it"
}
"""


def problems(text: str, schema: dict = SMALL_SCHEMA) -> list[str]:
    return [str(p) for p in check_text(text, schema, "t.tf")]


def thing(body: str) -> str:
    return f'resource "google_thing" "this" {{\n  name = "n"\n{body}\n}}\n'


def rule(condition: str = "age = 1", action: str = 'type = "Delete"') -> str:
    return f"  rule {{\n    condition {{\n      {condition}\n    }}\n    action {{\n      {action}\n    }}\n  }}"


def test_valid_configuration_with_every_meta_argument_has_no_problems():
    assert problems(VALID) == []


def test_meta_arguments_are_not_allowed_inside_nested_blocks():
    text = thing('  versioning {\n    enabled = true\n    count = 1\n  }')
    assert problems(text) == ['t.tf:1: google_thing.this: versioning: unknown argument or block "count"']


def test_a_nested_argument_named_like_a_meta_argument_is_the_schemas():
    # window has an argument called count: allowed there, and only because the schema has it.
    text = thing(rule(condition='window {\n        start = "0"\n        count = 2\n      }'))
    assert problems(text) == []


def test_unknown_argument_at_the_top_with_a_suggestion():
    assert problems(thing('  lokation = "US"')) == [
        't.tf:1: google_thing.this: unknown argument or block "lokation" (did you mean "location"?)'
    ]


def test_unknown_argument_in_a_nested_block_of_a_nested_block():
    text = thing(rule(condition='window {\n        start = "0"\n        stop = "1"\n      }'))
    assert problems(text) == ['t.tf:1: google_thing.this: rule.condition.window: unknown argument or block "stop"']


def test_unknown_block_is_reported_like_an_unknown_argument():
    assert problems(thing("  website {\n    main_page = \"index.html\"\n  }")) == [
        't.tf:1: google_thing.this: unknown argument or block "website"'
    ]


def test_missing_required_argument_at_the_top_and_in_a_nested_block():
    text = 'resource "google_thing" "this" {\n  versioning {}\n}\n'
    assert problems(text) == [
        't.tf:1: google_thing.this: versioning: missing required argument "enabled"',
        't.tf:1: google_thing.this: missing required argument "name"',
    ]


def test_missing_required_argument_two_blocks_deep():
    text = thing(rule(condition="window {}"))
    assert problems(text) == ['t.tf:1: google_thing.this: rule.condition.window: missing required argument "start"']


def test_missing_required_block():
    text = thing('  rule {\n    action {\n      type = "Delete"\n    }\n  }')
    assert problems(text) == ['t.tf:1: google_thing.this: rule: missing required block "condition"']


def test_repeated_blocks_are_each_checked_and_named_by_position():
    text = thing(rule() + "\n" + rule(action='typo = "Delete"'))
    assert problems(text) == [
        't.tf:1: google_thing.this: rule[1].action: unknown argument or block "typo" (did you mean "type"?)',
        't.tf:1: google_thing.this: rule[1].action: missing required argument "type"',
    ]


def test_block_written_as_an_object_attribute():
    assert problems(thing("  versioning = { enabled = true }")) == [
        't.tf:1: google_thing.this: "versioning" is a block: write versioning { ... }, not versioning = ...'
    ]


def test_repeatable_block_written_as_a_list_of_objects():
    text = thing('  rule = [{ condition = { age = 1 }, action = { type = "Delete" } }]')
    assert problems(text) == ['t.tf:1: google_thing.this: "rule" is a block: write rule { ... }, not rule = ...']


def test_nested_block_written_as_an_attribute_inside_a_block():
    text = thing('  rule {\n    condition = { age = 1 }\n    action {\n      type = "Delete"\n    }\n  }')
    assert problems(text) == [
        't.tf:1: google_thing.this: rule: "condition" is a block: write condition { ... }, not condition = ...'
    ]


def test_attribute_written_as_a_block():
    assert problems(thing('  labels {\n    app = "x"\n  }')) == [
        't.tf:1: google_thing.this: "labels" is an argument: write labels = ..., not labels { ... }'
    ]


def test_attribute_written_as_a_block_inside_nested_blocks():
    text = thing(rule(condition='window {\n        start {\n          hour = 0\n        }\n      }'))
    assert problems(text) == [
        't.tf:1: google_thing.this: rule.condition.window: "start" is an argument: write start = ..., not start { ... }'
    ]


def test_block_that_may_appear_once_written_twice():
    text = thing("  versioning {\n    enabled = true\n  }\n  versioning {\n    enabled = false\n  }")
    assert problems(text) == ['t.tf:1: google_thing.this: "versioning" may appear once, found 2 blocks']


def test_dynamic_block_content_is_checked_like_the_block():
    text = thing(
        '  dynamic "rule" {\n    for_each = [1]\n    content {\n      condition {\n        agee = rule.value\n'
        "      }\n      action {}\n    }\n  }"
    )
    assert problems(text) == [
        't.tf:1: google_thing.this: dynamic "rule".content.condition: unknown argument or block "agee" (did you mean "age"?)',
        't.tf:1: google_thing.this: dynamic "rule".content.action: missing required argument "type"',
    ]


def test_dynamic_block_inside_a_dynamic_blocks_content():
    text = thing(
        '  dynamic "rule" {\n    for_each = [1]\n    content {\n      condition {\n'
        '        dynamic "window" {\n          for_each = [1]\n          content {\n            begin = "0"\n'
        "          }\n        }\n      }\n      action {\n        type = \"Delete\"\n      }\n    }\n  }"
    )
    assert problems(text) == [
        't.tf:1: google_thing.this: dynamic "rule".content.condition.dynamic "window".content: unknown argument or block "begin"',
        't.tf:1: google_thing.this: dynamic "rule".content.condition.dynamic "window".content: missing required argument "start"',
    ]


def test_dynamic_block_counts_for_a_required_block():
    text = thing('  rule {\n    dynamic "condition" {\n      for_each = [1]\n      content {}\n    }\n'
                 '    action {\n      type = "Delete"\n    }\n  }')
    assert problems(text) == []


def test_dynamic_block_of_an_attribute_or_of_an_unknown_block():
    text = thing('  dynamic "labels" {\n    for_each = [1]\n    content {}\n  }\n'
                 '  dynamic "rules" {\n    for_each = [1]\n    content {}\n  }')
    assert problems(text) == [
        't.tf:1: google_thing.this: "labels" is an argument, so it cannot be generated with a dynamic block',
        't.tf:1: google_thing.this: dynamic block of unknown block type "rules" (did you mean "rule"?)',
    ]


def test_dynamic_block_needs_for_each_and_one_content_block():
    text = thing('  dynamic "versioning" {\n    labels = []\n    each = [1]\n  }')
    assert problems(text) == [
        't.tf:1: google_thing.this: dynamic "versioning": missing required argument "for_each"',
        't.tf:1: google_thing.this: dynamic "versioning": unknown argument or block "each" '
        "(a dynamic block takes for_each, iterator, labels and content)",
        't.tf:1: google_thing.this: dynamic "versioning": needs exactly one content { ... } block',
    ]


def test_unknown_resource_type_and_data_source():
    text = 'resource "google_thingy" "a" {}\n\ndata "google_infos" "b" {}\n'
    assert problems(text) == [
        't.tf:1: google_thingy.a: no resource type google_thingy in hashicorp/google 9.9.9 (did you mean "google_thing"?)',
        't.tf:3: data.google_infos.b: no data source google_infos in hashicorp/google 9.9.9 (did you mean "google_info"?)',
    ]


def test_data_source_and_provider_blocks_are_checked_with_their_line():
    text = '\n\ndata "google_info" "a" {\n  projet = "p"\n}\n\nprovider "google" {\n  alias = "eu"\n  zone = "z"\n}\n'
    assert problems(text) == [
        't.tf:3: data.google_info.a: unknown argument or block "projet" (did you mean "project"?)',
        't.tf:7: provider.google: unknown argument or block "zone"',
    ]


def test_meta_arguments_listed_are_terraforms():
    assert META_ATTRIBUTES == {"count", "for_each", "depends_on", "provider"}
    assert META_BLOCKS == {"lifecycle", "provisioner", "connection"}


# --- Extraction from a jsii assembly --------------------------------------------------------


def jsii_property(name: str, type_: dict, terraform_name: str | None, optional: bool = True, summary: str = "") -> dict:
    docs = {"summary": summary or f"{terraform_name or name}."}
    if terraform_name:
        link = f"{{@link https://registry.terraform.io/providers/hashicorp/google/7.1.0/docs/resources/thing#{terraform_name} Thing#{terraform_name}}}"
        docs["remarks"] = f"Docs at Terraform Registry: {link}"
    prop = {"name": name, "type": type_, "docs": docs}
    if optional:
        prop["optional"] = True
    return prop


def struct_ref(fqn: str) -> dict:
    return {"fqn": f"@cdktn/provider-google.{fqn}"}


def list_of(fqn: str) -> dict:
    return {"union": {"types": [{"fqn": "cdktn.IResolvable"},
                                {"collection": {"kind": "array", "elementtype": struct_ref(fqn)}}]}}


def represents(kind: str, name: str) -> dict:
    path = f"/{kind}/{name.removeprefix('google_')}" if kind else ""
    link = f"https://registry.terraform.io/providers/hashicorp/google/7.1.0/docs{path}"
    return {"summary": f"Represents a {{@link {link} {name}}}."}


def test_extract_reads_names_blocks_and_required_flags_from_a_jsii_assembly():
    p = "@cdktn/provider-google."
    string = {"primitive": "string"}
    assembly = {
        "name": "@cdktn/provider-google",
        "version": "1.2.3",
        "targets": {"python": {"distName": "cdktn-provider-google"}},
        "types": {
            p + "thing.Thing": {"kind": "class", "docs": represents("resources", "google_thing"),
                                "initializer": {"parameters": [{"name": "scope"}, {"name": "id"},
                                                               {"name": "config", "type": struct_ref("thing.ThingConfig")}]}},
            p + "thing.ThingConfig": {"kind": "interface", "datatype": True, "properties": [
                jsii_property("name", string, "name", optional=False),
                jsii_property("buildAttribute", struct_ref("thing.ThingBuild"), "build", summary="build block."),
                jsii_property("lifecycleRule", list_of("thing.ThingLifecycleRule"), "lifecycle_rule", optional=False),
                jsii_property("ipv6Range", string, None),  # no registry link: derived from the name
            ]},
            p + "thing.ThingBuild": {"kind": "interface", "datatype": True, "properties": [
                jsii_property("steps", {"collection": {"kind": "array", "elementtype": string}}, "steps")]},
            p + "thing.ThingLifecycleRule": {"kind": "interface", "datatype": True, "properties": [
                jsii_property("condition", struct_ref("thing.ThingLifecycleRuleCondition"), "condition", optional=False)]},
            p + "thing.ThingLifecycleRuleCondition": {"kind": "interface", "datatype": True, "properties": [
                jsii_property("daysSinceNoncurrentTime", {"primitive": "number"}, "days_since_noncurrent_time")]},
            p + "dataGoogleInfo.DataGoogleInfo": {"kind": "class", "docs": represents("data-sources", "google_info"),
                                                  "initializer": {"parameters": [{"name": "config", "type": struct_ref("dataGoogleInfo.DataGoogleInfoConfig")}]}},
            p + "dataGoogleInfo.DataGoogleInfoConfig": {"kind": "interface", "datatype": True, "properties": []},
            p + "provider.GoogleProvider": {"kind": "class", "docs": represents("", "google"),
                                            "initializer": {"parameters": [{"name": "config", "type": struct_ref("provider.GoogleProviderConfig")}]}},
            p + "provider.GoogleProviderConfig": {"kind": "interface", "datatype": True, "properties": [
                jsii_property("project", string, "project")]},
        },
    }
    schema = extract(assembly)
    assert schema["provider"] == {"source": "hashicorp/google", "version": "7.1.0"}
    assert schema["bindings"] == {"package": "cdktn-provider-google", "version": "1.2.3"}
    structs = schema["structs"]
    config = structs[schema["resources"]["google_thing"]]
    assert config["attributes"] == {"ipv6_range": OPTIONAL, "name": REQUIRED}
    assert config["blocks"]["build"] == {"required": False, "max_one": True, "struct": "thing.ThingBuild"}
    assert config["blocks"]["lifecycle_rule"] == {"required": True, "max_one": False, "struct": "thing.ThingLifecycleRule"}
    assert structs["thing.ThingBuild"] == {"attributes": {"steps": OPTIONAL}, "blocks": {}}
    condition = structs[structs["thing.ThingLifecycleRule"]["blocks"]["condition"]["struct"]]
    assert condition["attributes"] == {"days_since_noncurrent_time": OPTIONAL}
    assert structs[schema["data_sources"]["google_info"]] == {"attributes": {}, "blocks": {}}
    assert structs[schema["provider_config"]]["attributes"] == {"project": OPTIONAL}


def bindings_wheel(directory: Path, files: dict[str, bytes]) -> Path:
    """A wheel laid out like the bindings': _jsii/<name>.jsii.tgz holding package/<files>."""
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    wheel = directory / "bindings-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("bindings/_jsii/provider-google@1.0.jsii.tgz", tgz.getvalue())
    return wheel


def test_read_assembly_from_a_plain_and_from_a_compressed_jsii(tmp_path):
    assembly = {"name": "@cdktn/provider-google", "types": {}}
    plain = bindings_wheel(tmp_path, {".jsii": json.dumps(assembly).encode()})
    assert read_assembly(plain) == assembly
    (tmp_path / "compressed").mkdir()
    redirect = {"schema": "jsii/file-redirect", "compression": "gzip", "filename": ".jsii.gz"}
    compressed = bindings_wheel(tmp_path / "compressed", {
        ".jsii": json.dumps(redirect).encode(),
        ".jsii.gz": gzip.compress(json.dumps(assembly).encode()),
    })
    assert read_assembly(compressed) == assembly


def test_camel_to_snake_fallback():
    assert camel_to_snake("ipv6AccessConfig") == "ipv6_access_config"
    assert camel_to_snake("conditionPrometheusQueryLanguage") == "condition_prometheus_query_language"


def test_constraint_admits():
    assert constraint_admits("~> 7.0", "7.46.1")
    assert not constraint_admits("~> 7.0", "8.0.0")
    assert constraint_admits(">= 7.0, < 8.0", "7.46.1")
    assert not constraint_admits(">= 7.0, < 8.0", "6.50.0")
    assert not constraint_admits("~> 7.46.0", "7.47.0")
    assert constraint_admits("= 7.46.1", "7.46.1")


# --- The real provider schema and terraform/ ------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    path = Path(os.environ.get("GOOGLE_PROVIDER_SCHEMA") or DEFAULT_SCHEMA)
    if not path.is_file():
        pytest.fail(f"no provider schema at {path}: run `make venv` (it downloads the bindings and extracts it)")
    return load_schema(path)


def block_of(schema: dict, type_: str, *path: str) -> dict:
    struct = schema["structs"][schema["resources"][type_]]
    for name in path:
        struct = schema["structs"][struct["blocks"][name]["struct"]]
    return struct


def test_schema_is_the_one_the_makefile_names(schema):
    makefile = (REPO / "Makefile").read_text()
    version = re.search(r"^GOOGLE_BINDINGS_VERSION := (\S+)$", makefile, re.M).group(1)
    assert schema["bindings"] == {"package": "cdktn-provider-google", "version": version}, (
        "the extracted schema is stale: run `make venv`"
    )
    assert len(schema["resources"]) > 1000 and len(schema["data_sources"]) > 300


@pytest.mark.parametrize("directory", [MODULE] + [TERRAFORM / "envs" / e for e in ENVS], ids=lambda d: d.name)
def test_pinned_google_provider_admits_the_checked_schema(schema, directory):
    version = schema["provider"]["version"]
    pinned = single(terraform_block(directory)["required_providers"])["google"]["version"]
    assert constraint_admits(pinned, version), f"{directory.name} pins google {pinned}; the schema is {version}"


def test_schema_names_are_terraforms(schema):
    bucket = schema["structs"][schema["resources"]["google_storage_bucket"]]
    assert {"name": True, "location": True, "uniform_bucket_level_access": False}.items() <= {
        k: v["required"] for k, v in bucket["attributes"].items()}.items()
    assert bucket["blocks"]["lifecycle_rule"]["max_one"] is False
    rule = block_of(schema, "google_storage_bucket", "lifecycle_rule")
    assert rule["blocks"]["action"]["required"] and rule["blocks"]["condition"]["max_one"]
    assert "days_since_noncurrent_time" in block_of(schema, "google_storage_bucket", "lifecycle_rule", "condition")["attributes"]

    function = schema["structs"][schema["resources"]["google_cloudfunctions2_function"]]
    assert function["blocks"]["build_config"]["max_one"] is True
    storage_source = block_of(schema, "google_cloudfunctions2_function", "build_config", "source", "storage_source")
    assert {"bucket", "object"} <= storage_source["attributes"].keys()
    # 7.0: event_trigger.event_type became required.
    assert block_of(schema, "google_cloudfunctions2_function", "event_trigger")["attributes"]["event_type"] == REQUIRED

    conditions = block_of(schema, "google_monitoring_alert_policy", "conditions")
    promql = block_of(schema, "google_monitoring_alert_policy", "conditions", "condition_prometheus_query_language")
    assert conditions["blocks"]["condition_prometheus_query_language"]["max_one"] is True
    assert promql["attributes"]["query"] == REQUIRED and "disable_metric_validation" in promql["attributes"]

    # The bindings rename `build` (a word reserved in their languages) to buildAttribute.
    assert "build" in schema["structs"][schema["resources"]["google_cloudbuild_trigger"]]["blocks"]


def test_terraform_module_and_environments_match_the_provider_schema(schema):
    problems = check_directory(TERRAFORM, schema)
    version = schema["provider"]["version"]
    assert not problems, f"against hashicorp/google {version}:\n" + "\n".join(map(str, problems))


def test_every_google_block_of_the_module_is_covered(schema):
    """The check sees the module's resources: a mistake planted in each file is found."""
    for path in sorted(MODULE.glob("*.tf")):
        text = path.read_text()
        planted = re.sub(r'^(resource|data) "(google_\w+)" "(\w+)" \{\n', r'\g<0>  not_an_argument = 1\n', text, flags=re.M)
        expected = len(re.findall(r'^(?:resource|data) "google_\w+" "\w+" \{$', text, re.M))
        found = [p for p in check_text(planted, schema, path.name) if "not_an_argument" in p.message]
        assert len(found) == expected, path.name


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # inside a dynamic block's content
        ("storage.tf", "matches_storage_class = [", "matches_storage_classes = [",
         'dynamic "lifecycle_rule".content.condition: unknown argument or block "matches_storage_classes" '
         '(did you mean "matches_storage_class"?)'),
        # three blocks deep
        ("functions.tf", "        bucket = google_storage_bucket.source.name\n", "        bukket = google_storage_bucket.source.name\n",
         'build_config.source.storage_source: unknown argument or block "bukket" (did you mean "bucket"?)'),
        ("functions.tf", '    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"\n', "",
         'event_trigger: missing required argument "event_type"'),
        ("functions.tf", "  service_config {\n    available_memory = var.memory.export\n",
         "  service_config {\n    service = \"x\"\n    available_memory = var.memory.export\n",
         'service_config: unknown argument or block "service"'),
        ("storage.tf", "  versioning {\n    enabled = true\n  }\n", "  versioning = {\n    enabled = true\n  }\n",
         '"versioning" is a block: write versioning { ... }, not versioning = ...'),
    ],
    ids=["dynamic-content", "three-deep", "7.0-event-type-required", "7.0-service-removed", "block-as-attribute"],
)
def test_mistakes_in_the_real_module_are_found(schema, file, old, new, expected):
    text = (MODULE / file).read_text()
    assert old in text, f"{file} changed: update this test's example"
    found = [f"{p.path}: {p.message}" if p.path else p.message
             for p in check_text(text.replace(old, new, 1), schema, file)]
    assert found == [expected]
