"""The stack's CloudWatch dashboard body (pure): which questions it answers, from which signals (components/signals.py).

Widget and metric-array syntax: CloudWatch API reference, "Dashboard Body Structure and Syntax". Every metric a widget
reads is checked against what Container Insights and the collector publish in tests/test_dashboard.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import naming
from catalog import Catalog, load_catalog
from components import signals as sig
from config import PlatformConfig

WIDTH = 24  # a dashboard row is 24 units wide


@dataclass(frozen=True)
class ServiceView:
    name: str
    min_replicas: int
    scraped: bool  # it has a port named "metrics", which the collector scrapes (Triton's request metrics)


@dataclass(frozen=True)
class SpendModel:
    """USD per hour of what runs, from the price catalog (data/aws_catalog.json): an estimate, not the bill."""

    gpus_per_node: int
    gpu_node_on_demand: float  # the GPU groups' most expensive type, On-Demand: the upper line
    gpu_node_spot: float  # the same at the catalog's spot discount: the lower line
    system_node: float
    fixed: float  # control plane, NAT gateways and public IPv4 addresses, which run whatever the load


def spend_model(platform: PlatformConfig, catalog: Catalog | None = None) -> SpendModel:
    """The prices the spend widget multiplies node counts by (the same catalog tools/cost.py uses)."""
    catalog = catalog or load_catalog()
    groups = platform.node_groups
    gpu = max(catalog.instances[t].on_demand_hourly for t in groups.gpu.instance_types)
    nats = platform.network.availability_zones if platform.network.nat_gateways == "perAz" else 1
    services = catalog.services
    return SpendModel(
        gpus_per_node=groups.gpu.gpus_per_node,
        gpu_node_on_demand=gpu,
        gpu_node_spot=gpu * (1 - catalog.spot_discount),
        system_node=max(catalog.instances[t].on_demand_hourly for t in groups.system.instance_types),
        # Each NAT gateway has an Elastic IP, billed as a public IPv4 address.
        fixed=services["eksControlPlaneHourly"] + nats * (services["natGatewayHourly"] + services["publicIpv4Hourly"]),
    )


@dataclass(frozen=True)
class DashboardSpec:
    cluster_name: str
    region: str
    queues: tuple[str, ...]
    spend: SpendModel
    spot_rule_name: str
    services: tuple[ServiceView, ...] = ()
    run_metrics: bool = True  # platform.metrics.enabled: runs push progress and recoveries through the Pushgateway
    log_groups: dict[str, str] = field(default_factory=dict)


def _graph(
    title: str, metrics: Sequence[list[Any]], *, y_label: str = "", stacked: bool = False, width: int = 8
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "title": title,
        "view": "timeSeries",
        "stacked": stacked,
        "metrics": list(metrics),
        "period": 60,
        "yAxis": {"left": {"min": 0, "label": y_label, "showUnits": False}},
    }
    return {"type": "metric", "width": width, "height": 6, "properties": properties}


def _expression(expression: str, label: str, ident: str, period: int = 60) -> list[Any]:
    """One entry of a widget's metrics array that is an expression: the rendering object alone, in its own array."""
    return [{"expression": expression, "label": label, "id": ident, "period": period}]


