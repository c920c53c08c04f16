"""A synthetic run's records as its pods would leave them (docs/records.md): a trotting robot's per-step series
(metrics/steps.csv), glue's summary, index.json; for the report and command tests."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from typing import Any

from workloads.glue_runtime.series import COLUMNS  # the header glue writes


def steps_csv(seed: int, steps: int = 600, dt: float = 0.02, fall_at: int | None = None) -> str:
    """A seed's steps.csv: the robot speeds up to its commanded 0.8 m/s; with `fall_at`, it falls there (height
    drops, roll leaves zero, a nociceptor spike) and the glue commands stop."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for step in range(steps):
        t = step * dt
        fallen = fall_at is not None and step >= fall_at
        vx = 0.0 if fallen else 0.8 * (1 - math.exp(-t / 1.5)) + rng.gauss(0, 0.03)
        height = 0.12 if fallen else 0.31 + 0.01 * math.sin(2 * math.pi * 2 * t)
        roll = 1.2 if fallen else 0.03 * math.sin(2 * math.pi * 2 * t + seed)
        spike = 5.0 if fall_at is not None and step == fall_at else 0.0
        latency = "" if step % 97 == 5 else f"{12 + rng.gauss(0, 1.5):.3f}"
        action = ["stop", "", "", "", "", ""] if fallen else ["base", "0.8", "0", "0", "0", "trot"]
        writer.writerow(
            [
                step,
                f"{t:.3f}",
                f"{vx:.4f}",
                f"{rng.gauss(0, 0.02):.4f}",
                f"{rng.gauss(0, 0.05):.4f}",
                f"{roll:.4f}",
                f"{0.02 * math.cos(2 * math.pi * 2 * t):.4f}",
                "0",
                f"{height:.4f}",
                f"{150 + 30 * vx + rng.gauss(0, 5):.2f}",
                f"{spike:.2f}",
                *action,
                latency,
            ]
        )
    return out.getvalue()


def glue_summary(steps: int, status: str = "Succeeded") -> dict[str, Any]:
    return {
        "status": status,
        "exit_code": 0 if status == "Succeeded" else 8,
        "steps": steps,
        "energy_joules": 1800.0,
        "max_nociceptor": 0.0,
    }


def index(
    status: str,
    steps: int,
    checkpoint: str | None,
    start: str = "2026-12-07T10:00:00Z",
    end: str = "2026-12-07T10:30:00Z",
    **fields: Any,
) -> dict[str, Any]:
    return {
        "status": status,
        "reason": None if status == "Succeeded" else fields.pop("reason", "brain restarted or died at step 400"),
        "exitCode": 0 if status == "Succeeded" else 8,
        "startTime": start,
        "completionTime": end,
        "checkpoint": checkpoint,
        "recoveries": fields.pop("recoveries", 0),
        "steps": steps,
        **fields,
    }


def dumps(value: Any) -> str:
    return json.dumps(value)
