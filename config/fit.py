"""Whether a run's, job's or service's pod fits the stack's nodes (CPU, memory, GPUs per node) and has the datasets
claim it mounts; when not, which instance types would fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from catalog import load_catalog
from config.errors import Issue
from config.observability import AGENT_NODE_REQUESTS, DCGM_NODE_REQUESTS
from config.platform import NODE_RESERVED_CPU, NODE_RESERVED_MEMORY_GIB, GpuNodeGroupConfig, PlatformConfig
from config.types import quantity_value


def node_headroom(platform: PlatformConfig, gpu: bool) -> tuple[float, float]:
    """The CPU and GiB a node of the stack keeps from pods: the kubelet's, the OS's and the platform's DaemonSets, and
    with platform.observability on, the add-on's agent on every node and its DCGM exporter on the GPU nodes."""
    cpu, memory = NODE_RESERVED_CPU, NODE_RESERVED_MEMORY_GIB
    if platform.observability.enabled:
        for extra_cpu, extra_memory in (AGENT_NODE_REQUESTS, *((DCGM_NODE_REQUESTS,) if gpu else ())):
            cpu, memory = cpu + extra_cpu, memory + extra_memory
    return cpu, memory


def node_fit_issues(
    path: str, cpu: str | None, memory: str | None, platform: PlatformConfig, group: Literal["GPU", "system"]
) -> list[Issue]:
    """Whether one pod asking for `cpu` and `memory` fits the smallest type of the `group` node group after the node's
    headroom (node_headroom).

    The smallest type counts because the autoscaler may bring up any type of the group. Types missing from the catalog
    are left to the node group's own checks.
    """
    groups = platform.node_groups
    instance_types: Sequence[str] = groups.gpu.instance_types if group == "GPU" else groups.system.instance_types
    reserved_cpu, reserved_mem = node_headroom(platform, gpu=group == "GPU")
    catalog = load_catalog().instances
    known = [catalog[t] for t in instance_types if t in catalog]
    if not known:
        return []
    issues: list[Issue] = []
    smallest_cpu = min(i.vcpu for i in known) - reserved_cpu
    smallest_mem = min(i.memory_gib for i in known) - reserved_mem
    key = f"platform.nodeGroups.{'gpu' if group == 'GPU' else 'system'}.instanceTypes"
    gpus = known[0].gpus
    cpu_needed = quantity_value(cpu) if cpu is not None else 0.0
    mem_needed = quantity_value(memory) / 2**30 if memory is not None else 0.0

    def larger() -> str:
        # Catalog types of the same kind (same GPU count) that would hold the pod: what the group could use instead.
        fits = sorted(
            (
                t
                for t in catalog.values()
                if t.gpus == gpus and t.vcpu - reserved_cpu >= cpu_needed and t.memory_gib - reserved_mem >= mem_needed
            ),
            key=lambda t: t.on_demand_hourly,
        )
        shown = ", ".join(f"{t.name} ({t.vcpu} vCPU, {t.memory_gib:g} GiB)" for t in fits[:3])
        return (
            f", or use larger types in {key} ({shown})" if shown else f", or add larger types to data/aws_catalog.json and {key}"
        )

    if cpu is not None and cpu_needed > smallest_cpu:
        issues.append(
            Issue(
                f"{path}.cpu",
                f"{cpu} CPU does not fit the smallest {group} node ({smallest_cpu:g} CPU allocatable); lower it{larger()}",
            )
        )
    if memory is not None and mem_needed > smallest_mem:
        issues.append(
            Issue(
                f"{path}.memory",
                f"{memory} does not fit the smallest {group} node ({smallest_mem:g}Gi allocatable); lower it{larger()}",
            )
        )
    return issues


def workload_fit_issues(path: str, gpus: int, mounts_datasets: bool, platform: PlatformConfig) -> list[Issue]:
    """What a run's or job's pod needs from the platform: the datasets claim when it mounts it, its GPUs on one node."""
    issues = []
    if mounts_datasets and not platform.shared_storage.enabled:
        issues.append(
            Issue(f"{path}.datasets", "the datasets claim needs shared storage: set platform.sharedStorage.enabled: true")
        )
    too_many = gpus_per_node_issue(path, gpus, platform.node_groups.gpu)
    return issues + ([too_many] if too_many else [])


def gpus_per_node_issue(path: str, gpus: int, gpu: GpuNodeGroupConfig) -> Issue | None:
    """A pod's GPUs must fit on one node of the GPU group: when not, say which instance types would hold it."""
    per_node = gpu.gpus_per_node
    if gpus <= per_node:
        return None
    catalog = load_catalog().instances
    fits = sorted((t for t in catalog.values() if t.gpus >= gpus), key=lambda t: t.on_demand_hourly)
    shown = ", ".join(f"{t.name} ({t.gpus} x {t.gpu_model})" for t in fits[:3])
    where = (
        f"set platform.nodeGroups.gpu.instanceTypes to types with {gpus} or more GPUs, such as {shown} (every GPU "
        "workload then runs on them)"
        if shown
        else f"no instance type in data/aws_catalog.json has {gpus} GPUs; add one there and to platform.nodeGroups.gpu.instanceTypes"
    )
    return Issue(
        f"{path}.gpus",
        f"asks for {gpus} GPUs, but a pod runs on one node and the stack's GPU nodes ({', '.join(gpu.instance_types)}) have "
        f"{per_node} each; lower gpus to {per_node}, or {where}",
    )
