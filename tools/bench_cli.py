"""`make bench`'s figure for the command: `simfleet runs` over a stack of 2,000 runs (target <= 2 s), against the fake
API server (tests/fake_kube.py) and moto's S3 server on 127.0.0.1, through the real kubernetes client and boto3.

Half the runs have a Job in the cluster (one made by the provider, copied with each run's own name and spec hash, a
pod each); the other half ended and were removed by the TTL controller, so their seeds' index.json are read from S3
(concurrently) on the first listing and from the local cache of final records after it. Measured in-process, the
command's whole path: the stack file, the caller, the list calls, the S3 reads, the table.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 2.0


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


def measure(count: int = 2000) -> list[list[str]]:
    from cli_world import run_entry, world

    rows = []
    with tempfile.TemporaryDirectory() as scratch, world(Path(scratch), [run_entry(f"run-{i:05d}") for i in range(count)]) as w:
        _populate(w)
        for label in ("first (S3 read for ended runs)", "again (final records cached)"):
            started = time.perf_counter()
            result = w.run("runs", "--json")
            seconds = time.perf_counter() - started
            assert result.code == 0, result.err
            listed = len(result.json()["runs"])
            verdict = "ok" if seconds <= TARGET_SECONDS else "over target"
            rows.append([label, f"{listed:,}", f"{seconds:.2f}", verdict])
    return rows
