"""The run pod scripts (fetch.sh, upload.sh) with the real AWS CLI, v1 and v2, against moto's S3 server on 127.0.0.1.

tests/pod_harness.py has the server, the pod's env, the CLI versions and how the scripts are run. Here glue is a
stand-in that writes what glue writes (heartbeat, partial checkpoints, done marker); tests/test_faults_run.py runs the
real glue runtime beside upload.sh. Nothing asserts on how long anything took.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_pushgateway import Pushgateway, absent_url
from pod_harness import AWS_CLIS, GUARD, Moto, ScriptPod, explain, moto_server_for, read_until, run_env, serving, wait_for

ARTIFACTS = "simfleet-dev-artifacts"
CHECKPOINTS = "simfleet-dev-checkpoints"
SOURCE = "simfleet-dev-source"
RUN, HASH = "trot-continue", "0123456789ab"
PREFIX = f"runs/{RUN}/{HASH}/"
INCARNATION = "0f1e2d3c4b5a6978"

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS, CHECKPOINTS, SOURCE))


class Pod(ScriptPod):
    """A run pod's /checkpoints and /artifacts in tmp_path, the run's env, and the S3 the scripts talk to."""

    def __init__(self, tmp_path: Path, moto: Moto, aws_cli: str) -> None:
        self.checkpoints = tmp_path / "checkpoints"
        self.artifacts = tmp_path / "artifacts"
        for directory in (self.checkpoints, self.artifacts):
            directory.mkdir()
        env = {
            **run_env(RUN, HASH, PREFIX, (ARTIFACTS, CHECKPOINTS), self.checkpoints, self.artifacts),
            "SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS": "5",
        }
        super().__init__(tmp_path, moto, "trot-continue-x7k2p", env, aws_cli)
        self.glue = GlueStandIn(self.checkpoints)

    def stop(self) -> None:
        self.glue.stop()
        super().stop()


class GlueStandIn:
    """Writes what glue writes for the uploader: its heartbeat (every 0.3 s while alive) and its done marker."""

    def __init__(self, checkpoints: Path) -> None:
        self.checkpoints = checkpoints
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def beat(self) -> None:
        record = {
            "incarnation": INCARNATION,
            "phase": "running",
            "steps": 42,
            "simulationSeconds": 4.2,
            "beats": 1,
            "stopAfterSeconds": 7200,
            "at": 1796000000.0,
        }
        (self.checkpoints / ".heartbeat.tmp").write_text(json.dumps(record))
        os.replace(self.checkpoints / ".heartbeat.tmp", self.checkpoints / ".heartbeat")

    def start(self) -> GlueStandIn:
        self.beat()

        def loop() -> None:
            while not self.stopped.wait(0.3):
                self.beat()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def end(self, status: str = "Succeeded", exit_code: int = 0, reason: str | None = None, steps: int = 42) -> None:
        """The done marker (after a last heartbeat, as glue writes them), and no more beats."""
        self.beat()
        (self.checkpoints / ".done").write_text(_marker(status, exit_code, reason, steps))
        self.stop()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


@pytest.fixture(params=AWS_CLIS)
def pod(request: pytest.FixtureRequest, tmp_path: Path, moto_server: Moto) -> Iterator[Pod]:
    moto_server.reset()
    yield from serving(Pod(tmp_path, moto_server, request.param))


def _started(pod: Pod) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((pod.checkpoints / ".started").read_text())
    return loaded


INDEX_FIELDS = {
    "run",
    "specHash",
    "seed",
    "status",
    "reason",
    "exitCode",
    "startTime",
    "completionTime",
    "checkpoint",
    "partialCheckpoint",
    "partialSequence",
    "recoveries",
    "resumedFrom",
    "steps",
    "artifacts",
    "untaggedArtifacts",
}


def _marker(status: str = "Succeeded", exit_code: int = 0, reason: str | None = None, steps: int = 42) -> str:
    return json.dumps(
        {
            "status": status,
            "exitCode": exit_code,
            "reason": reason,
            "steps": steps,
            "finishAcks": {"sim": True, "monty": True},
            "checkpointSaved": status == "Succeeded",
            "partialCheckpoint": False,
            "incarnation": INCARNATION,
        }
    )


def _partial(pod: Pod, sequence: int) -> None:
    """What glue does for a partial checkpoint: the checkpoint by rename, then partial.json by rename."""
    (pod.checkpoints / "partial.mstate.tmp").write_text(f"partial brain {sequence}\n")
    os.replace(pod.checkpoints / "partial.mstate.tmp", pod.checkpoints / "partial.mstate")
    record = {
        "elapsedSeconds": 60.0 * sequence,
        "steps": 1000 * sequence,
        "savedAt": "2026-11-30T10:00:00Z",
        "sequence": sequence,
    }
    (pod.checkpoints / ".partial.json.tmp").write_text(json.dumps(record))
    os.replace(pod.checkpoints / ".partial.json.tmp", pod.checkpoints / "partial.json")


# ---------------------------------------------------------------------------------------------
# fetch.sh
# ---------------------------------------------------------------------------------------------


def test_fetch_without_a_source_records_the_attempt_and_starts_fresh(pod: Pod) -> None:
    result = pod.run("fetch.sh")
    assert result.returncode == 0, explain(result)
    assert "fresh brain" in result.stdout and not (pod.checkpoints / "in.mstate").exists()
    [attempt] = pod.keys(ARTIFACTS, f"{PREFIX}attempts/")
    assert re.fullmatch(rf"{PREFIX}attempts/\d{{8}}T\d{{6}}Z-trot-continue-x7k2p\.json", attempt)
    assert pod.get_json(ARTIFACTS, attempt)["pod"] == "trot-continue-x7k2p"
    started = _started(pod)
    assert started["recoveries"] == 0 and started["resumedFrom"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", started["startTime"])
    assert not (pod.checkpoints / ".started.tmp").exists()


def test_fetch_an_s3_source_behind_a_succeeded_index(pod: Pod) -> None:
    pod.put(SOURCE, "runs/trot-baseline/aaa/out.mstate", "brain of the source")
    pod.put(ARTIFACTS, "runs/trot-baseline/aaa/index.json", '{"status": "Succeeded"}')
    result = pod.run(
        "fetch.sh",
        SIMFLEET_CHECKPOINT_FROM=f"s3://{SOURCE}/runs/trot-baseline/aaa/out.mstate",
        SIMFLEET_SOURCE_INDEX=f"s3://{ARTIFACTS}/runs/trot-baseline/aaa/index.json",
    )
    assert result.returncode == 0, explain(result)
    assert (pod.checkpoints / "in.mstate").read_text() == "brain of the source"
    assert _started(pod)["resumedFrom"] is None


def test_fetch_retries_a_source_that_is_not_there_yet(pod: Pod) -> None:
    uri = f"s3://{SOURCE}/elsewhere/brain.mstate"
    fetch = pod.start(
        "fetch.sh", SIMFLEET_CHECKPOINT_FROM=uri, SIMFLEET_FETCH_WAIT_SECONDS="100", SIMFLEET_FETCH_POLL_SECONDS="1"
    )
    assert "it does not exist" in read_until(fetch, "trying again in 1 s")
    pod.put(SOURCE, "elsewhere/brain.mstate", "late brain")
    _, stderr = fetch.communicate(timeout=GUARD)
    assert fetch.returncode == 0, stderr
    assert (pod.checkpoints / "in.mstate").read_text() == "late brain"


def test_fetch_gives_up_on_a_missing_source_at_the_deadline(pod: Pod) -> None:
    uri = f"s3://{SOURCE}/elsewhere/brain.mstate"
    result = pod.run("fetch.sh", SIMFLEET_CHECKPOINT_FROM=uri, SIMFLEET_FETCH_WAIT_SECONDS="0")
    assert result.returncode == 1
    assert result.stderr.strip() == f"checkpoint-fetch: gave up on {uri} after 0 s: it does not exist"


def test_fetch_fails_when_the_source_has_not_finished(pod: Pod) -> None:
    index = f"s3://{ARTIFACTS}/runs/trot-baseline/aaa/index.json"
    pod.put(CHECKPOINTS, "runs/trot-baseline/aaa/out.mstate", "a checkpoint from a run still going")
    result = pod.run(
        "fetch.sh", SIMFLEET_CHECKPOINT_FROM=f"s3://{CHECKPOINTS}/runs/trot-baseline/aaa/out.mstate", SIMFLEET_SOURCE_INDEX=index
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"checkpoint-fetch: the source run has not finished: {index} does not exist"
    assert not (pod.checkpoints / "in.mstate").exists() and not (pod.checkpoints / ".started").exists()


def test_fetch_fails_when_the_source_did_not_succeed_and_quotes_its_index(pod: Pod) -> None:
    index = f"s3://{ARTIFACTS}/runs/trot-baseline/aaa/index.json"
    pod.put(ARTIFACTS, "runs/trot-baseline/aaa/index.json", json.dumps({"status": "Failed", "reason": "step 3 raised"}))
    result = pod.run("fetch.sh", SIMFLEET_CHECKPOINT_FROM=f"s3://{CHECKPOINTS}/x/out.mstate", SIMFLEET_SOURCE_INDEX=index)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f'checkpoint-fetch: the source run did not succeed: {index} says {{"status":"Failed","reason":"step 3 raised"}}'
    )


def test_fetch_reports_a_403_on_the_source_index_as_an_access_problem(pod: Pod) -> None:
    index = f"s3://{SOURCE}/runs/trot-baseline/aaa/index.json"
    pod.put(SOURCE, "runs/trot-baseline/aaa/index.json", '{"status": "Succeeded"}')
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{SOURCE}/*"}
    with pod.denied(deny):
        result = pod.run("fetch.sh", SIMFLEET_CHECKPOINT_FROM=f"s3://{SOURCE}/x/out.mstate", SIMFLEET_SOURCE_INDEX=index)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"checkpoint-fetch: access denied (403) reading {index}: the run's IAM role")
    assert "has not finished" not in result.stderr


def test_fetch_resumes_a_seed_from_its_partial_checkpoint_and_counts_recoveries(pod: Pod) -> None:
    seed_prefix = f"{PREFIX}seed-5/"  # the second seed of [3, 5]
    for earlier in ("20261130T080000Z-trot-continue-aaaaa", "20261130T090000Z-trot-continue-bbbbb"):
        pod.put(ARTIFACTS, f"{seed_prefix}attempts/{earlier}.json", "{}")
    pod.put(ARTIFACTS, f"{PREFIX}seed-3/attempts/20261130T080000Z-other-seed.json", "{}")  # another seed's
    pod.put(CHECKPOINTS, f"{seed_prefix}partial.mstate", "partial brain 7")
    pod.put(CHECKPOINTS, f"{seed_prefix}partial.json", json.dumps({"elapsedSeconds": 420.0, "steps": 7000, "sequence": 7}))
    result = pod.run(
        "fetch.sh",
        SIMFLEET_SEEDS="[3, 5]",
        SIMFLEET_PER_SEED="true",
        JOB_COMPLETION_INDEX="1",
        SIMFLEET_RESUME="true",
        SIMFLEET_CHECKPOINT_FROM=f"s3://{SOURCE}/ignored/out.mstate",  # a partial of the seed wins over the source
    )
    assert result.returncode == 0, explain(result)
    assert (pod.checkpoints / "in.mstate").read_text() == "partial brain 7"
    assert json.loads((pod.checkpoints / "resume.json").read_text())["elapsedSeconds"] == 420.0
    started = _started(pod)
    assert started["recoveries"] == 2
    assert started["resumedFrom"] == f"s3://{CHECKPOINTS}/{seed_prefix}partial.mstate"
    assert len(pod.keys(ARTIFACTS, f"{seed_prefix}attempts/")) == 3


@pytest.mark.slow
def test_fetch_never_resumes_a_brain_without_its_record_because_s3_failed_to_hand_it_over(pod: Pod) -> None:
    # Before, one failed GET of partial.json (a 500, a throttle past the CLI's retries) made fetch.sh resume the
    # partial brain without resume.json: glue ran the whole simulation time again on a brain that had done 420 s of it,
    # and nothing said so. Now a transient error is retried, one that lasts fails the pod (the Job retries it), and
    # only a record that is not there lets the whole time run again, noted in index.json.
    pod.put(CHECKPOINTS, f"{PREFIX}partial.mstate", "partial brain 7")
    pod.put(CHECKPOINTS, f"{PREFIX}partial.json", json.dumps({"elapsedSeconds": 420.0, "steps": 7000, "sequence": 7}))
    once = pod.moto.fail("GET", r"partial\.(json|mstate)$", times=2, status=500, code="InternalError")
    result = pod.run("fetch.sh", SIMFLEET_RESUME="true", AWS_MAX_ATTEMPTS="1")
    assert result.returncode == 0 and once.hits == 2, explain(result)
    assert json.loads((pod.checkpoints / "resume.json").read_text())["elapsedSeconds"] == 420.0
    assert (pod.checkpoints / "in.mstate").read_text() == "partial brain 7" and _started(pod)["notes"] == []

    (pod.checkpoints / "resume.json").unlink()
    (pod.checkpoints / "in.mstate").unlink()
    pod.moto.fail("GET", r"partial\.json$", times=-1, status=500, code="InternalError")
    result = pod.run("fetch.sh", SIMFLEET_RESUME="true", AWS_MAX_ATTEMPTS="1", SIMFLEET_RETRY_SECONDS="2")
    assert result.returncode == 1, explain(result)
    assert f"cannot read s3://{CHECKPOINTS}/{PREFIX}partial.json: " in result.stderr
    assert not (pod.checkpoints / "in.mstate").exists() and not (pod.checkpoints / "resume.json").exists()

    pod.moto.faulty.faults.clear()
    pod.s3.delete_object(Bucket=CHECKPOINTS, Key=f"{PREFIX}partial.json")
    result = pod.run("fetch.sh", SIMFLEET_RESUME="true")
    assert result.returncode == 0, explain(result)
    assert (pod.checkpoints / "in.mstate").read_text() == "partial brain 7"
    assert not (pod.checkpoints / "resume.json").exists()
    [note] = _started(pod)["notes"]
    assert note == (
        f"resumed from s3://{CHECKPOINTS}/{PREFIX}partial.mstate without its record s3://{CHECKPOINTS}/{PREFIX}partial.json: "
        "the whole simulation time ran again on top of it"
    )


def test_fetch_carries_on_when_the_attempts_cannot_be_listed_and_the_index_says_so(pod: Pod) -> None:
    # The listing fails after the CLI's retries and the script's own (S3 answers 500 every time). Before, fetch.sh
    # failed the pod there, where job-upload.sh carried on; now both carry on, and the count is noted as unknown.
    fault = pod.moto.fail("GET", rf"^/{ARTIFACTS}/?$", times=-1, status=500, code="InternalError")
    result = pod.run("fetch.sh", AWS_MAX_ATTEMPTS="2", SIMFLEET_RETRY_SECONDS="4")
    assert result.returncode == 0, explain(result)
    assert fault.hits >= 4  # two CLI attempts, twice
    started = _started(pod)
    assert started["recoveries"] is None and started["startTime"]
    [note] = started["notes"]
    assert note.startswith(f"cannot list s3://{ARTIFACTS}/{PREFIX}attempts/ to count this seed's recoveries: ")
    pod.moto.faulty.faults.clear()
    pod.glue.end()
    upload = pod.run("upload.sh")
    assert upload.returncode == 0, explain(upload)  # the run itself succeeded
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert (index["status"], index["recoveries"], index["reason"]) == ("Succeeded", None, note)


def test_fetch_with_resume_but_no_partial_uses_the_source(pod: Pod) -> None:
    pod.put(SOURCE, "x/out.mstate", "source brain")
    result = pod.run("fetch.sh", SIMFLEET_RESUME="true", SIMFLEET_CHECKPOINT_FROM=f"s3://{SOURCE}/x/out.mstate")
    assert result.returncode == 0, explain(result)
    assert "no partial checkpoint of this seed" in result.stdout
    assert (pod.checkpoints / "in.mstate").read_text() == "source brain" and not (pod.checkpoints / "resume.json").exists()


# ---------------------------------------------------------------------------------------------
# upload.sh
# ---------------------------------------------------------------------------------------------


def _artifacts(pod: Pod) -> None:
    (pod.artifacts / "logs" / "sim").mkdir(parents=True)
    (pod.artifacts / "logs" / "sim" / "run 1.log").write_text("sim log")
    (pod.artifacts / "videos").mkdir()
    (pod.artifacts / "videos" / "episode.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (pod.artifacts / "metrics").mkdir()
    (pod.artifacts / "metrics" / "glue-summary.json").write_text('{"steps": 42}')
    (pod.artifacts / "scratch.bin").write_text("not uploaded")
    started = {"startTime": "2026-11-30T09:00:00Z", "recoveries": 1, "resumedFrom": None, "notes": []}
    (pod.checkpoints / ".started").write_text(json.dumps(started))


def test_upload_tags_every_artifact_ships_the_checkpoint_and_writes_the_index_last(pod: Pod) -> None:
    _artifacts(pod)
    (pod.checkpoints / "out.mstate").write_text("final brain")
    pod.glue.end()
    result = pod.run("upload.sh", SIMFLEET_SAVE_CHECKPOINT="true")
    requests = list(pod.moto.requests)  # before the checks below add their own
    assert result.returncode == 0, explain(result)
    artifacts = pod.keys(ARTIFACTS, PREFIX)
    assert artifacts == [
        f"{PREFIX}index.json",
        f"{PREFIX}logs/sim/run 1.log",
        f"{PREFIX}metrics/glue-summary.json",
        f"{PREFIX}videos/episode.mp4",
    ]
    for key in artifacts[1:]:
        assert pod.tags(ARTIFACTS, key) == {"simfleet-kind": key[len(PREFIX) :].split("/")[0]}, key
    assert pod.get(ARTIFACTS, f"{PREFIX}videos/episode.mp4") == "\x00\x00\x00\x18ftypmp42"
    assert "skipping" in result.stderr and "scratch.bin" in result.stderr
    assert pod.get(CHECKPOINTS, f"{PREFIX}out.mstate") == "final brain"
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert set(index) == INDEX_FIELDS
    assert {k: index[k] for k in INDEX_FIELDS - {"completionTime"}} == {
        "run": RUN,
        "specHash": HASH,
        "seed": 7,
        "status": "Succeeded",
        "reason": None,
        "exitCode": 0,
        "startTime": "2026-11-30T09:00:00Z",
        "checkpoint": f"s3://{CHECKPOINTS}/{PREFIX}out.mstate",
        "partialCheckpoint": None,
        "partialSequence": None,
        "recoveries": 1,
        "resumedFrom": None,
        "steps": 42,
        "artifacts": 3,
        "untaggedArtifacts": 0,
    }
    assert pod.s3.head_object(Bucket=ARTIFACTS, Key=f"{PREFIX}index.json")["ContentType"] == "application/json"
    # The order moto saw: every artifact, its tag and the checkpoint before index.json, the very last request.
    assert requests[-1] == ("PUT", f"/{ARTIFACTS}/{PREFIX}index.json")
    writes = [path for method, path in requests if method == "PUT"]
    assert set(writes[:-1]) == {f"/{ARTIFACTS}/{k}" for k in artifacts[1:]} | {
        f"/{ARTIFACTS}/{k}?tagging" for k in artifacts[1:]
    } | {f"/{CHECKPOINTS}/{PREFIX}out.mstate"}


def _token_and_a_log(pod: Pod, tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in for the uploader's IRSA token outside /artifacts, and /artifacts/logs with one real log."""
    secret = tmp_path / "token"
    secret.write_text("eyJhbGciOi-the-uploaders-own-token")
    logs = pod.artifacts / "logs"
    logs.mkdir()
    (logs / "run.log").write_text("a real log")
    return secret, logs


