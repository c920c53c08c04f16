"""Observability: the amazon-cloudwatch-observability EKS add-on (Container Insights with GPU metrics and the one log
pipeline), its log groups, the collector (components/collector.py) and the spot-interruption event record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
import versions
from components import kube
from components.addons import GPU_TOLERATION, SYSTEM_NODES
from components.collector import CollectorArgs, collector_objects
from components.irsa import IrsaRole, IrsaRoleArgs
from components.tags import merge_tags
from config import ObservabilityConfig

ADDON = "amazon-cloudwatch-observability"
# The AWS-managed policy the add-on's documentation attaches to the agent's role: it grows with the agent's needs
# (metrics, logs, the EC2 and EBS describes that tag metrics) from one add-on version to the next.
AGENT_POLICY = "CloudWatchAgentServerPolicy"
SPOT_INTERRUPTION_PATTERN = {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]}


def addon_configuration() -> dict[str, Any]:
    """The add-on's configuration values (its documented schema: tests/test_observability.py).

    Container Insights with enhanced observability (the agent's default; GPU metrics from the DCGM exporter on GPU
    nodes), Fluent Bit for container, host and dataplane logs. Application Signals stays off: it would have the
    operator inject instrumentation into pods, run pods included. OTel Container Insights stays off: in preview, and
    its PromQL metrics cannot feed this stack's metric alarms.
    """
    return {
        # Every agent, Fluent Bit and DCGM exporter pod on every node, GPU nodes included (replaces the chart's default
        # "tolerate everything" with what simfleet's nodes carry).
        "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containerLogs": {"enabled": True},
        "containerInsights": {"enabled": True},
        "applicationSignals": {"enabled": False},
        "otelContainerInsights": {"enabled": False},
        "neuronMonitor": {"enabled": False},  # no Inferentia or Trainium node
        "manager": {
            # The operator on the system nodes, like every controller; and no automatic instrumentation of any pod.
            "nodeSelector": SYSTEM_NODES,
            "applicationSignals": {"autoMonitor": {"monitorAllServices": False}},
        },
    }


def collector_policy(partition: str, region: str, account_id: str, cluster_name: str) -> dict[str, Any]:
    """The collector writes its embedded-metric-format events to its one log group; CloudWatch makes the metrics."""
    group = naming.container_insights_log_group(cluster_name, "prometheus")
    arn = f"arn:{partition}:logs:{region}:{account_id}:log-group:{group}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WritePrometheusEvents",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                "Resource": [arn, f"{arn}:*"],
            }
        ],
    }


def events_log_policy(log_group_arn: str) -> dict[str, Any]:
    """Lets EventBridge write its matched events into the interruption log group (CloudWatch Logs resource policy)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:*",
            }
        ],
    }


def _resources(depends_on: Any) -> list[pulumi.Resource]:
    """The resources of a depends_on option given as a list (the only form __main__ passes)."""
    return [r for r in depends_on if isinstance(r, pulumi.Resource)] if isinstance(depends_on, (list, tuple)) else []


@dataclass(frozen=True)
class ObservabilityArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    config: ObservabilityConfig
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    tags: Mapping[str, str]
    cluster: pulumi.Resource
    scrape_pushgateway: bool
    service_metrics_ports: Mapping[str, int] = field(default_factory=dict)
    # Services.namespace when services exist: the collector's pod-discovery Role lives there, once it is guarded.
    services_namespace: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if ADDON not in versions.EKS_ADDON_PINS.get(self.kubernetes_version, {}):
            raise ValueError(f"Observability: versions.py pins no {ADDON} build for Kubernetes {self.kubernetes_version}")


