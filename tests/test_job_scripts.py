"""The batch job pod scripts: job-entry.sh (POSIX sh, in the user's image) and job-upload.sh (bash, in the AWS CLI
image), with the real AWS CLI against moto's S3 server and a stand-in Pushgateway, both on 127.0.0.1.

job-entry.sh runs under dash (when installed) and under `bash --posix`; the end-to-end tests use dash when there
is one. tests/pod_harness.py has the S3 server and how the scripts are run. Nothing asserts on how long anything
took: the order of events comes from what moto and the stand-in Pushgateway saw, and from the scripts' output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_pushgateway import Pushgateway
from pod_harness import AWS_CLIS, GUARD, Moto, ScriptPod, explain, moto_server_for, read_until, serving, wait_for

ARTIFACTS = "simfleet-dev-artifacts"
JOB, HASH, SHARD = "robocache-shards", "89abcdef0123", 3
PREFIX = f"jobs/{JOB}/{HASH}/"
P = f"{PREFIX}shard-{SHARD}/"
HOSTNAME = f"{JOB}-3-x7k2p"
GROUP = f"job/{JOB}/shard/{SHARD}"

DASH = shutil.which("dash")
SHELLS = [
    pytest.param(("dash",), id="dash", marks=pytest.mark.skipif(not DASH, reason="dash is not installed (apt-get install dash)")),
    pytest.param(("bash", "--posix"), id="bash-posix"),
]
ENTRY_SHELL = ("dash",) if DASH else ("bash", "--posix")

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)

INDEX_FIELDS = {
    "job",
    "specHash",
    "shard",
    "status",
    "reason",
    "exitCode",
    "startTime",
    "completionTime",
    "attempt",
    "outputsPrefix",
    "outputFiles",
    "outputs",
    "recoveries",
    "untaggedOutputs",
}


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS,))


class Listener(threading.Thread):
    """The uploader's side of the result channel, for job-entry.sh on its own: makes the FIFO, reads it, unlinks it
    once the wrapper said "started" (as job-upload.sh does), and keeps the wrapper's result line."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(daemon=True)
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        self.fifo = fifo
        # Non-blocking: the open succeeds before any writer; read() then says b"" until one connects.
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.data = b""
        self.stopped = threading.Event()
        self.start()

    def run(self) -> None:
        connected = False
        while not self.stopped.is_set():
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                chunk = None
            if chunk:
                self.data += chunk
                if not connected and b"\n" in self.data:
                    connected = True
                    self.fifo.unlink()
                continue
            if chunk == b"" and connected:
                break  # every writer closed: the channel ended
            time.sleep(0.02)
        os.close(self.fd)

    def lines(self) -> list[str]:
        return self.data.decode().splitlines()

    def result(self) -> dict[str, Any] | None:
        self.join(timeout=GUARD)
        results = [line for line in self.lines() if not line.startswith("started ")]
        if not results:
            return None
        loaded: dict[str, Any] = json.loads(results[-1])
        return loaded

    def stop(self) -> None:
        self.stopped.set()


class Wrapper(threading.Thread):
    """The wrapper's side, for job-upload.sh on its own: waits for the uploader's FIFO, opens it read-write as
    job-entry.sh does, says "started", waits for it to be taken, sends `lines` and closes; with `hold`, it keeps the
    channel open (a program still running) until finish() gives it its result, or the test ends."""

    def __init__(self, fifo: Path, lines: list[str], hold: bool = False) -> None:
        super().__init__(daemon=True)
        self.fifo = fifo
        self.lines = lines
        self.hold = hold
        self.stopped = threading.Event()
        self.released = threading.Event()
        self.start()

    def finish(self, *lines: str) -> None:
        self.lines = list(lines)
        self.released.set()

    def _until(self, predicate: Any) -> bool:
        deadline = time.monotonic() + GUARD
        while not predicate():
            if self.stopped.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def run(self) -> None:
        if not self._until(self.fifo.exists):
            return
        fd = os.open(self.fifo, os.O_RDWR)
        os.write(fd, f"started {os.getpid()}\n".encode())
        if self._until(lambda: not self.fifo.exists()):
            if self.hold:
                self._until(lambda: self.released.is_set())
            for line in self.lines:
                os.write(fd, (line + "\n").encode())
        os.close(fd)

    def stop(self) -> None:
        self.stopped.set()
        self.released.set()


