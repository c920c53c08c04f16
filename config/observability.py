"""`simfleet:platform.observability`: Container Insights, the metrics collector, the dashboard, and who the alarms reach."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.types import LOG_RETENTION_DAYS, Model

# SNS Subscribe endpoints per protocol (SNS API Subscribe, "Endpoint"): an address for email, a URL for https, an ARN
# for the queue or function. Checked here so a typo fails the plan, not an `up` half-way through.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_ENDPOINT_RE = {
    "email": _EMAIL_RE,
    "email-json": _EMAIL_RE,
    "https": re.compile(r"^https://[^\s/]+(/\S*)?$"),
    "sqs": re.compile(r"^arn:aws(-[a-z]+)*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$"),
    "lambda": re.compile(r"^arn:aws(-[a-z]+)*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$"),
}


# What the amazon-cloudwatch-observability add-on asks of each node it runs on, as (CPU, GiB) requests, from the chart
# the pinned build is made of (aws-observability/helm-charts tag amazon-cloudwatch-observability-6.4.0, values.yaml,
# read 2026-12-07): its CloudWatch agent DaemonSet (agent.resources.requests: 250m, 128Mi) on every node, and the DCGM
# exporter (dcgmExporter.resources.requests: 250m, 128Mi) on the GPU nodes. Its Fluent Bit (50m, 25Mi) takes the place
# of the aws-for-fluent-bit chart's (50m, 50Mi), which the node headroom already counts (config/fit.py node_headroom).
AGENT_NODE_REQUESTS = (0.25, 0.125)
DCGM_NODE_REQUESTS = (0.25, 0.125)


class AlarmSubscription(Model):
    """One SNS subscription of the stack's alarm topic. Email subscriptions stay pending until the address confirms."""

    protocol: Literal["email", "email-json", "https", "sqs", "lambda"]
    endpoint: str = Field(description="The address, https URL, SQS queue ARN or Lambda function ARN.")

    @model_validator(mode="after")
    def _endpoint_fits(self) -> AlarmSubscription:
        if not _ENDPOINT_RE[self.protocol].match(self.endpoint):
            raise ValueError(f"endpoint {self.endpoint!r} is not a valid {self.protocol} endpoint")
        return self


class AlarmsConfig(Model):
    """The thresholds of the stack's alarms (docs/observability.md has a runbook line for each)."""

    subscriptions: list[AlarmSubscription] = Field(
        default_factory=list, description="Who the alarm topic notifies. None by default: the alarms still show on the dashboard."
    )
    idle_gpu_minutes: int = Field(
        30,
        ge=15,
        le=720,
        description="GPUs present that no pod holds while Kueue admits nothing, for this long: money burning. Above the "
        "autoscaler's 10 minute scale-down, so a normal scale-down never fires it.",
    )
    queue_stuck_hours: int = Field(
        2, ge=1, le=24, description="A queue with workloads pending and none admitted for this many hours."
    )
    failed_run_pods: int = Field(
        3, ge=1, le=1000, description="Failed pods in the runs namespace (kept until their run's ttlAfterFinished)."
    )

    @field_validator("subscriptions")
    @classmethod
    def _unique(cls, subscriptions: list[AlarmSubscription]) -> list[AlarmSubscription]:
        keys = [(s.protocol, s.endpoint) for s in subscriptions]
        if len(set(keys)) != len(keys):
            raise ValueError("a subscription is listed twice")
        return subscriptions


class ObservabilityConfig(Model):
    """Container Insights (the amazon-cloudwatch-observability add-on), one collector, one dashboard and alarms."""

    enabled: bool = Field(
        True,
        description="Install the amazon-cloudwatch-observability EKS add-on (node, pod and GPU metrics, container logs), "
        "the collector that scrapes the Pushgateway, Kueue and the services' metrics ports, the dashboard and the alarms.",
    )
    log_retention_days: int = Field(
        30,
        description="Days CloudWatch keeps container, node and collector logs. Runs archive their own logs in S3, so "
        "CloudWatch is the short-term copy.",
    )
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"{days} is not a CloudWatch retention period; use one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return days
