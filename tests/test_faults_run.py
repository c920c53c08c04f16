"""Fault injection on a whole run pod: the real glue runtime and upload.sh, both from the rendered runtime ConfigMap,
fake unitree-sim and Monty processes on real pyzmq sockets, moto's S3 server and the real AWS CLI, all on 127.0.0.1.

Each test injects one fault from issue #15 (kill, stall, slow down, throttle, lie) and asserts what a researcher
would later read: index.json's status and reason, what is (and is not) in S3, the exit codes, and how long the pod
took to react. Reaction times are asserted against the product's own bounds (the heartbeat timeout, the 120 s spot
notice), far below the waits the old code made (a week-long done-wait, a Job deadline); the measured figures go to
build/faults/figures.json, which docs/failures.md quotes. Budgets are scaled down through the environment.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pod_harness import (
    AWS_CLIS,
    GUARD,
    GluePod,
    Moto,
    ScriptPod,
    aws_v2_version,
    moto_server_for,
    read_until,
    run_env,
    serving,
)

ROOT = Path(__file__).resolve().parent.parent
TROT = ROOT / "glue" / "trot.py"
ARTIFACTS = "simfleet-dev-artifacts"
CHECKPOINTS = "simfleet-dev-checkpoints"
RUN, HASH = "trot-faults", "fa0175fa0175"
PREFIX = f"runs/{RUN}/{HASH}/"
FIGURES = ROOT / "build" / "faults" / "figures.json"
# The pods run AWS CLI v2; these tests use it where it is installed (tests/test_pod_scripts.py runs both versions).
CLI = "v2" if aws_v2_version() else "v1"
HEARTBEAT_TIMEOUT = 2  # seconds; the pods use 30
SPOT_NOTICE = 120  # seconds EC2 gives a spot instance between the interruption notice and its reclaim


def record_figure(name: str, **figures: Any) -> None:
    """Measured figures for docs/failures.md, merged into build/faults/figures.json. Under a lock, and replaced whole:
    `make test` runs tests in parallel workers (pytest-xdist), which would otherwise lose or half-read each other's."""
    import fcntl

    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with open(FIGURES.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        known[name] = {**figures, "cli": CLI}
        partial = FIGURES.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
        partial.replace(FIGURES)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS, CHECKPOINTS))


