"""The JSON Schemas of a whole `Pulumi.<stack>.yaml` and of a run file, generated from the config package's models
(`make schema`).

    python -m tools.schema           # rewrite schema/stack-config.schema.json and schema/run-file.schema.json
    python -m tools.schema --check   # exit 1 when a committed file is stale

The stack files point editors at it with `# yaml-language-server: $schema=./schema/stack-config.schema.json`, run
files with `$schema=<relative path>/schema/run-file.schema.json`. The schemas help while typing; config/ stays the
authority (cross-field and prod rules are not in them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from config import QUANTITY_RE, SECTIONS, DeletionsConfig, JobSpec, PlatformConfig, QueueSpec, RunSpec, ServiceSpec
from config.sources import FILE_SECTIONS, RUN_FILES_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "schema" / "stack-config.schema.json"
RUN_FILE_SCHEMA_PATH = PROJECT_ROOT / "schema" / "run-file.schema.json"
_SECTION_DESCRIPTIONS = {
    "runs": "One entry per simulation run; removing an entry removes its Job (S3 data stays).",
    "jobs": "One entry per batch job (an Indexed Job, one pod per shard); runs once like a run.",
    "services": "One entry per long-running service (Deployment, Service, HPA, PDB); updates roll.",
}
_SECTION_MODELS = {"runs": "RunSpec", "jobs": "JobSpec", "services": "ServiceSpec"}
# AWS region names: us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4, ...
AWS_REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$"


# Inputs the models accept through a BeforeValidator in more shapes than pydantic's schema shows:
# durations also as integer seconds, quantities also as numbers, GPU capacity also as one string.
_INTEGER_SECONDS = {"type": "integer", "minimum": 0}
_WIDENED: dict[tuple[str, str], str] = {
    ("RunSpec", "maxRuntime"): "duration",
    ("RunSpec", "ttlAfterFinished"): "duration",
    ("RunSpec", "cpu"): "quantity",
    ("RunSpec", "memory"): "quantity",
    ("GpuNodeGroupConfig", "capacity"): "one-or-many",
    ("ServiceSpec", "cpu"): "quantity",
    ("ServiceSpec", "memory"): "quantity",
    ("ServiceSpec", "shmSize"): "quantity",
    ("ServiceSpec", "scratchSize"): "quantity",
    ("PodsMetric", "target"): "quantity",
    ("Probes", "startupTimeout"): "duration",
}


def _widen(definitions: dict[str, Any]) -> None:
    for (model, prop), kind in _WIDENED.items():
        field = definitions[model]["properties"][prop]
        meta = {k: field.pop(k) for k in ("description", "default", "examples") if k in field}
        nullable = [a for a in field.pop("anyOf", []) if a.get("type") == "null"]
        if nullable:  # an optional field: widen its string form, keep null
            field = {"type": "string"}
        if kind == "duration":
            alternatives = [field, _INTEGER_SECONDS]
        elif kind == "quantity":
            alternatives = [{**field, "pattern": QUANTITY_RE.pattern}, {"type": "number", "minimum": 0}]
        else:
            alternatives = [field["items"], field]
        definitions[model]["properties"][prop] = {"anyOf": alternatives + nullable, **meta}


def _drop_property_titles(definitions: dict[str, Any]) -> None:
    # pydantic titles each property after its Python name ("Checkpointnoncurrentdays"); editors show the key anyway.
    for definition in definitions.values():
        for field in definition.get("properties", {}).values():
            field.pop("title", None)


def _definitions() -> dict[str, Any]:
    _, top = models_json_schema(
        [
            (PlatformConfig, "validation"),
            (QueueSpec, "validation"),
            (RunSpec, "validation"),
            (JobSpec, "validation"),
            (ServiceSpec, "validation"),
            (DeletionsConfig, "validation"),
        ],
        by_alias=True,
        ref_template="#/$defs/{model}",
    )
    definitions: dict[str, Any] = top["$defs"]
    _drop_property_titles(definitions)
    _widen(definitions)
    return definitions


def _section(name: str) -> dict[str, Any]:
    return {
        "description": _SECTION_DESCRIPTIONS[name],
        "anyOf": [{"type": "array", "items": {"$ref": f"#/$defs/{_SECTION_MODELS[name]}"}}, {"type": "null"}],
    }


def _used(definitions: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The definitions reachable from `roots`, sorted by name."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += [ref.rsplit("/", 1)[-1] for ref in _refs(definitions[name])]
    return {name: definitions[name] for name in sorted(seen)}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def stack_file_schema() -> dict[str, Any]:
    """The schema: `config:` holds `aws:region`, `simfleet:platform` (PlatformConfig), `simfleet:queues` (QueueSpec[]),
    `simfleet:runs` (RunSpec[]), `simfleet:jobs` (JobSpec[]), `simfleet:services` (ServiceSpec[]) and
    `simfleet:runFiles` (paths or glob patterns of run files) and `simfleet:deletions` (DeletionsConfig)."""
    definitions = _definitions()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://simfleet.invalid/schema/stack-config.schema.json",
        "title": "simfleet stack file (Pulumi.<stack>.yaml)",
        "description": "Generated from config/ by `make schema`; do not edit by hand.",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": {
                    "aws:region": {"type": "string", "pattern": AWS_REGION_PATTERN, "description": "AWS region of the stack."},
                    "simfleet:platform": {"$ref": "#/$defs/PlatformConfig"},
                    "simfleet:queues": {
                        "description": "One Kueue queue per team; leave it out for one queue with every free GPU.",
                        "type": "array",
                        "items": {"$ref": "#/$defs/QueueSpec"},
                        "minItems": 1,
                    },
                    **{f"simfleet:{name}": _section(name) for name in FILE_SECTIONS},
                    f"simfleet:{RUN_FILES_KEY}": {
                        "description": "Run files (runs:, jobs: and services: lists, one file per team) beside the stack "
                        "file: paths or glob patterns relative to its directory, each matching at least one file.",
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "examples": [["runs/dev/*.yaml"]],
                    },
                    "simfleet:deletions": {"$ref": "#/$defs/DeletionsConfig"},
                },
                "required": ["aws:region", "simfleet:platform"],
                # simfleet reads only these keys; any other simfleet: key is a typo the program would ignore.
                "patternProperties": {f"^simfleet:(?!{'|'.join(f'{name}$' for name in SECTIONS)})": False},
                # Other namespaces (aws:profile, pulumi:..., secure values) belong to Pulumi and providers.
                "additionalProperties": True,
            },
            # Pulumi's own stack settings (secrets provider, encrypted key, ESC environments).
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "environment": {},
        },
        "required": ["config"],
        "additionalProperties": False,
        "$defs": {name: definitions[name] for name in sorted(definitions)},
    }


def run_file_schema() -> dict[str, Any]:
    """A run file: `runs:`, `jobs:` and `services:`, each entry exactly as in the stack file."""
    definitions = _definitions()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://simfleet.invalid/schema/run-file.schema.json",
        "title": "simfleet run file (named by simfleet:runFiles in a stack file)",
        "description": "Generated from config/ by `make schema`; do not edit by hand.",
        "type": ["object", "null"],
        "properties": {name: _section(name) for name in FILE_SECTIONS},
        "additionalProperties": False,
        "$defs": _used(definitions, list(_SECTION_MODELS.values())),
    }


def render(schema: dict[str, Any] | None = None) -> str:
    return json.dumps(stack_file_schema() if schema is None else schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed schema is stale")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH, help="the stack-file schema")
    parser.add_argument("--run-file-out", type=Path, default=RUN_FILE_SCHEMA_PATH, help="the run-file schema")
    args = parser.parse_args(argv)
    outputs = [(args.out, render()), (args.run_file_out, render(run_file_schema()))]
    if args.check:
        stale = [str(path) for path, text in outputs if not path.exists() or path.read_text() != text]
        if stale:
            print(f"{', '.join(stale)} stale; run `make schema` and commit", file=sys.stderr)
            return 1
        return 0
    for path, text in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
