"""PodNetwork: the VPC CNI add-on on its own IRSA role (not the node role's CNI policy), installed before any node."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from sample_plans import planned

import naming
import versions
from components.pod_network import CNI_POLICY, VPC_CNI, PodNetwork, PodNetworkArgs
from tools.mocks import ACCOUNT_ID

ROOT = Path(__file__).resolve().parent.parent
ADDON = "aws:eks/addon:Addon"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER}"


@pytest.fixture
def rec(pulumi_mocks):
    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        PodNetwork(
            "pod-network", PodNetworkArgs("simfleet-dev", "1.35", PROVIDER_ARN, ISSUER, {"simfleet:stack": "dev"}, cluster)
        )

    return pulumi_mocks(build)


def test_the_cni_role_trusts_only_aws_node_and_carries_the_cni_policy(rec):
    role = rec.one("aws:iam/role:Role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Condition"]["StringEquals"] == {
        f"{ISSUER}:sub": "system:serviceaccount:kube-system:aws-node",
        f"{ISSUER}:aud": "sts.amazonaws.com",
    }
    assert naming.VPC_CNI_SA == ("kube-system", "aws-node")
    [attachment] = rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == f"arn:aws:iam::aws:policy/{CNI_POLICY}"


def test_the_add_on_runs_on_that_role_with_network_policy_enforced(rec):
    addon = rec.one(ADDON).inputs
    role_arn = rec.monitor.resources[rec.one("aws:iam/role:Role").urn].state["arn"]
    assert addon["addonName"] == VPC_CNI and addon["serviceAccountRoleArn"] == role_arn
    assert addon["addonVersion"] == versions.addon_version("1.35", VPC_CNI)
    # EKS wants the string "true", not a JSON boolean.
    assert json.loads(addon["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert addon["resolveConflictsOnCreate"] == "OVERWRITE" and addon["preserve"] is True


def test_the_add_on_keeps_the_identity_it_had_under_addons(rec):
    # Stacks deployed before the move hold the add-on as addons-vpc-cni under the Addons component: it is adopted, not
    # created beside the old one (which EKS refuses) and the old one deleted.
    options = rec.one(ADDON).options
    [alias] = options["aliases"]
    assert alias["name"] == "addons-vpc-cni"
    assert alias["parentUrn"].endswith("::simfleet:addons:Addons::addons")


def test_every_node_group_waits_for_the_cni_add_on_and_the_node_role_has_no_cni_policy() -> None:
    result = planned("dev")
    [addon] = [r for r in result.registrations if r.type == ADDON and r.inputs["addonName"] == VPC_CNI]
    groups = [r for r in result.registrations if r.type == "aws:eks/nodeGroup:NodeGroup"]
    assert groups and all(addon.urn in g.options["dependsOn"] for g in groups), [g.name for g in groups]
    policies = {
        r.inputs["policyArn"] for r in result.registrations if r.type.endswith("rolePolicyAttachment:RolePolicyAttachment")
    }
    node_role_policies = {
        r.inputs["policyArn"]
        for r in result.registrations
        if r.type.endswith("rolePolicyAttachment:RolePolicyAttachment") and r.name.startswith("nodes-")
    }
    assert f"arn:aws:iam::aws:policy/{CNI_POLICY}" in policies - node_role_policies
