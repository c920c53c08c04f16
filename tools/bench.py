"""The benchmark (`make bench`): what a run costs to plan and to keep in the state, and the provider's per-call overhead.

    python -m tools.bench            # N = 10, 1,000 and 10,000: several minutes
    python -m tools.bench --quick    # N = 10 and 200

Offline: Pulumi mocks, the fake Kubernetes API server of tests/fake_kube.py and fake AWS credentials (presigning
an EKS token is local). Prints tables of figures and ratios measured side by side in this one run; nothing here
asserts on time, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
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
TARGET_RATIO = 3.0  # a run may cost at most this many bare dynamic resources to plan (issue #7)
TARGET_STATE_BYTES = 5 * 1024
# The size of a real EKS cluster CA (an RSA-2048 "kubernetes" CA certificate, base64 PEM), for state-size figures.
REAL_CA_BYTES = 1476


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
        run["name"] = f"run-{i:05d}"
        source = (run.get("checkpoint") or {}).get("from")
        if isinstance(source, str) and source.startswith("run:"):
            # Point at the copy of the source made in the same cycle (it precedes this run).
            offset = (i % len(template)) - next(j for j, r in enumerate(template) if r["name"] == source[4:])
            run["checkpoint"]["from"] = f"run:run-{i - offset:05d}"
        runs.append(run)
    document["config"]["simfleet:runs"] = runs
    return document


def _under_mocks(build: Callable[[], Any]) -> tuple[float, list[Any]]:
    """Seconds to register what `build` creates under the plan's mocks, and the registrations."""
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


def floor_seconds(count: int) -> float:
    from tools.bench import NullResource as Floor  # the importable class, pickled by reference like SimRunProvider

    def build() -> None:
        for i in range(count):
            Floor(f"bare-{i:05d}", {"x": 1})

    return _under_mocks(build)[0]


def stack_seconds(path: Path) -> tuple[float, list[Any]]:
    from tools.plan import run_program

    result = run_program(path)
    return result.seconds, result.registrations


def planning(counts: list[int], scratch: Path) -> tuple[list[list[str]], list[Any]]:
    """Marginal seconds per run between a 1-run stack and an N-run stack (the whole program through tools.plan),
    beside the same for N bare dynamic resources with trivial props; and the largest stack's registrations."""
    from workloads.sdk_fix import install_sdk_fix

    install_sdk_fix()  # the floor needs it too beyond ~350 resources
    paths = {}
    for n in [1, *counts]:
        paths[n] = scratch / f"Pulumi.bench{n}.yaml"
        paths[n].write_text(json.dumps(scale_stack(n)))
    stack_seconds(paths[1])  # warm-up: imports, schema caches
    floor_seconds(1)
    # Best of several for the baselines and small N (a 10-run stack differs from a 1-run one by less than the
    # noise of one plan), alternating, so a busy neighbour biases neither side.
    base_stack = min(stack_seconds(paths[1])[0] for _ in range(5))
    base_floor = min(floor_seconds(1) for _ in range(5))
    rows = []
    largest: list[Any] = []
    for n in counts:
        repeats = 5 if n <= 100 else 2 if n <= 1000 else 1
        runs = floor = float("inf")
        for _ in range(repeats):
            seconds, registrations = stack_seconds(paths[n])
            runs = min(runs, seconds)
            floor = min(floor, floor_seconds(n))
        largest = registrations
        per_run = (runs - base_stack) / (n - 1 if n > 1 else 1)
        per_floor = (floor - base_floor) / (n - 1 if n > 1 else 1)
        if per_run <= 0 or per_floor <= 0:
            # A few runs more than the 1-run stack cost less than one plan's noise: no ratio to report.
            ratio_cell, verdict = "-", "below noise"
        else:
            ratio = per_run / per_floor
            ratio_cell, verdict = f"{ratio:.2f}x", "ok" if ratio <= TARGET_RATIO else f"over {TARGET_RATIO:g}x"
        rows.append(
            [
                f"{n:,}",
                f"{runs:.2f}",
                f"{floor:.2f}",
                f"{1000 * per_run:.2f}",
                f"{1000 * per_floor:.2f}",
                ratio_cell,
                verdict,
            ]
        )
        print(f"  ... N = {n:,} done", flush=True)
    return rows, largest


