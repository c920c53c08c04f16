"""The stack-config tables of docs/reference.md, generated from the config package's models.

    python -m tools.reference           # rewrite the tables in docs/reference.md
    python -m tools.reference --check   # exit 1 when a table no longer matches the models

Each section's table sits between `<!-- BEGIN tools.reference simfleet:<section> -->` and `<!-- END tools.reference -->`.
The key, type and default columns come from the models (keys, constraints and defaults never drift from config/); the
rule column is prose kept by hand: the tool keeps what the file says for each key, starts a new key with the field's
description, and drops the rows of keys that no longer exist. So after a config change, run it and edit the rules.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, WithJsonSchema
from pydantic.fields import FieldInfo

from config import DeletionsConfig, JobSpec, PlatformConfig, QueueSpec, RunSpec, ServiceSpec
from config.queues import GpuLimit, GpuQuota, QuantityQuota
from config.runs import Seeds
from config.services import Expose, ExposeField
from config.types import Duration, ImageString, Quantity, RestrictedCidr

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_PATH = PROJECT_ROOT / "docs" / "reference.md"
SECTIONS: dict[str, type[BaseModel]] = {
    "simfleet:platform": PlatformConfig,
    "simfleet:queues": QueueSpec,
    "simfleet:runs": RunSpec,
    "simfleet:jobs": JobSpec,
    "simfleet:services": ServiceSpec,
    "simfleet:deletions": DeletionsConfig,
}
BEGIN = "<!-- BEGIN tools.reference {section} -->"
END = "<!-- END tools.reference -->"
HEADER = "| key | type | default | rule |\n| --- | --- | --- | --- |"

# Shared field types, named by the BeforeValidator that parses them (the model sees only int, str, a model).
NAMED_TYPES: tuple[tuple[Any, str], ...] = (
    (Duration, "duration"),
    (Quantity, "quantity"),
    (ImageString, "image"),
    (RestrictedCidr, "CIDR"),
    (GpuQuota, "GPUs: n or {spot, onDemand}"),
    (GpuLimit, "GPUs: n or {spot, onDemand}"),
    (QuantityQuota, "quantity: q or {spot, onDemand}"),
    (ExposeField, "`cluster` or {internalLoadBalancer}"),
    (Seeds, "seeds: a list of int and `a..b` ranges, or one range"),
)


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    rule: str

    def render(self) -> str:
        return "| " + " | ".join(_cell(c) for c in (f"`{self.key}`", self.type, self.default, self.rule)) + " |"


def _cell(text: str) -> str:
    # A raw | would end the cell; an escaped one renders as | even inside backticks.
    return re.sub(r"(?<!\\)\|", r"\|", text.replace("\n", " "))


def _validator_funcs(metadata: list[Any]) -> set[Any]:
    return {m.func for m in metadata if isinstance(m, BeforeValidator)}


def _named(metadata: list[Any]) -> str | None:
    funcs = _validator_funcs(metadata)
    for alias, name in NAMED_TYPES:
        wanted = _validator_funcs(list(get_args(alias)[1:]))
        if wanted and wanted <= funcs:
            return name
    return None


def _widened(field: FieldInfo) -> bool:
    """A field that accepts other shapes than its model (one value for a mapping, a word for an object)."""
    return any(isinstance(m, BeforeValidator | WithJsonSchema) for m in field.metadata)


def _without_none(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) < len(get_args(annotation)):
            return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return annotation, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def type_name(annotation: Any, metadata: list[Any]) -> str:
    """A short, readable name of a field's type: `int`, `duration`, `list of CIDR`, `spot` or `onDemand`."""
    inner, _ = _without_none(annotation)
    if get_origin(inner) is typing.Annotated:
        base, *extra = get_args(inner)
        return type_name(base, [*extra, *metadata])
    named = _named(metadata)
    if named:
        return named
    origin = get_origin(inner)
    if origin is Literal:
        values = [f"`{value}`" for value in get_args(inner)]
        return " or ".join(values) if len(values) == 2 else "one of " + ", ".join(values)
    if origin is list:
        (item,) = get_args(inner)
        if _is_model(item):
            return "list of objects"
        if get_origin(item) is Literal:
            return "list of " + ", ".join(f"`{value}`" for value in get_args(item))
        return "list of " + type_name(item, [])
    if origin is dict:
        return "map of string"
    if _is_model(inner):
        return "object"
    if inner is ipaddress.IPv4Network:
        return "CIDR"
    return {bool: "bool", int: "int", float: "number", str: "string"}.get(inner, str(inner))


