"""What the observability stack costs a month (pure): dashboard, alarms, the collector's metrics and pod, Container
Insights' observations while idle, and the same scraping on Amazon Managed Service for Prometheus for comparison.

Read from the registrations (the Dashboard, the MetricAlarms, the collector's ConfigMap and Deployment, the add-on) and
the price catalog, like tools/cost.py. All of it runs while the stack is idle, so tools/cost.py adds each item to the idle
figure. Container Insights and log ingestion are billed by use: the idle figure counts the system nodes at minSize and the
pods the platform runs on them; each GPU node adds its per-hour figure while it runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from catalog import Catalog
from config import quantity_value
from policies.rules import Resource

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ADDON = "aws:eks/addon:Addon"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
COLLECTOR = "simfleet-collector"
MINUTES_PER_HOUR = 60

# Container Insights observations a minute (each metric of each dimension set it publishes is one data point): counted
# from the agent's metric declarations at the pinned build (translator/translate/otel/exporter/awsemf/kubernetes.go,
# v1.300070.0, enhanced and accelerated compute on). Node: 19 node metrics and 4 network/disk metrics at 2 dimension
# sets, 3 filesystem metrics at 2. GPU node: 5 allocation metrics at 2 sets and 7 DCGM metrics at 3 (one GPU).
# Pod: 6 metrics at 5 sets, 2 at 4, 28 at 4. Container: 12 at 3. GPU pod: 4 allocation at 4, 7 DCGM at 6.
OBSERVATIONS = {
    "node": 19 * 2 + 4 * 2 + 3 * 2,
    "gpu_node": 5 * 2 + 7 * 3,
    "pod": 6 * 5 + 2 * 4 + 28 * 4,
    "container": 12 * 3,
    "gpu_pod": 4 * 4 + 7 * 6,
}
# What the platform runs on the system nodes, always: CoreDNS (2), kube-proxy, aws-node, the EBS-less add-ons' pods
# (cluster-autoscaler, the load balancer controller (2), metrics-server, Kueue, the device plugin is on GPU nodes only),
# the Pushgateway, the collector, Container Insights' agent, Fluent Bit and operator, the EFS CSI node and controller (2).
PLATFORM_PODS_PER_SYSTEM_NODE = 16
CONTAINERS_PER_POD = 2
# The collector's samples, as log events: a few hundred bytes per sample (EMF), scraped once a minute (the Pushgateway
# twice); the figure below is per sample per minute.
EMF_BYTES_PER_SAMPLE = 400


def _alarm_metrics(alarm: Resource) -> int:
    """Metrics an alarm is billed for: each metric it reads; a Metrics Insights query counts as one."""
    queries = alarm.props.get("metricQueries") or []
    return sum(1 for q in queries if "metric" in q or str(q.get("expression", "")).startswith("SELECT")) or 1


def _collector(resources: Sequence[Resource]) -> tuple[dict[str, Any] | None, Resource | None]:
    config = next((r for r in resources if r.resource_type == CONFIG_MAP and r.name.endswith(COLLECTOR)), None)
    deployment = next((r for r in resources if r.resource_type == DEPLOYMENT and r.name.endswith(COLLECTOR)), None)
    agent = json.loads(config.props["data"]["cwagentconfig.json"]) if config is not None else None
    return agent, deployment


def declared_series(agent: dict[str, Any], queues: int, services: int) -> int:
    """Custom metrics the collector publishes while nothing runs: Kueue's per queue, the Pushgateway heartbeat and the
    services' per service (one model each). Runs' and jobs' metrics exist only while they push."""
    per_label = {"cluster_queue": queues, "status": 2, "service": services, "model": 1}
    total = 0
    declarations = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    for declaration in declarations:
        if re.search(r"simfleet-run|\[0-9\]", declaration["label_matcher"]):
            continue  # runs and jobs: billed by the hour they push (excluded, per use)
        names = len(declaration["metric_selectors"])
        for dimensions in declaration["dimensions"]:
            total += names * math.prod(per_label.get(d, 1) for d in dimensions)
    return total


def _collector_share(deployment: Resource, system_hourly: float, vcpu: float, memory_gib: float) -> float:
    container = deployment.props["spec"]["template"]["spec"]["containers"][0]
    requests = container["resources"]["requests"]
    share = max(quantity_value(requests["cpu"]) / vcpu, quantity_value(requests["memory"]) / 2**30 / memory_gib)
    return share * system_hourly


