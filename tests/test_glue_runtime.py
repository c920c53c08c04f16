"""The glue runtime as the pod runs it: `python -P -m glue_runtime` from the run's materialized runtime ConfigMap,
a real subprocess between fake unitree-sim and Monty processes.

Everything speaks real pyzmq on 127.0.0.1 with ports picked free per test (tests/fake_sidecars.py, driven by
tests/pod_harness.py GluePod). Timeouts are made small through the runtime's environment. The second half checks the
runtime's built-in action validator against the jsonschema library. Faults across the whole pod (glue and the
uploader together, what ends up in S3) are in tests/test_faults_*.py.
"""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pod_harness import GUARD, GluePod

from workloads import contract
from workloads.glue_runtime import validator as VALIDATOR

ROOT = Path(__file__).resolve().parent.parent
TROT = ROOT / "glue" / "trot.py"


class Pod(GluePod):
    """The run pod's glue side (tests/pod_harness.py), with glue/trot.py as the default glue file."""

    def start_glue(self, glue: Path = TROT, **env: str) -> subprocess.Popen[str]:
        return super().start_glue(glue, **env)

    def run_glue(self, glue: Path = TROT, **env: str) -> subprocess.CompletedProcess[str]:
        return super().run_glue(glue, **env)


def _wait_for(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    pod = Pod(tmp_path)
    try:
        yield pod
    finally:
        pod.stop()


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# A glue whose step is fine for a while, then does what `body` says.
FAULTY = """
import time
calls = 0
def step(observation):
    global calls
    calls += 1
    if calls >= {at}:
        {body}
    return {{"cmd_type": "stop"}}
"""


# ---------------------------------------------------------------------------------------------
# Normal ends
# ---------------------------------------------------------------------------------------------


def test_a_done_observation_ends_the_run_with_acks_checkpoint_summary_and_marker(pod: Pod) -> None:
    pod.sim("--done-after", "25").monty()
    result = pod.run_glue()
    assert result.returncode == 0, _explain(result)
    marker = pod.marker()
    assert marker["status"] == "Succeeded" and marker["exitCode"] == 0 and marker["reason"] is None
    assert marker["finishAcks"] == {"sim": True, "monty": True}
    assert marker["checkpointSaved"] is True and marker["partialCheckpoint"] is False
    assert 1 <= marker["steps"] <= 25  # CONFLATE may skip observations the runtime had no time for
    assert (pod.checkpoints / "out.mstate").read_text().startswith("brain after")
    assert not (pod.checkpoints / "out.mstate.tmp").exists()
    summary = pod.summary()
    assert summary["steps"] == marker["steps"] and summary["finish_acks"] == {"sim": True, "monty": True}
    assert summary["checkpoint_saved"] is True and summary["max_nociceptor"] == pytest.approx(0.1)
    assert summary["brain_answers"] >= 1
    # The simulator received trot's commands, shaped by Monty's answer (vx 0.4 from the fake brain).
    first = pod.events("sim", "action")[0]["action"]
    assert first["cmd_type"] == "base" and first["base_cmd"]["gait"] == "trot"
    assert "episode done" in result.stdout and "first observation" in result.stdout


def test_the_stop_time_ends_the_run_and_energy_follows_simulation_time(pod: Pod) -> None:
    pod.sim("--dt", "0.01", "--energy-rate", "50").monty()
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="0.3", SIMFLEET_SAVE_CHECKPOINT="false")
    assert result.returncode == 0, _explain(result)
    summary = pod.summary()
    assert 0.3 <= summary["sim_seconds"] < 1.0
    assert summary["energy_joules"] == pytest.approx(50 * summary["sim_seconds"])
    assert pod.marker()["checkpointSaved"] is False and not (pod.checkpoints / "out.mstate").exists()
    assert "simulation time reached" in result.stdout


def test_finish_reaches_both_sidecars_before_the_save_and_the_marker_comes_last(pod: Pod) -> None:
    pod.sim("--done-after", "10").monty()
    result = pod.run_glue()
    assert result.returncode == 0, _explain(result)
    finishes = pod.events(event="finish")
    [save] = pod.events("monty", "save")
    assert {e["who"] for e in finishes} == {"sim", "monty"}
    assert all(e["at"] < save["at"] for e in finishes), pod.events()
    assert save["path"] == str(pod.checkpoints / "out.mstate.tmp")
    # When each request arrived, neither the summary nor the marker existed yet.
    assert all(e["marker"] is None for e in [*finishes, save])
    assert save["summary"] is None
    assert pod.marker()["status"] == "Succeeded"


