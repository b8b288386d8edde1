"""The Google provider's schema, offline, and a check of terraform/ against it.

`terraform validate` needs the provider binary from the Terraform registry, which the machines
that run the tests cannot reach. The schema it would check against is on PyPI as well: the
prebuilt CDK Terrain bindings (cdktn-provider-google, the successor of CDK for Terraform's
cdktf-cdktf-provider-google, whose last release is for 6.50) carry a jsii assembly that
describes every resource's and data source's configuration, generated from one release of
hashicorp/google. `make venv` downloads the wheel into .cache/ and runs

    python tests/terraform/provider_schema.py extract WHEEL OUT.json

which keeps only what a configuration check needs, as compact JSON:

    {"provider": {"source": "hashicorp/google", "version": "8.7.0"},
     "bindings": {"package": "cdktn-provider-google", "version": "21.1.0"},
     "provider_config": ID, "resources": {TYPE: ID}, "data_sources": {TYPE: ID},
     "structs": {ID: {"attributes": {NAME: {"required": bool}},
                      "blocks": {NAME: {"required": bool, "max_one": bool, "struct": ID}}}}}

In the assembly a nested block is a struct-typed property ("lifecycle_rule block."), one struct
for a block that can appear once, an array of structs for a repeatable one; everything else is
an attribute. A property without "optional" is required (for a block: at least one). Property
names are camelCase there; the Terraform name is the anchor of the registry link in each
property's docs (".../storage_bucket#lifecycle_rule StorageBucket#lifecycle_rule").

check_text() and check_directory() then walk every resource "google_*", data "google_*" and
provider "google" block, nested blocks and dynamic blocks' content included, and report
unknown arguments, missing required ones, a block written as an attribute (`x = {...}`), an
attribute written as a block (`x {...}`) and a block that may appear once written twice.
"""

from __future__ import annotations

import difflib
import gzip
import io
import json
import re
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
# Written by `make venv` (Makefile: GOOGLE_SCHEMA).
DEFAULT_SCHEMA = REPO / ".cache" / "provider-schema" / "google.json"

# Terraform's own arguments, valid in every resource and data block whatever the provider says.
META_ATTRIBUTES = frozenset({"count", "for_each", "depends_on", "provider"})
META_BLOCKS = frozenset({"lifecycle", "provisioner", "connection"})
PROVIDER_META = frozenset({"alias", "version"})
# Arguments of a dynamic block itself; its body is the `content` block.
DYNAMIC_ARGUMENTS = frozenset({"for_each", "iterator", "labels"})

# ---------------------------------------------------------------------------------------------
# Extraction from the bindings' jsii assembly (build time, standard library only)
# ---------------------------------------------------------------------------------------------

_REGISTRY = r"https://registry\.terraform\.io/providers/hashicorp/google/(?P<version>[0-9][^/ ]*)/docs"
_REPRESENTS = re.compile(
    rf"Represents a \{{@link {_REGISTRY}(?:/(?P<kind>resources|data-sources)/\w+)? (?P<type>google\w*)\}}"
)
_PROPERTY_ANCHOR = re.compile(r"#(?P<name>[a-z0-9_]+) \w+#(?P=name)\}")


