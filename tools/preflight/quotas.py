"""EC2 vCPU quotas: which quota each node group draws on at maxSize, and whether the account's value covers them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from catalog import instance_family, load_catalog
from components.nodegroups import gpu_group_name
from config import PlatformConfig
from tools.preflight.report import Check


@dataclass(frozen=True)
class Quota:
    """One Service Quotas quota of the service code `ec2`, in vCPUs."""

    code: str
    name: str


# Codes and names: AWS documentation "Amazon EC2 instance type quotas" (docs.aws.amazon.com/ec2/latest/instancetypes/
# ec2-instance-quotas), whose On-Demand and Spot tables link each quota name to
# console.aws.amazon.com/servicequotas/home/services/ec2/quotas/<code>. L-1216C47A is also the example of the AWS CLI
# user guide's Service Quotas examples (get-aws-default-service-quota, QuotaName as below). Read 2026-11-30.
STANDARD_ON_DEMAND = Quota("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
STANDARD_SPOT = Quota("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")
G_ON_DEMAND = Quota("L-DB2E81BA", "Running On-Demand G and VT instances")
G_SPOT = Quota("L-3819A6DF", "All G and VT Spot Instance Requests")
P_ON_DEMAND = Quota("L-417A185B", "Running On-Demand P instances")
P4_P3_P2_SPOT = Quota("L-7212CCBC", "All P4, P3 and P2 Spot Instance Requests")
P5_SPOT = Quota("L-C4BD4855", "All P5 Spot Instance Requests")

# Families of the Standard class (A, C, D, H, I, M, R, T, Z) whose names start like another class's letter.
_NOT_STANDARD = ("dl", "inf", "hpc", "trn", "mac")


def quota_for(instance_type: str, capacity: str) -> Quota | None:
    """The vCPU quota an instance of this type counts against, or None when simfleet knows no verified code for it."""
    family = instance_family(instance_type)
    spot = capacity == "spot"
    if family.startswith(("g", "vt")):
        return G_SPOT if spot else G_ON_DEMAND
    if family.startswith("p"):
        if not spot:
            return P_ON_DEMAND
        if family.startswith(("p2", "p3", "p4")):
            return P4_P3_P2_SPOT
        # p5, p5e, p5en by their family name; the quota's name says only "P5". No spot quota was found for p6.
        return P5_SPOT if family.startswith("p5") else None
    if family[:1] in tuple("acdhimrtz") and not family.startswith(_NOT_STANDARD):
        return STANDARD_SPOT if spot else STANDARD_ON_DEMAND
    return None


@dataclass(frozen=True)
class NodeGroupDemand:
    """What one managed node group can ask EC2 for at maxSize."""

    group: str  # the node group's key in components/nodegroups.py: system, gpu-spot, gpu-on-demand
    capacity: str  # onDemand | spot
    instance_types: tuple[str, ...]
    max_size: int
    vcpus: int  # per node: a group holds one shape (config/platform.py)

    @property
    def max_vcpus(self) -> int:
        return self.max_size * self.vcpus

    def describe(self) -> str:
        return f"{self.group} {self.max_size} x {self.vcpus} ({'/'.join(self.instance_types)})"


def node_group_demands(platform: PlatformConfig) -> list[NodeGroupDemand]:
    """The system group (always on-demand) and one GPU group per capacity type, as components/nodegroups.py builds them."""
    catalog = load_catalog().instances
    groups = platform.node_groups
    system = groups.system
    demands = [
        NodeGroupDemand(
            "system", "onDemand", tuple(system.instance_types), system.max_size, catalog[system.instance_types[0]].vcpu
        )
    ]
    gpu = groups.gpu
    for capacity in gpu.capacity:
        demands.append(
            NodeGroupDemand(
                gpu_group_name(capacity), capacity, tuple(gpu.instance_types), gpu.max_size, catalog[gpu.instance_types[0]].vcpu
            )
        )
    return demands


@dataclass(frozen=True)
class QuotaNeed:
    quota: Quota
    groups: tuple[NodeGroupDemand, ...]

    @property
    def vcpus(self) -> int:
        return sum(group.max_vcpus for group in self.groups)

    @property
    def label(self) -> str:
        return f"quota {self.quota.code} {self.quota.name}"

    @property
    def wanted(self) -> str:
        return f">= {self.vcpus} vCPU: " + " + ".join(group.describe() for group in self.groups)


def quota_needs(demands: Sequence[NodeGroupDemand]) -> tuple[list[QuotaNeed], list[Check]]:
    """Sum each quota's vCPUs over the groups that draw on it; warn about types with no known quota.

    A group whose types fall in two quota classes counts in full against each: any of its nodes may be either type.
    """
    by_code: dict[str, tuple[Quota, list[NodeGroupDemand]]] = {}
    unknown: list[Check] = []
    for demand in demands:
        quotas = {}
        for instance_type in demand.instance_types:
            quota = quota_for(instance_type, demand.capacity)
            if quota is None:
                unknown.append(
                    Check(
                        f"quota for {instance_type} ({demand.capacity})",
                        f">= {demand.max_vcpus} vCPU: {demand.describe()}",
                        "simfleet knows no verified quota code for this family; check it in the Service Quotas console",
                        "warn",
                    )
                )
            else:
                quotas[quota.code] = quota
        for quota in quotas.values():
            by_code.setdefault(quota.code, (quota, []))[1].append(demand)
    return [QuotaNeed(quota, tuple(groups)) for quota, groups in by_code.values()], unknown


@dataclass(frozen=True)
class QuotaValue:
    value: float | None
    aws_default: bool = False  # Service Quotas had no applied value, so this is the AWS default
    error: str | None = None  # the quota's ErrorReason, when Service Quotas could not read it


def quota_check(need: QuotaNeed, found: QuotaValue) -> Check:
    if found.value is None:
        return Check(need.label, need.wanted, f"no value: {found.error or 'Service Quotas returned none'}", "fail")
    value = found.value
    source = " (the AWS default: no applied value)" if found.aws_default else ""
    if value >= need.vcpus:
        return Check(need.label, need.wanted, f"{value:g} vCPU{source}", "ok")
    return Check(
        need.label,
        need.wanted,
        f"{value:g} vCPU{source}: {need.vcpus - value:g} short; request {need.quota.code} >= {need.vcpus} in Service Quotas",
        "fail",
    )