def test_missing_or_late_finish_acks_make_the_run_incomplete_and_a_late_answer_is_not_taken_for_the_save(pod: Pod) -> None:
    # The sim never answers; Monty answers finish after glue stopped waiting. The save that follows must get the
    # save's answer (REQ_CORRELATE drops the late finish reply), not the stale {"finished": true}. Without both
    # acknowledgements the sidecars' files may be cut short: Incomplete (exit 11), never Succeeded.
    pod.sim("--done-after", "10", "--no-finish-ack").monty("--finish-delay", "1.5")
    result = pod.run_glue(SIMFLEET_FINISH_TIMEOUT_SECONDS="0.5")
    assert result.returncode == 11, _explain(result)
    marker = pod.marker()
    assert marker["status"] == "Incomplete" and marker["finishAcks"] == {"sim": False, "monty": False}
    assert marker["reason"].startswith("the simulator and the brain did not acknowledge finish within 0.5 s")
    assert marker["checkpointSaved"] is True and (pod.checkpoints / "out.mstate").is_file()
    assert "no finish acknowledgement from sim" in result.stdout


# ---------------------------------------------------------------------------------------------
# Saves
# ---------------------------------------------------------------------------------------------


def test_a_save_slower_than_the_brain_timeout_but_within_the_save_timeout_succeeds(pod: Pod) -> None:
    pod.sim("--done-after", "10").monty("--save-delay", "0.6")
    result = pod.run_glue(SIMFLEET_BRAIN_TIMEOUT_MS="50", SIMFLEET_SAVE_TIMEOUT_SECONDS="10")
    assert result.returncode == 0, _explain(result)
    assert pod.marker()["checkpointSaved"] is True and (pod.checkpoints / "out.mstate").is_file()


def test_a_save_beyond_the_save_timeout_fails_with_exit_3(pod: Pod) -> None:
    pod.sim("--done-after", "10").monty("--save-delay", "5")
    result = pod.run_glue(SIMFLEET_SAVE_TIMEOUT_SECONDS="0.5")
    assert result.returncode == 3, _explain(result)
    marker = pod.marker()
    assert marker["status"] == "Failed" and marker["checkpointSaved"] is False
    assert marker["reason"] == "the final checkpoint save failed: monty did not confirm the save within 0.5 s"
    assert not (pod.checkpoints / "out.mstate").exists()


def test_a_refused_save_fails_with_exit_3(pod: Pod) -> None:
    pod.sim("--done-after", "5").monty("--save-fails")
    result = pod.run_glue()
    assert result.returncode == 3, _explain(result)
    assert "monty answered the save with" in pod.marker()["reason"] and "disk full" in pod.marker()["reason"]


def test_periodic_checkpoints_replace_the_partial_atomically_with_a_rising_sequence(pod: Pod) -> None:
    pod.sim("--dt", "0.01", "--interval", "0.01").monty()
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="1.5", SIMFLEET_CHECKPOINT_EVERY_SECONDS="0.2")
    assert result.returncode == 0, _explain(result)
    saves = [e for e in pod.events("monty", "save") if e["path"].endswith("partial.mstate.tmp")]
    assert len(saves) >= 2, result.stdout
    # What partial.json held when each next save was asked for: absent, then sequence 1, 2, ... each a whole file.
    seen = [e["partial"] for e in saves]
    assert seen[0] is None
    assert [p["sequence"] for p in seen[1:]] == list(range(1, len(saves)))
    partial = json.loads((pod.checkpoints / "partial.json").read_text())
    assert partial["sequence"] == len(saves) == pod.summary()["partial_checkpoints"]
    assert set(partial) == {"elapsedSeconds", "steps", "savedAt", "sequence"}
    assert [p["elapsedSeconds"] for p in seen[1:]] == sorted(p["elapsedSeconds"] for p in seen[1:])
    assert (pod.checkpoints / "partial.mstate").read_text().endswith(f"(save {len(saves)})\n")
    assert sorted(p.name for p in pod.checkpoints.iterdir()) == [
        ".done",
        ".heartbeat",
        "out.mstate",
        "partial.json",
        "partial.mstate",
    ]
    assert pod.marker()["partialCheckpoint"] is True