class JobPod(ScriptPod):
    """A job pod's /outputs and /simfleet (the marker directory, where the uploader's result FIFO lives) in tmp_path,
    and the job's env; the other end of the result channel when only one of the two scripts runs."""

    def __init__(self, tmp_path: Path, moto: Moto, aws_cli: str = "v1") -> None:
        self.outputs = tmp_path / "outputs"
        self.simfleet = tmp_path / "simfleet"
        for directory in (self.outputs, self.simfleet):
            directory.mkdir()
        self.fifo = self.simfleet / "result"
        env = {
            "SIMFLEET_JOB": JOB,
            "SIMFLEET_SPEC_HASH": HASH,
            "SIMFLEET_PREFIX": PREFIX,
            "JOB_COMPLETION_INDEX": str(SHARD),
            "SIMFLEET_ARTIFACTS_BUCKET": ARTIFACTS,
            "SIMFLEET_OUTPUTS_DIR": str(self.outputs),
            "SIMFLEET_RESULT_FIFO": str(self.fifo),
            "SIMFLEET_KIND_TAG": "simfleet-kind",
        }
        super().__init__(tmp_path, moto, HOSTNAME, env, aws_cli)
        self.uploader = False
        self.listener: Listener | None = None
        self.wrappers: list[Wrapper] = []

    def _other_end(self, script: str) -> None:
        if script == "job-upload.sh":
            self.uploader = True
        elif script == "job-entry.sh" and not self.uploader:
            if self.listener is not None:
                self.listener.stop()
            self.listener = Listener(self.fifo)

    def run(self, script: str, *args: str, shell: Any = ("bash",), cwd: str | None = None, **env: str) -> Any:
        self._other_end(script)
        result = super().run(script, *args, shell=shell, cwd=cwd, **env)
        if script == "job-upload.sh":
            self.uploader = False
        return result

    def start(self, script: str, *args: str, shell: Any = ("bash",), **env: str) -> Any:
        self._other_end(script)
        return super().start(script, *args, shell=shell, **env)

    def entry(self, *command: str, shell: tuple[str, ...] = ENTRY_SHELL, **env: str) -> Any:
        return self.run("job-entry.sh", *command, shell=shell, **env)

    def read_marker(self) -> dict[str, Any]:
        assert self.listener is not None
        result = self.listener.result()
        assert result is not None, f"no result on the channel: {self.listener.lines()}"
        return result

    def write_marker(self, status: str = "Succeeded", exit_code: int = 0, reason: str | None = None) -> None:
        """A wrapper that connects to the next uploader's channel and sends this result."""
        self.send(json.dumps({"status": status, "exitCode": exit_code, "reason": reason}))

    def send(self, *lines: str, hold: bool = False) -> Wrapper:
        wrapper = Wrapper(self.fifo, list(lines), hold)
        self.wrappers.append(wrapper)
        return wrapper

    def index(self) -> dict[str, Any]:
        return self.get_json(ARTIFACTS, f"{P}index.json")

    def stop(self) -> None:
        for wrapper in self.wrappers:
            wrapper.stop()
        if self.listener is not None:
            self.listener.stop()
        super().stop()


@pytest.fixture
def pod(tmp_path: Path, moto_server: Moto) -> Iterator[JobPod]:
    moto_server.reset()
    yield from serving(JobPod(tmp_path, moto_server))


@pytest.fixture(params=AWS_CLIS)
def cli_pod(request: pytest.FixtureRequest, tmp_path: Path, moto_server: Moto) -> Iterator[JobPod]:
    """The job pod for the tests that exercise the AWS CLI, under each major version."""
    moto_server.reset()
    yield from serving(JobPod(tmp_path, moto_server, request.param))


@pytest.fixture
def pushgateway(moto_server: Moto) -> Iterator[Pushgateway]:
    gateway = Pushgateway(moto_server)
    try:
        yield gateway
    finally:
        gateway.stop()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _pushgateway_env(url: str, linger: str = "0") -> dict[str, str]:
    return {"SIMFLEET_PUSHGATEWAY_URL": url, "SIMFLEET_METRICS_GROUP": GROUP, "SIMFLEET_METRICS_LINGER_SECONDS": linger}


# What the work container runs in the end-to-end tests: outputs in nested directories, a dotfile and a name with a
# space, then the given exit code.
WORK = """
set -e
mkdir -p "$SIMFLEET_OUTPUTS_DIR/frames/cam 0" "$SIMFLEET_OUTPUTS_DIR/.meta"
printf 'frame' >"$SIMFLEET_OUTPUTS_DIR/frames/cam 0/000001.npz"
printf '{"shard": %s}' "$JOB_COMPLETION_INDEX" >"$SIMFLEET_OUTPUTS_DIR/summary.json"
printf 'v1' >"$SIMFLEET_OUTPUTS_DIR/.meta/.version"
echo "processed shard $JOB_COMPLETION_INDEX"
echo "a warning from the job" >&2
exit "$1"
"""
OUTPUT_FILES = [".meta/.version", "frames/cam 0/000001.npz", "summary.json"]