def test_upload_sends_only_regular_files_and_never_follows_a_link(pod: Pod, tmp_path: Path) -> None:
    # The uploader is the only container with AWS credentials; user code writes /artifacts. A link to one of the
    # uploader's own files (its IRSA token), a link inside /artifacts, a whole kind linked elsewhere and a FIFO are
    # all refused by name, and the run fails, saying so; the regular files still go up.
    secret, logs = _token_and_a_log(pod, tmp_path)
    (logs / "latest.log").symlink_to(logs / "run.log")
    (logs / "token.log").symlink_to(secret)
    os.mkfifo(logs / "pipe.log")
    (pod.artifacts / "videos").symlink_to(tmp_path, target_is_directory=True)  # a whole kind pointed elsewhere
    pod.glue.end()
    result = pod.run("upload.sh")
    assert result.returncode == 1, explain(result)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Failed" and index["reason"].startswith("upload failed: "), index
    for name, why in [
        ("logs/latest.log", "symbolic link"),
        ("logs/token.log", "symbolic link"),
        ("logs/pipe.log", "FIFO"),
        ("videos", "symbolic link"),
    ]:
        assert f"{name}: a {why}" in index["reason"], (name, index["reason"])
    assert pod.keys(ARTIFACTS, PREFIX) == [f"{PREFIX}index.json", f"{PREFIX}logs/run.log"]
    assert index["artifacts"] == 1