def test_a_failed_periodic_save_is_logged_and_the_run_goes_on(pod: Pod) -> None:
    pod.sim("--dt", "0.01", "--interval", "0.01").monty("--first-save-delay", "1.0")
    result = pod.run_glue(
        SIMFLEET_STOP_AFTER_SECONDS="1.5",
        SIMFLEET_CHECKPOINT_EVERY_SECONDS="0.2",
        SIMFLEET_SAVE_TIMEOUT_SECONDS="0.3",
        SIMFLEET_SAVE_CHECKPOINT="false",
    )
    assert result.returncode == 0, _explain(result)
    assert "partial checkpoint failed, the run goes on" in result.stdout
    assert pod.summary()["partial_failures"] >= 1


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------


def test_resume_runs_only_the_rest_of_the_stop_time(pod: Pod) -> None:
    (pod.checkpoints / "resume.json").write_text(json.dumps({"elapsedSeconds": 1.0, "steps": 500, "sequence": 4}))
    pod.sim("--dt", "0.01").monty()
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="1.3", SIMFLEET_CHECKPOINT_EVERY_SECONDS="0.05")
    assert result.returncode == 0, _explain(result)
    summary = pod.summary()
    assert summary["resumed_seconds"] == 1.0
    assert 0.3 <= summary["sim_seconds"] < 1.0  # without the resume record it would run 1.3 s
    assert 1.3 <= summary["elapsed_seconds"] < 2.0
    partial = json.loads((pod.checkpoints / "partial.json").read_text())
    assert partial["sequence"] >= 5 and partial["elapsedSeconds"] > 1.0 and partial["steps"] > 500
    assert "resuming at 1 s" in result.stdout


def test_resume_with_nothing_left_only_finishes_and_saves(pod: Pod) -> None:
    (pod.checkpoints / "resume.json").write_text(json.dumps({"elapsedSeconds": 2.0, "steps": 9, "sequence": 3}))
    pod.sim().monty()
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="2")
    assert result.returncode == 0, _explain(result)
    marker = pod.marker()
    assert marker["steps"] == 0 and marker["checkpointSaved"] is True and marker["finishAcks"]["monty"] is True


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def test_a_simulator_that_never_publishes_fails_with_exit_4(pod: Pod) -> None:
    pod.sim("--silent").monty()
    result = pod.run_glue(SIMFLEET_STARTUP_TIMEOUT_SECONDS="1")
    assert result.returncode == 4, _explain(result)
    marker = pod.marker()
    assert marker["reason"] == "the simulator published no observation within 1 s"
    assert marker["status"] == "Failed" and marker["steps"] == 0 and marker["checkpointSaved"] is False
    assert pod.events("monty", "save") == []


def test_the_first_invalid_action_ends_the_run_with_exit_5_naming_step_and_field(pod: Pod) -> None:
    body = 'return {"cmd_type": "base", "base_cmd": {"vx": "fast", "vy": 0, "yaw_rate": 0, "body_pitch": 0, "gait": "trot"}}'
    glue = pod.glue_file(FAULTY.format(at=3, body=body))
    pod.sim().monty()
    result = pod.run_glue(glue)
    assert result.returncode == 5, _explain(result)
    marker = pod.marker()
    assert marker["reason"] == "step 3 returned an invalid action at /base_cmd/vx: 'fast' is not of type 'number'"
    assert marker["steps"] == 2 and marker["status"] == "Failed" and marker["checkpointSaved"] is False
    assert [e["n"] for e in pod.events("sim", "action")] == [1, 2]  # the invalid one never reached the simulator
    assert pod.events("monty", "save") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('return {"cmd_type": "stop", "speed": float("nan")}', "step 1 returned an invalid action is not JSON"),
        ("return None", "step 1 returned an invalid action at /: null is not of type 'object'"),
    ],
    ids=["nan", "none"],
)
def test_actions_that_are_not_valid_json_are_invalid(pod: Pod, body: str, reason: str) -> None:
    pod.sim().monty()
    result = pod.run_glue(pod.glue_file(FAULTY.format(at=1, body=body)))
    assert result.returncode == 5, _explain(result)
    assert pod.marker()["reason"].startswith(reason)


