"""GPU capacity per capacity type: what the GPU node groups hold at maxSize, what services take at their max replicas, and
what is left for queued runs and jobs. One arithmetic for the queue validation, the runs namespace's ResourceQuota and
docs/researchers/queues.md.

Services are Deployments that Kueue does not manage, so nothing queues their scale-ups: the GPUs they can reach are kept
out of the queues' nominal quotas instead, and Kueue never admits work onto them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from catalog import load_catalog
from config.fit import node_headroom
from config.platform import PlatformConfig
from config.services import ROLLOUT_SURGE, ServiceSpec
from config.types import CapacityType

# The order Kueue tries flavors in: spot first (cheaper), then on-demand.
CAPACITY_ORDER: tuple[CapacityType, ...] = ("spot", "onDemand")
CAPACITY_LABEL = {"spot": "spot", "onDemand": "on-demand"}


@dataclass(frozen=True)
class GpuCapacity:
    """One GPU capacity type of the stack."""

    capacity: CapacityType
    node_group_gpus: int  # the capacity type's managed node group at maxSize x GPUs per node
    # (service, GPUs at replicas.max plus the rolling update's surge) for the services on this capacity type
    services: tuple[tuple[str, int], ...] = ()

    @property
    def service_gpus(self) -> int:
        return sum(gpus for _, gpus in self.services)

    @property
    def free(self) -> int:
        """GPUs queued work may hold: the node group at maxSize minus every service at its max replicas and their surge."""
        return max(0, self.node_group_gpus - self.service_gpus)

    def describe(self) -> str:
        label = CAPACITY_LABEL[self.capacity]
        held = ", ".join(f"{name} {gpus}" for name, gpus in self.services)
        services = (
            f"services take {self.service_gpus} at their max replicas plus a rolling update's surge pod ({held})"
            if self.services
            else "no service uses it"
        )
        return f"the {label} GPU node group holds {self.node_group_gpus} at maxSize and {services}, which leaves {self.free}"


def gpu_capacity(platform: PlatformConfig, services: Iterable[ServiceSpec] = ()) -> dict[CapacityType, GpuCapacity]:
    """Each GPU capacity type the stack has, spot first. Every type gets its own node group at the same maxSize."""
    gpu = platform.node_groups.gpu
    per_group = gpu.max_size * gpu.gpus_per_node
    services = list(services)
    return {
        capacity: GpuCapacity(
            capacity,
            per_group,
            # A rollout at max replicas starts ROLLOUT_SURGE more pods before it stops old ones: their GPUs too.
            tuple((s.name, s.gpus * (s.replicas.max + ROLLOUT_SURGE)) for s in services if s.gpus > 0 and s.capacity == capacity),
        )
        for capacity in CAPACITY_ORDER
        if capacity in gpu.capacity
    }


def node_group_gpus(capacity: dict[CapacityType, GpuCapacity]) -> int:
    return sum(c.node_group_gpus for c in capacity.values())


def runs_gpu_quota(capacity: dict[CapacityType, GpuCapacity], nominal: int, preemptible: int) -> int:
    """The runs namespace's ResourceQuota on requests.nvidia.com/gpu: what Kueue admits, plus room for its victims.

    `nominal` is the sum of the queues' nominal GPU quotas, the most Kueue admits at once (borrowing lends unused nominal
    quota between teams, it never adds to it). `preemptible` is the most of those GPUs Kueue can take back at once
    (QueuesConfig.preemptible_gpus: only borrowed GPUs are ever preempted). A preempted pod counts against a
    ResourceQuota until it is gone, for up to its grace period, while Kueue has already admitted its replacement: without
    this headroom the replacement's pods are refused ("exceeded quota") until the victims exit. The quota is at most the
    GPU node groups at maxSize. Kueue is what keeps queued work inside its quotas and off the services' capacity type;
    this only bounds a Job that bypasses Kueue (no queue label), which can take at most the headroom beyond them. The
    relation kept (gpu_quota_problems): nominal <= this <= the node groups at maxSize.
    """
    return min(node_group_gpus(capacity), nominal + preemptible)


def gpu_quota_problems(quota: int, queued: int, node_groups: int) -> list[str]:
    """Why a runs-namespace GPU quota does not fit between the queues' nominal quotas and the node groups' GPUs."""
    problems = []
    if quota < queued:
        problems.append(
            f"the runs namespace's GPU quota ({quota}) is below the queues' nominal quotas ({queued}): Jobs Kueue admits "
            "would be refused pods"
        )
    if quota > node_groups:
        problems.append(f"the runs namespace's GPU quota ({quota}) is above what the GPU node groups hold ({node_groups})")
    return problems


@dataclass(frozen=True)
class PerGpu:
    """The CPU and memory a pod can have per GPU on the GPU nodes: the smallest type's allocatable / its GPUs."""

    millicpu: int
    memory_mib: int


def per_gpu_allocatable(platform: PlatformConfig) -> PerGpu:
    gpu = platform.node_groups.gpu
    catalog = load_catalog().instances
    known = [catalog[t] for t in gpu.instance_types if t in catalog]
    reserved_cpu, reserved_memory = node_headroom(platform, gpu=True)
    cpu = min(i.vcpu for i in known) - reserved_cpu
    memory = min(i.memory_gib for i in known) - reserved_memory
    gpus = gpu.gpus_per_node
    return PerGpu(int(cpu * 1000 // gpus), int(memory * 1024 // gpus))
