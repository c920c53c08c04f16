"""Pod networking: the VPC CNI add-on on its own IRSA role, installed before the first node so aws-node never uses the node role."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
import versions
from components.irsa import IrsaRole, IrsaRoleArgs, aws_managed_policy
from components.tags import merge_tags

VPC_CNI = "vpc-cni"
# The network policy agent enforces RunsNamespace's policies. The value is the string "true" (EKS user guide,
# cni-network-policy-configure), and needs vpc-cni >= v1.14.0-eksbuild.3.
VPC_CNI_CONFIG: dict[str, Any] = {"enableNetworkPolicy": "true"}
# The IPv4 policy the EKS user guide attaches to the CNI's own role ("Configure Amazon VPC CNI plugin to use IRSA",
# cni-iam-role, step 1), instead of to the node role (step 3 removes it there).
CNI_POLICY = "AmazonEKS_CNI_Policy"
# The Addons component registered the add-on under this name before it moved here (see the alias below).
_FORMER_NAME = ("addons", "simfleet:addons:Addons", f"addons-{VPC_CNI}")


@dataclass(frozen=True)
class PodNetworkArgs:
    # Cluster.eks_cluster_name: an output, so the add-on waits for the control plane and its OIDC provider.
    cluster_name: pulumi.Input[str]
    kubernetes_version: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    tags: Mapping[str, str]
    cluster: pulumi.Resource

    def __post_init__(self) -> None:
        if VPC_CNI not in versions.EKS_ADDON_PINS.get(self.kubernetes_version, {}):
            raise ValueError(f"PodNetwork: versions.py pins no {VPC_CNI} build for Kubernetes {self.kubernetes_version}")


class PodNetwork(pulumi.ComponentResource):
    """The caller makes the node groups depend on this component: a node that joins before the add-on carries its role
    would start aws-node without credentials (the node role has no CNI policy) and never become Ready."""

    role_arn: pulumi.Output[str]
    addon_version: str

    def __init__(self, name: str, args: PodNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:pod_network:PodNetwork", name, None, opts)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        role = IrsaRole(
            f"{name}-{VPC_CNI}",
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_provider_url=args.oidc_provider_url,
                namespace=naming.VPC_CNI_SA[0],
                service_account=naming.VPC_CNI_SA[1],
                managed_policy_arns=[aws_managed_policy(partition, CNI_POLICY)],
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.addon_version = versions.addon_version(args.kubernetes_version, VPC_CNI)
        aws.eks.Addon(
            f"{name}-{VPC_CNI}",
            cluster_name=args.cluster_name,
            addon_name=VPC_CNI,
            addon_version=self.addon_version,
            configuration_values=json.dumps(VPC_CNI_CONFIG),
            # EKS annotates kube-system/aws-node with the role; pods created after that get IRSA credentials.
            service_account_role_arn=role.role_arn,
            # EKS bootstraps a self-managed aws-node when it creates the cluster; OVERWRITE adopts it. Pulumi owns the
            # settings: an update resets hand-edits to these values.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # Removing the add-on from a running cluster takes pod networking with it: keep the software if this
            # resource is ever deleted, and let DeleteCluster remove it with the cluster.
            preserve=True,
            tags=merge_tags(args.tags, {}),
            opts=pulumi.ResourceOptions(
                parent=self,
                # Deleting the cluster deletes the add-on; a separate delete would only wait on a gone cluster.
                deleted_with=args.cluster,
                # The same EKS add-on the Addons component used to register: adopted under its new name, not created
                # beside the old one (CreateAddon would fail with ResourceInUseException) and deleted.
                aliases=[pulumi.Alias(name=_FORMER_NAME[2], parent=pulumi.create_urn(_FORMER_NAME[0], _FORMER_NAME[1]))],
            ),
        )
        self.role_arn = role.role_arn
        self.register_outputs({"roleArn": self.role_arn, "addonVersion": self.addon_version})
