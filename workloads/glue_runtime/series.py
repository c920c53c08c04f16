"""The per-step time series /artifacts/metrics/steps.csv: one row per kept control step, decimated to a bounded size.

Columns (names as the contract's schemas name the fields; docs/records.md describes each):
    step, time, base_vel.vx, base_vel.vy, base_vel.wz, base_pose.roll, base_pose.pitch, base_pose.yaw,
    base_pose.height, energy_rate, nociceptor, action.cmd_type, action.base_cmd.vx, action.base_cmd.vy,
    action.base_cmd.yaw_rate, action.base_cmd.body_pitch, action.base_cmd.gait, brain_latency_ms
A field the observation or action does not have is left empty (a `stop` action has no base_cmd; brain_latency_ms is
empty when the brain did not answer in time).

Decimation: every step is kept until the table holds SIMFLEET_SERIES_MAX_ROWS rows; then every other row is dropped
and only every second step is kept from then on, and so on, so the kept steps are always evenly spaced (every
2^k-th step, counted from this pod's first) whatever the length of the run. The file is rewritten atomically every
SIMFLEET_SERIES_FLUSH_SECONDS and at the end.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from .validator import is_number

COLUMNS = (
    "step",
    "time",
    "base_vel.vx",
    "base_vel.vy",
    "base_vel.wz",
    "base_pose.roll",
    "base_pose.pitch",
    "base_pose.yaw",
    "base_pose.height",
    "energy_rate",
    "nociceptor",
    "action.cmd_type",
    "action.base_cmd.vx",
    "action.base_cmd.vy",
    "action.base_cmd.yaw_rate",
    "action.base_cmd.body_pitch",
    "action.base_cmd.gait",
    "brain_latency_ms",
)
BASE_CMD = ("vx", "vy", "yaw_rate", "body_pitch", "gait")


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if is_number(value) and math.isfinite(value):
        return f"{value:.6g}"
    return ""


def _at(value: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and len(value) > part else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


class Series:
    def __init__(self, path: Path, max_rows: int) -> None:
        self.path = path
        self.max_rows = max_rows
        self.rows: list[list[str]] = []
        self.stride = 1
        self.seen = 0

    def add(self, step: int, observation: dict[str, Any], action: Any, brain_latency_ms: float | None) -> None:
        seen, self.seen = self.seen, self.seen + 1
        if seen % self.stride:
            return
        values: list[Any] = [step, observation.get("time")]
        values += [_at(observation, "base_vel", i) for i in range(3)]
        values += [_at(observation, "base_pose", key) for key in ("roll", "pitch", "yaw", "height")]
        values += [observation.get("energy_rate"), observation.get("nociceptor"), _at(action, "cmd_type")]
        values += [_at(action, "base_cmd", key) for key in BASE_CMD]
        values.append(brain_latency_ms)
        self.rows.append([_cell(v) for v in values])
        if len(self.rows) >= self.max_rows:
            self.rows = self.rows[::2]
            self.stride *= 2

    def flush(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, self.path)
