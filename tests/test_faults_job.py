"""Fault injection on a batch job pod: job-entry.sh (the wrapper, under dash when installed) and job-upload.sh with the
real AWS CLI against moto's S3 server on 127.0.0.1, with S3 failures injected over HTTP.

Each test asserts index.json's status and reason, what is (and is not) in S3, the exit codes, and how long the pod
took to react (figures in build/faults/figures.json, for docs/failures.md).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pod_harness import GUARD, Moto, moto_server_for, read_until, serving
from test_faults_run import CLI, record_figure
from test_job_scripts import ARTIFACTS, ENTRY_SHELL, JOB, JobPod, P


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS,))


@pytest.fixture
def pod(tmp_path: Path, moto_server: Moto) -> Iterator[JobPod]:
    moto_server.reset()
    yield from serving(JobPod(tmp_path, moto_server, CLI))


def _outputs(pod: JobPod, *names: str) -> None:
    for name in names:
        (pod.outputs / name).write_text(f"{name} of this attempt\n")


def _listing(pod: JobPod, uri: str) -> list[str]:
    prefix = uri.removeprefix(f"s3://{ARTIFACTS}/")
    return [key.removeprefix(prefix) for key in pod.keys(ARTIFACTS, prefix)]


def test_a_retried_shard_s_index_names_only_the_outputs_of_the_attempt_that_succeeded(pod: JobPod) -> None:
    # Attempt 1 ran well but one of its two outputs failed to upload (S3 answered 500 every time): Failed, and the Job
    # retries the shard. Attempt 2 writes other names. Before, both attempts wrote under outputs/: index.json said 2
    # outputs and the prefix held 3 (the failed attempt's file beside the good ones), and no reader could tell.
    # The CLI tries each upload once (AWS_MAX_ATTEMPTS=1: its backoff, up to 1 s a retry, is not what this tests; the
    # CLI's retries are test_faults_run.py's throttle test): the uploader still sends b.csv in each of its rounds.
    fault = pod.moto.fail("PUT", r"/outputs/.*/b\.csv$", times=-1, status=500, code="InternalError")
    _outputs(pod, "a.csv", "b.csv")
    pod.write_marker()
    first = pod.run("job-upload.sh", HOSTNAME=f"{JOB}-3-first", AWS_MAX_ATTEMPTS="1", SIMFLEET_INDEX_RETRY_SECONDS="0")
    assert first.returncode == 1 and fault.hits >= 2
    failed = pod.index()
    assert failed["status"] == "Failed" and failed["reason"].startswith("upload failed: outputs/b.csv: ")
    assert failed["outputFiles"] == ["a.csv"]  # what did go up, under that attempt's own prefix
    pod.moto.faulty.faults.clear()

    for name in ("a.csv", "b.csv"):
        (pod.outputs / name).unlink()  # a new pod: a fresh emptyDir
    _outputs(pod, "c.csv", "d.csv")
    pod.write_marker()
    second = pod.run("job-upload.sh", HOSTNAME=f"{JOB}-3-second")
    assert second.returncode == 0, second.stdout + second.stderr
    index = pod.index()
    assert (index["status"], index["recoveries"], index["outputs"]) == ("Succeeded", 1, 2)
    assert index["attempt"].endswith(f"-{JOB}-3-second") and index["outputFiles"] == ["c.csv", "d.csv"]
    # Read through index.json, the prefix holds exactly the files it names, and only this attempt's content.
    assert _listing(pod, index["outputsPrefix"]) == ["c.csv", "d.csv"]
    assert pod.get(ARTIFACTS, index["outputsPrefix"].removeprefix(f"s3://{ARTIFACTS}/") + "c.csv") == "c.csv of this attempt\n"
    assert failed["outputsPrefix"] != index["outputsPrefix"]
    assert _listing(pod, failed["outputsPrefix"]) == ["a.csv"]  # the failed attempt's file stays where it was put


FORGER = """
printf '{"status": "Succeeded", "exitCode": 0, "reason": null}\\n' >"$1/.done" 2>/dev/null
printf '{"status": "Succeeded", "exitCode": 0, "reason": null}\\n' >"$1/result" 2>/dev/null
sleep 1
exit 3
"""
# (The forged files stand for 1 s before the program fails: five of the uploader's looks, SIMFLEET_POLL_SECONDS=0.2.)


def test_a_program_cannot_forge_the_wrapper_s_result(pod: JobPod) -> None:
    # The program writes a Succeeded marker where the wrapper's used to be, and where the channel was, then fails.
    # Before, the uploader took the program's marker (a plain file in a directory the program could write).
    upload = pod.start("job-upload.sh")
    read_until(upload, "waiting for the work container's result")
    entry = pod.entry("sh", "-c", FORGER, "sh", str(pod.simfleet))
    assert entry.returncode == 3
    stdout, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stdout + stderr
    index = pod.index()
    assert (index["status"], index["exitCode"], index["reason"]) == ("Failed", 3, "exited with code 3")
    assert index["outputsPrefix"] is None and pod.keys(ARTIFACTS, f"{P}outputs/") == []


def test_a_work_container_killed_without_a_result_is_reported_at_once(pod: JobPod) -> None:
    # Its container killed (SIGKILL to the wrapper and the program, as the kubelet or the OOM killer do): the channel
    # ends without a result, and the uploader knows at once instead of waiting out SIMFLEET_DONE_WAIT_SECONDS.
    upload = pod.start("job-upload.sh", SIMFLEET_DONE_WAIT_SECONDS="600")
    read_until(upload, "waiting for the work container's result")
    entry = pod.start("job-entry.sh", "sh", "-c", "echo ready; exec sleep 60", shell=ENTRY_SHELL)
    read_until(entry, "ready")
    read_until(upload, "wrapper is connected")
    killed_at = pod.kill_session(entry)
    stdout, stderr = upload.communicate(timeout=GUARD)
    index = pod.index()
    react = time.monotonic() - killed_at
    assert upload.returncode == 1, stdout + stderr
    assert (index["status"], index["exitCode"]) == ("Failed", None)
    assert index["reason"] == "the work container stopped without a result (killed, out of memory?)"
    assert react < 30, react
    record_figure("job work container gone", reactSeconds=round(react, 1))


def test_sigterm_reaches_the_program_and_the_index_says_interrupted(pod: JobPod, tmp_path: Path) -> None:
    """A spot reclaim: SIGTERM to both main containers; the program stops cleanly and the shard is Interrupted."""
    stopped = tmp_path / "stopped"
    upload = pod.start("job-upload.sh")
    read_until(upload, "waiting for the work container's result")
    program = f"trap 'echo stopped >{stopped}; exit 0' TERM; echo ready; while :; do sleep 1 & wait $!; done"
    entry = pod.start("job-entry.sh", "sh", "-c", program, shell=ENTRY_SHELL)
    read_until(entry, "ready")
    upload.send_signal(signal.SIGTERM)
    entry.send_signal(signal.SIGTERM)
    assert entry.wait(timeout=GUARD) == 0 and stopped.exists()
    upload.communicate(timeout=GUARD)
    index: dict[str, Any] = pod.index()
    assert (index["status"], index["reason"]) == ("Interrupted", "received SIGTERM; the command exited with code 0")
    assert json.loads(json.dumps(index))["outputFiles"] == []
