"""The cost estimate: idle and GPU-at-max monthly figures and per-run upper bounds, from registrations."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest
from sample_plans import planned, planned_dev_with_service

from catalog import load_catalog
from policies.rules import Resource
from tools.cost import estimate, node_groups, summary

TODAY = datetime.date(2026, 11, 23)
HOURS = 730


def res(typ: str, name: str, props: dict[str, Any] | None = None, **deps: list[str]) -> Resource:
    return Resource(typ, f"urn:pulumi:dev::simfleet::{typ}::{name}", name, props or {}, None, deps)


def template(name: str, disk: int) -> Resource:
    return res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        name,
        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": disk}}]},
    )


def group(name: str, types: list[str], capacity: str, min_size: int, max_size: int, lt: Resource) -> Resource:
    props = {"instanceTypes": types, "capacityType": capacity, "scalingConfig": {"minSize": min_size, "maxSize": max_size}}
    return res("aws:eks/nodeGroup:NodeGroup", name, props, launchTemplate=[lt.urn])


def run(name: str, capacity: str, deadline: int, parallelism: int | None = None, completions: int | None = None) -> Resource:
    spec: dict[str, Any] = {"activeDeadlineSeconds": deadline}
    if parallelism is not None:
        spec.update(parallelism=parallelism, completions=completions, completionMode="Indexed")
    spec["template"] = {"spec": {"nodeSelector": {"eks.amazonaws.com/capacityType": capacity}, "containers": []}}
    objects: list[dict[str, Any]] = [{"kind": "ConfigMap"}, {"kind": "Job", "spec": spec}]
    # The objects as the renderer would give them (tests/test_plan.py prices the real rendering).
    props = {"runName": name, "specHash": "h", "spec": {"name": name}}
    return replace(res("pulumi-python:dynamic:Resource", f"runs-{name}", props), rendered=objects)


def dev_like(version: str = "1.35", nats: int = 1) -> list[Resource]:
    lts = [template("system-lt", 20), template("spot-lt", 200), template("od-lt", 200)]
    gpu = ["g5.2xlarge", "g6e.xlarge"]
    return [
        res("eks:index:Cluster", "cluster-eks", {"name": "simfleet-dev", "version": version}),
        res("aws:kms/key:Key", "cluster-secrets"),
        *[res("aws:ec2/eip:Eip", f"nat-eip-{i}") for i in range(nats)],
        *[res("aws:ec2/natGateway:NatGateway", f"nat-{i}") for i in range(nats)],
        *lts,
        group("nodes-system", ["t3.medium"], "ON_DEMAND", 1, 3, lts[0]),
        group("nodes-gpu-spot", gpu, "SPOT", 0, 4, lts[1]),
        group("nodes-gpu-on-demand", gpu, "ON_DEMAND", 0, 4, lts[2]),
        run("trot-baseline", "ON_DEMAND", 7200),
        run("trot-sweep", "SPOT", 3 * 3600, parallelism=4, completions=8),
    ]


def test_dev_idle_is_the_fixed_platform_and_stays_under_150() -> None:
    cost = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    expected = (
        0.10 * HOURS  # EKS control plane
        + 0.045 * HOURS  # one NAT gateway
        + 0.005 * HOURS  # its Elastic IP
        + 1.00  # the secrets KMS key
        + 0.0416 * HOURS  # one t3.medium system node
        + 20 * 0.08  # its 20 GiB gp3 root volume
    )
    assert cost["idleMonthlyUsd"] == pytest.approx(expected, abs=0.02)
    assert cost["idleMonthlyUsd"] < 150
    items = {i["item"] for i in cost["breakdown"] if i["scope"] == "idle"}
    assert not any("gpu" in i for i in items), "GPU groups are at 0 when idle"


def test_gpu_max_prices_every_gpu_node_by_capacity_with_the_spot_discount() -> None:
    cost = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    catalog = load_catalog()
    priciest = max(catalog.instances[t].on_demand_hourly for t in ("g5.2xlarge", "g6e.xlarge"))
    spot = 4 * priciest * (1 - catalog.spot_discount) * HOURS + 4 * 200 * 0.08
    on_demand = 4 * priciest * HOURS + 4 * 200 * 0.08
    assert cost["gpuMaxMonthlyUsd"] == pytest.approx(cost["idleMonthlyUsd"] + spot + on_demand, abs=0.05)
    assert any("g6e.xlarge spot" in i["item"] for i in cost["breakdown"] if i["scope"] == "gpuMax")


def test_gpu_groups_with_a_minimum_count_in_idle_and_are_not_double_counted() -> None:
    resources = dev_like()
    resources = [
        r
        if r.name != "nodes-gpu-on-demand"
        else group("nodes-gpu-on-demand", ["g5.2xlarge"], "ON_DEMAND", 1, 4, template("od-lt", 200))
        for r in resources
    ]
    base = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    cost = estimate(resources, "dev", "us-east-1", today=TODAY)
    one_node = 1.212 * HOURS + 200 * 0.08
    assert cost["idleMonthlyUsd"] == pytest.approx(base["idleMonthlyUsd"] + one_node, abs=0.02)
    # At max the group is 4 x g5.2xlarge instead of 4 x g6e.xlarge; its idle node is not added on top.
    delta_at_max = 4 * (1.861 - 1.212) * HOURS
    assert cost["gpuMaxMonthlyUsd"] == pytest.approx(base["gpuMaxMonthlyUsd"] - delta_at_max, abs=0.05)


def test_runs_are_price_times_runtime_times_parallelism() -> None:
    cost = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    runs = {r["name"]: r for r in cost["runs"]}
    # Each pod's node (with its 200 GiB root volume) for the deadline, Kubernetes' default 30 s grace and the
    # autoscaler's 10 minutes before it removes the empty node.
    disk, after = 200 * 0.08 / HOURS, 30 / 3600 + 10 / 60
    assert runs["trot-baseline"]["upToUsd"] == pytest.approx((1.861 + disk) * (2 + after), abs=0.01)
    assert runs["trot-baseline"]["unit"] == "USD per admission" and runs["trot-baseline"]["deadlineHours"] == 2
    assert runs["trot-baseline"]["capacity"] == "ON_DEMAND" and runs["trot-baseline"]["instanceType"] == "g6e.xlarge"
    assert runs["trot-sweep"]["upToUsd"] == pytest.approx((1.861 * 0.4 + disk) * (3 + after) * 4, abs=0.01)
    assert runs["trot-sweep"]["pods"] == 4
    assert any("most expensive" in a for a in cost["assumptions"])
    assert any("Spot nodes cost 40% of On-Demand" in a for a in cost["assumptions"])


def test_cost_follows_what_is_built() -> None:
    single = estimate(dev_like(nats=1), "dev", "us-east-1", today=TODAY)
    per_az = estimate(dev_like(nats=3), "dev", "us-east-1", today=TODAY)
    assert per_az["idleMonthlyUsd"] - single["idleMonthlyUsd"] == pytest.approx(2 * (0.045 + 0.005) * HOURS, abs=0.02)


def test_extended_support_is_priced_after_standard_support_ends() -> None:
    standard = estimate(dev_like("1.35"), "dev", "us-east-1", today=TODAY)
    extended = estimate(dev_like("1.31"), "dev", "us-east-1", today=TODAY)
    assert extended["idleMonthlyUsd"] - standard["idleMonthlyUsd"] == pytest.approx((0.60 - 0.10) * HOURS, abs=0.02)


def test_other_regions_are_flagged_and_unknown_types_refused() -> None:
    cost = estimate(dev_like(), "dev", "eu-west-1", today=TODAY)
    assert any("eu-west-1" in a for a in cost["assumptions"])
    lt = template("x-lt", 20)
    with pytest.raises(ValueError, match=r"aws_catalog\.json"):
        node_groups([lt, group("x", ["z9.mega"], "ON_DEMAND", 1, 1, lt)], load_catalog())


def test_summary_lines_name_the_figures() -> None:
    lines = summary(estimate(dev_like(), "dev", "us-east-1", today=TODAY))
    assert lines[0].startswith("cost (us-east-1 prices of") and "USD/month" in lines[0]
    # Runs cost per admission, not per month: they are never listed under the monthly header.
    assert not any("trot-sweep" in line for line in lines)


@pytest.mark.slow
def test_example_stacks_cost() -> None:
    from tools import plan

    costs = {}
    for stack in ("dev", "prod"):
        result = planned(stack)
        costs[stack] = plan.estimate_cost(result)
    # dev: its platform and the observability stack that runs while idle (the figure docs/researchers/cost.md states).
    assert 150 < costs["dev"]["idleMonthlyUsd"] < 200
    # prod: three NAT gateways and two m6i.large system nodes.
    assert costs["prod"]["idleMonthlyUsd"] > costs["dev"]["idleMonthlyUsd"] + 100
    assert {(r["kind"], r["name"]) for r in costs["dev"]["runs"]} == {
        ("run", "trot-baseline"),
        ("run", "trot-sweep"),
        ("run", "trot-continue"),
        ("job", "robocache-resample"),
    }
    # Work that pins no capacity type is bounded on-demand (Kueue may fall back) and priced on spot beside it.
    by_name = {r["name"]: r for r in costs["dev"]["runs"]}
    sweep = by_name["trot-sweep"]
    disk = 200 * 0.08 / HOURS  # the root volume is not discounted on spot
    spot_share = (1.212 * 0.4 + disk) / (1.212 + disk)
    assert sweep["capacity"] == "ON_DEMAND" and sweep["spotUpToUsd"] == pytest.approx(sweep["upToUsd"] * spot_share, abs=0.02)
    assert by_name["trot-baseline"]["spotUpToUsd"] is None  # interactive: on-demand only
    assert costs["prod"]["runs"] == [] and costs["prod"]["services"] == []
    # prod's queues hold 16 spot and 10 on-demand GPUs: the ceiling prices 10 of the 16 on-demand nodes.
    assert costs["prod"]["gpuCeiling"]["ON_DEMAND"] == {
        "maxSizeNodes": 16,
        "queueNominalGpus": 10,
        "serviceGpusAtMax": 0,
        "nodes": 10,
    }
    # dev's queues fill the spot group and 1 on-demand node; its Triton service ships off, so it holds none.
    assert {c: line["nodes"] for c, line in costs["dev"]["gpuCeiling"].items() if c != "source"} == {"SPOT": 4, "ON_DEMAND": 1}
    assert costs["dev"]["services"] == [] and costs["dev"]["servicesMinMonthlyUsd"] == 0
    # trot-baseline has a viewport: its NLB is billed with the run, for the Job's lifetime.
    viewports = {r["name"]: r["viewportUsd"] for r in costs["dev"]["runs"]}
    assert viewports["trot-baseline"] > 0 and viewports["trot-sweep"] == viewports["trot-continue"] == 0


def test_a_viewport_load_balancer_is_billed_with_its_run_for_the_jobs_lifetime() -> None:
    base = dev_like()
    subnets = [res("aws:ec2/subnet:Subnet", f"public-{i}", {"tags": {"kubernetes.io/role/elb": "1"}}) for i in range(2)]
    viewport = run("trot-baseline", "ON_DEMAND", 7200)
    assert viewport.rendered is not None
    job = next(o for o in viewport.rendered if o["kind"] == "Job")
    job["spec"]["ttlSecondsAfterFinished"] = 1800
    service = {"kind": "Service", "metadata": {"name": "trot-baseline-viewport"}, "spec": {"type": "LoadBalancer"}}
    viewport = replace(viewport, rendered=[*viewport.rendered, service])
    resources = [r for r in base if r.name != "runs-trot-baseline"] + subnets + [viewport]
    plain = [r for r in base if r.name != "runs-trot-baseline"] + subnets + [run("trot-baseline", "ON_DEMAND", 7200)]
    without = estimate(plain, "dev", "us-east-1", today=TODAY)
    cost = estimate(resources, "dev", "us-east-1", today=TODAY)
    before = next(r for r in without["runs"] if r["name"] == "trot-baseline")
    after = next(r for r in cost["runs"] if r["name"] == "trot-baseline")
    # One NLB plus a public IPv4 address in each of the two public subnets, for maxRuntime (2 h) + TTL (0.5 h).
    assert after["viewportUsd"] == pytest.approx((0.0225 + 2 * 0.005) * 2.5, abs=0.01)
    assert after["upToUsd"] == pytest.approx(before["upToUsd"] + after["viewportUsd"], abs=0.01)
    assert cost["idleMonthlyUsd"] == without["idleMonthlyUsd"]


def test_each_kms_key_and_log_group_shows_by_name() -> None:
    logs_key = res(
        "aws:kms/key:Key", "cluster-logs", {"description": "CloudWatch Logs encryption of /aws/eks/simfleet-prod/cluster"}
    )
    group = res(
        "aws:cloudwatch/logGroup:LogGroup",
        "cluster-control-plane-logs",
        {"name": "/aws/eks/simfleet-prod/cluster", "retentionInDays": 90},
    )
    forever = res("aws:cloudwatch/logGroup:LogGroup", "unmanaged", {"name": "/x"})
    base = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    cost = estimate([*dev_like(), logs_key, group, forever], "dev", "us-east-1", today=TODAY)
    items = {i["item"]: i for i in cost["breakdown"]}
    # $1 a month per key, one line each, named by purpose.
    assert items["KMS key: CloudWatch Logs encryption of /aws/eks/simfleet-prod/cluster"]["monthlyUsd"] == 1.0
    assert items["KMS key: cluster-secrets"]["monthlyUsd"] == 1.0
    # A log group is free to exist (ingestion and storage are usage-based, under "excluded"), but it is listed with its retention.
    assert items["CloudWatch log group /aws/eks/simfleet-prod/cluster (kept 90 days)"]["monthlyUsd"] == 0.0
    assert "CloudWatch log group /x (never expires)" in items
    assert cost["idleMonthlyUsd"] == pytest.approx(base["idleMonthlyUsd"] + 1.0)
    assert any("CloudWatch Logs ingestion" in e for e in cost["excluded"])


def service(
    name: str, gpus: int, capacity: str | None, low: int, high: int, lb: bool = False, cpu: str = "3", memory: str = "12Gi"
) -> list[Resource]:
    """A service's Deployment, HPA and Service as the renderer registers them (labels carry the service name)."""
    labels = {"simfleet.io/service": name}
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    pod: dict[str, Any] = {"containers": [{"name": "server", "resources": {"requests": requests, "limits": limits}}]}
    pod["nodeSelector"] = {"eks.amazonaws.com/capacityType": capacity} if capacity else {"simfleet.io/node-pool": "system"}
    meta = {"name": name, "namespace": "simfleet-services", "labels": labels}
    return [
        res(
            "kubernetes:apps/v1:Deployment",
            f"services-{name}-deployment",
            {"metadata": meta, "spec": {"template": {"spec": pod}}},
        ),
        res(
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
            f"services-{name}-hpa",
            {"metadata": meta, "spec": {"minReplicas": low, "maxReplicas": high}},
        ),
        res(
            "kubernetes:core/v1:Service",
            f"services-{name}-service",
            {"metadata": meta, "spec": {"type": "LoadBalancer" if lb else "ClusterIP"}},
        ),
    ]