def _attempt(pod: JobPod, which: int = -1) -> str:
    """The name of an attempt (<utc>-<hostname>), from its record under attempts/."""
    return pod.keys(ARTIFACTS, f"{P}attempts/")[which].rsplit("/", 1)[1].removesuffix(".json")


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
    assert list(pod.simfleet.iterdir()) == []  # the channel was taken (unlinked) and nothing else was written


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
    assert pod.listener is not None and not any(line.startswith("{") for line in pod.listener.lines())
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
def test_entry_without_a_channel_fails_before_running_anything(pod: JobPod, tmp_path: Path, shell: tuple[str, ...]) -> None:
    ran = tmp_path / "ran"
    result = pod.entry("touch", str(ran), shell=shell, SIMFLEET_RESULT_FIFO="")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SIMFLEET_RESULT_FIFO is not set" in result.stderr
    assert not ran.exists()
    # No uploader, so no FIFO: the wrapper waits SIMFLEET_CHANNEL_WAIT_SECONDS, then gives up without running anything.
    result = pod.run(
        "job-entry.sh",
        "touch",
        str(ran),
        shell=shell,
        SIMFLEET_RESULT_FIFO=str(tmp_path / "none"),
        SIMFLEET_CHANNEL_WAIT_SECONDS="0",
    )
    assert result.returncode == 2 and "no result channel at" in result.stderr and not ran.exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_the_program_cannot_reach_the_channel_or_forge_a_result(pod: JobPod, shell: tuple[str, ...]) -> None:
    # The program gets neither the channel's path nor its descriptor, and by the time it runs the FIFO's name is gone:
    # whatever it tries, the one result is the wrapper's.
    forge = (
        'echo "${SIMFLEET_RESULT_FIFO:-unset}"; '
        '{ echo \'{"status": "Succeeded", "exitCode": 0, "reason": null}\' >&3; } 2>/dev/null || echo "no fd 3"; '
        f'ls "{pod.simfleet}" | wc -l; exit 4'
    )
    result = pod.entry("sh", "-c", forge, shell=shell)
    assert result.returncode == 4, explain(result)
    assert result.stdout.split() == ["unset", "no", "fd", "3", "0"]
    assert pod.read_marker() == {"status": "Failed", "exitCode": 4, "reason": "exited with code 4"}
    assert pod.listener is not None and len(pod.listener.lines()) == 2  # "started <pid>" and the result, nothing else


# ---------------------------------------------------------------------------------------------
# job-entry.sh and job-upload.sh together, as in the pod
# ---------------------------------------------------------------------------------------------


