"""The benchmark (`make bench`): what a run costs to plan and to keep in the state, and the provider's per-call overhead.

    python -m tools.bench            # N = 300, 2,000 and 10,000: a few minutes
    python -m tools.bench --quick    # N = 10 and 300

Offline: Pulumi mocks, the fake Kubernetes API server of tests/fake_kube.py and fake AWS credentials (presigning
an EKS token is local). Prints tables of figures and ratios measured side by side in this one run; nothing here
asserts on time, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tools.bench_plan import (
    LARGE,
    PLANNING_HEADER,
    PROJECT_ROOT,
    TARGET_LARGE_SECONDS,
    TARGET_RATIO,
    manifest_sizes,
    plan_command,
    plan_sizes,
    planning_rows,
)

TARGET_STATE_BYTES = 5 * 1024
# The size of a real EKS cluster CA (an RSA-2048 "kubernetes" CA certificate, base64 PEM), for state-size figures.
REAL_CA_BYTES = 1476


def planned_registrations(plan_dir: Path) -> list[Any]:
    """The registrations a plan wrote to resources.json, with the attributes tools.mocks.Registration has."""
    records = json.loads((plan_dir / "resources.json").read_text())
    return [SimpleNamespace(**record) for record in records]


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
        # At most a viewport's Service and NetworkPolicy (the runtime ConfigMap is shared, recorded by no run).
        "companions": [
            {"apiVersion": "v1", "kind": "Service", "name": f"{inputs['runName']}-viewport", "uid": "0" * 36},
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "name": f"{inputs['runName']}-viewport",
                "uid": "0" * 36,
            },
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

    # werkzeug logs every request moto answers to stderr at INFO unless its logger says otherwise: the figures, not
    # the provider's GETs, are what the benchmark prints.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
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


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join
    out = [title, "  " + line(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  " + line(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10 and 300 only")
    args = parser.parse_args(argv)
    for path in (PROJECT_ROOT, PROJECT_ROOT / "tests"):  # tests/ for the fake API server
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    # Fake, static credentials: presigning is local, and no real credential provider (SSO, IMDS) is consulted.
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHMARK", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_EC2_METADATA_DISABLED="true")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)

    counts = [10, 300] if args.quick else [300, 2000, LARGE]
    print(f"planning stacks of 1, {', '.join(f'{n:,}' for n in counts)} runs (the whole `python -m tools.plan`) ...", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        sizes = plan_sizes(counts, Path(scratch))
        largest = sizes[-1]
        registrations = planned_registrations(largest.plan.out / f"bench{largest.runs}")
        big_manifests = manifest_sizes(largest.plan.out / f"bench{largest.runs}")
        stacks = {stack: plan_command(["--stack", stack], Path(scratch) / "stacks") for stack in ("dev", "prod")}
        dev_manifests = manifest_sizes(Path(scratch) / "stacks" / "dev")
        stack_rows = [
            [stack, f"{run.cpu_seconds:.2f}", f"{run.seconds:.2f}", f"{run.program_seconds:.2f}", f"{run.peak_mb:,.0f}"]
            for stack, run in stacks.items()
        ]
    print(
        table(
            "planning: the whole `python -m tools.plan` of a stack of N runs (built from the dev runs), and its program "
            "alone (registration under mocks), beside N bare dynamic resources under the same mocks (the floor); per run "
            "is the marginal time between the 1-run and the N-run stack; the ratio is of CPU time, which a busy neighbour "
            f"stretches far less than wall time (targets: ratio <= {TARGET_RATIO:g}x, {LARGE:,} runs in <= "
            f"{TARGET_LARGE_SECONDS:g} s)",
            PLANNING_HEADER,
            planning_rows(sizes),
        )
    )
    print()
    print(
        table(
            "manifests (build/plan/<stack>/manifests/)",
            ["plan", *MANIFEST_HEADER],
            [
                ["dev", *manifest_row(dev_manifests)],
                [f"{largest.runs:,} runs", *manifest_row(big_manifests)],
            ],
        )
    )
    print()
    print(
        table(
            f"state per run at {largest.runs:,} runs (target <= {TARGET_STATE_BYTES:,} bytes)",
            ["what", "mean", "max", ""],
            state_sizes(registrations),
        )
    )
    print(
        "  (no cluster endpoint or CA is stored per run: the provider asks EKS for them by cluster name, which keeps a "
        f"{REAL_CA_BYTES:,}-byte CA out of each run's inputs and outputs)\n"
    )
    print(table("offline plan (`make plan`)", ["stack", "plan CPU s", "plan wall s", "program wall s", "peak MB"], stack_rows))
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


MANIFEST_HEADER = ["runs", "KB per run (mean)", "KB per run (max, its one file)", "runtime ConfigMaps"]


def manifest_row(sizes: dict[str, Any]) -> list[str]:
    return [
        f"{sizes['runs']:,}",
        f"{sizes['mean_kb']:.1f}",
        f"{sizes['max_kb']:.1f} ({sizes['max_run']})",
        f"{sizes['runtime_configmaps']} shared, {sizes['runtime_kb']:.1f} KB",
    ]


if __name__ == "__main__":
    sys.exit(main())
