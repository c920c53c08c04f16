"""The benchmark (`make bench`): plan time of N runs against bare dynamic resources, stack plan times, provider overhead.

    python -m tools.bench            # everything, a few minutes
    python -m tools.bench --quick    # N = 10, 100 only

Offline: Pulumi mocks, the fake Kubernetes API server of tests/fake_kube.py and fake AWS credentials (presigning
an EKS token is local). Prints one compact table per part; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5


class NullProvider(ResourceProvider):
    """The floor: a dynamic provider that does nothing."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("null", props)


class NullResource(Resource):
    def __init__(self, name: str, props: dict[str, Any]) -> None:
        super().__init__(NullProvider(), name, props)


def scale_stack(count: int, base: Path = PROJECT_ROOT / "Pulumi.dev.yaml") -> dict[str, Any]:
    """A stack document with `count` runs cycled from the base stack's runs (renamed; `run:` sources remapped)."""
    document = yaml.safe_load(base.read_text())
    template = document["config"]["simfleet:runs"]
    runs: list[dict[str, Any]] = []
    for i in range(count):
        run = copy.deepcopy(template[i % len(template)])
        run["name"] = f"run-{i:04d}"
        source = (run.get("checkpoint") or {}).get("from")
        if isinstance(source, str) and source.startswith("run:"):
            # Point at the copy of the source made in the same cycle (it precedes this run).
            offset = (i % len(template)) - next(j for j, r in enumerate(template) if r["name"] == source[4:])
            run["checkpoint"]["from"] = f"run:run-{i - offset:04d}"
        runs.append(run)
    document["config"]["simfleet:runs"] = runs
    return document


