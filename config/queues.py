"""`simfleet:queues`: one Kueue queue per team, with nominal quotas per GPU capacity type, and the rules that need the
platform (the GPU node groups and the services' max replicas bound the quotas; config/capacity.py).

Kueue counts quota per ResourceFlavor, and simfleet has one flavor per GPU capacity type (spot, on-demand). So every
quota here is per capacity type: a mapping `{spot: 2, onDemand: 1}`, or one value that applies to each capacity type the
stack has (`gpus: 2` on a stack with both is 2 spot GPUs and 2 on-demand GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator

import naming
from config.capacity import CAPACITY_LABEL, CAPACITY_ORDER, GpuCapacity, PerGpu
from config.errors import Issue
from config.types import QUANTITY_RE, RUN_NAME_RE, CapacityType, Model, Quantity

QUEUE_NAME_MAX = 63  # a label value: Jobs name their queue in kueue.x-k8s.io/queue-name
# The context key load_stack_config passes to QueueSpec.model_validate: the stack's GPU capacity types.
CAPACITY_CONTEXT = "gpu_capacity"


class GpuSplit(Model):
    spot: int | None = Field(None, ge=0, description="GPUs on spot capacity.")
    on_demand: int | None = Field(None, ge=0, description="GPUs on on-demand capacity.")

    def get(self, capacity: CapacityType) -> int | None:
        return self.spot if capacity == "spot" else self.on_demand


class QuantitySplit(Model):
    spot: Quantity | None = Field(None, description="On spot capacity.")
    on_demand: Quantity | None = Field(None, description="On on-demand capacity.")

    def get(self, capacity: CapacityType) -> str | None:
        return self.spot if capacity == "spot" else self.on_demand


def _stack_capacities(info: ValidationInfo) -> Sequence[str]:
    # Without a valid platform, a single value is spread over both types; the platform rules are skipped then anyway.
    return (info.context or {}).get(CAPACITY_CONTEXT) or CAPACITY_ORDER


def _gpu_split(value: Any, info: ValidationInfo) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number of GPUs; give one number or {{spot: n, onDemand: n}}")
    if value < 0:
        raise ValueError(f"{value} is negative; a GPU quota is 0 or more")
    return dict.fromkeys(_stack_capacities(info), value)


def _quantity_split(value: Any, info: ValidationInfo) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, bool) or not QUANTITY_RE.match(str(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (like 16, 7500m or 64Gi) and 0 or more")
    return dict.fromkeys(_stack_capacities(info), str(value))


def _per_capacity_schema(scalar: dict[str, Any], description: str, optional: bool = True) -> WithJsonSchema:
    split = {
        "type": "object",
        "properties": {"spot": scalar, "onDemand": scalar},
        "additionalProperties": False,
    }
    return WithJsonSchema({"anyOf": [scalar, split, *([{"type": "null"}] if optional else [])], "description": description})


_GPUS = {"type": "integer", "minimum": 0}
_QUANTITY = {"anyOf": [{"type": "string", "pattern": QUANTITY_RE.pattern}, {"type": "number", "minimum": 0}]}

GpuQuota = Annotated[
    GpuSplit,
    BeforeValidator(_gpu_split),
    _per_capacity_schema(
        _GPUS, "Nominal GPUs: one number for each GPU capacity type of the stack, or {spot, onDemand}.", optional=False
    ),
]
GpuLimit = Annotated[
    GpuSplit | None,
    BeforeValidator(_gpu_split),
    _per_capacity_schema(_GPUS, "GPUs this team may borrow beyond its quota, per capacity type; unset: no limit."),
]
QuantityQuota = Annotated[
    QuantitySplit | None,
    BeforeValidator(_quantity_split),
    _per_capacity_schema(_QUANTITY, "Nominal quota per capacity type; unset: the GPU nodes' allocatable share per GPU."),
]


class QueueSpec(Model):
    """One team's queue: a ClusterQueue in the cohort and a LocalQueue of the same name in the runs namespace."""

    name: str = Field(description=f"DNS-1123 label starting with a letter, at most {QUEUE_NAME_MAX} characters.")
    default: bool = Field(False, description="Runs and jobs that name no queue use this one; at most one queue sets it.")
    gpus: GpuQuota
    cpu: QuantityQuota = None
    memory: QuantityQuota = None
    borrowing_limit: GpuLimit = None
    weight: float = Field(
        1, ge=0, le=1000, description="Fair-sharing weight: a larger weight gets a larger share of the idle GPUs it borrows."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not RUN_NAME_RE.match(name) or len(name) > QUEUE_NAME_MAX:
            raise ValueError(
                f"{name!r} must be a DNS-1123 label that starts with a letter and has at most {QUEUE_NAME_MAX} characters "
                "(it names a ClusterQueue, a LocalQueue and the kueue.x-k8s.io/queue-name label of every Job in it)"
            )
        if name in naming.RESERVED_QUEUE_NAMES:
            raise ValueError(
                f"{name!r} is reserved: Kueue puts every Job without a queue label in a namespace's LocalQueue named "
                "'default' (LocalQueueDefaulting), which would queue the continuation gate too; choose another name"
            )
        return name


@dataclass(frozen=True)
class FlavorQuota:
    """A team's quota on one ResourceFlavor (one GPU capacity type); borrowing None means no limit."""

    capacity: CapacityType
    gpus: int
    cpu: str
    memory: str
    borrowing_gpus: int | None = None
    borrowing_cpu: str | None = None
    borrowing_memory: str | None = None


@dataclass(frozen=True)
class TeamQueue:
    name: str
    weight: float
    quotas: tuple[FlavorQuota, ...]  # spot first, then on-demand: the order Kueue tries flavors in

    def gpus(self, capacity: CapacityType | None = None) -> int:
        return sum(q.gpus for q in self.quotas if capacity is None or q.capacity == capacity)


@dataclass(frozen=True)
class QueuesConfig:
    """The stack's queues, resolved against its platform: what components/queues.py renders and runs validate against.

    `names()` are the LocalQueue names a run or job may put in its `queue:` field; `default_name` is the one it gets
    when it names none.
    """

    teams: tuple[TeamQueue, ...] = ()
    default_name: str = ""
    # True when the stack file has no simfleet:queues section and simfleet made the one queue.
    generated: bool = False
    capacity: dict[CapacityType, GpuCapacity] = field(default_factory=dict)

    def names(self) -> tuple[str, ...]:
        return tuple(team.name for team in self.teams)

    def nominal_gpus(self, capacity: CapacityType | None = None) -> int:
        """The sum of the teams' nominal GPU quotas: the most GPUs Kueue admits at once (of one capacity type)."""
        return sum(team.gpus(capacity) for team in self.teams)

    def preemptible_gpus(self) -> int:
        """The most GPUs Kueue can preempt at once: only borrowed GPUs are preempted (withinClusterQueue Never), and a
        team borrows at most its borrowingLimit and at most the rest of the cohort's nominal quota; per capacity type,
        never more than that type's nominal total."""
        total = 0
        for capacity in self.capacity:
            cohort = self.nominal_gpus(capacity)
            borrowed = 0
            for team in self.teams:
                quota = next((q for q in team.quotas if q.capacity == capacity), None)
                if quota is not None:
                    room = cohort - quota.gpus
                    borrowed += room if quota.borrowing_gpus is None else min(quota.borrowing_gpus, room)
            total += min(cohort, borrowed)
        return total

    def admissible_gpus(self, queue: str, capacity: CapacityType) -> int:
        """The most GPUs of one capacity type a single workload in `queue` can ever be admitted with: its team's
        nominal quota plus what it may borrow (its borrowingLimit, else no limit), within the cohort's total."""
        team = next((t for t in self.teams if t.name == queue), None)
        quota = next((q for q in team.quotas if q.capacity == capacity), None) if team is not None else None
        if quota is None:
            return 0
        cohort = self.nominal_gpus(capacity)
        return cohort if quota.borrowing_gpus is None else min(cohort, quota.gpus + quota.borrowing_gpus)


def _millicpu(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _mib(mib: int) -> str:
    if mib == 0:
        return "0"
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _resolve(spec: QueueSpec, capacity: dict[CapacityType, GpuCapacity], per_gpu: PerGpu) -> TeamQueue:
    """A team's quotas on each capacity type of the stack; what the stack file leaves out gets the documented default."""
    quotas = []
    for cap in capacity:
        gpus = spec.gpus.get(cap) or 0
        borrow = spec.borrowing_limit.get(cap) if spec.borrowing_limit is not None else None
        cpu = spec.cpu.get(cap) if spec.cpu is not None else None
        memory = spec.memory.get(cap) if spec.memory is not None else None
        quotas.append(
            FlavorQuota(
                cap,
                gpus,
                cpu if cpu is not None else _millicpu(gpus * per_gpu.millicpu),
                memory if memory is not None else _mib(gpus * per_gpu.memory_mib),
                borrow,
                # CPU and memory borrowing follows the GPUs': a borrowed GPU comes with its node's share of both.
                None if borrow is None else _millicpu(borrow * per_gpu.millicpu),
                None if borrow is None else _mib(borrow * per_gpu.memory_mib),
            )
        )
    return TeamQueue(spec.name, spec.weight, tuple(quotas))


def declared_queues(specs: Sequence[tuple[int, QueueSpec]], section: bool) -> QueuesConfig:
    """The queues' names and the default, known from the stack file alone (without quotas): what a run's or job's
    `queue:` is checked against even when the platform section has errors. `section`: the file has simfleet:queues."""
    if not section:
        return QueuesConfig((TeamQueue(naming.GENERATED_QUEUE, 1, ()),), naming.GENERATED_QUEUE, True)
    teams = tuple(TeamQueue(spec.name, spec.weight, ()) for _, spec in specs)
    marked = [spec.name for _, spec in specs if spec.default]
    return QueuesConfig(teams, marked[0] if marked else (teams[0].name if teams else ""))


def generated_queues(capacity: dict[CapacityType, GpuCapacity], per_gpu: PerGpu) -> QueuesConfig:
    """No simfleet:queues section: one queue with every GPU the services leave free, so every stack has a queue."""
    spec = QueueSpec(name=naming.GENERATED_QUEUE, gpus={cap: c.free for cap, c in capacity.items()})
    return QueuesConfig((_resolve(spec, capacity, per_gpu),), naming.GENERATED_QUEUE, True, capacity)


def resolve_queues(
    specs: Sequence[tuple[int, QueueSpec]], capacity: dict[CapacityType, GpuCapacity], per_gpu: PerGpu
) -> QueuesConfig:
    """The stack's queues with their quotas; the default is the one marked `default: true`, else the first."""
    teams = tuple(_resolve(spec, capacity, per_gpu) for _, spec in specs)
    return QueuesConfig(teams, declared_queues(specs, True).default_name, False, capacity)


def queue_rules(specs: Sequence[tuple[int, QueueSpec]]) -> list[Issue]:
    """Rules across entries: unique names, one default."""
    issues: list[Issue] = []
    names: dict[str, int] = {}
    default: int | None = None
    for index, spec in specs:
        if spec.name in names:
            issues.append(Issue(f"queues[{index}].name", f"{spec.name!r} is already used by queues[{names[spec.name]}]"))
        names.setdefault(spec.name, index)
        if spec.default:
            if default is not None:
                issues.append(Issue(f"queues[{index}].default", f"queues[{default}] is already the default; only one can be"))
            else:
                default = index
    return issues


_PER_CAPACITY_FIELDS = (("gpus", "gpus"), ("cpu", "cpu"), ("memory", "memory"), ("borrowing_limit", "borrowingLimit"))


def queue_platform_rules(
    specs: Sequence[tuple[int, QueueSpec]], capacity: dict[CapacityType, GpuCapacity]
) -> tuple[list[Issue], list[str]]:
    """Errors and warnings that need the platform: capacity types the stack has, and quotas that fit its GPUs.

    Error: a capacity type's nominal GPU quotas add up to more than its node group holds at maxSize minus what the
    services take at their max replicas (config/capacity.py), so Kueue could admit work that has no GPU to run on, or
    that takes the GPUs a service's scale-up needs. Warning: a team's quota plus borrowing limit is more than that: the
    limit promises GPUs that do not exist (Kueue lends only other teams' unused nominal quota, so it can never be reached).
    """
    issues: list[Issue] = []
    warnings: list[str] = []
    present = ", ".join(capacity) or "none"
    for index, spec in specs:
        for attr, key in _PER_CAPACITY_FIELDS:
            split = getattr(spec, attr)
            if split is None:
                continue
            for cap in CAPACITY_ORDER:
                if split.get(cap) is not None and cap not in capacity:
                    issues.append(
                        Issue(
                            f"queues[{index}].{key}.{cap}",
                            f"the stack has no {CAPACITY_LABEL[cap]} GPU node group (platform.nodeGroups.gpu.capacity: "
                            f"{present}); remove this key or add {cap} there",
                        )
                    )
    for cap, line in capacity.items():
        teams = [(index, spec, spec.gpus.get(cap) or 0) for index, spec in specs]
        nominal = sum(gpus for _, _, gpus in teams)
        label = CAPACITY_LABEL[cap]
        if nominal > line.free:
            split = ", ".join(f"{spec.name} {gpus}" for _, spec, gpus in teams if gpus)
            issues.append(
                Issue(
                    "queues",
                    f"the nominal {label} GPU quotas add up to {nominal} ({split}), but {line.describe()}; lower the "
                    "quotas, raise platform.nodeGroups.gpu.maxSize, or lower the services' replicas.max",
                )
            )
        for index, spec, gpus in teams:
            borrow = spec.borrowing_limit.get(cap) if spec.borrowing_limit is not None else None
            if borrow is not None and gpus + borrow > line.free:
                warnings.append(
                    f"queues[{index}].borrowingLimit: {spec.name} may hold {gpus} + {borrow} {label} GPUs, more than the "
                    f"{line.free} queued work can ever have ({line.describe()}); Kueue lends only other teams' unused "
                    f"quota, so this team can reach at most the cohort's {nominal}"
                )
    return issues, warnings