class RunPod:
    """The run pod's glue side (GluePod: runtime, sidecars, /checkpoints, /artifacts) and its artifact-uploader."""

    def __init__(self, tmp_path: Path, moto: Moto, aws_cli: str = CLI, real_aws: bool = False) -> None:
        self.glue = GluePod(tmp_path)
        env = {
            **run_env(RUN, HASH, PREFIX, (ARTIFACTS, CHECKPOINTS), self.glue.checkpoints, self.glue.artifacts),
            "SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT),
            "SIMFLEET_START_WAIT_SECONDS": "30",
            "SIMFLEET_PROGRESS_SECONDS": "1",
            "SIMFLEET_PARTIAL_POLL_SECONDS": "1",
            "SIMFLEET_TERM_WAIT_SECONDS": "15",
            "SIMFLEET_SAVE_CHECKPOINT": "true",
            # What the uploader was given before it followed a heartbeat: wait this long for glue's marker. The
            # old code honoured it (and had no other way to tell that glue was gone); the new one ignores it.
            "SIMFLEET_DONE_WAIT_SECONDS": "600",
        }
        self.s3 = ScriptPod(tmp_path, moto, f"{RUN}-x7k2p", env, aws_cli, real_aws)
        self.s3.scripts = self.glue.runtime  # the scripts as the pod mounts them, beside the runtime
        self.extra: list[subprocess.Popen[str]] = []

    def uploader(self, **env: str) -> subprocess.Popen[str]:
        return self.s3.start("upload.sh", **env)

    def index(self, timeout: float = GUARD) -> tuple[dict[str, Any], float]:
        """index.json once it exists, and when it appeared (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            index = self.s3.get_json_if_there(ARTIFACTS, f"{PREFIX}index.json")
            if index is not None:
                return index, time.monotonic()
            time.sleep(0.1)
        raise AssertionError(f"no index.json within {timeout} s")

    def actions(self) -> int:
        return len(self.glue.events("sim", "action"))

    def wait_steps(self, steps: int) -> None:
        deadline = time.monotonic() + GUARD
        while not (self.glue.checkpoints / ".heartbeat").exists() or self.heartbeat().get("steps", 0) < steps:
            assert time.monotonic() < deadline, f"glue did not reach step {steps}"
            time.sleep(0.05)

    def heartbeat(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads((self.glue.checkpoints / ".heartbeat").read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def stop(self) -> None:
        for process in self.extra:
            process.kill()
            process.wait()
        self.glue.stop()
        self.s3.stop()


@pytest.fixture
def pod(tmp_path: Path, moto_server: Moto) -> Iterator[RunPod]:
    moto_server.reset()
    yield from serving(RunPod(tmp_path, moto_server))


@pytest.fixture
def pod_with_real_aws(tmp_path: Path, moto_server: Moto) -> Iterator[RunPod]:
    """A pod whose every `aws` is a new CLI process, as in the pod: for a test of how long the scripts take."""
    moto_server.reset()
    yield from serving(RunPod(tmp_path, moto_server, real_aws=True))


def finish(process: subprocess.Popen[str], timeout: float = GUARD) -> tuple[int, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, f"--- stdout\n{stdout}\n--- stderr\n{stderr}"


# A long episode: the simulator publishes every 5 ms, 0.01 s of simulation each, until glue stops at 300 s of it (150 s of wall time:
# far longer than any test here waits, however loaded the machine, so only the injected fault ends glue).
LONG = {"SIMFLEET_STOP_AFTER_SECONDS": "300"}
# Quick liveness bounds for the tests; the pods use 60 s (silences) and 30 s (step).
QUICK = {"SIMFLEET_OBSERVATION_TIMEOUT_SECONDS": "2", "SIMFLEET_BRAIN_SILENCE_SECONDS": "2", "SIMFLEET_STEP_TIMEOUT_SECONDS": "2"}


# ---------------------------------------------------------------------------------------------
# False success
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "code", "name"), [("monty", 8, "brain"), ("sim", 7, "simulator")], ids=["brain", "simulator"])
def test_a_sidecar_killed_and_restarted_mid_run_fails_the_run_naming_it(pod: RunPod, role: str, code: int, name: str) -> None:
    # The kubelet restarts a native sidecar whatever the pod's restartPolicy. The brain comes back from in.mstate, with
    # everything learned in this run lost; the simulator starts a new episode at t=0. Before, glue carried on (with
    # that brain, or stitching the new episode onto the old one) and the run ended Succeeded.
    (pod.glue.checkpoints / "in.mstate").write_text("the brain the run started from")
    pod.glue.sim().monty()
    upload = pod.uploader()
    glue = pod.glue.start_glue(TROT, **LONG, **QUICK)
    pod.wait_steps(30)
    killed_at = pod.glue.kill(role)
    pod.glue.restart(role)
    exit_code, output = finish(glue)
    index, written_at = pod.index()
    assert exit_code == code, output
    assert index["status"] == "Failed" and index["exitCode"] == code, index
    assert index["reason"].startswith(f"{name} restarted"), index["reason"]
    assert index["checkpoint"] is None and f"{PREFIX}out.mstate" not in pod.s3.keys(CHECKPOINTS)
    [restarted] = pod.glue.events(role, "start")[1:]
    if role == "monty":
        assert restarted["loaded"] == "the brain the run started from"  # what a Succeeded run would have saved
    assert finish(upload)[0] == 1
    react = written_at - killed_at
    assert react < 30, react  # glue saw the connection drop at once; the uploader shipped what it had
    record_figure(f"{name} restarted", reactSeconds=round(react, 1), reason=index["reason"])


def test_a_brain_that_dies_for_good_fails_the_run_instead_of_stepping_on_without_it(pod: RunPod) -> None:
    # checkpoint.save false: before, 71 of 359 steps ran with no brain answer and the run still ended Succeeded.
    pod.glue.sim().monty()
    upload = pod.uploader(SIMFLEET_SAVE_CHECKPOINT="false")
    glue = pod.glue.start_glue(TROT, SIMFLEET_SAVE_CHECKPOINT="false", **LONG, **QUICK)
    pod.wait_steps(30)
    killed_at = pod.glue.kill("monty")
    code, output = finish(glue)
    index, written_at = pod.index()
    assert code == 8, output
    assert (index["status"], index["exitCode"]) == ("Failed", 8)
    assert index["reason"].startswith("brain restarted or died at step ") and "connection to glue dropped" in index["reason"]
    assert pod.glue.summary()["brain_skipped"] <= 2  # it stopped at once, not after dozens of steps without a brain
    assert finish(upload)[0] == 1
    record_figure("brain died", reactSeconds=round(written_at - killed_at, 1))


def test_a_brain_that_goes_silent_fails_the_run_after_the_brain_silence(pod: RunPod) -> None:
    # Alive and connected, but no answer any more (stuck in its own loop): the silence bound ends it, naming it. The
    # bound is 1 s here, the one waited for: a brain silent earlier (late answers on a loaded machine) ends the same way.
    pod.glue.sim().monty("--silent-after", "30")
    upload = pod.uploader(SIMFLEET_SAVE_CHECKPOINT="false")
    quick = {**QUICK, "SIMFLEET_BRAIN_SILENCE_SECONDS": "1"}
    glue = pod.glue.start_glue(TROT, SIMFLEET_SAVE_CHECKPOINT="false", **LONG, **quick)
    code, output = finish(glue)
    index, _ = pod.index()
    assert code == 8, output
    assert index["status"] == "Failed" and re.match(
        r"brain silent for 1 s \(no answer in time since step \d+; now at step \d+\)$", index["reason"]
    )
    assert finish(upload)[0] == 1


WRITER = """
import sys, time
with open(sys.argv[1], "ab", buffering=0) as video:
    while True:
        video.write(b"\\x00" * 65536)
        time.sleep(0.02)
