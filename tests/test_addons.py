"""Addons: managed add-on pins, the log group, and every Helm release's pin and values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

import naming
import versions
from components.addons import CHARTS, IRSA_ANNOTATION, MANAGED_ADDON_CONFIG, Addons, AddonsArgs
from components.metrics import CHART as METRICS_CHART
from components.metrics import pushgateway_values
from components.pod_network import VPC_CNI
from config.sources import load_yaml

RELEASE = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"
ROLES = {
    "aws-load-balancer-controller": "arn:aws:iam::123456789012:role/lbc",
    "cluster-autoscaler": "arn:aws:iam::123456789012:role/ca",
}
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# Each chart's values.yaml as published, one folder per checked version (shared with the team, not vendored here).
REFERENCE = Path("/work/shared/reference/helm-charts")


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


def test_managed_addons_are_pinned_for_the_clusters_minor_and_adopt_bootstrap_copies(rec):
    addons = {r.inputs["addonName"]: r.inputs for r in rec.of_type(ADDON)}
    # The VPC CNI is the other managed add-on, installed before the nodes by components/pod_network.py.
    assert set(addons) == set(versions.MANAGED_ADDONS) - {"vpc-cni"} == {"coredns", "kube-proxy"}
    for addon, inputs in addons.items():
        assert inputs["addonVersion"] == versions.addon_version("1.35", addon), addon
        assert re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", inputs["addonVersion"]), addon
        assert inputs["resolveConflictsOnCreate"] == "OVERWRITE", addon
        assert inputs["resolveConflictsOnUpdate"] == "OVERWRITE", addon
        assert inputs["clusterName"] == "simfleet-dev"
        # The DNS and proxy software stays if the Addon resource is ever removed.
        assert inputs["preserve"] is True, addon
    assert addons["kube-proxy"]["addonVersion"].startswith("v1.35.")
    # CoreDNS from the 1.35 row of the EKS user guide's table, not the 1.33/1.34 v1.12 line.
    assert not addons["coredns"]["addonVersion"].startswith("v1.12.")
    assert "row 1.35" in versions.EKS_ADDON_PINS["1.35"]["coredns"].source


def test_no_pod_identity_agent_because_every_role_is_irsa(rec):
    # Nothing in simfleet uses EKS Pod Identity (every workload role is an IRSA role), so the agent's DaemonSet would
    # only take a pod slot on every node.
    assert "eks-pod-identity-agent" not in {r.inputs["addonName"] for r in rec.of_type(ADDON)}
    assert {*MANAGED_ADDON_CONFIG, VPC_CNI} == set(versions.MANAGED_ADDONS)
    assert not [r for r in rec.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")]


def test_coredns_and_kube_proxy_take_the_add_ons_defaults(rec):
    assert "configurationValues" not in rec.one(ADDON, "addons-coredns").inputs


def test_retired_container_log_group_is_kept_not_deleted(rec):
    # The aws-for-fluent-bit chart's group: container logs now go to Container Insights' groups
    # (components/observability.py), and the upgrade must not delete the logs this one still holds.
    group = rec.one("aws:cloudwatch/logGroup:LogGroup", "addons-containers")
    assert group.inputs["name"] == naming.legacy_container_log_group("simfleet-dev") == "/aws/eks/simfleet-dev/containers"
    assert group.inputs["name"] != naming.container_log_group("simfleet-dev")
    assert group.inputs["retentionInDays"] == 30
    assert group.inputs["tags"]["simfleet:stack"] == "dev"
    assert group.options.get("retainOnDelete") is True
    # One log pipeline: no Fluent Bit chart beside the add-on's.
    assert "aws-for-fluent-bit" not in {r.inputs["name"] for r in rec.of_type(RELEASE)}
    assert "aws-for-fluent-bit" not in versions.HELM_CHARTS


def test_every_chart_is_pinned_in_versions():
    # The add-on charts, and the Pushgateway (components/metrics.py, tested in tests/test_metrics.py).
    assert set(versions.HELM_CHARTS) == {*CHARTS, METRICS_CHART}
    for key, chart in versions.HELM_CHARTS.items():
        assert EXACT_VERSION.match(chart.version), f"{key}: {chart.version!r} is not an exact version"
        assert chart.repository.startswith(("https://", "oci://")), key
        assert chart.source and chart.checked, f"{key} has no source or check date for its pin"
    for minor, tag in versions.CLUSTER_AUTOSCALER_IMAGE_TAGS.items():
        assert tag.startswith(f"v{minor}."), f"Cluster Autoscaler {tag} does not match Kubernetes {minor}"


# Values that are free-form maps or lists in the charts: the key must exist, what goes inside is ours.
FREE_FORM = {"nodeSelector", "affinity", "tolerations", "annotations", "extraArgs"}


def _template_paths(folder: Path, kind: str) -> set[str]:
    """Value paths of one kind in the chart's templates.txt, where the folder has one: `ref` (read by a template) or
    `freeform` (passed through whole, so what goes inside is ours).

    A chart may read a key its values.yaml only mentions in a comment (prometheus-pushgateway's
    persistentVolume.storageClass); such a key is still real.
    """
    listing = folder / "templates.txt"
    if not listing.exists():
        return set()
    return {line.split()[1] for line in listing.read_text().splitlines() if line.startswith(f"{kind} ")}


def _unknown_keys(
    ours: dict[str, Any],
    chart: dict[str, Any],
    path: str = "",
    refs: frozenset[str] = frozenset(),
    free_form: frozenset[str] = frozenset(),
) -> list[str]:
    unknown = []
    for key, value in ours.items():
        where = f"{path}{key}"
        if key not in chart:
            if where not in refs:
                unknown.append(where)
        elif isinstance(value, dict) and isinstance(chart[key], dict) and key not in FREE_FORM and where not in free_form:
            unknown += _unknown_keys(value, chart[key], f"{where}.", refs, free_form)
    return unknown


def _chart_values(rec, key: str) -> dict[str, Any]:
    if key == METRICS_CHART:
        # Installed by components/metrics.py, not Addons: its values with persistence on EFS, as the stacks use it.
        return pushgateway_values(True, naming.EFS_STORAGE_CLASS)
    return _values(rec, key)


@pytest.mark.parametrize("key", [*CHARTS, METRICS_CHART])
def test_every_value_simfleet_sets_is_a_key_of_the_pinned_charts_values(rec, key):
    chart = versions.HELM_CHARTS[key]
    folder = REFERENCE / chart.chart / chart.version
    values_file = folder / "values.yaml"
    if not values_file.exists():
        pytest.skip(f"no reference values.yaml for {chart.chart} {chart.version} at {values_file}")
    chart_values = load_yaml(values_file.read_text())
    ours = _chart_values(rec, key)
    refs, free_form = _template_paths(folder, "ref"), _template_paths(folder, "freeform")
    unknown = _unknown_keys(ours, chart_values, refs=frozenset(refs), free_form=frozenset(free_form))
    assert unknown == [], f"{chart.chart} {chart.version} has no such values keys"


def test_releases_use_the_pins(rec):
    releases = {r.inputs["name"]: r.inputs for r in rec.of_type(RELEASE)}
    assert set(releases) == set(CHARTS)
    for key, inputs in releases.items():
        pin = versions.HELM_CHARTS[key]
        assert (inputs["chart"], inputs["version"]) == (pin.reference, pin.version)
        if pin.oci:
            # An OCI chart is pulled by its full reference; a repository URL would send Helm to look for an index.yaml.
            assert inputs["chart"] == f"{pin.repository}/{pin.chart}" and "repositoryOpts" not in inputs, key
        else:
            assert (inputs["chart"], inputs["repositoryOpts"]["repo"]) == (pin.chart, pin.repository), key
        assert inputs["namespace"] == (naming.KUEUE_NAMESPACE if key == "kueue" else "kube-system"), key
    assert releases["kueue"]["chart"] == "oci://registry.k8s.io/kueue/charts/kueue"


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


def test_controllers_pinned_to_system_nodes(rec):
    for key in ("cluster-autoscaler", "aws-load-balancer-controller", "metrics-server"):
        assert _values(rec, key)["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}, key
    assert _values(rec, "kueue")["controllerManager"]["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}


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
    assert "missing IRSA role ARNs for aws-load-balancer-controller" in message
    assert "no complete pins for Kubernetes 1.30" in message
    assert "Cluster Autoscaler 1.30.x image" in message and "kube-proxy add-on build for 1.30" in message
    assert "log_retention_days 10" in message
