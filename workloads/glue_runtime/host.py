"""The user's code: importing the glue file as the module `user_glue`, and calling its step() under a time bound."""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .liveness import Heartbeat
from .settings import ConfigError


class UserCodeError(Exception):
    """The user's code raised (exit 6)."""


class Terminated(BaseException):
    """SIGTERM arrived while step() was running; BaseException so `except Exception` in it cannot eat it."""


class StepTimeout(BaseException):
    """step() ran past its time; BaseException for the same reason."""


def load_step(path: Path) -> Callable[[Any], Any]:
    """The user's step(); ConfigError if the file or the function is missing, UserCodeError if import raised."""
    if not path.is_file():
        raise ConfigError(f"glue file {path} does not exist")
    spec = importlib.util.spec_from_file_location("user_glue", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_glue"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        traceback.print_exc()
        raise UserCodeError(f"importing {path} raised {type(err).__name__}: {err}") from err
    step = getattr(module, "step", None)
    if not callable(step):
        raise ConfigError(f"{path} defines no step(observation) function")
    return step  # type: ignore[no-any-return]


class StepGuard:
    """Bounds each call of step().

    SIGALRM at the timeout raises StepTimeout inside it (a loop or a sleep in Python is interrupted). A call that does
    not give control back to Python (a C extension that ignores signals) is ended by the watchdog thread `grace`
    seconds later (SIMFLEET_STUCK_GRACE_SECONDS): `on_stuck(step)` writes the outcome and ends the process. While a
    step is within its time the watchdog also beats the heartbeat, so a long but legitimate step() is not taken for a
    dead glue.
    """

    def __init__(self, timeout: float, grace: float, heartbeat: Heartbeat, on_stuck: Callable[[int, float], None]) -> None:
        self.default_timeout = timeout
        self.timeout = timeout
        self.grace = grace
        self.heartbeat = heartbeat
        self.on_stuck = on_stuck
        self.in_step = False
        self.number = 0
        self.started: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="step-watchdog", daemon=True)
        self.thread.start()

    def call(self, step: Callable[[Any], Any], argument: Any, number: int, timeout: float | None = None) -> Any:
        """step(argument) within `timeout` (the step timeout by default). Number 0 is the import of the glue file,
        which gets its own, longer allowance."""
        self.number = number
        self.timeout = self.default_timeout if timeout is None else timeout
        self.started = time.monotonic()
        self.in_step = True
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            return step(argument)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.in_step = False
            self.started = None

    def on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.in_step:
            self.in_step = False
            raise StepTimeout()

    def _watch(self) -> None:
        while not self.stop.wait(self.heartbeat.every / 2):
            started = self.started
            if started is None:
                continue
            elapsed = time.monotonic() - started
            if elapsed <= self.timeout:
                self.heartbeat.beat()
            elif elapsed > self.timeout + self.grace and self.started == started:
                self.on_stuck(self.number, self.timeout)
                return

    def close(self) -> None:
        self.stop.set()
