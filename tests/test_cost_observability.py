"""What the observability stack costs: the cost.json block, from the planned stack and the price catalog."""

from __future__ import annotations

import pytest
from test_plan import planned, planned_dev_with_service

from catalog import load_catalog
from tools.cost_observability import OBSERVATIONS, PLATFORM_PODS_PER_SYSTEM_NODE, declared_series
from tools.plan import estimate_cost

HOURS = 730


@pytest.fixture(scope="module")
def dev() -> dict:
    return estimate_cost(planned("dev"))


def test_the_block_is_in_cost_json_and_adds_up(dev) -> None:
    block = dev["observability"]
    items = {i["item"].split(" (")[0].split(":")[0]: i for i in block["items"]}
    assert block["monthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in block["items"]), abs=0.01)
    assert items["CloudWatch dashboards"]["monthlyUsd"] == 3.00  # one dashboard
    # Six alarms (the sample's service ships off): the metric alarms read two to three metrics each, the heartbeats
    # and the Insights query one.
    alarms = next(i for i in block["items"] if i["item"].startswith("CloudWatch alarms"))
    assert "6 alarms" in alarms["item"] and alarms["monthlyUsd"] == pytest.approx(alarms["quantity"] * 0.10)
    # Idle Container Insights: one t3.medium and its platform pods, per minute, for a month at $0.21 per million.
    per_minute = OBSERVATIONS["node"] + PLATFORM_PODS_PER_SYSTEM_NODE * (OBSERVATIONS["pod"] + 2 * OBSERVATIONS["container"])
    insights = next(i for i in block["items"] if i["item"].startswith("Container Insights"))
    assert insights["quantity"] == pytest.approx(per_minute * 60 * HOURS / 1e6, abs=0.01)
    assert insights["monthlyUsd"] == pytest.approx(insights["quantity"] * 0.21, abs=0.01)


def test_custom_metrics_follow_the_declarations(dev) -> None:
    import json

    def agent_of(result) -> dict:
        [config] = [
            r for r in result.registrations if r.type == "kubernetes:core/v1:ConfigMap" and r.name.endswith("simfleet-collector")
        ]
        return json.loads(config.inputs["data"]["cwagentconfig.json"])

    # Kueue: 5 metrics at the cluster and per queue (2 queues), pending per queue and status (2 x 2); the Pushgateway
    # heartbeat; the service's 5 metrics per service and per model (dev's service turned on). Runs and jobs are billed
    # per pushed hour.
    assert declared_series(agent_of(planned_dev_with_service()), queues=2, services=1) == 5 * (1 + 2) + 2 * 2 + 1 + 5 * 2 == 30
    # The sample as shipped: its service is off, so none of the service's series.
    assert declared_series(agent_of(planned("dev")), queues=2, services=0) == 5 * (1 + 2) + 2 * 2 + 1 == 20
    metrics = next(i for i in dev["observability"]["items"] if "custom metrics" in i["item"])
    assert metrics["quantity"] == 20 and metrics["monthlyUsd"] == pytest.approx(6.0)


def test_the_collector_costs_less_than_a_managed_scraper(dev) -> None:
    comparison = dev["observability"]["collectorComparison"]
    services = load_catalog().services
    assert comparison["ampManagedScraperMonthlyUsd"] >= services["ampCollectorHourly"] * HOURS
    assert comparison["cloudwatchAgentMonthlyUsd"] < comparison["ampManagedScraperMonthlyUsd"]


def test_prices_are_in_the_catalog() -> None:
    services = load_catalog().services
    for key in (
        "cloudwatchDashboardMonthly",
        "cloudwatchAlarmMetricMonthly",
        "cloudwatchCustomMetricMonthly",
        "containerInsightsObservationPerMillion",
        "ampCollectorHourly",
        "ampIngestPer10MSamples",
    ):
        assert services[key] > 0, key


def test_no_block_without_the_add_on() -> None:
    from tools.cost_observability import estimate

    assert estimate([], load_catalog(), 1, "t3.medium", 1, 0) is None
