"""Addons: managed add-on pins and vpc-cni network policy, the log group, and every Helm release's pin and values."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

import naming
import versions
from components.addons import CHARTS, IRSA_ANNOTATION, Addons, AddonsArgs

RELEASE = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"
ROLES = {
    "aws-load-balancer-controller": "arn:aws:iam::123456789012:role/lbc",
    "cluster-autoscaler": "arn:aws:iam::123456789012:role/ca",
    "aws-for-fluent-bit": "arn:aws:iam::123456789012:role/fluent-bit",
}
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _args(cluster: pulumi.Resource, **overrides: Any) -> AddonsArgs:
    fields: dict[str, Any] = {
        "cluster_name": "simfleet-dev",
        "region": "eu-west-1",
        "kubernetes_version": "1.35",
        "vpc_id": "vpc-0abc",
        "roles": ROLES,
        "tags": {"simfleet:stack": "dev"},
        "cluster": cluster,
    }
    return AddonsArgs(**{**fields, **overrides})


@pytest.fixture
def rec(pulumi_mocks):
    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        nodes = pulumi.ComponentResource("simfleet:nodegroups:NodeGroups", "nodes")
        # depends_on on a component means "on its custom children"; give it one to wait for.
        aws.iam.Role("nodes-role", assume_role_policy="{}", opts=pulumi.ResourceOptions(parent=nodes))
        provider = k8s.Provider("k8s", kubeconfig="{}")
        Addons("addons", _args(cluster), opts=pulumi.ResourceOptions(providers=[provider], depends_on=[nodes]))

    return pulumi_mocks(build)


def _urn(rec, typ: str, name: str) -> str:
    return rec.one(typ, name).urn


def _values(rec, key: str) -> dict[str, Any]:
    return rec.one(RELEASE, f"addons-{key}").inputs["values"]


def test_managed_addons_are_pinned_and_adopt_bootstrap_copies(rec):
    addons = {r.inputs["addonName"]: r.inputs for r in rec.of_type(ADDON)}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"}
    for addon, inputs in addons.items():
        assert inputs["addonVersion"] == versions.EKS_ADDON_VERSIONS[addon], addon
        assert re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", inputs["addonVersion"]), addon
        assert inputs["resolveConflictsOnCreate"] == "OVERWRITE", addon
        assert inputs["resolveConflictsOnUpdate"] == "OVERWRITE", addon
        assert inputs["clusterName"] == "simfleet-dev"
    assert addons["kube-proxy"]["addonVersion"].startswith("v1.35.")
    # The CNI and DNS software stays if the Addon resource is ever removed; the identity agent need not.
    assert addons["vpc-cni"]["preserve"] is True and addons["coredns"]["preserve"] is True
    assert addons["eks-pod-identity-agent"]["preserve"] is False


def test_vpc_cni_enforces_network_policy(rec):
    vpc_cni = rec.one(ADDON, "addons-vpc-cni").inputs
    # EKS wants the string "true", not a JSON boolean.
    assert json.loads(vpc_cni["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert "configurationValues" not in rec.one(ADDON, "addons-coredns").inputs


def test_container_log_group(rec):
    group = rec.one("aws:cloudwatch/logGroup:LogGroup", "addons-containers").inputs
    assert group["name"] == naming.container_log_group("simfleet-dev") == "/aws/eks/simfleet-dev/containers"
    assert group["retentionInDays"] == 30
    assert group["tags"]["simfleet:stack"] == "dev"


def test_every_chart_is_pinned_in_versions():
    assert set(versions.HELM_CHARTS) == set(CHARTS)
    for key, chart in versions.HELM_CHARTS.items():
        assert EXACT_VERSION.match(chart.version), f"{key}: {chart.version!r} is not an exact version"
        assert chart.repository.startswith("https://"), key
        assert chart.source, f"{key} has no source for its pin"
    for minor, tag in versions.CLUSTER_AUTOSCALER_IMAGE_TAGS.items():
        assert tag.startswith(f"v{minor}."), f"Cluster Autoscaler {tag} does not match Kubernetes {minor}"


def test_releases_use_the_pins(rec):
    releases = {r.inputs["name"]: r.inputs for r in rec.of_type(RELEASE)}
    assert set(releases) == set(CHARTS)
    for key, inputs in releases.items():
        pin = versions.HELM_CHARTS[key]
        assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"]) == (pin.chart, pin.version, pin.repository)
        assert inputs["namespace"] == "kube-system"


def test_device_plugin_runs_only_on_gpu_nodes(rec):
    values = _values(rec, "nvidia-device-plugin")
    assert values["nodeSelector"] == {naming.NODE_POOL_LABEL: "gpu"}
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    # Our single term replaces the chart's NFD-based ones (we run no NFD).
    assert terms == [{"matchExpressions": [{"key": naming.NODE_POOL_LABEL, "operator": "In", "values": ["gpu"]}]}]
    assert {"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]


def test_cluster_autoscaler_values(rec):
    values = _values(rec, "cluster-autoscaler")
    assert values["autoDiscovery"] == {"clusterName": "simfleet-dev"}
    assert values["awsRegion"] == "eu-west-1"
    assert values["image"] == {"repository": versions.CLUSTER_AUTOSCALER_IMAGE, "tag": "v1.35.1"}
    sa = values["rbac"]["serviceAccount"]
    assert sa["name"] == naming.CLUSTER_AUTOSCALER_SA[1]
    assert sa["annotations"] == {IRSA_ANNOTATION: ROLES["cluster-autoscaler"]}
    extra = values["extraArgs"]
    assert extra["balance-similar-node-groups"] is True
    assert extra["skip-nodes-with-system-pods"] is False
    assert extra["scale-down-unneeded-time"] == "10m"
    assert extra["expander"] == "least-waste"


def test_load_balancer_controller_values(rec):
    values = _values(rec, "aws-load-balancer-controller")
    # Passed explicitly: pods cannot reach IMDS (hop limit 1) to discover them.
    assert (values["clusterName"], values["region"], values["vpcId"]) == ("simfleet-dev", "eu-west-1", "vpc-0abc")
    assert values["serviceAccount"]["name"] == naming.LOAD_BALANCER_CONTROLLER_SA[1]
    assert values["serviceAccount"]["annotations"] == {IRSA_ANNOTATION: ROLES["aws-load-balancer-controller"]}


def test_log_shipper_values(rec):
    values = _values(rec, "aws-for-fluent-bit")
    cw = values["cloudWatchLogs"]
    assert cw["enabled"] is True
    assert cw["logGroupName"] == naming.container_log_group("simfleet-dev")
    assert cw["region"] == "eu-west-1"
    assert cw["autoCreateGroup"] is False
    assert cw["logGroupTemplate"] == ""  # otherwise one auto-created group per namespace
    assert values["serviceAccount"]["name"] == naming.LOG_SHIPPER_SA[1]
    assert values["serviceAccount"]["annotations"] == {IRSA_ANNOTATION: ROLES["aws-for-fluent-bit"]}
    assert {"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]


def test_controllers_pinned_to_system_nodes(rec):
    for key in ("cluster-autoscaler", "aws-load-balancer-controller", "metrics-server"):
        assert _values(rec, key)["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}, key


def test_resource_options(rec):
    cluster = _urn(rec, "simfleet:cluster:Cluster", "cluster")
    nodes = _urn(rec, "aws:iam/role:Role", "nodes-role")
    for r in [*rec.of_type(RELEASE), *rec.of_type(ADDON)]:
        assert r.options.get("deletedWith") == cluster, r.urn
        assert nodes in r.options.get("dependsOn", []), r.urn
    for r in rec.of_type(RELEASE):
        assert r.options.get("provider") == "k8s", r.urn
    # The log group outlives nothing in the cluster: it is deleted on its own, but still waits for the nodes.
    group = rec.one("aws:cloudwatch/logGroup:LogGroup", "addons-containers")
    assert "deletedWith" not in group.options
    assert nodes in group.options["dependsOn"]
    # The load balancer controller's Service webhook would break the other charts' installs; it goes last.
    lbc = rec.one(RELEASE, "addons-aws-load-balancer-controller")
    others = {r.urn for r in rec.of_type(RELEASE)} - {lbc.urn}
    assert others <= set(lbc.options["dependsOn"])


def test_args_reject_mismatched_versions_and_missing_roles():
    cluster = object()
    with pytest.raises(ValueError) as err:
        _args(cluster, kubernetes_version="1.30", roles={"cluster-autoscaler": "arn"}, log_retention_days=10)  # type: ignore[arg-type]
    message = str(err.value)
    assert "aws-load-balancer-controller, aws-for-fluent-bit" in message
    assert "no Cluster Autoscaler image" in message
    assert "EKS_ADDON_VERSIONS['kube-proxy']" in message
    assert "log_retention_days 10" in message
