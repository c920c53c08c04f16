"""What one admission of each run and batch job costs: up to a bound, and typically.

A run or job is priced **per admission**, never per month: Kueue admits its Job whole, and a Job it preempts and
admits again gets its whole deadline again.

- **up to** (`upToUsd`): every pod at once, each on a node of its own, for the Job's whole `activeDeadlineSeconds`
  (every wave, the pods' start-up, saves and uploads, and retry slots), then the pods' termination grace (the
  deadline's SIGTERM comes at its end) and the Cluster Autoscaler's wait before it removes the empty node; the node's
  root volume is billed all along. On-demand when Kueue may fall back to it (`spotUpToUsd`: the same on spot).
  Nothing one admission does on its nodes costs more.
- **typical** (`typicalUsd`): each seed (or shard) run once by one pod for its whole `maxRuntime` plus the pod's own
  allowances (start-up, first observation, finish, save, upload: workloads/budget.py), no retry, plus each node's wait
  before scale-down, on the capacity Kueue tries first (spot for batch work, on-demand for interactive runs and
  on-demand jobs).

Pure: it reads the SimRun registrations (their inputs and the Job rendered from them) and the price catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import naming
from catalog import Catalog
from components.addons import SCALE_DOWN_UNNEEDED_SECONDS
from policies.rules.model import Resource
from policies.rules.props import whole_number
from policies.rules.runs import is_run, run_job, run_objects
from tools.cost import NodeGroupShape, node_hourly
from workloads.inputs import DecodedJob, decode
from workloads.renderers.job import job_budget
from workloads.renderers.run import budget_of

UNIT = "USD per admission"


def viewport_hourly(run: Resource, public_subnets: int, catalog: Catalog) -> float:
    """A run's LoadBalancer Service is an internet-facing NLB: NLB hours plus one public IPv4 per public subnet (AZ)."""
    objects = run_objects(run)
    if not any(o.get("kind") == "Service" and (o.get("spec") or {}).get("type") == "LoadBalancer" for o in objects):
        return 0.0
    return catalog.services["nlbHourly"] + public_subnets * catalog.services["publicIpv4Hourly"]


def public_subnet_count(resources: Sequence[Resource]) -> int:
    """The stack's public subnets (an internet-facing NLB takes one public IPv4 in each)."""
    return sum(
        1
        for r in resources
        if r.resource_type == "aws:ec2/subnet:Subnet" and "kubernetes.io/role/elb" in (r.props.get("tags") or {})
    )


def _int(value: Any) -> int:
    return whole_number(value) or 0


def _hourly(group: NodeGroupShape, catalog: Catalog) -> float:
    """One node of the group for an hour, with its gp3 root volume (billed as long as the instance runs)."""
    return node_hourly(group, catalog) + group.disk_gib * catalog.services["gp3PerGibMonth"] / catalog.hours_per_month


def _typical(run: Resource) -> tuple[float, float, float] | None:
    """(maxRuntime, one pod's allowed life, wall time with no retry) in hours, from the spec in the run's inputs;
    None when the inputs do not decode (the run-deadline-and-ttl policy reports why)."""
    try:
        decoded = decode(dict(run.props))
    except (ValueError, KeyError, TypeError):
        return None
    budget = job_budget(decoded.spec) if isinstance(decoded, DecodedJob) else budget_of(decoded.spec)
    return decoded.spec.max_runtime / 3600, budget.pod_seconds / 3600, budget.typical_seconds / 3600


