"""The offline cost estimate: monthly idle and GPU-at-max cost, and a per-run upper bound, from the plan's resources.

Pure: it reads only the registrations (node groups, NAT gateways, Elastic IPs, KMS keys, log groups, the EKS cluster,
launch templates, SimRun Jobs) and the price catalog (data/aws_catalog.json), so the figures follow what
the program actually builds. Usage-priced items (NAT data processing, S3 and ECR storage, CloudWatch log
ingestion, data transfer) depend on traffic, not on the plan, and are listed as excluded.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import naming
import versions
from catalog import Catalog, is_gpu_family, load_catalog
from policies.rules import (
    EKS_CLUSTER,
    EKS_COMPONENT,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    Resource,
    eks_cluster_view,
    is_run,
    run_job,
    run_objects,
    whole_number,
)

NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
KMS_KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
DEFAULT_DISK_GIB = 20  # EKS managed node groups' default root volume when neither diskSize nor a launch template sets one


@dataclass(frozen=True)
class NodeGroupShape:
    name: str
    instance_type: str  # the priced type: the most expensive of the group's types (an upper bound)
    instance_types: tuple[str, ...]
    capacity: str  # SPOT | ON_DEMAND
    min_size: int
    max_size: int
    disk_gib: int
    gpu: bool


def _round(value: float) -> float:
    return round(value + 0.0, 2)


def _int(value: Any, default: int = 0) -> int:
    number = whole_number(value)
    return default if number is None else number


def _disk_gib(group: Resource, by_urn: Mapping[str, Resource]) -> int:
    """Root volume size: the launch template's block device mapping, else the group's diskSize, else EKS's default."""
    for urn in group.property_dependencies.get("launchTemplate", ()):
        template = by_urn.get(urn)
        if template is None or template.resource_type != LAUNCH_TEMPLATE:
            continue
        sizes = [_int((m.get("ebs") or {}).get("volumeSize")) for m in template.props.get("blockDeviceMappings") or []]
        if any(sizes):
            return max(sizes)
    return _int(group.props.get("diskSize"), DEFAULT_DISK_GIB)


def node_groups(resources: Sequence[Resource], catalog: Catalog) -> list[NodeGroupShape]:
    by_urn = {r.urn: r for r in resources}
    shapes = []
    for group in (r for r in resources if r.resource_type == NODE_GROUP):
        types = tuple(str(t) for t in group.props.get("instanceTypes") or [])
        priced = [t for t in types if t in catalog.instances]
        if not priced:
            raise ValueError(f"node group {group.name}: none of {list(types)} is in data/aws_catalog.json; add its price there")
        scaling = group.props.get("scalingConfig") or {}
        shapes.append(
            NodeGroupShape(
                name=group.name,
                instance_type=max(priced, key=lambda t: catalog.instances[t].on_demand_hourly),
                instance_types=types,
                capacity=str(group.props.get("capacityType") or naming.EKS_CAPACITY["onDemand"]),
                min_size=_int(scaling.get("minSize")),
                max_size=_int(scaling.get("maxSize")),
                disk_gib=_disk_gib(group, by_urn),
                gpu=any(is_gpu_family(t) for t in types),
            )
        )
    return shapes


def _node_hourly(group: NodeGroupShape, catalog: Catalog) -> float:
    price = catalog.instances[group.instance_type].on_demand_hourly
    return price * (1 - catalog.spot_discount) if group.capacity == naming.EKS_CAPACITY["spot"] else price


def _item(item: str, scope: str, quantity: float, unit: str, unit_usd: float, monthly: float) -> dict[str, Any]:
    return {
        "item": item,
        "scope": scope,
        "quantity": quantity,
        "unit": unit,
        "unitUsd": round(unit_usd, 6),
        "monthlyUsd": _round(monthly),
    }


def _hourly(item: str, hours: float, rate: float) -> dict[str, Any]:
    """An idle item billed by the hour."""
    return _item(item, "idle", hours, "hour", rate, hours * rate)


def _control_plane(resources: Sequence[Resource], catalog: Catalog, today: datetime.date) -> list[dict[str, Any]]:
    # The pulumi-eks component and its aws:eks child describe one cluster; count the component when present.
    clusters = [r for r in resources if r.resource_type == EKS_COMPONENT] or [
        r for r in resources if r.resource_type == EKS_CLUSTER
    ]
    items = []
    hours = catalog.hours_per_month
    for cluster in clusters:
        view = eks_cluster_view(cluster)
        release = versions.eks_release(view.version) if view and view.version else None
        extended = release is not None and release.end_of_standard < today
        hourly = catalog.services["eksExtendedSupportHourly" if extended else "eksControlPlaneHourly"]
        label = "EKS control plane" + (" (extended support)" if extended else "")
        items.append(_item(f"{label} {cluster.props.get('name') or cluster.name}", "idle", hours, "hour", hourly, hourly * hours))
    return items


