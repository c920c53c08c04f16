"""Kueue's installation: the pinned OCI chart and image, its controller configuration against the chart's own default,
its namespace, and its place among the add-ons (on system nodes, after the node groups, before the LBC's webhook)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml

import naming
import versions
from components.addons import SYSTEM_NODES, Addons, AddonsArgs
from components.kueue import CHART, FRAMEWORKS, PODS_READY_TIMEOUT_SECONDS, kueue_values, manager_config, namespace_object
from config.sources import load_yaml
from policies.rules.pods import restricted_pod_problems
from workloads import budget

RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
PIN = versions.HELM_CHARTS[CHART]
REFERENCE = Path("/work/shared/reference/helm-charts") / PIN.chart / PIN.version
# The keys simfleet changes in the chart's default controller configuration, and nothing else.
CHANGED = ("manageJobsWithoutQueueName", "integrations", "fairSharing", "waitForPodsReady")


def _reference_values() -> dict[str, Any]:
    values_file = REFERENCE / "values.yaml"
    if not values_file.exists():
        pytest.skip(f"no reference values.yaml for kueue {PIN.version} at {values_file}")
    values: dict[str, Any] = load_yaml(values_file.read_text())
    return values


def _default_config_text() -> str:
    return str(_reference_values()["managerConfig"]["controllerManagerConfigYaml"])


@pytest.fixture
def rec(pulumi_mocks):
    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        nodes = pulumi.ComponentResource("simfleet:nodegroups:NodeGroups", "nodes")
        aws.iam.Role("nodes-role", assume_role_policy="{}", opts=pulumi.ResourceOptions(parent=nodes))
        provider = k8s.Provider("k8s", kubeconfig="{}")
        roles = {
            "aws-load-balancer-controller": "arn:aws:iam::123456789012:role/lbc",
            "cluster-autoscaler": "arn:aws:iam::123456789012:role/ca",
        }
        args = AddonsArgs("simfleet-dev", "us-east-1", "1.35", "vpc-0abc", roles, {}, cluster=cluster)
        Addons("addons", args, opts=pulumi.ResourceOptions(providers=[provider], depends_on=[nodes]))

    return pulumi_mocks(build)


def test_pins_the_oci_chart_and_the_controller_image_of_the_same_release():
    assert (PIN.repository, PIN.chart, PIN.version) == ("oci://registry.k8s.io/kueue/charts", "kueue", "0.19.2")
    assert PIN.oci and PIN.reference == "oci://registry.k8s.io/kueue/charts/kueue"
    # Kueue's chart version is its release tag without the "v" (hack/helm-chart-package.sh).
    assert f"v{PIN.version}" == versions.KUEUE_IMAGE_TAG
    image = kueue_values(SYSTEM_NODES)["controllerManager"]["manager"]["image"]
    assert image == {"repository": "registry.k8s.io/kueue/kueue", "tag": "v0.19.2", "pullPolicy": "IfNotPresent"}


def test_every_pinned_kubernetes_minor_is_one_kueue_supports():
    assert versions.missing_pins("1.28")[-1].startswith("a Kueue release that supports Kubernetes 1.28")
    for minor in versions.EKS_ADDON_PINS:
        assert not [m for m in versions.missing_pins(minor) if "Kueue" in m], minor


def test_the_configuration_is_the_charts_default_but_for_the_queue_label_integrations_and_fair_sharing():
    default = yaml.safe_load(_default_config_text())
    ours = manager_config()
    # The chart replaces its default with the value whole, so everything else must be restated unchanged.
    assert {k: v for k, v in ours.items() if k not in CHANGED} == {k: v for k, v in default.items() if k not in CHANGED}
    assert ours["apiVersion"] == default["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    # Only batch/job, a framework the chart's default enables too.
    assert ours["integrations"] == {"frameworks": ["batch/job"]} and set(FRAMEWORKS) <= set(default["integrations"]["frameworks"])
    # Kueue ignores Jobs without a queue label: the continuation gate and anything unqueued start as before.
    assert ours["manageJobsWithoutQueueName"] is False
    assert ours["fairSharing"] == {"preemptionStrategies": ["LessThanInitialShare"]}


def test_a_workload_whose_pods_cannot_start_releases_its_quota_and_is_requeued():
    wait = manager_config()["waitForPodsReady"]
    # Longer than a normal start (node from zero, image pull, startup probes), so only a stuck one is evicted.
    assert wait["timeout"] == "45m" and PODS_READY_TIMEOUT_SECONDS > budget.STARTUP_SECONDS
    # Never deactivated (no backoffLimitCount), its place in line kept, growing gaps between attempts.
    assert wait["requeuingStrategy"] == {"timestamp": "Creation", "backoffBaseSeconds": 60, "backoffMaxSeconds": 1800}
    # A sweep between waves is not evicted; admissions of other work go on.
    assert wait["recoveryTimeout"] == "0s" and wait["blockAdmission"] is False


def test_keys_the_default_leaves_out_are_the_ones_it_documents_in_comments():
    text = _default_config_text()
    # The chart's default lists these keys commented out, with their v1beta2 spelling; the strategy is one of its values.
    for key in ("manageJobsWithoutQueueName", "fairSharing", "waitForPodsReady"):
        assert re.search(rf"^#{key}:", text, re.MULTILINE), key
    # Every waitForPodsReady key simfleet sets is one the default documents.
    for key in (
        "timeout",
        "recoveryTimeout",
        "blockAdmission",
        "requeuingStrategy",
        "timestamp",
        "backoffBaseSeconds",
        "backoffMaxSeconds",
    ):
        assert re.search(rf"^#\s+{key}:", text, re.MULTILINE), key
    assert re.search(r"^#\s+preemptionStrategies: \[LessThanOrEqualToFinalShare, LessThanInitialShare\]", text, re.MULTILINE)


def test_the_value_is_the_configuration_as_yaml():
    config_yaml = kueue_values(SYSTEM_NODES)["managerConfig"]["controllerManagerConfigYaml"]
    assert isinstance(config_yaml, str) and yaml.safe_load(config_yaml) == manager_config()


def test_namespace_is_restricted_and_the_charts_security_contexts_meet_it():
    namespace = namespace_object("1.35")
    assert namespace["metadata"]["name"] == naming.KUEUE_NAMESPACE == "kueue-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # simfleet keeps the chart's own security contexts; the pod it renders from them must pass the restricted level.
    manager = _reference_values()["controllerManager"]["manager"]
    assert "podSecurityContext" not in kueue_values(SYSTEM_NODES)["controllerManager"]["manager"]
    pod = {
        "securityContext": manager["podSecurityContext"],
        "containers": [{"name": "manager", "securityContext": manager["containerSecurityContext"]}],
    }
    assert restricted_pod_problems(pod) == []


def test_release_runs_in_its_namespace_after_the_node_groups(rec):
    release = rec.one(RELEASE, "addons-kueue")
    namespace = rec.one(NAMESPACE, "addons-kueue-namespace")
    assert release.inputs["name"] == naming.KUEUE_RELEASE and release.inputs["namespace"] == naming.KUEUE_NAMESPACE
    # The namespace resolves once the namespace and its ingress policy exist: Kueue never runs unguarded.
    policy = rec.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "addons-kueue-ingress")
    assert set(release.options["propertyDependencies"]["namespace"]) == {namespace.urn, policy.urn}
    assert namespace.inputs["metadata"]["name"] == naming.KUEUE_NAMESPACE
    nodes = rec.one("aws:iam/role:Role", "nodes-role").urn
    cluster = rec.one("simfleet:cluster:Cluster").urn
    for r in (release, namespace):
        assert nodes in r.options["dependsOn"] and r.options["deletedWith"] == cluster, r.urn
    # Kueue creates Services (webhook, metrics, visibility): it installs before the LBC's Service webhook exists.
    assert release.urn in rec.one(RELEASE, "addons-aws-load-balancer-controller").options["dependsOn"]


def test_kueue_ingress_policy_validates_and_keeps_the_api_servers_ports_open() -> None:
    import kubernetes_validate

    from components.kueue import network_policies

    [policy] = network_policies()
    kubernetes_validate.validate(policy, "1.35", strict=True)
    assert policy["spec"]["podSelector"] == {"matchLabels": naming.KUEUE_POD_LABELS}
    api_server, metrics = policy["spec"]["ingress"]
    assert "from" not in api_server and [p["port"] for p in api_server["ports"]] == [9443, 8082]
    assert metrics == {"from": [naming.collector_peer()], "ports": [{"port": 8443, "protocol": "TCP"}]}


def test_the_design_notes_say_what_the_controller_configuration_does() -> None:
    """docs/design.md's decisions list waitForPodsReady as the configuration sets it."""
    design = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text()
    assert "waitForPodsReady" in manager_config()
    assert "`waitForPodsReady` stays off" not in design
    assert f"**Kueue's `waitForPodsReady` is on** ({PODS_READY_TIMEOUT_SECONDS // 60} minutes" in design
