"""The stack's alarms (pure): what each watches, when it fires, and the runbook section that says what to do.

Each rule becomes one aws.cloudwatch.MetricAlarm (components/alerting.py) notifying the stack's SNS topic. The runbook
for every rule is docs/observability.md, section "Alarms", under the rule's key (tests/test_alarms.py checks it is there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import naming
from components import signals as sig
from components.dashboard_body import ServiceView
from config import AlarmsConfig

RUNBOOK = "docs/observability.md#alarms"


@dataclass(frozen=True)
class AlarmRule:
    key: str  # the alarm is named <cluster>-<key>; its runbook entry in docs/observability.md is headed by the key
    description: str
    metric_queries: tuple[dict[str, Any], ...]  # MetricAlarm metric_queries, one of them returning the alarmed series
    comparison: str
    threshold: float
    evaluation_periods: int
    # What no data means: "notBreaching" where silence is the healthy state (no GPU node, no failed pod), "breaching"
    # where the signal is a heartbeat (a Deployment that reports nothing is not running).
    treat_missing_data: str


def _expression(ident: str, expression: str, label: str, period: int) -> dict[str, Any]:
    return {"id": ident, "expression": expression, "label": label, "period": period, "return_data": True}


def idle_gpus(cluster: str, config: AlarmsConfig) -> AlarmRule:
    period = 300
    return AlarmRule(
        "idle-gpus",
        f"GPUs on a node that no pod holds, while Kueue has nothing admitted, for {config.idle_gpu_minutes} minutes: "
        f"paying for GPUs nobody uses. Runbook: {RUNBOOK}",
        (
            sig.gpus_present(cluster, period).alarm_query("gp"),
            sig.gpus_allocated(cluster, period).alarm_query("ga"),
            sig.admitted_active(cluster, period=period).alarm_query("ad"),
            _expression("idle", "IF(gp - FILL(ga, 0) > 0 AND FILL(ad, 0) == 0, 1, 0)", "idle GPUs and nothing admitted", period),
        ),
        "GreaterThanOrEqualToThreshold",
        1,
        -(-config.idle_gpu_minutes // (period // 60)),
        "notBreaching",
    )


def queue_stuck(cluster: str, queue: str, config: AlarmsConfig) -> AlarmRule:
    period = 300  # 12 periods an hour; 24 hours is 288 periods, inside CloudWatch's one-day evaluation range
    return AlarmRule(
        f"queue-stuck-{queue}",
        f"Queue {queue} has had workloads pending and admitted none for {config.queue_stuck_hours} h. Runbook: {RUNBOOK}",
        (
            sig.pending(cluster, queue, "Maximum", period).alarm_query("pn"),
            sig.admitted_total(cluster, queue, period).alarm_query("ad"),
            _expression("stuck", "IF(pn > 0 AND FILL(ad, 0) == 0, 1, 0)", "pending and nothing admitted", period),
        ),
        "GreaterThanOrEqualToThreshold",
        1,
        config.queue_stuck_hours * 3600 // period,
        "notBreaching",
    )


def run_failures(cluster: str, config: AlarmsConfig) -> AlarmRule:
    # One Container Insights observation per pod per period: the query's SUM adds every observation in a period, so
    # over five minutes one failed pod would count five times.
    period = sig.CONTAINER_INSIGHTS_INTERVAL
    query = sig.insights(
        "SUM", sig.CONTAINER_INSIGHTS, sig.RUN_POD_SCHEMA, "pod_status_failed", {"ClusterName": cluster, **sig.RUN_POD_FILTER}
    )
    return AlarmRule(
        "run-failures",
        f"{config.failed_run_pods} or more failed pods in {naming.RUNS_NAMESPACE} (they stay until their run's "
        f"ttlAfterFinished). Runbook: {RUNBOOK}",
        (_expression("failed", query, "failed run pods", period),),
        "GreaterThanOrEqualToThreshold",
        config.failed_run_pods,
        1,
        "notBreaching",
    )


def service_below_minimum(cluster: str, service: ServiceView) -> AlarmRule:
    ready = sig.deployment_ready(cluster, naming.SERVICES_NAMESPACE, service.name)
    return AlarmRule(
        f"service-{service.name}-below-minimum",
        f"Service {service.name} has had fewer than its minimum {service.min_replicas} ready replicas for 15 minutes "
        f"(or reports nothing). Runbook: {RUNBOOK}",
        (ready.alarm_query("ready", return_data=True),),
        "LessThanThreshold",
        service.min_replicas,
        3,
        "breaching",
    )


def pushgateway_down(cluster: str) -> AlarmRule:
    return AlarmRule(
        "pushgateway-down",
        f"The collector has not scraped the Pushgateway for 10 minutes: runs' and jobs' pushes are not collected. "
        f"Runbook: {RUNBOOK}",
        (sig.pushgateway_heartbeat(cluster).alarm_query("hb", return_data=True),),
        "LessThanThreshold",
        1,
        2,
        "breaching",
    )


def collector_down(cluster: str) -> AlarmRule:
    ready = sig.deployment_ready(cluster, naming.OBSERVABILITY_NAMESPACE, naming.COLLECTOR_NAME)
    return AlarmRule(
        "collector-down",
        f"The collector has had no ready replica for 10 minutes (or Container Insights reports nothing): Kueue, the "
        f"Pushgateway and the services are not scraped. Runbook: {RUNBOOK}",
        (ready.alarm_query("ready", return_data=True),),
        "LessThanThreshold",
        1,
        2,
        "breaching",
    )


def alarm_rules(
    cluster: str, config: AlarmsConfig, queues: tuple[str, ...], services: tuple[ServiceView, ...], pushgateway: bool
) -> list[AlarmRule]:
    rules = [idle_gpus(cluster, config), *(queue_stuck(cluster, q, config) for q in queues), run_failures(cluster, config)]
    rules += [service_below_minimum(cluster, s) for s in services]
    if pushgateway:
        rules.append(pushgateway_down(cluster))
    rules.append(collector_down(cluster))
    return rules