def test_a_gpu_service_holds_one_node_per_replica_at_min_and_at_max() -> None:
    cost = estimate([*dev_like(), *service("triton", 1, "ON_DEMAND", 1, 3)], "dev", "us-east-1", today=TODAY)
    [triton] = cost["services"]
    node_month = (
        1.861 * HOURS + 200 * 0.08
    )  # dev_like's GPU group is priced at its dearer type (g6e.xlarge), plus its root volume
    assert (triton["nodesAtMin"], triton["nodesAtMax"]) == (1, 3)
    assert triton["minMonthlyUsd"] == pytest.approx(node_month, abs=0.02)
    assert triton["maxMonthlyUsd"] == pytest.approx(3 * node_month, abs=0.05)
    assert triton["capacity"] == "ON_DEMAND" and triton["loadBalancerMonthlyUsd"] == 0
    # One honest number: the idle figure is what the stack keeps running, the service at its minimum included, as a
    # line of the breakdown; the GPU ceiling counts the service's nodes once.
    platform = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    assert cost["idleMonthlyUsd"] == pytest.approx(platform["idleMonthlyUsd"] + triton["minMonthlyUsd"], abs=0.02)
    assert cost["servicesMinMonthlyUsd"] == triton["minMonthlyUsd"]
    assert any(i["item"].startswith("service triton at 1 replica(s)") for i in cost["breakdown"] if i["scope"] == "idle")
    assert "idleWithServicesMonthlyUsd" not in cost
    assert cost["idleMonthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in cost["breakdown"] if i["scope"] == "idle"))


def test_spot_services_get_the_spot_price_and_an_nlb_adds_its_hours() -> None:
    cost = estimate([*dev_like(), *service("cheap", 1, "SPOT", 2, 2, lb=True)], "dev", "us-east-1", today=TODAY)
    [cheap] = cost["services"]
    node_month = 1.861 * 0.4 * HOURS + 200 * 0.08
    assert cheap["loadBalancerMonthlyUsd"] == pytest.approx(0.0225 * HOURS, abs=0.01)
    assert cheap["minMonthlyUsd"] == pytest.approx(2 * node_month + 0.0225 * HOURS, abs=0.05)


def test_a_cpu_service_is_priced_as_its_share_of_a_system_node() -> None:
    cost = estimate(
        [*dev_like(), *service("tokenizer", 0, None, 1, 2, cpu="500m", memory="1Gi")], "dev", "us-east-1", today=TODAY
    )
    [tokenizer] = cost["services"]
    share = max(0.5 / 2, 1 / 4)  # t3.medium: 2 vCPU, 4 GiB
    assert tokenizer["shareOfNode"] == pytest.approx(share)
    assert tokenizer["maxMonthlyUsd"] == pytest.approx(2 * share * 0.0416 * HOURS, abs=0.02)


def test_efs_is_listed_free_and_the_pushgateway_volume_at_its_nominal_size() -> None:
    efs = [
        res("aws:efs/fileSystem:FileSystem", "shared-storage-efs", {"tags": {"Name": "simfleet-dev-datasets"}}),
        *[res("aws:efs/mountTarget:MountTarget", f"shared-storage-efs-mount-{i}") for i in range(2)],
        res(
            "kubernetes:helm.sh/v3:Release",
            "metrics-pushgateway",
            {
                "name": "prometheus-pushgateway",
                "values": {"persistentVolume": {"enabled": True, "storageClass": "efs-sc", "size": "1Gi"}},
            },
        ),
    ]
    base = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    cost = estimate([*dev_like(), *efs], "dev", "us-east-1", today=TODAY)
    items = {i["item"]: i["monthlyUsd"] for i in cost["breakdown"]}
    assert items["EFS file system simfleet-dev-datasets (storage and transfer billed by use)"] == 0.0
    assert items["EFS mount targets (2, one per AZ; no charge)"] == 0.0
    assert items["prometheus-pushgateway volume (1 GiB, EFS Standard, at most its nominal size)"] == pytest.approx(0.30)
    assert cost["idleMonthlyUsd"] == pytest.approx(base["idleMonthlyUsd"] + 0.30)
    assert any("EFS storage" in e for e in cost["excluded"])


def flavor(name: str, capacity: str) -> Resource:
    props = {"metadata": {"name": name}, "spec": {"nodeLabels": {"eks.amazonaws.com/capacityType": capacity}}}
    return res("kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor", f"queues-resourceflavor-{name}", props)


def cluster_queue(name: str, gpus: dict[str, int]) -> Resource:
    flavors = [
        {"name": f, "resources": [{"name": "cpu", "nominalQuota": "8"}, {"name": "nvidia.com/gpu", "nominalQuota": n}]}
        for f, n in gpus.items()
    ]
    spec = {"resourceGroups": [{"coveredResources": ["cpu", "nvidia.com/gpu"], "flavors": flavors}]}
    return res(
        "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue",
        f"queues-clusterqueue-{name}",
        {"metadata": {"name": name}, "spec": spec},
    )


def queued(*queues: Resource) -> list[Resource]:
    return [*dev_like(), flavor("spot", "SPOT"), flavor("on-demand", "ON_DEMAND"), *queues]


def test_queue_quotas_are_the_gpu_ceiling_when_lower_than_the_node_groups() -> None:
    base = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    assert base["gpuCeiling"]["source"] == "nodeGroups"
    cost = estimate(
        queued(cluster_queue("a", {"spot": 1, "on-demand": 1}), cluster_queue("b", {"spot": 1, "on-demand": 0})),
        "dev",
        "us-east-1",
        today=TODAY,
    )
    ceiling = cost["gpuCeiling"]
    assert ceiling["source"] == "queues"
    assert ceiling["SPOT"] == {"maxSizeNodes": 4, "queueNominalGpus": 2, "serviceGpusAtMax": 0, "nodes": 2}
    assert ceiling["ON_DEMAND"] == {"maxSizeNodes": 4, "queueNominalGpus": 1, "serviceGpusAtMax": 0, "nodes": 1}
    # 2 of the 4 spot nodes and 1 of the 4 on-demand nodes (one GPU each) are no longer priced.
    node = 1.861 * HOURS
    saved = 2 * (node * 0.4 + 200 * 0.08) + 3 * (node + 200 * 0.08)
    assert cost["gpuMaxMonthlyUsd"] == pytest.approx(base["gpuMaxMonthlyUsd"] - saved, abs=0.05)
    assert any("queue quotas" in a and "never adds to it" in a for a in cost["assumptions"])
    assert summary(cost)[0].endswith(f"GPU ceiling (queue quotas + services at max) {cost['gpuMaxMonthlyUsd']:.2f}")


def test_services_at_max_replicas_add_to_the_ceiling_which_never_passes_max_size() -> None:
    resources = [*queued(cluster_queue("a", {"spot": 9, "on-demand": 1})), *service("triton", 1, "ON_DEMAND", 1, 3)]
    ceiling = estimate(resources, "dev", "us-east-1", today=TODAY)["gpuCeiling"]
    assert ceiling["ON_DEMAND"] == {"maxSizeNodes": 4, "queueNominalGpus": 1, "serviceGpusAtMax": 3, "nodes": 4}
    # config/ refuses quotas above the groups; the estimate still never prices more than maxSize.
    assert ceiling["SPOT"]["nodes"] == 4


def with_observability(resources: list[Resource]) -> list[Resource]:
    """A stack with the observability add-on, one dashboard and one alarm reading one metric."""
    return [
        *resources,
        res("aws:eks/addon:Addon", "observability-addon", {"addonName": "amazon-cloudwatch-observability"}),
        res("aws:cloudwatch/dashboard:Dashboard", "dashboard"),
        res("aws:cloudwatch/metricAlarm:MetricAlarm", "alarm", {"metricName": "node_gpu_limit"}),
    ]


def test_observability_runs_while_idle_so_its_lines_are_in_the_idle_figure() -> None:
    platform = estimate(dev_like(), "dev", "us-east-1", today=TODAY)
    cost = estimate(with_observability(dev_like()), "dev", "us-east-1", today=TODAY)
    block = cost["observability"]
    idle = [i for i in cost["breakdown"] if i["scope"] == "idle"]
    # Every billed item of the observability block is an idle line, and the figure is every idle line and nothing else.
    assert [i["item"] for i in idle if i["item"].startswith("observability: ")] == [
        f"observability: {i['item']}" for i in block["items"]
    ]
    assert cost["idleMonthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in idle), abs=0.01)
    assert cost["idleMonthlyUsd"] == pytest.approx(platform["idleMonthlyUsd"] + block["monthlyUsd"], abs=0.02)
    # A dashboard ($3), an alarm on one metric ($0.10) and Container Insights' observations of the idle system node.
    assert block["monthlyUsd"] == pytest.approx(3.00 + 0.10 + block["items"][-1]["monthlyUsd"], abs=0.01)
    # The GPU ceiling adds Container Insights' observations of every GPU node it prices (8 here: 4 spot, 4 on-demand).
    nodes = sum(int(i["quantity"] / HOURS) for i in cost["breakdown"] if i["scope"] == "gpuMax" and i["unit"] == "instance-hour")
    insights = next(i for i in cost["breakdown"] if i["scope"] == "gpuMax" and i["item"].startswith("observability: "))
    assert nodes == 8 and insights["monthlyUsd"] == pytest.approx(8 * HOURS * block["perGpuNodeHourUsd"], abs=0.05)


@pytest.mark.slow
def test_the_dev_sample_idle_figure_is_the_sum_of_what_it_keeps_running_and_the_docs_say_it() -> None:
    from tools import plan

    cost = plan.estimate_cost(planned("dev"))
    idle = [i for i in cost["breakdown"] if i["scope"] == "idle"]
    # One figure: every idle line (the platform, the observability stack that runs while idle), no more.
    assert cost["idleMonthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in idle), abs=0.01)
    observability = [i for i in idle if i["item"].startswith("observability: ")]
    assert observability and sum(i["monthlyUsd"] for i in observability) == pytest.approx(
        cost["observability"]["monthlyUsd"], abs=0.01
    )
    # The goal of $150 is not met with the observability stack running; the docs state the real figure and why.
    assert cost["idleMonthlyUsd"] > 150
    page = (plan.PROJECT_ROOT / "docs" / "researchers" / "cost.md").read_text()
    assert f"**{cost['idleMonthlyUsd']:,.2f}**" in page
    assert f"${cost['idleMonthlyUsd']:,.2f}" in (plan.PROJECT_ROOT / "README.md").read_text()
    # Turning the sample's service on adds its replica to that same figure (a g5.2xlarge and its 200 GiB root) and its
    # alarm and custom metrics to the observability lines.
    on = plan.estimate_cost(planned_dev_with_service())
    added_observability = on["observability"]["monthlyUsd"] - cost["observability"]["monthlyUsd"]
    assert added_observability > 0
    assert on["idleMonthlyUsd"] == pytest.approx(
        cost["idleMonthlyUsd"] + 1.212 * HOURS + 200 * 0.08 + added_observability, abs=0.05
    )
    assert on["idleMonthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in on["breakdown"] if i["scope"] == "idle"), abs=0.01)


def test_runs_are_priced_per_admission_with_a_bound_and_a_typical_figure() -> None:
    """The teams stack's 20-seed sweep: 1h maxRuntime, 4 pods at once, so 5 waves; its Job's deadline is 12.53h."""
    from tools import plan
    from workloads.budget import Budget

    result = planned("teams")
    by_name = {r["name"]: r for r in plan.estimate_cost(result)["runs"]}
    sweep = by_name["walk-sweep"]
    budget = Budget.of(3600, 20, 4)
    assert (sweep["maxRuntimeHours"], sweep["deadlineHours"]) == (1, round(budget.deadline_seconds / 3600, 2)) == (1, 12.53)
    assert sweep["typicalHours"] == round(budget.typical_seconds / 3600, 2)
    assert sweep["typicalCapacity"] == "SPOT"  # the figures: test_the_bound_is_every_cost_one_admission_can_run_up
    # An interactive run pins on-demand, typically and at worst; a job's typical figure follows its own budget.
    baseline = by_name["walk-baseline"]
    assert baseline["spotUpToUsd"] is None and baseline["typicalCapacity"] == "ON_DEMAND"
    assert by_name["perception-eval"]["kind"] == "job" and by_name["perception-eval"]["maxRuntimeHours"] == 0.5
    assert all(r["typicalUsd"] < r["upToUsd"] for r in by_name.values())


def test_the_bound_is_every_cost_one_admission_can_run_up() -> None:
    """ "Up to" is a bound: each pod's node for the whole deadline, plus the pods' termination grace (the deadline's
    SIGTERM comes at its end), plus the Cluster Autoscaler's scale-down-unneeded-time before it removes the empty
    node, with the node's root volume billed all along. The typical figure pays the disk and that wait too."""
    from components.addons import SCALE_DOWN_UNNEEDED_SECONDS
    from tools import plan
    from workloads.budget import Budget

    result = planned("teams")
    by_name = {r["name"]: r for r in plan.estimate_cost(result)["runs"]}
    sweep = by_name["walk-sweep"]
    budget = Budget.of(3600, 20, 4)
    disk = 200 * 0.08 / 730  # the GPU group's 200 GiB gp3 root volume, per hour
    on_demand, spot = 1.212 + disk, 1.212 * 0.4 + disk
    pod_slot = (budget.deadline_seconds + budget.grace_seconds + SCALE_DOWN_UNNEEDED_SECONDS) / 3600
    assert sweep["upToUsd"] == pytest.approx(on_demand * 4 * pod_slot, abs=0.01)
    assert sweep["spotUpToUsd"] == pytest.approx(spot * 4 * pod_slot, abs=0.01)
    node_hours = (20 * budget.pod_seconds + 4 * SCALE_DOWN_UNNEEDED_SECONDS) / 3600
    assert sweep["typicalNodeHours"] == round(node_hours, 2)
    assert sweep["typicalUsd"] == pytest.approx(spot * node_hours, abs=0.01)
