"""A scratch copy of the project where shell commands run as a user runs them, offline, each distinct command once per
test session: pytest-xdist's workers share the copy and every command's result through files, under a lock."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_SECONDS = 300
# Not copied into the scratch project: environments, outputs and caches.
SCRATCH_IGNORE = shutil.ignore_patterns(".venv", "build", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
# This test session's directory that every worker sees (session_dir), once conftest.py has set it.
session_root: Path | None = None


@dataclass(frozen=True)
class Done:
    """What a command did: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str


def scratch_project(destination: Path) -> Path:
    """A copy of the project whose .venv is the real one's contents, marked installed so make never reinstalls."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("the project's commands run with its .venv: run `make venv` first")
    shutil.copytree(ROOT, destination, ignore=SCRATCH_IGNORE)
    venv = destination / ".venv"
    venv.mkdir()
    for entry in (ROOT / ".venv").iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    for requirements in destination.glob("requirements*.txt"):
        os.utime(requirements, (0, 0))  # older than .installed: `make` has nothing to install
    return destination


def offline_env() -> dict[str, str]:
    # Nothing from the caller's cloud or program settings leaks into a command that claims to be offline.
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_", "SIMFLEET_", "KUBECONFIG"))}


def run_shell(code: str, cwd: Path) -> Done:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) against every other process of the session."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class ProjectCommands:
    """Runs each distinct command (whitespace aside) once in `cwd` and gives every later asker, in this process or in
    another worker, the result it stored in `results`. A command that another process is running is waited for: a
    command that reads what an earlier one wrote (`make plan`, then its build/plan/dev) finds it written. Tests read
    what these commands wrote (test_plan reads build/plan/dev): a command run here must not undo another's output."""

    def __init__(self, cwd: Path, results: Path) -> None:
        self.cwd = cwd
        self.results = results

    def run(self, code: str) -> Done:
        key = hashlib.sha256(" ".join(code.split()).encode()).hexdigest()[:24]
        stored = self.results / f"{key}.json"
        with locked(self.results / f"{key}.lock"):
            if stored.exists():
                return Done(**json.loads(stored.read_text()))
            done = run_shell(code, self.cwd)
            write_whole(stored, json.dumps(asdict(done)).encode())
            return done


def write_whole(path: Path, data: bytes) -> None:
    """Write `path` so that it exists only whole: a worker that dies part way (xdist starts another) leaves no half of
    it for the next to read, and the next makes it again."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(data)
    os.replace(part, path)


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every process of this test session sees and no other session does (pytest-xdist's documented
    pattern): the parent of a worker's base temporary directory, or the base directory itself without workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(directory: Path, make: Callable[[Path], object]) -> Path:
    """`directory`, filled by `make(directory)` in the first process of the session to ask; the others wait for it. A
    directory left half made (its maker interrupted) is made again."""
    done = directory.with_name(directory.name + ".done")
    with locked(directory.with_name(directory.name + ".lock")):
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            make(directory)
            done.touch()
    return directory


def session_project(tmp_path_factory: pytest.TempPathFactory) -> ProjectCommands:
    """The session's scratch copy of the project, made by the first process to ask."""
    shared = session_dir(tmp_path_factory) / "project-commands"
    return ProjectCommands(made_once(shared / "simfleet", scratch_project), shared / "results")