def test_a_file_swapped_for_a_link_after_the_listing_is_refused_by_what_the_open_reached(pod: Pod, tmp_path: Path) -> None:
    # The race a listing alone cannot close: the file is regular when listed, a link when opened. open_regular checks
    # the open file itself (/proc/<pid>/fd), and the upload reads that open file.
    secret, logs = _token_and_a_log(pod, tmp_path)
    script = f"""
source {pod.scripts}/common.sh
NAME=test; WORK=$(mktemp -d); ERR=$WORK/err
rm {logs}/run.log && ln -s {secret} {logs}/run.log   # after the listing, before the open
open_regular {logs}/run.log {pod.artifacts} && echo "opened $opened_fd" || echo "refused: $refusal"
"""
    result = pod.run_inline(script)
    assert "refused: a symbolic link" in result.stdout, explain(result)


def test_checkpoints_that_are_not_regular_files_never_leave_the_pod(pod: Pod, tmp_path: Path) -> None:
    # out.mstate and partial.mstate as links to the uploader's own token: neither is followed, and the run fails.
    secret = tmp_path / "token"
    secret.write_text("eyJhbGciOi-the-uploaders-own-token")
    (pod.checkpoints / "out.mstate").symlink_to(secret)
    (pod.checkpoints / "partial.mstate").symlink_to(secret)
    (pod.checkpoints / "partial.json").write_text(json.dumps({"sequence": 1, "elapsedSeconds": 1, "steps": 1}))
    pod.glue.end()
    result = pod.run("upload.sh", SIMFLEET_SAVE_CHECKPOINT="true")
    assert result.returncode == 1, explain(result)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Failed" and index["checkpoint"] is None
    assert f"checkpoint {pod.checkpoints}/out.mstate is a symbolic link (only regular files are uploaded)" in index["reason"]
    assert pod.keys(CHECKPOINTS) == []
    # The partial one, after a run that did not succeed:
    (pod.checkpoints / ".done").write_text(_marker("Interrupted", 143, "terminated (SIGTERM)"))
    result = pod.run("upload.sh")
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert "partial checkpoint 1 not shipped" in index["reason"] and "symbolic link" in index["reason"]
    assert pod.keys(CHECKPOINTS) == [] and index["partialSequence"] is None


