"""Action validation: the JSON Schema keywords the contract's action schema uses, nothing more (no jsonschema in the
glue image), and the action as the JSON the simulator receives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .settings import ConfigError

ACTION_SCHEMA = "action.schema.json"

# Keywords that only describe; they never change whether an instance is valid.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly"}
)
SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    }
)
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


class UnsupportedSchema(Exception):
    """The schema uses JSON Schema the built-in validator does not implement."""


def unsupported_keywords(schema: Any, pointer: str = "") -> list[str]:
    """Every place `schema` uses a keyword outside SUPPORTED_KEYWORDS | ANNOTATIONS, as "<keyword> at <pointer>"."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [f"a schema that is neither an object nor a boolean at {pointer or '/'}"]
    found: list[str] = []
    for keyword, value in schema.items():
        here = f"{pointer}/{keyword}"
        if keyword in ANNOTATIONS:
            continue
        if keyword not in SUPPORTED_KEYWORDS:
            found.append(f"'{keyword}' at {pointer or '/'}")
        elif keyword == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                found += unsupported_keywords(sub, f"{here}/{name}")
        elif keyword in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            for index, sub in enumerate(value):
                found += unsupported_keywords(sub, f"{here}/{index}")
        elif keyword in ("additionalProperties", "items", "not", "if", "then", "else"):
            found += unsupported_keywords(value, here)
        elif keyword == "type":
            types = value if isinstance(value, list) else [value]
            found += [f"unknown type {t!r} at {here}" for t in types if t not in _TYPES]
    return found


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return is_number(value)
    # integer: JSON Schema counts 1.0 as an integer
    return is_number(value) and (isinstance(value, int) or float(value).is_integer())


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Validator:
    """Validates JSON values against a schema restricted to SUPPORTED_KEYWORDS (checked once, at construction)."""

    def __init__(self, schema: Any) -> None:
        problems = unsupported_keywords(schema)
        if problems:
            raise UnsupportedSchema(
                "the schema uses JSON Schema that simfleet's glue runtime does not implement: " + ", ".join(problems)
            )
        self.schema = schema

    def errors(self, instance: Any) -> list[tuple[str, str]]:
        """(JSON pointer, message) for every violation, in schema order; [] when the instance is valid."""
        out: list[tuple[str, str]] = []
        self._check(self.schema, instance, "", out)
        return out

    def _valid(self, schema: Any, instance: Any) -> bool:
        found: list[tuple[str, str]] = []
        self._check(schema, instance, "", found)
        return not found

    def _check(self, schema: Any, instance: Any, at: str, out: list[tuple[str, str]]) -> None:
        where = at or "/"
        if schema is True:
            return
        if schema is False:
            out.append((where, f"{show(instance)} is not allowed here"))
            return
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(instance, t) for t in types):
                out.append((where, f"{show(instance)} is not of type {' or '.join(repr(t) for t in types)}"))
        if "enum" in schema and not any(_json_equal(instance, option) for option in schema["enum"]):
            out.append((where, f"{show(instance)} is not one of {show(schema['enum'])}"))
        if "const" in schema and not _json_equal(instance, schema["const"]):
            out.append((where, f"{show(schema['const'])} was expected, not {show(instance)}"))
        if is_number(instance):
            self._check_bounds(schema, instance, where, out)
        if isinstance(instance, dict):
            self._check_object(schema, instance, at, out)
        if isinstance(instance, list):
            self._check_array(schema, instance, at, out)
        for sub in schema.get("allOf", []):
            self._check(sub, instance, at, out)
        if "anyOf" in schema and not any(self._valid(sub, instance) for sub in schema["anyOf"]):
            out.append((where, f"{show(instance)} matches none of the allowed forms (anyOf)"))
        if "oneOf" in schema:
            matches = sum(self._valid(sub, instance) for sub in schema["oneOf"])
            if matches != 1:
                detail = "none" if matches == 0 else f"{matches}"
                out.append((where, f"{show(instance)} must match exactly one allowed form (oneOf), it matches {detail}"))
        if "not" in schema and self._valid(schema["not"], instance):
            out.append((where, f"{show(instance)} matches a form that is not allowed (not)"))
        if "if" in schema:
            branch = "then" if self._valid(schema["if"], instance) else "else"
            if branch in schema:
                self._check(schema[branch], instance, at, out)

    @staticmethod
    def _check_bounds(schema: dict[str, Any], value: float, where: str, out: list[tuple[str, str]]) -> None:
        if "minimum" in schema and value < schema["minimum"]:
            out.append((where, f"{value} is less than the minimum of {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            out.append((where, f"{value} is greater than the maximum of {schema['maximum']}"))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append((where, f"{value} must be greater than {schema['exclusiveMinimum']}"))
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append((where, f"{value} must be less than {schema['exclusiveMaximum']}"))

    def _check_object(self, schema: dict[str, Any], instance: dict[str, Any], at: str, out: list[tuple[str, str]]) -> None:
        for name in schema.get("required", []):
            if name not in instance:
                out.append((at or "/", f"{name!r} is a required property"))
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in instance:
                self._check(sub, instance[name], f"{at}/{name}", out)
        extra_schema = schema.get("additionalProperties", True)
        extras = [name for name in instance if name not in properties]
        if extra_schema is False and extras:
            listed = ", ".join(repr(name) for name in extras)
            out.append((at or "/", f"additional properties are not allowed ({listed} unexpected)"))
        elif isinstance(extra_schema, dict):
            for name in extras:
                self._check(extra_schema, instance[name], f"{at}/{name}", out)

    def _check_array(self, schema: dict[str, Any], instance: list[Any], at: str, out: list[tuple[str, str]]) -> None:
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append((at or "/", f"has {len(instance)} items, fewer than {schema['minItems']}"))
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            out.append((at or "/", f"has {len(instance)} items, more than {schema['maxItems']}"))
        if "items" in schema:
            for index, item in enumerate(instance):
                self._check(schema["items"], item, f"{at}/{index}", out)


def load_validator(contract_dir: Path) -> Validator:
    path = contract_dir / ACTION_SCHEMA
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the action schema {path}: {err}") from err
    try:
        return Validator(schema)
    except UnsupportedSchema as err:
        raise ConfigError(f"{path}: {err}") from err


def encode_action(action: Any, validator: Validator) -> tuple[bytes | None, str | None]:
    """The action as the JSON the simulator receives, or the reason it cannot be sent.

    What is validated is the JSON itself (tuples become arrays, NaN is refused), since that is what arrives.
    """
    try:
        text = json.dumps(action, allow_nan=False)
    except (TypeError, ValueError) as err:
        return None, f"is not JSON ({err})"
    problems = validator.errors(json.loads(text))
    if problems:
        pointer, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, f"at {pointer}: {message}{more}"
    return text.encode(), None
