"""Alerting: the stack's SNS topic, its subscriptions from stack config, and one metric alarm per rule (components/alarm_rules.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alarm_rules import AlarmRule
from components.tags import merge_tags
from config import AlarmSubscription


def _query(query: Mapping[str, Any]) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    metric = query.get("metric")
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        **{k: v for k, v in query.items() if k != "metric"},
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(**metric) if metric else None,
    )


@dataclass(frozen=True)
class AlertsArgs:
    cluster_name: str
    rules: Sequence[AlarmRule]
    subscriptions: Sequence[AlarmSubscription]
    tags: Mapping[str, str]

    def __post_init__(self) -> None:
        keys = [rule.key for rule in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Alerts: two alarm rules share a key: {sorted(k for k in keys if keys.count(k) > 1)}")


class Alerts(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    alarm_arns: list[pulumi.Output[str]]
    alarm_names: list[str]

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:alerting:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Not KMS-encrypted: CloudWatch alarms cannot publish to a topic under the AWS-managed aws/sns key, and the
        # messages carry alarm names and thresholds, nothing secret.
        topic = aws.sns.Topic(f"{name}-topic", name=f"{args.cluster_name}-alarms", tags=merge_tags(args.tags, {}), opts=child)
        for index, subscription in enumerate(args.subscriptions):
            aws.sns.TopicSubscription(
                f"{name}-subscription-{index}",
                topic=topic.arn,
                protocol=subscription.protocol,
                endpoint=subscription.endpoint,
                opts=child,
            )

        self.alarm_arns, self.alarm_names = [], []
        for rule in args.rules:
            alarm_name = f"{args.cluster_name}-{rule.key}"
            alarm = aws.cloudwatch.MetricAlarm(
                f"{name}-{rule.key}",
                name=alarm_name,
                alarm_description=rule.description,
                metric_queries=[_query(q) for q in rule.metric_queries],
                comparison_operator=rule.comparison,
                threshold=rule.threshold,
                evaluation_periods=rule.evaluation_periods,
                datapoints_to_alarm=rule.evaluation_periods,
                treat_missing_data=rule.treat_missing_data,
                # Both ways: the topic hears when the condition ends too, so nobody chases a problem already gone.
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                tags=merge_tags(args.tags, {}),
                opts=child,
            )
            self.alarm_arns.append(alarm.arn)
            self.alarm_names.append(alarm_name)

        self.topic_arn = topic.arn
        self.register_outputs({"topicArn": self.topic_arn, "alarmNames": self.alarm_names})