def estimate(
    resources: Sequence[Resource],
    stack: str,
    region: str,
    catalog: Catalog | None = None,
    today: datetime.date | None = None,
) -> dict[str, Any]:
    """The cost.json document for one planned stack."""
    catalog = catalog or load_catalog()
    today = today or datetime.date.today()
    hours = catalog.hours_per_month
    services = catalog.services
    groups = node_groups(resources, catalog)

    idle = _control_plane(resources, catalog, today)
    nats = sum(1 for r in resources if r.resource_type == NAT_GATEWAY)
    if nats:
        idle.append(_hourly("NAT gateway hours", nats * hours, services["natGatewayHourly"]))
    eips = sum(1 for r in resources if r.resource_type == EIP)
    if eips:
        # Every public IPv4 address is billed hourly since 2024-02-01, the NAT gateways' Elastic IPs included.
        idle.append(_hourly("public IPv4 addresses (Elastic IPs)", eips * hours, services["publicIpv4Hourly"]))
    for key in (r for r in resources if r.resource_type == KMS_KEY):
        # One line per key, named by its purpose, so a new key (e.g. prod's control-plane log key) shows up by name.
        purpose = str(key.props.get("description") or key.name)
        idle.append(_item(f"KMS key: {purpose}", "idle", 1, "key-month", services["kmsKeyMonthly"], services["kmsKeyMonthly"]))
    for log_group in (r for r in resources if r.resource_type == LOG_GROUP):
        # A log group costs nothing to exist; ingestion and storage are usage-based and listed under "excluded".
        # Listed anyway so every group the stack owns, and how long it keeps data, is visible here.
        days = whole_number(log_group.props.get("retentionInDays"))
        kept = f"kept {days} days" if days else "never expires"
        idle.append(
            _item(
                f"CloudWatch log group {log_group.props.get('name') or log_group.name} ({kept})", "idle", 1, "log-group", 0.0, 0.0
            )
        )

    gpu_max: list[dict[str, Any]] = []
    gpu_idle_total = 0.0  # what the GPU groups cost at minSize; gpuMax replaces it by their maxSize cost
    for group in groups:
        hourly = _node_hourly(group, catalog)
        capacity = "spot" if group.capacity == naming.EKS_CAPACITY["spot"] else "on-demand"
        sizes = [("idle", group.min_size)] + ([("gpuMax", group.max_size)] if group.gpu else [])
        for scope, nodes in sizes:
            if not nodes:
                continue
            disk = nodes * group.disk_gib
            items = [
                _item(
                    f"{group.name}: {nodes} x {group.instance_type} {capacity}",
                    scope,
                    nodes * hours,
                    "instance-hour",
                    hourly,
                    nodes * hours * hourly,
                ),
                _item(
                    f"{group.name}: {nodes} x {group.disk_gib} GiB gp3 root volumes",
                    scope,
                    disk,
                    "GiB-month",
                    services["gp3PerGibMonth"],
                    disk * services["gp3PerGibMonth"],
                ),
            ]
            (idle if scope == "idle" else gpu_max).extend(items)
            if scope == "idle" and group.gpu:
                gpu_idle_total += sum(i["monthlyUsd"] for i in items)

    idle_total = sum(i["monthlyUsd"] for i in idle)
    gpu_max_total = idle_total - gpu_idle_total + sum(i["monthlyUsd"] for i in gpu_max)

    return {
        "stack": stack,
        "region": region,
        "currency": "USD",
        "priceRegion": catalog.region,
        "priceDate": catalog.as_of,
        "priceSource": catalog.source,
        "hoursPerMonth": hours,
        "idleMonthlyUsd": _round(idle_total),
        "gpuMaxMonthlyUsd": _round(gpu_max_total),
        "runs": run_estimates(resources, groups, catalog),
        "breakdown": idle + gpu_max,
        "assumptions": [
            "Node groups are priced at their most expensive instance type (an upper bound).",
            f"Spot nodes cost {1 - catalog.spot_discount:.0%} of On-Demand: {catalog.spot_note}",
            "idleMonthlyUsd: control plane, NAT gateways, public IPv4, KMS keys and every node group at minSize (GPU groups scale to 0); "
            "log groups are listed at 0 because they are billed by ingestion and storage only.",
            "gpuMaxMonthlyUsd: the same with every GPU node group at maxSize, by capacity type.",
            "Runs: one node per pod, (parallelism or 1) pods for the whole maxRuntime (activeDeadlineSeconds bounds the Job).",
            "A run's viewport NLB (plus a public IPv4 per public subnet) lives as long as its Job: from creation until the "
            "TTL controller deletes the finished Job, which owns the Service. Priced for maxRuntime + ttlAfterFinished.",
            *(
                [f"Prices are for {catalog.region}; this stack runs in {region}, where they differ."]
                if region != catalog.region
                else []
            ),
        ],
        "excluded": [
            "NAT gateway data processing (per GB)",
            "S3 and ECR storage and requests",
            "CloudWatch Logs ingestion and storage (control-plane and container logs; each log group's retention bounds storage)",
            "data transfer out, and NLB capacity units (LCU) of viewport load balancers",
        ],
    }