def test_upload_ships_partial_checkpoints_while_glue_runs(pod: Pod) -> None:
    pod.glue.start()
    upload = pod.start(
        "upload.sh",
        SIMFLEET_CHECKPOINT_EVERY_SECONDS="60",
        SIMFLEET_PARTIAL_POLL_SECONDS="1",
        SIMFLEET_SAVE_CHECKPOINT="true",
    )
    read_until(upload, "following glue's heartbeat")

    def shipped() -> int | None:
        record = pod.get_json_if_there(CHECKPOINTS, f"{PREFIX}partial.json")
        if record is None:
            return None
        sequence: int = record["sequence"]
        return sequence

    _partial(pod, 1)
    wait_for(lambda: shipped() == 1, "partial checkpoint 1 in S3")
    assert pod.get(CHECKPOINTS, f"{PREFIX}partial.mstate") == "partial brain 1\n"
    _partial(pod, 2)
    wait_for(lambda: shipped() == 2, "partial checkpoint 2 in S3")
    assert pod.get(CHECKPOINTS, f"{PREFIX}partial.mstate") == "partial brain 2\n"
    (pod.checkpoints / "out.mstate").write_text("final brain")
    pod.glue.end()
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 0, stderr
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Succeeded" and index["partialCheckpoint"] == f"s3://{CHECKPOINTS}/{PREFIX}partial.mstate"
    assert index["partialSequence"] == 2
    names = ("out.mstate", "partial.json", "partial.mstate", "partial.mstate.uploading")
    assert pod.keys(CHECKPOINTS, PREFIX) == [f"{PREFIX}{name}" for name in names]
    # The run role deletes nothing: the staging copy stays, tagged so the bucket's lifecycle expires it, and the
    # checkpoint itself carries no such tag (a copy takes its source's tags, so the tag comes after the copy).
    assert pod.tags(CHECKPOINTS, f"{PREFIX}partial.mstate.uploading") == {"simfleet-kind": "staging"}
    assert pod.tags(CHECKPOINTS, f"{PREFIX}partial.mstate") == {}
    progress = pod.get_json(ARTIFACTS, f"{PREFIX}progress.json")
    assert progress["steps"] == 42 and progress["simulationSeconds"] == 4.2 and progress["phase"] == "running"
    assert progress["lastHeartbeat"] == "2026-11-30T00:53:20Z" and progress["seed"] == 7


