"""GPU-hours and cost so far of a run's or a job's pods, priced with the catalog (data/aws_catalog.json).

Counted per seed (a job's shard): the last pod that recorded how it ended (index.json: startTime to completionTime)
and every pod running now (its start to now). An earlier pod of a recovered seed (a spot reclaim, a retry) whose record
the next pod replaced is not counted: `simfleet status` lists those attempts. A pod is priced at its share of its node
(its GPUs over the node's) at the node's instance type and capacity while the node is known (a live pod), else at the
stack's dearest GPU instance type and the capacity the run asks for first (spot for batch work): an estimate, never
the bill (no storage, transfer, load balancers, or a node's idle minutes).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import naming
from catalog import load_catalog
from config import PlatformConfig


@dataclass(frozen=True)
class Prices:
    gpu_types: tuple[str, ...]  # the stack's GPU node group types
    on_demand: dict[str, float]  # USD per instance-hour
    gpus_per_node: dict[str, int]
    spot_discount: float

    def hourly(self, instance_type: str | None, spot: bool) -> tuple[float, int]:
        """(USD per node-hour, GPUs per node) of a type, or of the stack's dearest GPU type when it is not known."""
        known = instance_type if instance_type in self.on_demand else max(self.gpu_types, key=lambda t: self.on_demand[t])
        price = self.on_demand[known] * ((1 - self.spot_discount) if spot else 1)
        return price, self.gpus_per_node[known]


def prices_for(platform: PlatformConfig) -> Prices:
    catalog = load_catalog()
    types = tuple(platform.node_groups.gpu.instance_types)
    return Prices(
        types,
        {name: spec.on_demand_hourly for name, spec in catalog.instances.items()},
        {name: max(spec.gpus, 1) for name, spec in catalog.instances.items()},
        catalog.spot_discount,
    )


def parse_time(stamp: str | None) -> datetime.datetime | None:
    if not stamp:
        return None
    try:
        return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


def hours_between(start: str | None, end: str | None, now: datetime.datetime) -> float:
    began, ended = parse_time(start), parse_time(end) or now
    return max(0.0, (ended - began).total_seconds() / 3600) if began else 0.0


@dataclass(frozen=True)
class LivePod:
    """A pod the API still shows: running (no end yet) or ended (its containers' last finish)."""

    start: str | None
    instance_type: str | None
    capacity: str | None  # SPOT | ON_DEMAND (eks.amazonaws.com/capacityType), None when the node is not known
    end: str | None = None


@dataclass(frozen=True)
class Usage:
    gpu_hours: float
    cost_usd: float
    estimated: bool  # some pod was priced without knowing its node


def usage(
    documents: list[dict[str, Any] | None],
    live: list[LivePod],
    gpus_per_pod: int,
    prices: Prices,
    spot_first: bool,
    now: datetime.datetime | None = None,
) -> Usage:
    now = now or datetime.datetime.now(datetime.UTC)
    gpu_hours = cost = 0.0
    estimated = False
    for document in documents:
        record = (document or {}).get("recorded", document) or {}
        hours = hours_between(record.get("startTime"), record.get("completionTime") or record.get("startTime"), now)
        if hours:
            price, per_node = prices.hourly(None, spot_first)
            gpu_hours += hours * gpus_per_pod
            cost += hours * price * min(1.0, gpus_per_pod / per_node)
            estimated = True
    for pod in live:
        hours = hours_between(pod.start, pod.end, now)
        spot = pod.capacity == naming.EKS_CAPACITY["spot"] if pod.capacity else spot_first
        price, per_node = prices.hourly(pod.instance_type, spot)
        gpu_hours += hours * gpus_per_pod
        cost += hours * price * min(1.0, gpus_per_pod / per_node)
        estimated = estimated or pod.instance_type is None
    return Usage(round(gpu_hours, 2), round(cost, 2), estimated)
