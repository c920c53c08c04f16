"""The stack as the command planned it last (workloads/observe/fleet.py), kept on disk and reused while every input is
the same: validating and planning 2,000 runs takes seconds, reading them back milliseconds.

An entry is used only when all of these are what they were when it was written, else the stack is planned afresh
(and the entry replaced): the stack file's bytes; each run-file pattern's matches and their bytes; each glue file's
bytes; the simfleet code that plans (every file of config/, workloads/ and data/, and the top-level modules they
import); the caller's account (it names the buckets); the date (a Kubernetes version's support ends on a date). An
entry that cannot be read or does not have the expected shape is ignored. `--no-cache` neither reads nor writes it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from config import PROJECT_ROOT
from workloads.observe import Where
from workloads.observe.fleet import Declared, Fleet
from workloads.observe.usage import Prices

FORMAT = 1
FILE = "plan.json"
# What the plan is computed by, relative to the checkout the command runs from.
CODE = ("config", "workloads", "data", "naming.py", "catalog.py", "versions.py")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version(root: Path = PROJECT_ROOT) -> str:
    """One hash of every file of the code that plans (its path and bytes): any edit or upgrade moves it."""
    total = hashlib.sha256()
    for name in CODE:
        top = root / name
        for path in sorted(p for p in ([top] if top.is_file() else top.rglob("*")) if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            total.update(f"{path.relative_to(root).as_posix()}\0".encode())
            total.update(digest(path.read_bytes()).encode())
    return total.hexdigest()


def matches(project: Path, pattern: str) -> list[str]:
    """A run-file pattern's files, as config/sources.py globs them (relative to the stack file's directory)."""
    return sorted(p.relative_to(project).as_posix() for p in project.glob(pattern) if p.is_file())


def today() -> str:
    return datetime.date.today().isoformat()


def _hashes(project: Path, names: list[str]) -> dict[str, str] | None:
    try:
        return {name: digest((project / name).read_bytes()) for name in names}
    except OSError:
        return None


def _key(stack_file: Path, stack: str) -> dict[str, Any]:
    """The part of the key known without planning: the format, the code, the stack, the date, the stack file."""
    return {
        "format": FORMAT,
        "code": code_version(),
        "stack": stack,
        "today": today(),
        "stackFile": digest(stack_file.read_bytes()),
    }


def lookup(directory: Path | None, stack_file: Path, stack: str) -> tuple[Fleet, str] | None:
    """(the fleet, the account it was planned for) when an entry's inputs are all unchanged; the caller compares the
    account with its own."""
    if directory is None:
        return None
    try:
        entry = json.loads((directory / FILE).read_text())
        if not isinstance(entry, dict) or entry.get("key") != _key(stack_file, stack):
            return None
        project = stack_file.parent
        globs, files = entry["globs"], entry["files"]
        if any(matches(project, pattern) != found for pattern, found in globs.items()):
            return None
        if _hashes(project, sorted(files)) != files:
            return None
        return _fleet(entry["fleet"]), str(entry["account"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # no entry, or one this code cannot read: plan afresh


def store(
    directory: Path | None, stack_file: Path, stack: str, account: str, run_files: list[str], glue: list[str], fleet: Fleet
) -> None:
    """Write the entry for this plan (atomically: a reader sees the old entry or the new one). Best effort: a cache
    that cannot be written only costs the next command the planning time."""
    if directory is None:
        return
    project = stack_file.parent
    globs = {pattern: matches(project, pattern) for pattern in run_files}
    files = _hashes(project, sorted({*(name for found in globs.values() for name in found), *glue}))
    if files is None:
        return
    entry = {"key": _key(stack_file, stack), "account": account, "globs": globs, "files": files, "fleet": _plain(fleet)}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f"{FILE}.{os.getpid()}.tmp"  # two commands at once each write their own
        temporary.write_text(json.dumps(entry))
        temporary.replace(directory / FILE)
    except OSError:
        return


def _plain(fleet: Fleet) -> dict[str, Any]:
    """The fleet as JSON values (tuples become lists; _fleet makes them tuples again). Shallow, unlike asdict: the
    inputs are already plain."""
    declared = {name: {**vars(d), "where": vars(d.where)} for name, d in fleet.declared.items()}
    return {**vars(fleet), "prices": vars(fleet.prices), "declared": declared}


def _fleet(document: dict[str, Any]) -> Fleet:
    prices = document["prices"]
    declared = {name: _declared(d) for name, d in document["declared"].items()}
    return Fleet(**{**document, "prices": Prices(**{**prices, "gpu_types": tuple(prices["gpu_types"])}), "declared": declared})


def _declared(document: dict[str, Any]) -> Declared:
    at = document["where"]
    where = Where(**{**at, "index_keys": tuple(at["index_keys"]), "units": tuple(at["units"])})
    return Declared(**{**document, "where": where})
