"""SharedStorage: an encrypted EFS file system, a mount target per AZ, NFS from the nodes only, the EFS CSI add-on and its role, efs-sc and the datasets claim."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

import naming
import versions
from components.shared_storage import (
    DATASETS_NOMINAL_SIZE,
    EFS_CSI_ADDON,
    SharedStorage,
    SharedStorageArgs,
    datasets_claim,
    file_system_policy,
    lifecycle_policies,
    storage_class,
)
from config import SharedStorageConfig

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]
NODE_SG = "sg-0eks0cluster0sg0"
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
OIDC_URL = "oidc.eks.us-east-1.amazonaws.com/id/ABC"


def _args(cluster: pulumi.Resource, **overrides: Any) -> SharedStorageArgs:
    fields: dict[str, Any] = {
        "cluster_name": "simfleet-dev",
        "config": SharedStorageConfig(enabled=True),
        "kubernetes_version": "1.35",
        "vpc_id": "vpc-0abc",
        "private_subnet_ids": SUBNETS,
        "availability_zones": 3,
        "node_security_group_id": NODE_SG,
        "oidc_provider_arn": OIDC_ARN,
        "oidc_provider_url": OIDC_URL,
        "claim_namespace": naming.RUNS_NAMESPACE,
        "tags": {"simfleet:stack": "dev"},
        "cluster": cluster,
    }
    return SharedStorageArgs(**{**fields, **overrides})


@pytest.fixture
def built(pulumi_mocks):
    made: dict[str, Any] = {}

    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        nodes = pulumi.ComponentResource("simfleet:nodegroups:NodeGroups", "nodes")
        pulumi.CustomResource("test:index:Node", "node-group", opts=pulumi.ResourceOptions(parent=nodes))
        provider = k8s.Provider("k8s", kubeconfig="{}")
        storage = SharedStorage(
            "shared-storage", _args(cluster), opts=pulumi.ResourceOptions(providers=[provider], depends_on=[nodes])
        )
        for key in ("file_system_id", "storage_class_name", "datasets_claim_name", "datasets_claim_namespace"):
            getattr(storage, key).apply(lambda v, key=key: made.__setitem__(key, v))

    return pulumi_mocks(build), made


@pytest.fixture
def rec(built):
    return built[0]


def test_file_system_is_encrypted_general_purpose_elastic_with_a_lifecycle(rec):
    fs = rec.one("aws:efs/fileSystem:FileSystem").inputs
    assert fs["encrypted"] is True
    assert fs["performanceMode"] == "generalPurpose" and fs["throughputMode"] == "elastic"
    assert fs["lifecyclePolicies"] == [{"transitionToIa": "AFTER_30_DAYS"}, {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]
    assert fs["tags"]["Name"] == "simfleet-dev-datasets" and fs["tags"]["simfleet:stack"] == "dev"
    # User data: kept when the stack or the setting goes away, like the S3 buckets.
    assert rec.one("aws:efs/fileSystem:FileSystem").options.get("retainOnDelete") is True


def test_one_mount_target_per_private_subnet_behind_the_efs_group(rec):
    targets = rec.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t.inputs["subnetId"] for t in targets) == SUBNETS
    group = rec.one("aws:ec2/securityGroup:SecurityGroup")
    assert all(len(t.inputs["securityGroups"]) == 1 for t in targets)
    assert all(t.options["propertyDependencies"]["securityGroups"] == [group.urn] for t in targets)


def test_nfs_only_from_the_nodes_security_group(rec):
    [rule] = rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    inputs = rule.inputs
    assert (inputs["ipProtocol"], inputs["fromPort"], inputs["toPort"]) == ("tcp", 2049, 2049)
    assert inputs["referencedSecurityGroupId"] == NODE_SG
    assert "cidrIpv4" not in inputs
    group = rec.one("aws:ec2/securityGroup:SecurityGroup").inputs
    assert not group.get("ingress") and not group.get("egress")


def test_efs_csi_addon_is_pinned_with_its_own_irsa_role(rec):
    addon = rec.one("aws:eks/addon:Addon").inputs
    assert addon["addonName"] == EFS_CSI_ADDON
    assert addon["addonVersion"] == versions.addon_version("1.35", EFS_CSI_ADDON)
    assert addon["serviceAccountRoleArn"].startswith("arn:aws:iam::123456789012:role/")
    role = rec.one("aws:iam/role:Role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    # The two service accounts the add-on creates, which AWS's EFS CSI page trusts as efs-csi-*: named exactly here.
    assert statement["Condition"]["StringEquals"][f"{OIDC_URL}:sub"] == [
        "system:serviceaccount:kube-system:efs-csi-controller-sa",
        "system:serviceaccount:kube-system:efs-csi-node-sa",
    ]
    assert "StringLike" not in statement["Condition"]
    [attachment] = rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"


def test_storage_class_and_claim(rec):
    sc = rec.one("kubernetes:storage.k8s.io/v1:StorageClass").inputs
    fs_id = rec.one("aws:efs/fileSystem:FileSystem")
    assert sc["metadata"]["name"] == naming.EFS_STORAGE_CLASS == "efs-sc"
    assert sc["provisioner"] == "efs.csi.aws.com"
    assert sc["parameters"]["provisioningMode"] == "efs-ap" and sc["parameters"]["directoryPerms"] == "700"
    assert sc["parameters"]["fileSystemId"].startswith("fs-")
    assert rec.one("kubernetes:storage.k8s.io/v1:StorageClass").options["propertyDependencies"]["parameters"] == [fs_id.urn]
    assert sc["reclaimPolicy"] == "Retain" and sc["volumeBindingMode"] == "Immediate"
    # Every volume mounts with IAM authorisation, which the file system policy requires.
    assert sc["mountOptions"] == ["iam"]
    claim = rec.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.inputs["metadata"] == {
        "name": "datasets",
        "namespace": naming.RUNS_NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/component": "datasets"},
    }
    assert claim.inputs["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim.inputs["spec"]["storageClassName"] == "efs-sc"
    assert claim.inputs["spec"]["resources"]["requests"]["storage"] == DATASETS_NOMINAL_SIZE
    addon = rec.one("aws:eks/addon:Addon")
    assert addon.urn in claim.options["dependsOn"]


def test_resource_options(rec):
    cluster = rec.one("simfleet:cluster:Cluster").urn
    node = rec.one("test:index:Node").urn
    for typ in ("kubernetes:storage.k8s.io/v1:StorageClass", "kubernetes:core/v1:PersistentVolumeClaim"):
        r = rec.one(typ)
        assert r.options.get("deletedWith") == cluster and r.options.get("provider") == "k8s", r.urn
    # The add-on's controller pods need nodes.
    assert node in rec.one("aws:eks/addon:Addon").options["dependsOn"]


def test_outputs_for_the_jobs_that_mount_the_claim(built):
    made = built[1]
    assert made["datasets_claim_name"] == "datasets" and made["datasets_claim_namespace"] == naming.RUNS_NAMESPACE
    assert made["storage_class_name"] == "efs-sc" and made["file_system_id"].startswith("fs-")


def test_pure_renderers_validate() -> None:
    for obj in (storage_class("fs-0123"), datasets_claim(naming.RUNS_NAMESPACE)):
        kubernetes_validate.validate(obj, "1.35", strict=True)


@pytest.mark.parametrize(("days", "expected"), [(1, "AFTER_1_DAY"), (7, "AFTER_7_DAYS"), (365, "AFTER_365_DAYS")])
def test_lifecycle_names_are_the_efs_api_values(days: int, expected: str) -> None:
    [to_ia, back] = lifecycle_policies(SharedStorageConfig(enabled=True, transition_to_ia_days=days))
    assert to_ia.transition_to_ia == expected and back.transition_to_primary_storage_class == "AFTER_1_ACCESS"
    assert lifecycle_policies(SharedStorageConfig(enabled=True, transition_to_ia_days=None)) == []


def test_args_refuse_a_disabled_config_and_an_unpinned_version() -> None:
    with pytest.raises(ValueError, match=r"config\.enabled is false") as err:
        _args(object(), config=SharedStorageConfig(enabled=False), kubernetes_version="1.30")  # type: ignore[arg-type]
    assert "no aws-efs-csi-driver build for Kubernetes 1.30" in str(err.value)


# ---- the file system policy -------------------------------------------------------------------------------------------

FS_ARN = "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-0abc"
CSI_ROLE = "arn:aws:iam::123456789012:role/efs-csi"
ACCESS_POINT = "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0123"


def mount_decision(policy: dict[str, Any], principal: str | None, action: str, context: dict[str, str]) -> str:
    """allow / deny / implicit deny for a client request, as EFS evaluates a file system policy: an explicit Deny wins,
    then any matching Allow; `principal` None is an anonymous client (a mount without the `iam` option)."""

    def matches(statement: dict[str, Any]) -> bool:
        granted = statement["Principal"]["AWS"]
        if granted != "*" and granted != principal:
            return False
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "*" not in actions and action not in actions:
            return False
        for operator, conditions in statement.get("Condition", {}).items():
            for key, wanted in conditions.items():
                value = context.get(key)
                if value is None:
                    return False
                if operator == "ArnLike" and not fnmatch.fnmatchcase(value, wanted):
                    return False
                if operator == "Bool" and value != wanted:
                    return False
        return True

    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return "deny"
    return "allow" if any(s["Effect"] == "Allow" and matches(s) for s in statements) else "implicit deny"


TLS = {"aws:SecureTransport": "true", "elasticfilesystem:AccessedViaMountTarget": "true"}


def test_the_driver_mounts_and_writes_through_an_access_point_over_tls():
    policy = file_system_policy("aws", "us-east-1", "123456789012", FS_ARN, CSI_ROLE)
    through_ap = {**TLS, "elasticfilesystem:AccessPointArn": ACCESS_POINT}
    for action in ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"):
        assert mount_decision(policy, CSI_ROLE, action, through_ap) == "allow", action


def test_root_of_the_file_system_anonymous_and_root_access_are_refused():
    policy = file_system_policy("aws", "us-east-1", "123456789012", FS_ARN, CSI_ROLE)
    through_ap = {**TLS, "elasticfilesystem:AccessPointArn": ACCESS_POINT}
    # A pod that reaches a mount target over NFS without IAM: the default policy would let it mount the root as root.
    assert mount_decision(policy, None, "elasticfilesystem:ClientMount", TLS) == "implicit deny"
    assert mount_decision(policy, None, "elasticfilesystem:ClientMount", through_ap) == "implicit deny"
    # The driver's own role, without an access point: the file system's root is not reachable.
    assert mount_decision(policy, CSI_ROLE, "elasticfilesystem:ClientMount", TLS) == "implicit deny"
    # Root on the file system: granted to nobody.
    assert mount_decision(policy, CSI_ROLE, "elasticfilesystem:ClientRootAccess", through_ap) == "implicit deny"
    # Another role in the account, through an access point.
    other = "arn:aws:iam::123456789012:role/someone"
    assert mount_decision(policy, other, "elasticfilesystem:ClientMount", through_ap) == "implicit deny"


def test_plain_nfs_is_refused_even_to_the_driver():
    policy = file_system_policy("aws", "us-east-1", "123456789012", FS_ARN, CSI_ROLE)
    plain = {"aws:SecureTransport": "false", "elasticfilesystem:AccessedViaMountTarget": "true"}
    plain["elasticfilesystem:AccessPointArn"] = ACCESS_POINT
    assert mount_decision(policy, CSI_ROLE, "elasticfilesystem:ClientMount", plain) == "deny"


def test_the_file_system_gets_the_policy(rec):
    [registered] = rec.of_type("aws:efs/fileSystemPolicy:FileSystemPolicy")
    fs = rec.one("aws:efs/fileSystem:FileSystem")
    role = rec.one("aws:iam/role:Role")
    role_arn = rec.monitor.resources[role.urn].state["arn"]
    fs_arn = rec.monitor.resources[fs.urn].state["arn"]
    assert registered.inputs["fileSystemId"] == rec.monitor.resources[fs.urn].state["id"]
    assert json.loads(registered.inputs["policy"]) == file_system_policy("aws", "us-east-1", "123456789012", fs_arn, role_arn)


def test_the_upgrade_note_gives_every_volume_of_the_storage_class_the_iam_option() -> None:
    """A stack deployed before the file system policy has volumes provisioned without the `iam` mount option: the
    datasets claim, and the Pushgateway's (metrics.persistence, on efs-sc too). Once the policy is on, EFS refuses their
    next mount, so the upgrade note patches every volume of the class, not one claim."""
    from tools import plan

    root = Path(__file__).resolve().parent.parent
    releases = [
        r for r in plan.run_program(root / "Pulumi.dev.yaml", "dev").registrations if r.type == "kubernetes:helm.sh/v3:Release"
    ]
    on_efs = [
        r.name
        for r in releases
        if (r.inputs.get("values") or {}).get("persistentVolume", {}).get("storageClass") == naming.EFS_STORAGE_CLASS
    ]
    assert on_efs, "the Pushgateway keeps its file on efs-sc"
    text = (root / "docs" / "operators.md").read_text()
    note = text[text.index("**Stacks deployed before 2026-12-07**") : text.index("**Kubernetes.**")]
    assert f'?(@.spec.storageClassName=="{naming.EFS_STORAGE_CLASS}")' in note
    assert '"mountOptions":["iam"]' in note
