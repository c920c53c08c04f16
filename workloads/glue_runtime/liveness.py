"""Liveness: glue's heartbeat for the uploader, and glue's watch over each sidecar (incarnation, connection, silence).

The heartbeat file is rewritten (atomically, every SIMFLEET_HEARTBEAT_SECONDS) by the runtime's own waits: the
control loop, every request and save, and the step guard while a step() is within its time. It cannot be forgotten
by user code, and it stops when glue dies (SIGKILL, out of memory, os._exit) or wedges beyond its own timeouts, which
is how artifact-uploader tells "glue is alive, however slow the simulator" from "glue is gone":
    {"incarnation": id of this glue process, "pid": n, "phase": "starting"|"waiting"|"running"|"saving"|
     "finishing"|"done", "steps": n (resumed ones included), "simulationSeconds": s (resumed included),
     "stopAfterSeconds": s|null, "partialSequence": n, "beats": n, "at": unix seconds}

A sidecar is lost when its TCP connection drops (its process went away), when it answers with another incarnation
than before, when the simulator's time goes back, or when it is silent too long: the simulator after its first
observation (SIMFLEET_OBSERVATION_TIMEOUT_SECONDS), the brain without one answer in time
(SIMFLEET_BRAIN_SILENCE_SECONDS).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bridge import BRAIN, SIMULATOR
from .result import EXIT_BRAIN_LOST, EXIT_SIMULATOR_LOST, write_json_atomic


class Heartbeat:
    """Glue's heartbeat file; thread-safe (the step guard beats from its own thread while a step() runs)."""

    def __init__(self, path: Path, every: float, incarnation: str) -> None:
        self.path = path
        self.every = every
        self.incarnation = incarnation
        self.lock = threading.Lock()
        self.last = -math.inf
        self.beats = 0
        self.state: dict[str, Any] = {"phase": "starting", "steps": 0, "simulationSeconds": 0.0}

    def update(self, **state: Any) -> None:
        with self.lock:
            self.state.update(state)

    def beat(self, phase: str | None = None, *, force: bool = False) -> None:
        with self.lock:
            if phase is not None and phase != self.state["phase"]:
                self.state["phase"] = phase
                force = True
            now = time.monotonic()
            if not force and now - self.last < self.every:
                return
            self.last = now
            self.beats += 1
            document = {**self.state, "incarnation": self.incarnation, "pid": os.getpid(), "beats": self.beats, "at": time.time()}
            # Not fsynced: it only has to be fresh for a reader on the same node, not to survive a crash. A full disk
            # must not end the run; the uploader's wait on a stale heartbeat is bounded.
            with contextlib.suppress(OSError):
                write_json_atomic(self.path, document, durable=False)


@dataclass
class Sidecar:
    name: str
    incarnation: str | None = None
    last_heard: float | None = None  # monotonic; when it last answered (in time) or published
    last_step: int = 0  # the step of that answer


class Watch:
    """What glue knows of each sidecar during the control loop; each check returns (exit code, reason) when lost."""

    def __init__(self, observation_timeout: float, brain_silence: float) -> None:
        self.observation_timeout = observation_timeout
        self.brain_silence = brain_silence
        self.sidecars = {BRAIN: Sidecar(BRAIN), SIMULATOR: Sidecar(SIMULATOR)}
        self.last_time: float | None = None  # the simulator's latest simulation time

    @staticmethod
    def code(name: str) -> int:
        return EXIT_BRAIN_LOST if name == BRAIN else EXIT_SIMULATOR_LOST

    def heard(self, name: str, message: dict[str, Any], step: int, now: float) -> tuple[int, str] | None:
        """A reply or an observation from `name`: a new incarnation means the process restarted."""
        sidecar = self.sidecars[name]
        incarnation = message.get("incarnation")
        if isinstance(incarnation, str) and incarnation:
            if sidecar.incarnation is None:
                sidecar.incarnation = incarnation
            elif incarnation != sidecar.incarnation:
                return self.code(name), f"{name} restarted at step {step} (incarnation {incarnation}, was {sidecar.incarnation})"
        sidecar.last_heard = now
        sidecar.last_step = step
        return None

    def observed(self, observation: dict[str, Any], sim_time: float, step: int, now: float) -> tuple[int, str] | None:
        lost = self.heard(SIMULATOR, observation, step, now)
        if lost is None and self.last_time is not None and sim_time < self.last_time:
            lost = (
                EXIT_SIMULATOR_LOST,
                f"{SIMULATOR} restarted at step {step} (simulation time went back from {self.last_time:g} s to {sim_time:g} s)",
            )
        self.last_time = sim_time
        return lost

    def away(self, since: float, now: float) -> None:
        """Glue did not listen for observations from `since` to `now` (it asked the brain, ran step(), saved a partial
        checkpoint): that time is not the simulator's silence. A save longer than the observation timeout, or a step()
        with a longer timeout, must not be taken for a stalled simulator, which may publish only after the next action."""
        sim = self.sidecars[SIMULATOR]
        if sim.last_heard is not None and now > since:
            sim.last_heard = min(now, sim.last_heard + (now - since))

    def started_asking(self, now: float) -> None:
        """The brain's silence is counted from the first request, not from glue's start."""
        brain = self.sidecars[BRAIN]
        if brain.last_heard is None:
            brain.last_heard = now

    def check(self, dropped: dict[str, bool], step: int, now: float) -> tuple[int, str] | None:
        """Connections that dropped, then silences."""
        for name in (SIMULATOR, BRAIN):
            if dropped[name]:
                return self.code(name), f"{name} restarted or died at step {step} (its connection to glue dropped)"
        sim = self.sidecars[SIMULATOR]
        if sim.last_heard is not None and now - sim.last_heard > self.observation_timeout:
            return EXIT_SIMULATOR_LOST, f"{SIMULATOR} silent for {self.observation_timeout:g} s after step {step}"
        brain = self.sidecars[BRAIN]
        if brain.last_heard is not None and now - brain.last_heard > self.brain_silence:
            since = f"since step {brain.last_step}" if brain.last_step else "at all"
            return EXIT_BRAIN_LOST, f"{BRAIN} silent for {self.brain_silence:g} s (no answer in time {since}; now at step {step})"
        return None