def viewport_hourly(run: Resource, resources: Sequence[Resource], catalog: Catalog) -> float:
    """A run's LoadBalancer Service is an internet-facing NLB: NLB hours plus one public IPv4 per public subnet (AZ)."""
    objects = run_objects(run)
    if not any(o.get("kind") == "Service" and (o.get("spec") or {}).get("type") == "LoadBalancer" for o in objects):
        return 0.0
    public_subnets = sum(
        1
        for r in resources
        if r.resource_type == "aws:ec2/subnet:Subnet" and "kubernetes.io/role/elb" in (r.props.get("tags") or {})
    )
    return catalog.services["nlbHourly"] + public_subnets * catalog.services["publicIpv4Hourly"]


def run_estimates(resources: Sequence[Resource], groups: Sequence[NodeGroupShape], catalog: Catalog) -> list[dict[str, Any]]:
    """Upper bound per run: node price x maxRuntime x pods at once, on the GPU group of the run's capacity type."""
    gpu_groups = [g for g in groups if g.gpu]
    out: list[dict[str, Any]] = []
    for run in filter(is_run, resources):
        job = run_job(run)
        spec = (job or {}).get("spec") or {}
        pod = ((spec.get("template") or {}).get("spec")) or {}
        capacity = (pod.get("nodeSelector") or {}).get(naming.CAPACITY_TYPE_LABEL)
        candidates = [g for g in gpu_groups if capacity is None or g.capacity == capacity] or gpu_groups
        name = str(run.props.get("runName"))
        if not candidates:
            out.append({"name": name, "estimatedUsd": None, "note": "no GPU node group to run on"})
            continue
        group = max(candidates, key=lambda g: _node_hourly(g, catalog))
        pods = _int(spec.get("parallelism"), 1)
        if _int(spec.get("completions")):
            pods = min(pods, _int(spec.get("completions")))
        runtime_hours = _int(spec.get("activeDeadlineSeconds")) / 3600
        hourly = _node_hourly(group, catalog)
        lifetime_hours = runtime_hours + _int(spec.get("ttlSecondsAfterFinished")) / 3600
        viewport_usd = viewport_hourly(run, resources, catalog) * lifetime_hours
        out.append(
            {
                "name": name,
                "estimatedUsd": _round(hourly * runtime_hours * pods + viewport_usd),
                "viewportUsd": _round(viewport_usd),
                "instanceType": group.instance_type,
                "capacity": group.capacity,
                "pods": pods,
                "maxRuntimeHours": round(runtime_hours, 2),
                "hourlyUsd": round(hourly, 4),
            }
        )
    return out


def summary(cost: Mapping[str, Any]) -> list[str]:
    """Lines for the plan's printed summary."""
    lines = [
        f"cost ({cost['priceRegion']} prices of {cost['priceDate']}, USD/month): idle {cost['idleMonthlyUsd']:.2f}, "
        f"all GPU nodes at max {cost['gpuMaxMonthlyUsd']:.2f}"
    ]
    for item in cost["breakdown"]:
        lines.append(f"  {item['scope']:<6} {item['item']:<72} {item['monthlyUsd']:>10.2f}")
    for run in cost["runs"]:
        if run.get("estimatedUsd") is None:
            lines.append(f"  run {run['name']}: {run.get('note')}")
        else:
            lines.append(
                f"  run {run['name']}: up to {run['estimatedUsd']:.2f} ({run['pods']} x {run['instanceType']} "
                f"{run['capacity']} for {run['maxRuntimeHours']:g}h"
                + (f", viewport NLB {run['viewportUsd']:.2f}" if run.get("viewportUsd") else "")
                + ")"
            )
    return lines
