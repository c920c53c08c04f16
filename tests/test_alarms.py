"""The alarms: one per purpose, thresholds from stack config, inside CloudWatch's limits, each with a runbook entry,
and the stack's SNS topic with the subscriptions the stack file lists (none by default)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_plan import planned

from components.alarm_rules import AlarmRule, alarm_rules
from components.alerting import Alerts, AlertsArgs
from components.dashboard_body import ServiceView
from config import AlarmsConfig, AlarmSubscription

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "observability.md"
SERVICES = (ServiceView("radstream-triton", 2, True),)
COMPARISONS = {"GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"}


def rules(config: AlarmsConfig | None = None, pushgateway: bool = True) -> list[AlarmRule]:
    return alarm_rules("simfleet-dev", config or AlarmsConfig(), ("locomotion", "perception"), SERVICES, pushgateway)


def test_one_alarm_per_purpose() -> None:
    keys = [r.key for r in rules()]
    assert keys == [
        "idle-gpus",
        "queue-stuck-locomotion",
        "queue-stuck-perception",
        "run-failures",
        "service-radstream-triton-below-minimum",
        "pushgateway-down",
        "collector-down",
    ]
    assert "pushgateway-down" not in [r.key for r in rules(pushgateway=False)]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.key)
def test_each_rule_fits_cloudwatch(rule: AlarmRule) -> None:
    returned = [q for q in rule.metric_queries if q["return_data"]]
    assert len(returned) == 1, "a metric alarm alarms on exactly one returned series"
    ids = {q["id"] for q in rule.metric_queries}
    for query in rule.metric_queries:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9_]*", query["id"])
        expression = query.get("expression", "")
        if expression and not expression.startswith("SELECT"):
            used = set(re.findall(r"\b([a-z][a-z0-9]*)\b", expression)) - {"and"}
            assert used <= ids, (rule.key, used)
        period = query.get("period") or query["metric"]["period"]
        # CloudWatch evaluates at most one day of periods of a minute or more.
        assert period % 60 == 0 and rule.evaluation_periods * period <= 86400, rule.key
    assert rule.comparison in COMPARISONS and rule.treat_missing_data in ("breaching", "notBreaching")
    assert rule.description.endswith("Runbook: docs/observability.md#alarms")


def test_thresholds_follow_the_stack_config() -> None:
    tuned = {r.key: r for r in rules(AlarmsConfig(idle_gpu_minutes=60, queue_stuck_hours=6, failed_run_pods=5))}
    assert tuned["idle-gpus"].evaluation_periods == 12  # 60 minutes of 5-minute periods
    assert tuned["queue-stuck-locomotion"].evaluation_periods == 72  # 6 hours of 5-minute periods
    assert tuned["run-failures"].threshold == 5
    assert tuned["service-radstream-triton-below-minimum"].threshold == 2  # its replicas.min
    default = {r.key: r for r in rules()}
    assert default["idle-gpus"].evaluation_periods == 6 and default["queue-stuck-locomotion"].evaluation_periods == 24


def test_heartbeats_treat_silence_as_failure_and_conditions_do_not() -> None:
    by_key = {r.key: r for r in rules()}
    for key in ("pushgateway-down", "collector-down", "service-radstream-triton-below-minimum"):
        assert by_key[key].treat_missing_data == "breaching", key
    for key in ("idle-gpus", "queue-stuck-locomotion", "run-failures"):
        assert by_key[key].treat_missing_data == "notBreaching", key


def test_every_alarm_has_a_runbook_entry() -> None:
    text = DOCS.read_text()
    section = text[text.index("## Alarms") :]
    for key in (
        "idle-gpus",
        "queue-stuck-<queue>",
        "run-failures",
        "service-<service>-below-minimum",
        "pushgateway-down",
        "collector-down",
    ):
        assert f"`{key}`" in section, key
    planned_names = [r.inputs["name"] for r in planned("dev").registrations if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"]
    for name in planned_names:
        key = name.removeprefix("simfleet-dev-")
        generic = re.sub(
            r"^queue-stuck-.*",
            "queue-stuck-<queue>",
            re.sub(r"^service-(.*)-below-minimum$", "service-<service>-below-minimum", key),
        )
        assert f"`{generic}`" in section, name


def test_topic_subscriptions_and_actions(pulumi_mocks) -> None:
    subscriptions = [
        AlarmSubscription(protocol="email", endpoint="ops@example.org"),
        AlarmSubscription(protocol="https", endpoint="https://hooks.example.org/simfleet"),
    ]

    def build() -> None:
        Alerts("alerts", AlertsArgs("simfleet-dev", rules(), subscriptions, {"simfleet:stack": "dev"}))

    rec = pulumi_mocks(build)
    topic = rec.one("aws:sns/topic:Topic")
    assert topic.inputs["name"] == "simfleet-dev-alarms"
    made = {(s.inputs["protocol"], s.inputs["endpoint"]) for s in rec.of_type("aws:sns/topicSubscription:TopicSubscription")}
    assert made == {("email", "ops@example.org"), ("https", "https://hooks.example.org/simfleet")}
    alarms = rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == len(rules())
    for alarm in alarms:
        # Both ways: the topic hears when the condition ends too.
        assert (
            alarm.inputs["alarmActions"]
            == alarm.inputs["okActions"]
            == ["arn:aws:sns:us-east-1:123456789012:simfleet-dev-alarms"]
        )
        assert alarm.inputs["name"].startswith("simfleet-dev-")
        assert alarm.inputs["datapointsToAlarm"] == alarm.inputs["evaluationPeriods"]


def test_no_subscription_by_default() -> None:
    assert AlarmsConfig().subscriptions == []
    assert not [r for r in planned("dev").registrations if r.type == "aws:sns/topicSubscription:TopicSubscription"]


def test_args_refuse_two_rules_with_one_key() -> None:
    twice = [*rules(), rules()[0]]
    with pytest.raises(ValueError, match="share a key"):
        AlertsArgs("c", twice, [], {})


@pytest.mark.parametrize("failed_run_pods", [1, 3, 10])
def test_run_failures_counts_failed_pods_not_observations(failed_run_pods: int) -> None:
    """Container Insights reports pod_status_failed for every pod once a minute (1 while the pod is Failed), and a
    Metrics Insights SUM adds every observation in a period ("SUM calculates the sum of the observations matched by
    the query" in each time bucket: CloudWatch user guide, Metrics Insights query components and syntax)."""
    rule = {r.key: r for r in rules(AlarmsConfig(failed_run_pods=failed_run_pods))}["run-failures"]
    [query] = rule.metric_queries
    assert query["expression"].startswith("SELECT SUM(pod_status_failed) ")
    observations_per_pod = query["period"] // 60

    def fires(failed_pods: int) -> bool:
        assert rule.comparison == "GreaterThanOrEqualToThreshold"
        return failed_pods * observations_per_pod >= rule.threshold

    assert fires(failed_run_pods) and not fires(failed_run_pods - 1)
