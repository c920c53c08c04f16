"""The Queues component under mocks: every Kueue object registered as a custom resource, in order (flavors, then queues,
then LocalQueues in the guarded runs namespace), after Kueue is installed, on the stack's provider, gone with the cluster."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

import naming
from components.queues import Queues, QueuesArgs, summary
from config import QueuesConfig, load_stack_config
from config.sources import load_yaml
from workloads.renderers.kueue import kueue_objects

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "kubernetes:kueue.x-k8s.io/v1beta2:"


def dev_queues() -> QueuesConfig:
    config = copy.deepcopy(load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"])
    cfg = load_stack_config(
        config["simfleet:platform"],
        config["simfleet:runs"],
        services=config["simfleet:services"],
        queues=config["simfleet:queues"],
        stack="dev",
        source="Pulumi.dev.yaml",
        today=datetime.date(2026, 11, 23),
        offline=True,
    )
    return cfg.queues


@pytest.fixture
def rec(pulumi_mocks):
    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        addons = pulumi.ComponentResource("simfleet:addons:Addons", "addons")
        release = k8s.helm.v3.Release("addons-kueue", chart="kueue", opts=pulumi.ResourceOptions(parent=addons))
        namespace = release.urn.apply(lambda _: naming.RUNS_NAMESPACE)  # like RunsNamespace.namespace: an Output
        provider = k8s.Provider("k8s", kubeconfig="{}")
        Queues(
            "queues",
            QueuesArgs(dev_queues(), namespace, cluster=cluster),
            opts=pulumi.ResourceOptions(providers=[provider], depends_on=[addons]),
        )

    return pulumi_mocks(build)


def kueue_regs(rec, kind: str | None = None) -> list[Any]:
    return [r for r in rec.all if r.type.startswith(PREFIX) and (kind is None or r.type == PREFIX + kind)]


def test_registers_exactly_what_the_renderer_renders(rec):
    rendered = kueue_objects(dev_queues(), naming.RUNS_NAMESPACE)
    registered = sorted((r.type.removeprefix(PREFIX), r.inputs["metadata"]["name"]) for r in kueue_regs(rec))
    assert registered == sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    for r in kueue_regs(rec):
        body = next(
            o
            for o in rendered
            if (o["kind"], o["metadata"]["name"]) == (r.type.removeprefix(PREFIX), r.inputs["metadata"]["name"])
        )
        assert r.inputs == body, r.name


def test_priority_classes_carry_their_top_level_value(rec):
    # apiextensions.CustomResource cannot send `value` from Python; the generic object can.
    values = {r.inputs["metadata"]["name"]: r.inputs["value"] for r in kueue_regs(rec, "WorkloadPriorityClass")}
    assert values == {"simfleet-interactive": 1000, "simfleet-batch": 100}
    assert all(r.inputs["apiVersion"] == "kueue.x-k8s.io/v1beta2" for r in kueue_regs(rec))


def test_order_flavors_then_queues_then_local_queues_after_kueue(rec):
    release = rec.one("kubernetes:helm.sh/v3:Release", "addons-kueue").urn
    cluster = rec.one("simfleet:cluster:Cluster").urn
    flavors = {r.urn for r in kueue_regs(rec, "ResourceFlavor")}
    classes = {r.urn for r in kueue_regs(rec, "WorkloadPriorityClass")}
    queues = {r.inputs["metadata"]["name"]: r.urn for r in kueue_regs(rec, "ClusterQueue")}
    for r in kueue_regs(rec):
        assert release in r.options["dependsOn"], r.name
        assert r.options["deletedWith"] == cluster and r.options["provider"] == "k8s", r.name
    for r in kueue_regs(rec, "ClusterQueue"):
        assert flavors <= set(r.options["dependsOn"]), r.name
    for r in kueue_regs(rec, "LocalQueue"):
        team = r.inputs["metadata"]["name"]
        assert {queues[team], *classes} <= set(r.options["dependsOn"]), r.name
        assert r.inputs["metadata"]["namespace"] == naming.RUNS_NAMESPACE
        # The namespace comes from the guarded namespace's output, so the LocalQueue waits for it.
        assert release in r.options["propertyDependencies"]["metadata"]


def test_args_refuse_no_queues_or_an_unknown_default():
    with pytest.raises(ValueError, match="no queues"):
        QueuesArgs(QueuesConfig(), "simfleet-runs", object())  # type: ignore[arg-type]
    queues = dev_queues()
    with pytest.raises(ValueError, match="'nobody' is not one of"):
        QueuesArgs(QueuesConfig(queues.teams, "nobody"), "simfleet-runs", object())  # type: ignore[arg-type]


def test_summary_for_researchers():
    assert summary(dev_queues()) == {
        "default": "locomotion",
        "namespace": "simfleet-runs",
        "teams": {
            "locomotion": {"spot": {"gpus": 2, "borrowingLimit": 2}, "on-demand": {"gpus": 1, "borrowingLimit": 0}},
            "perception": {"spot": {"gpus": 2, "borrowingLimit": 2}, "on-demand": {"gpus": 0, "borrowingLimit": 1}},
        },
        "priorityClasses": {"interactive": "simfleet-interactive", "batch": "simfleet-batch"},
    }


def test_run_operators_may_read_the_queues_and_nothing_else(rec):
    role = rec.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "queues-viewer").inputs
    assert role["rules"] == [
        {
            "apiGroups": ["kueue.x-k8s.io"],
            "resources": ["clusterqueues", "cohorts", "resourceflavors", "workloadpriorityclasses"],
            "verbs": ["get", "list", "watch"],
        },
        # The nodes' capacity and instance types, for `simfleet status` and the cost so far.
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    ]
    binding = rec.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "queues-viewer").inputs
    assert binding["roleRef"]["name"] == "simfleet-queue-viewer"
    assert binding["subjects"] == [{"kind": "Group", "name": naming.RUN_OPERATORS_GROUP, "apiGroup": "rbac.authorization.k8s.io"}]