class Observability(pulumi.ComponentResource):
    log_groups: dict[str, pulumi.Output[str]]
    addon_version: str
    spot_rule_name: pulumi.Output[str]
    collector_namespace: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:observability:Observability", name, None, opts)
        # depends_on on a component does not reach its children: restate it (the add-on's pods need nodes, the
        # collector needs Kueue's metrics Service).
        after = opts.depends_on if opts is not None else None
        aws_child = pulumi.ResourceOptions(parent=self)
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, depends_on=after, deleted_with=args.cluster)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id

        groups = {
            kind: aws.cloudwatch.LogGroup(
                f"{name}-{kind}",
                name=naming.container_insights_log_group(args.cluster_name, kind),
                retention_in_days=args.config.log_retention_days,
                tags=merge_tags(args.tags, {}, name=naming.container_insights_log_group(args.cluster_name, kind)),
                opts=aws_child,
            )
            for kind in naming.CONTAINER_INSIGHTS_LOG_KINDS
        }

        agent_role = IrsaRole(
            f"{name}-agent",
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_provider_url=args.oidc_provider_url,
                namespace=naming.CLOUDWATCH_AGENT_SA[0],
                service_account=naming.CLOUDWATCH_AGENT_SA[1],
                managed_policy_arns=[pulumi.Output.concat("arn:", partition, f":iam::aws:policy/{AGENT_POLICY}")],
                tags=args.tags,
            ),
            opts=aws_child,
        )
        version = versions.addon_version(args.kubernetes_version, ADDON)
        aws.eks.Addon(
            f"{name}-addon",
            cluster_name=args.cluster_name,
            addon_name=ADDON,
            addon_version=version,
            configuration_values=json.dumps(addon_configuration(), sort_keys=True),
            # IRSA: EKS annotates the add-on's cloudwatch-agent service account (agent and Fluent Bit) with this role.
            service_account_role_arn=agent_role.role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=merge_tags(args.tags, {}),
            # No data flows from the log groups: without this, the agent and Fluent Bit could create them first, with
            # no retention (auto_create_group), and the groups' create would then fail as already existing.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*_resources(after), *groups.values()], deleted_with=args.cluster
            ),
        )

        collector_role = IrsaRole(
            f"{name}-collector",
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_provider_url=args.oidc_provider_url,
                namespace=naming.OBSERVABILITY_NAMESPACE,
                service_account=naming.COLLECTOR_NAME,
                policy_json=pulumi.Output.all(partition, account_id).apply(
                    lambda v: json.dumps(collector_policy(v[0], args.region, v[1], args.cluster_name), separators=(",", ":"))
                ),
                tags=args.tags,
            ),
            opts=aws_child,
        )
        objects = collector_objects(
            CollectorArgs(
                args.cluster_name,
                args.region,
                args.kubernetes_version,
                collector_role.role_arn,
                args.scrape_pushgateway,
                dict(args.service_metrics_ports),
            )
        )
        namespace = kube.register(f"{name}-namespace", objects[0], in_cluster)
        guarded: list[pulumi.Resource] = [namespace]
        for body in objects[1:]:
            kind, object_name = body["kind"], body["metadata"]["name"]
            # The Deployment starts after its guards, account, RBAC and configuration, and after its log group exists.
            extra = (
                pulumi.ResourceOptions(depends_on=[*_resources(after), *guarded, groups["prometheus"]])
                if kind == "Deployment"
                else None
            )
            where = body["metadata"].get("namespace")
            ident = f"{name}-{kind.lower()}-{where or 'cluster'}-{object_name}"
            if where == naming.SERVICES_NAMESPACE and args.services_namespace is not None:
                body = {**body, "metadata": {**body["metadata"], "namespace": args.services_namespace}}
            guarded.append(kube.register(ident, body, pulumi.ResourceOptions.merge(in_cluster, extra)))

        self.spot_rule_name = self._spot_interruptions(name, args, partition, account_id)
        self.log_groups = {kind: group.name for kind, group in groups.items()}
        self.addon_version = version
        self.collector_namespace = namespace.urn.apply(lambda _: naming.OBSERVABILITY_NAMESPACE)
        self.register_outputs({"logGroups": self.log_groups, "addonVersion": version, "spotRuleName": self.spot_rule_name})

    def _spot_interruptions(
        self, name: str, args: ObservabilityArgs, partition: pulumi.Output[str], account_id: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        """Every EC2 Spot interruption warning in the region, kept in a log group: which instance, and when.

        EventBridge cannot filter the event by cluster (it carries only the instance id), so the count is the region's;
        the rule's TriggeredRules metric is the dashboard's spot-reclaim line.
        """
        child = pulumi.ResourceOptions(parent=self)
        group_name = naming.spot_interruption_log_group(args.cluster_name)
        group = aws.cloudwatch.LogGroup(
            f"{name}-spot-interruptions",
            name=group_name,
            retention_in_days=args.config.log_retention_days,
            tags=merge_tags(args.tags, {}, name=group_name),
            opts=child,
        )
        policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-spot-interruptions",
            policy_name=f"{args.cluster_name}-spot-interruptions",
            policy_document=group.arn.apply(lambda arn: json.dumps(events_log_policy(arn))),
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-spot-interruptions",
            name=f"{args.cluster_name}-spot-interruptions",
            description="EC2 Spot interruption warnings in this region (simfleet dashboard: spot reclaims)",
            event_pattern=json.dumps(SPOT_INTERRUPTION_PATTERN),
            tags=merge_tags(args.tags, {}),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-spot-interruptions",
            rule=rule.name,
            arn=group.arn,
            # The log group accepts EventBridge's writes only once its resource policy exists.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return rule.name
