"""Cluster: the eks.Cluster inputs per stack (auth, endpoint, logs, KMS, add-on split) and the parsed outputs."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pulumi_eks
import pytest

import naming
from components.cluster import (
    CREATOR_TAG,
    Cluster,
    ClusterArgs,
    access_entries,
    cluster_creator,
    control_plane_logs_key_policy,
    iam_principal,
    same_principal,
)
from components.network import Network, NetworkArgs
from components.nodegroups import NodeGroups, NodeGroupsArgs
from config import PlatformConfig, load_stack_config
from config.sources import load_yaml
from tools.mocks import ACCOUNT_ID, MOCK_CA_DATA

CLUSTER = "simfleet-test"
TAGS = {"simfleet:stack": "test", "cost-center": "robotics-research"}
EKS = "eks:index:Cluster"
RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ADMIN = "arn:aws:iam::123456789012:role/platform-admin"
OPERATOR = "arn:aws:iam::123456789012:role/researchers"

DEV: dict[str, Any] = {
    "kubernetesVersion": "1.35",
    "network": {"cidr": "10.40.0.0/16", "availabilityZones": 2, "natGateways": "single"},
    "endpoint": {"publicAccessCidrs": ["198.18.10.0/24"]},
    "controlPlaneLogs": ["api", "audit"],
    "nodeGroups": {
        "system": {"instanceTypes": ["t3.medium"], "minSize": 1, "maxSize": 3},
        "gpu": {"instanceTypes": ["g5.2xlarge", "g6.2xlarge"], "maxSize": 4, "capacity": ["spot", "onDemand"]},
    },
    "clusterAdmins": [ADMIN],
    "runOperators": [OPERATOR],
}
PROD: dict[str, Any] = {
    **copy.deepcopy(DEV),
    "network": {"cidr": "10.50.0.0/16", "availabilityZones": 3, "natGateways": "perAz"},
    "endpoint": {"publicAccessCidrs": []},
    "secretsEncryption": True,
    "controlPlaneLogs": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
}


def platform(raw: dict[str, Any], **overrides: Any) -> PlatformConfig:
    return PlatformConfig.model_validate({**copy.deepcopy(raw), **overrides})


DEPLOYER_SG = "sg-0d0e0f0a0b0c0d0e1"


def build(
    pulumi_mocks,
    cfg: PlatformConfig,
    deletion_protection: bool = False,
    captured: dict[str, Any] | None = None,
    encrypt_logs: bool = False,
    retention: int = 30,
):
    def program() -> None:
        args = ClusterArgs(
            CLUSTER,
            cfg,
            "vpc-123",
            ["subnet-pub-a", "subnet-pub-b"],
            ["subnet-priv-a", "subnet-priv-b"],
            TAGS,
            deletion_protection=deletion_protection,
            region="us-east-1",
            log_retention_days=retention,
            deployer_security_group_id=DEPLOYER_SG,
            encrypt_control_plane_logs=encrypt_logs,
        )
        cluster = Cluster("cluster", args)
        if captured is not None:
            for attr in (
                "eks_cluster_name",
                "endpoint",
                "certificate_authority",
                "kubeconfig_json",
                "oidc_provider_arn",
                "oidc_provider_url",
                "cluster_security_group_id",
                "control_plane_log_group_name",
            ):
                getattr(cluster, attr).apply(lambda v, attr=attr: captured.__setitem__(attr, v))

    return pulumi_mocks(program)


def eks_inputs(rec) -> dict[str, Any]:
    return rec.one(EKS).inputs


def test_cluster_basics(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(DEV))
    eks = eks_inputs(rec)
    assert eks["name"] == CLUSTER and eks["version"] == "1.35"
    assert eks["vpcId"] == "vpc-123"
    assert eks["privateSubnetIds"] == ["subnet-priv-a", "subnet-priv-b"]
    assert eks["publicSubnetIds"] == ["subnet-pub-a", "subnet-pub-b"]
    assert eks["skipDefaultNodeGroup"] is True
    assert eks["createOidcProvider"] is True
    assert eks["authenticationMode"] == "API"
    assert eks["upgradePolicy"] == {"supportType": "STANDARD"}
    assert eks["nodeAssociatePublicIpAddress"] is False
    assert eks["tags"] == TAGS and eks["clusterTags"]["Name"] == CLUSTER
    assert rec.one(EKS).parent == rec.one("simfleet:cluster:Cluster").urn


def test_addon_split_leaves_coredns_kube_proxy_and_cni_to_the_addons_component(pulumi_mocks) -> None:
    eks = eks_inputs(build(pulumi_mocks, platform(DEV)))
    # pulumi-eks would otherwise install CoreDNS (its Python args default enabled=True) and kube-proxy
    # before any node exists; the Addons component installs them after the node groups.
    assert eks["corednsAddonOptions"]["enabled"] is False
    assert eks["kubeProxyAddonOptions"]["enabled"] is False
    assert eks["useDefaultVpcCni"] is True
    assert "vpcCniOptions" not in eks


def test_dev_endpoint_is_public_but_restricted(pulumi_mocks) -> None:
    eks = eks_inputs(build(pulumi_mocks, platform(DEV)))
    assert eks["endpointPrivateAccess"] is True
    assert eks["endpointPublicAccess"] is True
    assert eks["publicAccessCidrs"] == ["198.18.10.0/24"]
    assert eks["enabledClusterLogTypes"] == ["api", "audit"]
    assert eks["deletionProtection"] is False


def test_prod_endpoint_is_private_with_all_logs_and_deletion_protection(pulumi_mocks) -> None:
    eks = eks_inputs(build(pulumi_mocks, platform(PROD), deletion_protection=True))
    assert eks["endpointPrivateAccess"] is True
    assert eks["endpointPublicAccess"] is False
    # pulumi-eks throws if publicAccessCidrs is set while the public endpoint is off.
    assert "publicAccessCidrs" not in eks
    assert eks["enabledClusterLogTypes"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert eks["deletionProtection"] is True


def test_secrets_are_envelope_encrypted_with_a_rotating_key(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(PROD))
    key = rec.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    alias = rec.one("aws:kms/alias:Alias").inputs
    assert alias["name"] == f"alias/{CLUSTER}-secrets"
    key_state = rec.monitor.resources[key.urn]
    assert alias["targetKeyId"] == key_state.state["keyId"]
    assert eks_inputs(rec)["encryptionConfigKeyArn"] == key_state.state["arn"]


def test_no_kms_key_when_secrets_encryption_is_off(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(DEV, secretsEncryption=False))
    assert rec.of_type("aws:kms/key:Key") == [] and rec.of_type("aws:kms/alias:Alias") == []
    assert "encryptionConfigKeyArn" not in eks_inputs(rec)


def test_access_entries_admins_get_the_cluster_policy_operators_only_a_group(pulumi_mocks) -> None:
    entries = eks_inputs(build(pulumi_mocks, platform(DEV)))["accessEntries"]
    by_principal = {e["principalArn"]: e for e in entries.values()}
    assert set(by_principal) == {ADMIN, OPERATOR}
    admin = by_principal[ADMIN]
    assert list(admin["accessPolicies"].values()) == [
        {
            "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            "accessScope": {"type": "cluster"},
        }
    ]
    assert "kubernetesGroups" not in admin
    operator = by_principal[OPERATOR]
    assert operator["kubernetesGroups"] == [naming.RUN_OPERATORS_GROUP]
    assert "accessPolicies" not in operator


def test_a_principal_in_both_lists_gets_one_entry_with_both_grants() -> None:
    entries = access_entries([ADMIN], [OPERATOR, ADMIN])
    assert len(entries) == 2
    both = next(e for e in entries.values() if e.principal_arn == ADMIN)
    assert both.kubernetes_groups == [naming.RUN_OPERATORS_GROUP]
    assert both.access_policies is not None and "admin" in both.access_policies


def test_access_policy_arn_follows_the_principals_partition() -> None:
    gov = "arn:aws-us-gov:iam::123456789012:role/ops/admin"
    entries = access_entries([gov], [])
    ((key, entry),) = entries.items()
    assert key == "role-ops-admin"
    assert admin_policy(entry) == "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def admin_policy(entry: pulumi_eks.AccessEntryArgs) -> str:
    """The ARN of the cluster-admin access policy an entry associates."""
    assert entry.access_policies is not None
    policy = entry.access_policies["admin"]
    assert isinstance(policy, pulumi_eks.AccessPolicyAssociationArgs)
    return str(policy.policy_arn)


def test_entry_keys_do_not_depend_on_list_order() -> None:
    other = "arn:aws:iam::123456789012:user/alice"
    assert set(access_entries([ADMIN, other], [])) == set(access_entries([other, ADMIN], []))


def test_outputs_come_from_the_cluster(pulumi_mocks) -> None:
    captured: dict[str, Any] = {}
    build(pulumi_mocks, platform(DEV), captured=captured)
    assert captured["eks_cluster_name"] == CLUSTER
    assert captured["endpoint"].startswith("https://") and captured["endpoint"].endswith(".eks.amazonaws.com")
    assert captured["certificate_authority"] == MOCK_CA_DATA
    assert '"kind": "Config"' in captured["kubeconfig_json"]
    assert captured["oidc_provider_arn"].startswith(
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/"
    )
    assert captured["oidc_provider_url"].startswith("oidc.eks.us-east-1.amazonaws.com/id/")
    assert captured["oidc_provider_arn"].endswith(captured["oidc_provider_url"])


@pytest.mark.parametrize("url", ["https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "oidc.eks.us-east-1.amazonaws.com/id/ABC"])
def test_oidc_url_is_host_and_path_whatever_pulumi_eks_returns(pulumi_mocks, monkeypatch, url: str) -> None:
    from tools import mocks

    original = mocks._TYPE_OUTPUTS[EKS]

    def with_url(m, name, inputs):
        rid, state = original(m, name, inputs)
        return rid, {**state, "oidcProviderUrl": url}

    monkeypatch.setitem(mocks._TYPE_OUTPUTS, EKS, with_url)
    captured: dict[str, Any] = {}
    build(pulumi_mocks, platform(DEV), captured=captured)
    assert captured["oidc_provider_url"] == "oidc.eks.us-east-1.amazonaws.com/id/ABC"


@pytest.mark.parametrize(("stack", "nats", "public_endpoint"), [("dev", 1, True), ("prod", 3, False)])
def test_stack_files_wire_network_cluster_and_node_groups(pulumi_mocks, stack: str, nats: int, public_endpoint: bool) -> None:
    """The three components wired as __main__.py wires them, from the real Pulumi.<stack>.yaml."""
    raw = load_yaml((Path(__file__).resolve().parent.parent / f"Pulumi.{stack}.yaml").read_text())["config"]
    cfg = load_stack_config(
        raw["simfleet:platform"], [], stack=stack, source=stack, today=datetime.date(2026, 11, 23), offline=True
    )
    name = f"simfleet-{stack}"

    def program() -> None:
        net = Network("network", NetworkArgs(cfg.platform.network, name, TAGS, "us-east-1"))
        cluster = Cluster(
            "cluster",
            ClusterArgs(
                name,
                cfg.platform,
                net.vpc_id,
                net.public_subnet_ids,
                net.private_subnet_ids,
                TAGS,
                deletion_protection=cfg.is_prod,
                region="us-east-1",
                log_retention_days=cfg.control_plane_log_retention_days,
                deployer_security_group_id=net.deployer_security_group_id,
                encrypt_control_plane_logs=cfg.is_prod,
            ),
        )
        NodeGroups(
            "nodes",
            NodeGroupsArgs(
                name,
                cfg.platform.node_groups,
                cluster.eks_cluster_name,
                net.private_subnet_ids,
                TAGS,
                kubernetes_version=cfg.platform.kubernetes_version,
            ),
        )

    rec = pulumi_mocks(program, stack=stack)
    ids = {urn: reg.id for urn, reg in rec.monitor.resources.items()}
    private = sorted(ids[r.urn] for r in rec.of_type("aws:ec2/subnet:Subnet") if "-private-" in r.name)
    eks = eks_inputs(rec)
    assert len(rec.of_type("aws:ec2/natGateway:NatGateway")) == nats
    # The deployer security group of the network is what the cluster admits on 443.
    deployer = rec.one("aws:ec2/securityGroup:SecurityGroup", "network-deployer")
    assert rec.one(RULE, "cluster-api-from-deployer").inputs["sourceSecurityGroupId"] == ids[deployer.urn]
    log_group = rec.one(LOG_GROUP).inputs
    assert log_group["retentionInDays"] == (90 if stack == "prod" else 30)
    assert ("kmsKeyId" in log_group) is (stack == "prod")
    assert eks["endpointPublicAccess"] is public_endpoint and eks["deletionProtection"] is cfg.is_prod
    assert sorted(eks["privateSubnetIds"]) == private
    groups = rec.of_type("aws:eks/nodeGroup:NodeGroup")
    assert {g.name for g in groups} == {"nodes-system", "nodes-gpu-spot", "nodes-gpu-on-demand"}
    assert all(sorted(g.inputs["subnetIds"]) == private for g in groups)


# ---- the control-plane log group ------------------------------------------------------------------


def test_control_plane_log_group_exists_before_the_cluster_with_a_retention(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(DEV), retention=60)
    group = rec.one(LOG_GROUP, "cluster-control-plane-logs")
    assert group.inputs["name"] == naming.control_plane_log_group(CLUSTER) == f"/aws/eks/{CLUSTER}/cluster"
    assert group.inputs["retentionInDays"] == 60
    assert "kmsKeyId" not in group.inputs and "deletionProtectionEnabled" not in group.inputs
    assert group.parent == rec.one("simfleet:cluster:Cluster").urn
    # The cluster's name comes from the log group's output: EKS is created only after the group exists, and
    # writes into it instead of creating an unmanaged group that never expires.
    assert group.urn in rec.one(EKS).options["propertyDependencies"]["name"]
    assert eks_inputs(rec)["name"] == CLUSTER


def test_prod_log_group_is_kms_encrypted_with_a_key_only_cloudwatch_logs_may_use_for_it(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, platform(PROD), deletion_protection=True, encrypt_logs=True, retention=90)
    keys = {r.name: r for r in rec.of_type("aws:kms/key:Key")}
    assert set(keys) == {"cluster-secrets", "cluster-logs"}
    key = keys["cluster-logs"]
    assert key.inputs["enableKeyRotation"] is True
    group = rec.one(LOG_GROUP).inputs
    assert group["kmsKeyId"] == rec.monitor.resources[key.urn].state["arn"]
    assert group["deletionProtectionEnabled"] is True
    policy = json.loads(key.inputs["policy"])
    assert policy == control_plane_logs_key_policy(
        "aws", ACCOUNT_ID, "us-east-1", "logs.us-east-1.amazonaws.com", f"/aws/eks/{CLUSTER}/cluster"
    )
    logs = next(s for s in policy["Statement"] if s["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"})
    assert logs["Condition"] == {
        "ArnEquals": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/aws/eks/{CLUSTER}/cluster"
        }
    }
    assert rec.one("aws:kms/alias:Alias", "cluster-logs").inputs["name"] == f"alias/{CLUSTER}-logs"


# ---- deployer access to the API endpoint ----------------------------------------------------------


def test_the_deployer_security_group_reaches_the_private_endpoint_on_443(pulumi_mocks) -> None:
    captured: dict[str, Any] = {}
    rec = build(pulumi_mocks, platform(PROD), captured=captured)
    [rule] = rec.of_type(RULE)
    assert rule.name == "cluster-api-from-deployer"
    assert rule.inputs["type"] == "ingress"
    assert (rule.inputs["protocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("tcp", 443, 443)
    assert rule.inputs["sourceSecurityGroupId"] == DEPLOYER_SG
    # The rule goes on pulumi-eks's cluster security group, the one attached to the control plane's interfaces.
    assert rule.inputs["securityGroupId"] == captured["cluster_security_group_id"]
    assert captured["cluster_security_group_id"] == rec.monitor.resources[rec.one(EKS).urn].state["clusterSecurityGroupId"]


def test_deployer_access_cidrs_and_security_groups_each_get_a_rule(pulumi_mocks) -> None:
    access = {"cidrs": ["10.60.0.0/24", "172.20.8.0/22"], "securityGroupIds": ["sg-0123456789abcdef0"]}
    cfg = platform(PROD, endpoint={"publicAccessCidrs": [], "deployerAccess": access})
    rules = {r.name: r.inputs for r in build(pulumi_mocks, cfg).of_type(RULE)}
    assert set(rules) == {
        "cluster-api-from-deployer",
        "cluster-api-from-10-60-0-0-24",
        "cluster-api-from-172-20-8-0-22",
        "cluster-api-from-sg-0123456789abcdef0",
    }
    assert rules["cluster-api-from-10-60-0-0-24"]["cidrBlocks"] == ["10.60.0.0/24"]
    assert rules["cluster-api-from-sg-0123456789abcdef0"]["sourceSecurityGroupId"] == "sg-0123456789abcdef0"
    assert all((r["fromPort"], r["toPort"]) == (443, 443) for r in rules.values())


# ---- deploy roles and the cluster's creator -------------------------------------------------------------------------

DEPLOY = "arn:aws:iam::123456789012:role/simfleet-dev-deploy"
PERSON = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0abc"


def test_deploy_roles_get_cluster_admin_so_ci_can_update_a_cluster_a_person_created() -> None:
    # A person created the cluster (EKS's creator entry is theirs); the deploy workflow's role needs its own entry.
    entries = access_entries([], [], [DEPLOY], creator=PERSON)
    [entry] = entries.values()
    assert entry.principal_arn == DEPLOY
    assert admin_policy(entry) == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def test_the_creator_gets_no_second_entry_whichever_list_names_it() -> None:
    # EKS refuses a second entry for the creator (ResourceInUseException); the creator is matched through its session.
    session = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0abc/alice@example.org"
    creator = iam_principal(session)
    assert creator == "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin_0abc"
    entries = access_entries([PERSON], [PERSON], [DEPLOY, PERSON], creator=creator)
    assert {e.principal_arn for e in entries.values()} == {DEPLOY}
    assert same_principal(PERSON, session) and not same_principal(DEPLOY, session)
    assert not same_principal(PERSON, PERSON.replace("123456789012", "210987654321"))


def test_the_creator_is_the_caller_of_a_new_cluster_and_the_recorded_tag_of_an_existing_one() -> None:
    caller = "arn:aws:sts::123456789012:assumed-role/simfleet-dev-deploy/GitHubActions"
    assert cluster_creator(None, caller) == DEPLOY
    assert cluster_creator({CREATOR_TAG: PERSON, "other": "x"}, caller) == PERSON
    # A cluster created before simfleet recorded its creator: unknown, so no principal is left out.
    assert cluster_creator({"other": "x"}, caller) is None


def test_the_creator_is_recorded_on_the_cluster(pulumi_mocks) -> None:
    def program() -> None:
        Cluster(
            "cluster",
            ClusterArgs(
                CLUSTER,
                platform(DEV, deployRoles=[DEPLOY]),
                "vpc-123",
                ["subnet-pub-a", "subnet-pub-b"],
                ["subnet-priv-a", "subnet-priv-b"],
                TAGS,
                region="us-east-1",
                log_retention_days=30,
                creator=DEPLOY,
            ),
        )

    inputs = eks_inputs(pulumi_mocks(program))
    assert inputs["clusterTags"][CREATOR_TAG] == DEPLOY
    assert DEPLOY not in {e["principalArn"] for e in inputs["accessEntries"].values()}


def test_deploy_roles_must_be_iam_arns() -> None:
    with pytest.raises(ValueError, match=r"deployRoles\.0\n  Value error, 'simfleet-dev-deploy' is not an IAM role or user ARN"):
        platform(DEV, deployRoles=["simfleet-dev-deploy"])