def run_estimates(resources: Sequence[Resource], groups: Sequence[NodeGroupShape], catalog: Catalog) -> list[dict[str, Any]]:
    """Each run's and job's cost per admission, on the GPU group of its capacity type (the priciest type of the group)."""
    gpu_groups = [g for g in groups if g.gpu]
    public_subnets = public_subnet_count(resources)  # once, not once per run with a viewport
    out: list[dict[str, Any]] = []
    for run in filter(is_run, resources):
        job = run_job(run)
        spec = (job or {}).get("spec") or {}
        pod = ((spec.get("template") or {}).get("spec")) or {}
        capacity = (pod.get("nodeSelector") or {}).get(naming.CAPACITY_TYPE_LABEL)
        candidates = [g for g in gpu_groups if capacity is None or g.capacity == capacity] or gpu_groups
        entry: dict[str, Any] = {"name": str(run.props.get("runName")), "kind": str(run.props.get("kind") or "run"), "unit": UNIT}
        if not candidates:
            out.append({**entry, "upToUsd": None, "note": "no GPU node group to run on"})
            continue
        group = max(candidates, key=lambda g: _hourly(g, catalog))
        # No capacity type pinned: Kueue's spot flavor first, on-demand when spot has no room. The bound is on-demand;
        # what it costs when it gets spot, as it first tries to, is given beside it.
        spot_group = (
            next((g for g in candidates if g.capacity == naming.EKS_CAPACITY["spot"]), None) if capacity is None else None
        )
        first = spot_group or group
        completions = _int(spec.get("completions")) or 1
        pods = min(_int(spec.get("parallelism")) or 1, completions)
        deadline_hours = _int(spec.get("activeDeadlineSeconds")) / 3600
        ttl_hours = _int(spec.get("ttlSecondsAfterFinished")) / 3600
        # Past the deadline: the pods' SIGTERM grace (Kubernetes' default is 30 s), then the autoscaler's wait.
        grace = pod.get("terminationGracePeriodSeconds")
        scale_down_hours = SCALE_DOWN_UNNEEDED_SECONDS / 3600
        after_hours = (30 if grace is None else _int(grace)) / 3600 + scale_down_hours
        viewport = viewport_hourly(run, public_subnets, catalog)
        bound = (deadline_hours + after_hours) * pods
        entry |= {
            "upToUsd": round(_hourly(group, catalog) * bound + viewport * (deadline_hours + ttl_hours), 2),
            "spotUpToUsd": round(_hourly(spot_group, catalog) * bound + viewport * (deadline_hours + ttl_hours), 2)
            if spot_group
            else None,
            "viewportUsd": round(viewport * (deadline_hours + ttl_hours), 2),
            "instanceType": group.instance_type,
            "capacity": group.capacity,
            "pods": pods,
            "deadlineHours": round(deadline_hours, 2),
            "afterDeadlineHours": round(after_hours, 2),
            "hourlyUsd": round(_hourly(group, catalog), 4),
        }
        typical = _typical(run)
        if typical is None:
            out.append({**entry, "typicalUsd": None, "note": "the run's inputs do not decode, so no typical figure"})
            continue
        max_runtime, pod_hours, wall_hours = typical
        # One pod per seed or shard for its allowed life (the nodes of a wave serve the next wave's pods), then each
        # node's wait before the autoscaler removes it.
        node_hours = completions * pod_hours + pods * scale_down_hours
        entry |= {
            "maxRuntimeHours": round(max_runtime, 2),
            "typicalNodeHours": round(node_hours, 2),
            "typicalHours": round(wall_hours, 2),
            "typicalCapacity": first.capacity,
            "typicalUsd": round(_hourly(first, catalog) * node_hours + viewport * (wall_hours + ttl_hours), 2),
        }
        out.append(entry)
    return out


def summary(entry: dict[str, Any]) -> list[str]:
    """One run's or job's cost per admission as the plan prints it: the bound, then the typical figure."""
    if entry.get("upToUsd") is None:
        return [str(entry.get("note"))]
    bound = (
        f"up to ${entry['upToUsd']:.2f} per admission ({entry['pods']} x {entry['instanceType']} "
        f"{_capacity(entry['capacity'])} for the Job's {entry['deadlineHours']:g}h deadline and "
        f"{entry['afterDeadlineHours']:g}h to stop and scale down"
        + (f"; ${entry['spotUpToUsd']:.2f} if all on spot" if entry.get("spotUpToUsd") is not None else "")
        + (f"; viewport NLB ${entry['viewportUsd']:.2f}" if entry.get("viewportUsd") else "")
        + ")"
    )
    if entry.get("typicalUsd") is None:
        return [bound, str(entry.get("note"))]
    each = "each shard once for its" if entry["kind"] == "job" else "each seed once for its"
    allowances = "start-up and upload" if entry["kind"] == "job" else "start-up, save and upload"
    return [
        bound,
        f"typical ${entry['typicalUsd']:.2f} at the expected runtime ({entry['typicalNodeHours']:g} "
        f"{_capacity(entry['typicalCapacity'])} node-hours: {each} {entry['maxRuntimeHours']:g}h maxRuntime plus "
        f"{allowances}, no retry, and each node's {SCALE_DOWN_UNNEEDED_SECONDS // 60} min before scale-down)",
    ]


def _capacity(eks_capacity: str) -> str:
    return "spot" if eks_capacity == naming.EKS_CAPACITY["spot"] else "on-demand"