# Calls the real aws, then - once - replaces partial.mstate (by rename, as glue does) right after it went up to the
# staging key, the way glue's next periodic save would if it landed while a large checkpoint was still uploading.
REPLACING_AWS = """#!/bin/bash
"$REAL_AWS" "$@"
status=$?
if [[ ${!#} == *partial.mstate.uploading && $2 != s3://* && ! -e "$REPLACED_FLAG" ]]; then
  touch "$REPLACED_FLAG"
  printf 'replaced brain\\n' >"$SIMFLEET_CHECKPOINTS_DIR/partial.mstate.tmp"
  mv -f "$SIMFLEET_CHECKPOINTS_DIR/partial.mstate.tmp" "$SIMFLEET_CHECKPOINTS_DIR/partial.mstate"
fi
exit $status
"""


def test_a_partial_replaced_while_it_uploads_goes_up_as_it_was_opened(pod: Pod, tmp_path: Path) -> None:
    # The upload reads the file it opened, so a newer checkpoint renamed over the path meanwhile cannot mix into it:
    # S3 gets checkpoint 1 whole, with partial.json 1 beside it.
    wrapper = tmp_path / "wrapper"
    wrapper.mkdir()
    (wrapper / "aws").write_text(REPLACING_AWS)
    (wrapper / "aws").chmod(0o755)
    pod.env.update(
        PATH=f"{wrapper}:{pod.env['PATH']}", REAL_AWS=str(pod.aws_bin / "aws"), REPLACED_FLAG=str(tmp_path / "replaced")
    )
    _partial(pod, 1)
    pod.glue.end("Interrupted", 143, "terminated (SIGTERM)")
    result = pod.run("upload.sh")
    assert result.returncode == 1, explain(result)
    assert (tmp_path / "replaced").exists()  # the swap did happen mid-upload
    assert pod.get(CHECKPOINTS, f"{PREFIX}partial.mstate") == "partial brain 1\n"
    assert pod.get_json(CHECKPOINTS, f"{PREFIX}partial.json")["sequence"] == 1
    assert pod.get_json(ARTIFACTS, f"{PREFIX}index.json")["partialSequence"] == 1


def test_upload_on_sigterm_waits_for_glue_ships_its_partial_and_says_interrupted(pod: Pod) -> None:
    _artifacts(pod)
    pod.glue.start()
    upload = pod.start("upload.sh", SIMFLEET_TERM_WAIT_SECONDS="100", SIMFLEET_SAVE_CHECKPOINT="true")
    read_until(upload, "following glue's heartbeat")
    upload.send_signal(signal.SIGTERM)
    read_until(upload, "SIGTERM: giving glue up to 100 s")
    # What glue does on SIGTERM: a partial checkpoint, then the marker.
    _partial(pod, 3)
    reason = "terminated (SIGTERM) after 42 steps and 180 s of simulation; partial checkpoint saved"
    pod.glue.end("Interrupted", 143, reason)
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Interrupted" and index["exitCode"] == 143 and index["reason"] == reason
    assert index["partialCheckpoint"] == f"s3://{CHECKPOINTS}/{PREFIX}partial.mstate" and index["checkpoint"] is None
    assert index["partialSequence"] == 3 and index["untaggedArtifacts"] == 3  # tags come after the index here
    assert pod.get_json(CHECKPOINTS, f"{PREFIX}partial.json")["sequence"] == 3
    assert f"{PREFIX}logs/sim/run 1.log" in pod.keys(ARTIFACTS, PREFIX)  # the logs still went up
    assert pod.tags(ARTIFACTS, f"{PREFIX}logs/sim/run 1.log") == {"simfleet-kind": "logs"}  # ... and were tagged after
    assert f"{PREFIX}out.mstate" not in pod.keys(CHECKPOINTS, PREFIX)


def test_a_sigterm_while_the_artifacts_are_tagged_writes_the_index_first(pod: Pod) -> None:
    # The tags go on before index.json when there is time; a SIGTERM then (a spot notice) stops the tagging at once,
    # index.json says how many are untagged, and the tagging starts again after it. S3 holds every tagging call 20 s:
    # the index must not wait for them (before, it waited for every tag, a thousand calls on a large run).
    _artifacts(pod)
    (pod.checkpoints / "out.mstate").write_text("final brain")
    pod.glue.end()
    held = pod.moto.slow("PUT", rf"^/{ARTIFACTS}/", delay=20, query=r"(^|&)tagging")
    upload = pod.start("upload.sh", SIMFLEET_SAVE_CHECKPOINT="true")
    try:
        wait_for(lambda: held.hits >= 1, "a tagging call held by S3")
        upload.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        index = wait_for(lambda: pod.get_json_if_there(ARTIFACTS, f"{PREFIX}index.json"), "index.json")
        assert time.monotonic() - signalled < 10, "index.json waited for the held tagging calls"
        assert index["status"] == "Succeeded" and index["untaggedArtifacts"] == 3
        assert index["checkpoint"] == f"s3://{CHECKPOINTS}/{PREFIX}out.mstate"
        read_until(upload, "tagging 3 artifacts until the pod is stopped")
    finally:
        pod.kill_session(upload)  # the pod's end: the kubelet's SIGKILL after the grace period


