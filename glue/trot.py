"""Sample glue: a trot controller that holds a heading and a level body, and the ZeroMQ bridge that runs it.

The contract (workloads/contract.py, schemas in workloads/schemas/):
- `step(observation) -> action` is called once per control step with an observation that matches
  observation.schema.json and must return an action that matches action.schema.json.
- The file runs as a script in the `glue` container; the `__main__` block at the end starts the bridge.

The bridge talks to the two sidecars over ZeroMQ on localhost (the endpoints come from the pod's env):
- unitree-sim PUBlishes observations on SIMFLEET_OBS_ENDPOINT and PULLs actions on SIMFLEET_ACTION_ENDPOINT.
- monty answers REQuests on SIMFLEET_MONTY_ENDPOINT: {"observation": ...} -> {"brain": {...}}, which the bridge
  attaches to the next observation as "brain"; {"command": "save", "path": ...} -> {"saved": path}, which
  writes the out-checkpoint the artifact-uploader ships to S3.
pyzmq comes with the glue-base image and is imported inside `serve`, so linting and unit tests need none of it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

CRUISE_SPEED = 0.6  # m/s: a steady trot for a Go2-sized quadruped
MIN_TROT_SPEED = 0.05  # m/s: below this a trot only shuffles in place, so stand instead
TARGET_HEADING = 0.0  # rad: hold the spawn heading unless Monty asks for another
HEADING_GAIN = 1.2  # rad/s of yaw rate per rad of heading error
YAW_DAMPING = 0.3  # s: cancels part of the measured yaw rate so the heading loop does not oscillate
MAX_YAW_RATE = 0.8  # rad/s
LATERAL_GAIN = 0.5  # cancels sideways drift measured in base_vel
MAX_LATERAL = 0.3  # m/s
PITCH_GAIN = 0.5  # counter-pitch so the body stays level on slopes and when braking
MAX_BODY_PITCH = 0.15  # rad
FALL_TILT = 0.6  # rad of roll or pitch: the robot is falling or fallen, so stop commanding motion
PAIN_LIMIT = 0.8  # nociceptor level at which the controller stops walking altogether


def step(observation: dict[str, Any]) -> dict[str, Any]:
    """One control step: observation (observation.schema.json) -> base command (action.schema.json)."""
    pose = observation["base_pose"]
    if observation.get("done") or abs(pose["roll"]) > FALL_TILT or abs(pose["pitch"]) > FALL_TILT:
        return {"cmd_type": "stop"}

    brain = observation.get("brain") or {}
    # Slow down in proportion to pain: Monty learns from the nociceptor, the controller just stays safe.
    comfort = max(0.0, 1.0 - float(observation["nociceptor"]) / PAIN_LIMIT)
    vx = float(brain.get("vx", CRUISE_SPEED)) * comfort

    yaw_rate_measured = float(observation["imu"][5])
    heading_error = _wrap_angle(float(brain.get("heading", TARGET_HEADING)) - float(pose["yaw"]))
    yaw_rate = _clamp(HEADING_GAIN * heading_error - YAW_DAMPING * yaw_rate_measured, MAX_YAW_RATE)
    vy = _clamp(-LATERAL_GAIN * float(observation["base_vel"][1]), MAX_LATERAL)
    body_pitch = _clamp(-PITCH_GAIN * float(pose["pitch"]), MAX_BODY_PITCH)

    gait = "trot" if vx >= MIN_TROT_SPEED else "stand"
    if gait == "stand":
        vx, vy = 0.0, 0.0
    return {
        "cmd_type": "base",
        "base_cmd": {
            "vx": round(vx, 4),
            "vy": round(vy, 4),
            "yaw_rate": round(yaw_rate, 4),
            "body_pitch": round(body_pitch, 4),
            "gait": gait,
        },
    }


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


def _wrap_angle(angle: float) -> float:
    """An angle in (-pi, pi], so a heading error never makes the robot turn the long way round."""
    return math.atan2(math.sin(angle), math.cos(angle))


# ---------------------------------------------------------------------------------------------
# The bridge: sim observations -> (Monty) -> step -> sim actions, then a checkpoint save.
# ---------------------------------------------------------------------------------------------

BRAIN_TIMEOUT_MS = 50  # a late brain answer is skipped rather than stalling the control loop
SAVE_TIMEOUT_MS = 10 * 60 * 1000  # writing a large brain state can take minutes


def serve(step_fn: Any = step) -> int:
    """Run the control loop until the episode ends or the run's time budget is spent; return the exit code."""
    import zmq

    env = os.environ
    stop_at = time.monotonic() + float(env.get("SIMFLEET_STOP_AFTER_SECONDS", "inf"))
    context = zmq.Context.instance()
    observations = context.socket(zmq.SUB)
    observations.setsockopt(zmq.CONFLATE, 1)  # only the newest observation matters to a controller
    observations.setsockopt(zmq.SUBSCRIBE, b"")
    observations.connect(env.get("SIMFLEET_OBS_ENDPOINT", "tcp://127.0.0.1:5555"))
    actions = context.socket(zmq.PUSH)
    actions.connect(env.get("SIMFLEET_ACTION_ENDPOINT", "tcp://127.0.0.1:5556"))
    brain = context.socket(zmq.REQ)
    # Relaxed + correlated REQ may send again after a timed-out request instead of wedging the socket.
    brain.setsockopt(zmq.REQ_RELAXED, 1)
    brain.setsockopt(zmq.REQ_CORRELATE, 1)
    brain.connect(env.get("SIMFLEET_MONTY_ENDPOINT", "tcp://127.0.0.1:5557"))

    stats = {"steps": 0, "stops": 0, "max_nociceptor": 0.0, "energy_joules": 0.0}
    last_time = None
    while time.monotonic() < stop_at:
        if not observations.poll(1000):
            continue
        observation = json.loads(observations.recv())
        answer = _ask(brain, {"observation": observation}, BRAIN_TIMEOUT_MS)
        if answer is not None:
            observation["brain"] = answer.get("brain") or {}
        action = step_fn(observation)
        actions.send_string(json.dumps(action))
        _account(stats, observation, action, last_time)
        last_time = observation["time"]
        if observation.get("done"):
            break

    checkpoint = env.get("SIMFLEET_CHECKPOINT_OUT", "/checkpoints/out.mstate")
    saved = _ask(brain, {"command": "save", "path": checkpoint}, SAVE_TIMEOUT_MS)
    stats["checkpoint_saved"] = bool(saved and saved.get("saved") == checkpoint)
    _write_metrics(Path(env.get("SIMFLEET_ARTIFACTS_DIR", "/artifacts")), stats)
    print(f"glue: {stats['steps']} steps, checkpoint saved: {stats['checkpoint_saved']}", flush=True)
    if env.get("SIMFLEET_SAVE_CHECKPOINT") == "true" and not stats["checkpoint_saved"]:
        return 3
    return 0


def _ask(socket: Any, message: dict[str, Any], timeout_ms: int) -> dict[str, Any] | None:
    socket.send_string(json.dumps(message))
    if not socket.poll(timeout_ms):
        return None
    reply: dict[str, Any] = json.loads(socket.recv())
    return reply


def _account(stats: dict[str, Any], observation: dict[str, Any], action: dict[str, Any], last_time: float | None) -> None:
    stats["steps"] += 1
    stats["stops"] += action["cmd_type"] == "stop"
    stats["max_nociceptor"] = max(stats["max_nociceptor"], float(observation["nociceptor"]))
    if last_time is not None:
        stats["energy_joules"] += float(observation["energy_rate"]) * max(0.0, observation["time"] - last_time)


def _write_metrics(artifacts: Path, stats: dict[str, Any]) -> None:
    metrics = artifacts / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / "glue-summary.json").write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(serve(step))
