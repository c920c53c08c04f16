"""What a run costs to plan, measured as users plan: the whole `python -m tools.plan` of N-run stacks, beside the floor.

The floor is N bare dynamic resources (trivial props, a do-nothing provider) registered under the plan's own mocks:
what any dynamic resource costs the Pulumi SDK. A run's cost is the marginal wall time between a 1-run and an N-run
stack, so interpreter start-up, imports and the platform's own resources cancel out.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult, Resource, ResourceProvider

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 3.0  # a run may cost at most this many bare dynamic resources to plan, the whole plan included (#17)
TARGET_LARGE_SECONDS = 60.0  # the whole plan of a 10,000-run stack on a 2-core machine (#17)
LARGE = 10_000


class NullProvider(ResourceProvider):
    """The floor: a dynamic provider that does nothing."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("null", props)


class NullResource(Resource):
    def __init__(self, name: str, props: dict[str, Any]) -> None:
        super().__init__(NullProvider(), name, props)


def scale_stack(count: int, base: Path = PROJECT_ROOT / "Pulumi.dev.yaml") -> dict[str, Any]:
    """A stack document with `count` runs cycled from the base stack's runs (renamed; `run:` sources remapped)."""
    from config.sources import load_yaml

    document = load_yaml(base.read_text())
    template = document["config"]["simfleet:runs"]
    runs: list[dict[str, Any]] = []
    for i in range(count):
        run = copy.deepcopy(template[i % len(template)])
        run["name"] = f"run-{i:05d}"
        source = (run.get("checkpoint") or {}).get("from")
        if isinstance(source, str) and source.startswith("run:"):
            # Point at the copy of the source made in the same cycle (it precedes this run).
            offset = (i % len(template)) - next(j for j, r in enumerate(template) if r["name"] == source[4:])
            run["checkpoint"]["from"] = f"run:run-{i - offset:05d}"
        runs.append(run)
    document["config"]["simfleet:runs"] = runs
    return document


def _under_mocks(build: Callable[[], Any]) -> tuple[float, list[Any], float]:
    """Seconds to register what `build` creates under the plan's mocks, the registrations, and the CPU seconds."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func

    from tools.mocks import RecordingMonitor, SimfleetMocks
    from tools.plan import without_cycle_collection

    settings.reset_options()
    pulumi.runtime.set_all_config({"aws:region": "us-east-1"})
    loop = asyncio.new_event_loop()  # before set_mocks: the root Stack's futures bind to the current loop
    asyncio.set_event_loop(loop)
    mocks = SimfleetMocks("us-east-1")
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="simfleet", stack="bench", preview=False, monitor=monitor)
    started, cpu = time.perf_counter(), time.process_time()
    # The plan's own runtime: the cycle collector off as tools/plan.py turns it off, so the floor is measured like the
    # plan (with it on, collections walking the growing heap cost a bare resource about as much as its registration).
    try:
        with without_cycle_collection():
            loop.run_until_complete(run_pulumi_func(build))
    finally:
        loop.close()
    return time.perf_counter() - started, monitor.registrations, time.process_time() - cpu


def floor_seconds(count: int) -> tuple[float, float]:
    """Wall and CPU seconds of `count` bare dynamic resources under the plan's mocks."""
    from tools.bench_plan import NullResource as Floor  # the importable class, pickled by reference like SimRunProvider
    from workloads.sdk_fix import install_sdk_fix

    install_sdk_fix()  # the floor needs it too beyond ~350 resources

    def build() -> None:
        for i in range(count):
            Floor(f"bare-{i:05d}", {"x": 1})

    wall, _, cpu = _under_mocks(build)
    return wall, cpu


@dataclass(frozen=True)
class PlanRun:
    """One `python -m tools.plan` in its own process, as `make plan` runs it."""

    seconds: float  # wall time of the whole command: start-up, program, manifests, policies, cost, changes
    program_seconds: float  # the program's own registration time, as the plan's summary prints it
    peak_mb: float  # the process's peak resident memory
    cpu_seconds: float  # the process's user + system CPU time, start-up to exit: what the plan costs a machine
    out: Path  # where it wrote the plan (<out>/<stack>/)
    # Of cpu_seconds, the kernel's: first touching the plan's memory, and creating the run files, which on ext4 costs
    # several times more while many inodes were deleted in the last ~30 s on the same disk (by anyone:
    # fs/ext4/ialloc.c).
    sys_seconds: float = float("nan")


# `python -m tools.plan ARGS` that also reports its own peak resident memory (KiB) on stderr as it ends. The plan ends
# through os._exit (tools/plan.py exit_now), so the report goes just before it. The peak is VmHWM, this process's own:
# Linux keeps ru_maxrss across exec, so a child spawned by a large parent (this benchmark after a 10,000-run floor)
# would report the parent's peak.
_PLAN_WITH_PEAK = (
    "import os, runpy, sys\n"
    "def report():\n"
    "    try:\n"
    "        peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
    "    except (OSError, StopIteration):\n"
    "        import resource\n"
    "        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    print(f'peak-kib {peak}', file=sys.stderr, flush=True)\n"
    "end = os._exit\n"
    "def reported_exit(code):\n"
    "    report()\n"
    "    end(code)\n"
    "os._exit = reported_exit\n"
    "runpy.run_module('tools.plan', run_name='__main__', alter_sys=True)\n"
)


