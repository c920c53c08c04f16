"""Kueue's objects, rendered by pure functions and validated strictly against Kueue's own CRDs at the pinned version
(unknown fields are errors). The CEL rules are not evaluated by the schema check (tests/crd_schema.py); the ones that
apply to simfleet's objects are restated below as plain assertions."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
from crd_schema import load_crds, problems

import naming
import versions
from config import load_stack_config
from config.queues import FlavorQuota, QueuesConfig, TeamQueue
from config.sources import load_yaml
from workloads.renderers import kueue
from workloads.renderers.common import gpu_toleration

ROOT = Path(__file__).resolve().parent.parent
CRDS = Path("/work/shared/reference/crds/kueue") / f"v{versions.HELM_CHARTS['kueue'].version}"
TODAY = datetime.date(2026, 11, 23)


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    if not CRDS.is_dir():
        pytest.skip(f"Kueue's CRDs for the pinned chart are not at {CRDS}; the schema checks need them (shared reference data)")
    return load_crds(CRDS)


def stack(name: str = "dev", changes: dict[str, Any] | None = None):
    config = copy.deepcopy(load_yaml((ROOT / f"Pulumi.{name}.yaml").read_text())["config"])
    config.update(changes or {})
    return load_stack_config(
        config["simfleet:platform"],
        config.get("simfleet:runs"),
        services=config.get("simfleet:services"),
        queues=config.get("simfleet:queues"),
        stack=name,
        source=f"Pulumi.{name}.yaml",
        today=TODAY,
        offline=True,
    )


def objects(name: str = "dev", changes: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return kueue.kueue_objects(stack(name, changes).queues, naming.RUNS_NAMESPACE)


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def edge_cases() -> list[dict[str, Any]]:
    """Objects from quotas the stack files do not use: a fractional weight, zero quotas, no borrowing, spot only."""
    quota = FlavorQuota("spot", 0, "0", "0", None, None, None)
    team = TeamQueue("scavenger", 0.25, (quota,))
    return [kueue.cluster_queue(team, ["simfleet-runs", "simfleet-jobs"]), kueue.resource_flavor("onDemand")]


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_every_object_is_accepted_by_kueues_crds(crds, stack_name: str) -> None:
    objs = objects(stack_name)
    assert objs
    for obj in objs:
        assert problems(obj, crds) == [], obj["metadata"]["name"]


def test_edge_cases_are_accepted_too(crds) -> None:
    for obj in edge_cases():
        assert problems(obj, crds) == [], obj["metadata"]["name"]


def test_the_validation_is_strict(crds) -> None:
    queue = by_kind(objects(), "ClusterQueue")["locomotion"]
    unknown = copy.deepcopy(queue)
    unknown["spec"]["cohort"] = "simfleet"  # the v1beta1 spelling
    assert any("Additional properties are not allowed ('cohort'" in p for p in problems(unknown, crds))
    nested = copy.deepcopy(queue)
    nested["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuotas"] = 1
    assert any("'nominalQuotas'" in p for p in problems(nested, crds))
    enum = copy.deepcopy(queue)
    enum["spec"]["preemption"]["reclaimWithinCohort"] = "Always"
    assert any("'Always' is not one of" in p for p in problems(enum, crds))
    duplicate = copy.deepcopy(queue)
    flavors = duplicate["spec"]["resourceGroups"][0]["flavors"]
    flavors.append(copy.deepcopy(flavors[0]))
    assert any("duplicate entries for map keys ['name']" in p for p in problems(duplicate, crds))
    deprecated = {**queue, "apiVersion": "kueue.x-k8s.io/v1alpha1"}
    assert problems(deprecated, crds) == ["no CRD serves kueue.x-k8s.io/v1alpha1 ClusterQueue"]
    local = by_kind(objects(), "LocalQueue")["locomotion"]
    assert "metadata.namespace is required for a Namespaced kind" in problems({**local, "metadata": {"name": "locomotion"}}, crds)


def test_objects_use_the_version_the_crds_store(crds) -> None:
    for obj in objects():
        crd = crds[(obj["apiVersion"], obj["kind"])]
        assert crd["served"] and crd["storage"], obj["kind"]
    assert kueue.API_VERSION == "kueue.x-k8s.io/v1beta2"


def test_flavors_select_the_gpu_nodes_of_their_capacity_type_and_tolerate_the_gpu_taint() -> None:
    flavors = by_kind(objects(), "ResourceFlavor")
    assert set(flavors) == {naming.FLAVOR_SPOT, naming.FLAVOR_ON_DEMAND} == {"spot", "on-demand"}
    for name, capacity in (("spot", "SPOT"), ("on-demand", "ON_DEMAND")):
        spec = flavors[name]["spec"]
        assert spec["nodeLabels"] == {"eks.amazonaws.com/capacityType": capacity, naming.NODE_POOL_LABEL: "gpu"}
        # The node groups' taint (components/nodegroups.py): nvidia.com/gpu=true:NoSchedule.
        assert spec["tolerations"] == [gpu_toleration()]
        assert spec["tolerations"][0] == {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def test_only_the_capacity_types_the_stack_has_get_a_flavor() -> None:
    config = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    platform = copy.deepcopy(config["simfleet:platform"])
    platform["nodeGroups"]["gpu"]["capacity"] = ["onDemand"]
    runs = [r for r in config["simfleet:runs"] if r["mode"] == "interactive"]
    queues = [{"name": "solo", "gpus": 1}]
    objs = objects("dev", {"simfleet:platform": platform, "simfleet:runs": runs, "simfleet:queues": queues})
    assert set(by_kind(objs, "ResourceFlavor")) == {"on-demand"}
    [group] = by_kind(objs, "ClusterQueue")["solo"]["spec"]["resourceGroups"]
    assert [f["name"] for f in group["flavors"]] == ["on-demand"]


def test_a_cluster_queue_per_team_in_one_cohort_covering_gpus_cpu_and_memory() -> None:
    queues = by_kind(objects(), "ClusterQueue")
    assert set(queues) == {"locomotion", "perception"}
    locomotion = queues["locomotion"]["spec"]
    assert {q["spec"]["cohortName"] for q in queues.values()} == {naming.KUEUE_COHORT}
    [group] = locomotion["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    # Spot first, then on-demand: the order Kueue tries flavors in.
    assert [f["name"] for f in group["flavors"]] == ["spot", "on-demand"]
    spot, on_demand = ({r["name"]: r for r in f["resources"]} for f in group["flavors"])
    assert spot["nvidia.com/gpu"] == {"name": "nvidia.com/gpu", "nominalQuota": 2, "borrowingLimit": 2}
    assert on_demand["nvidia.com/gpu"] == {"name": "nvidia.com/gpu", "nominalQuota": 1, "borrowingLimit": 0}
    # Per GPU: a g5.2xlarge's 8 CPU and 32 GiB less the node's headroom with observability on (config/fit.py).
    assert spot["cpu"] == {"name": "cpu", "nominalQuota": "14", "borrowingLimit": "14"}
    assert on_demand["memory"] == {"name": "memory", "nominalQuota": "29952Mi", "borrowingLimit": "0"}
    assert locomotion["fairSharing"] == {"weight": 1}


def test_without_a_borrowing_limit_the_field_is_left_out() -> None:
    spec = kueue.cluster_queue(TeamQueue("t", 1.5, (FlavorQuota("spot", 2, "15", "59Gi"),)), ["simfleet-runs"])["spec"]
    [resource_list] = [f["resources"] for f in spec["resourceGroups"][0]["flavors"]]
    assert all("borrowingLimit" not in r for r in resource_list)
    assert spec["fairSharing"] == {"weight": "1.5"}


def test_queues_admit_from_the_runs_namespace_only() -> None:
    for queue in by_kind(objects(), "ClusterQueue").values():
        assert queue["spec"]["namespaceSelector"] == {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["simfleet-runs"]}]
        }


def test_spot_then_on_demand_and_preemption_only_to_reclaim_nominal_quota() -> None:
    spec = by_kind(objects(), "ClusterQueue")["perception"]["spec"]
    assert spec["flavorFungibility"] == {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"}
    assert spec["preemption"] == {"withinClusterQueue": "Never", "reclaimWithinCohort": "Any"}
    assert spec["queueingStrategy"] == "BestEffortFIFO"


def test_a_local_queue_per_team_in_the_runs_namespace() -> None:
    local = by_kind(objects(), "LocalQueue")
    assert set(local) == {"locomotion", "perception"}
    for name, queue in local.items():
        assert queue["metadata"]["namespace"] == naming.RUNS_NAMESPACE
        assert queue["spec"] == {"clusterQueue": name}
    # Never a LocalQueue named "default": Kueue would queue every unlabelled Job of the namespace in it.
    assert "default" not in by_kind(objects("dev", {"simfleet:queues": None}), "LocalQueue")


def test_interactive_work_is_admitted_before_batch() -> None:
    classes = by_kind(objects(), "WorkloadPriorityClass")
    assert set(classes) == {naming.PRIORITY_INTERACTIVE, naming.PRIORITY_BATCH}
    assert classes["simfleet-interactive"]["value"] > classes["simfleet-batch"]["value"]
    assert set(naming.PRIORITY_FOR_MODE.values()) == set(classes)
    assert all(c["description"] for c in classes.values())


def test_the_generated_queue_holds_every_free_gpu() -> None:
    # dev's service ships off, so every GPU of both groups is free for the one generated queue.
    objs = objects("dev", {"simfleet:queues": None})
    [group] = by_kind(objs, "ClusterQueue")[naming.GENERATED_QUEUE]["spec"]["resourceGroups"]
    gpus = {f["name"]: next(r for r in f["resources"] if r["name"] == "nvidia.com/gpu") for f in group["flavors"]}
    assert gpus == {
        "spot": {"name": "nvidia.com/gpu", "nominalQuota": 4},
        "on-demand": {"name": "nvidia.com/gpu", "nominalQuota": 4},
    }


def test_empty_queues_render_no_objects_but_the_priority_classes() -> None:
    assert [o["kind"] for o in kueue.kueue_objects(QueuesConfig(), naming.RUNS_NAMESPACE)] == ["WorkloadPriorityClass"] * 2


# The CEL rules (x-kubernetes-validations) of the v0.19.2 CRDs that concern the fields simfleet sets, and the resource
# order Kueue's webhook checks, restated: the schema check above cannot evaluate them.
def test_cel_rules_that_apply_to_these_objects() -> None:
    objs = [*objects("dev"), *objects("prod"), *edge_cases()]
    for queue in (o for o in objs if o["kind"] == "ClusterQueue"):
        spec = queue["spec"]
        for group in spec["resourceGroups"]:
            for flavor in group["flavors"]:
                # "flavors must have the same number of resources as the coveredResources" (and, for the webhook, the
                # same resources in the same order).
                assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]
                # "borrowingLimit must be nil when cohort is empty"
                assert spec.get("cohortName") or all("borrowingLimit" not in r for r in flavor["resources"])
        # "preference can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor"
        assert "preference" not in spec["flavorFungibility"]
        # "reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never" are not allowed together
        assert "borrowWithinCohort" not in spec["preemption"]
    for flavor in (o for o in objs if o["kind"] == "ResourceFlavor"):
        for toleration in flavor["spec"]["tolerations"]:
            assert toleration.get("operator", "Equal") in ("Equal", "Exists")
            assert toleration.get("effect") in (None, "NoSchedule", "PreferNoSchedule", "NoExecute")
            assert "key" in toleration or toleration["operator"] == "Exists"
            assert toleration["operator"] != "Exists" or "value" not in toleration
            assert "tolerationSeconds" not in toleration or toleration["effect"] == "NoExecute"