def test_step_raising_fails_with_exit_6_and_the_traceback_on_stderr(pod: Pod) -> None:
    glue = pod.glue_file(FAULTY.format(at=2, body="return 1 / 0"))
    pod.sim().monty()
    result = pod.run_glue(glue)
    assert result.returncode == 6, _explain(result)
    assert pod.marker()["reason"] == "step 2 raised ZeroDivisionError: division by zero"
    assert "Traceback" in result.stderr and str(glue) in result.stderr
    assert pod.marker()["finishAcks"] == {"sim": True, "monty": True}  # the sidecars still flush their files


def test_a_glue_file_that_raises_on_import_fails_with_exit_6(pod: Pod) -> None:
    # A module no environment has (numpy is in .venv now: matplotlib, for `simfleet report`, brings it).
    result = pod.run_glue(
        pod.glue_file("import unitree_private_sdk\n\ndef step(observation):\n    return {'cmd_type': 'stop'}\n")
    )
    assert result.returncode == 6, _explain(result)
    assert "ModuleNotFoundError" in pod.marker()["reason"]


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda pod: pod.glue_file("def act(observation):\n    return {}\n"), "defines no step(observation) function"),
        (lambda pod: pod.tmp / "missing.py", "does not exist"),
    ],
    ids=["no-step", "no-file"],
)
def test_bad_configuration_fails_with_exit_2_and_still_writes_the_marker(
    pod: Pod, setup: Callable[[Pod], Path], fragment: str
) -> None:
    result = pod.run_glue(setup(pod))
    assert result.returncode == 2, _explain(result)
    assert fragment in pod.marker()["reason"] and pod.marker()["status"] == "Failed"


def test_a_bad_environment_value_fails_with_exit_2(pod: Pod) -> None:
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="two hours")
    assert result.returncode == 2, _explain(result)
    assert pod.marker()["reason"] == "SIMFLEET_STOP_AFTER_SECONDS='two hours' is not a number"


def test_an_action_schema_with_an_unsupported_keyword_stops_the_run_before_it_starts(pod: Pod) -> None:
    schema = copy.deepcopy(contract.load_schema(contract.ACTION_SCHEMA))
    schema["properties"]["cmd_type"]["pattern"] = "^[a-z]+$"
    contract_dir = pod.tmp / "contract"
    contract_dir.mkdir()
    (contract_dir / contract.ACTION_SCHEMA).write_text(json.dumps(schema))
    result = pod.run_glue(SIMFLEET_CONTRACT_DIR=str(contract_dir))
    assert result.returncode == 2, _explain(result)
    assert "'pattern' at /properties/cmd_type" in pod.marker()["reason"]


# ---------------------------------------------------------------------------------------------
# Liveness (the whole-pod faults, with the uploader and S3, are in tests/test_faults_run.py)
# ---------------------------------------------------------------------------------------------


def test_a_step_that_ignores_the_alarm_is_ended_by_the_watchdog(pod: Pod) -> None:
    # SIGALRM blocked, as a C extension that never returns to Python would in effect: the watchdog thread writes the
    # outcome and ends the process SIMFLEET_STUCK_GRACE_SECONDS after the step timeout (5 s in a pod, 1 s here: still
    # twice the step timeout, and the silences are 20 s, so nothing but the watchdog can end this run).
    # (Blocked in this thread, the signal goes to another one, and a read that never returns is not interrupted.)
    glue = pod.glue_file(
        "import os, signal\ncalls = 0\ndef step(observation):\n    global calls\n    calls += 1\n"
        "    if calls == 3:\n        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
        "        os.read(os.pipe()[0], 1)\n    return {'cmd_type': 'stop'}\n"
    )
    pod.sim().monty()
    started = time.monotonic()
    result = pod.run_glue(
        glue, SIMFLEET_STEP_TIMEOUT_SECONDS="0.5", SIMFLEET_STUCK_GRACE_SECONDS="1", SIMFLEET_STOP_AFTER_SECONDS="1000"
    )
    assert result.returncode == 9, _explain(result)
    assert time.monotonic() - started > 1.5  # the step timeout and the grace both ran out: not ended early
    marker = pod.marker()
    assert marker["status"] == "Failed" and marker["steps"] == 2
    assert marker["reason"] == "step 3 did not return within 0.5 s and could not be interrupted (a call that ignores signals)"


