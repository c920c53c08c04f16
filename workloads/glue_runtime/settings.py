"""The glue runtime's settings: read once from the environment, every unusable value named at once.

Environment (default in brackets):
    SIMFLEET_OBS_ENDPOINT                [tcp://127.0.0.1:5555]  unitree-sim PUB -> glue SUB (CONFLATE: newest only)
    SIMFLEET_ACTION_ENDPOINT             [tcp://127.0.0.1:5556]  glue PUSH -> unitree-sim PULL
    SIMFLEET_MONTY_ENDPOINT              [tcp://127.0.0.1:5557]  glue REQ <-> monty REP
    SIMFLEET_SIM_CONTROL_ENDPOINT        [tcp://127.0.0.1:5558]  glue REQ <-> unitree-sim REP
    SIMFLEET_CONTRACT_DIR                [/opt/simfleet]         holds action.schema.json
    SIMFLEET_CHECKPOINTS_DIR             [/checkpoints]          resume.json, partial.*, out.mstate
    SIMFLEET_ARTIFACTS_DIR               [/artifacts]            metrics/glue-summary.json and metrics/steps.csv
    SIMFLEET_STOP_AFTER_SECONDS          [unset: until done]     simulation seconds of the seed, resumed time included
    SIMFLEET_STARTUP_TIMEOUT_SECONDS     [900]   wall seconds to wait for the first observation
    SIMFLEET_OBSERVATION_TIMEOUT_SECONDS [60]    after the first observation: longest gap between two observations
    SIMFLEET_STEP_TIMEOUT_SECONDS        [30]    longest one call of the user's step() may take
    SIMFLEET_STUCK_GRACE_SECONDS         [5]     after the step timeout, how long SIGALRM gets to interrupt step()
                                                 before the watchdog ends a call that ignores it (a C extension)
    SIMFLEET_BRAIN_TIMEOUT_MS            [50]    a later brain answer is skipped for that step
    SIMFLEET_BRAIN_SILENCE_SECONDS       [60]    longest the brain may go without one answer in time
    SIMFLEET_CHECKPOINT_EVERY_SECONDS    [0: off] wall seconds between partial checkpoints
    SIMFLEET_SAVE_CHECKPOINT             [false] save the final checkpoint (a failed save is exit 3)
    SIMFLEET_CHECKPOINT_OUT              [<checkpoints>/out.mstate]
    SIMFLEET_SAVE_TIMEOUT_SECONDS        [600]   bound on each save (final and periodic)
    SIMFLEET_FINISH_TIMEOUT_SECONDS      [120]   bound on each finish acknowledgement
    SIMFLEET_TERM_SAVE_SECONDS           [40]    after SIGTERM: bound on the partial save and the finish requests
    SIMFLEET_DONE_MARKER                 [<checkpoints>/.done]
    SIMFLEET_HEARTBEAT_FILE              [<checkpoints>/.heartbeat]
    SIMFLEET_HEARTBEAT_SECONDS           [1]     how often the heartbeat file is rewritten
    SIMFLEET_SERIES_MAX_ROWS             [20000] steps.csv keeps at most this many rows (decimated)
    SIMFLEET_SERIES_FLUSH_SECONDS        [30]    how often steps.csv is rewritten while the run goes
    SIMFLEET_PUSHGATEWAY_URL             [unset: no pushes]  where the seed's gauges go (metrics.py)
    SIMFLEET_METRICS_PUSH_SECONDS        [10]    how often they are pushed (a third of the collector's scrape interval)
    SIMFLEET_METRICS_TIMEOUT_SECONDS     [2]     bound on each push, and on the wait for the final one
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """Something the run was given is unusable (exit 2)."""


def files(env: Mapping[str, str]) -> tuple[Path, Path, Path]:
    """(checkpoints dir, done marker, heartbeat file): known even when the rest of the settings do not parse, so
    glue can always say it is alive and how it ended."""
    checkpoints = Path(env.get("SIMFLEET_CHECKPOINTS_DIR") or "/checkpoints")
    marker = Path(env.get("SIMFLEET_DONE_MARKER") or checkpoints / ".done")
    heartbeat = Path(env.get("SIMFLEET_HEARTBEAT_FILE") or checkpoints / ".heartbeat")
    return checkpoints, marker, heartbeat


@dataclass(frozen=True)
class Settings:
    obs_endpoint: str
    action_endpoint: str
    monty_endpoint: str
    sim_control_endpoint: str
    contract_dir: Path
    checkpoints_dir: Path
    artifacts_dir: Path
    stop_after: float  # simulation seconds of the whole seed; inf = until `done`
    startup_timeout: float
    observation_timeout: float
    step_timeout: float
    stuck_grace: float
    brain_timeout: float
    brain_silence: float
    checkpoint_every: float  # wall seconds; 0 = off
    save_checkpoint: bool
    checkpoint_out: Path
    save_timeout: float
    finish_timeout: float
    term_save_timeout: float
    done_marker: Path
    heartbeat_file: Path
    heartbeat_every: float
    series_rows: int
    series_every: float
    pushgateway_url: str  # "" = no pushes
    metrics_every: float
    metrics_timeout: float

    @property
    def summary_file(self) -> Path:
        return self.artifacts_dir / "metrics" / "glue-summary.json"

    @property
    def series_file(self) -> Path:
        return self.artifacts_dir / "metrics" / "steps.csv"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        problems: list[str] = []

        def number(name: str, default: float, *, allow_inf: bool = False, positive: bool = False) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number")
                return default
            if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf) or (positive and value == 0):
                problems.append(f"{name}={raw!r} must be a finite number {'>' if positive else '>='} 0")
                return default
            return value

        def flag(name: str) -> bool:
            raw = env.get(name, "false").strip().lower()
            if raw not in ("true", "false", ""):
                problems.append(f"{name}={raw!r} must be true or false")
            return raw == "true"

        checkpoints, marker, heartbeat = files(env)
        settings = cls(
            obs_endpoint=env.get("SIMFLEET_OBS_ENDPOINT") or "tcp://127.0.0.1:5555",
            action_endpoint=env.get("SIMFLEET_ACTION_ENDPOINT") or "tcp://127.0.0.1:5556",
            monty_endpoint=env.get("SIMFLEET_MONTY_ENDPOINT") or "tcp://127.0.0.1:5557",
            sim_control_endpoint=env.get("SIMFLEET_SIM_CONTROL_ENDPOINT") or "tcp://127.0.0.1:5558",
            contract_dir=Path(env.get("SIMFLEET_CONTRACT_DIR") or "/opt/simfleet"),
            checkpoints_dir=checkpoints,
            artifacts_dir=Path(env.get("SIMFLEET_ARTIFACTS_DIR") or "/artifacts"),
            stop_after=number("SIMFLEET_STOP_AFTER_SECONDS", math.inf, allow_inf=True),
            startup_timeout=number("SIMFLEET_STARTUP_TIMEOUT_SECONDS", 900),
            observation_timeout=number("SIMFLEET_OBSERVATION_TIMEOUT_SECONDS", 60, positive=True),
            step_timeout=number("SIMFLEET_STEP_TIMEOUT_SECONDS", 30, positive=True),
            stuck_grace=number("SIMFLEET_STUCK_GRACE_SECONDS", 5, positive=True),
            brain_timeout=number("SIMFLEET_BRAIN_TIMEOUT_MS", 50) / 1000,
            brain_silence=number("SIMFLEET_BRAIN_SILENCE_SECONDS", 60, positive=True),
            checkpoint_every=number("SIMFLEET_CHECKPOINT_EVERY_SECONDS", 0),
            save_checkpoint=flag("SIMFLEET_SAVE_CHECKPOINT"),
            checkpoint_out=Path(env.get("SIMFLEET_CHECKPOINT_OUT") or checkpoints / "out.mstate"),
            save_timeout=number("SIMFLEET_SAVE_TIMEOUT_SECONDS", 600),
            finish_timeout=number("SIMFLEET_FINISH_TIMEOUT_SECONDS", 120),
            term_save_timeout=number("SIMFLEET_TERM_SAVE_SECONDS", 40),
            done_marker=marker,
            heartbeat_file=heartbeat,
            heartbeat_every=number("SIMFLEET_HEARTBEAT_SECONDS", 1, positive=True),
            series_rows=int(number("SIMFLEET_SERIES_MAX_ROWS", 20000, positive=True)),
            series_every=number("SIMFLEET_SERIES_FLUSH_SECONDS", 30, positive=True),
            pushgateway_url=env.get("SIMFLEET_PUSHGATEWAY_URL", "").strip(),
            metrics_every=number("SIMFLEET_METRICS_PUSH_SECONDS", 10, positive=True),
            metrics_timeout=number("SIMFLEET_METRICS_TIMEOUT_SECONDS", 2, positive=True),
        )
        if settings.series_rows < 2:
            problems.append(f"SIMFLEET_SERIES_MAX_ROWS={settings.series_rows} must be at least 2")
        if problems:
            raise ConfigError("; ".join(problems))
        return settings
