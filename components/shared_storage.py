"""Shared storage for runs and jobs: an encrypted EFS file system, its mount targets, the EFS CSI driver and the `datasets` claim."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
import versions
from components import kube
from components.irsa import IrsaRole, IrsaRoleArgs, aws_managed_policy
from components.tags import merge_tags
from config import SharedStorageConfig

NFS_PORT = 2049
EFS_CSI_ADDON = "aws-efs-csi-driver"
EFS_CSI_PROVISIONER = "efs.csi.aws.com"
# AWS managed policy for the EFS CSI controller (access points: create, tag, delete; describe file systems and mount
# targets). AWS managed policy reference, AmazonEFSCSIDriverPolicy: arn:aws:iam::aws:policy/service-role/...
EFS_CSI_POLICY = "service-role/AmazonEFSCSIDriverPolicy"
# EFS bills what is stored, not what a claim asks for, and never enforces a claim's size; the request is nominal
# (Kubernetes requires one).
DATASETS_NOMINAL_SIZE = "100Gi"


def lifecycle_policies(config: SharedStorageConfig) -> list[aws.efs.FileSystemLifecyclePolicyArgs]:
    """EFS lifecycle: to Infrequent Access after N days without access, and back to Standard on the first read.

    Back on first access because a dataset that is read again is usually read again soon (a new sweep over it), and IA
    bills every read. Each policy object holds exactly one transition (EFS API LifecyclePolicy).
    """
    if config.transition_to_ia_days is None:
        return []
    days = config.transition_to_ia_days
    return [
        aws.efs.FileSystemLifecyclePolicyArgs(transition_to_ia=f"AFTER_{days}_DAY{'S' if days > 1 else ''}"),
        aws.efs.FileSystemLifecyclePolicyArgs(transition_to_primary_storage_class="AFTER_1_ACCESS"),
    ]


def file_system_policy(partition: str, region: str, account_id: str, file_system_arn: str, csi_role_arn: str) -> dict[str, Any]:
    """The file system's resource policy: mounts only through an access point, by the EFS CSI driver's role, over TLS.

    Without a policy, EFS lets any client that reaches a mount target (NFS from a node, so any pod a NetworkPolicy does
    not stop) mount the root of the file system as root, bypassing every access point ("Using IAM to control access":
    the default policy grants full access to anonymous clients). This one grants ClientMount and ClientWrite only to the
    driver's role (the node plugin mounts with the `iam` option, signing with that role through IRSA), only through a
    mount target and only with an access point (`elasticfilesystem:AccessPointArn`, "Using access points in IAM
    policies"); ClientRootAccess is granted to nobody. Anything over plain NFS is refused (aws:SecureTransport).
    """
    access_points = f"arn:{partition}:elasticfilesystem:{region}:{account_id}:access-point/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MountThroughAccessPointsOnly",
                "Effect": "Allow",
                "Principal": {"AWS": csi_role_arn},
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": file_system_arn,
                "Condition": {
                    "ArnLike": {"elasticfilesystem:AccessPointArn": access_points},
                    "Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"},
                },
            },
            {
                "Sid": "RequireTls",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "*",
                "Resource": file_system_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def storage_class(file_system_id: pulumi.Input[str]) -> dict[str, Any]:
    """`efs-sc`: one EFS access point per claim (dynamic provisioning), its root directory 0700, mounted with IAM.

    Parameter names from the EFS CSI driver's "Storage Class Parameters for Dynamic Provisioning". Every file operation
    through an access point runs as the access point's own uid/gid (from the driver's gidRange), so pods of any uid can
    use the claim and no claim sees another's directory. `iam`: the node plugin signs the mount with its IRSA role,
    which the file system policy requires. No `tls` mount option: the driver encrypts in transit unless told not to,
    and warns that the option is deprecated.
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": naming.EFS_STORAGE_CLASS, "labels": {"app.kubernetes.io/part-of": "simfleet"}},
        "provisioner": EFS_CSI_PROVISIONER,
        "parameters": {"provisioningMode": "efs-ap", "fileSystemId": file_system_id, "directoryPerms": "700"},
        # Copied into every volume provisioned from here (a PV's mountOptions), so each mount is IAM-authorised.
        "mountOptions": ["iam"],
        # Retain: deleting a claim (or this stack's objects) never deletes a dataset's access point or its files.
        "reclaimPolicy": "Retain",
        # EFS is regional (a mount target per AZ), so there is no zone to wait for a pod to pick.
        "volumeBindingMode": "Immediate",
    }