def test_an_import_past_the_startup_timeout_is_ended_and_named(pod: Pod) -> None:
    glue = pod.glue_file("import time\ntime.sleep(30)\ndef step(observation):\n    return {'cmd_type': 'stop'}\n")
    result = pod.run_glue(glue, SIMFLEET_STARTUP_TIMEOUT_SECONDS="1")
    assert result.returncode == 9, _explain(result)
    assert pod.marker()["reason"] == f"importing {glue} did not finish within 1 s"


def test_a_save_or_a_step_longer_than_the_observation_timeout_is_not_a_silent_simulator(pod: Pod) -> None:
    # While glue saves a partial checkpoint or runs a step() (each within its own bound), it does not listen for
    # observations: that time is not the simulator's silence. Before, a periodic save of 1.5 s with a 1 s observation
    # timeout ended the run as "simulator silent" (in a pod: any save over 60 s, whose bound is 600 s).
    glue = pod.glue_file(FAULTY.format(at=30, body="time.sleep(1.5) if calls == 30 else None"))
    pod.sim("--interval", "0.01").monty("--save-delay", "1.5")
    result = pod.run_glue(
        glue,
        SIMFLEET_STOP_AFTER_SECONDS="4",
        SIMFLEET_CHECKPOINT_EVERY_SECONDS="0.2",
        SIMFLEET_OBSERVATION_TIMEOUT_SECONDS="1",
        SIMFLEET_STEP_TIMEOUT_SECONDS="5",
        SIMFLEET_BRAIN_SILENCE_SECONDS="5",
        SIMFLEET_SAVE_CHECKPOINT="false",
    )
    assert result.returncode == 0, _explain(result)
    assert pod.marker()["status"] == "Succeeded" and pod.summary()["partial_checkpoints"] >= 1, result.stdout
    assert pod.summary()["steps"] > 30


def test_simulation_time_going_back_is_a_restart_even_without_incarnations_or_a_dropped_connection(pod: Pod) -> None:
    # 20 observations a second, not 200: glue keeps only the newest observation (CONFLATE), and the one at 0 s must
    # not be replaced by the next before glue reads it, however loaded the machine (at 5 ms apart, it sometimes was:
    # "went back ... to 0.01 s", or past the time it went back from, and the run went on to the end).
    pod.sim("--reset-after", "20", "--no-incarnation", "--interval", "0.05").monty("--no-incarnation")
    result = pod.run_glue(SIMFLEET_STOP_AFTER_SECONDS="1000")
    assert result.returncode == 7, _explain(result)
    reason = pod.marker()["reason"]
    assert re.fullmatch(r"simulator restarted at step \d+ \(simulation time went back from [\d.]+ s to 0 s\)", reason), reason


def test_a_brain_without_incarnation_ids_is_still_caught_restarting_by_its_dropped_connection(pod: Pod) -> None:
    pod.sim().monty("--no-incarnation")
    glue = pod.start_glue(SIMFLEET_STOP_AFTER_SECONDS="1000")
    _wait_for(lambda: len(pod.events("sim", "action")) >= 3, "three actions at the simulator")
    pod.kill("monty")
    pod.restart("monty")
    stdout, stderr = glue.communicate(timeout=GUARD)
    assert glue.returncode == 8, stdout + stderr
    assert pod.marker()["reason"].startswith("brain restarted or died at step ")


def test_the_heartbeat_and_the_marker_carry_the_same_incarnation_and_the_progress(pod: Pod) -> None:
    pod.sim("--done-after", "30").monty()
    result = pod.run_glue()
    assert result.returncode == 0, _explain(result)
    heartbeat = json.loads((pod.checkpoints / ".heartbeat").read_text())
    marker = pod.marker()
    assert heartbeat["incarnation"] == marker["incarnation"] == pod.summary()["incarnation"]
    assert len(heartbeat["incarnation"]) == 16 and heartbeat["phase"] == "done"
    assert heartbeat["steps"] == marker["steps"] and heartbeat["at"] > 0
    # The simulated time is what glue saw pass between the observations it stepped on. Under load glue can first
    # read the 30th (the fake simulator publishes every 5 ms, glue keeps only the latest): one step, no time yet.
    assert heartbeat["simulationSeconds"] == pod.summary()["sim_seconds"]
    assert (heartbeat["simulationSeconds"] > 0) == (heartbeat["steps"] > 1), heartbeat


