"""The EKS control plane (pulumi-eks), its access entries, and the KMS key that envelope-encrypts secrets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

import naming
from components.tags import merge_tags
from config import PlatformConfig

ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"


def _partition(principal_arn: str) -> str:
    # The principal's partition is the cluster's: arn:<partition>:iam::<account>:role/...
    return principal_arn.split(":")[1]


def _entry_key(principal_arn: str) -> str:
    # Keyed by the principal, not its list position, so reordering the config does not replace entries.
    return principal_arn.split(":", 5)[5].replace("/", "-")


def access_entries(cluster_admins: list[str], run_operators: list[str]) -> dict[str, eks.AccessEntryArgs]:
    """One access entry per IAM principal (EKS allows only one), with admin policy and/or the run-operators group."""
    entries: dict[str, eks.AccessEntryArgs] = {}
    for arn in dict.fromkeys([*cluster_admins, *run_operators]):
        policies: dict[str, eks.AccessPolicyAssociationArgs] = {}
        if arn in cluster_admins:
            policies["admin"] = eks.AccessPolicyAssociationArgs(
                policy_arn=f"arn:{_partition(arn)}:eks::aws:cluster-access-policy/{ADMIN_POLICY}",
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
            )
        # Run operators get no AWS-managed policy: the RBAC Role bound to this group in the runs namespace
        # (components/runs_namespace.py) is all they may do.
        groups = [naming.RUN_OPERATORS_GROUP] if arn in run_operators else None
        entries[_entry_key(arn)] = eks.AccessEntryArgs(
            principal_arn=arn, access_policies=policies or None, kubernetes_groups=groups
        )
    return entries


def _kubeconfig_cluster(kubeconfig_json: str) -> dict[str, Any]:
    config = json.loads(kubeconfig_json)
    cluster: dict[str, Any] = config["clusters"][0]["cluster"]
    return cluster


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    platform: PlatformConfig
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[list[str]]
    private_subnet_ids: pulumi.Input[list[str]]
    tags: dict[str, str]
    # EKS refuses DeleteCluster while this is on; __main__ sets it for prod stacks.
    deletion_protection: bool = False


class Cluster(pulumi.ComponentResource):
    eks_cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    kubeconfig_json: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_provider_url: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        platform = args.platform

        encryption_key_arn: pulumi.Output[str] | None = None
        if platform.secrets_encryption:
            key = aws.kms.Key(
                f"{name}-secrets",
                description=f"EKS secrets envelope encryption for {args.cluster_name}",
                enable_key_rotation=True,
                # Deleting this key makes every Secret in the cluster unreadable; keep the longest grace period.
                deletion_window_in_days=30,
                tags=merge_tags(args.tags, {}, name=f"{args.cluster_name}-secrets"),
                opts=child,
            )
            aws.kms.Alias(f"{name}-secrets", name=f"alias/{args.cluster_name}-secrets", target_key_id=key.key_id, opts=child)
            encryption_key_arn = key.arn

        endpoint = platform.endpoint
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=platform.kubernetes_version,
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            # Node groups are managed by components/nodegroups.py (launch templates, taints, scale-from-zero).
            skip_default_node_group=True,
            node_associate_public_ip_address=False,
            create_oidc_provider=True,  # IRSA for add-ons and runs
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries(platform.cluster_admins, platform.run_operators),
            encryption_config_key_arn=encryption_key_arn,
            enabled_cluster_log_types=list(platform.control_plane_logs),
            endpoint_private_access=True,
            endpoint_public_access=not endpoint.private_only,
            # pulumi-eks rejects publicAccessCidrs when the public endpoint is off, so pass them only when on.
            public_access_cidrs=None if endpoint.private_only else [str(c) for c in endpoint.public_access_cidrs],
            # STANDARD: at the end of standard support EKS upgrades the cluster instead of billing extended
            # support (6x the control-plane price); config/ already refuses versions past standard support.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            # Add-on split (components/addons.py owns these): CoreDNS and kube-proxy are installed after the node
            # groups because CoreDNS stays DEGRADED on a cluster with no nodes. pulumi-eks 4.4.0 defaults
            # CoreDnsAddonOptionsArgs.enabled to True, so both are switched off explicitly.
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            # True = pulumi-eks creates no VpcCniAddon (cluster.ts: `useDefaultVpcCni ? undefined : new
            # VpcCniAddon`); the aws-node that EKS bootstraps lets nodes go Ready, and Addons adopts it as a
            # managed add-on with network policy enforcement on.
            use_default_vpc_cni=True,
            deletion_protection=args.deletion_protection,
            tags=args.tags,
            cluster_tags=merge_tags(args.tags, {}, name=args.cluster_name),
            opts=child,
        )

        self.kubeconfig_json = cluster.kubeconfig_json
        # The name is known up front, but node groups and add-ons must not start before the control plane
        # (and its access entries) exist. Deriving it from an output of the remote component carries a
        # dependency on the whole eks.Cluster, which the engine resolves only after all of its children.
        self.eks_cluster_name = cluster.kubeconfig_json.apply(lambda _: args.cluster_name)
        kube_cluster = cluster.kubeconfig_json.apply(_kubeconfig_cluster)
        self.endpoint = kube_cluster.apply(lambda c: str(c["server"]))
        self.certificate_authority = kube_cluster.apply(lambda c: str(c["certificate-authority-data"]))
        self.oidc_provider_arn = cluster.oidc_provider_arn
        # pulumi-eks gives the issuer URL with https://; IRSA trust conditions use host/path only.
        self.oidc_provider_url = cluster.oidc_provider_url.apply(lambda url: url.removeprefix("https://"))
        self.register_outputs(
            {
                "eksClusterName": self.eks_cluster_name,
                "endpoint": self.endpoint,
                "certificateAuthority": self.certificate_authority,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcProviderUrl": self.oidc_provider_url,
            }
        )