def gpu_widgets(spec: DashboardSpec) -> list[dict[str, Any]]:
    """Is my run's GPU busy? Per node, per GPU type, per run; and how many GPUs sit idle."""
    c = spec.cluster_name
    node_schema = ("ClusterName", "InstanceId", "NodeName")
    runs = {"ClusterName": c, **sig.RUN_POD_FILTER}
    present, allocated = sig.gpus_present(c), sig.gpus_allocated(c)
    return [
        _graph(
            "GPU utilisation per GPU node (%)",
            [
                _expression(
                    sig.search(sig.CONTAINER_INSIGHTS, node_schema, "node_gpu_utilization", {"ClusterName": c}, "Average", 60),
                    "",
                    "n1",
                )
            ],
        ),
        _graph(
            "GPU memory used per GPU node (%)",
            [
                _expression(
                    sig.search(
                        sig.CONTAINER_INSIGHTS, node_schema, "node_gpu_memory_utilization", {"ClusterName": c}, "Average", 60
                    ),
                    "",
                    "n2",
                )
            ],
        ),
        _graph(
            # The node groups share instance types, so a group is not a dimension; its GPU type is (last three hours).
            "GPU utilisation per GPU type (%), last 3 h",
            [
                _expression(
                    sig.insights(
                        "AVG",
                        sig.CONTAINER_INSIGHTS,
                        ("ClusterName", "GpuDevice", "InstanceId", "InstanceType", "NodeName"),
                        "node_gpu_utilization",
                        {"ClusterName": c},
                        group_by="InstanceType",
                    ),
                    "",
                    "t1",
                )
            ],
        ),
        _graph(
            "GPU utilisation per run (%)",
            [
                _expression(
                    sig.search(sig.CONTAINER_INSIGHTS, sig.RUN_POD_SCHEMA, "pod_gpu_utilization", runs, "Average", 60), "", "r1"
                )
            ],
        ),
        _graph(
            "GPU memory used per run (%)",
            [
                _expression(
                    sig.search(sig.CONTAINER_INSIGHTS, sig.RUN_POD_SCHEMA, "pod_gpu_memory_utilization", runs, "Average", 60),
                    "",
                    "r2",
                )
            ],
        ),
        _graph(
            "GPUs allocated vs idle",
            [
                present.dashboard("gp", visible=False),
                allocated.dashboard("ga", label="allocated to pods"),
                _expression("gp - ga", "idle (on a node, held by no pod)", "gi"),
            ],
            stacked=True,
        ),
    ]


def queue_widgets(spec: DashboardSpec) -> list[dict[str, Any]]:
    """Why is the queue stuck? Pending and admitted per queue; runs and jobs by status over time."""
    c = spec.cluster_name
    widgets = [
        _graph("Pending workloads per queue", [sig.pending(c, q).dashboard(label=q) for q in spec.queues]),
        _graph("Admitted (running) workloads per queue", [sig.admitted_active(c, q).dashboard(label=q) for q in spec.queues]),
        _graph(
            "Runs and jobs by status (Kueue workloads; finished and evicted per 5 min)",
            [
                sig.pending(c).dashboard(label="pending"),
                sig.admitted_active(c).dashboard(label="running"),
                sig.finished_total(c).dashboard(label="finished"),
                sig.evicted_total(c).dashboard(label="evicted (preempted, stopped)"),
            ],
        ),
    ]
    # One summed SEARCH per phase: a graph may hold only one Metrics Insights query (one per GetMetricData request).
    phases = ("running", "pending", "succeeded", "failed")
    run_pods = {"ClusterName": c, **sig.RUN_POD_FILTER}
    widgets.append(
        _graph(
            "Run pods by phase",
            [
                _expression(
                    f"SUM({sig.search(sig.CONTAINER_INSIGHTS, sig.RUN_POD_SCHEMA, f'pod_status_{phase}', run_pods, 'Sum', 60)})",
                    phase,
                    f"p{index}",
                )
                for index, phase in enumerate(phases)
            ],
            stacked=True,
        )
    )
    return widgets


def run_widgets(spec: DashboardSpec) -> list[dict[str, Any]]:
    """Spot reclaims and what the runs recovered; progress per run (pushed by each seed through the Pushgateway)."""
    c = spec.cluster_name
    widgets = [
        _graph(
            "Spot interruption warnings (region) and Kueue evictions, per 5 min",
            [
                sig.spot_interruptions(spec.spot_rule_name).dashboard(label="spot interruption warnings"),
                sig.evicted_total(c).dashboard(label="workloads evicted"),
            ],
        )
    ]
    if spec.run_metrics:
        run = ("ClusterName", "run")
        widgets += [
            _graph(
                "Recoveries per run (pods that replaced a lost one)",
                [
                    _expression(
                        sig.search(sig.PROMETHEUS_NAMESPACE, run, "simfleet_run_recoveries", {"ClusterName": c}, "Maximum", 300),
                        "",
                        "rc",
                        300,
                    )
                ],
            ),
            _graph(
                "Progress per run (mean over its seeds, 0 to 1)",
                [
                    _expression(
                        sig.search(
                            sig.PROMETHEUS_NAMESPACE, run, "simfleet_run_progress_ratio", {"ClusterName": c}, "Average", 60
                        ),
                        "",
                        "pr",
                    )
                ],
            ),
        ]
    return widgets