def test_steps_csv_keeps_evenly_spaced_steps_within_its_row_bound(pod: Pod) -> None:
    pod.sim("--done-after", "60", "--interval", "0.01").monty()
    result = pod.run_glue(SIMFLEET_SERIES_MAX_ROWS="8")
    assert result.returncode == 0, _explain(result)
    lines = (pod.artifacts / "metrics" / "steps.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    assert header[:3] == ["step", "time", "base_vel.vx"] and header[-1] == "brain_latency_ms" and len(header) == 18
    assert 2 <= len(rows) < 8
    steps = [int(row[0]) for row in rows]
    stride = steps[1] - steps[0]
    assert steps[0] == 1 and stride in (2, 4, 8, 16) and steps == list(range(1, steps[-1] + 1, stride))
    assert {row[11] for row in rows} <= {"base", "stop"}  # action.cmd_type
    assert all(float(row[9]) == 100.0 for row in rows)  # energy_rate from the fake simulator


# ---------------------------------------------------------------------------------------------
# SIGTERM
# ---------------------------------------------------------------------------------------------


def test_sigterm_mid_run_saves_a_partial_and_ends_interrupted(pod: Pod) -> None:
    pod.sim().monty()
    glue = pod.start_glue(SIMFLEET_STOP_AFTER_SECONDS="1000")
    _wait_for(lambda: len(pod.events("sim", "action")) >= 3, "three actions at the simulator")
    glue.send_signal(signal.SIGTERM)
    stdout, stderr = glue.communicate(timeout=GUARD)
    assert glue.returncode == 143, f"{stdout}\n{stderr}"
    marker = pod.marker()
    assert marker["status"] == "Interrupted" and marker["exitCode"] == 143
    assert marker["partialCheckpoint"] is True and marker["checkpointSaved"] is False and marker["steps"] >= 3
    assert "partial checkpoint saved" in marker["reason"]
    partial = json.loads((pod.checkpoints / "partial.json").read_text())
    assert partial["sequence"] == 1 and partial["elapsedSeconds"] > 0 and partial["steps"] == marker["steps"]
    assert (pod.checkpoints / "partial.mstate").is_file() and not (pod.checkpoints / "out.mstate").exists()
    # The partial save came first, then the sidecars were told to finish.
    [save] = pod.events("monty", "save")
    assert save["path"].endswith("partial.mstate.tmp")
    assert all(e["at"] > save["at"] for e in pod.events(event="finish"))


def test_sigterm_during_a_step_that_never_returns_still_saves_and_ends_interrupted(pod: Pod) -> None:
    glue_file = pod.glue_file(FAULTY.format(at=4, body="while True:\n            time.sleep(0.05)"))
    pod.sim().monty()
    glue = pod.start_glue(glue_file, SIMFLEET_STOP_AFTER_SECONDS="1000")
    _wait_for(lambda: len(pod.events("sim", "action")) >= 3, "three actions at the simulator")
    time.sleep(0.2)  # let it get stuck in step 4 (the outcome is the same if it is not there yet)
    glue.send_signal(signal.SIGTERM)
    stdout, stderr = glue.communicate(timeout=GUARD)
    assert glue.returncode == 143, f"{stdout}\n{stderr}"
    assert pod.marker()["partialCheckpoint"] is True and pod.marker()["steps"] == 3


def test_sigterm_during_the_final_save_is_interrupted_not_a_failed_save(pod: Pod) -> None:
    # The episode ended and Monty is saving (3 s); SIGTERM comes meanwhile and cuts the save short at the 1 s glue has
    # after it. Before, glue read the SIGTERM flag before the save, not after, and said "Failed, exit 3: monty did not
    # confirm the save within 600 s" one second in: a false reason, and a status that is not retried as a reclaim is.
    pod.sim("--done-after", "20").monty("--save-delay", "3")
    glue = pod.start_glue(SIMFLEET_TERM_SAVE_SECONDS="1", SIMFLEET_SAVE_TIMEOUT_SECONDS="600")
    _wait_for(lambda: pod.events("monty", "save"), "the final save")
    glue.send_signal(signal.SIGTERM)
    stdout, stderr = glue.communicate(timeout=GUARD)
    assert glue.returncode == 143, f"{stdout}\n{stderr}"
    marker = pod.marker()
    assert marker["status"] == "Interrupted" and marker["checkpointSaved"] is False
    assert marker["reason"] == (
        "terminated (SIGTERM) during the final save: monty did not confirm the save before the 1 s glue has after SIGTERM ran out"
    )
    assert not (pod.checkpoints / "out.mstate").exists()


def test_sigterm_before_the_first_observation_ends_interrupted_without_a_save(pod: Pod) -> None:
    pod.sim("--silent").monty()
    glue = pod.start_glue()
    _wait_for(lambda: glue.stdout and "start:" in glue.stdout.readline(), "the start line")
    glue.send_signal(signal.SIGTERM)
    glue.communicate(timeout=GUARD)
    assert glue.returncode == 143
    assert pod.marker()["status"] == "Interrupted" and pod.marker()["partialCheckpoint"] is False
    assert pod.events("monty", "save") == []


# ---------------------------------------------------------------------------------------------
# The built-in validator agrees with jsonschema
# ---------------------------------------------------------------------------------------------


ACTION_SCHEMA = contract.load_schema(contract.ACTION_SCHEMA)
GOOD_BASE = {"vx": 0.6, "vy": 0.0, "yaw_rate": 0.1, "body_pitch": -0.05, "gait": "trot"}
ODD_VALUES = ["fast", "", None, True, False, 0, 1, 1.5, -2.0, 1e300, [], [1], {}, {"a": 1}]


def _action_corpus() -> list[Any]:
    """Valid and invalid actions: hand-picked, plus every field of a good action swapped for odd values."""
    corpus: list[Any] = [
        {"cmd_type": "stop"},
        {"cmd_type": "base", "base_cmd": GOOD_BASE},
        {"cmd_type": "stop", "base_cmd": GOOD_BASE},
        {"cmd_type": "base"},
        {"cmd_type": "jump"},
        {},
        {"cmd_type": "stop", "speed": 1},
        {"base_cmd": GOOD_BASE},
        {"cmd_type": "base", "base_cmd": {**GOOD_BASE, "extra": 1}},
        {"cmd_type": "base", "base_cmd": {k: v for k, v in GOOD_BASE.items() if k != "gait"}},
        {"cmd_type": "base", "base_cmd": {**GOOD_BASE, "vx": 1}},  # an integer is a number
        {"cmd_type": "base", "base_cmd": {**GOOD_BASE, "vx": True}},  # a boolean is not
        *ODD_VALUES,
    ]
    for value in ODD_VALUES:
        corpus.append({"cmd_type": value})
        corpus.append({"cmd_type": "base", "base_cmd": value})
        for key in GOOD_BASE:
            corpus.append({"cmd_type": "base", "base_cmd": {**GOOD_BASE, key: value}})
    for gait in ["stand", "walk", "trot", "pace", "bound", "gallop", "Trot"]:
        corpus.append({"cmd_type": "base", "base_cmd": {**GOOD_BASE, "gait": gait}})
    return corpus


# A schema that uses every keyword the runtime implements, to hold each one to jsonschema's behaviour.
EVERY_KEYWORD_SCHEMA = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"enum": ["a", "b", 1, None]},
        "version": {"const": 2},
        "n": {"type": "integer", "minimum": 0, "maximum": 10},
        "x": {"type": "number", "exclusiveMinimum": -1, "exclusiveMaximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]},
        "one": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "integer", "maximum": 10}]},
        "both": {"allOf": [{"type": "number"}, {"not": {"const": 3}}]},
        "nullable": {"type": ["string", "null"]},
        "map": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
    "if": {"properties": {"kind": {"const": "b"}}},
    "then": {"required": ["n"]},
    "else": {"not": {"required": ["n"]}},
    "additionalProperties": False,
}


