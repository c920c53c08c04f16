"""Checkpoints: Monty's saves (to a temporary file, checked to be a complete regular file, then renamed), partial
checkpoints with their record, and the resume record a replacement pod starts from.

Files under SIMFLEET_CHECKPOINTS_DIR:
    resume.json     read: {"elapsedSeconds": s, "steps": n, "sequence": k, ...} (written by fetch.sh on resume)
    partial.mstate  Monty saves to partial.mstate.tmp, renamed here once acknowledged and checked
    partial.json    {"elapsedSeconds", "steps", "savedAt", "sequence"}, written after the rename; steps and
                    elapsedSeconds include the resumed run
    out.mstate      the final checkpoint (saved to out.mstate.tmp, checked, then renamed)
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .result import utc_now, with_symlink_gone, write_json_atomic
from .settings import ConfigError
from .validator import show

# (message, timeout) -> Monty's reply, or None when none came in time
Ask = Callable[[dict[str, Any], float], dict[str, Any] | None]


@dataclass
class Resume:
    seconds: float = 0.0
    steps: int = 0
    sequence: int = 0


def read_resume(checkpoints: Path) -> Resume:
    path = checkpoints / "resume.json"
    if not path.exists():
        return Resume()
    try:
        record = json.loads(path.read_text())
        return Resume(float(record["elapsedSeconds"]), int(record.get("steps", 0)), int(record.get("sequence", 0)))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is not a resume record with elapsedSeconds: {err}") from err


def complete_file_problem(path: Path) -> str | None:
    """Why `path` is not a checkpoint the uploader may ship: only a non-empty regular file (never a symlink) is."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return f"{path} does not exist"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link, not a file Monty wrote"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_size == 0:
        return f"{path} is empty"
    return None


def save(
    ask: Ask, target: Path, timeout: float, accept: Callable[[dict[str, Any]], str | None], waited: Callable[[float], str]
) -> str | None:
    """Ask Monty to save to target.tmp, check it, rename it to target; the problem, or None once it is there.

    `accept` vets the reply itself (the brain must not have restarted before it answered); `waited(timeout)` says how
    long glue waited for a reply that did not come (a SIGTERM may have cut the wait short)."""
    tmp = target.with_name(target.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    reply = ask({"command": "save", "path": str(tmp)}, timeout)
    if reply is None:
        return f"monty did not confirm the save {waited(timeout)}"
    if reply.get("saved") != str(tmp):
        return f"monty answered the save with {show(reply)}"
    problem = accept(reply) or complete_file_problem(tmp)
    if problem is not None:
        return f"monty confirmed the save but {problem}"
    with_symlink_gone(target)
    os.replace(tmp, target)
    return None


def write_partial_record(checkpoints: Path, elapsed: float, steps: int, sequence: int) -> None:
    write_json_atomic(
        checkpoints / "partial.json",
        {"elapsedSeconds": round(elapsed, 6), "steps": steps, "savedAt": utc_now(), "sequence": sequence},
    )
