"""Config errors: one `Issue` per problem with its path (and, once located, its file, line and entry name), every
problem of a stack in one `ConfigError`; pydantic's messages rewritten to say what to write instead."""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Issue:
    """One problem. `path` is relative to the file it is in (`runs[1].seeds` is the second run of that file's `runs:`);
    `file`, `line` and `entry` (the run's, job's, service's or queue's name) are filled in by config.sources.locate."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None
    entry: str | None = None

    def __str__(self) -> str:
        path = self.path
        if self.entry is not None:
            # runs[3].seed -> runs[3] (walk-fresh).seed: the reader finds the entry by its name, not by counting.
            head, bracket, rest = path.partition("]")
            path = f"{head}{bracket} ({self.entry}){rest}"
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        return f"{where}{path}: {self.message}" if path else f"{where}{self.message}"


class ConfigError(Exception):
    """Every problem found in one stack (its file and the run files it names). `str()` is the message users see."""

    def __init__(self, source: str, issues: Sequence[Issue]):
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        lines = [f"{source}: {count} error{'s' if count != 1 else ''} in the stack config"]
        lines += [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


# The order of the stack file's list sections after platform: issues are reported section by section, entry by entry.
LIST_SECTIONS = ("queues", "runs", "jobs", "services")


def file_order(issue: Issue) -> tuple[int, int]:
    match = re.match(r"^(\w+)\[(\d+)\]", issue.path)
    if match and match[1] in LIST_SECTIONS:
        return (1 + LIST_SECTIONS.index(match[1]), int(match[2]))
    if issue.path in LIST_SECTIONS:  # about a whole section (its quotas together): after its entries
        return (1 + LIST_SECTIONS.index(issue.path), 1 << 30)
    return (0, 0)


def issues_from(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[Issue]:
    issues = []
    for error in err.errors(include_url=False):
        loc = error["loc"]
        path = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        issues.append(Issue(path, _message(error, model)))
    return issues


def _message(error: Any, model: type[BaseModel]) -> str:
    """pydantic's message for one error, said as what is wrong and what to write instead."""
    kind, loc, value, ctx = error["type"], error["loc"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key_message(model, loc)
    if kind == "missing":
        owner = _model_at(model, loc[:-1])
        field = next((f for n, f in owner.model_fields.items() if (f.alias or n) == loc[-1]), None) if owner else None
        return f"is required: {field.description}" if field is not None and field.description else "is required"
    if kind == "list_type":
        return f"expected a list, not {_kind_of(value)}; write {_as_list(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        owner = _model_at(model, loc)
        keys = ", ".join(sorted(f.alias or n for n, f in owner.model_fields.items())) if owner else ""
        return f"expected a mapping (key: value pairs{' with keys ' + keys if keys else ''}), not {_kind_of(value)}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx["expected"]))
        return f"{value!r} is not allowed; use {ctx['expected']}{did_you_mean(str(value), allowed)}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = _number(ctx.get("ge", ctx.get("gt")))
        return f"{value!r} is too small; use {'at least ' if kind == 'greater_than_equal' else 'more than '}{bound}"
    if kind in ("less_than_equal", "less_than"):
        bound = _number(ctx.get("le", ctx.get("lt")))
        return f"{value!r} is too large; use {'at most ' if kind == 'less_than_equal' else 'less than '}{bound}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{value!r} is not a whole number; write one like 2"
    if kind in ("float_parsing", "float_type"):
        return f"{value!r} is not a number; write one like 0.5"
    if kind in ("bool_parsing", "bool_type"):
        return f"{value!r} is not true or false"
    if kind == "string_type":
        return (
            f'{value!r} is {_kind_of(value)}, not text; quote it: "{value}"'
            if _scalar(value)
            else f"expected text, not {_kind_of(value)}"
        )
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx['pattern']}"
    if kind == "too_short":
        return (
            f"is empty; give at least {ctx['min_length']}"
            if not value
            else f"has too few items; give at least {ctx['min_length']}"
        )
    if kind == "too_long":
        return f"has {ctx.get('actual_length', len(value))} items; at most {ctx['max_length']} are allowed"
    return str(error["msg"]).removeprefix("Value error, ")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _as_list(value: Any) -> str:
    """A scalar in the list form it was probably meant as: `python -m x` -> [python, -m, x], `20` -> [20]."""
    if isinstance(value, dict):
        return "a list of entries, each starting with `- `"
    if isinstance(value, str):
        try:
            items: list[Any] = shlex.split(value)
        except ValueError:
            items = value.split()
    else:
        items = [value]
    return yaml.safe_dump(items, default_flow_style=True, width=1 << 16).strip()


class Entry(Protocol):
    """A list entry with a name and its own cross-field rules (RunSpec aside: its rules are pydantic validators)."""

    @property
    def name(self) -> str: ...

    def problems(self) -> list[Issue]: ...


def entry_rules(section: str, entries: Sequence[tuple[int, Entry]], invalid: set[str] | None = None) -> list[Issue]:
    """Each entry's own cross-field rules with its path, then names unique within the section.

    The names of entries with problems go into `invalid`, so rules about other entries that name them stay quiet.
    """
    issues = []
    for index, entry in entries:
        problems = entry.problems()
        issues += [Issue(f"{section}[{index}].{p.path}", p.message) for p in problems]
        if problems and invalid is not None:
            invalid.add(entry.name)
    seen: dict[str, int] = {}
    for index, entry in entries:
        if entry.name in seen:
            issues.append(
                Issue(
                    f"{section}[{index}].name",
                    f"{entry.name!r} is already used by {section}[{seen[entry.name]}]; names are unique, rename one",
                )
            )
        else:
            seen[entry.name] = index
    return issues


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """ "; did you mean 'x'?" for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_key_message(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return "unknown key"
    allowed = sorted(f.alias or name for name, f in owner.model_fields.items())
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed keys: {', '.join(allowed)}"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        match = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if match is None:
            return None
        current = _unwrap(match.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if not args:
            break
        annotation = args[-1] if get_origin(annotation) is dict else args[0]
    return annotation