def service_widgets(spec: DashboardSpec) -> list[dict[str, Any]]:
    """Services: request rate and latency (from their metrics port) and ready vs desired replicas."""
    c = spec.cluster_name
    widgets: list[dict[str, Any]] = []
    for index, service in enumerate(spec.services):
        if service.scraped:
            req, fail, took = (f(c, service.name) for f in (sig.service_requests, sig.service_failures, sig.service_request_time))
            widgets.append(
                _graph(
                    f"{service.name}: requests per second and mean latency (ms)",
                    [
                        req.dashboard(f"q{index}", visible=False),
                        fail.dashboard(f"f{index}", visible=False),
                        took.dashboard(f"d{index}", visible=False),
                        _expression(f"q{index} / PERIOD(q{index})", "successful requests/s", f"rq{index}"),
                        _expression(f"f{index} / PERIOD(f{index})", "failed requests/s", f"rf{index}"),
                        _expression(f"d{index} / q{index} / 1000", "mean latency (ms)", f"rl{index}"),
                    ],
                )
            )
        widgets.append(
            _graph(
                f"{service.name}: ready vs desired replicas (minimum {service.min_replicas})",
                [
                    sig.deployment_ready(c, naming.SERVICES_NAMESPACE, service.name, 60).dashboard(label="ready"),
                    sig.deployment_desired(c, naming.SERVICES_NAMESPACE, service.name, 60).dashboard(label="desired"),
                ],
            )
        )
    return widgets


def spend_widget(spec: DashboardSpec) -> dict[str, Any]:
    """What does this stack cost right now? Nodes present times their catalog price, plus what always runs."""
    c, s = spec.cluster_name, spec.spend
    gpu_nodes = f"(FILL(gp, 0) / {s.gpus_per_node})"
    system_nodes = f"IF(nn > {gpu_nodes}, nn - {gpu_nodes}, 0)"
    base = f"{system_nodes} * {s.system_node:.4f} + {s.fixed:.4f}"
    return _graph(
        "Estimated spend, USD per hour (GPU nodes at On-Demand and at spot price)",
        [
            sig.gpus_present(c).dashboard("gp", visible=False),
            sig.nodes(c).dashboard("nn", visible=False),
            _expression(f"{gpu_nodes} * {s.gpu_node_on_demand:.4f} + {base}", "upper: GPU nodes On-Demand", "su"),
            _expression(f"{gpu_nodes} * {s.gpu_node_spot:.4f} + {base}", "lower: GPU nodes spot", "sl"),
        ],
        y_label="USD/h",
        width=12,
    )


def text_widget(spec: DashboardSpec) -> dict[str, Any]:
    groups = "\n".join(f"* {kind}: `{name}`" for kind, name in sorted(spec.log_groups.items()))
    markdown = (
        f"## {spec.cluster_name}\n"
        "Questions and where to look: docs/observability.md. `simfleet logs <run>` reads the application group.\n\n"
        f"Log groups:\n{groups}"
    )
    return {"type": "text", "width": 12, "height": 6, "properties": {"markdown": markdown}}


def alarm_widget(alarm_arns: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "alarm",
        "width": WIDTH,
        "height": 3,
        "properties": {
            "title": "Alarms (runbook: docs/observability.md)",
            "alarms": list(alarm_arns),
            "sortBy": "stateUpdatedTimestamp",
        },
    }


def _placed(widgets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Left to right, then the next row; each widget's x and y set."""
    placed, x, y, row_height = [], 0, 0, 0
    for widget in widgets:
        if x + widget["width"] > WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**widget, "x": x, "y": y})
        x += widget["width"]
        row_height = max(row_height, widget["height"])
    return placed


def dashboard_body(spec: DashboardSpec, alarm_arns: Sequence[str]) -> dict[str, Any]:
    widgets = [
        alarm_widget(alarm_arns),
        *gpu_widgets(spec),
        *queue_widgets(spec),
        *run_widgets(spec),
        *service_widgets(spec),
        spend_widget(spec),
        text_widget(spec),
    ]
    # Every metric widget in the stack's region, whatever region the console is in.
    for widget in widgets:
        if widget["type"] == "metric":
            widget["properties"]["region"] = spec.region
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": _placed(widgets)}


def dashboard_json(spec: DashboardSpec, alarm_arns: Sequence[str]) -> str:
    return json.dumps(dashboard_body(spec, alarm_arns), separators=(",", ":"))


def dashboard_url(region: str, name: str, console_host: str = "console.aws.amazon.com") -> str:
    return f"https://{region}.{console_host}/cloudwatch/home?region={region}#dashboards/dashboard/{name}"
