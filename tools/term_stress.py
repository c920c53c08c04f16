"""SIGTERM at random moments into a bash script that expands command substitutions: the fault that lost the pod
scripts' trap (term.sh, "Why a guardian").

    python -m tools.term_stress               # 200 runs of each shape
    python -m tools.term_stress --runs 50

Each run starts a small bash script that sources workloads/scripts/common.sh and loops over a command with four
`$(...)` in it (upload.sh's progress record has two) and a pause, gives it SIGTERM after a random delay, and waits
up to --patience seconds for it to say "terminated" and end. Two shapes of the same loop:
  trap   the TERM trap in the shell that expands the substitutions, as the pod scripts had it;
  guard  term.sh guard_term: the trap in a guardian that only waits, the loop in its worker.
It prints, per shape, the runs, the SIGTERMs lost (no "terminated", or bash's "unexpected EOF" on stderr), of those
how many left the script running after --patience seconds and how many had the parse error, the processes a run
that ended left behind in its session, and how long a SIGTERM took to end the script (median and slowest, over the
runs that did not lose it). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMON = Path(__file__).resolve().parent.parent / "workloads" / "scripts" / "common.sh"

LOOP = """echo ready
while [ "$terminated" = 0 ]; do
  x="$(echo a)$(echo b)$(echo c)$(echo d)"
  pause 0.001
done
echo terminated
"""
SHAPES = {
    "trap": f"""#!/bin/bash
set -uo pipefail
NAME=term-stress
source "{COMMON}"
terminated=0
trap 'terminated=1' TERM
{LOOP}""",
    "guard": f"""#!/bin/bash
set -uo pipefail
NAME=term-stress
source "{COMMON}"
guard_term notify "$@"
{LOOP}""",
}


@dataclass
class Tally:
    """What the runs of one shape came to."""

    shape: str
    runs: int = 0
    lost: int = 0  # no "terminated", or bash's parse error on stderr
    hung: int = 0  # ... of which the script was still running after `patience` seconds
    parse_errors: int = 0  # ... of which stderr has bash's "unexpected EOF while looking for matching `)'"
    leftovers: int = 0  # processes of a run's session still there after it ended (a watcher, a sleep)
    seconds: list[float] = field(default_factory=list)  # SIGTERM to the script's end, for the runs that ended
    messages: list[str] = field(default_factory=list)  # stderr of the runs that lost it

    def row(self) -> list[str]:
        ended = sorted(self.seconds)
        median = f"{statistics.median(ended) * 1000:.1f}" if ended else "-"
        slowest = f"{ended[-1] * 1000:.1f}" if ended else "-"
        counts = (self.runs, self.lost, self.hung, self.parse_errors, self.leftovers)
        return [self.shape, *map(str, counts), median, slowest]


def session_processes(session: int) -> list[int]:
    """The pids of the live processes in a session (/proc/<pid>/stat after the command's name: state, ppid, pgrp,
    session). Zombies are not counted: an ended child whose parent ended first waits there for init to reap it."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def run_once(script: Path, tally: Tally, patience: float, max_delay: float) -> None:
    """One run: start, SIGTERM after a random delay, then the end within `patience` seconds or a lost SIGTERM."""
    process = subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # killpg below ends everything it started, as a container's end does
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(script.parent)},
    )
    assert process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{script.name} did not start: {process.communicate(timeout=patience)}")
        time.sleep(random.uniform(0, max_delay))
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=patience)
            ended = time.monotonic()
        except subprocess.TimeoutExpired:
            ended = None
        tally.runs += 1
        if ended is None:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        if ended is None or "terminated" not in stdout or "unexpected EOF" in stderr:
            tally.lost += 1
            tally.hung += ended is None
            tally.parse_errors += "unexpected EOF" in stderr
            tally.messages.append(stderr.strip())
        else:
            tally.seconds.append(ended - sent)
            tally.leftovers += len(session_processes(process.pid))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def stress(shape: str, runs: int, patience: float = 2.0, max_delay: float = 0.05, stop_at_loss: bool = False) -> Tally:
    """`runs` runs of a shape ("trap" or "guard"); with stop_at_loss, the first lost SIGTERM ends the series."""
    tally = Tally(shape)
    with tempfile.TemporaryDirectory(prefix="term-stress-") as scratch:
        script = Path(scratch) / f"{shape}.sh"
        script.write_text(SHAPES[shape])
        for _ in range(runs):
            run_once(script, tally, patience, max_delay)
            if stop_at_loss and tally.lost:
                break
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs of each shape (200)")
    parser.add_argument("--patience", type=float, default=2.0, help="seconds a SIGTERM may take to end a run (2)")
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append", help="only this shape (repeatable)")
    args = parser.parse_args()
    bash = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=True)
    print(f"bash {bash.stdout.strip()}; {args.runs} runs of each shape, SIGTERM 0 to 50 ms after the loop starts")
    rows = [["shape", "runs", "lost", "hung", "parse errors", "leftovers", "median ms", "slowest ms"]]
    for shape in args.shape or ["trap", "guard"]:
        tally = stress(shape, args.runs, args.patience)
        rows.append(tally.row())
        if tally.messages:
            print(f"{shape}: first lost run said: {tally.messages[0] or '(nothing)'}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
