"""The offline cost estimate: monthly idle and GPU-ceiling cost, each service at min and max replicas, and (through
tools/run_cost.py) each run's and job's cost per admission.

Pure: it reads only the registrations (node groups, NAT gateways, Elastic IPs, KMS keys, log groups, the EKS cluster,
launch templates, EFS, Helm releases, SimRun Jobs, service Deployments, HPAs and Services, Kueue's ClusterQueues and
ResourceFlavors) and the price catalog
(data/aws_catalog.json), so the figures follow what the program actually builds. Usage-priced items (NAT data
processing, S3, ECR and EFS storage, EFS transfer, CloudWatch log ingestion, data transfer) depend on traffic, not on
the plan, and are listed as excluded.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import naming
import versions
from catalog import Catalog, is_gpu_family, load_catalog
from config import QUANTITY_RE, quantity_value
from policies.rules.eks import EKS_CLUSTER, EKS_COMPONENT, LAUNCH_TEMPLATE, NODE_GROUP, eks_cluster_view
from policies.rules.model import Resource
from policies.rules.pods import pod_gpus
from policies.rules.props import whole_number
from policies.rules.services import is_service
from tools import cost_observability

NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EFS_FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
EFS_MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
K8S_SERVICE = "kubernetes:core/v1:Service"
EIP = "aws:ec2/eip:Eip"
KMS_KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CLUSTER_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"
RESOURCE_FLAVOR = "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor"
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


def node_hourly(group: NodeGroupShape, catalog: Catalog) -> float:
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
    from tools.run_cost import run_estimates  # it prices runs on this module's node groups: imported here, not in a cycle

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

    idle += efs_items(resources, catalog) + volume_items(resources, catalog)

    service_costs = service_estimates(resources, groups, catalog)
    ceiling = gpu_ceiling(groups, queue_gpus(resources), service_costs, catalog)
    gpu_max: list[dict[str, Any]] = []
    gpu_idle_total = 0.0  # what the GPU groups cost at minSize; gpuMax replaces it by their cost at the ceiling
    for group in groups:
        hourly = node_hourly(group, catalog)
        capacity = "spot" if group.capacity == naming.EKS_CAPACITY["spot"] else "on-demand"
        sizes = [("idle", group.min_size)] + ([("gpuMax", ceiling["nodes"][group.name])] if group.gpu else [])
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

    system = next((g for g in groups if not g.gpu), None)
    observability = (
        cost_observability.estimate(
            resources,
            catalog,
            system.min_size,
            system.instance_type,
            sum(1 for r in resources if r.resource_type == CLUSTER_QUEUE),
            len(service_costs),
        )
        if system is not None
        else None
    )
    # What the stack keeps running with no run or job: the platform, the observability stack (Container Insights, the
    # collector's metrics, the dashboard and the alarms bill while nothing runs) and every service at its minimum
    # replicas, each a line of the breakdown, so the idle figure is their sum and nothing beside it.
    services_min = sum(entry["minMonthlyUsd"] for entry in service_costs)
    if observability is not None:
        idle += observability_items(observability, "idle")
    idle += [service_idle_item(entry) for entry in service_costs if entry["minMonthlyUsd"]]
    if observability is not None:
        # At the ceiling every GPU node it prices runs a pod that Container Insights observes.
        gpu_nodes = sum(ceiling["nodes"][g.name] for g in groups if g.gpu)
        gpu_max += observability_gpu_items(observability, gpu_nodes, hours)
    idle_total = sum(i["monthlyUsd"] for i in idle)
    gpu_max_total = idle_total - gpu_idle_total - services_min + sum(i["monthlyUsd"] for i in gpu_max)

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
        # How many nodes of each GPU group gpuMaxMonthlyUsd prices, and why.
        "gpuCeiling": ceiling["byCapacity"] | {"source": ceiling["source"]},
        # Per admission, not per month (tools/run_cost.py).
        "runs": run_estimates(resources, groups, catalog),
        "services": service_costs,
        # The part of idleMonthlyUsd that is the services at their minimum replicas.
        "servicesMinMonthlyUsd": _round(services_min),
        # Container Insights, the collector, the dashboard and the alarms (tools/cost_observability.py); null when off.
        # Its items are idle lines of the breakdown too: it all runs while the stack is idle.
        "observability": observability,
        "breakdown": idle + gpu_max,
        "assumptions": [
            "Node groups are priced at their most expensive instance type (an upper bound).",
            f"Spot nodes cost {1 - catalog.spot_discount:.0%} of On-Demand: {catalog.spot_note}",
            "idleMonthlyUsd: what the stack keeps running with no run or job, the sum of the breakdown's idle lines: "
            "control plane, NAT gateways, public IPv4, KMS keys, every node group at minSize (GPU groups scale to 0), the "
            "observability stack (Container Insights' observations of the idle nodes, the collector's custom metrics and "
            "samples, the dashboard, the alarms: `observability`) and every deployed service at its minimum replicas; log "
            "groups are listed at 0 because they are billed by ingestion and storage only.",
            (
                "gpuMaxMonthlyUsd: the same with each GPU node group at the most nodes the stack can make it use: its "
                "capacity type's queue quotas (the sum of the ClusterQueues' nominal GPU quotas, the most Kueue admits at "
                "once: borrowing moves unused quota between teams, it never adds to it) plus the GPUs of its services at "
                "their max replicas, in whole nodes, at most maxSize (gpuCeiling). Jobs without a queue label bypass "
                "Kueue; only the runs namespace's GPU quota bounds them."
                if ceiling["source"] == "queues"
                else "gpuMaxMonthlyUsd: the same with every GPU node group at maxSize, by capacity type."
            ),
            "Runs and jobs (both in `runs`, told apart by `kind`) are priced per admission, in USD, not per month (a Job "
            "Kueue preempts and admits again gets its deadline again). upToUsd: (parallelism or 1) pods, one node each "
            "with its root volume (hourlyUsd), for the whole activeDeadlineSeconds (deadlineHours), which covers every "
            "wave, start-up, uploads and retry slots, then for afterDeadlineHours (the pods' termination grace and the "
            "Cluster Autoscaler's scale-down-unneeded-time): a large overestimate of what finishes normally. Work that pins no capacity type (batch runs, spot "
            "jobs) is bounded at on-demand prices, since Kueue may fall back to on-demand; spotUpToUsd is the same on "
            "spot. typicalUsd: each seed or shard run once by one pod for its maxRuntime plus the pod's allowances, "
            "and each node's scale-down wait (typicalNodeHours), no retry, on the capacity Kueue tries first (typicalCapacity); typicalHours is the "
            "wall time.",
            "A run's viewport NLB (plus a public IPv4 per public subnet) lives as long as its Job: from creation until the "
            "TTL controller deletes the finished Job, which owns the Service. Priced for maxRuntime + ttlAfterFinished.",
            "Services run all month. A GPU service holds one GPU node of its capacity type per (GPUs per node / GPUs per "
            "replica) replicas, rounded up: one node per replica when a replica asks for a node's GPUs. A CPU service is "
            "priced as the share of a system node its requests reserve (the larger of CPU and memory). An internal NLB "
            "adds its hourly charge (no public IPv4).",
            "Shared storage: EFS has no charge for the file system or its mount targets; what it stores and transfers is "
            "usage-priced (excluded). The Pushgateway's volume is priced at its nominal size on EFS Standard, an upper "
            "bound: EFS bills the bytes stored, a few KB to MB of pushed metrics.",
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
            "data transfer out, and NLB capacity units (LCU) of viewport and service load balancers",
            "EFS storage (Standard $0.30/GB-month in us-east-1, Infrequent Access less, plus a per-GB read charge) and "
            "Elastic Throughput transfer (per GB read and written)",
        ],
    }


def queue_gpus(resources: Sequence[Resource]) -> dict[str, int] | None:
    """The ClusterQueues' nominal GPU quotas summed by EKS capacity type (each flavor's capacityType node label), or
    None when the stack registers no ClusterQueue."""
    queues = [r for r in resources if r.resource_type == CLUSTER_QUEUE]
    if not queues:
        return None
    capacity_of = {
        str((r.props.get("metadata") or {}).get("name")): ((r.props.get("spec") or {}).get("nodeLabels") or {}).get(
            naming.CAPACITY_TYPE_LABEL
        )
        for r in resources
        if r.resource_type == RESOURCE_FLAVOR
    }
    totals: dict[str, int] = {}
    for queue in queues:
        for group in (queue.props.get("spec") or {}).get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                capacity = capacity_of.get(str(flavor.get("name")))
                for resource in flavor.get("resources") or []:
                    if capacity and resource.get("name") == naming.GPU_RESOURCE:
                        totals[capacity] = totals.get(capacity, 0) + _int(resource.get("nominalQuota"))
    return totals


def gpu_ceiling(
    groups: Sequence[NodeGroupShape], queued: Mapping[str, int] | None, services: Sequence[Mapping[str, Any]], catalog: Catalog
) -> dict[str, Any]:
    """The nodes of each GPU group the estimate prices at the ceiling: maxSize, or, with queues, what the capacity type's
    queue quotas plus its services at max replicas fill in whole nodes (at most maxSize)."""
    nodes: dict[str, int] = {}
    by_capacity: dict[str, dict[str, Any]] = {}
    for capacity in sorted({g.capacity for g in groups if g.gpu}):
        members = [g for g in groups if g.gpu and g.capacity == capacity]
        max_nodes = sum(g.max_size for g in members)
        line: dict[str, Any] = {"maxSizeNodes": max_nodes}
        if queued is None:
            for g in members:
                nodes[g.name] = g.max_size
            line["nodes"] = max_nodes
        else:
            service_gpus = sum(
                s.get("gpusPerReplica", 0) * s.get("maxReplicas", 0) for s in services if s.get("capacity") == capacity
            )
            per_node = min(catalog.instances[t].gpus for g in members for t in g.instance_types if t in catalog.instances)
            wanted = math.ceil((queued.get(capacity, 0) + service_gpus) / per_node)
            for g in members:
                nodes[g.name] = min(g.max_size, wanted)
                wanted -= nodes[g.name]
            line.update(queueNominalGpus=queued.get(capacity, 0), serviceGpusAtMax=service_gpus)
            line["nodes"] = sum(nodes[g.name] for g in members)
        by_capacity[capacity] = line
    for g in groups:
        nodes.setdefault(g.name, g.max_size)
    return {"nodes": nodes, "byCapacity": by_capacity, "source": "nodeGroups" if queued is None else "queues"}


def efs_items(resources: Sequence[Resource], catalog: Catalog) -> list[dict[str, Any]]:
    """Each EFS file system and its mount targets, listed at 0: storage and transfer are usage-priced (excluded)."""
    items = []
    for fs in (r for r in resources if r.resource_type == EFS_FILE_SYSTEM):
        tags = fs.props.get("tags") or {}
        name = tags.get("Name") if isinstance(tags, Mapping) else None
        items.append(
            _item(f"EFS file system {name or fs.name} (storage and transfer billed by use)", "idle", 1, "file-system", 0.0, 0.0)
        )
    targets = sum(1 for r in resources if r.resource_type == EFS_MOUNT_TARGET)
    if targets:
        items.append(_item(f"EFS mount targets ({targets}, one per AZ; no charge)", "idle", targets, "mount-target", 0.0, 0.0))
    return items


def _gib(quantity: Any) -> float:
    text = str(quantity)
    return quantity_value(text) / 2**30 if QUANTITY_RE.match(text) else 0.0


def volume_items(resources: Sequence[Resource], catalog: Catalog) -> list[dict[str, Any]]:
    """Persistent volumes Helm releases ask for (the Pushgateway's): EFS Standard, or gp3 when not on the EFS class."""
    items = []
    for release in (r for r in resources if r.resource_type == HELM_RELEASE):
        values = release.props.get("values") or {}
        volume = values.get("persistentVolume") if isinstance(values, Mapping) else None
        if not isinstance(volume, Mapping) or volume.get("enabled") is not True:
            continue
        size = _gib(volume.get("size") or "0")
        on_efs = volume.get("storageClass") == naming.EFS_STORAGE_CLASS
        rate = catalog.services["efsStandardPerGbMonth" if on_efs else "gp3PerGibMonth"]
        where = "EFS Standard, at most its nominal size" if on_efs else "gp3"
        items.append(
            _item(
                f"{release.props.get('name') or release.name} volume ({size:g} GiB, {where})",
                "idle",
                size,
                "GiB-month",
                rate,
                size * rate,
            )
        )
    return items


def _labelled(resources: Sequence[Resource], typ: str, service: str) -> Resource | None:
    for r in resources:
        labels = ((r.props.get("metadata") or {}).get("labels")) or {}
        if r.resource_type == typ and isinstance(labels, Mapping) and labels.get(naming.SERVICE_LABEL) == service:
            return r
    return None


def service_estimates(resources: Sequence[Resource], groups: Sequence[NodeGroupShape], catalog: Catalog) -> list[dict[str, Any]]:
    """Each service for a month at its minimum and at its maximum replicas (HPA), on its node group's price."""
    hours = catalog.hours_per_month
    out: list[dict[str, Any]] = []
    for deployment in filter(is_service, resources):
        meta = deployment.props.get("metadata") or {}
        name = str((meta.get("labels") or {}).get(naming.SERVICE_LABEL) or meta.get("name") or deployment.name)
        pod = ((deployment.props.get("spec") or {}).get("template") or {}).get("spec") or {}
        hpa = _labelled(resources, HPA, name)
        hpa_spec = (hpa.props.get("spec") or {}) if hpa is not None else {}
        low = _int(hpa_spec.get("minReplicas"), 1)
        high = _int(hpa_spec.get("maxReplicas"), low)
        gpus = pod_gpus(pod)
        capacity = (pod.get("nodeSelector") or {}).get(naming.CAPACITY_TYPE_LABEL)
        entry: dict[str, Any] = {"name": name, "minReplicas": low, "maxReplicas": high, "gpusPerReplica": gpus}
        if gpus:
            candidates = [g for g in groups if g.gpu and (capacity is None or g.capacity == capacity)]
            if not candidates:
                out.append({**entry, "minMonthlyUsd": 0.0, "maxMonthlyUsd": 0.0, "note": "no GPU node group to run on"})
                continue
            group = max(candidates, key=lambda g: node_hourly(g, catalog))
            node_gpus = min(catalog.instances[t].gpus for t in group.instance_types if t in catalog.instances)
            per_node = max(1, node_gpus // gpus)
            node_month = node_hourly(group, catalog) * hours + group.disk_gib * catalog.services["gp3PerGibMonth"]
            nodes = (math.ceil(low / per_node), math.ceil(high / per_node))
            cost = (nodes[0] * node_month, nodes[1] * node_month)
            entry.update(nodesAtMin=nodes[0], nodesAtMax=nodes[1])
        else:
            system = next((g for g in groups if not g.gpu), None)
            if system is None:
                out.append({**entry, "minMonthlyUsd": 0.0, "maxMonthlyUsd": 0.0, "note": "no system node group"})
                continue
            group = system
            shape = catalog.instances[group.instance_type]
            requests = ((pod.get("containers") or [{}])[0].get("resources") or {}).get("requests") or {}
            share = max(_cores(requests.get("cpu")) / shape.vcpu, _gib(requests.get("memory") or "0") / shape.memory_gib)
            replica_month = share * node_hourly(group, catalog) * hours
            cost = (low * replica_month, high * replica_month)
            entry.update(shareOfNode=round(share, 3))
        service = _labelled(resources, K8S_SERVICE, name)
        lb = (service.props.get("spec") or {}).get("type") == "LoadBalancer" if service is not None else False
        lb_month = catalog.services["nlbHourly"] * hours if lb else 0.0
        out.append(
            {
                **entry,
                "instanceType": group.instance_type,
                "capacity": group.capacity,
                "loadBalancerMonthlyUsd": _round(lb_month),
                "minMonthlyUsd": _round(cost[0] + lb_month),
                "maxMonthlyUsd": _round(cost[1] + lb_month),
            }
        )
    return out


def observability_items(block: Mapping[str, Any], scope: str) -> list[dict[str, Any]]:
    """The observability block's billed items as breakdown lines (each named `observability: <item>`)."""
    return [
        _item(f"observability: {i['item']}", scope, i["quantity"], i["unit"], i["unitUsd"], i["monthlyUsd"])
        for i in block["items"]
    ]


def observability_gpu_items(block: Mapping[str, Any], gpu_nodes: int, hours: float) -> list[dict[str, Any]]:
    """Container Insights' observations of `gpu_nodes` GPU nodes, each running a pod, for the month."""
    if not gpu_nodes:
        return []
    rate = block["perGpuNodeHourUsd"]
    label = f"observability: Container Insights for {gpu_nodes} GPU node(s), each with a pod"
    return [_item(label, "gpuMax", gpu_nodes * hours, "node-hour", rate, gpu_nodes * hours * rate)]


def service_idle_item(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A service at its minimum replicas, as a line of the idle breakdown."""
    where = (
        f"{entry['nodesAtMin']} x {entry['instanceType']}"
        if entry.get("gpusPerReplica")
        else f"{entry['shareOfNode']:.0%} of a {entry['instanceType']}"
    )
    label = f"service {entry['name']} at {entry['minReplicas']} replica(s) ({where})"
    return _item(
        label,
        "idle",
        entry["minReplicas"],
        "replica-month",
        entry["minMonthlyUsd"] / entry["minReplicas"],
        entry["minMonthlyUsd"],
    )


def _cores(value: Any) -> float:
    text = str(value) if value is not None else "0"
    return quantity_value(text) if QUANTITY_RE.match(text) else 0.0


def summary(cost: Mapping[str, Any]) -> list[str]:
    """Lines for the plan's printed summary."""
    lines = [
        f"cost ({cost['priceRegion']} prices of {cost['priceDate']}, USD/month): idle {cost['idleMonthlyUsd']:.2f}, "
        + (
            f"GPU ceiling (queue quotas + services at max) {cost['gpuMaxMonthlyUsd']:.2f}"
            if (cost.get("gpuCeiling") or {}).get("source") == "queues"
            else f"all GPU nodes at max {cost['gpuMaxMonthlyUsd']:.2f}"
        )
    ]
    for item in cost["breakdown"]:
        lines.append(f"  {item['scope']:<6} {item['item']:<72} {item['monthlyUsd']:>10.2f}")
    for service in cost.get("services", []):
        if service.get("note"):
            lines.append(f"  service {service['name']}: {service['note']}")
            continue
        where = (
            f"{service['nodesAtMin']}..{service['nodesAtMax']} x {service['instanceType']} {service['capacity']}"
            if service.get("gpusPerReplica")
            else f"{service['shareOfNode']:.0%} of a {service['instanceType']} per replica"
        )
        lb = f", internal NLB {service['loadBalancerMonthlyUsd']:.2f}" if service.get("loadBalancerMonthlyUsd") else ""
        lines.append(
            f"  service {service['name']}: {service['minMonthlyUsd']:.2f} at {service['minReplicas']} replica(s), "
            f"{service['maxMonthlyUsd']:.2f} at {service['maxReplicas']} ({where}{lb})"
        )
    lines += [f"  {line}" for line in cost_observability.summary(cost.get("observability"))]
    return lines
