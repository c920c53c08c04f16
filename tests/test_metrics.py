"""Metrics: the pinned Pushgateway on system nodes, persisted on EFS, in a namespace only the runs namespace reaches on 9091."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

import naming
import versions
from components.metrics import (
    CHART,
    PUSHGATEWAY_POD_LABELS,
    Metrics,
    MetricsArgs,
    namespace_object,
    network_policies,
    pushgateway_url,
    pushgateway_values,
)
from policies.rules.pods import restricted_pod_problems

RELEASE = "kubernetes:helm.sh/v3:Release"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


@pytest.fixture
def built(pulumi_mocks):
    made: dict[str, Any] = {}

    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        provider = k8s.Provider("k8s", kubeconfig="{}")
        metrics = Metrics(
            "metrics", MetricsArgs("1.35", True, "efs-sc", cluster), opts=pulumi.ResourceOptions(providers=[provider])
        )
        metrics.pushgateway_url.apply(lambda v: made.__setitem__("url", v))
        metrics.namespace.apply(lambda v: made.__setitem__("namespace", v))

    return pulumi_mocks(build), made


@pytest.fixture
def rec(built):
    return built[0]


def test_release_is_pinned_in_its_own_namespace(rec):
    release = rec.one(RELEASE).inputs
    pin = versions.HELM_CHARTS[CHART]
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (pin.chart, pin.version, pin.repository)
    assert pin.version == "3.8.0"
    assert release["name"] == naming.PUSHGATEWAY_RELEASE and release["namespace"] == naming.METRICS_NAMESPACE
    namespace = rec.one("kubernetes:core/v1:Namespace")
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The release waits for the namespace and its policies (its namespace input comes from all of them).
    policies = {r.urn for r in rec.of_type(POLICY)}
    assert set(rec.one(RELEASE).options["propertyDependencies"]["namespace"]) == policies | {namespace.urn}


def test_values_persist_on_efs_run_on_system_nodes_and_meet_restricted(rec):
    values = rec.one(RELEASE).inputs["values"]
    assert values["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}
    volume = values["persistentVolume"]
    assert volume["enabled"] is True and volume["storageClass"] == "efs-sc"
    assert "--persistence.file=/data/pushgateway.data" in values["extraArgs"]
    # What the chart renders from these values: pod securityContext + containerSecurityContext.
    pod = {
        "securityContext": values["securityContext"],
        "containers": [{"name": "pushgateway", "securityContext": values["containerSecurityContext"]}],
    }
    assert restricted_pod_problems(pod) == []
    assert values["automountServiceAccountToken"] is False


def test_without_persistence_nothing_points_at_a_volume() -> None:
    values = pushgateway_values(False, None)
    assert "persistentVolume" not in values and "extraArgs" not in values
    with pytest.raises(ValueError):
        pushgateway_values(True, None)


def test_only_the_runs_namespace_reaches_the_pushgateway_on_9091(rec):
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in rec.of_type(POLICY)}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = policies["allow-pushgateway-from-runs"]
    assert allow["podSelector"] == {"matchLabels": PUSHGATEWAY_POD_LABELS}
    assert allow["policyTypes"] == ["Ingress"]
    [rule] = allow["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": naming.RUNS_NAMESPACE}}}]
    assert rule["ports"] == [{"port": 9091, "protocol": "TCP"}]
    assert set(policies) == {"default-deny", "allow-pushgateway-from-runs"}


def test_the_collector_is_admitted_to_9091_when_it_exists() -> None:
    by_name = {p["metadata"]["name"]: p["spec"] for p in network_policies(naming.METRICS_NAMESPACE, scraped=True)}
    assert set(by_name) == {"default-deny", "allow-pushgateway-from-runs", "allow-pushgateway-from-collector"}
    collector = by_name["allow-pushgateway-from-collector"]
    assert collector["podSelector"] == {"matchLabels": PUSHGATEWAY_POD_LABELS}
    # Namespace and pod labels in one peer: the collector's pods, not its namespace's other pods.
    assert collector["ingress"] == [{"from": [naming.collector_peer()], "ports": [{"port": 9091, "protocol": "TCP"}]}]
    assert set(naming.collector_peer()) == {"namespaceSelector", "podSelector"}


def test_url_output_for_jobs(built):
    made = built[1]
    assert made["url"] == pushgateway_url() == "http://prometheus-pushgateway.simfleet-metrics.svc:9091"
    assert made["namespace"] == naming.METRICS_NAMESPACE


def test_in_cluster_objects_go_with_the_cluster(rec):
    cluster = rec.one("simfleet:cluster:Cluster").urn
    for r in [rec.one(RELEASE), rec.one("kubernetes:core/v1:Namespace"), *rec.of_type(POLICY)]:
        assert r.options.get("deletedWith") == cluster and r.options.get("provider") == "k8s", r.urn


def test_pure_objects_validate() -> None:
    for obj in [namespace_object("1.35"), *network_policies(naming.METRICS_NAMESPACE)]:
        kubernetes_validate.validate(obj, "1.35", strict=True)


def test_args_refuse_persistence_without_a_storage_class() -> None:
    with pytest.raises(ValueError, match="persistence needs storage_class"):
        MetricsArgs("1.35", True, None, object())  # type: ignore[arg-type]