def test_a_sigterm_mid_tagging_counts_only_what_has_no_tag_yet_and_tags_only_that_after_the_index(pod: Pod) -> None:
    # Two tags are on when the SIGTERM comes, the third is held by S3: index.json says one artifact is untagged (not
    # three), and the tagging after it takes up that one only (re-tagging all would spend the spot notice's last
    # seconds on tags already there, and leave the rest of a large run untagged for ever).
    _artifacts(pod)
    pod.glue.end()
    held = pod.moto.slow("PUT", rf"^/{ARTIFACTS}/.*episode\.mp4$", delay=20, query=r"(^|&)tagging")
    upload = pod.start("upload.sh")
    others = [f"{PREFIX}logs/sim/run 1.log", f"{PREFIX}metrics/glue-summary.json"]
    try:
        wait_for(lambda: held.hits >= 1 and all(pod.tags(ARTIFACTS, key) for key in others), "two tags on, one held")
        upload.send_signal(signal.SIGTERM)
        index = wait_for(lambda: pod.get_json_if_there(ARTIFACTS, f"{PREFIX}index.json"), "index.json")
        assert index["artifacts"] == 3 and index["untaggedArtifacts"] == 1
        read_until(upload, "tagging 1 artifacts until the pod is stopped")
    finally:
        pod.kill_session(upload)


def test_a_tag_s3_refuses_is_counted_and_named_and_the_rest_go_on(pod: Pod) -> None:
    _artifacts(pod)
    pod.glue.end()
    pod.moto.fail("PUT", rf"^/{ARTIFACTS}/.*episode\.mp4$", times=-1, status=403, code="AccessDenied", query="tagging")
    result = pod.run("upload.sh")
    assert result.returncode == 0, explain(result)
    assert pod.get_json(ARTIFACTS, f"{PREFIX}index.json")["untaggedArtifacts"] == 1
    assert f"1 artifacts could not be tagged (they never expire): {PREFIX}videos/episode.mp4" in result.stderr
    assert pod.tags(ARTIFACTS, f"{PREFIX}logs/sim/run 1.log") == {"simfleet-kind": "logs"}
    assert pod.tags(ARTIFACTS, f"{PREFIX}videos/episode.mp4") == {}


def test_upload_on_sigterm_without_a_marker_writes_interrupted(pod: Pod) -> None:
    pod.glue.start()
    upload = pod.start("upload.sh", SIMFLEET_TERM_WAIT_SECONDS="0")
    read_until(upload, "following glue's heartbeat")
    upload.send_signal(signal.SIGTERM)
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Interrupted" and index["exitCode"] is None and index["steps"] is None
    assert re.fullmatch(r"terminated before glue wrote its done marker \(waited \d s after SIGTERM\)", index["reason"])
    assert index["startTime"] is None and index["recoveries"] == 0


# date, whose first call sends SIGTERM to the process the test started (the leader of its session: PID 1 of the
# container) before it answers. upload.sh is then expanding its progress record, whose `$(utc_now)` is followed by a
# second `$(...)` in the same command: the signal lands while bash 5.2 expands a command substitution, where a trap in
# that shell would be parsed as the rest of the next substitution and lost (term.sh, "Why a guardian").
SIGNALLING_DATE = """#!/bin/bash
if mkdir "$SIGNALLED_FLAG" 2>/dev/null; then
  read -r stat </proc/self/stat
  read -r _ _ _ session _ <<<"${stat##*) }"
  kill -TERM "$session"
fi
exec "$REAL_DATE" "$@"
"""


