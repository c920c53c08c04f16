"""The dashboard and the alarms read only metrics that are published, with dimension sets that exist.

Checked on the planned dev and prod stacks: every metric reference in the dashboard body (metric arrays, SEARCH
expressions, Metrics Insights queries) and in every alarm is compared with what its publisher documents:
- ContainerInsights: "Enhanced Container Insights (Classic) metric reference" (CloudWatch user guide,
  container-insights-eks-classic-metrics), as the agent the add-on runs declares them (aws/amazon-cloudwatch-agent tag
  v1.300070.0, translator/translate/otel/exporter/awsemf/kubernetes.go, with enhanced_container_insights and
  accelerated_compute_metrics on; read 2026-12-07);
- ContainerInsights/Prometheus: the collector's own metric_declaration in the planned ConfigMap (a declared label set
  is a published dimension set: CloudWatch agent "Prometheus metrics ... emf_processor" documentation);
- AWS/Events: EventBridge's TriggeredRules by RuleName (EventBridge user guide, "Monitoring Amazon EventBridge").
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest
from test_plan import planned, planned_dev_with_service

from components.collector import PROMETHEUS_NAMESPACE
from components.dashboard_body import WIDTH, DashboardSpec, SpendModel, dashboard_body, dashboard_url
from tools.plan import PlanResult

_NODE = [{"ClusterName"}, {"ClusterName", "InstanceId", "NodeName"}]
_GPU_NODE = [
    {"ClusterName"},
    {"ClusterName", "NodeName", "InstanceId"},
    {"ClusterName", "NodeName", "InstanceId", "InstanceType", "GpuDevice"},
]
_GPU_POD = [
    {"ClusterName"},
    {"ClusterName", "Namespace"},
    {"ClusterName", "Namespace", "Service"},
    {"ClusterName", "Namespace", "PodName"},
    {"ClusterName", "Namespace", "PodName", "FullPodName"},
    {"ClusterName", "Namespace", "PodName", "FullPodName", "GpuDevice"},
]
_POD_STATUS = [
    {"ClusterName"},
    {"ClusterName", "Namespace", "PodName"},
    {"ClusterName", "Namespace", "PodName", "FullPodName"},
    {"ClusterName", "Namespace", "Service"},
]
_WORKLOAD = [{"ClusterName"}, {"ClusterName", "Namespace", "PodName"}]
CONTAINER_INSIGHTS = {
    "cluster_node_count": [{"ClusterName"}],
    **{m: _NODE for m in ("node_gpu_limit", "node_gpu_usage_total", "node_gpu_reserved_capacity", "node_cpu_utilization")},
    **{m: _GPU_NODE for m in ("node_gpu_utilization", "node_gpu_memory_utilization", "node_gpu_memory_used")},
    **{m: _GPU_POD for m in ("pod_gpu_utilization", "pod_gpu_memory_utilization", "pod_gpu_memory_used")},
    **{f"pod_status_{phase}": _POD_STATUS for phase in ("running", "pending", "succeeded", "failed", "unknown")},
    **{m: _WORKLOAD for m in ("replicas_desired", "replicas_ready", "status_replicas_available", "status_replicas_unavailable")},
}
EVENTS = {"TriggeredRules": [{"RuleName"}]}
_FUNCTIONS = {"IF", "FILL", "PERIOD", "AND", "OR", "MAX", "MIN", "SUM", "AVG", "SEARCH", "SELECT", "METRICS", "RATE", "DIFF"}


def collector_declarations(result: PlanResult) -> list[dict[str, Any]]:
    [config] = [
        r for r in result.registrations if r.type == "kubernetes:core/v1:ConfigMap" and r.name.endswith("simfleet-collector")
    ]
    agent = json.loads(config.inputs["data"]["cwagentconfig.json"])
    return agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]


def published(result: PlanResult, namespace: str, metric: str, dimensions: set[str]) -> bool:
    if namespace == "ContainerInsights":
        return dimensions in CONTAINER_INSIGHTS.get(metric, [])
    if namespace == "AWS/Events":
        return dimensions in EVENTS.get(metric, [])
    if namespace == PROMETHEUS_NAMESPACE:
        return any(
            any(re.fullmatch(s, metric) for s in d["metric_selectors"]) and dimensions in [set(x) for x in d["dimensions"]]
            for d in collector_declarations(result)
        )
    return False


_SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s+(.*?)',\s*'\w+',\s*\d+\)")
_SELECT = re.compile(r'SELECT \w+\((\w+)\) FROM SCHEMA\("([^"]+)",\s*([^)]*)\)(?: WHERE (.*?))?(?: GROUP BY (\w+))?$')


def references_in_expression(expression: str) -> list[tuple[str, str, set[str]]]:
    """(namespace, metric, dimension names) each SEARCH or Metrics Insights query reads, with its filters checked."""
    found = []
    for schema, terms in _SEARCH.findall(expression):
        namespace, *names = [p.strip() for p in schema.split(",")]
        filters = dict(re.findall(r'(\w+)="([^"]*)"', terms))
        metric = filters.pop("MetricName")
        assert set(filters) <= set(names), (expression, filters)
        found.append((namespace, metric, set(names)))
    match = _SELECT.match(expression)
    if match:
        metric, namespace, schema, where, group = match.groups()
        dimensions = {d.strip() for d in schema.split(",")}
        keys = set(re.findall(r"(\w+) = '", where or ""))
        assert keys <= dimensions and (not group or group in dimensions), expression
        found.append((namespace, metric, dimensions))
    return found


def dashboard_references(body: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    found = []
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            assert isinstance(entry, list), (widget["properties"]["title"], entry)
            if isinstance(entry[0], dict):
                found += references_in_expression(entry[0]["expression"])
            else:
                namespace, metric, *rest = entry
                pairs = rest[:-1] if isinstance(rest[-1], dict) else rest
                found.append((namespace, metric, set(pairs[0::2])))
    return found


def alarm_references(alarm: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    found = []
    for query in alarm["metricQueries"]:
        if "metric" in query:
            metric = query["metric"]
            found.append((metric["namespace"], metric["metricName"], set(metric["dimensions"])))
        else:
            found += references_in_expression(query["expression"])
    return found


# The stacks checked: the two samples, and dev with its service turned on (it ships off), for the service's widgets
# and alarm.
STACKS = ["dev", "prod", "dev-service"]


def plan_of(stack: str) -> PlanResult:
    return planned_dev_with_service() if stack == "dev-service" else planned(stack)


@cache
def body(stack: str) -> dict[str, Any]:
    [dashboard] = [r for r in plan_of(stack).registrations if r.type == "aws:cloudwatch/dashboard:Dashboard"]
    return json.loads(dashboard.inputs["dashboardBody"])


@pytest.mark.parametrize("stack", STACKS)
def test_every_dashboard_metric_is_published(stack: str) -> None:
    references = dashboard_references(body(stack))
    assert len(references) > 20
    unpublished = [r for r in references if not published(plan_of(stack), *r)]
    assert not unpublished, unpublished


@pytest.mark.parametrize("stack", STACKS)
def test_every_alarm_metric_is_published(stack: str) -> None:
    alarms = [r.inputs for r in plan_of(stack).registrations if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"]
    assert alarms
    for alarm in alarms:
        references = alarm_references(alarm)
        assert references, alarm["name"]
        unpublished = [r for r in references if not published(plan_of(stack), *r)]
        assert not unpublished, (alarm["name"], unpublished)


def test_the_check_catches_a_wrong_name_or_dimension() -> None:
    result = planned("dev")
    assert published(result, "ContainerInsights", "pod_gpu_utilization", {"ClusterName", "Namespace", "PodName"})
    assert not published(result, "ContainerInsights", "pod_gpu_utilisation", {"ClusterName", "Namespace", "PodName"})
    assert not published(result, "ContainerInsights", "pod_status_failed", {"ClusterName", "Namespace"})  # not a set CI publishes
    assert published(result, PROMETHEUS_NAMESPACE, "kueue_pending_workloads", {"ClusterName", "cluster_queue"})
    assert not published(result, PROMETHEUS_NAMESPACE, "kueue_pending_workloads", {"ClusterName", "queue"})
    bad = "SEARCH('{ContainerInsights,ClusterName,PodName} MetricName=\"pod_gpu_utilization\" Namespace=\"x\"', 'Average', 60)"
    with pytest.raises(AssertionError):
        references_in_expression(bad)  # filters on a dimension outside its schema


@pytest.mark.parametrize("stack", STACKS)
def test_layout_regions_and_expression_ids(stack: str) -> None:
    widgets = body(stack)["widgets"]
    for widget in widgets:
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= WIDTH
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        assert properties["region"] == "us-east-1"
        ids = [e[-1].get("id") for e in properties["metrics"] if isinstance(e[-1], dict) and e[-1].get("id")]
        assert len(ids) == len(set(ids)), properties["title"]
        for entry in properties["metrics"]:
            expression = entry[0].get("expression", "") if isinstance(entry[0], dict) else ""
            if expression and "SEARCH(" not in expression and not expression.startswith("SELECT"):
                used = set(re.findall(r"\b([a-z][a-z0-9]*)\b", expression)) - {f.lower() for f in _FUNCTIONS}
                assert used <= set(ids), (properties["title"], expression, used)
    titles = " ".join(str(w["properties"].get("title")) for w in widgets)
    for question in (
        "GPU utilisation per run",
        "GPUs allocated vs idle",
        "Pending workloads per queue",
        "Estimated spend",
        "Spot",
    ):
        assert question in titles
    assert widgets[0]["type"] == "alarm" and widgets[0]["properties"]["alarms"]


def test_services_get_rate_latency_and_replicas_only_where_they_exist() -> None:
    on = " ".join(str(w["properties"].get("title")) for w in body("dev-service")["widgets"])
    assert "radstream-triton: requests per second and mean latency (ms)" in on
    assert "radstream-triton: ready vs desired replicas (minimum 1)" in on
    # Not where it is not deployed: prod declares none, dev's ships off.
    for stack in ("dev", "prod"):
        assert "radstream-triton" not in " ".join(str(w["properties"].get("title")) for w in body(stack)["widgets"])


def test_spend_is_node_counts_times_catalog_prices() -> None:
    spec = DashboardSpec("c", "us-east-1", ("q",), SpendModel(1, 1.2, 0.48, 0.0416, 0.15), spot_rule_name="c-spot")
    [widget] = [w for w in dashboard_body(spec, [])["widgets"] if "spend" in str(w["properties"].get("title"))]
    expressions = [e[0]["expression"] for e in widget["properties"]["metrics"] if isinstance(e[0], dict)]
    assert (
        expressions[0] == "(FILL(gp, 0) / 1) * 1.2000 + IF(nn > (FILL(gp, 0) / 1), nn - (FILL(gp, 0) / 1), 0) * 0.0416 + 0.1500"
    )
    assert "* 0.4800 +" in expressions[1]
    # Worked through: 2 GPU nodes (2 GPUs) of 3 nodes: 2 x 1.2 + 1 x 0.0416 + 0.15 = 2.5916 USD/h at On-Demand.
    python = expressions[0].replace("FILL(gp, 0)", "gp").replace("IF(nn > (gp / 1), nn - (gp / 1), 0)", "max(nn - gp, 0)")
    assert eval(python, {"max": max}, {"gp": 2.0, "nn": 3.0}) == pytest.approx(2.5916)


def test_url_output_and_plan_summary() -> None:
    assert dashboard_url("eu-west-1", "simfleet-prod") == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/simfleet-prod"
    )
    outputs = planned("dev").outputs["observability"]
    assert outputs["dashboardUrl"] == dashboard_url("us-east-1", "simfleet-dev")
    assert outputs["logGroups"]["application"] == "/aws/containerinsights/simfleet-dev/application"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_graph_holds_at_most_one_metrics_insights_query(stack: str) -> None:
    """A graph's lines come from one GetMetricData request, and each request can have only one Metrics Insights query
    (CloudWatch user guide, "Metrics Insights quotas"): a graph with two would show an error instead."""
    for widget in body(stack)["widgets"]:
        if widget["type"] != "metric":
            continue
        expressions = [e[0]["expression"] for e in widget["properties"]["metrics"] if isinstance(e[0], dict)]
        queries = [e for e in expressions if e.lstrip().upper().startswith("SELECT")]
        assert len(queries) <= 1, (widget["properties"]["title"], queries)
