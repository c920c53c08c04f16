"""Config errors: one `Issue` per problem with its path, every problem of a file in one `ConfigError`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, get_args, get_origin

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Issue:
    path: str
    message: str


class ConfigError(Exception):
    """Every problem found in one stack file. `str()` is the message users see."""

    def __init__(self, source: str, issues: Sequence[Issue]):
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        lines = [f"{source}: {count} error{'s' if count != 1 else ''} in the stack config"]
        lines += [f"  - {issue.path}: {issue.message}" if issue.path else f"  - {issue.message}" for issue in self.issues]
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
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(model, loc)
        elif error["type"] == "missing":
            message = "is required"
        issues.append(Issue(path, message))
    return issues


class Entry(Protocol):
    """A list entry with a name and its own cross-field rules (RunSpec aside: its rules are pydantic validators)."""

    @property
    def name(self) -> str: ...

    def problems(self) -> list[Issue]: ...


def entry_rules(section: str, entries: Sequence[tuple[int, Entry]]) -> list[Issue]:
    """Each entry's own cross-field rules with its path, then names unique within the section."""
    issues = [Issue(f"{section}[{index}].{p.path}", p.message) for index, entry in entries for p in entry.problems()]
    seen: dict[str, int] = {}
    for index, entry in entries:
        if entry.name in seen:
            issues.append(Issue(f"{section}[{index}].name", f"{entry.name!r} is already used by {section}[{seen[entry.name]}]"))
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