def test_upload_on_a_sigterm_inside_a_command_substitution_still_writes_interrupted(pod: Pod, tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapper"
    wrapper.mkdir()
    (wrapper / "date").write_text(SIGNALLING_DATE)
    (wrapper / "date").chmod(0o755)
    real_date = shutil.which("date")
    assert real_date is not None
    pod.glue.start()
    upload = pod.start(
        "upload.sh",
        SIMFLEET_TERM_WAIT_SECONDS="0",
        PATH=f"{wrapper}:{pod.env['PATH']}",
        REAL_DATE=real_date,
        SIGNALLED_FLAG=str(tmp_path / "signalled"),
    )
    read_until(upload, "following glue's heartbeat")
    wait_for(lambda: (tmp_path / "signalled").exists(), "the SIGTERM from inside the progress record's $(...)")
    time.sleep(1)  # the glue stand-in beats on meanwhile: a lost SIGTERM would leave the uploader following it
    pod.glue.stop()  # ... and glue gone without a marker makes a lost SIGTERM end as Failed, not Interrupted
    _, stderr = upload.communicate(timeout=GUARD)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Interrupted", (index, stderr)
    assert "unexpected EOF" not in stderr, stderr
    assert re.fullmatch(r"terminated before glue wrote its done marker \(waited \d s after SIGTERM\)", index["reason"])
    assert upload.returncode == 1, stderr


def test_upload_says_so_when_glue_never_started(pod: Pod) -> None:
    result = pod.run("upload.sh", SIMFLEET_START_WAIT_SECONDS="0")
    assert result.returncode == 1
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert (index["status"], index["reason"]) == ("Failed", "glue never started: no heartbeat within 0 s")


def test_upload_of_a_failed_glue_keeps_its_status_and_skips_the_checkpoint(pod: Pod) -> None:
    _artifacts(pod)
    (pod.checkpoints / "out.mstate").write_text("should not be shipped")
    reason = "step 3 returned an invalid action at /base_cmd/vx: 'fast' is not of type 'number'"
    pod.glue.end("Failed", 5, reason, steps=2)
    result = pod.run(
        "upload.sh",
        SIMFLEET_SAVE_CHECKPOINT="true",
        SIMFLEET_SEEDS="[1, 2, 3]",
        SIMFLEET_PER_SEED="true",
        JOB_COMPLETION_INDEX="2",
    )
    assert result.returncode == 1
    seed_prefix = f"{PREFIX}seed-3/"
    index = pod.get_json(ARTIFACTS, f"{seed_prefix}index.json")
    assert (index["status"], index["exitCode"], index["reason"], index["seed"], index["steps"]) == ("Failed", 5, reason, 3, 2)
    assert index["checkpoint"] is None and pod.keys(CHECKPOINTS) == []
    assert f"{seed_prefix}logs/sim/run 1.log" in pod.keys(ARTIFACTS, seed_prefix)


def test_upload_passes_on_what_glue_and_fetch_wrote_whatever_the_text_holds(pod: Pod, tmp_path: Path) -> None:
    # Each file is read with one jq printing shell assignments (common.sh JQ_READ): tabs, newlines, quotes and shell
    # syntax reach progress.json and index.json as they were; trailing newlines go, as the $(...) of a jq per field
    # dropped them.
    odd = f"a\tb\n'c' \"d\" $(touch {tmp_path}/pwned) `touch {tmp_path}/pwned` \\ e"
    heartbeat = {"incarnation": INCARNATION, "phase": odd, "steps": 5, "beats": "3\t4", "at": 1796000000.0}
    (pod.checkpoints / ".heartbeat").write_text(json.dumps(heartbeat))
    partial = f"s3://{CHECKPOINTS}/{PREFIX}partial.mstate"
    started = {"startTime": "2026-11-30T09:00:00Z", "recoveries": 2, "resumedFrom": partial, "notes": [odd, "last\n\n"]}
    (pod.checkpoints / ".started").write_text(json.dumps(started))
    upload = pod.start("upload.sh", SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS="600")
    wait_for(lambda: pod.get_json_if_there(ARTIFACTS, f"{PREFIX}progress.json") is not None, "progress.json")
    marker = {"status": "Failed\n", "exitCode": 3, "reason": odd + "\n\n", "steps": {"done": [1, 2]}, "incarnation": INCARNATION}
    (pod.checkpoints / ".done").write_text(json.dumps(marker))
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    progress = pod.get_json(ARTIFACTS, f"{PREFIX}progress.json")
    assert (progress["phase"], progress["steps"], progress["partialSequence"]) == (odd, 5, None)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert (index["status"], index["exitCode"], index["steps"]) == ("Failed", 3, {"done": [1, 2]})
    assert index["reason"] == f"{odd}; {odd}; last"
    assert (index["partialCheckpoint"], index["resumedFrom"], index["recoveries"]) == (partial, partial, 2)
    assert not (tmp_path / "pwned").exists()


def test_upload_fails_the_run_when_the_checkpoint_upload_fails(pod: Pod) -> None:
    _artifacts(pod)
    (pod.checkpoints / "out.mstate").write_text("final brain")
    pod.glue.end()
    deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{CHECKPOINTS}/*"}
    with pod.denied(deny):
        result = pod.run("upload.sh", SIMFLEET_SAVE_CHECKPOINT="true", SIMFLEET_INDEX_RETRY_SECONDS="0")
    assert result.returncode == 1, explain(result)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Failed" and index["checkpoint"] is None and index["exitCode"] == 0
    assert index["reason"].startswith(f"upload failed: checkpoint s3://{CHECKPOINTS}/{PREFIX}out.mstate: ")
    assert "AccessDenied" in index["reason"] or "403" in index["reason"]
    assert "(glue:" not in index["reason"]  # glue itself succeeded, so only the upload is to blame
    assert pod.tags(ARTIFACTS, f"{PREFIX}logs/sim/run 1.log") == {"simfleet-kind": "logs"}


# ---------------------------------------------------------------------------------------------
# upload.sh: the seed's Pushgateway group (glue's .metrics names it; tests/test_glue_metrics.py writes it for real)
# ---------------------------------------------------------------------------------------------

SEED_GROUP = f"job/simfleet-run/run/{RUN}/seed/7"


@pytest.fixture
def gateway(moto_server: Moto) -> Iterator[Pushgateway]:
    yield from serving(Pushgateway(moto_server))


def _pushed(pod: Pod, last_push_at: float | None) -> None:
    """What glue's pusher leaves in /checkpoints/.metrics."""
    record = {"url": "ignored", "group": SEED_GROUP, "lastPushAt": last_push_at, "pushes": 3, "failures": 0}
    (pod.checkpoints / ".metrics").write_text(json.dumps(record))


def test_upload_deletes_the_seed_group_after_the_index_at_once_when_its_last_push_is_a_linger_ago(
    pod: Pod, gateway: Pushgateway
) -> None:
    _pushed(pod, time.time() - 41)  # scraped by now: one interval and timeout (40 s) have passed since the last push
    pod.glue.end()
    result = pod.run("upload.sh", SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_METRICS_LINGER_SECONDS="40")
    assert result.returncode == 0, explain(result)
    [delete] = gateway.calls()
    assert (delete["method"], delete["path"]) == ("DELETE", f"/metrics/{SEED_GROUP}")
    assert ("PUT", f"/{ARTIFACTS}/{PREFIX}index.json") in delete["moto_before"]
    assert "keeping the Pushgateway group" not in result.stdout and result.stderr == ""
    assert f"artifact-uploader: deleted the Pushgateway group {SEED_GROUP} (HTTP/1.0 202 Accepted)" in result.stdout


def test_upload_keeps_the_group_only_what_is_left_of_the_linger_since_glues_last_push(pod: Pod, gateway: Pushgateway) -> None:
    _pushed(pod, time.time() - 50)
    pod.glue.end()
    upload = pod.start("upload.sh", SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_METRICS_LINGER_SECONDS="100")
    line = read_until(upload, "keeping the Pushgateway group")
    kept = int(re.search(rf"keeping the Pushgateway group {SEED_GROUP} for (\d+) s, for a last scrape", line)[1])  # type: ignore[index]
    # Measured from the push 50 s ago, not from index.json: at most 50 s, plus the second the script adds by rounding
    # the push time up (a linger is never cut short by rounding) when it gets here within that same second.
    assert 0 < kept <= 51
    assert gateway.calls() == [] and pod.get_json(ARTIFACTS, f"{PREFIX}index.json")["status"] == "Succeeded"
    upload.send_signal(signal.SIGTERM)  # the spot notice cuts the linger short; the group still goes
    _, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 0, stderr
    assert [(r["method"], r["path"]) for r in gateway.calls()] == [("DELETE", f"/metrics/{SEED_GROUP}")]


def test_upload_deletes_only_the_seeds_own_group_whatever_the_metrics_record_names(pod: Pod, gateway: Pushgateway) -> None:
    # /checkpoints/.metrics sits where user code can write: a record that names another run's group must not make the
    # uploader delete that group.
    other = "job/simfleet-run/run/someone-else/seed/1"
    (pod.checkpoints / ".metrics").write_text(json.dumps({"group": other, "lastPushAt": time.time() - 41}))
    pod.glue.end()
    result = pod.run("upload.sh", SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_METRICS_LINGER_SECONDS="40")
    assert result.returncode == 0, explain(result)
    assert [(r["method"], r["path"]) for r in gateway.calls()] == [("DELETE", f"/metrics/{SEED_GROUP}")]
    assert f"names the group '{other}'; deleting the seed's own, {SEED_GROUP}" in result.stderr


def _interrupted_with_a_fresh_push(pod: Pod, gateway: Pushgateway, **env: str) -> tuple[str, str]:
    """A seed whose glue just pushed is reclaimed: SIGTERM, then glue's Interrupted marker; the uploader's output."""
    _pushed(pod, time.time())
    pod.glue.start()
    upload = pod.start("upload.sh", SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_TERM_WAIT_SECONDS="100", **env)
    read_until(upload, "following glue's heartbeat")
    upload.send_signal(signal.SIGTERM)
    read_until(upload, "SIGTERM: giving glue")
    pod.glue.end("Interrupted", 143, "terminated (SIGTERM) after 42 steps")
    stdout, stderr = upload.communicate(timeout=GUARD)
    assert upload.returncode == 1, stderr
    return stdout, stderr


def test_upload_on_sigterm_deletes_the_group_after_the_index_without_a_linger(pod: Pod, gateway: Pushgateway) -> None:
    stdout, _ = _interrupted_with_a_fresh_push(pod, gateway)
    [delete] = gateway.calls()
    assert delete["method"] == "DELETE" and ("PUT", f"/{ARTIFACTS}/{PREFIX}index.json") in delete["moto_before"]
    assert "keeping the Pushgateway group" not in stdout
    assert pod.get_json(ARTIFACTS, f"{PREFIX}index.json")["status"] == "Interrupted"


def test_upload_on_sigterm_skips_a_delete_that_would_outlast_the_spot_notice(pod: Pod, gateway: Pushgateway) -> None:
    _, stderr = _interrupted_with_a_fresh_push(pod, gateway, SIMFLEET_TERM_METRICS_SECONDS="0")
    assert f"not deleting the Pushgateway group {SEED_GROUP}: no time left before the end of the spot notice" in stderr
    assert gateway.calls() == [] and pod.get_json(ARTIFACTS, f"{PREFIX}index.json")["status"] == "Interrupted"


@pytest.mark.parametrize("fault", ["refused", "error-500"])
def test_a_failed_delete_of_the_seed_group_is_a_warning_and_changes_nothing(pod: Pod, gateway: Pushgateway, fault: str) -> None:
    gateway.status = 500
    _pushed(pod, None)
    pod.glue.end()
    url = absent_url() if fault == "refused" else gateway.url
    result = pod.run("upload.sh", SIMFLEET_PUSHGATEWAY_URL=url)
    assert result.returncode == 0, explain(result)
    assert "could not delete the Pushgateway group at" in result.stderr
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert (index["status"], index["reason"]) == ("Succeeded", None)


def test_no_url_or_no_record_means_no_delete(pod: Pod, gateway: Pushgateway) -> None:
    pod.glue.end()
    without_record = pod.run("upload.sh", SIMFLEET_PUSHGATEWAY_URL=gateway.url)  # glue pushed nothing
    _pushed(pod, time.time())
    without_url = pod.run("upload.sh")  # metrics off
    for result in (without_record, without_url):
        assert result.returncode == 0, explain(result)
        assert "Pushgateway" not in result.stdout + result.stderr
    assert gateway.calls() == []


def test_a_reason_longer_than_an_argument_may_be_still_reaches_the_index(pod: Pod) -> None:
    # glue's reason carries the user's exception text (`step 3 raised ValueError: ...`), which has no bound; one past
    # Linux's limit on a single argument (MAX_ARG_STRLEN, 128 KiB) once made jq unstartable ("Argument list too long"),
    # and the seed ended without its index.json, so the run would be started again.
    reason = "step 3 raised ValueError: " + "observation out of range; " * 8000
    pod.glue.end("Failed", 4, reason, steps=3)
    started = {"startTime": "2026-11-30T09:00:00Z", "recoveries": 0, "resumedFrom": None, "notes": ["n" * 140_000]}
    (pod.checkpoints / ".started").write_text(json.dumps(started))
    result = pod.run("upload.sh")
    assert result.returncode == 1, explain(result)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert (index["status"], index["exitCode"], index["steps"]) == ("Failed", 4, 3)
    assert index["reason"] == reason.rstrip("\n") + "; " + "n" * 140_000


def test_a_marker_of_several_values_is_not_glues_and_the_index_is_still_written(pod: Pod) -> None:
    # glue writes its marker whole, once (a rename): a marker of two objects, each with the incarnation (the user's
    # code appending to glue's, say), is not glue's own. Its fields once read over both values ("0\n0" as the exit
    # code), which jq --argjson refused: no index.json at all.
    pod.glue.end()
    marker = pod.checkpoints / ".done"
    marker.write_text(marker.read_text() + "\n" + marker.read_text())
    started = {"startTime": "2026-11-30T09:00:00Z", "recoveries": 0, "resumedFrom": None, "notes": []}
    (pod.checkpoints / ".started").write_text(json.dumps(started) + json.dumps(started))  # so is fetch's .started
    result = pod.run("upload.sh", SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS="1")
    assert result.returncode == 1, explain(result)
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Failed"
    assert "a done marker glue did not write was found" in index["reason"], index["reason"]
    assert (index["exitCode"], index["startTime"], index["recoveries"]) == (None, None, 0)


@pytest.mark.parametrize("name", [".started", "partial.json", ".heartbeat"])
def test_a_fifo_user_code_leaves_in_checkpoints_never_holds_the_index_back(pod: Pod, name: str) -> None:
    # /checkpoints is the user's code's to write: a FIFO where the uploader reads a JSON file blocked its jq in the
    # open for ever (no writer comes), and the seed never got its index.json. Each is read only as a regular file.
    pod.glue.end("Failed", 4, "step 3 raised ValueError: x", steps=3)
    (pod.checkpoints / name).unlink(missing_ok=True)
    os.mkfifo(pod.checkpoints / name)
    upload = pod.start("upload.sh", SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS="1")
    try:
        _, stderr = upload.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pod.kill_session(upload)
        pytest.fail(f"upload.sh hung on the FIFO {name}")
    assert upload.returncode == 1, stderr
    index = pod.get_json(ARTIFACTS, f"{PREFIX}index.json")
    assert index["status"] == "Failed"
