"""How the command prints: rich tables and colours on a terminal, plain text when piped, JSON with --json."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import click
from rich.console import Console

COLOURS = {
    "Succeeded": "green",
    "Running": "cyan",
    "Admitted": "cyan",
    "Queued": "yellow",
    "Waiting": "yellow",
    "Failed": "red",
    "Interrupted": "red",
    "Incomplete": "red",
    "Blocked": "red",
    "Missing": "red",
    "Cancelled": "magenta",
}


def out() -> Console:
    # Wide enough that a piped table is not folded into an unreadable column.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=not sys.stdout.isatty())


def err() -> Console:
    # A note stays one line when stderr is not a terminal (a log file, a CI step), so it can be grepped.
    return Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def note(message: str) -> None:
    """A line about how the answer was read (a fallback, an estimate): on stderr, so stdout stays the answer."""
    err().print(f"[dim]simfleet:[/dim] {message}")


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def coloured(status: str) -> str:
    colour = COLOURS.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def since(stamp: str | None) -> str:
    """A UTC time as it is shown: 2026-12-07 10:02 UTC."""
    if not stamp:
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def money(usd: float, estimated: bool) -> str:
    return f"{'~' if estimated else ''}${usd:,.2f}"