def plan_command(args: list[str], out: Path) -> PlanRun:
    """Time one whole offline plan (`python -m tools.plan ARGS --out OUT`) in a fresh interpreter: its CPU time is the
    whole process's, from start-up to exit, as the kernel accounts it to this process's waited-for children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PLAN_WITH_PEAK, *args, "--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):  # 3: a mandatory policy violation, still a whole plan
        raise RuntimeError(f"tools.plan {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    program = re.search(r"resources in ([0-9.]+)s", done.stdout)
    peak = re.search(r"peak-kib (\d+)\s*$", done.stderr)
    kernel = usage.ru_stime - children.ru_stime
    return PlanRun(
        seconds,
        float(program[1]) if program else float("nan"),
        int(peak[1]) / 1024 if peak else float("nan"),
        usage.ru_utime - children.ru_utime + kernel,
        out,
        kernel,
    )


@dataclass(frozen=True)
class Planned:
    """The figures of one stack size: the best of its repeats for the plan and for the floor."""

    runs: int
    plan: PlanRun
    floor_seconds: float
    floor_cpu_seconds: float


def plan_sizes(counts: list[int], scratch: Path, progress: Callable[[str], None] = print) -> list[Planned]:
    """The whole plan and the floor for a 1-run stack and each N in `counts`, alternating so that a busy neighbour
    biases neither; the best of five up to 300 runs (300 runs add under a second of CPU to a 2 s plan, so one plan's
    noise moves their per-run figure by a third) and of three up to 2,000."""
    sizes: list[Planned] = []
    # Plans read no more are deleted at the end, not between plans: ext4 skips an inode deleted in the last ~30 s
    # when it allocates one (fs/ext4/ialloc.c recently_deleted), so thousands deleted just before a plan made the
    # plan's own file creation several times slower, in system time charged to it.
    spent: list[Path] = []
    for n in [1, *counts]:
        config = scratch / f"Pulumi.bench{n}.yaml"
        config.write_text(json.dumps(scale_stack(n)))
        repeats = 5 if n <= 300 else 3 if n <= 2000 else 1  # 10,000 runs once: 30 s, its noise a few percent
        best: PlanRun | None = None
        floor = floor_cpu = float("inf")
        for attempt in range(repeats):
            run = plan_command(["--config", str(config)], scratch / f"out-{n}-{attempt}")
            worse: PlanRun | None = run
            if best is None or run.cpu_seconds < best.cpu_seconds:
                worse, best = best, run
            if worse is not None:
                spent.append(worse.out)
            wall, cpu = floor_seconds(n)
            floor, floor_cpu = min(floor, wall), min(floor_cpu, cpu)
        assert best is not None
        if n != max(counts):
            spent.append(best.out)
        sizes.append(Planned(n, best, floor, floor_cpu))
        progress(f"  ... N = {n:,} done")
    for out in spent:
        shutil.rmtree(out)  # a 10,000-run plan's manifests are hundreds of MB: keep only what is read
    return sizes


def planning_rows(sizes: list[Planned]) -> list[list[str]]:
    """Per N: the whole plan's CPU and wall seconds, the floor's, each per run, their ratios, peak memory, verdicts.

    The ratio is of CPU time: on a shared machine a busy neighbour stretches wall time by whatever it takes, CPU time
    far less; wall time is shown beside it (on an idle machine the two are close: the plan is single-threaded)."""
    base, rows = sizes[0], []
    for size in sizes[1:]:
        extra = size.runs - base.runs
        per_cpu = (size.plan.cpu_seconds - base.plan.cpu_seconds) / extra
        per_wall = (size.plan.seconds - base.plan.seconds) / extra
        per_floor = (size.floor_cpu_seconds - base.floor_cpu_seconds) / extra
        ratio = per_cpu / per_floor if per_cpu > 0 and per_floor > 0 else None
        verdicts = ["below noise" if ratio is None else "ok" if ratio <= TARGET_RATIO else f"over {TARGET_RATIO:g}x"]
        if size.runs >= LARGE:
            fast = size.plan.cpu_seconds <= TARGET_LARGE_SECONDS
            verdicts.append(f"{size.runs:,} in {'<=' if fast else '>'} {TARGET_LARGE_SECONDS:g} CPU s")
        rows.append(
            [
                f"{size.runs:,}",
                f"{size.plan.cpu_seconds:.2f}",
                f"{size.plan.sys_seconds:.2f}",
                f"{size.plan.seconds:.2f}",
                f"{size.plan.program_seconds:.2f}",
                f"{size.floor_cpu_seconds:.2f}",
                f"{1000 * per_cpu:.2f}",
                f"{1000 * per_wall:.2f}",
                f"{1000 * per_floor:.2f}",
                "-" if ratio is None else f"{ratio:.2f}x",
                f"{size.plan.peak_mb:,.0f}",
                ", ".join(verdicts),
            ]
        )
    return rows


PLANNING_HEADER = [
    "N",
    "plan CPU s",
    "of it sys s",
    "plan wall s",
    "program wall s",
    "floor CPU s",
    "plan CPU ms/run",
    "plan wall ms/run",
    "floor CPU ms/res",
    "ratio (CPU)",
    "peak MB",
    "",
]


def manifest_sizes(plan_dir: Path) -> dict[str, Any]:
    """What the plan's manifests hold per run (`runs/<run>.yaml`), and its shared runtime ConfigMaps (`shared/`)."""
    runs = plan_dir / "manifests" / "runs"
    per_run = {f.stem: f.stat().st_size for f in runs.iterdir()} if runs.is_dir() else {}
    shared = sorted((plan_dir / "manifests" / "shared").glob("*_configmap_simfleet-runtime-*.yaml"))
    return {
        "runs": len(per_run),
        "mean_kb": sum(per_run.values()) / len(per_run) / 1024 if per_run else 0.0,
        "max_kb": max(per_run.values(), default=0) / 1024,
        "max_run": max(per_run, key=per_run.__getitem__, default="-"),
        "runtime_configmaps": len(shared),
        "runtime_kb": sum(f.stat().st_size for f in shared) / 1024,
    }
