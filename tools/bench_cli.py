"""`make bench`'s figure for the command: `simfleet runs` over stacks of 200 and 2,000 runs (target <= 2 s at 2,000),
against the fake API server (tests/fake_kube.py) and moto's S3 server on 127.0.0.1, through the real kubernetes client
and boto3.

Half the runs have a Job in the cluster (one made by the provider, copied with each run's own name and spec hash, a
pod each); the other half ended and were removed by the TTL controller, so their seeds' index.json are read from S3
(concurrently) on the first listing and from the local cache of final records after it.

The servers run in a process of their own (`python -m tools.bench_cli COUNT DIR` builds the world and serves it until
its stdin closes), so the figure is the command's, not the command's and the servers' competing for one interpreter.
The command runs as a researcher runs it, `simfleet runs` in a fresh process: interpreter start, imports, the stack
file, the caller, the list calls, the S3 reads, the table.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 2.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LABELS = ("first (S3 read for ended runs)", "again (final records cached)")


def _populate(w: Any) -> None:
    from cli_world import NS

    fleet = w.fleet()
    names = sorted(fleet.declared)
    w.create(names[0])
    template = w.kube.get("jobs", NS, names[0])
    for index, name in enumerate(names):
        declared = fleet.declared[name]
        if index % 2 == 0:
            job = copy.deepcopy(template)
            job["metadata"] = {
                **{k: v for k, v in job["metadata"].items() if k not in ("uid", "resourceVersion", "creationTimestamp")},
                "name": name,
                "annotations": {**job["metadata"]["annotations"], "simfleet.io/spec-hash": declared.spec_hash},
                "labels": {**job["metadata"]["labels"], "app.kubernetes.io/instance": name},
            }
            job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = name
            job["spec"]["template"]["metadata"]["annotations"]["simfleet.io/spec-hash"] = declared.spec_hash
            w.kube.put_object("jobs", job)
            w.kube.start_job(NS, name, ready=1)
            w.kube.add_pod(NS, name, "Running")
        else:
            unit = declared.units[0]
            record = {"run": name, "specHash": declared.spec_hash, "seed": unit, "status": "Succeeded", "reason": None}
            record |= {"startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:30:00Z", "recoveries": 0}
            w.put_json(f"{declared.unit_prefix(unit)}index.json", record)


def serve(count: int, directory: Path) -> None:
    """Build the world of `count` runs, print what the command needs to reach it (one JSON line), serve until stdin
    closes."""
    from cli_world import run_entry, world

    with world(directory, [run_entry(f"run-{i:05d}") for i in range(count)]) as w:
        _populate(w)
        print(json.dumps({"project": str(w.project), "env": w.env}), flush=True)
        sys.stdin.read()


def _command(world: dict[str, Any]) -> tuple[float, float]:
    """(wall seconds, the command's own CPU seconds) of `simfleet runs --json` in a fresh process, which must list
    every run. Wall less CPU is the waiting: on the servers (the fakes' own speed) and on the other helpers sharing the
    machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "KUBECONFIG")}
    env |= world["env"]
    argv = [sys.executable, "-m", "cli.main", "--stack", "test", "--project-dir", world["project"], "runs", "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"simfleet runs failed ({process.returncode}): {err.read().decode().strip()}")
        world["listed"] = len(json.loads(out.read())["runs"])
    return seconds, usage.ru_utime + usage.ru_stime


def measure(counts: tuple[int, ...] = (200, 2000)) -> list[list[str]]:
    """Rows (runs, the first listing, the next one, one after the stack file changed) for each count: the first plans
    the stack and reads the ended runs' records from S3; the next reads the plan and the final records from the local
    caches (cli/plan_cache.py, workloads/observe/listing.py), as every listing does until the stack file changes; the
    last plans afresh with the records cached."""
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as scratch:
            server = subprocess.Popen(
                [sys.executable, "-m", "tools.bench_cli", str(count), scratch],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            try:
                assert server.stdout is not None and server.stdin is not None
                line = server.stdout.readline()
                if not line:
                    raise RuntimeError(f"the bench's servers for {count} runs did not start")
                world = json.loads(line)
                first, again = _command(world), _command(world)
                # What every listing after a `pulumi up` that changed the stack file costs: the plan afresh.
                with (Path(world["project"]) / "Pulumi.test.yaml").open("a") as stack_file:
                    stack_file.write("# edited\n")
                edited = _command(world)
            finally:
                if server.stdin is not None:
                    server.stdin.close()
                server.wait(timeout=60)
            verdict = "" if count < 2000 else ("ok" if again[0] <= TARGET_SECONDS else "over target")
            timed = (first, again, edited)
            rows.append([f"{world['listed']:,}", *(f"{wall:.2f} ({cpu:.2f} CPU)" for wall, cpu in timed), verdict])
    return rows


if __name__ == "__main__":
    for path in (PROJECT_ROOT, PROJECT_ROOT / "tests"):
        sys.path.insert(0, str(path))
    serve(int(sys.argv[1]), Path(sys.argv[2]))