def _under_mocks(build: Callable[[], Any]) -> tuple[float, list[Any]]:
    """Seconds to register what `build` creates under fresh mocks, and the registrations."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func

    from tools.mocks import RecordingMonitor, SimfleetMocks

    settings.reset_options()
    pulumi.runtime.set_all_config({"aws:region": "us-east-1"})
    loop = asyncio.new_event_loop()  # before set_mocks: the root Stack's futures bind to the current loop
    asyncio.set_event_loop(loop)
    mocks = SimfleetMocks("us-east-1")
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="simfleet", stack="bench", preview=False, monitor=monitor)
    started = time.perf_counter()
    try:
        loop.run_until_complete(run_pulumi_func(build))
    finally:
        loop.close()
    return time.perf_counter() - started, monitor.registrations


def run_plans(counts: list[int]) -> tuple[list[list[str]], int]:
    """Rows of N, Runs seconds, floor seconds, ratio; and the pickled provider size of one run.

    "Runs" is what the plan does for N runs: validate nothing (the specs are valid), render every run's
    objects, hash it and register its SimRun, through the Runs component under the plan's mocks. The floor
    registers N bare dynamic resources (a do-nothing provider) carrying exactly the props those SimRuns
    carried, so the ratio is simfleet's own overhead over what any dynamic resource of that size costs.
    """
    from config import load_stack_config
    from tools.bench import NullResource as Floor  # the importable class, pickled by reference like SimRunProvider
    from workloads.provider import install_sdk_fix
    from workloads.runs import Runs, RunsArgs

    install_sdk_fix()  # the floor needs it too beyond ~350 resources
    rows = []
    size = 0
    for n in [5, *counts]:
        stack = scale_stack(n)["config"]
        # offline: the generated stack reuses the dev sample's placeholder CIDRs, which only the offline plan accepts.
        runs = load_stack_config(
            stack["simfleet:platform"], stack["simfleet:runs"], stack="bench", source="bench", offline=True
        ).runs

        def plan_runs(runs: tuple[Any, ...] = runs) -> None:
            Runs(
                "runs",
                RunsArgs(
                    runs,
                    "simfleet-bench",
                    "us-east-1",
                    "https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
                    "Q0E=",
                    "simfleet-runs",
                    "simfleet-run",
                    "simfleet-bench-checkpoints",
                    "simfleet-bench-artifacts",
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                    "1.35",
                    None,
                ),
            )

        _, regs = _under_mocks(plan_runs)
        sims = [r for r in regs if r.type == "pulumi-python:dynamic:Resource"]
        size = len(base64.b64decode(sims[0].inputs["__provider"]))
        props = [{k: v for k, v in r.inputs.items() if k != "__provider"} for r in sims]

        def floor(props: list[dict[str, Any]] = props) -> list[Floor]:
            return [Floor(f"bare-{p['runName']}", dict(p)) for p in props]

        # Best of two, alternating, so warm-up and a busy neighbour on a shared machine bias neither side.
        runs_seconds = bare_seconds = float("inf")
        for _ in range(2):
            runs_seconds = min(runs_seconds, _under_mocks(plan_runs)[0])
            bare_seconds = min(bare_seconds, _under_mocks(floor)[0])
        if n not in counts:
            continue  # warm-up
        ratio = runs_seconds / bare_seconds
        rows.append(
            [
                f"{n:,}",
                f"{runs_seconds:.2f}",
                f"{bare_seconds:.2f}",
                f"{ratio:.2f}x",
                "ok" if ratio <= TARGET_RATIO else f"over {TARGET_RATIO}x",
                f"{1000 * runs_seconds / n:.1f}",
            ]
        )
    return rows, size


def overhead() -> list[list[str]]:
    """Token minting, client setup and one provider read against the fake API server, cold and cached."""
    from fake_kube import FakeKube, run_props

    from workloads import eks_auth, provider

    cold_imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t = time.perf_counter(); import boto3, kubernetes.client; print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    rows = [["import boto3 + kubernetes (fresh process)", f"{1000 * float(cold_imports.stdout):.0f}", "-"]]
    eks_auth.reset_caches()
    started = time.perf_counter()
    eks_auth.token("simfleet-bench", "us-east-1")
    cold = time.perf_counter() - started
    cached = _median(lambda: eks_auth.token("simfleet-bench", "us-east-1"))
    rows.append(["EKS token (STS client + presign | reuse)", f"{1000 * cold:.1f}", f"{1000 * cached:.3f}"])
    remint = _median(lambda: eks_auth.mint_token("simfleet-bench", "us-east-1"))
    rows.append(["EKS token presign only (client exists)", f"{1000 * remint:.2f}", "-"])
    with FakeKube() as kube:
        props = run_props(kube.url, run="bench", viewport=False)
        conn = eks_auth.Connection("simfleet-bench", kube.url, props["clusterCa"], "us-east-1")
        started = time.perf_counter()
        eks_auth.api_client(conn)
        cold = time.perf_counter() - started
        cached = _median(lambda: eks_auth.api_client(conn))
        rows.append(["ApiClient for a cluster (build | cached)", f"{1000 * cold:.2f}", f"{1000 * cached:.4f}"])
        outs = provider.SimRunProvider().create(props).outs or {}
        eks_auth.reset_caches()
        started = time.perf_counter()
        provider.SimRunProvider().read("x", outs)
        cold = time.perf_counter() - started
        warm = _median(lambda: provider.SimRunProvider().read("x", outs))
        rows.append(["provider read of a Job (first call | next)", f"{1000 * cold:.1f}", f"{1000 * warm:.2f}"])
    return rows


def _median(call: Callable[[], Any], repeat: int = 20) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def plans(stacks: list[Path]) -> list[list[str]]:
    from tools.plan import run_program

    rows = []
    for path in stacks:
        result = run_program(path)
        runs = sum(1 for r in result.registrations if r.type == "pulumi-python:dynamic:Resource")
        rows.append([path.name, f"{len(result.registrations):,}", f"{runs:,}", f"{result.seconds:.2f}"])
    return rows


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join
    out = [title, "  " + line(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  " + line(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10 and 100 only, no 2,000-run plan")
    args = parser.parse_args(argv)
    for path in (PROJECT_ROOT, PROJECT_ROOT / "tests"):  # tests/ for the fake API server
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    # Fake, static credentials: presigning is local, and no real credential provider (SSO, IMDS) is consulted.
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHMARK", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_EC2_METADATA_DISABLED="true")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)

    counts = [10, 100] if args.quick else [10, 100, 1000]
    rows, size = run_plans(counts)
    print(
        table(
            f"planning N runs (render + hash + SimRun) vs N bare dynamic resources with the same props (target <= {TARGET_RATIO}x)",
            ["N", "runs s", "floor s", "ratio", "", "ms/run"],
            rows,
        )
    )
    print(f"pickled provider per run (__provider): {size} bytes (class by reference, no state)\n")

    stacks = [PROJECT_ROOT / "Pulumi.dev.yaml", PROJECT_ROOT / "Pulumi.prod.yaml"]
    with tempfile.TemporaryDirectory() as scratch:
        if not args.quick:
            scale = Path(scratch) / "Pulumi.scale2000.yaml"
            scale.write_text(json.dumps(scale_stack(2000)))
            stacks.append(scale)
        print(table("offline plan (tools.plan.run_program)", ["stack", "resources", "runs", "seconds"], plans(stacks)))
    print()
    print(table("provider per-call overhead against the fake API server (ms)", ["step", "cold", "cached/warm"], overhead()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
