"""The GPU capacity rule: what runs and jobs can ask for at once against what the GPU node groups hold."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import naming
from catalog import is_gpu_family, load_catalog
from policies.rules.eks import NODE_GROUP
from policies.rules.model import Context, Resource, Rule, of_type
from policies.rules.pods import pod_capacity, pod_gpus, pod_template_spec
from policies.rules.props import as_list, get_path, whole_number
from policies.rules.runs import is_run, run_job


def gpu_demand(resources: Sequence[Resource]) -> dict[str, int]:
    """GPUs the stack's runs can ask for at once, by capacity type (`ANY` when a run does not pin one)."""
    demand: dict[str, int] = {}
    for run in filter(is_run, resources):
        job = run_job(run)
        if job is None:
            continue
        pod = pod_template_spec(job)
        spec = job.get("spec") or {}
        pods = whole_number(spec.get("parallelism")) or 1
        completions = whole_number(spec.get("completions"))
        if completions is not None:
            pods = min(pods, completions)
        capacity = pod_capacity(pod) or "ANY"
        demand[capacity] = demand.get(capacity, 0) + pods * pod_gpus(pod)
    return demand


def gpu_supply(resources: Sequence[Resource]) -> dict[str, int]:
    """GPUs the GPU node groups hold at maxSize, by capacity type (a group's smallest instance type counts)."""
    catalog = load_catalog().instances
    supply: dict[str, int] = {}
    for group in of_type(resources, NODE_GROUP):
        types = [str(t) for t in as_list(group.props.get("instanceTypes"))]
        per_node = [catalog[t].gpus for t in types if is_gpu_family(t) and t in catalog]
        if not per_node:
            continue
        capacity = str(group.props.get("capacityType") or naming.EKS_CAPACITY["onDemand"])
        max_size = whole_number(get_path(group.props, "scalingConfig", "maxSize")) or 0
        supply[capacity] = supply.get(capacity, 0) + max_size * min(per_node)
    return supply


def _check_gpu_capacity(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    demand, supply = gpu_demand(resources), gpu_supply(resources)
    for capacity, wanted in sorted(demand.items()):
        have = sum(supply.values()) if capacity == "ANY" else supply.get(capacity, 0)
        if wanted > have:
            label = "any" if capacity == "ANY" else capacity
            yield (
                None,
                (
                    f"runs and jobs can ask for {wanted} GPUs on {label} capacity at once, but the GPU node groups hold at most "
                    f"{have} (maxSize x GPUs per node); the rest stay Queued (or Pending) and start as GPUs free up. Raise "
                    "platform.nodeGroups.gpu.maxSize or lower parallelism if they should all run together"
                ),
            )


RULES: tuple[Rule, ...] = (
    Rule(
        "run-gpu-capacity",
        "The GPUs runs and jobs can ask for at once fit the GPU node groups' maximum.",
        "advisory",
        "low",
        stack_check=_check_gpu_capacity,
    ),
)
