"""Sample glue: a trot controller that holds a heading and a level body.

The contract (workloads/contract.py, schemas in workloads/schemas/): `step(observation) -> action` is called
once per control step with an observation that matches observation.schema.json (plus Monty's latest answer as
observation["brain"] when it came in time) and must return an action that matches action.schema.json.

That is all a glue file holds. simfleet's glue runtime (workloads/glue_runtime/simfleet_glue.py) imports it
and does the rest: the ZeroMQ bridge to unitree-sim and Monty, validation of every action, the time budget,
checkpoints, the finish handshake and the metrics in /artifacts/metrics/glue-summary.json.
"""

from __future__ import annotations

import math
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