def estimate(
    resources: Sequence[Resource], catalog: Catalog, system_nodes: int, system_type: str, queues: int, services: int
) -> dict[str, Any] | None:
    """The observability block of cost.json, or None when the stack has no Container Insights add-on."""
    if not any(r.resource_type == ADDON and r.props.get("addonName") == "amazon-cloudwatch-observability" for r in resources):
        return None
    prices, hours = catalog.services, catalog.hours_per_month
    shape = catalog.instances[system_type]
    items: list[dict[str, Any]] = []

    def item(name: str, quantity: float, unit: str, unit_usd: float) -> None:
        items.append(
            {
                "item": name,
                "quantity": round(quantity, 2),
                "unit": unit,
                "unitUsd": unit_usd,
                "monthlyUsd": round(quantity * unit_usd, 2),
            }
        )

    dashboards = [r for r in resources if r.resource_type == DASHBOARD]
    item(f"CloudWatch dashboards ({len(dashboards)})", len(dashboards), "dashboard-month", prices["cloudwatchDashboardMonthly"])
    alarms = [r for r in resources if r.resource_type == ALARM]
    metrics = sum(_alarm_metrics(a) for a in alarms)
    item(
        f"CloudWatch alarms ({len(alarms)} alarms reading {metrics} metrics)",
        metrics,
        "alarm-metric-month",
        prices["cloudwatchAlarmMetricMonthly"],
    )

    agent, deployment = _collector(resources)
    series = declared_series(agent, queues, services) if agent is not None else 0
    if agent is not None:
        item(
            f"collector: {series} custom metrics (Kueue per queue, Pushgateway, services)",
            series,
            "metric-month",
            prices["cloudwatchCustomMetricMonthly"],
        )
        gb = series * EMF_BYTES_PER_SAMPLE * MINUTES_PER_HOUR * hours / 1e9
        item(
            "collector: its samples as log events (prometheus log group)", gb, "GB ingested", prices["cloudwatchLogsIngestPerGb"]
        )
    # The collector's pod runs on a system node the idle figure already prices whole: its share is no extra money, so it
    # is not an item (the idle figure would count it twice), only part of the comparison with a managed scraper below.
    pod_share = (
        _collector_share(deployment, shape.on_demand_hourly, shape.vcpu, shape.memory_gib) * hours
        if deployment is not None
        else 0.0
    )

    pods = system_nodes * PLATFORM_PODS_PER_SYSTEM_NODE
    per_minute = system_nodes * OBSERVATIONS["node"] + pods * (
        OBSERVATIONS["pod"] + CONTAINERS_PER_POD * OBSERVATIONS["container"]
    )
    observations = per_minute * MINUTES_PER_HOUR * hours / 1e6
    item(
        f"Container Insights: {per_minute} observations a minute ({system_nodes} system node(s), {pods} platform pods)",
        observations,
        "million observations",
        prices["containerInsightsObservationPerMillion"],
    )
    # A GPU node and the run pod on it (4 containers: fetch, sim, brain, glue plus the uploader).
    gpu_minute = (
        OBSERVATIONS["node"]
        + OBSERVATIONS["gpu_node"]
        + OBSERVATIONS["pod"]
        + OBSERVATIONS["gpu_pod"]
        + 5 * OBSERVATIONS["container"]
    )
    per_gpu_node_hour = gpu_minute * MINUTES_PER_HOUR / 1e6 * prices["containerInsightsObservationPerMillion"]

    total = round(sum(i["monthlyUsd"] for i in items), 2)
    amp = prices["ampCollectorHourly"] * hours + series * MINUTES_PER_HOUR * hours / 1e7 * prices["ampIngestPer10MSamples"]
    return {
        "monthlyUsd": total,
        "items": items,
        "perGpuNodeHourUsd": round(per_gpu_node_hour, 4),
        # The collector's choice (docs/observability.md): the same samples through an AMP managed scraper, before the
        # Grafana workspace a dashboard would need there.
        "collectorComparison": {
            # Its metrics and samples, and its pod's share of a system node (which a managed scraper would free).
            "cloudwatchAgentMonthlyUsd": round(
                sum(i["monthlyUsd"] for i in items if i["item"].startswith("collector")) + pod_share, 2
            ),
            "collectorPodShareMonthlyUsd": round(pod_share, 2),
            "ampManagedScraperMonthlyUsd": round(amp, 2),
        },
        "assumptions": [
            "Everything here runs while the stack is idle, so monthlyUsd (the sum of items) is part of idleMonthlyUsd, one "
            "idle line per item. The collector's pod runs on a system node the idle figure already prices: its share is "
            "in collectorComparison only.",
            "Container Insights (enhanced) is billed per observation: each metric of each dimension set, once a minute, "
            f"counted from the agent's declarations; the idle figure is the system nodes at minSize with "
            f"{PLATFORM_PODS_PER_SYSTEM_NODE} platform pods each. A GPU node with a run adds perGpuNodeHourUsd.",
            "Container log ingestion and storage are billed by use and depend on what workloads print (excluded).",
            "Runs' and jobs' pushed metrics are custom metrics billed for the hours they are pushed (excluded).",
        ],
    }


def summary(block: dict[str, Any] | None) -> list[str]:
    if block is None:
        return []
    comparison = block["collectorComparison"]
    return [
        f"observability: {block['monthlyUsd']:.2f}/month while idle, in the idle lines above (+{block['perGpuNodeHourUsd']:.4f}/h "
        f"per GPU node running a run); collector {comparison['cloudwatchAgentMonthlyUsd']:.2f} (its pod's share of a system "
        f"node included) vs an AMP managed scraper {comparison['ampManagedScraperMonthlyUsd']:.2f}"
    ]
