"""Reading engine props: small helpers that work on plain values and on the policy SDK's read-only proxies alike.

Props may be the policy SDK's proxies (a `Mapping`/`Sequence` that raises UnknownValueError on a value that is
unknown during preview), so these helpers only use Mapping/Sequence operations on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard


def is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # A plain dict is asked first (a plain list in is_list): an isinstance against the abstract classes goes through
    # their __instancecheck__, several times slower, and the offline plan asks it hundreds of times of every run.
    return type(value) is dict or isinstance(value, Mapping)


def is_list(value: Any) -> TypeGuard[Sequence[Any]]:
    return type(value) is list or (isinstance(value, Sequence) and not isinstance(value, str | bytes))


def get_path(value: Any, *path: str | int) -> Any:
    """The value at `path` (mapping keys and list indexes), or None where the path stops."""
    for key in path:
        if isinstance(key, int):
            if not is_list(value) or key >= len(value):
                return None
            value = value[key]
        else:
            if not is_map(value) or key not in value:
                return None
            value = value[key]
    return value


def whole_number(value: Any) -> int | None:
    """An integer property: the engine's props come through protobuf Structs, so 600 arrives as 600.0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if is_list(value):
        return list(value)
    return [value]


def policy_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/S3 policy given as a JSON string (the usual case) or as an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if is_map(value) else None


def policy_statements(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if document is None:
        return []
    return [s for s in as_list(document.get("Statement")) if is_map(s)]