"""


def test_an_artifact_still_being_written_is_never_reported_as_succeeded(pod: RunPod) -> None:
    # A video encoder that keeps writing after glue's end: before, 115 MB of a 330 MB file went up and the run said
    # Succeeded. Now the file is sent again while it changes, and the run says Incomplete, naming it.
    videos = pod.glue.artifacts / "videos"
    videos.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(videos / "episode.mp4")], text=True)
    pod.extra.append(writer)
    pod.glue.sim("--done-after", "40").monty()
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(TROT))
    assert code == 0, output  # glue itself ended well
    index, _ = pod.index()
    assert index["status"] == "Incomplete", index
    assert index["reason"] == "artifacts were still being written while they were shipped: videos/episode.mp4"
    assert index["checkpoint"] == f"s3://{CHECKPOINTS}/{PREFIX}out.mstate"  # the brain itself is whole
    assert finish(upload)[0] == 1


def test_a_done_marker_written_by_user_code_is_not_taken_for_glue_s(pod: RunPod) -> None:
    # step() writes /checkpoints/.done itself; before, the uploader shipped a Succeeded run while glue still ran.
    forger = pod.glue.glue_file(
        "import json\n"
        "calls = 0\n"
        "def step(observation):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 5:\n"
        f"        open({str(pod.glue.marker_path)!r}, 'w').write(json.dumps({{'status': 'Succeeded', 'exitCode': 0}}))\n"
        "    return {'cmd_type': 'stop'}\n"
    )
    pod.glue.sim("--done-after", "60").monty()
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(forger))
    index, _ = pod.index()
    assert code == 10, output
    assert index["status"] == "Failed" and index["exitCode"] == 10
    assert "marker forged or left over" in index["reason"] and "written by someone other than glue" in index["reason"]
    assert index["checkpoint"] is None and index["steps"] > 5  # it waited for glue's own end
    assert finish(upload)[0] == 1


def test_a_done_marker_left_over_before_glue_started_fails_the_run(pod: RunPod) -> None:
    pod.glue.marker_path.write_text(json.dumps({"status": "Succeeded", "exitCode": 0, "reason": None, "steps": 9}))
    pod.glue.sim("--done-after", "20").monty()
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(TROT))
    index, _ = pod.index()
    assert code == 10, output
    assert (index["status"], index["steps"]) == ("Failed", 0)
    assert index["reason"].startswith(f"marker forged or left over: {pod.glue.marker_path} existed before glue started")
    assert finish(upload)[0] == 1


# ---------------------------------------------------------------------------------------------
# Hangs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stalls", "dies"])
def test_a_simulator_that_stalls_or_dies_after_its_first_observation_ends_the_attempt(pod: RunPod, fault: str) -> None:
    # Before, glue waited for the next observation for ever, holding the GPU until the Job's deadline. The stall waits
    # out an observation timeout of 1 s (a simulator silent earlier on a loaded machine ends the same way); the death
    # keeps QUICK's 2 s, so that no silence is taken for it before the kill.
    pod.glue.sim(*(["--silent-after", "30"] if fault == "stalls" else [])).monty()
    upload = pod.uploader()
    quick = {**QUICK, "SIMFLEET_OBSERVATION_TIMEOUT_SECONDS": "1"} if fault == "stalls" else QUICK
    glue = pod.glue.start_glue(TROT, **LONG, **quick)
    pod.wait_steps(30 if fault == "dies" else 1)
    fault_at = pod.glue.kill("sim") if fault == "dies" else time.monotonic()
    code, output = finish(glue)
    index, written_at = pod.index()
    assert code == 7, output
    expected = "simulator silent for 1 s after step " if fault == "stalls" else "simulator restarted or died at step "
    assert index["status"] == "Failed" and index["reason"].startswith(expected), index
    assert finish(upload)[0] == 1
    record_figure(f"simulator {fault}", reactSeconds=round(written_at - fault_at, 1))


def test_a_step_that_never_returns_ends_the_attempt_at_the_step_timeout(pod: RunPod) -> None:
    stuck = pod.glue.glue_file(
        "import time\ncalls = 0\ndef step(observation):\n    global calls\n    calls += 1\n"
        "    while calls >= 5:\n        time.sleep(0.05)\n    return {'cmd_type': 'stop'}\n"
    )
    pod.glue.sim().monty()
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(stuck, **LONG, **QUICK))
    index, _ = pod.index()
    assert code == 9, output
    assert (index["status"], index["reason"]) == ("Failed", "step 5 did not return within 2 s")
    assert pod.glue.marker()["finishAcks"] == {"sim": True, "monty": True}  # the sidecars were still told to finish
    assert finish(upload)[0] == 1


@pytest.mark.parametrize("how", ["SIGKILL", "os._exit"])
def test_glue_killed_without_a_result_is_reported_within_seconds(pod: RunPod, how: str) -> None:
    # The OOM killer (SIGKILL), or user code that calls os._exit: no marker will come. Before, the uploader waited
    # its whole done-wait (12,000 s for the dev sweep), then called it Interrupted.
    glue_file = TROT
    if how == "os._exit":
        glue_file = pod.glue.glue_file(
            "import os\ncalls = 0\ndef step(observation):\n    global calls\n    calls += 1\n"
            "    if calls == 40:\n        os._exit(0)\n    return {'cmd_type': 'stop'}\n"
        )
    pod.glue.sim().monty()
    upload = pod.uploader()
    glue = pod.glue.start_glue(glue_file, **LONG)
    if how == "SIGKILL":
        pod.wait_steps(30)
        glue.kill()
    glue.wait()
    gone_at = time.monotonic()
    index, written_at = pod.index()
    assert index["status"] == "Failed" and index["exitCode"] is None
    assert index["reason"].startswith("glue stopped without a result (killed, out of memory?): its last heartbeat was ")
    assert not pod.glue.marker_path.exists()
    assert finish(upload)[0] == 1
    react = written_at - gone_at
    assert react < HEARTBEAT_TIMEOUT + 15, react  # the heartbeat timeout, a poll, and the uploads: not a done-wait
    record_figure(f"glue gone ({how})", reactSeconds=round(react, 1), heartbeatTimeoutSeconds=HEARTBEAT_TIMEOUT)


def test_a_slow_import_of_the_glue_file_is_not_taken_for_a_dead_glue(pod: RunPod) -> None:
    # The heartbeat goes on while user code runs within its allowance (the step guard beats for it): an import that
    # takes twice the uploader's heartbeat timeout is not reported as a dead glue.
    slow = pod.glue.glue_file(
        f"import time\ntime.sleep({2 * HEARTBEAT_TIMEOUT})\n" + TROT.read_text().split("from __future__ import annotations")[1]
    )
    pod.glue.sim("--done-after", "20").monty()
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(slow))
    index, _ = pod.index()
    assert code == 0 and index["status"] == "Succeeded", (index, output)
    assert finish(upload)[0] == 0


# ---------------------------------------------------------------------------------------------
# Data loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_simulator_slower_than_real_time_still_ships_its_finished_checkpoint(pod: RunPod) -> None:
    # 0.5x real time: 1.5 s of simulation take 3 s. The uploader used to wait for what the budget assumed (simulation
    # seconds = wall seconds: 1.5 s plus a margin, here SIMFLEET_DONE_WAIT_SECONDS=2), then gave up: Interrupted, and
    # the finished out.mstate never shipped. Following glue's heartbeat, it waits as long as glue progresses (3 s is
    # also longer than the heartbeat timeout, 2 s: the uploader saw glue's heartbeat go on, not only its first one).
    pod.glue.sim("--dt", "0.01", "--interval", "0.02").monty()
    upload = pod.uploader(SIMFLEET_DONE_WAIT_SECONDS="2")
    started = time.monotonic()
    code, output = finish(pod.glue.start_glue(TROT, SIMFLEET_STOP_AFTER_SECONDS="1.5"))
    wall = time.monotonic() - started
    assert code == 0, output
    index, _ = pod.index()
    assert index["status"] == "Succeeded", index
    assert wall > 2.5  # it really ran at half speed, past the old wait
    assert pod.s3.get(CHECKPOINTS, f"{PREFIX}out.mstate") == (pod.glue.checkpoints / "out.mstate").read_text()
    assert finish(upload)[0] == 0


@pytest.mark.slow
def test_the_sigterm_path_ships_a_thousand_artifacts_and_a_large_checkpoint_within_the_spot_notice(
    pod_with_real_aws: RunPod,
) -> None:
    pod = pod_with_real_aws  # every aws call pays its own start-up, as in the pod: this test is about the time it takes
    # EC2 gives a spot instance 120 s. Before: the uploader waited up to 150 s for glue, its aws call in flight held
    # the trap back, and one aws process per file (0.42 s each) could not ship ~700 artifacts in time: index.json,
    # written last, was lost. Now: SIGTERM to both main containers at once, as the kubelet sends it.
    logs = pod.glue.artifacts / "logs" / "episodes"
    logs.mkdir(parents=True)
    for n in range(1000):
        (logs / f"episode-{n:04d}.log").write_text(f"episode {n}\n" * 20)
    brain_bytes = 64 * 2**20
    pod.glue.sim().monty("--save-bytes", str(brain_bytes))
    # Partial checkpoints on, but none due before the SIGTERM: the one glue saves then is the large one to ship.
    upload = pod.uploader(SIMFLEET_CHECKPOINT_EVERY_SECONDS="60")
    glue = pod.glue.start_glue(TROT, SIMFLEET_CHECKPOINT_EVERY_SECONDS="60", **LONG)
    pod.wait_steps(100)
    terminated_at = time.monotonic()
    glue.send_signal(signal.SIGTERM)
    upload.send_signal(signal.SIGTERM)
    code, output = finish(glue)
    index, written_at = pod.index(timeout=SPOT_NOTICE + 30)
    path_seconds = written_at - terminated_at
    # The kubelet's SIGKILL at the end of the grace period: the tags that follow index.json were still going on (each
    # one an `aws` of its own); what this test checks was all in S3 with index.json.
    pod.s3.kill_session(upload)
    assert code == 143, output
    assert index["status"] == "Interrupted" and index["exitCode"] == 143, index
    assert index["artifacts"] >= 1000 and index["partialSequence"] is not None
    shipped = pod.s3.keys(ARTIFACTS, f"{PREFIX}logs/episodes/")
    assert len(shipped) == 1000
    assert path_seconds <= SPOT_NOTICE, path_seconds
    partial_bytes = pod.s3.s3.head_object(Bucket=CHECKPOINTS, Key=f"{PREFIX}partial.mstate")["ContentLength"]
    assert partial_bytes > brain_bytes
    sizes = sum(p.stat().st_size for p in pod.glue.artifacts.rglob("*") if p.is_file())
    record_figure(
        "SIGTERM path",
        seconds=round(path_seconds, 1),
        artifacts=index["artifacts"],
        artifactBytes=sizes,
        checkpointBytes=partial_bytes,
        partialSequence=index["partialSequence"],
    )


def test_the_sigterm_trap_fires_while_an_upload_is_in_flight_and_the_last_partial_is_the_fallback(pod: RunPod) -> None:
    # The uploader ships partial checkpoint 1; then S3 answers the staging upload of checkpoint 2 slowly (10 s), and
    # SIGTERM comes meanwhile. The trap runs at once (no aws call holds it back), and when the SIGTERM deadline comes
    # before that upload ends, index.json names checkpoint 1, whole in S3, and says why the newer one is not there.
    # The deadline (SIMFLEET_TERM_SHIP_SECONDS, whole seconds from the second of the SIGTERM) is 1 to 2 s after the
    # signal: after the trap, long before the 10 s upload ends, and all the test waits for (nothing else is shipped).
    checkpoints = pod.glue.checkpoints
    (checkpoints / "partial.mstate").write_text("partial brain 1")
    (checkpoints / "partial.json").write_text(json.dumps({"sequence": 1, "elapsedSeconds": 60, "steps": 100}))
    pod.glue.sim().monty()
    glue = pod.glue.start_glue(TROT, **LONG)
    upload = pod.uploader(SIMFLEET_CHECKPOINT_EVERY_SECONDS="1", SIMFLEET_TERM_WAIT_SECONDS="0", SIMFLEET_TERM_SHIP_SECONDS="2")
    read_until(upload, "shipped partial checkpoint 1")
    slow = pod.s3.moto.slow("PUT", r"partial\.mstate\.uploading$", delay=10)
    (checkpoints / "partial.mstate.new").write_text("partial brain 2")
    os.replace(checkpoints / "partial.mstate.new", checkpoints / "partial.mstate")
    (checkpoints / "partial.json").write_text(json.dumps({"sequence": 2, "elapsedSeconds": 120, "steps": 200}))
    deadline = time.monotonic() + GUARD
    while slow.hits == 0:  # counted when the request arrives: the staging upload is now waiting on S3
        assert time.monotonic() < deadline
        time.sleep(0.05)
    glue.kill()  # glue is gone: only the uploader's own reaction counts here
    terminated_at = time.monotonic()
    upload.send_signal(signal.SIGTERM)
    read_until(upload, "glue ended:")
    trap_seconds = time.monotonic() - terminated_at
    index, _ = pod.index()
    code, output = finish(upload)
    assert trap_seconds < 5, trap_seconds  # not after the 10 s call in flight
    assert index["status"] == "Interrupted" and index["partialSequence"] == 1, (index, output)
    assert "partial checkpoint 2 did not go up before the SIGTERM deadline" in index["reason"]
    assert pod.s3.get(CHECKPOINTS, f"{PREFIX}partial.mstate") == "partial brain 1" and code == 1
    assert index["artifacts"] == 0, index  # nothing else was due before the deadline (artifacts would miss it: Failed)
    record_figure("SIGTERM trap with an upload in flight", trapSeconds=round(trap_seconds, 1))


def test_a_sigterm_while_a_finished_run_ships_its_artifacts_still_ships_the_finished_checkpoint(pod: RunPod) -> None:
    # glue Succeeded and saved out.mstate; S3 answers the video slowly, and SIGTERM comes while the uploader ships.
    # The finished checkpoint goes up before the artifacts, so slow artifacts cannot use up the time it needs (before,
    # it came after them, was never tried, and the run lost its brain with a reason that ended in nothing).
    videos = pod.glue.artifacts / "videos"
    videos.mkdir()
    (videos / "episode.mp4").write_bytes(b"v" * 1000)
    pod.s3.moto.slow("PUT", r"/videos/", delay=8)
    pod.glue.sim("--done-after", "20").monty()
    upload = pod.uploader(SIMFLEET_TERM_SHIP_SECONDS="3", SIMFLEET_TERM_INDEX_SECONDS="8")
    code, output = finish(pod.glue.start_glue(TROT))
    assert code == 0, output
    read_until(upload, "glue ended: Succeeded")
    upload.send_signal(signal.SIGTERM)
    index, _ = pod.index()
    code, output = finish(upload)
    assert index["checkpoint"] == f"s3://{CHECKPOINTS}/{PREFIX}out.mstate", (index, output)
    assert pod.s3.get(CHECKPOINTS, f"{PREFIX}out.mstate").startswith("brain after")
    # The video did not go up in time: the run is not Succeeded, and the reason says what is missing.
    assert index["status"] == "Failed" and code == 1
    assert "videos/episode.mp4: not uploaded: stopped at the SIGTERM deadline" in index["reason"]


@pytest.mark.parametrize("aws_cli", AWS_CLIS)
@pytest.mark.slow
def test_throttles_on_index_json_and_the_partial_promotion_are_retried_past_the_cli(
    tmp_path: Path, moto_server: Moto, aws_cli: str
) -> None:
    # Four 503 SlowDown answers in a row, twice what the CLI tries here: each write outlasts the CLI's own retries twice,
    # and only the script's retry (retry_until) gets it through. Before, three throttles (v2's default attempts) on the
    # last write discarded a completed run (the pods run v2). The CLI gets 2 attempts (AWS_MAX_ATTEMPTS, which the
    # scripts leave alone when it is set), not the 5 the scripts set nor v2's default 3: the path is the same (the CLI
    # retries, gives up, the script retries it), and the CLI's throttling backoff, rand(0, 1) * 2^i s before attempt
    # i + 2 and not configurable, averages 0.5 s per CLI call instead of 1.5 s (7.5 s with 5 attempts).
    attempts = 2
    moto_server.reset()
    pod = RunPod(tmp_path, moto_server, aws_cli)
    try:
        throttles = 2 * attempts
        index_fault = moto_server.fail("PUT", rf"^/{ARTIFACTS}/{PREFIX}index\.json$", times=throttles)
        # The promotion (a server-side copy) too, under the CLI the pods run (the retry layer is the same script).
        promote_fault = moto_server.fail(
            "PUT", rf"^/{CHECKPOINTS}/{PREFIX}partial\.mstate$", times=throttles if aws_cli == "v2" else 0
        )
        (pod.glue.checkpoints / "partial.mstate").write_text("partial brain 4")
        (pod.glue.checkpoints / "partial.json").write_text(json.dumps({"sequence": 4, "elapsedSeconds": 9, "steps": 90}))
        pod.glue.sim().monty()
        upload = pod.uploader(AWS_MAX_ATTEMPTS=str(attempts))
        failing = pod.glue.glue_file("def step(observation):\n    raise RuntimeError('boom')\n")  # not Succeeded
        finish(pod.glue.start_glue(failing, **LONG))
        code, output = finish(upload)
        index, _ = pod.index(timeout=5)
        assert index["status"] == "Failed" and index["reason"] == "step 1 raised RuntimeError: boom", output
        assert (index_fault.hits, promote_fault.hits) == (throttles, throttles if aws_cli == "v2" else 0), output
        # The index write: the CLI gave up after its own attempts twice, and the script tried again each time (retry_until's
        # 1 s, then 2 s). (The promotion's retry_until writes its warnings to its error file, not to the output.)
        assert output.count("trying again in 1 s") == output.count("trying again in 2 s") == 1, output
        assert output.count(f"(reached max retries: {attempts - 1})") == 2, output
        assert pod.s3.get(CHECKPOINTS, f"{PREFIX}partial.mstate") == "partial brain 4"
        assert index["partialSequence"] == 4 and code == 1
    finally:
        pod.stop()


def test_a_checkpoint_that_is_a_symlink_never_leaves_the_pod(pod: RunPod, tmp_path: Path) -> None:
    # A brain image that "saves" a link to another file: glue refuses the save (exit 3), and the uploader would refuse
    # the link too (tests/test_pod_scripts.py has the uploader on its own). Before, the uploader followed it and
    # shipped whatever it pointed at in its own filesystem, its IRSA token included, and said Succeeded.
    token = tmp_path / "token"
    token.write_text("eyJhbGciOi-the-uploaders-own-token")
    pod.glue.sim("--done-after", "20").monty("--save-as-symlink", str(token))
    upload = pod.uploader()
    code, output = finish(pod.glue.start_glue(TROT))
    index, _ = pod.index()
    assert code == 3, output
    assert index["status"] == "Failed" and "is a symbolic link, not a file Monty wrote" in index["reason"]
    assert pod.s3.keys(CHECKPOINTS) == [] and index["checkpoint"] is None
    assert all("eyJhbGciOi" not in pod.s3.get(ARTIFACTS, key) for key in pod.s3.keys(ARTIFACTS))
    assert finish(upload)[0] == 1


def test_progress_is_published_while_the_run_goes(pod: RunPod) -> None:
    pod.glue.sim().monty()
    upload = pod.uploader()
    glue = pod.glue.start_glue(TROT, **LONG)
    deadline = time.monotonic() + GUARD
    progress: dict[str, Any] = {}
    while progress.get("steps", 0) < 50:
        assert time.monotonic() < deadline, progress
        progress = pod.s3.get_json_if_there(ARTIFACTS, f"{PREFIX}progress.json") or progress
        time.sleep(0.2)
    assert progress["phase"] == "running" and progress["stopAfterSeconds"] == 300 and progress["seed"] == 7
    assert 0 < progress["simulationSeconds"] < 30 and progress["run"] == RUN
    glue.send_signal(signal.SIGTERM)
    upload.send_signal(signal.SIGTERM)
    finish(glue)
    finish(upload)
    assert os.path.exists(pod.glue.artifacts / "metrics" / "steps.csv")