def _every_keyword_corpus() -> list[Any]:
    fields: dict[str, list[Any]] = {
        "kind": ["a", "b", 1, 1.0, True, None, "c"],
        "version": [2, 2.0, "2", True],
        "n": [0, 10, 11, -1, 3.0, 3.5, True],
        "x": [-1, -0.99, 0, 0.99, 1, "0"],
        "tags": [[], ["a"], ["a", "b", "c"], ["a", "b", "c", "d"], [1], "a"],
        "either": ["s", 5, 4, 5.0, 4.5, None],
        "one": [-1, 5, 11, 11.5, "x"],
        "both": [1, 3, 3.0, "3"],
        "nullable": ["s", None, 0],
        "map": [{}, {"a": True}, {"a": 1}, []],
    }
    corpus: list[Any] = [{}, [], "kind", {"kind": "a", "other": 1}, {"kind": "b"}, {"kind": "b", "n": 1}, {"kind": "a", "n": 1}]
    for key, values in fields.items():
        base = {"kind": "b", "n": 1} if key != "kind" else {}
        for value in values:
            corpus.append({**base, key: value} if key != "kind" else {"kind": value})
    return corpus


def _json_roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(
    ("schema", "corpus"),
    [(ACTION_SCHEMA, _action_corpus()), (EVERY_KEYWORD_SCHEMA, _every_keyword_corpus())],
    ids=["action-schema", "every-keyword"],
)
def test_the_builtin_validator_agrees_with_jsonschema(schema: dict[str, Any], corpus: list[Any]) -> None:
    ours = VALIDATOR.Validator(schema)
    reference = Draft202012Validator(schema)
    disagreements = []
    for instance in map(_json_roundtrip, corpus):
        expected = sorted({"/" + "/".join(map(str, e.absolute_path)) for e in reference.iter_errors(instance)})
        got = sorted({pointer for pointer, _ in ours.errors(instance)})
        if expected != got:
            disagreements.append((instance, expected, got))
    valid = sum(reference.is_valid(i) for i in map(_json_roundtrip, corpus))
    assert 0 < valid < len(corpus)  # the corpus has both kinds
    assert disagreements == []


