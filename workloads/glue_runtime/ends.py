"""How an attempt ends, for the runtime: the requests to Monty under SIGTERM's cap, its saves (final and partial), the
finish handshake, and the outcome of each ending (finished, a party lost, interrupted, a step() stuck for good)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import checkpoints
from .bridge import BRAIN, SIMULATOR, Bridge
from .host import StepGuard
from .liveness import Heartbeat, Watch
from .result import (
    EXIT_BRAIN_LOST,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_NO_SIMULATION,
    EXIT_OK,
    EXIT_SAVE_FAILED,
    EXIT_STEP_TIMEOUT,
    Outcome,
    Result,
    Stats,
    log,
)
from .settings import Settings

SIDECAR_OF = {"sim": SIMULATOR, "monty": BRAIN}


class Ends:
    """The part of the runtime that ends an attempt; Runtime (runtime.py) sets this state and runs the loop."""

    env: Any
    glue_path: Path
    settings: Settings | None
    bridge: Bridge | None
    heartbeat: Heartbeat
    watch: Watch
    guard: StepGuard | None
    outcome: Outcome
    result: Result
    stats: Stats
    resume: checkpoints.Resume
    sequence: int
    last_partial_at: float | None
    terminated_at: float | None

    def _cap(self, deadline: float) -> float:
        """A deadline, shortened to the SIGTERM budget once SIGTERM has arrived."""
        if self.terminated_at is None or self.settings is None:
            return deadline
        return min(deadline, self.terminated_at + self.settings.term_save_timeout)

    def _ask(self, message: dict[str, Any], timeout: float, socket: Any = None) -> dict[str, Any] | None:
        assert self.bridge is not None
        return self.bridge.request(socket or self.bridge.monty, message, timeout, self._cap, self.heartbeat.beat)

    # -- checkpoints -----------------------------------------------------------------------

    def _brain_problem(self, reply: dict[str, Any]) -> str | None:
        """A save answered by another brain than the one that ran is no save of this run."""
        assert self.bridge is not None
        self.bridge.connection_events()
        if self.bridge.dropped[BRAIN]:
            return "the brain restarted or died before it (its connection to glue dropped)"
        lost = self.watch.heard(BRAIN, reply, self.stats.steps, time.monotonic())
        return None if lost is None else f"the {lost[1]}"

    def _save(self, target: Path, timeout: float) -> str | None:
        self.heartbeat.beat("saving")
        return checkpoints.save(self._ask, target, timeout, self._brain_problem, self._waited)

    def _waited(self, timeout: float) -> str:
        """How long a request that got no answer was waited for: its timeout, or less when a SIGTERM cut it short."""
        assert self.settings is not None
        budget = self.settings.term_save_timeout
        if self.terminated_at is not None and time.monotonic() >= self.terminated_at + budget:
            return f"before the {budget:g} s glue has after SIGTERM ran out"
        return f"within {timeout:g} s"

    def _save_partial(self, timeout: float | None = None) -> bool:
        assert self.settings is not None
        phase = self.heartbeat.state["phase"]
        problem = self._save(self.settings.checkpoints_dir / "partial.mstate", timeout or self.settings.save_timeout)
        self.heartbeat.beat(phase)
        if problem is not None:
            self.stats.partial_failures += 1
            log(f"partial checkpoint failed, the run goes on: {problem}")
            return False
        self.sequence += 1
        elapsed = self.resume.seconds + self.stats.sim_seconds
        checkpoints.write_partial_record(
            self.settings.checkpoints_dir, elapsed, self.resume.steps + self.stats.steps, self.sequence
        )
        self.stats.partial_checkpoints += 1
        self.last_partial_at = time.monotonic()
        self.heartbeat.update(partialSequence=self.sequence)
        log(f"partial checkpoint {self.sequence} saved at {elapsed:g} s of simulation, step {self.stats.steps}")
        return True

    # -- endings ---------------------------------------------------------------------------

    def _finish_sidecars(self, skip: str | None = None) -> None:
        """`finish` to both sidecars (not to one that is gone) at once; an answer from a restarted one is no ack."""
        assert self.settings is not None and self.bridge is not None
        self.heartbeat.beat("finishing")
        names = tuple(name for name in ("sim", "monty") if SIDECAR_OF[name] != skip)
        answers = self.bridge.finish(names, self.settings.finish_timeout, self._cap, self.heartbeat.beat)
        for name, reply in answers.items():
            lost = self.watch.heard(SIDECAR_OF[name], reply, self.stats.steps, time.monotonic())
            self.outcome.finish_acks[name] = reply.get("finished") is True and lost is None
        for name in names:
            if name not in answers:
                log(f"no finish acknowledgement from {name} {self._waited(self.settings.finish_timeout)}; going on")
        acks = self.outcome.finish_acks
        log(f"finish acknowledged: sim {_yes(acks['sim'])}, monty {_yes(acks['monty'])}")

    def _lose(self, code: int, reason: str) -> bool:
        """A sidecar lost or a step() past its time: the rest are told to finish, and with checkpoint.every on a
        partial checkpoint of a brain still intact is saved, so a replacement pod resumes from it."""
        assert self.settings is not None
        log(reason)
        self.outcome.set(code, reason)
        if code != EXIT_BRAIN_LOST and self.settings.checkpoint_every > 0 and self.stats.steps:
            self._save_partial()
        self._finish_sidecars(skip=BRAIN if code == EXIT_BRAIN_LOST else SIMULATOR if code != EXIT_STEP_TIMEOUT else None)
        return False

    def _end(self, *, allow_zero_steps: bool = False) -> None:
        assert self.settings is not None and self.bridge is not None
        settings = self.settings
        # A brain lost between the last step and now; after its finish acknowledgement it may go (the save, if one is
        # asked for, is vetted on its own).
        self.bridge.connection_events()
        if self.bridge.dropped[BRAIN]:
            self.outcome.set(EXIT_BRAIN_LOST, f"brain restarted or died after step {self.stats.steps}, before the end")
            self._finish_sidecars(skip=BRAIN)
            return
        self._finish_sidecars()
        if settings.save_checkpoint:
            problem = self._save(settings.checkpoint_out, settings.save_timeout)
            if problem is not None:
                if self.terminated_at is not None:  # it may have come during the save, and cut it short
                    self.outcome.set(EXIT_INTERRUPTED, f"terminated (SIGTERM) during the final save: {problem}")
                else:
                    self.outcome.set(EXIT_SAVE_FAILED, f"the final checkpoint save failed: {problem}")
                return
            self.outcome.checkpoint_saved = True
            log(f"final checkpoint saved to {settings.checkpoint_out}")
        if self.stats.steps == 0 and not allow_zero_steps:
            self.outcome.set(EXIT_NO_SIMULATION, "the run ended after zero steps")
            return
        missing = [SIDECAR_OF[name] for name, acked in self.outcome.finish_acks.items() if not acked]
        if missing and self.terminated_at is not None:
            self.outcome.set(EXIT_INTERRUPTED, "terminated (SIGTERM) while waiting for the finish acknowledgements")
        elif missing:
            self.outcome.set(
                EXIT_INCOMPLETE,
                f"the {' and the '.join(missing)} did not acknowledge finish within {settings.finish_timeout:g} s, "
                "so the videos, logs or metrics it writes may be cut short",
            )
        else:
            self.outcome.set(EXIT_OK, None)

    def _interrupt(self) -> None:
        """After SIGTERM: partial save, then finish; every wait is capped so all of it fits in TERM_SAVE_SECONDS."""
        assert self.terminated_at is not None and self.settings is not None
        n = self.stats.steps
        log(f"SIGTERM at step {n}: saving a partial checkpoint, then finishing")
        if self.last_partial_at is not None and self.last_partial_at >= self.terminated_at:
            saved = True  # a periodic save that was under way when TERM came is as fresh as it gets
        elif n == 0:
            saved = False  # no step ran in this pod: the brain is still what it loaded, nothing to save
        else:
            saved = self._save_partial(timeout=min(self.settings.save_timeout, self.settings.term_save_timeout))
        if n > 0:
            self._finish_sidecars()
        self.outcome.set(
            EXIT_INTERRUPTED,
            f"terminated (SIGTERM) after {n} steps and {self.resume.seconds + self.stats.sim_seconds:g} s of simulation; "
            + ("partial checkpoint saved" if saved else "no partial checkpoint saved"),
        )

    def _stuck(self, n: int, timeout: float) -> None:
        """From the step watchdog's thread: step() ignored SIGALRM. Say so and end the process; nothing else can."""
        what = f"step {n}" if n else f"importing {self.glue_path}"
        self.outcome.set(
            EXIT_STEP_TIMEOUT,
            f"{what} did not return within {timeout:g} s and could not be interrupted (a call that ignores signals)",
        )
        self._finish_files()
        os._exit(EXIT_STEP_TIMEOUT)

    def _finish_files(self) -> None:
        raise NotImplementedError


def _yes(value: bool) -> str:
    return "yes" if value else "no"