def datasets_claim(namespace: pulumi.Input[str]) -> dict[str, Any]:
    """The ReadWriteMany claim runs and jobs mount: every pod that mounts it sees the same files."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": naming.DATASETS_CLAIM,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/component": "datasets"},
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": naming.EFS_STORAGE_CLASS,
            "resources": {"requests": {"storage": DATASETS_NOMINAL_SIZE}},
        },
    }


@dataclass(frozen=True)
class SharedStorageArgs:
    cluster_name: str
    config: SharedStorageConfig
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    # One mount target per private subnet: EFS needs one in each AZ a node mounts from.
    availability_zones: int
    # The security group on the managed nodes (Cluster.node_security_group_id): the only source admitted on NFS.
    node_security_group_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    # Where the datasets claim lives (RunsNamespace.namespace, which resolves once that namespace is guarded).
    claim_namespace: pulumi.Input[str]
    tags: Mapping[str, str]
    cluster: pulumi.Resource

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.config.enabled:
            problems.append("config.enabled is false; __main__ builds this component only when shared storage is on")
        if self.availability_zones < 1:
            problems.append(f"availability_zones must be >= 1, got {self.availability_zones}")
        if EFS_CSI_ADDON not in versions.EKS_ADDON_PINS.get(self.kubernetes_version, {}):
            problems.append(f"versions.py pins no {EFS_CSI_ADDON} build for Kubernetes {self.kubernetes_version}")
        if problems:
            raise ValueError("SharedStorage: " + "; ".join(problems))


class SharedStorage(pulumi.ComponentResource):
    file_system_id: pulumi.Output[str]
    storage_class_name: pulumi.Output[str]
    datasets_claim_name: pulumi.Output[str]
    datasets_claim_namespace: pulumi.Output[str]

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:shared_storage:SharedStorage", name, None, opts)
        # depends_on on a component does not reach its children; restate it (the add-on's controller pods need nodes).
        after = opts.depends_on if opts is not None else None
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = args.cluster_name

        group = aws.ec2.SecurityGroup(
            f"{name}-efs",
            vpc_id=args.vpc_id,
            description=f"EFS mount targets of {cluster_name}: NFS from the cluster's nodes only",
            # No egress rules: security groups are stateful, so replies to the nodes' NFS connections need none, and a
            # mount target never opens a connection of its own.
            tags=merge_tags(args.tags, {}, name=f"{cluster_name}-efs"),
            opts=child,
        )
        nfs = aws.vpc.SecurityGroupIngressRule(
            f"{name}-efs-nfs",
            security_group_id=group.id,
            description="NFS from the nodes (the EFS CSI node plugin mounts on the node's behalf)",
            ip_protocol="tcp",
            from_port=NFS_PORT,
            to_port=NFS_PORT,
            referenced_security_group_id=args.node_security_group_id,
            tags=merge_tags(args.tags, {}, name=f"{cluster_name}-efs-nfs"),
            opts=child,
        )
        file_system = aws.efs.FileSystem(
            f"{name}-efs",
            encrypted=True,
            # generalPurpose: the lowest latency per operation, and the only mode elastic throughput works with.
            performance_mode="generalPurpose",
            # elastic by default (config): datasets are read in bursts by many pods at once; bursting would give a small
            # file system a small baseline and run out of credits in the middle of a sweep.
            throughput_mode=args.config.throughput_mode,
            lifecycle_policies=lifecycle_policies(args.config),
            tags=merge_tags(args.tags, {}, name=f"{cluster_name}-datasets"),
            # Datasets are user data: like the S3 buckets, the file system outlives `pulumi destroy` and turning
            # sharedStorage off (its mount targets and security group go; delete the file system by hand).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        subnet_ids = pulumi.Output.from_input(args.private_subnet_ids)
        mount_targets = [
            aws.efs.MountTarget(
                f"{name}-efs-mount-{i}",
                file_system_id=file_system.id,
                subnet_id=subnet_ids.apply(_nth(i)),
                security_groups=[group.id],
                # The rule first: a mount target without it would answer no node.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[nfs]),
            )
            for i in range(args.availability_zones)
        ]

        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        # One role for the add-on's controller (access points) and its node DaemonSet (IAM-authorised mounts), as the
        # EKS user guide's EFS CSI page sets it up ("system:serviceaccount:kube-system:efs-csi-*" with StringLike); here
        # the two service accounts the add-on creates are named exactly instead of matched by a pattern.
        role = IrsaRole(
            f"{name}-efs-csi",
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_provider_url=args.oidc_provider_url,
                namespace=naming.EFS_CSI_CONTROLLER_SA[0],
                service_account=(naming.EFS_CSI_CONTROLLER_SA[1], naming.EFS_CSI_NODE_SA[1]),
                managed_policy_arns=[aws_managed_policy(partition, EFS_CSI_POLICY)],
                tags=args.tags,
            ),
            opts=child,
        )
        region = aws.get_region_output(opts=invoke).region
        aws.efs.FileSystemPolicy(
            f"{name}-efs-policy",
            file_system_id=file_system.id,
            policy=pulumi.Output.all(partition, region, account_id, file_system.arn, role.role_arn).apply(
                lambda v: json.dumps(file_system_policy(*v), separators=(",", ":"))
            ),
            opts=child,
        )
        addon = aws.eks.Addon(
            f"{name}-{EFS_CSI_ADDON}",
            cluster_name=cluster_name,
            addon_name=EFS_CSI_ADDON,
            addon_version=versions.addon_version(args.kubernetes_version, EFS_CSI_ADDON),
            # The add-on annotates its service accounts (kube-system/efs-csi-controller-sa, efs-csi-node-sa) with this role.
            service_account_role_arn=role.role_arn,
            # No configuration values: the chart's controller tolerates only CriticalAddonsOnly, so it lands on the
            # untainted system nodes, and its node DaemonSet tolerates every taint, so GPU nodes can mount too.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=merge_tags(args.tags, {}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, deleted_with=args.cluster, depends_on=after)
        sc = kube.register(f"{name}-storage-class", storage_class(file_system.id), in_cluster)
        claim = kube.register(
            f"{name}-datasets",
            datasets_claim(args.claim_namespace),
            # The claim binds only once the driver's controller answers; no value of the add-on flows into it.
            pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(depends_on=[sc, addon])),
        )

        self.file_system_id = file_system.id
        self.storage_class_name = sc.urn.apply(lambda _: naming.EFS_STORAGE_CLASS)
        # Resolves once the claim exists and a mount target is up in every AZ, so a pod that takes it can mount.
        self.datasets_claim_name = pulumi.Output.all(claim.urn, *(mt.id for mt in mount_targets)).apply(
            lambda _: naming.DATASETS_CLAIM
        )
        self.datasets_claim_namespace = pulumi.Output.from_input(args.claim_namespace)
        self.register_outputs(
            {
                "fileSystemId": self.file_system_id,
                "storageClassName": self.storage_class_name,
                "datasetsClaimName": self.datasets_claim_name,
                "datasetsClaimNamespace": self.datasets_claim_namespace,
            }
        )


def _nth(index: int) -> Callable[[list[str]], str]:
    def pick(ids: list[str]) -> str:
        return ids[index]

    return pick


def summary(storage: SharedStorage, imports: pulumi.Input[dict[str, Any]] | None = None) -> pulumi.Output[dict[str, Any]]:
    """The stack output `sharedStorage`: what a job or run needs to mount the datasets claim, and per dataset import
    its sync Job, source, directory and status (components/dataset_imports.py)."""
    return pulumi.Output.all(
        fileSystemId=storage.file_system_id,
        storageClass=storage.storage_class_name,
        datasetsClaim=storage.datasets_claim_name,
        namespace=storage.datasets_claim_namespace,
        imports=imports or {},
    ).apply(dict)
