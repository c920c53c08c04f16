"""The batch job pod scripts: job-entry.sh (POSIX sh, in the user's image).

job-entry.sh runs under dash (when installed) and under `bash --posix`. tests/pod_harness.py has how the scripts
are run. Nothing asserts on how long anything took.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pod_harness import GUARD, Moto, ScriptPod, explain, moto_server_for, read_until

ARTIFACTS = "simfleet-dev-artifacts"
JOB, HASH, SHARD = "robocache-shards", "89abcdef0123", 3
PREFIX = f"jobs/{JOB}/{HASH}/"
P = f"{PREFIX}shard-{SHARD}/"
HOSTNAME = f"{JOB}-3-x7k2p"

DASH = shutil.which("dash")
SHELLS = [
    pytest.param(("dash",), id="dash", marks=pytest.mark.skipif(not DASH, reason="dash is not installed (apt-get install dash)")),
    pytest.param(("bash", "--posix"), id="bash-posix"),
]
ENTRY_SHELL = ("dash",) if DASH else ("bash", "--posix")

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS,))


class JobPod(ScriptPod):
    """A job pod's /outputs and /simfleet (the done marker's directory) in tmp_path, and the job's env."""

    def __init__(self, tmp_path: Path, moto: Moto) -> None:
        self.outputs = tmp_path / "outputs"
        self.simfleet = tmp_path / "simfleet"
        for directory in (self.outputs, self.simfleet):
            directory.mkdir()
        self.marker = self.simfleet / ".done"
        env = {
            "SIMFLEET_JOB": JOB,
            "SIMFLEET_SPEC_HASH": HASH,
            "SIMFLEET_PREFIX": PREFIX,
            "JOB_COMPLETION_INDEX": str(SHARD),
            "SIMFLEET_ARTIFACTS_BUCKET": ARTIFACTS,
            "SIMFLEET_OUTPUTS_DIR": str(self.outputs),
            "SIMFLEET_DONE_MARKER": str(self.marker),
            "SIMFLEET_KIND_TAG": "simfleet-kind",
        }
        super().__init__(tmp_path, moto, HOSTNAME, env)

    def entry(self, *command: str, shell: tuple[str, ...] = ENTRY_SHELL, **env: str) -> Any:
        return self.run("job-entry.sh", *command, shell=shell, **env)

    def read_marker(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.marker.read_text())
        return loaded


@pytest.fixture
def pod(tmp_path: Path, moto_server: Moto) -> Iterator[JobPod]:
    moto_server.reset()
    pod = JobPod(tmp_path, moto_server)
    try:
        yield pod
    finally:
        pod.stop()


# ---------------------------------------------------------------------------------------------
# job-entry.sh on its own, under each POSIX shell
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_runs_the_command_passes_its_output_through_and_writes_a_succeeded_marker(
    pod: JobPod, shell: tuple[str, ...]
) -> None:
    result = pod.entry("sh", "-c", 'echo "out: $1"; echo "err: $2" >&2', "sh", "first arg", "second", shell=shell)
    assert result.returncode == 0, explain(result)
    assert result.stdout == "out: first arg\n" and result.stderr == "err: second\n"
    assert pod.read_marker() == {"status": "Succeeded", "exitCode": 0, "reason": None}
    assert [p.name for p in pod.simfleet.iterdir()] == [".done"]  # the temporary file was moved, not left


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_propagates_a_failing_exit_code_and_writes_failed(pod: JobPod, shell: tuple[str, ...]) -> None:
    result = pod.entry("sh", "-c", "exit 3", shell=shell)
    assert result.returncode == 3, explain(result)
    assert pod.read_marker() == {"status": "Failed", "exitCode": 3, "reason": "exited with code 3"}
    assert result.stderr == "job-entry: Failed: exited with code 3\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_reports_a_command_killed_by_a_signal(pod: JobPod, shell: tuple[str, ...]) -> None:
    result = pod.entry("sh", "-c", "kill -KILL $$", shell=shell)
    assert result.returncode == 137, explain(result)
    assert pod.read_marker() == {"status": "Failed", "exitCode": 137, "reason": "killed by signal 9 (exit code 137)"}


