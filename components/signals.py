"""The CloudWatch metrics the dashboard and the alarms read (pure): one constructor per signal, so a metric name and its
dimensions are written once.

Two sources publish them: Container Insights (the add-on's agent, namespace ContainerInsights, names and dimension sets
of the "Enhanced Container Insights (Classic) metric reference") and the collector (components/collector.py, namespace
ContainerInsights/Prometheus, the dimension sets its metric_declaration lists). tests/test_dashboard.py checks every
metric used against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import naming
from components.collector import PROMETHEUS_NAMESPACE

CONTAINER_INSIGHTS = "ContainerInsights"
# Container Insights reports each pod once a minute (the add-on agent's metrics_collection_interval, 60 s by default):
# a Sum of a pod-status metric over a period this long counts pods; over a longer period it counts observations.
CONTAINER_INSIGHTS_INTERVAL = 60
EVENTS = "AWS/Events"  # EventBridge's rule metrics (TriggeredRules by RuleName)


@dataclass(frozen=True)
class Signal:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int = 60

    def dashboard(self, ident: str | None = None, label: str | None = None, visible: bool = True) -> list[Any]:
        """The metric-array form a dashboard widget takes: namespace, name, dimension pairs, then the options."""
        options: dict[str, Any] = {"stat": self.stat, "period": self.period}
        if ident:
            options["id"] = ident
        if label:
            options["label"] = label
        if not visible:
            options["visible"] = False
        return [self.namespace, self.name, *(part for pair in self.dimensions for part in pair), options]

    def alarm_query(self, ident: str, return_data: bool = False) -> dict[str, Any]:
        """One entry of a metric alarm's metric_queries."""
        return {
            "id": ident,
            "return_data": return_data,
            "metric": {
                "namespace": self.namespace,
                "metric_name": self.name,
                "dimensions": dict(self.dimensions),
                "stat": self.stat,
                "period": self.period,
            },
        }


def _ci(name: str, cluster: str, stat: str, period: int = 60, **dims: str) -> Signal:
    return Signal(CONTAINER_INSIGHTS, name, (("ClusterName", cluster), *dims.items()), stat, period)


def _prom(name: str, cluster: str, stat: str, period: int = 60, **dims: str) -> Signal:
    return Signal(PROMETHEUS_NAMESPACE, name, (("ClusterName", cluster), *dims.items()), stat, period)


# Container Insights, cluster level: every GPU on a node, and those pods hold (requests; a GPU is never shared).
def gpus_present(cluster: str, period: int = 60) -> Signal:
    return _ci("node_gpu_limit", cluster, "Sum", period)


def gpus_allocated(cluster: str, period: int = 60) -> Signal:
    return _ci("node_gpu_usage_total", cluster, "Sum", period)


def nodes(cluster: str, period: int = 60) -> Signal:
    return _ci("cluster_node_count", cluster, "Average", period)


def deployment_ready(cluster: str, namespace: str, deployment: str, period: int = 300) -> Signal:
    """Ready replicas of a Deployment (Container Insights names a Deployment's pods by the Deployment: PodName)."""
    return _ci("replicas_ready", cluster, "Minimum", period, Namespace=namespace, PodName=deployment)


def deployment_desired(cluster: str, namespace: str, deployment: str, period: int = 300) -> Signal:
    return _ci("replicas_desired", cluster, "Maximum", period, Namespace=namespace, PodName=deployment)


# The collector: Kueue's gauges and counters (counters arrive as the difference between scrapes, so Sum is a count).
# Kueue reports pending workloads once per status (active, inadmissible): at the minute the collector scrapes Kueue,
# Sum is the queue's total; over a longer period, Maximum says whether any were pending at all.
def _queue(name: str, cluster: str, queue: str | None, stat: str, period: int) -> Signal:
    """A Kueue metric for the whole cluster, or for one ClusterQueue (Kueue's `cluster_queue` label)."""
    return _prom(name, cluster, stat, period, **({"cluster_queue": queue} if queue else {}))


def pending(cluster: str, queue: str | None = None, stat: str = "Sum", period: int = 60) -> Signal:
    return _queue("kueue_pending_workloads", cluster, queue, stat, period)


def admitted_active(cluster: str, queue: str | None = None, period: int = 60) -> Signal:
    return _queue("kueue_admitted_active_workloads", cluster, queue, "Sum", period)


def admitted_total(cluster: str, queue: str | None = None, period: int = 60) -> Signal:
    return _queue("kueue_admitted_workloads_total", cluster, queue, "Sum", period)


def finished_total(cluster: str, period: int = 300) -> Signal:
    return _prom("kueue_finished_workloads_total", cluster, "Sum", period)


def evicted_total(cluster: str, period: int = 300) -> Signal:
    return _prom("kueue_evicted_workloads_total", cluster, "Sum", period)


def pushgateway_heartbeat(cluster: str, period: int = 300) -> Signal:
    return _prom("pushgateway_build_info", cluster, "SampleCount", period)


def service_requests(cluster: str, service: str, period: int = 60) -> Signal:
    return _prom("nv_inference_request_success", cluster, "Sum", period, service=service)


def service_failures(cluster: str, service: str, period: int = 60) -> Signal:
    return _prom("nv_inference_request_failure", cluster, "Sum", period, service=service)


def service_request_time(cluster: str, service: str, period: int = 60) -> Signal:
    return _prom("nv_inference_request_duration_us", cluster, "Sum", period, service=service)


def spot_interruptions(rule_name: str, period: int = 300) -> Signal:
    return Signal(EVENTS, "TriggeredRules", (("RuleName", rule_name),), "Sum", period)


def search(namespace: str, dimension_names: tuple[str, ...], metric: str, filters: dict[str, str], stat: str, period: int) -> str:
    """A SEARCH expression over one schema: one line per value of the dimensions not fixed by `filters`."""
    schema = ",".join((namespace, *dimension_names))
    terms = " ".join([f'MetricName="{metric}"', *(f'{key}="{value}"' for key, value in filters.items())])
    return f"SEARCH('{{{schema}}} {terms}', '{stat}', {period})"


def insights(
    function: str, namespace: str, dimension_names: tuple[str, ...], metric: str, filters: dict[str, str], group_by: str = ""
) -> str:
    """A Metrics Insights query (the last three hours only; dashboards and alarms both take it)."""
    where = " AND ".join(f"{key} = '{value}'" for key, value in filters.items())
    schema = ", ".join((f'"{namespace}"', *dimension_names))
    query = f"SELECT {function}({metric}) FROM SCHEMA({schema}) WHERE {where}"
    return f"{query} GROUP BY {group_by}" if group_by else query


RUN_POD_SCHEMA = ("ClusterName", "Namespace", "PodName")
RUN_POD_FILTER = {"Namespace": naming.RUNS_NAMESPACE}