def test_a_succeeded_shard_uploads_nested_outputs_tagged_and_writes_the_index_last(cli_pod: JobPod) -> None:
    pod = cli_pod
    upload = pod.start("job-upload.sh")
    read_until(upload, "waiting for the work container's result")
    entry = pod.entry("sh", "-c", WORK, "sh", "0")
    assert entry.returncode == 0, explain(entry)
    assert entry.stdout == f"processed shard {SHARD}\n" and entry.stderr == "a warning from the job\n"
    stdout, stderr = upload.communicate(timeout=GUARD)
    requests = list(pod.moto.requests)  # before the checks below add their own
    assert upload.returncode == 0, stdout + stderr

    [attempt_key] = pod.keys(ARTIFACTS, f"{P}attempts/")
    assert re.fullmatch(rf"{P}attempts/\d{{8}}T\d{{6}}Z-{HOSTNAME}\.json", attempt_key)
    assert {k: v for k, v in pod.get_json(ARTIFACTS, attempt_key).items() if k != "startTime"} == {"job": JOB, "pod": HOSTNAME}
    attempt = _attempt(pod)
    outputs = f"{P}outputs/{attempt}/"
    keys = [outputs + name for name in OUTPUT_FILES]
    assert pod.keys(ARTIFACTS, f"{P}outputs/") == keys
    for key in keys:
        assert pod.tags(ARTIFACTS, key) == {"simfleet-kind": "outputs"}, key
    assert pod.get(ARTIFACTS, f"{outputs}summary.json") == '{"shard": 3}'

    index = pod.index()
    assert set(index) == INDEX_FIELDS
    assert {k: index[k] for k in INDEX_FIELDS - {"startTime", "completionTime"}} == {
        "job": JOB,
        "specHash": HASH,
        "shard": SHARD,
        "status": "Succeeded",
        "reason": None,
        "exitCode": 0,
        "attempt": attempt,
        "outputsPrefix": f"s3://{ARTIFACTS}/{outputs}",
        "outputFiles": OUTPUT_FILES,
        "outputs": 3,
        "recoveries": 0,
        "untaggedOutputs": 0,
    }
    for field in ("startTime", "completionTime"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", index[field]), field
    assert index["startTime"] <= index["completionTime"]
    assert pod.s3.head_object(Bucket=ARTIFACTS, Key=f"{P}index.json")["ContentType"] == "application/json"
    # The order moto saw: the attempt first, every output and its tag, and index.json as the very last request.
    writes = [path for method, path in requests if method == "PUT"]
    assert writes[0] == f"/{ARTIFACTS}/{attempt_key}"
    assert sorted(writes[1:-1]) == sorted([f"/{ARTIFACTS}/{k}" for k in keys] + [f"/{ARTIFACTS}/{k}?tagging" for k in keys])
    assert requests[-1] == ("PUT", f"/{ARTIFACTS}/{P}index.json")


def test_a_failing_command_fails_the_shard_and_uploads_none_of_its_partial_outputs(pod: JobPod) -> None:
    upload = pod.start("job-upload.sh")
    read_until(upload, "waiting for the work container's result")
    entry = pod.entry("sh", "-c", WORK, "sh", "3")
    assert entry.returncode == 3, explain(entry)
    stdout, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stdout + stderr
    index = pod.index()
    assert (index["status"], index["exitCode"], index["reason"]) == ("Failed", 3, "exited with code 3")
    assert index["outputs"] == 0 and index["outputsPrefix"] is None and pod.keys(ARTIFACTS, f"{P}outputs/") == []
    assert "not uploading outputs of a Failed shard" in stdout


def test_outputs_are_regular_files_only_and_never_a_link(cli_pod: JobPod, tmp_path: Path) -> None:
    # The uploader is the only container with AWS credentials: a link (or a file swapped for one) must not make it
    # upload its own files, such as its IRSA token. Each is refused by name and fails the shard.
    pod = cli_pod
    secret = tmp_path / "token"
    secret.write_text("eyJhbGciOi...")
    (pod.outputs / "ok.txt").write_text("fine")
    (pod.outputs / "token.txt").symlink_to(secret)
    (pod.outputs / "secrets").symlink_to(tmp_path, target_is_directory=True)
    pod.write_marker()
    result = pod.run("job-upload.sh")
    assert result.returncode == 1, explain(result)
    index = pod.index()
    assert index["status"] == "Failed" and "outputs/token.txt: a symbolic link" in index["reason"]
    assert "outputs/secrets: a symbolic link" in index["reason"]
    assert pod.keys(ARTIFACTS, f"{P}outputs/") == [f"{P}outputs/{_attempt(pod)}/ok.txt"] and index["outputFiles"] == ["ok.txt"]
    assert "eyJhbGciOi" not in json.dumps([pod.get(ARTIFACTS, k) for k in pod.keys(ARTIFACTS)])


def test_a_shard_interrupted_through_both_containers(pod: JobPod, tmp_path: Path) -> None:
    """What the kubelet does: SIGTERM to both main containers at once."""
    upload = pod.start("job-upload.sh", SIMFLEET_TERM_WAIT_SECONDS="100")
    read_until(upload, "waiting for the work container's result")
    entry = pod.start("job-entry.sh", "sh", "-c", GRACEFUL, "sh", str(tmp_path / "stopped"), shell=ENTRY_SHELL)
    read_until(entry, "ready")
    upload.send_signal(signal.SIGTERM)
    read_until(upload, "SIGTERM: giving the work container up to 100 s")
    entry.send_signal(signal.SIGTERM)
    assert entry.wait(timeout=GUARD) == 0
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    index = pod.index()
    assert (index["status"], index["exitCode"]) == ("Interrupted", 0)
    assert index["reason"] == "received SIGTERM; the command exited with code 0"


# ---------------------------------------------------------------------------------------------
# job-upload.sh
# ---------------------------------------------------------------------------------------------


def test_upload_on_sigterm_before_the_result_writes_interrupted(pod: JobPod) -> None:
    (pod.outputs / "partial.csv").write_text("a,b\n")
    pod.send(hold=True)  # a wrapper that connects, and runs on past the SIGTERM
    upload = pod.start("job-upload.sh", SIMFLEET_TERM_WAIT_SECONDS="0")
    read_until(upload, "wrapper is connected")
    upload.send_signal(signal.SIGTERM)
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    index = pod.index()
    assert (index["status"], index["exitCode"], index["outputs"]) == ("Interrupted", None, 0)
    assert index["reason"] == "terminated before the work container ended (waited 0 s after SIGTERM)"
    assert pod.keys(ARTIFACTS, f"{P}outputs/") == []  # an interrupted attempt's partial outputs stay out


def _three_outputs(pod: JobPod) -> list[str]:
    names = ["a.csv", "b.csv", "c.csv"]
    for name in names:
        (pod.outputs / name).write_text(name)
    pod.write_marker()
    return names


def test_a_sigterm_while_the_outputs_are_tagged_writes_the_index_first(pod: JobPod) -> None:
    # A Succeeded shard's outputs are tagged before index.json; a SIGTERM then (a spot notice, a drain) stops the
    # tagging at once: index.json first, saying how many have no tag yet, and the tagging after it. S3 holds every
    # tagging call 20 s: before, the tagging was a foreground xargs, and index.json waited for every tag (a shard with
    # thousands of outputs: minutes, past the spot notice, and no index.json at all).
    _three_outputs(pod)
    held = pod.moto.slow("PUT", rf"^/{ARTIFACTS}/{P}outputs/", delay=20, query=r"(^|&)tagging")
    upload = pod.start("job-upload.sh")
    try:
        wait_for(lambda: held.hits >= 1, "a tagging call held by S3")
        upload.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        index = wait_for(lambda: pod.get_json_if_there(ARTIFACTS, f"{P}index.json"), "index.json")
        assert time.monotonic() - signalled < 10, "index.json waited for the held tagging calls"
        assert (index["status"], index["outputs"], index["untaggedOutputs"]) == ("Succeeded", 3, 3)
        read_until(upload, "tagging 3 outputs until the pod is stopped")
    finally:
        pod.kill_session(upload)  # the pod's end: the kubelet's SIGKILL after the grace period


def test_a_sigterm_mid_tagging_counts_only_the_outputs_with_no_tag_yet(pod: JobPod) -> None:
    # Two tags are on when the SIGTERM comes and S3 holds the third: one output is untagged, not three, and only that
    # one is tagged after index.json.
    _three_outputs(pod)
    held = pod.moto.slow("PUT", rf"^/{ARTIFACTS}/{P}outputs/.*/c\.csv$", delay=20, query=r"(^|&)tagging")
    upload = pod.start("job-upload.sh")
    try:

        def two_on_one_held() -> bool:
            keys = pod.keys(ARTIFACTS, f"{P}outputs/")
            tagged = [key for key in keys if pod.tags(ARTIFACTS, key)]
            return held.hits >= 1 and len(tagged) == 2

        wait_for(two_on_one_held, "two tags on, one held")
        upload.send_signal(signal.SIGTERM)
        index = wait_for(lambda: pod.get_json_if_there(ARTIFACTS, f"{P}index.json"), "index.json")
        assert (index["outputs"], index["untaggedOutputs"]) == (3, 1)
        read_until(upload, "tagging 1 outputs until the pod is stopped")
    finally:
        pod.kill_session(upload)


def test_an_output_s3_refuses_to_tag_is_counted_and_named(pod: JobPod) -> None:
    _three_outputs(pod)
    pod.moto.fail("PUT", rf"^/{ARTIFACTS}/{P}outputs/.*/b\.csv$", times=-1, status=403, code="AccessDenied", query="tagging")
    result = pod.run("job-upload.sh")
    assert result.returncode == 0, explain(result)
    index = pod.index()
    assert (index["status"], index["untaggedOutputs"]) == ("Succeeded", 1)
    assert f"1 outputs could not be tagged (they never expire): {P}outputs/{index['attempt']}/b.csv" in result.stderr
    assert pod.tags(ARTIFACTS, f"{P}outputs/{index['attempt']}/a.csv") == {"simfleet-kind": "outputs"}


def test_upload_says_so_when_the_wrapper_never_connects(pod: JobPod) -> None:
    result = pod.run("job-upload.sh", SIMFLEET_START_WAIT_SECONDS="0")
    assert result.returncode == 1, explain(result)
    index = pod.index()
    assert index["status"] == "Failed" and index["outputs"] == 0
    assert index["reason"] == f"the work container's wrapper never connected to {pod.fifo} within 0 s"


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ("not json {", "the work container's result is not a JSON object: not json {"),
        ('["Succeeded"]', 'the work container\'s result is not a JSON object: ["Succeeded"]'),
        ('{"status": "Done", "exitCode": 0}', "the work container's result has status 'Done'"),
        # Two values on the one line (read field by field they once gave the exit code "0\n0": no index.json at all).
        (
            '{"status": "Succeeded", "exitCode": 0} {"status": "Succeeded", "exitCode": 0}',
            'the work container\'s result is not a JSON object: {"status": "Succeeded", "exitCode": 0} '
            '{"status": "Succeeded", "exitCode": 0}',
        ),
    ],
    ids=["not-json", "not-an-object", "unknown-status", "two-values"],
)
def test_upload_fails_a_shard_whose_result_it_cannot_read(pod: JobPod, marker: str, reason: str) -> None:
    pod.send(marker)
    result = pod.run("job-upload.sh")
    assert result.returncode == 1, explain(result)
    index = pod.index()
    assert (index["status"], index["reason"]) == ("Failed", reason)


