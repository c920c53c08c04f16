"""`platform.observability`: defaults, alarm subscriptions and thresholds, every error at once with its path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_config import load, stack_config

from config import ConfigError, ObservabilityConfig
from config.capacity import per_gpu_allocatable


def with_observability(section: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(stack_config("dev"))
    config["simfleet:platform"]["observability"] = section
    return config


def test_defaults_turn_it_on_with_no_subscription() -> None:
    config = ObservabilityConfig()
    assert config.enabled and config.log_retention_days == 30
    assert config.alarms.subscriptions == [] and config.alarms.idle_gpu_minutes == 30
    assert config.alarms.queue_stuck_hours == 2 and config.alarms.failed_run_pods == 3
    for stack in ("dev", "prod"):
        assert load(stack_config(stack), stack=stack).platform.observability.enabled


def test_subscriptions_and_thresholds_load() -> None:
    section = {
        "logRetentionDays": 14,
        "alarms": {
            "subscriptions": [
                {"protocol": "email", "endpoint": "oncall@example.org"},
                {"protocol": "sqs", "endpoint": "arn:aws:sqs:us-east-1:123456789012:simfleet-alarms"},
                {"protocol": "lambda", "endpoint": "arn:aws:lambda:us-east-1:123456789012:function:page-oncall"},
                {"protocol": "https", "endpoint": "https://hooks.example.org/simfleet"},
            ],
            "idleGpuMinutes": 45,
            "queueStuckHours": 6,
        },
    }
    alarms = load(with_observability(section)).platform.observability.alarms
    assert [s.protocol for s in alarms.subscriptions] == ["email", "sqs", "lambda", "https"]
    assert (alarms.idle_gpu_minutes, alarms.queue_stuck_hours) == (45, 6)


def test_every_error_at_once_with_its_path() -> None:
    section = {
        "logRetentionDays": 10,
        "alarms": {
            "subscriptions": [
                {"protocol": "email", "endpoint": "not-an-address"},
                {"protocol": "https", "endpoint": "http://insecure.example.org"},
                {"protocol": "pager", "endpoint": "x"},
            ],
            "idleGpuMinutes": 5,
            "queueStuckHours": 48,
        },
    }
    with pytest.raises(ConfigError) as caught:
        load(with_observability(section))
    by_path = {i.path: i.message for i in caught.value.issues}
    assert "is not a CloudWatch retention period" in by_path["platform.observability.logRetentionDays"]
    assert "not a valid email endpoint" in by_path["platform.observability.alarms.subscriptions[0]"]
    assert "not a valid https endpoint" in by_path["platform.observability.alarms.subscriptions[1]"]
    assert "platform.observability.alarms.subscriptions[2].protocol" in by_path
    assert "platform.observability.alarms.idleGpuMinutes" in by_path  # below the autoscaler's scale-down time
    assert "platform.observability.alarms.queueStuckHours" in by_path  # beyond one day of evaluation
    assert str(caught.value).startswith("Pulumi.dev.yaml: ")


def test_a_subscription_listed_twice_is_refused() -> None:
    twice = {"protocol": "email", "endpoint": "oncall@example.org"}
    with pytest.raises(ConfigError) as caught:
        load(with_observability({"alarms": {"subscriptions": [twice, twice]}}))
    assert any("listed twice" in i.message for i in caught.value.issues)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load(with_observability({"dashboards": 2}))
    assert any(i.path == "platform.observability.dashboards" for i in caught.value.issues)


@pytest.mark.parametrize("enabled", [True, False])
def test_nodes_keep_room_for_the_addons_daemonsets(enabled: bool) -> None:
    """With observability on, every node runs the add-on's CloudWatch agent (250m, 128Mi requested) and every GPU node
    its DCGM exporter too (250m, 128Mi): a pod sized to the node without them would never be scheduled."""
    config = with_observability({"enabled": enabled})
    config["simfleet:runs"][1]["cpu"] = "7.5"  # trot-sweep, on g5.2xlarge / g6.2xlarge: 8 vCPU, 32 GiB
    config["simfleet:runs"][2]["memory"] = "29.5Gi"  # trot-continue
    if not enabled:
        load(config)  # 8 - 0.5 CPU and 32 - 2.5 GiB of headroom: both fit
        return
    with pytest.raises(ConfigError) as caught:
        load(config)
    messages = {i.path: i.message for i in caught.value.issues}
    assert messages == {
        "runs[1].cpu": "7.5 CPU does not fit the smallest GPU node (7 CPU allocatable); lower it, or use "
        "larger types in platform.nodeGroups.gpu.instanceTypes (g5.4xlarge (16 vCPU, 64 GiB))",
        "runs[2].memory": "29.5Gi does not fit the smallest GPU node (29.25Gi allocatable); lower it, "
        "or use larger types in platform.nodeGroups.gpu.instanceTypes (g5.4xlarge (16 vCPU, 64 GiB), g6e.2xlarge "
        "(8 vCPU, 64 GiB))",
    }


def test_queue_quotas_per_gpu_leave_the_addons_share() -> None:
    on = load(stack_config("dev")).platform
    off = load(with_observability({"enabled": False})).platform
    # g5.2xlarge, one GPU: the generated quota per GPU is what a pod can have on the node.
    assert (per_gpu_allocatable(on).millicpu, per_gpu_allocatable(on).memory_mib) == (7000, int(29.25 * 1024))
    assert (per_gpu_allocatable(off).millicpu, per_gpu_allocatable(off).memory_mib) == (7500, int(29.5 * 1024))
