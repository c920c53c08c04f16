"""What the plan tells a researcher about each run and job: its queue, where its data will land, and what one admission
costs. Printed by `make plan` and written whole to build/plan/<stack>/runs.json.

Offline, the bucket names hold the mocks' account id (tools/mocks.py): such URIs are marked as placeholders, since
`pulumi up` names the buckets after the real account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tools import run_cost
from tools.mocks import ACCOUNT_ID
from workloads.inputs import DecodedJob, decode

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
# More runs than this are summarized by count in the printed plan; runs.json always has every one.
PRINTED = 25
PLACEHOLDER_MARK = "*"


def seed_text(seeds: Sequence[int]) -> str:
    """Seeds as a person writes them: [0, 1, 2, 3, 7] -> "0..3, 7"."""
    parts: list[str] = []
    ordered = sorted(seeds)
    start = prev = ordered[0] if ordered else 0
    for seed in [*ordered[1:], None]:
        if seed is not None and seed == prev + 1:
            prev = seed
            continue
        parts.append(f"{start}..{prev}" if prev > start else str(start))
        if seed is not None:
            start = prev = seed
    return ", ".join(parts) if ordered else ""


def workloads(registrations: Iterable[Any], costs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per run and job (in plan order): kind, name, queue, spec hash, what it runs, its S3 locations and its cost."""
    by_name = {(c.get("kind"), c.get("name")): c for c in costs}
    out = []
    for reg in registrations:
        if reg.type != DYNAMIC_TYPE or "spec" not in reg.inputs:
            continue
        decoded = decode(dict(reg.inputs))
        entry: dict[str, Any] = {"name": decoded.spec.name, "queue": decoded.spec.queue or decoded.ctx.default_queue}
        if isinstance(decoded, DecodedJob):
            spec, identity = decoded.spec, decoded.identity
            entry |= {
                "kind": "job",
                "specHash": identity.spec_hash,
                "shards": spec.shards,
                "parallelism": spec.parallel_pods,
                "outputsUri": f"{identity.outputs_uri}shard-<i>/outputs/<attempt>/",
            }
        else:
            run_spec, run = decoded.spec, decoded.identity
            per_seed = len(run_spec.seeds) > 1
            seed_dir = "seed-<n>/" if per_seed else ""
            entry |= {
                "kind": "run",
                "specHash": run.spec_hash,
                "mode": run_spec.mode,
                "seeds": seed_text(run_spec.seeds),
                "seedCount": len(run_spec.seeds),
                "parallelism": run_spec.parallel_pods,
                "artifactsUri": f"{run.artifacts_uri}{seed_dir}",
                "checkpointUri": f"{run.checkpoint_uri}{seed_dir}out.mstate"
                if per_seed and run.checkpoint_uri
                else run.checkpoint_uri,
            }
        entry["placeholderAccount"] = any(ACCOUNT_ID in str(v) for k, v in entry.items() if k.endswith("Uri"))
        entry["cost"] = dict(by_name.get((entry["kind"], entry["name"])) or {})
        out.append(entry)
    # Runs, then jobs, each by name: the order the engine registers them in is not the file's, and not stable.
    return sorted(out, key=lambda e: (e["kind"] != "run", e["name"]))


def lines(entries: Sequence[Mapping[str, Any]], cost: Mapping[str, Any]) -> list[str]:
    """The printed block: per run and job, what it is, its queue, its data locations and its cost per admission."""
    if not entries:
        return []
    prices = f"{cost['priceRegion']} prices of {cost['priceDate']}"
    out = [f"runs and jobs: where each writes, and what one admission costs ({run_cost.UNIT}, {prices}):"]
    for entry in entries[:PRINTED]:
        mark = f" {PLACEHOLDER_MARK}" if entry["placeholderAccount"] else ""
        if entry["kind"] == "job":
            out.append(
                f"  job {entry['name']}: {entry['shards']} shard(s), {entry['parallelism']} at a time, queue "
                f"{entry['queue']}, spec hash {entry['specHash']}"
            )
            out.append(f"    outputs     {entry['outputsUri']}{mark}")
        else:
            at_once = f", {entry['parallelism']} at a time" if entry["mode"] == "batch" else ""
            count = f"{entry['seedCount']} seeds" if entry["seedCount"] > 1 else "seed"
            out.append(
                f"  run {entry['name']}: {entry['mode']}, {count} {entry['seeds']}{at_once}, queue {entry['queue']}, "
                f"spec hash {entry['specHash']}"
            )
            out.append(f"    artifacts   {entry['artifactsUri']}{mark}")
            out.append(
                f"    checkpoint  {entry['checkpointUri'] + mark if entry['checkpointUri'] else 'none (checkpoint.save: false)'}"
            )
        cost_lines = run_cost.summary(entry["cost"]) if entry["cost"] else ["not estimated"]
        out += [f"    {'cost' if n == 0 else '':<11} {line}" for n, line in enumerate(cost_lines)]
    if len(entries) > PRINTED:
        out.append(f"  ... and {len(entries) - PRINTED} more: every one is in runs.json")
    if any(entry["placeholderAccount"] for entry in entries):
        out.append(
            f"  {PLACEHOLDER_MARK} offline placeholder: {ACCOUNT_ID} is the mocks' account id; `pulumi up` writes to "
            "the buckets named after your account (stack outputs artifactsBucket, checkpointsBucket)"
        )
    return out
