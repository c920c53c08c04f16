"""The run: the control loop between unitree-sim, Monty and the user's step(), and its ends (finished, lost, interrupted).

1. The heartbeat first, so the uploader knows glue lives; a done marker already there fails the run (forged or left
   over). Then the glue file, the action schema, and /checkpoints/resume.json when a replacement pod resumes: only the
   rest of SIMFLEET_STOP_AFTER_SECONDS is run.
2. Control loop: newest observation -> Monty's answer as observation["brain"] (skipped when later than the brain
   timeout) -> step(), bounded -> the action, validated, to the simulator. A partial checkpoint every
   SIMFLEET_CHECKPOINT_EVERY_SECONDS of wall-clock time. A sidecar that restarted or went silent, a step() past its
   time, a step() that raised or an invalid action ends the attempt at once.
3. End (simulation time reached, or an observation with `done: true`): `finish` to both sidecars, their
   acknowledgements, the final save, the summary and steps.csv, and only then the done marker.
4. SIGTERM (deadline, node drain, spot reclaim): the loop stops at once, a partial checkpoint is saved, the sidecars
   are asked to finish with what time is left, and the marker says Interrupted.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from . import checkpoints
from .bridge import BRAIN, POLL_SLICE_MS, Bridge
from .ends import Ends
from .host import StepGuard, StepTimeout, Terminated, UserCodeError, load_step
from .liveness import Heartbeat, Watch
from .metrics import JOB, Latency, Pusher, read_recoveries, seed_gauges
from .result import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID_ACTION,
    EXIT_MARKER_FORGED,
    EXIT_NO_SIMULATION,
    EXIT_STEP_TIMEOUT,
    EXIT_USER_CODE,
    Outcome,
    Result,
    Stats,
    log,
)
from .series import Series
from .settings import ConfigError, Settings, files
from .validator import Validator, encode_action, is_number, load_validator


class Runtime(Ends):
    def __init__(self, env: Mapping[str, str], glue_path: Path) -> None:
        self.env = env
        self.glue_path = glue_path
        incarnation = secrets.token_hex(8)
        _, marker, heartbeat = files(env)
        self.result = Result(marker, incarnation)
        self.heartbeat = Heartbeat(heartbeat, 1.0, incarnation)
        self.settings: Settings | None = None
        self.stats = Stats()
        self.outcome = Outcome()
        self.terminated_at: float | None = None
        self.resume = checkpoints.Resume()
        self.sequence = 0
        self.last_partial_at: float | None = None
        self.guard: StepGuard | None = None
        self.series: Series | None = None
        self.watch = Watch(math.inf, math.inf)
        self.bridge: Bridge | None = None
        self.latency = Latency()
        self.pusher: Pusher | None = None

    # -- signals and waits ---------------------------------------------------------------------

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        # No printing here: the handler may run in the middle of another print to the same stream.
        if self.terminated_at is None:
            self.terminated_at = time.monotonic()
        if self.guard is not None and self.guard.in_step:
            self.guard.in_step = False
            raise Terminated()  # a step() that never returns must not eat the grace period

    # -- entry -----------------------------------------------------------------------------

    def run(self) -> int:
        # As PID 1 in its container Python gets no default SIGTERM action: without a handler TERM is ignored
        # and the kubelet's SIGKILL at the end of the grace period would lose everything.
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.heartbeat.beat("starting", force=True)
        try:
            self._run()
        except Terminated:
            # Only reachable if TERM lands in the instant around step(); the loop normally handles it.
            self.outcome.set(EXIT_INTERRUPTED, "terminated (SIGTERM)")
        except Exception as err:
            traceback.print_exc()
            self.outcome.set(EXIT_INTERNAL, f"glue runtime error: {type(err).__name__}: {err}")
        finally:
            if self.guard is not None:
                self.guard.close()
            self._finish_files()
        log(f"exit {self.outcome.exit_code} {self.outcome.status}" + (f": {self.outcome.reason}" if self.outcome.reason else ""))
        return self.outcome.exit_code

    def _run(self) -> None:
        try:
            self.settings = settings = Settings.from_env(self.env)
            self.heartbeat.every = settings.heartbeat_every
            forged = self.result.forged()
            if forged is not None:
                self.outcome.set(EXIT_MARKER_FORGED, forged)
                return
            self.guard = StepGuard(settings.step_timeout, settings.stuck_grace, self.heartbeat, self._stuck)
            signal.signal(signal.SIGALRM, self.guard.on_alarm)
            # A slow import (a large module) is not taken for a dead glue: the guard beats meanwhile.
            step = self.guard.call(load_step, self.glue_path, 0, timeout=settings.startup_timeout)
            validator = load_validator(settings.contract_dir)
            self.resume = checkpoints.read_resume(settings.checkpoints_dir)
        except ConfigError as err:
            self.outcome.set(EXIT_CONFIG, str(err))
            return
        except UserCodeError as err:
            self.outcome.set(EXIT_USER_CODE, str(err))
            return
        except StepTimeout:
            assert self.settings is not None
            self.outcome.set(
                EXIT_STEP_TIMEOUT, f"importing {self.glue_path} did not finish within {self.settings.startup_timeout:g} s"
            )
            return
        self.sequence = self.resume.sequence
        budget = settings.stop_after - self.resume.seconds
        log(
            f"start: {self.glue_path}, run {self.env.get('SIMFLEET_RUN', '?')} seed {self._seed()}, "
            f"{_seconds(settings.stop_after)} of simulation"
            + (f", resuming at {self.resume.seconds:g} s ({_seconds(max(0.0, budget))} left)" if self.resume.seconds else "")
        )
        self.heartbeat.update(
            stopAfterSeconds=None if math.isinf(settings.stop_after) else settings.stop_after, partialSequence=self.sequence
        )
        self._progress()
        self.pusher = self._start_pusher(settings)
        self.series = Series(settings.series_file, settings.series_rows)
        self.watch = Watch(settings.observation_timeout, settings.brain_silence)
        self.bridge = Bridge(settings)
        try:
            if budget <= 0:
                # A previous pod checkpointed at or past the stop time and died before it finished: nothing is
                # left to simulate, only the end of the run.
                log("nothing left to simulate; finishing")
                self._end(allow_zero_steps=True)
            elif self._loop(step, validator, budget):
                self._end()
        finally:
            self.bridge.close()

    def _seed(self) -> str:
        seed = self.env.get("SIMFLEET_SEED")
        if seed:
            return seed
        try:
            seeds = json.loads(self.env.get("SIMFLEET_SEEDS", "[]"))
            return str(seeds[int(self.env.get("JOB_COMPLETION_INDEX", "0"))])
        except (ValueError, IndexError, TypeError):
            return "?"

    def _start_pusher(self, settings: Settings) -> Pusher | None:
        """The seed's gauges to the Pushgateway (metrics.py), when simfleet gave its address."""
        url = settings.pushgateway_url
        if not url:
            return None
        if not url.startswith("http://"):
            log(f"not pushing metrics: SIMFLEET_PUSHGATEWAY_URL is not an http:// URL: {url!r}")
            return None
        recoveries = read_recoveries(settings.checkpoints_dir / ".started")
        heartbeat, latency = self.heartbeat, self.latency

        def gauges() -> dict[str, float]:
            with heartbeat.lock:
                state = dict(heartbeat.state)
            return seed_gauges(state, latency.mean_since_last(), recoveries)

        def alive() -> bool:
            # A glue wedged beyond its own bounds stops beating, and stops pushing with it.
            return time.monotonic() - heartbeat.last <= settings.metrics_every + settings.heartbeat_every

        labels = {"job": JOB, "run": self.env.get("SIMFLEET_RUN", "?"), "seed": self._seed()}
        record = settings.checkpoints_dir / ".metrics"
        return Pusher(url, labels, settings.metrics_every, settings.metrics_timeout, record, gauges, alive).start()

    def _progress(self) -> None:
        self.heartbeat.update(
            steps=self.resume.steps + self.stats.steps, simulationSeconds=round(self.resume.seconds + self.stats.sim_seconds, 6)
        )

    # -- the control loop ------------------------------------------------------------------

    def _loop(self, step: Callable[[Any], Any], validator: Validator, budget: float) -> bool:
        """Step until the budget is spent or the episode is done; False when the run already has its outcome."""
        settings, bridge, guard, series = self.settings, self.bridge, self.guard, self.series
        assert settings is not None and bridge is not None and guard is not None and series is not None
        started = time.monotonic()
        first_at: float | None = None
        last_time: float | None = None
        next_partial = math.inf
        next_flush = started + settings.series_every
        busy_from: float | None = None  # when glue stopped listening to the simulator to act on an observation
        self.heartbeat.beat("waiting")
        while True:
            self.heartbeat.beat()
            if busy_from is not None:
                self.watch.away(busy_from, time.monotonic())
                busy_from = None
            if self.terminated_at is not None:
                self._interrupt()
                return False
            bridge.connection_events()
            lost = self.watch.check(bridge.dropped, self.stats.steps, time.monotonic())
            if lost is not None:
                return self._lose(*lost)
            if time.monotonic() >= next_flush:
                series.flush()
                next_flush = time.monotonic() + settings.series_every
            raw = bridge.observation(POLL_SLICE_MS / 1000)
            now = time.monotonic()
            observation = None if raw is None else self._parse(raw)
            if observation is None:
                if first_at is None and now - started >= settings.startup_timeout:
                    self.outcome.set(
                        EXIT_NO_SIMULATION, f"the simulator published no observation within {settings.startup_timeout:g} s"
                    )
                    return False
                continue
            n = self.stats.steps + 1
            sim_time = _float(observation.get("time"), last_time or 0.0)
            lost = self.watch.observed(observation, sim_time, n, now)
            if lost is not None:
                return self._lose(*lost)
            busy_from = now
            if first_at is None:
                first_at = now
                if settings.checkpoint_every > 0:
                    next_partial = now + settings.checkpoint_every
                self.heartbeat.beat("running")
                log(f"first observation (simulation time {sim_time:g} s) after {now - started:.1f} s")
            elif last_time is not None:
                dt = max(0.0, sim_time - last_time)
                self.stats.sim_seconds += dt
                self.stats.energy_joules += _float(observation.get("energy_rate"), 0.0) * dt
            last_time = sim_time
            latency, lost = self._ask_brain(observation, n)
            if lost is not None:
                return self._lose(*lost)
            if self.terminated_at is not None:
                continue  # the top of the loop handles it; do not start a step that may never return
            try:
                action = guard.call(step, observation, n)
            except Terminated:
                self._interrupt()
                return False
            except StepTimeout:
                return self._lose(EXIT_STEP_TIMEOUT, f"step {n} did not return within {settings.step_timeout:g} s")
            except Exception as err:
                print(f"glue: step {n} raised:", file=sys.stderr, flush=True)
                traceback.print_exc()
                self.outcome.set(EXIT_USER_CODE, f"step {n} raised {type(err).__name__}: {err}")
                self._finish_sidecars()
                return False
            payload, problem = encode_action(action, validator)
            if payload is None:
                self.outcome.set(EXIT_INVALID_ACTION, f"step {n} returned an invalid action {problem}")
                self._finish_sidecars()
                return False
            if not bridge.send_action(payload):
                self.stats.actions_dropped += 1
            self._account(observation, action)
            series.add(self.resume.steps + n, observation, action, latency)
            self._progress()
            if observation.get("done") is True:
                log(f"episode done at step {n} (simulation time {sim_time:g} s)")
                return True
            if self.stats.sim_seconds >= budget:
                log(f"simulation time reached at step {n} ({self.resume.seconds + self.stats.sim_seconds:g} s)")
                return True
            if now >= next_partial:
                self._save_partial()
                next_partial = time.monotonic() + settings.checkpoint_every

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        try:
            observation = json.loads(raw)
        except ValueError:
            observation = None
        if not isinstance(observation, dict):
            self.stats.bad_observations += 1
            if self.stats.bad_observations == 1:
                log(f"ignoring an observation that is not a JSON object: {raw[:80]!r}")
            return None
        return observation

    def _ask_brain(self, observation: dict[str, Any], n: int) -> tuple[float | None, tuple[int, str] | None]:
        """(latency in ms or None when skipped, (code, reason) when the answer shows the brain restarted)."""
        assert self.settings is not None
        asked = time.monotonic()
        self.watch.started_asking(asked)
        reply = self._ask({"observation": observation}, self.settings.brain_timeout)
        if reply is None:
            self.stats.brain_skipped += 1
            return None, None
        answered = time.monotonic()
        lost = self.watch.heard(BRAIN, reply, n, answered)
        if lost is not None:
            return None, lost
        self.latency.add(answered - asked)
        brain = reply.get("brain")
        observation["brain"] = brain if isinstance(brain, dict) else {}
        self.stats.brain_answers += 1
        return round((answered - asked) * 1000, 3), None

    def _account(self, observation: dict[str, Any], action: Any) -> None:
        self.stats.steps += 1
        if isinstance(action, dict) and action.get("cmd_type") == "stop":
            self.stats.stops += 1
        self.stats.max_nociceptor = max(self.stats.max_nociceptor, _float(observation.get("nociceptor"), 0.0))

    def _finish_files(self) -> None:
        """steps.csv, the final metrics push, the summary, then the done marker (always last), then a last heartbeat."""
        settings = self.settings
        artifacts = settings.artifacts_dir if settings else Path(self.env.get("SIMFLEET_ARTIFACTS_DIR") or "/artifacts")
        if self.series is not None:
            try:
                self.series.flush()
            except OSError as err:
                log(f"could not write {self.series.path}: {err}")
        extra: dict[str, Any] = {
            "resumed_seconds": self.resume.seconds,
            "elapsed_seconds": round(self.resume.seconds + self.stats.sim_seconds, 6),
            "incarnation": self.result.incarnation,
        }
        if self.pusher is not None:
            # The final values before the marker: the uploader measures its linger from this push (.metrics).
            self.pusher.close()
            extra.update(metrics_pushes=self.pusher.pushes, metrics_push_failures=self.pusher.failures)
        self.result.write(self.outcome, self.stats, artifacts / "metrics" / "glue-summary.json", extra)
        self.heartbeat.beat("done", force=True)


def _float(value: Any, default: float) -> float:
    return float(value) if is_number(value) and math.isfinite(value) else default


def _seconds(value: float) -> str:
    return "no time limit" if math.isinf(value) else f"{value:g} s"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m glue_runtime /glue/glue.py", file=sys.stderr)
        return EXIT_CONFIG
    return Runtime(os.environ, Path(argv[1])).run()