def constraints(metadata: list[Any], kind: str) -> str:
    """Bounds from Field(ge=..., le=..., min_length=..., pattern=...), as a reader would say them."""

    def number(value: Any) -> str:
        return duration_text(value) if kind == "duration" else f"{value}"

    low = high = ""
    parts: list[str] = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = number(m.ge)
        elif isinstance(m, annotated_types.Gt):
            low = f"more than {number(m.gt)}"
        elif isinstance(m, annotated_types.Le):
            high = number(m.le)
        elif isinstance(m, annotated_types.MinLen):
            parts.append(f"at least {m.min_length}")
        elif isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length}")
        elif getattr(m, "pattern", None):
            parts.append(f"matching `{m.pattern}`")
    if low and high:
        parts.insert(0, f"{low} to {high}")
    elif low:
        parts.insert(0, low if low.startswith("more") else f"{low} or more")
    elif high:
        parts.insert(0, f"at most {high}")
    return ", ".join(parts)


def duration_text(seconds: int) -> str:
    """7200 -> 2h, 5400 -> 1h30m, 0 -> 0s: the form the stack file uses."""
    if seconds == 0:
        return "0s"
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        text += f"{count}{unit}" if count else ""
    return text


def flow(value: Any) -> str:
    """A default in YAML flow style, as it would be written in the stack file."""
    if isinstance(value, BaseModel):
        return flow(value.model_dump(by_alias=True, exclude_none=True, mode="json"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and (not value or re.fullmatch(r"[\d.]+", value)):
        return f'"{value}"'
    return str(value)


def default_text(field: FieldInfo, kind: str) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if kind == "duration" and isinstance(value, int):
        return f"`{duration_text(value)}`"
    if isinstance(value, Expose):
        return f"`{value.kind}`" if value.kind == "cluster" else f"`{flow(value)}`"
    return f"`{flow(value)}`"


def _description(field: FieldInfo) -> str:
    return (field.description or "").strip()


def _plain_default(model: type[BaseModel]) -> BaseModel | None:
    try:
        return model()
    except Exception:  # a model with required fields or a rule its defaults break
        return None


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    """One row per key a stack file may set, nested keys flattened (`network.cidr`, `ports[].name`).

    An object gets a row of its own when leaving it out means something (it is optional, or its default differs from
    its keys' defaults); lists of objects get one for the list and one per item key.
    """
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        inner, optional = _without_none(field.annotation)
        kind = type_name(field.annotation, field.metadata)
        nullable = optional and field.get_default(call_default_factory=True) is not None
        typed = ", ".join(p for p in (kind, constraints(field.metadata, kind), "or null" if nullable else "") if p)
        own = Row(key, typed, default_text(field, kind), _description(field))
        if _is_model(inner) and not _widened(field):
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            if optional or (default is not None and default != _plain_default(inner)):
                yield own
            yield from rows(inner, key + ".")
        elif get_origin(inner) is list and _is_model(get_args(inner)[0]):
            yield own
            yield from rows(get_args(inner)[0], key + "[].")
        else:
            yield own


def parse_rules(block: str) -> dict[str, str]:
    """The rule column of an existing table, by key."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            found[cells[0].strip("`")] = cells[3].replace("\\|", "|")
    return found


def table(section: str, kept: dict[str, str]) -> str:
    body = [Row(r.key, r.type, r.default, kept.get(r.key) or r.rule).render() for r in rows(SECTIONS[section])]
    return "\n".join([HEADER, *body])


def render(text: str) -> str:
    """`text` with every generated table rewritten from the models; the rule column is kept."""
    for section in SECTIONS:
        begin = BEGIN.format(section=section)
        pattern = re.compile(re.escape(begin) + r"\n(.*?)" + re.escape(END), re.S)
        match = pattern.search(text)
        if match is None:
            raise ValueError(f"{REFERENCE_PATH.name} has no table for {section} (a line `{begin}`)")
        fresh = f"{begin}\n{table(section, parse_rules(match[1]))}\n{END}"
        text = text[: match.start()] + fresh + text[match.end() :]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed tables do not match the models")
    parser.add_argument("--path", type=Path, default=REFERENCE_PATH)
    args = parser.parse_args(argv)
    text = args.path.read_text()
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.path} does not match config/; run `.venv/bin/python -m tools.reference` and commit it", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(fresh)
    empty = [key for key, rule in (parse_rules(fresh)).items() if not rule]
    print(f"wrote {args.path}" + (f"; write the rule of {', '.join(empty)}" if empty else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
