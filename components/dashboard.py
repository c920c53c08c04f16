"""The stack's one CloudWatch dashboard, as code: its body from components/dashboard_body.py, its console URL as an output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.dashboard_body import DashboardSpec, dashboard_json, dashboard_url

# Console hosts per partition (a dashboard URL points at the console of the stack's partition).
CONSOLE_HOSTS = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}


@dataclass(frozen=True)
class DashboardArgs:
    spec: DashboardSpec
    # Alerts.alarm_arns, and the spot rule's name from Observability (the dashboard waits for both).
    alarm_arns: Sequence[pulumi.Input[str]]
    spot_rule_name: pulumi.Input[str]


class Dashboard(pulumi.ComponentResource):
    name: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:dashboard:Dashboard", name, None, opts)
        spec = args.spec
        body = pulumi.Output.all(args.spot_rule_name, *args.alarm_arns).apply(
            lambda v: dashboard_json(DashboardSpec(**{**spec.__dict__, "spot_rule_name": str(v[0])}), [str(a) for a in v[1:]])
        )
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            # One per stack, named after the cluster, so dev's and prod's sit side by side in the console.
            dashboard_name=spec.cluster_name,
            dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self),
        )
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        self.name = dashboard.dashboard_name
        self.url = pulumi.Output.all(partition, dashboard.dashboard_name).apply(
            lambda v: dashboard_url(spec.region, str(v[1]), CONSOLE_HOSTS.get(str(v[0]), CONSOLE_HOSTS["aws"]))
        )
        self.register_outputs({"name": self.name, "url": self.url})
