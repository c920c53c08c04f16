"""The Makefile picks a Python new enough for the pinned requirements by name, or stops with a clear message.

Each case runs the real Makefile's `make venv` on a PATH that holds only fake interpreters (shell scripts that answer
the version check, `-m venv` and `-m pip` as Python would) and the few tools make's recipes use, so the real
interpreters on this machine cannot be picked by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("make", "sh", "bash", "mkdir", "touch", "cat", "chmod", "test", "printf")

# A stand-in interpreter of version VERSION: the Makefile's version check, `-m venv DIR` (writes DIR/bin/python, a copy
# of itself) and `-m pip ...` (records the call). Every call is logged to $CALLS.
FAKE_PYTHON = """#!/bin/bash
VERSION={version}
echo "$0 $*" >> "$CALLS"
if [ "$1" = -c ]; then
  case "$2" in *"(3, 11)"*) [ "$VERSION" -ge 11 ] && exit 0 || exit 1 ;; esac
  exit 3
fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin" && cat "$0" > "$3/bin/python" && chmod +x "$3/bin/python" && exit 0
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then exit 0; fi
exit 4
"""


def project(tmp_path: Path, interpreters: dict[str, int]) -> tuple[Path, dict[str, str]]:
    """A copy of the Makefile and requirement files, and an environment whose PATH has only `interpreters` (name ->
    Python 3 minor version) and the tools the recipes need."""
    work = tmp_path / "project"
    (work / "policies").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    for name in (
        "requirements.txt",
        "requirements-dev.txt",
        "requirements-cli.txt",
        "policies/requirements.txt",
        "pyproject.toml",
    ):
        (work / name).write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    for name, minor in interpreters.items():
        fake = bin_dir / name
        fake.write_text(FAKE_PYTHON.format(version=minor))
        fake.chmod(0o755)
    env = {"PATH": str(bin_dir), "CALLS": str(tmp_path / "calls.log"), "HOME": str(tmp_path)}
    return work, env


def make_venv(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "venv", *args], cwd=work, env=env, capture_output=True, text=True, check=False, timeout=60)


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["CALLS"])
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(autouse=True)
def _needs_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_amazon_linux_2023_python3_is_too_old_so_python311_is_used(tmp_path: Path) -> None:
    # AL2023: python3 is 3.9; `dnf install python3.11` adds python3.11 beside it.
    work, env = project(tmp_path, {"python3": 9, "python3.11": 11})
    done = make_venv(work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    venv_made_by = [c.split()[0] for c in calls(env) if " -m venv " in c]
    assert [Path(c).name for c in venv_made_by] == ["python3.11"]
    assert (work / ".venv" / ".installed").exists()


def test_the_newest_named_python_wins_and_python3_is_the_last_resort(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3": 12, "python3.12": 12, "python3.13": 13})
    assert make_venv(work, env).returncode == 0
    assert [Path(c.split()[0]).name for c in calls(env) if " -m venv " in c] == ["python3.13"]
    work, env = project(tmp_path / "second", {"python3": 12})
    assert make_venv(work, env).returncode == 0
    assert [Path(c.split()[0]).name for c in calls(env) if " -m venv " in c] == ["python3"]


def test_no_new_enough_python_fails_clearly_before_making_anything(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3": 9})
    done = make_venv(work, env)
    assert done.returncode != 0
    assert "no Python 3.11 or newer found (tried python3.13 python3.12 python3.11 python3 on PATH)" in done.stderr
    assert "sudo dnf install -y python3.11" in done.stderr
    assert not (work / ".venv").exists()


def test_an_explicit_python_that_is_too_old_is_refused(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3": 9, "python3.11": 11})
    done = make_venv(work, env, "PYTHON=python3")
    assert done.returncode != 0 and "PYTHON=python3 is older than 3.11" in done.stderr
    assert not (work / ".venv").exists()


@pytest.mark.parametrize("named", ["python3.12", "/opt/python/bin/python3.12"])
def test_an_explicit_python_that_does_not_exist_is_named_as_missing_not_as_old(tmp_path: Path, named: str) -> None:
    work, env = project(tmp_path, {"python3.11": 11})
    done = make_venv(work, env, f"PYTHON={named}")
    assert done.returncode != 0
    assert f"PYTHON={named} was not found" in done.stderr and "older than" not in done.stderr
    assert not (work / ".venv").exists()


def test_a_venv_left_by_an_old_python_is_named_not_reused(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3": 9, "python3.11": 11})
    old = work / ".venv" / "bin"
    old.mkdir(parents=True)
    (old / "python").write_text(FAKE_PYTHON.format(version=9))
    (old / "python").chmod(0o755)
    done = make_venv(work, env)
    assert done.returncode != 0 and "was made by a Python older than 3.11; remove it (rm -rf .venv)" in done.stderr
    assert not any(" -m pip " in c for c in calls(env))


def test_the_real_environment_picks_a_new_enough_python() -> None:
    # On this machine (and CI's runners) the pick must be an interpreter that passes the same check the Makefile uses.
    done = subprocess.run(
        ["make", "-p", "-n", "venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHON"},
    )
    [line] = [x for x in done.stdout.splitlines() if x.startswith("PYTHON := ")]
    picked = line.removeprefix("PYTHON := ").strip()
    assert picked, "the Makefile found no Python >= 3.11 here"
    check = subprocess.run([picked, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"], check=False)
    assert check.returncode == 0


FAKE_UV = """#!/bin/bash
echo "uv $*" >> "$CALLS"
exit 0
"""


def test_a_uv_on_path_installs_the_requirements(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3.11": 11})
    uv = tmp_path / "bin" / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    assert make_venv(work, env).returncode == 0
    installs = [c for c in calls(env) if " install " in c]
    assert installs == ["uv pip install --quiet --python .venv/bin/python -r requirements-dev.txt -e ."]


def test_without_uv_pip_installs_uv_first_and_falls_back_to_pip_when_that_gives_none(tmp_path: Path) -> None:
    work, env = project(tmp_path, {"python3.11": 11})
    assert make_venv(work, env).returncode == 0
    pips = [c.split(" -m pip ", 1)[1] for c in calls(env) if " -m pip " in c]
    # The fake pip installs nothing, so there is no .venv/bin/uv: the requirements go through pip.
    assert pips == [
        "install --quiet uv==0.13.10",
        "install --quiet --upgrade pip",
        "install --quiet -r requirements-dev.txt -e .",
    ]
    work, env = project(tmp_path / "pip-only", {"python3.11": 11})
    assert make_venv(work, env, "NO_UV=1").returncode == 0
    assert not any("uv==" in c or c.startswith("uv ") for c in calls(env))