def state_record(reg: Any) -> dict[str, Any]:
    """One SimRun as the Pulumi state holds it (apitype.ResourceV3): inputs, outputs after create, and the links."""
    from workloads.provider import outputs

    inputs = dict(reg.inputs)
    observed = {
        "status": "Succeeded",
        "startTime": "2026-11-30T10:00:00Z",
        "completionTime": "2026-11-30T12:00:00Z",
        "viewportAddress": None,
        "jobUid": "8b1f6c0e-2f54-4f1a-9a58-3f1f1b8d8e21",
        "companions": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": f"{inputs['runName']}-runtime", "uid": "0" * 36},
        ],
    }
    return {
        "urn": reg.urn,
        "custom": True,
        "id": f"{inputs['namespace']}/{inputs['runName']}",
        "type": reg.type,
        "inputs": inputs,
        "outputs": {**outputs(inputs, observed), "__provider": inputs["__provider"]},
        "parent": reg.parent,
        "dependencies": reg.options.get("dependsOn", []),
        "propertyDependencies": reg.options.get("propertyDependencies", {}),
        "created": "2026-11-30T09:59:00.000000Z",
        "modified": "2026-11-30T12:05:00.000000Z",
    }


def state_sizes(registrations: list[Any]) -> list[list[str]]:
    runs = [r for r in registrations if r.type == "pulumi-python:dynamic:Resource"]
    records = [state_record(r) for r in runs]
    compact = [len(json.dumps(rec, separators=(",", ":"))) for rec in records]
    indented = [len(json.dumps(rec, indent=4)) for rec in records]
    inputs = [len(json.dumps({k: v for k, v in r.inputs.items() if k != "__provider"}, separators=(",", ":"))) for r in runs]
    total_mb = sum(indented) / 1e6

    names = [str(r.inputs.get("runName")) for r in runs]

    def row(label: str, sizes: list[int], target: int | None) -> list[str]:
        largest = max(range(len(sizes)), key=sizes.__getitem__)
        verdict = "" if target is None else ("ok" if sizes[largest] <= target else f"over {target:,}")
        return [label, f"{statistics.mean(sizes):,.0f}", f"{sizes[largest]:,} ({names[largest]})", verdict]

    return [
        row("inputs (compact JSON, no __provider)", inputs, 4096),
        row("state record (compact JSON)", compact, TARGET_STATE_BYTES),
        row("state record (as the CLI writes it, indent 4)", indented, TARGET_STATE_BYTES),
        [f"whole state of {len(runs):,} runs (indent 4)", f"{total_mb:,.1f} MB", "", ""],
    ]


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
    from moto.server import ThreadedMotoServer

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # run records live in S3: a local one
    s3.start()
    os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{s3.get_host_and_port()[1]}"
    eks_auth.reset_caches()
    eks_auth.s3_client("us-east-1").create_bucket(Bucket="simfleet-test-artifacts")
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
        rows.append(["provider read of a run (first call | next)", f"{1000 * cold:.1f}", f"{1000 * warm:.2f}"])
    s3.stop()
    os.environ.pop("AWS_ENDPOINT_URL_S3")
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
    parser.add_argument("--quick", action="store_true", help="N = 10 and 200 only")
    args = parser.parse_args(argv)
    for path in (PROJECT_ROOT, PROJECT_ROOT / "tests"):  # tests/ for the fake API server
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    # Fake, static credentials: presigning is local, and no real credential provider (SSO, IMDS) is consulted.
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHMARK", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_EC2_METADATA_DISABLED="true")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)

    counts = [10, 200] if args.quick else [10, 1000, 10000]
    print(
        f"planning stacks of {', '.join(f'{n:,}' for n in counts)} runs (the whole program under the plan's mocks) ...",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        rows, largest = planning(counts, Path(scratch))
    print(
        table(
            "planning: marginal time per run between a 1-run and an N-run stack, beside N bare dynamic resources with "
            f"trivial props (target <= {TARGET_RATIO:g}x)",
            ["N", "stack s", "floor s", "ms/run", "floor ms/res", "ratio", ""],
            rows,
        )
    )
    print()
    print(
        table(
            f"state per run at {counts[-1]:,} runs (target <= {TARGET_STATE_BYTES:,} bytes)",
            ["what", "mean", "max", ""],
            state_sizes(largest),
        )
    )
    print(
        "  (no cluster endpoint or CA is stored per run: the provider asks EKS for them by cluster name, which keeps a "
        f"{REAL_CA_BYTES:,}-byte CA out of each run's inputs and outputs)\n"
    )
    stacks = [PROJECT_ROOT / "Pulumi.dev.yaml", PROJECT_ROOT / "Pulumi.prod.yaml"]
    print(table("offline plan (tools.plan.run_program)", ["stack", "resources", "runs and jobs", "seconds"], plans(stacks)))
    print()
    print(table("provider per-call overhead against the fake API server (ms)", ["step", "cold", "cached/warm"], overhead()))
    print()
    from tools import bench_cli

    listed = (200,) if args.quick else (200, 2000)
    print(
        table(
            "`simfleet runs` in a fresh process, half the runs with a Job, half ended (index.json in S3); wall seconds "
            f"(the command's CPU seconds); target <= {bench_cli.TARGET_SECONDS:g} s at 2,000 once cached",
            ["runs", "first (plan, S3 reads)", "again (plan, records cached)", "stack file edited (records cached)", ""],
            bench_cli.measure(listed),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
