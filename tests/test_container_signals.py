"""tests/container_signals.py: the scripts under test start with SIGINT and SIGQUIT at their defaults, as in a pod,
even when the tests themselves were started in the background, where both are ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Started as `python ... &` by bash, as `make test &` would be: SIGINT and SIGQUIT ignored from the start. It prints
# SigIgn of a child it starts before and after restore(), then what restore() says it restored.
PROBE = f"""
import subprocess, sys
sys.path.insert(0, {str(HERE)!r})
import container_signals
def child_ignores():
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True, check=True).stdout
    return int(next(l for l in status.splitlines() if l.startswith("SigIgn:")).split()[1], 16)
before = child_ignores()
restored = container_signals.restore()
print(before, child_ignores(), ",".join(restored))
"""
SIGINT_SIGQUIT = (1 << (2 - 1)) | (1 << (3 - 1))


def test_a_background_start_s_ignored_sigint_and_sigquit_do_not_reach_the_scripts() -> None:
    probe = subprocess.run(
        ["bash", "-c", '"$0" -c "$1" & wait $!', sys.executable, PROBE], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    before, after, restored = probe.stdout.split(" ")
    assert int(before) & SIGINT_SIGQUIT == SIGINT_SIGQUIT  # the shell did ignore them: the fault is really there
    assert int(after) & SIGINT_SIGQUIT == 0
    assert restored.strip() == "SIGINT,SIGQUIT"


def test_this_worker_s_scripts_start_with_sigint_and_sigquit_at_their_defaults() -> None:
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True, check=True).stdout
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    assert ignored & SIGINT_SIGQUIT == 0


def test_a_suite_started_in_the_background_still_starts_its_scripts_with_the_defaults() -> None:
    # The worker check above, in a pytest started as `make test &` starts it: it passes only because conftest.py
    # restored the defaults (it failed before).
    inner = "tests/test_container_signals.py::test_this_worker_s_scripts_start_with_sigint_and_sigquit_at_their_defaults"
    run = subprocess.run(
        ["bash", "-c", '"$0" -m pytest -q -p no:cacheprovider -p no:xdist "$1" & wait $!', sys.executable, inner],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout, run.stdout