# A child that stops cleanly on SIGTERM: it records that it got it, then exits 0.
GRACEFUL = "trap 'echo stopped >\"$1\"; exit 0' TERM; echo ready; while :; do sleep 1 & wait $!; done"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_entry_forwards_a_signal_to_the_child_and_writes_interrupted(
    pod: JobPod, tmp_path: Path, shell: tuple[str, ...], sig: signal.Signals
) -> None:
    stopped = tmp_path / "stopped"
    entry = pod.start("job-entry.sh", "sh", "-c", GRACEFUL, "sh", str(stopped), shell=shell)
    read_until(entry, "ready")  # the child's trap is set
    assert not pod.marker.exists()
    entry.send_signal(sig)
    _, stderr = entry.communicate(timeout=GUARD)
    # SIGINT reaches the child as SIGTERM: sh starts it with SIGINT ignored (see job-entry.sh).
    assert stopped.read_text() == "stopped\n", stderr
    assert entry.returncode == 0, stderr  # the child's own code, even though the shard was interrupted
    name = sig.name  # SIGTERM / SIGINT
    assert pod.read_marker() == {
        "status": "Interrupted",
        "exitCode": 0,
        "reason": f"received {name}; the command exited with code 0",
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_reports_a_child_ended_by_the_forwarded_term(pod: JobPod, shell: tuple[str, ...]) -> None:
    entry = pod.start("job-entry.sh", "sh", "-c", "echo ready; exec sleep 100", shell=shell)
    read_until(entry, "ready")
    entry.send_signal(signal.SIGTERM)
    _, stderr = entry.communicate(timeout=GUARD)
    assert entry.returncode == 143, stderr
    marker = pod.read_marker()
    assert (marker["status"], marker["exitCode"]) == ("Interrupted", 143)
    assert marker["reason"] == "received SIGTERM; the command was ended by signal 15 (exit code 143)"


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_reports_a_command_that_is_not_found(pod: JobPod, shell: tuple[str, ...]) -> None:
    result = pod.entry("no-such-command", "--flag", shell=shell)
    assert result.returncode == 127, explain(result)
    assert pod.read_marker() == {
        "status": "Failed",
        "exitCode": 127,
        "reason": "command not found: no-such-command (exit code 127)",
    }
    assert "no-such-command" in result.stderr  # the shell's own message, then job-entry's


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_reports_a_command_that_is_not_executable(pod: JobPod, tmp_path: Path, shell: tuple[str, ...]) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho never\n")  # mode 0644: not executable
    result = pod.entry(str(script), shell=shell)
    assert result.returncode == 126, explain(result)
    assert pod.read_marker() == {
        "status": "Failed",
        "exitCode": 126,
        "reason": f"command not executable: {script} (exit code 126)",
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_keeps_a_command_name_it_cannot_quote_plainly_out_of_the_marker(pod: JobPod, shell: tuple[str, ...]) -> None:
    # The marker is written without jq; a name with quotes or backslashes would need escaping, so it is left out.
    result = pod.entry('no "such" \\command', shell=shell)
    assert result.returncode == 127, explain(result)
    assert pod.read_marker()["reason"] == "command not found (exit code 127)"


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_without_a_command_fails_with_a_marker(pod: JobPod, shell: tuple[str, ...]) -> None:
    result = pod.entry(shell=shell)
    assert result.returncode == 2
    assert result.stderr == "job-entry: no command to run (usage: job-entry.sh <command> [args...])\n"
    assert pod.read_marker() == {"status": "Failed", "exitCode": 2, "reason": "job-entry.sh was given no command"}


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_without_a_marker_path_fails_before_running_anything(pod: JobPod, tmp_path: Path, shell: tuple[str, ...]) -> None:
    ran = tmp_path / "ran"
    result = pod.entry("touch", str(ran), shell=shell, SIMFLEET_DONE_MARKER="")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SIMFLEET_DONE_MARKER is not set" in result.stderr
    assert not ran.exists() and list(pod.simfleet.iterdir()) == []