# The AWS CLI prints a failed file's local path relative to the working directory: from /tmp (beside the script's own
# mktemp directory) that path holds no absolute part, and a failure must still be found (it was missed: "Succeeded").
@pytest.mark.parametrize("cwd", [None, "/tmp"], ids=["cwd-repo", "cwd-tmp"])
def test_upload_denied_fails_the_shard_with_a_reason_and_still_writes_the_index(cli_pod: JobPod, cwd: str | None) -> None:
    pod = cli_pod
    (pod.outputs / "a.txt").write_text("a")
    (pod.outputs / "b.txt").write_text("b")
    pod.write_marker()
    deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{ARTIFACTS}/{P}outputs/*"}
    with pod.denied(deny):
        result = pod.run("job-upload.sh", cwd=cwd)
    assert result.returncode == 1, explain(result)
    index = pod.index()
    assert (index["status"], index["exitCode"], index["outputs"]) == ("Failed", 0, 0)
    assert index["reason"].startswith("upload failed: outputs/a.txt: ")
    assert "; outputs/b.txt: " in index["reason"]
    assert "AccessDenied" in index["reason"] or "403" in index["reason"]
    assert "(job:" not in index["reason"]  # the command itself succeeded, so only the upload is to blame
    assert pod.keys(ARTIFACTS, f"{P}outputs/") == []
    assert index["recoveries"] == 0  # the attempt, outside outputs/, was recorded


def test_attempts_are_counted_into_recoveries_on_the_second_pod(pod: JobPod) -> None:
    pod.put(ARTIFACTS, f"{PREFIX}shard-2/attempts/20261130T080000Z-{JOB}-2-aaaaa.json", "{}")  # another shard's
    first = pod.run("job-upload.sh", SIMFLEET_START_WAIT_SECONDS="0", HOSTNAME=f"{JOB}-3-first")  # e.g. never started
    assert first.returncode == 1, explain(first)
    assert (pod.index()["status"], pod.index()["recoveries"]) == ("Failed", 0)
    pod.write_marker()
    second = pod.run("job-upload.sh", HOSTNAME=f"{JOB}-3-second")
    assert second.returncode == 0, explain(second)
    assert "attempt 2 of shard 3" in second.stdout
    assert (pod.index()["status"], pod.index()["recoveries"]) == ("Succeeded", 1)
    attempts = pod.keys(ARTIFACTS, f"{P}attempts/")
    assert [key.rsplit("-", 1)[1] for key in attempts] == ["first.json", "second.json"]


def test_a_failed_attempt_record_is_noted_in_the_reason_and_the_shard_carries_on(pod: JobPod) -> None:
    (pod.outputs / "a.txt").write_text("a")
    pod.write_marker()
    deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{ARTIFACTS}/{P}attempts/*"}
    with pod.denied(deny):
        result = pod.run("job-upload.sh", SIMFLEET_RETRY_SECONDS="0")
    assert result.returncode == 0, explain(result)  # the outputs and index.json went up: the shard Succeeded
    index = pod.index()
    assert (index["status"], index["outputs"], index["recoveries"]) == ("Succeeded", 1, None)
    assert index["reason"].startswith(f"cannot record this attempt at s3://{ARTIFACTS}/{P}attempts/")
    assert "AccessDenied" in index["reason"] or "403" in index["reason"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOB_COMPLETION_INDEX", "", "JOB_COMPLETION_INDEX must be the shard's index (a whole number), not ''"),
        ("JOB_COMPLETION_INDEX", "three", "JOB_COMPLETION_INDEX must be the shard's index (a whole number), not 'three'"),
        ("SIMFLEET_PREFIX", "", "SIMFLEET_PREFIX is not set"),
        ("SIMFLEET_ARTIFACTS_BUCKET", "", "SIMFLEET_ARTIFACTS_BUCKET is not set"),
    ],
)
def test_upload_without_its_required_settings_stops_before_anything(pod: JobPod, variable: str, value: str, message: str) -> None:
    result = pod.run("job-upload.sh", **{variable: value})
    assert result.returncode == 2
    assert result.stderr == f"output-uploader: {message}\n"
    assert pod.moto.requests == []


def test_upload_names_a_malformed_seconds_setting(pod: JobPod) -> None:
    result = pod.run("job-upload.sh", SIMFLEET_METRICS_LINGER_SECONDS="30s")
    assert result.returncode == 2
    assert result.stderr == "output-uploader: SIMFLEET_METRICS_LINGER_SECONDS must be whole seconds, not '30s'\n"


# ---------------------------------------------------------------------------------------------
# The Pushgateway group
# ---------------------------------------------------------------------------------------------


def test_the_shard_group_is_deleted_after_the_index_and_the_linger(pod: JobPod, pushgateway: Pushgateway) -> None:
    pod.write_marker()
    result = pod.run("job-upload.sh", **_pushgateway_env(pushgateway.url, linger="1"))
    assert result.returncode == 0, explain(result)
    [request] = pushgateway.requests
    assert (request["method"], request["path"], request["version"]) == ("DELETE", f"/metrics/{GROUP}", "HTTP/1.1")
    assert request["headers"]["host"] == pushgateway.url.removeprefix("http://")
    assert request["headers"]["connection"] == "close"
    # When the DELETE arrived, index.json was already written.
    assert ("PUT", f"/{ARTIFACTS}/{P}index.json") in request["moto_before"]
    # The linger came between the two.
    lines = result.stdout.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(f"output-uploader: Succeeded: s3://{ARTIFACTS}/{P}index.json")),
        lines.index(f"output-uploader: keeping the Pushgateway group {GROUP} for 1 s, for a last scrape"),
        lines.index(f"output-uploader: deleted the Pushgateway group {GROUP} (HTTP/1.0 202 Accepted)"),
    ]
    assert order == sorted(order), result.stdout
    assert result.stderr == ""


def test_sigterm_cuts_the_linger_short_and_still_deletes_the_group(pod: JobPod, pushgateway: Pushgateway) -> None:
    pod.write_marker()
    upload = pod.start("job-upload.sh", **_pushgateway_env(pushgateway.url, linger="100"))
    read_until(upload, f"keeping the Pushgateway group {GROUP} for 100 s")
    assert pushgateway.requests == []  # lingering: the group is still there to be scraped
    upload.send_signal(signal.SIGTERM)
    stdout, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 0, stdout + stderr
    assert [(r["method"], r["path"]) for r in pushgateway.requests] == [("DELETE", f"/metrics/{GROUP}")]


def test_no_linger_after_a_sigterm_before_the_marker(pod: JobPod, pushgateway: Pushgateway) -> None:
    wrapper = pod.send(hold=True)
    upload = pod.start("job-upload.sh", SIMFLEET_TERM_WAIT_SECONDS="100", **_pushgateway_env(pushgateway.url, linger="100"))
    read_until(upload, "wrapper is connected")
    upload.send_signal(signal.SIGTERM)
    read_until(upload, "SIGTERM: giving the work container")
    wrapper.finish(json.dumps({"status": "Interrupted", "exitCode": 143, "reason": "received SIGTERM"}))
    stdout, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    assert "keeping the Pushgateway group" not in stdout
    assert [(r["method"], r["path"]) for r in pushgateway.requests] == [("DELETE", f"/metrics/{GROUP}")]
    assert pod.index()["status"] == "Interrupted"


@pytest.mark.parametrize(
    ("url", "warning"),
    [
        ("http://127.0.0.1:{closed}", "could not delete the Pushgateway group at http://127.0.0.1:"),
        (
            "https://prometheus-pushgateway.simfleet-metrics.svc:9091",
            "is https, and the in-cluster Pushgateway speaks plain HTTP",
        ),
        ("prometheus-pushgateway:9091", "SIMFLEET_PUSHGATEWAY_URL is not an http:// URL"),
    ],
    ids=["refused", "https", "no-scheme"],
)
def test_a_pushgateway_that_cannot_be_reached_is_only_a_warning(pod: JobPod, url: str, warning: str) -> None:
    pod.write_marker()
    result = pod.run("job-upload.sh", **_pushgateway_env(url.format(closed=_closed_port())))
    assert result.returncode == 0, explain(result)
    assert warning in result.stderr and "deleted the Pushgateway group" not in result.stdout
    assert (pod.index()["status"], pod.index()["reason"]) == ("Succeeded", None)


def test_a_pushgateway_error_answer_is_only_a_warning(pod: JobPod, pushgateway: Pushgateway) -> None:
    pushgateway.status = 500
    pod.write_marker("Failed", 3, "exited with code 3")
    result = pod.run("job-upload.sh", **_pushgateway_env(pushgateway.url))
    assert result.returncode == 1, explain(result)  # the shard's own result, not the Pushgateway's
    assert "it answered 'HTTP/1.0 500 Internal Server Error'" in result.stderr
    assert (pod.index()["status"], pod.index()["reason"]) == ("Failed", "exited with code 3")


def test_no_pushgateway_url_means_no_delete(pod: JobPod, pushgateway: Pushgateway) -> None:
    pod.write_marker()
    result = pod.run("job-upload.sh", SIMFLEET_METRICS_GROUP=GROUP)  # metrics off: no Pushgateway to clean up
    assert result.returncode == 0, explain(result)
    assert pushgateway.requests == [] and "Pushgateway" not in result.stdout + result.stderr


def test_without_a_group_the_uploader_deletes_the_one_the_program_was_given(pod: JobPod, pushgateway: Pushgateway) -> None:
    pod.write_marker()
    result = pod.run("job-upload.sh", SIMFLEET_PUSHGATEWAY_URL=pushgateway.url, SIMFLEET_METRICS_LINGER_SECONDS="0")
    assert result.returncode == 0, explain(result)
    assert [(r["method"], r["path"]) for r in pushgateway.requests] == [("DELETE", f"/metrics/job/{JOB}/shard/{SHARD}")]


# ---------------------------------------------------------------------------------------------
# The shard, the Pushgateway group URL and maxRuntime (what the renderer relies on)
# ---------------------------------------------------------------------------------------------

SHOW_ENV = 'echo "$JOB_COMPLETION_INDEX $SIMFLEET_SHARD ${SIMFLEET_PUSHGATEWAY_GROUP_URL:-none}"'


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_gives_the_program_its_shard_and_its_pushgateway_group(pod: JobPod, shell: tuple[str, ...]) -> None:
    result = pod.entry("sh", "-c", SHOW_ENV, shell=shell, SIMFLEET_PUSHGATEWAY_URL="http://pg.metrics.svc:9091/")
    assert result.returncode == 0, explain(result)
    assert result.stdout == f"{SHARD} {SHARD} http://pg.metrics.svc:9091/metrics/job/{JOB}/shard/{SHARD}\n"
    assert pod.entry("sh", "-c", SHOW_ENV, shell=shell).stdout == f"{SHARD} {SHARD} none\n"  # metrics off


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_maps_a_position_to_its_shard_on_a_job_for_the_shards_left(pod: JobPod, shell: tuple[str, ...]) -> None:
    # A Job for shards 1, 5 and 7 only: the pod at completion index 1 runs shard 5.
    result = pod.entry("sh", "-c", SHOW_ENV, shell=shell, JOB_COMPLETION_INDEX="1", SIMFLEET_SHARD_LIST="1 5 7")
    assert result.stdout == "5 5 none\n", explain(result)
    bad = pod.entry("sh", "-c", SHOW_ENV, shell=shell, JOB_COMPLETION_INDEX="3", SIMFLEET_SHARD_LIST="1 5 7")
    assert bad.returncode == 2 and "no shard at position '3'" in bad.stderr and bad.stdout == ""
    assert pod.read_marker()["status"] == "Failed"


def test_the_uploader_maps_the_position_too(pod: JobPod) -> None:
    pod.write_marker()
    result = pod.run("job-upload.sh", JOB_COMPLETION_INDEX="0", SIMFLEET_SHARD_LIST=f"{SHARD} 9")
    assert result.returncode == 0, explain(result)
    assert pod.index()["shard"] == SHARD  # under shard-3/, where the first Job's pods wrote
    assert pod.run("job-upload.sh", JOB_COMPLETION_INDEX="2", SIMFLEET_SHARD_LIST="3 9").returncode == 2


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_stops_a_program_at_max_runtime_and_fails_it_with_124(pod: JobPod, shell: tuple[str, ...]) -> None:
    started = pod.simfleet / "started"
    program = f'touch "{started}"; trap "echo stopping; exit 0" TERM; while :; do sleep 0.1; done'
    result = pod.entry("sh", "-c", program, shell=shell, SIMFLEET_MAX_RUNTIME_SECONDS="1", SIMFLEET_TERM_SECONDS="5")
    assert result.returncode == 124, explain(result)
    assert started.exists() and "stopping" in result.stdout  # it got SIGTERM and stopped on its own
    marker = pod.read_marker()
    assert (marker["status"], marker["exitCode"]) == ("Failed", 124)
    assert marker["reason"] == "exceeded maxRuntime (1 s); the command exited with code 0"


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_kills_a_program_that_ignores_the_sigterm_at_max_runtime(pod: JobPod, shell: tuple[str, ...]) -> None:
    program = 'trap "" TERM; while :; do sleep 0.1; done'
    result = pod.entry("sh", "-c", program, shell=shell, SIMFLEET_MAX_RUNTIME_SECONDS="1", SIMFLEET_TERM_SECONDS="1")
    assert result.returncode == 124, explain(result)
    assert pod.read_marker()["reason"] == "exceeded maxRuntime (1 s); the command exited with code 137"


def after_function() -> str:
    """job-entry.sh's `after` (the maxRuntime timer), as the script defines it."""
    text = (Path(__file__).resolve().parent.parent / "workloads" / "scripts" / "job-entry.sh").read_text()
    match = re.search(r"^after\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert match, "job-entry.sh defines after()"
    return match[0]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_cancelled_timer_leaves_no_sleep_behind(shell: tuple[str, ...]) -> None:
    """A timer cancelled the instant it starts (a program that ends at once) ends its sleep too: SIGTERM used to land
    before the subshell knew its sleep's pid, or on the forked sleep before it exec'd, about one time in twenty, and
    the sleep then held the script's stdout for the whole maxRuntime. 200 timers, each cancelled at once: stdout
    closes when the shell exits, not a minute later."""
    import subprocess

    loop = after_function() + 'i=0\nwhile [ "$i" -lt 200 ]; do after 60 true; kill "$!"; i=$((i + 1)); done\n'
    shell_process = subprocess.Popen(
        [*shell, "-c", loop], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert shell_process.wait(timeout=60) == 0
        closed = threading.Event()
        output = shell_process.stdout
        assert output is not None

        def drain() -> None:
            output.read()  # returns at end of file: when the last holder of the pipe is gone
            closed.set()

        threading.Thread(target=drain, daemon=True).start()
        # Every sleep is ended within moments of the shell's exit; one left behind holds the pipe for 60 s.
        assert closed.wait(timeout=20), "a cancelled timer's sleep outlived it (still holding stdout)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell_process.pid, signal.SIGKILL)  # its own group: a sleep left behind goes too


@pytest.mark.parametrize("shell", SHELLS)
def test_a_program_that_ends_at_once_leaves_nothing_holding_the_output(pod: JobPod, shell: tuple[str, ...]) -> None:
    # The maxRuntime timer is a subshell that the entry ends with SIGTERM when the program is done; a SIGTERM that
    # lands while that subshell is still starting is lost (dash: 65 of 200 in a loop of the same shape), and the timer
    # then sleeps out maxRuntime. It must not hold the container's stdout and stderr meanwhile: the entry's output ends
    # with the entry (before, a reader waited out the 60 s, about one run in twenty under load).
    for attempt in range(12):
        entry = pod.start("job-entry.sh", "sh", "-c", "exit 0", shell=shell, SIMFLEET_MAX_RUNTIME_SECONDS="60")
        try:
            entry.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"attempt {attempt}: the entry's output stayed open after it ended (a timer still holding it)")
        assert entry.returncode == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_entry_without_max_runtime_or_in_time_is_not_a_timeout(pod: JobPod, shell: tuple[str, ...]) -> None:
    assert pod.entry("sh", "-c", "exit 0", shell=shell, SIMFLEET_MAX_RUNTIME_SECONDS="60").returncode == 0
    assert pod.read_marker() == {"status": "Succeeded", "exitCode": 0, "reason": None}
    bad = pod.entry("true", shell=shell, SIMFLEET_MAX_RUNTIME_SECONDS="1h")
    assert bad.returncode == 2 and "must be whole seconds" in bad.stderr