def camel_to_snake(name: str) -> str:
    """ipv6AccessConfig -> ipv6_access_config; used only where a property's docs carry no name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def read_assembly(wheel: Path) -> dict:
    """The jsii assembly inside the bindings wheel: member package/.jsii of _jsii/*.jsii.tgz, or
    the gzipped file it redirects to (jsii's compressed assemblies)."""
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if re.search(r"/_jsii/[^/]+\.jsii\.tgz$", n)]
        if len(members) != 1:
            raise SystemExit(f"{wheel}: expected one _jsii/*.jsii.tgz, found {members}")
        tgz = archive.read(members[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(f"package/{name}")
            if member is None:
                raise SystemExit(f"{wheel}: {members[0]} has no package/{name}")
            return member.read()

        assembly = json.loads(read(".jsii"))
        if assembly.get("schema") == "jsii/file-redirect":
            raw = read(assembly["filename"])
            if assembly.get("compression") == "gzip":
                raw = gzip.decompress(raw)
            assembly = json.loads(raw)
    return assembly


def _struct_of(type_ref: dict, types: dict, prefix: str) -> tuple[str, bool] | None:
    """(struct fqn, repeatable) when a property's type is a struct or a collection of structs."""
    fqn = type_ref.get("fqn")
    if fqn and fqn.startswith(prefix) and types.get(fqn, {}).get("datatype"):
        return fqn, False
    if "collection" in type_ref:
        inner = _struct_of(type_ref["collection"]["elementtype"], types, prefix)
        return (inner[0], True) if inner else None
    for member in type_ref.get("union", {}).get("types", []):
        inner = _struct_of(member, types, prefix)
        if inner:
            return inner
    return None


def _doc_strings(docs) -> list[str]:
    if isinstance(docs, str):
        return [docs]
    if isinstance(docs, dict):
        return [s for value in docs.values() for s in _doc_strings(value)]
    return []


def _terraform_name(prop: dict) -> str:
    """The registry link's anchor, usually in the summary or remarks; a description that holds
    an @-word (a regex, JavaScript docs) moves the link into a custom tag, so all are searched."""
    match = _PROPERTY_ANCHOR.search(" ".join(_doc_strings(prop.get("docs", {}))))
    return match.group("name") if match else camel_to_snake(prop["name"])


def _struct(fqn: str, types: dict, prefix: str, structs: dict) -> str:
    """Adds the struct (and the structs of its nested blocks) to structs; returns its id.

    Blocks refer to their struct by id rather than nesting it: the bindings name structs after
    their path, and at great depths two paths can get one name, which makes a struct contain
    itself (8.x's google_cloud_security_compliance_cloud_control)."""
    key = fqn.removeprefix(prefix)
    if key in structs:
        return key
    structs[key] = {}  # placeholder, so a struct that contains itself ends here
    attributes: dict[str, dict] = {}
    blocks: dict[str, dict] = {}
    for prop in types[fqn].get("properties", []):
        name = _terraform_name(prop)
        required = not prop.get("optional", False)
        nested = _struct_of(prop["type"], types, prefix)
        if nested is None:
            attributes[name] = {"required": required}
        else:
            nested_fqn, repeatable = nested
            blocks[name] = {"required": required, "max_one": not repeatable,
                            "struct": _struct(nested_fqn, types, prefix, structs)}
    structs[key] = {"attributes": dict(sorted(attributes.items())), "blocks": dict(sorted(blocks.items()))}
    return key


def extract(assembly: dict) -> dict:
    types = assembly["types"]
    prefix = assembly["name"] + "."
    versions: set[str] = set()
    provider_config = None
    resources: dict[str, str] = {}
    data_sources: dict[str, str] = {}
    structs: dict[str, dict] = {}
    for type_ in types.values():
        if type_.get("kind") != "class":
            continue
        match = _REPRESENTS.search(type_.get("docs", {}).get("summary", ""))
        if not match:
            continue
        versions.add(match.group("version"))
        config = _struct(type_["initializer"]["parameters"][-1]["type"]["fqn"], types, prefix, structs)
        if match.group("kind") is None:
            provider_config = config
        elif match.group("kind") == "resources":
            resources[match.group("type")] = config
        else:
            data_sources[match.group("type")] = config
    if len(versions) != 1 or provider_config is None or not resources or not data_sources:
        raise SystemExit(f"unexpected assembly: versions {versions}, {len(resources)} resources")
    return {
        "provider": {"source": "hashicorp/google", "version": versions.pop()},
        "bindings": {"package": assembly.get("targets", {}).get("python", {}).get("distName", assembly["name"]),
                     "version": assembly["version"]},
        "provider_config": provider_config,
        "resources": dict(sorted(resources.items())),
        "data_sources": dict(sorted(data_sources.items())),
        "structs": dict(sorted(structs.items())),
    }


# ---------------------------------------------------------------------------------------------
# The check (test time)
# ---------------------------------------------------------------------------------------------


@cache
def load_schema(path: Path = DEFAULT_SCHEMA) -> dict:
    return json.loads(Path(path).read_text())


def parse_blocks(text: str) -> dict:
    """HCL with block markers: python-hcl2 8 marks each block body with "__is_block__", which
    is what tells `x { ... }` (a list of marked dicts) from `x = { ... }` or `x = [{ ... }]`."""
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)
    return hcl2.loads(text, serialization_options=options)


def is_block_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and v.get("__is_block__") is True for v in value
    )


@dataclass(frozen=True)
class Problem:
    where: str  # file:line of the top-level block
    address: str  # google_storage_bucket.data, data.google_x.y, provider.google
    path: str  # nested block path inside it, "" at its top level
    message: str

    def __str__(self) -> str:
        inside = f" {self.path}:" if self.path else ""
        return f"{self.where}: {self.address}:{inside} {self.message}"


def _suggest(name: str, known, cutoff: float = 0.75) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _join(path: str, step: str) -> str:
    return f"{path}.{step}" if path else step


class _Checker:
    def __init__(self, structs: dict, where: str, address: str):
        self.structs = structs
        self.where = where
        self.address = address
        self.problems: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.where, self.address, path, message))

    def body(self, body: dict, schema: dict, path: str, meta: frozenset = frozenset()) -> None:
        attributes, blocks = schema["attributes"], schema["blocks"]
        present: set[str] = set()
        for key, value in body.items():
            if key == "__is_block__" or key in meta:
                continue
            if key == "dynamic" and "dynamic" not in attributes and "dynamic" not in blocks:
                for labelled in value if isinstance(value, list) else [value]:
                    for label, dynamic_body in labelled.items():
                        if label != "__is_block__":
                            self.dynamic(label, dynamic_body, schema, path)
                            present.add(label)
                continue
            present.add(key)
            if key in blocks:
                if not is_block_list(value):
                    self.report(path, f'"{key}" is a block: write {key} {{ ... }}, not {key} = ...')
                    continue
                nested = blocks[key]
                if nested["max_one"] and len(value) > 1:
                    self.report(path, f'"{key}" may appear once, found {len(value)} blocks')
                for index, item in enumerate(value):
                    step = f"{key}[{index}]" if len(value) > 1 else key
                    self.body(item, self.structs[nested["struct"]], _join(path, step))
            elif key in attributes:
                if is_block_list(value):
                    self.report(path, f'"{key}" is an argument: write {key} = ..., not {key} {{ ... }}')
            else:
                self.report(path, f'unknown argument or block "{key}"{_suggest(key, [*attributes, *blocks])}')
        for name, spec in attributes.items():
            if spec["required"] and name not in present:
                self.report(path, f'missing required argument "{name}"')
        for name, spec in blocks.items():
            if spec["required"] and name not in present:
                self.report(path, f'missing required block "{name}"')

    def dynamic(self, label: str, body: dict, schema: dict, path: str) -> None:
        where = _join(path, f'dynamic "{label}"')
        if label in schema["attributes"]:
            self.report(path, f'"{label}" is an argument, so it cannot be generated with a dynamic block')
            return
        if label not in schema["blocks"]:
            known = schema["blocks"]
            self.report(path, f'dynamic block of unknown block type "{label}"{_suggest(label, known)}')
            return
        if not isinstance(body, dict):
            self.report(where, "not a block")
            return
        if "for_each" not in body:
            self.report(where, 'missing required argument "for_each"')
        contents = body.get("content")
        for key in body:
            if key not in DYNAMIC_ARGUMENTS | {"content", "__is_block__"}:
                self.report(where, f'unknown argument or block "{key}" (a dynamic block takes for_each, iterator, labels and content)')
        if not is_block_list(contents) or len(contents) != 1:
            self.report(where, "needs exactly one content { ... } block")
            return
        self.body(contents[0], self.structs[schema["blocks"][label]["struct"]], _join(where, "content"))


def _line_of(text: str, pattern: str) -> int:
    match = re.search(pattern, text, re.M)  # pattern starts with ^[ \t]*: no earlier blank lines
    return text.count("\n", 0, match.start()) + 1 if match else 1


def check_text(text: str, schema: dict, filename: str = "<hcl>") -> list[Problem]:
    """Problems in one .tf file's google resources, data sources and provider blocks."""
    problems: list[Problem] = []
    structs = schema["structs"]
    tree = parse_blocks(text)
    kinds = (("resource", "resources", ""), ("data", "data_sources", "data."))
    for kind, section, address_prefix in kinds:
        for top in tree.get(kind, []):
            for type_, named in top.items():
                if not type_.startswith("google_") or not isinstance(named, dict):
                    continue
                for name, body in named.items():
                    if name == "__is_block__":
                        continue
                    line = _line_of(text, rf'^[ \t]*{kind}\s+"{re.escape(type_)}"\s+"{re.escape(name)}"')
                    checker = _Checker(structs, f"{filename}:{line}", f"{address_prefix}{type_}.{name}")
                    struct = schema[section].get(type_)
                    if struct is None:
                        word = "resource type" if kind == "resource" else "data source"
                        version = schema["provider"]["version"]
                        checker.report("", f"no {word} {type_} in hashicorp/google {version}"
                                       f"{_suggest(type_, schema[section], 0.9)}")
                    else:
                        checker.body(body, structs[struct], "", META_ATTRIBUTES | META_BLOCKS)
                    problems.extend(checker.problems)
    for top in tree.get("provider", []):
        body = top.get("google")
        if isinstance(body, dict):
            line = _line_of(text, r'^[ \t]*provider\s+"google"')
            checker = _Checker(structs, f"{filename}:{line}", "provider.google")
            checker.body(body, structs[schema["provider_config"]], "", PROVIDER_META)
            problems.extend(checker.problems)
    return sorted(problems, key=lambda p: int(p.where.rsplit(":", 1)[1]))


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def constraint_admits(constraint: str, version: str) -> bool:
    """Terraform's version constraint syntax ("~> 7.0", ">= 7.0, < 8.0", "= 7.46.1") for plain
    release numbers: does `constraint` allow `version`?"""
    have = _version_tuple(version)
    for part in constraint.split(","):
        match = re.fullmatch(r"\s*(~>|>=|<=|!=|>|<|=)?\s*([0-9]+(?:\.[0-9]+)*)\s*", part)
        if not match:
            raise ValueError(f"cannot read version constraint {constraint!r}")
        operator, bound_text = match.group(1) or "=", match.group(2)
        bound = _version_tuple(bound_text)
        width = max(len(bound), len(have))
        padded_have = have + (0,) * (width - len(have))
        padded_bound = bound + (0,) * (width - len(bound))
        if operator == "~>":
            # ~> 7.4 allows 7.4 up to, not including, 8.0; ~> 7.4.1 allows 7.4.1 up to 7.5.
            prefix = bound[:-1] if len(bound) > 1 else bound
            ok = padded_have >= padded_bound and have[: len(prefix)] == prefix
        else:
            ok = {
                "=": padded_have == padded_bound,
                "!=": padded_have != padded_bound,
                ">": padded_have > padded_bound,
                ">=": padded_have >= padded_bound,
                "<": padded_have < padded_bound,
                "<=": padded_have <= padded_bound,
            }[operator]
        if not ok:
            return False
    return True


def tf_files(root: Path = TERRAFORM) -> list[Path]:
    # Each file once: the environment roots' links are checked where they point (envs/shared).
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts and not p.is_symlink())


def check_directory(root: Path = TERRAFORM, schema: dict | None = None) -> list[Problem]:
    schema = schema if schema is not None else load_schema()
    problems: list[Problem] = []
    for path in tf_files(root):
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        problems.extend(check_text(path.read_text(), schema, str(shown)))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "extract":
        wheel, out = Path(argv[1]), Path(argv[2])
        schema = extract(read_assembly(wheel))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(schema, separators=(",", ":")))
        tmp.replace(out)
        print(f"{out}: hashicorp/google {schema['provider']['version']} "
              f"({len(schema['resources'])} resources, {len(schema['data_sources'])} data sources) "
              f"from {schema['bindings']['package']} {schema['bindings']['version']}")
        return 0
    if len(argv) in (1, 2) and argv[0] == "check":
        schema = load_schema(Path(argv[1])) if len(argv) == 2 else load_schema()
        problems = check_directory(TERRAFORM, schema)
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problems against hashicorp/google {schema['provider']['version']}")
        return 1 if problems else 0
    print("usage: provider_schema.py extract WHEEL OUT.json | check [SCHEMA.json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