def test_boolean_subschemas_agree_with_jsonschema_on_validity() -> None:
    # Compared on validity only: jsonschema reports a false subschema's error without its path (at /), the
    # runtime at the property's own pointer, which is the more useful of the two.
    schema = {"properties": {"never": False, "always": True}, "items": False}
    for instance in [{}, {"never": 1}, {"always": [1]}, [], [1], "x"]:
        assert (VALIDATOR.Validator(schema).errors(instance) == []) is Draft202012Validator(schema).is_valid(instance)
    assert VALIDATOR.Validator(schema).errors({"never": 1}) == [("/never", "1 is not allowed here")]


def test_the_builtin_validator_messages_name_the_field() -> None:
    ours = VALIDATOR.Validator(ACTION_SCHEMA)
    assert ours.errors({"cmd_type": "base"}) == [("/", "'base_cmd' is a required property")]
    assert ours.errors({"cmd_type": "base", "base_cmd": {**GOOD_BASE, "gait": "gallop"}}) == [
        ("/base_cmd/gait", '\'gallop\' is not one of ["stand", "walk", "trot", "pace", "bound"]')
    ]
    assert ours.errors({"cmd_type": "stop", "speed": 1}) == [("/", "additional properties are not allowed ('speed' unexpected)")]


@pytest.mark.parametrize(
    ("schema", "found"),
    [
        ({"type": "string", "pattern": "^a"}, "'pattern' at /"),
        ({"properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}}, "'$ref' at /properties/a"),
        ({"items": {"format": "uri"}}, "'format' at /items"),
        ({"anyOf": [{"type": "strng"}]}, "unknown type 'strng' at /anyOf/0/type"),
    ],
)
def test_the_builtin_validator_refuses_keywords_it_does_not_implement(schema: dict[str, Any], found: str) -> None:
    with pytest.raises(VALIDATOR.UnsupportedSchema, match="does not implement") as raised:
        VALIDATOR.Validator(schema)
    assert found in str(raised.value)


def test_the_contract_schema_uses_only_what_the_runtime_implements() -> None:
    assert VALIDATOR.unsupported_keywords(ACTION_SCHEMA) == []
