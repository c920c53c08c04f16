"""NodeGroups: node role, IMDSv2 launch templates, system/GPU groups, and Cluster Autoscaler scale-from-zero tags."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

import naming
from components.cluster import Cluster, ClusterArgs
from components.nodegroups import NodeGroups, NodeGroupsArgs, eks_taint_effect
from config import PlatformConfig

CLUSTER = "simfleet-test"
TAGS = {"simfleet:stack": "test", "cost-center": "robotics-research"}
PRIVATE = ["subnet-priv-a", "subnet-priv-b"]
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG_TAG = "aws:autoscaling/tag:Tag"
CA = "k8s.io/cluster-autoscaler/node-template"

DEV: dict[str, Any] = {
    "kubernetesVersion": "1.35",
    "network": {"cidr": "10.40.0.0/16"},
    "nodeGroups": {
        "system": {"instanceTypes": ["t3.medium"], "minSize": 1, "maxSize": 3},
        "gpu": {
            "instanceTypes": ["g5.2xlarge", "g6.2xlarge"],
            "minSize": 0,
            "maxSize": 4,
            "capacity": ["spot", "onDemand"],
            "diskGiB": 200,
        },
    },
}


def platform(**gpu: Any) -> PlatformConfig:
    raw = copy.deepcopy(DEV)
    raw["nodeGroups"]["gpu"].update(gpu)
    return PlatformConfig.model_validate(raw)


def store(captured: dict[str, Any], key: str) -> Callable[[Any], None]:
    return lambda value: captured.__setitem__(key, value)


def build(pulumi_mocks, cfg: PlatformConfig, captured: dict[str, Any] | None = None):
    def program() -> None:
        nodes = NodeGroups("nodes", NodeGroupsArgs(CLUSTER, cfg.node_groups, CLUSTER, PRIVATE, TAGS, kubernetes_version="1.35"))
        if captured is not None:
            nodes.node_role_arn.apply(lambda v: captured.__setitem__("role", v))
            for key, name in nodes.group_names.items():
                name.apply(store(captured, key))

    return pulumi_mocks(program)


def groups(rec) -> dict[str, Any]:
    return {r.name.removeprefix("nodes-"): r for r in rec.of_type(NODE_GROUP)}


def test_node_role_trusts_ec2_and_has_the_node_policies_but_not_the_cnis(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform())
    role = rec.one("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    role_name = rec.monitor.resources[role.urn].state["name"]
    attachments = rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["role"] for a in attachments} == {role_name}
    # The VPC CNI has its own IRSA role (components/pod_network.py); every pod on the node could otherwise use the
    # CNI's EC2 network permissions through the node role.
    assert sorted(a.inputs["policyArn"] for a in attachments) == [
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    ]
    # Every group waits for the attachments: EKS checks the node role's policies when it creates the group.
    for group in rec.of_type(NODE_GROUP):
        assert {a.urn for a in attachments} <= set(group.options["dependsOn"]), group.urn


def test_every_launch_template_requires_imdsv2_with_hop_limit_one(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform())
    templates = rec.of_type(LAUNCH_TEMPLATE)
    assert len(templates) == 3
    for lt in templates:
        assert lt.inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }, lt.urn


def test_root_volumes_are_encrypted_gp3_of_the_configured_size(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(diskGiB=300))
    sizes = {}
    for lt in rec.of_type(LAUNCH_TEMPLATE):
        (mapping,) = lt.inputs["blockDeviceMappings"]
        assert mapping["deviceName"] == "/dev/xvda", lt.urn
        ebs = mapping["ebs"]
        assert ebs["volumeType"] == "gp3" and ebs["encrypted"] == "true", lt.urn
        sizes[lt.name] = ebs["volumeSize"]
    assert sizes == {"nodes-system-lt": 20, "nodes-gpu-spot-lt": 300, "nodes-gpu-on-demand-lt": 300}


def test_each_group_uses_its_own_launch_template(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform())
    lt_ids = {
        r.name.removesuffix("-lt").removeprefix("nodes-"): rec.monitor.resources[r.urn].id for r in rec.of_type(LAUNCH_TEMPLATE)
    }
    for key, group in groups(rec).items():
        assert group.inputs["launchTemplate"] == {"id": lt_ids[key], "version": "1"}, group.urn
        # With a launch template, the disk size belongs in the template; EKS rejects both.
        assert "diskSize" not in group.inputs


def test_system_group(pulumi_mocks) -> None:
    system = groups(build(pulumi_mocks, platform()))["system"].inputs
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["capacityType"] == "ON_DEMAND"
    assert system["labels"] == {naming.NODE_POOL_LABEL: "system"}
    assert "taints" not in system
    assert system["instanceTypes"] == ["t3.medium"]
    assert system["scalingConfig"] == {"minSize": 1, "maxSize": 3, "desiredSize": 1}
    assert system["clusterName"] == CLUSTER and system["version"] == "1.35"


@pytest.mark.parametrize(("key", "capacity_type"), [("gpu-spot", "SPOT"), ("gpu-on-demand", "ON_DEMAND")])
def test_gpu_groups_are_tainted_labelled_and_scale_from_zero(pulumi_mocks, key: str, capacity_type: str) -> None:
    gpu = groups(build(pulumi_mocks, platform()))[key].inputs
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["capacityType"] == capacity_type
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    # The Cluster Autoscaler's GPU label, on the node from the moment it joins: the autoscaler waits for the device
    # plugin instead of adding nodes. The group mixes A10G (g5) and L4 (g6) nodes, so the value names both.
    assert gpu["labels"] == {
        naming.NODE_POOL_LABEL: "gpu",
        naming.GPU_PRESENT_LABEL: "true",
        "k8s.amazonaws.com/accelerator": "nvidia-a10g-or-nvidia-l4",
    }
    assert gpu["instanceTypes"] == ["g5.2xlarge", "g6.2xlarge"]
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 0}


def test_one_gpu_group_per_capacity_type(pulumi_mocks) -> None:
    assert set(groups(build(pulumi_mocks, platform(capacity=["spot"])))) == {"system", "gpu-spot"}
    assert set(groups(build(pulumi_mocks, platform(capacity="onDemand")))) == {"system", "gpu-on-demand"}


def test_nodes_only_in_private_subnets(pulumi_mocks) -> None:
    for group in build(pulumi_mocks, platform()).of_type(NODE_GROUP):
        assert group.inputs["subnetIds"] == PRIVATE, group.urn


def test_the_autoscaler_owns_desired_size(pulumi_mocks) -> None:
    for group in build(pulumi_mocks, platform()).of_type(NODE_GROUP):
        assert group.options["ignoreChanges"] == ["scalingConfig.desiredSize"], group.urn


@pytest.mark.parametrize(("instance", "gpus"), [("g5.2xlarge", "1"), ("g5.12xlarge", "4")])
def test_scale_from_zero_tags_on_each_gpu_asg(pulumi_mocks, instance: str, gpus: str) -> None:
    rec = build(pulumi_mocks, platform(instanceTypes=[instance]))
    by_group = groups(rec)
    for key, capacity_type in (("gpu-spot", "SPOT"), ("gpu-on-demand", "ON_DEMAND")):
        group = by_group[key]
        asg = rec.monitor.resources[group.urn].state["resources"][0]["autoscalingGroups"][0]["name"]
        tags = [t.inputs for t in rec.of_type(ASG_TAG) if t.inputs["autoscalingGroupName"] == asg]
        assert {t["tag"]["key"]: t["tag"]["value"] for t in tags} == {
            f"{CA}/resources/nvidia.com/gpu": gpus,
            f"{CA}/taint/nvidia.com/gpu": "true:NoSchedule",
            f"{CA}/label/{naming.NODE_POOL_LABEL}": "gpu",
            f"{CA}/label/{naming.GPU_PRESENT_LABEL}": "true",
            # A template node must look like a real one, accelerator label included.
            f"{CA}/label/k8s.amazonaws.com/accelerator": "nvidia-a10g",
            f"{CA}/label/eks.amazonaws.com/capacityType": capacity_type,
        }, key
    # The system group never scales from zero (minSize >= 1), so it needs no template tags.
    system_asg = rec.monitor.resources[by_group["system"].urn].state["resources"][0]["autoscalingGroups"][0]["name"]
    assert all(t.inputs["autoscalingGroupName"] != system_asg for t in rec.of_type(ASG_TAG))


def test_node_groups_wait_for_the_cluster(pulumi_mocks) -> None:
    cfg = platform()

    def program() -> None:
        cluster = Cluster(
            "cluster",
            ClusterArgs(CLUSTER, cfg, "vpc-1", ["subnet-pub-a"], PRIVATE, TAGS, region="us-east-1", log_retention_days=30),
        )
        NodeGroups("nodes", NodeGroupsArgs(CLUSTER, cfg.node_groups, cluster.eks_cluster_name, PRIVATE, TAGS))

    rec = pulumi_mocks(program)
    eks = rec.one("eks:index:Cluster")
    for group in rec.of_type(NODE_GROUP):
        assert group.inputs["clusterName"] == CLUSTER
        assert eks.urn in group.options["dependsOn"], group.urn


def test_outputs(pulumi_mocks) -> None:
    captured: dict[str, Any] = {}
    rec = build(pulumi_mocks, platform(), captured=captured)
    role = rec.one("aws:iam/role:Role")
    assert captured["role"] == rec.monitor.resources[role.urn].state["arn"]
    assert {k for k in captured if k != "role"} == {"system", "gpu-spot", "gpu-on-demand"}
    assert all(captured[k] for k in ("system", "gpu-spot", "gpu-on-demand"))


@pytest.mark.parametrize(
    ("k8s", "eks"), [("NoSchedule", "NO_SCHEDULE"), ("PreferNoSchedule", "PREFER_NO_SCHEDULE"), ("NoExecute", "NO_EXECUTE")]
)
def test_taint_effects_use_the_eks_spelling(k8s: str, eks: str) -> None:
    assert eks_taint_effect(k8s) == eks


def test_the_accelerator_label_uses_the_autoscalers_gpu_type_names() -> None:
    from components.nodegroups import accelerator

    assert accelerator(["g5.2xlarge"]) == "nvidia-a10g"
    assert accelerator(["g6e.xlarge"]) == "nvidia-l40s"
    assert accelerator(["g4dn.xlarge"]) == "nvidia-tesla-t4"
    assert accelerator(["g6.2xlarge", "g5.2xlarge"]) == "nvidia-a10g-or-nvidia-l4"
    # A label value: at most 63 characters of [A-Za-z0-9_.-].
    value = accelerator(["g5.2xlarge", "g6.2xlarge", "g6e.2xlarge"])
    assert len(value) <= 63 and all(c.isalnum() or c in "-_." for c in value)
