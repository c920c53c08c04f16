"""The signal dispositions the scripts under test start with: a container's, whatever started the tests.

A process started in the background by a non-interactive shell (`make test &` in a CI script, `nohup ... &`) has
SIGINT and SIGQUIT ignored, and every child inherits an ignored signal through exec. A shell cannot trap a signal it
started with ignored (POSIX: "Signals that were ignored on entry to a non-interactive shell cannot be trapped or
reset"), so job-entry.sh's INT trap was silently not set and the test that sends it SIGINT waited out its 120 s. In a
pod nothing is ignored: the container's PID 1 starts with every signal at its default."""

from __future__ import annotations

import signal
from typing import Any

RESTORED: dict[signal.Signals, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGQUIT: signal.SIG_DFL}


def restore() -> list[str]:
    """Give SIGINT and SIGQUIT back their defaults (Python's for SIGINT) where this process started with them ignored;
    the names of those it restored."""
    restored = []
    for number, handler in RESTORED.items():
        if signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, handler)
            restored.append(number.name)
    return restored
