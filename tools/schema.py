"""The JSON Schema of a whole `Pulumi.<stack>.yaml`, generated from the config package's models (`make schema`).

    python -m tools.schema           # rewrite schema/stack-config.schema.json
    python -m tools.schema --check   # exit 1 when the committed file is stale

The stack files point editors at it with `# yaml-language-server: $schema=./schema/stack-config.schema.json`.
The schema helps while typing; config/ stays the authority (cross-field and prod rules are not in it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from config import QUANTITY_RE, SECTIONS, DeletionsConfig, JobSpec, PlatformConfig, QueueSpec, RunSpec, ServiceSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "schema" / "stack-config.schema.json"
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


def stack_file_schema() -> dict[str, Any]:
    """The schema: `config:` holds `aws:region`, `simfleet:platform` (PlatformConfig), `simfleet:queues` (QueueSpec[]),
    `simfleet:runs` (RunSpec[]), `simfleet:jobs` (JobSpec[]), `simfleet:services` (ServiceSpec[]) and
    `simfleet:deletions` (DeletionsConfig)."""
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
    definitions = top["$defs"]
    _drop_property_titles(definitions)
    _widen(definitions)
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
                    "simfleet:runs": {
                        "description": "One entry per simulation run; removing an entry removes its Job (S3 data stays).",
                        "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/RunSpec"}}, {"type": "null"}],
                    },
                    "simfleet:jobs": {
                        "description": "One entry per batch job (an Indexed Job, one pod per shard); runs once like a run.",
                        "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/JobSpec"}}, {"type": "null"}],
                    },
                    "simfleet:services": {
                        "description": "One entry per long-running service (Deployment, Service, HPA, PDB); updates roll.",
                        "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/ServiceSpec"}}, {"type": "null"}],
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


def render() -> str:
    return json.dumps(stack_file_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed schema is stale")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale; run `make schema` and commit it", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
