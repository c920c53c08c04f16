"""How a run ended: exit codes, the outcome, the counters, and the two files that say so (summary, then done marker).

Exit codes (docs/failures.md has the whole table, with what the uploader and the researcher do next):
    0    Succeeded
    1    internal error of this runtime (a bug: the traceback is on stderr)
    2    bad configuration: an environment value that does not parse, a glue file without step(), or an action
         schema that uses a keyword the built-in validator does not implement
    3    the final checkpoint save failed (SIMFLEET_SAVE_CHECKPOINT=true), or the brain restarted before it
    4    the simulator published no observation within SIMFLEET_STARTUP_TIMEOUT_SECONDS, or no step ran
    5    step() returned an invalid action (the first one ends the run; the reason names the step and field)
    6    the user's code raised (in step(), or while the glue file was imported); traceback on stderr
    7    the simulator went silent after its first observation, or restarted
    8    the brain went silent, or restarted
    9    one call of step() did not return within SIMFLEET_STEP_TIMEOUT_SECONDS
    10   a done marker existed that glue did not write (left over, or written by user code)
    11   Incomplete: the run ended, but a sidecar did not acknowledge `finish` (its files may be cut short)
    143  interrupted by SIGTERM (a partial checkpoint was saved when Monty answered in time)

The done marker is written on every exit path (SIGKILL aside), atomically, last, as JSON:
    {"status": "Succeeded"|"Failed"|"Interrupted"|"Incomplete", "exitCode": n, "reason": str|null, "steps": n,
     "finishAcks": {"sim": bool, "monty": bool}, "checkpointSaved": bool, "partialCheckpoint": bool,
     "incarnation": the id in glue's heartbeat}
`steps` counts the control steps of this pod; `partialCheckpoint` is true when this pod saved at least one.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SAVE_FAILED = 3
EXIT_NO_SIMULATION = 4
EXIT_INVALID_ACTION = 5
EXIT_USER_CODE = 6
EXIT_SIMULATOR_LOST = 7
EXIT_BRAIN_LOST = 8
EXIT_STEP_TIMEOUT = 9
EXIT_MARKER_FORGED = 10
EXIT_INCOMPLETE = 11
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process killed by TERM

STATUS_OF_EXIT = {EXIT_OK: "Succeeded", EXIT_INTERRUPTED: "Interrupted", EXIT_INCOMPLETE: "Incomplete"}


def log(message: str) -> None:
    print(f"glue: {message}", flush=True)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: Path, document: Mapping[str, Any], *, durable: bool = True) -> None:
    """Readers see the old file or the whole new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class Stats:
    steps: int = 0
    stops: int = 0
    max_nociceptor: float = 0.0
    energy_joules: float = 0.0
    sim_seconds: float = 0.0  # simulated in this pod
    brain_answers: int = 0
    brain_skipped: int = 0
    actions_dropped: int = 0
    bad_observations: int = 0
    partial_checkpoints: int = 0
    partial_failures: int = 0


@dataclass
class Outcome:
    status: str = "Failed"
    exit_code: int = EXIT_INTERNAL
    reason: str | None = "glue runtime ended unexpectedly"
    finish_acks: dict[str, bool] = field(default_factory=lambda: {"sim": False, "monty": False})
    checkpoint_saved: bool = False

    def set(self, exit_code: int, reason: str | None) -> None:
        self.exit_code = exit_code
        self.reason = reason
        self.status = STATUS_OF_EXIT.get(exit_code, "Failed")


class Result:
    """The summary and the done marker, and the check that nobody else wrote the marker first."""

    def __init__(self, marker: Path, incarnation: str) -> None:
        self.marker = marker
        self.incarnation = incarnation
        self.left_over = marker.exists() or marker.is_symlink()

    def forged(self) -> str | None:
        """Why the marker cannot be written as glue's own: it was there before glue started, or appeared since."""
        if self.left_over:
            return f"marker forged or left over: {self.marker} existed before glue started"
        if self.marker.exists() or self.marker.is_symlink():
            return f"marker forged or left over: {self.marker} was written by someone other than glue (the user's code?)"
        return None

    def write(self, outcome: Outcome, stats: Stats, summary_file: Path | None, extra: Mapping[str, Any]) -> None:
        """The summary (when its directory is known), then the done marker, always last."""
        problem = self.forged()
        if problem is not None:
            outcome.set(EXIT_MARKER_FORGED, problem + (f"; glue's own outcome was: {outcome.reason}" if outcome.reason else ""))
            outcome.checkpoint_saved = False
        if summary_file is not None:
            summary = {
                "status": outcome.status,
                "exit_code": outcome.exit_code,
                "reason": outcome.reason,
                "steps": stats.steps,
                "stops": stats.stops,
                "max_nociceptor": stats.max_nociceptor,
                "energy_joules": round(stats.energy_joules, 6),
                "sim_seconds": round(stats.sim_seconds, 6),
                "finish_acks": dict(outcome.finish_acks),
                "checkpoint_saved": outcome.checkpoint_saved,
                "partial_checkpoints": stats.partial_checkpoints,
                "partial_failures": stats.partial_failures,
                "brain_answers": stats.brain_answers,
                "brain_skipped": stats.brain_skipped,
                "actions_dropped": stats.actions_dropped,
                "bad_observations": stats.bad_observations,
                **extra,
            }
            try:
                write_json_atomic(summary_file, summary)
            except OSError as err:
                log(f"could not write the summary: {err}")
        with_symlink_gone(self.marker)
        write_json_atomic(
            self.marker,
            {
                "status": outcome.status,
                "exitCode": outcome.exit_code,
                "reason": outcome.reason,
                "steps": stats.steps,
                "finishAcks": dict(outcome.finish_acks),
                "checkpointSaved": outcome.checkpoint_saved,
                "partialCheckpoint": stats.partial_checkpoints > 0,
                "incarnation": self.incarnation,
            },
        )


def with_symlink_gone(path: Path) -> None:
    """A symlink where a file goes is removed first: os.replace would not follow it, but a reader might."""
    if path.is_symlink():
        path.unlink()
